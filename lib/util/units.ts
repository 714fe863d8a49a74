/**
 * Byte sizes as users write them: SI units are powers of 1000 ("500MB") and
 * IEC units powers of 1024 ("20GiB"), as the README's configuration table
 * promises. The common libraries read "MB" as 2^20 (bytes) or refuse "GiB"
 * (ms-like parsers), so these two short functions stay here.
 */
/** Parses "500MB", "10GiB", "1.5G" (or plain bytes) into bytes; undefined if malformed. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = (m[2] ?? 'b').toLowerCase().replace(/b$/, '');
  const powers: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40 };
  const factor = powers[unit];
  return factor === undefined ? undefined : Math.round(Number(m[1]) * factor);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

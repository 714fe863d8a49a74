import path from 'node:path';
import { readFailure } from '../fs/confined';
import { parseSidecar, type ImageSidecar } from '../store/image-store';
import type { Maintenance } from './context';
import type { StoreFile, StoreFolder } from './walk';

type RawFile = Extract<StoreFile, { type: 'image-raw' }>;
type SidecarFile = Extract<StoreFile, { type: 'image-sidecar' }>;

export interface ImageFolder {
  /** Sidecars whose raw file is present with the declared size. */
  pairs: Array<{ sidecar: ImageSidecar; sidecarFile: SidecarFile; raw: RawFile }>;
  /** Raw files no sidecar names (a writer died between the two renames, or a superseded file). */
  orphans: RawFile[];
  /** Sidecars that are damaged, or whose raw file is missing or of the wrong size. */
  broken: SidecarFile[];
  /** Sidecars that could not be read (EACCES, EIO): nothing is decided about them or the files they name. */
  unreadable: SidecarFile[];
}

/** A sidecar is a few hundred bytes. */
const MAX_SIDECAR_BYTES = 64 * 1024;

/** Pairs each sidecar in a leaf folder with its raw file. Reads every sidecar (small JSON files). */
export async function judgeImageFolder(m: Maintenance, folder: StoreFolder): Promise<ImageFolder> {
  const raws = new Map<string, RawFile>();
  for (const f of folder.files) if (f.type === 'image-raw') raws.set(path.basename(f.path), f);
  const result: ImageFolder = { pairs: [], orphans: [], broken: [], unreadable: [] };
  const named = new Set<string>();
  for (const f of folder.files) {
    if (f.type !== 'image-sidecar') continue;
    let sidecar: ImageSidecar | undefined;
    try {
      sidecar = parseSidecar(await m.fs.readFile(f.path, { maxBytes: MAX_SIDECAR_BYTES, firstRead: 4096 }), f.hash);
    } catch (error) {
      const failure = readFailure(error);
      if (failure === 'absent') continue;
      if (failure === undefined) {
        result.unreadable.push(f);
        continue;
      }
      sidecar = undefined;
    }
    const raw = sidecar ? raws.get(sidecar.file) : undefined;
    if (sidecar) named.add(sidecar.file);
    if (!sidecar || !raw || raw.stats.size !== sidecar.size) {
      result.broken.push(f);
      continue;
    }
    result.pairs.push({ sidecar, sidecarFile: f, raw });
  }
  // A raw file whose key's sidecar could not be read is not an orphan: its pair may be fine.
  const unknown = new Set(result.unreadable.map((f) => f.hash));
  for (const [name, raw] of raws) if (!named.has(name) && !unknown.has(raw.hash)) result.orphans.push(raw);
  return result;
}

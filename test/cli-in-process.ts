import { main } from '../bin/cli';

/** The CLI's main() in this process (no build needed), with what it printed to stdout and stderr. */
export async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(
    args,
    (t) => (out += t + '\n'),
    (t) => (err += t + '\n'),
  );
  return { code, out, err };
}

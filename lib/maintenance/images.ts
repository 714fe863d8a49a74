import path from 'node:path';
import { errorCode, readWhole } from '../store/fs';
import { parseSidecar, type ImageSidecar } from '../store/image-store';
import type { Maintenance } from './context';
import type { StoreFile, StoreFolder } from './walk';

type RawFile = Extract<StoreFile, { type: 'image-raw' }>;
type SidecarFile = Extract<StoreFile, { type: 'image-sidecar' }>;

export interface ImageFolder {
  /** Sidecars whose raw file is present with the declared size. */
  pairs: Array<{ sidecar: ImageSidecar; sidecarFile: SidecarFile; raw: RawFile }>;
  /** Raw files no valid sidecar names (a writer died between the two renames, or a superseded file). */
  orphans: RawFile[];
  /** Sidecars that are unreadable, or whose raw file is missing or of the wrong size. */
  broken: SidecarFile[];
}

/** Pairs each sidecar in a leaf folder with its raw file. Reads every sidecar (small JSON files). */
export async function judgeImageFolder(m: Maintenance, folder: StoreFolder): Promise<ImageFolder> {
  const raws = new Map<string, RawFile>();
  for (const f of folder.files) if (f.type === 'image-raw') raws.set(path.basename(f.path), f);
  const result: ImageFolder = { pairs: [], orphans: [], broken: [] };
  const named = new Set<string>();
  for (const f of folder.files) {
    if (f.type !== 'image-sidecar') continue;
    let sidecar: ImageSidecar | undefined;
    try {
      sidecar = parseSidecar(await readWhole(m.fs, f.path, 0, undefined, 4096), f.hash);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      sidecar = undefined;
    }
    const raw = sidecar ? raws.get(sidecar.file) : undefined;
    if (!sidecar || !raw || raw.stats.size !== sidecar.size) {
      result.broken.push(f);
      if (sidecar) named.add(sidecar.file);
      continue;
    }
    named.add(sidecar.file);
    result.pairs.push({ sidecar, sidecarFile: f, raw });
  }
  for (const [name, raw] of raws) if (!named.has(name)) result.orphans.push(raw);
  return result;
}

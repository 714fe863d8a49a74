// A digest of a folder tree (or single files) as it is on disk, for "byte-for-byte unchanged" checks:
// names, types, modes, sizes, mtimes, link targets and the content of regular files. It never follows
// a link and never opens anything but a regular file (a FIFO would block the reader).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createHash } = require('node:crypto');

/** One line per path under `top` (and `top` itself), sorted; links are described, never followed. */
function describeTree(top) {
  const lines = [];
  const visit = (file) => {
    let stats;
    try {
      stats = fs.lstatSync(file);
    } catch (error) {
      lines.push(`${file} missing (${error.code})`);
      return;
    }
    const base = `${file} mode=${stats.mode.toString(8)} uid=${stats.uid} mtime=${stats.mtimeMs}`;
    if (stats.isSymbolicLink()) lines.push(`${base} link -> ${fs.readlinkSync(file)}`);
    else if (stats.isFile()) lines.push(`${base} size=${stats.size} sha256=${contentHash(file)}`);
    else if (stats.isDirectory()) {
      lines.push(`${base} dir`);
      for (const name of fs.readdirSync(file).sort()) visit(path.join(file, name));
    } else lines.push(`${base} special`);
  };
  visit(top);
  return lines;
}

/** A regular file's content hash; a file this process may not read (another UID's 0600 file) is described without it. */
function contentHash(file) {
  try {
    return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch (error) {
    if (error.code === 'EACCES') return 'unreadable';
    throw error;
  }
}

/** The description of every watched path, one string (compare two with ===; diff the lines to explain). */
function digest(paths) {
  return paths.flatMap(describeTree).join('\n');
}

/** Lines in `after` that differ from `before`, for a readable failure message. */
function changes(before, after) {
  const was = new Set(before.split('\n'));
  const now = new Set(after.split('\n'));
  return [...[...was].filter((l) => !now.has(l)).map((l) => `- ${l}`), ...[...now].filter((l) => !was.has(l)).map((l) => `+ ${l}`)];
}

module.exports = { digest, changes };

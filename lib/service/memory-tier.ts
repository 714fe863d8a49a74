import { LRUCache } from 'lru-cache';
import { decodeText, hasUtf8Form, type EntryRecord } from '../store/codec';
import { smallHash } from '../store/hash';
import type { FileIdentity } from '../store/entry-store';
import { setOwn } from '../util/own';

/**
 * Decoded entries kept in this process's memory (Buffers and Maps ready to
 * return; text kept as bytes, see KeptText), bounded by bytes (least
 * recently used out first), shared by both handlers.
 *
 * Coherence: a copy is served only while the volume still holds the version
 * it was read from. Tag invalidations and expiry are judged from the tag view
 * on every hit, exactly as for an entry read from the volume. A rewrite by
 * another pod (a regeneration, `res.revalidate()`, a purge, gc, a volume that
 * went away) is caught by the copy's identity: a copy is trusted for
 * `trustMs` after it was read or confirmed; after that, the next hit first
 * confirms that the file still has the same identity (inode, size, times:
 * one open, fstat and close, which on NFS revalidates the attributes) and
 * otherwise reads the volume again. So another pod's rewrite is served from
 * memory at most `trustMs` (default: the tag refresh interval) plus the
 * mount's attribute window after it happened: the bound the README already
 * states for invalidations. A copy that has gone stale by time is never
 * served from memory: the volume is read first, where another pod may
 * already have put a fresh version.
 *
 * Admission: while the tier has room, every copy read is kept. Once it is
 * full, a key enters only on its second read within the recent past (see
 * SeenOnce): a scan through more keys than fit (a crawler, a sitemap
 * rebuild) would otherwise evict every hot page for copies never read
 * again, and churn the heap with copies that outlive a young-generation
 * collection only to die in the old one (the bench's memory section: peak
 * RSS under such a scan).
 */
export interface MemoryCopy {
  /** The tier's own copy (see keptCopy): its value's text may be held as bytes; serve it through servedRecord. */
  record: EntryRecord;
  identity: FileIdentity;
  /** What keeping it costs (see retainedBytes). */
  bytes: number;
  /** performance.now() until which it is served without confirming its identity. */
  trustedUntil: number;
}

export interface MemoryStats {
  bytes: number;
  entries: number;
  maxBytes: number;
  evictions: number;
  /** Copies not kept because the tier was full and their key had not been read recently (see Admission). */
  rejections: number;
}

/** Per-copy bookkeeping (the key, the record's objects) on top of its bytes. */
const OVERHEAD_BYTES = 512;
/** The fewest keys a full tier remembers having read once (see SeenOnce). */
const MIN_SEEN_KEYS = 1024;

export class MemoryTier {
  private lru: LRUCache<string, MemoryCopy> | undefined;
  private evictions = 0;
  private rejections = 0;
  private readonly seenOnce = new SeenOnce();

  constructor(
    private maxBytes: number,
    private readonly trustMs: number,
  ) {
    this.lru = this.create(maxBytes);
  }

  get enabled(): boolean {
    return this.lru !== undefined;
  }

  get(namespace: string, key: string): MemoryCopy | undefined {
    return this.lru?.get(idOf(namespace, key));
  }

  put(namespace: string, record: EntryRecord, identity: FileIdentity): void {
    if (!this.lru) return;
    // Judged on the record as decoded (strings at two bytes a character): the copy is made only once it is admitted.
    const bytes = retainedBytes(record.value) + record.key.length * 2 + OVERHEAD_BYTES;
    // A copy larger than the whole tier is simply not kept (lru-cache refuses it).
    if (bytes > this.maxBytes) return;
    const id = idOf(namespace, record.key);
    if (!this.admits(this.lru, id, bytes)) return;
    this.lru.set(id, { record: keptCopy(record), identity: { ...identity }, bytes, trustedUntil: performance.now() + this.trustMs });
  }

  /** Whether a copy enters: always while there is room (or it replaces its own key's), else on its key's second read. */
  private admits(lru: LRUCache<string, MemoryCopy>, id: string, bytes: number): boolean {
    if (lru.has(id) || lru.calculatedSize + bytes <= this.maxBytes) return true;
    if (this.seenOnce.checkAndRemember(id, Math.max(MIN_SEEN_KEYS, lru.size))) return true;
    this.rejections++;
    return false;
  }

  /** The copy was confirmed to still be the volume's version: trusted for another window. */
  confirmed(copy: MemoryCopy): void {
    copy.trustedUntil = performance.now() + this.trustMs;
  }

  drop(namespace: string, key: string): void {
    this.lru?.delete(idOf(namespace, key));
  }

  clear(): void {
    this.lru?.clear();
  }

  /**
   * Sets the bound (Next passes its `cacheMaxMemorySize` to the page handler,
   * which may be constructed after the tier served its first calls); 0 turns
   * the tier off. What is kept is carried over, most recently used first.
   */
  resize(maxBytes: number): void {
    if (maxBytes === this.maxBytes) return;
    const previous = this.lru;
    this.maxBytes = maxBytes;
    this.lru = this.create(maxBytes);
    if (previous && this.lru) for (const [id, copy] of [...previous.entries()].reverse()) this.lru.set(id, copy);
  }

  stats(): MemoryStats {
    return { bytes: this.lru?.calculatedSize ?? 0, entries: this.lru?.size ?? 0, maxBytes: this.maxBytes, evictions: this.evictions, rejections: this.rejections };
  }

  private create(maxBytes: number): LRUCache<string, MemoryCopy> | undefined {
    if (maxBytes <= 0) return undefined;
    return new LRUCache<string, MemoryCopy>({
      maxSize: maxBytes,
      sizeCalculation: (copy) => Math.max(1, copy.bytes),
      dispose: (_copy, _id, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }
}

/**
 * The keys a full tier turned away, remembered so that a second read lets
 * one in: two generations of at most `capacity` keys each (about the number
 * of copies the tier holds), so "recent" means the last one or two tiers'
 * worth of distinct keys read. Keys are remembered as 31-bit hashes in an
 * open-addressing table of a typed array, at most half full: remembering
 * a key allocates nothing, and a generation's table is reused for the
 * next. (A Set of hashes grew its table by doubling in every generation,
 * leaving each outgrown table to the old generation; replacing it took the
 * memory bench's peak RSS from 188 to 157 MiB. A Bloom filter let one key
 * in a hundred in early, and each such copy evicted another.) Two keys that share a
 * hash let each other in one read early; a key let in stays remembered
 * until its generation ends.
 */
class SeenOnce {
  private current = new Uint32Array(0);
  private previous = new Uint32Array(0);
  private added = 0;

  /** True if `id` was remembered; otherwise remembers it and returns false. */
  checkAndRemember(id: string, capacity: number): boolean {
    // Slots hold hash + 1: 0 marks an empty slot.
    const mark = smallHash(id) + 1;
    if (slotOf(this.current, mark) < 0 || slotOf(this.previous, mark) < 0) return true;
    // A table stays at most half full (its size was chosen for the capacity at its start, which may have grown).
    if (this.added >= capacity || this.added * 2 >= this.current.length) this.rotate(capacity);
    this.current[slotOf(this.current, mark)] = mark;
    this.added++;
    return false;
  }

  private rotate(capacity: number): void {
    const slots = 2 ** Math.ceil(Math.log2(Math.max(64, capacity * 2)));
    const recycled = this.previous.length === slots ? this.previous.fill(0) : new Uint32Array(slots);
    this.previous = this.current;
    this.current = recycled;
    this.added = 0;
  }
}

/** Where `mark` is in a table (as -1 - slot), or else the empty slot it would take (linear probing). */
function slotOf(table: Uint32Array, mark: number): number {
  if (table.length === 0) return 0;
  const mask = table.length - 1;
  for (let slot = mark & mask; ; slot = (slot + 1) & mask) {
    const held = table[slot];
    if (held === mark) return -1 - slot;
    if (held === 0) return slot;
  }
}

/**
 * The tier's own copy of a record: its objects, arrays and Maps copied,
 * its Buffers detached from the file they were read from, and its value's
 * text kept as bytes (see KeptText). Serve it only through servedRecord.
 *
 * Why copies: V8 decides per allocation site whether what a site makes is
 * born in the old generation ("pretenuring"): once most of a site's objects
 * have outlived a young collection, all its later objects are born old.
 * Kept as decoded, the copies the tier holds while it fills would teach the
 * decoder's sites that their objects live long, and every later read, kept
 * or not, would then be born old and die there (the bench's memory section:
 * 225 against 188 MiB peak RSS for a 50 MiB tier). So the kept copies are
 * made here, by sites that make nothing else, and what each hit is served
 * is made by other sites (servedShells), whose objects die young.
 *
 * Why detached Buffers: a part of a decoded entry is a view into the whole
 * file read; kept as such, it would keep the file's other bytes (the text
 * the tier already keeps) alive a second time.
 */
function keptCopy(record: EntryRecord): EntryRecord {
  return {
    key: record.key,
    kind: record.kind,
    writtenAt: record.writtenAt,
    cacheControl: record.cacheControl && { ...record.cacheControl },
    tags: [...record.tags],
    value: keptShells(record.value, 0),
  };
}

function keptShells(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return keepText(value);
  if (value instanceof Uint8Array) return detached(value);
  if (value === null || typeof value !== 'object' || depth > 64) return value;
  if (value instanceof Map) {
    const map = new Map<unknown, unknown>();
    for (const [k, v] of value) map.set(k, keptShells(v, depth + 1));
    return map;
  }
  if (Array.isArray(value)) return value.map((item: unknown) => keptShells(item, depth + 1));
  const copy: Record<string, unknown> = {};
  const source = value as Record<string, unknown>;
  for (const k in source) if (Object.hasOwn(source, k)) setOwn(copy, k, keptShells(source[k], depth + 1));
  return copy;
}

/**
 * The record a hit serves, from a kept copy: objects of its own (a request
 * may change what it is given; Buffers are shared, as Next only reads
 * them), its text decoded again from the kept bytes.
 */
export function servedRecord(copy: MemoryCopy): EntryRecord {
  const kept = copy.record;
  // Field by field, as keptCopy made it: a spread of the record costs more than the rest of a hit's copy.
  return {
    key: kept.key,
    kind: kept.kind,
    writtenAt: kept.writtenAt,
    cacheControl: kept.cacheControl && { ...kept.cacheControl },
    tags: [...kept.tags],
    value: servedShells(kept.value, 0),
  };
}

// The same walk as keptShells, written out again on purpose: its allocation sites must stay its own (see keptCopy).
function servedShells(value: unknown, depth: number): unknown {
  if (value instanceof KeptText) return value.text();
  if (value === null || typeof value !== 'object' || depth > 64 || value instanceof Uint8Array) return value;
  if (value instanceof Map) {
    const map = new Map<unknown, unknown>();
    for (const [k, v] of value) map.set(k, servedShells(v, depth + 1));
    return map;
  }
  if (Array.isArray(value)) return value.map((item: unknown) => servedShells(item, depth + 1));
  // for...in with an own-key check: Object.entries' keys without an array per object (this runs on every hit).
  const copy: Record<string, unknown> = {};
  const source = value as Record<string, unknown>;
  for (const k in source) if (Object.hasOwn(source, k)) setOwn(copy, k, servedShells(source[k], depth + 1));
  return copy;
}

/**
 * Text of a kept copy, held as its UTF-8 bytes and decoded again for each
 * hit. Why: a string lives in V8's heap, and V8 lets its old generation grow
 * to a multiple of what is live before it collects; a tier holding its text
 * as strings made a process's peak memory grow by about twice the tier's
 * size (bench: memory section). Bytes in a Buffer live outside that heap and
 * cost what they weigh. Decoding a few kilobytes costs about a microsecond
 * per hit. Kept as strings: text shorter than TEXT_AS_BYTES_MIN characters
 * (not worth it), longer than TEXT_AS_BYTES_MAX (a large page's html:
 * decoding it on every hit would cost more than the hit), and text that is
 * not well-formed UTF-16 (a lone surrogate has no UTF-8 form: the bytes
 * would serve U+FFFD in its place).
 */
class KeptText {
  constructor(
    readonly bytes: Buffer,
    /** Every character is ASCII: the bytes are served as Latin-1, with no check or decoding pass per hit. */
    readonly ascii: boolean,
  ) {}

  // Kept text is at most TEXT_AS_BYTES_MAX long, which decodeText too decodes in one piece: the same string either way.
  text(): string {
    return this.ascii ? this.bytes.toString('latin1') : decodeText(this.bytes);
  }
}
const TEXT_AS_BYTES_MIN = 1024;
const TEXT_AS_BYTES_MAX = 128 * 1024;

function keepText(text: string): string | KeptText {
  if (text.length < TEXT_AS_BYTES_MIN || text.length > TEXT_AS_BYTES_MAX || !hasUtf8Form(text)) return text;
  // A backing store of its own: a pooled one would keep Node's whole 8 KB slab alive with it.
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  // UTF-8 takes one byte per character only when every character is ASCII.
  return new KeptText(bytes, bytes.length === text.length);
}

/** The bytes of a view, with a backing store of their own when the view is part of a larger one. */
function detached(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const own = Buffer.allocUnsafeSlow(bytes.byteLength);
  own.set(bytes);
  return own;
}

function idOf(namespace: string, key: string): string {
  return `${namespace}\u0000${key}`;
}

/**
 * What keeping a decoded value alive costs: its strings (two bytes a
 * character, the most V8 uses) and the memory behind its Buffers (each
 * underlying ArrayBuffer once: parts of one entry share the file's buffer).
 */
export function retainedBytes(value: unknown): number {
  const seen = new Set<ArrayBufferLike>();
  let total = 0;
  const visit = (v: unknown, depth: number): void => {
    if (depth > 64 || v === null || v === undefined) return;
    if (typeof v === 'string') total += v.length * 2;
    else if (v instanceof Uint8Array) {
      if (!seen.has(v.buffer)) {
        seen.add(v.buffer);
        total += v.buffer.byteLength;
      }
    } else if (v instanceof Map) {
      for (const [k, item] of v) {
        visit(k, depth + 1);
        visit(item, depth + 1);
      }
    } else if (Array.isArray(v)) {
      for (const item of v) visit(item, depth + 1);
    } else if (typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        total += k.length * 2;
        visit(item, depth + 1);
      }
    } else total += 8;
  };
  visit(value, 0);
  return total;
}

import { entryKindOf, namespaceKindOf } from '../service/telemetry';
import type { StoreStats } from './stats';

/**
 * The volume's figures (what `stats` finds) in the Prometheus text format,
 * for node-exporter's textfile collector: the maintenance CronJob writes
 * them to a file, node-exporter serves them with its own metrics.
 *
 * Prometheus naming: base units in the name (`_bytes`, `_timestamp_seconds`),
 * every family a gauge (a snapshot of the volume, so no `_total`), HELP and
 * TYPE once per family, no timestamps (the collector refuses them). Label
 * names carry the library's prefix, like the labels the OpenTelemetry
 * exporter makes from our attributes: `app` and `namespace` would collide
 * with the target labels Kubernetes service discovery usually adds.
 */
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: 'gauge';
  samples: Sample[];
}

export const LABEL = {
  app: 'next_volume_cache_app',
  namespace: 'next_volume_cache_namespace',
  namespaceKind: 'next_volume_cache_namespace_kind',
  entryKind: 'next_volume_cache_entry_kind',
  debrisKind: 'next_volume_cache_debris_kind',
  tagLog: 'next_volume_cache_tag_log',
} as const;

/** The families of one app's stats (see statsToPrometheus for several). */
export function statsFamilies(stats: StoreStats): Family[] {
  const app = { [LABEL.app]: stats.app };
  const one = (name: string, help: string, value: number | undefined): Family => gauge(name, help, value === undefined ? [] : [{ labels: app, value }]);
  const byNamespaceAndKind = (pick: (t: { count: number; bytes: number }) => number): Sample[] =>
    Object.entries(stats.entries.byNamespaceAndKind).flatMap(([namespace, kinds]) =>
      mergeKinds(kinds).map(([kind, tally]) => ({
        labels: { ...app, [LABEL.namespace]: namespace, [LABEL.namespaceKind]: namespaceKindOf(namespace), [LABEL.entryKind]: kind },
        value: pick(tally),
      })),
    );
  const tagLogs = (pick: (log: 'invalidations' | 'memberships') => number): Sample[] => (['invalidations', 'memberships'] as const).map((log) => ({ labels: { ...app, [LABEL.tagLog]: log }, value: pick(log) }));
  const { tagLog, debris, images, entries } = stats;
  return [
    gauge(
      'next_volume_cache_volume_entries',
      'Entries on the volume, by namespace and kind',
      byNamespaceAndKind((t) => t.count),
    ),
    gauge(
      'next_volume_cache_volume_entry_bytes',
      'Bytes of entries on the volume, by namespace and kind',
      byNamespaceAndKind((t) => t.bytes),
    ),
    one('next_volume_cache_volume_expired_entries', 'Entries past their expire time (gc deletes them)', entries.expired),
    one('next_volume_cache_volume_unreadable_entries', 'Entry files that are damaged or that this process cannot read', entries.unreadable),
    one('next_volume_cache_volume_oldest_entry_timestamp_seconds', 'When the oldest entry was written', seconds(entries.oldestWrittenAt)),
    one('next_volume_cache_volume_images', 'Optimized images on the volume', images.total.count),
    one('next_volume_cache_volume_image_bytes', 'Bytes of optimized images on the volume', images.total.bytes),
    one('next_volume_cache_volume_orphan_image_files', 'Raw image files without a sidecar (debris of an interrupted write)', images.orphans.count),
    one('next_volume_cache_volume_orphan_image_bytes', 'Bytes of raw image files without a sidecar', images.orphans.bytes),
    one('next_volume_cache_volume_broken_images', 'Image sidecars whose raw file is missing or wrong', images.broken),
    one('next_volume_cache_volume_unreadable_images', 'Image sidecars that cannot be read', images.unreadable),
    gauge('next_volume_cache_volume_debris_files', 'Files in the store that are not entries: temp files of interrupted writes, foreign files, NFS silly-renamed files', [
      { labels: { ...app, [LABEL.debrisKind]: 'temp' }, value: debris.temp.count },
      { labels: { ...app, [LABEL.debrisKind]: 'foreign' }, value: debris.foreign },
      { labels: { ...app, [LABEL.debrisKind]: 'nfs_silly' }, value: debris.nfsSilly },
    ]),
    gauge('next_volume_cache_volume_debris_bytes', 'Bytes of temp files left by interrupted writes', [{ labels: { ...app, [LABEL.debrisKind]: 'temp' }, value: debris.temp.bytes }]),
    one('next_volume_cache_volume_regeneration_leases', 'Regeneration leases on the volume (a process is regenerating the entry)', stats.leases.total),
    one('next_volume_cache_volume_abandoned_regeneration_leases', 'Regeneration leases older than an hour: their process died mid-render (gc removes them)', stats.leases.stale),
    one('next_volume_cache_volume_shard_folders', 'Shard folders in the store', stats.shards.folders),
    one('next_volume_cache_volume_largest_folder_files', 'Files in the most crowded shard folder', stats.shards.largest.files),
    one('next_volume_cache_volume_builds', 'Build namespaces on the volume', stats.builds.length),
    gauge(
      'next_volume_cache_volume_build_last_served_timestamp_seconds',
      'When a process last marked the build as served',
      stats.builds.flatMap((b) => (typeof b.servedAt === 'number' ? [{ labels: { ...app, [LABEL.namespace]: b.namespace }, value: b.servedAt / 1000 }] : [])),
    ),
    gauge(
      'next_volume_cache_tag_log_segments',
      'Tag log segments not yet compacted (the backlog each new process reads at start)',
      tagLogs((log) => (log === 'invalidations' ? tagLog.segments : tagLog.memberSegments)),
    ),
    gauge(
      'next_volume_cache_tag_log_segment_bytes',
      'Bytes of tag log segments not yet compacted',
      tagLogs((log) => (log === 'invalidations' ? tagLog.segmentBytes : tagLog.memberSegmentBytes)),
    ),
    one('next_volume_cache_tag_log_strangers', 'Names in the tag log folders that are not segments', tagLog.strangers),
    one('next_volume_cache_tag_log_snapshot_tags', 'Tags in the compacted snapshot', tagLog.snapshotTags),
    one('next_volume_cache_tag_log_snapshot_damaged', '1 when the snapshot exists but cannot be used', tagLog.snapshot.startsWith('damaged') ? 1 : 0),
    one('next_volume_cache_tag_log_last_compaction_timestamp_seconds', 'When the snapshot was last written by compact (absent: never compacted)', seconds(tagLog.lastCompaction)),
    one('next_volume_cache_writers', 'Writer leases on the volume', tagLog.writers),
    one('next_volume_cache_writers_alive', 'Writers whose lease was renewed within leaseTimeoutMs (running processes)', tagLog.writersAlive),
  ];
}

/** Several apps' families as one document: one family per name, its samples together. */
export function statsToPrometheus(all: readonly StoreStats[]): string {
  return renderPrometheus(all.flatMap(statsFamilies));
}

/**
 * The text format: families of one name merged (HELP and TYPE once, samples
 * together: a family split by another is invalid), lines joined by newlines
 * with no final one (the caller prints each document as one line). Throws on
 * a name, label or duplicate series the format does not allow: a bug here
 * must not produce a file the collector rejects as a whole.
 */
export function renderPrometheus(families: readonly Family[]): string {
  const merged = new Map<string, Family>();
  for (const family of families) {
    if (!METRIC_NAME.test(family.name)) throw new Error(`invalid metric name ${JSON.stringify(family.name)}`);
    const seen = merged.get(family.name);
    if (seen) seen.samples.push(...family.samples);
    else merged.set(family.name, { ...family, samples: [...family.samples] });
  }
  const lines: string[] = [];
  for (const family of merged.values()) {
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    const series = new Set<string>();
    for (const sample of family.samples) {
      const line = `${family.name}${labelSet(sample.labels)} ${formatValue(sample.value)}`;
      const id = line.slice(0, line.lastIndexOf(' '));
      if (series.has(id)) throw new Error(`duplicate series ${id}`);
      series.add(id);
      lines.push(line);
    }
  }
  return lines.join('\n');
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function gauge(name: string, help: string, samples: Sample[]): Family {
  return { name, help, type: 'gauge', samples };
}

/** Stored kinds (APP_PAGE, FETCH, ...) as the label values the OpenTelemetry metrics use; two raw kinds may share one ("other"). */
function mergeKinds(kinds: Record<string, { count: number; bytes: number }>): Array<[string, { count: number; bytes: number }]> {
  const merged = new Map<string, { count: number; bytes: number }>();
  for (const [raw, tally] of Object.entries(kinds)) {
    const kind = entryKindOf(raw);
    const seen = merged.get(kind) ?? { count: 0, bytes: 0 };
    merged.set(kind, { count: seen.count + tally.count, bytes: seen.bytes + tally.bytes });
  }
  return [...merged];
}

function seconds(iso: string | null): number | undefined {
  return iso === null ? undefined : Date.parse(iso) / 1000;
}

function labelSet(labels: Record<string, string>): string {
  const pairs = Object.entries(labels);
  if (pairs.length === 0) return '';
  for (const [name] of pairs) if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(name)}`);
  return `{${pairs.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

/** Label values escape backslash, double quote and newline (the only escapes the format has). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

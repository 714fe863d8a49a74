import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, tempDir } from './helpers';

/**
 * Checks of Prometheus text and PromQL with Prometheus's own tools. promtool
 * (Prometheus's Go parser and linter) is the judge: the npm parsers accept
 * bad names, bad values, bad escapes and repeated TYPE lines. `.ci/run`
 * unpacks it from Debian's prometheus package into .cache/promtool.
 */
export interface Sample {
  /** The sample's own name (a histogram's `_bucket`, `_sum`, `_count` lines each keep theirs). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

const BUNDLED = path.join(REPO, '.cache', 'promtool', 'usr', 'bin', 'promtool');

/** The promtool binary: the one .ci/run unpacked, else one on PATH; undefined when there is none. */
export function findPromtool(): string | undefined {
  if (existsSync(BUNDLED)) return BUNDLED;
  const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  if (which.status === 0) return which.stdout.trim();
  // Outside CI the promtool checks skip with a printed reason; in CI a missing promtool is a broken set-up.
  if (process.env.CI === 'true') throw new Error(`CI=true but no promtool at ${BUNDLED} or on PATH: .ci/run unpacks it there`);
  return undefined;
}

/** `promtool check metrics` on the text: rc 0 means it parses and is lint-clean. */
export function promtoolCheckMetrics(promtool: string, text: string): { code: number | null; output: string } {
  const run = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { code: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

/** `promtool check rules` on the expressions, each as a recording rule: rc 0 means every one is valid PromQL. */
export function promtoolCheckExpressions(promtool: string, expressions: readonly string[]): { code: number | null; output: string } {
  const file = path.join(tempDir('nvc-promql-'), 'rules.yml');
  const rules = expressions.map((expr, i) => `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(expr)}`).join('\n');
  writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
  const run = spawnSync(promtool, ['check', 'rules', file], { encoding: 'utf8' });
  return { code: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

/**
 * Reads the samples of a text-format document, to check values (never a
 * validator: promtoolCheckMetrics is). The npm parsers were no help: the
 * most used one folds all series of a histogram into one.
 */
export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`not a sample line: ${line}`);
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const parsed = readLabels(rest);
      Object.assign(labels, parsed.labels);
      rest = rest.slice(parsed.length);
    }
    const value = rest.trim().split(/\s+/)[0]!;
    out.push({ name, labels, value: value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value) });
  }
  return out;
}

/** `{a="x",b="y\"z"}` with the format's three escapes; returns the labels and how many characters it took. */
function readLabels(text: string): { labels: Record<string, string>; length: number } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (text[i] !== '}') {
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i))?.[0];
    if (!name || text[i + name.length] !== '=' || text[i + name.length + 1] !== '"') throw new Error(`bad label set: ${text}`);
    i += name.length + 2;
    let value = '';
    while (text[i] !== '"') {
      if (i >= text.length) throw new Error(`unterminated label value: ${text}`);
      if (text[i] === '\\') {
        const next = text[i + 1];
        value += next === 'n' ? '\n' : next;
        i += 2;
      } else value += text[i++];
    }
    labels[name] = value;
    i++;
    if (text[i] === ',') i++;
  }
  return { labels, length: i + 1 };
}

/** The family names a document declares (its TYPE lines), in order. */
export function familyNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!);
}

/** The sum of the values of samples named `name` whose labels include `labels` (0 when there are none). */
export function total(text: string, name: string, labels: Record<string, string> = {}): number {
  return samples(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/**
 * What promtool does not catch: a series (name and labels) given twice, and
 * a family whose lines are split by another family's. Returns the problems.
 */
export function structuralProblems(text: string): string[] {
  const problems: string[] = [];
  const series = new Set<string>();
  const finished = new Set<string>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
    const name = meta ? meta[2]! : /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name || (line.startsWith('#') && !meta)) continue;
    const family = meta ? name : familyOf(name);
    if (family !== current) {
      if (current !== undefined) finished.add(current);
      if (finished.has(family)) problems.push(`family ${family} is split by another family`);
      current = family;
    }
    if (meta) continue;
    const id = line.slice(0, line.lastIndexOf(' '));
    if (series.has(id)) problems.push(`duplicate series ${id}`);
    series.add(id);
  }
  return problems;
}

/** A histogram's or summary's sample names belong to its family. */
function familyOf(sample: string): string {
  return sample.replace(/_(bucket|sum|count)$/, '');
}

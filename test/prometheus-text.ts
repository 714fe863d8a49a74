import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, tempDir } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parsePrometheusText = require('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

/**
 * Checks of Prometheus text and PromQL with Prometheus's own tools. promtool
 * (Prometheus's Go parser and linter) is the judge: the npm parsers accept
 * bad names, bad values, bad escapes and repeated TYPE lines. `.ci/run`
 * unpacks it from Debian's prometheus package into .cache/promtool.
 */
export interface ParsedFamily {
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }>;
}

const BUNDLED = path.join(REPO, '.cache', 'promtool', 'usr', 'bin', 'promtool');

/** The promtool binary: the one .ci/run unpacked, else one on PATH; undefined when there is none. */
export function findPromtool(): string | undefined {
  if (existsSync(BUNDLED)) return BUNDLED;
  const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
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

/** Reads values (never a validator: see promtoolCheckMetrics). */
export function parsePrometheus(text: string): ParsedFamily[] {
  return parsePrometheusText(text);
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

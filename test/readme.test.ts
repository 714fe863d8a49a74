import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { envNameOf, OPTION_NAMES } from '../lib/config';
import { REPO } from './helpers';

/**
 * Issue 13, item 7: the README says what the code does. The messages its
 * troubleshooting table quotes are the ones the code logs or throws, its
 * on-disk layout is lib/store/layout.ts's, every store path it mentions
 * exists in that layout, and its configuration table lists every option.
 * Everything is derived from the sources: nothing here repeats a message.
 */
const README = readFileSync(path.join(REPO, 'README.md'), 'utf8');
const EXAMPLE_README = readFileSync(path.join(REPO, 'examples/kubernetes/README.md'), 'utf8');
/** Stands for an interpolated value in a quoted message (a path, a hash, an error). */
const VALUE = '…';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [full] : [];
  });
}

/**
 * The literal text of every string in lib/ and bin/: plain strings whole,
 * template strings cut at each `${...}` (the interpolations are the
 * values a quoted message shows as "…").
 */
function codeStrings(): string[] {
  const parts = new Set<string>();
  for (const file of [...sourceFiles(path.join(REPO, 'lib')), ...sourceFiles(path.join(REPO, 'bin'))]) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
    const visit = (node: ts.Node): void => {
      if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) parts.add(node.text);
      else if (ts.isTemplateExpression(node)) for (const literal of [node.head, ...node.templateSpans.map((s) => s.literal)]) parts.add(literal.text);
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return [...parts].filter(isPiece);
}

/** Text long enough to mean something when a message is joined from several strings (not "s", "ok", "):"). */
function isPiece(text: string): boolean {
  return text.length >= 2 && (/\s/.test(text) || text.length >= 4);
}

/**
 * Whether `fragment` (text between two "…" of a quoted message) is what the
 * code writes: one string's text, or consecutive strings the code joins
 * (`${action} failed${where}: ...` with action 'reading an entry'). Split
 * into pieces, each inner piece must be a whole string of the code; only the
 * first may be the end of one and the last the start of one (the README
 * quotes from and up to an interpolation). What a value interpolated at run
 * time can be is not followed: a joined message is checked piece by piece.
 */
function isCodeText(fragment: string, strings: string[]): boolean {
  if (strings.some((s) => s.includes(fragment))) return true;
  const reachable = new Set<number>();
  for (const s of strings) {
    for (let cut = 0; cut < s.length; cut++) {
      const tail = s.slice(cut);
      if (isPiece(tail) && fragment.startsWith(tail)) reachable.add(tail.length);
    }
  }
  const queue = [...reachable];
  while (queue.length > 0) {
    const at = queue.shift()!;
    const rest = fragment.slice(at);
    if (isPiece(rest) && strings.some((s) => s.startsWith(rest))) return true;
    for (const s of strings) {
      if (fragment.startsWith(s, at) && !reachable.has(at + s.length)) {
        reachable.add(at + s.length);
        queue.push(at + s.length);
      }
    }
  }
  return false;
}

/** A `## title` section of a markdown text, up to the next one. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`## ${title}`);
  expect(start, `README section "${title}"`).toBeGreaterThanOrEqual(0);
  const next = markdown.indexOf('\n## ', start + 3);
  return markdown.slice(start, next < 0 ? undefined : next);
}

/** The cells of a markdown table's body rows. */
function tableRows(markdown: string): string[][] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|\s*-/.test(line))
    .slice(1)
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
}

/** The inline code spans of markdown text (fenced blocks left out). */
const spans = (text: string): string[] => [...text.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

describe('README troubleshooting', () => {
  const strings = codeStrings();
  const troubleshooting = section(README, 'Troubleshooting');
  const messages = tableRows(troubleshooting).flatMap(([first]) => spans(first!).filter((span) => !/^\d+$/.test(span)));

  it('quotes messages (the test is not vacuous)', () => {
    expect(messages.length).toBeGreaterThan(10);
    expect(messages).toContain('the tag view is still loading');
  });

  it('every quoted message is one the code writes, with "…" for the values it carries', () => {
    const notInCode = messages.filter((message) => !message.split(VALUE).every((fragment) => fragment.length === 0 || isCodeText(fragment, strings)));
    expect(notInCode).toEqual([]);
  });

  it("the prefixes it says every line starts with are the code's", () => {
    const intro = troubleshooting.split('\n|')[0]!;
    const prefixes = spans(intro).filter((span) => span.includes('next-volume-cache'));
    expect(prefixes.length).toBe(2);
    for (const prefix of prefixes)
      expect(
        strings.some((s) => s.startsWith(prefix)),
        prefix,
      ).toBe(true);
  });

  it('a made-up or changed message is caught', () => {
    expect(isCodeText('the tag view is still loading', strings)).toBe(true);
    expect(isCodeText('reading an entry failed: filesystem call timed out', strings)).toBe(true);
    expect(isCodeText('the tag view is loading', strings)).toBe(false);
    expect(isCodeText('reading an entry went wrong: filesystem call timed out', strings)).toBe(false);
    expect(isCodeText('cache root is gone', strings)).toBe(false);
  });
});

/** The store paths of a layout listing: the first column of each `<root>/...` line. */
function layoutPaths(lines: string[]): string[] {
  return lines.filter((line) => line.startsWith('<root>/')).map((line) => line.split(/\s{2,}/)[0]!);
}

const codeLayout = layoutPaths(
  readFileSync(path.join(REPO, 'lib/store/layout.ts'), 'utf8')
    .split('\n')
    .map((line) => line.replace(/^\s*\*\s*/, '')),
);

/** Names the layout's `<ns>` stands for. */
const NAMESPACE = /^(<ns>|<namespace>|shared|use-cache|build-<BUILD_ID>)$/;

/** Whether a path mentioned in prose names a place in the layout (a folder: a prefix of one). */
function inLayout(mentioned: string): boolean {
  const full = mentioned.startsWith('<root>/') ? mentioned : mentioned.startsWith('apps/') ? `<root>/${mentioned}` : `<root>/apps/<app>/${mentioned}`;
  const asked = full.replace(/\/$/, '').split('/');
  const folder = full.endsWith('/');
  return codeLayout.some((entry) => {
    const known = entry.replace(/\/$/, '').split('/');
    if (folder ? asked.length > known.length : asked.length !== known.length) return false;
    return asked.every((part, i) => part === known[i] || (known[i] === '<ns>' && NAMESPACE.test(part)));
  });
}

describe('README layout and paths', () => {
  it('the on-disk layout lists exactly the paths of lib/store/layout.ts', () => {
    const block = section(README, 'On-disk layout').split('```')[1]!;
    expect(codeLayout.length).toBeGreaterThan(10);
    expect(layoutPaths(block.split('\n'))).toEqual(codeLayout);
  });

  it('every store path the READMEs mention is in the layout (images with their <ns>, quarantine, locks)', () => {
    const areas = /^(<root>\/|apps\/<app>\/|(entries|images|builds|seeded|tags|writers|locks|quarantine)\/)/;
    const mentioned = [...spans(README), ...spans(EXAMPLE_README)].filter((span) => areas.test(span) && !path.basename(span).startsWith('.tmp.'));
    expect(mentioned.length).toBeGreaterThan(3);
    expect(mentioned.filter((p) => !inLayout(p))).toEqual([]);
    expect(inLayout('images/<aa>/<bb>/<hash>.<content hash>.<ext>')).toBe(false);
  });
});

describe('README configuration table', () => {
  it('lists every option with its variable, and no other', () => {
    const rows = tableRows(section(README, 'Configuration'));
    const listed = rows.map(([name, env]) => `${spans(name!)[0]} ${spans(env!)[0]}`).sort();
    expect(listed).toEqual(OPTION_NAMES.map((name) => `${name} ${envNameOf(name)}`).sort());
  });
});

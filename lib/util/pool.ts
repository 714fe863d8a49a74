import pLimit from 'p-limit';

/** Runs `fn` over `items` with at most `limit` in flight (p-limit); results in input order. */
export function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const run = pLimit(limit);
  return Promise.all(items.map((item) => run(() => fn(item))));
}

/**
 * Asks `probe` every 100 ms until `done` holds for its answer, and returns that answer; after
 * `timeoutMs`, returns the last answer (the caller's assertions then fail with what it saw).
 *
 * Why not sleep past the tag refresh interval: Next records a route handler's revalidateTag in a
 * waitUntil, after the response, so how soon another server can see it depends on the machine's
 * load, not only on the refresh interval.
 */
export async function pollUntil<T>(probe: () => Promise<T>, done: (answer: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await probe();
    if (done(answer) || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Error helpers shared by every layer. Library errors carry a `code`, like
 * Node's own (and cacache's): callers branch on the code, never on a message.
 */

/** The `code` of a Node or library error, if it has one. */
export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** One line for a log: `CODE: message`, without repeating a code the message already starts with. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = errorCode(error);
    return code && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** An Error with a `code`, for failures the library itself decides. */
export function codedError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/**
 * Sets an own, enumerable, writable property of a plain object, whatever
 * its name. Plain assignment of a key named `__proto__` changes the object's
 * prototype instead (or does nothing, for a value that is not an object): a
 * value that held such a key (JSON.parse and Object.fromEntries make one, from
 * an API's body or a response's headers) would lose it on a round trip, or
 * come back inheriting what it held.
 */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

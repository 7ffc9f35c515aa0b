/**
 * Chains `f` after a value that may or may not be a promise: synchronously when it is not, so a
 * backend that answers at once (the embedded store) costs no microtask on the hot path, and the
 * same code awaits a network backend.
 */
export function after<T, R>(value: T | Promise<T>, f: (v: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(f) : f(value);
}

import { isSecretKey } from '../obs/log.js';

/**
 * A URL with its password (`scheme://user:PASSWORD@host`, as in cluster.redis) and the values of
 * secret-looking query parameters (token=, key=) redacted.
 */
export function redactUrl(text: string): string {
  // Up to the last "@" before the path: a password may hold an unencoded "@", and the Redis URL
  // parser (store/redis-url.ts) reads it so.
  text = text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^/\s]*@/i, '$1[redacted]@');
  if (!/^https?:\/\/.*\?/.test(text)) return text;
  return text.replace(/([?&])([^=&#]+)=([^&#]*)/g, (m, sep: string, name: string) => (isSecretKey(name) ? `${sep}${name}=[redacted]` : m));
}

/**
 * A deep copy safe to print: every value under a secret-looking key becomes "[redacted]"
 * (gorush config/config.go `SanitizedCopy`).
 */
export function redact<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redact) as T;
  if (typeof value === 'string') return redactUrl(value) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined && typeof v !== 'object' ? '[redacted]' : redact(v);
  }
  return out as T;
}

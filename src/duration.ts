const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration: a string with a unit ("500ms", "30s", "15m", "24h", "7d", or several:
 * "1h30m"), or a number of seconds (fractions allowed). Returns milliseconds, or throws an Error
 * saying what is expected.
 */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`must be a duration such as "30s" or "24h", got ${value}`);
    return Math.round(value * 1000);
  }
  if (typeof value !== 'string') {
    // Name an object's kind, not its contents: it may be large, or too deep to stringify.
    const got = value === null || typeof value !== 'object' ? JSON.stringify(value) : Array.isArray(value) ? 'a list' : 'an object';
    throw new Error(`must be a duration such as "30s" or "24h", got ${got}`);
  }
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (UNITS[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) {
    throw new Error(`must be a duration such as "500ms", "30s", "15m", "24h" or "7d" (a bare number is seconds), got ${JSON.stringify(value)}`);
  }
  return Math.round(total);
}

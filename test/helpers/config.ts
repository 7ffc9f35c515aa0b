import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';

/** The ConfigError that parsing `text` as `source` throws (relative paths resolved against `dir`). */
export function configError(text: string, source = 'cfg.yaml', dir?: string): ConfigError {
  try {
    parseConfig(text, source, dir);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

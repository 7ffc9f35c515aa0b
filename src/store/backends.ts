import type { Config } from '../config/load.js';
import type { Logger } from '../obs/log.js';
import { type Backends, embeddedBackends } from './embedded.js';

export type { Backends };

/** Builds one set of backends for a node. */
export type BackendFactory = (config: Config, opts: { node: string; log: Logger }) => Backends | Promise<Backends>;

/**
 * The backend sets a node can run on, by name. `embedded` (SQLite in state.dir plus memory, one
 * process) is the default; the cluster's set registers here and is chosen by `backendsFor`.
 */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  embedded: embeddedBackends,
};

/** The backend set a config asks for. */
export function backendsFor(_config: Config): BackendFactory {
  return BACKENDS.embedded as BackendFactory;
}

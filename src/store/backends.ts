import type { Config } from '../config/load.js';
import type { Logger } from '../obs/log.js';
import { redisBackends } from './cluster.js';
import { type Backends, embeddedBackends } from './embedded.js';

export type { Backends };

/** Builds one set of backends for a node. */
export type BackendFactory = (config: Config, opts: { node: string; log: Logger }) => Backends | Promise<Backends>;

/**
 * The backend sets a node can run on, by name. `embedded` (SQLite in state.dir plus memory, one
 * process) is the default; `redis` (cluster.redis, store/cluster.ts) is the cluster's.
 */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  embedded: embeddedBackends,
  redis: redisBackends,
};

/** The backend set a config asks for: the cluster's Redis when cluster.redis is set. */
export function backendsFor(config: Config): BackendFactory {
  return (config.cluster.redis ? BACKENDS.redis : BACKENDS.embedded) as BackendFactory;
}

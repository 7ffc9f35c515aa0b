import type { Config } from '../config/load.js';
import type { Logger } from '../obs/log.js';
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
  // Loaded only for a cluster: ioredis alone adds ~20 MB of RSS to a node that never uses it.
  redis: async (config, opts) => (await import('./cluster.js')).redisBackends(config, opts),
};

/** The backend set a config asks for: the cluster's Redis when cluster.redis is set. */
export function backendsFor(config: Config): BackendFactory {
  return (config.cluster.redis ? BACKENDS.redis : BACKENDS.embedded) as BackendFactory;
}

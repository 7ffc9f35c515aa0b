import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for the daemon, applied by `notify serve` before it builds anything.
 *
 * `--no-allocation-site-pretenuring`: V8 moves an allocation site to the old generation once
 * most of its objects have outlived a scavenge. Under a push load some per-message site gets
 * there (at random, by when the scavenges fall): from then on each message's objects are
 * allocated old, die at once, and hold on to the young objects they point at until a full
 * collection, so the scavenger promotes about 1 MB at every run and the heap grows by 50-100 MB
 * per 200,000 pushes. Without it the per-message objects die young, as in the bare server
 * (`npm run bench`, README "Benchmark"). The daemon's long-lived objects (sessions) are then
 * promoted by the scavenger instead, which costs a copy each at connect.
 *
 * The flag is read at every garbage collection, so setting it at run time takes effect.
 */
export const DAEMON_V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

export function tuneV8(): readonly string[] {
  for (const flag of DAEMON_V8_FLAGS) setFlagsFromString(flag);
  return DAEMON_V8_FLAGS;
}

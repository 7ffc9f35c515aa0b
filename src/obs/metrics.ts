import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The limits whose refusals are counted. */
export type LimitName =
  | 'connections'
  | 'connectionsPerIp'
  | 'connectRatePerIp'
  | 'sessionsPerUid'
  | 'frameSize'
  | 'lineSize'
  | 'bodySize'
  | 'uidsPerMessage'
  | 'textAllow'
  | 'auth'
  | 'bindTimeout'
  | 'pushFrames'
  | 'silent';

/** What the parts of the daemon report as it happens; the daemon wires it to Prometheus metrics. */
export interface Telemetry {
  refused(limit: LimitName): void;
  /** A publish came in (text, http, cli). */
  published(via: string): void;
  /** One target's outcome. */
  delivered(transport: string, status: string): void;
  /** A provider delivery is to be retried. */
  retried(transport: string): void;
  /** From publish to report, in seconds. */
  reported(seconds: number): void;
}

export const noTelemetry: Telemetry = {
  refused() {},
  published() {},
  delivered() {},
  retried() {},
  reported() {},
};

/** Values read when Prometheus scrapes. */
export interface Gauges {
  sessions(): number;
  uids(): number;
  storeRows(): number;
}

/**
 * Prometheus metrics (prom-client), served at GET /metrics. Counters are bound per label set
 * once and reused, so counting costs a map lookup and an add on the hot path.
 */
export class Metrics implements Telemetry {
  readonly registry = new Registry();
  readonly #refusals: Counter<'limit'>;
  readonly #published: Counter<'via'>;
  readonly #delivered: Counter<'transport' | 'result'>;
  readonly #retries: Counter<'transport'>;
  readonly #latency: Histogram;
  readonly #bound = new Map<string, { inc(): void }>();

  constructor(gauges: Gauges) {
    const registers = [this.registry];
    // prom-client names them process_* and nodejs_*: notify_process_cpu_seconds_total, …
    collectDefaultMetrics({ register: this.registry, prefix: 'notify_' });
    this.#refusals = new Counter({ name: 'notify_limit_refusals_total', help: 'Refusals, by the limit (or check) that refused.', labelNames: ['limit'], registers });
    this.#published = new Counter({ name: 'notify_messages_in_total', help: 'Messages published, by ingress.', labelNames: ['via'], registers });
    this.#delivered = new Counter({
      name: 'notify_deliveries_total',
      help: 'Deliveries to one target, by transport and result (sent, failed, rejected).',
      labelNames: ['transport', 'result'],
      registers,
    });
    this.#retries = new Counter({ name: 'notify_provider_retries_total', help: 'Provider deliveries retried, by transport.', labelNames: ['transport'], registers });
    this.#latency = new Histogram({
      name: 'notify_delivery_seconds',
      help: 'Time from a publish to its report.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({ name: 'notify_sessions', help: 'Live WebSocket sessions bound to a uid.', registers, collect() { this.set(gauges.sessions()); } });
    new Gauge({ name: 'notify_uids_online', help: 'Uids with at least one live session.', registers, collect() { this.set(gauges.uids()); } });
    new Gauge({ name: 'notify_store_messages', help: 'Rows in the message store.', registers, collect() { this.set(gauges.storeRows()); } });
  }

  #child(key: string, make: () => { inc(): void }): { inc(): void } {
    let c = this.#bound.get(key);
    if (c === undefined) this.#bound.set(key, (c = make()));
    return c;
  }

  refused(limit: LimitName): void {
    this.#child(`r\0${limit}`, () => this.#refusals.labels(limit)).inc();
  }

  published(via: string): void {
    this.#child(`p\0${via}`, () => this.#published.labels(via)).inc();
  }

  delivered(transport: string, status: string): void {
    this.#child(`d\0${transport}\0${status}`, () => this.#delivered.labels(transport, status)).inc();
  }

  retried(transport: string): void {
    this.#child(`t\0${transport}`, () => this.#retries.labels(transport)).inc();
  }

  reported(seconds: number): void {
    this.#latency.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

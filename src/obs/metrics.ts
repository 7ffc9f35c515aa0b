import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

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
 * Prometheus metrics (prom-client), served at GET /metrics. The hot path counts into plain
 * numbers (a map lookup and an add, no label hashing or validation); prom-client reads them
 * when Prometheus scrapes (`collect`), and the latency histogram is kept as bucket counts.
 */
export class Metrics implements Telemetry {
  readonly registry = new Registry();
  readonly #byLimit = new Map<string, number>();
  readonly #byVia = new Map<string, number>();
  readonly #byTransport = new Map<string, Map<string, number>>();
  readonly #retriedBy = new Map<string, number>();
  readonly #latency = new BucketHistogram('notify_delivery_seconds', 'Time from a publish to its report.', [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  ]);

  constructor(gauges: Gauges) {
    const registers = [this.registry];
    // prom-client names them process_* and nodejs_*: notify_process_cpu_seconds_total, …
    collectDefaultMetrics({ register: this.registry, prefix: 'notify_' });
    const byLimit = this.#byLimit;
    const byVia = this.#byVia;
    const byTransport = this.#byTransport;
    const retriedBy = this.#retriedBy;
    new Counter({
      name: 'notify_limit_refusals_total',
      help: 'Refusals, by the limit (or check) that refused.',
      labelNames: ['limit'],
      registers,
      collect() {
        this.reset();
        for (const [limit, n] of byLimit) this.inc({ limit }, n);
      },
    });
    new Counter({
      name: 'notify_messages_in_total',
      help: 'Messages published, by ingress.',
      labelNames: ['via'],
      registers,
      collect() {
        this.reset();
        for (const [via, n] of byVia) this.inc({ via }, n);
      },
    });
    new Counter({
      name: 'notify_deliveries_total',
      help: 'Deliveries to one target, by transport and result (sent, failed, rejected).',
      labelNames: ['transport', 'result'],
      registers,
      collect() {
        this.reset();
        for (const [transport, results] of byTransport) for (const [result, n] of results) this.inc({ transport, result }, n);
      },
    });
    new Counter({
      name: 'notify_provider_retries_total',
      help: 'Provider deliveries retried, by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        this.reset();
        for (const [transport, n] of retriedBy) this.inc({ transport }, n);
      },
    });
    this.registry.registerMetric(this.#latency as unknown as Parameters<Registry['registerMetric']>[0]);
    new Gauge({ name: 'notify_sessions', help: 'Live WebSocket sessions bound to a uid.', registers, collect() { this.set(gauges.sessions()); } });
    new Gauge({ name: 'notify_uids_online', help: 'Uids with at least one live session.', registers, collect() { this.set(gauges.uids()); } });
    new Gauge({ name: 'notify_store_messages', help: 'Rows in the message store.', registers, collect() { this.set(gauges.storeRows()); } });
  }

  refused(limit: LimitName): void {
    this.#byLimit.set(limit, (this.#byLimit.get(limit) ?? 0) + 1);
  }

  published(via: string): void {
    this.#byVia.set(via, (this.#byVia.get(via) ?? 0) + 1);
  }

  delivered(transport: string, status: string): void {
    let results = this.#byTransport.get(transport);
    if (results === undefined) this.#byTransport.set(transport, (results = new Map()));
    results.set(status, (results.get(status) ?? 0) + 1);
  }

  retried(transport: string): void {
    this.#retriedBy.set(transport, (this.#retriedBy.get(transport) ?? 0) + 1);
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


/**
 * A histogram without labels, kept as bucket counts (an observation is a short loop and two
 * adds) and shown to prom-client's registry in its own metric shape.
 */
class BucketHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.#counts = new Float64Array(buckets.length);
  }

  observe(v: number): void {
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= (b[i] as number)) {
        this.#counts[i] = (this.#counts[i] as number) + 1;
        break;
      }
    }
    this.#sum += v;
    this.#count++;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const values = [];
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += this.#counts[i] as number;
      values.push({ labels: { le: this.buckets[i] as number }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    values.push({ labels: { le: '+Inf' }, value: this.#count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.#sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.#count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

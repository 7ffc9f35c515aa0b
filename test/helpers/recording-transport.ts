import type { LiveSessions, Transport } from '../../src/push/transport.js';
import type { DeliveryResult, Message, Uid } from '../../src/types.js';
import type { TargetIndex } from '../../src/store/target-index.js';

export type Behaviour = 'send' | 'reject' | 'throw' | 'hang' | 'hang-ignoring-signal';

/** A test Transport that reaches the uids its index holds; subclasses say how they deliver. */
export abstract class IndexedTransport implements Transport {
  constructor(
    readonly name: string,
    readonly index: TargetIndex,
  ) {}

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  canReach(uid: Uid): boolean {
    return this.index.has(uid);
  }

  abstract deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]>;
}

/**
 * A Transport for dispatcher tests (centrifuge's TestBroker): it reaches the uids its index
 * holds, records every call and behaves as told per uid.
 */
export class RecordingTransport extends IndexedTransport {
  readonly calls: { uid: Uid; msg: Message; signal: AbortSignal }[] = [];
  readonly behaviour = new Map<Uid, Behaviour>();
  /** Results to return for a uid instead of one `sent` per target. */
  readonly canned = new Map<Uid, DeliveryResult[]>();
  /** Called at the start of every deliver(), before the behaviour applies. */
  onDeliver: ((uid: Uid) => Promise<void> | void) | undefined;

  override deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    this.calls.push({ uid, msg, signal });
    const b = this.behaviour.get(uid) ?? 'send';
    if (b === 'throw') throw new Error(`${this.name} exploded`);
    return (async () => {
      await this.onDeliver?.(uid);
      if (b === 'reject') throw new Error(`${this.name} is down`);
      if (b === 'hang-ignoring-signal') return new Promise<DeliveryResult[]>(() => {});
      if (b === 'hang') {
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
      }
      return (
        this.canned.get(uid) ??
        this.index.targets(uid).map((target): DeliveryResult => ({ transport: this.name, target, status: 'sent' }))
      );
    })();
  }
}

/**
 * A RecordingTransport whose targets are live sessions (it has the LiveSessions capability, so
 * live-first tries it first): the targets in `byAck` confirm receipt with acks, the others on write.
 */
export class LiveRecordingTransport extends RecordingTransport implements LiveSessions {
  readonly byAck = new Set<string>();

  confirmsByAck(target: string): boolean {
    return this.byAck.has(target);
  }
}

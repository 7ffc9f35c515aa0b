import { randomBytes } from 'node:crypto';
import type { HistoryPage, HistoryQuery, MessageStreams, Publication, StreamMessage } from './stream.js';

/**
 * Message streams in this process's memory: lost when it exits (a new epoch at each start).
 * For tests and for a node that keeps no history on disk.
 */
export class MemoryStreams implements MessageStreams {
  readonly #o: { size: number; ttlMs: number; now: () => number };
  readonly #epoch = randomBytes(8).toString('hex');
  readonly #streams = new Map<string, { next: number; pubs: (Publication & { expiresAt: number })[] }>();
  #at = 0;
  #size = 0;

  constructor(opts: { size: number; ttlMs: number; now?: () => number }) {
    this.#o = { now: Date.now, ...opts };
  }

  get size(): number {
    return this.#size;
  }

  publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]> {
    const expiresAt = this.#o.now() + Math.min(msg.ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const out: Publication[] = [];
    for (const stream of streams) {
      let s = this.#streams.get(stream);
      if (s === undefined) this.#streams.set(stream, (s = { next: 1, pubs: [] }));
      const pub = { stream, offset: s.next++, epoch: this.#epoch, at: ++this.#at, id: msg.id, frame: msg.frame, json: msg.json };
      s.pubs.push({ expiresAt, ...pub });
      this.#size++;
      if (s.pubs.length > this.#o.size) {
        s.pubs.shift();
        this.#size--;
      }
      out.push(pub);
    }
    return Promise.resolve(out);
  }

  history(stream: string, q: HistoryQuery): HistoryPage {
    const s = this.#streams.get(stream);
    const top = { offset: s === undefined ? 0 : s.next - 1, epoch: this.#epoch };
    if (s === undefined) return { publications: [], top };
    const now = this.#o.now();
    const after = q.after !== undefined && q.after.epoch === this.#epoch ? q.after.offset : 0;
    const afterAt = q.afterAt ?? 0;
    const publications: Publication[] = [];
    for (const p of s.pubs) {
      if (publications.length >= q.limit) break;
      if (p.offset <= after || p.at <= afterAt || p.expiresAt <= now) continue;
      const { expiresAt: _e, ...pub } = p;
      publications.push(pub);
    }
    return { publications, top };
  }

  locate(stream: string, id: string): Publication | undefined {
    const pubs = this.#streams.get(stream)?.pubs ?? [];
    for (let i = pubs.length - 1; i >= 0; i--) {
      const p = pubs[i] as Publication & { expiresAt: number };
      if (p.id === id) {
        const { expiresAt: _e, ...pub } = p;
        return pub;
      }
    }
    return undefined;
  }

  follow(): void {}
  unfollow(): void {}
  onRemote(): void {}
  close(): void {}
}

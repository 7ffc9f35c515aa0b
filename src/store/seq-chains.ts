/** Seqs per chunk: a chunk is 256 KiB, written in order (its pages reach the RSS as rows come). */
const CHUNK = 65_536;

/** The largest gap a link holds (a Uint32); a row further back ends the chain. */
const MAX_GAP = 0xffff_ffff;

/**
 * The rows of many streams in one append-only log, as chains: for each row (by its seq in the
 * log), the seq of the row before it in the same stream. A stream then needs only its newest
 * seq and its row count, and the whole index is 4 bytes per row in typed arrays outside the
 * JavaScript heap: no per-stream array to grow, copy and leave to the garbage collector (which
 * promoted every copy under a push load), and a bound of 4 bytes per row the store keeps.
 *
 * A link is the gap back to the previous row (0: none) in chunks of CHUNK seqs; `dropUpTo`
 * frees the chunks of rows the log has deleted. A gap wider than 2^32 - 1 is stored as none: the
 * caller ends the stream's chain there (such a row is older than any log keeps).
 */
export class SeqChains {
  readonly #chunks: (Uint32Array | undefined)[] = [];
  /** The chunk number of #chunks[0]. */
  #base = 0;

  /** Links `seq` to the row before it in its stream (`prev` 0: none). Returns false when the gap is too wide to link (the chain starts again at `seq`). */
  append(seq: number, prev: number): boolean {
    const n = Math.floor(seq / CHUNK);
    if (this.#chunks.length === 0) this.#base = n;
    const i = n - this.#base;
    if (i < 0) throw new RangeError(`seq ${seq} is older than the chains kept`);
    while (this.#chunks.length <= i) this.#chunks.push(undefined);
    let chunk = this.#chunks[i];
    if (chunk === undefined) this.#chunks[i] = chunk = new Uint32Array(CHUNK);
    const gap = prev === 0 ? 0 : seq - prev;
    const linked = gap > 0 && gap <= MAX_GAP;
    chunk[seq - n * CHUNK] = linked ? gap : 0;
    return linked || prev === 0;
  }

  /** The seq of the row before `seq` in its stream, 0 if none (or freed). */
  prev(seq: number): number {
    const n = Math.floor(seq / CHUNK);
    const gap = this.#chunks[n - this.#base]?.[seq - n * CHUNK] ?? 0;
    return gap === 0 ? 0 : seq - gap;
  }

  /** Frees the links of every seq up to `cutoff` (rows the log no longer has); whole chunks only. */
  dropUpTo(cutoff: number): void {
    // Chunks base .. n - 1 hold only seqs up to the cutoff.
    const n = Math.floor((cutoff + 1) / CHUNK);
    const k = Math.min(this.#chunks.length, n - this.#base);
    if (k <= 0) return;
    this.#chunks.splice(0, k);
    this.#base += k;
  }

  /** Bytes held by the chunks. */
  get bytes(): number {
    let n = 0;
    for (const c of this.#chunks) if (c !== undefined) n += c.byteLength;
    return n;
  }
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeqChains } from '../../src/store/seq-chains.js';

// The history index's links (src/store/seq-chains.ts): each row's seq points back to the row
// before it in its stream; chunks of 65,536 seqs in typed arrays, freed by range.

const CHUNK = 65_536;

test('seq chains: interleaved streams each walk back to their own rows, across chunk boundaries', () => {
  const c = new SeqChains();
  const newest = [0, 0, 0];
  // Three streams taking turns over three chunks' worth of seqs (and one stream skipping ahead).
  for (let seq = 1; seq <= 3 * CHUNK + 10; seq++) {
    const k = seq % 3;
    assert.equal(c.append(seq, newest[k] as number), true);
    newest[k] = seq;
  }
  for (let k = 0; k < 3; k++) {
    let seq = newest[k] as number;
    let n = 1;
    while (c.prev(seq) !== 0) {
      const p = c.prev(seq);
      assert.equal(seq - p, 3, `stream ${k}: ${seq} links to ${p}`);
      seq = p;
      n++;
    }
    assert.equal(seq, k === 0 ? 3 : k, `stream ${k} walks back to its first row`);
    assert.equal(n, Math.floor((3 * CHUNK + 10 - (k === 0 ? 3 : k)) / 3) + 1);
  }
  assert.equal(c.bytes, 4 * CHUNK * 4, 'four chunks of 4-byte links');
});

test('seq chains: dropUpTo frees whole chunks only; a link into a freed chunk still reads, a freed row reads as none', () => {
  const c = new SeqChains();
  c.append(10, 0);
  c.append(CHUNK + 5, 10);
  c.append(2 * CHUNK + 7, CHUNK + 5);
  c.dropUpTo(CHUNK - 2);
  assert.equal(c.bytes, 3 * CHUNK * 4, 'a chunk with a seq past the cutoff stays');
  assert.equal(c.prev(CHUNK + 5), 10);
  c.dropUpTo(CHUNK - 1);
  assert.equal(c.bytes, 2 * CHUNK * 4, 'the first chunk is freed once the cutoff covers it');
  assert.equal(c.prev(10), 0, 'a freed row has no link');
  assert.equal(c.prev(CHUNK + 5), 10, "a kept row's link back into a freed chunk is still its seq");
  assert.equal(c.prev(2 * CHUNK + 7), CHUNK + 5);
  c.dropUpTo(10 * CHUNK);
  assert.equal(c.bytes, 0);
  // After everything was freed, chains start again further on.
  assert.equal(c.append(20 * CHUNK + 1, 0), true);
  assert.equal(c.append(20 * CHUNK + 3, 20 * CHUNK + 1), true);
  assert.equal(c.prev(20 * CHUNK + 3), 20 * CHUNK + 1);
  assert.equal(c.bytes, CHUNK * 4, 'only the chunk in use');
  assert.throws(() => c.append(CHUNK, 0), /older than the chains kept/);
});

test('seq chains: a gap wider than a link holds is not linked (append says so)', () => {
  const c = new SeqChains();
  assert.equal(c.append(5, 0), true);
  const far = 5 + 0xffff_ffff + 1;
  assert.equal(c.append(far, 5), false, 'a gap of 2^32 does not fit in a link');
  assert.equal(c.prev(far), 0, 'the chain starts again there');
  assert.equal(c.append(far + 1, far), true);
  assert.equal(c.prev(far + 1), far);
});

import { randomBytes } from 'node:crypto';

/**
 * One client WebSocket frame, masked with a random key. `mask: false` (RFC 6455 section 5.1),
 * `rsv` and `fin: false` let a test break the rules on purpose.
 */
export function wsFrame(opcode: number, payload: Buffer, opts: { mask?: boolean; rsv?: number; fin?: boolean } = {}): Buffer {
  const mask = opts.mask ?? true;
  const b0 = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode;
  let lenBytes: Buffer;
  if (payload.length < 126) lenBytes = Buffer.from([(mask ? 0x80 : 0) | payload.length]);
  else if (payload.length < 65536) {
    lenBytes = Buffer.alloc(3);
    lenBytes[0] = (mask ? 0x80 : 0) | 126;
    lenBytes.writeUInt16BE(payload.length, 1);
  } else {
    lenBytes = Buffer.alloc(9);
    lenBytes[0] = (mask ? 0x80 : 0) | 127;
    lenBytes.writeBigUInt64BE(BigInt(payload.length), 1);
  }
  if (!mask) return Buffer.concat([Buffer.from([b0]), lenBytes, payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from([b0]), lenBytes, key, masked]);
}

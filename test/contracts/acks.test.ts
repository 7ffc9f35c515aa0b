import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import { ackRelayContract } from './acks.contract.js';

ackRelayContract('MemoryAckRelay', () => new MemoryAckRelay());

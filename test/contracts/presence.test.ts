import { MemoryPresence } from '../../src/store/presence-memory.js';
import { MemoryTargetIndex } from '../../src/store/target-index.js';
import { presenceContract } from './presence.contract.js';

presenceContract('MemoryPresence', (_t, node) => new MemoryPresence(new MemoryTargetIndex(), node));

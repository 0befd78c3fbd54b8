import { createHash } from 'node:crypto';

/**
 * Content-defined chunking (FastCDC-style gear hash with normalised chunking).
 *
 * Cut points depend only on the bytes, so an insertion early in a dump shifts the chunks
 * after it instead of changing all of them, and unchanged regions dedup between backups.
 * The gear table is derived from a per-repository seed (repo.json), which keeps chunk
 * boundaries from being predictable across repositories.
 */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
  seed: string;
}

export const DEFAULT_CHUNKER: Omit<ChunkerParams, 'seed'> = {
  minSize: 256 * 1024,
  avgSize: 1024 * 1024,
  maxSize: 4 * 1024 * 1024,
};

function gearTable(seed: string): Int32Array {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i += 8) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    for (let j = 0; j < 8; j++) table[i + j] = block.readInt32LE(j * 4);
  }
  return table;
}

/** A mask with `bits` one-bits at the top of a 32-bit word: top bits mix the most history. */
function topBitsMask(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

export class Chunker {
  private readonly gear: Int32Array;
  private readonly minSize: number;
  private readonly normalSize: number;
  private readonly maxSize: number;
  private readonly maskHard: number;
  private readonly maskEasy: number;
  /** Bytes of the chunk being built; never more than maxSize. */
  private readonly buffer: Buffer;
  /** The same memory as a plain Uint8Array: V8 indexes it faster than a Buffer subclass. */
  private readonly bytes: Uint8Array;
  private filled = 0;
  private scanned = 0;
  private hash = 0;

  constructor(params: ChunkerParams) {
    if (!(params.minSize > 0 && params.minSize < params.avgSize && params.avgSize < params.maxSize)) {
      throw new Error(`invalid chunker sizes ${params.minSize}/${params.avgSize}/${params.maxSize}`);
    }
    this.gear = gearTable(params.seed);
    this.minSize = params.minSize;
    this.normalSize = params.avgSize;
    this.maxSize = params.maxSize;
    const bits = Math.round(Math.log2(params.avgSize - params.minSize));
    this.maskHard = topBitsMask(bits + 2);
    this.maskEasy = topBitsMask(bits - 2);
    this.buffer = Buffer.allocUnsafe(params.maxSize);
    this.bytes = new Uint8Array(this.buffer.buffer, this.buffer.byteOffset, this.buffer.length);
  }

  /**
   * Feeds bytes; yields each chunk they complete as a view of the chunker's own buffer,
   * valid until the generator is resumed (copy it to keep it): no chunk is allocated.
   */
  *push(data: Uint8Array): Generator<Buffer> {
    let offset = 0;
    while (offset < data.length) {
      const take = Math.min(data.length - offset, this.maxSize - this.filled);
      this.buffer.set(data.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      let cut = this.findCut();
      while (cut > 0) {
        yield this.buffer.subarray(0, cut);
        this.buffer.copy(this.buffer, 0, cut, this.filled);
        this.filled -= cut;
        this.scanned = 0;
        this.hash = 0;
        cut = this.findCut();
      }
    }
  }

  /** The last, possibly short, chunk (or nothing), as a view valid until the next push. */
  finish(): Buffer | undefined {
    if (this.filled === 0) return undefined;
    const last = this.buffer.subarray(0, this.filled);
    this.filled = 0;
    this.scanned = 0;
    this.hash = 0;
    return last;
  }

  /** Scans new bytes for a cut point; returns its length, or 0 if more bytes are needed. */
  private findCut(): number {
    const { bytes, gear, maskHard, maskEasy, filled } = this;
    if (filled >= this.maxSize && this.scanned >= this.maxSize) return this.maxSize;
    let i = Math.max(this.scanned, this.minSize);
    let hash = this.hash;
    const normalEnd = Math.min(this.normalSize, filled);
    for (; i < normalEnd; i++) {
      hash = ((hash << 1) + gear[bytes[i]!]!) | 0;
      if ((hash & maskHard) === 0) return i + 1;
    }
    const end = Math.min(this.maxSize, filled);
    for (; i < end; i++) {
      hash = ((hash << 1) + gear[bytes[i]!]!) | 0;
      if ((hash & maskEasy) === 0) return i + 1;
    }
    this.hash = hash;
    this.scanned = i;
    return filled >= this.maxSize ? this.maxSize : 0;
  }
}

import { BackupWriter, type ChunkIndex, type StoredArtifact, type WriterStats } from '../../src/repository/backup-writer.ts';
import type { Repository } from '../../src/repository/repository.ts';

const noChunks: ChunkIndex = { lookup: () => undefined };

/**
 * Stores `input` as one artifact of `chain` through a writer of its own, whose write threads
 * are stopped afterwards (no manifest: the chunks alone, as a test needs them).
 */
export async function storeData(repo: Repository, chain: string, input: AsyncIterable<Uint8Array>, options: { compressionLevel: number; index?: ChunkIndex; threads?: number }): Promise<{ stored: StoredArtifact; stats: WriterStats }> {
  const writer = new BackupWriter(repo, chain, options.index ?? noChunks, { compressionLevel: options.compressionLevel, threads: options.threads });
  try {
    return { stored: await writer.storeArtifact(input), stats: writer.stats };
  } finally {
    await writer.close();
  }
}

/** One buffer as a stream of one piece. */
export async function* onePiece(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

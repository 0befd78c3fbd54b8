/**
 * Frees the memory behind Buffers that are no longer used, now, instead of at the thread's
 * next garbage collection. V8 collects external memory only after some 64 MiB more of it
 * was allocated, so a thread that makes and drops a few MiB per chunk would otherwise hold
 * up to that much garbage (per thread) and pay a full collection for every 64 MiB.
 *
 * The caller promises that nothing reads these Buffers or any other view of their memory
 * afterwards: it detaches the whole ArrayBuffer (ArrayBuffer.prototype.transfer), and every
 * view of it reads as empty from then on. Only Buffers that own their memory qualify: the
 * ones Node slices out of its shared pool (Buffer.poolSize, for small sizes) and views of
 * shared memory are left alone.
 */
export function releaseMemory(...buffers: readonly Uint8Array[]): void {
  for (const buffer of buffers) {
    const memory = buffer.buffer;
    if (memory instanceof ArrayBuffer && !memory.detached && memory.byteLength > Buffer.poolSize) memory.transfer(0);
  }
}

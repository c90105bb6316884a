/**
 * Chunks that are views of memory someone will write again once the chunk
 * is given back: a zstd worker's output slot (zstd-worker-pool.ts), lent to
 * a transfer so that 16 MiB of decoded WAL a segment is neither copied nor
 * left to the collector. Only a transfer whose every stage gives back what
 * it is done with borrows them (get-wal.ts): the verifier, which passes each
 * chunk on unchanged, and the channel sink, once ssh2 has copied the chunk
 * into its packets. A chunk nobody gives back keeps its memory from being
 * written again for good: the lender then retires that memory instead of reusing it.
 * Lent chunks must be read one by one, as pipe() and pipeline() do: read()
 * in paused mode may join buffered chunks into a new Buffer, which nobody
 * can give back.
 */
const lenders = new WeakMap<Uint8Array, () => void>();

export function lend(chunk: Buffer, giveBack: () => void): Buffer {
  lenders.set(chunk, giveBack);
  return chunk;
}

/** Done with `chunk`: its memory may be written again. Nothing for a chunk that was not lent, or already given back. */
export function giveBack(chunk: Uint8Array): void {
  const lender = lenders.get(chunk);
  if (!lender) return;
  lenders.delete(chunk);
  lender();
}

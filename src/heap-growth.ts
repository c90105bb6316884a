import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets its old generation grow past the live size before the next
 * full collection: 300% is 4x live, the largest factor V8 picks on its own.
 *
 * Sending a 16 MiB segment allocates about 32 MiB of Buffers (ssh2 allocates
 * one per 32 KiB packet, and each decoded chunk is copied out of the zstd
 * worker's shared slots). With walhub's small heap (about 9 MB live), V8's
 * adaptive factor kept its limit so close to the live size that this churn
 * started a mark-compact about twice per segment (27-33 per 16 segments),
 * a fifth to a quarter of the hub's CPU, on the event loop and on V8's
 * helper threads. With this factor: 13-14, and 75-94 -> 67-72 ms of CPU per
 * segment (16 consecutive fetches through one ControlMaster, cache off). The
 * price is garbage that waits longer: peak RSS with 16 streams at once moved
 * by less than its noise (about 10 MiB).
 *
 * V8 reads the flag each time it sets a limit, so setting it at start-up,
 * before any stream, is enough. Process-wide, for the zstd workers too, whose
 * heaps stay within their own resourceLimits.
 */
const HEAP_GROWING_PERCENT = 300;

export function growHeapForBuffers(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

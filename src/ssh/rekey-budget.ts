/**
 * How often one logged-in connection may make walhub run a key exchange
 * again. Each one costs the event loop about 2 ms (a curve25519 exchange, a
 * host-key signature, key derivation: 8 connections re-keying in a loop took
 * 37% of a core), and a client may ask for one at any time (RFC 4253 9).
 * OpenSSH clients re-key by volume: after 1 GiB with chacha20-poly1305 and
 * 64 GiB with AES by default, or as `RekeyLimit` says (hardening guides set
 * 256M-1G; OpenSSH accepts less). A bucket of 4, refilled one every 2 s and
 * one per 16 MiB the connection carried, never stops a client re-keying every
 * 16 MiB at any speed, costs walhub at most one exchange per 16 MiB sent
 * (about 5% on top of sending it), and holds a client that re-keys in a loop
 * without fetching to 0.5 a second.
 *
 * Before login there is no budget at all: no client has a reason to re-key
 * there, and each exchange would be one more that a client without a key
 * gets for its one connection.
 */
export const REKEY_BURST = 4;
export const REKEY_REFILL_MS = 2_000;
export const REKEY_REFILL_BYTES = 16 * 1024 * 1024;

/** A token bucket over re-exchanges: take() answers whether one more is allowed now. */
export class RekeyBudget {
  private tokens = REKEY_BURST;

  /** `bytes`: what the connection has carried so far, both ways (its socket's counters). */
  constructor(
    private updatedAt: number,
    private bytesAt = 0,
  ) {}

  take(now: number, bytes = this.bytesAt): boolean {
    const earned = Math.max(0, now - this.updatedAt) / REKEY_REFILL_MS + Math.max(0, bytes - this.bytesAt) / REKEY_REFILL_BYTES;
    this.tokens = Math.min(REKEY_BURST, this.tokens + earned);
    this.updatedAt = now;
    this.bytesAt = Math.max(this.bytesAt, bytes);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

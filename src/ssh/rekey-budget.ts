/**
 * How often one connection may make walhub run a key exchange again. Each
 * one costs the event loop about 2 ms (a curve25519 exchange, a host-key
 * signature, key derivation: 8 unauthenticated connections re-keying in a
 * loop took 37% of a core), and a client may ask for one at any time, before
 * login too (RFC 4253 9). OpenSSH clients re-key after 1 GiB with
 * chacha20-poly1305 and 64 GiB with AES (RekeyLimit's default): at walhub's
 * rates, once every few seconds at the most. A bucket of 4, refilled one
 * every 2 s, never stops them, and holds a looping client to 0.5 a second.
 */
export const REKEY_BURST = 4;
export const REKEY_REFILL_MS = 2_000;

/** A token bucket over re-exchanges: take() answers whether one more is allowed now. */
export class RekeyBudget {
  private tokens = REKEY_BURST;

  constructor(private updatedAt: number) {}

  take(now: number): boolean {
    const earned = Math.max(0, now - this.updatedAt) / REKEY_REFILL_MS;
    this.tokens = Math.min(REKEY_BURST, this.tokens + earned);
    this.updatedAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

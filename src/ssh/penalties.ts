/**
 * PerSourcePenalties, after OpenSSH 9.8: a source whose connections fail to
 * log in collects penalty time, and is refused at accept while its penalty
 * runs, once it has reached `min`. Each failure adds to what is left, up to
 * `max` from now, so a source that keeps failing stays shut out and one that
 * stops is let back in after at most `max`.
 */
export interface PenaltyPolicy {
  readonly min: number;
  readonly max: number;
  /** How long a login from a source keeps it exempt: a standby is never shut out for its neighbours' failures. */
  readonly exemptFor: number;
  /** Sources tracked at once; past it the oldest entry is forgotten (sshd's max-sources, overflow permissive). */
  readonly maxSources: number;
}

interface Penalty {
  until: number;
  /** Reached `min` at some point: enforced from then until it runs out. */
  active: boolean;
  /** Refusals at accept since the penalty started being enforced. */
  refused: number;
}

export type PenaltyCheck = { readonly refused: false } | { readonly refused: true; readonly first: boolean; readonly remainingMs: number };

export class PenaltyBox {
  private readonly penalties = new Map<string, Penalty>();
  /** source -> when a key that is still authorized last logged in from it, and which key. */
  private readonly logins = new Map<string, { at: number; key: string }>();

  constructor(
    private readonly policy: PenaltyPolicy,
    private readonly isKeyAuthorized: (key: string) => boolean,
    // Monotonic: a wall clock stepped back would stretch every running penalty past `max`.
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A failure from `source` worth `ms`; ignored while a login from there still vouches for it. */
  penalize(source: string, ms: number): void {
    const now = this.now();
    if (ms === 0 || this.isExempt(source, now)) return;
    const current = this.penalties.get(source);
    const base = current && current.until > now ? current.until : now;
    const until = Math.min(base + ms, now + this.policy.max);
    const active = until - now >= this.policy.min;
    if (current && current.until > now) {
      current.until = until;
      current.active ||= active;
    } else remember(this.penalties, source, { until, active, refused: 0 }, this.policy.maxSources);
  }

  /** Whether a new connection from `source` is refused now; `first` is true once per penalty period. */
  check(source: string): PenaltyCheck {
    const penalty = this.penalties.get(source);
    if (!penalty) return { refused: false };
    const now = this.now();
    const remainingMs = penalty.until - now;
    if (remainingMs <= 0) {
      this.penalties.delete(source);
      return { refused: false };
    }
    // Below min a few failures are forgiven: a standby with a stale second key, a restart.
    if (!penalty.active) return { refused: false };
    penalty.refused++;
    return { refused: true, first: penalty.refused === 1, remainingMs };
  }

  /** A verified login by `key` (its blob) from `source`: clears the source's penalty and exempts it for a while. */
  recordLogin(source: string, key: string): void {
    this.penalties.delete(source);
    remember(this.logins, source, { at: this.now(), key }, this.policy.maxSources);
  }

  private isExempt(source: string, now: number): boolean {
    const login = this.logins.get(source);
    if (!login) return false;
    if (now - login.at <= this.policy.exemptFor && this.isKeyAuthorized(login.key)) return true;
    this.logins.delete(source);
    return false;
  }
}

/** Map insertion order is age order: re-insert to refresh, drop the oldest past the bound. */
function remember<V>(map: Map<string, V>, key: string, value: V, bound: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > bound) map.delete(map.keys().next().value!);
}

/**
 * PerSourcePenalties, after OpenSSH 9.8: a source whose connections fail to
 * log in collects penalty time, and is refused at accept while its penalty
 * runs, once it has reached `min`. Each failure adds to what is left, up to
 * `max` from now, so a source that keeps failing stays shut out and one that
 * stops is let back in after at most `max`.
 *
 * A source a standby logged in from (a NAT, a balancer without the PROXY
 * protocol) is never refused for its neighbours' failures: refusing it would
 * shut the standby out. It is slowed instead: each key exchange without a
 * login adds `slowStep` to its penalty, and past `min` each new connection
 * from it waits before walhub answers, at most `slowMax` (the penalty is
 * capped at `min + slowMax` there). What a client behind it makes walhub
 * spend on key exchanges is then bounded by the per-source caps divided by
 * that wait, and the standby's connections wait at most that long, only
 * while the exchanges keep coming faster than one a `slowStep`.
 */
export interface PenaltyPolicy {
  readonly min: number;
  readonly max: number;
  /** How long a login from a source keeps it exempt: a standby is never shut out for its neighbours' failures. */
  readonly exemptFor: number;
  /** The longest an exempt source's connection waits before it is answered. */
  readonly slowMax: number;
  /** What one key exchange without a login adds to an exempt source's penalty. */
  readonly slowStep: number;
  /** Sources tracked at once; past it the oldest entry is forgotten (sshd's max-sources, overflow permissive). */
  readonly maxSources: number;
}

interface Penalty {
  until: number;
  /** Reached `min` at some point: enforced from then until it runs out. */
  active: boolean;
  /** Refusals at accept since the penalty started being enforced. */
  refused: number;
  /** When a slowed connection was last reported (`first`): at most once a SLOW_NOTE_MS. */
  slowNotedAt: number;
}

/** How often slowing a source is reported, at most. */
const SLOW_NOTE_MS = 60_000;

export type PenaltyCheck =
  | { readonly refused: false; readonly slowMs?: undefined }
  /** An exempt source's connection: answered after `slowMs`; `first` at most once a minute, to be reported. */
  | { readonly refused: false; readonly slowMs: number; readonly first: boolean }
  | { readonly refused: true; readonly first: boolean; readonly remainingMs: number };

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

  /**
   * A failure from `source` worth `ms`. While a login from there vouches for
   * it, what counts is walhub's work, not the failure's kind: `slowStep` for a
   * failure that cost a key exchange (`keyExchange`), nothing for one that did
   * not (a socket that never sent its ident line), so that slowing starts
   * only past a sustained exchange a `slowStep`, never for a neighbour's odd
   * failed login or idle socket.
   */
  penalize(source: string, ms: number, { keyExchange, listed = false }: { keyExchange: boolean; listed?: boolean }): void {
    const now = this.now();
    if (ms === 0) return;
    const exempt = listed || this.isExempt(source, now);
    if (exempt) {
      if (!keyExchange) return;
      ms = this.policy.slowStep;
    }
    const current = this.penalties.get(source);
    const base = current && current.until > now ? current.until : now;
    const until = Math.min(base + ms, now + (exempt ? this.policy.min + this.policy.slowMax : this.policy.max));
    const active = !exempt && until - now >= this.policy.min;
    if (current && current.until > now) {
      current.until = until;
      current.active ||= active;
    } else remember(this.penalties, source, { until, active, refused: 0, slowNotedAt: -Infinity }, this.policy.maxSources);
  }

  /**
   * Whether a new connection from `source` is refused now; `first` is true
   * once per penalty period. `listed`: in penalty_exempt, exempt as a source
   * a standby logged in from is.
   */
  check(source: string, { listed = false }: { listed?: boolean } = {}): PenaltyCheck {
    const penalty = this.penalties.get(source);
    if (!penalty) return { refused: false };
    const now = this.now();
    const remainingMs = penalty.until - now;
    if (remainingMs <= 0) {
      this.penalties.delete(source);
      return { refused: false };
    }
    if (listed || this.isExempt(source, now)) {
      const slowMs = Math.min(this.policy.slowMax, remainingMs - this.policy.min);
      if (slowMs <= 0) return { refused: false };
      // A neighbour hovering about the threshold would start a stretch every few seconds: one line a minute.
      const first = now - penalty.slowNotedAt >= SLOW_NOTE_MS;
      if (first) penalty.slowNotedAt = now;
      return { refused: false, slowMs, first };
    }
    // Below min a few failures are forgiven: a standby with a stale second key, a restart.
    if (!penalty.active) return { refused: false };
    penalty.refused++;
    return { refused: true, first: penalty.refused === 1, remainingMs };
  }

  /**
   * A verified login by `key` (its blob) from `source`: exempts it for a
   * while, and clears its penalty unless it was exempt already (then the
   * failures are a neighbour's, who would otherwise get a fresh allowance
   * with every login of the standby).
   */
  recordLogin(source: string, key: string): void {
    const now = this.now();
    if (!this.isExempt(source, now)) this.penalties.delete(source);
    remember(this.logins, source, { at: now, key }, this.policy.maxSources);
  }

  /** Whether a login from `source` vouches for it now (see recordLogin). */
  exempts(source: string): boolean {
    return this.isExempt(source, this.now());
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

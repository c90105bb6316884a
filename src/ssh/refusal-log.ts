import type { Logger } from 'pino';

/** How long one source's refusals for one reason share a log line. */
const WINDOW_MS = 60_000;
/** Sources remembered at once: a flood from many addresses must not grow memory without bound. */
const MAX_ENTRIES = 10_000;

/**
 * The one program-log line per refusal at accept that fail2ban matches
 * (etc/fail2ban/filter.d/walhub.conf: the message "connection refused" and
 * the `address` field). A source refused again and again gets one line per
 * reason per minute, with the count of the refusals it stood for, so a flood
 * cannot fill the journal.
 */
export class RefusalLog {
  private readonly recent = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Writes the line unless this source and reason had one within the minute.
   * `balancer`: the address is a trusted balancer's own (a PROXY LOCAL or
   * UNKNOWN connection), written as `proxy` under another message, which
   * fail2ban does not match: banning it would shut out every standby behind it.
   */
  refuse(address: string, source: string, reason: string, { balancer = false, ...extra }: { balancer?: boolean } & Record<string, unknown> = {}): void {
    const key = `${balancer ? 'balancer ' : ''}${source} ${reason}`;
    const now = this.now();
    const last = this.recent.get(key);
    if (last && now - last.at < WINDOW_MS) {
      last.suppressed++;
      return;
    }
    const fields = { ...extra, ...(last?.suppressed ? { suppressed: last.suppressed } : {}) };
    if (balancer) this.log.warn({ proxy: address, reason, ...fields }, 'proxied connection refused');
    else this.write(address, reason, fields);
    this.recent.delete(key);
    this.recent.set(key, { at: now, suppressed: 0 });
    if (this.recent.size > MAX_ENTRIES) this.recent.delete(this.recent.keys().next().value!);
  }

  /** Writes the line unconditionally: the caller already limits it (one per penalty period). */
  write(address: string, reason: string, extra: Record<string, unknown> = {}): void {
    this.log.warn({ address, reason, ...extra }, 'connection refused');
  }
}

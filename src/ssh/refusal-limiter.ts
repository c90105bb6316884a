/**
 * Per source address, at most `perWindow` refused-login records every
 * `windowMs`; the rest are counted and reported once when the window ends.
 * Each connection already writes at most one refused-login record; this bounds
 * what many short connections from one address can write (the audit log sits
 * next to the backups, and a full disk stops them).
 */
export class RefusalLimiter {
  private readonly windows = new Map<string, { startedAt: number; written: number; suppressed: number }>();
  /** Suppressed while the table was full, reported with the next sweep. */
  private overflow = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly report: (address: string, suppressed: number) => void,
    private readonly perWindow = 5,
    private readonly windowMs = 10_000,
    private readonly maxAddresses = 4096,
  ) {}

  /** true: write the record now; false: it was counted for the summary. */
  admit(address: string, now = performance.now()): boolean {
    let window = this.windows.get(address);
    if (!window) {
      if (this.windows.size >= this.maxAddresses) {
        this.overflow++;
        this.armSweeper();
        return false;
      }
      window = { startedAt: now, written: 0, suppressed: 0 };
      this.windows.set(address, window);
      this.armSweeper();
    }
    if (window.written < this.perWindow) {
      window.written++;
      return true;
    }
    window.suppressed++;
    return false;
  }

  /** Ends windows that are over, reporting what each suppressed. One timer for all addresses. */
  private sweep(now = performance.now()): void {
    this.sweeper = undefined;
    for (const [address, window] of this.windows) {
      if (now - window.startedAt < this.windowMs) continue;
      this.windows.delete(address);
      if (window.suppressed > 0) this.report(address, window.suppressed);
    }
    if (this.overflow > 0) {
      this.report('(other addresses)', this.overflow);
      this.overflow = 0;
    }
    if (this.windows.size > 0) this.armSweeper();
  }

  private armSweeper(): void {
    this.sweeper ??= setTimeout(() => this.sweep(), Math.max(1000, this.windowMs / 4)).unref();
  }

  close(): void {
    clearTimeout(this.sweeper);
    this.sweep(Number.POSITIVE_INFINITY);
  }
}

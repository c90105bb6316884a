import { randomInt } from 'node:crypto';
import type { Limits } from '../config.js';

/** Why a new connection is refused before its first byte (the `reason` of its log line). */
export type AdmissionRefusal =
  | 'too many connections from this source'
  | 'too many unauthenticated connections from this source'
  | 'all connection slots are taken by logged-in clients'
  | 'too many unauthenticated connections'
  | 'dropped at random: many unauthenticated connections';

/** One admitted connection's place in the counts; each step happens at most once. */
export interface AdmissionTicket {
  markAuthenticated(): void;
  release(): void;
}

interface SourceCounts {
  unauthenticated: number;
  total: number;
}

/**
 * Counts connections overall and per source, and decides at accept, before
 * walhub spends anything on a socket. Unauthenticated connections are capped
 * per source first, so one host cannot take the room that others need, then
 * overall as sshd's MaxStartups start:rate:full does. Established connections
 * are never dropped to make room.
 */
export class Admission {
  private unauthenticated = 0;
  private authenticated = 0;
  private readonly sources = new Map<string, SourceCounts>();

  constructor(
    private readonly limits: Limits,
    private readonly percentile: () => number = () => randomInt(100),
  ) {}

  check(source: string): AdmissionRefusal | undefined {
    const counts = this.sources.get(source);
    if (counts && counts.total >= this.limits.perSourceMaxConnections) return 'too many connections from this source';
    if (counts && counts.unauthenticated >= this.limits.perSourceMaxStartups) return 'too many unauthenticated connections from this source';
    if (this.authenticated >= this.limits.maxConnections) return 'all connection slots are taken by logged-in clients';
    const { maxStartups: full, startupsDropFrom: start, startupsDropRate: rate } = this.limits;
    if (this.unauthenticated >= full) return 'too many unauthenticated connections';
    if (this.unauthenticated >= start) {
      // Linear from `rate` percent at `start` to 100 at `full`, like sshd.
      const dropPercent = rate + ((100 - rate) * (this.unauthenticated - start)) / (full - start);
      if (this.percentile() < dropPercent) return 'dropped at random: many unauthenticated connections';
    }
    return undefined;
  }

  admit(source: string): AdmissionTicket {
    const counts = this.sources.get(source) ?? { unauthenticated: 0, total: 0 };
    this.sources.set(source, counts);
    counts.total++;
    counts.unauthenticated++;
    this.unauthenticated++;
    let state: 'unauthenticated' | 'authenticated' | 'released' = 'unauthenticated';
    return {
      markAuthenticated: () => {
        if (state !== 'unauthenticated') return;
        state = 'authenticated';
        counts.unauthenticated--;
        this.unauthenticated--;
        this.authenticated++;
      },
      release: () => {
        if (state === 'released') return;
        if (state === 'unauthenticated') {
          counts.unauthenticated--;
          this.unauthenticated--;
        } else this.authenticated--;
        state = 'released';
        counts.total--;
        if (counts.total === 0) this.sources.delete(source);
      },
    };
  }
}

/**
 * PostgreSQL's WAL file names, strictly: upper-case hex as PostgreSQL writes
 * them. Anything else never reaches the file system.
 */
export type WalKind = 'segment' | 'partial' | 'backup' | 'history';

export interface WalName {
  readonly name: string;
  readonly kind: WalKind;
  readonly timeline: number;
  /** For segment-based names: the 8-hex "log" and "seg" fields. */
  readonly log?: number;
  readonly seg?: number;
  /** The 24-hex segment a segment, .partial or .backup name belongs to. */
  readonly segmentName?: string;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.[0-9A-F]{8}\.backup)?$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;

export function parseWalName(text: string): WalName | undefined {
  const history = HISTORY.exec(text);
  if (history) {
    const timeline = parseInt(history[1]!, 16);
    return timeline === 0 ? undefined : { name: text, kind: 'history', timeline };
  }
  const segment = SEGMENT.exec(text);
  if (!segment) return undefined;
  const timeline = parseInt(segment[1]!, 16);
  if (timeline === 0) return undefined;
  const suffix = segment[4];
  const kind: WalKind = suffix === undefined ? 'segment' : suffix === '.partial' ? 'partial' : 'backup';
  return {
    name: text,
    kind,
    timeline,
    log: parseInt(segment[2]!, 16),
    seg: parseInt(segment[3]!, 16),
    segmentName: text.slice(0, 24),
  };
}

/** Barman's hash directory under wals/: the first 16 characters (TLI + log). */
export function toHashDir(wal: WalName): string | undefined {
  return wal.segmentName?.slice(0, 16);
}

/**
 * The segment number the name stands for, given the segment size (which the
 * name alone does not tell: it comes from the file's own long page header).
 */
export function toSegmentNumber(wal: WalName, segmentSize: number): bigint | undefined {
  if (wal.log === undefined || wal.seg === undefined) return undefined;
  const perLog = 0x1_0000_0000n / BigInt(segmentSize);
  if (BigInt(wal.seg) >= perLog) return undefined;
  return BigInt(wal.log) * perLog + BigInt(wal.seg);
}

export function toSegmentName(timeline: number, segno: bigint, segmentSize: number): string {
  const perLog = 0x1_0000_0000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(timeline) + hex(segno / perLog) + hex(segno % perLog);
}

/**
 * The segment after `wal` on its timeline, for segments of `segmentSize`
 * bytes (from page 0's header: segments per log file depend on it). Undefined
 * for a name that is not a segment, or a size PostgreSQL cannot have made.
 */
export function nextSegment(wal: WalName, segmentSize: number): WalName | undefined {
  if (wal.kind !== 'segment' || !Number.isInteger(segmentSize) || segmentSize <= 0 || 0x1_0000_0000 % segmentSize !== 0) return undefined;
  const segno = toSegmentNumber(wal, segmentSize);
  if (segno === undefined) return undefined;
  const next = segno + 1n;
  // The last segment of the last log file has no next one (8 hex digits of log).
  if (next / (0x1_0000_0000n / BigInt(segmentSize)) > 0xffffffffn) return undefined;
  return parseWalName(toSegmentName(wal.timeline, next, segmentSize));
}

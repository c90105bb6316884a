import { listAuditFiles, readAuditLines } from '../audit/audit-files.js';
import { toRemoteAddress } from '../audit/audit-filter.js';

export interface KeyUsage {
  /** ISO time of the key's last request. */
  readonly time: string;
  /** The address it came from. */
  readonly from: string;
}

/**
 * The last request of each key (by fingerprint), from the audit log and its
 * rotated siblings. Streaming: memory grows with the number of keys only.
 */
export async function loadKeyUsage(auditLog: string): Promise<Map<string, KeyUsage>> {
  const usage = new Map<string, KeyUsage>();
  const files = await listAuditFiles(auditLog);
  await readAuditLines(
    files.map((f) => f.path),
    (line) => {
      // Cheap test first: most lines are not requests.
      if (!line.includes('"event":"request"')) return;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (typeof record.key === 'string' && typeof record.time === 'string') {
          usage.set(record.key, { time: record.time, from: toRemoteAddress(String(record.remote ?? '')) });
        }
      } catch {
        // walhub audit reports malformed lines; here they only cannot count as use
      }
    },
  );
  return usage;
}

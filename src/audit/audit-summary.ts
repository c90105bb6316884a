/**
 * `walhub audit --summary`, like aureport: per key and server, requests,
 * bytes, failures by result, first and last seen; per key, refused logins by
 * reason. Memory grows with the number of keys and servers, not of lines.
 */
export interface RequestSummary {
  key: string;
  server: string;
  requests: number;
  bytes: number;
  /** result -> count, for every result but ok. */
  failures: Record<string, number>;
  first: string;
  last: string;
}

export interface RefusalSummary {
  /** The key's name when the key is known, else its fingerprint, else "-" (no key offered). */
  key: string;
  reason: string;
  count: number;
  first: string;
  last: string;
}

export interface AuditSummary {
  add(record: Record<string, unknown>): void;
  requests(): RequestSummary[];
  refusals(): RefusalSummary[];
}

export function createAuditSummary(): AuditSummary {
  const requests = new Map<string, RequestSummary>();
  const refusals = new Map<string, RefusalSummary>();
  return {
    add(record) {
      const time = String(record.time ?? '');
      if (record.event === 'request') {
        const key = String(record.key_name ?? record.key ?? '-');
        const server = String(record.server ?? '-');
        const id = `${key}\u0000${server}`;
        let row = requests.get(id);
        if (!row) requests.set(id, (row = { key, server, requests: 0, bytes: 0, failures: {}, first: time, last: time }));
        row.requests++;
        if (typeof record.bytes === 'number') row.bytes += record.bytes;
        const result = String(record.result);
        if (result !== 'ok') row.failures[result] = (row.failures[result] ?? 0) + 1;
        row.last = time;
      } else if (record.event === 'auth' && record.result === 'refused') {
        const key = String(record.key_name ?? record.key ?? '-');
        const reason = String(record.reason ?? '-');
        const id = `${key}\u0000${reason}`;
        let row = refusals.get(id);
        if (!row) refusals.set(id, (row = { key, reason, count: 0, first: time, last: time }));
        row.count++;
        row.last = time;
      }
    },
    requests: () => [...requests.values()].sort((a, b) => a.key.localeCompare(b.key) || a.server.localeCompare(b.server)),
    refusals: () => [...refusals.values()].sort((a, b) => b.count - a.count || a.key.localeCompare(b.key)),
  };
}

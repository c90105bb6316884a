import { listAuditFiles, readAuditLines } from '../audit/audit-files.js';
import { matchesFilter, parseAuditFilter, toRemoteAddress, type AuditFilter } from '../audit/audit-filter.js';
import { followAuditFile } from '../audit/audit-follow.js';
import { createAuditSummary, type AuditSummary } from '../audit/audit-summary.js';
import { loadConfig } from '../config.js';
import { parseCommandArgs, reportKnownError, type CliResult } from './options.js';
import { createOutput, type Output } from './output.js';
import { fitWidths, formatBytes, formatHeader, formatRow, formatTable, terminalWidth, type Column } from './table.js';

const HELP = `usage: walhub audit [--config FILE] [filters] [--json | --summary] [--follow]

Reads the audit log named in the configuration and its rotated siblings
(audit.log.2.gz, audit.log.1, ...) oldest first, and prints the records that
match every filter given. Without --event, the table shows requests and
refused logins; --json prints the matching lines unchanged.

filters (a list is comma-separated; any item matches):
      --since WHEN      records at or after WHEN: ISO time or an age (30m, 2h, 7d)
      --until WHEN      records at or before WHEN
      --server IDS      server IDs
      --key KEYS        key names or fingerprints (SHA256:...)
      --result RESULTS  ok, not_found, usage, denied, damaged, unavailable, aborted;
                        refused or ok for logins
      --remote PATTERN  client address: an address, a CIDR block or a from= pattern list
                        (all but a block: "*,!10.1.0.0/16")
      --wal NAMES       WAL file names
      --event EVENTS    connect, auth, request, disconnect

output:
      --json            the matching lines as written (one JSON object a line)
      --summary         per key and server: requests, bytes, failures by result,
                        first and last seen; refused logins by key and reason
  -f, --follow          keep printing new records, across rotations, until ^C
  -c, --config FILE     the configuration (default: etc/walhub.toml of the installation)
  -h, --help            this help

Times in the table are UTC.`;

const SPEC = {
  since: { type: 'string' },
  until: { type: 'string' },
  server: { type: 'string' },
  key: { type: 'string' },
  result: { type: 'string' },
  remote: { type: 'string' },
  wal: { type: 'string' },
  event: { type: 'string' },
  json: { type: 'boolean' },
  summary: { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
} as const;

export async function runAudit(args: string[]): Promise<CliResult> {
  const parsed = parseCommandArgs(args, SPEC);
  if (typeof parsed === 'string') return usage(parsed);
  if (parsed.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (parsed.positionals.length > 0) return usage(`unexpected argument "${parsed.positionals[0]}"`);
  const values = parsed.values as Partial<Record<keyof typeof SPEC, string | boolean>>;
  if (values.summary && values.follow) return usage('--summary and --follow do not go together');
  const filter = parseAuditFilter(values as Record<string, string>, Date.now());
  if (filter instanceof Error) return usage(filter.message);

  let auditLog: string;
  try {
    auditLog = loadConfig(parsed.config).auditLog;
  } catch (error) {
    if (!reportKnownError(error)) throw error;
    return 1;
  }

  const output = createOutput();
  const sink = values.summary
    ? createSummarySink(filter, values.json === true)
    : values.json
      ? createJsonSink(filter)
      : createTableSink(filter, values.event === undefined);
  const malformed = { count: 0, first: '' };
  const take = (line: string, where: string) => {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      record = undefined;
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      if (malformed.count++ === 0) malformed.first = where;
      return;
    }
    sink.add(record as Record<string, unknown>, line, output);
  };
  const flushWhenFull = async () => {
    if (output.full) await output.flush();
  };

  const files = await listAuditFiles(auditLog);
  // A rotated file last written before --since holds nothing newer.
  const since = filter.since === undefined ? undefined : Date.parse(filter.since);
  const wanted = files.filter((f, i) => i === files.length - 1 || since === undefined || f.mtimeMs >= since).map((f) => f.path);
  const live = files.at(-1)?.path === auditLog ? auditLog : undefined;
  const history = values.follow && live ? wanted.slice(0, -1) : wanted;
  await readAuditLines(
    history,
    (line, file, lineNumber) => {
      take(line, `${file}:${lineNumber}`);
      return !output.closed;
    },
    flushWhenFull,
  );

  if (values.follow && !output.closed) {
    sink.end(output);
    await output.flush();
    const aborter = new AbortController();
    const stop = () => aborter.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let lineNumber = 0;
    await followAuditFile(
      auditLog,
      0,
      (line) => {
        take(line, `${auditLog}:${++lineNumber}`);
        if (output.closed) aborter.abort();
      },
      aborter.signal,
      async () => {
        sink.end(output);
        await output.flush();
      },
    );
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  sink.end(output);
  await output.flush();
  if (malformed.count > 0) {
    process.stderr.write(`walhub audit: skipped ${malformed.count} malformed line(s), the first at ${malformed.first}\n`);
  }
  if (files.length === 0 && !values.follow) process.stderr.write(`walhub audit: ${auditLog} does not exist yet\n`);
  return 0;
}

function usage(message: string): CliResult {
  process.stderr.write(`walhub audit: ${message}\n${HELP}\n`);
  return 2;
}

interface Sink {
  add(record: Record<string, unknown>, line: string, output: Output): void;
  /** Called when no more records are coming for now (end of input, or a pause in --follow). */
  end(output: Output): void;
}

function createJsonSink(filter: AuditFilter): Sink {
  return {
    add(record, line, output) {
      if (matchesFilter(record, filter)) output.line(line);
    },
    end() {},
  };
}

const RECORD_COLUMNS: readonly Column[] = [
  { title: 'TIME' },
  { title: 'KEY', shrinkTo: 6 },
  { title: 'REMOTE', shrinkTo: 7 },
  { title: 'SERVER', shrinkTo: 4 },
  { title: 'WAL', shrinkTo: 24 },
  { title: 'RESULT', shrinkTo: 7 },
  { title: 'BYTES', align: 'right' },
  { title: 'MS', align: 'right' },
];
/** Rows buffered to size the columns before the first is printed; later rows are cut to fit. */
const SIZING_ROWS = 200;

function toRecordRow(record: Record<string, unknown>): string[] {
  const time = String(record.time ?? '');
  const isAuth = record.event === 'auth';
  return [
    time.slice(11, 19),
    String(record.key_name ?? record.key ?? '-'),
    toRemoteAddress(String(record.remote ?? '-')),
    String(record.server ?? '-'),
    isAuth ? `login: ${String(record.reason ?? record.result)}` : String(record.wal ?? (record.event === 'request' ? '-' : record.event)),
    String(record.result ?? '-'),
    typeof record.bytes === 'number' ? formatBytes(record.bytes) : '-',
    typeof record.ms === 'number' ? String(record.ms) : '-',
  ];
}

/**
 * The readable table: one row per record. The day is printed on a line of its
 * own when it changes, so that the time column stays short enough for
 * everything to fit in 80 columns.
 */
function createTableSink(filter: AuditFilter, requestsAndRefusalsOnly: boolean): Sink {
  let widths: number[] | undefined;
  let day = '';
  const pending: { day: string; row: string[] }[] = [];
  const print = (output: Output, entry: { day: string; row: string[] }) => {
    if (entry.day !== day) {
      day = entry.day;
      output.line(`-- ${day} (UTC) --`);
    }
    output.line(formatRow(RECORD_COLUMNS, widths!, entry.row));
  };
  const start = (output: Output) => {
    widths = fitWidths(RECORD_COLUMNS, pending.map((p) => p.row), terminalWidth());
    output.line(formatHeader(RECORD_COLUMNS, widths));
    for (const entry of pending.splice(0)) print(output, entry);
  };
  return {
    add(record, _line, output) {
      if (requestsAndRefusalsOnly && record.event !== 'request' && !(record.event === 'auth' && record.result === 'refused')) return;
      if (!matchesFilter(record, filter)) return;
      const entry = { day: String(record.time ?? '').slice(0, 10), row: toRecordRow(record) };
      if (widths) return print(output, entry);
      pending.push(entry);
      if (pending.length >= SIZING_ROWS) start(output);
    },
    end(output) {
      if (!widths && pending.length > 0) start(output);
    },
  };
}

const REQUEST_SUMMARY_COLUMNS: readonly Column[] = [
  { title: 'KEY', shrinkTo: 8 },
  { title: 'SERVER', shrinkTo: 6 },
  { title: 'REQUESTS', align: 'right' },
  { title: 'BYTES', align: 'right' },
  { title: 'FAILED', shrinkTo: 10 },
  { title: 'FIRST SEEN' },
  { title: 'LAST SEEN' },
];
const REFUSAL_SUMMARY_COLUMNS: readonly Column[] = [
  { title: 'KEY', shrinkTo: 12 },
  { title: 'REASON', shrinkTo: 16 },
  { title: 'COUNT', align: 'right' },
  { title: 'FIRST SEEN' },
  { title: 'LAST SEEN' },
];
/** "2026-12-01T03:59:01.123Z" -> "12-01 03:59": the year is in the report's header. */
const shortTime = (iso: string) => `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;

function createSummarySink(filter: AuditFilter, json: boolean): Sink {
  const summary: AuditSummary = createAuditSummary();
  let first = '';
  let last = '';
  return {
    add(record) {
      if (!matchesFilter(record, filter)) return;
      const time = String(record.time ?? '');
      if (first === '') first = time;
      last = time;
      summary.add(record);
    },
    end(output) {
      const requests = summary.requests();
      const refusals = summary.refusals();
      if (json) {
        for (const row of requests) output.line(JSON.stringify({ type: 'requests', ...row }));
        for (const row of refusals) output.line(JSON.stringify({ type: 'refused_logins', ...row }));
        return;
      }
      output.line(first === '' ? 'no matching records' : `from ${first} to ${last} (UTC)`);
      output.line('');
      output.line('requests by key and server');
      const failed = (f: Record<string, number>) =>
        Object.entries(f)
          .sort((a, b) => b[1] - a[1])
          .map(([result, n]) => `${result} ${n}`)
          .join(', ') || '-';
      const requestRows = requests.map((r) => [r.key, r.server, String(r.requests), formatBytes(r.bytes), failed(r.failures), shortTime(r.first), shortTime(r.last)]);
      for (const line of formatTable(REQUEST_SUMMARY_COLUMNS, requestRows, terminalWidth()).trimEnd().split('\n')) output.line(line);
      output.line('');
      output.line('refused logins by key and reason');
      const refusalRows = refusals.map((r) => [r.key, r.reason, String(r.count), shortTime(r.first), shortTime(r.last)]);
      for (const line of formatTable(REFUSAL_SUMMARY_COLUMNS, refusalRows, terminalWidth()).trimEnd().split('\n')) output.line(line);
    },
  };
}

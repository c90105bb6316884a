import { readFile } from 'node:fs/promises';
import { loadConfig, type Config } from '../config.js';
import { WalhubError } from '../errors.js';
import { parseAuthorizedKeys, type KeyEntry } from '../keys/authorized-keys.js';
import { updateKeyFile } from '../keys/key-file-writer.js';
import { findKeyLines, formatKeyLine, KEY_NAME, parseExpiry, parsePublicKeyLine, setKeyOption, toKeygenLine, keyTypeLabel, type KeyLine } from '../keys/key-lines.js';
import { loadKeyUsage, type KeyUsage } from '../keys/key-usage.js';
import { parseCommandArgs, reportKnownError, type CliResult } from './options.js';
import { formatTable, terminalWidth, type Column } from './table.js';

const HELP = `usage: walhub keys <add|list|show|remove|set> [options]

Provisions standby keys in the authorized_keys file named in the
configuration. Every change is written atomically (the other lines, comments
and blank lines stay as they are) and a running walhub applies it at once.

  walhub keys add --name NAME --servers IDS [--from PATTERNS] [--expires WHEN]
                  [--replace] [FILE | -]
      adds the public key in FILE (an id_*.pub), or read from stdin, and prints
      its fingerprint as ssh-keygen -lf does
  walhub keys list [--json]
      every key: name, type, fingerprint, servers, from, expiry, last use
  walhub keys show NAME|FINGERPRINT
  walhub keys remove NAME|FINGERPRINT
  walhub keys set NAME|FINGERPRINT [--servers IDS] [--from PATTERNS] [--expires WHEN|never]

options:
      --name NAME         the key's name in logs and audit records (one word)
      --servers IDS       server IDs the key may read, comma-separated, or "*"
      --from PATTERNS     OpenSSH from= patterns: addresses, CIDR, wildcards, !negation
                          (only negations match nothing: "*,!10.9.0.0/16");
                          with set, "" removes the restriction
      --expires WHEN      YYYY-MM-DD, YYYYMMDD[HHMM[SS]] (local time) or an age
                          like 90d, 12w, 36h; with set, "never" removes it
      --replace           add: replace the line of a key that is already there
      --json              list: one JSON object per key
  -c, --config FILE       the configuration (default: etc/walhub.toml of the installation)
  -h, --help              this help`;

const SPEC = {
  name: { type: 'string' },
  servers: { type: 'string' },
  from: { type: 'string' },
  expires: { type: 'string' },
  replace: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** Which options each subcommand takes, and how many operands. */
const SUBCOMMANDS: Record<string, { options: readonly string[]; operands: [number, number] }> = {
  add: { options: ['name', 'servers', 'from', 'expires', 'replace'], operands: [0, 1] },
  list: { options: ['json'], operands: [0, 0] },
  show: { options: [], operands: [1, 1] },
  remove: { options: [], operands: [1, 1] },
  set: { options: ['servers', 'from', 'expires'], operands: [1, 1] },
};

type Values = Partial<Record<keyof typeof SPEC, string | boolean>>;

export async function runKeys(args: string[]): Promise<CliResult> {
  const parsed = parseCommandArgs(args, SPEC);
  if (typeof parsed === 'string') return usage(parsed);
  const [subcommand, ...operands] = parsed.positionals;
  if (parsed.help || (subcommand === undefined && parsed.help)) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (subcommand === undefined) return usage('which one: add, list, show, remove or set?');
  const rule = SUBCOMMANDS[subcommand];
  if (!rule) return usage(`unknown subcommand "${subcommand}"`);
  const values = parsed.values as Values;
  const stray = Object.keys(values).find((option) => !rule.options.includes(option));
  if (stray) return usage(`keys ${subcommand} takes no --${stray}`);
  if (operands.length < rule.operands[0] || operands.length > rule.operands[1]) {
    return usage(`keys ${subcommand} takes ${rule.operands[1] === 0 ? 'no operand' : rule.operands[0] === 0 ? 'at most one file' : 'one key name or fingerprint'}`);
  }
  try {
    const config = loadConfig(parsed.config);
    switch (subcommand) {
      case 'add':
        return await addKey(config, values, operands[0]);
      case 'list':
        return await listKeys(config, values.json === true);
      case 'show':
        return await showKey(config, operands[0]!);
      case 'remove':
        return await removeKey(config, operands[0]!);
      default:
        return await setKey(config, values, operands[0]!);
    }
  } catch (error) {
    if (error instanceof WalhubError && error.code === 'USAGE') return usage(error.message);
    if (reportKnownError(error)) return 1;
    const e = error as NodeJS.ErrnoException;
    // A file that cannot be read or written: one line, no stack.
    if (e.code === undefined || e.path === undefined) throw error;
    process.stderr.write(`walhub: ${e.path}: ${e.code}\n`);
    return 1;
  }
}

function usage(message: string): CliResult {
  process.stderr.write(`walhub keys: ${message}\n${HELP}\n`);
  return 2;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`walhub keys: ${line}\n`);
const fail = (message: string) => new WalhubError('DENIED', message);

async function addKey(config: Config, values: Values, file: string | undefined): Promise<CliResult> {
  const name = values.name;
  if (typeof name !== 'string') throw new WalhubError('USAGE', 'keys add needs --name NAME');
  if (!KEY_NAME.test(name)) throw new WalhubError('USAGE', `--name "${name}": one word of letters, digits and . _ @ + : - (up to 64)`);
  if (typeof values.servers !== 'string') throw new WalhubError('USAGE', 'keys add needs --servers IDS (or "*" for all)');
  const text = file === undefined || file === '-' ? await readStdin() : await readFile(file, 'utf8');
  const key = parsePublicKeyLine(text);
  const line = formatKeyLine(key, name, {
    servers: values.servers,
    ...(typeof values.from === 'string' ? { from: values.from } : {}),
    ...(typeof values.expires === 'string' ? { expiryTime: parseExpiry(values.expires, Date.now()) } : {}),
  });
  const blob = key.blob.toString('base64');
  let where = '';
  await updateKeyFile(config.authorizedKeys, (current) => {
    const lines = findKeyLines(current);
    const same = lines.find((l) => l.entry.key.blob.toString('base64') === blob);
    const named = lines.find((l) => l.entry.name === name && l !== same);
    if (named) throw fail(`the name ${name} is already used by ${named.entry.key.fingerprint} (line ${named.index + 1})`);
    if (same && !values.replace) {
      throw fail(`this key is already present as ${same.entry.name} (line ${same.index + 1}); --replace replaces its line`);
    }
    const all = current.split('\n');
    if (same) {
      all[same.index] = line;
      where = `replaced line ${same.index + 1}`;
      return all.join('\n');
    }
    const base = current === '' || current.endsWith('\n') ? current : `${current}\n`;
    where = `line ${base.split('\n').length}`;
    return `${base}${line}\n`;
  });
  say(toKeygenLine(key, name));
  note(`${name} added to ${config.authorizedKeys} (${where})`);
  return 0;
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) note('reading the public key from stdin (paste it, then ^D)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    // A public key line is a few hundred bytes, an RSA one a few KiB.
    if (size > 64 * 1024) throw new WalhubError('USAGE', 'the input is too long for a public key line');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readKeys(config: Config): Promise<{ text: string; lines: KeyLine[] }> {
  let text: string;
  try {
    text = await readFile(config.authorizedKeys, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    text = '';
  }
  // The server's own view, so a line it would skip is named here too.
  for (const problem of parseAuthorizedKeys(text, config.authorizedKeys).problems) note(`${problem} (skipped by the server)`);
  return { text, lines: findKeyLines(text) };
}

/** NAME or SHA256:fingerprint -> exactly one line, or a message saying why not. */
function findOne(lines: readonly KeyLine[], wanted: string): KeyLine {
  const matches = lines.filter((l) => (wanted.startsWith('SHA256:') ? l.entry.key.fingerprint === wanted : l.entry.name === wanted));
  if (matches.length === 0) throw fail(`no key named ${wanted}`.replace('named SHA256:', 'with fingerprint SHA256:'));
  if (matches.length > 1) {
    throw fail(`${wanted} names ${matches.length} keys (lines ${matches.map((m) => m.index + 1).join(', ')}); use the fingerprint`);
  }
  return matches[0]!;
}

interface KeyReport {
  name: string;
  type: string;
  bits: number;
  fingerprint: string;
  servers: string[];
  from: string | null;
  expires: string | null;
  expired: boolean;
  last_used: string | null;
  last_from: string | null;
  line: number;
}

function toReport(line: KeyLine, usage: Map<string, KeyUsage>, now: number): KeyReport {
  const { entry } = line;
  const used = usage.get(entry.key.fingerprint);
  return {
    name: entry.name,
    type: entry.key.type,
    bits: Number(toKeygenLine(entry.key, '').split(' ')[0]),
    fingerprint: entry.key.fingerprint,
    servers: entry.servers === '*' ? ['*'] : [...entry.servers],
    from: entry.from?.source ?? null,
    expires: entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString(),
    expired: entry.expiresAt !== undefined && now >= entry.expiresAt,
    last_used: used?.time ?? null,
    last_from: used?.from ?? null,
    line: line.index + 1,
  };
}

const LIST_COLUMNS: readonly Column[] = [
  { title: 'NAME', shrinkTo: 8 },
  { title: 'TYPE' },
  { title: 'FINGERPRINT', shrinkTo: 14 },
  { title: 'SERVERS', shrinkTo: 7 },
  { title: 'FROM', shrinkTo: 4 },
  { title: 'EXPIRES' },
  { title: 'LAST USED', shrinkTo: 10 },
];

async function listKeys(config: Config, json: boolean): Promise<CliResult> {
  const { lines } = await readKeys(config);
  const usage = await loadKeyUsage(config.auditLog);
  const now = Date.now();
  const reports = lines.map((l) => toReport(l, usage, now));
  if (json) {
    for (const report of reports) say(JSON.stringify(report));
    return 0;
  }
  if (reports.length === 0) {
    say(`no keys in ${config.authorizedKeys}: add one with walhub keys add`);
    return 0;
  }
  const rows = reports.map((r, i) => [
    r.name,
    keyTypeLabel(lines[i]!.entry.key),
    r.fingerprint,
    r.servers.join(','),
    r.from ?? '-',
    r.expires === null ? 'never' : r.expired ? 'expired' : r.expires.slice(0, 10),
    // The day and the address; show and --json have the time.
    r.last_used === null ? 'never' : `${r.last_used.slice(0, 10)} ${r.last_from}`,
  ]);
  process.stdout.write(formatTable(LIST_COLUMNS, rows, terminalWidth()));
  return 0;
}

async function showKey(config: Config, wanted: string): Promise<CliResult> {
  const { lines } = await readKeys(config);
  const line = findOne(lines, wanted);
  const report = toReport(line, await loadKeyUsage(config.auditLog), Date.now());
  const rows: [string, string][] = [
    ['name', report.name],
    ['key', toKeygenLine(line.entry.key, report.name)],
    ['servers', report.servers.join(',')],
    ['from', report.from ?? '(any address)'],
    ['expires', report.expires === null ? 'never' : `${report.expires}${report.expired ? ' (EXPIRED: every login is refused)' : ''}`],
    ['last used', report.last_used === null ? 'never (in the audit log kept)' : `${report.last_used} from ${report.last_from}`],
    ['line', `${config.authorizedKeys}:${report.line}`],
  ];
  for (const [label, value] of rows) say(`${label.padEnd(10)} ${value}`);
  return 0;
}

async function removeKey(config: Config, wanted: string): Promise<CliResult> {
  let removed: KeyEntry | undefined;
  await updateKeyFile(config.authorizedKeys, (text) => {
    const line = findOne(findKeyLines(text), wanted);
    removed = line.entry;
    const all = text.split('\n');
    all.splice(line.index, 1);
    return all.join('\n');
  });
  say(`removed ${removed!.name} (${removed!.key.fingerprint}) from ${config.authorizedKeys}`);
  return 0;
}

async function setKey(config: Config, values: Values, wanted: string): Promise<CliResult> {
  if (values.servers === undefined && values.from === undefined && values.expires === undefined) {
    throw new WalhubError('USAGE', 'keys set needs at least one of --servers, --from, --expires');
  }
  const now = Date.now();
  let changed = '';
  await updateKeyFile(config.authorizedKeys, (text) => {
    let line = findOne(findKeyLines(text), wanted);
    const edit = (option: 'servers' | 'from' | 'expiry-time', value: string | undefined) => {
      const next = setKeyOption(line, option, value);
      line = { ...line, text: next, entry: findKeyLines(next)[0]!.entry };
    };
    if (typeof values.servers === 'string') edit('servers', values.servers);
    if (typeof values.from === 'string') edit('from', values.from === '' ? undefined : values.from);
    if (typeof values.expires === 'string') edit('expiry-time', values.expires === 'never' ? undefined : parseExpiry(values.expires, now));
    const all = text.split('\n');
    all[line.index] = line.text;
    changed = line.text;
    return all.join('\n');
  });
  say(changed);
  return 0;
}

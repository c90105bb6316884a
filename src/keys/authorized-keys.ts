import { SERVER_ID } from '../config.js';
import { parseFromPattern, type FromPattern } from './from-pattern.js';
import { parsePublicKeyBlob, SUPPORTED_KEY_TYPES, type PublicKey } from './public-key.js';

/** One allowed standby key, as loaded: everything a request needs, computed once. */
export interface KeyEntry {
  readonly key: PublicKey;
  /** The comment, or the fingerprint when there is none: the key's name in logs. */
  readonly name: string;
  /** `'*'` for every server. */
  readonly servers: '*' | ReadonlySet<string>;
  readonly from?: FromPattern;
  /** ms since the epoch; the key is refused from then on. */
  readonly expiresAt?: number;
  readonly line: number;
}

export interface KeySet {
  readonly byBlob: ReadonlyMap<string, KeyEntry>;
  /** `file:line: what is wrong`, one per skipped line. */
  readonly problems: readonly string[];
}

/** Options that only restrict, which walhub always is anyway: accepted and ignored. */
const RESTRICTIONS = new Set(['restrict', 'no-pty', 'no-port-forwarding', 'no-agent-forwarding', 'no-x11-forwarding', 'no-user-rc', 'no-touch-required']);

export function parseAuthorizedKeys(text: string, source: string): KeySet {
  const byBlob = new Map<string, KeyEntry>();
  const problems: string[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const entry = parseKeyLine(line, index + 1);
    // Like sshd: a bad line is reported and skipped, so one typo locks nobody out.
    if (entry instanceof Error) {
      problems.push(`${source}:${index + 1}: ${entry.message}`);
      continue;
    }
    const id = entry.key.blob.toString('base64');
    const first = byBlob.get(id);
    if (first) problems.push(`${source}:${index + 1}: duplicate of the key on line ${first.line}, which is used`);
    else byBlob.set(id, entry);
  }
  return { byBlob, problems };
}

export function parseKeyLine(line: string, lineNumber: number): KeyEntry | Error {
  // Any key-type-looking first word (ssh-dss, sk-*, ...) is a key, so an
  // unsupported type is named as such rather than misread as options.
  const startsWithType = (text: string) => /^(?:ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+\s/.test(text);
  let options = new Map<string, string | true>();
  let rest = line;
  if (!startsWithType(line)) {
    const parsed = parseOptions(line);
    if (parsed instanceof Error) return parsed;
    [options, rest] = parsed;
  }
  const [type, data, ...comment] = rest.split(/\s+/);
  if (type && options.size > 0 && looksLikeOption(type)) {
    const shown = type.length > 64 ? `${type.slice(0, 64)}...` : type;
    return new Error(`options are separated by commas, not spaces: put a comma instead of the blank before ${shown}`);
  }
  if (type && !SUPPORTED_KEY_TYPES.includes(type)) {
    return new Error(`unsupported key type ${type} (use ${SUPPORTED_KEY_TYPES.join(', ')})`);
  }
  if (!type || !data) return new Error('expected [options] key-type base64-key [comment]');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data)) return new Error('the key is not valid base64');
  const key = parsePublicKeyBlob(Buffer.from(data, 'base64'));
  if (key instanceof Error) return key;
  if (key.type !== type) return new Error(`the key says ${key.type}, the line says ${type}`);

  let servers: KeyEntry['servers'] | undefined;
  let from: FromPattern | undefined;
  let expiresAt: number | undefined;
  for (const [name, value] of options) {
    if (name === 'servers') {
      if (value === true || value.trim() === '') return new Error('servers= needs a list of server IDs, or "*"');
      const ids = value.split(',').map((s) => s.trim());
      if (ids.includes('*')) servers = '*';
      else {
        const bad = ids.find((id) => !SERVER_ID.test(id));
        if (bad !== undefined) return new Error(`servers=: "${bad}" is not a server ID`);
        servers = new Set(ids);
      }
    } else if (name === 'from') {
      if (value === true) return new Error('from= needs a pattern list');
      const pattern = parseFromPattern(value);
      if (pattern instanceof Error) return pattern;
      from = pattern;
    } else if (name === 'expiry-time') {
      const time = value === true ? undefined : parseExpiryTime(value);
      if (time === undefined) return new Error('expiry-time= expects YYYYMMDD or YYYYMMDDHHMM[SS]');
      expiresAt = time;
    } else if (name === 'command') {
      return new Error('command= is refused: walhub runs only get-wal');
    } else if (!RESTRICTIONS.has(name)) {
      return new Error(`unsupported option ${name}`);
    }
  }
  if (!servers) return new Error('servers="..." is required: which server IDs may this key read?');
  return {
    key,
    name: comment.join(' ') || key.fingerprint,
    servers,
    line: lineNumber,
    ...(from ? { from } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
  };
}

const OPTION_NAMES = new Set([...RESTRICTIONS, 'servers', 'from', 'expiry-time', 'command', 'environment', 'permitopen', 'principals', 'cert-authority']);

/** A word after the options that is one more option (`expiry-time="..."`, `no-pty`), not a key type. */
function looksLikeOption(word: string): boolean {
  return /^[A-Za-z0-9-]+="/.test(word) || OPTION_NAMES.has(word.toLowerCase().replace(/,$/, ''));
}

/** `a,b="x,y",c` up to the first unquoted blank -> options and the rest of the line. */
function parseOptions(line: string): [Map<string, string | true>, string] | Error {
  const options = new Map<string, string | true>();
  let i = 0;
  for (;;) {
    const name = /^[A-Za-z0-9-]+/.exec(line.slice(i))?.[0];
    if (!name) return new Error(`cannot read the options at column ${i + 1}`);
    i += name.length;
    let value: string | true = true;
    if (line[i] === '=') {
      if (line[i + 1] !== '"') return new Error(`${name}= needs a double-quoted value`);
      i += 2;
      value = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && line[i + 1] === '"') i++;
        value += line[i++];
      }
      if (i >= line.length) return new Error(`${name}= has no closing quote`);
      i++;
    }
    const lower = name.toLowerCase();
    if (options.has(lower)) return new Error(`${name} is given twice`);
    options.set(lower, value);
    if (line[i] === ',') {
      i++;
      continue;
    }
    if (line[i] === ' ' || line[i] === '\t') return [options, line.slice(i).trim()];
    return new Error(`expected "," or a blank after ${name}`);
  }
}

/** OpenSSH's expiry-time: YYYYMMDD[HHMM[SS]] in local time, or UTC with a trailing Z. */
export function parseExpiryTime(text: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(Z)?$/.exec(text);
  if (!match) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', utc] = match;
  const parts = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)] as const;
  if (parts[3] > 23 || parts[4] > 59 || parts[5] > 59) return undefined;
  const time = utc ? Date.UTC(...parts) : new Date(...parts).getTime();
  const date = new Date(time);
  // Date rolls 20270231 over to March; such a date is a typo, not a time.
  const month = utc ? date.getUTCMonth() : date.getMonth();
  return Number.isNaN(time) || month !== parts[1] ? undefined : time;
}

/** Why this key may not log in from this address now, or undefined when it may. */
export function findLoginRefusal(entry: KeyEntry, remoteAddress: string, now: number): string | undefined {
  if (entry.expiresAt !== undefined && now >= entry.expiresAt) return 'key expired';
  if (entry.from && !entry.from.matches(remoteAddress)) return `address not allowed by from="${entry.from.source}"`;
  return undefined;
}

export function mayRead(entry: KeyEntry, server: string): boolean {
  return entry.servers === '*' || entry.servers.has(server);
}

/** A key whose from= no address matches (walhub check and walhub serve warn of it): what is wrong, in one line. */
export function unreachableKeyWarning(entry: KeyEntry): string | undefined {
  if (!entry.from?.onlyNegations) return undefined;
  const source = entry.from.source;
  return `the key ${entry.name} has from="${source}", only negations, which no address matches; every login with it is refused (for every address but those, put * first: from="*,${source}")`;
}

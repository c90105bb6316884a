import { WalhubError } from '../errors.js';
import { parseExpiryTime, parseKeyLine, type KeyEntry } from './authorized-keys.js';
import { parsePublicKeyBlob, SUPPORTED_KEY_TYPES, type PublicKey } from './public-key.js';

/** A key line of authorized_keys as found, with its 0-based index in the file's lines. */
export interface KeyLine {
  readonly index: number;
  readonly text: string;
  readonly entry: KeyEntry;
}

/** The good key lines of a file, in order; comments, blanks and bad lines are left to the caller's text. */
export function findKeyLines(text: string): KeyLine[] {
  const found: KeyLine[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const entry = parseKeyLine(line, index + 1);
    if (!(entry instanceof Error)) found.push({ index, text: raw, entry });
  }
  return found;
}

/** Key names are what logs and audit records show: one word, no quotes or control characters. */
export const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,63}$/;

/** `ssh-ed25519 AAAA... comment` (an id_*.pub file's line) -> the key. */
export function parsePublicKeyLine(text: string): PublicKey {
  const line = text.split('\n').find((l) => l.trim() !== '' && !l.trim().startsWith('#'))?.trim();
  if (!line) throw new WalhubError('USAGE', 'no public key given: expected a line like "ssh-ed25519 AAAA... comment"');
  const [type, data] = line.split(/\s+/);
  if (!type || !SUPPORTED_KEY_TYPES.includes(type)) {
    throw new WalhubError('USAGE', `not an OpenSSH public key line (key types: ${SUPPORTED_KEY_TYPES.join(', ')}); a private key or a line with options is not taken`);
  }
  if (!data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data)) throw new WalhubError('USAGE', 'the key is not valid base64');
  const key = parsePublicKeyBlob(Buffer.from(data, 'base64'));
  if (key instanceof Error) throw new WalhubError('USAGE', key.message);
  if (key.type !== type) throw new WalhubError('USAGE', `the key says ${key.type}, the line says ${type}`);
  return key;
}

export interface KeyOptions {
  servers: string;
  from?: string;
  /** OpenSSH's expiry-time value, YYYYMMDD[HHMM[SS]]. */
  expiryTime?: string;
}

/** The authorized_keys line walhub writes, checked by the server's own parser before it is written. */
export function formatKeyLine(key: PublicKey, name: string, options: KeyOptions): string {
  const parts = [`servers="${options.servers}"`];
  if (options.from !== undefined) parts.push(`from="${options.from}"`);
  if (options.expiryTime !== undefined) parts.push(`expiry-time="${options.expiryTime}"`);
  return checkedLine(`${parts.join(',')} ${key.type} ${key.blob.toString('base64')} ${name}`, options.from !== undefined);
}

/**
 * The same line with one option set (or removed when `value` is undefined),
 * every other option and the key left as written.
 */
export function setKeyOption(line: KeyLine, option: 'servers' | 'from' | 'expiry-time', value: string | undefined): string {
  const keyText = `${line.entry.key.type} ${line.entry.key.blob.toString('base64')}`;
  const trimmed = line.text.trim();
  const at = trimmed.search(new RegExp(`(^|\\s)${line.entry.key.type}\\s+${escapeRegExp(line.entry.key.blob.toString('base64'))}(\\s|$)`));
  const prefix = at <= 0 ? '' : trimmed.slice(0, at).trim();
  const rest = trimmed.slice(at <= 0 ? 0 : at).trim().split(/\s+/).slice(2).join(' ');
  const options = splitOptions(prefix);
  const index = options.findIndex((o) => o.toLowerCase().startsWith(`${option}=`) || o.toLowerCase() === option);
  const formatted = value === undefined ? undefined : `${option}="${value}"`;
  if (index >= 0) {
    if (formatted === undefined) options.splice(index, 1);
    else options[index] = formatted;
  } else if (formatted !== undefined) options.push(formatted);
  return checkedLine(`${options.length > 0 ? `${options.join(',')} ` : ''}${keyText}${rest ? ` ${rest}` : ''}`, option === 'from' && value !== undefined);
}

/** Options split at the commas outside double quotes. */
function splitOptions(prefix: string): string[] {
  const options: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i]!;
    if (c === '\\' && quoted && prefix[i + 1] === '"') {
      current += c + prefix[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) {
      options.push(current);
      current = '';
    } else current += c;
  }
  if (current !== '') options.push(current);
  return options;
}

/**
 * `fromWritten`: the from= option is what this edit writes. A from= of only
 * negations is taken as sshd takes it when it was there before (walhub check
 * warns of it), so that other edits of the line still work; written by
 * walhub keys it can only be a mistake: the key could never log in.
 */
function checkedLine(line: string, fromWritten: boolean): string {
  const entry = parseKeyLine(line, 0);
  if (entry instanceof Error) throw new WalhubError('USAGE', entry.message);
  if (fromWritten && entry.from?.onlyNegations) {
    throw new WalhubError('USAGE', `from="${entry.from.source}": only negations match no address, and the key could never log in; for every address but those, put * first: "*,${entry.from.source}"`);
  }
  return line;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

const DAY = 86_400_000;
const DURATION_UNITS: Record<string, number> = { h: 3_600_000, d: DAY, w: 7 * DAY };

/**
 * WHEN as an administrator types it -> OpenSSH's expiry-time (local time):
 * `2027-12-31`, `20271231`, `202712311800`, `20271231180000`, or an age from
 * now like `90d`, `12w`, `36h`.
 */
export function parseExpiry(text: string, now: number): string {
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const compact = date ? `${date[1]}${date[2]}${date[3]}` : text;
  if (/^\d{8}(\d{4}(\d{2})?)?$/.test(compact)) {
    if (parseExpiryTime(compact) === undefined) throw new WalhubError('USAGE', `--expires ${text}: no such date or time`);
    return compact;
  }
  const age = /^(\d{1,5})([hdw])$/.exec(text);
  if (!age) throw new WalhubError('USAGE', `--expires ${text}: expected YYYY-MM-DD, YYYYMMDD[HHMM[SS]] or an age like 90d`);
  const at = new Date(now + Number(age[1]) * DURATION_UNITS[age[2]!]!);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${at.getFullYear()}${two(at.getMonth() + 1)}${two(at.getDate())}${two(at.getHours())}${two(at.getMinutes())}`;
}

/** `256 SHA256:... name (ED25519)`: the line `ssh-keygen -lf` prints for the key. */
export function toKeygenLine(key: PublicKey, comment: string): string {
  return `${keyBits(key)} ${key.fingerprint} ${comment || 'no comment'} (${keyTypeLabel(key)})`;
}

export function keyBits(key: PublicKey): number {
  if (key.type === 'ssh-rsa') return key.keyObject.asymmetricKeyDetails?.modulusLength ?? 0;
  const curve = /nistp(\d+)$/.exec(key.type);
  return curve ? Number(curve[1]) : 256;
}

export function keyTypeLabel(key: PublicKey): string {
  if (key.type === 'ssh-rsa') return 'RSA';
  if (key.type.startsWith('ecdsa-')) return 'ECDSA';
  return 'ED25519';
}

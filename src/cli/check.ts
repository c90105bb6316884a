import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createDecoderTable } from '../archive/compression.js';
import { findEscapingLinks } from '../archive/lookup.js';
import { loadConfig, SERVER_ID } from '../config.js';
import { isWalhubError } from '../errors.js';
import { parseAuthorizedKeys, unreachableKeyWarning, type KeyEntry, type KeySet } from '../keys/authorized-keys.js';
import { cpuHasAes, offeredCiphers } from '../ssh/algorithms.js';
import { loadHostKeys } from '../ssh/host-keys.js';
import { COMMON_OPTIONS_HELP, parseOptions, reportKnownError, type CliResult } from './options.js';

const HELP = `usage: walhub check [--config FILE]

Validates the configuration, host keys and authorized_keys without starting
anything, and prints a summary. Exits 1 if anything is wrong.

${COMMON_OPTIONS_HELP}`;

export async function runCheck(args: string[]): Promise<CliResult> {
  const options = parseOptions(args);
  if (typeof options === 'string') {
    process.stderr.write(`walhub check: ${options}\n${HELP}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const problems: string[] = [];
  const out = (line: string) => process.stdout.write(`${line}\n`);
  let config;
  try {
    config = loadConfig(options.config);
  } catch (error) {
    if (!reportKnownError(error)) throw error;
    return 1;
  }
  out(`config        ${config.file}`);
  out(`listen        ${config.listen.map((l) => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`)).join(', ')}`);
  out(`user          ${config.user}`);

  for (const path of config.hostKeys) {
    if (!existsSync(path)) {
      out(`host key      ${path} (missing: walhub serve creates it at first start)`);
      continue;
    }
    try {
      const [key] = loadHostKeys([path], { create: false });
      out(`host key      ${path} ${key!.type} ${key!.fingerprint}`);
    } catch (error) {
      problems.push(isWalhubError(error) ? error.message : String(error));
    }
  }

  let keySet: KeySet | undefined;
  try {
    keySet = parseAuthorizedKeys(readFileSync(config.authorizedKeys, 'utf8'), config.authorizedKeys);
    out(`keys          ${config.authorizedKeys}: ${keySet.byBlob.size} key(s)`);
    for (const entry of keySet.byBlob.values()) {
      const servers = entry.servers === '*' ? '*' : [...entry.servers].join(',');
      out(`  ${entry.key.fingerprint} ${entry.name} servers=${servers}${entry.from ? ` from=${entry.from.source}` : ''}${entry.expiresAt !== undefined ? ` expires=${new Date(entry.expiresAt).toISOString()}` : ''}`);
    }
    problems.push(...keySet.problems);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') out(`keys          ${config.authorizedKeys} (missing: every login is refused until keys are added)`);
    else problems.push(`${config.authorizedKeys}: cannot read (${code ?? String(error)})`);
  }

  const servers = new Map<string, string>();
  const archiveExists = existsSync(config.archive) && statSync(config.archive).isDirectory();
  out(`archive       ${config.archive}${archiveExists ? '' : ' (missing)'}`);
  if (archiveExists) {
    for (const entry of readdirSync(config.archive, { withFileTypes: true })) {
      if (entry.isDirectory() && SERVER_ID.test(entry.name)) servers.set(entry.name, `${config.archive}/${entry.name}`);
    }
  }
  for (const [id, server] of Object.entries(config.servers)) {
    servers.set(id, server.path);
    if (!existsSync(server.path)) problems.push(`servers.${id}.path: ${server.path} does not exist`);
  }
  out(`servers       ${servers.size === 0 ? '(none yet)' : [...servers.keys()].sort().join(', ')}`);
  for (const [id, dir] of servers) {
    for (const link of await findEscapingLinks(dir)) {
      problems.push(`server ${id}: ${link} leads outside the server directory; requests through it are refused (exit 5): point the server's path at the real place`);
    }
  }
  const warnings = keySet ? findKeyWarnings(keySet, config.authorizedKeys, new Set(servers.keys()), Date.now()) : [];
  const archiveWarning = findArchiveWarning(config.archive, archiveExists);
  if (archiveWarning) warnings.unshift(archiveWarning);
  out(`audit log     ${config.auditLog}`);
  const decoders = createDecoderTable();
  out(`decoders      ${[...decoders.decoders.keys()].join(', ')}${notAvailable(decoders.missing)}`);
  // get-wal -j (barman-wal-restore --bzip2) needs the bzip2 program to compress.
  out(`encoders      ${[...decoders.encoders.keys()].join(', ')}${notAvailable(decoders.missingEncoders)}`);
  // Which cipher OpenSSH clients end up with depends on this CPU (see algorithms.ts).
  const aes = cpuHasAes();
  out(`ciphers       ${offeredCiphers(aes).join(', ')} (${aes ? 'this CPU has AES instructions' : 'no AES instructions found in /proc/cpuinfo'})`);

  for (const warning of warnings) process.stderr.write(`walhub: warning: ${warning}\n`);
  for (const problem of problems) process.stderr.write(`walhub: ${problem}\n`);
  const warned = warnings.length === 0 ? '' : ` (${warnings.length} warning(s))`;
  out(problems.length === 0 ? `ok${warned}` : `${problems.length} problem(s)${warned}`);
  return problems.length === 0 ? 0 : 1;
}

/**
 * Keys that load but will not do what their writer meant: they do not stop
 * the server, yet a standby relying on one would find out only in its log.
 */
export function findKeyWarnings(set: KeySet, source: string, servers: ReadonlySet<string>, now: number): string[] {
  const warnings: string[] = [];
  const byName = new Map<string, KeyEntry>();
  for (const entry of [...set.byBlob.values()].sort((a, b) => a.line - b.line)) {
    const where = `${source}:${entry.line}`;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
      warnings.push(`${where}: the key ${entry.name} expired on ${new Date(entry.expiresAt).toISOString()}; every login with it is refused`);
    }
    const unreachable = unreachableKeyWarning(entry);
    if (unreachable) warnings.push(`${where}: ${unreachable}`);
    if (entry.servers !== '*') {
      const unknown = [...entry.servers].filter((id) => !servers.has(id));
      if (unknown.length > 0) warnings.push(`${where}: the key ${entry.name} is allowed ${unknown.join(', ')}, which the archive does not have (yet)`);
    }
    const first = byName.get(entry.name);
    if (first) warnings.push(`${where}: the key name ${entry.name} is also used on line ${first.line}: the audit log cannot tell the two keys apart by name`);
    else byName.set(entry.name, entry);
  }
  return warnings;
}

/**
 * An archive root that is missing or empty is not a configuration error (Barman
 * may not have run yet), but a node behind a balancer that serves from it
 * answers "not found" to every request its neighbours would have served.
 */
function findArchiveWarning(archive: string, exists: boolean): string | undefined {
  if (!exists) return `the archive root ${archive} does not exist: every get-wal is "not found" on this node`;
  if (readdirSync(archive).length === 0) return `the archive root ${archive} is empty: every get-wal is "not found" on this node`;
  return undefined;
}

function notAvailable(missing: ReadonlyMap<string, string>): string {
  return missing.size ? ` (not available: ${[...missing.keys()].join(', ')})` : '';
}

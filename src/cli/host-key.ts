import { loadConfig } from '../config.js';
import { loadHostKeys, toKnownHostsLine } from '../ssh/host-keys.js';
import { COMMON_OPTIONS_HELP, parseOptions, reportKnownError, type CliResult } from './options.js';

const HELP = `usage: walhub host-key [--config FILE] [--host NAME]

Prints, for each host key, a comment line with its SHA256 fingerprint and the
known_hosts line for each listen port, so that the output can be appended to a
standby's ~/.ssh/known_hosts as it is.

${COMMON_OPTIONS_HELP}
      --host NAME     the name (or address) standbys connect to; default: the
                      listen address, no use when walhub listens on 0.0.0.0 or ::`;

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

export async function runHostKey(args: string[]): Promise<CliResult> {
  const { host, rest, problem } = takeHostOption(args);
  const options = problem ?? parseOptions(rest);
  if (typeof options === 'string') {
    process.stderr.write(`walhub host-key: ${options}\n${HELP}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  try {
    const config = loadConfig(options.config);
    const targets = host === undefined ? config.listen : [...new Set(config.listen.map((l) => l.port))].map((port) => ({ host, port }));
    for (const key of loadHostKeys(config.hostKeys, { create: false })) {
      process.stdout.write(`# ${key.fingerprint} ${key.type} ${key.path}\n`);
      for (const target of targets) {
        // A wildcard address in known_hosts matches no connection: say what to do instead of printing it.
        if (WILDCARDS.has(target.host)) process.stdout.write(`# listening on all addresses: run walhub host-key --host NAME, NAME as the standbys write it\n`);
        else process.stdout.write(`${toKnownHostsLine(key, target.host, target.port)}\n`);
      }
    }
    return 0;
  } catch (error) {
    if (!reportKnownError(error)) throw error;
    return 1;
  }
}

/** `--host NAME` / `--host=NAME`, taken out before the options every command shares. */
function takeHostOption(args: readonly string[]): { host?: string; rest: string[]; problem?: string } {
  const rest: string[] = [];
  let host: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--host') {
      host = args[++i];
      if (host === undefined) return { rest, problem: '--host needs a name' };
    } else if (arg.startsWith('--host=')) host = arg.slice('--host='.length);
    else rest.push(arg);
  }
  if (host !== undefined && !/^[A-Za-z0-9.:_-]{1,253}$/.test(host)) return { rest, problem: `--host: "${host}" is not a host name or address` };
  return { host, rest };
}

import { loadConfig } from '../config.js';
import { loadHostKeys, toKnownHostsLine } from '../ssh/host-keys.js';
import { COMMON_OPTIONS_HELP, parseOptions, reportKnownError, type CliResult } from './options.js';

const HELP = `usage: walhub host-key [--config FILE]

Prints each host key's SHA256 fingerprint and the known_hosts line for each
listen address, for the standbys' ~/.ssh/known_hosts. When walhub listens on
0.0.0.0 or ::, put the name the standbys use in place of the address.

${COMMON_OPTIONS_HELP}`;

export async function runHostKey(args: string[]): Promise<CliResult> {
  const options = parseOptions(args);
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
    for (const key of loadHostKeys(config.hostKeys, { create: false })) {
      process.stdout.write(`${key.fingerprint} ${key.type} ${key.path}\n`);
      for (const { host, port } of config.listen) process.stdout.write(`${toKnownHostsLine(key, host, port)}\n`);
    }
    return 0;
  } catch (error) {
    if (!reportKnownError(error)) throw error;
    return 1;
  }
}

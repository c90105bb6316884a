#!/usr/bin/env node
// First: see the module.
import './no-inspector-signal.js';
import { runAudit } from './cli/audit.js';
import { runCheck } from './cli/check.js';
import type { CliResult } from './cli/options.js';
import { runHostKey } from './cli/host-key.js';
import { runKeys } from './cli/keys.js';
import { runServe } from './cli/serve.js';
import { VERSION } from './version.js';

const USAGE = `usage: walhub <command> [--config FILE]

commands:
  serve      run the SSH server in the foreground (logs JSON to stdout)
  check      validate the configuration and keys, print a summary
  host-key   print the host key fingerprints and known_hosts lines
  keys       add, list, show, remove or change standby keys (authorized_keys)
  audit      review the audit log: filters, a table, --json, --summary, --follow

options:
  -h, --help      this help
  -V, --version   the version

Run "walhub <command> --help" for a command's options.
The default configuration is etc/walhub.toml beside the installation.`;

const COMMANDS: Record<string, (args: string[]) => Promise<CliResult>> = {
  serve: runServe,
  check: runCheck,
  'host-key': runHostKey,
  keys: runKeys,
  audit: runAudit,
};

/** The only place that sets the process's exit status: 0 ok, 1 failure, 2 usage. */
async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`walhub ${VERSION}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`walhub: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  return run(args);
}

// `walhub audit | head -1`: the reader has what it wanted; end quietly, not with an EPIPE stack.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`walhub: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);

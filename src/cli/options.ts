import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config.js';
import { isWalhubError } from '../errors.js';

export type CliResult = 0 | 1 | 2;

/** etc/walhub.toml beside the installation, so `walhub serve` works from anywhere. */
export const DEFAULT_CONFIG = fileURLToPath(new URL('../../etc/walhub.toml', import.meta.url));

/** The options every subcommand takes, for its --help. */
export const COMMON_OPTIONS_HELP = `options:
  -c, --config FILE   the configuration (default: etc/walhub.toml of the installation)
  -h, --help          this help`;

export interface CommonOptions {
  config: string;
  help: boolean;
}

/** `--config FILE`, `--config=FILE`, `-c FILE`, `--help`; anything else is a usage error (returned as text). */
export function parseOptions(args: readonly string[]): CommonOptions | string {
  const options: CommonOptions = { config: DEFAULT_CONFIG, help: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') options.help = true;
    else if (arg === '--config' || arg === '-c') {
      const value = args[++i];
      if (value === undefined) return `${arg} needs a file`;
      options.config = value;
    } else if (arg.startsWith('--config=')) options.config = arg.slice('--config='.length);
    else return `unknown argument "${arg}"`;
  }
  return options;
}

/** Writes a configuration or walhub error as its lines for the person; false for anything else. */
export function reportKnownError(error: unknown): boolean {
  if (error instanceof ConfigError) for (const problem of error.problems) process.stderr.write(`walhub: ${problem}\n`);
  else if (isWalhubError(error)) process.stderr.write(`walhub: ${error.message}\n`);
  else return false;
  return true;
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export interface ParsedArgs {
  readonly config: string;
  readonly help: boolean;
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
}

/**
 * A subcommand's own options plus the shared `--config FILE` and `--help`,
 * with Node's parser: `--opt value`, `--opt=value`, `--` ends options. An
 * unknown option or a missing value is returned as text (a usage error).
 */
export function parseCommandArgs(args: readonly string[], spec: OptionSpec): ParsedArgs | string {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...spec, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    const { config, help, ...rest } = values as Record<string, string | boolean | string[] | undefined>;
    return { config: typeof config === 'string' ? config : DEFAULT_CONFIG, help: help === true, values: rest, positionals };
  } catch (error) {
    // Node's messages name the option; drop its advice about "--" for positionals starting with "-".
    return (error as Error).message.split('. ')[0]!.replace(/^Unknown option/, 'unknown option');
  }
}

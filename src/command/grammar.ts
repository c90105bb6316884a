import { SERVER_ID } from '../config.js';
import { WalhubError } from '../errors.js';
import { parseWalName, type WalName } from '../archive/wal-name.js';

/** `get-wal [options] SERVER WAL_NAME`, parsed and checked. */
export interface GetWalRequest {
  readonly verb: 'get-wal';
  readonly server: string;
  /** undefined only with --test, where Barman's client passes a dummy name. */
  readonly wal: WalName | undefined;
  readonly walText: string;
  readonly partial: boolean;
  readonly test: boolean;
  readonly peek?: number;
  readonly gzip: boolean;
  readonly bzip2: boolean;
  readonly keepCompression: boolean;
  /** walhub's own: every error but "not found" exits above 125 (see errors.ts FATAL_EXIT_STATUS). */
  readonly fatalErrors: boolean;
}

/** What PostgreSQL passes as %f, for the one line that refuses anything else. */
const WAL_NAME_FORM = 'expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history';

type Flag = 'partial' | 'test' | 'gzip' | 'bzip2' | 'keepCompression' | 'fatalErrors';

const FLAGS: Record<string, Flag> = {
  '-P': 'partial',
  '--partial': 'partial',
  '-t': 'test',
  '--test': 'test',
  '-z': 'gzip',
  '-x': 'gzip',
  '--gzip': 'gzip',
  '-j': 'bzip2',
  '--bzip2': 'bzip2',
  '--keep-compression': 'keepCompression',
  '--fatal-errors': 'fatalErrors',
};

/** Barman's get-wal -o writes the file into a directory on the server it runs on: here, the hub. */
const OUTPUT_DIRECTORY_REFUSED =
  'is refused: it would write files on the hub; walhub only sends WAL to stdout (redirect it on the standby: get-wal SERVER WAL_NAME > FILE)';

function isOutputDirectory(arg: string): boolean {
  return arg === '-o' || arg === '--output-directory' || arg.startsWith('--output-directory=') || (/^-[A-Za-z]+$/.test(arg) && arg.includes('o'));
}

/**
 * Words -> request. Accepts `get-wal ...` and, for barman-wal-restore,
 * `barman [--config X|-c X] get-wal ...` (X is ignored: walhub has its own).
 */
export function parseCommand(words: readonly string[]): GetWalRequest {
  const rest = [...words];
  if (rest[0] === 'barman') {
    rest.shift();
    for (let option = rest[0]; option !== undefined && option !== 'get-wal'; option = rest[0]) {
      rest.shift();
      if (option === '--config' || option === '-c') {
        if (rest.shift() === undefined) throw usage(`barman ${option} needs a value`);
      } else if (!option.startsWith('-')) {
        throw usage(`unknown command ${quote(option)}: walhub only runs "get-wal SERVER WAL_NAME"`);
      } else if (!option.startsWith('--config=') && option !== '-q' && option !== '--quiet') {
        throw usage(`unsupported barman option ${quote(option)}`);
      }
    }
  }
  const verb = rest.shift();
  if (verb === undefined) throw usage('no command given: walhub only runs "get-wal SERVER WAL_NAME"');
  if (verb !== 'get-wal') throw usage(`unknown command ${quote(verb)}: walhub only runs "get-wal SERVER WAL_NAME"`);
  return parseGetWal(rest);
}

function parseGetWal(args: string[]): GetWalRequest {
  const flags = new Set<Flag>();
  let peek: number | undefined;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    if (isOutputDirectory(arg)) {
      throw usage(`--output-directory (-o) ${OUTPUT_DIRECTORY_REFUSED}`);
    }
    if (arg === '-p' || arg === '--peek') {
      peek = parsePeek(args[++i], arg);
    } else if (arg.startsWith('--peek=')) {
      peek = parsePeek(arg.slice('--peek='.length), '--peek');
    } else if (FLAGS[arg]) {
      flags.add(FLAGS[arg]);
    } else if (/^-[A-Za-z]{2,}$/.test(arg)) {
      // Bundled short flags, as argparse takes them: -Pt.
      for (const letter of arg.slice(1)) {
        const flag = FLAGS[`-${letter}`];
        if (!flag) throw usage(`unknown option ${quote(`-${letter}`)}`);
        flags.add(flag);
      }
    } else {
      throw usage(`unknown option ${quote(arg)}`);
    }
  }
  if (positional.length !== 2) throw usage('expected: get-wal [options] SERVER WAL_NAME');
  const [server, walText] = positional as [string, string];
  if (!SERVER_ID.test(server)) throw usage(`invalid server ID ${quote(server)}`);
  if ((flags.has('gzip') || flags.has('bzip2')) && flags.has('keepCompression')) {
    throw usage('--keep-compression cannot be combined with --gzip or --bzip2');
  }
  if (flags.has('gzip') && flags.has('bzip2')) throw usage('--gzip and --bzip2 cannot be combined');
  const test = flags.has('test');
  const wal = parseWalName(walText);
  if (!wal && !test) throw usage(`invalid WAL name ${quote(walText)}: ${WAL_NAME_FORM}`);
  return {
    verb: 'get-wal',
    server,
    wal,
    walText,
    partial: flags.has('partial'),
    test,
    gzip: flags.has('gzip'),
    bzip2: flags.has('bzip2'),
    keepCompression: flags.has('keepCompression'),
    fatalErrors: flags.has('fatalErrors'),
    ...(peek !== undefined ? { peek } : {}),
  };
}

function parsePeek(value: string | undefined, option: string): number {
  if (value === undefined || !/^[1-9]\d{0,3}$/.test(value)) throw usage(`${option} expects a whole number from 1 to 9999`);
  return Number(value);
}

/** Echo client text safely: bounded and printable, for one-line messages. */
export function quote(text: string): string {
  const shown = text.length > 64 ? `${text.slice(0, 64)}...` : text;
  return JSON.stringify(shown);
}

function usage(message: string): WalhubError {
  return new WalhubError('USAGE', message);
}

import { WalhubError } from '../errors.js';

/** Longer than any real get-wal line (barman-wal-restore's is under 200 bytes). */
export const MAX_COMMAND_BYTES = 4096;

/** Characters a shell would act on when unquoted; walhub runs no shell, so it refuses them rather than pass them on as text. */
const SHELL_OPERATORS = new Set([';', '&', '|', '<', '>', '(', ')', '`', '$', '\n', '\r']);

/**
 * Splits an exec string into words the way a POSIX shell does for quoting:
 * single quotes, double quotes (with \" \\ \$ \` escapes) and backslashes.
 * Nothing is expanded and nothing is run.
 */
export function splitWords(command: string): string[] {
  if (Buffer.byteLength(command) > MAX_COMMAND_BYTES) throw usage(`the command is longer than ${MAX_COMMAND_BYTES} bytes`);
  if (command.includes('\0')) throw usage('the command contains a NUL byte');
  const words: string[] = [];
  let word: string | undefined;
  let i = 0;
  while (i < command.length) {
    const c = command[i]!;
    if (c === ' ' || c === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw usage('the command has an unterminated single quote');
      word = (word ?? '') + command.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      word ??= '';
      i++;
      for (;;) {
        if (i >= command.length) throw usage('the command has an unterminated double quote');
        const d = command[i]!;
        if (d === '"') break;
        if (d === '\\' && '"\\$`\n'.includes(command[i + 1] ?? '')) {
          if (command[i + 1] !== '\n') word += command[i + 1];
          i += 2;
        } else if (d === '$' || d === '`') {
          throw usage(`walhub runs no shell: "${d}" inside double quotes is not expanded`);
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else if (c === '\\') {
      if (i + 1 >= command.length) throw usage('the command ends with a backslash');
      if (command[i + 1] !== '\n') word = (word ?? '') + command[i + 1];
      i += 2;
    } else if (SHELL_OPERATORS.has(c)) {
      throw usage(`walhub runs no shell: "${c === '\n' ? '\\n' : c === '\r' ? '\\r' : c}" is not allowed`);
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

function usage(message: string): WalhubError {
  return new WalhubError('USAGE', message);
}

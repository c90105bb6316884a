import type { Writable } from 'node:stream';
import { AUDIT_RESULT, exitStatus, isWalhubError, type RequestResult } from '../errors.js';
import type { KeyEntry } from '../keys/authorized-keys.js';
import { TransferStalled } from './channel-sink.js';
import { handleGetWal, type Hub, type Io, type Transfer } from './get-wal.js';
import { parseCommand, type GetWalRequest } from './grammar.js';
import { splitWords } from './split-words.js';

export interface Outcome extends Transfer {
  /** undefined when the client left before an exit status could be sent. */
  exit: number | undefined;
  result: RequestResult;
  server?: string;
  wal?: string;
  /** The one line the client was told, if any. */
  message?: string;
  /** An error that is not walhub's own: for the program log, never the client. */
  internal?: unknown;
  /** Set when the connection must be ended after this request, and why (the disconnect record's reason). */
  endConnection?: string;
}

/**
 * One exec request from start to exit status. Owns the mapping from errors to
 * exit codes and the rule that a message goes to stderr only while nothing
 * has been sent on stdout (ssh2 can lose or corrupt stderr after a large stdout).
 */
export async function runCommand(command: string, key: KeyEntry, hub: Hub, io: Io & { stderr: Writable }): Promise<Outcome> {
  const transfer: Transfer = { bytes: 0, handed: 0 };
  let request: GetWalRequest | undefined;
  try {
    request = parseCommand(splitWords(command));
    await handleGetWal(request, key, hub, io, transfer);
    return { ...transfer, exit: 0, result: 'ok', ...names(request) };
  } catch (error) {
    // Only a parsed request can ask for --fatal-errors: an unknown option is exit 2 as usual.
    const fatal = request?.fatalErrors ?? false;
    if (io.signal.aborted) return { ...transfer, exit: undefined, result: 'aborted', ...names(request) };
    // The client is still there but takes nothing: the audit says it was cut
    // off, and why; it gets exit 5 (retry) if it ever reads again. A stall that
    // leaves data inside the channel also ends the connection (its ssh then
    // exits 255), which is the only way to make ssh2 let go of that data.
    if (error instanceof TransferStalled) {
      return {
        ...transfer,
        exit: exitStatus('UNAVAILABLE', fatal),
        result: 'aborted',
        message: error.message,
        ...names(request),
        ...(error.leftInChannel ? { endConnection: 'a stalled transfer left data in its channel' } : {}),
      };
    }
    const known = isWalhubError(error);
    const code = known ? error.code : 'UNAVAILABLE';
    const message = known ? error.message : 'internal error, see the walhub log';
    if (transfer.handed === 0) {
      const where = request ? ` (${request.server} ${request.walText})` : '';
      io.stderr.write(`walhub: ${message}${where}\n`);
    }
    return {
      ...transfer,
      exit: exitStatus(code, fatal),
      result: AUDIT_RESULT[code],
      message,
      ...names(request),
      ...(known ? {} : { internal: error }),
    };
  }
}

/** Whether a command asks for --fatal-errors, for refusals made before it runs (a revoked key). */
export function asksFatalErrors(command: string): boolean {
  try {
    return parseCommand(splitWords(command)).fatalErrors;
  } catch {
    return false;
  }
}

function names(request: GetWalRequest | undefined): { server?: string; wal?: string } {
  return request ? { server: request.server, wal: request.walText } : {};
}

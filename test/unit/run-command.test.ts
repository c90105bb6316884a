// Exit statuses as the channel gets them, with and without --fatal-errors:
// runCommand owns the mapping from errors to exit codes.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecoderTable } from '../../src/archive/compression.js';
import type { Outlet } from '../../src/command/channel-sink.js';
import { createTransferCounts, type Hub } from '../../src/command/get-wal.js';
import { runCommand, type Outcome } from '../../src/command/run-command.js';
import { parseConfig } from '../../src/config.js';
import { EXIT_STATUS, FATAL_EXIT_STATUS } from '../../src/errors.js';
import { parseKeyLine, type KeyEntry } from '../../src/keys/authorized-keys.js';
import { generateKey, makeKeyDir } from './keygen.js';

const SEGMENT = '000000010000000000000003';
const DAMAGED = '000000010000000000000004';

let keyDir: ReturnType<typeof makeKeyDir>;
let key: KeyEntry;
let hub: Hub;

/** Nothing in these requests reaches the socket: every error is found before the first byte. */
const idleOutlet: Outlet = {
  waitForRoom: async () => undefined,
  waitForProgress: async () => undefined,
  written: () => 0,
  taken: () => 0,
  batched: (send) => send(),
};

beforeAll(() => {
  keyDir = makeKeyDir();
  const generated = generateKey(keyDir.dir, 'standby-a', 'ed25519');
  const entry = parseKeyLine(`servers="pg1" ${generated.publicLine}`, 1);
  if (entry instanceof Error) throw entry;
  key = entry;
  const archive = join(keyDir.dir, 'archive');
  const wals = join(archive, 'pg1', 'wals', DAMAGED.slice(0, 16));
  mkdirSync(wals, { recursive: true });
  // The right size, but no WAL page header: damaged.
  writeFileSync(join(wals, DAMAGED), Buffer.alloc(16 * 1024 * 1024, 0x41));
  const config = parseConfig(`archive = ${JSON.stringify(archive)}\n`, join(keyDir.dir, 'walhub.toml'));
  hub = { config, decoders: createDecoderTable(), transfers: createTransferCounts() };
});

afterAll(() => keyDir?.remove());

async function run(command: string): Promise<Outcome & { stderr: string }> {
  const stderr = new PassThrough();
  const outcome = await runCommand(command, key, hub, {
    stdout: new PassThrough(),
    stderr,
    signal: new AbortController().signal,
    outlet: idleOutlet,
  });
  stderr.end();
  return { ...outcome, stderr: String(stderr.read() ?? '') };
}

describe('get-wal --fatal-errors', () => {
  it('maps every error but "not found" above 125, and never to 126, 127 or 143', () => {
    expect(FATAL_EXIT_STATUS).toEqual({ NOT_FOUND: 1, USAGE: 130, DENIED: 131, DAMAGED: 132, UNAVAILABLE: 133 });
    for (const [code, status] of Object.entries(FATAL_EXIT_STATUS)) {
      if (code === 'NOT_FOUND') continue;
      expect(status).toBeGreaterThan(125);
      expect(status).toBeLessThan(256);
      expect([126, 127, 143]).not.toContain(status);
      expect(status).toBe(128 + EXIT_STATUS[code as keyof typeof EXIT_STATUS]);
    }
  });

  it('keeps "not found" at 1: the normal end of the archive', async () => {
    const outcome = await run(`get-wal --fatal-errors pg1 ${SEGMENT}`);
    expect(outcome).toMatchObject({ exit: 1, result: 'not_found' });
    expect(outcome.stderr).toBe(`walhub: WAL file not found in the archive (pg1 ${SEGMENT})\n`);
  });

  it('answers a damaged file with 132 instead of 4, with the same line', async () => {
    const plain = await run(`get-wal pg1 ${DAMAGED}`);
    const fatal = await run(`get-wal --fatal-errors pg1 ${DAMAGED}`);
    expect(plain).toMatchObject({ exit: 4, result: 'damaged' });
    expect(fatal).toMatchObject({ exit: 132, result: 'damaged' });
    expect(fatal.stderr).toBe(plain.stderr);
    expect(fatal.stderr).toMatch(/^walhub: archived file is damaged: /);
  });

  it('answers a server this key may not read with 131 instead of 3', async () => {
    expect((await run(`get-wal pg2 ${SEGMENT}`)).exit).toBe(3);
    expect(await run(`barman get-wal --fatal-errors pg2 ${SEGMENT}`)).toMatchObject({ exit: 131, result: 'denied' });
  });

  it('answers a busy hub with 133 instead of 5', async () => {
    hub.transfers.active = hub.config.limits.maxTransfers;
    try {
      expect((await run(`get-wal pg1 ${SEGMENT}`)).exit).toBe(5);
      expect(await run(`get-wal --fatal-errors pg1 ${SEGMENT}`)).toMatchObject({ exit: 133, result: 'unavailable' });
    } finally {
      hub.transfers.active = 0;
    }
  });

  it('leaves errors found while parsing at exit 2: the option is not known yet', async () => {
    expect(await run(`get-wal --fatal-errors --bogus pg1 ${SEGMENT}`)).toMatchObject({ exit: 2, result: 'usage' });
    expect(await run(`get-wal --fatal-errors -o /tmp pg1 ${SEGMENT}`)).toMatchObject({ exit: 2, result: 'usage' });
  });
});

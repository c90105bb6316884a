// The archive's own race: lookup resolves a path, then opens it. Whoever can
// write a server directory can swap a directory for a symlink in between;
// the opened file must still be inside the server directory, or be refused.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { findEscapingLinks, findWalFile } from '../../src/archive/lookup.js';
import { parseWalName } from '../../src/archive/wal-name.js';
import { WalhubError } from '../../src/errors.js';
import { startFifoWitness } from '../helpers/fifo-witness.js';

/** Runs once, right after lookup's realpath resolves the named path: the swap lands between check and open. */
const hook = vi.hoisted(() => ({ afterRealpath: undefined as undefined | ((path: string) => void) }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const realpath = async (path: string) => {
    const resolved = await actual.realpath(path);
    const after = hook.afterRealpath;
    if (after) after(path);
    return resolved;
  };
  return { ...actual, default: { ...actual, realpath }, realpath };
});

const HISTORY = parseWalName('00000002.history')!;
let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'walhub-race-'));
  for (const [server, text] of [['pgA', 'pgA history\n'], ['pgB', 'pgB secret\n']] as const) {
    mkdirSync(join(root, server, 'wals'), { recursive: true });
    writeFileSync(join(root, server, 'wals', '00000002.history'), text);
  }
});

afterEach(() => {
  hook.afterRealpath = undefined;
  rmSync(root, { recursive: true, force: true });
});

async function readFound(serverDir: string): Promise<string | undefined> {
  const found = await findWalFile(serverDir, HISTORY, false);
  if (!found) return undefined;
  try {
    return (await found.handle.readFile()).toString();
  } finally {
    await found.handle.close();
  }
}

describe('findWalFile against a directory swapped for a symlink', () => {
  it('refuses, never serves, another server\'s file when wals/ becomes a symlink between the check and the open', async () => {
    const pgA = join(root, 'pgA');
    hook.afterRealpath = (path) => {
      if (!path.endsWith(join('wals', '00000002.history'))) return;
      hook.afterRealpath = undefined;
      renameSync(join(pgA, 'wals'), join(pgA, 'wals.real'));
      symlinkSync('../pgB/wals', join(pgA, 'wals'));
    };
    const outcome = await readFound(pgA).catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(WalhubError);
    expect((outcome as WalhubError).code).toBe('UNAVAILABLE');
    expect((outcome as WalhubError).message).toBe('archive path wals leads outside the server directory; refusing it');
  });

  it('opens nothing of the other server, not even to refuse it, when the swap lands between the check and the open', async () => {
    const pgA = join(root, 'pgA');
    rmSync(join(root, 'pgB', 'wals', '00000002.history'));
    const witness = await startFifoWitness(join(root, 'pgB', 'wals', '00000002.history'));
    try {
      hook.afterRealpath = (path) => {
        if (!path.endsWith(join('wals', '00000002.history'))) return;
        hook.afterRealpath = undefined;
        renameSync(join(pgA, 'wals'), join(pgA, 'wals.real'));
        symlinkSync('../pgB/wals', join(pgA, 'wals'));
      };
      await expect(readFound(pgA)).rejects.toThrow('archive path wals leads outside the server directory; refusing it');
      await new Promise((r) => setTimeout(r, 200));
      expect(witness.opened()).toBe(false);
      await witness.openItOnce();
      expect(witness.opened()).toBe(true);
    } finally {
      witness.stop();
    }
  });

  it('serves no byte of another server while a process swaps wals/ and a symlink 10000 times', async () => {
    const pgA = join(root, 'pgA');
    symlinkSync('../pgB/wals', join(pgA, 'wals.link'));
    // Swaps with rename(2) only, so every look sees a whole directory or a whole symlink.
    const swapper = spawn(process.execPath, [
      '-e',
      `const fs = require('fs'); const d = process.argv[1];
       for (let i = 0; i < 10000; i++) {
         fs.renameSync(d + '/wals', d + '/wals.real'); fs.renameSync(d + '/wals.link', d + '/wals');
         fs.renameSync(d + '/wals', d + '/wals.link'); fs.renameSync(d + '/wals.real', d + '/wals');
       }`,
      pgA,
    ]);
    const exited = new Promise<void>((resolve) => swapper.on('exit', () => resolve()));
    let running = true;
    void exited.then(() => (running = false));
    const counts = { own: 0, other: 0, refused: 0, missing: 0 };
    for (let i = 0; i < 20_000 && running; i++) {
      try {
        const text = await readFound(pgA);
        if (text === undefined) counts.missing++;
        else if (text.startsWith('pgB')) counts.other++;
        else counts.own++;
      } catch (error) {
        if (!(error instanceof WalhubError) || error.code !== 'UNAVAILABLE') throw error;
        counts.refused++;
      }
    }
    await exited;
    console.log(`lookups during the swaps: ${JSON.stringify(counts)}`);
    expect(counts.own).toBeGreaterThan(0);
    expect(counts.other).toBe(0);
  });
});

describe('findEscapingLinks', () => {
  it('names wals/, incoming/ and the hash directories that lead outside the server directory, and nothing that stays inside', async () => {
    const pgA = join(root, 'pgA');
    mkdirSync(join(pgA, 'streaming'));
    mkdirSync(join(root, 'elsewhere', '0000000100000000'), { recursive: true });
    symlinkSync(join(root, 'elsewhere', '0000000100000000'), join(pgA, 'wals', '0000000100000000'));
    symlinkSync(join(root, 'pgB', 'wals'), join(pgA, 'incoming'));
    mkdirSync(join(pgA, 'kept'));
    symlinkSync('../kept', join(pgA, 'wals', '0000000100000001'));
    symlinkSync(join(root, 'pgB', 'wals', '00000002.history'), join(pgA, 'streaming', '000000010000000000000009'));
    expect((await findEscapingLinks(pgA)).sort()).toEqual(['incoming', 'streaming/000000010000000000000009', 'wals/0000000100000000']);
  });

  it('finds nothing in a server directory without symlinks, or one that does not exist', async () => {
    expect(await findEscapingLinks(join(root, 'pgB'))).toEqual([]);
    expect(await findEscapingLinks(join(root, 'nowhere'))).toEqual([]);
  });
});

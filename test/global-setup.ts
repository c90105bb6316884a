// vitest globalSetup: builds the real-WAL fixture once per run (see
// test/helpers/wal-fixture.ts). Tests read it with
// `await loadOrMakeWalFixture(inject('walFixtureDir'))`.
//
// WALHUB_FIXTURE_CACHE=/some/dir keeps the fixture between runs (it is built
// there once, then reused while its fixture.json matches the files).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { loadOrMakeWalFixture, makeWalFixture } from './helpers/wal-fixture.js';

declare module 'vitest' {
  export interface ProvidedContext {
    walFixtureDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cache = process.env['WALHUB_FIXTURE_CACHE'];
  if (cache !== undefined && cache !== '') {
    const dir = resolve(cache);
    await loadOrMakeWalFixture(dir);
    project.provide('walFixtureDir', dir);
    return async () => {};
  }
  const dir = await mkdtemp(join(tmpdir(), 'walhub-fixture-'));
  try {
    await makeWalFixture(dir);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  project.provide('walFixtureDir', dir);
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}

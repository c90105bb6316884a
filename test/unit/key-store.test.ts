import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeySet } from '../../src/keys/authorized-keys.js';
import { KeyStore } from '../../src/keys/key-store.js';
import { generateKey, makeKeyDir, type GeneratedKey } from './keygen.js';

let keyDir: ReturnType<typeof makeKeyDir>;
let key: GeneratedKey;
let dir: string;

beforeAll(async () => {
  keyDir = makeKeyDir();
  key = generateKey(keyDir.dir, 'standby-a', 'ed25519');
  dir = await mkdtemp(join(tmpdir(), 'walhub-key-store-'));
});

afterAll(async () => {
  keyDir?.remove();
  await rm(dir, { recursive: true, force: true });
});

function storeAt(path: string) {
  const loaded: KeySet[] = [];
  const failed: Error[] = [];
  const store = new KeyStore(path, { loaded: (set) => loaded.push(set), failed: (error) => failed.push(error) });
  return { store, loaded, failed };
}

describe('KeyStore', () => {
  it('revokes every key when authorized_keys is deleted (it used to keep the last set until a restart)', async () => {
    const path = join(dir, 'deleted');
    await writeFile(path, `servers="pg1" ${key.publicLine}\n`);
    const { store, loaded, failed } = storeAt(path);
    await store.reload();
    expect(store.current.byBlob.size).toBe(1);
    await unlink(path);
    await store.reload();
    expect(store.current.byBlob.size).toBe(0);
    expect(failed).toEqual([]);
    expect(loaded.at(-1)!.problems).toEqual([`${path}: does not exist: no key is authorized, every login is refused`]);
  });

  it('keeps the last good set, and reports it, when the file exists but cannot be read', async () => {
    const path = join(dir, 'unreadable');
    await writeFile(path, `servers="pg1" ${key.publicLine}\n`);
    const { store, failed } = storeAt(path);
    await store.reload();
    // A directory in its place: it exists, and reading it fails (EISDIR), even for root.
    await unlink(path);
    await mkdir(path);
    await store.reload();
    expect(store.current.byBlob.size).toBe(1);
    expect(failed.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EISDIR']);
  });
});

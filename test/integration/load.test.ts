// 120 fetches of 16 MiB segments, 8 at a time, mixed compression: guards
// against ssh2's window bugs (reference/ssh2.md), which show up as wrong or
// missing bytes or a missing exit status only under sustained large output.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Codec, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createClientKey, sshExec, type ClientKey, type SshResult } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const FETCHES = 120;
const PARALLEL = 8;
let hub: Hub;
let standby: ClientKey;
const files: Placed[] = [];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub();
  standby = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
  const dir = await createServerDir(hub.archive, 'pg1');
  const codecs: Codec[] = ['zstd', 'gzip', 'none', 'zstd', 'bzip2', 'gzip'];
  for (const [i, segment] of fixture.segments.slice(0, codecs.length).entries()) {
    files.push(await place(dir, segment, { codec: codecs[i]! }));
  }
});

afterAll(async () => {
  await hub?.stop();
});

it(`serves ${FETCHES} segments of 16 MiB, ${PARALLEL} at a time, every byte right`, async () => {
  const failures: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < FETCHES) {
      const i = next++;
      const file = files[i % files.length]!;
      const result: SshResult = await sshExec(hub, standby, `get-wal pg1 ${file.name}`, { timeoutMs: 120_000 });
      if (result.status !== 0 || result.sha256 !== file.sha256 || result.bytes !== file.size) {
        failures.push(`#${i} ${file.name} (${file.codec}): exit ${result.status}, ${result.bytes} bytes, ${result.stderr.trim()}`);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  expect(failures).toEqual([]);
  const requests = (await hub.audit()).filter((r) => r.event === 'request');
  expect(requests).toHaveLength(FETCHES);
  expect(requests.every((r) => r.result === 'ok' && r.exit === 0 && r.bytes === 16 * 1024 * 1024)).toBe(true);
}, 600_000);

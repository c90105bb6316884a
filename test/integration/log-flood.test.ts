// What a client that never logs in can make walhub write: a long ident line,
// 30000-byte user names and every authentication method, over and over. The
// audit and program logs together must grow by at most 8 KiB per connection.
import { stat } from 'node:fs/promises';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';

let hub: Hub;
let standby: ClientKey;

const LOG_BUDGET_PER_CONNECTION = 8 * 1024;
// C1 controls (NEL, CSI) that some terminals act on, and a C0 escape.
const HOSTILE_USER = `${'u'.repeat(30_000)}\u0085\u009b31m\u001b[2J`;
// ssh2's handshake hashes the ident as Latin-1, so only ASCII controls fit here.
const HOSTILE_IDENT = `${'x'.repeat(7_000)}\u001b[31m ${'c'.repeat(900)}`;
const offeredKeys = Array.from({ length: 4 }, () => ssh2.utils.generateKeyPairSync('ed25519'));

beforeAll(async () => {
  // Penalties off, as behind a NAT: otherwise the source is refused at accept after
  // three failed logins, and the records this file measures would never be written.
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': 'servers="pg1"' },
    { extraToml: '[limits]\npenalty_auth_failure = "0s"\npenalty_login_timeout = "0s"\n' },
  ));
});

afterAll(async () => {
  await hub?.stop();
});

/** One hostile login: long ident, long user names, `none` and unknown keys in turn, until walhub hangs up. */
function hostileLogin(localAddress: string): Promise<number> {
  const client = new ssh2.Client();
  let attempts = 0;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.end();
      resolve(attempts);
    };
    const timer = setTimeout(done, 20_000);
    client.on('error', done).on('close', done).on('ready', done);
    client.connect({
      host: '127.0.0.1',
      port: hub.port,
      localAddress,
      username: HOSTILE_USER,
      ident: HOSTILE_IDENT,
      readyTimeout: 20_000,
      authHandler: (_methods, _partial, next) => {
        attempts++;
        if (attempts > 100) return next(false as never);
        const key = offeredKeys[attempts % offeredKeys.length]!;
        next(attempts % 2 === 0 ? { type: 'none', username: HOSTILE_USER } : { type: 'publickey', username: HOSTILE_USER, key: key.private });
      },
    });
  });
}

async function logBytes(): Promise<number> {
  await new Promise((r) => setTimeout(r, 300)); // the audit writer is asynchronous
  const audit = await stat(hub.auditLog).then((s) => s.size).catch(() => 0);
  return audit + hub.logBytes();
}

it('a client that never logs in writes at most 8 KiB of logs per connection, whatever it sends', async () => {
  for (let i = 0; i < 3; i++) {
    const before = await logBytes();
    const attempts = await hostileLogin('127.0.0.2');
    const grown = (await logBytes()) - before;
    console.log(`hostile connection ${i + 1}: ${attempts} attempts, logs grew by ${grown} bytes`);
    expect(attempts).toBeGreaterThan(1);
    expect(grown).toBeLessThanOrEqual(LOG_BUDGET_PER_CONNECTION);
  }
});

it('records one refused login per connection, with the keys offered, the attempts and the user cut visibly', async () => {
  await hostileLogin('127.0.0.4');
  const records = (await hub.audit()).filter((r) => typeof r.remote === 'string' && r.remote.startsWith('127.0.0.4:'));
  const refused = records.filter((r) => r.event === 'auth');
  expect(refused).toHaveLength(1);
  const [record] = refused as [Record<string, unknown>];
  expect(record).toMatchObject({ result: 'refused', reason: 'too many authentication attempts', attempts: 7 });
  const offered = record.keys as string[];
  expect(offered.length).toBeGreaterThan(1);
  expect(offered).toContain(record.key);
  for (const fingerprint of offered) expect(fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  const user = record.user as string;
  expect(user.length).toBeLessThan(100);
  expect(user).toBe(`${'u'.repeat(64)}...[cut, ${HOSTILE_USER.length} characters]`);
  const client = records.find((r) => r.event === 'connect')!.client as string;
  expect(client.length).toBeLessThan(300);
  expect(client).toContain('[cut, ');
  // No raw C1 control reaches a log: escaped as text.
  const text = JSON.stringify(records) + JSON.stringify(hub.logLines);
  expect(text).not.toMatch(/[\u0080-\u009f]/);
});

it('counts none attempts towards max_auth_tries', async () => {
  const client = new ssh2.Client();
  let attempts = 0;
  await new Promise<void>((resolve) => {
    const done = () => {
      client.end();
      resolve();
    };
    client.on('error', done).on('close', done);
    client.connect({
      host: '127.0.0.1',
      port: hub.port,
      localAddress: '127.0.0.5',
      username: 'walhub',
      readyTimeout: 20_000,
      authHandler: (_methods, _partial, next) => {
        attempts++;
        if (attempts > 50) return next(false as never);
        next({ type: 'none', username: 'walhub' });
      },
    });
  });
  // The first `none` asks which methods there are, as every client does; the next 6 are the tries.
  expect(attempts).toBeGreaterThanOrEqual(8);
  const records = (await hub.audit()).filter((r) => r.event === 'auth' && String(r.remote).startsWith('127.0.0.5:'));
  expect(records).toMatchObject([{ result: 'refused', reason: 'too many authentication attempts', method: 'none', attempts: 7 }]);
});

it('rate-limits refused-login records from one address, and says how many it left out', async () => {
  for (let i = 0; i < 9; i++) await hostileLogin('127.0.0.3');
  const records = (await hub.audit()).filter((r) => r.event === 'auth' && String(r.remote).startsWith('127.0.0.3'));
  expect(records.filter((r) => r.result === 'refused' && r.suppressed === undefined)).toHaveLength(5);
  const summary = await hub.waitForLog((l) => l.msg === 'refused logins not recorded' && l.address === '127.0.0.3', 20_000);
  expect(summary.suppressed).toBe(4);
  const audited = (await hub.audit()).find((r) => r.event === 'auth' && r.remote === '127.0.0.3' && r.suppressed === 4);
  expect(audited).toMatchObject({ result: 'refused', reason: 'rate limit: 4 refused logins from this address not recorded' });
});

it('cuts a 4000-character WAL name given to get-wal --test (not checked as a WAL name) in both logs', async () => {
  const wal = `${'W'.repeat(4000)}\u009b`;
  const before = await logBytes();
  const result = await sshExec(hub, standby, `get-wal --test pg1 ${wal}`);
  expect(result.status).toBe(3);
  const grown = (await logBytes()) - before;
  console.log(`authenticated connection with a long --test WAL name: logs grew by ${grown} bytes`);
  expect(grown).toBeLessThanOrEqual(LOG_BUDGET_PER_CONNECTION);
  const record = (await hub.audit()).find((r) => r.event === 'request' && String(r.wal).startsWith('WWW'))!;
  expect(record.wal).toBe(`${'W'.repeat(64)}...[cut, 4001 characters]`);
});

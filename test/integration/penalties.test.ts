// PerSourcePenalties: a host whose logins keep failing, or that keeps making
// walhub exchange keys without trying one, is refused at accept for a while, logged once; standbys elsewhere, and a host a standby logged
// in from, are not affected. The lines walhub wrote are then run through
// the shipped fail2ban filter with the real fail2ban-regex.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

const FILTER = fileURLToPath(new URL('../../etc/fail2ban/filter.d/walhub.conf', import.meta.url));
const NOT_FOUND = 'walhub: WAL file not found in the archive (pg1 000000010000000000000001)\n';
let hub: Hub;
let standby: ClientKey;
let stranger: ClientKey;
let rawLog = '';

beforeAll(async () => {
  // Shortened from the defaults (5s, 15s, 10m) so that the test sees a penalty start and end.
  hub = await startHub({
    extraToml: '[limits]\npenalty_auth_failure = "1s"\npenalty_min = "3s"\npenalty_max = "4s"\npenalty_exempt = ["127.0.0.11", "127.0.1.0/24"]\n',
  });
  hub.process.stdout!.on('data', (text: string) => (rawLog += text));
  standby = await createClientKey(hub.dir, 'standby-a');
  stranger = await createClientKey(hub.dir, 'stranger');
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
  await createServerDir(hub.archive, 'pg1');
});

afterAll(async () => {
  await hub?.stop();
});

type Outcome = 'refused at accept' | 'authentication failed' | 'logged in';

/** One login with ssh2's Client from `localAddress`: did walhub even answer? */
async function tryLogin(localAddress: string, key: ClientKey): Promise<Outcome> {
  const privateKey = await readFile(key.privatePath);
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    let handshake = false;
    const done = (outcome: Outcome) => {
      client.end();
      resolve(outcome);
    };
    client.on('handshake', () => (handshake = true));
    client.on('ready', () => done('logged in'));
    client.on('error', () => done(handshake ? 'authentication failed' : 'refused at accept'));
    client.on('close', () => done(handshake ? 'authentication failed' : 'refused at accept'));
    client.connect({ host: '127.0.0.1', port: hub.port, localAddress, username: 'walhub', privateKey, readyTimeout: 10_000 });
  });
}

async function tryLogins(localAddress: string, key: ClientKey, count: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (let i = 0; i < count; i++) outcomes.push(await tryLogin(localAddress, key));
  return outcomes;
}

const refusalLines = (address: string) => hub.logLines.filter((l) => l.msg === 'connection refused' && l.address === address);
const loginFailures = (address: string) => hub.logLines.filter((l) => l.msg === 'login failed' && l.address === address);

it('refuses a host at accept after repeated failed logins, logs it once, and lets it back when the penalty ends', async () => {
  const outcomes = await tryLogins('127.0.0.4', stranger, 50);
  const failed = outcomes.filter((o) => o === 'authentication failed').length;
  // penalty_min 3s at 1s a failure: the fourth failure or so starts the penalty, every later attempt is refused.
  expect(failed).toBeGreaterThanOrEqual(3);
  expect(failed).toBeLessThanOrEqual(6);
  expect(outcomes.slice(failed)).toEqual(new Array(50 - failed).fill('refused at accept'));
  expect(refusalLines('127.0.0.4').map((l) => l.reason)).toEqual(['penalized for connections that did not log in']);
  expect(loginFailures('127.0.0.4')).toHaveLength(failed);

  // A standby at another address fetches as usual meanwhile.
  const fetch = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001');
  expect([fetch.status, fetch.stderr]).toEqual([1, NOT_FOUND]);

  // penalty_max is 4 s: by then walhub answers again (and the stranger fails as before).
  await new Promise((r) => setTimeout(r, 4_500));
  expect(await tryLogin('127.0.0.4', stranger)).toBe('authentication failed');
}, 60_000);

it('never refuses a host a still-authorized key logged in from (it slows it), until the key is removed', async () => {
  const login = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001', { extra: ['-b', '127.0.0.9'] });
  expect([login.status, login.stderr]).toEqual([1, NOT_FOUND]);
  expect(await tryLogins('127.0.0.9', stranger, 10)).toEqual(new Array(10).fill('authentication failed'));
  expect(refusalLines('127.0.0.9')).toEqual([]);
  // Marked, so that fail2ban leaves the standby's address alone.
  await hub.waitForLog(() => loginFailures('127.0.0.9').length === 10);
  expect(loginFailures('127.0.0.9').map((l) => l.standby_source)).toEqual(new Array(10).fill(true));

  await hub.loadKeys([]);
  const outcomes = await tryLogins('127.0.0.9', stranger, 10);
  expect(outcomes).toContain('refused at accept');
  expect(refusalLines('127.0.0.9').map((l) => l.reason)).toEqual(['penalized for connections that did not log in']);
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
}, 60_000);

it('never refuses an address in penalty_exempt, though no standby logged in from it yet: it slows it', async () => {
  expect(await tryLogins('127.0.0.11', stranger, 8)).toEqual(new Array(8).fill('authentication failed'));
  expect(refusalLines('127.0.0.11')).toEqual([]);
  await hub.waitForLog(() => loginFailures('127.0.0.11').length === 8);
  expect(loginFailures('127.0.0.11').map((l) => l.standby_source)).toEqual(new Array(8).fill(true));
  expect(hub.logLines.filter((l) => l.msg === 'connections slowed' && l.address === '127.0.0.11')).toHaveLength(1);
}, 60_000);

/** Connects from `localAddress`, lets the key exchange finish, and leaves without trying a key. */
function exchangeKeysAndLeave(localAddress: string): Promise<'left before login' | 'refused at accept'> {
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    let handshake = false;
    client.on('handshake', () => {
      handshake = true;
      client.end();
    });
    client.on('error', () => undefined);
    client.on('close', () => resolve(handshake ? 'left before login' : 'refused at accept'));
    client.connect({ host: '127.0.0.1', port: hub.port, localAddress, username: 'walhub', authHandler: () => undefined, readyTimeout: 10_000 });
  });
}

it('refuses a host that keeps making walhub exchange keys without ever trying one, and logs it once', async () => {
  const outcomes: string[] = [];
  for (let i = 0; i < 30; i++) outcomes.push(await exchangeKeysAndLeave('127.0.0.5'));
  const left = outcomes.filter((o) => o === 'left before login').length;
  // penalty_min 3s at penalty_no_auth's 1s a connection: the third or fourth starts the penalty.
  expect(left).toBeGreaterThanOrEqual(3);
  expect(left).toBeLessThanOrEqual(5);
  expect(outcomes.slice(left)).toEqual(new Array(30 - left).fill('refused at accept'));
  expect(refusalLines('127.0.0.5').map((l) => l.reason)).toEqual(['penalized for connections that did not log in']);
  // No line per connection: only the penalty's.
  expect(loginFailures('127.0.0.5')).toEqual([]);
}, 60_000);

it('slows, never refuses, a host a standby logged in from that keeps making walhub exchange keys, and logs it once', async () => {
  const login = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001', { extra: ['-b', '127.0.0.10'] });
  expect([login.status, login.stderr]).toEqual([1, NOT_FOUND]);
  // Four loops for 6 s from the standby's address: without the slowing, hundreds of key exchanges.
  const until = Date.now() + 6_000;
  const loop = async () => {
    const outcomes: string[] = [];
    while (Date.now() < until) outcomes.push(await exchangeKeysAndLeave('127.0.0.10'));
    return outcomes;
  };
  const outcomes = (await Promise.all([loop(), loop(), loop(), loop()])).flat();
  console.log(`churn from a standby's address: ${outcomes.length} key exchanges in 6 s`);
  expect(outcomes.every((o) => o === 'left before login')).toBe(true);
  // penalty_min 3s free, then at most 2 s of wait a connection: about 3 + 4 x 6 / 2.
  expect(outcomes.length).toBeLessThanOrEqual(30);
  const slowed = hub.logLines.filter((l) => l.msg === 'connections slowed' && l.address === '127.0.0.10');
  expect(slowed).toHaveLength(1);
  expect(slowed[0]!.reason).toBe('connections without a login from a source a standby uses');
  // The standby is still answered, after a wait of 2 s at most.
  const again = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001', { extra: ['-b', '127.0.0.10'] });
  expect([again.status, again.stderr]).toEqual([1, NOT_FOUND]);
  expect(refusalLines('127.0.0.10')).toEqual([]);
}, 60_000);

/** Connects from `localAddress`, reads walhub's banner and leaves without a word, as a TCP health check does. */
function readBannerAndLeave(localAddress: string): Promise<'banner' | 'refused at accept'> {
  return new Promise((resolve) => {
    let seen = '';
    const socket = connect({ host: '127.0.0.1', port: hub.port, localAddress });
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      seen += text;
      if (seen.startsWith('SSH-2.0-')) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(seen.startsWith('SSH-2.0-') ? 'banner' : 'refused at accept'));
  });
}

it('never penalizes a check that only reads the banner, however often it comes', async () => {
  const outcomes: string[] = [];
  for (let i = 0; i < 40; i++) outcomes.push(await readBannerAndLeave('127.0.0.6'));
  expect(outcomes).toEqual(new Array(40).fill('banner'));
  expect(refusalLines('127.0.0.6')).toEqual([]);
}, 60_000);

it('the shipped fail2ban filter finds every refusal walhub wrote, with the address it refused', async () => {
  const fail2banRegex = requireProgram('fail2ban-regex', 'fail2ban');
  const logFile = join(hub.dir, 'walhub.log');
  // One snapshot of whole lines for both: lines may still arrive while the file is written.
  const snapshot = rawLog.slice(0, rawLog.lastIndexOf('\n') + 1);
  await writeFile(logFile, snapshot);
  const written = snapshot.split('\n').filter((line) => /"msg":"(?:login failed|connection refused)"/.test(line));
  // Failed logins from an address a standby logged in from are marked, and left to walhub's slowing.
  const fromStandbySources = written.filter((line) => (JSON.parse(line) as { standby_source?: boolean }).standby_source === true);
  expect(fromStandbySources.length).toBeGreaterThan(5);
  const expected = written.filter((line) => !fromStandbySources.includes(line)).map((line) => (JSON.parse(line) as { address: string }).address);
  expect(expected.length).toBeGreaterThan(5);
  const { stdout } = await promisify(execFile)(fail2banRegex, ['--out', 'ip', logFile, FILTER]);
  expect(stdout.trim().split('\n')).toEqual(expected);
  // And nothing else: the standby's successful logins and fetches from 127.0.0.1 are not failures.
  expect(expected).not.toContain('127.0.0.1');
}, 60_000);

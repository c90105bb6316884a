// walhub keys as an administrator runs it: real key files from ssh-keygen,
// the real ssh-keygen -lf to compare fingerprints, and a running walhub that
// must apply each change to the next request.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { startHub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { HISTORY_TEXT, walhub } from '../helpers/walhub-cli.js';

const run = promisify(execFile);

let dir: string;
let ed25519: ClientKey;
let rsa: ClientKey;
let ecdsa: ClientKey;
let spare: ClientKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'walhub-keys-'));
  [ed25519, rsa, ecdsa, spare] = await Promise.all([
    createClientKey(dir, 'k-ed25519'),
    createClientKey(dir, 'k-rsa', 'rsa'),
    createClientKey(dir, 'k-ecdsa', 'ecdsa'),
    createClientKey(dir, 'k-spare'),
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let count = 0;
/** A config and an authorized_keys holding `initial`, in a directory of their own. */
async function setup(initial = ''): Promise<{ config: string; keys: string; audit: string }> {
  const home = join(dir, `case-${++count}`);
  await mkdir(home);
  const config = join(home, 'walhub.toml');
  await writeFile(config, 'authorized_keys = "authorized_keys"\naudit_log = "audit.log"\n');
  await writeFile(join(home, 'authorized_keys'), initial, { mode: 0o600 });
  return { config, keys: join(home, 'authorized_keys'), audit: join(home, 'audit.log') };
}

const keygenLines = async (file: string) => (await run(requireProgram('ssh-keygen', 'openssh-client'), ['-l', '-f', file])).stdout;

describe('walhub keys add', () => {
  it('prints the fingerprint line exactly as ssh-keygen -lf prints it, for each key type', async () => {
    const { config, keys } = await setup();
    const printed: string[] = [];
    for (const [key, name] of [[ed25519, 'standby-a'], [rsa, 'standby-b'], [ecdsa, 'standby-c']] as const) {
      const result = await walhub(['keys', 'add', '--config', config, '--name', name, '--servers', 'pg1', `${key.privatePath}.pub`]);
      expect(result.status, result.stderr).toBe(0);
      printed.push(result.stdout);
    }
    expect(printed.join('')).toBe(await keygenLines(keys));
  });

  it('reads the key from stdin and writes servers=, from= and expiry-time= before the key and its name', async () => {
    const { config, keys } = await setup();
    const result = await walhub(['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1,pg2', '--from', '10.1.0.0/16,!10.1.9.9', '--expires', '2027-12-31', '-'], {
      stdin: `${ed25519.publicLine}\n`,
    });
    expect(result.status, result.stderr).toBe(0);
    const [type, blob] = ed25519.publicLine.split(' ');
    expect(await readFile(keys, 'utf8')).toBe(`servers="pg1,pg2",from="10.1.0.0/16,!10.1.9.9",expiry-time="20271231" ${type} ${blob} standby-a\n`);
  });

  it.each([
    ['a date', '2027-06-30', '20270630'],
    ['OpenSSH compact form', '202706301200', '202706301200'],
  ])('takes --expires as %s', async (_what, when, written) => {
    const { config, keys } = await setup();
    const result = await walhub(['keys', 'add', '-c', config, '--name', 'a', '--servers', 'pg1', '--expires', when, `${ed25519.privatePath}.pub`]);
    expect(result.status, result.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toContain(`expiry-time="${written}" ssh-ed25519`);
  });

  it('refuses a key already present, saying under which name, and replaces it with --replace', async () => {
    const { config, keys } = await setup();
    await walhub(['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1', `${ed25519.privatePath}.pub`]);
    const again = await walhub(['keys', 'add', '-c', config, '--name', 'standby-z', '--servers', 'pg2', `${ed25519.privatePath}.pub`]);
    expect(again.status).toBe(1);
    expect(again.stderr).toBe('walhub: this key is already present as standby-a (line 1); --replace replaces its line\n');
    const replaced = await walhub(['keys', 'add', '-c', config, '--name', 'standby-z', '--servers', 'pg2', '--replace', `${ed25519.privatePath}.pub`]);
    expect(replaced.status, replaced.stderr).toBe(0);
    const text = await readFile(keys, 'utf8');
    expect(text.split('\n').filter((l) => l !== '')).toEqual([`servers="pg2" ${ed25519.publicLine.split(' ').slice(0, 2).join(' ')} standby-z`]);
  });

  it('refuses a name already used by another key', async () => {
    const { config } = await setup();
    await walhub(['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1', `${ed25519.privatePath}.pub`]);
    const result = await walhub(['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1', `${spare.privatePath}.pub`]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`walhub: the name standby-a is already used by ${ed25519.fingerprint} (line 1)\n`);
  });

  it.each([
    ['a private key', (k: ClientKey) => k.privatePath, [], 'not an OpenSSH public key line'],
    ['a server ID with a slash', (k: ClientKey) => `${k.privatePath}.pub`, ['--servers', '../etc'], 'servers=: "../etc" is not a server ID'],
    ['a bad from= pattern', (k: ClientKey) => `${k.privatePath}.pub`, ['--from', '10.0.0.0/99'], 'bad CIDR block "10.0.0.0/99" in from='],
    [
      'a from= no address matches',
      (k: ClientKey) => `${k.privatePath}.pub`,
      ['--from', '!10.9.0.0/16'],
      'walhub keys: from="!10.9.0.0/16": only negations match no address, and the key could never log in; for every address but those, put * first: "*,!10.9.0.0/16"\n',
    ],
    ['a date that does not exist', (k: ClientKey) => `${k.privatePath}.pub`, ['--expires', '2027-02-31'], '--expires 2027-02-31: no such date or time'],
    ['an expiry that is no time at all', (k: ClientKey) => `${k.privatePath}.pub`, ['--expires', 'soon'], '--expires soon: expected YYYY-MM-DD, YYYYMMDD[HHMM[SS]] or an age like 90d'],
    ['a name with a blank', (k: ClientKey) => `${k.privatePath}.pub`, ['--name', 'a b'], '--name "a b": one word'],
  ])('refuses %s as a usage error, writing nothing', async (_what, file, extra, message) => {
    const { config, keys } = await setup('# kept\n');
    const args = ['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1', ...extra, file(ed25519)];
    const result = await walhub(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(await readFile(keys, 'utf8')).toBe('# kept\n');
  });

  it('keeps every other line, comment and blank line, and the file mode and owner', async () => {
    const original = `# standbys of the payroll cluster\n\nservers="pg1" ${spare.publicLine}\n   # an indented note\nthis line is broken\n`;
    const { config, keys } = await setup(original);
    await chmod(keys, 0o640);
    const before = await stat(keys);
    const result = await walhub(['keys', 'add', '-c', config, '--name', 'standby-a', '--servers', 'pg1', `${ed25519.privatePath}.pub`]);
    expect(result.status, result.stderr).toBe(0);
    const text = await readFile(keys, 'utf8');
    expect(text.startsWith(original)).toBe(true);
    const after = await stat(keys);
    expect(after.mode & 0o7777).toBe(0o640);
    expect([after.uid, after.gid]).toEqual([before.uid, before.gid]);
    expect(after.ino).not.toBe(before.ino); // replaced by rename, never rewritten in place

    const removed = await walhub(['keys', 'remove', '-c', config, 'standby-a']);
    expect(removed.status, removed.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toBe(original);
  });

  it('two keys add run at once both land (the lock file)', async () => {
    const { config, keys } = await setup();
    const many = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const key = await createClientKey(dir, `parallel-${count}-${i}`);
        return walhub(['keys', 'add', '-c', config, '--name', `standby-${i}`, '--servers', 'pg1', `${key.privatePath}.pub`]);
      }),
    );
    for (const result of many) expect(result.status, result.stderr).toBe(0);
    const names = (await readFile(keys, 'utf8')).trim().split('\n').map((l) => l.split(' ').at(-1));
    expect(names.sort()).toEqual(['standby-0', 'standby-1', 'standby-2', 'standby-3', 'standby-4', 'standby-5']);
  });
});

describe('walhub keys list, show, set, remove', () => {
  it('set changes only the options named and keeps the others', async () => {
    const { config, keys } = await setup(`restrict,servers="pg1",from="10.0.0.0/8",expiry-time="20270101" ${ed25519.publicLine}\n`);
    const [type, blob] = ed25519.publicLine.split(' ');
    let result = await walhub(['keys', 'set', '-c', config, ed25519.name, '--servers', 'pg1,pg3', '--expires', 'never']);
    expect(result.status, result.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toBe(`restrict,servers="pg1,pg3",from="10.0.0.0/8" ${type} ${blob} ${ed25519.name}\n`);
    result = await walhub(['keys', 'set', '-c', config, ed25519.fingerprint, '--from', '', '--expires', '20301231']);
    expect(result.status, result.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toBe(`restrict,servers="pg1,pg3",expiry-time="20301231" ${type} ${blob} ${ed25519.name}\n`);
  });

  it('set refuses to write a from= of only negations, but edits the other options of a line that has one, and replaces it', async () => {
    // Written by hand: sshd and walhub take it (walhub check warns), and the key can never log in.
    const { config, keys } = await setup(`servers="pg1",from="!10.9.0.0/16" ${ed25519.publicLine}\n`);
    const [type, blob] = ed25519.publicLine.split(' ');
    let result = await walhub(['keys', 'set', '-c', config, ed25519.name, '--from', '!10.8.0.0/16']);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(
      'walhub keys: from="!10.8.0.0/16": only negations match no address, and the key could never log in; for every address but those, put * first: "*,!10.8.0.0/16"',
    );
    result = await walhub(['keys', 'set', '-c', config, ed25519.name, '--servers', 'pg2']);
    expect(result.status, result.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toBe(`servers="pg2",from="!10.9.0.0/16" ${type} ${blob} ${ed25519.name}\n`);
    result = await walhub(['keys', 'set', '-c', config, ed25519.name, '--servers', 'pg1', '--from', '*,!10.9.0.0/16']);
    expect(result.status, result.stderr).toBe(0);
    expect(await readFile(keys, 'utf8')).toBe(`servers="pg1",from="*,!10.9.0.0/16" ${type} ${blob} ${ed25519.name}\n`);
  });

  it('show and remove refuse a name that is not there', async () => {
    const { config } = await setup();
    for (const verb of ['show', 'remove']) {
      const result = await walhub(['keys', verb, '-c', config, 'nobody']);
      expect(result.status).toBe(1);
      expect(result.stderr).toBe('walhub: no key named nobody\n');
    }
  });

  it('lists each key with its expiry and its last use from the audit log, in 80 columns, and as JSON', async () => {
    const { config, audit } = await setup(`servers="pg1",expiry-time="20200101" ${spare.publicLine}\nservers="*",from="10.1.0.0/16" ${ed25519.publicLine}\n`);
    await writeFile(
      audit,
      `${JSON.stringify({ event: 'request', time: '2026-11-30T10:00:00.000Z', remote: '10.1.0.7:40000', key: ed25519.fingerprint, key_name: ed25519.name, result: 'ok' })}\n` +
        `${JSON.stringify({ event: 'request', time: '2026-11-30T11:00:00.000Z', remote: '10.1.0.8:40000', key: ed25519.fingerprint, key_name: ed25519.name, result: 'ok' })}\n`,
    );
    const table = await walhub(['keys', 'list', '-c', config]);
    expect(table.status, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(80);
    expect(lines[0]).toMatch(/^NAME\s+TYPE\s+FINGERPRINT\s+SERVERS\s+FROM\s+EXPIRES\s+LAST USED$/);
    expect(lines[1]).toMatch(/^k-spare\s+ED25519\s+SHA256:\S+\s+pg1\s+-\s+expired\s+never$/);
    expect(lines[2]).toMatch(/^k-ed25519\s+ED25519\s+SHA256:\S+\s+\*\s+10\.1\S+\s+never\s+2026-11-30 10\.1/);

    const json = await walhub(['keys', 'list', '-c', config, '--json']);
    const records = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records[0]).toMatchObject({ name: 'k-spare', fingerprint: spare.fingerprint, servers: ['pg1'], expired: true, last_used: null });
    expect(records[1]).toMatchObject({ name: ed25519.name, type: 'ssh-ed25519', bits: 256, servers: ['*'], from: '10.1.0.0/16', expires: null, last_used: '2026-11-30T11:00:00.000Z', last_from: '10.1.0.8' });

    const shown = await walhub(['keys', 'show', '-c', config, ed25519.fingerprint]);
    expect(shown.stdout).toContain(`key        256 ${ed25519.fingerprint} ${ed25519.name} (ED25519)\n`);
    expect(shown.stdout).toContain('last used  2026-11-30T11:00:00.000Z from 10.1.0.8\n');
  });
});

describe('the walhub keys command line', () => {
  it.each([
    [['keys', 'list', '--colour'], "walhub keys: unknown option '--colour'"],
    [['keys', 'list', '--replace'], 'walhub keys: keys list takes no --replace'],
    [['keys', 'frobnicate'], 'walhub keys: unknown subcommand "frobnicate"'],
    [['keys'], 'walhub keys: which one: add, list, show, remove or set?'],
  ])('%j prints the usage and exits 2', async (args, message) => {
    const result = await walhub(args);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(message);
    expect(result.stderr).toContain('usage: walhub keys');
  });

  it('--help lists every option with a line each', async () => {
    const result = await walhub(['keys', '--help']);
    expect(result.status).toBe(0);
    for (const option of ['--name', '--servers', '--from', '--expires', '--replace', '--json', '--config', '--help']) expect(result.stdout).toContain(option);
  });
});

describe('a running walhub applies keys changes without a restart', () => {
  it('warns in its log of a hand-written key whose from= no address matches, and refuses its logins', async () => {
    const hub = await startHub();
    try {
      await hub.loadKeys([{ key: ed25519, options: 'servers="pg1",from="!10.9.0.0/16"' }]);
      const warning = await hub.waitForLog((l) => l.level === 40 && String(l.msg).startsWith(`${hub.dir}/authorized_keys:1: `));
      expect(warning.msg).toBe(
        `${hub.dir}/authorized_keys:1: the key ${ed25519.name} has from="!10.9.0.0/16", only negations, which no address matches; every login with it is refused (for every address but those, put * first: from="*,!10.9.0.0/16")`,
      );
      const refused = await sshExec(hub, ed25519, 'get-wal --test pg1 x');
      expect(refused.status).toBe(255);
      expect(await hub.audit()).toContainEqual(expect.objectContaining({ event: 'auth', result: 'refused', reason: 'address not allowed by from="!10.9.0.0/16"' }));
    } finally {
      await hub.stop();
    }
  });

  it('a removed key is refused at its next request, also on a multiplexed connection', async () => {
    const hub = await startHub();
    try {
      await createServerDir(hub.archive, 'pg1');
      await writeFile(join(hub.archive, 'pg1', 'wals', '00000002.history'), HISTORY_TEXT);
      /** The next reload after now (the first load, with no keys, is already in the log). */
      const reloaded = (keys: number) => {
        const from = hub.logLines.length;
        return hub.waitForLog((l) => l.msg === 'authorized keys loaded' && l.keys === keys && hub.logLines.indexOf(l) >= from);
      };
      let reload = reloaded(1);
      const added = await walhub(['keys', 'add', '-c', hub.configPath, '--name', 'standby-a', '--servers', 'pg1', `${ed25519.privatePath}.pub`]);
      expect(added.status, added.stderr).toBe(0);
      await reload;

      const control = join(hub.dir, 'cm-%C');
      const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=60'];
      const first = await sshExec(hub, ed25519, 'get-wal pg1 00000002.history', { extra: mux });
      expect(first.status, first.stderr).toBe(0);
      expect(first.stdout.toString()).toBe(HISTORY_TEXT);

      reload = reloaded(0);
      const removed = await walhub(['keys', 'remove', '-c', hub.configPath, 'standby-a']);
      expect(removed.status, removed.stderr).toBe(0);
      await reload;

      const second = await sshExec(hub, ed25519, 'get-wal pg1 00000002.history', { extra: mux });
      expect(second.status).toBe(3);
      expect(second.stderr).toBe('walhub: this key is no longer authorized\n');
      const fresh = await sshExec(hub, ed25519, 'get-wal pg1 00000002.history');
      expect(fresh.status).toBe(255);
      await run(requireProgram('ssh', 'openssh-client'), ['-O', 'exit', '-o', `ControlPath=${control}`, '-p', String(hub.port), 'walhub@127.0.0.1']).catch(() => undefined);
    } finally {
      await hub.stop();
    }
  });
});

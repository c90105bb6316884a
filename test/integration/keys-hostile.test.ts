// authorized_keys as an attacker or a careless administrator would leave it:
// an RSA key with public exponent 1 (anyone holding the public line could
// log in), and a deleted file (every key must be revoked at once).
import { unlink, writeFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { forgeSignatureForExponentOne, modulusBytes, rsaBlobWith } from '../helpers/forged-rsa.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

let hub: Hub;
let standby: ClientKey;
let forgedLine: string;
let forgedBlob: Buffer;

beforeAll(async () => {
  hub = await startHub();
  standby = await createClientKey(hub.dir, 'standby-a');
  await createServerDir(hub.archive, 'pg1');
  // A real modulus with e = 1: nobody holds a private key for it, nobody needs one.
  const rsa = await createClientKey(hub.dir, 'rsa-modulus', 'rsa');
  forgedBlob = rsaBlobWith(Buffer.from(rsa.publicLine.split(' ')[1]!, 'base64'), Buffer.from([1]));
  forgedLine = `ssh-rsa ${forgedBlob.toString('base64')} forged`;
});

afterAll(async () => {
  await hub?.stop();
});

/** An agent that "signs" for the e=1 key with no private key at all. */
class ForgingAgent extends ssh2.BaseAgent {
  override getIdentities(cb: (error: Error | undefined, keys?: Buffer[] | string[]) => void): void {
    cb(undefined, [forgedLine]);
  }
  override sign(_key: unknown, data: Buffer, options: unknown, cb?: (error: Error | undefined, signature?: Buffer) => void): void {
    const done = (typeof options === 'function' ? options : cb) as (error: Error | undefined, signature?: Buffer) => void;
    const hash = (options as { hash?: string } | undefined)?.hash === 'sha512' ? 'sha512' : 'sha256';
    done(undefined, forgeSignatureForExponentOne(data, hash, modulusBytes(forgedBlob)));
  }
}

/** 'ready' if the forged key logged in, else the client's error. */
function loginWithForgedKey(): Promise<string> {
  const client = new ssh2.Client();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.end();
      resolve('timeout');
    }, 15_000);
    client
      .on('ready', () => {
        clearTimeout(timer);
        client.end();
        resolve('ready');
      })
      .on('error', (error) => {
        clearTimeout(timer);
        client.end();
        resolve(error.message);
      })
      .connect({ host: '127.0.0.1', port: hub.port, username: 'walhub', agent: new ForgingAgent(), hostVerifier: () => true });
  });
}

describe('authorized_keys', () => {
  it('refuses to log in a forged signature for an RSA key with public exponent 1, and reports the line as invalid', async () => {
    const seen = hub.logLines.length;
    await writeFile(hub.authorizedKeys, `servers="pg1" ${forgedLine}\n`);
    const loaded = await hub.waitForLog((l) => hub.logLines.indexOf(l) >= seen && l.msg === 'authorized keys loaded');
    expect(await loginWithForgedKey()).toBe('All configured authentication methods failed');
    expect(loaded).toMatchObject({ keys: 0, skipped: 1 });
    const problem = hub.logLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith(`${hub.authorizedKeys}:1:`));
    expect(problem?.msg).toBe(
      `${hub.authorizedKeys}:1: the RSA public exponent is 1, it must be odd and at least 3: with it anyone could forge this key's signatures`,
    );
  });

  it('revokes every key when authorized_keys is deleted, without a restart', async () => {
    await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
    const before = await sshExec(hub, standby, 'get-wal -t pg1 000000010000000000000001');
    expect(before.status).toBe(0);
    expect(before.stdout.toString()).toBe('Ready to retrieve WAL files from the server pg1\n');
    const seen = hub.logLines.length;
    await unlink(hub.authorizedKeys);
    // Whatever the hub makes of it: loaded (an empty set) or the last good set kept.
    await hub.waitForLog((l) => hub.logLines.indexOf(l) >= seen && typeof l.msg === 'string' && /authorized keys/.test(l.msg));
    const after = await sshExec(hub, standby, 'get-wal -t pg1 000000010000000000000001');
    expect(after.status).toBe(255);
    expect(after.stderr).toContain('Permission denied (publickey)');
    expect(after.bytes).toBe(0);
    const refused = (await hub.audit()).filter((r) => r.event === 'auth' && r.key === standby.fingerprint);
    expect(refused.at(-1)).toMatchObject({ reason: 'key not authorized' });
  });
});

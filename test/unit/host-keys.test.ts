// The host key made at first start must be one walhub can load: ssh2's own
// generator sometimes makes ed25519 keys that its parser rejects.
import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generateEd25519KeyText } from '../../src/ssh/host-keys.js';

describe('generateEd25519KeyText', () => {
  it('a generated host key always parses (ssh2 makes an unreadable one about once in 250)', () => {
    let unreadable = 0;
    for (let i = 0; i < 1500; i++) {
      const parsed = ssh2.utils.parseKey(generateEd25519KeyText());
      if (parsed instanceof Error || !parsed.isPrivateKey() || parsed.type !== 'ssh-ed25519') unreadable++;
    }
    expect(unreadable).toBe(0);
  });
});

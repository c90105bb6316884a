import { spawnSync } from 'node:child_process';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { createProgramStage } from '../../src/archive/program-stage.js';
import { requireProgram } from '../helpers/programs.js';

let bzip2: string;
let original: Buffer;
let compressed: Buffer;

beforeAll(() => {
  bzip2 = requireProgram('bzip2', 'bzip2');
  // 8 MiB: several pipe buffers in both directions, so back-pressure is exercised.
  original = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < original.length; i++) original[i] = (i * 13) ^ (i >> 11);
  const result = spawnSync(bzip2, ['-c'], { input: original, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`bzip2 -c failed: ${result.stderr.toString()}`);
  compressed = result.stdout;
});

interface Outcome {
  output: Buffer;
  error?: Error;
}

async function decode(input: Buffer, options: { chunkSize?: number; slowReader?: boolean } = {}): Promise<Outcome> {
  const { chunkSize = 64 * 1024, slowReader = false } = options;
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += chunkSize) parts.push(input.subarray(at, at + chunkSize));
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      if (slowReader) setImmediate(callback);
      else callback();
    },
  });
  try {
    await pipeline(Readable.from(parts, { objectMode: false }), createProgramStage(bzip2, ['-dc']), sink);
    return { output: Buffer.concat(received) };
  } catch (error) {
    return { output: Buffer.concat(received), error: error as Error };
  }
}

describe('createProgramStage with the real bzip2', () => {
  it('decodes a good file to the same bytes', async () => {
    const outcome = await decode(compressed);
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.equals(original)).toBe(true);
  });

  it('decodes fully when the reader is slower than bzip2', async () => {
    const outcome = await decode(compressed, { slowReader: true, chunkSize: 4096 });
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.equals(original)).toBe(true);
  });

  it.each([
    ['by one byte', 1],
    ['by half', 0.5],
  ])('ends a file truncated %s in an error, never a clean end', async (_what, cut) => {
    const keep = cut === 1 ? compressed.length - 1 : Math.floor(compressed.length * cut);
    const outcome = await decode(compressed.subarray(0, keep));
    expect(outcome.error).toBeInstanceOf(Error);
    expect(outcome.error!.message).toMatch(/^bzip2 failed: /);
    expect(outcome.output.length).toBeLessThan(original.length);
  });

  it('ends input that is not bzip2 at all in an error naming the program', async () => {
    const outcome = await decode(Buffer.from('this is not a bzip2 file\n'));
    expect(outcome.error?.message).toMatch(/^bzip2 failed: /);
    expect(outcome.output.length).toBe(0);
  });

  it('ends an empty input in an error', async () => {
    const outcome = await decode(Buffer.alloc(0));
    expect(outcome.error?.message).toMatch(/^bzip2 failed: /);
  });

  it('reports a program that cannot be started as an error', async () => {
    const decoder = createProgramStage('/nonexistent/bzip2', ['-dc']);
    await expect(
      pipeline(Readable.from([compressed.subarray(0, 100)], { objectMode: false }), decoder, new Writable({ write: (_c, _e, cb) => cb() })),
    ).rejects.toThrow(/ENOENT/);
  });
});

import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { Duplex } from 'node:stream';

/**
 * A stream stage that runs a program (`bzip2 -dc` to decode, `bzip2 -c` to
 * encode): bytes in on its stdin, its stdout out, with backpressure both ways
 * through the pipes. A non-zero exit becomes a stream error after the output,
 * so a truncated file never looks like a complete one.
 */
export function createProgramStage(path: string, args: readonly string[]): Duplex {
  const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let outputEnded = false;
  let exitCode: number | null | undefined;

  const stage: Duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (child.stdin.write(chunk)) callback();
      else child.stdin.once('drain', () => callback());
    },
    final(callback) {
      child.stdin.end(callback);
    },
    read() {
      child.stdout.resume();
    },
    destroy(error, callback) {
      if (exitCode === undefined) child.kill('SIGKILL');
      callback(error);
    },
  });

  const finish = () => {
    if (!outputEnded || exitCode === undefined || stage.destroyed) return;
    if (exitCode === 0) stage.push(null);
    else stage.destroy(new Error(`${basename(path)} failed: ${stderr.trim().split('\n')[0] || `exit ${exitCode}`}`));
  };

  child.stdout.on('data', (chunk: Buffer) => {
    if (!stage.push(chunk)) child.stdout.pause();
  });
  child.stdout.on('end', () => {
    outputEnded = true;
    finish();
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    if (stderr.length < 1024) stderr += text;
  });
  // EPIPE on stdin when the program gives up early: its exit code tells the story.
  child.stdin.on('error', () => undefined);
  child.on('error', (error) => stage.destroy(error));
  child.on('close', (code, signal) => {
    exitCode = signal ? 128 : code;
    finish();
  });
  return stage;
}

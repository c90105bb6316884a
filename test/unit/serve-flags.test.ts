// The two ways walhub is started for real, `npm start` (the README's first
// command) and the systemd unit, run node with the same options: V8 reads
// them only at process start, so walhub's code cannot set them itself, and a
// flag dropped from one of the two would go unnoticed but in peak RSS.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const startScript = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: { start: string } }).scripts.start;
const execStart = /^ExecStart=(.*)$/m.exec(readFileSync(new URL('systemd/walhub.service', root), 'utf8'))?.[1];

/** The node options before the script of a `node [options] PATH/dist/cli.js serve ...` line. */
function nodeOptions(line: string | undefined): string[] {
  const match = /^node((?:\s+--\S+)*)\s+\S*dist\/cli\.js serve(\s|$)/.exec(line ?? '');
  if (!match) throw new Error(`not "node [--options] dist/cli.js serve": ${line}`);
  return match[1]!.trim().split(/\s+/).filter(Boolean);
}

it('npm start and the systemd unit serve with the same node options', () => {
  expect(nodeOptions(execStart)).toEqual(nodeOptions(startScript));
});

it("keeps V8's young generation small (peak RSS with many streams at once)", () => {
  expect(nodeOptions(startScript)).toContain('--max-semi-space-size=1');
});

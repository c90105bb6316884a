import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const EXTRA_DIRS = ['/usr/sbin', '/usr/lib/postgresql/15/bin'];

/** The path of a system program, or a failure that names the Debian package to install. */
export function requireProgram(name: string, debianPackage: string): string {
  const found = findProgram(name);
  if (!found) throw new Error(`${name} not found: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`);
  return found;
}

export function findProgram(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return undefined;
}

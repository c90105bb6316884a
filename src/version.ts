import { readFileSync } from 'node:fs';

/** From package.json, read once; sent in the SSH ident line and printed by --version. */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

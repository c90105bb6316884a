import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parseAuthorizedKeys, type KeySet } from './authorized-keys.js';

export interface KeyStoreEvents {
  loaded(set: KeySet): void;
  failed(error: Error): void;
}

/**
 * Holds the current authorized key set and swaps it whole on change, so an
 * authentication in flight sees one consistent set. Reads happen at start,
 * on change and on reload(), never per login.
 */
export class KeyStore {
  private set: KeySet = { byBlob: new Map(), problems: [] };
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private loading: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly events: KeyStoreEvents,
  ) {}

  get current(): KeySet {
    return this.set;
  }

  /**
   * Re-reads the file. A missing file is an empty set: deleting it is how an
   * administrator revokes every key, and it must not wait for a restart. A
   * file that exists but cannot be read (permissions, I/O) keeps the last
   * good set in force, and says so through `failed`.
   */
  reload(): Promise<void> {
    this.loading = this.loading.then(async () => {
      let text: string;
      try {
        text = await readFile(this.path, 'utf8');
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') {
          this.events.failed(error as Error);
          return;
        }
        this.set = { byBlob: new Map(), problems: [`${this.path}: does not exist: no key is authorized, every login is refused`] };
        this.events.loaded(this.set);
        return;
      }
      this.set = parseAuthorizedKeys(text, this.path);
      this.events.loaded(this.set);
    });
    return this.loading;
  }

  /**
   * Watches the directory, not the file: editors and `walhub keys` replace the
   * file by rename, which a watch on the old inode would never see.
   */
  watch(): void {
    const name = basename(this.path);
    this.watcher = watch(dirname(this.path), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name && !changed.startsWith(`${name}.`)) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload(), 50);
    });
    this.watcher.on('error', (error) => this.events.failed(error));
  }

  close(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
  }
}

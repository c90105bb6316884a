/**
 * The bounds an archived file's own bytes may not push past: whoever can
 * write the archive (or a broken compressor) must not be able to make a
 * request allocate or send without limit. Config's [limits] fills them in.
 */
export interface ArchiveLimits {
  /** Largest zstd window / xz dictionary a decoder may allocate for one file. */
  readonly maxDecodeWindow: number;
  /** Largest segment size a page header may claim. */
  readonly maxSegmentSize: number;
}

/**
 * History and .backup files are a few hundred bytes (one line per timeline
 * switch; a backup label): anything decoding past this is not one.
 */
export const MAX_SMALL_FILE_BYTES = 1024 * 1024;

export function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

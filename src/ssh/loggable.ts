/**
 * Client-controlled text as it may reach a log: cut to `maxChars` with the cut
 * marked, and every control character written out as `\xNN`. pino's JSON
 * escapes C0 only; C1 (U+0080-U+009F, e.g. CSI U+009B) passes raw and some
 * terminals act on it when an administrator tails the log.
 */
export function toLoggable(text: string, maxChars: number): string {
  // Code points, not UTF-16 units: a cut must not leave half a surrogate pair.
  const chars = text.length > maxChars ? Array.from(text.slice(0, maxChars * 2)).slice(0, maxChars) : [text];
  const kept = chars.join('');
  const cut = kept.length < text.length ? `...[cut, ${text.length} characters]` : '';
  return kept.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`) + cut;
}

// C0, DEL, C1; also lone surrogates, which pino would write as invalid UTF-8.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** RFC 4253 4.2: the identification string is at most 255 characters. */
export const MAX_CLIENT_IDENT = 255;
/** Login names: OpenSSH and useradd stop at 32; twice that shows any real one whole. */
export const MAX_USER = 64;
/** A WAL name is at most 40 characters (`<24 hex>.<8 hex>.backup`); a server ID 64. */
export const MAX_NAME = 64;
/** One line for a person: messages quote the client's words and must not carry 4 KiB of them. */
export const MAX_MESSAGE = 300;

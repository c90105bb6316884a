import { isIPv4, isIPv6, type Socket } from 'node:net';

/**
 * The PROXY protocol header a TCP load balancer (HAProxy's send-proxy and
 * send-proxy-v2) puts before the client's first byte, as its specification
 * (haproxy.org proxy-protocol.txt) defines it. Parsed here rather than with an
 * npm package because what matters is where the header ends: the parser must
 * say "need more bytes" without reading a byte past the header, so that the
 * SSH ident line behind it reaches ssh2 intact, and must give up at a bounded
 * size.
 */
export type ProxyHeader =
  /** A proxied connection: the client's address and port as the balancer saw them. */
  | { readonly kind: 'proxy'; readonly length: number; readonly address: string; readonly port: number }
  /** v2 LOCAL: the balancer speaking for itself (its health checks); the connection's own address stands. */
  | { readonly kind: 'local'; readonly length: number }
  /** v1 UNKNOWN: a client the balancer has no address for (HAProxy: a unix-socket frontend's); the connection's own address stands. */
  | { readonly kind: 'unknown'; readonly length: number };

export type ProxyParse = ProxyHeader | { readonly kind: 'incomplete' } | { readonly kind: 'invalid'; readonly reason: string };

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The specification's limit, CRLF included: "PROXY TCP6 " and two full IPv6 addresses and ports. */
export const V1_MAX_LENGTH = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_LENGTH = 16;
/**
 * The addresses (at most 216 bytes, for AF_UNIX) and the TLVs HAProxy may
 * append (unique ID, ALPN, authority, SSL details); more is not a balancer's.
 */
export const V2_MAX_PAYLOAD = 1024;
export const MAX_HEADER_LENGTH = V2_FIXED_LENGTH + V2_MAX_PAYLOAD;

const V2_ADDRESS_LENGTH: Record<number, number> = { 0x11: 12, 0x21: 36 };

/** Whether `bytes` begin like a PROXY header; undefined while too few have arrived to tell. */
export function startsLikeProxyHeader(bytes: Buffer): boolean | undefined {
  const matches = (signature: Buffer) => bytes.subarray(0, signature.length).equals(signature.subarray(0, Math.min(bytes.length, signature.length)));
  if (bytes.length === 0) return undefined;
  const v1 = matches(V1_PREFIX);
  const v2 = matches(V2_SIGNATURE);
  if (!v1 && !v2) return false;
  if ((v1 && bytes.length >= V1_PREFIX.length) || (v2 && bytes.length >= V2_SIGNATURE.length)) return true;
  return undefined;
}

/** Parses the start of a connection's bytes; `length` of a header is where the client's own bytes begin. */
export function parseProxyHeader(bytes: Buffer): ProxyParse {
  const looks = startsLikeProxyHeader(bytes);
  if (looks === false) return { kind: 'invalid', reason: 'no PROXY protocol header' };
  if (looks === undefined) return { kind: 'incomplete' };
  return bytes[0] === V1_PREFIX[0] ? parseV1(bytes) : parseV2(bytes);
}

function parseV1(bytes: Buffer): ProxyParse {
  const window = bytes.subarray(0, V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf === -1) return bytes.length >= V1_MAX_LENGTH ? { kind: 'invalid', reason: `PROXY v1 header longer than ${V1_MAX_LENGTH} bytes` } : { kind: 'incomplete' };
  if (lf === 0 || window[lf - 1] !== 0x0d) return { kind: 'invalid', reason: 'PROXY v1 header not ended by CRLF' };
  const line = window.subarray(0, lf - 1);
  if (line.some((byte) => byte < 0x20 || byte > 0x7e)) return { kind: 'invalid', reason: 'PROXY v1 header with a control or non-ASCII byte' };
  const length = lf + 1;
  const fields = line.toString('latin1').split(' ');
  // "PROXY UNKNOWN" may carry anything after it, and the receiver ignores it.
  if (fields[1] === 'UNKNOWN') return { kind: 'unknown', length };
  const [, family, source, , sourcePort, destPort, ...extra] = fields;
  const isFamily = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : undefined;
  if (!isFamily) return { kind: 'invalid', reason: 'PROXY v1 header with an unknown address family' };
  if (extra.length > 0 || !isFamily(source ?? '') || !isFamily(fields[3] ?? '') || !isPort(sourcePort) || !isPort(destPort)) {
    return { kind: 'invalid', reason: 'PROXY v1 header with malformed addresses or ports' };
  }
  return { kind: 'proxy', length, address: source!, port: Number(sourcePort) };
}

/** Decimal 0-65535 without leading zeros, as the specification writes it. */
function isPort(text: string | undefined): boolean {
  return text !== undefined && /^(?:0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function parseV2(bytes: Buffer): ProxyParse {
  if (bytes.length < V2_FIXED_LENGTH) return { kind: 'incomplete' };
  const versionCommand = bytes[12]!;
  const family = bytes[13]!;
  const payload = bytes.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: 'PROXY v2 header with an unknown version' };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: 'PROXY v2 header with an unknown command' };
  if (payload > V2_MAX_PAYLOAD) return { kind: 'invalid', reason: `PROXY v2 header longer than ${MAX_HEADER_LENGTH} bytes` };
  const length = V2_FIXED_LENGTH + payload;
  // LOCAL: the balancer speaking for itself (its health checks); the receiver ignores the addresses.
  if (command === 0) return bytes.length < length ? { kind: 'incomplete' } : { kind: 'local', length };
  const addressLength = V2_ADDRESS_LENGTH[family];
  if (addressLength === undefined) return { kind: 'invalid', reason: 'PROXY v2 header with an address family other than TCP over IPv4 or IPv6' };
  if (payload < addressLength) return { kind: 'invalid', reason: 'PROXY v2 header too short for its addresses' };
  if (bytes.length < length) return { kind: 'incomplete' };
  if (family === 0x11) {
    return { kind: 'proxy', length, address: [...bytes.subarray(16, 20)].join('.'), port: bytes.readUInt16BE(24) };
  }
  return { kind: 'proxy', length, address: toIpv6Text(bytes.subarray(16, 32)), port: bytes.readUInt16BE(48) };
}

/** 16 bytes -> the compressed text form Node itself reports (so that from= and source keys agree). */
function toIpv6Text(raw: Buffer): string {
  const words = Array.from({ length: 8 }, (_, i) => raw.readUInt16BE(i * 2));
  // An IPv4 client on a dual-stack balancer: written as Node writes a mapped address.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return `::ffff:${[...raw.subarray(12, 16)].join('.')}`;
  let best = { at: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > best.length && j - i > 1) best = { at: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best.at === -1) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.length).join(':')}`;
}

/**
 * Reads a PROXY header off a socket that is not yet ssh2's, then puts back
 * whatever followed it in the same packet. Holds at most one chunk past
 * MAX_HEADER_LENGTH: the parser decides as soon as the bytes allow.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader | { kind: 'invalid'; reason: string }> {
  return new Promise((resolve) => {
    let received: Buffer = Buffer.alloc(0);
    const finish = (result: ProxyHeader | { kind: 'invalid'; reason: string }) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onClose);
      socket.off('close', onClose);
      socket.pause();
      if (result.kind !== 'invalid' && received.length > result.length) socket.unshift(received.subarray(result.length));
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const parsed = parseProxyHeader(received);
      if (parsed.kind !== 'incomplete') finish(parsed);
    };
    const onClose = () => finish({ kind: 'invalid', reason: 'closed before a complete PROXY header' });
    const timer = setTimeout(() => finish({ kind: 'invalid', reason: `no complete PROXY header within ${timeoutMs / 1000} s` }), timeoutMs);
    socket.on('data', onData);
    // 'end' (the peer's FIN) too: a half-open socket would otherwise wait for the timeout.
    socket.once('end', onClose);
    socket.once('close', onClose);
  });
}

// A fault-injecting reverse proxy for S3 traffic (plain node:http, 127.0.0.1, a free port).
//
// Point an S3Client at `proxy.endpoint` (path style); requests are forwarded to the upstream
// (s3rver) unchanged — method, raw path and query, raw headers including Host, body streamed —
// so SigV4 signatures made for the proxy's host stay valid. Responses stream back unchanged.
//
// Like S3 and unlike s3rver, the proxy by default checks a PUT/POST body against its
// Content-MD5 (400 InvalidDigest / BadDigest) and against a hex x-amz-content-sha256
// (400 XAmzContentSHA256Mismatch); such bodies are buffered, then forwarded. With
// `verifySignatures`, it also checks SigV4 header signatures (403 SignatureDoesNotMatch /
// InvalidAccessKeyId), which s3rver does not do at all.
//
// Faults are programmed at run time. Each applies to requests matching its optional
// FaultMatch, for `n` requests or for a time window; the first live fault that matches a
// request answers it. Every request is recorded in `requests`, fault-answered ones with
// `fault` set.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultKind = 'slowDown' | 'serverError' | 'dropMidUpload' | 'stall' | 'respond' | 'verify';

/** How long a fault lives: for `n` matching requests, or for a time window, or both (whichever ends first). */
export type FaultAmount = number | { forMs: number; times?: number } | { times: number; forMs?: number };

export interface FaultMatch {
  /** HTTP method(s), e.g. 'PUT' or ['GET', 'HEAD']. */
  method?: string | string[];
  /** S3 operation(s) as recorded in RecordedRequest.op, e.g. 'PutObject', 'ListObjectsV2'. */
  op?: string | string[];
  /** Tested against the decoded object key (without the bucket); a string must be equal. */
  key?: RegExp | string;
  bucket?: string;
  /** Tested against the decoded path '/bucket/key'. */
  path?: RegExp;
  /** Any further test. */
  test?: (request: RecordedRequest) => boolean;
}

export interface RecordedRequest {
  /** Running number, from 1. */
  seq: number;
  method: string;
  /** Decoded path including the bucket: '/bucket/chains/ab/abcd'. */
  path: string;
  bucket: string | undefined;
  /** Decoded key, undefined for bucket and service requests. */
  key: string | undefined;
  /** The raw query string without '?' ('' when none). */
  query: string;
  /** Decoded query parameters (the last value wins). */
  params: Record<string, string>;
  /** The S3 operation inferred from method, path and query: 'PutObject', 'GetObject', 'HeadObject', 'DeleteObject', 'ListObjectsV2', 'DeleteObjects', 'HeadBucket', … */
  op: string;
  /** Response status; undefined while pending, or when no response was sent (drop, stall, client gone). */
  status: number | undefined;
  /** Request body bytes received by the proxy. */
  bytesIn: number;
  /** Response body bytes sent to the client. */
  bytesOut: number;
  /** Which fault answered it (or 'verify' when the proxy's own MD5/sha256/signature check refused it). */
  fault?: FaultKind;
  /** The S3 error code the proxy answered with, when it answered itself. */
  code?: string;
  /** The connection closed before the response was complete (the client gave up, or a drop). */
  clientAborted: boolean;
  /** True once the exchange is over (answered, dropped, aborted). */
  done: boolean;
  headers: IncomingMessage['headers'];
}

export type RequestFilter = FaultMatch & { status?: number; fault?: FaultKind | boolean };

export interface Fault {
  readonly kind: FaultKind;
  /** Requests this fault has answered so far. */
  readonly hits: number;
  /** Still live (count not used up, window not over, not cleared). */
  readonly active: boolean;
  /** Ends it now (stalled requests it holds are released: forwarded upstream). */
  cancel(): void;
}

export interface FaultProxyOptions {
  /** Check PUT/POST bodies against Content-MD5 and a hex x-amz-content-sha256, as S3 does (default true). */
  verifyPayload?: boolean;
  /** Check SigV4 Authorization headers against these credentials (default: not checked). */
  verifySignatures?: { accessKeyId: string; secretAccessKey: string } | { accessKeyId: string; secretAccessKey: string }[];
}

export interface FaultProxy {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  upstream: string;
  requests: RecordedRequest[];
  /** Requests matching the filter (all without one). */
  filter(filter?: RequestFilter | ((request: RecordedRequest) => boolean)): RecordedRequest[];
  count(filter?: RequestFilter | ((request: RecordedRequest) => boolean)): number;
  /** Forgets the recorded requests (faults stay). */
  resetRequests(): void;
  /** 503 SlowDown "Please reduce your request rate." without forwarding. */
  slowDown(amount: FaultAmount, match?: FaultMatch): Fault;
  /** 500 InternalError "We encountered an internal error. Please try again." without forwarding. */
  serverError(amount: FaultAmount, match?: FaultMatch): Fault;
  /**
   * For PUT/POST requests with a body (the match is narrowed to those): reads `afterBytes`
   * of the body (default: half of Content-Length, at least 1), then resets the client's
   * connection. Nothing is forwarded, so the upstream never sees a partial object.
   */
  dropMidUpload(amount: FaultAmount, match?: FaultMatch, options?: { afterBytes?: number }): Fault;
  /**
   * Accepts the request and does not answer (the body is not read). It stays held until the
   * client gives up, the fault's window ends or it is cancelled/cleared (then the request is
   * forwarded and answered normally), or the proxy stops (connection destroyed).
   * A count-only stall holds its requests until cancel()/clear()/stop().
   */
  stall(amount: FaultAmount, match?: FaultMatch): Fault;
  /** Any S3 error: `<Error><Code>code</Code><Message>message</Message>…` with `status`; `detail` adds elements. */
  respond(amount: FaultAmount, status: number, code: string, message: string, match?: FaultMatch, detail?: Record<string, string>): Fault;
  /** Ends every fault; held (stalled) requests are forwarded. */
  clear(): void;
  /** Requests currently held by stalls. */
  readonly stalled: number;
  /** Closes the server, destroys every client and upstream connection. */
  stop(): Promise<void>;
}

interface FaultState {
  kind: FaultKind;
  match: FaultMatch | undefined;
  remaining: number;
  until: number;
  hits: number;
  cancelled: boolean;
  timer: NodeJS.Timeout | undefined;
  release: Set<() => void>;
  answer?: { status: number; code: string; message: string; detail?: Record<string, string> };
  afterBytes?: number;
}

const xmlEscape = (text: string) => text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);

/** A body shaped like S3's own error documents. */
export function s3ErrorXml(code: string, message: string, resource: string, requestId: string, detail: Record<string, string> = {}): string {
  const extra = Object.entries(detail).map(([name, value]) => `<${name}>${xmlEscape(value)}</${name}>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message>${extra}<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>${randomBytes(24).toString('base64')}</HostId></Error>`;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function parseQuery(query: string): [string, string][] {
  if (!query) return [];
  return query.split('&').filter(Boolean).map((pair) => {
    const at = pair.indexOf('=');
    const name = at < 0 ? pair : pair.slice(0, at);
    const value = at < 0 ? '' : pair.slice(at + 1);
    return [safeDecode(name.replace(/\+/g, '%20')), safeDecode(value.replace(/\+/g, '%20'))];
  });
}

/** The S3 operation a request stands for (path-style addressing). */
export function inferOperation(method: string, bucket: string | undefined, key: string | undefined, params: Record<string, string>, headers: IncomingMessage['headers']): string {
  const has = (name: string) => name in params;
  if (!bucket) return method === 'GET' ? 'ListBuckets' : `${method} /`;
  if (key === undefined) {
    switch (method) {
      case 'GET':
        if (has('list-type')) return 'ListObjectsV2';
        if (has('location')) return 'GetBucketLocation';
        if (has('versioning')) return 'GetBucketVersioning';
        if (has('object-lock')) return 'GetObjectLockConfiguration';
        if (has('uploads')) return 'ListMultipartUploads';
        if (has('versions')) return 'ListObjectVersions';
        return 'ListObjects';
      case 'HEAD':
        return 'HeadBucket';
      case 'PUT':
        if (has('object-lock')) return 'PutObjectLockConfiguration';
        if (has('versioning')) return 'PutBucketVersioning';
        return 'CreateBucket';
      case 'DELETE':
        return 'DeleteBucket';
      case 'POST':
        if (has('delete')) return 'DeleteObjects';
        break;
    }
    return `${method} bucket`;
  }
  switch (method) {
    case 'GET':
      if (has('retention')) return 'GetObjectRetention';
      if (has('legal-hold')) return 'GetObjectLegalHold';
      if (has('tagging')) return 'GetObjectTagging';
      if (has('uploadId')) return 'ListParts';
      return 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'PUT':
      if (has('uploadId') && has('partNumber')) return headers['x-amz-copy-source'] ? 'UploadPartCopy' : 'UploadPart';
      if (has('retention')) return 'PutObjectRetention';
      if (has('legal-hold')) return 'PutObjectLegalHold';
      if (has('tagging')) return 'PutObjectTagging';
      if (headers['x-amz-copy-source']) return 'CopyObject';
      return 'PutObject';
    case 'DELETE':
      if (has('uploadId')) return 'AbortMultipartUpload';
      if (has('tagging')) return 'DeleteObjectTagging';
      return 'DeleteObject';
    case 'POST':
      if (has('uploads')) return 'CreateMultipartUpload';
      if (has('uploadId')) return 'CompleteMultipartUpload';
      break;
  }
  return `${method} object`;
}

const asList = (value: string | string[] | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value : [value]);

function matches(request: RecordedRequest, match: RequestFilter | undefined): boolean {
  if (!match) return true;
  const methods = asList(match.method);
  if (methods && !methods.some((m) => m.toUpperCase() === request.method)) return false;
  const ops = asList(match.op);
  if (ops && !ops.includes(request.op)) return false;
  if (match.bucket !== undefined && match.bucket !== request.bucket) return false;
  if (match.key !== undefined) {
    if (request.key === undefined) return false;
    if (typeof match.key === 'string' ? match.key !== request.key : !match.key.test(request.key)) return false;
  }
  if (match.path && !match.path.test(request.path)) return false;
  if (match.status !== undefined && match.status !== request.status) return false;
  if (match.fault !== undefined && (typeof match.fault === 'boolean' ? match.fault !== (request.fault !== undefined) : match.fault !== request.fault)) return false;
  if (match.test && !match.test(request)) return false;
  return true;
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const rfc3986 = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * Checks a SigV4 Authorization header (S3 flavour: the path is signed as sent, not encoded
 * again). Answers undefined when it holds, else the S3 error to send.
 */
function checkSignature(req: IncomingMessage, rawPath: string, rawQuery: string, secrets: Map<string, string>): { status: number; code: string; message: string } | undefined {
  const authorization = req.headers.authorization;
  if (!authorization?.startsWith('AWS4-HMAC-SHA256 ')) return undefined; // presigned or unsigned: not checked
  const parts = new Map(authorization.slice('AWS4-HMAC-SHA256 '.length).split(',').map((part) => {
    const [name, ...value] = part.trim().split('=');
    return [name!, value.join('=')] as const;
  }));
  const credential = parts.get('Credential') ?? '';
  const signedHeaders = parts.get('SignedHeaders') ?? '';
  const signature = parts.get('Signature') ?? '';
  const [accessKeyId, date, region, service, terminator] = credential.split('/');
  const secret = secrets.get(accessKeyId ?? '');
  if (secret === undefined) return { status: 403, code: 'InvalidAccessKeyId', message: 'The AWS Access Key Id you provided does not exist in our records.' };
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const payloadHash = String(req.headers['x-amz-content-sha256'] ?? '');
  if (!date || !region || !service || terminator !== 'aws4_request' || !signedHeaders || !signature || !amzDate.startsWith(date)) {
    return { status: 400, code: 'AuthorizationHeaderMalformed', message: 'The authorization header is malformed.' };
  }
  const canonicalQuery = parseQuery(rawQuery)
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .sort()
    .join('&');
  const canonicalHeaders = signedHeaders.split(';').map((name) => {
    const values: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === name) values.push(req.rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
    return `${name}:${values.join(',')}\n`;
  }).join('');
  const canonicalRequest = [req.method, rawPath, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  const expected = Buffer.from(hmac(key, stringToSign).toString('hex'));
  const given = Buffer.from(signature);
  if (expected.length === given.length && timingSafeEqual(expected, given)) return undefined;
  return { status: 403, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.' };
}

export async function startFaultProxy(upstream: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  if (target.protocol !== 'http:') throw new Error(`fault proxy: only http upstreams (${upstream})`);
  const verifyPayload = options.verifyPayload ?? true;
  const secrets = options.verifySignatures
    ? new Map((Array.isArray(options.verifySignatures) ? options.verifySignatures : [options.verifySignatures]).map((c) => [c.accessKeyId, c.secretAccessKey]))
    : undefined;
  const agent = new Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const faults: FaultState[] = [];
  const requests: RecordedRequest[] = [];
  let seq = 0;
  let stalledCount = 0;
  let stopping = false;

  const send = (record: RecordedRequest, res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    record.status = status;
    const data = Buffer.from(body);
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(data.length), 'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase(), 'x-amz-id-2': randomBytes(24).toString('base64'), ...headers });
    if (record.method === 'HEAD') res.end();
    else {
      record.bytesOut += data.length;
      res.end(data);
    }
  };

  const sendError = (record: RecordedRequest, res: ServerResponse, status: number, code: string, message: string, detail?: Record<string, string>) => {
    record.code = code;
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    send(record, res, status, s3ErrorXml(code, message, record.path, requestId, detail), { 'x-amz-request-id': requestId });
  };

  /** Reads the whole request body (counting it). */
  const readBody = (req: IncomingMessage, record: RecordedRequest) => new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      record.bytesIn += chunk.length;
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('client went away'));
    });
    req.resume(); // a stall paused it
  });

  const forward = (req: IncomingMessage, res: ServerResponse, record: RecordedRequest, body: Buffer | undefined) => {
    const upstreamRequest = httpRequest({
      agent,
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.rawHeaders, // unchanged, Host included: the signature was made for it
      setHost: false,
    });
    upstreamRequest.on('response', (answer) => {
      record.status = answer.statusCode;
      res.writeHead(answer.statusCode!, answer.statusMessage, answer.rawHeaders);
      answer.on('data', (chunk: Buffer) => {
        record.bytesOut += chunk.length;
      });
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    });
    upstreamRequest.on('error', (error) => {
      if (res.headersSent) res.destroy();
      else if (!res.destroyed) sendError(record, res, 502, 'BadGateway', `fault proxy: upstream failed: ${error.message}`);
    });
    // The client went away before the exchange was over: abort upstream too.
    res.on('close', () => {
      if (!res.writableFinished) {
        record.clientAborted = true;
        upstreamRequest.destroy();
      }
    });
    if (body) upstreamRequest.end(body);
    else {
      req.on('data', (chunk: Buffer) => {
        record.bytesIn += chunk.length;
      });
      req.pipe(upstreamRequest);
    }
  };

  const live = (fault: FaultState) => !fault.cancelled && fault.remaining > 0 && Date.now() < fault.until;

  const endFault = (fault: FaultState) => {
    fault.cancelled = true;
    if (fault.timer) clearTimeout(fault.timer);
    fault.timer = undefined;
    for (const release of [...fault.release]) release();
    fault.release.clear();
  };

  const addFault = (kind: FaultKind, amount: FaultAmount, match: FaultMatch | undefined, extra: Partial<FaultState> = {}): Fault => {
    const times = typeof amount === 'number' ? amount : (amount.times ?? Infinity);
    const forMs = typeof amount === 'number' ? undefined : amount.forMs;
    if (!(times > 0)) throw new RangeError(`fault proxy: ${kind} needs a positive count`);
    const state: FaultState = { kind, match, remaining: times, until: forMs === undefined ? Infinity : Date.now() + forMs, hits: 0, cancelled: false, timer: undefined, release: new Set(), ...extra };
    if (forMs !== undefined) {
      state.timer = setTimeout(() => endFault(state), forMs);
      state.timer.unref();
    }
    faults.push(state);
    return {
      kind,
      get hits() {
        return state.hits;
      },
      get active() {
        return live(state);
      },
      cancel: () => endFault(state),
    };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const path = safeDecode(rawPath);
    const [, bucket, ...keyParts] = path.split('/');
    const key = keyParts.length > 0 && keyParts.join('/') !== '' ? keyParts.join('/') : undefined; // '/bucket/' is a bucket request
    const params = Object.fromEntries(parseQuery(query));
    const method = (req.method ?? 'GET').toUpperCase();
    const record: RecordedRequest = {
      seq: ++seq,
      method,
      path,
      bucket: bucket || undefined,
      key,
      query,
      params,
      op: inferOperation(method, bucket || undefined, key, params, req.headers),
      status: undefined,
      bytesIn: 0,
      bytesOut: 0,
      clientAborted: false,
      done: false,
      headers: req.headers,
    };
    requests.push(record);
    res.on('close', () => {
      if (!res.writableFinished) record.clientAborted = true;
      record.done = true;
    });

    const fault = faults.find((f) => live(f) && matches(record, f.match));
    if (fault) {
      fault.remaining--;
      fault.hits++;
      record.fault = fault.kind;
      switch (fault.kind) {
        case 'slowDown':
        case 'serverError':
        case 'respond': {
          const { status, code, message, detail } = fault.answer!;
          try {
            await readBody(req, record); // drained first, so the client sees the answer, not a broken pipe
          } catch {
            return;
          }
          sendError(record, res, status, code, message, detail);
          return;
        }
        case 'dropMidUpload': {
          const length = Number(req.headers['content-length'] ?? NaN);
          const threshold = Math.max(1, fault.afterBytes ?? (Number.isFinite(length) ? Math.floor(length / 2) : 1));
          const drop = () => {
            req.removeAllListeners('data');
            req.socket.resetAndDestroy();
          };
          req.on('data', (chunk: Buffer) => {
            record.bytesIn += chunk.length;
            if (record.bytesIn >= threshold) drop();
          });
          req.on('end', drop); // shorter than the threshold: drop before answering anyway
          return;
        }
        case 'stall': {
          stalledCount++;
          req.pause();
          let released = false;
          const release = () => {
            if (released) return;
            released = true;
            stalledCount--;
            fault.release.delete(release);
            if (stopping || res.destroyed) return;
            void proceed(req, res, record);
          };
          fault.release.add(release);
          res.on('close', () => {
            if (!released) {
              released = true;
              stalledCount--;
              fault.release.delete(release);
            }
          });
          return;
        }
        case 'verify':
          break;
      }
    }
    await proceed(req, res, record);
  };

  /** The normal path: the proxy's own S3-like checks, then forwarding. */
  const proceed = async (req: IncomingMessage, res: ServerResponse, record: RecordedRequest) => {
    if (secrets) {
      const q = (req.url ?? '/').indexOf('?');
      const refusal = checkSignature(req, q < 0 ? req.url! : req.url!.slice(0, q), record.query, secrets);
      if (refusal) {
        record.fault = 'verify';
        try {
          await readBody(req, record);
        } catch {
          return;
        }
        sendError(record, res, refusal.status, refusal.code, refusal.message);
        return;
      }
    }
    const md5 = req.headers['content-md5'] === undefined ? undefined : String(req.headers['content-md5']);
    const sha256 = String(req.headers['x-amz-content-sha256'] ?? '');
    const chunked = /aws-chunked/i.test(String(req.headers['content-encoding'] ?? ''));
    if (verifyPayload && !chunked && (req.method === 'PUT' || req.method === 'POST') && (md5 !== undefined || /^[0-9a-f]{64}$/i.test(sha256))) {
      let body: Buffer;
      try {
        body = await readBody(req, record);
      } catch {
        return;
      }
      let refusal: [number, string, string] | undefined;
      if (md5 !== undefined) {
        const given = Buffer.from(md5, 'base64');
        if (given.length !== 16 || given.toString('base64') !== md5.trim()) refusal = [400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.'];
        else if (!given.equals(createHash('md5').update(body).digest())) refusal = [400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.'];
      }
      if (!refusal && /^[0-9a-f]{64}$/i.test(sha256) && createHash('sha256').update(body).digest('hex') !== sha256.toLowerCase()) {
        refusal = [400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed."];
      }
      if (refusal) {
        record.fault = 'verify';
        sendError(record, res, ...refusal);
        return;
      }
      forward(req, res, record, body);
      return;
    }
    forward(req, res, record, undefined);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`fault proxy: ${String(error)}`);
      } else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const filter = (f?: RequestFilter | ((request: RecordedRequest) => boolean)) => requests.filter((r) => (typeof f === 'function' ? f(r) : matches(r, f)));

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    upstream,
    requests,
    filter,
    count: (f) => filter(f).length,
    resetRequests: () => {
      requests.length = 0;
    },
    slowDown: (amount, match) => addFault('slowDown', amount, match, { answer: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' } }),
    serverError: (amount, match) => addFault('serverError', amount, match, { answer: { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' } }),
    dropMidUpload: (amount, match, dropOptions) =>
      addFault('dropMidUpload', amount, { ...match, test: (r) => (r.method === 'PUT' || r.method === 'POST') && Number(r.headers['content-length'] ?? 1) > 0 && (match?.test?.(r) ?? true) }, { afterBytes: dropOptions?.afterBytes }),
    stall: (amount, match) => addFault('stall', amount, match),
    respond: (amount, status, code, message, match, detail) => addFault('respond', amount, match, { answer: { status, code, message, detail } }),
    clear() {
      for (const fault of faults.splice(0)) endFault(fault);
    },
    get stalled() {
      return stalledCount;
    },
    async stop() {
      stopping = true;
      for (const fault of faults.splice(0)) endFault(fault);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await closed;
    },
  };
}

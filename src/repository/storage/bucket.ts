import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { StackbackError } from '../../errors.ts';
import type { S3Credentials } from './s3-credentials.ts';

/**
 * One S3-compatible bucket under a prefix: the few requests an off-site copy needs, each with
 * bounded retries, and every failure turned into an error that names the remote and what to do.
 *
 * Compatibility (reference: offsite-alerts-ui.md): the SDK's default CRC32 checksum headers break
 * Backblaze B2, Cloudflare R2, OVH and older MinIO/Ceph, so checksums are WHEN_REQUIRED and every
 * PUT carries our own Content-MD5 (which S3 Object Lock also demands). Bodies are whole Buffers:
 * no aws-chunked streaming, which some servers store framed. One DeleteObject per key (never
 * DeleteObjects, which the SDK still signs with CRC32). The SDK's own retries are off: ours are
 * bounded in time by `retryForMs` and report why they gave up.
 */
export interface BucketSpec {
  /** The remote's name in the config, for messages. */
  remote: string;
  endpoint: string | null;
  region: string;
  bucket: string;
  /** '' or '/'-terminated; every key below is relative to it. */
  prefix: string;
  forcePathStyle: boolean;
  /** null: the AWS environment / credential chain. */
  credentials: S3Credentials | null;
  storageClass: string | null;
  bandwidthLimitBytes: number | null;
  objectLock: { mode: 'GOVERNANCE' | 'COMPLIANCE'; days: number } | null;
  retryForMs: number;
  requestTimeoutMs: number;
  /** Connections kept open (the upload concurrency plus a few for reads). */
  maxSockets: number;
}

export interface BucketObject {
  key: string;
  size: number;
  mtimeMs: number;
}

export interface RequestCounts {
  put: number;
  get: number;
  head: number;
  list: number;
  delete: number;
  retries: number;
}

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** S3's page size for ListObjectsV2, asked for explicitly (some servers default lower). */
const LIST_PAGE = 1000;

type Sdk = typeof import('./s3-client.ts');

export class Bucket {
  readonly spec: BucketSpec;
  readonly counts: RequestCounts = { put: 0, get: 0, head: 0, list: 0, delete: 0, retries: 0 };
  private connection: Promise<{ s3: Sdk; client: S3Client }> | undefined;
  private closed = false;
  private readonly throttle: Throttle | undefined;

  constructor(spec: BucketSpec) {
    this.spec = spec;
    this.throttle = spec.bandwidthLimitBytes ? new Throttle(spec.bandwidthLimitBytes) : undefined;
  }

  /** The SDK (loaded on first use: ~0.1 s and ~13 MB every CLI call would pay) and a client for this bucket. */
  private connect(): Promise<{ s3: Sdk; client: S3Client }> {
    this.connection ??= import('./s3-client.ts').then((s3) => {
      const client = s3.makeS3Client(this.spec);
      // Closed while the SDK loaded: nothing may keep the process alive.
      if (this.closed) client.destroy();
      return { s3, client };
    });
    return this.connection;
  }

  /** For people: the bucket and prefix (never credentials). */
  get location(): string {
    return `s3://${this.spec.bucket}/${this.spec.prefix}`;
  }

  close(): void {
    this.closed = true;
    void this.connection?.then(({ client }) => client.destroy());
  }

  /** Stores `body` under `key` (write-once; an S3 PUT is atomic and durable once answered), locked when object_lock is set. */
  async put(key: string, body: Buffer): Promise<void> {
    await this.throttle?.take(body.length);
    const md5 = createHash('md5').update(body).digest('base64');
    const lock = this.spec.objectLock;
    await this.request(`upload ${key}`, 'put', ({ s3, client }) =>
      client.send(
        new s3.PutObjectCommand({
          Bucket: this.spec.bucket,
          Key: this.spec.prefix + key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: md5,
          ...(this.spec.storageClass ? { StorageClass: this.spec.storageClass as never } : {}),
          ...(lock ? { ObjectLockMode: lock.mode, ObjectLockRetainUntilDate: new Date(Date.now() + lock.days * 86_400_000) } : {}),
        }),
      ),
    );
  }

  /** The whole object, or bytes [start, end) of it; undefined when there is none. */
  async get(key: string, range?: { start: number; end: number }): Promise<Buffer | undefined> {
    return this.request(`download ${key}`, 'get', async ({ s3, client }) => {
      try {
        const answer = await client.send(
          new s3.GetObjectCommand({ Bucket: this.spec.bucket, Key: this.spec.prefix + key, ...(range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {}) }),
        );
        return await readBody(answer.Body as AsyncIterable<Uint8Array>, this.spec.requestTimeoutMs);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  async head(key: string): Promise<BucketObject | undefined> {
    return this.request(`look up ${key}`, 'head', async ({ s3, client }) => {
      try {
        const answer = await client.send(new s3.HeadObjectCommand({ Bucket: this.spec.bucket, Key: this.spec.prefix + key }));
        return { key, size: answer.ContentLength ?? 0, mtimeMs: answer.LastModified?.getTime() ?? 0 };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  /** Every object below `prefix`, a page (1000 keys) per request: memory stays flat. */
  async *list(prefix: string): AsyncIterable<BucketObject> {
    let token: string | undefined;
    do {
      const page = await this.request(`list ${prefix || '/'}`, 'list', ({ s3, client }) =>
        client.send(new s3.ListObjectsV2Command({ Bucket: this.spec.bucket, Prefix: this.spec.prefix + prefix, MaxKeys: LIST_PAGE, ContinuationToken: token })),
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key?.startsWith(this.spec.prefix)) continue;
        yield { key: item.Key.slice(this.spec.prefix.length), size: item.Size ?? 0, mtimeMs: item.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Removes `key`; an absent key is not an error. A locked object fails (REMOTE_AUTH: the bucket denies it). */
  async delete(key: string): Promise<void> {
    await this.request(`delete ${key}`, 'delete', ({ s3, client }) => client.send(new s3.DeleteObjectCommand({ Bucket: this.spec.bucket, Key: this.spec.prefix + key })));
  }

  /**
   * Runs one request, retrying what a later attempt can cure (throttling, 5xx, dropped or
   * stalled connections) with exponential backoff and full jitter until `retryForMs` is spent;
   * then, or at once for anything else, fails with an error that names the remote.
   */
  private async request<T>(what: string, kind: keyof Omit<RequestCounts, 'retries'>, send: (sdk: { s3: Sdk; client: S3Client }) => Promise<T>): Promise<T> {
    const sdk = await this.connect();
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      this.counts[kind] += 1;
      try {
        return await send(sdk);
      } catch (error) {
        const delay = Math.random() * Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt);
        const retryable = isRetryable(error);
        if (!retryable || Date.now() - started + delay > this.spec.retryForMs) {
          throw remoteError(this.spec, what, error, retryable ? { attempts: attempt + 1, seconds: Math.round((Date.now() - started) / 1000) } : undefined);
        }
        this.counts.retries += 1;
        await sleep(delay);
      }
    }
  }
}

/** Reads a response body, abandoning it when no byte arrives for `idleMs` (a stalled server). */
async function readBody(body: AsyncIterable<Uint8Array> & { destroy?: (error?: Error) => void }, idleMs: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => body.destroy?.(Object.assign(new Error(`no data for ${idleMs} ms`), { code: 'ETIMEDOUT' })), idleMs);
  };
  try {
    arm();
    for await (const part of body) {
      parts.push(part);
      arm();
    }
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(parts);
}

interface S3Failure {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(error: unknown): number | undefined {
  return (error as S3Failure).$metadata?.httpStatusCode;
}

function codeOf(error: unknown): string {
  const failure = error as S3Failure;
  return failure.Code ?? failure.name ?? failure.code ?? 'Error';
}

function isNotFound(error: unknown): boolean {
  return statusOf(error) === 404 && codeOf(error) !== 'NoSuchBucket';
}

const RETRYABLE_CODES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'InternalError', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeoutException']);
const RETRYABLE_ERRNO = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ECONNREFUSED', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_SOCKET']);

function isRetryable(error: unknown): boolean {
  const status = statusOf(error);
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (RETRYABLE_CODES.has(codeOf(error))) return true;
  const errno = (error as NodeJS.ErrnoException).code;
  if (errno && RETRYABLE_ERRNO.has(errno)) return true;
  // A connection that closed before an answer (the SDK has no status then).
  return status === undefined && /socket hang up|aborted|ECONNRESET|timed? ?out/i.test((error as Error).message ?? '');
}

/** An S3 failure as an error that names the remote, the request, the cause and the fix; never a credential. */
function remoteError(spec: BucketSpec, what: string, error: unknown, gaveUp: { attempts: number; seconds: number } | undefined): StackbackError {
  const code = codeOf(error);
  const status = statusOf(error);
  const where = `remote ${spec.remote} (${spec.endpoint ?? `AWS S3 ${spec.region}`}, bucket ${spec.bucket})`;
  // The server's own sentence, first line only: SDK errors can carry signing details below it.
  const said = `${code}${status ? ` ${status}` : ''}: ${(((error as Error).message ?? '').split('\n')[0] ?? '').slice(0, 200)}`;
  const fail = (errorCode: ConstructorParameters<typeof StackbackError>[0], message: string, hint: string) => new StackbackError(errorCode, message, hint, { cause: error });
  if (gaveUp) {
    return fail('REMOTE_UNAVAILABLE', `${where}: could not ${what}: still failing after ${gaveUp.attempts} attempt(s) in ${gaveUp.seconds} s (${said})`, `check the endpoint and the network; remotes[].retry_for (now ${Math.round(spec.retryForMs / 1000)} s) bounds how long each request is retried`);
  }
  switch (code) {
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'InvalidToken':
    case 'ExpiredToken':
    case 'CredentialsProviderError':
      return fail('REMOTE_AUTH', `${where} refused the credentials: ${said}`, 'check remotes[].credentials_file (access key id and secret) or the AWS environment');
    case 'AccessDenied':
      return fail('REMOTE_AUTH', `${where} denied access to ${what}: ${said}`, 'grant the key s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on the bucket and prefix');
    case 'NoSuchBucket':
      return fail('REMOTE_BUCKET', `${where}: bucket ${spec.bucket} does not exist`, 'create the bucket, or fix remotes[].bucket and remotes[].endpoint');
    case 'RequestTimeTooSkewed':
      return fail('REMOTE_CLOCK', `${where}: this machine's clock differs too much from the server's (${said})`, 'set the clock right (timedatectl set-ntp true, or chrony)');
    case 'AuthorizationHeaderMalformed':
    case 'PermanentRedirect':
    case 'IllegalLocationConstraintException':
      return fail('REMOTE_REGION', `${where}: the bucket is not in region ${spec.region} (${said})`, 'set remotes[].region to the bucket\'s region (and remotes[].endpoint to that region\'s endpoint)');
  }
  if (status === 301) return fail('REMOTE_REGION', `${where}: the bucket is not in region ${spec.region} (${said})`, 'set remotes[].region to the bucket\'s region (and remotes[].endpoint to that region\'s endpoint)');
  if (code === 'InvalidRequest' && /object ?lock/i.test(said)) {
    return fail('REMOTE_OBJECT_LOCK', `${where}: object lock is not enabled on bucket ${spec.bucket} (${said})`, 'create the bucket with object lock enabled, or set remotes[].object_lock: null');
  }
  if (status === 403) return fail('REMOTE_AUTH', `${where} refused to ${what}: ${said}`, 'check the key\'s permissions on the bucket and prefix');
  const errno = (error as NodeJS.ErrnoException).code;
  if (errno === 'ENOTFOUND' || errno === 'ECONNREFUSED' || errno === 'CERT_HAS_EXPIRED' || /certificate/i.test(said)) {
    return fail('REMOTE_UNAVAILABLE', `${where}: cannot reach the endpoint: ${said}`, 'check remotes[].endpoint and the network');
  }
  return fail('REMOTE_FAILED', `${where}: could not ${what}: ${said}`, 'see the server\'s message above');
}

/** Keeps uploads at or below a byte rate, across concurrent PUTs. */
class Throttle {
  private next = 0;
  private readonly bytesPerSecond: number;
  constructor(bytesPerSecond: number) {
    this.bytesPerSecond = bytesPerSecond;
  }
  async take(bytes: number): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.next);
    this.next = at + (bytes / this.bytesPerSecond) * 1000;
    if (at > now) await sleep(at - now);
  }
}

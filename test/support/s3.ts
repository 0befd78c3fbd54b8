// A loopback S3 server for tests: s3rver 3.7.1 on 127.0.0.1, a free port, a temp folder.
//
// What s3rver does and does not do (read from its source, checked by test/s3-support.test.ts):
// - SigV4 signatures are NOT verified: any secret key is accepted. Only the access key id is
//   checked (unknown → 403 InvalidAccessKeyId) and the date (more than 15 min off → 403
//   RequestTimeTooSkewed). test/support/fault-proxy.ts can verify signatures in front of it.
// - Content-MD5 and x-amz-content-sha256 are NOT checked against the body (the fault proxy
//   checks both by default, as S3 does).
// - ListObjectsV2 paging (continuation tokens) needs DES, which Node 24 refuses without
//   --openssl-legacy-provider: hence s3rver runs in a child process started with that flag.
// - A PUT writes straight into the object's file: an upload cut off mid-body leaves a
//   truncated object (or a truncated former object) behind. Real S3 never does; the fault
//   proxy's dropMidUpload therefore never forwards the doomed upload.
// - Suffix ranges are wrong: `Range: bytes=-N` answers bytes 0..N, not the last N bytes;
//   `bytes=N-0` answers from N to the end.
// - HeadObject/HeadBucket errors have no body: the SDK names them NotFound (404) / Unknown (403).
// - No versioning, no object lock: ObjectLock* headers are ignored; x-amz-storage-class must
//   be one of its list (GLACIER_IR, for one, is refused with 400 InvalidStorageClass).
// - No aws-chunked decoding: send Buffer bodies with checksums WHEN_REQUIRED.
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface StartS3Options {
  /** Buckets made at start (default ['stackback-test']); the first is `bucket`. */
  buckets?: string[];
  /** Keep the data folder on stop (default false: removed). */
  keepDirectory?: boolean;
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
  etag: string;
}

export interface S3Handle {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  /** The first bucket made. */
  bucket: string;
  buckets: string[];
  /** s3rver's data folder: <directory>/<bucket>/<key>._S3rver_object (+ .md5, metadata.json). */
  directory: string;
  /**
   * An S3Client as production should configure one for s3rver: path style, checksums
   * WHEN_REQUIRED both ways, maxAttempts 1 (no SDK retries hide faults). `overrides`
   * replace any field, e.g. { endpoint: proxy.endpoint } to go through a fault proxy.
   * Clients made here are destroyed by stop().
   */
  client(overrides?: Partial<S3ClientConfig>): S3Client;
  /** Every object under `prefix` (default: all), in key order, straight from s3rver. */
  list(prefix?: string, bucket?: string): Promise<ListedObject[]>;
  /** The object's bytes, or undefined when there is none. */
  read(key: string, bucket?: string): Promise<Buffer | undefined>;
  /** Puts `body` at `key` (with its Content-MD5), replacing what is there. */
  write(key: string, body: Buffer | string, bucket?: string): Promise<void>;
  /** Deletes the object (no error when there is none). */
  remove(key: string, bucket?: string): Promise<void>;
  /** Flips one byte of the object (default: the middle one) and stores it back; returns the offset. */
  flipByte(key: string, offset?: number, bucket?: string): Promise<number>;
  /** Stops the server, destroys the clients and open connections, removes the folder. */
  stop(): Promise<void>;
}

/** Base64 MD5 of a body, as the Content-MD5 header wants it. */
export const contentMd5 = (body: Buffer | string): string => createHash('md5').update(body).digest('base64');

/** The client settings every S3Client in tests shares (production must use the same ones). */
export function s3ClientConfig(s3: Pick<S3Handle, 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey'>, overrides: Partial<S3ClientConfig> = {}): S3ClientConfig {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
    ...overrides,
  };
}

// s3rver runs in a child process started with --openssl-legacy-provider: its ListObjectsV2
// continuation tokens are DES-encrypted, and Node 24's OpenSSL 3 refuses DES without the
// legacy provider, so in-process every truncated listing fails with 500 InternalError.
// The child exits when its stdin closes, so a test process that dies leaves no server behind.
const CHILD_SCRIPT = `
const S3rver = require(process.argv[1]);
const server = new S3rver(JSON.parse(process.argv[2]));
server.run().then(
  (address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'),
  (error) => { process.stderr.write(String(error && error.stack || error) + '\\n'); process.exit(1); },
);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
`;

export async function startS3(options: StartS3Options = {}): Promise<S3Handle> {
  const buckets = options.buckets ?? ['stackback-test'];
  if (buckets.length === 0) throw new Error('startS3: at least one bucket');
  const directory = await mkdtemp(join(tmpdir(), 'stackback-s3rver-'));
  const serverOptions = {
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    resetOnClose: false,
    vhostBuckets: false,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  };
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // else the child talks the test runner's protocol
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', CHILD_SCRIPT, createRequire(import.meta.url).resolve('s3rver'), JSON.stringify(serverOptions)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        out += text;
        const line = out.split('\n')[0];
        if (out.includes('\n')) {
          try {
            resolve((JSON.parse(line!) as { port: number }).port);
          } catch {
            reject(new Error(`startS3: unexpected output from s3rver: ${out}`));
          }
        }
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`startS3: s3rver exited (${code ?? signal}) before listening: ${stderr}`)));
    });
  } catch (error) {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const base = { endpoint, region: 'us-east-1' as const, accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY };
  const clients = new Set<S3Client>();
  const direct = new S3Client(s3ClientConfig(base));
  clients.add(direct);
  const bucket = buckets[0]!;
  let stopped = false;

  const handle: S3Handle = {
    ...base,
    bucket,
    buckets,
    directory,
    client(overrides) {
      const client = new S3Client(s3ClientConfig(base, overrides));
      clients.add(client);
      return client;
    },
    list: (prefix, inBucket = bucket) => listObjects(direct, inBucket, prefix),
    read: (key, inBucket = bucket) => readObject(direct, inBucket, key),
    write: (key, body, inBucket = bucket) => writeObject(direct, inBucket, key, body),
    remove: (key, inBucket = bucket) => deleteObject(direct, inBucket, key),
    async flipByte(key, offset, inBucket = bucket) {
      const data = await readObject(direct, inBucket, key);
      if (!data || data.length === 0) throw new Error(`flipByte: no object (or an empty one) at ${inBucket}/${key}`);
      const at = offset ?? Math.floor(data.length / 2);
      if (at < 0 || at >= data.length) throw new RangeError(`flipByte: offset ${at} outside 0..${data.length - 1}`);
      data[at]! ^= 0xff;
      await writeObject(direct, inBucket, key, data);
      return at;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const client of clients) client.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(killer);
      }
      if (!options.keepDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Every object under `prefix` (ListObjectsV2, all pages), in key order. */
export async function listObjects(client: S3Client, bucket: string, prefix?: string): Promise<ListedObject[]> {
  const objects: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      objects.push({ key: object.Key!, size: object.Size!, lastModified: object.LastModified!, etag: object.ETag ?? '' });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return objects;
}

/** The object's bytes, or undefined on 404 NoSuchKey. */
export async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await answer.Body!.transformToByteArray());
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

export async function writeObject(client: S3Client, bucket: string, key: string, body: Buffer | string): Promise<void> {
  const data = typeof body === 'string' ? Buffer.from(body) : body;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data, ContentMD5: contentMd5(data) }));
}

export async function deleteObject(client: S3Client, bucket: string, key: string): Promise<void> {
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

/**
 * Writes an AWS shared credentials file (one [default] profile) with mode 0600.
 */
export async function writeCredentialsFile(path: string, credentials: { accessKeyId: string; secretAccessKey: string }): Promise<void> {
  const text = `[default]\naws_access_key_id = ${credentials.accessKeyId}\naws_secret_access_key = ${credentials.secretAccessKey}\n`;
  await writeFile(path, text, { mode: 0o600 });
  await chmod(path, 0o600); // writeFile's mode applies only when it creates the file (and umask may narrow it)
}

// The S3 test support (test/support/s3.ts, test/support/fault-proxy.ts) does what the S3 tests
// rely on: s3rver stores exactly the bytes sent, the proxy forwards byte-exact and signatures
// still hold, each fault looks to the AWS SDK as it would from S3. It also pins down what
// s3rver answers (and what it does not check), so production error handling is written
// against known answers.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { contentMd5, startS3, writeCredentialsFile, type S3Handle } from './support/s3.ts';

interface SdkError {
  name: string;
  Code?: string;
  message: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
}

/** The SDK error a promise rejects with (fails when it resolves). */
async function sdkError(promise: Promise<unknown>): Promise<SdkError> {
  try {
    await promise;
  } catch (error) {
    return error as SdkError;
  }
  assert.fail('expected the request to fail');
}

const put = (client: S3Client, bucket: string, key: string, body: Buffer, md5 = contentMd5(body)) =>
  client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentMD5: md5 }));

const getBytes = async (client: S3Client, bucket: string, key: string, range?: string) => {
  const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
  return { answer, bytes: Buffer.from(await answer.Body!.transformToByteArray()) };
};

describe('S3 test support: s3rver behind the fault proxy', () => {
  let s3: S3Handle;
  let proxy: FaultProxy;
  let direct: S3Client;
  let viaProxy: S3Client;

  before(async () => {
    s3 = await startS3({ buckets: ['stackback-test', 'second'] });
    proxy = await startFaultProxy(s3.endpoint, { verifySignatures: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    direct = s3.client();
    viaProxy = s3.client({ endpoint: proxy.endpoint });
  });
  after(async () => {
    await proxy?.stop();
    await s3?.stop();
  });

  test('startS3: loopback endpoint, fixed credentials, buckets made, a data folder', async () => {
    assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(s3.region, 'us-east-1');
    assert.equal(s3.accessKeyId, 'S3RVER');
    assert.equal(s3.secretAccessKey, 'S3RVER');
    assert.equal(s3.bucket, 'stackback-test');
    assert.ok((await stat(join(s3.directory, 'second'))).isDirectory());
    const head = await direct.send(new HeadBucketCommand({ Bucket: 'second' }));
    assert.equal(head.$metadata.httpStatusCode, 200);
  });

  test('a PutObject with a Buffer body and Content-MD5 through the proxy stores exactly those bytes', async () => {
    proxy.resetRequests();
    const body = randomBytes(300_000);
    const key = 'chains/ab/exact object+with %odd name';
    const answer = await put(viaProxy, s3.bucket, key, body);
    assert.equal(answer.$metadata.httpStatusCode, 200);
    assert.deepEqual(await s3.read(key), body);
    // on disk too: no aws-chunked framing, no trailer
    assert.deepEqual(await readFile(join(s3.directory, s3.bucket, 'chains', 'ab', 'exact object+with %odd name._S3rver_object')), body);
    const [request] = proxy.requests;
    assert.equal(proxy.requests.length, 1);
    assert.deepEqual(
      { op: request!.op, method: request!.method, path: request!.path, bucket: request!.bucket, key: request!.key, status: request!.status, bytesIn: request!.bytesIn, fault: request!.fault },
      { op: 'PutObject', method: 'PUT', path: `/${s3.bucket}/${key}`, bucket: s3.bucket, key, status: 200, bytesIn: body.length, fault: undefined },
    );
    assert.equal(request!.headers['content-md5'], contentMd5(body));
    assert.equal(request!.headers['x-amz-checksum-crc32'], undefined, 'WHEN_REQUIRED: no CRC32 header');
    const { bytes } = await getBytes(viaProxy, s3.bucket, key);
    assert.deepEqual(bytes, body);
    assert.equal(proxy.requests.at(-1)!.bytesOut, body.length);
  });

  test('a wrong Content-MD5: s3rver itself stores it anyway; the proxy refuses it as S3 does (400 BadDigest, nothing stored)', async () => {
    const body = Buffer.from('the real body');
    await put(direct, s3.bucket, 'md5/direct', body, contentMd5('another body'));
    assert.deepEqual(await s3.read('md5/direct'), body, 's3rver does not check Content-MD5');

    const error = await sdkError(put(viaProxy, s3.bucket, 'md5/proxied', body, contentMd5('another body')));
    assert.deepEqual([error.name, error.Code, error.$metadata?.httpStatusCode, error.message], ['BadDigest', 'BadDigest', 400, 'The Content-MD5 you specified did not match what we received.']);
    assert.equal(await s3.read('md5/proxied'), undefined);
    assert.equal(proxy.requests.at(-1)!.fault, 'verify');

    const invalid = await sdkError(put(viaProxy, s3.bucket, 'md5/proxied', body, 'not base64 md5'));
    assert.deepEqual([invalid.name, invalid.$metadata?.httpStatusCode], ['InvalidDigest', 400]);
  });

  test('ranged GET: bytes=a-b and bytes=a- give the slice; s3rver gets suffix ranges (bytes=-N) and end 0 wrong', async () => {
    const body = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
    await s3.write('range/object', body);
    const slice = await getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=10-19');
    assert.equal(slice.answer.$metadata.httpStatusCode, 206);
    assert.equal(slice.answer.ContentRange, 'bytes 10-19/100');
    assert.deepEqual(slice.bytes, body.subarray(10, 20));
    const tail = await getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=90-');
    assert.deepEqual(tail.bytes, body.subarray(90));
    const past = await getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=95-200');
    assert.deepEqual(past.bytes, body.subarray(95));
    const outside = await sdkError(getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=200-300'));
    assert.deepEqual([outside.name, outside.$metadata?.httpStatusCode], ['InvalidRange', 416]);
    // s3rver quirks (S3 answers the last 10 bytes, and byte 0 alone): do not use these forms in tests
    const suffix = await getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=-10');
    assert.equal(suffix.answer.ContentRange, 'bytes 0-10/100');
    assert.deepEqual(suffix.bytes, body.subarray(0, 11));
    const first = await getBytes(viaProxy, s3.bucket, 'range/object', 'bytes=0-0');
    assert.equal(first.bytes.length, 100);
  });

  test('ListObjectsV2 pages with MaxKeys and continuation tokens, with Size and LastModified', async () => {
    const keys = Array.from({ length: 7 }, (_, i) => `list/k${i}`);
    for (const [i, key] of keys.entries()) await s3.write(key, Buffer.alloc(i + 1, 'x'));
    await s3.write('listing-not-under-prefix', 'x');
    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page = await viaProxy.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'list/', MaxKeys: 3, ContinuationToken: token }));
      pages.push((page.Contents ?? []).map((o) => o.Key!));
      for (const object of page.Contents ?? []) {
        assert.equal(object.Size, Number(object.Key!.slice('list/k'.length)) + 1);
        assert.ok(object.LastModified instanceof Date && Math.abs(object.LastModified.getTime() - Date.now()) < 60_000);
      }
      assert.equal(page.KeyCount, page.Contents?.length ?? 0);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated) assert.ok(token);
    } while (token);
    assert.deepEqual(pages, [keys.slice(0, 3), keys.slice(3, 6), keys.slice(6)]);
    assert.equal(proxy.count({ op: 'ListObjectsV2' }) >= 3, true);
    // the helper reads every page
    const listed = await s3.list('list/');
    assert.deepEqual(listed.map((o) => [o.key, o.size]), keys.map((k, i) => [k, i + 1]));
    assert.deepEqual(await s3.list('list/nothing-here'), []);
  });

  test('DeleteObject of a missing key succeeds (204); the helpers read, overwrite, damage and remove objects', async () => {
    const missing = await viaProxy.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: 'never/was' }));
    assert.equal(missing.$metadata.httpStatusCode, 204);
    await s3.write('helpers/object', 'abcdef');
    assert.equal(await s3.flipByte('helpers/object', 1), 1);
    assert.deepEqual(await s3.read('helpers/object'), Buffer.from([0x61, 0x62 ^ 0xff, 0x63, 0x64, 0x65, 0x66]));
    await s3.write('helpers/object', 'short');
    assert.equal((await s3.list('helpers/'))[0]!.size, 5);
    await s3.remove('helpers/object');
    assert.equal(await s3.read('helpers/object'), undefined);
    await s3.write('in-second', 'x', 'second');
    assert.deepEqual((await s3.list(undefined, 'second')).map((o) => o.key), ['in-second']);
  });

  test('slowDown: 503 SlowDown seen by a one-attempt client, not forwarded, then normal service', async () => {
    await s3.write('faults/slow', 'slow');
    proxy.resetRequests();
    const fault = proxy.slowDown(1, { op: 'GetObject' });
    const head = await viaProxy.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'faults/slow' }));
    assert.equal(head.$metadata.httpStatusCode, 200, 'a HEAD does not match the GetObject fault');
    const error = await sdkError(getBytes(viaProxy, s3.bucket, 'faults/slow'));
    assert.deepEqual([error.name, error.Code, error.$metadata?.httpStatusCode, error.message], ['SlowDown', 'SlowDown', 503, 'Please reduce your request rate.']);
    assert.equal(fault.hits, 1);
    assert.equal(fault.active, false);
    assert.equal((await getBytes(viaProxy, s3.bucket, 'faults/slow')).bytes.toString(), 'slow');
    assert.equal(proxy.count({ fault: 'slowDown' }), 1);
    assert.deepEqual(proxy.filter({ fault: true }).map((r) => [r.op, r.status, r.code]), [['GetObject', 503, 'SlowDown']]);
    assert.equal(proxy.count({ op: 'GetObject', status: 200 }), 1);
  });

  test('serverError: 500 InternalError; a client with retries gets through after two of them', async () => {
    await s3.write('faults/internal', 'internal');
    const error = await sdkError((proxy.serverError(1), getBytes(viaProxy, s3.bucket, 'faults/internal')));
    assert.deepEqual([error.name, error.Code, error.$metadata?.httpStatusCode, error.message], ['InternalError', 'InternalError', 500, 'We encountered an internal error. Please try again.']);
    const retrying = s3.client({ endpoint: proxy.endpoint, maxAttempts: 3 });
    const fault = proxy.serverError(2, { key: 'faults/internal' });
    const { answer, bytes } = await getBytes(retrying, s3.bucket, 'faults/internal');
    assert.equal(bytes.toString(), 'internal');
    assert.equal(answer.$metadata.attempts, 3);
    assert.equal(fault.hits, 2);
  });

  test('a time-window fault ends by itself', async () => {
    proxy.slowDown({ forMs: 200 }, { key: /^faults\/window/ });
    await s3.write('faults/window', 'w');
    const first = await sdkError(getBytes(viaProxy, s3.bucket, 'faults/window'));
    assert.equal(first.name, 'SlowDown');
    const second = await sdkError(getBytes(viaProxy, s3.bucket, 'faults/window'));
    assert.equal(second.name, 'SlowDown', 'still inside the window');
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal((await getBytes(viaProxy, s3.bucket, 'faults/window')).bytes.toString(), 'w');
  });

  test('respond: any S3 error, e.g. 403 AccessDenied on DELETE (object lock) and 400 InvalidRequest on PUT', async () => {
    await s3.write('faults/locked', 'locked');
    proxy.respond(1, 403, 'AccessDenied', 'Access Denied', { method: 'DELETE' });
    const denied = await sdkError(viaProxy.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: 'faults/locked' })));
    assert.deepEqual([denied.name, denied.Code, denied.$metadata?.httpStatusCode, denied.message], ['AccessDenied', 'AccessDenied', 403, 'Access Denied']);
    assert.deepEqual(await s3.read('faults/locked'), Buffer.from('locked'), 'not forwarded');

    proxy.respond(1, 400, 'InvalidRequest', 'Bucket is missing Object Lock Configuration', { op: 'PutObject' });
    const invalid = await sdkError(put(viaProxy, s3.bucket, 'faults/lock-config', Buffer.from('x')));
    assert.deepEqual([invalid.name, invalid.$metadata?.httpStatusCode, invalid.message], ['InvalidRequest', 400, 'Bucket is missing Object Lock Configuration']);
    assert.equal(await s3.read('faults/lock-config'), undefined);

    proxy.respond(1, 403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.', undefined, { MaxAllowedSkewMilliseconds: '900000' });
    const skewed = await sdkError(viaProxy.send(new ListObjectsV2Command({ Bucket: s3.bucket })));
    assert.deepEqual([skewed.name, skewed.$metadata?.httpStatusCode], ['RequestTimeTooSkewed', 403]);
  });

  test('dropMidUpload: the connection is reset mid-body, the client gets an error, s3rver gets nothing', async () => {
    const fault = proxy.dropMidUpload(1, { key: /^faults\/drop/ });
    const body = randomBytes(4 * 1024 * 1024);
    const error = await sdkError(put(viaProxy, s3.bucket, 'faults/drop-new', body));
    // the SDK (3.1178.0) reports a reset connection as name 'TimeoutError', code 'ECONNRESET'
    assert.deepEqual([error.name, error.code, error.$metadata?.httpStatusCode], ['TimeoutError', 'ECONNRESET', undefined]);
    const record = proxy.requests.at(-1)!;
    assert.equal(record.fault, 'dropMidUpload');
    assert.equal(record.status, undefined);
    assert.ok(record.bytesIn > 0 && record.bytesIn < body.length, `read ${record.bytesIn} of ${body.length} bytes`);
    assert.equal(fault.hits, 1);
    assert.equal(await s3.read('faults/drop-new'), undefined, 'no partial object');

    // an existing object under the same key is not touched either
    await s3.write('faults/drop-old', 'the old content');
    proxy.dropMidUpload(1, { key: 'faults/drop-old' }, { afterBytes: 10 });
    await sdkError(put(viaProxy, s3.bucket, 'faults/drop-old', randomBytes(100_000)));
    assert.equal((await s3.read('faults/drop-old'))!.toString(), 'the old content');
    // a client with retries sends the whole body again and gets through
    proxy.dropMidUpload(1, { key: 'faults/drop-retried' });
    const retried = randomBytes(1024 * 1024);
    const answer = await put(s3.client({ endpoint: proxy.endpoint, maxAttempts: 3 }), s3.bucket, 'faults/drop-retried', retried);
    assert.equal(answer.$metadata.attempts, 2);
    assert.deepEqual(await s3.read('faults/drop-retried'), retried);
    // and GETs never match a drop
    proxy.dropMidUpload(1);
    assert.equal((await getBytes(viaProxy, s3.bucket, 'faults/drop-old')).bytes.toString(), 'the old content');
    proxy.clear();
  });

  test('stall: ended by the client timeout (requestTimeout + throwOnRequestTimeout, or socketTimeout); a time-window stall lets the request through afterwards', async () => {
    await s3.write('faults/stall', 'stalled');
    // requestTimeout (whole request) throws only with throwOnRequestTimeout: true
    const impatient = s3.client({ endpoint: proxy.endpoint, requestHandler: new NodeHttpHandler({ requestTimeout: 300, throwOnRequestTimeout: true }) });
    const fault = proxy.stall(1, { op: 'GetObject' });
    const started = Date.now();
    const error = await sdkError(getBytes(impatient, s3.bucket, 'faults/stall'));
    const waited = Date.now() - started;
    assert.deepEqual([error.name, error.code, error.$metadata?.httpStatusCode], ['TimeoutError', 'ETIMEDOUT', undefined]);
    assert.match(error.message, /exceeded the configured 300 ms requestTimeout/);
    assert.ok(waited >= 250 && waited < 5000, `waited ${waited} ms`);
    assert.equal(fault.hits, 1);
    await waitUntil(() => proxy.stalled === 0);
    assert.equal(proxy.requests.at(-1)!.clientAborted, true);

    // socketTimeout (no bytes either way for that long) always throws
    const idle = s3.client({ endpoint: proxy.endpoint, requestHandler: new NodeHttpHandler({ socketTimeout: 300 }) });
    proxy.stall(1, { op: 'PutObject' });
    const idleError = await sdkError(put(idle, s3.bucket, 'faults/stall-idle', Buffer.from('never')));
    assert.equal(idleError.name, 'TimeoutError');
    assert.match(idleError.message, /socket timed out after 300 ms of inactivity/);
    await waitUntil(() => proxy.stalled === 0);
    assert.equal(await s3.read('faults/stall-idle'), undefined);

    // requestTimeout alone only logs a warning: the request waits for as long as the stall lasts
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (message: string) => warnings.push(message), error() {} };
    const warnOnly = s3.client({ endpoint: proxy.endpoint, requestHandler: new NodeHttpHandler({ requestTimeout: 100, logger }) });
    proxy.stall({ forMs: 400 }, { op: 'GetObject' });
    const startedWarn = Date.now();
    assert.equal((await getBytes(warnOnly, s3.bucket, 'faults/stall')).bytes.toString(), 'stalled');
    assert.ok(Date.now() - startedWarn >= 350);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /\[WARN\] a request has exceeded the configured 100 ms requestTimeout/);

    // a time-window stall releases what it holds when the window ends: forwarded, answered
    const patient = s3.client({ endpoint: proxy.endpoint, requestHandler: new NodeHttpHandler({ requestTimeout: 10_000, throwOnRequestTimeout: true }) });
    proxy.stall({ forMs: 300 }, { op: 'PutObject' });
    const startedPut = Date.now();
    await put(patient, s3.bucket, 'faults/stall-put', Buffer.from('late but whole'));
    assert.ok(Date.now() - startedPut >= 250);
    assert.equal((await s3.read('faults/stall-put'))!.toString(), 'late but whole');
  });

  test('request counting and matching by op, method, key and predicate', async () => {
    proxy.resetRequests();
    for (const i of [1, 2, 3]) await put(viaProxy, s3.bucket, `count/chunk-${i}`, Buffer.from(`c${i}`));
    await put(viaProxy, s3.bucket, 'count/manifest.json', Buffer.from('{}'));
    await getBytes(viaProxy, s3.bucket, 'count/chunk-1');
    await viaProxy.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: 'count/chunk-2' }));
    await viaProxy.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'count/' }));
    assert.equal(proxy.count(), 7);
    assert.equal(proxy.count({ op: 'PutObject' }), 4);
    assert.equal(proxy.count({ method: 'PUT', key: /^count\/chunk-/ }), 3);
    assert.equal(proxy.count({ method: ['GET', 'DELETE'] }), 3);
    assert.equal(proxy.count({ op: 'ListObjectsV2', bucket: s3.bucket }), 1);
    assert.equal(proxy.count((r) => r.bytesIn > 0), 4);
    const list = proxy.filter({ op: 'ListObjectsV2' })[0]!;
    assert.equal(list.key, undefined);
    assert.equal(list.params.prefix, 'count/');
    assert.match(list.query, /list-type=2/);
    assert.ok(proxy.requests.every((r) => r.done && r.status !== undefined && r.status < 300));
  });

  test('signatures: s3rver accepts any secret key; the proxy with verifySignatures refuses a wrong one', async () => {
    const wrongSecret = { accessKeyId: s3.accessKeyId, secretAccessKey: 'not the secret' };
    const accepted = await put(s3.client({ credentials: wrongSecret }), s3.bucket, 'sig/direct', Buffer.from('x'));
    assert.equal(accepted.$metadata.httpStatusCode, 200, 's3rver does not verify SigV4 signatures');
    const error = await sdkError(put(s3.client({ endpoint: proxy.endpoint, credentials: wrongSecret }), s3.bucket, 'sig/proxied', Buffer.from('x')));
    assert.deepEqual([error.name, error.Code, error.$metadata?.httpStatusCode], ['SignatureDoesNotMatch', 'SignatureDoesNotMatch', 403]);
    assert.equal(await s3.read('sig/proxied'), undefined);
  });

  test('x-amz-content-sha256: UNSIGNED-PAYLOAD and signed payload hashes both pass (and a wrong hash is refused by the proxy)', async () => {
    const unsigned = s3.client({ endpoint: proxy.endpoint });
    unsigned.middlewareStack.add(
      (next) => async (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'unsignedPayload' },
    );
    const body = randomBytes(10_000);
    await put(unsigned, s3.bucket, 'sha/unsigned', body);
    assert.equal(proxy.requests.at(-1)!.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
    assert.deepEqual(await s3.read('sha/unsigned'), body);

    await put(viaProxy, s3.bucket, 'sha/signed', body);
    assert.match(String(proxy.requests.at(-1)!.headers['x-amz-content-sha256']), /^[0-9a-f]{64}$/);
    assert.deepEqual(await s3.read('sha/signed'), body);

    const lying = s3.client({ endpoint: proxy.endpoint });
    lying.middlewareStack.add(
      (next) => async (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = '0'.repeat(64);
        return next(args);
      },
      { step: 'build', name: 'wrongPayloadHash' },
    );
    const error = await sdkError(lying.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sha/wrong', Body: body })));
    assert.deepEqual([error.name, error.$metadata?.httpStatusCode], ['XAmzContentSHA256Mismatch', 400]);
  });

  test('what s3rver answers: unknown access key, missing bucket, skewed clock, object lock and storage class headers', async () => {
    const unknownKey = s3.client({ credentials: { accessKeyId: 'NO-SUCH-KEY', secretAccessKey: 'S3RVER' } });
    const badKeyPut = await sdkError(put(unknownKey, s3.bucket, 'x', Buffer.from('x')));
    assert.deepEqual([badKeyPut.name, badKeyPut.Code, badKeyPut.$metadata?.httpStatusCode, badKeyPut.message], ['InvalidAccessKeyId', 'InvalidAccessKeyId', 403, 'The AWS Access Key Id you provided does not exist in our records.']);
    const badKeyHead = await sdkError(unknownKey.send(new HeadBucketCommand({ Bucket: s3.bucket })));
    assert.deepEqual([badKeyHead.name, badKeyHead.Code, badKeyHead.$metadata?.httpStatusCode], ['Unknown', undefined, 403], 'HEAD has no body: the SDK only has the status');

    const noBucketPut = await sdkError(put(direct, 'no-such-bucket', 'x', Buffer.from('x')));
    assert.deepEqual([noBucketPut.name, noBucketPut.Code, noBucketPut.$metadata?.httpStatusCode, noBucketPut.message], ['NoSuchBucket', 'NoSuchBucket', 404, 'The specified bucket does not exist']);
    const noBucketList = await sdkError(direct.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' })));
    assert.deepEqual([noBucketList.name, noBucketList.$metadata?.httpStatusCode], ['NoSuchBucket', 404]);
    const noBucketHead = await sdkError(direct.send(new HeadBucketCommand({ Bucket: 'no-such-bucket' })));
    assert.deepEqual([noBucketHead.name, noBucketHead.Code, noBucketHead.$metadata?.httpStatusCode], ['NotFound', undefined, 404]);
    const noKeyHead = await sdkError(direct.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'no/such/key' })));
    assert.deepEqual([noKeyHead.name, noKeyHead.$metadata?.httpStatusCode], ['NotFound', 404]);
    const noKeyGet = await sdkError(getBytes(direct, s3.bucket, 'no/such/key'));
    assert.deepEqual([noKeyGet.name, noKeyGet.Code, noKeyGet.$metadata?.httpStatusCode], ['NoSuchKey', 'NoSuchKey', 404]);

    // A client clock an hour behind: s3rver allows 15 minutes. The SDK then corrects its clock
    // offset from the answer's Date header, so the same client's next request goes through.
    const skewed = s3.client({ systemClockOffset: -3_600_000 });
    const tooSkewed = await sdkError(put(skewed, s3.bucket, 'skew/x', Buffer.from('x')));
    assert.deepEqual([tooSkewed.name, tooSkewed.Code, tooSkewed.$metadata?.httpStatusCode, tooSkewed.message], ['RequestTimeTooSkewed', 'RequestTimeTooSkewed', 403, 'The difference between the request time and the current time is too large.']);
    assert.ok(Math.abs(await skewed.config.systemClockOffset) < 60_000);
    await put(skewed, s3.bucket, 'skew/x', Buffer.from('x'));

    // Object lock headers are taken and ignored (s3rver has no object lock).
    const body = Buffer.from('locked?');
    await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'lock/x', Body: body, ContentMD5: contentMd5(body), ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000) }));
    const locked = await direct.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'lock/x' }));
    assert.equal(locked.ObjectLockMode, undefined);
    await direct.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: 'lock/x' }));
    assert.equal(await s3.read('lock/x'), undefined, 'deletable at once');

    // x-amz-storage-class: kept and answered on HEAD for the classes s3rver knows; others refused.
    await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'class/x', Body: body, StorageClass: 'STANDARD_IA' }));
    assert.equal((await direct.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'class/x' }))).StorageClass, 'STANDARD_IA');
    const glacierIr = await sdkError(direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'class/y', Body: body, StorageClass: 'GLACIER_IR' })));
    assert.deepEqual([glacierIr.name, glacierIr.$metadata?.httpStatusCode, glacierIr.message], ['InvalidStorageClass', 400, 'The storage class you specified is not valid']);
  });

  test('stop() does not hang on a stalled request', async () => {
    const other = await startFaultProxy(s3.endpoint);
    other.stall(1);
    const client = s3.client({ endpoint: other.endpoint });
    const pending = sdkError(client.send(new ListObjectsV2Command({ Bucket: s3.bucket })));
    await waitUntil(() => other.stalled === 1);
    await other.stop();
    const error = await pending;
    assert.equal(error.$metadata?.httpStatusCode, undefined);
  });
});

test('writeCredentialsFile writes one [default] profile, mode 0600', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'stackback-s3-credentials-'));
  try {
    const file = join(dir, 'credentials');
    await writeCredentialsFile(file, { accessKeyId: 'AKID', secretAccessKey: 'se/cret+key' });
    assert.equal(await readFile(file, 'utf8'), '[default]\naws_access_key_id = AKID\naws_secret_access_key = se/cret+key\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

async function waitUntil(probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

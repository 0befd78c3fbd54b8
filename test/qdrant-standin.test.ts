// The Qdrant stand-in (test/support/qdrant-standin.ts), driven as production drives a real
// Qdrant: the official client for the JSON API, plain fetch for snapshot download/upload.
// Expected texts and codes come from /work/shared/reference/qdrant-snapshot-api.md.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QdrantClient, QdrantClientUnexpectedResponseError } from '@qdrant/js-client-rest';
import { Parser } from 'tar';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';

const enc = encodeURIComponent;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const SNAPSHOT_NAME = /^(.+)-(\d+)-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.snapshot$/;

interface ApiErrorLike {
  status: number;
  data: unknown;
}

/**
 * Each client operation throws its own anonymous subclass of ApiError (openapi-typescript-fetch
 * `createFetch`), so look for the class by name up the prototype chain.
 */
function isApiError(err: unknown): boolean {
  for (let proto = Object.getPrototypeOf(err) as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    if ((proto as { constructor?: { name?: string } }).constructor?.name === 'ApiError') return true;
  }
  return false;
}

/** The client throws ApiError (from @qdrant/openapi-typescript-fetch, not re-exported) for non-2xx. */
async function apiError(promise: Promise<unknown>, status: number, message?: string | RegExp): Promise<ApiErrorLike> {
  const err: unknown = await promise.then(
    () => assert.fail(`expected an ApiError ${status}`),
    (e: unknown) => e,
  );
  assert.ok(isApiError(err), String(err));
  const e = err as ApiErrorLike;
  assert.equal(e.status, status, JSON.stringify(e.data));
  if (message !== undefined) {
    const text = typeof e.data === 'string' ? e.data : (e.data as { status: { error: string } }).status.error;
    if (message instanceof RegExp) assert.match(text, message);
    else assert.equal(text, message);
  }
  return e;
}

async function envelopeError(response: Response, status: number): Promise<string> {
  assert.equal(response.status, status);
  assert.match(response.headers.get('content-type') ?? '', /application\/json/);
  const body = (await response.json()) as { status: { error: string }; time: number; result?: unknown };
  assert.equal(typeof body.time, 'number');
  assert.equal('result' in body, false);
  return body.status.error;
}

function uploadSnapshot(url: string, collection: string, bytes: Uint8Array, filename: string, query = '', headers: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  form.append('snapshot', new Blob([bytes]), filename);
  return fetch(`${url}/collections/${enc(collection)}/snapshots/upload${query}`, { method: 'POST', body: form, headers });
}

async function download(url: string, path: string, headers: Record<string, string> = {}): Promise<Buffer> {
  const response = await fetch(`${url}${path}`, { headers });
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get('content-type'), 'application/octet-stream');
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(Number(response.headers.get('content-length')), bytes.length);
  return bytes;
}

/** A tar's regular files, by path. */
async function tarFiles(bytes: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => {
          if (entry.type === 'File') files.set(entry.path, Buffer.concat(chunks));
        });
      },
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
    parser.end(bytes);
  });
  return files;
}

async function allPoints(client: QdrantClient, collection: string) {
  const points: unknown[] = [];
  let offset: string | number | undefined | null;
  do {
    const page = await client.scroll(collection, { limit: 7, with_vector: true, ...(offset != null ? { offset } : {}) });
    points.push(...page.points);
    offset = page.next_page_offset as string | number | null | undefined;
  } while (offset != null);
  return points;
}

const UUIDS = ['5c56c793-69f3-4fbf-87e6-c4bf54c28c26', 'F9C2B7A1-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000000a'];

function payloadFor(i: number) {
  return {
    title: `Ĳsselmeer ${i} — 日本語テキスト ✓ 🚀`,
    tags: ['Ünïcödé', 'straße', i % 2 === 0 ? 'even' : 'odd'],
    nested: { level1: { level2: { n: i, ok: i % 3 === 0, nothing: null, list: [{ 'ключ': 'значение' }, 1.5, 'ø'] } } },
  };
}

async function seedDocs(client: QdrantClient, name: string): Promise<void> {
  await client.createCollection(name, { vectors: { size: 4, distance: 'Cosine' } });
  const points = [
    ...Array.from({ length: 20 }, (_, k) => ({ id: 20 - k, vector: [20 - k, 1, 2, 3], payload: payloadFor(20 - k) })),
    ...UUIDS.map((id, k) => ({ id, vector: [0, 0, 3, 4 + k], payload: payloadFor(100 + k) })),
  ];
  await client.upsert(name, { wait: true, points });
}

describe('Qdrant stand-in without API key', () => {
  let standin: QdrantStandin;
  let client: QdrantClient;
  const scratch: string[] = [];

  before(async () => {
    standin = await startQdrantStandin();
    client = new QdrantClient({ url: standin.url, checkCompatibility: false });
  });
  after(async () => {
    await standin.stop();
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  test('GET / answers without envelope, the client checks compatibility with it, health probes are plain text', async () => {
    const root = (await (await fetch(`${standin.url}/`)).json()) as Record<string, unknown>;
    assert.equal(root.title, 'qdrant - vector search engine');
    assert.equal(root.version, '1.19.0');
    assert.match(String(root.commit), /^[0-9a-f]{40}$/);
    assert.equal('result' in root, false);

    const before = standin.requests.length;
    new QdrantClient({ url: standin.url, checkCompatibility: true });
    for (let i = 0; i < 100 && !standin.requests.slice(before).some((r) => r.path === '/'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(standin.requests.slice(before).some((r) => r.method === 'GET' && r.path === '/'));

    for (const path of ['/healthz', '/readyz', '/livez']) {
      const response = await fetch(`${standin.url}${path}`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
    }
    const unknown = await fetch(`${standin.url}/no/such/route`);
    assert.equal(unknown.status, 404);
  });

  test('collections: single and named vectors, 409 when it exists, list, exists, info, delete', async () => {
    assert.equal(await client.createCollection('single', { vectors: { size: 4, distance: 'Euclid' } }), true);
    assert.equal(await client.createCollection('named', { vectors: { image: { size: 3, distance: 'Euclid' }, text: { size: 2, distance: 'Cosine' } } }), true);
    await apiError(client.createCollection('single', { vectors: { size: 4, distance: 'Euclid' } }), 409, 'Wrong input: Collection `single` already exists!');

    const names = (await client.getCollections()).collections.map((c) => c.name).sort();
    assert.deepEqual(names.filter((n) => n === 'single' || n === 'named'), ['named', 'single']);
    assert.deepEqual(await client.collectionExists('single'), { exists: true });
    assert.deepEqual(await client.collectionExists('nope'), { exists: false });

    const info = await client.getCollection('named');
    assert.equal(info.status, 'green');
    assert.equal(info.optimizer_status, 'ok');
    assert.equal(info.points_count, 0);
    assert.equal(typeof info.segments_count, 'number');
    assert.deepEqual(info.config.params.vectors, { image: { size: 3, distance: 'Euclid' }, text: { size: 2, distance: 'Cosine' } });
    assert.equal(info.config.params.shard_number, 1);
    assert.deepEqual(info.payload_schema, {});
    await apiError(client.getCollection('nope'), 404, 'Not found: Collection `nope` doesn\'t exist!');

    // Bad bodies: JSON syntax (400 Format error), unknown distance.
    const broken = await fetch(`${standin.url}/collections/broken`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"vectors": ' });
    assert.match(await envelopeError(broken, 400), /^Format error in JSON body: /);
    const badDistance = await fetch(`${standin.url}/collections/broken`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"vectors":{"size":4,"distance":"cosine"}}' });
    assert.match(await envelopeError(badDistance, 400), /^Format error in JSON body: .*unknown variant `cosine`/);

    assert.equal(await client.deleteCollection('single'), true);
    assert.equal(await client.deleteCollection('single'), false);
  });

  test('points: ids, nested non-ASCII payloads, Cosine normalisation, dimension errors, scroll pages, count', async () => {
    await seedDocs(client, 'docs');
    assert.equal((await client.count('docs', { exact: true })).count, 23);
    assert.equal((await client.getCollection('docs')).points_count, 23);

    const first = await client.scroll('docs', { limit: 3, with_vector: true });
    assert.deepEqual(first.points.map((p) => p.id), [1, 2, 3]);
    assert.equal(first.next_page_offset, 4);
    assert.deepEqual(first.points[0]!.payload, payloadFor(1));
    // Cosine vectors come back normalised (and as f32).
    const v = first.points[0]!.vector as number[];
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-6);
    assert.ok(Math.abs(v[0]! - 1 / Math.sqrt(15)) < 1e-6);

    // Numbers first, then UUIDs (lowercased, hyphenated), next_page_offset null at the end.
    const ids = (await allPoints(client, 'docs')).map((p) => (p as { id: unknown }).id);
    assert.deepEqual(ids, [...Array.from({ length: 20 }, (_, i) => i + 1), ...UUIDS.map((u) => u.toLowerCase()).sort()]);
    const tail = await client.scroll('docs', { offset: UUIDS[0]!, limit: 10 });
    assert.equal(tail.next_page_offset, null);
    assert.equal(tail.points.length, 2);
    assert.equal(tail.points[0]!.vector, null);

    const noPayload = await client.scroll('docs', { limit: 1, with_payload: false });
    assert.equal(noPayload.points[0]!.payload, null);
    const filtered = await client.count('docs', { filter: { must: [{ key: 'tags', match: { value: 'even' } }] } });
    assert.equal(filtered.count, 12); // 10 even numeric ids, payloads 100 and 102

    await apiError(client.upsert('docs', { wait: true, points: [{ id: 99, vector: [1, 2, 3] }] }), 400, 'Wrong input: Vector dimension error: expected dim: 4, got 3');
    await apiError(client.upsert('nope', { wait: true, points: [{ id: 1, vector: [1, 2, 3, 4] }] }), 404, 'Not found: Collection `nope` doesn\'t exist!');
    await apiError(client.upsert('docs', { wait: true, points: [{ id: 'not-a-uuid', vector: [1, 2, 3, 4] }] }), 400, /^Format error in JSON body: /);
    assert.equal((await client.count('docs')).count, 23);

    // Named vectors, Euclid untouched, Cosine normalised.
    await client.createCollection('multi', { vectors: { image: { size: 3, distance: 'Euclid' }, text: { size: 2, distance: 'Cosine' } } });
    const result = await client.upsert('multi', {
      wait: true,
      points: [
        { id: 7, vector: { image: [1.5, -2, 3.25], text: [3, 4] }, payload: { 'näme': 'ï' } },
        { id: 8, vector: { image: [0.1, 0.2, 0.3] }, payload: {} },
      ],
    });
    assert.equal(result.status, 'completed');
    const multi = await client.scroll('multi', { with_vector: true });
    assert.deepEqual(multi.points[0]!.vector, { image: [1.5, -2, 3.25], text: [0.6, 0.8] });
    assert.deepEqual(multi.points[1]!.vector, { image: [0.1, 0.2, 0.3] });
    await apiError(client.upsert('multi', { wait: true, points: [{ id: 9, vector: { image: [1, 2] } }] }), 400, 'Wrong input: Vector dimension error: expected dim: 3, got 2');
    await apiError(client.upsert('multi', { wait: true, points: [{ id: 9, vector: { audio: [1, 2] } }] }), 400, /^Wrong input: Not existing vector name error: audio/);
  });

  test('snapshot round trip: create, list, download (sha256 = checksum), delete the collection, upload, same points', async () => {
    const original = await allPoints(client, 'docs');
    const snapshot = await client.createSnapshot('docs');
    assert.ok(snapshot);
    const m = SNAPSHOT_NAME.exec(snapshot.name);
    assert.ok(m, snapshot.name);
    assert.equal(m[1], 'docs');
    assert.match(snapshot.checksum ?? '', /^[0-9a-f]{64}$/);
    assert.match(snapshot.creation_time ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    const nameTime = `${m[3]}-${m[4]}-${m[5]}T${m[6]}:${m[7]}:${m[8]}`;
    assert.ok(nameTime <= snapshot.creation_time!);

    const listed = await client.listSnapshots('docs');
    assert.deepEqual(listed, [snapshot]);

    const ranged = await fetch(`${standin.url}/collections/docs/snapshots/${enc(snapshot.name)}`, { headers: { range: 'bytes=0-99' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 0-99/${snapshot.size}`);
    assert.equal((await ranged.arrayBuffer()).byteLength, 100);

    const bytes = await download(standin.url, `/collections/docs/snapshots/${enc(snapshot.name)}`);
    assert.equal(bytes.length, snapshot.size);
    assert.equal(sha256(bytes), snapshot.checksum);
    // A plain tar with Qdrant's top-level layout.
    assert.equal(bytes.subarray(257, 262).toString(), 'ustar');
    const files = await tarFiles(bytes);
    for (const f of ['version.info', 'config.json', 'payload_index.json']) assert.ok(files.has(f), f);
    assert.ok([...files.keys()].some((f) => f.startsWith('0/')));
    const config = JSON.parse(files.get('config.json')!.toString()) as { params: { vectors: unknown; shard_number: number } };
    assert.deepEqual(config.params.vectors, { size: 4, distance: 'Cosine' });
    assert.equal(config.params.shard_number, 1);

    // Snapshots outlive their collection; listing needs the collection.
    assert.equal(await client.deleteCollection('docs'), true);
    await apiError(client.listSnapshots('docs'), 404, 'Not found: Collection `docs` doesn\'t exist!');

    const uploadName = 'docs-upload.snapshot';
    const response = await uploadSnapshot(standin.url, 'docs', bytes, uploadName, `?priority=snapshot&wait=true&checksum=${snapshot.checksum!.toUpperCase()}`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { result: unknown; status: string };
    assert.deepEqual([body.result, body.status], [true, 'ok']);
    assert.deepEqual(await allPoints(client, 'docs'), original);
    assert.deepEqual((await client.getCollection('docs')).config.params.vectors, { size: 4, distance: 'Cosine' });

    // The uploaded file stays, listed without checksum; the created one keeps its sidecar.
    const after = await client.listSnapshots('docs');
    const uploaded = after.find((s) => s.name === uploadName);
    assert.ok(uploaded);
    assert.equal(uploaded.size, bytes.length);
    assert.equal('checksum' in uploaded, false);
    assert.equal(after.find((s) => s.name === snapshot.name)?.checksum, snapshot.checksum);

    // Delete removes the file and its sidecar; a second delete is 404.
    assert.equal(await client.deleteSnapshot('docs', uploadName), true);
    assert.equal(await client.deleteSnapshot('docs', snapshot.name), true);
    assert.deepEqual(await readdir(join(standin.snapshotsDir, 'docs')), []);
    await apiError(client.deleteSnapshot('docs', snapshot.name), 404, `Not found: Snapshot ${snapshot.name} not found`);
  });

  test('upload into an existing collection replaces its points; upload errors', async () => {
    const snapshot = await client.createSnapshot('docs');
    const bytes = await download(standin.url, `/collections/docs/snapshots/${enc(snapshot!.name)}`);
    const original = await allPoints(client, 'docs');
    await client.upsert('docs', { wait: true, points: [{ id: 500, vector: [1, 1, 1, 1], payload: { extra: true } }] });
    await client.upsert('docs', { wait: true, points: [{ id: 1, vector: [9, 9, 9, 9], payload: { changed: 'yes' } }] });
    const ok = await uploadSnapshot(standin.url, 'docs', bytes, 'replace.snapshot', '?priority=no_sync');
    assert.equal(ok.status, 200);
    assert.deepEqual(await allPoints(client, 'docs'), original);

    // Into a new name: the collection is created from the snapshot's config.
    assert.equal((await uploadSnapshot(standin.url, 'docs-copy', bytes, 'copy.snapshot')).status, 200);
    assert.deepEqual(await allPoints(client, 'docs-copy'), original);

    // Checksum checked first; the labels are swapped as in Qdrant.
    const wrong = 'ab'.repeat(32);
    const mismatch = await uploadSnapshot(standin.url, 'docs', bytes, 'mismatch.snapshot', `?checksum=${wrong}`);
    assert.equal(await envelopeError(mismatch, 400), `Checksum mismatch: expected ${snapshot!.checksum}, actual ${wrong}`);
    const malformed = await uploadSnapshot(standin.url, 'docs', bytes, 'malformed.snapshot', '?checksum=xyz');
    assert.equal(malformed.status, 422);
    assert.match(await malformed.text(), /invalid_sha256_hash/);
    const badPriority = await uploadSnapshot(standin.url, 'docs', bytes, 'p.snapshot', '?priority=first');
    assert.match(await envelopeError(badPriority, 400), /^Deserialize error in query parameters: /);
    const files = await readdir(join(standin.snapshotsDir, 'docs'));
    assert.equal(files.includes('mismatch.snapshot'), false);

    // Not a tar: 500; a tar without config.json: 400.
    const garbage = await uploadSnapshot(standin.url, 'docs', Buffer.from('this is not a tar archive '.repeat(40)), 'garbage.snapshot');
    assert.match(await envelopeError(garbage, 500), /^Service internal error: /);
    const empty = await uploadSnapshot(standin.url, 'docs', Buffer.alloc(0), 'empty.snapshot');
    assert.match(await envelopeError(empty, 400), /does not contain a collection config/);

    // Incompatible vectors.
    const incompatible = await uploadSnapshot(standin.url, 'multi', bytes, 'x.snapshot');
    assert.match(await envelopeError(incompatible, 400), /^Wrong input: Snapshot is not compatible with existing collection: Collection vectors: /);

    // A streamed body (chunked, as production sends it) cut into pieces that split the
    // boundary, with a preamble and another field before the file.
    const boundary = 'stackback-0123456789abcdef';
    const raw = Buffer.concat([
      Buffer.from(`preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="snapshot"; filename="streamed.snapshot"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < raw.length; i += 7) yield raw.subarray(i, i + 7);
    }
    const streamed = await fetch(`${standin.url}/collections/streamed/snapshots/upload?priority=snapshot&wait=true&checksum=${snapshot!.checksum}`, {
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: pieces() as unknown as RequestInit['body'],
      duplex: 'half',
    } as RequestInit);
    assert.equal(streamed.status, 200, await streamed.clone().text());
    assert.deepEqual(await allPoints(client, 'streamed'), original);
    assert.deepEqual(standin.requests.find((r) => r.path === '/collections/streamed/snapshots/upload')?.query, {
      priority: 'snapshot',
      wait: 'true',
      checksum: snapshot!.checksum,
    });
    const noField = new FormData();
    noField.append('other', new Blob([bytes]), 'x.snapshot');
    const missingField = await fetch(`${standin.url}/collections/docs/snapshots/upload`, { method: 'POST', body: noField });
    assert.equal(missingField.status, 400);

    // Shard number must match too; a multi-shard collection round-trips through its snapshot.
    await client.createCollection('sharded', { vectors: { size: 4, distance: 'Cosine' }, shard_number: 3 });
    const shardMismatch = await uploadSnapshot(standin.url, 'sharded', bytes, 'x.snapshot');
    assert.equal(await envelopeError(shardMismatch, 400), 'Wrong input: Snapshot is not compatible with existing collection: Collection shard number: 3 Snapshot shard number: 1');
    await client.upsert('sharded', { wait: true, points: original.map((p) => p as { id: number | string; vector: number[]; payload: Record<string, unknown> }) });
    const sharded = (await client.createSnapshot('sharded'))!;
    const shardedBytes = await download(standin.url, `/collections/sharded/snapshots/${enc(sharded.name)}`);
    assert.ok([...(await tarFiles(shardedBytes)).keys()].some((f) => f.startsWith('2/')));
    assert.equal((await uploadSnapshot(standin.url, 'sharded-copy', shardedBytes, 'sharded.snapshot')).status, 200);
    // (Re-upserting normalised Cosine vectors normalises them again: compare with 'sharded' itself.)
    assert.deepEqual(await allPoints(client, 'sharded-copy'), await allPoints(client, 'sharded'));
    assert.equal((await client.count('sharded-copy')).count, original.length);
    assert.equal((await client.getCollection('sharded-copy')).config.params.shard_number, 3);

    // Path-like file names are reduced to their last component.
    assert.equal((await uploadSnapshot(standin.url, 'docs', bytes, '../../escape.snapshot')).status, 200);
    assert.ok((await readdir(join(standin.snapshotsDir, 'docs'))).includes('escape.snapshot'));
    for (const name of await readdir(join(standin.snapshotsDir, 'docs'))) {
      if (name.endsWith('.snapshot')) await client.deleteSnapshot('docs', name);
    }
  });

  test('recover: file:// inside the snapshots folder, http URL, checksum, errors', async () => {
    const snapshot = (await client.createSnapshot('docs'))!;
    const original = await allPoints(client, 'docs');
    const path = join(standin.snapshotsDir, 'docs', snapshot.name);

    assert.equal(await client.recoverSnapshot('restored-file', { location: `file://${path}` }), true);
    assert.deepEqual(await allPoints(client, 'restored-file'), original);
    assert.equal(await client.recoverSnapshot('restored-localhost', { location: `file://localhost${path}`, checksum: snapshot.checksum!.toUpperCase() }), true);

    const httpLocation = `${standin.url}/collections/docs/snapshots/${enc(snapshot.name)}`;
    assert.equal(await client.recoverSnapshot('restored-http', { location: httpLocation, priority: 'snapshot', checksum: snapshot.checksum! }), true);
    assert.deepEqual(await allPoints(client, 'restored-http'), original);

    const wrong = '3'.repeat(64);
    await apiError(client.recoverSnapshot('restored-x', { location: httpLocation, checksum: wrong }), 400, `Wrong input: Snapshot checksum mismatch: expected ${wrong}, got ${snapshot.checksum}`);
    assert.deepEqual(await client.collectionExists('restored-x'), { exists: false });
    await apiError(client.recoverSnapshot('restored-x', { location: httpLocation, checksum: 'nothex' }), 422, /invalid_sha256_hash/);
    await apiError(
      client.recoverSnapshot('restored-x', { location: `${standin.url}/collections/docs/snapshots/missing.snapshot` }),
      400,
      'Wrong input: Failed to download snapshot from URL: status - 404 Not Found',
    );

    // Outside the snapshots folder (1.18+), bad hosts, missing files, other schemes.
    const outside = await mkdtemp(join(tmpdir(), 'stackback-qdrant-outside-'));
    scratch.push(outside);
    await copyFile(path, join(outside, 'copy.snapshot'));
    await apiError(client.recoverSnapshot('restored-x', { location: `file://${join(outside, 'copy.snapshot')}` }), 403, /^Forbidden: Snapshot file path must be inside the snapshots directory/);
    await apiError(client.recoverSnapshot('restored-x', { location: 'file://whatever.snapshot' }), 400, 'Bad request: Invalid snapshot URI, file path must be absolute or on localhost');
    await apiError(client.recoverSnapshot('restored-x', { location: 'file:///whatever.snapshot' }), 400, 'Bad request: Snapshot file "/whatever.snapshot" does not exist');
    await apiError(client.recoverSnapshot('restored-x', { location: 'ftp://example.com/x.snapshot' }), 400, /^Bad request: URL ftp:\/\/example.com\/x.snapshot with scheme ftp is not supported/);
    await apiError(client.recoverSnapshot('restored-x', { location: `file://${path}`, priority: 'first' as 'snapshot' }), 400, /^Format error in JSON body: /);

    // Not a tar; incompatible existing collection.
    await writeFile(join(standin.snapshotsDir, 'docs', 'garbage.snapshot'), 'x'.repeat(2000));
    await apiError(client.recoverSnapshot('restored-x', { location: `file://${join(standin.snapshotsDir, 'docs', 'garbage.snapshot')}` }), 500, /^Service internal error: /);
    await apiError(client.recoverSnapshot('multi', { location: `file://${path}` }), 400, /^Wrong input: Snapshot is not compatible with existing collection: /);
    await client.deleteSnapshot('docs', 'garbage.snapshot');
    await client.deleteSnapshot('docs', snapshot.name);
  });

  test('snapshot endpoints: missing collection, path-like names, plain-text download errors, wait=false', async () => {
    await apiError(client.createSnapshot('nope'), 404, 'Not found: Collection `nope` doesn\'t exist!');
    const missing = await fetch(`${standin.url}/collections/nope/snapshots/x.snapshot`);
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get('content-type') ?? '', /text\/plain/);
    assert.equal(await missing.text(), 'Not found: Collection `nope` doesn\'t exist!');
    for (const name of ['../x', '..%2F..%2Fetc%2Fpasswd', 'missing.snapshot']) {
      const response = await fetch(`${standin.url}/collections/docs/snapshots/${name.includes('%') ? name : enc(name)}`);
      assert.equal(response.status, 404);
      assert.equal(await response.text(), `Not found: Snapshot ${decodeURIComponent(name)} not found`);
    }

    // 202 is not 200/201: the client throws, the snapshot still appears.
    const err = await client.createSnapshot('docs', { wait: false }).then(
      () => assert.fail('expected a throw'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof QdrantClientUnexpectedResponseError, String(err));
    assert.match(err.message, /^Unexpected Response: 202/);
    let listed: Awaited<ReturnType<QdrantClient['listSnapshots']>> = [];
    for (let i = 0; i < 200 && listed.length === 0; i++) {
      listed = await client.listSnapshots('docs');
      if (listed.length === 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(listed.length, 1);
    const accepted = await fetch(`${standin.url}/collections/docs/snapshots/${enc(listed[0]!.name)}?wait=false`, { method: 'DELETE' });
    assert.equal(accepted.status, 202);
    const body = (await accepted.json()) as Record<string, unknown>;
    assert.equal(body.status, 'accepted');
    assert.equal('result' in body, false);
    for (let i = 0; i < 200 && (await client.listSnapshots('docs')).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(await client.listSnapshots('docs'), []);
  });

  test('faults: corrupt download, cut download, failed create, collection deleted mid-run', async () => {
    const firstRequest = standin.requests.length;
    const snapshot = (await client.createSnapshot('docs'))!;
    const path = `/collections/docs/snapshots/${enc(snapshot.name)}`;

    standin.faults.corruptNextDownload = true;
    const corrupt = await download(standin.url, path);
    assert.equal(corrupt.length, snapshot.size);
    assert.notEqual(sha256(corrupt), snapshot.checksum);
    assert.equal(standin.faults.corruptNextDownload, undefined);
    assert.equal(sha256(await download(standin.url, path)), snapshot.checksum);

    standin.faults.failNextDownloadAfterBytes = 1000;
    const cut = await fetch(`${standin.url}${path}`);
    assert.equal(cut.status, 200);
    assert.equal(Number(cut.headers.get('content-length')), snapshot.size);
    await assert.rejects(cut.arrayBuffer());
    assert.equal(sha256(await download(standin.url, path)), snapshot.checksum);

    standin.faults.failNextCreate = { status: 500, message: 'Service internal error: No space left on device (os error 28)' };
    await apiError(client.createSnapshot('docs'), 500, 'Service internal error: No space left on device (os error 28)');
    assert.ok(await client.createSnapshot('docs'));

    await client.createCollection('doomed', { vectors: { size: 2, distance: 'Dot' } });
    standin.faults.deleteCollectionOnNextCreate = true;
    await apiError(client.createSnapshot('doomed'), 404, 'Not found: Collection `doomed` doesn\'t exist!');
    assert.deepEqual(await client.collectionExists('doomed'), { exists: false });

    const downloads = standin.requests.slice(firstRequest).filter((r) => r.method === 'GET' && r.path === path);
    assert.equal(downloads.length, 4);
    for (const s of await client.listSnapshots('docs')) await client.deleteSnapshot('docs', s.name);
  });

  test('full-storage snapshots: create, list, download, delete', async () => {
    const full = (await client.createFullSnapshot())!;
    assert.match(full.name, /^full-snapshot-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.snapshot$/);
    assert.deepEqual(await client.listFullSnapshots(), [full]);
    const bytes = await download(standin.url, `/snapshots/${enc(full.name)}`);
    assert.equal(sha256(bytes), full.checksum);
    const files = await tarFiles(bytes);
    const config = JSON.parse(files.get('config.json')!.toString()) as { collections_mapping: Record<string, string>; collections_aliases: Record<string, string> };
    assert.deepEqual(config.collections_aliases, {});
    const inner = files.get(config.collections_mapping.docs!);
    assert.ok(inner);
    assert.ok((await tarFiles(inner)).has('config.json'));
    const missing = await fetch(`${standin.url}/snapshots/${enc('../x')}`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), 'Not found: Snapshot ../x not found');
    assert.equal(await client.deleteFullSnapshot(full.name), true);
    assert.deepEqual(await client.listFullSnapshots(), []);
  });
});

describe('Qdrant stand-in with API keys', () => {
  const KEY = 'write-key-123';
  const RO = 'read-only-key-456';
  let standin: QdrantStandin;
  let admin: QdrantClient;
  let reader: QdrantClient;
  let snapshot: { name: string; checksum?: string | null };
  let bytes: Buffer;

  before(async () => {
    standin = await startQdrantStandin({ apiKey: KEY, readOnlyApiKey: RO, version: '1.18.2' });
    // apiKey over http makes the client warn once per instance ("Api key is used with unsecure connection.").
    admin = new QdrantClient({ url: standin.url, apiKey: KEY, checkCompatibility: false });
    reader = new QdrantClient({ url: standin.url, apiKey: RO, checkCompatibility: false });
    await seedDocs(admin, 'docs');
    snapshot = (await admin.createSnapshot('docs'))!;
    bytes = await download(standin.url, `/collections/docs/snapshots/${enc(snapshot.name)}`, { 'api-key': KEY });
  });
  after(async () => {
    await standin.stop();
  });

  test('401: no key (plain text), wrong key; Bearer works; open paths stay open', async () => {
    const none = await fetch(`${standin.url}/collections`);
    assert.equal(none.status, 401);
    assert.equal(await none.text(), 'Must provide an API key or an Authorization bearer token');
    const anonymous = new QdrantClient({ url: standin.url, checkCompatibility: false });
    const e = await apiError(anonymous.getCollections(), 401);
    assert.equal(e.data, 'Must provide an API key or an Authorization bearer token');
    const wrong = new QdrantClient({ url: standin.url, checkCompatibility: false, headers: { 'api-key': 'nope' } });
    await apiError(wrong.getCollections(), 401, 'Invalid API key or JWT');
    const bearer = await fetch(`${standin.url}/collections`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(bearer.status, 200);
    for (const path of ['/', '/healthz', '/readyz', '/livez']) assert.equal((await fetch(`${standin.url}${path}`)).status, 200, path);
    const root = (await (await fetch(`${standin.url}/`)).json()) as { version: string };
    assert.equal(root.version, '1.18.2');
  });

  test('read-only key: list, download and read; no create, upsert, upload or recover', async () => {
    assert.equal((await reader.listSnapshots('docs'))[0]?.name, snapshot.name);
    assert.equal(sha256(await download(standin.url, `/collections/docs/snapshots/${enc(snapshot.name)}`, { 'api-key': RO })), snapshot.checksum);
    assert.equal((await reader.count('docs')).count, 23);
    const forbidden = 'Forbidden: Global manage access is required';
    await apiError(reader.createSnapshot('docs'), 403, forbidden);
    await apiError(reader.upsert('docs', { wait: true, points: [{ id: 1, vector: [1, 2, 3, 4] }] }), 403, forbidden);
    await apiError(reader.recoverSnapshot('docs', { location: `file://${join(standin.snapshotsDir, 'docs', snapshot.name)}` }), 403, forbidden);
    await apiError(reader.deleteSnapshot('docs', snapshot.name), 403, forbidden);
    const upload = await uploadSnapshot(standin.url, 'docs', bytes, 'ro.snapshot', '', { 'api-key': RO });
    assert.equal(await envelopeError(upload, 403), forbidden);
    const noKey = await uploadSnapshot(standin.url, 'docs', bytes, 'anon.snapshot');
    assert.equal(noKey.status, 401);
  });

  test('write key: upload and recover over http with api_key', async () => {
    const upload = await uploadSnapshot(standin.url, 'copy', bytes, 'copy.snapshot', `?checksum=${snapshot.checksum}`, { 'api-key': KEY });
    assert.equal(upload.status, 200);
    assert.deepEqual(await allPoints(admin, 'copy'), await allPoints(admin, 'docs'));
    const location = `${standin.url}/collections/docs/snapshots/${enc(snapshot.name)}`;
    await apiError(admin.recoverSnapshot('copy2', { location }), 400, 'Wrong input: Failed to download snapshot from URL: status - 401 Unauthorized');
    assert.equal(await admin.recoverSnapshot('copy2', { location, api_key: KEY }), true);
    assert.equal((await admin.count('copy2')).count, 23);
  });
});

test('before 1.18 a file:// location outside the snapshots folder is accepted', async () => {
  const standin = await startQdrantStandin({ version: '1.17.1' });
  const outside = await mkdtemp(join(tmpdir(), 'stackback-qdrant-outside-'));
  try {
    const client = new QdrantClient({ url: standin.url, checkCompatibility: false });
    await client.createCollection('c', { vectors: { size: 2, distance: 'Euclid' } });
    await client.upsert('c', { wait: true, points: [{ id: 1, vector: [1, 2], payload: { a: 'ä' } }] });
    const snapshot = (await client.createSnapshot('c'))!;
    await copyFile(join(standin.snapshotsDir, 'c', snapshot.name), join(outside, 'c.snapshot'));
    assert.equal(await client.recoverSnapshot('c2', { location: `file://${join(outside, 'c.snapshot')}` }), true);
    assert.deepEqual((await client.scroll('c2', { with_vector: true })).points, [{ id: 1, payload: { a: 'ä' }, vector: [1, 2] }]);
  } finally {
    await standin.stop();
    await rm(outside, { recursive: true, force: true });
  }
});

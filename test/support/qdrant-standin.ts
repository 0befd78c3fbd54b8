// A stand-in for a Qdrant 1.12–1.19 server (DESIGN.md §7): no real Qdrant can run on the
// test machines, so tests talk to this one through the official client and plain fetch,
// exactly as production code talks to a real server.
//
// It follows /work/shared/reference/qdrant-snapshot-api.md (envelopes, status codes, error
// texts, snapshot names, checksums, permissions), not any client's expectations. Where the
// reference is silent, it follows Qdrant's own code where that was known; the remaining
// guesses are marked "stand-in:" below.
//
// Data lives in memory. Snapshots are real files: a plain tar holding version.info,
// config.json, payload_index.json and one `<shard>/` folder per shard. Each shard folder
// holds shard_config.json, replica_state.json and points.json (the stand-in's own layout
// for segment data: [{id, vector, payload}]), so a snapshot rebuilds the collection when
// recovered.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, sep } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { create as tarCreate, Header as TarHeader, list as tarList } from 'tar';

export interface QdrantStandinOptions {
  /** Reported by GET / (default '1.19.0'). From 1.18 on, file:// recovery is limited to snapshotsDir. */
  version?: string;
  /** When set (or readOnlyApiKey is), every route except /, /healthz, /readyz and /livez needs a key. */
  apiKey?: string;
  /** Global read-only key: may list/download snapshots and read collections and points. */
  readOnlyApiKey?: string;
}

export interface QdrantStandinFaults {
  /** Serve the next snapshot download with one byte flipped (listed/created checksums stay true). */
  corruptNextDownload?: boolean;
  /** Send this many bytes of the next snapshot download, then destroy the socket. */
  failNextDownloadAfterBytes?: number;
  /** Answer the next collection snapshot create with this error envelope. */
  failNextCreate?: { status: number; message: string };
  /** Delete the collection when the next collection snapshot create arrives (answers 404). */
  deleteCollectionOnNextCreate?: boolean;
}

export interface QdrantStandinRequest {
  method: string;
  /** The raw (still percent-encoded) path, without the query string. */
  path: string;
  query: Record<string, string>;
}

export interface QdrantStandin {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Snapshot files: <dir>/<collection>/<name> (+ <name>.checksum); full snapshots at <dir>/<name>. */
  snapshotsDir: string;
  /**
   * Test hooks. Each applies to the next matching request only, then resets. The download
   * faults are used by the next download that actually serves a file (collection or full
   * snapshot); the create faults by the next POST /collections/{c}/snapshots.
   */
  faults: QdrantStandinFaults;
  /** Every request received, in order. */
  requests: QdrantStandinRequest[];
  /** Closes the server, waits for background (wait=false) work and removes the temp folder. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// JSON with exact 64-bit integers (point ids and payload integers beyond 2^53).

type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

type SourceReviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;

function parseJson(text: string): Json {
  const reviver: SourceReviver = (_key, value, context) => {
    if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?\d+$/.test(context.source)) {
      const big = BigInt(context.source);
      if (big >= I64_MIN && big <= U64_MAX) return big;
    }
    return value;
  };
  return (JSON.parse as (text: string, reviver: SourceReviver) => Json)(text, reviver);
}

const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? rawJson(v.toString()) : v), indent);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const numeric = (x: unknown) => typeof x === 'number' || typeof x === 'bigint';
  if (numeric(a) && numeric(b)) return String(a) === String(b);
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Errors, as Qdrant reports them.

class QdrantError extends Error {
  readonly status: number;
  /** Request parsing errors report time 0.0. */
  readonly parsing: boolean;
  constructor(status: number, message: string, parsing = false) {
    super(message);
    this.status = status;
    this.parsing = parsing;
  }
}

const notFound = (m: string) => new QdrantError(404, `Not found: ${m}`);
const badInput = (m: string) => new QdrantError(400, `Wrong input: ${m}`);
const badRequest = (m: string) => new QdrantError(400, `Bad request: ${m}`);
const alreadyExists = (m: string) => new QdrantError(409, `Wrong input: ${m}`);
const forbidden = (m: string) => new QdrantError(403, `Forbidden: ${m}`);
const serviceError = (m: string) => new QdrantError(500, `Service internal error: ${m}`);
const formatError = (m: string) => new QdrantError(400, `Format error in JSON body: ${m}`, true);
const queryError = (m: string) => new QdrantError(400, `Deserialize error in query parameters: ${m}`, true);
const validationError = (where: 'JSON body' | 'query parameters' | 'path parameters', m: string) =>
  new QdrantError(422, `Validation error in ${where}: [${m}]`, true);
const collectionNotFound = (c: string) => notFound(`Collection \`${c}\` doesn't exist!`);
const snapshotNotFound = (n: string) => notFound(`Snapshot ${n} not found`);

// ---------------------------------------------------------------------------------------
// Collections and points.

type Distance = 'Cosine' | 'Euclid' | 'Dot' | 'Manhattan';
const DISTANCES: readonly string[] = ['Cosine', 'Euclid', 'Dot', 'Manhattan'];
interface VectorSpec {
  size: number;
  distance: Distance;
}
type PointId = number | bigint | string;
type StoredVector = number[] | Record<string, number[]>;
interface StoredPoint {
  id: PointId;
  vector: StoredVector;
  payload: JsonObject;
}
interface CollectionConfig extends JsonObject {
  params: JsonObject;
}
interface Collection {
  name: string;
  config: CollectionConfig;
  payloadIndex: JsonObject;
  points: Map<string, StoredPoint>;
  /** Points sorted by id, rebuilt lazily after a change. */
  sorted: StoredPoint[] | null;
  nextOperationId: number;
}

// Qdrant 1.19 defaults, as GET /collections/{c} reports them.
const defaultHnsw = (): JsonObject => ({ m: 16, ef_construct: 100, full_scan_threshold: 10000, max_indexing_threads: 0, on_disk: false });
const defaultOptimizer = (): JsonObject => ({
  deleted_threshold: 0.2,
  vacuum_min_vector_number: 1000,
  default_segment_number: 0,
  max_segment_size: null,
  memmap_threshold: null,
  indexing_threshold: 10000,
  flush_interval_sec: 5,
  max_optimization_threads: null,
});
const defaultWal = (): JsonObject => ({ wal_capacity_mb: 32, wal_segments_ahead: 0, wal_retain_closed: 1 });

const FORBIDDEN_NAME_CHARS = ['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0'];

/** The check behind Qdrant's validated collection path (create, recover, upload): 422. */
function validateCollectionName(name: string): void {
  if (name.length < 1 || name.length > 255) throw validationError('path parameters', `name: length must be between 1 and 255`);
  for (const ch of FORBIDDEN_NAME_CHARS) {
    if (name.includes(ch)) throw validationError('path parameters', `name: collection name cannot contain "${ch === '\0' ? '\\0' : ch}" char`);
  }
  if (name === '.' || name === '..') throw validationError('path parameters', `name: collection name cannot be "${name}"`);
}

function parseVectorParams(raw: unknown, path: string): JsonObject {
  if (!isObject(raw)) throw formatError(`${path}: invalid type, expected struct VectorParams`);
  if (raw.size === undefined) throw formatError(`${path}: missing field \`size\``);
  if (raw.distance === undefined) throw formatError(`${path}: missing field \`distance\``);
  if (typeof raw.distance !== 'string' || !DISTANCES.includes(raw.distance)) {
    throw formatError(`${path}.distance: unknown variant \`${String(raw.distance)}\`, expected one of \`Cosine\`, \`Euclid\`, \`Dot\`, \`Manhattan\``);
  }
  const size = typeof raw.size === 'bigint' ? Number(raw.size) : raw.size;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) throw formatError(`${path}.size: invalid value: expected u64`);
  if (size < 1 || size > 65536) throw validationError('JSON body', `${path}.size: value ${size} invalid, must be in the range from 1 to 65536`);
  const params: JsonObject = {};
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) params[k] = v;
  params.size = size;
  return params;
}

/** A single anonymous `{size, distance}` or a map of named ones; validated, kept as given. */
function parseVectorsConfig(raw: unknown): JsonObject {
  if (raw === undefined || raw === null) return {};
  if (!isObject(raw)) throw formatError('vectors: data did not match any variant of untagged enum VectorsConfig');
  if ('size' in raw || 'distance' in raw) return parseVectorParams(raw, 'vectors');
  const named: JsonObject = {};
  for (const [name, params] of Object.entries(raw)) named[name] = parseVectorParams(params, `vectors.${name}`);
  return named;
}

function vectorSpecs(config: CollectionConfig): { named: boolean; specs: Map<string, VectorSpec> } {
  const vectors = config.params.vectors;
  const specs = new Map<string, VectorSpec>();
  if (isObject(vectors) && typeof vectors.size === 'number') {
    specs.set('', { size: vectors.size, distance: vectors.distance as Distance });
    return { named: false, specs };
  }
  if (isObject(vectors)) {
    for (const [name, p] of Object.entries(vectors)) {
      if (isObject(p)) specs.set(name, { size: Number(p.size), distance: p.distance as Distance });
    }
  }
  return { named: true, specs };
}

function shardNumber(config: CollectionConfig): number {
  return Number(config.params.shard_number ?? 1);
}

function optionalPositiveInt(raw: unknown, field: string, fallback: number): number {
  if (raw === undefined || raw === null) return fallback;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0) throw formatError(`${field}: invalid value: expected u32`);
  if (raw < 1) throw validationError('JSON body', `${field}: value ${raw} invalid, must be 1 or larger`);
  return raw;
}

function collectionConfigFromRequest(body: JsonObject): CollectionConfig {
  const params: JsonObject = {
    vectors: parseVectorsConfig(body.vectors),
    shard_number: optionalPositiveInt(body.shard_number, 'shard_number', 1),
    replication_factor: optionalPositiveInt(body.replication_factor, 'replication_factor', 1),
    write_consistency_factor: optionalPositiveInt(body.write_consistency_factor, 'write_consistency_factor', 1),
    on_disk_payload: typeof body.on_disk_payload === 'boolean' ? body.on_disk_payload : true,
  };
  if (body.sharding_method !== undefined && body.sharding_method !== null) params.sharding_method = body.sharding_method;
  if (body.sparse_vectors !== undefined && body.sparse_vectors !== null) params.sparse_vectors = body.sparse_vectors;
  const merge = (defaults: JsonObject, given: unknown): JsonObject => (isObject(given) ? { ...defaults, ...given } : defaults);
  const config: CollectionConfig = {
    params,
    hnsw_config: merge(defaultHnsw(), body.hnsw_config),
    optimizer_config: merge(defaultOptimizer(), body.optimizers_config),
    wal_config: merge(defaultWal(), body.wal_config),
    quantization_config: body.quantization_config ?? null,
    strict_mode_config: merge({ enabled: false }, body.strict_mode_config),
  };
  if (isObject(body.metadata)) config.metadata = body.metadata;
  return config;
}

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** An unsigned 64-bit integer or a UUID (any form the uuid crate parses; returned hyphenated, lowercase). */
function parsePointId(raw: unknown): PointId {
  if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0) return raw;
  if (typeof raw === 'bigint' && raw >= 0n && raw <= U64_MAX) return raw;
  if (typeof raw === 'string') {
    const s = raw.replace(/^urn:uuid:/i, '').replace(/^\{(.*)\}$/, '$1');
    if (UUID_RE.test(s)) {
      const hex = s.replaceAll('-', '').toLowerCase();
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
  }
  throw formatError(`value ${toJson(raw) ?? String(raw)} is not a valid point ID, valid values are either an unsigned integer or a UUID`);
}

const idKey = (id: PointId): string => (typeof id === 'string' ? `u:${id}` : `n:${id.toString()}`);

/** Qdrant's order: numeric ids first (by value), then UUIDs (by bytes). */
function compareIds(a: PointId, b: PointId): number {
  const an = typeof a !== 'string';
  const bn = typeof b !== 'string';
  if (an && bn) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (an) return -1;
  if (bn) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Which shard a point lives in (auto sharding); one shard in the usual case. */
function shardOf(id: PointId, shards: number): number {
  if (shards <= 1) return 0;
  return createHash('sha256').update(idKey(id)).digest().readUInt32BE(0) % shards;
}

/** The shortest decimal that is the same f32 (what serde prints for Qdrant's f32 vectors). */
function f32(x: number): number {
  const f = Math.fround(x);
  if (!Number.isFinite(f)) throw formatError(`invalid value: ${x} does not fit in f32`);
  for (let p = 1; p <= 9; p++) {
    const candidate = Number(f.toPrecision(p));
    if (Math.fround(candidate) === f) return candidate;
  }
  return f;
}

function prepareVector(spec: VectorSpec, raw: unknown, name: string): number[] {
  if (!Array.isArray(raw)) throw formatError(`vector${name ? ` "${name}"` : ''}: data did not match any variant of untagged enum VectorStruct`);
  const values = raw.map((v) => {
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return Number(v);
    throw formatError(`vector: invalid type: ${toJson(v)}, expected f32`);
  });
  if (values.length !== spec.size) throw badInput(`Vector dimension error: expected dim: ${spec.size}, got ${values.length}`);
  const vector = values.map((v) => Math.fround(v));
  if (spec.distance === 'Cosine') {
    // Qdrant stores Cosine vectors normalised (f32 arithmetic).
    let sum = 0;
    for (const v of vector) sum = Math.fround(sum + Math.fround(v * v));
    const length = Math.fround(Math.sqrt(sum));
    if (length >= 1.1920929e-7) for (let i = 0; i < vector.length; i++) vector[i] = Math.fround(vector[i]! / length);
  }
  return vector.map(f32);
}

function prepareVectors(config: CollectionConfig, raw: unknown): StoredVector {
  const { named, specs } = vectorSpecs(config);
  const entries: [string, unknown][] = Array.isArray(raw) ? [['', raw]] : isObject(raw) ? Object.entries(raw) : [];
  if (!Array.isArray(raw) && !isObject(raw)) throw formatError('vector: data did not match any variant of untagged enum VectorStruct');
  const out: Record<string, number[]> = {};
  for (const [name, value] of entries) {
    const spec = specs.get(name);
    if (!spec) throw badInput(`Not existing vector name error: ${name}`);
    out[name] = prepareVector(spec, value, name);
  }
  if (!named) {
    const single = out[''];
    if (!single) throw badInput(`Vector dimension error: expected dim: ${specs.get('')?.size ?? 0}, got 0`);
    return single;
  }
  return out;
}

function parsePayload(raw: unknown): JsonObject {
  if (raw === undefined || raw === null) return {};
  if (!isObject(raw)) throw formatError('payload: invalid type, expected a map');
  return structuredClone(raw);
}

/** Values at a payload path (`a.b`, `a[].b`, `a[0]`); arrays at the end are flattened. */
function valuesAt(payload: JsonObject, path: string): Json[] {
  let current: Json[] = [payload];
  for (const part of path.split('.')) {
    const m = /^([^[]*)((?:\[\d*\])*)$/.exec(part);
    const key = m?.[1] ?? part;
    const next: Json[] = [];
    for (const value of current) if (isObject(value) && key in value && value[key] !== undefined) next.push(value[key]!);
    current = next;
    for (const index of (m?.[2] ?? '').match(/\[\d*\]/g) ?? []) {
      const flat: Json[] = [];
      for (const value of current) {
        if (!Array.isArray(value)) continue;
        if (index === '[]') flat.push(...value);
        else {
          const item = value[Number(index.slice(1, -1))];
          if (item !== undefined) flat.push(item);
        }
      }
      current = flat;
    }
  }
  return current.flatMap((v) => (Array.isArray(v) ? v : [v]));
}

function sameValue(a: Json, b: unknown): boolean {
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) return Number(a) === Number(b);
  return a === b;
}

function matchFilter(filter: unknown, point: { id: PointId | null; payload: JsonObject }): boolean {
  if (filter === undefined || filter === null) return true;
  if (!isObject(filter)) throw formatError('filter: invalid type, expected struct Filter');
  const list = (x: unknown): unknown[] => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
  if (!list(filter.must).every((c) => matchCondition(c, point))) return false;
  const should = list(filter.should);
  if (should.length > 0 && !should.some((c) => matchCondition(c, point))) return false;
  if (list(filter.must_not).some((c) => matchCondition(c, point))) return false;
  if (isObject(filter.min_should)) {
    const conditions = list(filter.min_should.conditions);
    const hits = conditions.filter((c) => matchCondition(c, point)).length;
    if (hits < Number(filter.min_should.min_count ?? 1)) return false;
  }
  return true;
}

/** The common filter conditions; anything else is refused rather than silently ignored. */
function matchCondition(condition: unknown, point: { id: PointId | null; payload: JsonObject }): boolean {
  if (!isObject(condition)) throw formatError('filter: invalid condition');
  if ('must' in condition || 'should' in condition || 'must_not' in condition || 'min_should' in condition) return matchFilter(condition, point);
  if (Array.isArray(condition.has_id)) {
    if (point.id === null) return false;
    const id = point.id;
    return condition.has_id.some((raw) => compareIds(parsePointId(raw), id) === 0);
  }
  if (isObject(condition.is_empty)) {
    const values = valuesAt(point.payload, String(condition.is_empty.key));
    return values.length === 0 || values.every((v) => v === null);
  }
  if (isObject(condition.is_null)) {
    return valuesAt(point.payload, String(condition.is_null.key)).some((v) => v === null);
  }
  if (isObject(condition.nested)) {
    const nested = condition.nested;
    return valuesAt(point.payload, String(nested.key)).some((item) => isObject(item) && matchFilter(nested.filter, { id: null, payload: item }));
  }
  if (typeof condition.key === 'string') {
    const values = valuesAt(point.payload, condition.key);
    const match = condition.match;
    if (isObject(match)) {
      const { any, except, text } = match;
      if ('value' in match) return values.some((v) => sameValue(v, match.value));
      if (Array.isArray(any)) return values.some((v) => any.some((x) => sameValue(v, x)));
      if (Array.isArray(except)) return values.every((v) => !except.some((x) => sameValue(v, x)));
      if (typeof text === 'string') return values.some((v) => typeof v === 'string' && v.includes(text));
    }
    const range = condition.range;
    if (isObject(range)) {
      return values.some((v) => {
        if (typeof v !== 'number' && typeof v !== 'bigint') return false;
        const n = Number(v);
        if (range.gt != null && !(n > Number(range.gt))) return false;
        if (range.gte != null && !(n >= Number(range.gte))) return false;
        if (range.lt != null && !(n < Number(range.lt))) return false;
        if (range.lte != null && !(n <= Number(range.lte))) return false;
        return true;
      });
    }
  }
  throw formatError(`filter: condition not supported by the stand-in: ${toJson(condition)}`);
}

function selectPayload(payload: JsonObject, selector: unknown): JsonObject | null {
  if (selector === undefined || selector === null || selector === true) return structuredClone(payload);
  if (selector === false) return null;
  const pick = (keys: unknown[]): JsonObject => {
    const out: JsonObject = {};
    for (const key of keys) {
      const top = String(key).split('.')[0]!;
      if (top in payload) out[top] = structuredClone(payload[top]!);
    }
    return out;
  };
  if (Array.isArray(selector)) return pick(selector);
  if (isObject(selector) && Array.isArray(selector.include)) return pick(selector.include);
  if (isObject(selector) && Array.isArray(selector.exclude)) {
    const out = structuredClone(payload);
    for (const key of selector.exclude) delete out[String(key)];
    return out;
  }
  throw formatError('with_payload: data did not match any variant of untagged enum WithPayloadInterface');
}

function selectVector(collection: Collection, vector: StoredVector, selector: unknown): StoredVector | null {
  if (selector === undefined || selector === null || selector === false) return null;
  const { named } = vectorSpecs(collection.config);
  if (selector === true) return structuredClone(vector);
  if (Array.isArray(selector)) {
    if (!named) return selector.includes('') ? structuredClone(vector) : {};
    const out: Record<string, number[]> = {};
    for (const name of selector) {
      const v = (vector as Record<string, number[]>)[String(name)];
      if (v) out[String(name)] = [...v];
    }
    return out;
  }
  throw formatError('with_vector: data did not match any variant of untagged enum WithVector');
}

function sortedPoints(collection: Collection): StoredPoint[] {
  collection.sorted ??= [...collection.points.values()].sort((a, b) => compareIds(a.id, b.id));
  return collection.sorted;
}

// ---------------------------------------------------------------------------------------
// Multipart (RFC 7578), streamed: the file part goes straight to disk while it is hashed.

interface UploadedFile {
  path: string;
  filename: string | null;
  sha256: string;
}

function multipartBoundary(contentType: string | undefined): string | null {
  if (!contentType || !/^multipart\/form-data\s*(;|$)/i.test(contentType)) return null;
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2] ?? null;
}

function dispositionParams(header: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const m of header.matchAll(/;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g)) {
    const key = m[1]!.toLowerCase();
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '').trim();
    params.set(key, value);
  }
  const extended = params.get('filename*');
  if (extended) {
    const ext = /^([^']*)'[^']*'(.*)$/.exec(extended);
    if (ext) {
      try {
        params.set('filename', decodeURIComponent(ext[2]!));
      } catch {
        // keep the plain filename
      }
    }
  }
  return params;
}

/** Reads a multipart body; the first part named `field` is written to `target`. */
async function receiveMultipartFile(req: IncomingMessage, boundary: string, field: string, target: string): Promise<UploadedFile | null> {
  const dashBoundary = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const CRLF = Buffer.from('\r\n');
  const HEADER_END = Buffer.from('\r\n\r\n');
  let state: 'preamble' | 'after-boundary' | 'headers' | 'body' | 'done' = 'preamble';
  let buf: Buffer = Buffer.alloc(0);
  let result: UploadedFile | null = null;
  let out: ReturnType<typeof createWriteStream> | null = null;
  let hash: ReturnType<typeof createHash> | null = null;
  let capturing = false;

  const emit = async (data: Buffer) => {
    if (!capturing || data.length === 0 || !out || !hash) return;
    hash.update(data);
    if (!out.write(data)) await once(out, 'drain');
  };

  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        if (state === 'preamble') {
          const i = buf.indexOf(dashBoundary);
          if (i < 0) {
            buf = buf.subarray(Math.max(0, buf.length - dashBoundary.length + 1));
            break;
          }
          buf = buf.subarray(i + dashBoundary.length);
          state = 'after-boundary';
        } else if (state === 'after-boundary') {
          if (buf.length < 2) break;
          if (buf[0] === 0x2d && buf[1] === 0x2d) {
            state = 'done';
            break;
          }
          const i = buf.indexOf(CRLF);
          if (i < 0) break;
          buf = buf.subarray(i + 2);
          state = 'headers';
        } else if (state === 'headers') {
          let headerText: string;
          if (buf.subarray(0, 2).equals(CRLF)) {
            headerText = '';
            buf = buf.subarray(2);
          } else {
            const i = buf.indexOf(HEADER_END);
            if (i < 0) {
              if (buf.length > 64 * 1024) throw new Error('multipart part headers too large');
              break;
            }
            headerText = buf.subarray(0, i).toString('utf8');
            buf = buf.subarray(i + 4);
          }
          const disposition = headerText.split('\r\n').find((line) => /^content-disposition\s*:/i.test(line)) ?? '';
          const params = dispositionParams(disposition);
          capturing = result === null && out === null && params.get('name') === field;
          if (capturing) {
            out = createWriteStream(target);
            hash = createHash('sha256');
            result = { path: target, filename: params.has('filename') ? params.get('filename')! : null, sha256: '' };
          }
          state = 'body';
        } else if (state === 'body') {
          const i = buf.indexOf(delimiter);
          if (i >= 0) {
            await emit(buf.subarray(0, i));
            if (capturing && out && hash && result) {
              out.end();
              await finished(out);
              result.sha256 = hash.digest('hex');
            }
            capturing = false;
            buf = buf.subarray(i + delimiter.length);
            state = 'after-boundary';
          } else {
            const safe = buf.length - delimiter.length + 1;
            if (safe > 0) {
              await emit(buf.subarray(0, safe));
              buf = buf.subarray(safe);
            }
            break;
          }
        } else {
          buf = Buffer.alloc(0);
          break;
        }
      }
    }
    if (state !== 'done') throw new Error('Incomplete');
    return result;
  } catch (err) {
    out?.destroy();
    await rm(target, { force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// Files.

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function hashesEqual(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

const isSha256 = (s: string): boolean => /^[0-9a-fA-F]{64}$/.test(s.trim());

/** `YYYY-MM-DD-HH-MM-SS`, UTC (snapshot names). */
const nameStamp = (d: Date): string => d.toISOString().slice(0, 19).replace('T', '-').replaceAll(':', '-');
/** `YYYY-MM-DDTHH:MM:SS`, naive UTC (creation_time). */
const naiveUtc = (d: Date): string => d.toISOString().slice(0, 19);

function isSafeFileName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\\') && !name.includes('\0');
}

async function describeSnapshot(path: string, name: string): Promise<JsonObject> {
  const st = await stat(path);
  const born = st.birthtimeMs > 0 ? st.birthtime : st.mtime;
  const description: JsonObject = { name, creation_time: naiveUtc(born), size: st.size };
  try {
    description.checksum = (await readFile(`${path}.checksum`, 'utf8')).trim();
  } catch {
    // no sidecar (uploaded file): checksum omitted
  }
  return description;
}

async function listSnapshotFiles(dir: string): Promise<JsonObject[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: JsonObject[] = [];
  for (const name of names) {
    if (!name.endsWith('.snapshot')) continue;
    try {
      const st = await stat(join(dir, name));
      if (st.isFile()) out.push(await describeSnapshot(join(dir, name), name));
    } catch {
      // vanished meanwhile
    }
  }
  return out;
}

/** Writes a plain tar of `files` (archive path → content) to `target`. */
async function writeTar(workDir: string, files: Map<string, string | Buffer>, target: string): Promise<void> {
  const stage = await mkdtemp(join(workDir, 'stage-'));
  try {
    const top: string[] = [];
    for (const [path, content] of files) {
      await mkdir(dirname(join(stage, path)), { recursive: true });
      await writeFile(join(stage, path), content);
      const first = path.split('/')[0]!;
      if (!top.includes(first)) top.push(first);
    }
    await tarCreate({ file: target, cwd: stage, portable: true }, top);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

interface ArchiveContents {
  config: CollectionConfig;
  payloadIndex: JsonObject;
  /** Per shard folder present in the archive: its points, or null when it has no points.json. */
  shards: Map<number, StoredPoint[] | null>;
}

/** Reads a collection snapshot file the way recovery unpacks it. */
async function readCollectionArchive(path: string): Promise<ArchiveContents> {
  const st = await stat(path);
  if (!st.isFile()) throw serviceError(`Failed to unpack snapshot: ${path} is not a file`);
  let empty = st.size === 0;
  if (st.size > 0) {
    // Qdrant reads a plain tar: anything else (gzip included) fails in the tar reader.
    const fh = await open(path, 'r');
    const block = Buffer.alloc(512);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(block, 0, 512, 0));
    } finally {
      await fh.close();
    }
    if (bytesRead < 512) throw serviceError('failed to unpack snapshot: failed to read entire block');
    empty = block.every((b) => b === 0);
    if (!empty && !new TarHeader(block).cksumValid) {
      throw serviceError('failed to unpack snapshot: archive header checksum mismatch');
    }
  }
  const files = new Map<string, Buffer>();
  const shardFolders = new Set<number>();
  // An empty file, or a first block of zeros, is an archive without entries (as the tar crate reads it).
  if (!empty) {
    try {
      await tarList({
        file: path,
        strict: true,
        onReadEntry: (entry) => {
          const p = entry.path.replace(/^\.\//, '');
          const shard = /^(\d+)(\/|$)/.exec(p);
          if (shard && (entry.type === 'Directory' || p.includes('/'))) shardFolders.add(Number(shard[1]));
          if (entry.type === 'File' && (p === 'config.json' || p === 'payload_index.json' || /^\d+\/points\.json$/.test(p))) {
            const chunks: Buffer[] = [];
            entry.on('data', (c: Buffer) => chunks.push(c));
            entry.on('end', () => files.set(p, Buffer.concat(chunks)));
          }
        },
      });
    } catch (err) {
      throw serviceError(`failed to unpack snapshot: ${(err as Error).message}`);
    }
  }
  const configFile = files.get('config.json');
  if (!configFile) throw badInput('Snapshot archive does not contain a collection config');
  let config: CollectionConfig;
  try {
    const parsed = parseJson(configFile.toString('utf8'));
    if (!isObject(parsed) || !isObject(parsed.params)) throw new Error('missing field `params`');
    config = parsed as CollectionConfig;
  } catch (err) {
    throw serviceError(`Failed to read collection config: ${(err as Error).message}`);
  }
  let payloadIndex: JsonObject = { schema: {} };
  const indexFile = files.get('payload_index.json');
  if (indexFile) {
    try {
      const parsed = parseJson(indexFile.toString('utf8'));
      if (isObject(parsed)) payloadIndex = parsed;
    } catch {
      // keep the empty schema
    }
  }
  const shards = new Map<number, StoredPoint[] | null>();
  for (const shard of shardFolders) {
    const pointsFile = files.get(`${shard}/points.json`);
    if (!pointsFile) {
      shards.set(shard, null);
      continue;
    }
    try {
      const parsed = parseJson(pointsFile.toString('utf8'));
      if (!Array.isArray(parsed)) throw new Error('points.json is not an array');
      shards.set(
        shard,
        parsed.map((p) => {
          if (!isObject(p)) throw new Error('bad point');
          return { id: parsePointId(p.id), vector: p.vector as StoredVector, payload: isObject(p.payload) ? p.payload : {} };
        }),
      );
    } catch (err) {
      throw serviceError(`Failed to load shard ${shard}: ${(err as Error).message}`);
    }
  }
  return { config, payloadIndex, shards };
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (!m) return true;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

// ---------------------------------------------------------------------------------------
// The server.

type Access = 'manage' | 'read';

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  started: number;
  access: Access;
  query: URLSearchParams;
}

const OPEN_PATHS = new Set(['/', '/healthz', '/readyz', '/livez']);

export async function startQdrantStandin(options: QdrantStandinOptions = {}): Promise<QdrantStandin> {
  const version = options.version ?? '1.19.0';
  const commit = createHash('sha1').update(`qdrant-standin ${version}`).digest('hex');
  const peerId = BigInt(`0x${randomBytes(8).toString('hex')}`) % 9_000_000_000_000_000n + 1_000_000_000_000_000n;
  const baseDir = await mkdtemp(join(tmpdir(), 'stackback-qdrant-'));
  const snapshotsDir = join(baseDir, 'snapshots');
  const workDir = join(baseDir, 'tmp');
  await mkdir(snapshotsDir, { recursive: true });
  await mkdir(workDir, { recursive: true });
  const realSnapshotsDir = await realpath(snapshotsDir);

  const collections = new Map<string, Collection>();
  const faults: QdrantStandinFaults = {};
  const requests: QdrantStandinRequest[] = [];
  const background = new Set<Promise<unknown>>();
  const authEnabled = options.apiKey !== undefined || options.readOnlyApiKey !== undefined;
  let tempCounter = 0;
  const tempPath = (label: string) => join(workDir, `${label}-${process.pid}-${++tempCounter}-${randomBytes(4).toString('hex')}`);

  // --- responses -------------------------------------------------------------------------

  const elapsed = (ctx: Ctx) => (performance.now() - ctx.started) / 1000;

  function sendBody(res: ServerResponse, status: number, body: string, contentType: string): void {
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  function sendOk(ctx: Ctx, result: unknown): void {
    sendBody(ctx.res, 200, toJson({ result, status: 'ok', time: elapsed(ctx) }), 'application/json');
  }

  function sendAccepted(ctx: Ctx): void {
    sendBody(ctx.res, 202, toJson({ status: 'accepted', time: elapsed(ctx) }), 'application/json');
  }

  function sendError(ctx: Ctx, err: QdrantError): void {
    sendBody(ctx.res, err.status, toJson({ status: { error: err.message }, time: err.parsing ? 0.0 : elapsed(ctx) }), 'application/json');
  }

  function sendText(res: ServerResponse, status: number, text: string): void {
    sendBody(res, status, text, 'text/plain; charset=utf-8');
  }
  /** Download routes answer errors in plain text, not the JSON envelope (actix's default ResponseError). */
  async function servePlainText(ctx: Ctx, serve: () => Promise<void>): Promise<true> {
    try {
      await serve();
    } catch (err) {
      if (!(err instanceof QdrantError) || ctx.res.headersSent) throw err;
      sendText(ctx.res, err.status, err.message);
    }
    return true;
  }


  /** `?wait=false` answers 202 at once; the work goes on and its errors are only logged. */
  async function timeOrAccept(ctx: Ctx, wait: boolean, work: () => Promise<unknown>): Promise<void> {
    if (!wait) {
      const task = work().catch(() => undefined);
      background.add(task);
      void task.finally(() => background.delete(task));
      sendAccepted(ctx);
      return;
    }
    sendOk(ctx, await work());
  }

  // --- request helpers -------------------------------------------------------------------

  function requireWrite(ctx: Ctx): void {
    if (ctx.access !== 'manage') throw forbidden('Global manage access is required');
  }

  function boolParam(ctx: Ctx, name: string): boolean | undefined {
    const raw = ctx.query.get(name);
    if (raw === null) return undefined;
    if (raw === 'true') return true;
    if (raw === 'false') return false;
    throw queryError(`${name}: provided string was not \`true\` or \`false\``);
  }

  function priorityParam(raw: unknown, inQuery: boolean): void {
    if (raw === undefined || raw === null) return;
    if (raw === 'no_sync' || raw === 'snapshot' || raw === 'replica') return;
    const message = `unknown variant \`${String(raw)}\`, expected one of \`no_sync\`, \`snapshot\`, \`replica\``;
    throw inQuery ? queryError(`priority: ${message}`) : formatError(`priority: ${message}`);
  }

  async function readJsonBody(req: IncomingMessage): Promise<Json | undefined> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return parseJson(text);
    } catch (err) {
      throw formatError((err as Error).message);
    }
  }

  async function objectBody(req: IncomingMessage, emptyAllowed: boolean): Promise<JsonObject> {
    const body = await readJsonBody(req);
    if (body === undefined) {
      if (emptyAllowed) return {};
      throw formatError('EOF while parsing a value at line 1 column 0');
    }
    if (!isObject(body)) throw formatError(`invalid type: ${Array.isArray(body) ? 'sequence' : typeof body}, expected a map at line 1 column 1`);
    return body;
  }

  function getCollection(name: string): Collection {
    const collection = collections.get(name);
    if (!collection) throw collectionNotFound(name);
    return collection;
  }

  // --- collections and points ------------------------------------------------------------

  function collectionInfo(c: Collection): JsonObject {
    return {
      status: 'green',
      optimizer_status: 'ok',
      indexed_vectors_count: 0,
      points_count: c.points.size,
      segments_count: 2 * shardNumber(c.config),
      config: structuredClone(c.config),
      payload_schema: {},
    };
  }

  function newCollection(name: string, config: CollectionConfig, payloadIndex: JsonObject): Collection {
    const collection: Collection = { name, config, payloadIndex, points: new Map(), sorted: null, nextOperationId: 0 };
    collections.set(name, collection);
    return collection;
  }

  function upsertPoints(c: Collection, body: JsonObject): void {
    const prepared: StoredPoint[] = [];
    if (Array.isArray(body.points)) {
      for (const raw of body.points) {
        if (!isObject(raw)) throw formatError('points: invalid type, expected struct PointStruct');
        if (raw.id === undefined) throw formatError('points: missing field `id`');
        if (raw.vector === undefined) throw formatError('points: missing field `vector`');
        prepared.push({ id: parsePointId(raw.id), vector: prepareVectors(c.config, raw.vector), payload: parsePayload(raw.payload) });
      }
    } else if (isObject(body.batch)) {
      const { ids, vectors, payloads } = body.batch;
      if (!Array.isArray(ids)) throw formatError('batch: missing field `ids`');
      const perPoint = (i: number): unknown => {
        if (Array.isArray(vectors)) return vectors[i];
        if (isObject(vectors)) return Object.fromEntries(Object.entries(vectors).map(([name, list]) => [name, Array.isArray(list) ? list[i] : undefined]));
        throw formatError('batch: missing field `vectors`');
      };
      ids.forEach((id, i) => {
        prepared.push({ id: parsePointId(id), vector: prepareVectors(c.config, perPoint(i)), payload: parsePayload(Array.isArray(payloads) ? payloads[i] : undefined) });
      });
    } else {
      throw formatError('data did not match any variant of untagged enum PointInsertOperations');
    }
    for (const p of prepared) c.points.set(idKey(p.id), p);
    c.sorted = null;
  }

  function record(c: Collection, p: StoredPoint, withPayload: unknown, withVector: unknown): JsonObject {
    return {
      id: p.id,
      payload: selectPayload(p.payload, withPayload),
      vector: selectVector(c, p.vector, withVector) as Json,
    };
  }

  function scroll(c: Collection, body: JsonObject): JsonObject {
    const limit = body.limit ?? 10;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) throw formatError('limit: invalid value: expected usize');
    if (limit < 1) throw validationError('JSON body', `limit: value ${limit} invalid, must be 1 or larger`);
    if (body.order_by !== undefined && body.order_by !== null) {
      const key = typeof body.order_by === 'string' ? body.order_by : isObject(body.order_by) ? String(body.order_by.key) : '';
      throw badRequest(`No range index for \`order_by\` key: \`${key}\`. Please create one to use \`order_by\`.`);
    }
    const withVector = body.with_vector ?? body.with_vectors;
    const all = sortedPoints(c);
    let start = 0;
    if (body.offset !== undefined && body.offset !== null) {
      const offset = parsePointId(body.offset);
      let lo = 0;
      let hi = all.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareIds(all[mid]!.id, offset) < 0) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    const points: JsonObject[] = [];
    let next: PointId | null = null;
    for (let i = start; i < all.length; i++) {
      const p = all[i]!;
      if (!matchFilter(body.filter, p)) continue;
      if (points.length === limit) {
        next = p.id;
        break;
      }
      points.push(record(c, p, body.with_payload, withVector));
    }
    return { points, next_page_offset: next };
  }

  // --- snapshots -------------------------------------------------------------------------

  /** The archive's files, captured synchronously so the snapshot is one instant's state. */
  function collectionArchiveFiles(c: Collection): Map<string, string> {
    const files = new Map<string, string>();
    files.set('version.info', '0.4.2');
    files.set('config.json', toJson(c.config, 2));
    files.set('payload_index.json', toJson(c.payloadIndex));
    const shards = shardNumber(c.config);
    const perShard: StoredPoint[][] = Array.from({ length: shards }, () => []);
    for (const p of sortedPoints(c)) perShard[shardOf(p.id, shards)]!.push(p);
    perShard.forEach((points, shard) => {
      files.set(`${shard}/shard_config.json`, toJson({ type: 'Local' }));
      files.set(`${shard}/replica_state.json`, toJson({ is_local: true, this_peer_id: peerId, peers: { [peerId.toString()]: 'Active' } }));
      files.set(`${shard}/points.json`, toJson(points));
    });
    return files;
  }

  /** Builds a snapshot file in the work folder, then moves it into `dir` with its sidecar. */
  async function storeSnapshot(files: Map<string, string | Buffer>, dir: string, name: string): Promise<JsonObject> {
    const temp = tempPath('snapshot');
    try {
      await writeTar(workDir, files, temp);
      const checksum = await sha256File(temp);
      await mkdir(dir, { recursive: true });
      // The sidecar first: the snapshot is listed (with its checksum) once it is renamed in.
      await writeFile(join(dir, `${name}.checksum`), checksum);
      await rename(temp, join(dir, name));
      return await describeSnapshot(join(dir, name), name);
    } finally {
      await rm(temp, { force: true });
    }
  }

  async function createCollectionSnapshot(name: string): Promise<JsonObject> {
    const c = getCollection(name);
    const snapshotName = `${name}-${peerId}-${nameStamp(new Date())}.snapshot`;
    return storeSnapshot(collectionArchiveFiles(c), join(snapshotsDir, name), snapshotName);
  }

  async function createFullSnapshot(): Promise<JsonObject> {
    const stamp = nameStamp(new Date());
    const files = new Map<string, string | Buffer>();
    const mapping: JsonObject = {};
    for (const c of collections.values()) {
      const file = `${c.name}-${peerId}-${stamp}.snapshot`;
      const temp = tempPath('full-part');
      try {
        await writeTar(workDir, collectionArchiveFiles(c), temp);
        files.set(file, await readFile(temp));
      } finally {
        await rm(temp, { force: true });
      }
      mapping[c.name] = file;
    }
    files.set('config.json', toJson({ collections_mapping: mapping, collections_aliases: {} }));
    return storeSnapshot(files, snapshotsDir, `full-snapshot-${stamp}.snapshot`);
  }

  async function deleteSnapshotFile(dir: string, name: string): Promise<true> {
    if (!isSafeFileName(name)) throw snapshotNotFound(name);
    const path = join(dir, name);
    try {
      if (!(await stat(path)).isFile()) throw new Error('not a file');
    } catch {
      throw snapshotNotFound(name);
    }
    await rm(path, { force: true });
    await rm(`${path}.checksum`, { force: true });
    return true;
  }

  /** Resolves a recover location to a local file; http(s) files are downloaded to the work folder. */
  async function fetchLocation(location: string, apiKey: string | null): Promise<{ path: string; temporary: boolean }> {
    const url = new URL(location);
    const scheme = url.protocol.replace(/:$/, '');
    if (scheme === 'file') {
      if (url.hostname !== '' && url.hostname !== 'localhost') throw badRequest('Invalid snapshot URI, file path must be absolute or on localhost');
      let path: string;
      try {
        path = decodeURIComponent(url.pathname);
      } catch {
        throw badRequest('Invalid snapshot URI, file path must be absolute or on localhost');
      }
      try {
        await stat(path);
      } catch {
        throw badRequest(`Snapshot file ${JSON.stringify(path)} does not exist`);
      }
      if (versionAtLeast(version, 1, 18)) {
        let real: string;
        try {
          real = await realpath(path);
        } catch (err) {
          throw badRequest(`Failed to resolve snapshot path ${JSON.stringify(path)}: ${(err as Error).message}`);
        }
        if (real !== realSnapshotsDir && !real.startsWith(realSnapshotsDir + sep)) {
          throw forbidden(`Snapshot file path must be inside the snapshots directory ${JSON.stringify(realSnapshotsDir)}`);
        }
        path = real;
      }
      return { path, temporary: false };
    }
    if (scheme === 'http' || scheme === 'https') {
      const headers: Record<string, string> = {};
      if (apiKey) headers['api-key'] = apiKey;
      let response: Response;
      try {
        response = await fetch(url, { headers });
      } catch (err) {
        throw serviceError(`Failed to download snapshot from ${url.href}: ${(err as Error).message}`);
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw badInput(`Failed to download snapshot from URL: status - ${response.status} ${STATUS_CODES[response.status] ?? ''}`.trimEnd());
      }
      const path = tempPath('download');
      try {
        if (!response.body) throw new Error('empty body');
        await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>), createWriteStream(path));
      } catch (err) {
        await rm(path, { force: true });
        throw serviceError(`Failed to download snapshot from ${url.href}: ${(err as Error).message}`);
      }
      return { path, temporary: true };
    }
    throw badRequest(`URL ${url.href} with scheme ${scheme} is not supported`);
  }

  /** Recovery as recover.rs does it: checksum, unpack, create if missing, check, replace shards. */
  async function recoverFromFile(name: string, path: string, checksum: string | null): Promise<true> {
    if (checksum !== null) {
      const actual = await sha256File(path);
      if (!hashesEqual(actual, checksum)) throw badInput(`Snapshot checksum mismatch: expected ${checksum}, got ${actual}`);
    }
    const archive = await readCollectionArchive(path);
    for (const [shard, points] of archive.shards) {
      if (points === null && shard < shardNumber(archive.config)) {
        // stand-in: a real Qdrant snapshot holds segments, which the stand-in cannot read.
        throw serviceError(`Failed to recover shard ${shard}: no ${shard}/points.json (the stand-in reads only its own snapshots)`);
      }
    }
    let c = collections.get(name);
    if (!c) c = newCollection(name, structuredClone(archive.config), structuredClone(archive.payloadIndex));
    if (!deepEqual(archive.config.params.vectors, c.config.params.vectors)) {
      throw badInput(
        `Snapshot is not compatible with existing collection: Collection vectors: ${toJson(c.config.params.vectors)} Snapshot Vectors: ${toJson(archive.config.params.vectors)}`,
      );
    }
    if (shardNumber(archive.config) !== shardNumber(c.config)) {
      throw badInput(
        `Snapshot is not compatible with existing collection: Collection shard number: ${shardNumber(c.config)} Snapshot shard number: ${shardNumber(archive.config)}`,
      );
    }
    const shards = shardNumber(c.config);
    for (let shard = 0; shard < shards; shard++) {
      const points = archive.shards.get(shard);
      if (!points) continue; // a shard missing from the snapshot is left as it is
      for (const [key, p] of c.points) if (shardOf(p.id, shards) === shard) c.points.delete(key);
      for (const p of points) c.points.set(idKey(p.id), structuredClone(p));
    }
    c.sorted = null;
    return true;
  }

  async function recoverFromLocation(name: string, location: string, checksum: string | null, apiKey: string | null): Promise<true> {
    const { path, temporary } = await fetchLocation(location, apiKey);
    try {
      return await recoverFromFile(name, path, checksum);
    } finally {
      if (temporary) await rm(path, { force: true });
    }
  }

  /** Streams a snapshot file (NamedFile-like: Content-Length, single Range, ETag), applying download faults. */
  async function serveSnapshotFile(ctx: Ctx, path: string, name: string): Promise<void> {
    let st;
    try {
      st = await stat(path);
      if (!st.isFile()) throw new Error('not a file');
    } catch {
      throw snapshotNotFound(name);
    }
    const { res } = ctx;
    let start = 0;
    let end = st.size - 1;
    let status = 200;
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename="${name.replace(/["\\]/g, '\\$&')}"`,
      'accept-ranges': 'bytes',
      etag: `"${st.ino.toString(16)}:${st.size.toString(16)}:${Math.floor(st.mtimeMs).toString(16)}"`,
      'last-modified': st.mtime.toUTCString(),
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(ctx.req.headers.range ?? '');
    if (range && (range[1] !== '' || range[2] !== '')) {
      if (range[1] === '') {
        start = Math.max(0, st.size - Number(range[2]));
      } else {
        start = Number(range[1]);
        if (range[2] !== '') end = Math.min(end, Number(range[2]));
      }
      if (start >= st.size || start > end) {
        res.writeHead(416, { 'content-range': `bytes */${st.size}`, 'content-length': 0 });
        res.end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
    }
    const length = st.size === 0 ? 0 : end - start + 1;
    headers['content-length'] = length;

    const corruptAt = faults.corruptNextDownload ? Math.floor(st.size / 2) : -1;
    const failAfter = faults.failNextDownloadAfterBytes;
    delete faults.corruptNextDownload;
    delete faults.failNextDownloadAfterBytes;

    res.writeHead(status, headers);
    if (failAfter !== undefined && failAfter <= 0) {
      res.flushHeaders();
      res.socket?.destroy();
      return;
    }
    if (length === 0) {
      res.end();
      return;
    }
    let offset = start;
    let sent = 0;
    for await (const piece of createReadStream(path, { start, end }) as AsyncIterable<Buffer>) {
      let chunk = piece;
      if (corruptAt >= offset && corruptAt < offset + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[corruptAt - offset] = chunk[corruptAt - offset]! ^ 0xff;
      }
      offset += piece.length;
      if (failAfter !== undefined && sent + chunk.length >= failAfter) {
        await new Promise<void>((resolve) => res.write(chunk.subarray(0, failAfter - sent), () => resolve()));
        res.socket?.destroy();
        return;
      }
      sent += chunk.length;
      if (!res.write(chunk)) await once(res, 'drain');
    }
    res.end();
  }

  // --- routes ----------------------------------------------------------------------------

  async function route(ctx: Ctx, method: string, seg: string[]): Promise<boolean> {
    const [s0, s1, s2, s3] = seg;
    const n = seg.length;

    if (n === 1 && s0 === 'collections' && method === 'GET') {
      sendOk(ctx, { collections: [...collections.keys()].map((name) => ({ name })) });
      return true;
    }

    if (s0 === 'collections' && s1 !== undefined) {
      const name = s1;
      if (n === 2) {
        if (method === 'GET') {
          sendOk(ctx, collectionInfo(getCollection(name)));
          return true;
        }
        if (method === 'PUT') {
          validateCollectionName(name);
          const body = await objectBody(ctx.req, false);
          requireWrite(ctx);
          const config = collectionConfigFromRequest(body);
          if (collections.has(name)) throw alreadyExists(`Collection \`${name}\` already exists!`);
          newCollection(name, config, { schema: {} });
          sendOk(ctx, true);
          return true;
        }
        if (method === 'DELETE') {
          requireWrite(ctx);
          // The collection's snapshot files are kept (#5558).
          sendOk(ctx, collections.delete(name));
          return true;
        }
        return false;
      }
      if (n === 3 && s2 === 'exists' && method === 'GET') {
        sendOk(ctx, { exists: collections.has(name) });
        return true;
      }
      if (s2 === 'points') {
        if (n === 3 && method === 'PUT') {
          const wait = boolParam(ctx, 'wait') ?? false;
          const body = await objectBody(ctx.req, false);
          requireWrite(ctx);
          const c = getCollection(name);
          upsertPoints(c, body);
          sendOk(ctx, { operation_id: c.nextOperationId++, status: wait ? 'completed' : 'acknowledged' });
          return true;
        }
        if (n === 3 && method === 'POST') {
          const body = await objectBody(ctx.req, false);
          const c = getCollection(name);
          if (!Array.isArray(body.ids)) throw formatError('missing field `ids`');
          const found: JsonObject[] = [];
          for (const raw of body.ids) {
            const p = c.points.get(idKey(parsePointId(raw)));
            if (p) found.push(record(c, p, body.with_payload, body.with_vector ?? body.with_vectors));
          }
          sendOk(ctx, found);
          return true;
        }
        if (n === 4 && s3 === 'scroll' && method === 'POST') {
          const body = await objectBody(ctx.req, true);
          sendOk(ctx, scroll(getCollection(name), body));
          return true;
        }
        if (n === 4 && s3 === 'count' && method === 'POST') {
          const body = await objectBody(ctx.req, true);
          const c = getCollection(name);
          let count = 0;
          for (const p of c.points.values()) if (matchFilter(body.filter, p)) count++;
          sendOk(ctx, { count });
          return true;
        }
        if (n === 4 && s3 === 'delete' && method === 'POST') {
          const wait = boolParam(ctx, 'wait') ?? false;
          const body = await objectBody(ctx.req, false);
          requireWrite(ctx);
          const c = getCollection(name);
          if (Array.isArray(body.points)) {
            for (const raw of body.points) c.points.delete(idKey(parsePointId(raw)));
          } else if (isObject(body.filter)) {
            for (const [key, p] of c.points) if (matchFilter(body.filter, p)) c.points.delete(key);
          } else {
            throw formatError('data did not match any variant of untagged enum PointsSelector');
          }
          c.sorted = null;
          sendOk(ctx, { operation_id: c.nextOperationId++, status: wait ? 'completed' : 'acknowledged' });
          return true;
        }
        return false;
      }
      if (s2 === 'snapshots') {
        if (n === 3 && method === 'GET') {
          getCollection(name);
          sendOk(ctx, await listSnapshotFiles(join(snapshotsDir, name)));
          return true;
        }
        if (n === 3 && method === 'POST') {
          const wait = boolParam(ctx, 'wait') ?? true;
          const failure = faults.failNextCreate;
          if (failure) {
            delete faults.failNextCreate;
            throw new QdrantError(failure.status, failure.message);
          }
          if (faults.deleteCollectionOnNextCreate) {
            delete faults.deleteCollectionOnNextCreate;
            collections.delete(name);
          }
          await timeOrAccept(ctx, wait, async () => {
            requireWrite(ctx);
            return createCollectionSnapshot(name);
          });
          return true;
        }
        if (n === 4 && s3 === 'recover' && method === 'PUT') {
          validateCollectionName(name);
          const wait = boolParam(ctx, 'wait') ?? true;
          const body = await objectBody(ctx.req, false);
          if (body.location === undefined) throw formatError('missing field `location`');
          if (typeof body.location !== 'string') throw formatError('location: invalid type, expected a string');
          try {
            new URL(body.location);
          } catch {
            throw formatError(`location: relative URL without a base: "${body.location}"`);
          }
          priorityParam(body.priority, false);
          if (body.checksum !== undefined && body.checksum !== null) {
            if (typeof body.checksum !== 'string') throw formatError('checksum: invalid type, expected a string');
            if (!isSha256(body.checksum)) throw validationError('JSON body', 'checksum: invalid_sha256_hash');
          }
          if (body.api_key !== undefined && body.api_key !== null && typeof body.api_key !== 'string') throw formatError('api_key: invalid type, expected a string');
          const location = body.location;
          const checksum = typeof body.checksum === 'string' ? body.checksum : null;
          const apiKey = typeof body.api_key === 'string' ? body.api_key : null;
          await timeOrAccept(ctx, wait, async () => {
            requireWrite(ctx);
            return recoverFromLocation(name, location, checksum, apiKey);
          });
          return true;
        }
        if (n === 4 && s3 === 'upload' && method === 'POST') {
          validateCollectionName(name);
          await upload(ctx, name);
          return true;
        }
        if (n === 4 && s3 !== undefined && method === 'GET') {
          return servePlainText(ctx, async () => {
            getCollection(name);
            if (!isSafeFileName(s3)) throw snapshotNotFound(s3);
            await serveSnapshotFile(ctx, join(snapshotsDir, name, s3), s3);
          });
        }
        if (n === 4 && s3 !== undefined && method === 'DELETE') {
          const wait = boolParam(ctx, 'wait') ?? true;
          await timeOrAccept(ctx, wait, async () => {
            requireWrite(ctx);
            getCollection(name);
            return deleteSnapshotFile(join(snapshotsDir, name), s3);
          });
          return true;
        }
        return false;
      }
      return false;
    }

    if (s0 === 'snapshots') {
      if (n === 1 && method === 'GET') {
        sendOk(ctx, await listSnapshotFiles(snapshotsDir));
        return true;
      }
      if (n === 1 && method === 'POST') {
        const wait = boolParam(ctx, 'wait') ?? true;
        await timeOrAccept(ctx, wait, async () => {
          requireWrite(ctx);
          return createFullSnapshot();
        });
        return true;
      }
      if (n === 2 && s1 !== undefined && method === 'GET') {
        return servePlainText(ctx, async () => {
          if (!isSafeFileName(s1)) throw snapshotNotFound(s1);
          await serveSnapshotFile(ctx, join(snapshotsDir, s1), s1);
        });
      }
      if (n === 2 && s1 !== undefined && method === 'DELETE') {
        const wait = boolParam(ctx, 'wait') ?? true;
        await timeOrAccept(ctx, wait, async () => {
          requireWrite(ctx);
          return deleteSnapshotFile(snapshotsDir, s1);
        });
        return true;
      }
      return false;
    }
    return false;
  }

  /** POST /collections/{c}/snapshots/upload, in snapshot_api.rs order. */
  async function upload(ctx: Ctx, name: string): Promise<void> {
    // The multipart form is received (spooled to a temp file) before the handler runs.
    const boundary = multipartBoundary(ctx.req.headers['content-type']);
    if (!boundary) {
      ctx.req.resume();
      sendText(ctx.res, 400, 'Multipart error: Could not find Content-Type header or it is not multipart/form-data');
      return;
    }
    const spool = tempPath('upload');
    let file: UploadedFile | null;
    try {
      file = await receiveMultipartFile(ctx.req, boundary, 'snapshot', spool);
    } catch (err) {
      sendText(ctx.res, 400, `Multipart error: ${(err as Error).message}`);
      return;
    }
    if (!file) {
      sendText(ctx.res, 400, 'Multipart error: Field snapshot is missing');
      return;
    }
    const uploaded = file;
    try {
      const wait = boolParam(ctx, 'wait') ?? true;
      priorityParam(ctx.query.get('priority') ?? undefined, true);
      const checksum = ctx.query.get('checksum');
      if (checksum !== null && !isSha256(checksum)) throw validationError('query parameters', 'checksum: invalid_sha256_hash');
      await timeOrAccept(ctx, wait, async () => {
        try {
          requireWrite(ctx);
          if (checksum !== null && !hashesEqual(uploaded.sha256, checksum)) {
            // The labels are swapped in Qdrant's code: "expected" is the file's real hash.
            throw new QdrantError(400, `Checksum mismatch: expected ${uploaded.sha256}, actual ${checksum}`);
          }
          const fileName = (uploaded.filename !== null && basename(uploaded.filename)) || randomUUID();
          const dir = join(snapshotsDir, name);
          await mkdir(dir, { recursive: true });
          const target = join(dir, fileName);
          await rename(uploaded.path, target);
          // stand-in: a stale sidecar of a same-named snapshot is removed, so the uploaded file is listed without checksum.
          await rm(`${target}.checksum`, { force: true });
          // The file stays in the snapshots folder afterwards (#10207).
          return await recoverFromFile(name, target, null);
        } finally {
          await rm(uploaded.path, { force: true });
        }
      });
    } catch (err) {
      await rm(uploaded.path, { force: true });
      throw err;
    }
  }

  // --- dispatch --------------------------------------------------------------------------

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://standin.invalid');
    const method = req.method ?? 'GET';
    requests.push({ method, path: url.pathname, query: Object.fromEntries(url.searchParams) });
    const ctx: Ctx = { req, res, started, access: 'manage', query: url.searchParams };

    if (OPEN_PATHS.has(url.pathname) && (method === 'GET' || method === 'HEAD')) {
      req.resume();
      if (url.pathname === '/') {
        sendBody(res, 200, toJson({ title: 'qdrant - vector search engine', version, commit }), 'application/json');
      } else {
        sendText(res, 200, url.pathname === '/readyz' ? 'all shards are ready' : 'healthz check passed');
      }
      return;
    }

    if (authEnabled) {
      const header = req.headers['api-key'];
      const auth = req.headers.authorization;
      const key = typeof header === 'string' ? header : auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
      if (key === undefined) {
        req.resume();
        sendText(res, 401, 'Must provide an API key or an Authorization bearer token');
        return;
      }
      if (options.apiKey !== undefined && key === options.apiKey) ctx.access = 'manage';
      else if (options.readOnlyApiKey !== undefined && key === options.readOnlyApiKey) ctx.access = 'read';
      else {
        req.resume();
        sendText(res, 401, 'Invalid API key or JWT');
        return;
      }
    }

    let segments: string[];
    try {
      segments = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    } catch {
      req.resume();
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }

    try {
      const handled = await route(ctx, method, segments);
      if (!handled) {
        req.resume();
        res.writeHead(404, { 'content-length': 0 });
        res.end();
      }
    } catch (err) {
      req.resume();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(ctx, err instanceof QdrantError ? err : serviceError((err as Error).message));
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendText(res, 500, String(err));
      else res.destroy();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    snapshotsDir,
    faults,
    requests,
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await Promise.allSettled([...background]);
      await rm(baseDir, { recursive: true, force: true });
    },
  };
}

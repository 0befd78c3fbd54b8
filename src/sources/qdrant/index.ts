import { randomBytes } from 'node:crypto';
import type { QdrantSourceConfig } from '../../config/load.ts';
import { StackbackError } from '../../errors.ts';
import type { ArtifactManifest } from '../../repository/manifest.ts';
import type { ArtifactCheck, ArtifactDump, DrillRequest, DrillVerdict, Finding, PlannedArtifact, RestorePlan, RestoreRequest, Source } from '../source.ts';
import { restoreStamp } from '../stamp.ts';
import { listTar } from '../tar-listing.ts';
import { dumpOfStream } from '../artifact-dump.ts';
import { QdrantServer } from './connection.ts';
import { checkedSnapshot, multipartFile } from './snapshot-stream.ts';

/** Facts recorded with a collection snapshot: what a restore checks against. */
export interface QdrantSnapshotMeta {
  [key: string]: unknown;
  collection: string;
  qdrant_version: string;
  points_count: number;
  vectors: unknown;
  shard_number: number;
  snapshot: string;
}

/** Qdrant loads snapshots of the same or the previous minor version (same major). */
export function canLoad(serverVersion: string, snapshotVersion: string): boolean {
  const [sMajor, sMinor] = serverVersion.split('.').map(Number);
  const [bMajor, bMinor] = snapshotVersion.split('.').map(Number);
  return sMajor === bMajor && (sMinor === bMinor || sMinor === (bMinor ?? 0) + 1);
}

const enc = encodeURIComponent;

/**
 * A Qdrant server as a backup source (mode api): one collection snapshot per artifact,
 * created through the REST API, streamed into the repository, checked against the
 * server's checksum, and deleted from the server afterwards.
 */
export class QdrantSource implements Source {
  readonly kind = 'qdrant';
  readonly name: string;
  readonly server: QdrantServer;

  constructor(config: QdrantSourceConfig) {
    this.name = config.name;
    this.server = new QdrantServer(config);
  }

  describe(): string {
    return this.server.describe();
  }

  async check(): Promise<Record<string, unknown>> {
    const version = await this.server.version();
    await this.call('listing collections', async () => (await this.server.client()).getCollections());
    return { qdrant_version: version };
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.server.explain(error, what);
    }
  }

  async plan(): Promise<PlannedArtifact[]> {
    const { collections } = await this.call('listing collections', async () => (await this.server.client()).getCollections());
    const present = collections.map((c) => c.name).sort();
    const wanted = this.server.config.collections;
    if (wanted !== 'all') {
      const missing = wanted.filter((c) => !present.includes(c));
      if (missing.length > 0) {
        throw new StackbackError('QDRANT_NOT_FOUND', `collection(s) ${missing.map((c) => `"${c}"`).join(', ')} do not exist on ${this.describe()}`, 'fix sources.qdrant[].collections, or use "all"');
      }
    }
    const names = wanted === 'all' ? present : wanted;
    const artifacts: PlannedArtifact[] = [];
    for (const collection of names) {
      const info = await this.call(`reading collection "${collection}"`, async () => (await this.server.client()).getCollection(collection));
      // A rough size for the free-space check: points times a typical stored size.
      artifacts.push({ id: `${this.name}/collection/${collection}`, kind: 'qdrant_snapshot', target: collection, estimatedBytes: (info.points_count ?? 0) * 4096 });
    }
    return artifacts;
  }

  async dump(artifact: PlannedArtifact, signal?: AbortSignal): Promise<ArtifactDump> {
    const collection = artifact.target;
    const client = await this.server.client();
    const version = await this.server.version();
    const info = await this.call(`reading collection "${collection}"`, () => client.getCollection(collection));
    const { count } = await this.call(`counting points of "${collection}"`, () => client.count(collection, { exact: true }));
    const snapshot = await this.call(`creating a snapshot of collection "${collection}"`, () => client.createSnapshot(collection, { wait: true }));
    if (!snapshot) throw new StackbackError('QDRANT_FAILED', `${this.describe()} accepted the snapshot of "${collection}" without describing it`);
    const removeFromServer = async () => {
      if (this.server.config.keepServerSnapshots) return;
      await client.deleteSnapshot(collection, snapshot.name).catch(() => undefined);
    };
    let response: Response;
    try {
      response = await this.server.fetch(`/collections/${enc(collection)}/snapshots/${enc(snapshot.name)}`, `downloading snapshot ${snapshot.name}`, signal ? { signal } : {});
    } catch (error) {
      await removeFromServer();
      throw error;
    }
    const meta: QdrantSnapshotMeta = {
      collection,
      qdrant_version: version,
      points_count: count,
      vectors: info.config.params.vectors,
      shard_number: info.config.params.shard_number ?? 1,
      snapshot: snapshot.name,
    };
    const expected = { name: snapshot.name, size: snapshot.size, checksum: snapshot.checksum ?? null };
    return dumpOfStream(checkedSnapshot(response.body as unknown as AsyncIterable<Uint8Array>, expected, removeFromServer), () => meta);
  }

  async checkArtifact(artifact: ArtifactManifest, data: AsyncIterable<Uint8Array>): Promise<ArtifactCheck> {
    const entries = await listTar(data);
    const missing = ['config.json', 'version.info'].filter((f) => !entries.includes(f));
    if (missing.length > 0) return { ok: false, detail: `the snapshot tar lacks ${missing.join(', ')}` };
    return { ok: true, detail: `snapshot tar reads (${entries.length} entries)` };
  }

  async planRestore(request: RestoreRequest): Promise<RestorePlan> {
    const { options } = request;
    const snapshots = request.artifacts.filter((a) => a.kind === 'qdrant_snapshot' && (options.collection === undefined || a.target === options.collection));
    if (snapshots.length === 0) {
      const held = request.artifacts.map((a) => a.target);
      throw new StackbackError(
        'ARTIFACT_NOT_FOUND',
        options.collection === undefined ? `the backup holds no collections of source ${this.name}` : `the backup holds no collection "${options.collection}" of source ${this.name} (it holds: ${held.join(', ') || 'none'})`,
      );
    }
    if (options.targetCollection !== undefined && snapshots.length !== 1) {
      throw new StackbackError('USAGE', `--target-collection restores one collection, but ${snapshots.length} are selected (${snapshots.map((s) => s.target).join(', ')})`, 'add --collection NAME');
    }
    request.willRead(snapshots);
    const version = await this.server.version();
    const findings: Finding[] = snapshots.map((artifact) => {
      const recorded = String(artifact.meta.qdrant_version);
      return canLoad(version, recorded)
        ? { level: 'ok', message: `Qdrant ${version} loads the snapshot of "${artifact.target}" made by Qdrant ${recorded}` }
        : {
            level: 'error',
            message: `${this.describe()} runs Qdrant ${version}, which cannot load the snapshot of "${artifact.target}" made by Qdrant ${recorded} (only the same or the next minor version can)`,
            hint: 'restore on a Qdrant of the recorded version (or the next minor), then upgrade',
          };
    });
    const client = await this.server.client();
    const targets = await Promise.all(
      snapshots.map(async (artifact) => {
        const target = options.targetCollection ?? artifact.target;
        const { exists } = await this.call(`checking collection "${target}"`, () => client.collectionExists(target));
        return { artifact, target, exists };
      }),
    );
    const replaced = targets.filter((t) => t.exists);
    return {
      source: this.name,
      artifacts: snapshots,
      replacesData: replaced.length > 0,
      safetyBackup: options.noSafety ? [] : replaced.map((t) => `${this.name}/collection/${t.target}`),
      findings,
      steps: targets.map((t) =>
        t.exists
          ? `replace the points of collection "${t.target}" with the snapshot of "${t.artifact.target}"${options.noSafety ? ' (--no-safety: no copy of the current points is kept)' : ' (a snapshot of the current collection is stored in the repository first)'}`
          : `create collection "${t.target}" from the snapshot of "${t.artifact.target}"`,
      ),
      execute: async () => {
        const results: Record<string, unknown>[] = [];
        for (const t of targets) results.push(await this.upload(t.artifact, t.target, request.open(t.artifact), request.signal));
        return results;
      },
    };
  }

  /** Uploads the snapshot into a scratch collection, compares points count and vector config, deletes the collection. */
  async drill(artifact: ArtifactManifest, request: DrillRequest): Promise<DrillVerdict> {
    const recorded = String(artifact.meta.qdrant_version);
    const version = await this.server.version();
    if (!canLoad(version, recorded)) return { ok: false, detail: 'the drill could not restore', differences: [`Qdrant ${version} cannot load a snapshot made by Qdrant ${recorded}`] };
    const scratch = `${request.scratchPrefix}${artifact.target}_${restoreStamp(request.now)}`;
    const client = await this.server.client();
    if ((await this.call(`checking collection "${scratch}"`, () => client.collectionExists(scratch))).exists) {
      throw new StackbackError('QDRANT_FAILED', `collection "${scratch}" exists already: a drill never touches a collection it did not create`, 'remove it, or choose another drill.qdrant_collection_prefix');
    }
    try {
      await this.upload(artifact, scratch, request.open(), request.signal);
      const info = await this.call(`reading collection "${scratch}"`, () => client.getCollection(scratch));
      const differences: string[] = [];
      if (JSON.stringify(info.config.params.vectors) !== JSON.stringify(artifact.meta.vectors)) {
        differences.push(`vector config ${JSON.stringify(info.config.params.vectors)}, recorded ${JSON.stringify(artifact.meta.vectors)}`);
      }
      return { ok: differences.length === 0, detail: `restored into scratch collection ${scratch}: ${String(artifact.meta.points_count)} points and the vector config compared`, differences };
    } catch (error) {
      return { ok: false, detail: 'the drill restore failed', differences: [(error as Error).message] };
    } finally {
      await client.deleteCollection(scratch).catch(() => undefined);
    }
  }

  /** Streams a snapshot into the server (priority snapshot), checks the points, removes the uploaded file. */
  private async upload(artifact: ArtifactManifest, target: string, data: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    const started = Date.now();
    const boundary = `stackback-${randomBytes(12).toString('hex')}`;
    const filename = `${target}-stackback-restore-${randomBytes(4).toString('hex')}.snapshot`;
    const query = `priority=snapshot&wait=true&checksum=${artifact.sha256}`;
    try {
      await this.server.fetch(`/collections/${enc(target)}/snapshots/upload?${query}`, `uploading the snapshot of "${artifact.target}" into "${target}"`, {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: multipartFile(boundary, 'snapshot', filename, data) as unknown as RequestInit['body'],
        duplex: 'half',
        ...(signal ? { signal } : {}),
      } as RequestInit);
    } finally {
      // Qdrant keeps uploaded files in the collection's snapshot folder: remove ours.
      await this.server.client().then((client) => client.deleteSnapshot(target, filename)).catch(() => undefined);
    }
    const { count } = await this.call(`counting points of "${target}"`, async () => (await this.server.client()).count(target, { exact: true }));
    const expected = Number(artifact.meta.points_count);
    if (count !== expected) {
      throw new StackbackError('QDRANT_FAILED', `collection "${target}" holds ${count} points after the restore; the backup recorded ${expected}`);
    }
    return { artifact: artifact.id, restored_as: target, points: count, seconds: (Date.now() - started) / 1000 };
  }
}

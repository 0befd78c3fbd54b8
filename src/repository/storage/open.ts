import type { ObjectStorage, StorageSpec } from '../storage.ts';
import { LocalStorage } from './local.ts';
import { RemoteStorage } from './remote.ts';

/** The storage a spec describes: how a worker thread, which cannot be handed an object, opens its own. */
export function openStorage(spec: StorageSpec): ObjectStorage {
  switch (spec.kind) {
    case 'local':
      return new LocalStorage(spec.root);
    case 's3':
      return RemoteStorage.fromSpec(spec);
  }
}

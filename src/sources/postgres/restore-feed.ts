// The feed of a database restore: the archive into pg_restore and, with several COPY sessions,
// shares of the big tables' rows into psql sessions beside it. The feeding thread's sink
// (restore-feed-sink.ts) holds back pg_restore's last byte until it hears here that every
// side session has succeeded.
import type { ArtifactData } from '../../repository/artifact-reader.ts';
import { siblingModule } from '../../sibling-module.ts';
import { type ArtifactFeed, startArtifactFeed } from '../tool.ts';
import type { SplitOptions } from './archive-blocks.ts';
import { ABANDON, RELEASE, type RestoreSinkOptions, SIDES_FAILED } from './restore-feed-sink.ts';

/** The sink the feeding thread loads; beside this file, .ts from source, .js once built. */
const RESTORE_FEED_SINK = siblingModule(import.meta.url, 'restore-feed-sink').href;

export interface RestoreFeedOptions {
  /** COPY sessions: pg_restore's, then one psql session per further one. */
  sessions: number;
  split: SplitOptions;
  /** CPU priority of the feeding thread (drills: 19). */
  feederNice?: number | undefined;
}

/** Starts the feed; its run() takes pg_restore, then one psql tool per further session. */
export function startRestoreFeed(data: ArtifactData, workDir: string, { sessions, split, feederNice }: RestoreFeedOptions): Promise<ArtifactFeed> {
  // The answer once the sink has closed the side pipes: RELEASE when every side session has
  // succeeded; ABANDON when one failed, or when none ran (the feed was cancelled).
  let sidesVerdict = Promise.resolve(ABANDON);
  return startArtifactFeed(data, workDir, {
    feederNice,
    pipes: sessions,
    sink: (pipes) => ({ module: RESTORE_FEED_SINK, options: { pipes, split } satisfies RestoreSinkOptions, answer: () => sidesVerdict }),
    onToolsStarted: ([, ...sides]) => {
      sidesVerdict = Promise.all(sides).then(() => RELEASE, () => ABANDON);
    },
    // A side session that failed: its own error says why.
    toolFailureCodes: [SIDES_FAILED],
  });
}

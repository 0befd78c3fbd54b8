// The restore feed's end in the repository's feeding thread (a PlaintextSink, loaded there by
// file name): the archive goes into pg_restore's pipe with its data blocks merged
// (archive-blocks.ts) and, with several COPY sessions, the rows of big tables shared out over
// side pipes, one per psql session (restore-feed.ts runs the tools).
import { closeSync, constants, openSync } from 'node:fs';
import { type MainThreadChannel, type PlaintextSink, type SinkFactory, writeAll } from '../../repository/artifact-reader.ts';
import { CopyBlockMerger, type FeedReport, type SideStreams, type SplitOptions } from './archive-blocks.ts';

/** Asked of the main thread once the side pipes are closed; it answers RELEASE when every side session has succeeded, else ABANDON. */
export const SIDES_CLOSED = 'sides-closed';
export const RELEASE = 1;
export const ABANDON = 2;
/** The error code of a feed given up because a side tool failed (that tool's own error says why). */
export const SIDES_FAILED = 'SIDES_FAILED';

export interface RestoreSinkOptions {
  /** pg_restore's pipe, then one side pipe per further COPY session. */
  pipes: string[];
  split: SplitOptions;
}

/** The merger's input is cut to this size, so that it hands out its main and side outputs in small turns. */
const MERGER_SLICE_BYTES = 256 * 1024;

/** The side pipes, each opened (blocking until its reader has) when first written to. */
class SidePipes implements SideStreams {
  private readonly pipes: string[];
  private readonly fds: (number | undefined)[];
  private finished = false;
  constructor(pipes: string[]) {
    this.pipes = pipes;
    this.fds = pipes.map(() => undefined);
  }
  get count(): number {
    return this.pipes.length;
  }
  write(index: number, data: Buffer): void {
    this.fds[index] ??= openSync(this.pipes[index]!, 'w');
    writeAll(this.fds[index], data);
  }
  /** Closes them all; a pipe never written to is opened first, so its reader sees the end of its input. */
  finish(): void {
    this.pipes.forEach((_, index) => this.write(index, Buffer.alloc(0)));
    this.close();
    this.finished = true;
  }
  /** After a failure: closes what is open and ends the input of readers still waiting, without blocking. */
  close(): void {
    if (this.finished) return;
    this.pipes.forEach((pipe, index) => {
      let fd = this.fds[index];
      if (fd === undefined) {
        try {
          fd = openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK);
        } catch {
          return; // no reader (ENXIO): nobody waits for an end
        }
      }
      this.fds[index] = undefined;
      closeSync(fd);
    });
  }
}

/** Writes a stream, keeping its last byte back until release(). */
class HeldBackWriter {
  private readonly fd: number;
  private held: Buffer | undefined;
  constructor(fd: number) {
    this.fd = fd;
  }
  write(data: Buffer): void {
    if (data.length === 0) return;
    if (this.held) writeAll(this.fd, this.held);
    writeAll(this.fd, data.subarray(0, -1));
    this.held = Buffer.of(data[data.length - 1]!);
  }
  release(): void {
    if (this.held) writeAll(this.fd, this.held);
    this.held = undefined;
  }
}

/**
 * pg_restore's stream, merged. With side pipes, its last byte is held back: once everything
 * else is written and the side pipes are closed, the sink asks the main thread (SIDES_CLOSED)
 * and lets the byte go only on RELEASE, so that pg_restore goes on to indexes, constraints and
 * triggers only after the side sessions have committed their rows.
 */
class RestoreFeedSink implements PlaintextSink {
  private readonly fd: number;
  private readonly sides: SidePipes;
  private readonly merger: CopyBlockMerger;
  private readonly main: { write(data: Buffer): void; release(): void };
  private readonly mainThread: MainThreadChannel;

  constructor({ pipes: [pipe, ...sidePipes], split }: RestoreSinkOptions, mainThread: MainThreadChannel) {
    // Blocks until pg_restore has opened its end (the feed's releaseWriter in sources/tool.ts frees it if it never does).
    const fd = openSync(pipe!, 'w');
    this.fd = fd;
    this.sides = new SidePipes(sidePipes);
    this.merger = new CopyBlockMerger(sidePipes.length > 0 ? { sides: this.sides, options: split } : undefined);
    this.main = sidePipes.length > 0 ? new HeldBackWriter(fd) : { write: (data: Buffer) => writeAll(fd, data), release: () => undefined };
    this.mainThread = mainThread;
  }

  write(plain: Buffer): void {
    for (let at = 0; at < plain.length; at += MERGER_SLICE_BYTES) this.main.write(this.merger.push(plain.subarray(at, at + MERGER_SLICE_BYTES)));
  }

  end(): FeedReport {
    this.main.write(this.merger.end());
    if (this.sides.count > 0) {
      this.sides.finish();
      if (this.mainThread.ask(SIDES_CLOSED) !== RELEASE) throw Object.assign(new Error('a side tool failed: the main stream was not finished'), { code: SIDES_FAILED });
      this.main.release();
    }
    return this.merger.report();
  }

  close(): void {
    this.sides.close();
    closeSync(this.fd);
  }
}

export const createSink: SinkFactory = (options, mainThread) => new RestoreFeedSink(options as RestoreSinkOptions, mainThread);

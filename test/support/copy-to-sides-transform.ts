// A transform for tests of side streams: every side stream gets a copy of the whole input,
// and the main stream gets it unchanged.
import type { TransformFactory } from '../../src/repository/artifact-reader.ts';

export const createTransform: TransformFactory = (_options, sides) => ({
  push(data) {
    for (let index = 0; index < sides.count; index++) sides.write(index, data);
    return data;
  },
  end: () => Buffer.alloc(0),
});

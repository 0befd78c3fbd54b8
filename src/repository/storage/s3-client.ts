import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { BucketSpec } from './bucket.ts';

// The AWS SDK's side of bucket.ts, in a module of its own: bucket.ts imports it on a remote's
// first request, so CLI calls that never touch a remote do not pay to load the SDK.
export { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';

/** A client for one bucket as bucket.ts documents it: checksums only when required, no SDK retries, connect and idle timeouts. */
export function makeS3Client(spec: BucketSpec): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: spec.maxSockets };
  const config: S3ClientConfig = {
    region: spec.region,
    forcePathStyle: spec.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: spec.requestTimeoutMs,
      socketTimeout: spec.requestTimeoutMs,
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    }),
  };
  if (spec.endpoint !== null) config.endpoint = spec.endpoint;
  if (spec.credentials) config.credentials = { ...spec.credentials };
  return new S3Client(config);
}

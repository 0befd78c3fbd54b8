#!/usr/bin/env node
// Entry point. Kept free of static imports so that an unsupported Node fails here with a
// clear message, before any dependency (better-sqlite3, execa) fails in an obscure way.
const MINIMUM = [22, 15] as const;
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < MINIMUM[0] || (major === MINIMUM[0] && minor < MINIMUM[1])) {
  process.stderr.write(
    `stackback: Node.js ${process.versions.node} is too old; stackback needs Node.js >= ${MINIMUM.join('.')} (Node 24 LTS recommended).\n` +
      `  Run it through npm (\`npx stackback\`, \`npm start\`), which uses the Node 24 installed with the package, or install Node 24.\n`,
  );
  process.exit(2);
}
// Chunk compression and the fsyncs of chunk writes share libuv's thread pool; the default
// of 4 threads leaves the CPUs idle while writes wait on the disk. Must be set before first use.
process.env.UV_THREADPOOL_SIZE ??= '8';
// V8's compiled code of our modules, kept in .cache/ of the install folder: start-up is ~40 ms
// faster from the second run on. Not in a shared folder such as /tmp, where another user could
// plant compiled code for a CLI that root runs; whoever can write in the install folder can
// change the code itself. Node goes on without it when the folder cannot be written.
const { enableCompileCache } = await import('node:module');
const { existsSync } = await import('node:fs');
const { fileURLToPath } = await import('node:url');
// The install folder holds package.json: one level above dist/stackback.js, two above src/cli/main.ts.
let installFolder = new URL('..', import.meta.url);
if (!existsSync(new URL('package.json', installFolder))) installFolder = new URL('..', installFolder);
enableCompileCache(fileURLToPath(new URL('.cache/compile', installFolder)));
const { main } = await import('./program.ts');
process.exitCode = await main(process.argv);

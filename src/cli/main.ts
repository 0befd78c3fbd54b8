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
const { main } = await import('./program.ts');
process.exitCode = await main(process.argv);

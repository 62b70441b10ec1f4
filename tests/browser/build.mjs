#!/usr/bin/env node
// Bundles page/app.js (which imports the MCP TypeScript SDK from node_modules) for the
// browser into dist/app.js with esbuild, and copies page/index.html beside it. run.mjs
// calls build() before every run, so the page never runs a stale bundle; `npm run build`
// (node build.mjs) does the same by hand. dist/ is git-ignored (tests/browser/.gitignore).

import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));

export async function build() {
  const dist = `${here}dist`;
  await mkdir(dist, { recursive: true });
  await esbuild({
    entryPoints: [`${here}page/app.js`],
    outfile: `${dist}/app.js`,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'inline',
    logLevel: 'warning',
  });
  await copyFile(`${here}page/index.html`, `${dist}/index.html`);
  return dist;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build();
}

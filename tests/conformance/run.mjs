// Runs scenarios of the official MCP conformance suite (@modelcontextprotocol/conformance,
// pinned in package.json, installed here by `npm ci`) against an MCP server URL and prints
// ONE JSON line with every check of every scenario (tests/conformance.rs asserts on it).
//
//   node run.mjs --url URL --scenario NAME [--scenario NAME]... [--spec-version V]
//                [--out DIR] [--timeout S]
//
// --scenario NAME@V runs that scenario at spec version V (the key in the report is then
//   "NAME@V"); --spec-version V is the version of the scenarios named without one. Without
//   either the suite picks: 2025-11-25 (initialize) for scenarios introduced up to then,
//   2026-07-28 (stateless, server/discover) for newer ones.
// --out DIR keeps the suite's files (DIR/<key>/server-<scenario>-<time>/checks.json and
//   DIR/<key>/cli.log); without it they go to a temporary directory, removed at the end.
// --timeout S bounds each scenario (default 60): the suite's own per-scenario timeout is S,
//   and its process is killed S + 15 seconds after it started.
//
// This script runs on Node.js 20 or newer; the suite itself needs Node.js 22 (on 20 it
// dies importing `globSync` from 'fs'). Node 22 is, in order: $MCP_GATEKEEPER_NODE22,
// <repo>/target/node22/node_modules/node-linux-<arch>/bin/node (scripts/test.sh installs it
// with npm), or this very node when it is 22 or newer.
//
// Report: {"node":"v22…","suite":"0.2.0-alpha.12","scenarios":{"KEY":{"spec_version":V|null,
//   "checks":[{"id","name","status","description","message"?,"http"?}],"passed":n,
//   "failed":n,"warnings":n,"skipped":n,"info":n}}}
// A check's status is the suite's: SUCCESS, FAILURE, WARNING, SKIPPED or INFO. Several checks
// of one scenario can share an id (the suite's convention); their `name` tells them apart.
// `http` is the status code the check saw, when the suite recorded one.
//
// Exit status 0 whenever every scenario ran, whatever its checks say; 2 when the suite could
// not run (no Node 22, no `npm ci`, bad arguments, a crash, a timeout, a scenario that the
// suite skipped as not applicable at the spec version), with the reason on stderr.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const PACKAGE = '@modelcontextprotocol/conformance';

function die(message) {
  process.stderr.write(`run.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { url: null, scenarios: [], specVersion: null, out: null, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) die(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--url': args.url = value(); break;
      case '--scenario': args.scenarios.push(value()); break;
      case '--spec-version': args.specVersion = value(); break;
      case '--out': args.out = resolve(value()); break;
      case '--timeout': {
        const v = value();
        args.timeout = Number(v);
        if (!Number.isFinite(args.timeout) || args.timeout <= 0) die(`--timeout ${v}: seconds, a positive number`);
        break;
      }
      case '-h': case '--help':
        process.stdout.write('usage: node run.mjs --url URL --scenario NAME[@SPEC_VERSION] [--scenario ...] [--spec-version V] [--out DIR] [--timeout S]\n');
        process.exit(0);
      default: die(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (!args.url) die('--url is needed');
  if (args.scenarios.length === 0) die('at least one --scenario is needed');
  return args;
}

/** The suite's version as pinned in package.json, and its CLI as installed by npm ci. */
function suite() {
  const pinned = JSON.parse(readFileSync(join(HERE, 'package.json'), 'utf8')).dependencies[PACKAGE];
  const dir = join(HERE, 'node_modules', ...PACKAGE.split('/'));
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) die(`${PACKAGE} is not installed: run \`npm ci\` in ${HERE}`);
  const installed = JSON.parse(readFileSync(manifest, 'utf8'));
  if (installed.version !== pinned) {
    die(`${PACKAGE} ${installed.version} is installed, package.json pins ${pinned}: run \`npm ci\` in ${HERE}`);
  }
  const bin = typeof installed.bin === 'string' ? installed.bin : installed.bin.conformance;
  return { version: installed.version, cli: join(dir, bin) };
}

/** Node.js 22+ to run the suite with, and its version. */
function node22() {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const candidates = [];
  if (process.env.MCP_GATEKEEPER_NODE22) candidates.push(['$MCP_GATEKEEPER_NODE22', process.env.MCP_GATEKEEPER_NODE22]);
  candidates.push(['target/node22', join(REPO, 'target', 'node22', 'node_modules', `node-linux-${arch}`, 'bin', 'node')]);
  const tried = [];
  for (const [from, path] of candidates) {
    if (!existsSync(path)) {
      tried.push(`${from}: ${path} does not exist`);
      continue;
    }
    const probe = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30000 });
    const version = (probe.stdout || '').trim();
    const major = Number(/^v(\d+)\./.exec(version)?.[1] ?? 0);
    if (probe.status === 0 && major >= 22) return { path, version };
    tried.push(`${from}: ${path} is ${version || `not runnable (${probe.error?.message ?? probe.stderr})`}`);
  }
  if (Number(process.versions.node.split('.')[0]) >= 22) return { path: process.execPath, version: process.version };
  die(
    `no Node.js 22 for the conformance suite (it fails on ${process.version}); tried ${tried.join('; ')}, ` +
      `and this node is ${process.version}. Install it with ` +
      `\`npm install --prefix target/node22 --no-audit --no-fund node-linux-${arch}@22\` in ${REPO}, ` +
      'or set MCP_GATEKEEPER_NODE22 to a Node.js 22 binary',
  );
}

/** Runs `conformance server` for one scenario; resolves to its exit code and output. */
function runCli(node, cli, cliArgs, seconds) {
  return new Promise((done) => {
    const child = spawn(node, [cli, ...cliArgs], {
      cwd: HERE,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, (seconds + 15) * 1000);
    child.on('error', (error) => {
      clearTimeout(timer);
      done({ code: null, output: `${output}\n${error.message}`, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, output, timedOut });
    });
  });
}

/** The status code a check saw, where the suite recorded one in its details. */
function httpStatus(details) {
  if (!details || typeof details !== 'object') return undefined;
  for (const key of ['responseStatus', 'statusCode', 'httpStatus', 'status']) {
    if (Number.isInteger(details[key])) return details[key];
  }
  return undefined;
}

function summarize(checks) {
  const count = (status) => checks.filter((c) => c.status === status).length;
  return {
    checks: checks.map((c) => {
      const check = { id: c.id, name: c.name, status: c.status, description: c.description };
      if (c.errorMessage) check.message = c.errorMessage;
      const http = httpStatus(c.details);
      if (http !== undefined) check.http = http;
      return check;
    }),
    passed: count('SUCCESS'),
    failed: count('FAILURE'),
    warnings: count('WARNING'),
    skipped: count('SKIPPED'),
    info: count('INFO'),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { version, cli } = suite();
  const node = node22();
  const base = args.out ?? mkdtempSync(join(tmpdir(), 'mcp-conformance-'));
  const report = { node: node.version, suite: version, scenarios: {} };
  let failure = null;
  try {
    for (const key of args.scenarios) {
      const at = key.lastIndexOf('@');
      const name = at > 0 ? key.slice(0, at) : key;
      const specVersion = at > 0 ? key.slice(at + 1) : args.specVersion;
      const dir = join(base, key.replace(/[^A-Za-z0-9._@-]/g, '_'));
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const cliArgs = ['server', '--url', args.url, '--scenario', name, '-o', dir,
        '--timeout', String(Math.round(args.timeout * 1000))];
      if (specVersion) cliArgs.push('--spec-version', specVersion);
      const run = await runCli(node.path, cli, cliArgs, args.timeout);
      writeFileSync(join(dir, 'cli.log'), `$ ${node.path} ${cli} ${cliArgs.join(' ')}\n${run.output}`);
      // What the suite said, shortened: its first and last lines.
      const lines = run.output.trim().split('\n');
      const said = lines.length <= 30 ? lines.join('\n') : [...lines.slice(0, 10), '…', ...lines.slice(-15)].join('\n');
      if (run.timedOut) {
        failure = `scenario ${key} did not finish within ${args.timeout + 15} s; killed. Its output:\n${said}`;
        break;
      }
      // The suite exits 0 (all passed) or 1 (some check failed) after writing checks.json.
      const results = readdirSync(dir)
        .filter((d) => d.startsWith(`server-${name}-`))
        .map((d) => join(dir, d, 'checks.json'))
        .filter((f) => existsSync(f));
      if (/^SKIPPED:/m.test(run.output)) {
        failure = `the suite skipped scenario ${key}: ${/^SKIPPED:.*$/m.exec(run.output)[0]}`;
        break;
      }
      if (results.length !== 1 || (run.code !== 0 && run.code !== 1)) {
        failure = `the suite did not run scenario ${key} (exit ${run.code ?? run.signal}, ${results.length} checks.json). Its output:\n${said}`;
        break;
      }
      const checks = JSON.parse(readFileSync(results[0], 'utf8'));
      if (!Array.isArray(checks)) {
        failure = `${results[0]} is not an array of checks`;
        break;
      }
      report.scenarios[key] = { spec_version: specVersion ?? null, ...summarize(checks) };
    }
  } finally {
    if (!args.out) rmSync(base, { recursive: true, force: true });
  }
  if (failure) die(failure);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error) => die(error?.stack ?? String(error)));

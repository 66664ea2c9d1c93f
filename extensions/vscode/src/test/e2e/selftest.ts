/**
 * The extension's own end-to-end test, run inside a real VS Code (code-server) when
 * `KEEL_VSCODE_E2E=<results.json>` is set. It drives one full session through the palette
 * commands against whatever model the server is configured with (the fake model server in
 * CI) and writes what it observed to the results file, which `tests/test_vscode_e2e.py`
 * checks:
 *
 * start task → bundle proposed → review (Show Pending Diff previews the proposal in the file's
 * editor) → an error from a second, test-only diagnostics source (`keel-e2e-source`) on the
 * previewed text is forwarded as `keel/editorDiagnostics`, shows in Keel's hover and blocks
 * approval → cleared, forwarded again → DAG and review screenshots → approve → file on disk,
 * buffer clean, ledger entry present → the rest of the plan approved until the session settles.
 *
 * Screenshots are taken by the harness (scripts/e2e.mjs), which drives the browser: the test
 * writes `<results>.shot.<name>.request` and waits for `<results>.shot.<name>.done`.
 */

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as vscode from 'vscode';
import type { KeelExtensionApi } from '../../extension';
import type { BundleInfo, SessionInfo } from '../../common/protocol';
import { ServerCommand, readDiff } from '../../common/protocol';
import { fileUriToPath, sameUri } from '../../common/uris';
import type { EditorDiagnosticsParams } from '../../features/diagnostics';
import { runHunks } from './hunks';

const TASK = process.env.KEEL_VSCODE_E2E_TASK ?? 'Give hello.py a typed greet(name) that returns "Hello, <name>!"';
const SOURCE = 'keel-e2e-source';
const MESSAGE = 'E2E: injected error from a second diagnostics source';

interface Results {
  ok: boolean;
  finished: boolean;
  vscodeVersion: string;
  uiKind: string;
  steps: { name: string; ok: boolean; ms: number; detail?: unknown; error?: string }[];
  [key: string]: unknown;
}

class Recorder {
  readonly results: Results = { ok: false, finished: false, vscodeVersion: vscode.version, uiKind: vscode.env.uiKind === vscode.UIKind.Web ? 'web' : 'desktop', steps: [] };

  constructor(private readonly file: string) {}

  /** Writes atomically, so a reader never sees half a file. */
  write(): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.results, null, 2)}\n`);
    renameSync(tmp, this.file);
  }

  async step<T>(name: string, work: () => Promise<T>, detail?: (value: T) => unknown): Promise<T> {
    const start = Date.now();
    try {
      const value = await work();
      this.results.steps.push({ name, ok: true, ms: Date.now() - start, ...(detail === undefined ? {} : { detail: detail(value) }) });
      this.write();
      return value;
    } catch (error) {
      this.results.steps.push({ name, ok: false, ms: Date.now() - start, error: error instanceof Error ? error.message : String(error) });
      this.write();
      throw error;
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`);
    }
    await delay(everyMs);
  }
}

/** Asks the harness for a screenshot and waits for it (a run without a harness goes on after 30 s). */
async function screenshot(results: string, name: string): Promise<boolean> {
  const request = `${results}.shot.${name}.request`;
  const done = `${results}.shot.${name}.done`;
  await delay(1500); // let the workbench paint
  await clearOverlays(); // a toast that came meanwhile
  await delay(300);
  writeFileSync(request, name);
  try {
    await until(`screenshot ${name}`, 30_000, () => (existsSync(done) ? true : undefined), 200);
    return true;
  } catch {
    return false;
  }
}

/** Widens the side bar (the Keel view) so that node and bundle labels fit: two steps of 60 px. */
async function widenSideBar(): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.focusSideBar');
  for (let i = 0; i < 2; i++) {
    await vscode.commands.executeCommand('workbench.action.increaseViewSize');
  }
}

/** Nothing over the editor in a screenshot: no hover, no notification toasts. */
async function clearOverlays(): Promise<void> {
  for (const command of ['editor.action.hideHover', 'notifications.hideToasts']) {
    await Promise.resolve(vscode.commands.executeCommand(command)).catch(() => undefined);
  }
}

async function hoverText(uri: vscode.Uri): Promise<string> {
  const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(0, 1));
  return hovers
    .flatMap((h) => h.contents)
    .map((c) => (c instanceof vscode.MarkdownString ? c.value : typeof c === 'string' ? c : JSON.stringify(c)))
    .join('\n');
}

/** Waits for the forwarder to send `uri` with diagnostics matching `predicate`. */
function forwarded(api: KeelExtensionApi, uri: string, predicate: (p: EditorDiagnosticsParams) => boolean, timeoutMs: number): Promise<EditorDiagnosticsParams> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { sub.dispose(); reject(new Error(`no keel/editorDiagnostics for ${uri} within ${String(timeoutMs)} ms`)); }, timeoutMs);
    const sub = api.forwarder.onDidForward((params) => {
      if (sameUri(params.uri, uri) && predicate(params)) {
        clearTimeout(timer);
        sub.dispose();
        resolve(params);
      }
    });
  });
}

function hasOurs(params: EditorDiagnosticsParams): boolean {
  return params.diagnostics.some((d) => typeof d === 'object' && d !== null && (d as { source?: unknown }).source === SOURCE);
}

export async function run(api: KeelExtensionApi, resultsFile: string): Promise<void> {
  const rec = new Recorder(resultsFile);
  const r = rec.results;
  rec.write();
  if (process.env.KEEL_VSCODE_E2E_SCENARIO === 'hunks') {
    // The hunk-by-hunk review (src/test/e2e/hunks.ts), in a workspace of its own.
    try {
      await runHunks(api, {
        step: (name, work, detail) => rec.step(name, work, detail),
        until,
        screenshot: (name) => screenshot(resultsFile, name),
        results: r,
        resultsFile,
      });
      r.ok = true;
    } catch (error) {
      r.error = error instanceof Error ? `${error.message}\n${error.stack ?? ''}` : String(error);
    } finally {
      r.finished = true;
      rec.write();
    }
    return;
  }
  try {
    await rec.step('server running', async () => {
      if (!(await api.server.whenRunning(90_000))) {
        throw new Error(`the Keel server is ${api.server.state}`);
      }
      return api.server.state;
    }, (state) => ({ state }));

    const sessionId = await rec.step('start task', async () => {
      const id = await api.commands.startTask(TASK);
      if (id === undefined) {
        throw new Error('keel.startTask returned no session id');
      }
      return id;
    }, (id) => ({ sessionId: id, task: TASK }));
    r.sessionId = sessionId;

    const bundle = await rec.step('bundle proposed', () =>
      until<BundleInfo>('a pending bundle', 240_000, async () => {
        const summary = await api.session.refresh();
        return summary?.pending[0];
      }, 1000),
    (b) => b);
    r.bundle = bundle;
    // Settings reach the server only through initializationOptions / workspace/configuration.
    r.sessionEpsilon = api.session.current?.epsilon;

    const fileUri = bundle.files[0];
    if (fileUri === undefined) {
      throw new Error('the proposed bundle lists no files');
    }
    const uri = vscode.Uri.parse(fileUri);
    const diff = await rec.step('diff', async () =>
      readDiff(await api.server.executeCommand(ServerCommand.diff, { bundleId: bundle.bundleId })),
    (files) => files.map((f) => ({ uri: f.uri, created: f.created, deleted: f.deleted, unifiedDiff: f.unifiedDiff })));
    const proposed = diff.find((f) => sameUri(f.uri, fileUri))?.after;

    // Show Pending Diff: the proposal goes into the file's own editor, unsaved.
    const previewed = await rec.step('review previews the proposal in the editor', async () => {
      await api.commands.showDiff({ bundle }, false);
      return until('the proposed text in the file\'s buffer', 10_000, () => {
        const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
        return document !== undefined && document.getText() === proposed ? document : undefined;
      });
    }, (d) => ({ uri: d.uri.toString(), version: d.version, dirty: d.isDirty }));
    const editor = await vscode.window.showTextDocument(previewed, { preview: false });

    // A second, test-only diagnostics source: what Pylance or ty would be in real use.
    const collection = vscode.languages.createDiagnosticCollection(SOURCE);
    try {
      const sent = await rec.step('diagnostics forwarded', async () => {
        const waiting = forwarded(api, fileUri, hasOurs, 10_000);
        const d = new vscode.Diagnostic(new vscode.Range(0, 0, 0, 3), MESSAGE, vscode.DiagnosticSeverity.Error);
        d.source = SOURCE;
        collection.set(uri, [d]);
        return waiting;
      }, (p) => p);
      r.forwardedVersionMatches = sent.version === editor.document.version;

      r.hoverWithError = await rec.step('hover shows the forwarded error', () =>
        until('the hover to quote the forwarded diagnostic', 5_000, async () => {
          const text = await hoverText(uri);
          return text.includes(MESSAGE) ? text : undefined;
        }),
      (text) => text.slice(0, 2000)).then(() => true, () => false);

      r.approvalRefusedWithError = await rec.step('approval refused while the error stands', async () => {
        try {
          await api.commands.approve({ bundle }, false);
        } catch (error) {
          return error instanceof Error ? error.message : String(error);
        }
        throw new Error('the server approved a bundle with an error in its editor diagnostics');
      }, (message) => message).then((message) => message, () => false);
      await api.session.refresh();
      r.statusBarWithError = api.statusBar.text;

      await rec.step('screenshot dag', async () => {
        await vscode.commands.executeCommand('workbench.view.extension.keel');
        await api.dag.reveal();
        await widenSideBar();
        // The previewed file beside the view, its forwarded error underlined; nothing on top.
        await vscode.window.showTextDocument(editor.document, { preview: false, selection: new vscode.Range(0, 0, 0, 0) });
        await clearOverlays();
        return screenshot(resultsFile, 'vscode-dag');
      }, (taken) => ({ taken }));

      const cleared = await rec.step('cleared diagnostics forwarded', async () => {
        const waiting = forwarded(api, fileUri, (p) => !hasOurs(p), 10_000);
        collection.clear();
        return waiting;
      }, (p) => p);
      r.clearedDiagnostics = cleared.diagnostics.length;

      r.hoverCleared = await rec.step('hover drops the cleared error', () =>
        until('the hover to stop quoting the diagnostic', 5_000, async () => {
          const text = await hoverText(uri);
          return text.includes(MESSAGE) ? undefined : text;
        }),
      (text) => text.slice(0, 2000)).then(() => true, () => false);
    } finally {
      collection.dispose();
    }

    await rec.step('screenshot review', async () => {
      await api.commands.showDiff({ bundle }, false);
      await clearOverlays();
      return screenshot(resultsFile, 'vscode-review');
    }, (taken) => ({ taken }));
    r.statusBarBeforeApproval = api.statusBar.text;
    r.dagBeforeApproval = api.dag.roots.map((item) => ({ label: item.label, description: item.description, children: item.children.map((c) => c.label) }));

    const ledgerEntry = await rec.step('approve', async () => {
      const entry = await api.commands.approve({ bundle }, false);
      if (entry === undefined) {
        throw new Error('keel.approveBundle returned no ledger entry');
      }
      return entry;
    }, (entry) => ({ ledgerEntry: entry }));
    r.ledgerEntry = ledgerEntry;

    r.bufferCleanAfterApproval = await rec.step('buffer clean after approval', () =>
      until('the previewed buffer to be clean', 10_000, () => {
        const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
        return document === undefined || (!document.isDirty && document.getText() === proposed) ? true : undefined;
      }),
    ).then(() => true, () => false);

    r.filesOnDisk = await rec.step('files on disk', () => {
      const out = diff.map((f) => {
        const file = fileUriToPath(f.uri);
        const onDisk = file !== undefined && existsSync(file) ? readFileSync(file, 'utf8') : null;
        return { uri: f.uri, matches: f.deleted ? onDisk === null : onDisk === f.after };
      });
      if (!out.every((f) => f.matches)) {
        throw new Error(`approved content not on disk: ${JSON.stringify(out)}`);
      }
      return Promise.resolve(out);
    }, (out) => out);

    const ledger = await rec.step('ledger entry present', async () => {
      const entries = await api.commands.showLedger();
      const found = entries.find((e) => e.entry.startsWith(ledgerEntry) || ledgerEntry.startsWith(e.entry));
      if (found === undefined) {
        throw new Error(`ledger entry ${ledgerEntry} not in keel.server.ledger: ${JSON.stringify(entries)}`);
      }
      return found;
    }, (entry) => entry);
    r.ledger = ledger;

    // The rest of the plan: approve what else gets proposed until every node is committed.
    const later: string[] = [];
    r.laterLedgerEntries = later;
    const final = await rec.step('session settles', () =>
      until<SessionInfo>('every node to be committed', 240_000, async () => {
        const summary = await api.session.refresh();
        for (const next of summary?.pending ?? []) {
          const entry = await api.commands.approve({ bundle: next }, false);
          if (entry !== undefined) {
            later.push(entry);
          }
        }
        const done = summary !== undefined && summary.pending.length === 0 && summary.nodes.every((n) => n.state === 'committed');
        // ... and the final whole-workspace check has run (the server no longer says running).
        return done && summary.state !== 'running' ? summary : undefined;
      }, 1000),
    (s) => ({ state: s.state, nodes: s.nodes.map((n) => ({ id: n.id, state: n.state, energy: n.energy?.total })) })).catch(() => undefined);
    r.finalState = final?.state;
    r.progressShown = api.server.progressShown;
    r.statusBarFinal = api.statusBar.text;

    // Keel: Restart Server: a new server process picks the session up from the store.
    r.afterRestart = await rec.step('restart server', async () => {
      await vscode.commands.executeCommand('keel.restartServer');
      if (!(await api.server.whenRunning(60_000))) {
        throw new Error(`after a restart the server is ${api.server.state}`);
      }
      return until('the session after the restart', 30_000, async () => {
        const summary = await api.session.refresh();
        return summary?.sessionId === sessionId ? summary : undefined;
      }, 500);
    }, (s) => ({ sessionId: s.sessionId, state: s.state })).then((s) => ({ sessionId: s.sessionId, state: s.state }), () => undefined);
    r.statusBarAfter = api.statusBar.text;
    r.ok = true;
  } catch (error) {
    r.error = error instanceof Error ? `${error.message}\n${error.stack ?? ''}` : String(error);
  } finally {
    r.finished = true;
    rec.write();
  }
}

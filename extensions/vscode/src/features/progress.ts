/**
 * Server work-done progress (`window/workDoneProgress/create` + `$/progress`) as VS Code
 * progress notifications with a Cancel button.
 *
 * vscode-languageclient already renders server-created progress, but always with
 * `ProgressLocation.Window` (a status-bar spinner), where a Cancel button is never shown, even
 * when the server sets `cancellable: true` (checked in its `progressPart.js`, 11.0.0). Keel's
 * sessions are long and cancellable through their progress token (docs/reference/lsp.md), so this
 * feature answers `window/workDoneProgress/create` itself. It is registered after the built-in
 * features, so its request handler replaces the built-in one. Cancellable progress becomes a
 * notification with Cancel (which sends `window/workDoneProgress/cancel`), one at a time: the
 * server reports per session and per node (each cancellable, each cancel aborting the session),
 * so the first one (the session's) gets the notification and the others, like progress that
 * cannot be cancelled, go to the status bar instead of flooding the notification area.
 */

import type { ClientCapabilities, FeatureState, StaticFeature } from 'vscode-languageclient';
import {
  WorkDoneProgress,
  WorkDoneProgressCancelNotification,
  WorkDoneProgressCreateRequest,
  type ProgressToken,
  type WorkDoneProgressBegin,
  type WorkDoneProgressEnd,
  type WorkDoneProgressReport,
} from 'vscode-languageserver-protocol';
import type { Disposable } from '../common/events';

/** Where a progress is shown. */
export type ProgressPlace = 'notification' | 'window';

/** The sink a VS Code progress callback receives. */
export interface ProgressSink {
  report(value: { message?: string; increment?: number }): void;
}

/** Opens a VS Code progress; the returned promise resolves when the progress ends. */
export type OpenProgress = (
  options: { place: ProgressPlace; title: string; cancellable: boolean },
  run: (sink: ProgressSink, onCancel: (listener: () => void) => void) => Promise<void>,
) => void;

/** Where a progress goes: cancellable work gets a notification with Cancel, unless one is already shown. */
export function placeFor(begin: WorkDoneProgressBegin, notificationsShown: number): ProgressPlace {
  return begin.cancellable === true && notificationsShown === 0 ? 'notification' : 'window';
}

/**
 * One server progress token: turns begin/report/end values into one VS Code progress.
 * LSP reports absolute percentages; VS Code wants increments, so the part keeps the last one.
 */
export class ProgressPart {
  private sink: ProgressSink | undefined;
  private finish: (() => void) | undefined;
  private reported = 0;
  private ended = false;
  /** Values that arrived before VS Code called back with the sink. */
  private queued: (WorkDoneProgressBegin | WorkDoneProgressReport)[] = [];

  /** Where this part is shown, once it began. */
  place: ProgressPlace | undefined;

  constructor(
    private readonly open: OpenProgress,
    private readonly cancel: () => void,
    private readonly choose: (begin: WorkDoneProgressBegin) => ProgressPlace = (begin) => placeFor(begin, 0),
  ) {}

  /** Handles one `$/progress` value for this token. */
  handle(value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
    if (this.ended) {
      return;
    }
    switch (value.kind) {
      case 'begin':
        this.begin(value);
        break;
      case 'report':
        this.report(value);
        break;
      case 'end':
        this.done();
        break;
    }
  }

  private begin(value: WorkDoneProgressBegin): void {
    if (this.finish !== undefined || this.queued.length > 0) {
      return; // a second begin for the same token is a server bug; ignore it
    }
    this.queued.push(value);
    this.place = this.choose(value);
    this.open({ place: this.place, title: value.title, cancellable: value.cancellable === true }, (sink, onCancel) => {
      onCancel(() => {
        if (!this.ended) {
          this.cancel();
        }
      });
      return new Promise<void>((resolve) => {
        this.finish = resolve;
        this.sink = sink;
        const queued = this.queued;
        this.queued = [];
        queued.forEach((v) => { this.report(v); });
        if (this.ended) {
          resolve();
        }
      });
    });
  }

  private report(value: WorkDoneProgressBegin | WorkDoneProgressReport): void {
    if (this.sink === undefined) {
      this.queued.push(value);
      return;
    }
    const message = value.message;
    if (typeof value.percentage === 'number') {
      const percentage = Math.max(0, Math.min(100, value.percentage));
      const increment = Math.max(0, percentage - this.reported);
      this.reported += increment;
      this.sink.report({ ...(message === undefined ? {} : { message }), increment });
    } else if (message !== undefined) {
      this.sink.report({ message });
    }
  }

  /** True until the progress ended. */
  get active(): boolean {
    return !this.ended;
  }

  /** Ends the VS Code progress (on `end`, or when the client stops). */
  done(): void {
    this.ended = true;
    this.queued = [];
    this.finish?.();
    this.finish = undefined;
    this.sink = undefined;
  }
}

/** The slice of the language client the feature uses. */
export interface ProgressClient {
  onRequest(type: typeof WorkDoneProgressCreateRequest.type, handler: (params: { token: ProgressToken }) => void): Disposable;
  onProgress(type: typeof WorkDoneProgress.type, token: ProgressToken, handler: (value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd) => void): Disposable;
  sendNotification(type: typeof WorkDoneProgressCancelNotification.type, params: { token: ProgressToken }): Promise<void>;
}

/** The language-client feature; see the module comment. */
export class NotificationProgressFeature implements StaticFeature {
  private readonly parts = new Map<ProgressToken, { part: ProgressPart; listener: Disposable }>();

  constructor(
    private readonly client: ProgressClient,
    private readonly open: OpenProgress,
  ) {}

  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.window = { ...capabilities.window, workDoneProgress: true };
  }

  initialize(): void {
    this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
      this.parts.get(token)?.part.done();
      const part = new ProgressPart(
        this.open,
        () => { void this.client.sendNotification(WorkDoneProgressCancelNotification.type, { token }); },
        (begin) => placeFor(begin, [...this.parts.values()].filter((p) => p.part.place === 'notification' && p.part.active).length),
      );
      const listener = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
        part.handle(value);
        if (value.kind === 'end') {
          this.forget(token);
        }
      });
      this.parts.set(token, { part, listener });
    });
  }

  private forget(token: ProgressToken): void {
    const entry = this.parts.get(token);
    if (entry !== undefined) {
      entry.part.done();
      entry.listener.dispose();
      this.parts.delete(token);
    }
  }

  getState(): FeatureState {
    return { kind: 'static' };
  }

  clear(): void {
    [...this.parts.keys()].forEach((token) => { this.forget(token); });
  }
}

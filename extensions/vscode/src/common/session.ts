/**
 * The extension's view of the current session: the latest summary from `keel.server.status`
 * or `keel/sessionChanged`, and the stream of proposed bundles. The tree, the status bar, the
 * review provider, the diagnostics forwarder and the commands all read it, so the server is
 * asked for the status once per change rather than once per view.
 */

import type { ServerConnection } from './connection';
import { Emitter, type Disposable, type Event } from './events';
import type { Logger } from './log';
import { Notification, readBundle, readSummary, ServerCommand, type BundleInfo, type FileResolver, type SessionInfo } from './protocol';

export class SessionStore implements Disposable {
  private summary: SessionInfo | undefined;
  private readonly changed = new Emitter<SessionInfo | undefined>();
  private readonly proposed = new Emitter<BundleInfo>();
  private readonly subscriptions: Disposable[] = [];
  private refreshing: Promise<SessionInfo | undefined> | undefined;
  private refreshAgain = false;

  /** Fires after every new summary (undefined: no session). */
  readonly onDidChange: Event<SessionInfo | undefined> = this.changed.event;
  /** Fires for every `keel/bundleProposed`. */
  readonly onDidProposeBundle: Event<BundleInfo> = this.proposed.event;

  constructor(
    private readonly server: ServerConnection,
    private readonly resolver: () => FileResolver,
    private readonly log: Logger,
  ) {
    this.subscriptions.push(
      server.onNotification(Notification.sessionChanged, (params) => {
        this.read(Notification.sessionChanged, () => { this.set(readSummary(params, this.resolver())); });
      }),
      server.onNotification(Notification.bundleProposed, (params) => {
        this.read(Notification.bundleProposed, () => { this.proposed.fire(readBundle(params)); });
        // The proposal changes the pending list; the summary that follows may come later.
        void this.refresh();
      }),
      server.onDidChangeState((state) => {
        if (state === 'running') {
          void this.refresh();
        } else if (state !== 'starting') {
          this.set(undefined);
        }
      }),
    );
  }

  /** The latest summary, or undefined when there is no session (or no server). */
  get current(): SessionInfo | undefined {
    return this.summary;
  }

  /** Every file URI the session knows: node files and pending bundle files. */
  files(): string[] {
    const session = this.summary;
    if (session === undefined) {
      return [];
    }
    return [...session.nodes.flatMap((n) => n.files), ...session.pending.flatMap((b) => b.files)];
  }

  /**
   * Asks the server for the status. Calls that overlap share one request, and one more request
   * follows if a refresh was asked for while one was running, so the last answer is fresh.
   */
  refresh(): Promise<SessionInfo | undefined> {
    if (this.refreshing !== undefined) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.refreshAgain = false;
          if (this.server.state !== 'running') {
            return this.summary;
          }
          const raw = await this.server.executeCommand(ServerCommand.status, {});
          this.set(readSummary(raw, this.resolver()));
        } while (this.shouldRefreshAgain());
      } catch (error) {
        this.log.warn(`Could not read the session status: ${String(error instanceof Error ? error.message : error)}`);
      } finally {
        this.refreshing = undefined;
      }
      return this.summary;
    })();
    return this.refreshing;
  }

  /** Runs a reader; a payload that is not what the schema says is logged, not shown. */
  private read(what: string, reader: () => void): void {
    try {
      reader();
    } catch (error) {
      this.log.error(`Keel: ${what} does not match the protocol: ${String(error instanceof Error ? error.message : error)}`);
    }
  }

  /** Read through a method: the flag changes while the loop awaits. */
  private shouldRefreshAgain(): boolean {
    return this.refreshAgain;
  }

  private set(summary: SessionInfo | undefined): void {
    this.summary = summary;
    this.changed.fire(summary);
  }

  dispose(): void {
    this.subscriptions.forEach((s) => { s.dispose(); });
    this.changed.dispose();
    this.proposed.dispose();
  }
}

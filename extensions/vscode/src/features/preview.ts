/**
 * Previewing a pending bundle in the real editors of its files.
 *
 * The server scores a pending bundle's V_syn from the editor's diagnostics only when they
 * describe the exact proposed text (the forwarded report's document version is pinned to its
 * content). Diagnostics of the file as it is on disk say nothing about the proposal. So, when
 * the user reviews a bundle, the extension puts each proposed file's text into that file's
 * editor as an unsaved change: the user's language servers (Pylance, ty, rust-analyzer, …)
 * check it, the forwarder sends their findings with the preview's version, and the review diff
 * shows them inline on its right-hand side, which is the file itself.
 *
 * Nothing is written to disk by the preview (a created file is created empty, as VS Code must
 * have a file to hold the buffer). When the bundle leaves the pending list (approved: the server
 * wrote the file; rejected or regenerated: it did not), each previewed buffer that still shows
 * exactly the preview is reverted to the file on disk, so no buffer stays dirty. A buffer the user
 * edited after the preview is left alone. `keel.review.previewInEditor: false` turns this off;
 * the diff then shows the proposal from the `keel-proposed:` provider. So does auto save
 * (`files.autoSave` other than `off`, the default of VS Code for the Web and code-server): it
 * would write the unapproved proposal to disk a moment after the preview.
 */

import type { Disposable } from '../common/events';
import type { Logger } from '../common/log';
import type { DiffFile } from '../common/protocol';
import type { SessionStore } from '../common/session';
import { uriKey } from '../common/uris';

/** What the preview needs from the editor. */
export interface PreviewEditor {
  /** The text of the open document, or undefined when it is not open. */
  documentText(uri: string): string | undefined;
  /** Replaces the document's text with `text` as an unsaved edit (creating an empty file first when `create`). */
  replaceText(uri: string, text: string, create: boolean): Promise<boolean>;
  /** Reloads the document from disk, dropping unsaved changes. */
  revert(uri: string): Promise<void>;
  /** Deletes the file if it is empty on disk (a preview's placeholder for a file never approved). */
  deleteIfEmpty(uri: string): Promise<void>;
  /** The file's text on disk, or undefined when it cannot be read as text. */
  diskText(uri: string): Promise<string | undefined>;
}

/**
 * True when the review may preview proposals in the files' editors: the setting is on and
 * `files.autoSave` is `off` (with auto save, a preview would be written to disk unapproved).
 */
export function previewAllowed(previewInEditor: boolean, autoSave: unknown): boolean {
  return previewInEditor && (autoSave === undefined || autoSave === 'off');
}

interface Previewed {
  readonly bundleId: string;
  readonly uri: string;
  readonly text: string;
  readonly created: boolean;
}

export class BundlePreview implements Disposable {
  private readonly previews = new Map<string, Previewed>();
  private readonly subscription: Disposable;

  constructor(
    private readonly editor: PreviewEditor,
    session: SessionStore,
    private readonly enabled: () => boolean,
    private readonly log: Logger,
  ) {
    this.subscription = session.onDidChange((summary) => {
      const pending = new Set((summary?.pending ?? []).map((b) => b.bundleId));
      const gone = [...new Set([...this.previews.values()].map((p) => p.bundleId))].filter((id) => !pending.has(id));
      gone.forEach((id) => { void this.settle(id); });
    });
  }

  /** True when the preview is on: Show Pending Diff then diffs against the real file. */
  get active(): boolean {
    return this.enabled();
  }

  /** Puts the bundle's proposed text into the editors of its files; returns the files previewed. */
  async show(bundleId: string, files: readonly DiffFile[]): Promise<string[]> {
    if (!this.enabled()) {
      return [];
    }
    const shown: string[] = [];
    for (const file of files) {
      if (file.deleted) {
        continue; // nothing to check in a deleted file
      }
      const key = uriKey(file.uri);
      const current = this.editor.documentText(file.uri);
      if (current === file.after) {
        this.previews.set(key, { bundleId, uri: file.uri, text: file.after, created: this.previews.get(key)?.created ?? false });
        shown.push(file.uri);
        continue;
      }
      const previous = this.previews.get(key);
      if (current !== undefined && current !== file.before && current !== previous?.text) {
        // The user has unsaved edits of their own: never overwrite them.
        this.log.info(`Not previewing ${file.uri}: it has unsaved edits`);
        continue;
      }
      if (await this.editor.replaceText(file.uri, file.after, file.created)) {
        this.previews.set(key, { bundleId, uri: file.uri, text: file.after, created: file.created });
        shown.push(file.uri);
      } else {
        this.log.warn(`Could not preview ${file.uri}`);
      }
    }
    return shown;
  }

  /** True when `uri` currently shows a preview. */
  isPreviewed(uri: string): boolean {
    return this.previews.has(uriKey(uri));
  }

  /**
   * The bundle (or, with `files`, those files of it) was decided or replaced: revert its
   * previewed buffers that still show exactly the preview, so they show the file on disk (the
   * approved text, or the old one).
   */
  async settle(bundleId: string, files?: readonly string[]): Promise<void> {
    const only = files === undefined ? undefined : new Set(files.map(uriKey));
    for (const [key, preview] of [...this.previews.entries()]) {
      if (preview.bundleId !== bundleId || (only !== undefined && !only.has(key))) {
        continue;
      }
      this.previews.delete(key);
      if (this.editor.documentText(preview.uri) === preview.text) {
        try {
          await this.editor.revert(preview.uri);
          if (preview.created) {
            await this.editor.deleteIfEmpty(preview.uri);
          }
        } catch (error) {
          this.log.warn(`Could not revert the preview of ${preview.uri}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }
  }

  /**
   * After an approval: each open buffer of `uris` that holds exactly what is now on disk (the
   * server applied the approved text to it and committed the file) is reverted, which leaves
   * it clean. A buffer with other text is left alone.
   */
  async settleApplied(uris: readonly string[]): Promise<void> {
    for (const uri of uris) {
      const text = this.editor.documentText(uri);
      if (text === undefined || this.previews.has(uriKey(uri))) {
        continue;
      }
      try {
        if ((await this.editor.diskText(uri)) === text) {
          await this.editor.revert(uri);
        }
      } catch (error) {
        this.log.warn(`Could not compare ${uri} with the disk: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  dispose(): void {
    this.subscription.dispose();
  }
}

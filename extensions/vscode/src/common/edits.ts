/**
 * The one-approval rule for applying bundles.
 *
 * After the user runs Approve, the server applies the bundle with `workspace/applyEdit`, and
 * (docs/reference/lsp.md) marks its change annotations `needsConfirmation` when the client supports
 * annotations. VS Code answers such an edit with its Refactor Preview, a second confirmation of
 * a decision the user just made, and one that blocks the approve request until it is dismissed.
 * While an approval the user started is in flight, the extension therefore clears those flags
 * (unless `keel.review.confirmEdits` asks for the preview). Edits that arrive at any other time
 * are left as the server sent them.
 */

/** Counts approvals in flight: from the palette, the tree, the diff title bar, code actions and lenses. */
export class ApprovalTracker {
  private inFlight = 0;

  /** True while at least one approval is running. */
  get active(): boolean {
    return this.inFlight > 0;
  }

  /** Runs `work` as an approval. */
  async track<T>(work: () => PromiseLike<T> | T): Promise<T> {
    this.inFlight += 1;
    try {
      return await work();
    } finally {
      this.inFlight -= 1;
    }
  }
}

interface AnnotationLike {
  needsConfirmation?: boolean;
}

interface EditParamsLike {
  edit: { changeAnnotations?: Record<string, AnnotationLike> };
}

/** A copy of the `workspace/applyEdit` params with every `needsConfirmation` cleared. */
export function withoutConfirmation<P extends EditParamsLike>(params: P): P {
  const annotations = params.edit.changeAnnotations;
  if (annotations === undefined) {
    return params;
  }
  const cleared: Record<string, AnnotationLike> = {};
  for (const [id, annotation] of Object.entries<AnnotationLike>(annotations)) {
    cleared[id] = { ...annotation, needsConfirmation: false };
  }
  return { ...params, edit: { ...params.edit, changeAnnotations: cleared } };
}

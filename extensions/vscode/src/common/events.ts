/**
 * A minimal event emitter with the same shape as `vscode.Event`, so that logic modules can
 * publish changes without importing `vscode` at run time (and so stay testable under plain Node).
 */

/** Something that can be released; structurally the same as `vscode.Disposable`. */
export interface Disposable {
  dispose(): void;
}

/** A subscribe function, structurally compatible with `vscode.Event<T>`. */
export type Event<T> = (listener: (value: T) => void) => Disposable;

/** Fires values to its listeners in subscription order; a throwing listener does not stop the rest. */
export class Emitter<T> implements Disposable {
  private listeners: ((value: T) => void)[] = [];

  /** Subscribe; the returned disposable unsubscribes. */
  readonly event: Event<T> = (listener) => {
    this.listeners.push(listener);
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((l) => l !== listener);
      },
    };
  };

  fire(value: T): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(value);
      } catch (error) {
        console.error('Keel: event listener failed', error);
      }
    }
  }

  dispose(): void {
    this.listeners = [];
  }
}

/**
 * A minimal `vscode` module for the one test that runs vscode-languageclient's own code
 * (configuration.test.ts): only what that code touches. Importing this module installs it for
 * the test process (each test file runs in its own process), so everything else still fails
 * loudly when it imports `vscode` at run time.
 */

import Module from 'node:module';
import type * as vscode from 'vscode';

type Listener = (event: vscode.ConfigurationChangeEvent) => void;

const listeners = new Set<Listener>();

/** Fires `workspace.onDidChangeConfiguration` as VS Code does when `key` changed. */
export function changeSetting(key: string): void {
  const event: vscode.ConfigurationChangeEvent = {
    // VS Code: a section is affected when it is the key or a prefix of it (at a dot).
    affectsConfiguration: (section: string) => key === section || key.startsWith(`${section}.`),
  };
  listeners.forEach((l) => { l(event); });
}

const fake = {
  CancellationError: class CancellationError extends Error {},
  EventEmitter: class EventEmitter {
    event = (): { dispose(): void } => ({ dispose: () => undefined });
    fire(): void {}
    dispose(): void {}
  },
  Disposable: class Disposable {
    constructor(private readonly callOnDispose: () => void) {}
    dispose(): void { this.callOnDispose(); }
  },
  workspace: {
    onDidChangeConfiguration: (listener: Listener) => {
      listeners.add(listener);
      return { dispose: () => { listeners.delete(listener); } };
    },
    getConfiguration: () => ({ get: () => undefined }),
  },
};

interface Loader { _load(request: string, parent: unknown, isMain: boolean): unknown }
const loader = Module as unknown as Loader;
const load = loader._load.bind(loader);
loader._load = (request, parent, isMain) => (request === 'vscode' ? fake : load(request, parent, isMain));

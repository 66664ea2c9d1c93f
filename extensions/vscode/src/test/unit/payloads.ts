/**
 * Payload fixtures for the unit tests, typed by the generated `payloads.ts`: each builder
 * returns exactly what the server sends, with every key, so a test cannot feed a reader a
 * shape the server never produces.
 */

import type * as P from '../../common/payloads';

/** An energy of total `v` (all of it V_syn), stable below `epsilon`. */
export function energy(v = 0, epsilon = 0.1): P.Energy {
  return { v, v_syn: v, v_str: 0, v_log: 0, v_boot: 0, v_sheaf: 0, epsilon, stable: v < epsilon };
}

export function bundle(b: Partial<P.BundleProposed> & { readonly bundleId: string }): P.BundleProposed {
  return { nodeId: 'node-1', title: b.bundleId, files: [], energy: energy(), sessionId: 's', ...b };
}

export function node(n: Partial<P.SummaryNode> & { readonly id: string }): P.SummaryNode {
  return { title: n.id, kind: 'code', state: 'queued', owns: [], dependsOn: [], attempts: 0, energy: null, ledgerEntry: null, ...n };
}

export function summary(s: Partial<P.SessionSummary> = {}): P.SessionSummary {
  return {
    sessionId: 's',
    task: 'a task',
    running: true,
    outcome: null,
    reason: '',
    mode: 'cautious',
    epsilon: 0.1,
    nodes: [],
    pendingBundles: [],
    sessions: [],
    ...s,
  };
}

export function ledgerEntry(e: Partial<P.LedgerEntry> & { readonly sha: string }): P.LedgerEntry {
  return {
    title: 'keel: a node',
    sessionId: 's',
    nodeId: 'node-1',
    bundle: 'b',
    energy: 'V=0.000',
    approvedBy: 'user',
    timestamp: '2026-12-04T00:00:00Z',
    files: [],
    reverts: null,
    ...e,
  };
}

export function diffFile(f: Partial<P.DiffFile> & { readonly uri: string }): P.DiffFile {
  return { path: f.uri.replace(/^file:\/\/\/work\/ws\//, ''), change: 'modify', before: '', after: '', unifiedDiff: '', hunks: [], ...f };
}

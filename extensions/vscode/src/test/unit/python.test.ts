import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expandPath, installCommand, resolveServer, scriptBesidePython, type ResolverDeps } from '../../common/python';

function deps(over: Partial<ResolverDeps> & { executables?: string[]; importable?: string[]; onPath?: Record<string, string> }): ResolverDeps {
  const executables = new Set(over.executables ?? []);
  return {
    serverPath: undefined,
    pythonSetting: undefined,
    activeInterpreter: () => Promise.resolve(undefined),
    isExecutable: (file) => Promise.resolve(executables.has(file)),
    canImportKeel: (python) => Promise.resolve((over.importable ?? []).includes(python)),
    which: (name) => Promise.resolve(over.onPath?.[name]),
    platform: 'linux',
    ...over,
  };
}

describe('finding the server', () => {
  it('prefers keel.server.path', async () => {
    const r = await resolveServer(deps({ serverPath: '/opt/keel', executables: ['/opt/keel', '/venv/bin/keel'], pythonSetting: '/venv/bin/python' }));
    assert.equal(r.kind, 'found');
    assert.deepEqual(r.kind === 'found' && r.server, { command: '/opt/keel', args: ['serve', '--stdio'], origin: 'setting' });
  });

  it('says so when keel.server.path is wrong instead of silently using another keel', async () => {
    const r = await resolveServer(deps({ serverPath: '/nope', onPath: { keel: '/usr/bin/keel' } }));
    assert.equal(r.kind, 'missing');
    assert.match(r.kind === 'missing' ? r.reason : '', /keel.server.path/);
  });

  it('uses the keel script beside keel.python, then the Python extension interpreter', async () => {
    const fromSetting = await resolveServer(deps({ pythonSetting: '/venv/bin/python', executables: ['/venv/bin/keel'] }));
    assert.equal(fromSetting.kind === 'found' && fromSetting.server.command, '/venv/bin/keel');
    const fromExtension = await resolveServer(deps({ activeInterpreter: () => Promise.resolve('/env2/bin/python3'), executables: ['/env2/bin/keel'] }));
    assert.equal(fromExtension.kind === 'found' && fromExtension.server.origin, 'python');
  });

  it('falls back to python -m keel when the package is importable but its script is elsewhere', async () => {
    const r = await resolveServer(deps({ pythonSetting: '/usr/bin/python3', importable: ['/usr/bin/python3'] }));
    assert.deepEqual(r.kind === 'found' && r.server, { command: '/usr/bin/python3', args: ['-m', 'keel', 'serve', '--stdio'], origin: 'python -m' });
  });

  it('then keel on PATH, and else a missing result with an install command for the selected Python', async () => {
    const onPath = await resolveServer(deps({ onPath: { keel: '/home/u/.local/bin/keel' } }));
    assert.equal(onPath.kind === 'found' && onPath.server.origin, 'path');
    const missing = await resolveServer(deps({ pythonSetting: '/venv/bin/python' }));
    assert.equal(missing.kind, 'missing');
    assert.equal(missing.kind === 'missing' && missing.installCommand, '"/venv/bin/python" -m pip install keel');
    assert.equal(installCommand(undefined), 'pip install keel');
  });

  it('knows where pip puts scripts', () => {
    assert.equal(scriptBesidePython('/venv/bin/python', 'linux'), '/venv/bin/keel');
    assert.match(scriptBesidePython('C:\\venv\\Scripts\\python.exe', 'win32'), /keel\.exe$/);
  });

  it('expands ~ and variables in path settings', () => {
    assert.equal(expandPath('~/bin/keel', '/home/u', undefined), '/home/u/bin/keel');
    assert.equal(expandPath('${workspaceFolder}/.venv/bin/keel', '/home/u', '/ws'), '/ws/.venv/bin/keel');
    assert.equal(expandPath('${userHome}/k', '/home/u', undefined), '/home/u/k');
    assert.equal(expandPath('  ', '/home/u', undefined), undefined);
  });
});

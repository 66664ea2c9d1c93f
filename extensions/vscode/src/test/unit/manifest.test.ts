import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from '../../features/commands';

interface MenuEntry { command: string; when?: string; group?: string }
interface Manifest {
  contributes: {
    commands: { command: string; title: string }[];
    menus: Record<string, MenuEntry[]>;
    configuration: { properties: Record<string, unknown> };
  };
}

// The test bundles run from out/test/unit/.
const manifest = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as Manifest;

describe('package.json contributions', () => {
  it('contributes exactly the commands the extension registers', () => {
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual(contributed, Object.values(Command).sort());
  });

  it('puts Reject This File wherever Approve This File is: the diff and file editors\' title bar, the tree\'s file items', () => {
    for (const menu of ['editor/title', 'view/item/context', 'commandPalette']) {
      const entries = manifest.contributes.menus[menu] ?? [];
      const approve = entries.find((e) => e.command === Command.approveFile);
      const reject = entries.find((e) => e.command === Command.rejectFile);
      assert.ok(approve !== undefined && reject !== undefined, `${menu} has both`);
      assert.equal(reject.when, approve.when, menu);
    }
  });
});

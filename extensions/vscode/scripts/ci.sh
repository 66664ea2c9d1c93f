#!/usr/bin/env bash
# The VS Code extension's checks, as CI runs them: install (npm ci), type-check (tsc --noEmit),
# lint (eslint --max-warnings=0), unit tests (node --test, no VS Code needed) and package
# (vsce package -> dist/keel.vsix). Needs Node >= 20 and npm; installs everything else itself.
#
#   scripts/ci.sh          the checks above (about a minute after the first install)
#   scripts/ci.sh --e2e    then also the end-to-end test in code-server + headless Chromium
#                          (pytest extensions/vscode/tests; skipped while `keel serve` is missing)
set -euo pipefail
cd "$(dirname "$0")/.."

e2e=false
for arg in "$@"; do
  case "$arg" in
    --e2e) e2e=true ;;
    *) echo "usage: $0 [--e2e]" >&2; exit 2 ;;
  esac
done

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "ci.sh: Node >= 20 is needed (found $(node --version))" >&2
  exit 2
fi

# npm ci only when the lock file changed since the last install: a rerun stays fast.
stamp=node_modules/.keel-lock.sha256
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$stamp"
fi

bin=node_modules/.bin
echo "== tsc --noEmit"
"$bin/tsc" --noEmit -p .
echo "== eslint"
"$bin/eslint" --max-warnings=0 .
echo "== unit tests"
rm -rf out
node scripts/build.mjs --tests
node --test --test-reporter=spec out/test/unit/
echo "== vsce package"
rm -f dist/keel.vsix
node scripts/build.mjs --production
# The shipped README is dist/README.md: its screenshots are copied into media/ and linked there.
"$bin/vsce" package --no-dependencies --allow-missing-repository --no-rewrite-relative-links --readme-path dist/README.md --out dist/keel.vsix
node scripts/check-vsix.mjs dist/keel.vsix
ls -l dist/keel.vsix

if [ "$e2e" = true ]; then
  echo "== e2e (code-server + headless chromium)"
  python=${PYTHON:-../../.venv/bin/python}
  [ -x "$python" ] || python=python3
  "$python" -m pytest -q -rs tests/test_vscode_e2e.py
fi

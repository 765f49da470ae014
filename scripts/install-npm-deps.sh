#!/usr/bin/env bash
# Installs the npm packages of the end-to-end test clients (every
# tests/e2e/*/package.json), only where node_modules is missing or older than
# the lock file. Quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "npm not found: end-to-end tests that need it will be skipped"; exit 0; }
for pkg in tests/e2e/*/package.json; do
    [[ -f "$pkg" ]] || continue
    dir=$(dirname "$pkg")
    stamp="$dir/node_modules/.moeserve-installed"
    if [[ ! -f "$stamp" || "$pkg" -nt "$stamp" || ( -f "$dir/package-lock.json" && "$dir/package-lock.json" -nt "$stamp" ) ]]; then
        echo "installing npm packages in $dir"
        if [[ -f "$dir/package-lock.json" ]]; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        else
            (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
        fi
        touch "$stamp"
    fi
done

#!/usr/bin/env bash
# README's main-job command: set up (if needed) and run `momu demo` on the bundled default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/momu demo "$@"

#!/usr/bin/env bash
# The main job: set up, show what this kernel offers, and demonstrate write
# tracking of a running process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== hintmig features"
build/hintmig features
echo "== hintmig track-demo (tracks a child process's writes with userfaultfd-wp)"
build/hintmig track-demo --seconds 2

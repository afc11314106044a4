#!/bin/sh
# Run a libFuzzer target briefly from its seed corpus, in a scratch work
# directory (new inputs are not kept). Crash reproducers land in ARTIFACTS.
# usage: run_fuzz.sh FUZZER SEED_DIR ARTIFACT_DIR SECONDS MAX_RUNS
set -eu
fuzzer=$1 seeds=$2 artifacts=$3 secs=$4 runs=$5
mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/hm-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# libFuzzer exits 77 on a crash by default: meson's "skip". Not here.
"$fuzzer" -max_total_time="$secs" -runs="$runs" -timeout=10 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$work" "$seeds"

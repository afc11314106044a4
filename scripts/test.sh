#!/usr/bin/env bash
# The whole test suite: set up, build normal and ASan+UBSan trees, run every
# test in the first and the unit and engine tests in the second.
# HINTMIG_TEST_STRICT=1 turns any skip into a failure (CI sets it).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --asan || { echo "setup failed"; exit 1; }

rc=0
meson test -C build --print-errorlogs --num-processes 2 || rc=1
meson test -C build-asan --print-errorlogs --num-processes 2 \
  --suite unit --suite migration || rc=1

# One closing line over both runs: "N passed, N failed, N skipped".
python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
import json, sys
ok = bad = skip = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            bad += 1
print(f"{ok} passed, {bad} failed, {skip} skipped")
PY
exit $rc

#!/usr/bin/env bash
# The main job: set up, show what this kernel offers, track a running
# process's writes, migrate a running synthetic guest with free page hints
# (verified bit for bit), migrate a running QEMU guest with hintmig, and
# run the benchmark's quick preset.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== hintmig features"
build/hintmig features

echo "== hintmig track-demo: userfaultfd-wp tracking of a child process's writes"
build/hintmig track-demo --seconds 2

echo "== hintmig send/recv: a 1 GiB synthetic guest, 75% free, hints on, verified"
sock=$(mktemp -u /tmp/hintmig-demo.XXXXXX.sock)
build/hintmig recv --listen "unix:$sock" --quiet &
recv_pid=$!
trap 'kill $recv_pid 2>/dev/null || true; rm -f "$sock"' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
build/hintmig send --to "unix:$sock" --guest-ram 1G --used 25% \
  --dirty-rate 5000 --hints isolated --verify --json build/demo-send.json
wait $recv_pid
echo "summary: build/demo-send.json"

echo "== hintmig send/recv --qemu: a running 2 GiB QEMU guest (Debian's kernel, a"
echo "   checksumming workload, 1.5 GiB of freed garbage) migrated by hintmig with free"
echo "   page hints from hintmig-agent in the guest (its kernel module reading the free"
echo "   lists), QEMU moving only the device state; RAM files compared page by page,"
echo "   the destination resumed and its workload verifying"
HM_QEMU_VERBOSE=1 build/tests/migration/qemu/qemu-migtest /hintmig/qemu/precopy/unix/agent

echo "== hintmig migrate: the same guest in a libvirt domain, migrated between two"
echo "   libvirtd 9.0 on this machine by hintmig (hints from hintmig-agent) and by"
echo "   plain virsh migrate, each hintmig migration compared page by page at the"
echo "   cut-over (docs/libvirt.md)"
meson test -C build virsh-migrate --print-errorlogs -v

echo "== hintmig-bench --preset quick (its tls group: plain vs TLS side by side,"
echo "   with test certificates made here)"
rm -rf build/bench-pki
tests/migration/engine/tls_certs.sh build/bench-pki
build/hintmig-bench --preset quick --json build/bench-quick.json \
  --plot build/bench-quick.svg --tls-dir build/bench-pki/good

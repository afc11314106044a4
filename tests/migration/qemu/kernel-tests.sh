#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Test programs run inside a guest booted on Debian's own kernel (6.1 on
# bookworm: no WP_ASYNC, no PAGEMAP_SCAN, no WP_UNPOPULATED), so that the
# sync tracker and the destination's UFFDIO_COPY fill are exercised on the
# kernel bookworm users run, not only on the host's. The programs are the
# unit tests as built (mkguest.sh copies the shared libraries they use);
# each one's output is shown; any failure fails this test, and so does any
# skip but one: the tracker test skipping async mode because the guest's
# kernel lacks WP_ASYNC or PAGEMAP_SCAN after its sync mode passed (6.1
# has neither; that is what this test is for).
#
#   kernel-tests.sh QEMU MKGUEST CACHE INIT_SCRIPT PROGRAM...
#
# HM_QEMU_ACCEL=kvm to use KVM (default tcg: Linux guests need it where
# /dev/kvm is a paravirtual one), HM_KERNEL_TESTS_TIMEOUT seconds (900).
set -u

die() { echo "kernel-tests: $*" >&2; exit 1; }
[ $# -ge 5 ] || die "usage: kernel-tests.sh QEMU MKGUEST CACHE INIT PROGRAM..."
qemu=$1 mkguest=$2 cache=$3 init=$4
shift 4
for p in "$@"; do
	[ -x "$p" ] || die "no program $p"
done

guest=$(HM_GUEST_EXTRA="$*" sh "$mkguest" "$init" "$cache") ||
	die "cannot build the guest (mkguest.sh)"
tmp=$(mktemp -d /tmp/hm-kernel-tests.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/serial.log
accel=${HM_QEMU_ACCEL:-tcg}
cpu=qemu64
[ "$accel" = kvm ] && cpu=host
echo "kernel-tests: $(cat "$guest/info" | head -n 1), accel $accel"

timeout "${HM_KERNEL_TESTS_TIMEOUT:-900}" "$qemu" -machine pc -accel "$accel" \
	-cpu "$cpu" -smp 2 -m 1536 -nodefaults -no-user-config \
	-display none -no-reboot \
	-kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 quiet" \
	-serial "file:$log" >"$tmp/qemu.out" 2>&1
qrc=$?
# the guest's console, without the kernel's boot noise before our lines
sed -n '/^HMK: /,$p' "$log" | tr -d '\r'
[ $qrc -eq 0 ] || {
	cat "$tmp/qemu.out" >&2
	tail -n 30 "$log" >&2
	die "QEMU exited $qrc (124: timed out)"
}
grep -q '^HMK-DONE' "$log" || die "the guest did not finish its tests"
grep -q '^HMK: kernel ' "$log" || die "no kernel line from the guest"
fail=0 n=0
clean=$tmp/console.log
tr -d '\r' <"$log" >"$clean"
grep -q "^HMK-START " "$clean" || die "nothing ran"
for p in "$@"; do
	grep -Eq "/bin/${p##*/}( |\$)" "$init" ||
		die "${p##*/} is not run by $init"
done
for name in $(sed -n 's/^HMK-START \(.*\)$/\1/p' "$clean"); do
	rc=$(sed -n "s/^HMK-RESULT $name \([0-9]*\)$/\1/p" "$clean")
	n=$((n + 1))
	case "$rc" in
	0) echo "kernel-tests: $name: ok" ;;
	77)
		if [ "$name" = wp_tracker ] && grep -q "^SKIP: async mode not tested: kernel .* lacks WP_ASYNC or PAGEMAP_SCAN (sync mode passed)$" "$clean"; then
			echo "kernel-tests: $name: ok (sync mode; this kernel has no async mode)"
		else
			echo "kernel-tests: $name: skipped"; fail=1
		fi ;;
	'') echo "kernel-tests: $name: no result"; fail=1 ;;
	*) echo "kernel-tests: $name: exit $rc"; fail=1 ;;
	esac
done
[ $fail = 0 ] || die "failures on $(sed -n 's/^HMK: kernel \([^,]*\).*/\1/p' "$clean")"
echo "kernel-tests: $n runs passed on $(sed -n 's/^HMK: kernel \([^,]*\).*/\1/p' "$clean")"

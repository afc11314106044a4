#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A destination whose RAM file is on hugetlbfs (2 MiB pages), as a huge
# page VMM's: with enough free huge pages the synthetic guest migrates
# into it, verified page by page; with too few, the receiver refuses in
# HELLO_ACK before anything is written, with the numbers, and the sender
# says why. The pool is grown for the test and given back.
#   hugetlb_dest_test.sh HINTMIG
set -uo pipefail
HM=$1
skip() {
	echo "SKIP: $*"
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && { echo "strict: this is a failure"; exit 1; }
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (a hugetlbfs mount, vm.nr_hugepages)"
[ -w /proc/sys/vm/nr_hugepages ] || skip "no writable vm.nr_hugepages"
grep -qw hugetlbfs /proc/filesystems || skip "the kernel has no hugetlbfs"
TMP=$(mktemp -d /tmp/hm-hugedst.XXXXXX)
was=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
	kill $(jobs -p) 2>/dev/null
	rm -f "$TMP/huge/ram"
	umount "$TMP/huge" 2>/dev/null
	echo "$was" > /proc/sys/vm/nr_hugepages
	rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
mkdir "$TMP/huge"
mount -t hugetlbfs -o pagesize=2M hintmig-test "$TMP/huge" || { echo "FAIL cannot mount hugetlbfs"; exit 1; }

pool_free() { awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo; }
run() { # FREE: a 64 MiB guest into a hugetlbfs RAM file, FREE huge
	# pages free in the pool (whatever others hold: in use stays)
	local total free
	rm -f "$TMP/huge/ram"
	# pages another test gave back may still be surplus, on their way
	for _ in $(seq 1 50); do
		[ "$(awk '/^HugePages_Surp:/ { print $2 }' /proc/meminfo)" = 0 ] && break
		sleep 0.1
	done
	total=$(cat /proc/sys/vm/nr_hugepages); free=$(pool_free)
	echo $((total - free + $1)) > /proc/sys/vm/nr_hugepages
	[ "$(pool_free)" = "$1" ] || { echo "FAIL the pool has $(pool_free) free huge pages, not $1"; exit 1; }
	rm -f "$TMP/huge/ram" "$TMP/sock"
	"$HM" recv --listen "unix:$TMP/sock" --ram-file "$TMP/huge/ram" --verbose \
		> "$TMP/recv.out" 2> "$TMP/recv.log" &
	rpid=$!
	for _ in $(seq 1 100); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
	"$HM" send --to "unix:$TMP/sock" --guest-ram 64M --used 50% --verify > "$TMP/send.out" 2>&1
	src=$?
	wait $rpid
	rrc=$?
}

run 40
[ $src = 0 ] && [ $rrc = 0 ] || { cat "$TMP/send.out" "$TMP/recv.log"; fail "enough huge pages: send $src, recv $rrc"; }
grep -q "^verify: [1-9][0-9]* pages checked, 0 mismatches$" "$TMP/send.out" || fail "enough huge pages: no clean verification"
grep -q "RAM on hugetlbfs (2048 KiB pages)" "$TMP/recv.log" || fail "the receiver did not see hugetlbfs"
echo "ok into hugetlbfs: $(grep '^verify:' "$TMP/send.out"); $(grep -o 'RAM on hugetlbfs[^;]*' "$TMP/recv.log")"

run 8
[ $src = 3 ] || fail "too few huge pages: send exit $src, want 3"
grep -q "not enough huge pages: the guest's RAM needs 32 of 2048 KiB" "$TMP/recv.log" ||
	{ cat "$TMP/recv.log"; fail "too few huge pages: the receiver did not give the numbers"; }
grep -q "not enough free huge pages" "$TMP/send.out" || fail "too few huge pages: the sender did not say why ($(tail -3 "$TMP/send.out"))"
[ "$(stat -c %b "$TMP/huge/ram" 2>/dev/null || echo 0)" = 0 ] || fail "too few huge pages: pages were written"
echo "ok refused: $(grep -o 'not enough huge pages.*' "$TMP/recv.log" | head -1)"
[ $fails = 0 ] || exit 1
echo "PASS hugetlb destination"

#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# End-to-end test of the command-line programs as separate processes:
# `hintmig recv` in the background, `hintmig send` against it, with
# --verify and --json, over a UNIX socket or TCP loopback.
#
# usage: cli_test.sh HINTMIG unix|tcp|usage [send options...]
set -u

HM=$1
SCHEME=$2
shift 2

TMP=$(mktemp -d /tmp/hm-cli.XXXXXX)
RECV_PID=
POOL_WAS=
cleanup() {
	if [ -n "$RECV_PID" ]; then
		kill "$RECV_PID" 2>/dev/null
		wait "$RECV_PID" 2>/dev/null
	fi
	[ -n "$POOL_WAS" ] && echo "$POOL_WAS" > /proc/sys/vm/nr_hugepages
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	for f in "$TMP"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}

# HM_HUGEPAGES=N: the hugetlb pool grown by N 2 MiB pages for the guest
# (--hugetlb), restored at exit
if [ -n "${HM_HUGEPAGES:-}" ]; then
	POOL_WAS=$(cat /proc/sys/vm/nr_hugepages)
	echo $((POOL_WAS + HM_HUGEPAGES)) > /proc/sys/vm/nr_hugepages 2>/dev/null ||
		fail "cannot grow the hugetlb pool (root needed)"
fi

if [ "$SCHEME" = usage ]; then
	# bad command lines: exit status 2 and a message, nothing started
	"$HM" send >/dev/null 2>&1; [ $? -eq 2 ] || fail "send without --to"
	"$HM" send --to tcp:127.0.0.1:1 --guest-ram 2X >/dev/null 2>&1
	[ $? -eq 2 ] || fail "bad size accepted"
	"$HM" send --to tcp:127.0.0.1:1 --used 150% >/dev/null 2>&1
	[ $? -eq 2 ] || fail "bad percentage accepted"
	"$HM" send --to foo:bar >/dev/null 2>&1
	[ $? -eq 2 ] || fail "bad address accepted"
	"$HM" send --to tcp:127.0.0.1:1 --hints maybe >/dev/null 2>&1
	[ $? -eq 2 ] || fail "bad --hints accepted"
	"$HM" recv >/dev/null 2>&1; [ $? -eq 2 ] || fail "recv without --listen"
	"$HM" recv --listen "unix:$TMP/x.sock" --fill maybe >/dev/null 2>&1
	[ $? -eq 2 ] || fail "bad --fill accepted"
	"$HM" send --help >/dev/null 2>&1 || fail "send --help"
	# nobody listening: a clear migration failure (3), the guest stopped
	"$HM" send --to "unix:$TMP/nobody.sock" --guest-ram 16M --quiet \
		>/dev/null 2>"$TMP/nobody.log"
	[ $? -eq 3 ] || fail "send to nobody: expected exit 3"
	grep -q "migration failed" "$TMP/nobody.log" || fail "no error message"
	echo "PASS usage"
	exit 0
fi

# TCP: both ends hold the migration's key (R17)
KEYOPT=
if [ "$SCHEME" != unix ]; then
	head -c 32 /dev/urandom > "$TMP/key" && chmod 600 "$TMP/key"
	KEYOPT="--key-file $TMP/key"
fi

start_recv() {
	: >"$TMP/recv.log"
	"$HM" recv --listen "$ADDR" --fill "${RECV_FILL:-auto}" $KEYOPT \
		>"$TMP/recv.out" 2>"$TMP/recv.log" &
	RECV_PID=$!
	# wait until it listens (or died)
	i=0
	while [ $i -lt 100 ]; do
		if ! kill -0 "$RECV_PID" 2>/dev/null; then
			wait "$RECV_PID"
			RECV_PID=
			return 1
		fi
		if [ "$SCHEME" = unix ]; then
			[ -S "$SOCK" ] && return 0
		else
			# the port accepts connections: probe with the shell
			# only where /proc/net/tcp tells us it is listening
			hexport=$(printf '%04X' "$PORT")
			grep -q ":$hexport 00000000:0000 0A" /proc/net/tcp \
				2>/dev/null && return 0
		fi
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}

tries=0
while :; do
	if [ "$SCHEME" = unix ]; then
		SOCK=$TMP/mig.sock
		ADDR=unix:$SOCK
	else
		PORT=$(( 20000 + ($$ * 7 + tries * 131) % 30000 ))
		ADDR=tcp:127.0.0.1:$PORT
	fi
	start_recv && break
	tries=$((tries + 1))
	[ $tries -lt 5 ] || fail "hintmig recv did not start"
done

"$HM" send --to "$ADDR" $KEYOPT --verify --json "$TMP/out.json" "$@" \
	>"$TMP/send.out" 2>"$TMP/send.log"
rc=$?
wait "$RECV_PID"
recv_rc=$?
RECV_PID=
cat "$TMP/send.out" "$TMP/recv.out"
[ $rc -eq 0 ] || fail "hintmig send exited $rc"
[ $recv_rc -eq 0 ] || fail "hintmig recv exited $recv_rc"
# fresh memory: UFFDIO_COPY unless --fill write (userfaultfd works here,
# the tracker needs it)
want_fill=${RECV_FILL:-auto}
[ "$want_fill" = auto ] && want_fill=uffd
grep -q "; $want_fill fill" "$TMP/recv.out" ||
	fail "recv did not report '$want_fill fill'"

# the JSON summary: every key of the brief, a completed status, and a
# verification that checked pages and found no mismatch
J=$TMP/out.json
for key in total-time downtime setup-time ram total transferred normal \
	duplicate dirty-sync-count mbps skipped-empty skipped-hinted \
	normal-bytes remaining hints requested received applied \
	dropped-stale rejected tracker-mode in-use-bytes verify \
	pages-checked mismatches status rounds; do
	grep -q "\"$key\"" "$J" || fail "key $key missing from the JSON"
done
grep -q '"status" *: *"completed"' "$J" || fail "status not completed"
grep -q '"mismatches" *: *0' "$J" || fail "mismatches not 0"
grep -q '"pages-checked" *: *0[,}]' "$J" && fail "no page was checked"
grep -q 'verify: [1-9][0-9]* pages checked, 0 mismatches' "$TMP/send.out" ||
	fail "no verification line"
cat "$J"
echo "PASS $SCHEME $*"
exit 0

#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark (prints, asserts only correctness): a synthetic guest (2 GiB,
# 25% in use, idle writers by default) migrated with `hintmig send/recv`
# over TCP loopback, with and without free page hints, verified bit for
# bit; the raw loopback throughput of the same transport gives the
# physical limit (in-use bytes / raw throughput).
#
# usage: bench_2g.sh HINTMIG [RAM [USED [DIRTY_RATE]]]
#
# SEND_OPTS adds options to both `hintmig send` runs (e.g. "--thp": guest
# RAM on transparent huge pages, as QEMU asks for by default).
#
# LINK=RATE (tc units: 10gbit, 25gbit, 1250mbyte...) runs the whole thing,
# raw throughput included, in a network namespace of its own whose loopback
# is a token bucket of that rate: the migration then crosses a link of a
# known speed, as it would between two hosts, instead of a loopback whose
# "speed" is the two CPUs' memcpy (needs root and iproute2; the namespace
# goes away at exit).
set -u

HM=$1
RAM=${2:-2G}
USED=${3:-25%}
DIRTY=${4:-0}

if [ -n "${LINK:-}" ] && [ -z "${HM_BENCH_NETNS:-}" ]; then
	ns=hm-bench-$$
	if ! ip netns add "$ns"; then
		echo "bench_2g: LINK=$LINK needs root and iproute2 (ip netns)" >&2
		exit 1
	fi
	trap 'ip netns del "$ns"' EXIT
	ip -n "$ns" link set lo up &&
	tc -n "$ns" qdisc add dev lo root tbf rate "$LINK" burst 4mb \
		latency 20ms || exit 1
	echo "link: loopback of namespace $ns shaped to $LINK (tbf)"
	HM_BENCH_NETNS=1 ip netns exec "$ns" sh "$0" "$@"
	exit $?
fi
TMP=$(mktemp -d /tmp/hm-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

num() { # num FILE KEY: the first number after "KEY":
	sed -n "s/.*\"$2\" *: *\([0-9.]*\).*/\1/p" "$1" | head -n 1
}

run() { # run MODE
	port=$(( 30000 + ($$ % 10000) ))
	[ "$1" = none ] && port=$((port + 1))
	"$HM" recv --listen "tcp:127.0.0.1:$port" --insecure --quiet &
	rpid=$!
	sleep 0.3
	"$HM" send --to "tcp:127.0.0.1:$port" --insecure --guest-ram "$RAM" \
		--used "$USED" --dirty-rate "$DIRTY" --hints "$1" --verify \
		--raw-throughput --json "$TMP/$1.json" --quiet ${SEND_OPTS:-} ||
		{ echo "FAIL: hintmig send --hints $1" >&2; kill $rpid; exit 1; }
	wait $rpid || { echo "FAIL: hintmig recv" >&2; exit 1; }
}

run free
run none
for mode in free none; do
	J=$TMP/$mode.json
	awk -v mode="$mode" -v tr="$(num "$J" transferred)" \
	    -v inuse="$(num "$J" in-use-bytes)" \
	    -v normal="$(num "$J" normal)" \
	    -v total="$(num "$J" total)" \
	    -v t="$(num "$J" total-time)" -v down="$(num "$J" downtime)" \
	    -v setup="$(num "$J" setup-time)" \
	    -v raw="$(num "$J" bytes-per-second)" \
	    -v lim="$(num "$J" physical-limit-ms)" \
	    -v flim="$(num "$J" fresh-memory-limit-ms)" \
	    -v mism="$(num "$J" mismatches)" 'BEGIN {
		printf("hints %-4s: sent %7.1f MiB = %.3f x in-use (%.1f MiB), " \
		       "%.3f x RAM; %d pages with data; total %d ms (setup %d, " \
		       "downtime %d); raw loopback %.0f MiB/s -> physical limit " \
		       "%d ms, total/limit %.2f; into fresh memory: limit %d " \
		       "ms, total/limit %.2f; mismatches %d\n", mode,
		       tr / 1048576, tr / inuse, inuse / 1048576, tr / total,
		       normal, t, setup, down, raw / 1048576, lim,
		       lim ? t / lim : 0, flim, flim ? t / flim : 0, mism)
	}'
done

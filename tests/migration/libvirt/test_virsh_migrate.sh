#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# virsh migrate between two libvirtd on this machine (libvirtd-pair.sh; 9.0,
# or 11.3 in the Debian 13 root): the QEMU suite's Debian guest in a TCG
# domain whose RAM is a shared file on a tmpfs and which has hintmig-agent's
# channel, i.e. a domain set up for hintmig
# (docs/libvirt.md), migrated by plain `virsh migrate` A to B and
# back: hintmig's setup must not break a normal migration. The workload
# verifies its memory every round and must go on, without an error, on
# each destination. Then a fault: the destination libvirtd is killed in the
# middle of a migration; the migration fails and the source domain runs on.
#
# HM_LIBVIRT_TRACE=1 also prints, for the first migration, the QMP
# commands and events libvirt exchanged with both QEMUs and the hook calls,
# with times (the measurements in docs/libvirt.md).
#
# `hintmig libvirt check` is run on that domain (ready) and on a defined
# domain with private RAM and an O_DIRECT disk (not ready, both named).
#
# hintmig migrate (docs/libvirt.md): the same domain migrated by hintmig
# with hintmig-agent's hints A to B, and without hints B to A; at the
# destination's started hook, right after hintmig's own (RAM complete,
# source paused, device state not yet sent), the test's hook compares the
# two QEMUs' RAM page by page (hm-ramcmp); the workload verifies on each
# destination. Faults: hintmig's sender killed the moment it stops the
# vCPUs (the migration fails, libvirt resumes the source); a plain virsh
# migrate afterwards works (hintmig left no capability behind);
# hintmig migrate of a domain not set up is refused. On the stock host
# (LV_STOCK=1) also hintmig's own stream: --tls both ways, intruders,
# forced TLS, a rogue destination, the sender killed as it attaches, the
# hook unable to receive. Plain virsh migrate with hintmigd:
# test_virsh_hinted.sh. The bed: lv-testbed.sh.
#
#   test_virsh_migrate.sh MKGUEST WORKLOAD CACHE [HINTMIG [HM_RAMCMP]]
# (the environment of the QEMU suite's guest: HM_GUEST_AGENT, HM_GUEST_KMOD,
# HM_GUEST_EXTRA, so that the cached image is shared)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirtd-pair.sh"
. "$here/lv-domain.sh"
. "$here/lv-testbed.sh"


if [ -n "$hintmig" ] && "$hintmig" --help | grep -q '^  libvirt'; then
	# on the host's view (libvirtd A's mount namespace): its pidfile,
	# hintmig's monitor
	out=$(nsenter -m -r -w -t "$(cat "$tmp/A/libvirtd.pid")" "$hintmig" libvirt check --connect "$LV_URI_A" "$dom" 2>&1); rc=$?
	echo "$out" | sed 's/^/  check: /'
	[ $rc = 0 ] || fail "hintmig libvirt check: exit $rc on a domain set up for hintmig"
	grep -q "^ok       RAM: shared (file)" <<<"$out" || fail "check: shared RAM not seen"
	grep -q "^ok       running, hintmig's monitor at" <<<"$out" || fail "check: hintmig's monitor not found"
	grep -q "hintmig send --agent $agent_sock" <<<"$out" || fail "check: agent socket not named"
	grep -q "^ok       TLS: migration certificates in /var/lib/libvirt/hm-pki" <<<"$out" || fail "check: the host's migration certificates (R18) not reported"
	if [ "${LV_STOCK:-0}" = 1 ]; then
		grep -q "^ok       QEMU [0-9]* runs as libvirt-qemu (uid [0-9]*): hintmig hands it a userfaultfd through /dev/userfaultfd" <<<"$out" ||
			fail "check: the QEMU user and the grant (R15) not reported"
		grep -q "^ok       QEMU [0-9]* has a mount namespace of its own" <<<"$out" ||
			fail "check: QEMU's mount namespace not reported"
	else
		grep -q "^ok       QEMU [0-9]* runs as root" <<<"$out" || fail "check: QEMU's user not reported"
	fi
elif [ -n "$hintmig" ]; then
	fail "$hintmig has no libvirt command (built without libvirt-dev?)"
fi

migrate() { # FROM TO NAME
	local from=$1 to=$2 t0 t1 r0
	r0=$(lv_last_round)
	t0=$(date +%s%N)
	# Not --live: libvirt aligns guest RAM to 1 MiB (513 MiB here), a
	# multiple of 256 KiB, where QEMU < 9.0 under TCG loses dirty pages
	# (docs/qemu-tests.md); live runs here showed stale pages and a
	# guest panic. With the guest paused during the copy the check is
	# about libvirt and the domain setup, not that QEMU bug.
	if ! virsh -q -c "$from" migrate --verbose "$dom" "$to" > "$tmp/migrate.log" 2>&1; then
		cat "$tmp/migrate.log"
		fail "$3: virsh migrate failed"
		return
	fi
	t1=$(date +%s%N)
	echo "$3: virsh migrate in $(( (t1 - t0) / 1000000 )) ms"
	# the destination keeps the statistics of the incoming migration
	virsh -c "$to" domjobinfo --completed "$dom" 2>/dev/null |
		grep -E 'Time elapsed|Total downtime|Memory processed|Data processed' |
		sed "s/^/  $3: /"
	[ "$(state "$to")" = running ] || fail "$3: the domain is not running on the destination ($(state "$to"))"
	[ -z "$(state "$from")" ] || fail "$3: the domain is still on the source ($(state "$from"))"
	lv_wait_rounds 5 || fail "$3: the guest made no progress on the destination"
	[ "$(lv_last_round)" -gt "$r0" ] || fail "$3: rounds did not go on"
	echo "$3: guest on the destination at round $(lv_last_round), $(lv_errors) error line(s)"
}
# Plain virsh migrate A to B and back before hintmig touched the domain:
# only for the trace, or without hintmig (with it, the same pair runs after
# hintmig's migrations and faults, below, and proves more)
if [ "$trace" = 1 ] || [ "$have_migrate" = 0 ]; then
	migrate "$LV_URI_A" "$LV_URI_B" "A to B"
	if [ "$trace" = 1 ]; then
		timeline A
		timeline B
		sed 's/^/  trace /' "$tmp/hooks.log"
	fi
	migrate "$LV_URI_B" "$LV_URI_A" "B to A"
fi

# hintmig migrate, checked page by page at the destination's started hook
# (a page may differ only if hintmig send's hinted map has it: exactly
# the pages left out because hinted)
hm_migrate() { # FROM TO NAME HINTS(auto|none) [OPTIONS...]
	local from=$1 to=$2 name=$3 hints=$4 r0 rc furi turi
	shift 4
	eval "furi=\$LV_URI_$from turi=\$LV_URI_$to"
	r0=$(lv_last_round)
	rm -f "$tmp/hinted.map"
	echo "--hinted-map $tmp/hinted.map" > "$tmp/compare"
	: > "$tmp/compare.log"
	lv_hintmig_migrate "$from" "$to" --verbose --hints "$hints" "$@" \
		--json "$tmp/hm.json" --hinted-map "$tmp/hinted.map" "$dom" > "$tmp/hm.log" 2>&1
	rc=$?
	rm -f "$tmp/compare"
	grep -v '^\[' "$tmp/hm.log" | sed "s/^/  $name: /" | tail -30
	sed "s/^/  $name: /" "$tmp/compare.log"
	cat "$tmp/$to/log/qemu/$dom-hintmig.log" 2>/dev/null | sed "s/^/  $name recv: /" | tail -8
	[ $rc = 0 ] || { fail "$name: hintmig migrate exit $rc"; return; }
	# QEMU's own stream carried device state only (x-ignore-shared left
	# the RAM file out): a RAM-sized figure means QEMU moved it itself
	qmib=$(sed -n 's/^Data by libvirt: *\([0-9.]*\) MiB.*/\1/p' "$tmp/hm.log")
	echo "$name: QEMU's own stream ${qmib:-?} MiB (bound 16 MiB: device state only)"
	[ -n "$qmib" ] && awk -v m="$qmib" 'BEGIN { exit !(m < 16) }' ||
		fail "$name: QEMU's own stream carried ${qmib:-an unknown amount of} MiB: RAM moved by QEMU, not hintmig"
	grep -q "ramcmp exit 0" "$tmp/compare.log" ||
		fail "$name: the RAM of source and destination differ (or were not compared)"
	grep -q "page compare: [1-9][0-9]* pages" "$tmp/compare.log" ||
		fail "$name: no page compared"
	[ "$(state "$turi")" = running ] ||
		fail "$name: the domain is not running on the destination ($(state "$turi"))"
	[ -z "$(state "$furi")" ] ||
		fail "$name: the domain is still on the source ($(state "$furi"))"
	lv_wait_rounds 5 || fail "$name: the guest made no progress on the destination"
	[ "$(lv_last_round)" -gt "$r0" ] || fail "$name: rounds did not go on"
	echo "$name: guest on the destination at round $(lv_last_round), $(lv_errors) error line(s)"
}
if [ "$have_migrate" = 1 ]; then
	[ -x "$ramcmp" ] || lv_die "hm-ramcmp not given"
	hm_migrate A B "hintmig A to B (agent hints)" auto
	[ "${LV_STOCK:-0}" = 1 ] && granted_nothing B "after hintmig A to B (destination)"
	hinted=$(grep -o '"skipped-hinted": *[0-9]*' "$tmp/hm.json" | grep -o '[0-9]*$')
	inmap=$(sed -n 's/.*; \([0-9]*\) pages in the hinted map$/\1/p' "$tmp/compare.log")
	echo "hintmig A to B: ${hinted:-?} hinted pages not sent, ${inmap:-?} in the hinted map"
	[ "${hinted:-0}" -gt 0 ] || fail "hintmig A to B: no page was hinted"
	[ "${inmap:-0}" -gt 0 ] || fail "hintmig A to B: the hinted map is empty: the compare proved nothing about hints"
	hm_migrate B A "hintmig B to A (no hints)" none
	[ "${LV_STOCK:-0}" = 1 ] && granted_nothing A "after hintmig B to A (destination)"

	# hintmig's own stream and its peers (TLS, intruders, forced TLS, a
	# rogue destination) do not depend on QEMU's user: on the stock
	# host only (CI time)
	if [ "${LV_STOCK:-0}" = 1 ]; then
		# R18: every stream in TLS: hintmig's (both certificates checked,
		# the destination's name), and libvirt's own (VIR_MIGRATE_TLS: QEMU's
		# tls-creds from the same directory)
		hm_migrate A B "hintmig --tls A to B" auto --tls
		grep -q '"tls": "TLS1' "$tmp/hm.json" || fail "hintmig --tls A to B: hintmig send does not report TLS"
		grep -q "^TLS: TLS1" "$tmp/B/log/qemu/$dom-hintmig.log" || fail "hintmig --tls A to B: the receiver does not report TLS"
		# libvirt's QMP traffic (qemu_monitor at debug): both QEMUs were
		# given libvirt's TLS credentials for their own stream
		for n in A B; do
			grep -q '"tls-creds":"objlibvirt_migrate_tls' "$tmp/$n/log/libvirtd.log" ||
				fail "hintmig --tls A to B: libvirt $n set no TLS credentials on its QEMU's migration"
		done
		echo "hintmig --tls A to B: $(sed -n 's/.*"tls": "\([^"]*\)".*/\1/p' "$tmp/hm.json")"
		# intruders on hintmig's port while it migrates: a plain TCP
		# client sending garbage, and one from another address (127.0.0.2)
		# holding its connection open, again and again; the receiver drops
		# them, the migration goes through
		port=$(hm_free_port)
		python3 - "$port" > "$tmp/intruder.log" 2>&1 <<-'PY' &
		import socket, sys, time
		port = int(sys.argv[1]); end = time.time() + 40; held = []; n = 0
		def garbage():
		    s = socket.create_connection(("127.0.0.1", port), timeout=1)
		    s.sendall(b"\x16\x03\x01 GET / HTTP/1.0\r\n" * 4); s.close()
		def hold():
		    held.append(socket.create_connection(("127.0.0.1", port), timeout=1,
		                                         source_address=("127.0.0.2", 0)))
		# the moment the receiver listens (the sender retries every 100 ms):
		# a burst, then more now and then
		burst = True
		while time.time() < end:
		    try:
		        for i in range(2 if burst else 1):
		            garbage(); n += 1
		        hold(); n += 1
		        burst = False
		        print("connected", n, flush=True)
		        time.sleep(0.05)
		    except OSError:
		        time.sleep(0.005)
		PY
		intruder=$!
		LV_HM_PORT=$port hm_migrate B A "hintmig --tls B to A (intruders on its port)" auto --tls
		kill $intruder 2>/dev/null; wait $intruder 2>/dev/null
		nref=$(grep -c "refused so far" "$tmp/A/log/qemu/$dom-hintmig.log")
		[ "${nref:-0}" -gt 0 ] || fail "intruders during hintmig --tls B to A: none was seen refused (did they connect? $(tail -1 "$tmp/intruder.log"))"
		echo "intruders during hintmig --tls B to A: $nref connections refused, the migration through"
		[ "${LV_STOCK:-0}" = 1 ] && granted_nothing A "after hintmig --tls B to A (destination)"
		# a host whose libvirt forces TLS: hintmig migrate without --tls is
		# refused before anything starts, with that reason
		cp "$tmp/A/etc/qemu.conf" "$tmp/qemu.conf.A"
		echo "migrate_tls_force = 1" >> "$tmp/A/etc/qemu.conf"
		out=$(lv_hintmig_migrate A B "$dom" 2>&1); rc=$?
		cp "$tmp/qemu.conf.A" "$tmp/A/etc/qemu.conf"
		[ $rc = 2 ] && grep -q "forces TLS" <<<"$out" || fail "TLS forced: hintmig migrate without --tls: exit $rc ($out)"
		[ "$(state "$LV_URI_A")" = running ] || fail "TLS forced: the domain is $(state "$LV_URI_A")"
		echo "TLS forced: refused: $out"
		# a destination whose certificates another CA signed (consistent in
		# themselves: its QEMU and libvirt accept them) gets nothing: the
		# source's hintmig refuses it before a page moves
		cp -r "$tmp/B/lib/hm-pki" "$tmp/pki.B"
		cp "$tmp/pki/rogue/"*.pem "$tmp/B/lib/hm-pki/"
		chgrp -R "$(id -gn libvirt-qemu)" "$tmp/B/lib/hm-pki"
		out=$(lv_hintmig_migrate A B --tls "$dom" 2>&1); rc=$?
		rm -rf "$tmp/B/lib/hm-pki"; mv "$tmp/pki.B" "$tmp/B/lib/hm-pki"
		grep -v '^\[' <<<"$out" | tail -3 | sed 's/^/  rogue destination: /'
		[ $rc = 3 ] || fail "rogue destination certificate: hintmig migrate --tls exit $rc, want 3"
		grep -q "issuer is unknown" <<<"$out" || fail "rogue destination certificate: hintmig did not name it ($out)"
		wait_running "$LV_URI_A" || fail "rogue destination certificate: the source domain is $(state "$LV_URI_A")"
		[ -z "$(state "$LV_URI_B")" ] || fail "rogue destination certificate: a domain was left on B"
		lv_wait_rounds 3 || fail "rogue destination certificate: the source guest made no progress"

	fi

	# Fault: the sender dies the moment it has stopped the vCPUs; the
	# receiver sees the connection end, the hook fails, libvirt fails the
	# migration and resumes the source itself.
	HINTMIG_TEST_DIE_AT=pre-switchover lv_hintmig_migrate A B --verbose "$dom" \
		> "$tmp/hmfault.log" 2>&1
	rc=$?
	grep -v '^\[' "$tmp/hmfault.log" | tail -6 | sed 's/^/  hintmig killed: /'
	[ $rc = 3 ] || fail "hintmig killed: hintmig migrate exit $rc, want 3 (failed)"
	wait_running "$LV_URI_A" || fail "hintmig killed: the source domain is $(state "$LV_URI_A"), not running"
	[ -z "$(state "$LV_URI_B")" ] || fail "hintmig killed: a domain was left on the destination"
	lv_wait_rounds 5 || fail "hintmig killed: the source guest made no progress"
	echo "hintmig killed: source domain $(state "$LV_URI_A"), guest at round $(lv_last_round)"
	[ "${LV_STOCK:-0}" = 1 ] && granted_nothing A "hintmig killed"

	# the sender gone before it connects, the hook unable to receive:
	# on the stock host only (CI time)
	if [ "${LV_STOCK:-0}" = 1 ]; then
		# The sender dies before it connects (as it attaches): hintmig
		# migrate ends the waiting receiver (a connection closed at once)
		# rather than leave libvirt's Prepare to the receiver's 60 s timeout.
		t0=$(date +%s)
		HINTMIG_TEST_DIE_AT=attached lv_hintmig_migrate A B "$dom" > "$tmp/hmfault3.log" 2>&1
		rc=$?
		t1=$(date +%s)
		grep -v '^\[' "$tmp/hmfault3.log" | tail -2 | sed 's/^/  sender killed at attach: /'
		tail -4 "$tmp/B/log/qemu/$dom-hintmig.log" 2>/dev/null | sed 's/^/  sender killed at attach (recv): /'
		[ $rc = 3 ] || fail "sender killed at attach: hintmig migrate exit $rc, want 3"
		[ $((t1 - t0)) -le 20 ] || fail "sender killed at attach: failed after $((t1 - t0)) s, want at most 20 (the receiver must be ended, not left to its 60 s)"
		[ "$(state "$LV_URI_A")" = running ] || fail "sender killed at attach: the source domain is $(state "$LV_URI_A")"
		[ -z "$(state "$LV_URI_B")" ] || fail "sender killed at attach: a domain was left on the destination"
		echo "sender killed at attach: failed after $(( $(date +%s) - t0 )) s (the receiver alone would wait 60 s)"

		# The destination's hook cannot receive (hintmig's port is taken
		# there): the hook fails, so libvirt's migration fails, the source
		# runs on, and hintmig migrate says so (true: checked here).
		port=$(hm_free_port)
		python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port)); s.listen(); time.sleep(120)" &
		blocker=$!
		sleep 0.5
		LV_HM_PORT=$port lv_hintmig_migrate A B --verbose "$dom" > "$tmp/hmfault4.log" 2>&1
		rc=$?
		kill $blocker 2>/dev/null; wait $blocker 2>/dev/null
		grep -v '^\[' "$tmp/hmfault4.log" | tail -3 | sed 's/^/  hook cannot receive: /'
		tail -3 "$tmp/B/log/qemu/$dom-hintmig.log" 2>/dev/null | sed 's/^/  hook cannot receive (recv): /'
		[ $rc = 3 ] || fail "hook cannot receive: hintmig migrate exit $rc, want 3"
		grep -q "the source domain runs on" "$tmp/hmfault4.log" || fail "hook cannot receive: the report does not say the source runs on"
		wait_running "$LV_URI_A" || fail "hook cannot receive: the source domain is $(state "$LV_URI_A"), not running"
		[ -z "$(state "$LV_URI_B")" ] || fail "hook cannot receive: libvirt carried on without hintmig (the domain is on B: $(state "$LV_URI_B"))"
		lv_wait_rounds 3 || fail "hook cannot receive: the source guest made no progress"
		[ "${LV_STOCK:-0}" = 1 ] && granted_nothing A "hook cannot receive"

	fi

	# hintmig left nothing behind: x-ignore-shared is off again on the
	# source of the failed migration (the guardian) and on the
	# destinations of the hintmig migrations (the receiver's watcher),
	# else plain virsh migrate would fail ("Capability x-ignore-shared")
	migrate "$LV_URI_A" "$LV_URI_B" "plain A to B after hintmig"
	migrate "$LV_URI_B" "$LV_URI_A" "plain B to A after hintmig"

	# a domain not set up for hintmig is refused, nothing done
	sed -e "s|<name>$dom</name>|<name>hm-norun</name>|" \
	    -e "/<memoryBacking>/,/<\/memoryBacking>/d" "$tmp/dom.xml" > "$tmp/norun.xml"
	virsh -q -c "$LV_URI_A" define "$tmp/norun.xml" >/dev/null || fail "virsh define hm-norun"
	out=$("$hintmig" migrate -c "$LV_URI_A" hm-norun "$LV_URI_B" 2>&1); rc=$?
	echo "$out" | grep -v '^ok' | sed 's/^/  refused: /'
	[ $rc = 1 ] || fail "hintmig migrate of a domain with private RAM: exit $rc, want 1"
	grep -q "is not set up for hintmig" <<<"$out" || fail "refusal not explained"
	virsh -q -c "$LV_URI_A" undefine hm-norun >/dev/null

	# hintmig's metadata left in a definition (hintmig migrate killed)
	# must not stop an ordinary start: the hook finds no incoming
	# migration and lets libvirt go on
	starts_with_metadata "$LV_URI_A" "stale metadata" \
		"<hintmig:migration xmlns:hintmig='http://hintmig.org/xmlns/libvirt/migration/1' listen='tcp:127.0.0.1:9' key='00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff' timeout='5' expires='$(( $(date +%s) + 600 ))'/>"
fi

# Fault: the destination libvirtd (and its QEMU) dies in the middle of a
# migration A to B, throttled to 1 MiB/s so that it is still running: the
# migration fails, the source domain runs on.
kill_dest_fault() { # NAME LOG COMMAND...
	local name=$1 log=$2 mpid i
	shift 2
	"$@" > "$log" 2>&1 &
	mpid=$!
	# kill only once the migration really runs: the destination's QEMU
	# is up (and, for hintmig, its receiver listens), not after a guess
	for i in $(seq 1 150); do
		ls "$tmp"/B/run/qemu/*.pid >/dev/null 2>&1 &&
			{ [ "$name" = fault ] || grep -q "listening on" "$tmp/B/log/qemu/$dom-hintmig.log" 2>/dev/null; } &&
			break
		kill -0 "$mpid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$mpid" 2>/dev/null || fail "$name: the migration ended before the destination was killed"
	sleep 1
	for f in "$tmp"/B/run/qemu/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	kill -9 "$(cat "$tmp/B/libvirtd.pid")"
	wait "$mpid" && fail "$name: the migration succeeded with the destination killed"
	grep -v '^\[\|^round' "$log" | tail -4 | sed "s/^/  $name: /"
	grep -q "already active\|not set up" "$log" &&
		fail "$name: the migration failed for another reason than the killed destination"
	wait_running "$LV_URI_A" || fail "$name: the source domain is $(state "$LV_URI_A"), not running"
	lv_wait_rounds 5 || fail "$name: the source guest made no progress after the failed migration"
	echo "$name: source domain $(state "$LV_URI_A"), guest at round $(lv_last_round)"
}
kill_dest_fault "fault" "$tmp/fault.log" \
	virsh -q -c "$LV_URI_A" migrate --live --bandwidth 1 "$dom" "$LV_URI_B"
if [ "$have_migrate" = 1 ]; then
	: > "$tmp/B/log/qemu/$dom-hintmig.log" 2>/dev/null
	lv_start "$tmp" B 6a1d0a00-0000-4000-8000-00000000000b # again
	# libvirtd (11.3) forgets the killed domain asynchronously after a
	# restart: until then it refuses a new incoming one as "already active"
	for _ in $(seq 1 100); do
		[ -z "$(state "$LV_URI_B")" ] && break
		sleep 0.2
	done
	[ -z "$(state "$LV_URI_B")" ] || fail "libvirtd B still lists the killed domain ($(state "$LV_URI_B"))"
	kill_dest_fault "fault, hintmig" "$tmp/hmfault2.log" \
		lv_hintmig_migrate A B --bandwidth 1 "$dom"
fi

# A domain that is not set up for hintmig: defined on A only now, after
# the migrations.
if [ -n "$hintmig" ] && "$hintmig" --help | grep -q '^  libvirt'; then
	sed -e "s|<name>$dom</name>|<name>hm-plain</name>|" \
	    -e "/<memoryBacking>/,/<\/memoryBacking>/d" \
	    -e "/<channel/d" \
	    -e "s|<memballoon|<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='$tmp/disk.img'/><target dev='vda' bus='virtio'/></disk><memballoon|" \
	    "$tmp/dom.xml" > "$tmp/plain.xml"
	virsh -q -c "$LV_URI_A" define "$tmp/plain.xml" >/dev/null || fail "virsh define of the plain domain"
	out=$("$hintmig" libvirt check --connect "$LV_URI_A" hm-plain 2>&1); rc=$?
	echo "$out" | sed 's/^/  check plain: /'
	[ $rc = 1 ] || fail "hintmig libvirt check: exit $rc on a domain with private RAM (want 1)"
	grep -q "^MISSING  RAM" <<<"$out" || fail "check: private RAM not named"
	grep -q "^REFUSED  1 disk" <<<"$out" || fail "check: the O_DIRECT disk not named"
	grep -q "^note     no hint agent channel" <<<"$out" || fail "check: missing channel not noted"
	virsh -q -c "$LV_URI_A" undefine hm-plain >/dev/null

	# memfd RAM: QEMU 8.1 and later migrate it themselves despite
	# x-ignore-shared, so it is refused there and fine on 7.2
	sed -e "s|<name>$dom</name>|<name>hm-memfd</name>|" \
	    -e "s|<source type='file'/>|<source type='memfd'/>|" "$tmp/dom.xml" > "$tmp/memfd.xml"
	virsh -q -c "$LV_URI_A" define "$tmp/memfd.xml" >/dev/null || fail "virsh define of the memfd domain"
	out=$("$hintmig" libvirt check --connect "$LV_URI_A" hm-memfd 2>&1); rc=$?
	ver=$(sed -n 's/^domain hm-memfd, QEMU \([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' <<<"$out")
	echo "$out" | grep -i "RAM\|QEMU" | sed 's/^/  check memfd: /'
	if [ -z "$ver" ]; then
		fail "check memfd: no QEMU version in the report"
	elif [ "${ver% *}" -gt 8 ] || { [ "${ver% *}" = 8 ] && [ "${ver#* }" -ge 1 ]; }; then
		[ $rc = 1 ] || fail "check memfd on QEMU $ver: exit $rc, want 1 (not ready)"
		grep -q "^MISSING  RAM in a named file" <<<"$out" || fail "check memfd on QEMU $ver: memfd not refused"
		grep -q "source type='file'" <<<"$out" || fail "check memfd: the file backing not recommended"
	else
		grep -q "^ok       RAM: shared (memfd)" <<<"$out" || fail "check memfd on QEMU $ver: memfd not accepted"
	fi
	virsh -q -c "$LV_URI_A" undefine hm-memfd >/dev/null
fi
n=$(lv_errors)
[ "$n" = 0 ] || { cat $LV_SERIAL | grep -a 'HMW: ERROR\|FAILED\|Kernel panic' | head -5; fail "$n guest error line(s)"; }
virsh -q -c "$LV_URI_A" destroy "$dom" >/dev/null 2>&1

# Big guests: the same guest in a domain with <hugepages/> (RAM on
# hugetlbfs, 2 MiB pages, libvirt's own file for it), migrated by
# hintmig with the agent's hints: tracked in whole huge pages, received
# into the destination's huge pages, compared page by page at the hook
if [ "$have_migrate" = 1 ]; then
	dom=hm-huge
	# B was killed by the last fault: up again
	kill -0 "$(cat "$tmp/B/libvirtd.pid" 2>/dev/null)" 2>/dev/null ||
		lv_start "$tmp" B 6a1d0a00-0000-4000-8000-00000000000b
	sed -e "s|<name>hm-virsh</name>|<name>$dom</name>|" \
	    -e "s|<memory unit='KiB'>524296</memory>|<memory unit='KiB'>526336</memory>|" \
	    -e "s|<source type='file'/>|<hugepages/>|" \
	    -e "s|hm-virsh-agent|$dom-agent|" "$tmp/dom.xml" > "$tmp/huge.xml"
	for f in $LV_SERIAL; do : > "$f"; done
	if virsh -q -c "$LV_URI_A" create "$tmp/huge.xml" > "$tmp/huge.log" 2>&1 &&
	   lv_wait_rounds 5; then
		out=$(nsenter -m -r -w -t "$(cat "$tmp/A/libvirtd.pid")" "$hintmig" libvirt check --connect "$LV_URI_A" "$dom" 2>&1); rc=$?
		echo "$out" | grep -i "RAM\|huge" | sed 's/^/  check hugepages: /'
		[ $rc = 0 ] && grep -q "^ok       RAM: shared (hugepages)" <<<"$out" ||
			fail "hintmig libvirt check on the hugepages domain: exit $rc"
		hm_migrate A B "hintmig hugepages A to B (agent hints)" auto
		grep -q "tracked in whole huge pages" "$tmp/hm.log" ||
			fail "hugepages: the sender did not track whole huge pages"
		grep -q "RAM on hugetlbfs (2048 KiB pages)" "$tmp/B/log/qemu/$dom-hintmig.log" ||
			fail "hugepages: the receiver did not write into huge pages"
		[ "${LV_STOCK:-0}" = 1 ] && granted_nothing B "after hintmig hugepages A to B (destination)"
		n=$(lv_errors)
		[ "$n" = 0 ] || fail "hugepages: $n guest error line(s)"
		virsh -q -c "$LV_URI_B" destroy "$dom" >/dev/null 2>&1
	else
		sed 's/^/  hugepages: /' "$tmp/huge.log"
		fail "the hugepages domain did not start or run"
	fi
fi
[ "$fails" = 0 ] || { echo "$fails libvirt checks failed"; exit 1; }
echo "PASS virsh migrate: A to B, B to A, destination killed mid-migration"

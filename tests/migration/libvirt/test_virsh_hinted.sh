#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Plain `virsh migrate` with hints (docs/libvirt.md "Plain virsh
# migrate"): hintmigd runs on each "host" (two libvirtd on this machine,
# libvirtd-pair.sh; stock qemu.conf, QEMU as libvirt-qemu), the domain is
# set up for hintmig, and the migrations are libvirt's own, started by
# clients that know nothing of hintmig:
#   virsh migrate --live A to B; a virDomainMigrateToURI3 client
#   (hm-migrate-uri3, peer to peer) B to A; virsh migrate --live --p2p --tls
#   A to B.
# Each: at the destination's started hook, after hintmig's (RAM complete,
# source paused, device state not sent), the two QEMUs' RAM is compared
# page by page, a page may differ only if the sender's hinted map has it;
# libvirt's own stream carries device state only (under 16 MiB) and
# hintmig's the RAM; the workload goes on verifying on the destination;
# nothing granted is left in either QEMU.
# Faults, each: libvirt's migration fails, the source runs on, the report
# names the cause: the source's hintmigd killed in the middle of the
# rounds; the destination's hook killed; no hintmigd answering on the
# source; a destination whose certificates another CA signed. And: a host
# with the CA's certificate asking for the RAM of a domain libvirt is not
# migrating is refused, a client without a certificate is refused; with
# hintmigd stopped the domain loses its mark and virsh migrate moves it
# without hints (QEMU's stream carries the RAM).
#
#   test_virsh_hinted.sh MKGUEST WORKLOAD CACHE HINTMIG HM_RAMCMP
# (HM_MIGRATE_URI3: the client; the QEMU suite's guest environment)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirtd-pair.sh"
. "$here/lv-domain.sh"
[ -n "${4:-}" ] || { echo "FAIL no hintmig given"; exit 1; }
"$4" --help | grep -q '^  daemon' ||
	{ echo "FAIL $4 has no daemon command (built without libvirt-dev or json-c?)"; exit 1; }
[ -x "${HM_MIGRATE_URI3:-}" ] || { echo "FAIL HM_MIGRATE_URI3 (the client) not built"; exit 1; }
LV_HUGE=0
. "$here/lv-testbed.sh"
[ -x "$ramcmp" ] || lv_die "hm-ramcmp not given"

NS=http://hintmig.org/xmlns/libvirt/hintmigd/1
HMD_PORT_A=$(hm_free_port) HMD_PORT_B=$(hm_free_port)
[ "$HMD_PORT_A" != "$HMD_PORT_B" ] || HMD_PORT_B=$((HMD_PORT_A + 1))
mkdir -p "$tmp/maps"
uri_of() { eval "echo \$LV_URI_$1"; }
# peer to peer, the source libvirtd opens the destination's URI itself:
# qemu:///system would be its own driver, qemu+unix:// goes to the socket
p2p_uri() { uri_of "$1" | sed 's|^qemu:|qemu+unix:|'; }
hmd_start() { # N [OPTIONS...]: hintmigd of host N, in its libvirtd's view
	local n=$1 port from
	shift
	eval "port=\$HMD_PORT_$n"
	touch "$tmp/hintmigd-$n.log"
	from=$(wc -l < "$tmp/hintmigd-$n.log")
	# A's as under hintmigd.socket: systemd-socket-activate holds the
	# port and starts hintmigd on the first connection, passing the socket
	local run=() listen=(--listen "tcp:127.0.0.1:$port")
	[ "$n" = A ] && run=(systemd-socket-activate -l "127.0.0.1:$port") listen=()
	nsenter -m -r -w -t "$(cat "$tmp/$n/libvirtd.pid")" "${run[@]}" \
		"$hintmig" daemon -c "$(uri_of "$n")" "${listen[@]}" \
		--advertise "127.0.0.1:$port" --hinted-map-dir "$tmp/maps" "$@" \
		>> "$tmp/hintmigd-$n.log" 2>&1 &
	eval "HMD_PID_$n=$!"
	local up=
	for _ in $(seq 1 100); do
		up=$(tail -n +$((from + 1)) "$tmp/hintmigd-$n.log" | grep "listening on")
		[ -n "$up" ] && break
		kill -0 "$!" 2>/dev/null || break
		# under the activator: a connection starts it (hintmigd drops it)
		[ -n "${run[0]:-}" ] && (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null
		sleep 0.1
	done
	if [ -z "$up" ]; then
		tail -5 "$tmp/hintmigd-$n.log"
		lv_die "hintmigd $n did not start"
	fi
	echo "hintmigd $n: ${up#hintmigd: }"
	if [ -n "${run[0]:-}" ]; then
		grep -q "listening on tcp:127.0.0.1:$port (systemd's socket)" <<<"$up" ||
			fail "hintmigd $n did not take the socket systemd-socket-activate passed: $up"
	fi
	return 0
}
hmd_stop() { # N [SIGNAL]
	local pid
	eval "pid=\${HMD_PID_$1:-}"
	[ -n "$pid" ] || return 0
	kill "-${2:-TERM}" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	eval "HMD_PID_$1="
}
trap 'hmd_stop A KILL; hmd_stop B KILL; lv_stop_all; rm -rf "$LV_TMP"' EXIT
marked_by() { # N M: the domain on host N carries host M's hintmigd
	local port
	eval "port=\$HMD_PORT_$2"
	virsh -q -c "$(uri_of "$1")" metadata "$dom" "$NS" --live 2>/dev/null |
		grep -q "addr=\"127.0.0.1:$port\""
}
wait_marked() { # N: within 20 s
	for _ in $(seq 1 100); do
		marked_by "$1" "$1" && return 0
		sleep 0.2
	done
	return 1
}
# keys and summaries live in memfds: nothing of hintmig's appears in
# /tmp, not even after the kills below
tmp_files() { find /tmp -maxdepth 1 -name '*hintmig*' 2>/dev/null | sort; }
tmp_before=$(tmp_files)
hmd_start A
hmd_start B
wait_marked A || fail "hintmigd A did not mark the running domain"
# libvirtd drops hintmigd's connection (virt-admin, as a restart would):
# it connects again and registers for lifecycle events again
admin="libvirtd:///system?socket=$tmp/A/sock/libvirt-admin-sock"
ids=$(virt-admin -c "$admin" srv-clients-list libvirtd 2>/dev/null | awk 'NR > 2 && $1 ~ /^[0-9]+$/ { print $1 }')
[ -n "$ids" ] || fail "virt-admin lists no client of libvirtd A (hintmigd's connection)"
for id in $ids; do
	virt-admin -c "$admin" client-disconnect libvirtd "$id" > /dev/null 2>&1 ||
		fail "virt-admin cannot disconnect client $id of libvirtd A"
done
for _ in $(seq 1 100); do
	grep -q "lifecycle events registered again" "$tmp/hintmigd-A.log" && break
	sleep 0.2
done
grep -q "lifecycle events registered again" "$tmp/hintmigd-A.log" ||
	fail "hintmigd A did not register for libvirt's events again after its connection was dropped"
wait_marked A || fail "hintmigd A: the domain is not marked after the reconnection"
echo "hintmigd A: connection dropped by libvirtd ($(echo $ids | wc -w) client(s)): $(grep -c "connecting again" "$tmp/hintmigd-A.log") reconnection(s), events registered again"
out=$(nsenter -m -r -w -t "$(cat "$tmp/A/libvirtd.pid")" "$hintmig" libvirt check --connect "$LV_URI_A" "$dom" 2>&1)
grep "virsh migrate" <<<"$out" | sed 's/^/  check: /'
grep -q "^ok       virsh migrate: with hints: hintmigd at 127.0.0.1:$HMD_PORT_A" <<<"$out" ||
	fail "hintmig libvirt check does not say that virsh migrate goes with hints"

# MiB from virsh's "N.NNN UNIT"
mib() { awk '{ f = -1; if ($2 == "B") f = 1 / 1048576; if ($2 == "KiB") f = 1 / 1024
	if ($2 == "MiB") f = 1; if ($2 == "GiB") f = 1024
	if (f < 0) exit 1; printf "%.3f\n", $1 * f }'; }
libvirt_mib() { # URI: libvirt's own stream of the last incoming migration
	virsh -c "$1" domjobinfo --completed "$dom" 2>/dev/null |
		sed -n 's/^Data processed: *//p' | mib
}

# A migration by libvirt alone, the RAM by hintmigd: FROM TO NAME COMMAND...
hinted() {
	local from=$1 to=$2 name=$3 r0 rc furi turi map lmib hm
	shift 3
	furi=$(uri_of "$from") turi=$(uri_of "$to")
	wait_marked "$from" || { fail "$name: the domain on $from is not marked by its hintmigd"; return; }
	r0=$(lv_last_round)
	map=$tmp/maps/$dom.hinted.map
	rm -f "$map"
	echo "--hinted-map $map" > "$tmp/compare"
	: > "$tmp/compare.log"
	mkdir -p "$tmp/$to/log/qemu"
	: > "$tmp/$to/log/qemu/$dom-hintmig.log"
	"$@" > "$tmp/mig.log" 2>&1
	rc=$?
	rm -f "$tmp/compare"
	sed "s/^/  $name: /" "$tmp/mig.log" | tail -4
	sed "s/^/  $name: /" "$tmp/compare.log"
	grep -a "hintmig libvirt hook\|^TLS\|^received" "$tmp/$to/log/qemu/$dom-hintmig.log" | sed "s/^/  $name (hook): /"
	[ $rc = 0 ] || { fail "$name: exit $rc"; tail -5 "$tmp/hintmigd-$from.log"; return; }
	grep -q "ramcmp exit 0" "$tmp/compare.log" ||
		fail "$name: the RAM of source and destination differ (or were not compared)"
	grep -q "page compare: [1-9][0-9]* pages" "$tmp/compare.log" || fail "$name: no page compared"
	grep -q "^TLS: TLS1" "$tmp/$to/log/qemu/$dom-hintmig.log" || fail "$name: hintmig's stream was not in TLS"
	hm=$(sed -n 's/^received: .* zero pages, \([0-9]*\) bytes,.*/\1/p' "$tmp/$to/log/qemu/$dom-hintmig.log" |
		tail -1 | awk '{ printf "%.3f\n", $1 / 1048576 }')
	lmib=$(libvirt_mib "$turi")
	echo "$name: libvirt's stream ${lmib:-?} MiB, hintmig's ${hm:-?} MiB"
	[ -n "$lmib" ] && awk -v m="$lmib" 'BEGIN { exit !(m < 16) }' ||
		fail "$name: libvirt's own stream carried ${lmib:-an unknown amount of} MiB: RAM moved by QEMU, not hintmig"
	[ -n "$hm" ] && awk -v m="$hm" 'BEGIN { exit !(m > 32) }' ||
		fail "$name: hintmig's stream carried ${hm:-no} MiB: the RAM did not go through hintmigd"
	[ "$(state "$turi")" = running ] || fail "$name: the domain is not running on the destination ($(state "$turi"))"
	[ -z "$(state "$furi")" ] || fail "$name: the domain is still on the source ($(state "$furi"))"
	lv_wait_rounds 5 || fail "$name: the guest made no progress on the destination"
	[ "$(lv_last_round)" -gt "$r0" ] || fail "$name: rounds did not go on"
	granted_nothing "$to" "$name (destination)"
	echo "$name: guest on the destination at round $(lv_last_round), $(lv_errors) error line(s)"
}

hinted A B "virsh migrate --live A to B" \
	virsh -q -c "$LV_URI_A" migrate --live --verbose "$dom" "$LV_URI_B"
inmap=$(sed -n 's/.*; \([0-9]*\) pages in the hinted map$/\1/p' "$tmp/compare.log")
[ "${inmap:-0}" -gt 0 ] || fail "virsh migrate A to B: the hinted map is empty: the compare proved nothing about hints"
echo "virsh migrate --live A to B: ${inmap:-?} pages in the hinted map"
hinted B A "virDomainMigrateToURI3 B to A" "$HM_MIGRATE_URI3" "$LV_URI_B" "$dom" "$(p2p_uri A)"
hinted A B "virsh migrate --live --p2p --tls A to B" \
	virsh -q -c "$LV_URI_A" migrate --live --p2p --tls "$dom" "$(p2p_uri B)"
grep -q '"tls-creds":"objlibvirt_migrate_tls' "$tmp/B/log/libvirtd.log" ||
	fail "--tls: libvirt set no TLS credentials on its QEMU's migration"

# The faults, B to A now (the domain is on B).
S=B D=A
SURI=$(uri_of $S) DURI=$(uri_of $D)
# FAULT COMMAND...: the migration fails, the source runs on
failed() {
	local name=$1 rc
	shift
	"$@" > "$tmp/fault.log" 2>&1
	rc=$?
	ran_on "$name" $rc
}
# NAME RC: the migration failed, the source runs on, nothing left granted
ran_on() {
	sed "s/^/  $1: /" "$tmp/fault.log" | tail -3
	[ "$2" != 0 ] || fail "$1: the migration succeeded"
	wait_running "$SURI" || fail "$1: the source domain is $(state "$SURI"), not running"
	[ -z "$(state "$DURI")" ] || fail "$1: a domain was left on the destination ($(state "$DURI"))"
	lv_wait_rounds 3 || fail "$1: the source guest made no progress"
	granted_nothing "$S" "$1 (source)"
}
# run a migration in the background, wait until the source's sender runs
mig_bg() {
	: > "$tmp/$D/log/qemu/$dom-hintmig.log"
	virsh -q -c "$SURI" migrate --live "$dom" "$DURI" > "$tmp/fault.log" 2>&1 &
	MPID=$!
	for _ in $(seq 1 150); do
		grep -q "hintmigd at .* sends" "$tmp/$D/log/qemu/$dom-hintmig.log" 2>/dev/null && { sleep 1.5; return 0; }
		kill -0 "$MPID" 2>/dev/null || break
		sleep 0.2
	done
	fail "$1: the source's sender did not start"
	return 1
}
mig_end() { # NAME: the background migration failed as it should
	local rc
	wait "$MPID"
	rc=$?
	ran_on "$1" $rc
}

# the source's sender throttled (2 MiB/s): the rounds last
hmd_stop $S
hmd_start $S --max-bandwidth 2
name="source hintmigd killed mid-rounds"
if mig_bg "$name"; then
	hmd_stop $S KILL
	mig_end "$name"
	grep -q "hintmigd at 127.0.0.1:$HMD_PORT_B went away" "$tmp/fault.log" ||
		fail "$name: libvirt's error does not say that the source's hintmigd went away"
fi
hmd_start $S --max-bandwidth 2
name="destination hook killed"
if mig_bg "$name"; then
	pkill -KILL -f "libvirt hook $dom started" || fail "$name: no hook to kill"
	mig_end "$name"
	sleep 1
	grep -q "the destination's hook went away" "$tmp/hintmigd-$S.log" ||
		fail "$name: the source's hintmigd did not see the hook go"
fi
hmd_stop $S KILL	# its mark stays on the domain: nobody answers there
failed "source hintmigd unreachable" virsh -q -c "$SURI" migrate --live "$dom" "$DURI"
grep -q "cannot reach the source host's hintmigd at 127.0.0.1:$HMD_PORT_B" "$tmp/fault.log" ||
	fail "source hintmigd unreachable: libvirt's error does not say so"
hmd_start $S
# the destination's certificates from another CA
mv "$tmp/$D/lib/hm-pki" "$tmp/pki.$D"
cp -r "$tmp/pki/rogue" "$tmp/$D/lib/hm-pki"
chgrp -R "$(id -gn libvirt-qemu)" "$tmp/$D/lib/hm-pki"
failed "destination of another CA" virsh -q -c "$SURI" migrate --live "$dom" "$DURI"
rm -rf "$tmp/$D/lib/hm-pki"; mv "$tmp/pki.$D" "$tmp/$D/lib/hm-pki"
grep -q "TLS with libvirt's migration certificates .* failed" "$tmp/fault.log" ||
	fail "destination of another CA: libvirt's error does not name the TLS failure"

# the destination without certificates: refused, no path without them
mv "$tmp/$D/lib/hm-pki" "$tmp/pki.$D"
failed "destination without certificates" virsh -q -c "$SURI" migrate --live "$dom" "$DURI"
mv "$tmp/pki.$D" "$tmp/$D/lib/hm-pki"
grep -q "this host has no libvirt migration certificates.*Refused" "$tmp/fault.log" ||
	fail "destination without certificates: libvirt's error does not say so"

# A domain that is not set up for hintmig (private RAM), started while
# hintmigd runs: not marked, check says virsh migrate goes without hints
sed -e "s|<name>$dom</name>|<name>hm-private</name>|" -e "/<memoryBacking>/,/<\/memoryBacking>/d" \
    -e "s|$serial|$serial_dir/private.serial|g" -e "s|$dom-agent|hm-private-agent|" "$tmp/dom.xml" > "$tmp/private.xml"
if virsh -q -c "$SURI" create "$tmp/private.xml" > "$tmp/private.log" 2>&1; then
	sleep 2	# the marker runs at libvirt's start event
	# (11.3's virsh prints nothing and exits 0 where 9.0's fails)
	virsh -q -c "$SURI" metadata hm-private "$NS" --live 2>/dev/null | grep -q "addr=" &&
		fail "hintmigd marked a domain that is not set up for hintmig"
	out=$(nsenter -m -r -w -t "$(cat "$tmp/$S/libvirtd.pid")" "$hintmig" libvirt check --connect "$SURI" hm-private 2>&1)
	grep -q "^note     virsh migrate: without hints, as libvirt alone (the domain is not set up for hintmig)" <<<"$out" ||
		fail "hintmig libvirt check on a domain not set up does not say virsh migrate goes without hints"
	echo "not set up: hm-private not marked; $(grep 'virsh migrate' <<<"$out")"
	virsh -q -c "$SURI" destroy hm-private >/dev/null 2>&1
else
	sed 's/^/  hm-private: /' "$tmp/private.log"
	fail "the domain with private RAM did not start"
fi

# A host with the CA's certificate asks for the RAM of a domain libvirt is
# not migrating; a client without a certificate: both refused.
uuid=$(virsh -q -c "$SURI" domuuid "$dom")
python3 - "$HMD_PORT_B" "$tmp/pki/good" "$uuid" > "$tmp/ask.log" 2>&1 <<-'PY'
import json, socket, ssl, struct, sys
port, pki, uuid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def session(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki + "/ca-cert.pem")
    if cert:
        ctx.load_cert_chain(pki + "/client-cert.pem", pki + "/client-key.pem")
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="127.0.0.1")
    if s.recv(1) != b"A":
        raise OSError("not accepted")
    return s
s = session(True)
req = json.dumps({"op": "send", "uuid": uuid, "port": 49399, "name": "localhost",
                  "key": "ab" * 32, "timeout": 30}).encode()
s.sendall(struct.pack("<I", len(req)) + req)
n = struct.unpack("<I", s.recv(4))[0]
print("answer:", s.recv(n).decode())
# a lying peer: a length beyond any message, then nothing
s = session(True)
s.sendall(struct.pack("<I", 0xFFFFFFFF) + b"{}")
print("oversized message: connection", "closed" if s.recv(16) == b"" else "open")
try:
    session(False)
    print("without a certificate: accepted")
except (OSError, ssl.SSLError) as e:
    print("without a certificate: refused:", e)
PY
sed 's/^/  asking hintmigd directly: /' "$tmp/ask.log"
grep -q '"status":"refused".*libvirt is not migrating it out' "$tmp/ask.log" ||
	fail "a request for a domain that is not migrating was not refused"
grep -q "without a certificate: refused" "$tmp/ask.log" || fail "a client without a certificate was not refused"
grep -q "oversized message: connection closed" "$tmp/ask.log" || fail "an oversized message did not end the connection"
grep -q "no request: a message of 4294967295 bytes" "$tmp/hintmigd-$S.log" || fail "hintmigd did not report the oversized message"
grep -q "refused a connection from 127.0.0.1: .*certificate" "$tmp/hintmigd-$S.log" || fail "hintmigd did not report the client without a certificate"
[ "$(state "$SURI")" = running ] || fail "after the direct requests the domain is $(state "$SURI")"
granted_nothing "$S" "after the direct requests (source)"

# hintmigd stopped: its mark goes, virsh migrate moves the domain as
# libvirt alone does (QEMU's stream carries the RAM). Not --live: QEMU
# 7.2's TCG dirty tracking (docs/libvirt.md)
hmd_stop $S TERM
marked_by $S $S && fail "hintmigd stopped: the domain keeps its mark"
out=$(nsenter -m -r -w -t "$(cat "$tmp/$S/libvirtd.pid")" "$hintmig" libvirt check --connect "$SURI" "$dom" 2>&1)
grep -q "^note     virsh migrate: without hints" <<<"$out" ||
	fail "hintmig libvirt check does not say virsh migrate goes without hints"
: > "$tmp/$D/log/qemu/$dom-hintmig.log"
if virsh -q -c "$SURI" migrate "$dom" "$DURI" > "$tmp/mig.log" 2>&1; then
	lmib=$(libvirt_mib "$DURI")
	echo "without hintmigd: libvirt's stream ${lmib:-?} MiB"
	awk -v m="${lmib:-0}" 'BEGIN { exit !(m > 64) }' || fail "without hintmigd: libvirt's stream carried only ${lmib:-?} MiB"
	[ -s "$tmp/$D/log/qemu/$dom-hintmig.log" ] && fail "without hintmigd: hintmig's hook received"
	lv_wait_rounds 3 || fail "without hintmigd: the guest made no progress"
else
	cat "$tmp/mig.log"
	fail "without hintmigd: virsh migrate failed"
fi
# hintmigd's metadata kept in a definition (dumpxml of a running domain,
# defined elsewhere) must not stop an ordinary start: the hook's receiver
# finds no incoming migration and nobody is asked (here, nobody answers)
starts_with_metadata "$DURI" "stale hintmigd metadata" \
	"<hintmigd:host xmlns:hintmigd='$NS' addr='127.0.0.1:9' name='127.0.0.1'/>"
left=$(comm -13 <(echo "$tmp_before") <(tmp_files) | grep .)
[ -z "$left" ] || fail "hintmig left files in /tmp: $(echo $left)"
n=$(lv_errors)
[ "$n" = 0 ] || { lv_serial | grep -a 'HMW: ERROR\|FAILED\|Kernel panic' | head -5; fail "$n guest error line(s)"; }
sed 's/^/  hintmigd A: /' "$tmp/hintmigd-A.log" | grep -v "round" | tail -8
[ "$fails" = 0 ] || { echo "$fails checks failed"; exit 1; }
echo "PASS virsh migrate with hints: virsh, virDomainMigrateToURI3, --p2p --tls; faults"

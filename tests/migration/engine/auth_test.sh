#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# R17 end to end with the command-line tools: a receiver with a key on a
# TCP port, intruders first (one that connects and closes, one that sends
# garbage, a sender with another key, one that trickles a byte per second
# past --hello-timeout): each is dropped and counted, nothing is written
# (the RAM file stays empty), and the real sender, which holds the key,
# then migrates its synthetic guest verified. Then: a sender with the key
# never sends to a squatter on the port (it gets no proof); TCP without a
# key is refused unless --insecure; an authenticated sender whose guest is
# over --max-ram is refused with the numbers. Handshakes run in parallel:
# connections held open by one address cost the real sender nothing.
#   auth_test.sh HINTMIG
set -uo pipefail
HM=$1
. "$(dirname "$0")/../free_port.sh"
TMP=$(mktemp -d /tmp/hm-auth.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
command -v python3 >/dev/null || { echo "FAIL python3 absent (scripts/setup.sh installs it)"; exit 1; }

head -c 32 /dev/urandom > "$TMP/key"; chmod 600 "$TMP/key"
head -c 32 /dev/urandom > "$TMP/other"; chmod 600 "$TMP/other"
port=$(hm_free_port) || exit 1
addr=tcp:127.0.0.1:$port

# a key file others can read is refused
cp "$TMP/key" "$TMP/loose"; chmod 644 "$TMP/loose"
out=$("$HM" recv --listen "$addr" --key-file "$TMP/loose" 2>&1); rc=$?
[ $rc = 2 ] && grep -q "readable by its owner only" <<<"$out" || fail "a group/other-readable key file was accepted ($rc: $out)"
# TCP without a key: refused unless --insecure
out=$("$HM" recv --listen "$addr" 2>&1); rc=$?
[ $rc = 2 ] && grep -q "without --key-file" <<<"$out" || fail "TCP without a key was not refused ($rc: $out)"
out=$("$HM" send --to "$addr" 2>&1); rc=$?
[ $rc = 2 ] && grep -q "without --key-file" <<<"$out" || fail "send over TCP without a key was not refused ($rc: $out)"
echo "ok refusals: loose key file, TCP without --key-file (both ends)"

: > "$TMP/ram"
# both ends here take the key from a descriptor handed down (/dev/fd/N,
# as hintmig's libvirt parts pass it in a memfd)
"$HM" recv --listen "$addr" --key-file /dev/fd/7 --ram-file "$TMP/ram" \
	--hello-timeout 2000 --accept-timeout 120000 > "$TMP/recv.out" 2> "$TMP/recv.log" 7< "$TMP/key" &
rpid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$TMP/recv.log" && break; sleep 0.05; done

py() { python3 - "$port" "$@"; }
# 1 connect and close
py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.close()
PY
# 2 garbage
py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(40); s.sendall(b"GET / HTTP/1.0\r\n" * 8); s.settimeout(5)
try: s.recv(100)
except Exception: pass
s.close()
PY
# 3 another key: hintmig send fails, named
out=$("$HM" send --to "$addr" --key-file "$TMP/other" --guest-ram 64M --verify 2>&1); rc=$?
[ $rc = 3 ] || fail "a sender with another key: exit $rc, want 3"
grep -q "authentication failed" <<<"$out" || fail "a sender with another key was not told why: $out"
# 4 a byte a second, past --hello-timeout 2000
t0=$(date +%s%N)
py <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(40)
try:
    for i in range(10):
        s.sendall(b"x"); time.sleep(1)
except Exception:
    pass
s.close()
PY
t1=$(date +%s%N)
sleep 0.3
n=$(grep -c "refused so far" "$TMP/recv.log")
[ "$n" = 4 ] || { sed 's/^/  recv: /' "$TMP/recv.log"; fail "$n intruders refused, want 4"; }
grep -q "no complete answer to the challenge in time" "$TMP/recv.log" || fail "the slow intruder was not cut at --hello-timeout"
[ "$(stat -c %s "$TMP/ram")" = 0 ] || fail "the RAM file changed ($(stat -c %s "$TMP/ram") bytes) before the real sender came"
kill -0 $rpid 2>/dev/null || fail "the receiver gave up on intruders"
grep "refused so far" "$TMP/recv.log" | sed 's/^/  /'
echo "ok 4 intruders dropped and counted, RAM file untouched, receiver still waiting"

# the real sender
"$HM" send --to "$addr" --key-file /proc/self/fd/7 --guest-ram 64M --verify \
	--json "$TMP/send.json" > "$TMP/send.out" 2>&1 7< "$TMP/key"; rc=$?
wait $rpid; rrc=$?
[ $rc = 0 ] || { cat "$TMP/send.out"; fail "the real sender: exit $rc"; }
[ $rrc = 0 ] || { cat "$TMP/recv.log"; fail "the receiver: exit $rrc"; }
grep -q "^verify: [1-9][0-9]* pages checked, 0 mismatches$" "$TMP/send.out" || { cat "$TMP/send.out"; fail "no clean verification"; }
[ "$(stat -c %s "$TMP/ram")" = $((64 << 20)) ] || fail "the RAM file is $(stat -c %s "$TMP/ram") bytes"
echo "ok the real sender migrated after the intruders (both keys from /dev/fd/7): $(grep '^verify:' "$TMP/send.out")"

# a squatter on the port: the sender sends it nothing
python3 - "$port" > "$TMP/squat.out" <<'PY' &
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(8)
print("listening", flush=True)
c, _ = l.accept()
c.sendall(b"\0" * 40)          # no challenge of hintmig's
c.settimeout(5); got = 0
try:
    while True:
        b = c.recv(65536)
        if not b: break
        got += len(b)
except Exception:
    pass
print("received", got, flush=True)
PY
sq=$!
for _ in $(seq 1 50); do grep -q listening "$TMP/squat.out" && break; sleep 0.1; done
out=$("$HM" send --to "$addr" --key-file "$TMP/key" --guest-ram 64M 2>&1); rc=$?
wait $sq
got=$(sed -n 's/^received //p' "$TMP/squat.out")
[ $rc = 3 ] || fail "a sender facing a squatter: exit $rc, want 3"
grep -q "authentication failed" <<<"$out" || fail "the sender did not say why: $out"
[ "${got:-x}" -le 72 ] 2>/dev/null || fail "the squatter received ${got:-?} bytes (at most the 72-byte answer)"
echo "ok a squatter got ${got:-?} bytes (the answer to its challenge, no page)"

# an authenticated sender with more RAM than --max-ram: refused, named
"$HM" recv --listen "$addr" --key-file "$TMP/key" --max-ram 32M > /dev/null 2> "$TMP/recv2.log" &
rpid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$TMP/recv2.log" && break; sleep 0.05; done
out=$("$HM" send --to "$addr" --key-file "$TMP/key" --guest-ram 64M 2>&1); rc=$?
wait $rpid
[ $rc = 3 ] || fail "over --max-ram: send exit $rc"
grep -q "the limit is" "$TMP/recv2.log" || fail "over --max-ram: not named ($(tail -2 "$TMP/recv2.log"))"
echo "ok over --max-ram: $(grep -o 'refused: .*' "$TMP/recv2.log" | head -1)"

# Handshakes in parallel (the gate): six silent intruders from another
# address (127.0.0.2) hold their connections open, each worth the whole
# --hello-timeout; taken one at a time they would outlast the accept
# deadline (6 x 4 s > 6 s). Four wait in their own slots, two are refused
# at once (the limit per address), and the real sender gets through.
"$HM" recv --listen "$addr" --key-file "$TMP/key" --ram-file "$TMP/ram3" \
	--hello-timeout 4000 --accept-timeout 6000 > /dev/null 2> "$TMP/recv3.log" &
rpid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$TMP/recv3.log" && break; sleep 0.05; done
python3 - "$port" > "$TMP/hold.out" <<'PY' &
import socket, sys, time
held = []
for i in range(6):
    s = socket.socket(); s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", int(sys.argv[1]))); held.append(s)
print("holding", flush=True)
time.sleep(8)
PY
hold=$!
for _ in $(seq 1 50); do grep -q holding "$TMP/hold.out" && break; sleep 0.1; done
sleep 0.3
"$HM" send --to "$addr" --key-file "$TMP/key" --guest-ram 64M --verify > "$TMP/send3.out" 2>&1; rc=$?
wait $rpid; rrc=$?
kill $hold 2>/dev/null; wait $hold 2>/dev/null
[ $rc = 0 ] && [ $rrc = 0 ] || { sed 's/^/  recv: /' "$TMP/recv3.log"; fail "six held connections: send $rc, recv $rrc (want 0, 0: handshakes in parallel)"; }
n=$(grep -c "the limit per address" "$TMP/recv3.log")
[ "$n" = 2 ] || fail "$n connections refused by the limit per address, want 2"
grep -q "^verify: [1-9][0-9]* pages checked, 0 mismatches$" "$TMP/send3.out" || fail "six held connections: no clean verification"
echo "ok six held connections from one address: $n refused at once, the rest in their slots, the real sender through ($(grep '^verify:' "$TMP/send3.out"))"

[ $fails = 0 ] || { echo "$fails auth checks failed"; exit 1; }
echo "PASS auth"

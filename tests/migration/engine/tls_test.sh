#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# R18 end to end with the command-line tools: certificates made by
# tls_certs.sh (libvirt's layout). A receiver with --tls and a key on a TCP
# port; intruders first (plain TCP garbage, a TLS client without a
# certificate, a sender whose certificate another CA signed, a TLS
# handshake trickled a byte a second): each is dropped and counted, the
# RAM file stays empty. Then the real sender migrates its synthetic guest
# through a recording proxy, verified page by page: no page of the guest
# appears in what crossed the wire (in a plain run the same check finds
# them). A proxy that flips one bit in flight makes both ends fail, named.
# A destination whose certificate names another host, and one signed by
# another CA, get nothing. A missing directory is refused before anything.
#   tls_test.sh HINTMIG
set -uo pipefail
HM=$1
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d /tmp/hm-tls.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
command -v python3 >/dev/null || { echo "FAIL python3 absent (scripts/setup.sh installs it)"; exit 1; }
command -v certtool >/dev/null || { echo "FAIL certtool absent (scripts/setup.sh installs gnutls-bin)"; exit 1; }
"$HERE/tls_certs.sh" "$TMP/pki" || { echo "FAIL cannot make test certificates"; exit 1; }
P=$TMP/pki
head -c 32 /dev/urandom > "$TMP/key"; chmod 600 "$TMP/key"
. "$HERE/../free_port.sh"
port=$(hm_free_port) || exit 1
addr=tcp:127.0.0.1:$port

wait_listen() { for _ in $(seq 1 100); do grep -q "listening on" "$1" && return 0; sleep 0.05; done; return 1; }

# a directory without the files: refused before anything, the file named
out=$("$HM" recv --listen "$addr" --tls-dir "$TMP/none" 2>&1); rc=$?
[ $rc = 4 ] && grep -q "ca-cert.pem" <<<"$out" || fail "a missing TLS directory: exit $rc ($out)"
out=$("$HM" send --to "$addr" --tls-dir "$TMP/none" 2>&1); rc=$?
[ $rc = 4 ] && grep -q "ca-cert.pem" <<<"$out" || fail "send with a missing TLS directory: exit $rc ($out)"
echo "ok a missing directory is refused: $(head -1 <<<"$out")"

: > "$TMP/ram"
"$HM" recv --listen "$addr" --tls-dir "$P/good" --key-file "$TMP/key" \
	--ram-file "$TMP/ram" --hello-timeout 2000 --accept-timeout 120000 \
	> "$TMP/recv.out" 2> "$TMP/recv.log" &
rpid=$!
wait_listen "$TMP/recv.log" || fail "the receiver did not listen"

py() { python3 - "$port" "$P" "$@"; }
# 1 plain TCP garbage
py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\r\n" * 8); s.settimeout(5)
try: s.recv(100)
except Exception: pass
s.close()
PY
# 2 a TLS client with no certificate (it trusts the CA: only the
#   certificate it lacks is missing)
py <<'PY'
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(sys.argv[2] + "/good/ca-cert.pem")
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.settimeout(5); t.recv(100)
except Exception:
    pass
s.close()
PY
# 3 a sender whose certificate another CA signed (it even holds the key)
out=$("$HM" send --to "$addr" --tls-dir "$P/mixed" --key-file "$TMP/key" --guest-ram 64M 2>&1); rc=$?
[ $rc = 3 ] || fail "a sender with another CA's certificate: exit $rc, want 3"
grep -q "does not trust our certificate" <<<"$out" || fail "that sender was not told why: $out"
# 4 a TLS ClientHello trickled a byte a second past --hello-timeout
py <<'PY'
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inb, outb)
try: o.do_handshake()
except ssl.SSLWantReadError: pass
hello = outb.read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    for i in range(10):
        s.sendall(hello[i:i+1]); time.sleep(1)
except Exception:
    pass
s.close()
PY
sleep 0.3
n=$(grep -c "refused so far" "$TMP/recv.log")
[ "$n" = 4 ] || { sed 's/^/  recv: /' "$TMP/recv.log"; fail "$n intruders refused, want 4"; }
grep -q "presented no certificate" "$TMP/recv.log" || fail "the certificate-less client was not named"
grep -q "did not finish in time" "$TMP/recv.log" || fail "the slow handshake was not cut at --hello-timeout"
[ "$(stat -c %s "$TMP/ram")" = 0 ] || fail "the RAM file changed before the real sender came"
kill -0 $rpid 2>/dev/null || fail "the receiver gave up on intruders"
grep "refused so far" "$TMP/recv.log" | sed 's/^/  /'
echo "ok 4 intruders dropped and counted, RAM file untouched, receiver still waiting"

# A recording proxy (and, with "flip", one that flips one bit 2 MiB in).
proxy() { # LISTEN_PORT MODE CAPTURE
	python3 - "$1" "$port" "$2" "$3" <<'PY' &
import socket, sys, threading
lp, dp, mode, cap = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", lp)); l.listen(16)
print("proxy listening", flush=True)
lock = threading.Lock(); out = open(cap, "wb"); flipped = [False]
def pump(a, b, up):
    seen = 0
    try:
        while True:
            d = a.recv(1 << 16)
            if not d: break
            if up:
                with lock:
                    out.write(d)
                    if mode == "flip" and not flipped[0] and seen + len(d) > (2 << 20):
                        i = (2 << 20) - seen if (2 << 20) > seen else 0
                        d = d[:i] + bytes([d[i] ^ 0x10]) + d[i+1:]
                        flipped[0] = True
                        print("flipped", flush=True)
                seen += len(d)
            b.sendall(d)
    except Exception:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except Exception: pass
while True:
    c, _ = l.accept()
    u = socket.create_connection(("127.0.0.1", dp))
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
PY
}
pport=$(( port + 1 ))
proxy $pport record "$TMP/wire.bin" > "$TMP/proxy.out"
ppid=$!
for _ in $(seq 1 50); do grep -q listening "$TMP/proxy.out" && break; sleep 0.1; done
"$HM" send --to "tcp:127.0.0.1:$pport" --tls-name localhost --tls-dir "$P/good" \
	--key-file "$TMP/key" --guest-ram 64M --verify --json "$TMP/send.json" \
	> "$TMP/send.out" 2>&1; rc=$?
wait $rpid; rrc=$?
kill $ppid 2>/dev/null; wait $ppid 2>/dev/null
[ $rc = 0 ] || { cat "$TMP/send.out"; fail "the real sender: exit $rc"; }
[ $rrc = 0 ] || { cat "$TMP/recv.log"; fail "the receiver: exit $rrc"; }
grep -q "^verify: [1-9][0-9]* pages checked, 0 mismatches$" "$TMP/send.out" || { cat "$TMP/send.out"; fail "no clean verification"; }
grep -q '"tls": "TLS1' "$TMP/send.json" || fail "the JSON report does not say TLS ran"
grep -q "^TLS: TLS1" "$TMP/recv.out" || fail "the receiver does not say TLS ran"
# what crossed the wire holds no page of the guest
leak() { # RAMFILE CAPTURE -> pages of the RAM file found in the capture
	python3 - "$1" "$2" <<'PY'
import sys
ram = open(sys.argv[1], "rb").read(); wire = open(sys.argv[2], "rb").read()
pages = [ram[i:i+4096] for i in range(0, len(ram), 4096)]
pages = [p for p in pages if p.count(0) < 3000]
step = max(1, len(pages) // 200)
probe = pages[::step]
print(len(probe), sum(1 for p in probe if p[:256] in wire))
PY
}
read -r probed found <<<"$(leak "$TMP/ram" "$TMP/wire.bin")"
[ "${probed:-0}" -gt 50 ] || fail "too few pages with data to probe (${probed:-0})"
[ "${found:-1}" = 0 ] || fail "$found of $probed guest pages found in the TLS stream"
echo "ok TLS migration verified ($(grep '^verify:' "$TMP/send.out")); $probed pages probed, $found found on the wire; $(grep '^tls:' "$TMP/send.out")"

# the same check finds them in a plain run (the check can fail)
: > "$TMP/ram2"
"$HM" recv --listen "$addr" --key-file "$TMP/key" --ram-file "$TMP/ram2" \
	> /dev/null 2> "$TMP/recv2.log" &
rpid=$!
wait_listen "$TMP/recv2.log"
proxy $pport record "$TMP/wire2.bin" > "$TMP/proxy2.out"; ppid=$!
for _ in $(seq 1 50); do grep -q listening "$TMP/proxy2.out" && break; sleep 0.1; done
"$HM" send --to "tcp:127.0.0.1:$pport" --key-file "$TMP/key" --guest-ram 64M > /dev/null 2>&1 || fail "plain reference run failed"
wait $rpid; kill $ppid 2>/dev/null; wait $ppid 2>/dev/null
read -r probed found <<<"$(leak "$TMP/ram2" "$TMP/wire2.bin")"
[ "${found:-0}" -gt 0 ] || fail "the leak check finds no page even in a plain stream"
echo "ok control: the plain stream shows $found of $probed probed pages"

# one bit flipped in flight: both ends fail, the receiver says why
: > "$TMP/ram3"
"$HM" recv --listen "$addr" --tls-dir "$P/good" --key-file "$TMP/key" \
	--ram-file "$TMP/ram3" > /dev/null 2> "$TMP/recv3.log" &
rpid=$!
wait_listen "$TMP/recv3.log"
proxy $pport flip "$TMP/wire3.bin" > "$TMP/proxy3.out"; ppid=$!
for _ in $(seq 1 50); do grep -q listening "$TMP/proxy3.out" && break; sleep 0.1; done
out=$("$HM" send --to "tcp:127.0.0.1:$pport" --tls-name localhost --tls-dir "$P/good" \
	--key-file "$TMP/key" --guest-ram 64M 2>&1); rc=$?
wait $rpid; rrc=$?
kill $ppid 2>/dev/null; wait $ppid 2>/dev/null
grep -q flipped "$TMP/proxy3.out" || fail "the proxy flipped nothing"
[ $rc = 3 ] && [ $rrc = 3 ] || fail "a flipped bit: send exit $rc, recv exit $rrc (want 3, 3)"
grep -q "TLS record failed its integrity check" "$TMP/recv3.log" || { sed 's/^/  recv: /' "$TMP/recv3.log"; fail "the receiver did not name the tampering"; }
echo "ok a flipped bit: $(grep -o 'TLS record failed[^;]*' "$TMP/recv3.log" | head -1)"

# destinations the source must not trust: it sends them nothing
for bad in misnamed rogue; do
	"$HM" recv --listen "$addr" --tls-dir "$P/$bad" --key-file "$TMP/key" \
		--accept-timeout 3000 --ram-file "$TMP/ram4" > /dev/null 2> "$TMP/recv4.log" &
	rpid=$!
	wait_listen "$TMP/recv4.log"
	out=$("$HM" send --to "$addr" --tls-dir "$P/good" --key-file "$TMP/key" --guest-ram 64M 2>&1); rc=$?
	wait $rpid
	[ $rc = 3 ] || fail "a $bad destination: send exit $rc, want 3"
	case $bad in
	misnamed) grep -q "name in the certificate does not match" <<<"$out" || fail "misnamed: not said ($out)" ;;
	rogue) grep -q "issuer is unknown" <<<"$out" || fail "rogue: not said ($out)" ;;
	esac
	[ ! -s "$TMP/ram4" ] || fail "a $bad destination received RAM"
	echo "ok $bad destination refused: $(grep -o "TLS: .*" <<<"$out" | head -1)"
done

[ $fails = 0 ] || { echo "$fails TLS checks failed"; exit 1; }
echo "PASS tls"

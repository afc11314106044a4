#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Test certificates in libvirt's migration TLS layout (certtool, Debian's
# gnutls-bin), for the TLS tests of every suite:
#   tls_certs.sh DIR [NAMES...]
# DIR/good     ca-cert.pem, server-cert.pem/-key, client-cert.pem/-key:
#              one CA; the server certificate names localhost, 127.0.0.1,
#              ::1, this host's name and NAMES
# DIR/rogue    the same names, signed by another CA (its own ca-cert.pem)
# DIR/mixed    good's CA, rogue's server and client certificates
# DIR/misnamed good's CA, a server certificate for other.invalid only
# Each also holds dh-params.pem (QEMU's server end would compute its own).
# Keys are 0600; files are readable by the group of DIR (QEMU's user may
# need them: chgrp -R).
set -euo pipefail
dir=$1; shift
command -v certtool >/dev/null || { echo "tls_certs.sh: certtool missing (apt-get install gnutls-bin)" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ca() { # NAME -> $tmp/NAME-ca-{key,cert}.pem
	certtool --generate-privkey --key-type=ecdsa --outfile "$tmp/$1-ca-key.pem" 2>/dev/null
	cat > "$tmp/$1-ca.info" <<-I
	cn = hintmig test CA $1
	ca
	cert_signing_key
	expiration_days = 30
	I
	certtool --generate-self-signed --load-privkey "$tmp/$1-ca-key.pem" \
		--template "$tmp/$1-ca.info" --outfile "$tmp/$1-ca-cert.pem" 2>/dev/null
}

leaf() { # CA ROLE OUTDIR NAMES...
	local c=$1 role=$2 out=$3; shift 3
	certtool --generate-privkey --key-type=ecdsa --outfile "$out/$role-key.pem" 2>/dev/null
	{
		echo "cn = ${1:-hintmig}"
		echo "expiration_days = 30"
		echo "signing_key"
		echo "encryption_key"
		if [ "$role" = server ]; then
			echo "tls_www_server"
			for n in "$@"; do
				case $n in
				*[!0-9.:a-f]*|"") echo "dns_name = $n" ;;
				*) echo "ip_address = $n" ;;
				esac
			done
		else
			echo "tls_www_client"
		fi
	} > "$tmp/$role.info"
	certtool --generate-certificate --load-privkey "$out/$role-key.pem" \
		--load-ca-certificate "$tmp/$c-ca-cert.pem" \
		--load-ca-privkey "$tmp/$c-ca-key.pem" \
		--template "$tmp/$role.info" --outfile "$out/$role-cert.pem" 2>/dev/null
	chmod 0640 "$out/$role-key.pem"
}

names=(localhost 127.0.0.1 ::1 "$(hostname)" "$@")
ca good
ca rogue
for d in good rogue mixed misnamed; do mkdir -p "$dir/$d"; done
cp "$tmp/good-ca-cert.pem" "$dir/good/ca-cert.pem"
leaf good server "$dir/good" "${names[@]}"
leaf good client "$dir/good" hintmig-source
cp "$tmp/rogue-ca-cert.pem" "$dir/rogue/ca-cert.pem"
leaf rogue server "$dir/rogue" "${names[@]}"
leaf rogue client "$dir/rogue" hintmig-source
cp "$tmp/good-ca-cert.pem" "$dir/mixed/ca-cert.pem"
cp "$dir/rogue/"{server,client}-{cert,key}.pem "$dir/mixed/"
cp "$tmp/good-ca-cert.pem" "$dir/misnamed/ca-cert.pem"
leaf good server "$dir/misnamed" other.invalid
cp "$dir/good/"client-{cert,key}.pem "$dir/misnamed/"
# QEMU's tls-creds-x509 (server) computes Diffie-Hellman parameters when
# the directory has none (about a second of CPU at every migration):
# RFC 7919's, as certtool knows them
certtool --get-dh-params --bits 2048 > "$tmp/dh-params.pem" 2>/dev/null ||
	certtool --get-dh-params > "$tmp/dh-params.pem"
for d in good rogue mixed misnamed; do cp "$tmp/dh-params.pem" "$dir/$d/"; done
chmod -R go-w "$dir"

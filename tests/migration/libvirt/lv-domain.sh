# SPDX-License-Identifier: GPL-2.0-or-later
# The libvirt domain of the tests and the benchmark (sourced after
# libvirtd-pair.sh): the QEMU suite's Debian guest and workload in a TCG
# domain set up for hintmig (docs/libvirt.md), hintmig's hook and emulator
# wrapper for both instances, and the workload's progress from the serial
# log.
#
#   lv_begin NAME MKGUEST WORKLOAD CACHE   a directory LV_TMP (removed, both
#                                  libvirtd stopped, at exit), the guest
#                                  LV_GUEST
#   lv_hintmig_setup DIR HINTMIG   before lv_start: hooks of A and B, the
#                                  wrapper; sets LV_EMULATOR
#   lv_pki DIR                     before lv_start: libvirt's migration
#                                  certificates (one CA) in A's and B's own
#                                  /var/lib/libvirt/hm-pki, named in their
#                                  qemu.conf (LV_QEMU_CONF_EXTRA); the
#                                  test's others in DIR/pki (tls_certs.sh)
#   lv_hintmig_migrate FROM TO [OPTIONS...] DOMAIN   hintmig migrate from
#                                  instance FROM to TO, in FROM's mount
#                                  namespace (the source host's view), on a
#                                  random loopback port (LV_HM_PORT: this one)
#   lv_domain_xml NAME GUEST SERIAL [EXTRA_DEVICES [EXTRA_TOP]]   RAM in a
#                                  file of memory_backing_dir (LV_RAM_SOURCE:
#                                  another <source type=...>)
#   lv_rounds / lv_last_round / lv_errors / lv_wait_rounds N   (SERIAL in
#                                  $LV_SERIAL: one file, or one per host)

# test listeners' ports (hm_free_port)
. "$(dirname "${BASH_SOURCE[0]}")/../free_port.sh"
LV_EMULATOR=$(command -v qemu-system-x86_64)
LV_SERIAL=

lv_begin() { # NAME MKGUEST WORKLOAD CACHE
	LV_TMP=$(mktemp -d "/tmp/hm-$1.XXXXXX") || lv_die "mktemp"
	trap 'lv_stop_all; rm -rf "$LV_TMP"' EXIT
	trap 'exit 1' INT TERM
	LV_GUEST=$(sh "$2" "$3" "$4") || lv_die "cannot build the guest"
	LV_GUEST=$(cd "$LV_GUEST" && pwd)
	if [ "${LV_STOCK:-0}" = 1 ]; then
		# QEMU as libvirt-qemu opens the kernel, the initrd and the
		# serial log by path: a directory it can traverse, copies of
		# the guest outside root's cache (dynamic ownership chowns
		# them and gives them back)
		chmod 755 "$LV_TMP"
		mkdir -p "$LV_TMP/guest"
		cp "$LV_GUEST/vmlinuz" "$LV_GUEST/initramfs.cpio" "$LV_TMP/guest/" ||
			lv_die "cannot copy the guest"
		LV_GUEST=$LV_TMP/guest
	fi
}

lv_hintmig_setup() { # DIR HINTMIG
	local dir=$1 hintmig=$2 n
	# meson's configure_file keeps no mode: an executable copy
	cp "$(dirname "$hintmig")/src/tools/hintmig-qemu" "$dir/hintmig-qemu" &&
		chmod 755 "$dir/hintmig-qemu" || lv_die "no hintmig-qemu beside $hintmig"
	LV_EMULATOR=$dir/hintmig-qemu
	LV_DIR=$dir LV_HINTMIG=$hintmig
	for n in A B; do
		mkdir -p "$dir/$n/etc/hooks/qemu.d"
		# as installed in /etc/libvirt/hooks/qemu.d/50-hintmig
		printf '#!/bin/sh\nexec %s libvirt hook "$@"\n' "$hintmig" \
			> "$dir/$n/etc/hooks/qemu.d/50-hintmig"
		chmod 755 "$dir/$n/etc/hooks/qemu.d/50-hintmig"
	done
}

lv_pki() { # DIR
	local n
	"$(dirname "${BASH_SOURCE[0]}")/../engine/tls_certs.sh" "$1/pki" ||
		lv_die "cannot make test certificates (certtool)"
	for n in A B; do
		mkdir -p "$1/$n/lib"
		cp -r "$1/pki/good" "$1/$n/lib/hm-pki"
	done
	export LV_QEMU_CONF_EXTRA='migrate_tls_x509_cert_dir = "/var/lib/libvirt/hm-pki"'
}

lv_hintmig_migrate() { # FROM TO [OPTIONS...] DOMAIN
	local from=$1 to=$2 furi turi
	shift 2
	eval "furi=\$LV_URI_$from turi=\$LV_URI_$to"
	# -r -w: inside a chroot (the Debian 13 root) stay in it
	nsenter -m -r -w -t "$(cat "$LV_DIR/$from/libvirtd.pid")" "$LV_HINTMIG" \
		migrate -c "$furi" --hintmig-uri "tcp:127.0.0.1:${LV_HM_PORT:-$(hm_free_port)}" \
		"$@" "$turi"
}

# The agent's socket is in each instance's own /run/libvirt (two hosts,
# one /tmp: a shared path would be unlinked by the QEMU that migrated away).
lv_domain_xml() { # NAME GUEST SERIAL [EXTRA_DEVICES [EXTRA_TOP]]
	local name=$1 guest=$2 serial=$3
	cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$name</name>
  <memory unit='KiB'>524296</memory>
  <vcpu>1</vcpu>
  ${5:-}
  <memoryBacking>
    <source type='${LV_RAM_SOURCE:-file}'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$guest/vmlinuz</kernel>
    <initrd>$guest/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 panic=-1 init_on_alloc=0 init_on_free=0 transparent_hugepage=never hm.fill=128 hm.ws=16 hm.static=4 hm.hot=0 hm.hotreps=64 hm.seed=11 hm.agent=1</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$LV_EMULATOR</emulator>
    <serial type='file'><source path='$serial' append='on'/><target port='0'/></serial>
    <console type='file'><source path='$serial' append='on'/><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind'$([ "${LV_STOCK:-0}" = 1 ] || echo " path='/run/libvirt/qemu/$name-agent.sock'")/><target type='virtio' name='org.hintmig.agent.0'/></channel>
    ${4:-<memballoon model='none'/>}
  </devices>
</domain>
XML
}

# LV_SERIAL: one serial log, or (a stock pair) one per host, words
lv_serial() { local f; for f in $LV_SERIAL; do cat "$f" 2>/dev/null; done; }
lv_rounds() { local n; n=$(lv_serial | grep -ac 'HMW: round .* ok'); echo "${n:-0}"; }
lv_last_round() { local n; n=$(lv_serial | grep -ao 'HMW: round [0-9]*' | awk '{ print $3 }' | sort -n | tail -1); echo "${n:-0}"; }
lv_errors() { local n; n=$(lv_serial | grep -ac 'HMW: ERROR\|FAILED\|Kernel panic'); echo "${n:-0}"; }
lv_wait_rounds() { # N more round lines within 120 s
	local want=$(( $(lv_rounds) + $1 ))
	for _ in $(seq 1 600); do
		[ "$(lv_rounds)" -ge "$want" ] && return 0
		sleep 0.2
	done
	return 1
}

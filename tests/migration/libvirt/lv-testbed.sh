# SPDX-License-Identifier: GPL-2.0-or-later
# The libvirt tests' bed (sourced by test_virsh_migrate.sh and
# test_virsh_hinted.sh after libvirtd-pair.sh and lv-domain.sh, with the
# test's arguments MKGUEST WORKLOAD CACHE [HINTMIG [HM_RAMCMP]]): two
# libvirtd A and B (LV_STOCK=1: Debian's qemu.conf), each with libvirt's
# migration certificates in its own /var/lib/libvirt/hm-pki, hintmig's
# hook and the test's compare hook (with $tmp/compare holding
# "--hinted-map MAP", the started hook compares the paused source's RAM
# with the new QEMU's, page by page, once MAP exists), a hugetlbfs mount
# unless LV_HUGE=0, and the domain $dom running on A with its workload.
# Gives: tmp guest dom serial serial_dir agent_sock have_migrate fails,
# fail skip state state_of wait_running qemu_pid granted_nothing timeline.

mkguest=$1 workload=$2 cache=$3 hintmig=${4:-} ramcmp=${5:-}
have_migrate=0
if [ -n "$hintmig" ]; then
	"$hintmig" --help | grep -q '^  migrate' ||
		{ echo "FAIL $hintmig has no migrate command (built without libvirt-dev?): hintmig's half cannot run"; exit 1; }
	have_migrate=1
fi

skip() {
	echo "SKIP: $*"
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && { echo "strict: this is a failure"; exit 1; }
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (libvirtd in system mode, mount namespaces)"
for t in libvirtd virsh unshare qemu-system-x86_64; do
	command -v "$t" >/dev/null ||
		skip "$t is absent (apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86)"
done

fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

lv_begin libvirt "$mkguest" "$workload" "$cache"
tmp=$LV_TMP guest=$LV_GUEST
echo "guest: $guest"
trace=${HM_LIBVIRT_TRACE:-0}
dom=hm-virsh
# libvirt's monitor traffic logged (what it gives QEMU for TLS, R18)
export LV_LOG_LEVEL=1 LV_LOG_FILTERS="1:qemu_monitor 3:*"
if [ "$trace" = 1 ]; then
	export LV_LOG_LEVEL=1 LV_LOG_FILTERS="1:qemu 3:*"
	for n in A B; do # a hook that logs its calls
		mkdir -p "$tmp/$n/etc/hooks"
		printf '#!/bin/sh\necho "$(date +%%T.%%N) hook %s: $*" >> %s\ncat > /dev/null\n' \
			"$n" "$tmp/hooks.log" > "$tmp/$n/etc/hooks/qemu"
		chmod +x "$tmp/$n/etc/hooks/qemu"
	done
fi
if [ "$have_migrate" = 1 ]; then
	lv_hintmig_setup "$tmp" "$hintmig"
	for n in A B; do
		o=B; [ $n = B ] && o=A
		# the test's, after it: with $tmp/compare set, compare the
		# RAM of the paused source (the other instance's QEMU) and
		# this new QEMU, page by page, before libvirt goes on
		cat > "$tmp/$n/etc/hooks/qemu.d/90-hm-compare" <<-EOF
		#!/bin/bash
		cat > /dev/null
		[ "\$2" = started ] && [ -f $tmp/compare ] || exit 0
		# hintmig send writes its hinted map right after the
		# acknowledgement that let hintmig's hook return
		map=\$(sed -n 's/^--hinted-map //p' $tmp/compare)
		for i in \$(seq 1 100); do [ -f "\$map" ] && break; sleep 0.1; done
		ramfile() { local f; for f in /proc/\$1/fd/*; do
			# (another mount namespace's file may read as the
			# path from its absolute root: */dev/shm/*, and in
			# the Debian 13 root with the root's path before it)
			case \$(readlink "\$f") in */dev/shm/*|*/memfd:memory-backend-memfd*|*$tmp/hugepages/*) echo "\$f"; return;; esac
		done; }
		src=\$(ramfile \$(cat $tmp/$o/run/qemu/\$1.pid)) dst=\$(ramfile \$(cat /run/libvirt/qemu/\$1.pid))
		echo "compare $o to $n: \$src \$dst" >> $tmp/compare.log
		$ramcmp \$(cat $tmp/compare) "\$src" "\$dst" >> $tmp/compare.log 2>&1
		echo "ramcmp exit \$?" >> $tmp/compare.log
		exit 0
		EOF
		chmod +x "$tmp/$n/etc/hooks/qemu.d/"*
	done
fi
timeline() { # the QMP traffic of libvirtd NAME about migration, with times
	grep -a "QEMU_MONITOR_SEND_MSG\|qemuProcessHandleStop\|qemuProcessHandleMigrationStatus" \
		"$tmp/$1/log/libvirtd.log" |
		sed 's/+0000: [0-9]*: [a-z]* : / /' |
		grep -o '^[0-9-]* [0-9:.]* [A-Za-z]*\|"execute":"[a-z-]*"\|changed state to [a-z-]*\|"capability":"[a-z-]*","state":true' |
		paste -sd' ' | sed 's/ \(20[0-9][0-9]-\)/\n\1/g' |
		grep -E 'migrate|HandleStop|changed state|"cont"' | grep -v '"query-migrate' |
		cut -d' ' -f2- | sed "s/^/  trace $1: /"
}
# R18: libvirt's migration TLS certificates on each "host", in its own
# /var/lib/libvirt (QEMU's user reads them), named in its qemu.conf
if [ "$have_migrate" = 1 ]; then
	lv_pki "$tmp"
	if [ "${LV_HUGE:-1}" = 1 ]; then
		# big guests: a hugetlbfs mount of the test's (2 MiB pages)
		# that both "hosts" use for <hugepages/>, and the pool grown
		# for two copies of the guest (given back at exit)
		huge_was=$(cat /proc/sys/vm/nr_hugepages)
		mkdir -p "$tmp/hugepages"
		mount -t hugetlbfs -o pagesize=2M hintmig-lv "$tmp/hugepages" || lv_die "cannot mount hugetlbfs"
		trap 'lv_stop_all; umount -l "$tmp/hugepages" 2>/dev/null; echo "$huge_was" > /proc/sys/vm/nr_hugepages; rm -rf "$LV_TMP"' EXIT
		echo $((huge_was + 2 * 257 + 8)) > /proc/sys/vm/nr_hugepages
		LV_QEMU_CONF_EXTRA="$LV_QEMU_CONF_EXTRA
hugetlbfs_mount = \"$tmp/hugepages\""
	fi
fi
lv_start "$tmp" A 6a1d0a00-0000-4000-8000-00000000000a
lv_start "$tmp" B 6a1d0a00-0000-4000-8000-00000000000b
if [ "$have_migrate" = 1 ]; then
	for n in A B; do
		chgrp -R "$(id -gn libvirt-qemu)" "$tmp/$n/lib/hm-pki" &&
			chmod -R g+rX "$tmp/$n/lib/hm-pki" || lv_die "cannot give the certificates to libvirt-qemu"
	done
fi

serial=$tmp/serial.log serial_dir=$tmp
LV_SERIAL=$serial
if [ "${LV_STOCK:-0}" = 1 ]; then
	# one serial log per host: remember_owner refuses to relabel a file
	# that the other host's QEMU holds (on one machine, one file); in
	# each instance's own /var/lib/libvirt, which QEMU's user can reach
	serial_dir=/var/lib/libvirt/hm-serial serial=/var/lib/libvirt/hm-serial/serial.log
	mkdir -p "$tmp/A/lib/hm-serial" "$tmp/B/lib/hm-serial"
	LV_SERIAL="$tmp/A/lib/hm-serial/serial.log $tmp/B/lib/hm-serial/serial.log"
fi
agent_sock=/run/libvirt/qemu/$dom-agent.sock
# a stock host: libvirt names the channel's socket itself (9.0: in
# /var/lib/libvirt/qemu/channel/target/domain-ID-NAME/, 11.3:
# /run/libvirt/qemu/channel/ID-NAME/)
[ "${LV_STOCK:-0}" = 1 ] && agent_sock="/[a-z/]*/qemu/channel/[a-z/]*[-0-9]*$dom/org.hintmig.agent.0"
lv_domain_xml "$dom" "$guest" "$serial" > "$tmp/dom.xml"
state_of() { virsh -q -c "$1" domstate "$2" 2>/dev/null | head -1; }
state() { state_of "$1" "$dom"; }
wait_running() { # URI: the domain running there within 20 s
	for _ in $(seq 1 100); do
		[ "$(state "$1")" = running ] && return 0
		sleep 0.2
	done
	return 1
}

virsh -q -c "$LV_URI_A" create "$tmp/dom.xml" || lv_die "virsh create failed"
lv_wait_rounds 5 || { cat $LV_SERIAL | tail -20; lv_die "the guest did not start its rounds"; }
echo "guest running on A: round $(lv_last_round)"

# QEMU of instance N: pid, and (stock) what it was given is all taken back
qemu_pid() { cat "$tmp/$1/run/qemu/$dom.pid" 2>/dev/null; }
granted_nothing() { # N WHAT: its QEMU holds no userfaultfd, no
	# /dev/userfaultfd, has no tracer, and still runs as libvirt-qemu
	local pid f l tr
	pid=$(qemu_pid "$1")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || { fail "$2: no QEMU on $1"; return; }
	for f in /proc/$pid/fd/*; do
		l=$(readlink "$f" 2>/dev/null) || continue
		case $l in *userfaultfd*) fail "$2: QEMU $pid still holds $l (fd ${f##*/})";; esac
	done
	tr=$(awk '/^TracerPid:/ { print $2 }' "/proc/$pid/status")
	[ "$tr" = 0 ] || fail "$2: QEMU $pid is still traced by $tr"
	[ "$(stat -c %U "/proc/$pid")" = libvirt-qemu ] || fail "$2: QEMU $pid runs as $(stat -c %U "/proc/$pid")"
	[ "$(cat /proc/sys/vm/unprivileged_userfaultfd)" = 0 ] || fail "$2: vm.unprivileged_userfaultfd changed"
	[ "$(stat -c %a:%U /dev/userfaultfd)" = "$uffd_dev_mode" ] || fail "$2: /dev/userfaultfd is $(stat -c %a:%U /dev/userfaultfd), was $uffd_dev_mode"
	echo "$2: QEMU $pid (libvirt-qemu): no userfaultfd, no /dev/userfaultfd, no tracer"
}
if [ "${LV_STOCK:-0}" = 1 ]; then
	# the stock host is what it claims: QEMU as libvirt-qemu, in a mount
	# namespace of its own (private /dev), and no host-wide setting
	# that would let it make a userfaultfd for kernel faults itself
	uffd_dev_mode=$(stat -c %a:%U /dev/userfaultfd)
	qp=$(qemu_pid A)
	[ "$(stat -c %U "/proc/$qp")" = libvirt-qemu ] || fail "stock: QEMU runs as $(stat -c %U "/proc/$qp"), not libvirt-qemu"
	[ "$(readlink "/proc/$qp/ns/mnt")" != "$(readlink "/proc/$(cat "$tmp/A/libvirtd.pid")/ns/mnt")" ] ||
		fail "stock: QEMU shares libvirtd's mount namespace"
	[ "$(cat /proc/sys/vm/unprivileged_userfaultfd)" = 0 ] || fail "stock: vm.unprivileged_userfaultfd is not 0: the test would prove nothing"
	echo "stock: QEMU $qp runs as libvirt-qemu in its own mount namespace; vm.unprivileged_userfaultfd 0; /dev/userfaultfd $uffd_dev_mode"
fi

# An ordinary start of a domain whose definition kept migration metadata
# (METADATA, an element of hintmig's or hintmigd's) must not fail: the
# hook finds no incoming migration and lets libvirt go on.
starts_with_metadata() { # URI WHAT METADATA
	sed -e "s|<name>$dom</name>|<name>hm-meta</name><metadata>$3</metadata>|" \
	    -e "s|$serial|$serial_dir/meta.serial|g" -e "s|$dom-agent|hm-meta-agent|" "$tmp/dom.xml" > "$tmp/meta.xml"
	if virsh -q -c "$1" create "$tmp/meta.xml" > "$tmp/meta.log" 2>&1; then
		echo "$2: hm-meta started ($(state_of "$1" hm-meta))"
		virsh -q -c "$1" destroy hm-meta >/dev/null 2>&1
	else
		sed "s/^/  $2: /" "$tmp/meta.log"
		fail "$2: a domain with that metadata did not start"
	fi
}

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Figures of issue 14 (reported, not asserted): the same libvirt domain
# (lv-domain.sh: the QEMU suite's Debian guest, 513 MiB, its workload, TCG)
# migrated A to B between two libvirtd 9.0 (libvirtd-pair.sh) four ways:
#   plain         virsh migrate (not --live: the guest paused for the copy)
#   plain-live    virsh migrate --live
#   qemu-hint     virsh migrate --live, QEMU's own virtio-balloon
#                 free-page-hint through <qemu:override> (taints)
#   hintmig       hintmig migrate (hintmig-agent's hints)
#   virsh-hmd     virsh migrate --live with hintmigd on the source (the
#                 RAM by hintmig with the agent's hints, always in TLS;
#                 docs/libvirt.md "Plain virsh migrate")
# Each on a freshly started domain that has run the same number of workload
# rounds. Printed per run: wall time of the command, libvirt's job time,
# libvirt's downtime (vCPUs stopped on the source to running on the
# destination), bytes (libvirt's stream, plus hintmig's RAM), and whether
# the workload went on verifying on B (its error lines).
#
#   bench_libvirt.sh MKGUEST WORKLOAD CACHE HINTMIG [RUNS]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirtd-pair.sh"
. "$here/lv-domain.sh"
mkguest=$1 workload=$2 cache=$3 hintmig=$4 runs=${5:-1}

[ "$(id -u)" = 0 ] || lv_die "needs root"
lv_begin lvbench "$mkguest" "$workload" "$cache"
tmp=$LV_TMP guest=$LV_GUEST
lv_hintmig_setup "$tmp" "$hintmig"
# libvirt's migration certificates on each host, for hintmigd
lv_pki "$tmp"
lv_start "$tmp" A 6a1d0a00-0000-4000-8000-0000000000ba
lv_start "$tmp" B 6a1d0a00-0000-4000-8000-0000000000bb
# hintmigd on A for the virsh-hmd way only: running, it marks every
# domain set up for hintmig, and plain virsh migrate would use it
hmd_port=$(hm_free_port) hmd_pid=
hmd() { # start|stop
	if [ "$1" = start ]; then
		nsenter -m -r -w -t "$(cat "$tmp/A/libvirtd.pid")" "$hintmig" daemon -c "$LV_URI_A" \
			--listen "tcp:127.0.0.1:$hmd_port" --advertise "127.0.0.1:$hmd_port" >> "$tmp/hintmigd.log" 2>&1 &
		hmd_pid=$!
	elif [ -n "$hmd_pid" ]; then
		kill "$hmd_pid" 2>/dev/null
		wait "$hmd_pid" 2>/dev/null
		hmd_pid=
	fi
}
trap 'hmd stop; lv_stop_all; rm -rf "$LV_TMP"' EXIT
# libvirt probes a QEMU binary's capabilities once per host, then keeps
# them on disk: the domains' emulator (Begin and Prepare: about 4 s here
# under TCG), and the default binary behind virConnectGetVersion
# (hintmig migrate asks it: about 7 s). Probed before any clock runs, or
# the first migration of each way would carry them.
t0=$(date +%s%N)
for h in A B; do
	virsh -q -c "$(eval "echo \$LV_URI_$h")" version > /dev/null 2>&1
	virsh -q -c "$(eval "echo \$LV_URI_$h")" domcapabilities --emulatorbin "$LV_EMULATOR" \
		--virttype qemu > /dev/null 2>&1
done
echo "libvirt's QEMU capabilities probed on A and B in $(( ($(date +%s%N) - t0) / 1000000 )) ms (once per host)"

# QEMU's free page hinting: a balloon with free-page-hint, which QEMU
# accepts only with an iothread
fph_dev="<memballoon model='virtio'><alias name='ua-hmballoon'/></memballoon>"
fph_top="<iothreads>1</iothreads>"
fph_ovr="<qemu:override><qemu:device alias='ua-hmballoon'><qemu:frontend>
<qemu:property name='free-page-hint' type='bool' value='true'/>
<qemu:property name='iothread' type='string' value='iothread1'/>
</qemu:frontend></qemu:device></qemu:override>"

jobinfo() { # URI DOM KEY: a value of virsh domjobinfo --completed (in
	# MiB for sizes)
	virsh -c "$1" domjobinfo --completed --keep-completed "$2" 2>/dev/null |
		awk -F: -v k="$3" '$1 == k { split($2, a, " "); v = a[1]
			if (a[2] == "KiB") v /= 1024; if (a[2] == "GiB") v *= 1024
			if (a[2] == "B" || a[2] == "bytes") v /= 1048576
			print (a[2] ~ /iB$|^B$|bytes/) ? sprintf("%.1f", v) : v }'
}

printf '%-11s %4s %9s %9s %11s %11s %11s %s\n' way run wall_ms job_ms downtime_ms libvirt_MiB hintmig_MiB "workload on B"
one() { # WAY RUN
	local way=$1 run=$2 name=hmb-$1-$2 t0 t1 rc e0 mib hm_mib=0 dt job dev top=""
	LV_SERIAL=$tmp/$name.serial
	dev="<memballoon model='none'/>"
	if [ "$way" = qemu-hint ]; then
		dev=$fph_dev top=$fph_top
	fi
	lv_domain_xml "$name" "$guest" "$LV_SERIAL" "$dev" "$top" > "$tmp/$name.xml"
	[ "$way" = qemu-hint ] && sed -i "s|</domain>|$(echo "$fph_ovr" | tr -d '\n')\n</domain>|" "$tmp/$name.xml"
	virsh -q -c "$LV_URI_A" create "$tmp/$name.xml" > "$tmp/$name.create" 2>&1 ||
		{ cat "$tmp/$name.create"; echo "$way: cannot start the domain"; return; }
	lv_wait_rounds 8 || { echo "$way: no workload rounds"; return; }
	if [ "$way" = virsh-hmd ]; then
		hmd start
		for _ in $(seq 1 100); do
			virsh -q -c "$LV_URI_A" metadata "$name" http://hintmig.org/xmlns/libvirt/hintmigd/1 --live 2>/dev/null |
				grep -q "127.0.0.1:$hmd_port" && break
			sleep 0.2
		done
	fi
	e0=$(lv_errors)
	t0=$(date +%s%N)
	case $way in
	plain) virsh -q -c "$LV_URI_A" migrate "$name" "$LV_URI_B" > "$tmp/$name.log" 2>&1 ;;
	plain-live|qemu-hint)
		virsh -q -c "$LV_URI_A" migrate --live "$name" "$LV_URI_B" > "$tmp/$name.log" 2>&1 ;;
	hintmig)
		lv_hintmig_migrate A B --json "$tmp/$name.json" "$name" > "$tmp/$name.log" 2>&1 ;;
	virsh-hmd)
		# hintmigd A has marked it (before the clock started)
		virsh -q -c "$LV_URI_A" migrate --live "$name" "$LV_URI_B" > "$tmp/$name.log" 2>&1 ;;
	esac
	rc=$?
	t1=$(date +%s%N)
	if [ $rc != 0 ]; then
		tail -5 "$tmp/$name.log"
		printf '%-11s %4s failed (exit %s)\n' "$way" "$run" "$rc"
	else
		job=$(jobinfo "$LV_URI_B" "$name" "Time elapsed")
		dt=$(jobinfo "$LV_URI_B" "$name" "Total downtime")
		mib=$(jobinfo "$LV_URI_B" "$name" "Data processed")
		[ "$way" = hintmig ] && hm_mib=$(awk '/"transferred"/ { gsub(/[^0-9]/, "", $2); printf "%.1f", $2 / 1048576; exit }' "$tmp/$name.json")
		[ "$way" = virsh-hmd ] && hm_mib=$(sed -n 's/^received: .* zero pages, \([0-9]*\) bytes,.*/\1/p' \
			"$tmp/B/log/qemu/$name-hintmig.log" | tail -1 | awk '{ printf "%.1f", $1 / 1048576 }')
		lv_wait_rounds 5 && ok="verifying, $(( $(lv_errors) - e0 )) error lines" || ok="NO PROGRESS"
		printf '%-11s %4s %9d %9s %11s %11s %11s %s\n' "$way" "$run" $(( (t1 - t0) / 1000000 )) \
			"${job:-?}" "${dt:-?}" "${mib:-?}" "$hm_mib" "$ok"
		[ "$(lv_errors)" = "$e0" ] ||
			grep -a 'HMW: ERROR\|FAILED\|Kernel panic' "$LV_SERIAL" | head -2 | sed 's/^/    /'
	fi
	hmd stop
	virsh -q -c "$LV_URI_B" destroy "$name" > /dev/null 2>&1
	virsh -q -c "$LV_URI_A" destroy "$name" > /dev/null 2>&1
}
for r in $(seq 1 "$runs"); do
	for way in ${LV_BENCH_WAYS:-plain plain-live qemu-hint hintmig virsh-hmd}; do
		one "$way" "$r"
	done
done
exit 0

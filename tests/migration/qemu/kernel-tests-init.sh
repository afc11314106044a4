#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs as the last step of init in the kernel-tests guest (mkguest.sh puts
# it at /hm-workload): the test programs in /bin, one run after the other,
# each result on the console, then a reboot (QEMU runs with -no-reboot, so
# it exits). Read by kernel-tests.sh.
bb=/bin/busybox
echo "HMK: kernel $($bb uname -r), $($bb nproc) vCPUs, $($bb awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
$bb mount -t tmpfs tmpfs /tmp
$bb mkdir -p /dev/shm && $bb mount -t tmpfs tmpfs /dev/shm
$bb ip link set lo up || echo "HMK: ERROR no loopback"
cd /tmp || exit 1

run() { # name program [args]
	name=$1
	shift
	echo "HMK-START $name"
	"$@"
	echo "HMK-RESULT $name $?"
}

run wp_tracker /bin/test_wp_tracker
run dest /bin/test_dest
# whole migrations of running synthetic guests: the sync tracker (auto
# picks it here), hints of both kinds, memfd and THP guest RAM, UNIX and
# TCP, the destination filling fresh memory with UFFDIO_COPY
run e2e-unix-sync-isolated /bin/test_e2e unix sync isolated
run e2e-tcp-sync-free-ch2 /bin/test_e2e tcp sync free ch2
run e2e-unix-auto-free-memfd /bin/test_e2e unix auto free memfd
run e2e-tcp-auto-isolated-thp /bin/test_e2e tcp auto isolated thp
run e2e-unix-sync-none-destwrite /bin/test_e2e unix sync none destwrite
echo "HMK-DONE"
$bb sync
$bb reboot -f

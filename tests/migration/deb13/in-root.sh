#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run one test inside the Debian 13 root (scripts/deb13-root.sh, made on
# first use): the same test program, built here, with Debian 13's QEMU
# 10.0, libvirt 11.3, 6.12 guest kernel and its headers, busybox, compiler
# for the agent's module. The root is entered in a mount namespace of the
# test's own (nothing is mounted on the host): /proc, /sys, /dev (with
# /dev/shm and /dev/hugepages), /tmp and /etc/hosts are the host's, the source and
# build trees appear at their own paths, and the test runs chrooted with
# its working directory and environment, HOME=/root inside the root (the
# guest image cache of the QEMU suite lives there).
#
#   in-root.sh SOURCE_DIR BUILD_DIR PROGRAM [ARGS...]
set -euo pipefail
src=$1 build=$2
shift 2
[ "$(id -u)" = 0 ] || { echo "in-root: needs root (mount namespace, chroot)" >&2; exit 1; }
root=$("$src/scripts/deb13-root.sh") || { echo "in-root: no Debian 13 root" >&2; exit 1; }
echo "# Debian 13 root $root: $(chroot "$root" qemu-system-x86_64 --version | head -1), libvirt $(chroot "$root" libvirtd --version | awk '{ print $NF }'), guest kernel $(ls "$root/lib/modules" | tr '\n' ' ')"
exec unshare --mount --propagation private -- bash -c '
	set -e
	root=$1 src=$2 build=$3 cwd=$4
	shift 4
	# the root a mount of its own: inside it, unshare --propagation
	# (libvirtd-pair.sh) needs / to be a mount point
	mount --bind "$root" "$root"
	for d in /proc /sys /dev /tmp; do
		mount --rbind "$d" "$root$d"
	done
	# the host name resolves as on the host (libvirt migrates to it)
	mount --bind /etc/hosts "$root/etc/hosts"
	for d in "$src" "$build"; do
		mkdir -p "$root$d"
		mount --bind "$d" "$root$d"
	done
	exec chroot "$root" /usr/bin/env HOME=/root \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
' in-root "$root" "$(cd "$src" && pwd)" "$(cd "$build" && pwd)" "$PWD" "$@"

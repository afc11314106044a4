#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The second stack the tests run on: a Debian 13 (trixie) root with its
# QEMU 10.0, libvirt 11.3 and 6.12 kernel, made with mmdebstrap from
# Debian's archive and cached, beside Debian 12's own packages (nothing of
# the host is replaced). hintmig and the test programs are built on the
# host and run inside the root (tests/deb13/in-root.sh), so that every
# QEMU, libvirtd, guest kernel and module they use is Debian 13's.
#
#   scripts/deb13-root.sh          make the root if missing or stale; print its path
#   scripts/deb13-root.sh --path   print the path only
#
# HM_DEB13_ROOT chooses the directory (default /var/cache/hintmig/deb13-root).
# The root is rebuilt when the package list below changes (a stamp holds its
# hash). Needs root and Debian's archive; about 2 minutes and 1.5 GiB.
set -euo pipefail

ROOT=${HM_DEB13_ROOT:-/var/cache/hintmig/deb13-root}
if [ "${1:-}" = --path ]; then
	echo "$ROOT"
	exit 0
fi

# What the tests use inside: QEMU and its firmware, two libvirtd and virsh,
# the guest kernel with headers and a compiler for the agent's module, the
# guest's busybox, and the shared libraries hintmig links (host-built
# binaries run here: trixie's glibc is newer than bookworm's).
PKGS=(
  qemu-system-x86 qemu-system-data seabios ipxe-qemu
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  linux-image-amd64 linux-headers-amd64 gcc make libc6-dev
  busybox-static cpio kmod xz-utils zstd
  util-linux procps psmisc iproute2 python3 file
  libjson-c5 liburcu8t64 libzstd1 libxml2 libgnutls30t64
  gnutls-bin                      # certtool: the TLS tests make certificates
  systemd                         # systemd-socket-activate: hintmigd under a passed socket
)
stamp=$(printf '%s\n' "${PKGS[@]}" | sha256sum | cut -c1-16)
if [ -f "$ROOT/.hintmig-stamp" ] && [ "$(cat "$ROOT/.hintmig-stamp")" = "$stamp" ]; then
	echo "$ROOT"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "deb13-root: needs root (mmdebstrap, chroot)" >&2; exit 1; }
if ! command -v mmdebstrap >/dev/null; then
	echo "deb13-root: installing mmdebstrap" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
fi

tmp="$ROOT.new"
rm -rf "$tmp"
mkdir -p "$(dirname "$ROOT")"
echo "deb13-root: making a Debian 13 root in $ROOT (mmdebstrap, about 2 minutes)" >&2
t0=$(date +%s)
# The kernel's postinst hooks (initramfs, dkms) are not needed: the tests
# build their own initramfs from /boot/vmlinuz-* and /lib/modules.
mmdebstrap --variant=minbase --mode=root \
	--include="$(IFS=,; echo "${PKGS[*]}")" \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--customize-hook='echo hintmig-deb13 > "$1/etc/hostname"' \
	trixie "$tmp" http://deb.debian.org/debian >&2
echo "$stamp" > "$tmp/.hintmig-stamp"
rm -rf "$ROOT"
mv "$tmp" "$ROOT"
echo "deb13-root: ready in $(( $(date +%s) - t0 )) s: $(chroot "$ROOT" qemu-system-x86_64 --version | head -1); libvirt $(chroot "$ROOT" libvirtd --version | awk '{print $NF}'); kernel $(ls "$ROOT/lib/modules")" >&2
echo "$ROOT"

#!/usr/bin/env bash
# Install what is missing (Debian 12), configure and build.
#   scripts/setup.sh [--asan]   builds build/ (and build-asan/ with --asan)
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build, test and real-guest dependencies, all from Debian 12's archive.
PKGS=(
  gcc libc6-dev make meson ninja-build pkg-config git
  liburcu-dev libzstd-dev libjson-c-dev libgnutls28-dev
  clang libclang-rt-14-dev            # libFuzzer target of the wire decoder
  qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils zstd kmod
  help2man man-db bash-completion     # man pages, their test, completion test
  debhelper dpkg-dev lintian file dh-dkms dkms  # the Debian packages and their test
  linux-headers-amd64                 # the agent's module, built for the test guest
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev  # two libvirtd in the libvirt tests
  mmdebstrap                          # the Debian 13 root of the second stack
  apparmor                            # apparmor_parser: the packaging test compiles hintmig's profile snippet
  gnutls-bin                          # certtool: the TLS tests make their certificates
  python3 procps                      # the tests' intruders and peers (ssl), pkill
  systemd                             # systemd-socket-activate: hintmigd under a passed socket
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

setup_dir() { # dir, meson args...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
  ninja -C "$dir"
}

# The second stack (QEMU 10.0, libvirt 11.3, kernel 6.12): a Debian 13 root,
# made once and cached (scripts/deb13-root.sh; the qemu-deb13 and
# libvirt-deb13 suites run in it). Only as root; HM_NO_DEB13=1 skips it.
if [ "$(id -u)" -eq 0 ] && [ "${HM_NO_DEB13:-}" != 1 ]; then
  scripts/deb13-root.sh >/dev/null
fi

setup_dir build -Dqemu_tests=enabled -Dfuzz=enabled -Dzstd=enabled -Djson=enabled -Durcu=enabled
if [ "${1:-}" = "--asan" ]; then
  setup_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dqemu_tests=disabled -Dfuzz=disabled
fi

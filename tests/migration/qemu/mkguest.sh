#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build (or find in the cache) the guest of the QEMU migration tests:
# Debian's kernel plus an initramfs holding busybox-static, the virtio
# modules the balloon and the hint agent's virtio-serial port need and the
# hm-workload program.
#
#   mkguest.sh WORKLOAD CACHE_BASE
#   mkguest.sh --check      (inputs present? for meson setup)
#
# Prints the guest directory (holding vmlinuz, initramfs.cpio, info) on
# stdout. Entries are keyed by kernel version and a hash of every input
# (kernel, modules, busybox, workload, this script), built under a lock and
# renamed into place, so parallel callers and stale caches are harmless.
#
# Overrides: HM_GUEST_KERNEL=/boot/vmlinuz-VER (its modules must be in
# /lib/modules/VER), HM_GUEST_BUSYBOX=/path/to/static/busybox.
# HM_GUEST_EXTRA="FILE..." adds programs to the guest's /bin, with the
# shared libraries ldd lists for them at the same paths (the kernel-tests
# guest: WORKLOAD is then a busybox script run as init).
# HM_GUEST_KMOD=DIR builds the hintmig_free module from DIR against the
# guest kernel's headers (/lib/modules/VER/build: apt-get install
# linux-headers-amd64) and puts it in the guest; HM_GUEST_AGENT=FILE adds
# hintmig-agent. /init loads the module unless the kernel command line says
# hm.agentmod=0, starts the agent with hm.agent=1 (hm.agentdrop=1 adds
# --drop-caches), and runs
# /bin/hm-agent-check instead of the workload with hm.check=agent.
set -eu

die() { echo "mkguest: $*" >&2; exit 1; }

check=0
if [ $# -eq 1 ] && [ "$1" = --check ]; then
	check=1 # only verify that the inputs are there (meson setup)
elif [ $# -ne 2 ]; then
	die "usage: mkguest.sh WORKLOAD CACHE_BASE | mkguest.sh --check"
else
	workload=$1
	base=$2
	[ -f "$workload" ] || die "no workload binary at $workload"
fi
extra=${HM_GUEST_EXTRA:-}
agent=${HM_GUEST_AGENT:-}
[ -z "$agent" ] || extra="$extra $agent"
kmod=${HM_GUEST_KMOD:-}
for f in $extra; do
	[ -f "$f" ] || die "no extra guest file at $f"
done
[ -z "$kmod" ] || [ -f "$kmod/hintmig_free.c" ] || die "no module source in $kmod"
self=$0
command -v cpio >/dev/null 2>&1 || die "no cpio: apt-get install cpio"

# --- kernel --------------------------------------------------------------
kernel=${HM_GUEST_KERNEL:-}
if [ -z "$kernel" ]; then
	for k in $(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V -r); do
		v=${k#/boot/vmlinuz-}
		if [ -f "/lib/modules/$v/modules.dep" ]; then
			kernel=$k
			break
		fi
	done
fi
[ -n "$kernel" ] || die "no Debian kernel with modules found (/boot/vmlinuz-*-amd64 and /lib/modules/VER/modules.dep): apt-get install linux-image-amd64"
[ -r "$kernel" ] || die "$kernel is not readable"
kver=${kernel##*/vmlinuz-}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "no $moddir/modules.dep for $kernel"

# --- busybox -------------------------------------------------------------
busybox=${HM_GUEST_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "no busybox at $busybox: apt-get install busybox-static"
if ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked: apt-get install busybox-static"
fi

# --- modules: the balloon and virtio-pci, dependencies first -------------
modpath() { # module name -> path relative to moddir, from modules.dep
	awk -v m="$1" -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n);
		gsub(/-/, "_", n); if (n == m) { print $1; exit } }' "$moddir/modules.dep"
}
moddeps() { # path -> its dependency paths (as listed)
	awk -v p="$1" -F: '$1 == p { print $2; exit }' "$moddir/modules.dep"
}
order=""
add_mod() { # path: its dependencies (deepest last in the list) first
	case " $order " in *" $1 "*) return 0 ;; esac
	deps=$(moddeps "$1")
	rev=""
	for d in $deps; do rev="$d $rev"; done
	for d in $rev; do add_mod "$d"; done
	case " $order " in *" $1 "*) ;; *) order="$order $1" ;; esac
}
for m in virtio_pci virtio_balloon virtio_console; do
	p=$(modpath $m)
	# built into the kernel (Debian's 6.12 builds virtio_pci and
	# virtio_console in): nothing to load
	if [ -z "$p" ] && grep -q "/$m\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
		continue
	fi
	[ -n "$p" ] || die "module $m not in $moddir/modules.dep"
	add_mod "$p"
done

headers=$moddir/build
if [ $check = 1 ]; then
	if [ -f "$headers/Makefile" ]; then
		hdr="headers $headers"
	else
		hdr="no headers for $kver (apt-get install linux-headers-amd64)"
	fi
	echo "kernel $kernel, busybox $busybox, modules:$order; $hdr"
	exit 0
fi
if [ -n "$kmod" ] && [ ! -f "$headers/Makefile" ]; then
	die "no kernel headers for $kver at $headers, needed to build the hintmig_free module: apt-get install linux-headers-amd64"
fi

# --- cache key -------------------------------------------------------------
key=$( {
	echo "kernel $kver"
	sha256sum "$kernel" "$busybox" "$workload" "$self" $extra | cut -d' ' -f1
	for f in $extra; do ldd "$f" 2>/dev/null; done
	for p in $order; do echo "$p"; sha256sum "$moddir/$p" | cut -d' ' -f1; done
	if [ -n "$kmod" ]; then
		echo "kmod"
		cat "$kmod"/* | sha256sum | cut -d' ' -f1
	fi
} | sha256sum | cut -c1-16)
dir=$base/guest-$kver-$key
if [ -f "$dir/complete" ]; then
	touch "$dir/complete" 2>/dev/null || true
	echo "$dir"
	exit 0
fi

mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
if [ -f "$dir/complete" ]; then
	echo "$dir"
	exit 0
fi

tmp=$(mktemp -d "$base/.build.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root/bin" "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
cp "$workload" "$root/hm-workload"
chmod 755 "$root/bin/busybox" "$root/hm-workload"
for f in $extra; do
	cp "$f" "$root/bin/${f##*/}"
	chmod 755 "$root/bin/${f##*/}"
	# "name => /path (addr)" and "/path (addr)": the paths
	for lib in $(ldd "$f" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++)
			if ($i ~ /^\//) print $i }'); do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root${lib%/*}"
		cp -L "$lib" "$root$lib" || die "cannot copy $lib for $f"
	done
done

: >"$root/modules.list"
if [ -n "$kmod" ]; then
	# built in a copy: kbuild writes its objects beside the source
	mkdir -p "$tmp/kmod" "$root/lib/modules/extra"
	cp "$kmod"/* "$tmp/kmod/"
	make -C "$headers" M="$tmp/kmod" modules >"$tmp/kmod.log" 2>&1 ||
		{ cat "$tmp/kmod.log" >&2; die "building the hintmig_free module for $kver failed"; }
	cp "$tmp/kmod/hintmig_free.ko" "$root/lib/modules/extra/"
	rm -rf "$tmp/kmod" "$tmp/kmod.log"
fi
for p in $order; do
	src=$moddir/$p
	name=${p##*/}
	case "$name" in
	*.ko.xz)  out=${name%.xz};  xz -dc "$src" >"$root/lib/modules/$out" || die "xz -d $src (apt-get install xz-utils)" ;;
	*.ko.zst) out=${name%.zst}; zstd -qdc "$src" >"$root/lib/modules/$out" || die "zstd -d $src (apt-get install zstd)" ;;
	*.ko.gz)  out=${name%.gz};  gzip -dc "$src" >"$root/lib/modules/$out" || die "gzip -d $src" ;;
	*.ko)     out=$name;        cp "$src" "$root/lib/modules/$out" ;;
	*) die "unexpected module file $p" ;;
	esac
	echo "$out" >>"$root/modules.list"
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# init of the hintmig QEMU test guest (generated by mkguest.sh)
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for m in $(/bin/busybox cat /modules.list); do
	/bin/busybox insmod "/lib/modules/$m" || echo "HMW-INIT: ERROR insmod $m failed"
done
echo 0 >/proc/sys/vm/compact_unevictable_allowed
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d/device" ] || continue
	echo "HMW-INIT: virtio ${d##*/} device $(/bin/busybox cat $d/device) features $(/bin/busybox cat $d/features)"
done
echo "HMW-INIT: modules loaded: $(/bin/busybox cat /modules.list | /bin/busybox tr '\n' ' ')"
cmdline=" $(/bin/busybox cat /proc/cmdline) "
has() { case "$cmdline" in *" $1 "*) return 0 ;; esac; return 1; }
if [ -f /lib/modules/extra/hintmig_free.ko ] && ! has hm.agentmod=0; then
	if /bin/busybox insmod /lib/modules/extra/hintmig_free.ko; then
		echo "HMW-INIT: hintmig_free loaded"
	else
		echo "HMW-INIT: ERROR insmod hintmig_free failed"
	fi
fi
if has hm.check=agent; then
	/bin/hm-agent-check
	echo "HMW-INIT: hm-agent-check exited $?"
	while :; do /bin/busybox sleep 3600; done
fi
if has hm.agent=1; then
	args=""
	! has hm.agentdrop=1 || args=--drop-caches
	/bin/hintmig-agent $args &
	echo "HMW-INIT: hintmig-agent started"
fi
exec /hm-workload
EOF
chmod 755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >"$tmp/initramfs.cpio" ||
	die "cpio failed (apt-get install cpio)"
cp "$kernel" "$tmp/vmlinuz"
{
	echo "kernel $kernel"
	echo "kver $kver"
	echo "busybox $busybox"
	echo "modules$order"
	echo "key $key"
} >"$tmp/info"
rm -rf "$root"
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
# Keep the cache small: drop entries not used for a week (a use touches
# the entry; entries in use by other build directories stay).
find "$base" -maxdepth 1 -name 'guest-*' ! -newer "$dir/complete" -mtime +7 \
	-exec rm -rf {} + 2>/dev/null || true
echo "$dir"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages (debian/): built from a copy of the tree with
# dpkg-buildpackage, checked by lintian, installed into a scratch root
# (never onto this machine), checked there (the programs run, every man
# page renders, the library links, every file of each package is installed
# and verifies), then purged, leaving nothing behind.
#   test_debian.sh SOURCE_DIR
set -uo pipefail
src=$(cd "$1" && pwd)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

missing=()
for t in dpkg-buildpackage dh lintian help2man man pkg-config cc file; do
	command -v "$t" >/dev/null || missing+=("$t")
done
if ((${#missing[@]})); then
	echo "SKIP: ${missing[*]} absent (scripts/setup.sh installs them)"
	# Packages, not a kernel feature: under strict mode a failure.
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && exit 1
	exit 77
fi
if [ "$arch" != amd64 ]; then
	echo "SKIP: the packages are amd64-only (this is $arch)"
	exit 77
fi

work=$(mktemp -d /tmp/hintmig-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
die() { echo "FAIL $*"; exit 1; }

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
tree=$work/hintmig-$version
mkdir -p "$tree"
# The tree as a clean clone would have it (tracked and new files, not the
# ignored build directories).
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' |
		tar --null -T - -cf -) | tar -xf - -C "$tree"
else
	(cd "$src" && tar --exclude='./build*' --exclude='./obj-*' -cf - .) |
		tar -xf - -C "$tree"
fi

echo "== dpkg-buildpackage -us -uc -b (log: build.log)"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b -j"$(nproc)") \
	> "$work/build.log" 2>&1; then
	tail -n 60 "$work/build.log"
	die "dpkg-buildpackage failed"
fi
grep -E "^(Ok|Fail|Skipped|Expected Fail|Timeout):" "$work/build.log" | sed 's/^/  build-time unit tests: /'
changes=$(ls "$work"/hintmig_"$version"_"$arch".changes)
debs=("$work"/*.deb)
echo "== packages"
for d in "${debs[@]}"; do
	printf '  %-40s %8s bytes, %3d files\n' "${d##*/}" "$(stat -c %s "$d")" \
		"$(dpkg-deb -c "$d" | grep -vc '^d')"
	case $d in *-dbgsym_*) continue ;; esac
	dpkg-deb -c "$d" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print "      " $6 ($7 == "->" ? " -> " $8 : "") }'
done
# The three packages, each with its automatic -dbgsym package (debug
# symbols, built by dh_strip).
for p in hintmig hintmig-agent libhintmig0 libhintmig-dev; do
	[ -e "$work/${p}_${version}_$arch.deb" ] || fail "no $p package"
done
dkmsdeb=$work/hintmig-free-dkms_${version}_all.deb
[ -e "$dkmsdeb" ] || fail "no hintmig-free-dkms package"
[ ${#debs[@]} -le 8 ] || fail "unexpected packages: ${debs[*]##*/}"
# The DKMS package builds a module on the machine it is installed on (its
# postinst runs dkms): it is installed for real below, not in the scratch
# root.
scratch=()
for d in "${debs[@]}"; do
	[ "$d" = "$dkmsdeb" ] || scratch+=("$d")
done

echo "== lintian"
# Errors and warnings fail; each one we accept is an override in debian/
# with the reason beside it.
if ! lintian --fail-on error,warning --display-info "$changes" > "$work/lintian.log" 2>&1; then
	cat "$work/lintian.log"
	fail "lintian reports errors or warnings"
else
	sed 's/^/  /' "$work/lintian.log"
	echo "  lintian: no errors, no warnings"
fi

echo "== dependencies resolve on this system (apt-get --simulate)"
if ! apt-get install --simulate "${debs[@]}" > "$work/apt.log" 2>&1; then
	cat "$work/apt.log"
	fail "apt-get cannot install the packages here"
fi

echo "== install into a scratch root"
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkgr=(dpkg --root="$root" --log=/dev/null --force-not-root --force-depends
       --force-script-chrootless)
"${dpkgr[@]}" -i "${scratch[@]}" > "$work/dpkg.log" 2>&1 ||
	{ cat "$work/dpkg.log"; die "dpkg -i into the scratch root failed"; }

pkgs=()
for d in "${scratch[@]}"; do
	p=$(dpkg-deb -f "$d" Package)
	pkgs+=("$p")
	# Each file the package lists is installed, and its md5sum verifies.
	n=0
	while read -r f; do
		[ -e "$root$f" ] || [ -L "$root$f" ] || fail "$p: $f not installed"
		n=$((n + 1))
	done < <(dpkg-deb -c "$d" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')
	listed=$("${dpkgr[@]}" -L "$p" | wc -l)
	bad=$("${dpkgr[@]}" --verify "$p" 2>&1)
	[ -z "$bad" ] || fail "$p: dpkg --verify: $bad"
	echo "  $p: $n files installed, $listed paths in dpkg -L, dpkg --verify clean"
done

echo "== the installed programs"
bin=$root/usr/bin
"$bin/hintmig" --version | grep -qx "hintmig ${version%%-*}" || fail "hintmig --version"
"$bin/hintmig-bench" --version | grep -qx "hintmig-bench ${version%%-*}" || fail "hintmig-bench --version"
for sub in features track-demo send recv libvirt migrate; do
	"$bin/hintmig" "$sub" --version | grep -qx "hintmig $sub ${version%%-*}" ||
		fail "hintmig $sub --version"
done
"$root/usr/sbin/hintmig-agent" --version | grep -qx "hintmig-agent ${version%%-*}" ||
	fail "hintmig-agent --version"
file "$root/usr/sbin/hintmig-agent" | grep -q "static-pie linked" ||
	fail "hintmig-agent is not a static PIE: $(file "$root/usr/sbin/hintmig-agent")"
[ -s "$root/usr/lib/systemd/system/hintmig-agent.service" ] || fail "no systemd unit"
# hintmig migrate's two host pieces (docs/libvirt.md)
[ -x "$root/usr/libexec/hintmig/hintmig-qemu" ] || fail "no emulator wrapper"
grep -q '^exec /usr/bin/qemu-system-x86_64\|^qemu=./usr/bin/qemu-system-x86_64' \
	"$root/usr/libexec/hintmig/hintmig-qemu" || fail "the wrapper does not run /usr/bin/qemu-system-x86_64"
[ -x "$root/etc/libvirt/hooks/qemu.d/50-hintmig" ] || fail "no libvirt hook"
grep -q '^exec /usr/bin/hintmig libvirt hook' "$root/etc/libvirt/hooks/qemu.d/50-hintmig" ||
	fail "the hook does not run /usr/bin/hintmig"
echo "ok   /usr/libexec/hintmig/hintmig-qemu and /etc/libvirt/hooks/qemu.d/50-hintmig"
# hintmigd (plain virsh migrate with hints): the program, its unit and
# options file, installed but not enabled (it needs certificates first)
[ "$(readlink -f "$root/usr/sbin/hintmigd")" = "$(readlink -f "$bin/hintmig")" ] ||
	fail "/usr/sbin/hintmigd is not hintmig"
"$root/usr/sbin/hintmigd" --version | grep -qx "hintmigd ${version%%-*}" || fail "hintmigd --version"
unit=$root/usr/lib/systemd/system/hintmigd.service
grep -q '^ExecStart=/usr/sbin/hintmigd \$HINTMIGD_OPTS$' "$unit" 2>/dev/null || fail "no hintmigd unit, or it does not run /usr/sbin/hintmigd"
grep -q '^ListenStream=49290$' "$root/usr/lib/systemd/system/hintmigd.socket" 2>/dev/null ||
	fail "no hintmigd.socket, or it does not listen on 49290"
grep -q '^HINTMIGD_OPTS=' "$root/etc/default/hintmigd" 2>/dev/null || fail "no /etc/default/hintmigd"
# both units as systemd reads them (unknown keys, bad values, a missing
# ExecStart program: all said, and exit 1)
if ! command -v systemd-analyze >/dev/null; then
	fail "systemd-analyze absent (scripts/setup.sh installs systemd): hintmigd's units are not checked"
elif ! out=$(systemd-analyze verify --man=no --recursive-errors=no --root="$root" \
		hintmigd.service hintmigd.socket 2>&1) || [ -n "$out" ]; then
	fail "systemd-analyze verify of hintmigd's units: $out"
fi
grep -q 'enable.*hintmigd\|hintmigd.*enable' "$root/var/lib/dpkg/info/hintmig.postinst" 2>/dev/null &&
	fail "hintmig's postinst enables hintmigd (it needs certificates first)"
out=$("$root/usr/sbin/hintmigd" --tls-dir "$work/no-such-dir" 2>&1); rc=$?
[ $rc = 1 ] && grep -q "no libvirt migration certificates" <<<"$out" ||
	fail "hintmigd without certificates: exit $rc ($out)"
echo "ok   /usr/sbin/hintmigd, its units (not enabled; systemd-analyze verify clean) and /etc/default/hintmigd; without certificates it refuses to start"
# R15 under AppArmor: the snippet libvirt's domain profiles include
# compiles, and grants the device (nothing loaded into the kernel)
aa=$root/etc/apparmor.d/abstractions/libvirt-qemu.d/hintmig
if [ ! -s "$aa" ]; then
	fail "no AppArmor snippet $aa"
elif ! command -v apparmor_parser >/dev/null; then
	fail "apparmor_parser absent (scripts/setup.sh installs apparmor): the AppArmor snippet is not checked"
else
	printf '#include <tunables/global>\nprofile hintmig-check {\n  #include <abstractions/libvirt-qemu.d/hintmig>\n}\n' > "$work/aa-profile"
	if out=$(apparmor_parser -Q -K -I /etc/apparmor.d -I "$root/etc/apparmor.d" "$work/aa-profile" 2>&1); then
		grep -q '^/dev/userfaultfd rw,' "$aa" || fail "the AppArmor snippet does not allow /dev/userfaultfd"
		echo "ok   AppArmor snippet compiles (apparmor_parser -Q): /dev/userfaultfd rw"
	else
		fail "apparmor_parser refuses the snippet: $out"
	fi
fi
# the hook on an event that is not ours: nothing, exit 0
echo '<domain><name>x</name></domain>' | "$root/usr/bin/hintmig" libvirt hook x prepare begin - ||
	fail "hintmig libvirt hook on prepare: not 0"
if out=$("$bin/hintmig" features 2>&1); then
	echo "$out" | sed 's/^/  /'
	grep -qi userfaultfd <<<"$out" || fail "hintmig features printed no userfaultfd line"
else
	echo "$out"
	fail "hintmig features failed"
fi

echo "== man pages"
pages=("$root"/usr/share/man/man1/*.1.gz)
[ ${#pages[@]} -eq 8 ] || fail "expected 8 man pages, found ${#pages[@]}"
pages+=("$root"/usr/share/man/man8/*.8.gz)
[ ${#pages[@]} -eq 10 ] || fail "expected 10 man pages with hintmig-agent.8 and hintmigd.8, found ${#pages[@]}"
for pg in "${pages[@]}"; do
	warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$pg" 2>&1 >/dev/null)
	lines=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -E UTF-8 -l "$pg" 2>/dev/null | wc -l)
	[ -z "$warn" ] || fail "${pg##*/}: $warn"
	[ "$lines" -gt 10 ] || fail "${pg##*/}: renders to $lines lines"
	echo "  man -l ${pg##*/}: $lines lines"
done
for c in hintmig hintmig-bench; do
	[ -e "$root/usr/share/bash-completion/completions/$c" ] ||
		fail "bash completion for $c not installed"
done

echo "== libhintmig-dev: a program built with pkg-config against the scratch root"
cat > "$work/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <hintmig/hintmig.h>
int main(int argc, char **argv)
{
	(void)argc;
	printf("libhintmig %s\n", hm_version());
	return strcmp(hm_version(), argv[1]) != 0;
}
C
pcdir=$root/usr/lib/$multiarch/pkgconfig
# hintmig.pc from the scratch root, its prefix moved there; the libraries
# it requires privately (liburcu, zstd, json-c) from this machine.
if flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --define-variable=prefix="$root/usr" --cflags --libs hintmig) &&
   cc -o "$work/use" "$work/use.c" $flags 2> "$work/cc.log"; then
	LD_LIBRARY_PATH=$root/usr/lib/$multiarch "$work/use" "${version%%-*}" ||
		fail "the program linked with libhintmig.so reports another version"
	LD_LIBRARY_PATH=$root/usr/lib/$multiarch ldd "$work/use" | grep -q "$root/usr/lib/$multiarch/libhintmig.so.0" ||
		fail "the program did not link the packaged libhintmig.so.0"
else
	cat "$work/cc.log"
	fail "building against libhintmig-dev failed (pkg-config: ${flags:-})"
fi

echo "== hintmig-free-dkms: installed on this machine, DKMS builds the module, purged"
kver=""
for b in /lib/modules/*/build; do
	[ -f "$b/Makefile" ] && kver=$(basename "$(dirname "$b")")
done
if ! command -v dkms >/dev/null || [ -z "$kver" ]; then
	echo "  SKIP: needs dkms and the headers of a kernel (apt-get install dkms linux-headers-amd64)"
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && fail "dkms or kernel headers absent under HINTMIG_TEST_STRICT"
elif [ "$(id -u)" != 0 ]; then
	echo "  SKIP: installing a DKMS package needs root"
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && fail "not root under HINTMIG_TEST_STRICT"
else
	mv_ver=${version%%-*}
	dpkg -P hintmig-free-dkms > /dev/null 2>&1 # a leftover of an interrupted run
	if dpkg -i "$dkmsdeb" > "$work/dkms.log" 2>&1; then
		st=$(dkms status "hintmig-free/$mv_ver" 2>&1)
		echo "  dkms status: $st"
		grep -q "$kver.*installed" <<<"$st" || fail "dkms did not install hintmig_free for $kver"
		ko=$(modinfo -k "$kver" -F filename hintmig_free 2>/dev/null)
		[ -n "$ko" ] && [ -e "$ko" ] || fail "modinfo -k $kver finds no hintmig_free"
		[ -n "$ko" ] && echo "  $ko: $(modinfo -F description "$ko")"
		for f in hintmig_free.c hintmig_free.h Kbuild dkms.conf; do
			[ -s "/usr/src/hintmig-free-$mv_ver/$f" ] || fail "module source $f not installed"
		done
	else
		cat "$work/dkms.log"
		fail "dpkg -i hintmig-free-dkms failed"
	fi
	dpkg -P hintmig-free-dkms >> "$work/dkms.log" 2>&1 || fail "dpkg -P hintmig-free-dkms failed"
	[ -z "$(dkms status "hintmig-free/$mv_ver" 2>&1)" ] || fail "dkms still lists hintmig-free after the purge"
	[ -z "${ko:-}" ] || [ ! -e "$ko" ] || fail "$ko left after the purge"
	[ ! -e "/usr/src/hintmig-free-$mv_ver" ] || fail "/usr/src/hintmig-free-$mv_ver left after the purge"
fi

echo "== purge"
"${dpkgr[@]}" -P "${pkgs[@]}" >> "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -P failed"; }
left=$(find "$root" -path "$root/var/lib/dpkg" -prune -o \( -type f -o -type l \) -print)
[ -z "$left" ] || fail "files left after purge: $left"

[ "$fails" -eq 0 ] || { echo "$fails packaging checks failed"; exit 1; }
echo "PASS debian: ${pkgs[*]} built, lintian-clean, installed, checked, purged"

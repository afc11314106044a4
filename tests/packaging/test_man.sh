#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The generated man pages: each renders without a warning from man/groff,
# has its sections, names the program's version, and shows every option
# of the program's --help.
#   test_man.sh BUILD_DIR MAN_DIR
set -uo pipefail
build=$1 mandir=$2
if ! command -v man >/dev/null; then
	echo "SKIP: man is absent (apt-get install man-db)"
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && exit 1
	exit 77
fi
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

check() { # PAGE PROGRAM... (section 1, or SECTION=N)
	local page=$mandir/$1.${SECTION:-1} text warn opt version
	shift
	[ -s "$page" ] || { fail "$page missing"; return; }
	warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
	[ -z "$warn" ] || fail "$page: man warns: $warn"
	text=$(LC_ALL=C.UTF-8 MANWIDTH=200 MAN_KEEP_FORMATTING=0 man -E UTF-8 -l "$page" 2>/dev/null | col -b)
	for sec in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
		grep -q "^$sec" <<<"$text" || fail "$page: no $sec section"
	done
	version=$("$@" --version | awk '{ print $NF }')
	grep -q "$version" <<<"$text" || fail "$page: version $version not shown"
	for opt in $("$@" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
		grep -qF -- "$opt" <<<"$text" || fail "$page: $opt of '$*' --help is not in the page"
	done
	echo "ok   $page"
}

check hintmig "$build/hintmig"
for sub in features track-demo send recv; do
	check "hintmig-$sub" "$build/hintmig" "$sub"
done
if "$build/hintmig" --help | grep -q '^  libvirt'; then
	check hintmig-libvirt "$build/hintmig" libvirt
fi
if "$build/hintmig" --help | grep -q '^  migrate'; then
	check hintmig-migrate "$build/hintmig" migrate
	SECTION=8 check hintmigd "$build/hintmig" daemon
fi
check hintmig-bench "$build/hintmig-bench"
SECTION=8 check hintmig-agent "$build/src/guest_agent/hintmig-agent"
[ "$fails" -eq 0 ] || { echo "$fails man page checks failed"; exit 1; }
echo "PASS man"

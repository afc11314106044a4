#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# One man page from a program's own --help (so the page cannot drift from
# it) and an include file with the prose --help has no room for.
#   help2man.sh OUT PAGE-NAME "SUMMARY" INCLUDE PROGRAM [SUBCOMMAND]
# PAGE-NAME is the page's title (hintmig-send); PROGRAM [SUBCOMMAND] is what
# prints the help. The version comes from PROGRAM [SUBCOMMAND] --version.
set -eu
out=$1 page=$2 summary=$3 include=$4 prog=$5
shift 5
sub=${1:-}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# help2man names the page after the program it runs: give it one that has
# the page's name and runs the real program (with its subcommand).
if [ -n "$sub" ]; then
	printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$prog" "$sub" > "$dir/$page"
else
	printf '#!/bin/sh\nexec "%s" "$@"\n' "$prog" > "$dir/$page"
fi
chmod +x "$dir/$page"
version=$("$dir/$page" --version | awk 'NR == 1 { print $NF }')
[ -n "$version" ] || { echo "help2man.sh: $prog $sub --version printed nothing" >&2; exit 1; }

# SOURCE_DATE_EPOCH (set by dpkg-buildpackage) keeps the date reproducible.
help2man --no-info --section="${HM_MAN_SECTION:-1}" --version-string="$version" \
	--name="$summary" --include="$include" --output="$out.tmp" "$dir/$page"
mv "$out.tmp" "$out"

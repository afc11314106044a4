#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The bash completion (src/tools/completion.bash) against the built
# programs: commands, options, an option's choices and file arguments.
#   test_completion.sh BUILD_DIR COMPLETION_FILE
set -uo pipefail
build=$(cd "$1" && pwd) comp=$(realpath "$2")
bc=/usr/share/bash-completion/bash_completion
if [ ! -r "$bc" ]; then
	echo "SKIP: $bc is absent (apt-get install bash-completion)"
	# Not a kernel feature or device: under strict mode this is a failure.
	[ "${HINTMIG_TEST_STRICT:-}" = 1 ] && exit 1
	exit 77
fi
# shellcheck disable=SC1090
source "$bc"
# shellcheck disable=SC1090
source "$comp"
export PATH="$build:$PATH"
fails=0

# complete LINE: COMPREPLY for the cursor at the end of LINE.
complete_line() {
	COMP_LINE=$1
	COMP_POINT=${#1}
	read -r -a COMP_WORDS <<<"$1"
	if [[ $1 == *' ' ]]; then
		COMP_WORDS+=("")
	fi
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_hintmig "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" \
		"${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

expect() { # LINE EXPECTED
	local got
	got=$(complete_line "$1")
	if [ "$got" = "$2" ]; then
		echo "ok   '$1' -> $got"
	else
		echo "FAIL '$1' -> '$got', expected '$2'"
		fails=$((fails + 1))
	fi
}

if "$build/hintmig" --help | grep -q '^  migrate'; then
	expect "hintmig " "--help --version daemon features libvirt migrate recv send track-demo"
	expect "hintmig migrate --p" "--p2p --persistent"
	expect "hintmig daemon --adv" "--advertise"
	expect "hintmig migrate --hints " "auto none"
elif "$build/hintmig" --help | grep -q '^  libvirt'; then
	expect "hintmig " "--help --version features libvirt recv send track-demo"
else
	expect "hintmig " "--help --version features recv send track-demo"
fi
expect "hintmig se" "send"
expect "hintmig send --hin" "--hint-timeout --hinted-map --hints"
expect "hintmig send --tracker " "async auto sync"
expect "hintmig send --hints f" "free"
expect "hintmig send --compress " "none zstd"
expect "hintmig send --max-r" "--max-rounds"
expect "hintmig send --channels " ""
expect "hintmig recv --fill " "auto uffd write"
expect "hintmig recv --q" "--qemu --qemu-uri --quiet"
expect "hintmig features --m" "--mode"
expect "hintmig recv --ver" "--verbose --version"
expect "hintmig-bench --preset " "full quick"
expect "hintmig-bench --tran" "--transport"

# A file argument: completes to files of the current directory.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/summary-a.json" "$dir/summary-b.json"
cd "$dir" || exit 1
expect "hintmig send --json summ" "summary-a.json summary-b.json"
expect "hintmig-bench --plot summary-a" "summary-a.json"

# Every option --help shows is offered, per program.
for prog in "hintmig features" "hintmig track-demo" "hintmig send" \
	    "hintmig recv" "hintmig-bench"; do
	want=$($prog --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u |
	       tr '\n' ' ' | sed 's/ $//')
	got=$(complete_line "$prog --")
	if [ "$got" != "$want" ]; then
		echo "FAIL '$prog --' offers '$got', --help shows '$want'"
		fails=$((fails + 1))
	fi
done
[ "$fails" -eq 0 ] || { echo "$fails completion checks failed"; exit 1; }
echo "PASS completion"

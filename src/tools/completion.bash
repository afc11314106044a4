# SPDX-License-Identifier: GPL-2.0-or-later
# bash completion for hintmig and hintmig-bench. Commands, options and the
# choices of an option ("--tracker auto|sync|async") are read from the
# programs' own --help, so completion follows the program it completes.

# The --help text of "$@" (a program and perhaps its command).
_hintmig_help()
{
	"$@" --help 2>/dev/null
}

_hintmig()
{
	local cur prev words cword
	_init_completion || return

	local -a prog=("${words[0]}")
	local i
	if [[ ${words[0]##*/} == hintmig ]]; then
		for ((i = 1; i < cword; i++)); do
			if [[ ${words[i]} != -* ]]; then
				prog+=("${words[i]}")
				break
			fi
		done
		if ((${#prog[@]} == 1)); then
			local cmds
			cmds=$(_hintmig_help "${prog[@]}" |
				awk '/^commands:/ { f = 1; next }
				     f && /^  [a-z]/ { print $1 }')
			COMPREPLY=($(compgen -W "$cmds --help --version" -- "$cur"))
			return
		fi
	fi

	local help arg
	help=$(_hintmig_help "${prog[@]}")
	if [[ $prev == --* ]]; then
		# The word --help shows after the option: a list of choices,
		# a file or socket, or another value (nothing to offer).
		arg=$(grep -oE -- "(^|[[ ])$prev[ =][^] ,]+" <<<"$help" |
			head -n 1 | sed -E "s/^.?$prev[ =]//")
		if [[ -n $arg ]]; then
			case $arg in
			*'|'*)
				COMPREPLY=($(compgen -W "${arg//|/ }" -- "$cur"))
				return ;;
			*FILE* | *PATH* | *SOCKET*)
				_filedir
				return ;;
			*)
				return ;;
			esac
		fi
	fi
	if [[ $cur == -* || -z $cur ]]; then
		COMPREPLY=($(compgen -W "$(grep -oE -- '--[a-z][a-z0-9-]*' \
			<<<"$help" | sort -u)" -- "$cur"))
	fi
}
complete -F _hintmig hintmig hintmig-bench

# shellcheck shell=bash
# hm_free_port: print a TCP port for a test's listener.
#
# From 20000-32767: below the kernel's ephemeral range (32768-60999 by
# default, where outgoing connections take their ports), and away from
# libvirt's QEMU migration ports (49152-49215) and hintmig's own range for
# the hook's receivers (49300-49399). A port something already listens on
# (on 127.0.0.1) is passed over. Not a reservation: the test's listener
# still reports "address in use" if another process takes it meanwhile.
hm_free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12768))
		# a connect that fails: nobody listens there
		if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "hm_free_port: no free port found in 20000-32767 after $i tries" >&2
	return 1
}

# SPDX-License-Identifier: GPL-2.0-or-later
# Two libvirtd (9.0, or 11.3 in the Debian 13 root) on one machine, without systemd (sourced by the libvirt
# tests). Each runs the system daemon in the foreground in a mount namespace
# of its own, with /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/log/libvirt and /var/cache/libvirt bind-mounted from a directory of
# its own, its sockets outside them, its own host UUID (libvirt refuses a
# migration to a host with the same UUID), and in qemu.conf the settings a
# machine without systemd and cgroup delegation needs. Started and stopped
# by PID, never by name.
#
#   lv_start DIR NAME UUID    start one; sets LV_URI_<NAME>
#   lv_stop_all               stop every one started, kill their QEMUs
# LV_QEMU_CONF_EXTRA: lines appended to each one's qemu.conf.
# LV_LOG_LEVEL=1 LV_LOG_FILTERS="1:qemu 3:*" log the QEMU driver's
# monitor traffic (libvirtd.log of each).
#
# Needs root (namespaces, bind mounts, libvirtd system mode).

LV_STARTED=""

lv_die() { echo "libvirtd-pair: $*" >&2; exit 1; }

lv_start() { # DIR NAME UUID
	local base=$1/$2 name=$2 uuid=$3 i
	mkdir -p "$base/etc" "$base/run" "$base/lib" "$base/log" "$base/cache" \
		"$base/sock"
	cat > "$base/etc/libvirtd.conf" <<-EOF
	unix_sock_dir = "$base/sock"
	unix_sock_group = "root"
	unix_sock_rw_perms = "0700"
	auth_unix_rw = "none"
	auth_unix_ro = "none"
	host_uuid = "$uuid"
	log_outputs = "${LV_LOG_LEVEL:-3}:file:$base/log/libvirtd.log"
	log_filters = "${LV_LOG_FILTERS:-}"
	EOF
	# The lab (default): stdio_handler file: no virtlogd; no cgroups;
	# QEMU as root without a security driver or private namespaces, so
	# that it sees the same /dev/shm and sockets as the test. File-backed
	# guest RAM (<source type='file'/>) on a tmpfs of its own: QEMU >= 8.1
	# leaves only named files out of its stream (docs/libvirt.md)
	mkdir -p "/dev/shm/${1##*/}-$name"
	if [ "${LV_STOCK:-0}" = 1 ]; then
		# A stock host (LV_STOCK=1): Debian's qemu.conf, whose settings
		# are all libvirt's defaults (QEMU as libvirt-qemu, a mount
		# namespace with a private /dev, dynamic ownership with
		# remember_owner, cgroups and the security driver probed),
		# plus the two lines a host needs for hintmig or for this
		# test bed: RAM files on a tmpfs, and QEMU's output to a
		# file (no virtlogd running here).
		cat > "$base/etc/qemu.conf" <<-EOF
		memory_backing_dir = "/dev/shm/${1##*/}-$name"
		stdio_handler = "file"
		EOF
	else
		cat > "$base/etc/qemu.conf" <<-EOF
		memory_backing_dir = "/dev/shm/${1##*/}-$name"
		stdio_handler = "file"
		cgroup_controllers = [ ]
		security_driver = "none"
		namespaces = [ ]
		user = "root"
		group = "root"
		dynamic_ownership = 0
		remember_owner = 0
		EOF
	fi
	[ -n "${LV_QEMU_CONF_EXTRA:-}" ] && printf '%s\n' "$LV_QEMU_CONF_EXTRA" >> "$base/etc/qemu.conf"
	# libvirt resolves its default QEMU user before it reads qemu.conf
	getent passwd libvirt-qemu >/dev/null ||
		useradd -r -M -s /usr/sbin/nologin libvirt-qemu ||
		lv_die "cannot create the system user libvirt-qemu"
	# as libvirt-daemon-system's postinst does: QEMU's user in group kvm
	# (else libvirt finds /dev/kvm unusable for it and probes QEMU's
	# capabilities again at every lookup, seconds each); the group of
	# /dev/kvm by number (a chroot's /etc/group may lack it)
	if [ -e /dev/kvm ]; then
		local kg kname
		kg=$(stat -c %g /dev/kvm)
		kname=$(getent group "$kg" | cut -d: -f1)
		if [ -z "$kname" ]; then
			# (the Debian 13 root's kvm group has another number
			# than the host's device node)
			groupadd -r -g "$kg" kvm-host || lv_die "cannot create group kvm-host ($kg)"
			kname=kvm-host
		fi
		id -G libvirt-qemu | grep -qw "$kg" ||
			usermod -a -G "$kname" libvirt-qemu || lv_die "cannot add libvirt-qemu to group $kname"
	fi
	# in a subshell: not a job of the caller's (no "Killed" notices)
	(unshare --mount --propagation private sh -c "
		set -e
		mount --bind '$base/etc' /etc/libvirt
		mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
		mount --bind '$base/run' /run/libvirt
		mount --bind '$base/lib' /var/lib/libvirt
		mount --bind '$base/log' /var/log/libvirt
		mount --bind '$base/cache' /var/cache/libvirt
		exec libvirtd -f /etc/libvirt/libvirtd.conf -p '$base/libvirtd.pid'
	" > "$base/stdout.log" 2>&1 &
	echo $! > "$base/launcher.pid")
	LV_STARTED="$LV_STARTED $base"
	eval "LV_URI_$name='qemu:///system?socket=$base/sock/libvirt-sock'"
	for i in $(seq 1 100); do
		if [ -S "$base/sock/libvirt-sock" ] &&
		   virsh -q -c "qemu:///system?socket=$base/sock/libvirt-sock" \
			uri >/dev/null 2>&1; then
			echo "libvirtd $name: pid $(cat "$base/libvirtd.pid"), host UUID $uuid"
			return 0
		fi
		kill -0 "$(cat "$base/launcher.pid")" 2>/dev/null || break
		sleep 0.2
	done
	cat "$base/stdout.log" >&2
	tail -20 "$base/log/libvirtd.log" >&2 2>/dev/null
	lv_die "libvirtd $name did not start"
}

lv_stop_all() {
	local base pid
	for base in $LV_STARTED; do
		# the domains' QEMUs first: libvirtd leaves them running
		for f in "$base"/run/qemu/*.pid; do
			[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
		done
		pid=$(cat "$base/libvirtd.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
		# its memory_backing_dir (lv_start)
		rm -rf "/dev/shm/$(basename "$(dirname "$base")")-$(basename "$base")"
	done
	for base in $LV_STARTED; do
		pid=$(cat "$base/libvirtd.pid" 2>/dev/null) || continue
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null
	done
	LV_STARTED=""
}

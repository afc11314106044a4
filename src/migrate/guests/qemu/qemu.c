/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QEMU guest backend (qemu.h; flow and reasons in docs/qemu.md).
 *
 * Facts relied on, checked against QEMU 7.2 as Debian 12 ships it:
 *  - `x-query-ramblock` lists RAM blocks by name; a memory backend's block
 *    is named after the object's id. `info mtree` shows, in the "memory"
 *    address space, how guest-physical ranges map into a block:
 *    "0000000000000000-000000000fffffff (prio 0, ram): alias ram-below-4g
 *    @mem 0000000000000000-000000000fffffff". Overlays (VGA window, PAM)
 *    hide parts of the alias from the flat view; the block's bytes there
 *    are still guest RAM, so hintmig copies by offset in the backing file
 *    and uses the alias table only to translate hints (guest-physical).
 *  - x-ignore-shared (a QMP capability in 7.2) leaves out of QEMU's stream
 *    every RAM block that is shared (memory-backend-file share=on,
 *    memory-backend-memfd); QEMU >= 8.1 leaves out only named files.
 *  - With pause-before-switchover, QEMU stops the vCPUs and then waits in
 *    state "pre-switchover" until migrate-continue; migrate_cancel there
 *    restarts the guest if it was running.
 *  - /proc/PID/map_files/START-END opens the file a mapping maps (root),
 *    deleted memfds and unlinked temporary files included.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migrate/guests/qemu/qemu.h"
#include "migrate/guests/qemu/qmp.h"
#include "uffd_compat.h"
#include "migrate/guests/qemu/uffd_inject.h"

#define DEFAULT_TIMEOUT_MS 30000
#define POLL_MS 2		/* query-migrate while the guest is stopped */
#define GUARDIAN_ID_BASE (1ul << 40)

struct hm_qemu {
	struct hm_qmp *qmp;
	struct hm_log log;
	pid_t pid;
	int pidfd;		/* held from the identity check on (R14) */
	bool source, kvm;
	int major, minor;
	unsigned tmo;
	char uri[256];
	char memdev[64];
	uint64_t ram_size;
	bool memfd_backend;	/* no file name: memfd (7.2 only) */
	char mem_path[512];	/* memory-backend-file's mem-path */
	int ram_fd;
	struct hm_ram_block blocks[HM_QEMU_MAX_BLOCKS];
	size_t nblocks;
	bool caps_on;		/* we turned capabilities on */
	bool tls_on;		/* we added hm-tls and set tls-creds */
	char tls_dir[512];	/* hm_qemu_opts.tls_dir, "" none */
	char tls_hostname[256];
	bool unsafe_continue_early, continued;
	bool libvirt;		/* hm_qemu_opts.libvirt */
	bool stopped;		/* we sent `stop` (libvirt mode) */
	bool migrating;		/* `migrate` sent, not ended */
	pid_t guardian;
	int guard_fd;		/* write end: 'D' = done, EOF = we died */
	struct hm_qemu_stats st;
	uint64_t pre_switchover_ms;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

__attribute__((format(printf, 3, 4))) static int
qfail(struct hm_qemu *q, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hm_vlogf(&q->log, HM_LOG_ERROR, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- QMP helpers ---------------------------------------------------------- */

static const char *migrate_status(struct hm_qemu *q, struct json_object **out)
{
	static const char none[] = "none";
	struct json_object *r = hm_qmp_exec(q->qmp, "query-migrate", NULL,
					    (int)q->tmo);

	*out = r;
	if (!r)
		return NULL;
	return hm_json_str(r, "status", none);
}

/* A migration that QEMU is still running (capabilities cannot change). */
static bool status_active(const char *s)
{
	static const char *const ended[] = { "none", "completed", "failed",
					     "cancelled" };

	for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++)
		if (!strcmp(s, ended[i]))
			return false;
	return true;
}

/* A destination waiting for its stream: "none" until the stream begins
 * (7.2), "setup" from migrate-incoming on (QEMU 10; libvirt sends it
 * before its started hook). Nothing runs there yet. */
static bool dest_waiting(const struct hm_qemu *q, const char *s)
{
	return !q->source && (!strcmp(s, "none") || !strcmp(s, "setup"));
}

static int set_caps(struct hm_qemu *q, bool on)
{
	const char *b = on ? "true" : "false";

	if (q->source && !q->libvirt)
		return hm_qmp_run(q->qmp, (int)q->tmo,
				  "migrate-set-capabilities",
				  "{\"capabilities\": ["
				  "{\"capability\": \"x-ignore-shared\", "
				  "\"state\": %s}, "
				  "{\"capability\": \"pause-before-switchover\","
				  " \"state\": %s}]}",
				  b, b) ? -EIO : 0;
	return hm_qmp_run(q->qmp, (int)q->tmo, "migrate-set-capabilities",
			  "{\"capabilities\": [{\"capability\": "
			  "\"x-ignore-shared\", \"state\": %s}]}",
			  b) ? -EIO : 0;
}

/* R18 for QEMU's own stream (--qemu --tls): QEMU's tls-creds-x509 from
 * the same directory, verify-peer on, set as the migration's tls-creds
 * (the source also names the destination, tls-hostname). */
static int qemu_tls_on(struct hm_qemu *q)
{
	if (!q->tls_dir[0] || q->libvirt)
		return 0;
	/* both go into QMP's JSON as they are */
	if (strpbrk(q->tls_dir, "\"\\") || strpbrk(q->tls_hostname, "\"\\"))
		return qfail(q, -EINVAL, "QEMU %d: a TLS directory or host "
			     "name with a quote or backslash", (int)q->pid);
	if (hm_qmp_run(q->qmp, (int)q->tmo, "object-add",
		       "{\"qom-type\": \"tls-creds-x509\", \"id\": \"hm-tls\", "
		       "\"dir\": \"%s\", \"endpoint\": \"%s\", "
		       "\"verify-peer\": true}", q->tls_dir,
		       q->source ? "client" : "server"))
		return qfail(q, -EIO, "QEMU %d: TLS credentials from %s: %s",
			     (int)q->pid, q->tls_dir, hm_qmp_error(q->qmp));
	q->tls_on = true;
	if (q->source ? hm_qmp_run(q->qmp, (int)q->tmo,
				   "migrate-set-parameters",
				   "{\"tls-creds\": \"hm-tls\", "
				   "\"tls-hostname\": \"%s\"}", q->tls_hostname)
		      : hm_qmp_run(q->qmp, (int)q->tmo,
				   "migrate-set-parameters",
				   "{\"tls-creds\": \"hm-tls\"}"))
		return qfail(q, -EIO, "QEMU %d: migrate-set-parameters "
			     "tls-creds: %s", (int)q->pid, hm_qmp_error(q->qmp));
	hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: its own stream in TLS too "
		"(tls-creds-x509 from %s, verify-peer%s%s)", (int)q->pid,
		q->tls_dir, q->source ? ", tls-hostname " : "",
		q->source ? q->tls_hostname : "");
	return 0;
}

/* What qemu_tls_on grants, taken back: QEMU's migration parameters
 * emptied, then the object deleted (it cannot go while they name it).
 * 0 or -EIO. */
static int tls_take_back(struct hm_qemu *q, int tmo_ms)
{
	return hm_qmp_run(q->qmp, tmo_ms, "migrate-set-parameters",
			  "{\"tls-creds\": \"\", \"tls-hostname\": \"\"}") ||
	       hm_qmp_run(q->qmp, tmo_ms, "object-del",
			  "{\"id\": \"hm-tls\"}") ? -EIO : 0;
}

static void qemu_tls_off(struct hm_qemu *q)
{
	if (!q->tls_on)
		return;
	if (tls_take_back(q, (int)q->tmo) < 0)
		hm_logf(&q->log, HM_LOG_WARN, "QEMU %d: could not remove its "
			"migration TLS settings: %s", (int)q->pid,
			hm_qmp_error(q->qmp));
	q->tls_on = false;
}

/* Wait until QEMU's migration is no longer running (up to ms). */
static void wait_ended(struct hm_qemu *q, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end) {
		struct json_object *r;
		const char *s = migrate_status(q, &r);
		bool active = !s || (status_active(s) && !dest_waiting(q, s));

		json_object_put(r);
		if (!active || !s)
			return;
		sleep_ms(20);
	}
}

/* ---- the guardian --------------------------------------------------------- */

/* libvirt mode: libvirt, not hintmig, migrates the device state and
 * resumes the source when its migration fails. x-ignore-shared must stay
 * on for as long as libvirt may still send `migrate` after a final round
 * the destination acknowledged; it goes off once the guest runs again with
 * no migration active (libvirt gave up and resumed it) and is moot when
 * QEMU is gone (migrated). */
static __attribute__((noreturn)) void
guardian_watch_libvirt(struct hm_qemu *q)
{
	for (unsigned fails = 0;;) {
		struct json_object *r = hm_qmp_exec(q->qmp, "query-status",
						    NULL, 10000);
		const char *st, *ms;
		bool running;

		if (!r) {
			/* QEMU gone (migrated or killed), or its monitor */
			if ((kill(q->pid, 0) < 0 && errno == ESRCH) ||
			    ++fails > 50)
				_exit(0);
			sleep_ms(200);
			continue;
		}
		st = hm_json_str(r, "status", "?");
		running = !strcmp(st, "running");
		json_object_put(r);
		if (running) {
			ms = migrate_status(q, &r);
			running = ms && !status_active(ms);
			json_object_put(r);
		}
		if (running) {
			if (set_caps(q, false) == 0)
				hm_logf(&q->log, HM_LOG_INFO, "guardian: QEMU "
					"%d runs again, x-ignore-shared off",
					(int)q->pid);
			_exit(0);
		}
		sleep_ms(200);
	}
}

/* A child forked at attach, holding a copy of the QMP connection. If this
 * process dies (SIGKILL included) it finds the pipe closed without the
 * 'D' that a normal end writes, cancels QEMU's migration (QEMU restarts
 * the guest if the migration had stopped it: pre-switchover) and turns
 * the capabilities off. It is forked before the userfaultfd exists, so
 * that it never holds the tracking alive: when this process dies the
 * kernel releases the tracking at once (R9). */
static void guardian_main(struct hm_qemu *q, int rfd)
{
	char c = 0;
	ssize_t n;

	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	do
		n = read(rfd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1 && c == 'D')
		_exit(0);
	hm_qmp_forget(q->qmp, GUARDIAN_ID_BASE);
	if (q->libvirt) {
		if (n != 1 || c != 'L') /* 'L': a normal end */
			hm_logf(&q->log, HM_LOG_WARN, "guardian: hintmig ended "
				"during the migration of QEMU %d: libvirt's "
				"migration fails and libvirt resumes the guest; "
				"x-ignore-shared goes off when it runs again",
				(int)q->pid);
		guardian_watch_libvirt(q); /* does not return */
	}
	hm_logf(&q->log, HM_LOG_WARN,
		"guardian: hintmig ended during the migration of QEMU %d: "
		"cancelling QEMU's migration, restoring its capabilities",
		(int)q->pid);
	/* The first line read may be the tail of an answer the dead process
	 * had half read: try again. */
	for (int i = 0; i < 3; i++) {
		struct json_object *r = hm_qmp_exec(q->qmp, "migrate_cancel",
						    NULL, 10000);

		if (r) {
			json_object_put(r);
			break;
		}
	}
	wait_ended(q, 60000);
	set_caps(q, false);
	/* what --tls gave QEMU's own migration, if it got that far (errors
	 * ignored: the object may never have been added) */
	if (q->tls_dir[0] && !q->libvirt)
		(void)tls_take_back(q, 10000);
	_exit(0);
}

static int guardian_start(struct hm_qemu *q)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (pid == 0) {
		close(p[1]);
		guardian_main(q, p[0]);
		_exit(0);
	}
	close(p[0]);
	q->guardian = pid;
	q->guard_fd = p[1];
	return 0;
}

static void guardian_stop(struct hm_qemu *q)
{
	if (q->guard_fd >= 0) {
		/* libvirt mode: the guardian stays and watches (above) */
		if (write(q->guard_fd, q->libvirt ? "L" : "D", 1) != 1)
			hm_logf(&q->log, HM_LOG_DEBUG, "guardian: %s",
				strerror(errno));
		close(q->guard_fd);
		q->guard_fd = -1;
	}
	if (q->guardian > 0 && q->libvirt) {
		q->guardian = 0; /* it outlives us, reaped by init */
	} else if (q->guardian > 0) {
		while (waitpid(q->guardian, NULL, 0) < 0 && errno == EINTR)
			;
		q->guardian = 0;
	}
}

/* ---- identity (R14) --------------------------------------------------------- */

/* Before root ptraces a process or opens its memory, prove it is the
 * QEMU meant: the process that answers on the QMP socket (its peer
 * credentials), held by a pidfd from here on so that a recycled pid is
 * never acted on; its program a QEMU system emulator; and, when the
 * caller knows it (libvirt's pidfile), the expected pid. */
static int check_identity(struct hm_qemu *q, const char *qmp_path,
			  pid_t expect)
{
	char path[64], exe[4096];
	const char *base;
	ssize_t n;

	q->pidfd = hm_sys_pidfd_open(q->pid, 0);
	if (q->pidfd < 0)
		return qfail(q, -errno, "process %d on QMP socket %s: "
			     "pidfd_open: %s", (int)q->pid, qmp_path,
			     strerror(errno));
	if (expect > 0 && expect != q->pid)
		return qfail(q, -EPERM, "the process answering on QMP socket "
			     "%s is %d, not the QEMU %d expected (its "
			     "pidfile): refused, nothing done", qmp_path,
			     (int)q->pid, (int)expect);
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)q->pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0)
		return qfail(q, -errno, "%s: %s", path, strerror(errno));
	exe[n] = 0;
	base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	if (strncmp(base, "qemu-system-", 12) && strncmp(base, "qemu-kvm", 8))
		return qfail(q, -EPERM, "the process answering on QMP socket "
			     "%s (pid %d) runs %s, not QEMU: refused, nothing "
			     "done (root never traces or maps a process it "
			     "has not identified)", qmp_path, (int)q->pid, exe);
	/* the pidfd is of the process just checked: it still lives */
	if (hm_pidfd_exited(q->pidfd))
		return qfail(q, -ESRCH, "QEMU %d exited during the identity "
			     "check", (int)q->pid);
	return 0;
}

/* ---- checks ----------------------------------------------------------------- */

static int check_version_state(struct hm_qemu *q)
{
	struct json_object *r = hm_qmp_exec(q->qmp, "query-version", NULL,
					    (int)q->tmo);
	struct json_object *v = hm_json_obj(r, "qemu");
	const char *st, *ms;
	int ret = 0;

	q->major = (int)hm_json_int(v, "major", 0);
	q->minor = (int)hm_json_int(v, "minor", 0);
	json_object_put(r);
	if (!q->major)
		return qfail(q, -EPROTO, "QEMU %d: query-version: %s",
			     (int)q->pid, hm_qmp_error(q->qmp));
	r = hm_qmp_exec(q->qmp, "query-kvm", NULL, (int)q->tmo);
	v = r ? json_object_object_get(r, "enabled") : NULL;
	q->kvm = v && json_object_get_boolean(v);
	json_object_put(r);

	r = hm_qmp_exec(q->qmp, "query-status", NULL, (int)q->tmo);
	st = hm_json_str(r, "status", "?");
	if (q->source && (!strcmp(st, "inmigrate") ||
			  !strcmp(st, "postmigrate") ||
			  !strcmp(st, "finish-migrate")))
		ret = qfail(q, -EBUSY, "source QEMU %d is in state '%s': it "
			    "holds no guest to migrate", (int)q->pid, st);
	if (!q->source && strcmp(st, "inmigrate"))
		ret = qfail(q, -EBUSY, "destination QEMU %d is in state '%s', "
			    "not waiting for a migration: start it with "
			    "-incoming defer", (int)q->pid, st);
	json_object_put(r);
	if (ret < 0)
		return ret;
	ms = migrate_status(q, &r);
	if (!ms)
		ret = qfail(q, -EIO, "QEMU %d: query-migrate: %s",
			    (int)q->pid, hm_qmp_error(q->qmp));
	else if (status_active(ms) && !dest_waiting(q, ms))
		ret = qfail(q, -EINPROGRESS, "QEMU %d already has a "
			    "migration in state '%s'", (int)q->pid, ms);
	json_object_put(r);
	return ret;
}

/* R10 and the balloon: devices that write guest RAM where userfaultfd-wp
 * does not see it, named so that the user knows which one to remove. */
static int check_device(struct hm_qemu *q, const char *path,
			const char *type)
{
	if (!strncmp(type, "vfio", 4))
		return qfail(q, -EXDEV, "device %s (%s): VFIO device DMA "
			     "writes guest RAM through pinned pages, which "
			     "userfaultfd-wp cannot see (R10): hintmig "
			     "refuses this guest", path, type);
	if (strstr(type, "vhost-user"))
		return qfail(q, -EXDEV, "device %s (%s): a vhost-user "
			     "back-end writes guest RAM from another process "
			     "through its own mapping, which userfaultfd-wp "
			     "cannot see (R10): hintmig refuses this guest",
			     path, type);
	if (strstr(type, "virtio-balloon")) {
		struct json_object *r = hm_qmp_execf(
			q->qmp, (int)q->tmo, "qom-get",
			"{\"path\": \"%s\", \"property\": \"free-page-hint\"}",
			path);
		bool on = r && json_object_get_boolean(r);

		json_object_put(r);
		if (on)
			return qfail(q, -ENOTSUP, "device %s: virtio-balloon "
				     "free-page-hint=on cannot be combined "
				     "with x-ignore-shared in QEMU 7.2 (it "
				     "clears a dirty bitmap that ignored "
				     "blocks do not have): turn it off; "
				     "hintmig takes its hints from its own "
				     "agent (--agent)", path);
	}
	return 0;
}

static int check_devices(struct hm_qemu *q)
{
	static const char *const roots[] = { "/machine/peripheral",
					     "/machine/peripheral-anon" };
	struct json_object *r;
	int ret = 0;

	for (size_t k = 0; k < 2 && ret == 0; k++) {
		size_t n;

		r = hm_qmp_execf(q->qmp, (int)q->tmo, "qom-list",
				 "{\"path\": \"%s\"}", roots[k]);
		n = r && json_object_is_type(r, json_type_array)
			    ? json_object_array_length(r) : 0;
		for (size_t i = 0; i < n && ret == 0; i++) {
			struct json_object *e = json_object_array_get_idx(r, i);
			const char *t = hm_json_str(e, "type", "");
			const char *nm = hm_json_str(e, "name", "");
			char path[256], type[128];
			size_t tl;

			if (strncmp(t, "child<", 6))
				continue;
			tl = strlen(t + 6);
			snprintf(type, sizeof(type), "%.*s",
				 (int)(tl ? tl - 1 : 0), t + 6);
			snprintf(path, sizeof(path), "%s/%s", roots[k], nm);
			ret = check_device(q, path, type);
		}
		json_object_put(r);
	}
	if (ret < 0)
		return ret;
	/* Network back-ends that write guest RAM from elsewhere: vhost-user
	 * (another process), vhost-vdpa (device DMA). */
	r = hm_qmp_execf(q->qmp, (int)q->tmo, "human-monitor-command",
			 "{\"command-line\": \"info network\"}");
	if (r && json_object_get_string(r)) {
		const char *t = json_object_get_string(r);
		const char *bad = strstr(t, "type=vhost-user");

		if (!bad)
			bad = strstr(t, "type=vhost-vdpa");
		if (bad) {
			const char *ls = bad;

			while (ls > t && ls[-1] != '\n')
				ls--;
			ret = qfail(q, -EXDEV, "network back-end '%.*s': "
				    "%s writes guest RAM outside QEMU's page "
				    "tables, which userfaultfd-wp cannot see "
				    "(R10): hintmig refuses this guest",
				    (int)strcspn(ls, "\r\n"), ls,
				    strstr(bad, "vdpa") ? "vhost-vdpa device DMA"
							: "a vhost-user back-end");
		}
	}
	json_object_put(r);
	if (ret < 0)
		return ret;
	/* Disks opened with O_DIRECT: reads complete into guest RAM by DMA,
	 * possibly after a harvest (R10). */
	r = hm_qmp_exec(q->qmp, "query-block", NULL, (int)q->tmo);
	for (size_t i = 0; r && json_object_is_type(r, json_type_array) &&
			   i < json_object_array_length(r) && ret == 0; i++) {
		struct json_object *b = json_object_array_get_idx(r, i);
		struct json_object *in = hm_json_obj(b, "inserted");
		struct json_object *cache = hm_json_obj(in, "cache");
		struct json_object *d = cache ? json_object_object_get(cache,
								       "direct")
					      : NULL;

		if (d && json_object_get_boolean(d))
			ret = qfail(q, -EXDEV, "disk %s (drive %s): opened "
				    "with cache.direct=on (O_DIRECT): reads "
				    "land in guest RAM by DMA, which "
				    "userfaultfd-wp cannot see (R10); use a "
				    "cache mode without direct I/O",
				    hm_json_str(b, "qdev", "?"),
				    hm_json_str(b, "device", "?"));
	}
	json_object_put(r);
	return ret;
}

/* ---- finding guest RAM ---------------------------------------------------- */

struct piece {
	uint64_t gpa, off, len;
};

static int cmp_piece(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Is name the id of a memory backend (query-memdev)? 1 shared, 0 private,
 * -ENOENT no such backend. */
static int memdev_shared(struct hm_qemu *q, const char *name);

/* Add piece p to out[] unless it maps RAM that a piece already there maps
 * (PAM and SMRAM aliases show parts of ram-below-4g a second time). */
static int add_piece(struct hm_qemu *q, struct piece *out, int n, size_t max,
		     struct piece p)
{
	for (int i = 0; i < n; i++) {
		uint64_t s = out[i].off, e = out[i].off + out[i].len;

		if (p.off >= e || p.off + p.len <= s)
			continue;
		if (p.off >= s && p.off + p.len <= e)
			return n; /* an alias of RAM already mapped */
		if (s >= p.off && e <= p.off + p.len) {
			out[i] = p; /* the bigger one is the real mapping */
			return n;
		}
		return qfail(q, -ENOTSUP, "info mtree: RAM mapped twice with "
			     "partial overlap at offset 0x%" PRIx64, p.off);
	}
	if ((size_t)n == max)
		return qfail(q, -ENOTSUP, "info mtree: more than %zu pieces of "
			     "guest RAM", max);
	out[n] = p;
	return n + 1;
}

/* The guest-physical pieces of the memory backend that holds guest RAM,
 * from `info mtree` (the "memory" address space only; aliases of ram type
 * into a memory backend), biggest first. Returns how many, or -errno. */
static int mtree_pieces(struct hm_qemu *q, struct piece *out, size_t max,
			char *target, size_t tlen)
{
	struct json_object *r = hm_qmp_execf(
		q->qmp, (int)q->tmo, "human-monitor-command",
		"{\"command-line\": \"info mtree\"}");
	const char *text = r ? json_object_get_string(r) : NULL;
	const char *line = text;
	char other[128] = "";
	bool in_memory = false;
	int n = 0;

	if (!text) {
		json_object_put(r);
		return qfail(q, -EIO, "QEMU %d: info mtree: %s", (int)q->pid,
			     hm_qmp_error(q->qmp));
	}
	target[0] = '\0';
	while (line && *line && n >= 0) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512], name[128], tgt[128];
		unsigned long long a, b, s, e;
		int prio;

		/* HMP output ends its lines with \r\n */
		if (len && line[len - 1] == '\r')
			len--;
		snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
		line = nl ? nl + 1 : NULL;
		if (!strncmp(buf, "address-space: ", 15)) {
			in_memory = !strcmp(buf + 15, "memory");
			continue;
		}
		if (!in_memory)
			continue;
		if (sscanf(buf, " %llx-%llx (prio %d, ram): alias %127s @%127s "
			   "%llx-%llx", &a, &b, &prio, name, tgt, &s, &e) != 7)
			continue;
		if (memdev_shared(q, tgt) == -ENOENT) {
			/* VRAM windows and the like; or pc.ram itself */
			if (!other[0] && !strncmp(name, "ram-", 4))
				snprintf(other, sizeof(other), "%s", tgt);
			continue;
		}
		if (target[0] && strcmp(target, tgt)) {
			json_object_put(r);
			return qfail(q, -ENOTSUP, "guest RAM is in several "
				     "memory backends ('%s', '%s'): NUMA "
				     "guests are not supported yet",
				     target, tgt);
		}
		if (strlen(tgt) >= tlen) {
			json_object_put(r);
			return qfail(q, -ENOTSUP, "RAM block name too long: "
				     "%s", tgt);
		}
		memcpy(target, tgt, strlen(tgt) + 1);
		if (b < a || e - s != b - a) {
			json_object_put(r);
			return qfail(q, -ENOTSUP, "info mtree: unexpected RAM "
				     "layout at 0x%llx", a);
		}
		n = add_piece(q, out, n, max,
			      (struct piece){ a, s, b - a + 1 });
	}
	json_object_put(r);
	if (n == 0 && other[0])
		return qfail(q, -EMEDIUMTYPE, "guest RAM '%s' is QEMU's "
			     "private anonymous memory (plain -m): hintmig "
			     "needs it shared, e.g. -object "
			     "memory-backend-file,id=mem,size=SIZE,"
			     "mem-path=/dev/shm/NAME,share=on "
			     "-machine memory-backend=mem (or "
			     "memory-backend-memfd)", other);
	if (n == 0)
		return qfail(q, -ENOTSUP, "QEMU %d: no guest RAM alias "
			     "(ram-below-4g...) in info mtree: this machine "
			     "type is not supported", (int)q->pid);
	return n;
}

/* Size and page size of RAM block name from x-query-ramblock. */
static int ramblock_info(struct hm_qemu *q, const char *name, uint64_t *used,
			 uint64_t *psize)
{
	struct json_object *r = hm_qmp_exec(q->qmp, "x-query-ramblock", NULL,
					    (int)q->tmo);
	const char *text = hm_json_str(r, "human-readable-text", NULL);
	const char *line = text;
	int ret = -ENOENT;

	while (line && *line) {
		char nm[128], unit[8];
		unsigned long long off, u, t;
		double ps;

		if (sscanf(line, " %127s %lf %7s 0x%llx 0x%llx 0x%llx", nm, &ps,
			   unit, &off, &u, &t) == 6 && !strcmp(nm, name)) {
			*used = u;
			*psize = (uint64_t)ps *
				 (!strcmp(unit, "KiB") ? 1024u
				  : !strcmp(unit, "MiB") ? 1048576u
				  : !strcmp(unit, "GiB") ? 1073741824u : 1u);
			ret = 0;
			break;
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	json_object_put(r);
	if (ret < 0)
		qfail(q, ret, "QEMU %d: RAM block '%s' not in "
		      "x-query-ramblock", (int)q->pid, name);
	return ret;
}

static int memdev_shared(struct hm_qemu *q, const char *name)
{
	struct json_object *r = hm_qmp_exec(q->qmp, "query-memdev", NULL,
					    (int)q->tmo);
	int ret = -ENOENT;

	for (size_t i = 0; r && json_object_is_type(r, json_type_array) &&
			   i < json_object_array_length(r); i++) {
		struct json_object *m = json_object_array_get_idx(r, i);
		struct json_object *sh;

		if (strcmp(hm_json_str(m, "id", ""), name))
			continue;
		sh = json_object_object_get(m, "share");
		ret = sh && json_object_get_boolean(sh);
	}
	json_object_put(r);
	return ret;
}

/* Which backend holds the RAM. x-ignore-shared leaves a block out of
 * QEMU's stream only if it is shared and, from QEMU 8.1 on
 * (RAM_NAMED_FILE), backed by a named file: memory-backend-file with
 * share=on. memory-backend-memfd is skipped by 7.2 and migrated in full by
 * 8.1 and later, as are memory-backend-shm (9.1) and memory-backend-ram
 * share=on: refused there before anything starts, or QEMU would move the
 * whole RAM a second time behind hintmig. */
static int backend_kind(struct hm_qemu *q)
{
	struct json_object *r = hm_qmp_execf(
		q->qmp, (int)q->tmo, "qom-get",
		"{\"path\": \"/objects/%s\", \"property\": \"mem-path\"}",
		q->memdev);
	char type[64] = "?";
	bool named_only = q->major > 8 || (q->major == 8 && q->minor >= 1);

	q->mem_path[0] = '\0';
	if (r && json_object_get_string(r))
		snprintf(q->mem_path, sizeof(q->mem_path), "%s",
			 json_object_get_string(r));
	json_object_put(r);
	if (q->mem_path[0])
		return 0;
	r = hm_qmp_execf(q->qmp, (int)q->tmo, "qom-get",
			 "{\"path\": \"/objects/%s\", \"property\": "
			 "\"type\"}", q->memdev);
	if (r && json_object_get_string(r))
		snprintf(type, sizeof(type), "%s", json_object_get_string(r));
	json_object_put(r);
	if (named_only)
		return qfail(q, -EMEDIUMTYPE, "QEMU %d.%d: guest RAM '%s' is "
			     "a %s, which QEMU 8.1 and later migrate in full "
			     "even with x-ignore-shared (it skips only RAM in "
			     "a named file): use -object memory-backend-file,"
			     "id=%s,mem-path=/dev/shm/NAME,share=on (libvirt: "
			     "<source type='file'/> with memory_backing_dir "
			     "on a tmpfs)", q->major, q->minor, q->memdev, type,
			     q->memdev);
	if (strcmp(type, "memory-backend-memfd"))
		return qfail(q, -EMEDIUMTYPE, "guest RAM '%s' is a %s: hintmig "
			     "needs memory-backend-file,share=on (or "
			     "memory-backend-memfd on QEMU 7.2)", q->memdev,
			     type);
	q->memfd_backend = true;
	return 0;
}

/* Is the mapped file (its path as /proc/PID/maps prints it for us, its
 * device and inode) the backend's: mem-path itself (same file, whatever
 * the path reads like from our mount namespace: libvirt runs QEMU in one
 * of its own), or a file in the mem-path directory? */
static bool backend_file(const char *memp, const struct stat *mst,
			 bool have_mst, const char *file, unsigned dmaj,
			 unsigned dmin, unsigned long long ino)
{
	size_t ml = strlen(memp);
	const char *at;

	if (have_mst && S_ISREG(mst->st_mode))
		return major(mst->st_dev) == dmaj &&
		       minor(mst->st_dev) == dmin && mst->st_ino == ino;
	/* A directory (libvirt's <hugepages/>, memory_backing_dir): QEMU
	 * makes a file in it and unlinks it. Its path reads from another
	 * mount namespace (a namespaced QEMU seen from a chroot) with a
	 * longer prefix: the directory's device, and its path inside. */
	if (have_mst && S_ISDIR(mst->st_mode))
		return major(mst->st_dev) == dmaj &&
		       minor(mst->st_dev) == dmin &&
		       (at = strstr(file, memp)) != NULL && at[ml] == '/';
	return !strncmp(file, memp, ml) &&
	       (!file[ml] || file[ml] == '/' || file[ml] == ' ');
}

/* Where QEMU maps the RAM block (size bytes): the one shared mapping of
 * that size whose file is the backend's (memory-backend-file: mem-path, or a
 * file in the mem-path directory; memory-backend-memfd: a memfd). */
static int find_mapping(struct hm_qemu *q, uint64_t size,
			uint64_t *start_out, uint64_t *end_out)
{
	const char *memp = q->mem_path;
	char path[64], line[1024];
	unsigned found = 0;
	struct stat mst;
	bool have_mst = !q->memfd_backend && stat(memp, &mst) == 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)q->pid);
	f = fopen(path, "re");
	if (!f)
		return qfail(q, -errno, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off, ino = 0;
		unsigned dmaj = 0, dmin = 0;
		char perms[8], file[600] = "";

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %599[^\n]", &s,
			   &e, perms, &off, &dmaj, &dmin, &ino, file) < 7)
			continue;
		if (perms[3] != 's' || e - s != size || off != 0)
			continue;
		if (q->memfd_backend ? strncmp(file, "/memfd:", 7) != 0
				     : !backend_file(memp, &mst, have_mst, file,
						     dmaj, dmin, ino))
			continue;
		*start_out = s;
		*end_out = e;
		found++;
	}
	fclose(f);
	if (found != 1)
		return qfail(q, found ? -ENOTSUP : -ENOENT,
			     "QEMU %d: %u shared mappings of %" PRIu64
			     " bytes of %s%s: cannot tell which one is RAM "
			     "block '%s'", (int)q->pid, found, size,
			     q->memfd_backend ? "a memfd" : memp,
			     found ? "" : " (none)", q->memdev);
	return 0;
}

static int find_ram(struct hm_qemu *q)
{
	struct piece pcs[HM_QEMU_MAX_BLOCKS];
	uint64_t used = 0, psize = 0, start = 0, end = 0, at = 0;
	char path[96];
	struct stat st;
	int n, ret;

	n = mtree_pieces(q, pcs, HM_QEMU_MAX_BLOCKS, q->memdev,
			 sizeof(q->memdev));
	if (n < 0)
		return n;
	ret = memdev_shared(q, q->memdev);
	if (ret == 0)
		return qfail(q, -EMEDIUMTYPE, "guest RAM '%s' is private to "
			     "QEMU%s: hintmig reads and fills it from outside "
			     "and needs it shared, e.g. -object "
			     "memory-backend-file,id=mem,size=SIZE,"
			     "mem-path=/dev/shm/NAME,share=on -machine "
			     "memory-backend=mem (or memory-backend-memfd, or "
			     "share=on on your backend)", q->memdev,
			     strcmp(q->memdev, "pc.ram") ? ""
			     : " (plain -m makes this private backend)");
	ret = backend_kind(q);
	if (ret < 0)
		return ret;
	ret = ramblock_info(q, q->memdev, &used, &psize);
	if (ret < 0)
		return ret;
	/* 4 KiB pages, or huge pages of hugetlbfs (2 MiB, 1 GiB): hintmig's
	 * pages stay 4 KiB (hints and the wire), the tracker follows the
	 * kernel's whole huge pages (R12, docs/design.md "Huge pages") */
	if (psize != 4096 && psize != (2u << 20) && psize != (1u << 30))
		return qfail(q, -ENOTSUP, "memory backend '%s' has %" PRIu64
			     "-byte pages: 4 KiB, 2 MiB and 1 GiB pages are "
			     "supported", q->memdev, psize);
	qsort(pcs, (size_t)n, sizeof(pcs[0]), cmp_piece);
	for (int i = 0; i < n; i++) {
		if (pcs[i].off != at || pcs[i].gpa % 4096 ||
		    pcs[i].len % 4096)
			return qfail(q, -ENOTSUP, "RAM block '%s': guest-"
				     "physical pieces do not cover it in "
				     "order at offset 0x%" PRIx64, q->memdev,
				     at);
		at += pcs[i].len;
	}
	if (at != used)
		return qfail(q, -ENOTSUP, "RAM block '%s': %" PRIu64 " bytes, "
			     "guest-physical pieces cover %" PRIu64, q->memdev,
			     used, at);
	q->ram_size = used;
	ret = find_mapping(q, used, &start, &end);
	if (ret < 0)
		return ret;
	if (q->memfd_backend)
		hm_logf(&q->log, HM_LOG_INFO, "memory-backend-memfd: works "
			"with QEMU 7.2's x-ignore-shared; from QEMU 8.1 on "
			"use memory-backend-file,share=on");
	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64,
		 (int)q->pid, start, end);
	/* The source's RAM is only ever read (the source guest is never
	 * written); the destination's is filled. */
	q->ram_fd = open(path, (q->source ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (q->ram_fd < 0)
		return qfail(q, -errno, "%s: %s (root is needed to open "
			     "another process's mappings)", path,
			     strerror(errno));
	/* opened by pid: still the identified process (R14) */
	if (hm_pidfd_exited(q->pidfd))
		return qfail(q, -ESRCH, "QEMU %d exited while its RAM was "
			     "opened", (int)q->pid);
	if (fstat(q->ram_fd, &st) < 0 || (uint64_t)st.st_size < used)
		return qfail(q, -EMEDIUMTYPE, "RAM file of '%s' is smaller "
			     "than the block", q->memdev);
	for (int i = 0; i < n; i++) {
		struct hm_ram_block *b = &q->blocks[i];

		memset(b, 0, sizeof(*b));
		snprintf(b->name, sizeof(b->name), "%.40s@%" PRIx64, q->memdev,
			 pcs[i].gpa);
		b->gpa = pcs[i].gpa;
		b->len = pcs[i].len;
		b->host_addr = start + pcs[i].off;
		b->memfd = q->ram_fd;
		b->memfd_offset = pcs[i].off;
	}
	q->nblocks = (size_t)n;
	hm_logf(&q->log, HM_LOG_INFO, "QEMU %d (%d.%d, %s): guest RAM '%s' "
		"%" PRIu64 " MiB in %d guest-physical piece%s, %s",
		(int)q->pid, q->major, q->minor, q->kvm ? "KVM" : "TCG",
		q->memdev, used >> 20, n, n > 1 ? "s" : "",
		q->memfd_backend ? "memfd" : "shared file");
	return 0;
}

/* ---- attach / detach ------------------------------------------------------ */

struct hm_qemu *hm_qemu_attach(const struct hm_qemu_opts *o,
			       const struct hm_log *log)
{
	struct hm_qemu *q;
	char err[512];
	int ret;

	if (!o || !o->qmp_path || (!o->qemu_uri && !o->libvirt) ||
	    (o->qemu_uri && strlen(o->qemu_uri) >= sizeof(q->uri))) {
		errno = EINVAL;
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		errno = ENOMEM;
		return NULL;
	}
	if (log)
		q->log = *log;
	q->source = o->source;
	q->unsafe_continue_early = o->unsafe_continue_early;
	q->libvirt = o->libvirt;
	if (o->tls_dir)
		snprintf(q->tls_dir, sizeof(q->tls_dir), "%s", o->tls_dir);
	if (o->tls_hostname)
		snprintf(q->tls_hostname, sizeof(q->tls_hostname), "%s",
			 o->tls_hostname);
	q->ram_fd = -1;
	q->pidfd = -1;
	q->guard_fd = -1;
	q->tmo = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	snprintf(q->uri, sizeof(q->uri), "%s",
		 o->qemu_uri ? o->qemu_uri : "");
	q->qmp = hm_qmp_connect(o->qmp_path, 2000, err, sizeof(err));
	if (!q->qmp) {
		ret = qfail(q, -ECONNREFUSED, "%s QEMU: QMP socket %s: %s",
			    q->source ? "source" : "destination",
			    o->qmp_path, err);
		goto fail;
	}
	q->pid = hm_qmp_peer_pid(q->qmp);
	if (q->pid < 0) {
		ret = qfail(q, (int)q->pid, "QMP socket %s: no peer process",
			    o->qmp_path);
		goto fail;
	}
	ret = check_identity(q, o->qmp_path, o->expect_pid);
	if (ret == 0)
		ret = check_version_state(q);
	if (ret == 0)
		ret = check_devices(q);
	if (ret == 0)
		ret = find_ram(q);
	if (ret == 0 && q->source)
		ret = guardian_start(q);
	if (ret < 0)
		goto fail;
	return q;
fail:
	hm_qemu_detach(q);
	errno = -ret;
	return NULL;
}

void hm_qemu_detach(struct hm_qemu *q)
{
	if (!q)
		return;
	/* libvirt mode, source: libvirt may still migrate the guest with
	 * x-ignore-shared; the guardian turns it off when that is safe */
	if (q->qmp && q->caps_on && !(q->libvirt && q->source)) {
		/* Capabilities cannot change while a migration runs. */
		wait_ended(q, q->tmo);
		if (set_caps(q, false) < 0)
			hm_logf(&q->log, HM_LOG_WARN, "QEMU %d: could not turn "
				"x-ignore-shared off again: %s (a later "
				"savevm or migration would leave RAM out)",
				(int)q->pid, hm_qmp_error(q->qmp));
	}
	if (q->qmp && q->tls_on) {
		wait_ended(q, q->tmo);
		qemu_tls_off(q);
	}
	guardian_stop(q);
	hm_qmp_close(q->qmp);
	if (q->ram_fd >= 0)
		close(q->ram_fd);
	if (q->pidfd >= 0)
		close(q->pidfd);
	free(q);
}

const struct hm_ram_block *hm_qemu_blocks(const struct hm_qemu *q, size_t *n)
{
	*n = q->nblocks;
	return q->blocks;
}

int hm_qemu_ram_fd(const struct hm_qemu *q)
{
	return q->ram_fd;
}

pid_t hm_qemu_pid(const struct hm_qemu *q)
{
	return q->pid;
}

bool hm_qemu_kvm(const struct hm_qemu *q)
{
	return q->kvm;
}

void hm_qemu_get_stats(const struct hm_qemu *q, struct hm_qemu_stats *st)
{
	*st = q->st;
}

static void read_stats(struct hm_qemu *q, struct json_object *r)
{
	struct json_object *ram = hm_json_obj(r, "ram");

	snprintf(q->st.status, sizeof(q->st.status), "%s",
		 hm_json_str(r, "status", "?"));
	q->st.total_ms = hm_json_int(r, "total-time", -1);
	q->st.downtime_ms = hm_json_int(r, "downtime", -1);
	q->st.setup_ms = hm_json_int(r, "setup-time", -1);
	q->st.transferred = hm_json_int(ram, "transferred", -1);
}

int hm_qemu_default_uri(const char *addr, char *out, size_t len)
{
	const char *colon;
	int n;

	if (!strncmp(addr, "unix:", 5) && addr[5]) {
		n = snprintf(out, len, "%s.qemu", addr);
	} else if (!strncmp(addr, "tcp:", 4) &&
		   (colon = strrchr(addr, ':')) > addr + 3) {
		char *end;
		unsigned long port = strtoul(colon + 1, &end, 10);

		if (*end || !port || port >= 65535)
			return -EINVAL;
		n = snprintf(out, len, "%.*s:%lu", (int)(colon - addr), addr,
			     port + 1);
	} else {
		return -EINVAL;
	}
	return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

/* ---- source: pause = migrate up to pre-switchover ------------------------ */

/* Poll query-migrate until status want (0), an ended migration (-EIO,
 * logged with QEMU's reason) or timeout. */
static int wait_status(struct hm_qemu *q, const char *want, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		struct json_object *r;
		const char *s = migrate_status(q, &r);
		int ret = 1;

		if (!s)
			ret = qfail(q, -EIO, "QEMU %d: query-migrate: %s",
				    (int)q->pid, hm_qmp_error(q->qmp));
		else if (!strcmp(s, want))
			ret = 0;
		else if (!status_active(s) && !dest_waiting(q, s))
			ret = qfail(q, -EIO, "QEMU %d: its migration %s: %s",
				    (int)q->pid, s,
				    hm_json_str(r, "error-desc", "(no reason)"));
		if (ret <= 0) {
			if (ret == 0 || s)
				read_stats(q, r);
			json_object_put(r);
			return ret;
		}
		json_object_put(r);
		if (now_ms() > end)
			return qfail(q, -ETIMEDOUT, "QEMU %d: migration not "
				     "%s after %u ms", (int)q->pid, want, ms);
		sleep_ms(POLL_MS);
	}
}

/* libvirt mode: stop the vCPUs through our own monitor. libvirt sees the
 * STOP event during its migration job (paused, reason "migration") and
 * resumes the guest itself if its migration fails. */
static int libvirt_pause(struct hm_qemu *q)
{
	int ret = set_caps(q, true);
	uint64_t end;

	if (ret < 0)
		return qfail(q, ret, "QEMU %d: migrate-set-capabilities: %s",
			     (int)q->pid, hm_qmp_error(q->qmp));
	q->caps_on = true;
	if (hm_qmp_run(q->qmp, (int)q->tmo, "stop", NULL))
		return qfail(q, -EIO, "QEMU %d: stop: %s", (int)q->pid,
			     hm_qmp_error(q->qmp));
	q->stopped = true;
	end = now_ms() + q->tmo;
	for (;;) {
		struct json_object *r = hm_qmp_exec(q->qmp, "query-status",
						    NULL, (int)q->tmo);
		bool paused = r && !json_object_get_boolean(
					json_object_object_get(r, "running"));

		json_object_put(r);
		if (paused)
			break;
		if (!r || now_ms() > end)
			return qfail(q, -EIO, "QEMU %d: the vCPUs did not stop",
				     (int)q->pid);
		sleep_ms(POLL_MS);
	}
	hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: vCPUs stopped (libvirt "
		"migrates the device state after the final round)",
		(int)q->pid);
	return 0;
}

static int qemu_pause(void *opaque)
{
	struct hm_qemu *q = opaque;
	int ret;

	if (q->libvirt)
		return libvirt_pause(q);

	ret = set_caps(q, true);
	if (ret < 0)
		return qfail(q, ret, "QEMU %d: migrate-set-capabilities: %s",
			     (int)q->pid, hm_qmp_error(q->qmp));
	q->caps_on = true;
	/* QEMU's own stream holds only device state and the small RAM
	 * blocks that are not shared (firmware, option ROMs, VRAM): let it
	 * run at full speed (7.2's default is 32 MiB/s). */
	if (hm_qmp_run(q->qmp, (int)q->tmo, "migrate-set-parameters",
		       "{\"max-bandwidth\": %llu}", 1ull << 40))
		return qfail(q, -EIO, "QEMU %d: migrate-set-parameters: %s",
			     (int)q->pid, hm_qmp_error(q->qmp));
	ret = qemu_tls_on(q);
	if (ret < 0)
		return ret;
	if (hm_qmp_run(q->qmp, (int)q->tmo, "migrate", "{\"uri\": \"%s\"}",
		       q->uri))
		return qfail(q, -EIO, "QEMU %d: migrate to %s: %s",
			     (int)q->pid, q->uri, hm_qmp_error(q->qmp));
	q->migrating = true;
	/* QEMU first sends its own RAM blocks while the guest runs, then
	 * stops the vCPUs and waits at pre-switchover. */
	ret = wait_status(q, "pre-switchover", 120000);
	if (ret < 0) {
		q->migrating = false;
		return ret;
	}
	q->pre_switchover_ms = now_ms();
	hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: vCPUs stopped at "
		"pre-switchover", (int)q->pid);
	if (q->unsafe_continue_early) {
		/* R8 broken on purpose (tests): the device state goes before
		 * the final round */
		hm_logf(&q->log, HM_LOG_WARN, "UNSAFE: migrate-continue before "
			"the final round (R8 broken for a test)");
		if (hm_qmp_run(q->qmp, (int)q->tmo, "migrate-continue",
			       "{\"state\": \"pre-switchover\"}") == 0)
			q->continued = true;
	}
	return 0;
}

/* Resume after a failure: cancel QEMU's migration; QEMU restarts the guest
 * if the migration had stopped it. */
static int qemu_resume(void *opaque)
{
	struct hm_qemu *q = opaque;
	struct json_object *r;

	if (q->libvirt && q->stopped)
		hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: left paused: libvirt "
			"resumes it when its migration fails", (int)q->pid);
	if (!q->migrating)
		return 0;
	r = hm_qmp_exec(q->qmp, "migrate_cancel", NULL, (int)q->tmo);
	if (!r)
		return qfail(q, -EIO, "QEMU %d: migrate_cancel: %s",
			     (int)q->pid, hm_qmp_error(q->qmp));
	json_object_put(r);
	wait_ended(q, q->tmo);
	q->migrating = false;
	hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: migration cancelled, guest "
		"resumed", (int)q->pid);
	return 0;
}

struct hm_guest *hm_qemu_guest(struct hm_qemu *q, const struct hm_log *log)
{
	struct hm_guest_callbacks cb = { qemu_pause, qemu_resume, q };
	struct hm_guest *g;
	int uffd;

	if (!q->source) {
		errno = EINVAL;
		return NULL;
	}
	/* Never UFFD_USER_MODE_ONLY: KVM's vCPU writes, vhost-net and the
	 * kernel's copies into guest RAM (read(2) of a disk image) fault in
	 * kernel mode, and in sync mode they must wait for us like QEMU's
	 * own threads. */
	if (hm_pidfd_exited(q->pidfd)) {	/* R14 */
		errno = ESRCH;
		return NULL;
	}
	uffd = hm_inject_userfaultfd(q->pid, q->pidfd,
				     O_CLOEXEC | O_NONBLOCK, &q->log);
	if (uffd < 0) {
		errno = -uffd;
		qfail(q, uffd, "QEMU %d: cannot create a userfaultfd inside "
		      "it: %s", (int)q->pid, strerror(-uffd));
		return NULL;
	}
	g = hm_guest_process_new(q->pid, q->blocks, q->nblocks, uffd, &cb,
				 log);
	if (!g)
		qfail(q, -errno, "QEMU %d: guest: %s", (int)q->pid,
		      strerror(errno));
	return g;
}

int hm_qemu_switchover(struct hm_qemu *q)
{
	int ret;

	if (!q->continued &&
	    hm_qmp_run(q->qmp, (int)q->tmo, "migrate-continue",
		       "{\"state\": \"pre-switchover\"}")) {
		ret = qfail(q, -EIO, "QEMU %d: migrate-continue: %s",
			    (int)q->pid, hm_qmp_error(q->qmp));
		qemu_resume(q);
		return ret;
	}
	ret = wait_status(q, "completed", 120000);
	q->st.cutover_ms = (int64_t)(now_ms() - q->pre_switchover_ms);
	q->migrating = false;
	if (ret == 0)
		hm_logf(&q->log, HM_LOG_INFO, "QEMU %d: device state sent "
			"(%" PRId64 " bytes, QEMU's downtime %" PRId64 " ms)",
			(int)q->pid, q->st.transferred, q->st.downtime_ms);
	return ret;
}

/* ---- destination ------------------------------------------------------------ */

int hm_qemu_incoming(struct hm_qemu *q)
{
	int ret = set_caps(q, true);

	if (ret < 0)
		return qfail(q, ret, "destination QEMU %d: "
			     "migrate-set-capabilities: %s", (int)q->pid,
			     hm_qmp_error(q->qmp));
	q->caps_on = true;
	if (q->libvirt)
		return 0;	/* libvirt sent migrate-incoming */
	ret = qemu_tls_on(q);
	if (ret < 0)
		return ret;
	if (hm_qmp_run(q->qmp, (int)q->tmo, "migrate-incoming",
		       "{\"uri\": \"%s\"}", q->uri))
		return qfail(q, -EIO, "destination QEMU %d: migrate-incoming "
			     "%s: %s", (int)q->pid, q->uri,
			     hm_qmp_error(q->qmp));
	return 0;
}

/* R8's last check, fail-closed: the destination may acknowledge only
 * when QEMU shows that it has not loaded device state. Its incoming
 * migration must be in a state that precedes the device state ("none"
 * and "setup": waiting; "active": QEMU's own stream of the small RAM
 * blocks that are not shared, which the source sends before it stops at
 * pre-switchover) and its run state must still be "inmigrate". Anything
 * else, an answer missing or a state this code does not know included,
 * refuses: an acknowledgement hintmig cannot justify is never sent. */
static const char *const r8_waiting[] = { "none", "setup", "active" };

int hm_qemu_r8_verdict(const char *mig_status, const char *run_status,
		       char *why, size_t len)
{
	bool waiting = false;

	if (!mig_status || !run_status) {
		snprintf(why, len, "cannot tell whether it loaded device state "
			 "(%s failed)", !mig_status ? "query-migrate"
						    : "query-status");
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(r8_waiting) / sizeof(r8_waiting[0]);
	     i++)
		waiting |= !strcmp(mig_status, r8_waiting[i]);
	if (!waiting) {
		snprintf(why, len, "its incoming migration is '%s' while "
			 "hintmig's RAM was not complete: %s", mig_status,
			 !strcmp(mig_status, "completed") ||
			 !strcmp(mig_status, "failed")
			 ? "QEMU loaded device state from incomplete guest RAM "
			   "(R8: the source continued too early)"
			 : "not a state that proves no device state was loaded");
		return -EPROTO;
	}
	if (strcmp(run_status, "inmigrate")) {
		snprintf(why, len, "it is in run state '%s', not 'inmigrate': "
			 "it has left its incoming migration", run_status);
		return -EPROTO;
	}
	return 0;
}

int hm_qemu_check_not_loaded(void *opaque)
{
	struct hm_qemu *q = opaque;
	struct json_object *r, *rs;
	const char *s = migrate_status(q, &r);
	const char *run;
	char why[256];
	int ret;

	rs = hm_qmp_exec(q->qmp, "query-status", NULL, (int)q->tmo);
	run = rs ? hm_json_str(rs, "status", NULL) : NULL;
	ret = hm_qemu_r8_verdict(s, run, why, sizeof(why));
	if (ret < 0)
		qfail(q, ret, "destination QEMU %d: %s: RAM not acknowledged",
		      (int)q->pid, why);
	json_object_put(r);
	json_object_put(rs);
	return ret;
}

int hm_qemu_wait_incoming(struct hm_qemu *q, unsigned timeout_ms)
{
	int ret = wait_status(q, "completed", timeout_ms);
	struct json_object *r;

	if (ret < 0)
		return ret;
	r = hm_qmp_exec(q->qmp, "query-status", NULL, (int)q->tmo);
	hm_logf(&q->log, HM_LOG_INFO, "destination QEMU %d: device state "
		"loaded, guest %s", (int)q->pid,
		hm_json_str(r, "status", "?"));
	json_object_put(r);
	return 0;
}

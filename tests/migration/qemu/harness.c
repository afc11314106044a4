/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QEMU migration test harness: see harness.h and docs/qemu-tests.md. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agentprobe.h"
#include "mangle.h"
#include "migrate/guests/qemu/qmp.h"
#include "migrate/guests/qemu/uffd_inject.h"

#ifndef HM_QEMU_BINARY
#define HM_QEMU_BINARY "qemu-system-x86_64"
#endif
#ifndef HM_QEMU_MKGUEST
#error "HM_QEMU_MKGUEST (path of mkguest.sh) must be defined"
#endif
#ifndef HM_QEMU_WORKLOAD
#error "HM_QEMU_WORKLOAD (path of the built hm-workload) must be defined"
#endif
#ifndef HM_QEMU_HINTMIG
#error "HM_QEMU_HINTMIG (path of the built hintmig) must be defined"
#endif
#ifndef HM_QEMU_BUILD_CACHE
#define HM_QEMU_BUILD_CACHE "/tmp/hintmig-guest-cache"
#endif

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void msleep(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int hm_env_flag(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

static int g_verbose = -1;

static int verbose(void)
{
	if (g_verbose < 0)
		g_verbose = hm_env_flag("HM_QEMU_VERBOSE");
	return g_verbose;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("# ", stdout);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

/* Timeouts are scaled by HM_QEMU_TIMEOUT_SCALE (slow or loaded hosts). */
static int tmo_ms(double seconds)
{
	static double scale = -1;

	if (scale < 0) {
		const char *v = getenv("HM_QEMU_TIMEOUT_SCALE");
		scale = v ? strtod(v, NULL) : 1.0;
		if (!(scale > 0))
			scale = 1.0;
	}
	return (int)(seconds * scale * 1000.0);
}

/* snprintf that truncates quietly: paths and messages here are short, a
 * cut message is better than a warning per call. */
static void sfmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sfmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static void fail_set(struct hm_run_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail_set(struct hm_run_result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failure[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->failure, sizeof(r->failure), fmt, ap);
	va_end(ap);
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -1;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -1;
	return access(buf, W_OK | X_OK);
}

/* ------------------------------------------------------------------ */
/* global state and cleanup on every exit path                          */

struct hm_vm {
	const char *role;
	pid_t pid;
	int exited, wstatus;
	char qmp_path[PATH_MAX], serial_path[PATH_MAX], log_path[PATH_MAX];
	char hm_qmp_path[PATH_MAX]; /* a second monitor, for hintmig */
	char agent_path[PATH_MAX];  /* chardev of the hint agent's port */
	char ram_path[PATH_MAX];    /* shared RAM file (hintmig runs) */
	struct hm_qmp *qmp;
	off_t serial_off;
	char partial[1024];
	size_t plen;
	struct hm_guest_log log;
	char balloon_features[80]; /* of the virtio balloon, as the guest saw */
};

#define MAX_VMS 3
static struct hm_vm g_vm[MAX_VMS]; /* source, destination, probe */
static char g_tmpdir[PATH_MAX];
static char g_guestdir[PATH_MAX];
static char g_accel[8];
static char g_accel_note[300];
static char g_dump_src[PATH_MAX], g_dump_dst[PATH_MAX];
static int g_inited;
static int g_keep; /* HM_QEMU_KEEP: leave the temporary directory */

static void kill_all_vms(void)
{
	for (int i = 0; i < MAX_VMS; i++) {
		if (g_vm[i].pid > 0 && !g_vm[i].exited) {
			kill(g_vm[i].pid, SIGKILL);
			waitpid(g_vm[i].pid, NULL, 0);
			g_vm[i].exited = 1;
		}
	}
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* hm_hugetlb: the harness's hugetlbfs mount and the pool it grew */
static char g_huge_dir[PATH_MAX];
static long g_huge_was = -1;

/* the pool of huge pages of g_huge_size bytes */
static uint64_t g_huge_size = 2u << 20;

static void pool_path(char *out, size_t len)
{
	sfmt(out, len, "/sys/kernel/mm/hugepages/hugepages-%" PRIu64
	     "kB/nr_hugepages", g_huge_size >> 10);
}

static long read_nr_hugepages(void)
{
	char path[128];
	long v = -1;
	FILE *f;

	pool_path(path, sizeof(path));
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_nr_hugepages(long n)
{
	char path[128];
	FILE *f;
	int ok;

	pool_path(path, sizeof(path));
	f = fopen(path, "we");
	if (!f)
		return -1;
	ok = fprintf(f, "%ld\n", n) > 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void huge_teardown(void)
{
	if (g_huge_dir[0]) {
		umount2(g_huge_dir, MNT_DETACH);
		rmdir(g_huge_dir);
		g_huge_dir[0] = 0;
	}
	if (g_huge_was >= 0) {
		write_nr_hugepages(g_huge_was);
		g_huge_was = -1;
	}
}

/* A hugetlbfs mount (pages of g_huge_size) under the test's directory,
 * and pages for two guests of mem bytes in the pool. 0, or -1 with err. */
static int huge_setup(uint64_t mem, char *err, size_t len)
{
	long was = read_nr_hugepages(), need;
	long long freep = -1;
	char opt[32], path[128];
	FILE *f;

	need = (long)(2 * (mem / g_huge_size)) + (g_huge_size > (2u << 20) ? 0 : 8);

	if (was < 0) {
		sfmt(err, len, "no /proc/sys/vm/nr_hugepages: %s",
		     strerror(errno));
		return -1;
	}
	sfmt(g_huge_dir, sizeof(g_huge_dir), "%s/huge", g_tmpdir);
	sfmt(opt, sizeof(opt), "pagesize=%" PRIu64 "M", g_huge_size >> 20);
	if (mkdir(g_huge_dir, 0700) < 0 ||
	    mount("hintmig-test", g_huge_dir, "hugetlbfs", 0, opt) < 0) {
		sfmt(err, len, "cannot mount hugetlbfs on %s: %s", g_huge_dir,
		     strerror(errno));
		rmdir(g_huge_dir);
		g_huge_dir[0] = 0;
		return -1;
	}
	g_huge_was = was;
	if (write_nr_hugepages(was + need) < 0) {
		sfmt(err, len, "cannot grow the huge page pool by %ld: %s",
		     need, strerror(errno));
		return -1;
	}
	sfmt(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64
	     "kB/free_hugepages", g_huge_size >> 10);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%lld", &freep) != 1)
			freep = -1;
		fclose(f);
	}
	if (freep < need) {
		sfmt(err, len, "the huge page pool has %lld free %" PRIu64
		     " MiB pages, the test needs %ld (memory too fragmented?)",
		     freep, g_huge_size >> 20, need);
		return -1;
	}
	note("hugetlbfs on %s, pool %ld -> %ld pages of %" PRIu64 " MiB",
	     g_huge_dir, was, was + need, g_huge_size >> 20);
	return 0;
}

static void cleanup_at_exit(void)
{
	kill_all_vms();
	for (int i = 0; i < MAX_VMS; i++)
		if (g_vm[i].ram_path[0])
			unlink(g_vm[i].ram_path);
	huge_teardown();
	if (g_dump_src[0])
		unlink(g_dump_src);
	if (g_dump_dst[0])
		unlink(g_dump_dst);
	if (g_tmpdir[0]) {
		if (g_keep)
			fprintf(stderr, "# kept %s\n", g_tmpdir);
		else
			nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

/* Async-signal-safe: kill the QEMUs, drop the big dumps, then die of the
 * signal (meson's timeout sends SIGTERM). */
static void on_signal(int sig)
{
	for (int i = 0; i < MAX_VMS; i++) {
		if (g_vm[i].pid > 0 && !g_vm[i].exited)
			kill(g_vm[i].pid, SIGKILL);
		if (g_vm[i].ram_path[0])
			unlink(g_vm[i].ram_path);
	}
	if (g_dump_src[0])
		unlink(g_dump_src);
	if (g_dump_dst[0])
		unlink(g_dump_dst);
	if (!g_keep && g_tmpdir[0]) {
		for (int i = 0; i < MAX_VMS; i++) {
			if (g_vm[i].pid <= 0)
				continue;
			unlink(g_vm[i].qmp_path);
			unlink(g_vm[i].serial_path);
			unlink(g_vm[i].log_path);
		}
		rmdir(g_tmpdir);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ------------------------------------------------------------------ */
/* the guest image                                                      */

static int cache_base(char *out, size_t len)
{
	const char *e = getenv("HM_GUEST_CACHE"), *x = getenv("XDG_CACHE_HOME"),
		   *h = getenv("HOME");

	if (e && *e) {
		sfmt(out, len, "%s", e);
		return mkdir_p(out);
	}
	if (x && *x) {
		sfmt(out, len, "%s/hintmig", x);
		if (!mkdir_p(out))
			return 0;
	}
	if (h && *h) {
		sfmt(out, len, "%s/.cache/hintmig", h);
		if (!mkdir_p(out))
			return 0;
	}
	sfmt(out, len, "%s", HM_QEMU_BUILD_CACHE);
	return mkdir_p(out);
}

/* Run mkguest.sh; its last stdout line is the guest directory. */
static int build_guest(char *err, size_t errlen)
{
	char base[PATH_MAX], out[4096];
	int pfd[2];
	pid_t pid;
	size_t n = 0;
	int st;
	double t0 = mono_s();

	if (cache_base(base, sizeof(base))) {
		sfmt(err, errlen, "no writable cache directory for the guest "
			 "image (tried HM_GUEST_CACHE, XDG_CACHE_HOME, HOME, %s)",
			 HM_QEMU_BUILD_CACHE);
		return -1;
	}
	if (pipe2(pfd, O_CLOEXEC)) {
		sfmt(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		sfmt(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		/* the agent, its module and its in-guest check: in every
		 * guest image, used when the command line asks */
		setenv("HM_GUEST_AGENT", HM_QEMU_AGENT, 1);
		setenv("HM_GUEST_KMOD", HM_QEMU_KMOD_DIR, 1);
		setenv("HM_GUEST_EXTRA", HM_QEMU_AGENT_CHECK, 1);
		execl("/bin/sh", "sh", HM_QEMU_MKGUEST, HM_QEMU_WORKLOAD, base,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t k = read(pfd[0], out + n, sizeof(out) - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == sizeof(out) - 1)
			break;
	}
	close(pfd[0]);
	out[n] = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		sfmt(err, errlen, "building the guest image failed "
			 "(%s, see its message above)", HM_QEMU_MKGUEST);
		return -1;
	}
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = 0;
	char *last = strrchr(out, '\n');
	sfmt(g_guestdir, sizeof(g_guestdir), "%s", last ? last + 1 : out);
	note("guest image: %s (%.1f s)", g_guestdir, mono_s() - t0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* QEMU processes                                                       */

struct vm_opts {
	const char *role;
	const char *accel;
	uint64_t mem;
	enum hm_balloon balloon;
	int incoming;
	int shared_ram;	/* 1: memory-backend-file on /dev/shm, 2: memfd,
			 * 3: memory-backend-file on hugetlbfs (g_huge_dir) */
	unsigned hint_mib; /* the workload's hint region; agent port */
	enum hm_agent_mode agent; /* hintmig-agent in the guest */
	int check;	/* hm.check=agent: no workload, the agent check */
	int hint_lie;	/* hm.hintlie=N: the stand-in lies */
	int hm_monitor;	/* a second QMP monitor for hintmig */
	int direct_disk; /* a virtio-blk disk opened with O_DIRECT */
	int payload;	/* hm-payload instead of the Linux guest */
	int as_user;	/* run as the stock test user (g_qemu_uid) */
	unsigned fill, ws, st, hot, hotreps;
};

static const char *qemu_binary(void)
{
	const char *e = getenv("HM_QEMU");

	return e && *e ? e : HM_QEMU_BINARY;
}

int hm_qemu_binary_version(int *major, int *minor)
{
	char cmd[PATH_MAX + 32], line[256] = "";
	FILE *p;
	int ok;

	sfmt(cmd, sizeof(cmd), "'%s' --version 2>/dev/null", qemu_binary());
	p = popen(cmd, "r");
	if (!p)
		return -1;
	ok = fgets(line, sizeof(line), p) != NULL;
	pclose(p);
	if (!ok || sscanf(line, "QEMU emulator version %d.%d", major,
			  minor) != 2)
		return -1;
	return 0;
}

/* ---- the stock host's QEMU user (scenario qemu_user) ---- */

#define HM_QEMU_TEST_USER "hintmig-qemu-test"
static uid_t g_qemu_uid;
static gid_t g_qemu_gid;
static struct stat g_uffd_dev_st;	/* /dev/userfaultfd before the run */

static int copy_file(const char *from, const char *to, uid_t uid, gid_t gid)
{
	char buf[1 << 16];
	int in = open(from, O_RDONLY | O_CLOEXEC), out, ret = 0;
	ssize_t n;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			ret = -1;
			break;
		}
	if (n < 0 || fchown(out, uid, gid))
		ret = -1;
	close(in);
	close(out);
	return ret;
}

static int read_int_file(const char *path)
{
	FILE *f = fopen(path, "re");
	int v = -1;

	if (f && fscanf(f, "%d", &v) != 1)
		v = -1;
	if (f)
		fclose(f);
	return v;
}

/* Make (if needed) the system user the stock test's QEMUs run as, give it
 * the run directory and its own copies of the guest's kernel and initrd
 * (root's cache is not readable to it), and record what must not change:
 * vm.unprivileged_userfaultfd (0: the QEMU user may not make a userfaultfd
 * for kernel faults) and /dev/userfaultfd's owner and mode. */
static int stock_user_setup(char *err, size_t errlen)
{
	char from[PATH_MAX + 32], to[PATH_MAX + 32];
	static const char *const files[] = { "vmlinuz", "initramfs.cpio" };
	struct passwd *pw = getpwnam(HM_QEMU_TEST_USER);

	if (!pw) {
		int rc = system("useradd --system --user-group --no-create-home "
				"--home-dir /nonexistent --shell "
				"/usr/sbin/nologin " HM_QEMU_TEST_USER);

		pw = getpwnam(HM_QEMU_TEST_USER);
		if (!pw) {
			sfmt(err, errlen, "cannot create the system user %s "
			     "(useradd exit %d)", HM_QEMU_TEST_USER, rc);
			return -1;
		}
	}
	g_qemu_uid = pw->pw_uid;
	g_qemu_gid = pw->pw_gid;
	if (read_int_file("/proc/sys/vm/unprivileged_userfaultfd") != 0) {
		sfmt(err, errlen, "vm.unprivileged_userfaultfd is not 0: the "
		     "stock QEMU could make its own userfaultfd, the test "
		     "would prove nothing (Debian's default is 0)");
		return -1;
	}
	if (stat("/dev/userfaultfd", &g_uffd_dev_st)) {
		sfmt(err, errlen, "/dev/userfaultfd: %s", strerror(errno));
		return -1;
	}
	if (chown(g_tmpdir, g_qemu_uid, g_qemu_gid)) {
		sfmt(err, errlen, "chown %s: %s", g_tmpdir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		sfmt(from, sizeof(from), "%s/%s", g_guestdir, files[i]);
		sfmt(to, sizeof(to), "%s/%s", g_tmpdir, files[i]);
		if (copy_file(from, to, g_qemu_uid, g_qemu_gid)) {
			sfmt(err, errlen, "copy %s to %s: %s", from, to,
			     strerror(errno));
			return -1;
		}
	}
	note("QEMU runs as %s (uid %d); vm.unprivileged_userfaultfd 0; "
	     "/dev/userfaultfd mode %04o uid %d", HM_QEMU_TEST_USER,
	     (int)g_qemu_uid, (unsigned)(g_uffd_dev_st.st_mode & 07777),
	     (int)g_uffd_dev_st.st_uid);
	return 0;
}

static int holds_userfaultfd(pid_t pid);

/* R15 after any end of a migration of the stock QEMU: it still runs as
 * the test user, holds no userfaultfd and no /dev/userfaultfd, is traced
 * by no one, and the host-wide settings are as they were. */
static int granted_nothing(struct hm_vm *vm, char *err, size_t errlen)
{
	struct stat st;
	int uid = hm_proc_status_field(vm->pid, "Uid"), held, tracer;

	if (uid != (int)g_qemu_uid) {
		sfmt(err, errlen, "QEMU %d runs as uid %d, not the test user "
		     "%d", (int)vm->pid, uid, (int)g_qemu_uid);
		return -1;
	}
	held = holds_userfaultfd(vm->pid);
	if (held != 0) {
		sfmt(err, errlen, "QEMU %d %s a userfaultfd or /dev/userfaultfd "
		     "descriptor after the migration (R15)", (int)vm->pid,
		     held > 0 ? "still holds" : "cannot be checked for");
		return -1;
	}
	tracer = hm_proc_status_field(vm->pid, "TracerPid");
	if (tracer != 0) {
		sfmt(err, errlen, "QEMU %d is still traced by %d (R15)",
		     (int)vm->pid, tracer);
		return -1;
	}
	if (read_int_file("/proc/sys/vm/unprivileged_userfaultfd") != 0) {
		sfmt(err, errlen, "vm.unprivileged_userfaultfd changed (R15)");
		return -1;
	}
	if (stat("/dev/userfaultfd", &st) || st.st_mode != g_uffd_dev_st.st_mode ||
	    st.st_uid != g_uffd_dev_st.st_uid ||
	    st.st_gid != g_uffd_dev_st.st_gid) {
		sfmt(err, errlen, "/dev/userfaultfd's owner or mode changed "
		     "(R15)");
		return -1;
	}
	note("QEMU %d (uid %d): no userfaultfd, no /dev/userfaultfd, no "
	     "tracer; host settings unchanged", (int)vm->pid, uid);
	return 0;
}

static int vm_launch(struct hm_vm *vm, const struct vm_opts *o, char *err,
		     size_t errlen)
{
	char mem[32], kernel[PATH_MAX + 16], initrd[PATH_MAX + 16];
	char append[512], serial[PATH_MAX + 16], qmp[PATH_MAX + 32];
	char name[64], accel[32], hmqmp[PATH_MAX + 32], ramobj[PATH_MAX + 128];
	char machine[64], agentdev[PATH_MAX + 64], drive[PATH_MAX + 96];
	const char *cpu = getenv("HM_QEMU_CPU");
	const char *argv[64];
	int a = 0;

	memset(vm, 0, sizeof(*vm));
	vm->role = o->role;
	vm->pid = -1;
	sfmt(vm->qmp_path, sizeof(vm->qmp_path), "%s/%s.qmp", g_tmpdir,
		 o->role);
	sfmt(vm->serial_path, sizeof(vm->serial_path), "%s/%s.serial",
		 g_tmpdir, o->role);
	sfmt(vm->log_path, sizeof(vm->log_path), "%s/%s.log", g_tmpdir,
		 o->role);
	unlink(vm->qmp_path);
	unlink(vm->serial_path);
	sfmt(vm->hm_qmp_path, sizeof(vm->hm_qmp_path), "%s/%s-hm.qmp",
	     g_tmpdir, o->role);
	unlink(vm->hm_qmp_path);
	sfmt(machine, sizeof(machine), "pc");
	if (o->shared_ram) {
		/* tmpfs: a RAM file hintmig can read, fill and punch */
		sfmt(vm->ram_path, sizeof(vm->ram_path),
		     "%s/hm-qemu-%d-%s.ram", o->shared_ram == 3 ? g_huge_dir
		     : "/dev/shm", (int)getpid(), o->role);
		unlink(vm->ram_path);
		if (o->shared_ram == 2)
			sfmt(ramobj, sizeof(ramobj), "memory-backend-memfd,"
			     "id=mem,size=%" PRIu64 "K", o->mem >> 10);
		else
			sfmt(ramobj, sizeof(ramobj), "memory-backend-file,"
			     "id=mem,size=%" PRIu64 "K,mem-path=%s,share=on",
			     o->mem >> 10, vm->ram_path);
		sfmt(machine, sizeof(machine), "pc,memory-backend=mem");
	}

	if (!cpu || !*cpu)
		/* The payload: without arch-capabilities, whose MSR a nested
		 * PVM refuses (QEMU aborts: "failed to set MSR 0x10a"), and
		 * without kvmclock. SeaBIOS enables kvmclock, and KVM writes
		 * the pvclock structure through a kernel mapping of the page
		 * (gfn_to_pfn_cache), which no write tracking of the VMM's
		 * page tables sees; the destination's KVM rewrites all of it
		 * before the guest runs (docs/design.md, R10), but the page
		 * compare would show its version field. */
		cpu = strcmp(o->accel, "kvm") ? "qemu64"
		      : o->payload ? "host,-arch-capabilities,-kvmclock"
				   : "host";
	/* -m in KiB: sizes that are not whole MiB are the point */
	sfmt(mem, sizeof(mem), "%" PRIu64 "K", o->mem >> 10);
	if (o->payload)
		sfmt(kernel, sizeof(kernel), "%s", HM_QEMU_PAYLOAD);
	else
		sfmt(kernel, sizeof(kernel), "%s/vmlinuz", o->as_user
		     ? g_tmpdir : g_guestdir);
	sfmt(initrd, sizeof(initrd), "%s/initramfs.cpio", o->as_user
	     ? g_tmpdir : g_guestdir);
	sfmt(append, sizeof(append),
		 "console=ttyS0 panic=-1 init_on_alloc=0 init_on_free=0 "
		 "transparent_hugepage=never hm.fill=%u hm.ws=%u hm.static=%u "
		 "hm.hot=%u hm.hotreps=%u hm.seed=%d hm.hint=%u",
		 o->fill, o->ws, o->st, o->hot, o->hotreps,
		 1 + (int)(getpid() % 1000), o->hint_mib);
	if (o->hint_lie) {
		size_t l = strlen(append);

		sfmt(append + l, sizeof(append) - l, " hm.hintlie=%d",
		     o->hint_lie);
	}
	if (o->agent || o->check) {
		size_t l = strlen(append);

		sfmt(append + l, sizeof(append) - l, "%s%s%s",
		     o->agent ? " hm.agent=1" : "",
		     o->agent == HM_AGENT_NO_MODULE ? " hm.agentmod=0" :
		     o->agent == HM_AGENT_DROP_CACHES ? " hm.agentdrop=1" :
		     o->agent == HM_AGENT_PAGE_POISON ? " page_poison=1" :
		     o->agent == HM_AGENT_INIT_ON_FREE ? " init_on_free=1" : "",
		     o->check ? " hm.check=agent" : "");
	}
	if (getenv("HM_QEMU_APPEND")) {
		size_t l = strlen(append);

		sfmt(append + l, sizeof(append) - l, " %s",
		     getenv("HM_QEMU_APPEND"));
	}
	sfmt(serial, sizeof(serial), "file:%s", vm->serial_path);
	sfmt(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", vm->qmp_path);
	sfmt(name, sizeof(name), "hm-%s", o->role);
	sfmt(accel, sizeof(accel), "%s", o->accel);

	argv[a++] = qemu_binary();
	argv[a++] = "-name";
	argv[a++] = name;
	argv[a++] = "-machine";
	argv[a++] = machine;
	if (o->shared_ram) {
		argv[a++] = "-object";
		argv[a++] = ramobj;
	}
	if (o->hm_monitor) {
		sfmt(hmqmp, sizeof(hmqmp), "unix:%s,server=on,wait=off",
		     vm->hm_qmp_path);
		argv[a++] = "-qmp";
		argv[a++] = hmqmp;
	}
	if (o->direct_disk) {
		char disk[PATH_MAX + 16];
		int dfd;

		sfmt(disk, sizeof(disk), "%s/%s-disk.raw", g_tmpdir, o->role);
		dfd = open(disk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			   0644);
		if (dfd < 0 || ftruncate(dfd, 1 << 20)) {
			sfmt(err, errlen, "%s: %s", disk, strerror(errno));
			if (dfd >= 0)
				close(dfd);
			return -1;
		}
		close(dfd);
		sfmt(drive, sizeof(drive), "file=%s,format=raw,if=none,id=d0,"
		     "cache.direct=on", disk);
		argv[a++] = "-drive";
		argv[a++] = drive;
		argv[a++] = "-device";
		argv[a++] = "virtio-blk-pci,drive=d0,id=disk0";
	}
	argv[a++] = "-accel";
	argv[a++] = accel;
	argv[a++] = "-cpu";
	argv[a++] = cpu;
	argv[a++] = "-m";
	argv[a++] = mem;
	argv[a++] = "-smp";
	argv[a++] = "1";
	argv[a++] = "-nodefaults";
	argv[a++] = "-no-user-config";
	argv[a++] = "-display";
	argv[a++] = "none";
	argv[a++] = "-no-reboot";
	argv[a++] = "-kernel";
	argv[a++] = kernel;
	if (!o->payload) {
		argv[a++] = "-initrd";
		argv[a++] = initrd;
	}
	argv[a++] = "-append";
	argv[a++] = append;
	argv[a++] = "-serial";
	argv[a++] = serial;
	argv[a++] = "-qmp";
	argv[a++] = qmp;
	if (o->balloon == HM_BALLOON_PLAIN) {
		argv[a++] = "-device";
		argv[a++] = "virtio-balloon-pci,id=balloon0";
	} else if (o->balloon == HM_BALLOON_REPORTING) {
		argv[a++] = "-device";
		argv[a++] = "virtio-balloon-pci,id=balloon0,"
			    "free-page-reporting=on";
	} else if (o->balloon == HM_BALLOON_HINT) {
		/* QEMU refuses free-page-hint without an iothread. */
		argv[a++] = "-object";
		argv[a++] = "iothread,id=io0";
		argv[a++] = "-device";
		argv[a++] = "virtio-balloon-pci,id=balloon0,free-page-hint=on,"
			    "iothread=io0";
	}
	if (o->hint_mib || o->agent) {
		/* the hint agent's port: virtio-serial, named as the real
		 * agent's, its host end a socket hintmig send connects to */
		sfmt(vm->agent_path, sizeof(vm->agent_path), "%s/%s-agent.sock",
		     g_tmpdir, o->role);
		unlink(vm->agent_path);
		sfmt(agentdev, sizeof(agentdev), "socket,id=hmagent,path=%s,"
		     "server=on,wait=off", vm->agent_path);
		argv[a++] = "-device";
		argv[a++] = "virtio-serial-pci,id=vser0";
		argv[a++] = "-chardev";
		argv[a++] = agentdev;
		argv[a++] = "-device";
		argv[a++] = "virtserialport,bus=vser0.0,chardev=hmagent,"
			    "name=org.hintmig.agent.0";
	}
	if (o->incoming) {
		argv[a++] = "-S";
		argv[a++] = "-incoming";
		argv[a++] = "defer";
	}
	argv[a] = NULL;

	if (verbose()) {
		fputs("# ", stdout);
		for (int i = 0; argv[i]; i++)
			printf("%s ", argv[i]);
		putchar('\n');
		fflush(stdout);
	}

	int logfd = open(vm->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			 0644);
	if (logfd < 0) {
		sfmt(err, errlen, "%s: %s", vm->log_path, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		sfmt(err, errlen, "fork: %s", strerror(errno));
		close(logfd);
		return -1;
	}
	if (pid == 0) {
		/* a stock host's QEMU: an unprivileged user, no groups */
		if (o->as_user && (setgroups(0, NULL) || setgid(g_qemu_gid) ||
				   setuid(g_qemu_uid))) {
			fprintf(stderr, "cannot become uid %d: %s\n",
				(int)g_qemu_uid, strerror(errno));
			_exit(127);
		}
		/* QEMU must not outlive the harness, whatever kills it
		 * (after setuid, which clears the setting) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	vm->pid = pid;
	return 0;
}

/* Has QEMU exited?  Reaps it. */
static int vm_gone(struct hm_vm *vm)
{
	if (vm->pid <= 0 || vm->exited)
		return 1;
	if (waitpid(vm->pid, &vm->wstatus, WNOHANG) == vm->pid) {
		vm->exited = 1;
		return 1;
	}
	return 0;
}

static void vm_exit_text(const struct hm_vm *vm, char *buf, size_t len)
{
	if (WIFEXITED(vm->wstatus))
		sfmt(buf, len, "%s QEMU exited with status %d", vm->role,
			 WEXITSTATUS(vm->wstatus));
	else if (WIFSIGNALED(vm->wstatus))
		sfmt(buf, len, "%s QEMU died of signal %d", vm->role,
			 WTERMSIG(vm->wstatus));
	else
		sfmt(buf, len, "%s QEMU is gone", vm->role);
}

static int vm_connect(struct hm_vm *vm, char *err, size_t errlen)
{
	double end = mono_s() + tmo_ms(60) / 1000.0;
	char e[512];

	/* The socket appears once QEMU has parsed its options. */
	while (access(vm->qmp_path, F_OK)) {
		if (vm_gone(vm)) {
			vm_exit_text(vm, e, sizeof(e));
			sfmt(err, errlen, "%s before its QMP socket "
				 "appeared (see %s)", e, vm->log_path);
			return -1;
		}
		if (mono_s() > end) {
			sfmt(err, errlen, "%s QEMU: no QMP socket after "
				 "60 s", vm->role);
			return -1;
		}
		msleep(20);
	}
	vm->qmp = hm_qmp_connect(vm->qmp_path, tmo_ms(30), e, sizeof(e));
	if (!vm->qmp) {
		sfmt(err, errlen, "%s QMP: %s", vm->role, e);
		return -1;
	}
	return 0;
}

static void vm_stop(struct hm_vm *vm)
{
	if (vm->pid > 0 && !vm_gone(vm) && vm->qmp) {
		struct json_object *r =
			hm_qmp_exec(vm->qmp, "quit", NULL, tmo_ms(5));
		json_object_put(r);
		for (int i = 0; i < 100 && !vm_gone(vm); i++)
			msleep(50);
	}
	if (vm->pid > 0 && !vm_gone(vm)) {
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, &vm->wstatus, 0);
		vm->exited = 1;
	}
	hm_qmp_close(vm->qmp);
	vm->qmp = NULL;
}

/* ------------------------------------------------------------------ */
/* the serial console                                                   */

static void parse_line(struct hm_vm *vm, const char *line)
{
	struct hm_guest_log *l = &vm->log;
	const char *p;

	if (strstr(line, "HMW: ready"))
		l->ready = 1;
	if ((p = strstr(line, "HMC: PASS")) || (p = strstr(line, "HMC: FAIL"))) {
		l->check = p[5] == 'P' ? 1 : -1;
		sfmt(l->check_line, sizeof(l->check_line), "%s", p);
	}
	if (strstr(line, "HMW: ERROR hint region page "))
		l->lost_hint_lines++;
	if (strstr(line, "hintmig-agent: info: resynchronized"))
		l->agent_resyncs++;
	if (strstr(line, "hintmig-agent: info: --drop-caches: clean page "
			 "cache dropped"))
		l->agent_drops++;
	if ((p = strstr(line, "hintmig-agent: info: epoch ")) &&
	    strstr(p, " ranges, ")) {
		l->agent_epochs++;
		sfmt(l->agent_last, sizeof(l->agent_last), "%s", p);
	}
	if ((p = strstr(line, "HMW: meminfo total_kib=")))
		sscanf(p, "HMW: meminfo total_kib=%lld free_kib=%lld",
		       &l->mem_total_kib, &l->mem_free_kib);
	if ((p = strstr(line, "HMW: round "))) {
		long long n = strtoll(p + 11, NULL, 10);

		l->rounds++;
		if (n > l->last_round)
			l->last_round = n;
		if (strstr(p, "FAILED"))
			l->failed_rounds++;
	}
	if (strstr(line, "HMW: ERROR") || strstr(line, "HMW-INIT: ERROR") ||
	    strstr(line, "hintmig-agent: error:") ||
	    strstr(line, "HMC: ERROR") ||
	    strstr(line, "Kernel panic") || strstr(line, "BUG: ") ||
	    strstr(line, "general protection fault") ||
	    strstr(line, "Oops")) {
		if (!l->errors++)
			sfmt(l->first_error, sizeof(l->first_error), "%s",
				 line);
	}
	if ((p = strstr(line, "HMW-INIT: virtio ")) &&
	    strstr(p, "device 0x0005 features ")) {
		const char *f = strstr(p, "features ") + 9;
		sfmt(vm->balloon_features, sizeof(vm->balloon_features),
			 "%s", f);
	}
}

static void vm_serial_update(struct hm_vm *vm)
{
	char buf[65536];
	int fd = open(vm->serial_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), vm->serial_off);

		if (n <= 0)
			break;
		vm->serial_off += n;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];

			if (c == '\n') {
				vm->partial[vm->plen] = 0;
				parse_line(vm, vm->partial);
				vm->plen = 0;
			} else if (c != '\r' && vm->plen < sizeof(vm->partial) - 1) {
				vm->partial[vm->plen++] = c;
			}
		}
	}
	close(fd);
}

/* Wait until the guest has said "ready" and then printed min_rounds round
 * lines (counted from the call); fails early when QEMU dies. */
static int wait_rounds(struct hm_vm *vm, int need_ready, long long min_rounds,
		       double timeout_s, char *err, size_t errlen)
{
	double end = mono_s() + tmo_ms(timeout_s) / 1000.0;
	long long base;

	vm_serial_update(vm);
	base = vm->log.rounds;
	for (;;) {
		vm_serial_update(vm);
		if ((!need_ready || vm->log.ready) &&
		    vm->log.rounds - base >= min_rounds)
			return 0;
		if (vm_gone(vm)) {
			char e[256];
			vm_exit_text(vm, e, sizeof(e));
			sfmt(err, errlen, "%s while waiting for the guest "
				 "(%s)", e, vm->log.errors ? vm->log.first_error
							  : "no guest error");
			return -1;
		}
		if (mono_s() > end) {
			sfmt(err, errlen, "%s guest: %s after %.0f s "
				 "(ready %d, rounds %lld)", vm->role,
				 vm->log.ready ? "too few rounds" : "not ready",
				 timeout_s, vm->log.ready,
				 vm->log.rounds - base);
			return -1;
		}
		msleep(50);
	}
}

/* ------------------------------------------------------------------ */
/* accelerator choice                                                   */

static void pick_accel(void)
{
	const char *e = getenv("HM_QEMU_ACCEL");
	char cache[PATH_MAX + 64], err[512];
	struct stat qs;
	FILE *f;

	if (e && (!strcmp(e, "tcg") || !strcmp(e, "kvm"))) {
		sfmt(g_accel, sizeof(g_accel), "%s", e);
		sfmt(g_accel_note, sizeof(g_accel_note),
			 "forced by HM_QEMU_ACCEL");
		return;
	}
	sfmt(g_accel, sizeof(g_accel), "tcg");
	if (access("/dev/kvm", R_OK | W_OK)) {
		sfmt(g_accel_note, sizeof(g_accel_note),
			 "no usable /dev/kvm");
		return;
	}
	/* The probe's outcome is kept next to the guest image, per QEMU. */
	if (stat(qemu_binary(), &qs) && stat("/usr/bin/qemu-system-x86_64", &qs))
		memset(&qs, 0, sizeof(qs));
	sfmt(cache, sizeof(cache), "%s/accel-%lld-%lld", g_guestdir,
		 (long long)qs.st_size, (long long)qs.st_mtime);
	f = fopen(cache, "r");
	if (f) {
		char line[300] = "";

		if (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = 0;
			if (!strncmp(line, "kvm", 3) || !strncmp(line, "tcg", 3)) {
				memcpy(g_accel, line, 3);
				g_accel[3] = 0;
				sfmt(g_accel_note, sizeof(g_accel_note),
					 "cached probe: %s", line);
				fclose(f);
				return;
			}
		}
		fclose(f);
	}

	/* Probe: boot the guest under KVM once; a host where Debian's kernel
	 * does not boot under KVM (nested, paravirtualised) gets TCG. */
	struct hm_vm *vm = &g_vm[2];
	struct vm_opts o = { .role = "probe", .accel = "kvm",
			     .mem = 256ull << 20, .balloon = HM_BALLOON_NONE,
			     .fill = 0, .ws = 4, .st = 1 };
	double t0 = mono_s();
	int ok = vm_launch(vm, &o, err, sizeof(err)) == 0 &&
		 wait_rounds(vm, 1, 1, 45, err, sizeof(err)) == 0;

	vm_stop(vm);
	if (ok) {
		sfmt(g_accel, sizeof(g_accel), "kvm");
		sfmt(g_accel_note, sizeof(g_accel_note),
			 "kvm (probe: guest booted in %.1f s)", mono_s() - t0);
	} else {
		char tail[160] = "";
		FILE *lf = fopen(vm->log_path, "r");

		if (lf) {
			char l[160];
			while (fgets(l, sizeof(l), lf))
				if (strstr(l, "error") || strstr(l, "rror:"))
					sfmt(tail, sizeof(tail), "%s", l);
			fclose(lf);
		}
		tail[strcspn(tail, "\n")] = 0;
		sfmt(g_accel, sizeof(g_accel), "tcg");
		sfmt(g_accel_note, sizeof(g_accel_note),
			 "tcg (KVM probe failed: %s%s%s)", err,
			 tail[0] ? "; " : "", tail);
	}
	f = fopen(cache, "w");
	if (f) {
		fprintf(f, "%s\n", g_accel_note);
		fclose(f);
	}
}

/* ------------------------------------------------------------------ */

static int harness_init(char *err, size_t errlen)
{
	const char *tmp = getenv("TMPDIR");
	struct sigaction sa = { .sa_handler = on_signal };

	if (g_inited)
		return 0;
	g_keep = hm_env_flag("HM_QEMU_KEEP");
	sfmt(g_tmpdir, sizeof(g_tmpdir), "%s/hm-qemu-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_tmpdir)) {
		sfmt(err, errlen, "mkdtemp %s: %s", g_tmpdir,
			 strerror(errno));
		g_tmpdir[0] = 0;
		return -1;
	}
	sfmt(g_dump_src, sizeof(g_dump_src), "%s/source.ram", g_tmpdir);
	sfmt(g_dump_dst, sizeof(g_dump_dst), "%s/destination.ram",
		 g_tmpdir);
	atexit(cleanup_at_exit);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (strchr(qemu_binary(), '/') && access(qemu_binary(), X_OK)) {
		sfmt(err, errlen, "no QEMU at %s: apt-get install "
			 "qemu-system-x86", qemu_binary());
		return -1;
	}
	if (build_guest(err, errlen))
		return -1;
	pick_accel();
	note("accelerator: %s", g_accel_note);
	g_inited = 1;
	return 0;
}

void hm_scenario_defaults(struct hm_scenario *s)
{
	memset(s, 0, sizeof(*s));
	s->mem_bytes = HM_QEMU_DEFAULT_MEM;
	s->fill_mib = 320;
	s->ws_mib = 32;
	s->static_mib = 4;
	s->hot_kib = 128;
	s->hot_reps = 64;
	s->max_bandwidth = 256ull << 20;
	s->settle_rounds = 2;
	s->min_syncs = 4;
	s->compare = 1;
	s->rounds_after = 3;
}

size_t hm_corrupt_pattern(unsigned char *buf, size_t len)
{
	static const char magic[16] = { 'H', 'M', 'W', '-', 'S', 'T', 'A', 'T',
					'I', 'C', '-', 'P', 'A', 'G', 'E', '!' };
	uint64_t idx = HM_CORRUPT_PAGE_INDEX;

	if (len < 24)
		return 0;
	memcpy(buf, magic, 16);
	for (int i = 0; i < 8; i++) /* little endian, as the guest stores it */
		buf[16 + i] = (unsigned char)(idx >> (8 * i));
	return 24;
}

static void read_stats(struct json_object *info, struct hm_mig_stats *m)
{
	struct json_object *ram = hm_json_obj(info, "ram");

	sfmt(m->status, sizeof(m->status), "%s",
		 hm_json_str(info, "status", "?"));
	m->total_ms = hm_json_int(info, "total-time", -1);
	m->downtime_ms = hm_json_int(info, "downtime", -1);
	m->setup_ms = hm_json_int(info, "setup-time", -1);
	m->transferred = hm_json_int(ram, "transferred", -1);
	m->total_ram = hm_json_int(ram, "total", -1);
	m->duplicate = hm_json_int(ram, "duplicate", -1);
	m->normal = hm_json_int(ram, "normal", -1);
	m->normal_bytes = hm_json_int(ram, "normal-bytes", -1);
	m->dirty_sync_count = hm_json_int(ram, "dirty-sync-count", -1);
	m->skipped = hm_json_int(ram, "skipped", -1);
	{
		struct json_object *v = hm_json_obj(ram, "mbps");
		m->mbps = v ? json_object_get_double(v) : -1;
	}
}

/* The "status" member of what cmd (query-status, query-migrate) answers
 * into out (dflt when absent): 0, or -1 when QMP fails. */
static int qmp_status(struct hm_vm *vm, const char *cmd, const char *dflt,
		      char *out, size_t len)
{
	struct json_object *st = hm_qmp_exec(vm->qmp, cmd, NULL, tmo_ms(30));

	if (!st)
		return -1;
	sfmt(out, len, "%s", hm_json_str(st, "status", dflt));
	json_object_put(st);
	return 0;
}

static int query_status(struct hm_vm *vm, char *out, size_t len)
{
	return qmp_status(vm, "query-status", "?", out, len);
}

static int dump_ram(struct hm_vm *vm, const char *path, uint64_t size,
		    char *err, size_t errlen)
{
	unlink(path);
	if (hm_qmp_run(vm->qmp, tmo_ms(300), "pmemsave",
		       "{\"val\": 0, \"size\": %" PRIu64 ", \"filename\": \"%s\"}",
		       size, path)) {
		sfmt(err, errlen, "%s pmemsave: %s", vm->role,
			 hm_qmp_error(vm->qmp));
		return -1;
	}
	return 0;
}

/* The destination's incoming migration on a free loopback port: the port,
 * or -1. */
static int dst_incoming(struct hm_vm *dst, struct hm_run_result *r)
{
	struct json_object *res;
	int dst_port;

	if (hm_qmp_run(dst->qmp, tmo_ms(30), "migrate-incoming",
		       "{\"uri\": \"tcp:127.0.0.1:0\"}")) {
		fail_set(r, "destination migrate-incoming: %s",
			 hm_qmp_error(dst->qmp));
		return -1;
	}
	res = hm_qmp_exec(dst->qmp, "query-migrate", NULL, tmo_ms(30));
	{
		struct json_object *sa = hm_json_obj(res, "socket-address"),
				   *a0 = NULL;
		const char *port = NULL;

		if (sa && json_object_is_type(sa, json_type_array) &&
		    json_object_array_length(sa) > 0)
			a0 = json_object_array_get_idx(sa, 0);
		port = hm_json_str(a0, "port", NULL);
		dst_port = port ? atoi(port) : 0;
		if (dst_port <= 0) {
			fail_set(r, "destination: no listening port in "
				 "query-migrate: %s",
				 res ? json_object_to_json_string(res)
				     : hm_qmp_error(dst->qmp));
			json_object_put(res);
			return -1;
		}
		json_object_put(res);
	}

	return dst_port;
}

/* QEMU's own precopy migration of everything, source to destination. */
static int migrate_by_qemu(const struct hm_scenario *s,
			   struct hm_run_result *r, struct hm_proxy **proxyp,
			   struct hm_vm *src, struct hm_vm *dst, int dst_port)
{
	struct json_object *res;
	char err[768];
	int mig_port;
	double t;

	mig_port = dst_port;
	if (s->corrupt) {
		unsigned char pat[32];
		size_t plen = hm_corrupt_pattern(pat, sizeof(pat));

		*proxyp = hm_proxy_start(dst_port, pat, plen, HM_CORRUPT_BYTE,
					 HM_CORRUPT_MASK, err, sizeof(err));
		if (!*proxyp) {
			fail_set(r, "%s", err);
			return -1;
		}
		mig_port = hm_proxy_port(*proxyp);
		note("%s: migrating through the corrupting proxy (port %d -> "
		     "%d)", s->name, mig_port, dst_port);
	}

	{
		uint64_t bw = s->max_bandwidth ? s->max_bandwidth : (1ull << 30);
		const char *ebw = getenv("HM_QEMU_MAX_BANDWIDTH");

		if (ebw && *ebw)
			bw = strtoull(ebw, NULL, 0);
		char dl[48] = "";

		/* Like QEMU's migration-test: first keep the migration from
		 * converging (1 ms downtime limit) so that it goes through
		 * several dirty bitmap syncs, then let it converge. */
		if (s->min_syncs)
			sfmt(dl, sizeof(dl), ", \"downtime-limit\": 1");
		else if (s->downtime_ms)
			sfmt(dl, sizeof(dl), ", \"downtime-limit\": %u",
			     s->downtime_ms);
		if (hm_qmp_run(src->qmp, tmo_ms(30), "migrate-set-parameters",
			       "{\"max-bandwidth\": %" PRIu64 "%s}", bw, dl)) {
			fail_set(r, "source migrate-set-parameters: %s",
				 hm_qmp_error(src->qmp));
			return -1;
		}
	}
	t = mono_s();
	if (hm_qmp_run(src->qmp, tmo_ms(30), "migrate",
		       "{\"uri\": \"tcp:127.0.0.1:%d\"}", mig_port)) {
		fail_set(r, "source migrate: %s", hm_qmp_error(src->qmp));
		return -1;
	}
	/* poll query-migrate until the migration ends */
	int converging = !s->min_syncs;
	for (double end = t + tmo_ms(600) / 1000.0;;) {
		res = hm_qmp_exec(src->qmp, "query-migrate", NULL, tmo_ms(60));
		if (!res) {
			fail_set(r, "source query-migrate: %s",
				 hm_qmp_error(src->qmp));
			return -1;
		}
		read_stats(res, &r->mig);
		if (!strcmp(r->mig.status, "completed")) {
			json_object_put(res);
			r->migrated = 1;
			break;
		}
		if (!strcmp(r->mig.status, "failed") ||
		    !strcmp(r->mig.status, "cancelled")) {
			fail_set(r, "migration %s: %s", r->mig.status,
				 hm_json_str(res, "error-desc", "(no reason)"));
			json_object_put(res);
			return -1;
		}
		json_object_put(res);
		if (!converging && r->mig.dirty_sync_count >= s->min_syncs) {
			unsigned dt = s->downtime_ms ? s->downtime_ms : 300;

			if (hm_qmp_run(src->qmp, tmo_ms(30),
				       "migrate-set-parameters",
				       "{\"downtime-limit\": %u}", dt)) {
				fail_set(r, "source migrate-set-parameters: %s",
					 hm_qmp_error(src->qmp));
				return -1;
			}
			converging = 1;
			r->converge_at_sync = r->mig.dirty_sync_count;
		}
		if (vm_gone(dst) || vm_gone(src)) {
			vm_exit_text(vm_gone(dst) ? dst : src, err, sizeof(err));
			fail_set(r, "%s during the migration", err);
			return -1;
		}
		if (mono_s() > end) {
			fail_set(r, "migration still %s after %.0f s",
				 r->mig.status, mono_s() - t);
			return -1;
		}
		msleep(100);
	}
	return 0;
}

/* Run `hintmig ARGS...` in the background, its output into log. */
/* env: "NAME=VALUE" for the child, or NULL */
static pid_t spawn_hintmig(const char *const *args, const char *log,
			   const char *env)
{
	const char *argv[48];
	int a = 0, fd;
	pid_t pid;

	argv[a++] = HM_QEMU_HINTMIG;
	for (int i = 0; args[i] && a < 47; i++)
		argv[a++] = args[i];
	argv[a] = NULL;
	if (verbose()) {
		fputs("# ", stdout);
		for (int i = 0; argv[i]; i++)
			printf("%s ", argv[i]);
		putchar('\n');
		fflush(stdout);
	}
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (env)
			putenv((char *)env);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	return pid;
}

/* Wait for pid until deadline (mono_s); its exit code, or -1 (killed at
 * the deadline, or died of a signal). With cpu_ms, the CPU time (user +
 * system) it used. */
static int wait_child_cpu(pid_t pid, double deadline, double *cpu_ms)
{
	struct rusage ru;
	int st;

	for (;;) {
		pid_t w = wait4(pid, &st, WNOHANG, &ru);

		if (w == pid) {
			if (cpu_ms)
				*cpu_ms = (double)(ru.ru_utime.tv_sec +
						   ru.ru_stime.tv_sec) * 1e3 +
					  (double)(ru.ru_utime.tv_usec +
						   ru.ru_stime.tv_usec) / 1e3;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		if (w < 0 && errno != EINTR)
			return -1;
		if (mono_s() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		msleep(20);
	}
}

static int wait_child(pid_t pid, double deadline)
{
	return wait_child_cpu(pid, deadline, NULL);
}

/* utime + stime of a /proc/.../stat file in ms, and whether its thread is
 * a vCPU ("CPU 0/TCG", "CPU 1/KVM"); -1 if unreadable. */
static double stat_cpu_ms(const char *path, int *vcpu)
{
	char buf[1024], *p, *comm;
	unsigned long long ut, stm;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	comm = strchr(buf, '(');
	p = strrchr(buf, ')');
	if (!comm || !p)
		return -1;
	if (vcpu)
		*vcpu = !strncmp(comm + 1, "CPU ", 4);
	/* ") S ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime" */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
		   "%llu %llu", &ut, &stm) != 2)
		return -1;
	return (double)(ut + stm) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time of process pid apart from its vCPU threads, in ms: the whole
 * process (exited threads included) minus its live vCPU threads; < 0 if
 * unreadable. */
static double qemu_cpu_ms(pid_t pid)
{
	char path[64];
	struct dirent *e;
	double all, vcpus = 0;
	DIR *d;

	sfmt(path, sizeof(path), "/proc/%d/stat", (int)pid);
	all = stat_cpu_ms(path, NULL);
	sfmt(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (all < 0 || !d) {
		if (d)
			closedir(d);
		return -1;
	}
	while ((e = readdir(d))) {
		char tpath[300];
		int vcpu = 0;
		double t;

		if (e->d_name[0] == '.')
			continue;
		sfmt(tpath, sizeof(tpath), "/proc/%d/task/%s/stat", (int)pid,
		     e->d_name);
		t = stat_cpu_ms(tpath, &vcpu);
		if (t > 0 && vcpu)
			vcpus += t;
	}
	closedir(d);
	return all - vcpus;
}

static char g_send_log[PATH_MAX], g_recv_log[PATH_MAX];
static char g_hinted_map[PATH_MAX];	/* hintmig send --hinted-map */

/* Does the file hold text anywhere? (Read in pieces that overlap by the
 * text's length, so a match across two reads is found.) */
static int file_has(const char *path, const char *text)
{
	char buf[16384];
	size_t tl = strlen(text), keep = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;

	if (fd < 0 || !tl || tl >= sizeof(buf) / 2) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	for (;;) {
		ssize_t n = read(fd, buf + keep, sizeof(buf) - 1 - keep);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		n += (ssize_t)keep;
		buf[n] = 0;
		if (memmem(buf, (size_t)n, text, tl)) {
			found = 1;
			break;
		}
		keep = (size_t)n < tl - 1 ? (size_t)n : tl - 1;
		memmove(buf, buf + n - keep, keep);
	}
	close(fd);
	return found;
}

/* A TCP port p on 127.0.0.1 with p and p + 1 free just now, or -1. */
static int free_port_pair(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t len = sizeof(a);
		int f0 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int f1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int port = -1;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (f0 >= 0 && f1 >= 0 &&
		    bind(f0, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    getsockname(f0, (struct sockaddr *)&a, &len) == 0 &&
		    ntohs(a.sin_port) < 65000) {
			port = ntohs(a.sin_port);
			a.sin_port = htons((uint16_t)(port + 1));
			if (bind(f1, (struct sockaddr *)&a, sizeof(a)) < 0)
				port = -1;
		}
		if (f0 >= 0)
			close(f0);
		if (f1 >= 0)
			close(f1);
		if (port > 0)
			return port;
	}
	return -1;
}

/* Does process pid hold a userfaultfd or /dev/userfaultfd? 1 yes, 0 no,
 * -1 unreadable. */
static int holds_userfaultfd(pid_t pid)
{
	int n = hm_inject_grants_held(pid);

	return n < 0 ? -1 : n > 0;
}

/* The source QEMU's migration status (harness monitor) into out. */
static int src_migrate_status(struct hm_vm *vm, char *out, size_t len)
{
	return qmp_status(vm, "query-migrate", "none", out, len);
}

/* After a failed or refused migration: the source guest runs on, QEMU
 * running with no migration left, its capabilities off, no userfaultfd
 * left in it (R9), and the workload verifying round after round (a vCPU
 * blocked on a write fault would stop it). st: the last migration
 * status. */
/* QEMU's tls-creds migration parameter into out ("" none): 0, or -1
 * with out "?" when QMP did not answer. */
static int tls_creds_of(struct hm_vm *vm, char *out, size_t len)
{
	struct json_object *p = hm_qmp_exec(vm->qmp,
					    "query-migrate-parameters", NULL,
					    tmo_ms(30));

	sfmt(out, len, "%s", p ? hm_json_str(p, "tls-creds", "") : "?");
	json_object_put(p);
	return p ? 0 : -1;
}

static int source_intact(const struct hm_scenario *s, struct hm_run_result *r,
			 struct hm_vm *src, char *st, size_t stlen)
{
	struct json_object *caps;
	char err[512];
	double end;
	long long base;
	int rc;

	/* the source guest runs on: QEMU running with no migration left */
	for (end = mono_s() + tmo_ms(60) / 1000.0;;) {
		char rs[64] = "";

		if (src_migrate_status(src, st, stlen) == 0 &&
		    query_status(src, rs, sizeof(rs)) == 0 &&
		    strcmp(st, "pre-switchover") && strcmp(st, "active") &&
		    strcmp(st, "setup") && strcmp(st, "cancelling") &&
		    strcmp(st, "device") && !strcmp(rs, "running"))
			break;
		if (mono_s() > end) {
			fail_set(r, "source QEMU not running again 60 s after "
				 "the fault: state %s, migration %s", rs, st);
			return -1;
		}
		msleep(50);
	}
	/* the guardian restores the capabilities after a kill; give it the
	 * time its QMP round trips take */
	for (end = mono_s() + tmo_ms(30) / 1000.0;;) {
		int on = 0;

		caps = hm_qmp_exec(src->qmp, "query-migrate-capabilities", NULL,
				   tmo_ms(30));
		for (size_t i = 0; caps && i < json_object_array_length(caps);
		     i++) {
			struct json_object *c = json_object_array_get_idx(caps,
									  i);
			const char *n = hm_json_str(c, "capability", "");
			struct json_object *v = json_object_object_get(c,
								       "state");

			if ((!strcmp(n, "x-ignore-shared") ||
			     !strcmp(n, "pause-before-switchover")) &&
			    v && json_object_get_boolean(v))
				on = 1;
		}
		json_object_put(caps);
		if (!on)
			break;
		if (mono_s() > end) {
			fail_set(r, "source QEMU still has x-ignore-shared or "
				 "pause-before-switchover on after the fault");
			return -1;
		}
		msleep(100);
	}
	/* R18: with --tls the guardian also takes back QEMU's TLS settings */
	for (end = mono_s() + tmo_ms(30) / 1000.0; s->hm_tls;) {
		char creds[128];

		if (tls_creds_of(src, creds, sizeof(creds)) == 0 && !creds[0])
			break;
		if (mono_s() > end) {
			fail_set(r, "source QEMU keeps hintmig's tls-creds after "
				 "the fault");
			return -1;
		}
		msleep(100);
	}
	rc = holds_userfaultfd(src->pid);
	if (rc != 0) {
		fail_set(r, "source QEMU %s a userfaultfd after the fault (R9)",
			 rc > 0 ? "still holds" : "cannot be checked for");
		return -1;
	}
	if (s->qemu_user && granted_nothing(src, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	vm_serial_update(src);
	base = src->log.errors;
	if (wait_rounds(src, 0, 4, 120, err, sizeof(err))) {
		fail_set(r, "source guest after the fault: %s", err);
		return -1;
	}
	if (src->log.errors != base || src->log.failed_rounds) {
		fail_set(r, "source guest reported after the fault: %s",
			 src->log.first_error);
		return -1;
	}
	return 0;
}

/* A hintmig migration with a failure injected (s->fault): then the source
 * guest must run on, unharmed: QEMU running, no migration left, its
 * capabilities off again, no userfaultfd left in QEMU (R9), and the
 * workload verifying round after round (a vCPU blocked on a write fault
 * would stop it). */
static int fault_run(const struct hm_scenario *s, struct hm_run_result *r,
		     struct hm_vm *src, struct hm_vm *dst,
		     const char *const *sargs, pid_t rp)
{
	static const char *const die_at[] = {
		[HM_FAULT_KILL_SEND_ATTACHED] = "HINTMIG_TEST_DIE_AT=attached",
		[HM_FAULT_KILL_SEND_PRESWITCHOVER] =
			"HINTMIG_TEST_DIE_AT=pre-switchover",
	};
	const char *die = (size_t)s->fault < sizeof(die_at) / sizeof(die_at[0])
				  ? die_at[s->fault] : NULL;
	char st[64] = "";
	double t0 = mono_s(), end = t0 + tmo_ms(300) / 1000.0;
	pid_t sp = spawn_hintmig(sargs, g_send_log, die);
	int killed = 0;

	if (sp < 0) {
		fail_set(r, "cannot start hintmig send: %s", strerror(errno));
		return -1;
	}
	/* inject the fault */
	while (!killed && mono_s() < end) {
		int ws;

		if (waitpid(sp, &ws, WNOHANG) == sp) {
			sp = -1;
			/* it killed itself at the hook, nothing else */
			killed = die && WIFSIGNALED(ws) &&
				 WTERMSIG(ws) == SIGKILL;
			break;
		}
		/* the victim of a timed kill; round 1 runs for seconds at
		 * the scenario's bandwidth: 2 s is well inside it */
		pid_t victim = s->fault == HM_FAULT_KILL_SEND_ROUND ? sp
			       : s->fault == HM_FAULT_KILL_DST_QEMU ? dst->pid
			       : s->fault == HM_FAULT_KILL_RECV ? rp : 0;

		if (s->fault == HM_FAULT_DST_MISMATCH) {
			killed = 1; /* the fault is in the configuration */
		} else if (victim > 0 && mono_s() - t0 > 2.0) {
			kill(victim, SIGKILL);
			killed = 1;
		}
		msleep(20);
	}
	if (!killed) {
		fail_set(r, "the fault was not injected (hintmig send %s)",
			 sp < 0 ? "ended first" : "ran too long");
		if (sp > 0)
			kill(sp, SIGKILL);
		kill(rp, SIGKILL);
		waitpid(rp, NULL, 0);
		if (sp > 0)
			waitpid(sp, NULL, 0);
		return -1;
	}
	note("%s: fault injected after %.1f s%s%s", s->name, mono_s() - t0,
	     die ? ": hintmig send killed itself at " : "",
	     die ? strchr(die, '=') + 1 : "");
	r->hm_send_rc = sp > 0 ? wait_child(sp, mono_s() + 120) : -1;
	if (s->fault == HM_FAULT_DST_MISMATCH &&
	    (r->hm_send_rc != 3 ||
	     !file_has(g_recv_log, "this destination has"))) {
		fail_set(r, "mismatched destination: hintmig send exited %d "
			 "(expected 3), no mismatch named in %s",
			 r->hm_send_rc, g_recv_log);
		kill(rp, SIGKILL);
		waitpid(rp, NULL, 0);
		return -1;
	}
	kill(rp, SIGKILL);
	r->hm_recv_rc = wait_child(rp, mono_s() + 10);
	if (source_intact(s, r, src, st, sizeof(st)))
		return -1;
	r->fault_recovered = 1;
	note("%s: source guest running on: migration %s, capabilities off, "
	     "no userfaultfd in QEMU, 4 more verified rounds; hintmig send "
	     "exit %d", s->name, st, r->hm_send_rc);
	return 0;
}

/* R14's impostor: a process that is not QEMU listening on a socket and
 * answering QMP as QEMU would (greeting, then {"return": {}} to every
 * command). Its pid, or -1. */
static pid_t impostor_start(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	if (s < 0 || strlen(path) >= sizeof(a.sun_path)) {
		if (s >= 0)
			close(s);
		return -1;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4)) {
		close(s);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		static const char greet[] =
			"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
			"\"minor\": 0, \"major\": 10}, \"package\": \"\"}, "
			"\"capabilities\": []}}\r\n";
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;) {
			int c = accept(s, NULL, NULL);
			char buf[4096], ret[128];
			ssize_t n;

			if (c < 0)
				_exit(0);
			if (write(c, greet, sizeof(greet) - 1) < 0) {
				close(c);
				continue;
			}
			/* one command a read, answered with its id */
			while ((n = read(c, buf, sizeof(buf) - 1)) > 0) {
				const char *id;
				int len;

				buf[n] = 0;
				id = strstr(buf, "\"id\":");
				len = snprintf(ret, sizeof(ret), "{\"return\": "
					       "{}, \"id\": %lld}\r\n",
					       id ? strtoll(id + 5, NULL, 10)
						  : 0ll);
				if (write(c, ret, (size_t)len) < 0)
					break;
			}
			close(c);
		}
	}
	close(s);
	return pid;
}

/* The soak's fault: SIGKILL the victim soak_delay_ms after hintmig send
 * started, if send still runs then (r->soak_killed). */
static void soak_kill(const struct hm_scenario *s, struct hm_run_result *r,
		      pid_t sp, pid_t rp, struct hm_vm *dst)
{
	double at = mono_s() + s->soak_delay_ms / 1000.0;
	pid_t victim = s->soak_victim == HM_SOAK_SEND ? sp
		       : s->soak_victim == HM_SOAK_RECV ? rp : dst->pid;

	for (;;) {
		siginfo_t si = { 0 };

		/* send ended first (left a zombie for its reaper): nothing
		 * is killed */
		if (waitid(P_PID, (id_t)sp, &si, WEXITED | WNOHANG | WNOWAIT) ||
		    si.si_pid == sp)
			return;
		if (mono_s() >= at)
			break;
		msleep(2);
	}
	if (victim > 0 && kill(victim, SIGKILL) == 0)
		r->soak_killed = 1;
}

/* After a soak kill: if the source QEMU completed its migration, the
 * destination has the guest (1: compare it and run it); otherwise the
 * source must run on intact, R9 included (0, fault_recovered); anything
 * else is bad (-1, failure set). */
static int soak_judge(const struct hm_scenario *s, struct hm_run_result *r,
		      struct hm_vm *src)
{
	char st[64] = "";

	if (src_migrate_status(src, st, sizeof(st)) == 0 &&
	    !strcmp(st, "completed")) {
		/* a destination QEMU killed after QEMU completed took the
		 * guest with it, as after any migration: its RAM file is
		 * still compared (hintmig's part), nothing can run on */
		r->soak_dst_lost = s->soak_victim == HM_SOAK_DST_QEMU;
		return 1;
	}
	if (source_intact(s, r, src, st, sizeof(st)))
		return -1;
	r->fault_recovered = 1;
	return 0;
}

/* A guest hintmig must refuse: `hintmig send` exits 4 (setup) naming
 * what to change, before it touched anything, and the source runs on. */
static int refuse_run(const struct hm_scenario *s, struct hm_run_result *r,
		      struct hm_vm *src, const char *const *sargs, pid_t rp)
{
	char st[64] = "", log[8192] = "";
	pid_t sp = spawn_hintmig(sargs, g_send_log, NULL);
	ssize_t n;
	int fd;

	(void)rp; /* none: a refused guest never gets that far */
	if (sp < 0) {
		fail_set(r, "cannot start hintmig send: %s", strerror(errno));
		return -1;
	}
	r->hm_send_rc = wait_child(sp, mono_s() + tmo_ms(120) / 1000.0);
	fd = open(g_send_log, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, log, sizeof(log) - 1) : -1;
	if (fd >= 0)
		close(fd);
	log[n > 0 ? n : 0] = 0;
	if (r->hm_send_rc != 4 || !strstr(log, s->refuse)) {
		fail_set(r, "hintmig send exited %d (expected 4, a refusal "
			 "naming \"%s\"): %.300s", r->hm_send_rc, s->refuse,
			 log);
		return -1;
	}
	note("%s: refused as it must be: %.*s", s->name,
	     (int)strcspn(log, "\n"), log);
	if (source_intact(s, r, src, st, sizeof(st)))
		return -1;
	r->fault_recovered = 1;
	return 0;
}

/* A rule broken on purpose: the destination (hintmig recv) must have
 * failed, naming the rule, and so must the source. */
static int unsafe_caught(const struct hm_scenario *s, struct hm_run_result *r)
{
	char log[16384] = "";
	int fd = open(g_recv_log, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, log, sizeof(log) - 1) : -1;
	const char *hit;

	if (fd >= 0)
		close(fd);
	log[n > 0 ? n : 0] = 0;
	hit = strstr(log, "(R8");
	if (!hit || r->hm_recv_rc == 0 || r->hm_send_rc == 0) {
		fail_set(r, "%s broken on purpose, yet not caught: hintmig "
			 "recv exited %d, send %d, no R8 error in %s",
			 s->unsafe, r->hm_recv_rc, r->hm_send_rc, g_recv_log);
		return -1;
	}
	while (hit > log && hit[-1] != '\n')
		hit--;
	note("%s: caught: %.*s", s->name, (int)strcspn(hit, "\n"), hit);
	r->fault_recovered = 1;
	return 0;
}

/* hintmig moves the RAM, QEMU the device state: `hintmig recv --qemu`
 * on the destination's second monitor, `hintmig send --qemu` on the
 * source's; the summary JSON fills r->mig. */
/* A checksum of the whole file at path (0 when unreadable). */
static uint64_t file_sum(const char *path)
{
	static unsigned char buf[1 << 20];
	uint64_t h = 1469598103934665603ull;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i += 8) {
			uint64_t w = 0;

			memcpy(&w, buf + i, (size_t)(n - i < 8 ? n - i : 8));
			h = (h ^ w) * 1099511628211ull;
		}
	close(fd);
	return h;
}

/* R17 (s->hm_intruders): three intruders on hintmig recv's port before the
 * real sender: each dropped and counted, the destination's RAM file not
 * changed by them, the receiver still waiting. */
static int intrude(const struct hm_scenario *s, struct hm_run_result *r,
		   struct hm_vm *dst, const char *addr)
{
	int port = atoi(strrchr(addr, ':') + 1), fd;
	uint64_t before = file_sum(dst->ram_path), after;
	unsigned char ch[40], junk[72];
	double end;

	/* 1: connects and closes */
	fd = hm_loopback_connect(port);
	if (fd >= 0)
		close(fd);
	/* 2: garbage instead of an answer */
	fd = hm_loopback_connect(port);
	if (fd >= 0) {
		memset(junk, 'G', sizeof(junk));
		if (read(fd, ch, sizeof(ch)) > 0 &&
		    write(fd, junk, sizeof(junk)) < 0)
			note("%s: intruder 2: write failed", s->name);
		if (read(fd, ch, sizeof(ch)) < 0)
			note("%s: intruder 2: closed", s->name);
		close(fd);
	}
	/* 3: a well-formed answer with a proof made without the key */
	fd = hm_loopback_connect(port);
	if (fd >= 0) {
		if (read(fd, ch, sizeof(ch)) == (ssize_t)sizeof(ch)) {
			memcpy(junk, "HMA1\x01\x00\x02\x00", 8);
			memset(junk + 8, 0x33, sizeof(junk) - 8);
			if (write(fd, junk, sizeof(junk)) < 0 ||
			    read(fd, ch, sizeof(ch)) < 0)
				note("%s: intruder 3: closed", s->name);
		}
		close(fd);
	}
	for (end = mono_s() + 10; !file_has(g_recv_log, "(3 refused so far)");) {
		if (mono_s() > end) {
			fail_set(r, "hintmig recv did not refuse and count the 3 "
				 "intruders (log: %s)", g_recv_log);
			return -1;
		}
		msleep(50);
	}
	after = file_sum(dst->ram_path);
	if (!before || before != after) {
		fail_set(r, "the destination's RAM file %s changed while only "
			 "intruders were connected", dst->ram_path);
		return -1;
	}
	note("%s: 3 intruders refused and counted, the destination's RAM "
	     "file unchanged (checksum %016" PRIx64 "); now the real sender",
	     s->name, after);
	return 0;
}

/* R18: test certificates (tls_certs.sh) under g_tmpdir; the good set's
 * directory into dir. 0 or -1 (failure set). */
static int make_certs(struct hm_run_result *r, char *dir, size_t len)
{
	char cmd[PATH_MAX * 2 + 64];

	sfmt(dir, len, "%s/pki", g_tmpdir);
	sfmt(cmd, sizeof(cmd), "'%s' '%s' >/dev/null 2>&1", HM_QEMU_TLS_CERTS,
	     dir);
	if (system(cmd) != 0) {
		fail_set(r, "cannot make test certificates (%s; certtool from "
			 "gnutls-bin)", HM_QEMU_TLS_CERTS);
		return -1;
	}
	sfmt(dir, len, "%s/pki/good", g_tmpdir);
	return 0;
}

/* R18 after a TLS migration: hintmig send and recv both say TLS carried
 * the stream, and neither QEMU keeps the TLS settings hintmig gave its
 * own migration (tls-creds empty again). */
static int tls_checked(const struct hm_scenario *s, struct hm_run_result *r,
		       struct hm_vm *src, struct hm_vm *dst)
{
	struct hm_vm *vms[2] = { src, dst };

	if (strncmp(r->hm_tls_path, "TLS", 3)) {
		fail_set(r, "hintmig send does not report TLS (\"%s\")",
			 r->hm_tls_path);
		return -1;
	}
	if (!file_has(g_recv_log, "TLS: TLS")) {
		fail_set(r, "hintmig recv does not report TLS (log %s)",
			 g_recv_log);
		return -1;
	}
	if (!file_has(g_send_log, "its own stream in TLS too") ||
	    !file_has(g_recv_log, "its own stream in TLS too")) {
		fail_set(r, "QEMU's own stream was not set up in TLS on both "
			 "ends (logs %s, %s)", g_send_log, g_recv_log);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		char creds[128];

		if (vm_gone(vms[i]))
			continue;
		if (tls_creds_of(vms[i], creds, sizeof(creds)) < 0 ||
		    creds[0]) {
			fail_set(r, "%s QEMU keeps tls-creds \"%s\" after the "
				 "migration (R18: taken back)", vms[i]->role,
				 creds);
			return -1;
		}
	}
	note("%s: TLS on both streams: %s; both QEMUs' tls-creds empty again",
	     s->name, r->hm_tls_path);
	return 0;
}

/* A fresh 32-byte key in path, mode 0600. 0 or -1 (errno). */
static int write_key(const char *path)
{
	unsigned char k[32];
	int fd, ok;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	ok = getrandom(k, sizeof(k), 0) == (ssize_t)sizeof(k) &&
	     write(fd, k, sizeof(k)) == (ssize_t)sizeof(k);
	close(fd);
	return ok ? 0 : -1;
}

/* The first line of path holding "error" (or ""), into out. */
static void first_error(const char *path, char *out, size_t len)
{
	char line[512];
	FILE *f = fopen(path, "re");

	out[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "error")) {
			line[strcspn(line, "\n")] = 0;
			sfmt(out, len, "%s", line);
			break;
		}
	if (f)
		fclose(f);
}

/* hintmig's own stream damaged by the proxy (s->hm_mangle): the damage
 * must have happened; hintmig send must fail and both ends say why; the
 * destination QEMU must never have run (still waiting for its incoming
 * migration, or gone); the source runs on intact (source_intact). */
static int mangle_run(const struct hm_scenario *s, struct hm_run_result *r,
		      struct hm_vm *src, struct hm_vm *dst,
		      const char *const *sargs, pid_t rp, struct hm_mangle *mg)
{
	struct hm_mangle_stats ms;
	char st[64] = "", ds[64] = "", se[512], re[512];
	pid_t sp = spawn_hintmig(sargs, g_send_log, NULL);

	if (sp < 0) {
		fail_set(r, "cannot start hintmig send: %s", strerror(errno));
		hm_mangle_stop(mg, NULL);
		kill(rp, SIGKILL);
		waitpid(rp, NULL, 0);
		return -1;
	}
	r->hm_send_rc = wait_child(sp, mono_s() + tmo_ms(300) / 1000.0);
	r->hm_recv_rc = wait_child(rp, mono_s() + tmo_ms(30) / 1000.0);
	hm_mangle_stop(mg, &ms);
	note("%s: proxy: %s of %" PRIu64 " bytes at byte %" PRIu64 " of the "
	     "first connection (seed %u): %s; %u connections, %" PRIu64
	     " bytes forwarded on it%s%s", s->name,
	     hm_mangle_name((enum hm_mangle_kind)s->hm_mangle), ms.len, ms.at,
	     s->mangle_seed, ms.done ? "done" : "NOT done", ms.connections,
	     ms.to_dst_bytes, ms.error[0] ? "; error: " : "", ms.error);
	first_error(g_send_log, se, sizeof(se));
	first_error(g_recv_log, re, sizeof(re));
	note("%s: hintmig send exit %d: %s", s->name, r->hm_send_rc, se);
	note("%s: hintmig recv exit %d: %s", s->name, r->hm_recv_rc, re);
	if (!ms.done) {
		fail_set(r, "the proxy did not damage the stream (it ended "
			 "first?): the test proves nothing");
		return -1;
	}
	if (r->hm_send_rc == 0) {
		fail_set(r, "hintmig send completed through a damaged stream "
			 "(%s)", hm_mangle_name((enum hm_mangle_kind)
						s->hm_mangle));
		return -1;
	}
	if (!se[0] || !re[0]) {
		fail_set(r, "no clear error: hintmig send said \"%s\", hintmig "
			 "recv said \"%s\"", se, re);
		return -1;
	}
	if (!vm_gone(dst) && (query_status(dst, ds, sizeof(ds)) ||
			      !strcmp(ds, "running"))) {
		fail_set(r, "the destination QEMU is %s after a damaged "
			 "stream: it must never run", ds[0] ? ds : "unknown");
		return -1;
	}
	if (source_intact(s, r, src, st, sizeof(st)))
		return -1;
	r->fault_recovered = 1;
	note("%s: destination QEMU %s (never ran); source guest running on, "
	     "migration %s, 4 more verified rounds", s->name,
	     vm_gone(dst) ? "gone" : ds, st);
	return 0;
}

static int migrate_by_hintmig(const struct hm_scenario *s,
			      struct hm_run_result *r, struct hm_vm *src,
			      struct hm_vm *dst)
{
	char addr[PATH_MAX + 8], json[PATH_MAX], extra[512], unsafe_env[128];
	static char recv_env[128];	/* putenv keeps it */
	char impostor[PATH_MAX], maddr[64], keyfile[PATH_MAX] = "";
	char tlsdir[PATH_MAX] = "";
	struct hm_mangle *mangler = NULL;
	pid_t ipid = -1;
	const char *rargs[16], *sargs[40];
	struct json_object *j, *ram;
	pid_t rp, sp;
	int n = 0, k = 0;
	double end;

	if (s->hm_tls && make_certs(r, tlsdir, sizeof(tlsdir)))
		return -1;
	if (s->hm_tcp || s->hm_mangle || s->hm_tls) {
		int port = free_port_pair();

		if (port < 0) {
			fail_set(r, "no two free TCP ports on 127.0.0.1");
			return -1;
		}
		/* hintmig on port, QEMU's own stream on port + 1 */
		sfmt(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
		/* R17: both ends hold this migration's key */
		sfmt(keyfile, sizeof(keyfile), "%s/hm.key", g_tmpdir);
		if (write_key(keyfile)) {
			fail_set(r, "cannot write %s: %s", keyfile,
				 strerror(errno));
			return -1;
		}
	} else {
		sfmt(addr, sizeof(addr), "unix:%s/hm.sock", g_tmpdir);
	}
	sfmt(unsafe_env, sizeof(unsafe_env), "HINTMIG_TEST_UNSAFE=%s",
	     s->unsafe ? s->unsafe : "");
	sfmt(json, sizeof(json), "%s/send.json", g_tmpdir);
	sfmt(g_hinted_map, sizeof(g_hinted_map), "%s/hinted.map", g_tmpdir);
	unlink(g_hinted_map);
	sfmt(g_send_log, sizeof(g_send_log), "%s/hintmig-send.log", g_tmpdir);
	sfmt(g_recv_log, sizeof(g_recv_log), "%s/hintmig-recv.log", g_tmpdir);
	rargs[n++] = "recv";
	rargs[n++] = "--qemu";
	rargs[n++] = dst->hm_qmp_path;
	rargs[n++] = "--listen";
	rargs[n++] = addr;
	rargs[n++] = "--verbose";
	if (keyfile[0]) {
		rargs[n++] = "--key-file";
		rargs[n++] = keyfile;
	}
	if (tlsdir[0]) {
		rargs[n++] = "--tls-dir";
		rargs[n++] = tlsdir;
	}
	rargs[n] = NULL;
	if (s->recv_unsafe)
		sfmt(recv_env, sizeof(recv_env), "HINTMIG_TEST_UNSAFE=%s",
		     s->recv_unsafe);
	rp = s->refuse ? 0 : spawn_hintmig(rargs, g_recv_log,
					   s->recv_unsafe ? recv_env : NULL);
	if (rp < 0) {
		fail_set(r, "cannot start hintmig recv: %s", strerror(errno));
		return -1;
	}
	/* the source connects once: wait until recv listens */
	for (end = mono_s() + tmo_ms(30) / 1000.0;
	     !s->refuse && !file_has(g_recv_log, "recv: listening on");) {
		int st;

		if (waitpid(rp, &st, WNOHANG) == rp) {
			fail_set(r, "hintmig recv exited before listening "
				 "(log: %s)", g_recv_log);
			return -1;
		}
		if (mono_s() > end) {
			fail_set(r, "hintmig recv: not listening on %s after "
				 "30 s", addr);
			kill(rp, SIGKILL);
			waitpid(rp, NULL, 0);
			return -1;
		}
		msleep(20);
	}
	if (s->hm_intruders && intrude(s, r, dst, addr))
		return -1;
	sargs[k++] = "send";
	sargs[k++] = "--qemu";
	if (s->impostor) {
		sfmt(impostor, sizeof(impostor), "%s/impostor.qmp", g_tmpdir);
		ipid = impostor_start(impostor);
		if (ipid < 0) {
			fail_set(r, "cannot start the impostor on %s",
				 impostor);
			return -1;
		}
	}
	sargs[k++] = s->impostor ? impostor : src->hm_qmp_path;
	sargs[k++] = "--to";
	if (s->hm_mangle) {
		char merr[256];
		int rport = atoi(strrchr(addr, ':') + 1);

		mangler = hm_mangle_start(rport, (enum hm_mangle_kind)s->hm_mangle,
					  s->mangle_seed, merr, sizeof(merr));
		if (!mangler) {
			fail_set(r, "%s", merr);
			kill(rp, SIGKILL);
			waitpid(rp, NULL, 0);
			return -1;
		}
		sfmt(maddr, sizeof(maddr), "tcp:127.0.0.1:%d",
		     hm_mangle_port(mangler));
		sargs[k++] = maddr;
	} else {
		sargs[k++] = addr;
	}
	sargs[k++] = "--json";
	sargs[k++] = json;
	sargs[k++] = "--hinted-map";
	sargs[k++] = g_hinted_map;
	sargs[k++] = "--verbose";
	if (keyfile[0]) {
		sargs[k++] = "--key-file";
		sargs[k++] = keyfile;
	}
	if (tlsdir[0]) {
		sargs[k++] = "--tls-dir";
		sargs[k++] = tlsdir;
	}
	if (s->hm_hint_mib || s->hm_agent) {
		sargs[k++] = "--agent";
		sargs[k++] = src->agent_path;
	}
	sfmt(extra, sizeof(extra), "%s", s->hm_args ? s->hm_args : "");
	for (char *tok = strtok(extra, " "); tok && k < 38;
	     tok = strtok(NULL, " "))
		sargs[k++] = tok;
	sargs[k] = NULL;
	if (s->fault)
		return fault_run(s, r, src, dst, sargs, rp);
	if (s->hm_mangle)
		return mangle_run(s, r, src, dst, sargs, rp, mangler);
	if (s->refuse) {
		int rr = refuse_run(s, r, src, sargs, rp);

		if (ipid > 0) {
			kill(ipid, SIGKILL);
			waitpid(ipid, NULL, 0);
		}
		return rr;
	}
	sp = spawn_hintmig(sargs, g_send_log, s->unsafe ? unsafe_env : NULL);
	if (sp < 0) {
		fail_set(r, "cannot start hintmig send: %s", strerror(errno));
		kill(rp, SIGKILL);
		waitpid(rp, NULL, 0);
		return -1;
	}
	end = mono_s() + tmo_ms(600) / 1000.0;
	if (s->soak_victim)
		soak_kill(s, r, sp, rp, dst);
	{
		double t0 = mono_s();

		r->hm_send_rc = wait_child_cpu(sp, end, &r->hm_send_cpu_ms);
		r->hm_wall_ms = (long long)((mono_s() - t0) * 1000);
	}
	r->dropped_offset = UINT64_MAX;
	r->hm_recv_rc = wait_child_cpu(rp, r->hm_send_rc == 0
					       ? mono_s() + tmo_ms(120) / 1000.0
					       : mono_s() + 5,
				       &r->hm_recv_cpu_ms);
	if (s->recv_unsafe) {
		FILE *lf = fopen(g_recv_log, "re");
		char line[512];

		while (lf && fgets(line, sizeof(line), lf)) {
			const char *p = strstr(line, "dropped the received "
						     "page at offset ");
			if (p)
				r->dropped_offset = strtoull(p + 36, NULL, 0);
		}
		if (lf)
			fclose(lf);
	}
	if (s->unsafe)
		return unsafe_caught(s, r);
	if (s->soak_victim && r->soak_killed) {
		int done = soak_judge(s, r, src);

		if (done <= 0)
			return done;	/* failed cleanly (0), or bad (-1) */
		/* completed: on to the compare and the destination */
	} else if (r->hm_send_rc || r->hm_recv_rc) {
		fail_set(r, "hintmig send exited %d, hintmig recv exited %d "
			 "(logs: %s, %s)", r->hm_send_rc, r->hm_recv_rc,
			 g_send_log, g_recv_log);
		return -1;
	}
	j = json_object_from_file(json);
	if (!j && r->soak_killed) {
		/* the sender died after QEMU completed: no summary */
		r->migrated = 1;
		return 0;
	}
	if (!j) {
		fail_set(r, "hintmig send wrote no JSON summary %s", json);
		return -1;
	}
	read_stats(j, &r->mig);
	ram = hm_json_obj(j, "ram");
	r->mig.skipped = hm_json_int(ram, "skipped-hinted", -1);
	r->mig.hint_rejected = hm_json_int(hm_json_obj(j, "hints"), "rejected",
					   -1);
	if (hm_json_obj(j, "hints"))
		note("%s: hintmig's hint counters %s", s->name,
		     json_object_to_json_string_ext(hm_json_obj(j, "hints"),
						    JSON_C_TO_STRING_PLAIN));
	r->mig.hint_stale = hm_json_int(hm_json_obj(j, "hints"),
					"dropped-stale", -1);
	r->mig.hint_session_max = hm_json_int(hm_json_obj(j, "hints"),
					      "session-pages-max", -1);
	r->mig.hint_apply_us = hm_json_int(hm_json_obj(j, "hints"),
					   "apply-us", -1);
	r->hm_skipped_empty = hm_json_int(ram, "skipped-empty", -1);
	r->hm_rounds = hm_json_int(j, "rounds", -1);
	r->hm_tracker_faults = hm_json_int(j, "tracker-faults", -1);
	sfmt(r->hm_tls_path, sizeof(r->hm_tls_path), "%s",
	     hm_json_str(j, "tls", ""));
	r->hm_qemu_downtime_ms = hm_json_int(hm_json_obj(j, "qemu"),
					     "downtime", -1);
	r->hm_device_bytes = hm_json_int(hm_json_obj(j, "qemu"),
					 "device-state-bytes", -1);
	json_object_put(j);
	if (strcmp(r->mig.status, "completed")) {
		fail_set(r, "hintmig send: status %s", r->mig.status);
		return -1;
	}
	note("%s: hintmig: QEMU's own part %lld bytes (bound %lld: device "
	     "state only), QEMU's downtime %lld ms", s->name,
	     r->hm_device_bytes, HM_QEMU_DEVICE_MAX, r->hm_qemu_downtime_ms);
	if (r->hm_device_bytes < 0 || r->hm_device_bytes > HM_QEMU_DEVICE_MAX) {
		fail_set(r, "QEMU's own stream carried %lld bytes (bound %lld): "
			 "QEMU migrated guest RAM itself beside hintmig "
			 "(x-ignore-shared did not leave it out)",
			 r->hm_device_bytes, HM_QEMU_DEVICE_MAX);
		return -1;
	}
	if (s->hm_tls && tls_checked(s, r, src, dst))
		return -1;
	if (s->hm_hugetlb &&
	    (!file_has(g_send_log, "tracked in whole huge pages") ||
	     !file_has(g_recv_log, "RAM on hugetlbfs ("))) {
		fail_set(r, "hugetlbfs RAM not seen as such: the tracker must "
			 "track whole huge pages, the receiver write into "
			 "huge pages (logs %s, %s)", g_send_log, g_recv_log);
		return -1;
	}
	if (s->hm_hugetlb) {
		struct stat a, b;

		if (stat(src->ram_path, &a) == 0 &&
		    stat(dst->ram_path, &b) == 0)
			note("%s: huge pages allocated: source %lld, "
			     "destination %lld of %lld", s->name,
			     (long long)(a.st_blocks * 512 / g_huge_size),
			     (long long)(b.st_blocks * 512 / g_huge_size),
			     (long long)(a.st_size / g_huge_size));
	}
	r->migrated = 1;
	return 0;
}

/* The running agent (hm.agent=1), the test as its host (agentprobe.c):
 * answers, garbage, STOP, BYE, a second host; then the agent's log must
 * show the resync and the guest must have reported no error. */
static int agent_daemon_run(const struct hm_scenario *s,
			    struct hm_run_result *r, struct hm_vm *vm)
{
	struct hm_agent_probe st;
	char err[512];
	double t = mono_s();

	if (wait_rounds(vm, 1, 2, 240, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	r->boot_s = mono_s() - t;
	if (hm_agent_probe(vm->agent_path, &st, err, sizeof(err))) {
		vm->log.check = -1;
		sfmt(vm->log.check_line, sizeof(vm->log.check_line),
		     "the agent as a host sees it: %s", err);
		return 0;
	}
	msleep(500);
	vm_serial_update(vm);
	printf("# agent: epoch 1 %" PRIu64 " ranges %" PRIu64 " MiB; after "
	       "garbage HELLO in %" PRId64 " ms, %" PRIu64 " ranges; second "
	       "host HELLO in %" PRId64 " ms, %" PRIu64 " ranges\n",
	       st.ranges, st.bytes >> 20, st.resync_ms, st.ranges2,
	       st.reconnect_ms, st.ranges3);
	if (vm->log.errors || vm_gone(vm) ||
	    !vm->log.agent_resyncs || !vm->log.agent_drops ||
	    vm->log.agent_epochs < 4) {
		vm->log.check = -1;
		sfmt(vm->log.check_line, sizeof(vm->log.check_line),
		     "guest errors %lld (%s), agent answers logged %lld (want "
		     ">= 4), resyncs logged %lld, cache drops logged %lld",
		     vm->log.errors, vm->log.first_error,
		     vm->log.agent_epochs, vm->log.agent_resyncs,
		     vm->log.agent_drops);
		return 0;
	}
	vm->log.check = 1;
	sfmt(vm->log.check_line, sizeof(vm->log.check_line), "agent daemon ok");
	note("%s: %s", s->name, vm->log.check_line);
	return 0;
}

/* hm.check=agent: one guest, no migration; hm-agent-check's verdict, and
 * its lines (the figures) echoed. */
static int guest_check_run(const struct hm_scenario *s,
			   struct hm_run_result *r, struct vm_opts *o)
{
	struct hm_vm *vm = &g_vm[0];
	char err[768], line[1024];
	double t = mono_s(), end = t + tmo_ms(900) / 1000.0;
	FILE *f;

	o->role = "source";
	if (s->guest_check == 2) {
		o->check = 0;
		o->agent = HM_AGENT_DROP_CACHES;
	}
	if (vm_launch(vm, o, err, sizeof(err)) ||
	    vm_connect(vm, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	if (s->guest_check == 2)
		return agent_daemon_run(s, r, vm);
	for (;;) {
		vm_serial_update(vm);
		if (vm->log.check)
			break;
		if (vm_gone(vm)) {
			vm_exit_text(vm, err, sizeof(err));
			fail_set(r, "%s before the agent check ended (%s)", err,
				 vm->log.errors ? vm->log.first_error
						: "no guest error");
			return -1;
		}
		if (mono_s() > end) {
			fail_set(r, "the agent check gave no verdict in %.0f s",
				 end - t);
			return -1;
		}
		msleep(100);
	}
	r->boot_s = mono_s() - t;
	f = fopen(vm->serial_path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "HMC: ");

		if (p)
			printf("# %s", p);
	}
	if (f)
		fclose(f);
	note("%s: %s (%.1f s)", s->name, vm->log.check_line, r->boot_s);
	return 0;
}

static int run_inner(const struct hm_scenario *s, struct hm_run_result *r,
		     struct hm_proxy **proxyp)
{
	struct hm_vm *src = &g_vm[0], *dst = &g_vm[1];
	char err[768], status[64];
	struct json_object *res;
	int dst_port;
	uint64_t mem = s->mem_bytes ? s->mem_bytes : HM_QEMU_DEFAULT_MEM;
	const char *emem = getenv("HM_QEMU_MEM_KIB");
	double t;

	if (emem && *emem)
		mem = strtoull(emem, NULL, 0) << 10;
	struct vm_opts o = { .accel = g_accel, .mem = mem, .balloon = s->balloon,
			     .fill = s->fill_mib, .ws = s->ws_mib,
			     .st = s->static_mib, .hot = s->hot_kib,
			     .hotreps = s->hot_reps,
			     .shared_ram = s->hm_hugetlb ? 3
					   : s->hintmig && !s->private_ram
						   ? 1 + !!s->hm_memfd : 0,
			     .hint_mib = s->hm_hint_mib,
			     .agent = s->hm_agent,
			     .hint_lie = s->hm_hint_lie,
			     .check = s->guest_check,
			     .hm_monitor = s->hintmig,
			     .direct_disk = s->direct_disk,
			     .payload = s->kvm_payload,
			     .as_user = s->qemu_user };

	if (s->kvm_payload)	/* KVM is the point of the payload */
		o.accel = getenv("HM_QEMU_ACCEL") ? g_accel : "kvm";
	sfmt(r->accel, sizeof(r->accel), "%s", o.accel);
	if (s->guest_check)
		return guest_check_run(s, r, &o);
	if (s->qemu_user && stock_user_setup(err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	if (s->hm_hugetlb) {
		/* whole huge pages */
		g_huge_size = s->hm_hugetlb == 2 ? 1u << 30 : 2u << 20;
		mem = (mem + g_huge_size - 1) & ~(g_huge_size - 1);
		o.mem = mem;
		if (huge_setup(mem, err, sizeof(err))) {
			fail_set(r, "%s", err);
			return -1;
		}
	}

	/* destination first: paused (-S), incoming deferred to pick a port */
	o.role = "destination";
	o.incoming = 1;
	if (s->fault == HM_FAULT_DST_MISMATCH)
		o.mem += 4u << 20;
	if (vm_launch(dst, &o, err, sizeof(err)) ||
	    vm_connect(dst, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	dst_port = s->hintmig ? 0 : dst_incoming(dst, r);
	if (dst_port < 0)
		return -1;
	o.role = "source";
	o.incoming = 0;
	o.mem = mem;
	t = mono_s();
	if (vm_launch(src, &o, err, sizeof(err)) ||
	    vm_connect(src, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	res = hm_qmp_exec(src->qmp, "query-version", NULL, tmo_ms(30));
	{
		struct json_object *q = hm_json_obj(res, "qemu");

		r->qemu_major = (int)hm_json_int(q, "major", 0);
		r->qemu_minor = (int)hm_json_int(q, "minor", 0);
		r->qemu_micro = (int)hm_json_int(q, "micro", 0);
	}
	json_object_put(res);
	res = hm_qmp_exec(src->qmp, "query-memory-size-summary", NULL,
			  tmo_ms(30));
	r->ram_size = (uint64_t)hm_json_int(res, "base-memory", 0);
	json_object_put(res);
	if (r->ram_size != mem) {
		fail_set(r, "QEMU made the guest RAM %" PRIu64 " bytes, not "
			 "the %" PRIu64 " asked for", r->ram_size, mem);
		return -1;
	}
	if (wait_rounds(src, 1, s->settle_rounds, 240, err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	r->boot_s = mono_s() - t;
	note("%s: source guest ready in %.1f s (%s, %" PRIu64 " KiB RAM)",
	     s->name, r->boot_s, o.accel, mem >> 10);
	if (src->log.errors) {
		fail_set(r, "source guest reported an error before the "
			 "migration: %s", src->log.first_error);
		return -1;
	}

	/* the guest's pace in the second before the migration */
	{
		long long n0;
		double t0;

		vm_serial_update(src);
		n0 = src->log.last_round;
		t0 = mono_s();
		msleep(1000);
		vm_serial_update(src);
		r->guest_rounds_ps_before =
			(double)(src->log.last_round - n0) / (mono_s() - t0);
	}
	{
		double sq = qemu_cpu_ms(src->pid), dq = qemu_cpu_ms(dst->pid);
		long long n0 = src->log.last_round;

		t = mono_s();
		if (s->hintmig ? migrate_by_hintmig(s, r, src, dst)
			       : migrate_by_qemu(s, r, proxyp, src, dst,
						 dst_port))
			return -1;
		if (s->fault || s->refuse || s->unsafe || s->hm_mangle)
			return r->fault_recovered ? 0 : -1;
		if (s->soak_victim && r->fault_recovered)
			return 0;	/* the soak: failed, source intact */
		r->migrate_s = mono_s() - t;
		vm_serial_update(src);
		r->guest_rounds_ps_during =
			(double)(src->log.last_round - n0) / r->migrate_s;
		r->src_qemu_cpu_ms = sq >= 0 ? qemu_cpu_ms(src->pid) - sq : -1;
		r->dst_qemu_cpu_ms = dq >= 0 ? qemu_cpu_ms(dst->pid) - dq : -1;
	}
	note("%s: migration completed in %.1f s: total %lld ms, downtime %lld "
	     "ms, %lld normal + %lld duplicate pages, %lld MiB transferred",
	     s->name, r->migrate_s, r->mig.total_ms, r->mig.downtime_ms,
	     r->mig.normal, r->mig.duplicate, r->mig.transferred >> 20);

	/* the destination stays paused (-S) once it has loaded everything */
	if (r->soak_dst_lost) {
		r->dst_paused = 1;	/* (it had loaded: QEMU completed) */
	} else {
		double end = mono_s() + tmo_ms(120) / 1000.0;

		for (;;) {
			if (query_status(dst, status, sizeof(status))) {
				fail_set(r, "destination query-status: %s",
					 hm_qmp_error(dst->qmp));
				return -1;
			}
			if (!strcmp(status, "paused") ||
			    !strcmp(status, "postmigrate"))
				break;
			if (strcmp(status, "inmigrate")) {
				fail_set(r, "destination went to state %s, not "
					 "paused", status);
				return -1;
			}
			if (mono_s() > end) {
				fail_set(r, "destination still %s 120 s after "
					 "the source completed", status);
				return -1;
			}
			msleep(50);
		}
		r->dst_paused = 1;
	}
	if (s->qemu_user) {
		if (granted_nothing(src, err, sizeof(err))) {
			fail_set(r, "%s", err);
			return -1;
		}
		if (!file_has(g_send_log, "/dev/userfaultfd, handed in")) {
			fail_set(r, "hintmig send did not say it handed "
				 "/dev/userfaultfd in: the unprivileged path "
				 "did not run (%s)", g_send_log);
			return -1;
		}
	}
	if (query_status(src, status, sizeof(status)) ||
	    strcmp(status, "postmigrate")) {
		fail_set(r, "source in state %s after the migration, expected "
			 "postmigrate", status);
		return -1;
	}
	if (*proxyp) {
		hm_proxy_stop(*proxyp, &r->proxy);
		*proxyp = NULL;
		note("%s: proxy forwarded %" PRIu64 " bytes, pattern seen %u "
		     "time(s), flipped %u byte(s) at stream offset %" PRIu64
		     " (0x%02x -> 0x%02x)%s%s", s->name, r->proxy.to_dst_bytes,
		     r->proxy.pattern_hits, r->proxy.flips,
		     r->proxy.flip_offset, r->proxy.before, r->proxy.after,
		     r->proxy.error[0] ? "; error: " : "", r->proxy.error);
	}

	if (s->compare) {
		unsigned char pat[32];
		size_t plen = hm_corrupt_pattern(pat, sizeof(pat));

		/* hintmig runs on a RAM file: compare the files
		 * themselves, every byte of the block by its offset (the
		 * pages under the VGA window and option ROMs included) */
		int files = s->hintmig && !s->hm_memfd;
		const char *sp = files ? src->ram_path : g_dump_src;
		const char *dp = files ? dst->ram_path : g_dump_dst;

		t = mono_s();
		if (!files &&
		    (dump_ram(src, g_dump_src, mem, err, sizeof(err)) ||
		     dump_ram(dst, g_dump_dst, mem, err, sizeof(err)))) {
			fail_set(r, "%s", err);
			return -1;
		}
		/* QEMU's own hinting: any page zero on the destination (it
		 * says nothing of which it left out); hintmig: exactly the
		 * pages of its hinted map, whatever the destination holds */
		struct hm_ramcmp_allow allow = {
			.dst_zero = s->balloon == HM_BALLOON_HINT };
		uint64_t *hinted = NULL;
		int cr;

		if (s->hintmig &&
		    hm_ramcmp_load_hinted(g_hinted_map, &hinted,
					  &allow.hinted_pages, err,
					  sizeof(err))) {
			fail_set(r, "hintmig send's hinted map: %s", err);
			return -1;
		}
		allow.hinted = hinted;
		cr = hm_ramcmp_files(sp, dp, mem, &allow, pat, plen, &r->cmp,
				     err, sizeof(err));
		free(hinted);
		if (cr) {
			fail_set(r, "%s", err);
			return -1;
		}
		unlink(g_dump_src);
		unlink(g_dump_dst);
		r->compared = 1;
		r->pattern_found = r->cmp.marker_pages > 0;
		r->compare_s = mono_s() - t;
		note("%s: RAM compare (%s) in %.1f s: %" PRIu64 " pages, %" PRIu64
		     " identical, %" PRIu64 " zero on the destination only, %"
		     PRIu64 " bad", s->name,
		     s->balloon == HM_BALLOON_HINT
			     ? "QEMU's hinting: a page may differ only where "
			       "the destination's copy is all zeros"
			     : s->hintmig ? "a page may differ only if it is "
					    "in hintmig's hinted map"
					  : "must be identical",
		     r->compare_s, r->cmp.pages, r->cmp.equal,
		     r->cmp.zero_on_dst, r->cmp.bad);
	}

	if (r->soak_dst_lost)
		return 0;	/* compared; no destination left to run */
	/* let the destination run: the guest must go on, checksums intact */
	t = mono_s();
	if (hm_qmp_run(dst->qmp, tmo_ms(30), "cont", NULL)) {
		fail_set(r, "destination cont: %s", hm_qmp_error(dst->qmp));
		return -1;
	}
	if (wait_rounds(dst, 0, s->rounds_after, 120, err, sizeof(err))) {
		fail_set(r, "after the migration: %s", err);
		vm_serial_update(src);
		return -1;
	}
	r->dst_alive = 1;
	r->after_s = mono_s() - t;
	vm_serial_update(src);
	note("%s: destination guest ran %lld round reports (up to round %lld), "
	     "%lld error line(s)", s->name, dst->log.rounds,
	     dst->log.last_round, dst->log.errors);
	return 0;
}

int hm_run(const struct hm_scenario *s, struct hm_run_result *r)
{
	char err[768];
	struct hm_proxy *proxy = NULL;
	double t0 = mono_s();
	int rc;

	memset(r, 0, sizeof(*r));
	if (harness_init(err, sizeof(err))) {
		fail_set(r, "%s", err);
		return -1;
	}
	rc = run_inner(s, r, &proxy);
	if (proxy)
		hm_proxy_stop(proxy, &r->proxy);
	vm_serial_update(&g_vm[0]);
	vm_serial_update(&g_vm[1]);
	r->src_log = g_vm[0].log;
	r->dst_log = g_vm[1].log;
	/* sysfs prints feature bit 0 first; bit 3 is FREE_PAGE_HINT */
	if (s->balloon == HM_BALLOON_HINT && g_vm[0].log.ready &&
	    (strlen(g_vm[0].balloon_features) < 4 ||
	     g_vm[0].balloon_features[3] != '1'))
		fail_set(r, "the guest's balloon driver did not negotiate "
			 "VIRTIO_BALLOON_F_FREE_PAGE_HINT (features \"%s\")",
			 g_vm[0].balloon_features);
	vm_stop(&g_vm[1]);
	vm_stop(&g_vm[0]);
	unlink(g_dump_src);
	unlink(g_dump_dst);
	for (int i = 0; i < 2; i++)
		if (s->hm_hugetlb && g_vm[i].ram_path[0])
			unlink(g_vm[i].ram_path);
	huge_teardown();
	r->total_s = mono_s() - t0;
	return r->failure[0] ? -1 : rc;
}

/* An agent whose hints must not be used: nothing skipped as hinted, RAM
 * identical, and hintmig send's log gives the reason (said). */
static int no_hints_verdict(const struct hm_run_result *r, const char *what,
			    const char *said, char *why, size_t len)
{
	if (!r->cmp.zero_on_dst && !r->cmp.hinted_older &&
	    r->mig.skipped == 0 && file_has(g_send_log, said))
		return 0;
	sfmt(why, len, "%s: %" PRIu64 " pages differ, %lld skipped as "
	     "hinted; hintmig send must use no hints and log \"%s\" (%s)",
	     what, r->cmp.zero_on_dst, r->mig.skipped, said, g_send_log);
	return -1;
}

int hm_verdict(const struct hm_scenario *s, const struct hm_run_result *r,
	       char *why, size_t len)
{
	if (r->failure[0]) {
		sfmt(why, len, "%s", r->failure);
		return -1;
	}
	if (s->guest_check) {
		if (r->src_log.check != 1) {
			sfmt(why, len, "agent check in the guest: %s",
			     r->src_log.check_line[0] ? r->src_log.check_line
						      : "no verdict");
			return -1;
		}
		return 0;
	}
	if (s->soak_victim && r->fault_recovered)
		return 0;	/* judged by soak_judge: source intact */
	if (s->fault || s->refuse || s->unsafe || s->hm_mangle) {
		if (!r->fault_recovered) {
			sfmt(why, len, "source guest not shown intact after "
			     "the fault");
			return -1;
		}
		return 0;
	}
	if (!r->migrated || !r->dst_paused) {
		sfmt(why, len, "migration did not complete");
		return -1;
	}
	if (s->compare && !r->compared) {
		sfmt(why, len, "RAM not compared");
		return -1;
	}
	if (r->compared && r->cmp.bad) {
		const struct hm_ramcmp_diff *d = &r->cmp.bads[0];

		sfmt(why, len,
			 "page compare: %" PRIu64 " bad page(s); first at gpa "
			 "0x%" PRIx64 ", %u byte(s) differ from +0x%x (source "
			 "0x%02x, destination 0x%02x)",
			 r->cmp.bad, d->gpa, d->ndiff, d->first_byte, d->src,
			 d->dst);
		return -1;
	}
	if (r->src_log.errors) {
		sfmt(why, len, "source guest reported: %s",
			 r->src_log.first_error);
		return -1;
	}
	if (s->hm_hint_lie == 3) {
		uint64_t hint_pages = ((uint64_t)s->hm_hint_mib << 20) / 4096;

		/* The broken agent hinted pages in use: exactly those are
		 * lost (zero on the destination), the destination guest says
		 * so, and nothing else goes wrong. */
		if (!r->compared || r->cmp.zero_on_dst != hint_pages ||
		    !r->dst_log.lost_hint_lines ||
		    r->dst_log.errors != r->dst_log.lost_hint_lines) {
			sfmt(why, len, "in-use pages hinted free: %" PRIu64
			     " pages zero on the destination (the region has %"
			     PRIu64 "), destination reported %lld lost-page "
			     "lines among %lld errors (first: %s)",
			     r->cmp.zero_on_dst, hint_pages,
			     r->dst_log.lost_hint_lines, r->dst_log.errors,
			     r->dst_log.first_error);
			return -1;
		}
	} else if (r->dst_log.errors || r->dst_log.failed_rounds) {
		sfmt(why, len, "destination guest reported: %s",
			 r->dst_log.first_error);
		return -1;
	}
	if (s->hm_hint_lie == 1 &&
	    (r->mig.hint_rejected <= 0 || r->cmp.zero_on_dst > 1)) {
		sfmt(why, len, "lying agent: %lld hint ranges rejected (want > "
		     "0), %lld stale dropped, %" PRIu64 " pages zero on the "
		     "destination (at most the one flooded page)",
		     r->mig.hint_rejected, r->mig.hint_stale,
		     r->cmp.zero_on_dst);
		return -1;
	}
	if (s->hm_hint_lie == 4) {
		uint64_t npages = r->ram_size / 4096;
		uint64_t budget = 2 * npages + 4096;
		uint64_t hint_pages = ((uint64_t)s->hm_hint_mib << 20) / 4096;

		/* R13: the flood is rejected, the work of every session
		 * stays within its page budget, the true hints still count
		 * (every region page left out), and the compare (hinted map)
		 * and the guest say nothing was lost */
		if (r->mig.hint_rejected <= 0 || r->mig.hint_session_max <= 0 ||
		    (uint64_t)r->mig.hint_session_max > budget ||
		    r->mig.skipped < (long long)hint_pages) {
			sfmt(why, len, "amplifying agent: %lld ranges rejected "
			     "(want > 0), largest session named %lld pages "
			     "(budget %" PRIu64 " = 2 x %" PRIu64 " + 4096), "
			     "%lld pages skipped as hinted (the region has %"
			     PRIu64 ")", r->mig.hint_rejected,
			     r->mig.hint_session_max, budget, npages,
			     r->mig.skipped, hint_pages);
			return -1;
		}
	}
	if (s->hm_hint_lie == 2 &&
	    (r->cmp.zero_on_dst || r->cmp.hinted_older ||
	     r->mig.skipped != 0 ||
	     !file_has(g_send_log, "malformed"))) {
		sfmt(why, len, "garbage from the agent: %" PRIu64 " pages "
		     "differ, %lld skipped as hinted, and hintmig send must "
		     "log the malformed frame (%s)", r->cmp.zero_on_dst,
		     r->mig.skipped, g_send_log);
		return -1;
	}
	if (!r->dst_alive && !r->soak_dst_lost) {
		sfmt(why, len, "destination guest did not go on");
		return -1;
	}
	/* Pages sent again after their first copy: the guest's writes
	 * during the migration, as the tracker saw them (under KVM, writes
	 * made by KVM in the kernel, which only a tracker that sees
	 * kernel-mode faults catches). */
	if (s->kvm_payload && s->hintmig &&
	    (!r->compared || r->mig.normal <= (long long)r->cmp.src_nonzero)) {
		sfmt(why, len, "no write of the KVM guest was tracked during "
		     "the migration (%lld pages sent, %" PRIu64 " hold data, "
		     "%lld tracker faults): nothing shows that KVM's writes "
		     "are seen", r->mig.normal, r->cmp.src_nonzero,
		     r->hm_tracker_faults);
		return -1;
	}
	if (s->hm_min_rounds && r->hm_rounds < (long long)s->hm_min_rounds) {
		sfmt(why, len, "hintmig needed %lld rounds, the scenario "
		     "must take at least %u (the guest writes too slowly?)",
		     r->hm_rounds, s->hm_min_rounds);
		return -1;
	}
	if (s->hm_min_empty_mib &&
	    r->hm_skipped_empty < (long long)s->hm_min_empty_mib * 256) {
		sfmt(why, len, "only %lld pages skipped as empty (R6), "
		     "expected >= %u MiB: did free page reporting punch the "
		     "RAM file?", r->hm_skipped_empty, s->hm_min_empty_mib);
		return -1;
	}
	if (s->hm_hint_mib && !s->hm_hint_lie) {
		uint64_t hint_pages = ((uint64_t)s->hm_hint_mib << 20) / 4096;

		/* Only the stand-in agent's region is hinted: it holds data
		 * on the source (never sent: zero on the destination) and the
		 * workload never reads it again. Every page of it must have
		 * been left out, and nothing else may differ (the compare is
		 * the proof when the scenario asks for one; qemu-migbench
		 * without --compare checks the count hintmig reports). */
		if ((s->compare && (!r->compared ||
				    r->cmp.zero_on_dst != hint_pages)) ||
		    r->mig.skipped < (long long)hint_pages) {
			sfmt(why, len, "agent hints: %" PRIu64 " pages differ "
			     "(zero on the destination), %lld skipped as "
			     "hinted; the hint region has %" PRIu64 " pages",
			     r->cmp.zero_on_dst, r->mig.skipped, hint_pages);
			return -1;
		}
	}
	if (s->hm_agent == HM_AGENT_ON) {
		uint64_t fill_pages = ((uint64_t)s->fill_mib << 20) / 4096;

		/* The real agent: pages differ only where the destination
		 * holds zeros (never sent), no more of them than hintmig
		 * skipped as hinted, and most of what the guest filled and
		 * freed among them. */
		/* (qemu-migbench without --compare: the count hintmig
		 * reports, most of what the guest freed) */
		if (!s->compare ? r->mig.skipped < (long long)fill_pages / 2
				: (!r->compared || r->mig.skipped < 0 ||
				   r->cmp.zero_on_dst > (uint64_t)r->mig.skipped ||
				   r->cmp.zero_on_dst < fill_pages / 2)) {
			sfmt(why, len, "agent hints: %" PRIu64 " pages zero on "
			     "the destination only, %lld skipped as hinted, "
			     "the guest freed %" PRIu64 " filled pages (want "
			     "differing <= skipped, differing >= half the "
			     "freed)", r->cmp.zero_on_dst, r->mig.skipped,
			     fill_pages);
			return -1;
		}
		if (!r->src_log.agent_epochs) {
			sfmt(why, len, "the agent logged no answer");
			return -1;
		}
	}
	if (s->hm_agent == HM_AGENT_PAGE_POISON &&
	    no_hints_verdict(r, "guest with page_poison=1", "poisons free "
			     "pages (pattern, byte 0xaa), R7 refuses hints",
			     why, len))
		return -1;
	if (s->hm_agent == HM_AGENT_NO_MODULE &&
	    no_hints_verdict(r, "agent without its module", "the guest cannot "
			     "give hints: no free-list reader", why, len))
		return -1;
	if (s->hm_agent == HM_AGENT_INIT_ON_FREE) {
		uint64_t fill_pages = ((uint64_t)s->fill_mib << 20) / 4096;

		/* init_on_free: free pages hold zeros, hints are taken (the
		 * destination's fresh memory is zero too), and RAM compares
		 * identical, the hinted pages included (R7). */
		if (!r->compared || r->cmp.zero_on_dst || r->mig.skipped < 0 ||
		    (uint64_t)r->mig.skipped < fill_pages / 2) {
			sfmt(why, len, "guest with init_on_free=1: %lld pages "
			     "skipped as hinted (want >= %" PRIu64 "), %" PRIu64
			     " pages differ (want 0)", r->mig.skipped,
			     fill_pages / 2, r->cmp.zero_on_dst);
			return -1;
		}
	}
	if (s->expect_hint) {
		uint64_t fill_pages = ((uint64_t)s->fill_mib << 20) / 4096;

		if (!r->compared) {
			sfmt(why, len, "hint check needs the RAM compare");
			return -1;
		}
		/* Hinted pages never sent are zero on the destination and
		 * not on the source; at least a quarter of what the guest
		 * filled and freed must be among them. */
		if (r->cmp.zero_on_dst < fill_pages / 4) {
			sfmt(why, len,
				 "hinting not active enough: only %" PRIu64
				 " pages were left unsent (destination zero), "
				 "expected >= %" PRIu64 " (a quarter of the %u "
				 "MiB the guest freed)",
				 r->cmp.zero_on_dst, fill_pages / 4,
				 s->fill_mib);
			return -1;
		}
		/* Each of those pages is non-zero on the source: a migration
		 * without hints sends it as a normal page at least once, this
		 * one never sent it.  So the normal pages saved are at least
		 * zero_on_dst, whatever the timing of the guest's reports and
		 * the number of iterations (re-sends of the working set are
		 * common to both).  Sanity of the counters: every non-zero
		 * destination page came in as a normal page. */
		if (r->mig.normal < 0 ||
		    (uint64_t)r->mig.normal < r->cmp.dst_nonzero) {
			sfmt(why, len,
				 "query-migrate says %lld normal pages, fewer than "
				 "the %" PRIu64 " non-zero pages the destination "
				 "holds", r->mig.normal, r->cmp.dst_nonzero);
			return -1;
		}
	}
	return 0;
}

void hm_print_result(const struct hm_scenario *s, const struct hm_run_result *r)
{
	printf("# %s: accel %s, RAM %" PRIu64 " KiB, boot %.1f s, migrate %.1f s, "
	       "compare %.1f s, after %.1f s, total %.1f s\n",
	       s->name, r->accel, r->ram_size >> 10, r->boot_s, r->migrate_s,
	       r->compare_s, r->after_s, r->total_s);
	printf("#   query-migrate: status %s, total-time %lld ms, downtime %lld "
	       "ms, setup %lld ms, transferred %lld bytes, normal %lld pages, "
	       "duplicate %lld pages, dirty-sync-count %lld (converge allowed "
	       "at %lld), mbps %.0f\n",
	       r->mig.status, r->mig.total_ms, r->mig.downtime_ms,
	       r->mig.setup_ms, r->mig.transferred, r->mig.normal,
	       r->mig.duplicate, r->mig.dirty_sync_count, r->converge_at_sync,
	       r->mig.mbps);
	if (r->compared) {
		fputs("#", stdout);
		hm_ramcmp_print(stdout, &r->cmp);
	}
	printf("#   guest: source %lld round reports (last round %lld), %lld "
	       "errors; destination %lld round reports (last round %lld), "
	       "%lld failed rounds, %lld errors%s%s\n",
	       r->src_log.rounds, r->src_log.last_round, r->src_log.errors,
	       r->dst_log.rounds, r->dst_log.last_round,
	       r->dst_log.failed_rounds, r->dst_log.errors,
	       r->dst_log.errors ? ": " : "", r->dst_log.first_error);
	if (r->failure[0])
		printf("#   run stopped: %s\n", r->failure);
	fflush(stdout);
}

static void print_tail(const char *title, const char *path, int lines)
{
	FILE *f = fopen(path, "r");
	char **ring, buf[512];
	int n = 0;

	if (!f)
		return;
	ring = calloc((size_t)lines, sizeof(*ring));
	if (!ring) {
		fclose(f);
		return;
	}
	while (fgets(buf, sizeof(buf), f)) {
		free(ring[n % lines]);
		ring[n % lines] = strdup(buf);
		n++;
	}
	fclose(f);
	fprintf(stderr, "---- %s (%s), last %d lines ----\n", title, path,
		n < lines ? n : lines);
	for (int i = n < lines ? 0 : n - lines; i < n; i++) {
		fputs(ring[i % lines] ? ring[i % lines] : "", stderr);
		free(ring[i % lines]);
		ring[i % lines] = NULL;
	}
	for (int i = 0; i < lines; i++)
		free(ring[i]);
	free(ring);
}

void hm_print_logs(void)
{
	for (int i = 0; i < 2; i++) {
		if (!g_vm[i].role)
			continue;
		print_tail(i ? "destination serial" : "source serial",
			   g_vm[i].serial_path, 25);
		print_tail(i ? "destination QEMU" : "source QEMU",
			   g_vm[i].log_path, 10);
	}
	if (g_send_log[0]) {
		print_tail("hintmig send", g_send_log, 30);
		print_tail("hintmig recv", g_recv_log, 30);
	}
}

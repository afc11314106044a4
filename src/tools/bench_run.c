/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-bench: one measured migration, and the raw throughput of the
 * transport that bounds it.
 *
 * Three processes per migration, as between two hosts: this one (the
 * source engine, library calls), the synthetic guest (forked by
 * hm_synth_start), and the destination: this same program re-executed
 * with a hidden option on an inherited listening socket, so that it is a
 * fresh process image with its own address space and none of our threads
 * or locks. The raw-throughput sink is a re-executed child too, so that
 * "raw" crosses the same kind of socket between two processes as the
 * migration does.
 *
 * The guest's writes are counted in its shared counters: before the
 * migration over a window, and during it from hm_migration_run() until
 * the pause (after the pause the counter stands still, so the difference
 * at the end is exactly the live phase's writes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hintmig/bitmap.h>

#include "bench.h"
#include "migrate/wire/transport.h"

#define RAW_CHUNK (1u << 20)	/* the engine's largest batch: 256 pages */
#define HELPER_FD_LISTEN 3
#define HELPER_FD_REPORT 4
#define CHILD_IO_TIMEOUT_MS 60000
#define DEST_EXIT_WAIT_MS 30000

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_loadavg(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%lf", &l) != 1)
		l = -1;
	fclose(f);
	return l;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the migration now running, for bench_cancel() --------------------- */

static pthread_mutex_t cur_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_migration *cur_mig;
static bool cancelled;

void bench_cancel(void)
{
	pthread_mutex_lock(&cur_lock);
	cancelled = true;
	if (cur_mig)
		hm_migration_cancel(cur_mig);
	pthread_mutex_unlock(&cur_lock);
}

static void set_current(struct hm_migration *m)
{
	pthread_mutex_lock(&cur_lock);
	cur_mig = m;
	if (m && cancelled)
		hm_migration_cancel(m);
	pthread_mutex_unlock(&cur_lock);
}

/* ---- CPU pinning ------------------------------------------------------- */

static cpu_set_t all_cpus;
static bool all_cpus_known;
static pthread_once_t cpus_once = PTHREAD_ONCE_INIT;

static void cpus_init(void)
{
	CPU_ZERO(&all_cpus);
	all_cpus_known = sched_getaffinity(0, sizeof(all_cpus),
					   &all_cpus) == 0;
}

/* The last allowed CPU is the guest's; the others are the engine's. */
static int split_cpus(cpu_set_t *engine, cpu_set_t *guest)
{
	int last = -1, n = 0;

	pthread_once(&cpus_once, cpus_init);
	if (!all_cpus_known)
		return -ENOTSUP;
	CPU_ZERO(engine);
	CPU_ZERO(guest);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &all_cpus)) {
			last = i;
			n++;
		}
	if (n < 2)
		return -ENOTSUP;
	for (int i = 0; i < last; i++)
		if (CPU_ISSET(i, &all_cpus))
			CPU_SET(i, engine);
	CPU_SET(last, guest);
	return 0;
}

int bench_pin_self(bool engine_side, unsigned ncpus)
{
	cpu_set_t engine, guest;
	int r = split_cpus(&engine, &guest);

	(void)ncpus;
	if (r < 0)
		return r;
	if (sched_setaffinity(0, sizeof(cpu_set_t),
			      engine_side ? &engine : &guest) < 0)
		return -errno;
	return 0;
}

/* Every thread of pid onto the guest CPU. */
int bench_pin_pid(pid_t pid, unsigned ncpus)
{
	cpu_set_t engine, guest;
	char path[64];
	struct dirent *de;
	DIR *dir;
	int r = split_cpus(&engine, &guest), n = 0;

	(void)ncpus;
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid <= 0)
			continue;
		if (sched_setaffinity(tid, sizeof(guest), &guest) < 0 &&
		    errno != ESRCH)
			r = -errno;
		else
			n++;
	}
	closedir(dir);
	return r < 0 ? r : n;
}

void bench_unpin_self(unsigned ncpus)
{
	(void)ncpus;
	pthread_once(&cpus_once, cpus_init);
	if (all_cpus_known)
		sched_setaffinity(0, sizeof(all_cpus), &all_cpus);
}

/* ---- helper processes -------------------------------------------------- */

static unsigned listen_seq;

/* A listening socket of the transport on loopback: fd, and in addr the
 * address to connect to. */
static int make_listener(const struct bench *b, char *addr, size_t len)
{
	int fd;

	if (!strcmp(b->o.transport, "unix")) {
		snprintf(addr, len, "unix:/tmp/hintmig-bench-%d-%u.sock",
			 (int)getpid(), listen_seq++);
		unlink(addr + 5);
		return hm_transport_listen(addr, 64);
	}
	fd = hm_transport_listen("tcp:127.0.0.1:0", 64);
	if (fd < 0)
		return fd;
	if (hm_transport_local_addr(fd, addr, len) < 0) {
		int e = -errno;

		close(fd);
		return e ? e : -EINVAL;
	}
	return fd;
}

static void drop_listener(const char *addr, int fd)
{
	if (fd >= 0)
		close(fd);
	if (!strncmp(addr, "unix:", 5))
		unlink(addr + 5);
}

/* fork + exec self with a hidden option; lfd becomes fd 3, rfd (or -1)
 * fd 4. The child dies with us (PDEATHSIG). Only async-signal-safe calls
 * between fork and exec: we may have threads. */
static pid_t spawn_helper(const struct bench *b, const char *opt, int lfd,
			  int rfd, const char *arg, const char *arg2)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid > 0)
		return pid;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	{
		int l2 = fcntl(lfd, F_DUPFD, 10);
		int r2 = rfd >= 0 ? fcntl(rfd, F_DUPFD, 10) : -1;

		if (l2 < 0 || dup2(l2, HELPER_FD_LISTEN) < 0)
			_exit(126);
		if (r2 >= 0 && dup2(r2, HELPER_FD_REPORT) < 0)
			_exit(126);
		close(l2);
		if (r2 >= 0)
			close(r2);
	}
	execl(b->o.self_exe, b->o.self_exe, opt, "3", arg, arg2, (char *)NULL);
	_exit(127);
}

/* CPU seconds of a rusage, user and system. */
static double rusage_s(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

/* Wait up to ms for pid; kill it after that. Exit status, or -1 when it
 * was killed by a signal (by us or anyone). */
static int reap_cpu(pid_t pid, unsigned ms, double *cpu_s)
{
	double end = bench_now() + ms / 1000.0;
	struct rusage ru;
	int st;

	memset(&ru, 0, sizeof(ru));
	for (;;) {
		pid_t r = wait4(pid, &st, WNOHANG, &ru);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (bench_now() > end) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		sleep_s(0.002);
	}
	if (cpu_s)
		*cpu_s = rusage_s(&ru);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int reap(pid_t pid, unsigned ms)
{
	return reap_cpu(pid, ms, NULL);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return rusage_s(&ru);
}

static void child_log(void *opaque, enum hm_log_level level, const char *msg)
{
	fprintf(stderr, "hintmig-bench[%s]: %s: %s\n", (const char *)opaque,
		hm_log_level_name(level), msg);
}

int bench_child_dest(int listen_fd, int report_fd, const char *tls_dir)
{
	struct hm_tls_creds *tls = NULL;
	char err[400];
	struct hm_log log = { .fn = child_log, .opaque = (void *)"dest",
			      .max_level = HM_LOG_WARN };
	struct hm_dest_params p;
	struct hm_dest_stats st;
	struct hm_dest *d;
	int r;

	signal(SIGPIPE, SIG_IGN);
	hm_dest_params_default(&p);
	p.io_timeout_ms = CHILD_IO_TIMEOUT_MS;
	p.accept_timeout_ms = CHILD_IO_TIMEOUT_MS;
	if (tls_dir) {
		tls = hm_tls_creds_load(tls_dir, true, err, sizeof(err));
		if (!tls) {
			fprintf(stderr, "hintmig-bench[dest]: TLS: %s\n", err);
			return 4;
		}
		p.tls = tls;
	}
	d = hm_dest_new(&p, &log);
	if (!d) {
		hm_tls_creds_free(tls);
		return 4;
	}
	r = hm_dest_run_fd(d, listen_fd);
	memset(&st, 0, sizeof(st));
	hm_dest_get_stats(d, &st);
	if (report_fd >= 0) {
		ssize_t n = write(report_fd, &st, sizeof(st));

		(void)n;
	}
	hm_dest_free(d);
	hm_tls_creds_free(tls);
	if (r < 0) {
		fprintf(stderr, "hintmig-bench[dest]: migration: %s\n",
			strerror(-r));
		return 3;
	}
	return 0;
}

/* ---- raw throughput ---------------------------------------------------- */

struct sink_conn {
	int fd;
	uint64_t bytes;
	uint64_t fresh_len;	/* > 0: copy into fresh memory, as a
				 * destination does */
};

static void *sink_thread(void *arg)
{
	struct sink_conn *c = arg;
	char *buf = malloc(RAW_CHUNK);
	unsigned char *ram = NULL;

	if (!buf)
		return NULL;
	if (c->fresh_len) {
		/* fresh anonymous memory, default page size policy: what
		 * hm_dest receives into */
		ram = mmap(NULL, c->fresh_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ram == MAP_FAILED)
			ram = NULL;
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, RAW_CHUNK, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (ram && c->bytes + (uint64_t)n <= c->fresh_len)
			memcpy(ram + c->bytes, buf, (size_t)n);
		c->bytes += (uint64_t)n;
	}
	/* tell the sender it all arrived: its clock stops on this */
	hm_send_all(c->fd, &c->bytes, sizeof(c->bytes));
	close(c->fd);
	if (ram)
		munmap(ram, c->fresh_len);
	free(buf);
	return NULL;
}

int bench_child_sink(int listen_fd, const char *spec)
{
	struct sink_conn conns[64];
	pthread_t th[64];
	unsigned started = 0, nconn = 0;
	unsigned long long fresh = 0;

	signal(SIGPIPE, SIG_IGN);
	/* "N" or "N:FRESH_BYTES_PER_CONNECTION" */
	if (sscanf(spec, "%u:%llu", &nconn, &fresh) < 1 || nconn == 0 ||
	    nconn > 64)
		return 2;
	for (unsigned i = 0; i < nconn; i++) {
		int fd = hm_transport_accept(listen_fd, CHILD_IO_TIMEOUT_MS);

		if (fd < 0)
			break;
		hm_transport_set_timeouts(fd, CHILD_IO_TIMEOUT_MS);
		conns[i].fd = fd;
		conns[i].bytes = 0;
		conns[i].fresh_len = fresh;
		if (pthread_create(&th[i], NULL, sink_thread, &conns[i])) {
			close(fd);
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return started == nconn ? 0 : 1;
}

struct raw_stream {
	int fd;
	uint64_t bytes;
	const void *buf;
	pthread_barrier_t *go;
	int err;
};

static void *raw_sender(void *arg)
{
	struct raw_stream *s = arg;
	uint64_t left = s->bytes, ack = 0;
	int r = 0;

	pthread_barrier_wait(s->go);
	while (left && r == 0) {
		size_t n = left < RAW_CHUNK ? (size_t)left : RAW_CHUNK;

		r = hm_send_all(s->fd, s->buf, n);
		left -= n;
	}
	if (r == 0 && shutdown(s->fd, SHUT_WR) < 0)
		r = -errno;
	if (r == 0)
		r = hm_recv_all(s->fd, &ack, sizeof(ack));
	if (r == 0 && ack != s->bytes)
		r = -EIO;
	s->err = r;
	return NULL;
}

double bench_raw_throughput(const struct bench *b, unsigned nch,
			    uint64_t total, bool fresh, char *err,
			    size_t errlen)
{
	struct raw_stream st[64];
	pthread_t th[64];
	pthread_barrier_t go;
	char addr[160], narg[48];
	unsigned connected = 0, started = 0;
	void *buf = NULL;
	double t0 = 0, t1, ret = -EIO;
	pid_t pid = -1;
	int lfd, r = 0;

	if (nch == 0 || nch > 64)
		return -EINVAL;
	lfd = make_listener(b, addr, sizeof(addr));
	if (lfd < 0) {
		snprintf(err, errlen, "raw: listen: %s", strerror(-lfd));
		return lfd;
	}
	if (fresh)
		snprintf(narg, sizeof(narg), "%u:%" PRIu64, nch, total / nch);
	else
		snprintf(narg, sizeof(narg), "%u", nch);
	pid = spawn_helper(b, "--internal-sink", lfd, -1, narg, NULL);
	close(lfd);
	lfd = -1;
	if (pid < 0) {
		snprintf(err, errlen, "raw: spawn sink: %s", strerror(-pid));
		drop_listener(addr, -1);
		return pid;
	}
	buf = malloc(RAW_CHUNK);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	/* page-sized records of non-zero data */
	for (size_t i = 0; i < RAW_CHUNK; i++)
		((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);
	for (; connected < nch; connected++) {
		int fd = hm_transport_connect(addr, 10000);

		if (fd < 0) {
			r = fd;
			snprintf(err, errlen, "raw: connect: %s",
				 strerror(-r));
			goto out;
		}
		hm_transport_set_timeouts(fd, CHILD_IO_TIMEOUT_MS);
		st[connected].fd = fd;
		st[connected].bytes = total / nch;
		st[connected].buf = buf;
		st[connected].go = &go;
		st[connected].err = 0;
	}
	pthread_barrier_init(&go, NULL, nch + 1);
	for (; started < nch; started++)
		if (pthread_create(&th[started], NULL, raw_sender,
				   &st[started]))
			break;
	if (started < nch) {
		/* cannot happen in practice; unblock the ones started */
		for (unsigned i = 0; i < connected; i++)
			shutdown(st[i].fd, SHUT_RDWR);
		r = -EAGAIN;
	}
	if (started == nch) {
		pthread_barrier_wait(&go);
		t0 = bench_now();
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	t1 = bench_now();
	pthread_barrier_destroy(&go);
	for (unsigned i = 0; i < started && r == 0; i++)
		if (st[i].err)
			r = st[i].err;
	if (r == 0)
		ret = (double)(total / nch * nch) / (t1 - t0);
	else if (!err[0])
		snprintf(err, errlen, "raw: stream: %s", strerror(-r));
out:
	for (unsigned i = 0; i < connected; i++)
		close(st[i].fd);
	if (reap(pid, 10000) != 0 && r == 0) {
		r = -EIO;
		snprintf(err, errlen, "raw: sink failed");
	}
	drop_listener(addr, -1);
	free(buf);
	return r < 0 ? r : ret;
}

/* ---- one migration ----------------------------------------------------- */

static uint64_t guest_writes(const struct hm_synth *s)
{
	return __atomic_load_n(&s->shared->writes, __ATOMIC_ACQUIRE);
}

/* The engine reports progress once more the moment it enters the final
 * round (status DEVICE), just before it pauses the guest: that instant
 * ends the live phase. (Its total time goes on past the destination's
 * acknowledgement, through the tracker's teardown, with the guest
 * paused: not a time to count guest writes over.) */
struct tick_ctx {
	bench_tick_fn fn;
	void *opaque;
	const struct hm_synth *s;
	double t_device;
	uint64_t w_device;
};

static void on_progress(void *opaque, const struct hm_migrate_stats *st)
{
	struct tick_ctx *t = opaque;

	if (st->status == HM_MIG_DEVICE && t->t_device == 0) {
		t->w_device = guest_writes(t->s);
		t->t_device = bench_now();
	}
	if (t->fn)
		t->fn(t->opaque, st);
}

/* Page faults the guest process has taken (all its threads): field 10 of
 * /proc/PID/stat, or -1. */
static double guest_minflt(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* after the command name */
	/* ") S ppid pgrp session tty tpgid flags minflt" */
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %llu", &v) != 1)
		return -1;
	return (double)v;
}

/* One tracker-only window: a tracker of the configured mode on the
 * guest's RAM (variant 0: the engine's default, every written page
 * protected again at every harvest; 1: R11, pages written twice in a row
 * kept writable; 2: every written page kept writable, hot_after 1), harvested every 100 ms (as
 * between rounds), nothing read, nothing sent. Uses up the guest's
 * userfaultfd and takes a fresh one. 0 or -errno. */
static int tracked_window(struct bench *b, const struct bench_cfg *cfg,
			  struct hm_synth *s, int variant,
			  struct bench_trk *k, double *start_ms)
{
	struct hm_tracker_opts to;
	struct hm_tracker_stats st;
	struct hm_tracker *t;
	struct hm_bitmap l = { 0 };
	double a, e, end, f0, f1;
	uint64_t w0, w1;
	int ret, fd;

	memset(&to, 0, sizeof(to));
	to.mode = cfg->tracker;
	to.log = b->log;
	to.nbits = s->npages;
	to.keep_hot = variant != 0;
	to.hot_after = variant == 2 ? 1 : 0;
	to.unit_bytes = cfg->track_unit;
	ret = hm_bitmap_init(&l, s->npages);
	if (ret < 0)
		return ret;
	t = hm_tracker_open_remote(&b->caps, &to, s->pid, s->uffd);
	s->uffd = -1;
	if (!t) {
		ret = -errno;
		goto out;
	}
	ret = hm_tracker_add_range(t, s->block.host_addr, s->block.len, 0);
	a = bench_now();
	if (ret == 0)
		ret = hm_tracker_start(t);
	if (start_ms)
		*start_ms = (bench_now() - a) * 1000;
	w0 = guest_writes(s);
	f0 = guest_minflt(s->pid);
	a = bench_now();
	end = a + b->o.window_ms / 1000.0;
	while (ret == 0 && bench_now() < end) {
		long h;

		sleep_s(0.1);
		h = hm_tracker_harvest(t, &l);
		if (h < 0)
			ret = (int)h;
	}
	w1 = guest_writes(s);
	f1 = guest_minflt(s->pid);
	e = bench_now() - a;
	hm_tracker_get_stats(t, &st);
	hm_tracker_close(t);
	if (ret < 0)
		goto out;
	k->wr = (double)(w1 - w0) / e;
	k->faults_ps = f0 >= 0 && f1 >= f0 ? (f1 - f0) / e : 0;
	k->harvest_ms = st.harvests ? (double)st.harvest_ns / 1e6 /
					      (double)st.harvests : 0;
	k->pages_ph = st.harvests ? (double)st.pages_harvested /
					    (double)st.harvests : 0;
out:
	hm_bitmap_fini(&l);
	fd = hm_synth_new_uffd(s);
	if (fd < 0)
		return ret < 0 ? ret : fd;
	s->uffd = fd;
	return ret;
}

/* The tracker's own cost, apart from everything else a migration does:
 * the guest's write rate under the tracker alone, as the engine runs it
 * by default and with hot pages kept writable (R11), side by side.
 * 0 or -errno (r->error says what). */
static int tracked_only(struct bench *b, const struct bench_cfg *cfg,
			struct hm_synth *s, struct bench_run *r)
{
	int ret = tracked_window(b, cfg, s, 0, &r->trk[0],
				 &r->tracker_start_ms);

	if (ret == 0)
		ret = tracked_window(b, cfg, s, 1, &r->trk[1], NULL);
	if (ret == 0)
		ret = tracked_window(b, cfg, s, 2, &r->trk[2], NULL);
	if (ret < 0) {
		snprintf(r->error, sizeof(r->error),
			 "tracker-only measurement: %s", strerror(-ret));
		return ret;
	}
	r->wr_tracked = r->trk[0].wr;
	return 0;
}

/* A number from /proc/meminfo (key "HugePages_Free:" ...), or -1. */
static long long meminfo_num(const char *key)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			v = strtoll(line + strlen(key), NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

static int write_nr_hugepages(long long n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "we");
	int ret = 0;

	if (!f)
		return -errno;
	if (fprintf(f, "%lld\n", n) < 0)
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	return ret;
}

/* The hugetlb group: make sure the pool has the guest's 2 MiB pages free,
 * growing vm.nr_hugepages for this run if it is short (root; said on
 * stderr); *was gets the old size to restore (-1: untouched). */
static int hugetlb_reserve(struct bench *b, uint64_t ram, long long *was)
{
	long long need = (long long)(ram >> 21), fr = meminfo_num(
		"HugePages_Free:"), tot = meminfo_num("HugePages_Total:");

	*was = -1;
	if (fr < 0 || tot < 0)
		return -ENOTSUP;
	if (fr >= need)
		return 0;
	if (write_nr_hugepages(tot + need - fr) < 0 ||
	    meminfo_num("HugePages_Free:") < need) {
		write_nr_hugepages(tot);
		return -ENOMEM;
	}
	*was = tot;
	hm_logf(&b->log, HM_LOG_INFO, "vm.nr_hugepages %lld -> %lld for "
		"this run (restored after it)", tot, tot + need - fr);
	return 0;
}

int bench_run_one(struct bench *b, const struct bench_cfg *cfg,
		  struct bench_run *r, bench_tick_fn tick, void *opaque)
{
	long long pool_was = -1;
	struct hm_synth_params sp;
	struct hm_migrate_params mp;
	struct hm_synth s;
	struct hm_bitmap inuse = { 0 };
	struct hm_guest *g = NULL;
	struct hm_hint_source *hs = NULL;
	struct hm_migration *m = NULL;
	struct tick_ctx tc = { .fn = tick, .opaque = opaque, .s = &s };
	char addr[160] = "";
	int lfd = -1, rpipe[2] = { -1, -1 }, ret = 0;
	pid_t dpid = -1;
	bool synth_up = false;
	double t0, t1;
	uint64_t w0, w1;

	r->harness = 0;
	r->load1 = bench_loadavg();
	r->result = -ENOTCONN;
	r->mismatches = -ENOTCONN;
	r->dest_status = -1;
	r->wr_before = r->wr_during = r->wr_tracked = -1;
	r->trk[0].wr = r->trk[1].wr = r->trk[2].wr = -1;
	r->error[0] = 0;
	memset(&s, 0, sizeof(s));
	s.uffd = s.hint_fd = s.ctl_fd = -1;

	if (cfg->pin)
		bench_pin_self(true, b->o.ncpus);

	/* the destination: a separate process on its own listening socket */
	lfd = make_listener(b, addr, sizeof(addr));
	if (lfd < 0) {
		ret = lfd;
		snprintf(r->error, sizeof(r->error), "listen: %s",
			 strerror(-ret));
		goto out;
	}
	if (pipe2(rpipe, O_CLOEXEC) < 0) {
		ret = -errno;
		snprintf(r->error, sizeof(r->error), "pipe: %s",
			 strerror(-ret));
		goto out;
	}
	dpid = spawn_helper(b, "--internal-dest", lfd, rpipe[1], "4",
			    cfg->tls ? hm_tls_creds_dir(b->tls) : NULL);
	close(rpipe[1]);
	rpipe[1] = -1;
	close(lfd);
	lfd = -1;
	if (dpid < 0) {
		ret = dpid;
		snprintf(r->error, sizeof(r->error), "spawn destination: %s",
			 strerror(-ret));
		goto out;
	}

	/* the guest: RAM filled and in steady state before the clock runs */
	hm_synth_params_default(&sp);
	sp.ram_bytes = cfg->ram;
	sp.used_frac = 1.0 - cfg->free_frac;
	sp.dirty_rate = cfg->dirty_rate;
	sp.pattern = cfg->pattern;
	sp.hot_frac = cfg->hot_frac;
	sp.writers = cfg->writers;
	sp.churn_rate = cfg->churn_rate;
	sp.thp = cfg->thp;
	sp.hugetlb = cfg->hugetlb;
	if (cfg->hugetlb) {
		ret = hugetlb_reserve(b, cfg->ram, &pool_was);
		if (ret < 0) {
			snprintf(r->error, sizeof(r->error), "hugetlb pool: %s "
				 "(needs %" PRIu64 " free 2 MiB pages: sysctl "
				 "vm.nr_hugepages)", strerror(-ret),
				 cfg->ram >> 21);
			goto out;
		}
	}
	sp.hint_kind = r->mode == BENCH_ISOLATED ? HM_HINT_ISOLATED
						 : HM_HINT_FREE;
	sp.seed = 1 + r->rep; /* the same guest for every mode of a rep */
	ret = hm_synth_start(&sp, &s, &b->log);
	if (ret < 0) {
		snprintf(r->error, sizeof(r->error), "synthetic guest: %s",
			 strerror(-ret));
		goto out;
	}
	synth_up = true;
	r->page_size = s.page_size;
	if (cfg->pin)
		bench_pin_pid(s.pid, b->o.ncpus);

	/* guest write rate with nobody tracking it */
	sleep_s(0.1);
	if (cfg->dirty_rate) {
		double a = bench_now(), e;

		w0 = guest_writes(&s);
		sleep_s(b->o.window_ms / 1000.0);
		w1 = guest_writes(&s);
		e = bench_now() - a;
		r->wr_before = (double)(w1 - w0) / e;
	}

	if (cfg->dirty_rate >= BENCH_DIRTY_MAX) {
		ret = tracked_only(b, cfg, &s, r);
		if (ret < 0)
			goto out;
	}

	g = hm_guest_process_new(s.pid, &s.block, 1, s.uffd, NULL, &b->log);
	s.uffd = -1;
	if (!g) {
		ret = -errno;
		snprintf(r->error, sizeof(r->error), "process guest: %s",
			 strerror(-ret));
		goto out;
	}
	if (r->mode != BENCH_NONE) {
		hs = hm_hint_source_channel_new(s.hint_fd, &b->log);
		s.hint_fd = -1;
		if (!hs) {
			ret = -errno;
			snprintf(r->error, sizeof(r->error),
				 "hint source: %s", strerror(-ret));
			goto out;
		}
	}
	hm_migrate_params_default(&mp);
	mp.downtime_limit_ms = b->o.downtime_ms;
	mp.max_bandwidth = cfg->bandwidth;
	mp.max_rounds = b->o.max_rounds;
	mp.force_on_max_rounds = true;
	mp.channels = cfg->channels;
	mp.tracker_mode = cfg->tracker;
	mp.tracker_unit = cfg->track_unit;
	mp.tracker_keep_hot = cfg->keep_hot;
	mp.io_timeout_ms = CHILD_IO_TIMEOUT_MS;
	if (cfg->tls) {
		mp.tls = b->tls;
		mp.tls_peer_name = b->o.tls_name ? b->o.tls_name : "localhost";
	}
	m = hm_migration_new(g, hs, &mp, &b->log);
	if (!m) {
		ret = -errno;
		snprintf(r->error, sizeof(r->error), "migration: %s",
			 strerror(-ret));
		goto out;
	}
	hm_migration_set_progress(m, on_progress, &tc);
	set_current(m);

	w0 = guest_writes(&s);
	r->cpu_src_s = self_cpu_s();
	t0 = bench_now();
	r->result = hm_migration_run(m, addr);
	t1 = bench_now();
	r->cpu_src_s = self_cpu_s() - r->cpu_src_s;
	w1 = guest_writes(&s);	/* paused on success: stands still */
	hm_migration_get_stats(m, &r->st);
	r->wall_s = t1 - t0;
	if (tc.t_device > t0) {
		r->active_s = tc.t_device - t0;
		w1 = tc.w_device;
		r->ack_s = r->active_s + (double)r->st.downtime_ms / 1000.0;
	} else {
		/* no DEVICE report seen: the engine's own figures */
		r->active_s = (double)(r->st.total_time_ms -
				       r->st.downtime_ms) / 1000.0;
		r->ack_s = (double)r->st.total_time_ms / 1000.0;
	}
	if (r->active_s <= 0)
		r->active_s = r->wall_s;
	if (cfg->dirty_rate && r->result == 0)
		r->wr_during = (double)(w1 - w0) / r->active_s;
	r->forced = r->st.rounds >= b->o.max_rounds;
	if (r->result < 0) {
		snprintf(r->error, sizeof(r->error), "migration failed: %s",
			 strerror(-r->result));
	} else {
		ret = hm_bitmap_init(&inuse, s.npages);
		if (ret < 0) {
			snprintf(r->error, sizeof(r->error), "bitmap: %s",
				 strerror(-ret));
			goto out;
		}
		ret = hm_synth_inuse(&s, &inuse);
		if (ret < 0) {
			snprintf(r->error, sizeof(r->error), "in-use map: %s",
				 strerror(-ret));
			goto out;
		}
		r->inuse_pages = hm_bitmap_count(&inuse);
		r->mismatches = hm_migration_verify(m, &inuse, &r->checked);
		if (r->mismatches < 0)
			snprintf(r->error, sizeof(r->error),
				 "verification failed: %s",
				 strerror((int)-r->mismatches));
		else if (r->mismatches > 0)
			snprintf(r->error, sizeof(r->error),
				 "VERIFY: %ld of %" PRIu64
				 " in-use pages differ", r->mismatches,
				 r->checked);
	}
	set_current(NULL);
	hm_migration_free(m); /* closes the connection: the dest exits */
	m = NULL;
	r->dest_status = reap_cpu(dpid, DEST_EXIT_WAIT_MS, &r->cpu_dst_s);
	dpid = -1;
	if (read(rpipe[0], &r->dst, sizeof(r->dst)) != sizeof(r->dst))
		memset(&r->dst, 0, sizeof(r->dst));
	if (r->dest_status != 0 && !r->error[0])
		snprintf(r->error, sizeof(r->error),
			 "destination exited with %d", r->dest_status);
	r->guest_check_errors = __atomic_load_n(&s.shared->check_errors,
						__ATOMIC_RELAXED);
	r->guest_hint_requests = __atomic_load_n(&s.shared->hint_requests,
						 __ATOMIC_RELAXED);
	r->guest_hint_ranges = __atomic_load_n(&s.shared->hint_ranges_sent,
					       __ATOMIC_RELAXED);
	r->guest_acks = __atomic_load_n(&s.shared->acks, __ATOMIC_RELAXED);
	if (r->guest_check_errors && !r->error[0])
		snprintf(r->error, sizeof(r->error),
			 "guest self-check errors: %" PRIu64,
			 r->guest_check_errors);
	ret = 0;
out:
	set_current(NULL);
	hm_migration_free(m);
	hm_hint_source_free(hs);
	hm_guest_free(g);
	if (synth_up)
		hm_synth_stop(&s);
	/* pages of the guest just killed may still be on their way back
	 * to the pool: the kernel shrinks it only by free pages */
	for (int i = 0; pool_was >= 0 && i < 50; i++) {
		write_nr_hugepages(pool_was);
		if (meminfo_num("HugePages_Total:") <= pool_was)
			break;
		usleep(20000);
	}
	if (dpid > 0)
		reap(dpid, 0);
	if (rpipe[0] >= 0)
		close(rpipe[0]);
	if (rpipe[1] >= 0)
		close(rpipe[1]);
	drop_listener(addr, lfd);
	hm_bitmap_fini(&inuse);
	if (cfg->pin)
		bench_unpin_self(b->o.ncpus);
	r->harness = ret;
	return ret;
}

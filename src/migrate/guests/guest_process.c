/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "process" guest backend: guest RAM belongs to another process (the
 * synthetic guest now, a VMM later).
 *
 *  - read: through the block's memfd when there is one (pread on our own
 *    open file description: it copies from the page cache like a mapping
 *    would, needs no address space here, and a hole reads as zeros without
 *    being allocated, as a read fault through a shared mapping would do);
 *    otherwise process_vm_readv(2), one remote iovec per call, resumed
 *    after partial transfers.
 *  - populated (R6): guest.c, on /proc/PID/pagemap and the memfds.
 *  - tracking: the userfaultfd the caller took from the process; one
 *    tracker may own it at a time (hm_guest_process_set_uffd() gives a new
 *    one for the next tracker).
 *  - pause: SIGSTOP, then wait until every thread of the process shows
 *    state T/t in /proc/PID/task/TID/stat; resume: SIGCONT. Signals go
 *    through a pidfd so that a recycled pid is never hit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "migrate/guests/guest_priv.h"
#include "uffd_compat.h"

#define HM_PAUSE_TIMEOUT_MS 5000

static const struct hm_guest_ops process_ops;

static struct hm_guest_common *cm(struct hm_guest *g)
{
	return g->priv;
}

/* -ESRCH once the process has exited (zombie or reaped), else 0. */
static int proc_gone(struct hm_guest *g)
{
	struct hm_guest_common *c = cm(g);

	if (c->pidfd >= 0)
		return hm_pidfd_exited(c->pidfd) ? -ESRCH : 0;
	if (kill(g->pid, 0) < 0 && errno == ESRCH)
		return -ESRCH;
	return 0;
}

static int send_sig(struct hm_guest *g, int sig)
{
	struct hm_guest_common *c = cm(g);
	long r;

	if (proc_gone(g))
		return -ESRCH;
	if (c->pidfd >= 0)
		r = hm_sys_pidfd_send_signal(c->pidfd, sig);
	else
		r = kill(g->pid, sig);
	return r < 0 ? -errno : 0;
}

static int read_memfd(struct hm_guest *g, int fd, uint64_t foff, void *buf,
		      size_t len)
{
	char *p = buf;
	int ret = proc_gone(g);

	while (ret == 0 && len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)foff);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			ret = -errno;
		else if (r == 0)
			ret = -EFAULT; /* past the end of the memfd */
		else {
			p += r;
			foff += (uint64_t)r;
			len -= (size_t)r;
		}
	}
	return ret;
}

static int read_remote(struct hm_guest *g, uint64_t addr, void *buf,
		       size_t len)
{
	char *p = buf;
	int ret = 0;

	while (ret == 0 && len > 0) {
		struct iovec l = { .iov_base = p, .iov_len = len };
		struct iovec r = { .iov_base = (void *)(uintptr_t)addr,
				   .iov_len = len };
		ssize_t n = process_vm_readv(g->pid, &l, 1, &r, 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ret = -errno;
		else if (n == 0)
			ret = -EFAULT;
		else {
			/* partial: the next call reports why it stopped */
			p += n;
			addr += (uint64_t)n;
			len -= (size_t)n;
		}
	}
	if (ret == -EFAULT && proc_gone(g))
		ret = -ESRCH;
	if (ret == -ESRCH)
		hm_logf(&g->log, HM_LOG_ERROR, "guest: process %d is gone",
			(int)g->pid);
	return ret;
}

static int process_read(struct hm_guest *g, const struct hm_ram_block *b,
			uint64_t off, void *buf, size_t len)
{
	long idx = hm_guest_check_read(g, b, off, len);
	const struct hm_ram_block *blk;

	if (idx < 0)
		return (int)idx;
	if (len == 0)
		return 0;
	blk = &g->blocks[idx];
	if (cm(g)->blk[idx].fd >= 0)
		return read_memfd(g, cm(g)->blk[idx].fd,
				  blk->memfd_offset + off, buf, len);
	return read_remote(g, blk->host_addr + off, buf, len);
}

/* A read-only shared mapping of the block's memfd, made at the first
 * call (sender threads race for it: the first mapping wins). Reading a
 * hole through it would allocate a page in the memfd, where pread would
 * not; the engine only reads pages R6 found holding data or the guest
 * wrote since, so a hole is read only when the guest punched one after
 * writing it during the migration: one page of zeros, allocated again. */
static const void *process_map(struct hm_guest *g,
			       const struct hm_ram_block *b)
{
	long idx = hm_guest_block_index(g, b);
	struct hm_guest_blk *blk;
	void *p, *none = NULL;

	if (idx < 0)
		return NULL;
	blk = &cm(g)->blk[idx];
	p = __atomic_load_n(&blk->map, __ATOMIC_ACQUIRE);
	if (p || blk->fd < 0)
		return p;
	p = mmap(NULL, g->blocks[idx].len, PROT_READ, MAP_SHARED, blk->fd,
		 (off_t)g->blocks[idx].memfd_offset);
	if (p == MAP_FAILED)
		return NULL;
	if (!__atomic_compare_exchange_n(&blk->map, &none, p, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		munmap(p, g->blocks[idx].len);
		return none;
	}
	blk->map_len = g->blocks[idx].len;
	return p;
}

static struct hm_tracker *process_open_tracker(struct hm_guest *g,
					       const struct hm_caps *caps,
					       const struct hm_tracker_opts *opts)
{
	struct hm_guest_common *c = cm(g);
	struct hm_tracker_opts o;
	int uffd, ret = hm_guest_tracker_opts(g, caps, opts, &o);

	if (ret < 0) {
		errno = -ret;
		return NULL;
	}
	if (c->uffd < 0) {
		hm_logf(&g->log, HM_LOG_ERROR,
			"guest: process %d: no userfaultfd to track with "
			"(none given, or a previous tracker took it)",
			(int)g->pid);
		errno = EBADF;
		return NULL;
	}
	uffd = c->uffd;
	c->uffd = -1; /* the tracker owns it now, even if it fails */
	return hm_guest_tracker_finish(g, hm_tracker_open_remote(caps, &o,
								 g->pid, uffd));
}

/* State letter of /proc/PID/task/TID/stat: after the last ')' (comm may
 * hold anything). 0 when unreadable (the thread is gone). */
static char thread_state(int dirfd, const char *tid)
{
	char path[300], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%.255s/stat", tid);
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	return p[2];
}

/* 1: every thread stopped; 0: not yet (*tid_out and *st_out name one);
 * -ESRCH: no live thread left; -errno. */
static int all_stopped(struct hm_guest *g, char *tid_out, size_t tlen,
		       char *st_out)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int live = 0, running = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)g->pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((e = readdir(d))) {
		char st;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		st = thread_state(dirfd(d), e->d_name);
		if (st == 0 || st == 'Z' || st == 'X')
			continue;
		live++;
		if (st != 'T' && st != 't') {
			if (!running) {
				snprintf(tid_out, tlen, "%.20s", e->d_name);
				*st_out = st;
			}
			running++;
		}
	}
	closedir(d);
	if (live == 0)
		return -ESRCH;
	return running == 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int process_pause(struct hm_guest *g)
{
	uint64_t deadline;
	char tid[32] = "?", st = '?';
	int ret;

	if (g->cb.pause)
		return g->cb.pause(g->cb.opaque);
	ret = send_sig(g, SIGSTOP);
	if (ret < 0)
		goto out;
	deadline = now_ms() + HM_PAUSE_TIMEOUT_MS;
	for (;;) {
		struct timespec ts = { 0, 500 * 1000 };

		ret = all_stopped(g, tid, sizeof(tid), &st);
		if (ret == 0 && proc_gone(g))
			ret = -ESRCH;
		if (ret != 0)
			break;
		if (now_ms() > deadline) {
			hm_logf(&g->log, HM_LOG_ERROR,
				"guest: process %d: thread %s still in state "
				"'%c' %d ms after SIGSTOP; resuming it",
				(int)g->pid, tid, st, HM_PAUSE_TIMEOUT_MS);
			send_sig(g, SIGCONT);
			ret = -ETIMEDOUT;
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	ret = ret > 0 ? 0 : ret;
out:
	if (ret == -ESRCH)
		hm_logf(&g->log, HM_LOG_ERROR, "guest: process %d is gone",
			(int)g->pid);
	return ret;
}

static int process_resume(struct hm_guest *g)
{
	int ret;

	if (g->cb.resume)
		return g->cb.resume(g->cb.opaque);
	ret = send_sig(g, SIGCONT);
	if (ret == -ESRCH)
		hm_logf(&g->log, HM_LOG_ERROR, "guest: process %d is gone",
			(int)g->pid);
	return ret;
}

static void process_destroy(struct hm_guest *g)
{
	struct hm_guest_common *c = cm(g);

	if (!c)
		return;
	if (c->uffd >= 0)
		close(c->uffd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->uffd = c->pidfd = -1;
}

static const struct hm_guest_ops process_ops = {
	.name = "process",
	.read = process_read,
	.map = process_map,
	.populated = hm_guest_common_populated,
	.open_tracker = process_open_tracker,
	.pause = process_pause,
	.resume = process_resume,
	.destroy = process_destroy,
};

struct hm_guest *hm_guest_process_new(pid_t pid,
				      const struct hm_ram_block *blocks,
				      size_t nblocks, int uffd,
				      const struct hm_guest_callbacks *cb,
				      const struct hm_log *log)
{
	struct hm_guest *g = NULL;
	struct hm_guest_common *c;
	int ret;

	if (pid <= 0) {
		ret = -EINVAL;
		goto fail;
	}
	g = hm_guest_alloc(&process_ops, blocks, nblocks, cb, log);
	if (!g) {
		ret = -errno;
		goto fail;
	}
	c = g->priv;
	g->pid = pid;
	c->uffd = uffd;
	uffd = -1; /* owned by g from here on */
	c->pidfd = hm_sys_pidfd_open(pid, 0);
	if (c->pidfd < 0 && errno != ENOSYS) {
		ret = -errno;
		hm_logf(log, HM_LOG_ERROR, "guest: process %d: %s", (int)pid,
			strerror(-ret));
		goto fail;
	}
	if (c->pidfd < 0 && kill(pid, 0) < 0 && errno == ESRCH) {
		ret = -ESRCH;
		goto fail;
	}
	if (proc_gone(g)) {
		ret = -ESRCH;
		goto fail;
	}
	ret = hm_guest_common_probe(g, c, pid);
	if (ret < 0)
		goto fail;
	return g;

fail:
	if (uffd >= 0)
		close(uffd);
	hm_guest_free(g);
	errno = -ret;
	return NULL;
}

int hm_guest_process_set_uffd(struct hm_guest *g, int uffd)
{
	struct hm_guest_common *c;

	if (!g || g->ops != &process_ops || uffd < 0) {
		if (uffd >= 0)
			close(uffd);
		return -EINVAL;
	}
	c = g->priv;
	if (c->uffd >= 0)
		close(c->uffd);
	c->uffd = uffd;
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * userfaultfd write-protect write tracking: the tracker log L.
 *
 * Who owns what:
 *  - The tracker owns its userfaultfd, /proc/PID/pagemap descriptor, a
 *    pidfd of a remote target, L and its scratch bitmaps.
 *  - Public functions (add_range, start, harvest, reprotect, stop, close)
 *    are called from one control thread (the engine's). The only other
 *    thread is the sync-mode fault thread; it touches L (atomic bit sets),
 *    the fault counter, and the range table under ranges_lock.
 *
 * async mode: UFFD_FEATURE_WP_ASYNC. A write to a protected page is
 * resolved inside the kernel, which clears the pte's uffd-wp bit; nothing
 * reaches user space. L is the page tables themselves: a harvest is
 * PAGEMAP_SCAN(PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC) asking for
 * PAGE_IS_WRITTEN, which reports the written pages and write-protects
 * them again under the page table lock, atomically per pte.
 *
 * sync mode: a write to a protected page stops the writer and queues a
 * message on the userfaultfd; the fault thread un-protects the page (which
 * wakes the writer) and sets its bit in L. A harvest takes L, adds every
 * page that /proc/PID/pagemap says has lost its protection some other way
 * (see "the sweep" below), and write-protects all of them again.
 *
 * Hot pages (R11): in both modes a harvest reports every page that is not
 * write-protected (async: PAGE_IS_WRITTEN is exactly "uffd-wp bit clear";
 * sync: the sweep reports every page without PM_UFFD_WP). So a page may be
 * left writable, and it is then reported at every harvest without any
 * bookkeeping: the report cannot forget it. A page written in two harvest
 * intervals in a row (hot_after) is left so (its next faults would cost far more than
 * sending it again each round); every hot_period-th harvest protects all
 * written pages, so that pages that went cold stop being sent. In async
 * mode the scan then reads without PM_SCAN_WP_MATCHING and protects the
 * others afterwards with UFFDIO_WRITEPROTECT, in runs: a write between the
 * scan and the protection lands on a page already reported.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hm_config.h"
#include "uffd_compat.h"
#include <hintmig/wp_tracker.h>

/* Pagemap entries read per pread() in the sync-mode sweep (256 KiB). */
#define PM_CHUNK 32768u
/* page_region entries per PAGEMAP_SCAN call. */
#define SCAN_VEC_LEN 4096u
/* Sync mode: re-protection runs are joined across gaps of up to this many
 * pages:
 * protecting a page that is already protected, or that the fault thread
 * is about to record, is harmless (see "the race"), and fewer ioctls are
 * cheaper than a few extra pte visits. */
#define REPROTECT_GAP 16u
/* UFFDIO_WRITEPROTECT answers EAGAIN while the target's mm is changing;
 * retry for at most about this long. */
#define EAGAIN_BUDGET_NS 2000000000ull

struct hm_range {
	uint64_t addr;
	uint64_t len;
	uint64_t first_bit;
	uint64_t npages;
	uint64_t unit;		/* bytes a fault un-protects here: the
				 * tracker's unit, or the hugetlb page size */
};

struct hm_tracker {
	enum hm_tracker_mode mode; /* ASYNC or SYNC, never AUTO */
	struct hm_log log;
	uint64_t nbits;
	uint64_t page_size;
	unsigned page_shift;
	uint64_t features;	/* UFFDIO_API features enabled */
	bool wp_unpopulated;	/* none anon ptes get protected (markers) */

	int uffd;
	pid_t pid;		/* tracked process (ours when local) */
	bool remote;
	int pidfd;		/* remote: tells us when the target exits */
	int pagemap_fd;		/* /proc/PID/pagemap */

	/* Sorted by first_bit; the fault thread reads it under the lock,
	 * the control thread writes it under the lock. */
	pthread_mutex_t ranges_lock;
	struct hm_range *ranges;
	size_t nranges, ranges_cap;

	bool started, stopped, gone;
	struct hm_bitmap taken;	/* harvest scratch, control thread only */

	/* R11: hot pages left writable (control thread only) */
	bool keep_hot;
	bool keep_all;		/* hot_after == 1 */
	unsigned hot_period;
	struct hm_bitmap prev;	/* written at the previous harvest */
	struct hm_bitmap reprot; /* this harvest's pages to protect again */

	/* sync mode */
	struct hm_bitmap L;
	uint64_t *pm_buf;	/* PM_CHUNK pagemap entries */
	int wake_fd;		/* eventfd: tells the fault thread to exit */
	pthread_t thread;
	bool thread_running;
	int thread_err;		/* first error the fault thread met */
	uint64_t ft_page;	/* page the fault thread is between its
				 * un-protect and its bit set, else 0 */
	uint64_t ft_len;	/* ... and the bytes from there (R12 units) */
	uint64_t unit;		/* tracking unit, bytes (R12) */
	uint64_t ft_begun;	/* faults whose handling has begun */
	uint64_t ft_done;	/* ... and ended (bit set) */

	/* async mode */
	struct page_region *vec;

	struct hm_tracker_stats stats; /* faults: atomic (fault thread) */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- */
/* Errors and the target's liveness                                 */
/* ---------------------------------------------------------------- */

static bool target_gone(struct hm_tracker *t)
{
	struct pollfd p;

	if (t->gone)
		return true;
	if (!t->remote || t->pidfd < 0)
		return false;
	/* A pidfd polls readable once the process has exited (zombie or
	 * reaped); its mm is gone by then. */
	p.fd = t->pidfd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP));
}

/* Turn a failed kernel call into the error the caller sees: -ESRCH (and
 * one log line) when the tracked process has gone away. */
static int fail(struct hm_tracker *t, int err, const char *what)
{
	if (t->gone)
		return -ESRCH; /* said once already */
	if (err == -ESRCH || target_gone(t)) {
		hm_logf(&t->log, HM_LOG_ERROR,
			"tracked process %d is gone (%s: %s): write tracking "
			"ended", (int)t->pid, what, strerror(-err));
		t->gone = true;
		return -ESRCH;
	}
	hm_logf(&t->log, HM_LOG_ERROR, "%s: %s", what, strerror(-err));
	return err;
}

/* ---------------------------------------------------------------- */
/* Ranges                                                           */
/* ---------------------------------------------------------------- */

/* Range holding bit b, or NULL. Caller holds ranges_lock or is the
 * control thread. */
static struct hm_range *range_of_bit(struct hm_tracker *t, uint64_t b)
{
	size_t lo = 0, hi = t->nranges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct hm_range *r = &t->ranges[mid];

		if (b < r->first_bit)
			hi = mid;
		else if (b >= r->first_bit + r->npages)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Protection                                                       */
/* ---------------------------------------------------------------- */

/* UFFDIO_WRITEPROTECT on [addr, addr + len): protect (wp) or remove the
 * protection and wake writers waiting on it. Retries EAGAIN (the target's
 * mm is changing under a non-cooperative event). 0 or -errno. */
static int wp_ioctl(struct hm_tracker *t, uint64_t addr, uint64_t len,
		    bool wp)
{
	struct uffdio_writeprotect w;
	uint64_t deadline = 0;
	unsigned tries = 0;

	for (;;) {
		memset(&w, 0, sizeof(w));
		w.range.start = addr;
		w.range.len = len;
		w.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
		if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &w) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if (!deadline)
			deadline = now_ns() + EAGAIN_BUDGET_NS;
		else if (now_ns() > deadline)
			return -EAGAIN;
		if (++tries < 64) {
			sched_yield();
		} else {
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* Calls fn for each piece of [start, end) that lies in a mapping of the
 * target, or (anon_only) in a private anonymous mapping (inode 0 in
 * /proc/PID/maps). Only those need populating on kernels without
 * WP_UNPOPULATED: shmem/file mappings get pte markers from
 * UFFDIO_WRITEPROTECT since 5.19. */
static int for_each_vma(struct hm_tracker *t, uint64_t start, uint64_t end,
			bool anon_only,
			int (*fn)(struct hm_tracker *, uint64_t, uint64_t,
				  void *),
			void *ctx)
{
	char path[64];
	char *line = NULL;
	size_t cap = 0;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	f = fopen(path, "re");
	if (!f) {
		ret = -errno == -ENOENT ? -ESRCH : -errno;
		goto out;
	}
	while (getline(&line, &cap, f) > 0) {
		unsigned long long lo, hi, ino;
		uint64_t a, b;

		if (sscanf(line, "%llx-%llx %*s %*s %*s %llu", &lo, &hi,
			   &ino) != 3)
			continue;
		if ((anon_only && ino != 0) || hi <= start || lo >= end)
			continue;
		a = lo > start ? lo : start;
		b = hi < end ? hi : end;
		ret = fn(t, a, b - a, ctx);
		if (ret < 0)
			goto out;
	}
out:
	free(line);
	if (f)
		fclose(f);
	return ret;
}

/* Map the zero page read-only into every none pte of [addr, addr + len)
 * (anonymous memory) so that UFFDIO_WRITEPROTECT has a pte to protect.
 * Only for kernels without UFFD_FEATURE_WP_UNPOPULATED (6.1 and older). */
static int populate_read(struct hm_tracker *t, uint64_t addr, uint64_t len,
			 void *unused)
{
	enum { NIOV = 1024 };
	struct iovec local, remote[NIOV];
	char sink[NIOV];
	uint64_t off = 0;

	(void)unused;
	if (!t->remote) {
		if (madvise((void *)(uintptr_t)addr, len, MADV_POPULATE_READ))
			return -errno;
		return 0;
	}
	/* Another process: read one byte of each page through the kernel's
	 * remote access (GUP read fault: zero page for none anon ptes). */
	local.iov_base = sink;
	while (off < len) {
		size_t n = 0;
		ssize_t got;

		for (; n < NIOV && off < len; n++, off += t->page_size) {
			remote[n].iov_base = (void *)(uintptr_t)(addr + off);
			remote[n].iov_len = 1;
		}
		local.iov_len = n;
		got = process_vm_readv(t->pid, &local, 1, remote, n, 0);
		if (got < 0)
			return -errno;
		if ((size_t)got != n)
			return -EFAULT;
	}
	return 0;
}

static int populate_anon(struct hm_tracker *t, uint64_t start, uint64_t end)
{
	return for_each_vma(t, start, end, true, populate_read, NULL);
}

static int add_len(struct hm_tracker *t, uint64_t addr, uint64_t len,
		   void *sum)
{
	(void)t;
	(void)addr;
	*(uint64_t *)sum += len;
	return 0;
}

/* Is [addr, addr + len) wholly mapped in the target? */
static bool range_mapped(struct hm_tracker *t, uint64_t addr, uint64_t len)
{
	uint64_t sum = 0;

	return for_each_vma(t, addr, addr + len, false, add_len, &sum) == 0 &&
	       sum == len;
}

/* Protect a whole range (start, or add_range after start). */
/* Write-protecting a range walks every page table entry of it (about
 * 20-25 ms per GiB of 4 KiB pages here); start() is on the migration's
 * setup path, so big ranges are split over one thread per CPU. Ranges of
 * a process change page tables under the shared mmap lock and their own
 * page table locks: the pieces do not serialise. */
#define WP_SPLIT_MIN (UINT64_C(128) << 20)	/* smallest piece */
#define WP_SPLIT_ALIGN (UINT64_C(2) << 20)
#define WP_MAX_THREADS 8

struct wp_piece {
	struct hm_tracker *t;
	uint64_t addr, len;
	int ret;
};

static void *wp_piece_main(void *arg)
{
	struct wp_piece *p = arg;

	p->ret = wp_ioctl(p->t, p->addr, p->len, true);
	return NULL;
}

static int wp_split(struct hm_tracker *t, uint64_t addr, uint64_t len,
		    uint64_t unit)
{
	/* pieces of whole units (hugetlbfs: the kernel refuses part of a
	 * huge page, 1 GiB ones included) */
	uint64_t align = unit > WP_SPLIT_ALIGN ? unit : WP_SPLIT_ALIGN;
	struct wp_piece piece[WP_MAX_THREADS];
	pthread_t th[WP_MAX_THREADS];
	bool started[WP_MAX_THREADS] = { false };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t n = ncpu > 1 ? (uint64_t)ncpu : 1, step, off = 0;
	int ret = 0;

	if (n > WP_MAX_THREADS)
		n = WP_MAX_THREADS;
	if (n > len / WP_SPLIT_MIN)
		n = len / WP_SPLIT_MIN;
	if (n <= 1)
		return wp_ioctl(t, addr, len, true);
	if (n > len / align)
		n = len / align;
	if (n <= 1)
		return wp_ioctl(t, addr, len, true);
	step = (len / n + align - 1) & ~(align - 1);
	memset(piece, 0, sizeof(piece));
	for (unsigned i = 0; i < n; i++) {
		piece[i].t = t;
		piece[i].addr = addr + off;
		piece[i].len = len - off < step || i == n - 1 ? len - off
							      : step;
		off += piece[i].len;
		/* piece 0 runs here; a thread that cannot start runs its
		 * piece here too */
		if (i > 0 && piece[i].len &&
		    pthread_create(&th[i], NULL, wp_piece_main,
				   &piece[i]) == 0)
			started[i] = true;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!started[i]) {
			if (piece[i].len)
				wp_piece_main(&piece[i]);
		} else {
			pthread_join(th[i], NULL);
		}
		if (piece[i].ret < 0 && !ret)
			ret = piece[i].ret;
	}
	return ret;
}

static int protect_range(struct hm_tracker *t, const struct hm_range *r)
{
	int ret;

	if (!t->wp_unpopulated) {
		ret = populate_anon(t, r->addr, r->addr + r->len);
		if (ret < 0)
			return ret;
	}
	return wp_split(t, r->addr, r->len, r->unit);
}

/* ---------------------------------------------------------------- */
/* sync mode: the fault thread                                      */
/* ---------------------------------------------------------------- */

/* Keep the fault thread's first error for the next harvest to report. */
static void note_thread_err(struct hm_tracker *t, int err)
{
	int none = 0;

	__atomic_compare_exchange_n(&t->thread_err, &none, err, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The unit around addr (R12): the aligned unit clipped to addr's range;
 * [*start, *start + *len). A page when addr is in no range. Caller holds
 * ranges_lock. Returns the bit of *start or UINT64_MAX. */
static uint64_t unit_of(struct hm_tracker *t, uint64_t addr, uint64_t *start,
			uint64_t *len)
{
	uint64_t page = addr & ~(t->page_size - 1);

	*start = page;
	*len = t->page_size;
	for (size_t i = 0; i < t->nranges; i++) {
		struct hm_range *r = &t->ranges[i];
		uint64_t s, e;

		if (addr < r->addr || addr - r->addr >= r->len)
			continue;
		s = addr & ~(r->unit - 1);
		e = s + r->unit;
		if (s < r->addr)
			s = r->addr;
		if (e > r->addr + r->len)
			e = r->addr + r->len;
		*start = s;
		*len = e - s;
		return r->first_bit + ((s - r->addr) >> t->page_shift);
	}
	return UINT64_MAX;
}

/*
 * The race, and why the order below is safe.
 *
 * Two actors change a page P's state: the fault thread (FT: "unprotect P,
 * set bit P") and a harvest or reprotect (H: "take bit P, protect P").
 * The property we need is
 *
 *   (I) whenever P is writable, bit P is set in L, or an FT step that has
 *       un-protected P has not yet set its bit (and will).
 *
 * If (I) holds, every write is seen: a write to a writable P happens
 * before the bit that covers it is set, the harvest that takes that bit
 * comes later still, and the engine reads P after that harvest returns.
 *
 * FT un-protects FIRST and sets the bit SECOND. Check every step:
 *  - FT unprotect: P writable, FT owes a set: (I) holds.
 *  - FT set: bit set: (I) holds.
 *  - H take: if P is writable and no FT step is pending, P has no bit
 *    until H's protect, but H has not returned yet: writes in that window
 *    happen before the engine reads P (after H returns), so they are not
 *    lost; after H's protect, P is protected.
 *  - H protect: protecting never breaks (I). If an FT unprotect of P
 *    falls between H's take and H's protect, H's protect wins and FT's
 *    later set merely reports P once more (a harmless extra page). If the
 *    FT unprotect falls after H's protect, FT still owes its set.
 *
 * The other order (set, then unprotect) is wrong: FT sets P, H takes P
 * and protects it, FT then un-protects: P is writable with no bit and
 * every later write to it is lost. No lock is needed with the safe order,
 * so a harvest never stalls faulting writers.
 *
 * Corollary used by harvest: protecting pages whose bit was not taken is
 * always safe, so re-protection runs may bridge gaps.
 *
 * Two more pieces complete it: a writer resumes at step 1, before step 2,
 * so a harvest first waits for the fault in hand (wait_fault_thread());
 * and pages that lose their protection without a fault are found by the
 * sweep (sweep()).
 */
static void handle_wp_fault(struct hm_tracker *t, uint64_t addr)
{
	uint64_t start, len, bit;
	int ret;

	pthread_mutex_lock(&t->ranges_lock);
	bit = unit_of(t, addr, &start, &len);
	pthread_mutex_unlock(&t->ranges_lock);
	/* 0. Tell harvests that these pages' bits are coming. */
	__atomic_store_n(&t->ft_len, len, __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->ft_page, start, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&t->ft_begun, 1, __ATOMIC_SEQ_CST);
	/* 1. Un-protect (and wake the writer): the whole unit (R12). */
	ret = wp_ioctl(t, start, len, false);
	if (ret < 0)
		note_thread_err(t, ret);
	/* 2. Then record, every page that step 1 made writable (R12: one
	 * left out would take writes that no harvest reports). Even if the
	 * un-protect failed (the target is gone, say), recording costs
	 * nothing. */
	if (bit != UINT64_MAX)
		hm_bitmap_set_range_atomic(&t->L, bit, len >> t->page_shift);
	__atomic_store_n(&t->ft_page, 0, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&t->ft_done, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&t->stats.faults, 1, __ATOMIC_RELAXED);
	hm_logf(&t->log, HM_LOG_DEBUG, "wp fault 0x%" PRIx64 " bit %" PRIu64
		" +%" PRIu64, addr, bit, len >> t->page_shift);
}

/* Read every queued message. 0 when the queue is empty, -errno else. */
static int drain_uffd(struct hm_tracker *t)
{
	struct uffd_msg msgs[32];

	for (;;) {
		ssize_t n = read(t->uffd, msgs, sizeof(msgs));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n == 0)
			return 0;
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			struct uffd_msg *m = &msgs[i];

			if (m->event != UFFD_EVENT_PAGEFAULT)
				continue; /* no event feature is enabled */
			if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
				handle_wp_fault(t, m->arg.pagefault.address);
			} else {
				/* Not ours to resolve (we register WP
				 * only); wake it rather than strand it. */
				struct uffdio_range wr = {
					.start = m->arg.pagefault.address &
						 ~(t->page_size - 1),
					.len = t->page_size,
				};
				ioctl(t->uffd, UFFDIO_WAKE, &wr);
			}
		}
	}
}

static void *fault_thread(void *arg)
{
	struct hm_tracker *t = arg;
	struct pollfd p[2];
	int ret;

	p[0].fd = t->uffd;
	p[0].events = POLLIN;
	p[1].fd = t->wake_fd;
	p[1].events = POLLIN;
	for (;;) {
		p[0].revents = p[1].revents = 0;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			note_thread_err(t, -errno);
			break;
		}
		if (p[0].revents & POLLIN) {
			ret = drain_uffd(t);
			if (ret < 0)
				note_thread_err(t, ret);
		}
		if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			p[0].fd = -1; /* nothing more will come from it */
		if (p[1].revents & POLLIN) {
			/* Stop: hm_tracker_stop() has already un-protected
			 * and unregistered everything, so no new fault can
			 * arrive; serve what is queued and leave. */
			drain_uffd(t);
			break;
		}
	}
	return NULL;
}

static int start_fault_thread(struct hm_tracker *t)
{
	sigset_t all, old;
	int ret;

	/* The library's thread takes none of the application's signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&t->thread, NULL, fault_thread, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret == 0)
		t->thread_running = true;
	return ret;
}

static void stop_fault_thread(struct hm_tracker *t)
{
	uint64_t one = 1;

	if (!t->thread_running)
		return;
	while (write(t->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(t->thread, NULL);
	t->thread_running = false;
}

/* ---------------------------------------------------------------- */
/* Open / close                                                     */
/* ---------------------------------------------------------------- */

static int uffd_api(struct hm_tracker *t, const struct hm_caps *caps,
		    uint64_t disable)
{
	struct uffdio_api api;
	uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;

	if (caps->wp_hugetlbfs_shmem)
		want |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (caps->wp_unpopulated)
		want |= UFFD_FEATURE_WP_UNPOPULATED;
	if (t->mode == HM_TRACKER_ASYNC)
		want |= UFFD_FEATURE_WP_ASYNC;
	want &= ~disable;
	if (!(want & UFFD_FEATURE_PAGEFAULT_FLAG_WP) ||
	    (t->mode == HM_TRACKER_ASYNC && !(want & UFFD_FEATURE_WP_ASYNC)))
		return -ENOTSUP;

	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = want;
	if (ioctl(t->uffd, UFFDIO_API, &api) < 0) {
		int err = -errno;

		hm_logf(&t->log, HM_LOG_ERROR,
			"UFFDIO_API(features 0x%" PRIx64 "): %s%s", want,
			strerror(-err),
			err == -EINVAL ? " (the userfaultfd was already "
					 "configured, or a feature is missing)"
				       : "");
		return err;
	}
	t->features = want;
	t->wp_unpopulated = want & UFFD_FEATURE_WP_UNPOPULATED;
	return 0;
}

static struct hm_tracker *tracker_new(const struct hm_caps *caps,
				      const struct hm_tracker_opts *opts,
				      pid_t pid, bool remote, int uffd)
{
	struct hm_tracker *t = NULL;
	char path[64];
	long ps;
	bool huge_unit;
	int ret, mode;

	if (!caps || !opts || !opts->nbits) {
		ret = -EINVAL;
		goto fail;
	}
	ps = sysconf(_SC_PAGESIZE);
	huge_unit = opts->unit_bytes > (uint64_t)ps;
	if (opts->unit_bytes && (opts->unit_bytes & (opts->unit_bytes - 1))) {
		ret = -EINVAL;
		goto fail;
	}
	if (huge_unit && opts->mode == HM_TRACKER_ASYNC) {
		hm_logf(&opts->log, HM_LOG_ERROR, "a tracking unit of %" PRIu64
			" KiB needs the sync tracker: in async mode the kernel "
			"splits a write-protected huge page at its first write",
			opts->unit_bytes >> 10);
		ret = -EINVAL;
		goto fail;
	}
	mode = hm_tracker_mode_pick(caps, huge_unit &&
				    opts->mode == HM_TRACKER_AUTO ?
				    HM_TRACKER_SYNC : opts->mode);
	if (mode < 0) {
		if (mode == -EPERM)
			hm_logf(&opts->log, HM_LOG_ERROR,
				"userfaultfd is refused to this process: "
				"vm.unprivileged_userfaultfd=%d and no "
				"CAP_SYS_PTRACE; run as root, set "
				"vm.unprivileged_userfaultfd=1, or give access "
				"to /dev/userfaultfd",
				caps->unprivileged_userfaultfd);
		else
			hm_logf(&opts->log, HM_LOG_ERROR,
				"tracker mode '%s' is not supported by kernel "
				"%s (uffd-wp %d, WP_ASYNC %d, PAGEMAP_SCAN %d)",
				hm_tracker_mode_name(opts->mode) ?
					hm_tracker_mode_name(opts->mode) : "?",
				caps->kernel_release, caps->uffd_wp,
				caps->wp_async, caps->pagemap_scan);
		ret = mode;
		goto fail;
	}

	t = calloc(1, sizeof(*t));
	if (!t) {
		ret = -ENOMEM;
		goto fail;
	}
	t->uffd = uffd;
	t->pidfd = -1;
	t->pagemap_fd = -1;
	t->wake_fd = -1;
	t->mode = (enum hm_tracker_mode)mode;
	t->log = opts->log;
	t->nbits = opts->nbits;
	t->pid = pid;
	t->remote = remote;
	pthread_mutex_init(&t->ranges_lock, NULL);
	t->page_size = (uint64_t)ps;
	t->page_shift = (unsigned)__builtin_ctzll(t->page_size);
	t->unit = huge_unit ? opts->unit_bytes : t->page_size;

	if (uffd < 0) {
		ret = hm_uffd_create();
		if (ret < 0) {
			if (ret == -EPERM)
				hm_logf(&t->log, HM_LOG_ERROR,
					"userfaultfd: EPERM: "
					"vm.unprivileged_userfaultfd=%d forbids "
					"it without CAP_SYS_PTRACE, and "
					"/dev/userfaultfd is not accessible",
					caps->unprivileged_userfaultfd);
			goto fail;
		}
		t->uffd = ret;
	}
	if (remote) {
		t->pidfd = hm_sys_pidfd_open(pid, 0);
		if (t->pidfd < 0) {
			ret = -errno;
			hm_logf(&t->log, HM_LOG_ERROR, "pidfd_open(%d): %s",
				(int)pid, strerror(errno));
			goto fail;
		}
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	t->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->pagemap_fd < 0) {
		ret = errno == ENOENT ? -ESRCH : -errno;
		hm_logf(&t->log, HM_LOG_ERROR, "%s: %s", path,
			strerror(errno));
		goto fail;
	}

	ret = uffd_api(t, caps, opts->disable_features);
	if (ret < 0)
		goto fail;

	ret = hm_bitmap_init(&t->taken, t->nbits);
	if (ret < 0)
		goto fail;
	t->keep_hot = opts->keep_hot;
	t->hot_period = opts->hot_period ? opts->hot_period : 8;
	t->keep_all = opts->hot_after == 1;
	if (t->keep_hot) { /* R11's two bitmaps, nothing without it */
		ret = hm_bitmap_init(&t->reprot, t->nbits);
		if (ret == 0)
			ret = hm_bitmap_init(&t->prev, t->nbits);
		if (ret < 0)
			goto fail;
	}
	if (t->mode == HM_TRACKER_SYNC) {
		ret = hm_bitmap_init(&t->L, t->nbits);
		if (ret < 0)
			goto fail;
		t->pm_buf = malloc(PM_CHUNK * sizeof(uint64_t));
		t->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (!t->pm_buf || t->wake_fd < 0) {
			ret = t->pm_buf ? -errno : -ENOMEM;
			goto fail;
		}
	} else {
		t->vec = calloc(SCAN_VEC_LEN, sizeof(*t->vec));
		if (!t->vec) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	hm_logf(&t->log, HM_LOG_INFO,
		"tracker: %s mode, pid %d%s, features 0x%" PRIx64
		", unit %" PRIu64 " KiB",
		hm_tracker_mode_name(t->mode), (int)pid,
		remote ? " (remote)" : "", t->features, t->unit >> 10);
	return t;

fail:
	if (t) {
		hm_tracker_close(t); /* closes the uffd too */
	} else if (uffd >= 0) {
		close(uffd);
	}
	errno = -ret;
	return NULL;
}

struct hm_tracker *hm_tracker_open(const struct hm_caps *caps,
				   const struct hm_tracker_opts *opts)
{
	return tracker_new(caps, opts, getpid(), false, -1);
}

struct hm_tracker *hm_tracker_open_remote(const struct hm_caps *caps,
					  const struct hm_tracker_opts *opts,
					  pid_t pid, int uffd)
{
	if (pid <= 0 || uffd < 0) {
		if (uffd >= 0)
			close(uffd);
		errno = EINVAL;
		return NULL;
	}
	return tracker_new(caps, opts, pid, true, uffd);
}

void hm_tracker_close(struct hm_tracker *t)
{
	if (!t)
		return;
	hm_tracker_stop(t);
	if (t->uffd >= 0)
		close(t->uffd);
	if (t->pagemap_fd >= 0)
		close(t->pagemap_fd);
	if (t->pidfd >= 0)
		close(t->pidfd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->L.words)
		hm_bitmap_fini(&t->L);
	if (t->taken.words)
		hm_bitmap_fini(&t->taken);
	if (t->prev.words)
		hm_bitmap_fini(&t->prev);
	if (t->reprot.words)
		hm_bitmap_fini(&t->reprot);
	free(t->pm_buf);
	free(t->vec);
	free(t->ranges);
	pthread_mutex_destroy(&t->ranges_lock);
	free(t);
}

enum hm_tracker_mode hm_tracker_get_mode(const struct hm_tracker *t)
{
	return t->mode;
}

void hm_tracker_get_stats(const struct hm_tracker *t,
			  struct hm_tracker_stats *st)
{
	*st = t->stats;
	st->faults = __atomic_load_n(&t->stats.faults, __ATOMIC_RELAXED);
}

uint64_t hm_tracker_get_features(const struct hm_tracker *t)
{
	return t->features;
}

/* ---------------------------------------------------------------- */
/* Ranges, start, stop                                              */
/* ---------------------------------------------------------------- */

static int uffd_register(struct hm_tracker *t, uint64_t addr, uint64_t len)
{
	struct uffdio_register reg;
	struct uffdio_range ur;
	int err;

	memset(&reg, 0, sizeof(reg));
	reg.range.start = addr;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0) {
		err = -errno;
		switch (err) {
		case -EBUSY:
			hm_logf(&t->log, HM_LOG_ERROR,
				"range 0x%" PRIx64 "+0x%" PRIx64 " of pid %d "
				"is already registered with another "
				"userfaultfd", addr, len, (int)t->pid);
			return -EBUSY;
		case -ENOMEM:
		case -EINVAL:
			if (!range_mapped(t, addr, len)) {
				hm_logf(&t->log, HM_LOG_ERROR,
					"range 0x%" PRIx64 "+0x%" PRIx64
					" of pid %d is not (wholly) mapped",
					addr, len, (int)t->pid);
				return target_gone(t) ?
					       fail(t, -ESRCH, "register") :
					       -ENOMEM;
			}
			hm_logf(&t->log, HM_LOG_ERROR,
				"range 0x%" PRIx64 "+0x%" PRIx64 " of pid %d: "
				"this kernel cannot write-protect that kind "
				"of memory (shmem needs WP_HUGETLBFS_SHMEM, "
				"features 0x%" PRIx64 ")", addr, len,
				(int)t->pid, t->features);
			return -ENOTSUP;
		default:
			return fail(t, err, "UFFDIO_REGISTER");
		}
	}
	if (!(reg.ioctls & ((__u64)1 << _UFFDIO_WRITEPROTECT))) {
		ur.start = addr;
		ur.len = len;
		ioctl(t->uffd, UFFDIO_UNREGISTER, &ur);
		hm_logf(&t->log, HM_LOG_ERROR,
			"range 0x%" PRIx64 "+0x%" PRIx64 ": no "
			"UFFDIO_WRITEPROTECT for this memory", addr, len);
		return -ENOTSUP;
	}
	return 0;
}

/* The kernel page size of the mapping at addr in the tracked process
 * (smaps' KernelPageSize: 2 MiB or 1 GiB on hugetlbfs, else the base
 * page), or -errno. */
static int64_t vma_page_size(struct hm_tracker *t, uint64_t addr)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	int64_t ret = -ENOENT;
	bool in = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)t->pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long lo, hi, kb;

		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = addr >= lo && addr < hi;
			continue;
		}
		if (in && sscanf(line, "KernelPageSize: %llu kB", &kb) == 1) {
			ret = (int64_t)kb << 10;
			break;
		}
	}
	free(line);
	fclose(f);
	return ret;
}

int hm_tracker_add_range(struct hm_tracker *t, uint64_t addr, uint64_t len,
			 uint64_t first_bit)
{
	int64_t kps;
	struct hm_range r, *nr;
	size_t pos;
	int ret;

	if (!t || !len || (addr | len) & (t->page_size - 1) ||
	    addr + len < addr || t->stopped)
		return -EINVAL;
	r.addr = addr;
	r.len = len;
	r.first_bit = first_bit;
	r.npages = len >> t->page_shift;
	if (first_bit >= t->nbits || r.npages > t->nbits - first_bit)
		return -EINVAL;
	if (t->gone)
		return -ESRCH;
	/* hugetlbfs: the kernel protects and faults whole huge pages, so a
	 * fault must un-protect one whole (R12 by necessity), and the range
	 * must hold whole ones */
	kps = vma_page_size(t, addr);
	if (kps == -ENOENT)	/* not mapped: registering says so */
		kps = (int64_t)t->page_size;
	if (kps < 0)
		return (int)kps;
	r.unit = (uint64_t)kps > t->unit ? (uint64_t)kps : t->unit;
	if ((uint64_t)kps > t->page_size) {
		if ((addr | len) & ((uint64_t)kps - 1))
			return -EINVAL;
		hm_logf(&t->log, HM_LOG_INFO, "range 0x%" PRIx64 ": hugetlb, "
			"%" PRId64 " KiB pages: tracked in whole huge pages",
			addr, kps >> 10);
	}
	for (size_t i = 0; i < t->nranges; i++) {
		const struct hm_range *o = &t->ranges[i];

		if (addr < o->addr + o->len && o->addr < addr + len)
			return -EBUSY; /* ours already */
		if (first_bit < o->first_bit + o->npages &&
		    o->first_bit < first_bit + r.npages)
			return -EINVAL; /* two ranges, one bit */
	}
	if (t->nranges == t->ranges_cap) {
		size_t cap = t->ranges_cap ? 2 * t->ranges_cap : 8;

		nr = malloc(cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		if (t->nranges)
			memcpy(nr, t->ranges, t->nranges * sizeof(*nr));
		/* Swap under the lock: the fault thread may be reading. */
		pthread_mutex_lock(&t->ranges_lock);
		free(t->ranges);
		t->ranges = nr;
		t->ranges_cap = cap;
		pthread_mutex_unlock(&t->ranges_lock);
	}
	ret = uffd_register(t, addr, len);
	if (ret < 0)
		return ret;

	pthread_mutex_lock(&t->ranges_lock);
	for (pos = 0; pos < t->nranges; pos++)
		if (t->ranges[pos].first_bit > first_bit)
			break;
	memmove(&t->ranges[pos + 1], &t->ranges[pos],
		(t->nranges - pos) * sizeof(r));
	t->ranges[pos] = r;
	t->nranges++;
	pthread_mutex_unlock(&t->ranges_lock);

	if (t->started) {
		ret = protect_range(t, &r);
		if (ret < 0)
			return fail(t, ret, "write-protect new range");
	}
	hm_logf(&t->log, HM_LOG_DEBUG,
		"range 0x%" PRIx64 "+0x%" PRIx64 " -> bits %" PRIu64 "+%" PRIu64,
		addr, len, first_bit, r.npages);
	return 0;
}

int hm_tracker_start(struct hm_tracker *t)
{
	int ret;

	if (!t || t->stopped)
		return -EINVAL;
	if (t->gone || target_gone(t))
		return fail(t, -ESRCH, "start");
	if (t->started)
		return 0;
	/* The fault thread first: from the first protected page on, a
	 * writer in sync mode waits for it. */
	if (t->mode == HM_TRACKER_SYNC) {
		ret = start_fault_thread(t);
		if (ret < 0) {
			hm_logf(&t->log, HM_LOG_ERROR, "fault thread: %s",
				strerror(-ret));
			return ret;
		}
	}
	t->started = true;
	for (size_t i = 0; i < t->nranges; i++) {
		ret = protect_range(t, &t->ranges[i]);
		if (ret < 0) {
			ret = fail(t, ret, "write-protect");
			hm_tracker_stop(t); /* leave the target untouched */
			return ret;
		}
	}
	return 0;
}

/*
 * Stop order matters. In sync mode a write fault that nobody reads blocks
 * the writer (the guest) for good, so: first remove the protection
 * everywhere and unregister (both wake any writer already waiting), and
 * only then stop the fault thread, which serves whatever is still queued.
 * Finally the userfaultfd is closed. The target must not keep a copy of
 * the userfaultfd of its own (hm_uffd_create's contract), or a copy held
 * elsewhere would keep the context alive.
 */
int hm_tracker_stop(struct hm_tracker *t)
{
	struct uffdio_range ur;
	int ret = 0, r;

	if (!t || t->stopped)
		return 0;
	t->stopped = true;
	for (size_t i = 0; i < t->nranges; i++) {
		const struct hm_range *rg = &t->ranges[i];

		if (t->started && !t->gone) {
			r = wp_ioctl(t, rg->addr, rg->len, false);
			if (r < 0 && !ret)
				ret = r;
		}
		ur.start = rg->addr;
		ur.len = rg->len;
		if (!t->gone && ioctl(t->uffd, UFFDIO_UNREGISTER, &ur) < 0 &&
		    !ret)
			ret = -errno;
	}
	stop_fault_thread(t);
	if (t->uffd >= 0) {
		close(t->uffd);
		t->uffd = -1;
	}
	if (t->gone || (ret < 0 && target_gone(t)))
		return fail(t, -ESRCH, "stop");
	if (ret < 0)
		hm_logf(&t->log, HM_LOG_WARN, "stop: %s (ranges released)",
			strerror(-ret));
	return ret;
}

/* ---------------------------------------------------------------- */
/* Harvest                                                          */
/* ---------------------------------------------------------------- */

/* OR t->taken into out, clear it, return how many bits it had. */
static long report_taken(struct hm_tracker *t, struct hm_bitmap *out)
{
	long pages = 0;

	for (size_t w = 0; w < t->taken.nwords; w++) {
		uint64_t v = t->taken.words[w];

		if (!v)
			continue;
		__atomic_fetch_or(&out->words[w], v, __ATOMIC_ACQ_REL);
		pages += __builtin_popcountll(v);
	}
	return pages;
}

static int reprotect_bits(struct hm_tracker *t, const struct hm_bitmap *bm);

/*
 * R11: of the pages in t->taken (written in this harvest interval, or left
 * writable), put into t->reprot those to protect again: all of them at
 * every hot_period-th harvest, else those not written in the previous
 * interval too. t->prev becomes t->taken.
 */
static void choose_reprotect(struct hm_tracker *t)
{
	bool reset = t->stats.harvests % t->hot_period == t->hot_period - 1;
	uint64_t kept = 0, again = 0;

	for (size_t w = 0; w < t->taken.nwords; w++) {
		uint64_t v = t->taken.words[w];
		uint64_t keep = reset ? 0 :
				t->keep_all ? v : v & t->prev.words[w];

		t->reprot.words[w] = v & ~keep;
		t->prev.words[w] = v;
		kept += (uint64_t)__builtin_popcountll(keep);
		again += (uint64_t)__builtin_popcountll(v & ~keep);
	}
	t->stats.pages_kept += kept;
	t->stats.pages_reprotected += again;
}

static long harvest_async(struct hm_tracker *t, struct hm_bitmap *out)
{
	long pages;

	for (size_t i = 0; i < t->nranges; i++) {
		const struct hm_range *r = &t->ranges[i];
		struct pm_scan_arg a;

		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		/* With hot pages kept, read only: protection follows,
		 * for the pages that are not hot (choose_reprotect). */
		a.flags = PM_SCAN_CHECK_WPASYNC |
			  (t->keep_hot ? 0 : PM_SCAN_WP_MATCHING);
		a.start = r->addr;
		a.end = r->addr + r->len;
		a.vec = (uintptr_t)t->vec;
		a.vec_len = SCAN_VEC_LEN;
		a.category_mask = PAGE_IS_WRITTEN;
		a.return_mask = PAGE_IS_WRITTEN;
		while (a.start < a.end) {
			long n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &a);

			if (n < 0) {
				int err = errno;

				if (err == EINTR || err == EAGAIN)
					continue;
				if (err == EPERM)
					hm_logf(&t->log, HM_LOG_ERROR,
						"PAGEMAP_SCAN: part of "
						"0x%" PRIx64 "+0x%" PRIx64 " is "
						"no longer registered (unmapped "
						"or remapped by pid %d?)",
						r->addr, r->len, (int)t->pid);
				/* What was found so far is reported. */
				report_taken(t, out);
				memset(t->taken.words, 0,
				       t->taken.nwords * sizeof(uint64_t));
				return fail(t, -err, "PAGEMAP_SCAN");
			}
			/* Into the scratch bitmap first: a page written
			 * again while the scan goes on can come back in the
			 * next call, and must be counted once. */
			for (long k = 0; k < n; k++) {
				uint64_t s = (t->vec[k].start - r->addr) >>
					     t->page_shift;
				uint64_t e = (t->vec[k].end - r->addr) >>
					     t->page_shift;

				hm_bitmap_set_range(&t->taken, r->first_bit + s,
						    e - s);
			}
			/* walk_end == end: the whole range was walked.
			 * Otherwise the vector filled up: go on from
			 * there. */
			if (a.walk_end >= a.end)
				break;
			if (a.walk_end <= a.start) {
				report_taken(t, out);
				memset(t->taken.words, 0,
				       t->taken.nwords * sizeof(uint64_t));
				return fail(t, -EIO,
					    "PAGEMAP_SCAN made no progress");
			}
			a.start = a.walk_end;
		}
	}
	pages = report_taken(t, out);
	if (t->keep_hot) {
		int ret;

		choose_reprotect(t);
		ret = reprotect_bits(t, &t->reprot);
		if (ret < 0) {
			/* Unprotected pages are reported by the next scan:
			 * nothing is lost. */
			memset(t->taken.words, 0,
			       t->taken.nwords * sizeof(uint64_t));
			return fail(t, ret, "harvest");
		}
	}
	memset(t->taken.words, 0, t->taken.nwords * sizeof(uint64_t));
	return pages;
}

static int read_pagemap(struct hm_tracker *t, uint64_t addr, size_t n)
{
	size_t want = n * sizeof(uint64_t), got = 0;
	off_t off = (off_t)((addr >> t->page_shift) * sizeof(uint64_t));

	while (got < want) {
		ssize_t k = pread(t->pagemap_fd, (char *)t->pm_buf + got,
				  want - got, off + (off_t)got);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -ESRCH; /* the mm is gone */
		got += (size_t)k;
	}
	return 0;
}

/*
 * The sweep (sync mode). L only knows about write faults. A page can also
 * lose its protection without faulting: MADV_DONTNEED (balloon, free page
 * reporting) zaps an anonymous pte together with its uffd-wp bit, and the
 * next write allocates a fresh, writable page without telling anyone (on
 * 6.1 as on 6.18). So every harvest also reads /proc/PID/pagemap and
 * treats every page without PM_UFFD_WP as written: it is reported and
 * protected again, and a none anonymous pte is first populated read-only
 * where the kernel cannot protect none ptes (no WP_UNPOPULATED). Pages
 * the fault thread is just un-protecting show up too: reporting them
 * early is harmless (see "the race").
 */
/* Is an unprotected page just the fault thread's doing, with its bit in L
 * set or about to be? Then the sweep leaves it alone: it stays writable
 * with its bit coming, which is (I), and it is not reported twice (once
 * now, once more next time), which keeps a quiescent harvest exact.
 * Order matters: the fault thread sets the bit before it clears ft_page,
 * so ft_page is read first; if it no longer names this page, the bit is
 * already in L (or the page was un-protected for another reason). */
static bool fault_pending(struct hm_tracker *t, uint64_t page, uint64_t bit)
{
	if (hm_bitmap_test(&t->taken, bit))
		return true; /* taken from L already: no need to look */
	{
		uint64_t fp = __atomic_load_n(&t->ft_page, __ATOMIC_SEQ_CST);

		/* a torn read of ft_page/ft_len only makes the sweep report
		 * the page once more */
		if (fp && page >= fp &&
		    page - fp < __atomic_load_n(&t->ft_len, __ATOMIC_SEQ_CST))
			return true;
	}
	return __atomic_load_n(&t->L.words[bit / 64], __ATOMIC_SEQ_CST) &
	       (UINT64_C(1) << (bit % 64));
}

static int sweep(struct hm_tracker *t)
{
	int ret;

	for (size_t i = 0; i < t->nranges; i++) {
		const struct hm_range *r = &t->ranges[i];

		for (uint64_t p = 0; p < r->npages; p += PM_CHUNK) {
			size_t n = r->npages - p < PM_CHUNK ?
					   (size_t)(r->npages - p) : PM_CHUNK;
			uint64_t base = r->addr + (p << t->page_shift);
			uint64_t hole_start = 0;
			bool in_hole = false;

			ret = read_pagemap(t, base, n);
			if (ret < 0)
				return ret;
			for (size_t k = 0; k <= n; k++) {
				uint64_t e = k < n ? t->pm_buf[k] : HM_PM_UFFD_WP;
				bool none = !(e & (HM_PM_PRESENT | HM_PM_SWAP));

				if (!(e & HM_PM_UFFD_WP) &&
				    !fault_pending(t, base + (k << t->page_shift),
						   r->first_bit + p + k)) {
					hm_bitmap_set(&t->taken,
						      r->first_bit + p + k);
					hm_logf(&t->log, HM_LOG_DEBUG,
						"sweep: page 0x%" PRIx64
						" unprotected (pagemap 0x%" PRIx64
						")", base + (k << t->page_shift),
						e);
				}
				if (t->wp_unpopulated)
					continue;
				/* Runs of unprotected none ptes. */
				if (!(e & HM_PM_UFFD_WP) && none) {
					if (!in_hole) {
						in_hole = true;
						hole_start = k;
					}
				} else if (in_hole) {
					in_hole = false;
					ret = populate_anon(
						t,
						base + (hole_start << t->page_shift),
						base + (k << t->page_shift));
					if (ret < 0)
						return ret;
				}
			}
		}
	}
	return 0;
}

/* Protect every page whose bit is set in bm, in runs. */
static int reprotect_bits(struct hm_tracker *t, const struct hm_bitmap *bm)
{
	/* Runs are joined across gaps only in sync mode, where a write is
	 * recorded in L and protecting its page again is harmless. In async
	 * mode the pte's bit is the only record: protecting a page outside
	 * bm would erase a write made after the scan. */
	const size_t gap = t->mode == HM_TRACKER_SYNC ? REPROTECT_GAP : 0;
	size_t b = hm_bitmap_find_next_set(bm, 0);

	while (b < bm->nbits) {
		struct hm_range *r = range_of_bit(t, b);
		size_t end, next, rend;
		int ret;

		if (!r) { /* a bit outside every range: cannot be set */
			b = hm_bitmap_find_next_set(bm, b + 1);
			continue;
		}
		rend = r->first_bit + r->npages;
		end = hm_bitmap_find_next_clear(bm, b);
		for (;;) {
			if (end > rend)
				end = rend;
			next = end < rend ? hm_bitmap_find_next_set(bm,
								    end) :
					    rend;
			if (next >= rend || next - end > gap)
				break;
			end = hm_bitmap_find_next_clear(bm, next);
		}
		ret = wp_ioctl(t, r->addr + ((b - r->first_bit) << t->page_shift),
			       (uint64_t)(end - b) << t->page_shift, true);
		if (ret < 0)
			return ret;
		b = end < bm->nbits ? hm_bitmap_find_next_set(bm, end)
					 : end;
	}
	return 0;
}

/*
 * A writer resumes as soon as the fault thread un-protects its page, a
 * moment BEFORE the thread sets the page's bit. So a write can be complete
 * while its bit is not in L yet. A harvest must report every write that
 * completed before it began (the final round of a migration depends on
 * it: the guest is paused, its writes are complete, and the last harvest
 * must see all of them), so it first waits for the fault that the thread
 * is handling right now, if any, to be recorded. That is at most one
 * fault: every earlier one is recorded, and a writer whose fault the
 * thread has not reached yet is still blocked, its write not complete.
 */
static void wait_fault_thread(struct hm_tracker *t)
{
	uint64_t begun = __atomic_load_n(&t->ft_begun, __ATOMIC_SEQ_CST);
	uint64_t deadline = 0;

	while (__atomic_load_n(&t->ft_done, __ATOMIC_SEQ_CST) < begun) {
		if (!deadline) {
			deadline = now_ns() + 2 * EAGAIN_BUDGET_NS;
		} else if (now_ns() > deadline) {
			uint64_t page = __atomic_load_n(&t->ft_page,
							__ATOMIC_SEQ_CST);
			uint64_t bit = UINT64_MAX, start, len;

			/* Record the unit for the thread (an extra report
			 * at worst) rather than wait for ever. */
			pthread_mutex_lock(&t->ranges_lock);
			if (page)
				bit = unit_of(t, page, &start, &len);
			pthread_mutex_unlock(&t->ranges_lock);
			if (bit != UINT64_MAX)
				hm_bitmap_set_range_atomic(&t->L, bit,
							   len >> t->page_shift);
			hm_logf(&t->log, HM_LOG_WARN,
				"fault thread slow on page 0x%" PRIx64, page);
			return;
		}
		sched_yield();
	}
}

static long harvest_sync(struct hm_tracker *t, struct hm_bitmap *out)
{
	long pages = 0;
	int ret;

	wait_fault_thread(t);
	/* 1. Take L, word by word (the fault thread keeps setting bits). */
	for (size_t w = 0; w < t->L.nwords; w++)
		t->taken.words[w] = hm_bitmap_fetch_clear_word(&t->L, w);
	/* 2. Pages unprotected behind our back. */
	ret = sweep(t);
	/* 3. Report. Before re-protecting, so that on failure nothing taken
	 * is lost: it is in out, and put back into L below. */
	pages = report_taken(t, out);
	/* 4. Protect again what was taken, but hot pages (R11). */
	if (ret == 0 && t->keep_hot) {
		choose_reprotect(t);
		ret = reprotect_bits(t, &t->reprot);
	} else if (ret == 0) {
		ret = reprotect_bits(t, &t->taken);
	}
	if (ret < 0) {
		hm_bitmap_or(&t->L, &t->taken);
		memset(t->taken.words, 0, t->taken.nwords * sizeof(uint64_t));
		return fail(t, ret, "harvest");
	}
	memset(t->taken.words, 0, t->taken.nwords * sizeof(uint64_t));
	ret = __atomic_exchange_n(&t->thread_err, 0, __ATOMIC_ACQ_REL);
	if (ret < 0) {
		return fail(t, ret, "fault thread");
	}
	return pages;
}

long hm_tracker_harvest(struct hm_tracker *t, struct hm_bitmap *out)
{
	uint64_t t0;
	long ret;

	if (!t || !out || out->nbits < t->nbits)
		return -EINVAL;
	if (t->gone)
		return -ESRCH;
	if (!t->started || t->stopped)
		return target_gone(t) ? fail(t, -ESRCH, "harvest") : -EINVAL;
	t0 = now_ns();
	if (t->mode == HM_TRACKER_ASYNC)
		ret = harvest_async(t, out);
	else
		ret = harvest_sync(t, out);
	if (ret >= 0 && target_gone(t))
		ret = fail(t, -ESRCH, "harvest");
	if (ret >= 0) {
		if (!t->keep_hot)
			t->stats.pages_reprotected += (uint64_t)ret;
		t->stats.harvests++;
		t->stats.pages_harvested += (uint64_t)ret;
		t->stats.harvest_ns += now_ns() - t0;
	}
	return ret;
}

int hm_tracker_reprotect(struct hm_tracker *t, uint64_t first_bit,
			 uint64_t npages)
{
	uint64_t end;
	int ret;

	if (!t || first_bit > t->nbits || npages > t->nbits - first_bit)
		return -EINVAL;
	if (t->gone)
		return -ESRCH;
	if (!npages)
		return 0;
	end = first_bit + npages;
	/* Same order as a harvest: forget the bits, then protect. */
	if (t->mode == HM_TRACKER_SYNC)
		hm_bitmap_clear_range_atomic(&t->L, first_bit, npages);
	if (!t->started || t->stopped)
		return 0;
	for (size_t i = 0; i < t->nranges; i++) {
		const struct hm_range *r = &t->ranges[i];
		uint64_t s = first_bit > r->first_bit ? first_bit : r->first_bit;
		uint64_t e = end < r->first_bit + r->npages ?
				     end : r->first_bit + r->npages;

		if (s >= e)
			continue;
		ret = wp_ioctl(t, r->addr + ((s - r->first_bit) << t->page_shift),
			       (e - s) << t->page_shift, true);
		if (ret < 0)
			return fail(t, ret, "reprotect");
	}
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Write tracking with userfaultfd write-protect (the tracker log L).
 *
 * Two modes behind one API:
 *  - async (UFFD_FEATURE_WP_ASYNC, kernel >= 6.7): writes resolve in the
 *    kernel; a harvest is one PAGEMAP_SCAN ioctl per range with
 *    PM_SCAN_WP_MATCHING that returns the written pages and write-protects
 *    them again in the same call. L lives in the page tables.
 *  - sync (kernel >= 5.7 anon, >= 5.19 shmem): a fault thread reads
 *    write-protect faults, records the page in L (a bitmap) and removes the
 *    protection; a harvest takes L and re-protects what it took.
 *
 * Memory may be this process's own or another process's ("remote"): then
 * the userfaultfd must have been created inside the owning process and
 * taken with pidfd_getfd(2) (hm_uffd_take_remote()); registration,
 * protection and harvest all run from here, PAGEMAP_SCAN on
 * /proc/PID/pagemap.
 *
 * Bit indexing: each range is added with the bit index of its first page;
 * a page at addr maps to bit first_bit + (addr - range.addr) / page_size of
 * the caller's bitmaps (the tracker's L and the caller's M share it).
 */
#ifndef HINTMIG_WP_TRACKER_H
#define HINTMIG_WP_TRACKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hintmig/bitmap.h>
#include <hintmig/hintmig.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the running kernel offers, probed once (CRIU's "criu check"). */
struct hm_caps {
	char kernel_release[65];
	bool uffd_syscall;	/* userfaultfd(2) works for us */
	bool uffd_dev;		/* /dev/userfaultfd works for us */
	int uffd_errno;		/* errno why neither works, else 0 */
	int unprivileged_userfaultfd; /* vm.unprivileged_userfaultfd, -1 unknown */
	uint64_t uffd_features;	/* features UFFDIO_API reported */
	bool uffd_wp;		/* write-protect on anonymous memory */
	bool wp_hugetlbfs_shmem; /* write-protect on shmem/memfd/hugetlbfs */
	bool wp_async;		/* UFFD_FEATURE_WP_ASYNC */
	bool wp_unpopulated;	/* UFFD_FEATURE_WP_UNPOPULATED */
	bool pagemap_scan;	/* PAGEMAP_SCAN ioctl on /proc/PID/pagemap */
	bool pidfd_getfd;	/* pidfd_open(2) + pidfd_getfd(2) */
	bool thp;		/* transparent hugepages not "never" */
	bool kvm;		/* /dev/kvm opens */
};

/* Fill caps. Never fails for a missing feature (that is a false field);
 * returns 0, or -errno only for a failure of the probe itself. */
int hm_caps_probe(struct hm_caps *caps, const struct hm_log *log);

enum hm_tracker_mode {
	HM_TRACKER_AUTO = 0,
	HM_TRACKER_ASYNC,
	HM_TRACKER_SYNC,
};

/* "auto", "async", "sync"; NULL for an unknown value. */
const char *hm_tracker_mode_name(enum hm_tracker_mode mode);
/* 0, or -EINVAL for an unknown name. */
int hm_tracker_mode_parse(const char *name, enum hm_tracker_mode *out);
/* The mode that want resolves to on a kernel with caps: ASYNC or SYNC, or
 * -ENOTSUP (want = ASYNC without WP_ASYNC/PAGEMAP_SCAN, or no uffd-wp at
 * all), -EPERM (userfaultfd refused to us). */
int hm_tracker_mode_pick(const struct hm_caps *caps,
			 enum hm_tracker_mode want);

struct hm_tracker_opts {
	enum hm_tracker_mode mode;	/* AUTO picks async when available */
	struct hm_log log;
	uint64_t nbits;	/* size of L: bit indexes of all ranges < nbits */
	/* UFFD_FEATURE_* bits never to request even when the kernel has
	 * them; 0 normally. Lets tests run the code paths of older kernels
	 * (e.g. without WP_UNPOPULATED, as Debian 12's 6.1) on a new one. */
	uint64_t disable_features;
	/* Hot pages (R11, docs/tracker.md), off by default: with keep_hot, a
	 * page found written by two harvests in a row (hot_after 0 or 2;
	 * larger values act as 2; 1: every written page) is not protected
	 * again; it stays writable and every
	 * later harvest reports it written, until every hot_period-th
	 * harvest (0: 8th) protects all written pages again. Fewer faults,
	 * more pages sent again. Without it every written page is protected
	 * again at every harvest, and a harvest is exact. */
	bool keep_hot;
	unsigned hot_period;
	unsigned hot_after;
	/* Tracking unit (R12, docs/tracker.md), 0 = the page size; else a
	 * power of two above it (2 MiB: a THP). A write fault un-protects the
	 * whole aligned unit (within its range) and records every page of
	 * it written: one fault per unit and harvest instead of one per
	 * page, more pages reported. Sync mode only (in async mode the
	 * kernel splits a write-protected THP at its first write); with
	 * mode AUTO a unit picks sync. On anonymous THP the kernel then
	 * faults, un-protects and re-protects the huge page whole. */
	uint64_t unit_bytes;
};

/* Threads: add_range, start, harvest, reprotect, stop and close are
 * called from one control thread (or serialised by the caller); the
 * tracker's own fault thread (sync mode) runs beside them. How it works,
 * what the kernel does, and the costs: docs/tracker.md. */
struct hm_tracker;

/* Tracker for memory of this process. NULL with errno: ENOTSUP (no uffd-wp,
 * or the forced mode is missing), EPERM (vm.unprivileged_userfaultfd=0 and
 * no privilege; the log says so), ENOMEM, EINVAL. */
struct hm_tracker *hm_tracker_open(const struct hm_caps *caps,
				   const struct hm_tracker_opts *opts);

/* Tracker for memory of process pid. uffd is a userfaultfd created inside
 * pid and already taken into this process (hm_uffd_take_remote()); the
 * tracker owns it from now on (closes it even on failure). */
struct hm_tracker *hm_tracker_open_remote(const struct hm_caps *caps,
					  const struct hm_tracker_opts *opts,
					  pid_t pid, int uffd);

/* Take fd number target_fd of process pid into this process:
 * pidfd_open + pidfd_getfd. Returns the new fd, or -ESRCH (gone), -EPERM,
 * -EBADF (no such fd there), -ENOSYS. */
int hm_uffd_take_remote(pid_t pid, int target_fd);

/* In-target half, for processes that cooperate (tests, the synthetic
 * guest): create a userfaultfd in the calling process (O_CLOEXEC |
 * O_NONBLOCK; syscall, then /dev/userfaultfd) and return it, or -errno.
 * Whoever takes it must make sure the target closes its own copy once
 * taken, so that the engine's exit releases the guest (a sync-mode fault
 * with nobody reading would block the guest forever). */
int hm_uffd_create(void);

/* Register [addr, addr + len) of the tracked process for write tracking,
 * bits first_bit... in L. addr/len page aligned. Memory kinds: private
 * anonymous, shmem/memfd (MAP_SHARED), files on /dev/shm; THP or not.
 * 0, or -EINVAL (alignment, bits past nbits), -EBUSY (already registered
 * with a userfaultfd), -ENOTSUP (memory kind not supported by this kernel),
 * -ESRCH (remote process gone), -ENOMEM. */
int hm_tracker_add_range(struct hm_tracker *t, uint64_t addr, uint64_t len,
			 uint64_t first_bit);

/* Write-protect every registered range (and, in sync mode, start the fault
 * thread). After it returns, every write to a registered page is recorded
 * (R1). Pages never populated are covered too (WP_UNPOPULATED, or by
 * populating them read-only first on kernels without it). 0 or -errno. */
int hm_tracker_start(struct hm_tracker *t);

/* OR into out the bits of every page written since start or the previous
 * harvest, and write-protect those pages again, except hot ones (R11):
 * those stay writable and are reported at every harvest, written or not.
 * Returns the number of pages
 * harvested (>= 0), or -ESRCH (remote process gone), -errno. out must have
 * at least opts.nbits bits. */
long hm_tracker_harvest(struct hm_tracker *t, struct hm_bitmap *out);

/* Forget any write recorded for bits [first_bit, first_bit + npages) and
 * write-protect those pages again (R4, ISOLATED hints): after it returns, a
 * write to them is recorded anew. 0 or -errno (-EINVAL out of range). */
int hm_tracker_reprotect(struct hm_tracker *t, uint64_t first_bit,
			 uint64_t npages);

/* Remove protection, stop the fault thread, unregister every range; the
 * tracked process runs untouched afterwards. Idempotent. 0 or -errno (the
 * ranges are released anyway). */
int hm_tracker_stop(struct hm_tracker *t);

/* hm_tracker_stop() if needed, then free. NULL-safe. */
void hm_tracker_close(struct hm_tracker *t);

enum hm_tracker_mode hm_tracker_get_mode(const struct hm_tracker *t);

/* The UFFD_FEATURE_* bits this tracker's userfaultfd was configured with
 * (UFFDIO_API). */
uint64_t hm_tracker_get_features(const struct hm_tracker *t);

struct hm_tracker_stats {
	uint64_t faults;	/* sync mode: write faults handled */
	uint64_t harvests;
	uint64_t pages_harvested;
	uint64_t harvest_ns;	/* total time spent in harvest */
	uint64_t pages_reprotected; /* written pages protected again */
	uint64_t pages_kept;	/* harvested pages left writable (R11) */
};
void hm_tracker_get_stats(const struct hm_tracker *t,
			  struct hm_tracker_stats *st);

#ifdef __cplusplus
}
#endif
#endif

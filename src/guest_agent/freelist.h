/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's view of the guest kernel's free lists: a snapshot read
 * through the hintmig_free module (kmod/hintmig_free.h), turned into
 * sorted, merged guest-physical ranges.
 */
#ifndef HM_AGENT_FREELIST_H
#define HM_AGENT_FREELIST_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/hints/hintchan.h"
#include "kmod/hintmig_free.h"

struct hm_fl {
	int fd;
	struct hmf_info info;
	struct hmf_rec *recs;	/* one ioctl's worth */
	size_t nrecs;
};

/* Open the module's device. 0, or -errno with *reason set to the
 * enum hm_hc_nohint_reason the agent's HELLO gives and why filled in. */
int hm_fl_open(struct hm_fl *fl, const char *dev, unsigned *reason,
	       char *why, size_t whylen);
void hm_fl_close(struct hm_fl *fl);
/* Refresh fl->info (free and per-CPU page counts). 0 or -errno. */
int hm_fl_info(struct hm_fl *fl);

struct hm_fl_stats {
	uint64_t records;	/* free blocks read */
	uint64_t pages;		/* pages in the ranges handed back */
	uint64_t holds;		/* zone->lock holds */
	uint64_t hold_ns_max;	/* longest hold */
	uint64_t hold_ns_total;
	uint64_t restarts;	/* stale cursors (list read again) */
	uint64_t cut;		/* lists cut short by their budget */
	uint64_t dropped;	/* ranges left out for max_ranges */
	uint64_t walk_ns;	/* wall time of the snapshot */
	uint64_t cpu_ns;	/* this thread's CPU time for it */
};

/* Should the snapshot stop? Called between pieces; nonzero aborts. */
typedef int (*hm_fl_abort_fn)(void *opaque);

/*
 * Take a snapshot now and return its free blocks as ranges of guest-
 * physical bytes, sorted by address, adjacent ones merged, at most
 * max_ranges (the largest are kept). *out is grown with realloc (*cap).
 * Returns the number of ranges, -ECANCELED if abort said so, or -errno.
 */
long hm_fl_snapshot(struct hm_fl *fl, struct hm_gpa_range **out,
		    size_t *cap, uint32_t max_ranges, hm_fl_abort_fn abort_fn,
		    void *opaque, struct hm_fl_stats *st);

#endif

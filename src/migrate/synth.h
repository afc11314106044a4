/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synthetic guest: a child process that behaves like a guest's memory
 * for the tests, the CLI and the benchmark.
 *
 * It owns ram_bytes of RAM (one block, guest-physical base 0), runs writer
 * threads at a set rate and pattern, and a page allocator that allocates,
 * writes, frees and reuses pages. Free pages keep non-zero garbage, as in a
 * real guest. In-use pages carry checkable content: a header with the page
 * number, a version and a checksum of the rest of the page.
 *
 * It answers hint requests on the hint channel (hintchan.h) from its free
 * lists, as FREE hints (pages stay on the free list and may be reused at
 * once) or ISOLATED ones (taken off the free list until acknowledged).
 *
 * The child creates its userfaultfd itself (the in-target half); the
 * parent takes it with pidfd_getfd and the child then closes its copy.
 * The in-use map lives in a shared mapping so that the parent can read it
 * while the child is paused, for verification.
 */
#ifndef HM_MIGRATE_SYNTH_H
#define HM_MIGRATE_SYNTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hintmig/bitmap.h>
#include <hintmig/migrate.h>

#include "hintchan.h"

enum hm_synth_pattern {
	HM_SYNTH_UNIFORM = 0,	/* writes spread over all in-use pages */
	HM_SYNTH_HOTSET,	/* writes mostly to hot_frac of in-use pages */
};

/* How the child answers REQUEST(e, max_ranges): the free pages as
 * coalesced runs (max_ranges 0: no limit; more runs than max_ranges: the
 * largest ones), in HINTS messages of up to HM_HC_MAX_RANGES, then
 * DONE(e). ISOLATED: those pages leave the free list until ACK(e) names
 * them, STOP(e) arrives, a REQUEST of another epoch arrives, or the channel
 * closes. STOP(e) also drops HINTS(e) not yet sent.
 *
 * Misbehaviour for the hostile-input tests (a lying guest), per request;
 * the lies go first in the epoch's answer:
 *  OUT_OF_RANGE  4 ranges: just past the end, straddling the end, gpa + len
 *                wrapping around, and "all of memory" (gpa 0, huge len)
 *  MISALIGNED    4 ranges: gpa + 1, len page - 1, half pages, len 0
 *  OVERLAP       the first (up to 8) free runs again, and their tails:
 *                overlapping, but every page really free
 *  FLOOD         16 more HINTS messages of 4096 single-page FREE ranges
 *  STALE         first, the previous request's ranges under the previous
 *                epoch number
 *  GARBAGE       first, one malformed frame (flavour: e % 5: noise,
 *                unknown type, count/payload mismatch, unknown kind,
 *                payload too long)
 *  LIE_INUSE     up to 8 in-use pages as single-page ranges, recorded in
 *                the lied map (hm_synth_lied) before they are sent
 *  DELAY_HINTS   FREE kind whatever hint_kind says: after the snapshot,
 *                reuse and write up to 64 (1/16) of the hinted pages (the
 *                in-use count kept), then send HINTS(e) + DONE(e); at the
 *                next REQUEST(e') send the same HINTS(e) again first, when
 *                epoch e is surely over. A FREE hint that also clears L
 *                (R3 broken) loses the first batch's reused pages; applying
 *                stale hints (R2 broken) loses them through the second
 *                batch, unless the round sent them before it arrived. */
enum hm_synth_misbehave {
	HM_SYNTH_LIE_OUT_OF_RANGE = 1u << 0,	/* ranges past guest RAM */
	HM_SYNTH_LIE_MISALIGNED = 1u << 1,	/* unaligned gpa/len */
	HM_SYNTH_LIE_OVERLAP = 1u << 2,		/* overlapping ranges */
	HM_SYNTH_LIE_FLOOD = 1u << 3,		/* far too many ranges */
	HM_SYNTH_LIE_STALE = 1u << 4,		/* answers with old epochs */
	HM_SYNTH_LIE_GARBAGE = 1u << 5,		/* malformed frames */
	HM_SYNTH_LIE_INUSE = 1u << 6,		/* hints pages in use: may
						 * lose only its own data */
	HM_SYNTH_SAY_NOHINTS = 1u << 8,		/* HELLO with NOHINTS (an agent
						 * without its kernel module) */
	HM_SYNTH_LIE_AMPLIFY = 1u << 9,		/* true FREE runs, each sent
						 * again and again: full
						 * messages of overlapping
						 * ranges (work amplification) */
	HM_SYNTH_DELAY_HINTS = 1u << 7,		/* report FREE hints late,
						 * after reusing the pages
						 * (provokes R2/R3 breaks) */
};

struct hm_synth_params {
	uint64_t ram_bytes;		/* page multiple */
	double used_frac;		/* in use in steady state, 0..1 */
	uint64_t dirty_rate;		/* page writes/s over all writers,
					 * 0 = idle */
	enum hm_synth_pattern pattern;
	double hot_frac;		/* HOTSET: fraction of in-use pages */
	unsigned writers;		/* writer threads, default 1 */
	uint64_t churn_rate;		/* alloc+free pairs per second */
	enum hm_hint_kind hint_kind;	/* how it answers requests */
	bool memfd;			/* RAM is a memfd (MAP_SHARED) */
	bool thp;			/* MADV_HUGEPAGE, else NOHUGEPAGE */
	bool hugetlb;			/* RAM from the hugetlb pool (2 MiB
					 * pages; not with memfd): the pool
					 * must hold ram_bytes */
	bool poison;			/* free pages hold poison_byte (R7) */
	uint8_t poison_byte;
	unsigned misbehave;		/* enum hm_synth_misbehave */
	uint64_t seed;
};

void hm_synth_params_default(struct hm_synth_params *p);

/* Shared between child and parent (MAP_SHARED anonymous, created before
 * the fork). Counters are updated with atomics by the child. */
struct hm_synth_shared {
	uint64_t writes;		/* page writes done */
	uint64_t allocs, frees;
	uint64_t hint_requests, hint_ranges_sent, acks;
	uint64_t check_errors;		/* self-check failures */
	uint64_t ready;			/* 1 once in steady state */
	uint64_t lies;			/* in-use pages hinted (LIE_INUSE) */
	uint64_t isolated_held;		/* pages now held for ISOLATED hints */
	uint64_t alloc_failures;	/* churn found no free page */
	uint64_t reused_hinted;		/* DELAY_HINTS: hinted pages reused */
	/* followed, at a 64-byte aligned offset, by three bitmaps of
	 * npages bits each: in use; lied about (LIE_INUSE: pages that were
	 * in use when hinted, cumulative); busy (being written: rewritten
	 * by a writer, filled by the allocator, poisoned when freed; while
	 * paused, such a page may be torn) */
};

struct hm_synth {
	pid_t pid;
	int hint_fd;		/* host end of the hint channel; whoever takes
				 * it (hm_hint_source_channel_new) sets -1 */
	int ctl_fd;		/* control socket to the child */
	int uffd_errno;		/* why uffd is -1 after start, else 0 */
	int uffd;		/* taken from the child, or -1 once given
				 * away (hm_guest_process_new owns it) */
	struct hm_ram_block block; /* host_addr in the child; memfd: an fd
				    * in this process when params.memfd */
	uint64_t page_size;
	uint64_t npages;
	struct hm_synth_shared *shared;
	size_t shared_len;
	struct hm_synth_params params;
};

/* Fork the synthetic guest and wait until it is in steady state (RAM
 * filled with data, then used_frac kept in use, the rest freed garbage).
 * 0 or -errno; on failure nothing is left running. */
int hm_synth_start(const struct hm_synth_params *p, struct hm_synth *s,
		   const struct hm_log *log);

/* Snapshot of the in-use pages into out (npages bits); meaningful while
 * the child is paused. 0 or -errno. */
int hm_synth_inuse(const struct hm_synth *s, struct hm_bitmap *out);

/* Number of in-use pages now. */
uint64_t hm_synth_inuse_count(const struct hm_synth *s);

/* Check one page image (page_size bytes) against its own header and
 * checksum: 1 valid in-use content, 0 not. For verifying a destination's
 * copy independently of the source. */
int hm_synth_page_valid(const void *page, uint64_t page_size,
			uint64_t page_index);

/* Snapshots of the lied-about pages (LIE_INUSE: verification mismatches
 * are allowed on exactly these) and of the pages being rewritten at this
 * instant (busy: while paused, hm_synth_page_valid may fail on them). out
 * has at least npages bits. 0 or -EINVAL. */
int hm_synth_lied(const struct hm_synth *s, struct hm_bitmap *out);
int hm_synth_busy(const struct hm_synth *s, struct hm_bitmap *out);

/* A fresh userfaultfd from the child, taken into this process (for the
 * next tracker: a userfaultfd serves one tracker only). Returns the fd or
 * -errno (-ETIMEDOUT when the child does not answer: it must not be
 * paused). */
int hm_synth_new_uffd(struct hm_synth *s);

/* Kill and reap the child, release everything. Safe on a failed start. */
void hm_synth_stop(struct hm_synth *s);

#endif

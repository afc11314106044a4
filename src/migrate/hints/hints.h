/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Hint sessions of one migration (internal API of the source engine).
 *
 * Owner: source.c creates one struct hm_hints per migration over a hint
 * source (hintchan.h) it does not own, the guest, the migration bitmap M
 * and the write tracker. A thread owned by this module polls the source,
 * receives HINTS/DONE, validates every range and applies it:
 *
 *   FREE:     M &= ~H                                   (R3)
 *   ISOLATED: M &= ~H, hm_tracker_reprotect(H), ACK(H)  (R4)
 *
 * (pages already acknowledged in the same epoch are no longer held by the
 * guest: reported ISOLATED again, they get the FREE treatment)
 *
 * Sessions are numbered by epoch. A hint is applied only while its epoch
 * is the open one (R2): hm_hints_end_epoch() closes it and returns only
 * when no applier is between its epoch check and the end of its apply
 * (RCU with liburcu urcu-memb, else a mutex). hm_hints_close() closes
 * hinting for good before the final pause (R5): nothing is applied after
 * it returns.
 *
 * The guest is untrusted: a range outside guest RAM, spanning two blocks,
 * misaligned or empty is rejected and counted; more than max_ranges ranges
 * (or messages) in one session is a flood that ends the session for that
 * epoch; a malformed frame, a dead channel or a failed send disables
 * hinting for the rest of the migration with one log line. None of these
 * fails the migration, and no call here waits on the guest without a
 * bound.
 */
#ifndef HM_MIGRATE_HINTS_H
#define HM_MIGRATE_HINTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hintmig/bitmap.h>
#include <hintmig/hintmig.h>
#include <hintmig/wp_tracker.h>

#include "migrate/guests/guest.h"
#include "migrate/hints/hintchan.h"

struct hm_hints;

struct hm_hints_opts {
	struct hm_hint_source *src;	/* not owned */
	struct hm_guest *guest;		/* not owned: validation, geometry */
	struct hm_bitmap *m;		/* the migration bitmap M */
	struct hm_bitmap *hinted;	/* optional: gets the bits a hint
					 * took out of M (hm_migration_hinted) */
	struct hm_tracker *tracker;	/* for ISOLATED (R4); not owned */
	uint32_t max_ranges;		/* per session, > 0 */
	unsigned unsafe;		/* enum hm_unsafe (tests only) */
	struct hm_log log;
};

/* Counters; every field is a running total over the migration. */
struct hm_hints_stats {
	uint64_t requested;	/* sessions requested (REQUEST sent) */
	uint64_t done;		/* sessions the guest finished (DONE) */
	uint64_t received;	/* ranges received, any epoch */
	uint64_t applied;	/* ranges applied */
	uint64_t pages_applied;	/* pages in applied ranges */
	uint64_t pages_cleared;	/* bits of M that a hint cleared */
	uint64_t dropped_stale;	/* ranges of a closed epoch (R2/R5) */
	uint64_t rejected;	/* ranges failing validation or flooding */
	uint64_t acked;		/* ISOLATED ranges acknowledged */
	uint64_t floods;	/* sessions ended by a flood */
	uint64_t reisolated_pages; /* reported ISOLATED again after their
				    * ACK in the same epoch: FREE only */
	uint64_t session_pages_max; /* most pages one session named */
	uint64_t apply_us;	/* time inside apply sections */
	bool disabled;		/* hinting off for the rest of the migration */
};

/* NULL with errno (EINVAL, ENOMEM). Nothing is sent yet. */
struct hm_hints *hm_hints_new(const struct hm_hints_opts *o);

/* Wait up to timeout_ms for the guest's HELLO and check it: page size
 * equal to the guest's, no free page poisoning with a non-zero pattern
 * (R7: the destination's fresh memory would not hold it, so hinting is
 * refused). Then start the receiving thread. 0: hinting on; -errno:
 * hinting is off for this migration (the log says why) and every other
 * call is a no-op; the migration goes on without hints. */
int hm_hints_start(struct hm_hints *h, uint64_t timeout_ms);

/* Open session epoch (> every earlier one) and send REQUEST. No-op when
 * hinting is off or closed. 0, or -errno when the send failed (hinting is
 * then disabled; the caller may ignore it). */
int hm_hints_begin_epoch(struct hm_hints *h, uint64_t epoch);

/* Wait until the guest sent DONE for epoch, hinting went off, *cancel
 * became true (may be NULL) or timeout_ms passed. 1 when DONE arrived,
 * 0 otherwise. */
int hm_hints_wait_done(struct hm_hints *h, uint64_t epoch,
		       uint64_t timeout_ms, const atomic_bool *cancel);

/* Close the open session (R2): afterwards hints of this epoch are stale.
 * Returns once no applier is mid-apply, then sends STOP(epoch) (an
 * ISOLATED reporter releases what it still holds). No-op when epoch is not
 * the open one. 0 or -errno of the STOP send (hinting then disabled). */
int hm_hints_end_epoch(struct hm_hints *h, uint64_t epoch);

/* Close hinting for good (R5), before the final pause: ends the open
 * session, stops the thread; nothing is applied after it returns.
 * Idempotent. */
void hm_hints_close(struct hm_hints *h);

/* HM_UNSAFE_HINTS_AFTER_PAUSE only: while held, the thread does not read
 * the source (answers wait in the socket). */
void hm_hints_set_hold(struct hm_hints *h, bool hold);

/* True while hinting is on (started, not disabled, not closed). */
bool hm_hints_active(const struct hm_hints *h);

void hm_hints_get_stats(const struct hm_hints *h, struct hm_hints_stats *st);

/* hm_hints_close() if needed, then free. NULL-safe. The source is left
 * open for its owner. */
void hm_hints_free(struct hm_hints *h);

#endif

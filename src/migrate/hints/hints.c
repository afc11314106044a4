/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * src/migrate/hints/ owns the guest's free-page hints on the host: this
 * file the sessions that apply them to M, hintchan.c the channel's
 * protocol (shared with hintmig-agent), hint_source_channel.c a source
 * reading one channel.
 *
 * Hint sessions (hints.h): one receiving thread per migration applies the
 * guest's free-page hints to the migration bitmap M.
 *
 * Who owns what:
 *  - the migration thread opens and closes epochs (begin/end/close) and
 *    sends REQUEST and STOP;
 *  - the hints thread receives, validates and applies, and sends ACK;
 *  - sends to the source from either thread go under send_lock;
 *  - cur_epoch is the open session (0: none). An applier reads it inside a
 *    read-side section (RCU, or apply_lock without liburcu) and applies
 *    only within that same section; end_epoch stores 0 and then waits for
 *    every section in progress (synchronize_rcu / lock+unlock), so when it
 *    returns nothing of the closed epoch is being or will be applied (R2),
 *    and the ACKs of what was applied precede the STOP on the channel;
 *  - session bookkeeping (ranges and messages of the current epoch) is
 *    touched by the hints thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hm_config.h"

#if HM_HAVE_URCU
#include <urcu/urcu-memb.h>
#endif

#include <hintmig/migrate.h>

#include "migrate/hints/hints.h"

/* Messages handled per wake-up before the stop flag is looked at again. */
#define HINTS_BURST 64
/* How long the thread sleeps in poll() at most (it is woken anyway). */
#define HINTS_POLL_MS 500
/* HM_UNSAFE_ACK_BEFORE_REPROTECT: the window between the early ACK and
 * the re-protection, wide enough for the reporter to reuse the pages. */
#define HINTS_UNSAFE_ACK_DELAY_US 20000

struct hm_hints {
	struct hm_hint_source *src;
	struct hm_guest *guest;
	struct hm_bitmap *m;
	struct hm_bitmap *hinted;	/* NULL: not recorded */
	struct hm_tracker *tracker;
	struct hm_log log;
	unsigned unsafe;
	uint32_t max_ranges;
	uint32_t max_msgs;
	uint64_t max_pages;	/* per session: the work budget, in pages */

	_Atomic uint64_t cur_epoch;	/* open session, 0 = none */
	atomic_bool started;
	atomic_bool closed;		/* R5: for good */
	atomic_bool disabled;
	atomic_bool hold;
	atomic_bool stop;

	pthread_t thread;
	bool thread_started;
	int wake_fd;			/* eventfd: stop, hold released */
	int src_fd;			/* the source's pollfd */

	pthread_mutex_t send_lock;	/* every send to the source */
#if !HM_HAVE_URCU
	pthread_mutex_t apply_lock;	/* read side of the epoch check */
#endif
	pthread_mutex_t lock;		/* done_epoch + cond */
	pthread_cond_t cond;
	uint64_t done_epoch;

	/* hints thread only */
	uint64_t sess_epoch;
	uint64_t sess_ranges;
	uint64_t sess_msgs;
	uint64_t sess_pages;
	bool sess_flooded;
	bool sess_warned;
	bool sess_warned_iso;
	struct hm_page_range *pr;	/* HM_HC_MAX_RANGES: validated */
	struct hm_gpa_range *ack;	/* HM_HC_MAX_RANGES: their gpa form */
	struct hm_page_range *sub_pr;	/* HM_HC_MAX_RANGES: ISOLATED parts */
	struct hm_gpa_range *sub_gpa;	/* to re-protect and acknowledge */
	/* pages acknowledged in the open epoch: the guest holds them no
	 * longer (migration thread clears it between epochs) */
	struct hm_bitmap acked;

	_Atomic uint64_t n_requested, n_done, n_received, n_applied;
	_Atomic uint64_t n_pages_applied, n_pages_cleared, n_stale;
	_Atomic uint64_t n_rejected, n_acked, n_floods, n_reisolated;
	_Atomic uint64_t sess_pages_max, apply_ns;
};

static void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* ---- the read side of the epoch check ---------------------------------- */

static void apply_enter(struct hm_hints *h)
{
#if HM_HAVE_URCU
	(void)h;
	urcu_memb_read_lock();
#else
	pthread_mutex_lock(&h->apply_lock);
#endif
}

static void apply_leave(struct hm_hints *h)
{
#if HM_HAVE_URCU
	(void)h;
	urcu_memb_read_unlock();
#else
	pthread_mutex_unlock(&h->apply_lock);
#endif
}

/* Wait until every read-side section that may have seen the old epoch is
 * over. */
static void apply_barrier(struct hm_hints *h)
{
#if HM_HAVE_URCU
	(void)h;
	urcu_memb_synchronize_rcu();
#else
	pthread_mutex_lock(&h->apply_lock);
	pthread_mutex_unlock(&h->apply_lock);
#endif
}

/* ---- helpers ------------------------------------------------------------ */

static void wake_thread(struct hm_hints *h)
{
	uint64_t one = 1;

	if (h->wake_fd >= 0 && write(h->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

/* Hinting off for the rest of the migration; one log line. Safe from
 * either thread. */
static void disable(struct hm_hints *h, int err, const char *why)
{
	bool was = atomic_exchange(&h->disabled, true);

	atomic_store(&h->cur_epoch, 0);
	if (!was)
		hm_logf(&h->log, HM_LOG_WARN,
			"hints: %s (%s): hinting disabled for the rest of "
			"the migration", why, strerror(err > 0 ? err : -err));
	pthread_mutex_lock(&h->lock);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	wake_thread(h);
}

static int send_request(struct hm_hints *h, uint64_t epoch)
{
	int r;

	pthread_mutex_lock(&h->send_lock);
	r = h->src->ops->request(h->src, epoch, h->max_ranges);
	pthread_mutex_unlock(&h->send_lock);
	return r;
}

static int send_stop(struct hm_hints *h, uint64_t epoch)
{
	int r;

	pthread_mutex_lock(&h->send_lock);
	r = h->src->ops->stop(h->src, epoch);
	pthread_mutex_unlock(&h->send_lock);
	return r;
}

static int send_ack(struct hm_hints *h, uint64_t epoch,
		    const struct hm_gpa_range *r, uint32_t n)
{
	int ret;

	pthread_mutex_lock(&h->send_lock);
	ret = h->src->ops->ack(h->src, epoch, r, n);
	pthread_mutex_unlock(&h->send_lock);
	return ret;
}

/* ---- applying ----------------------------------------------------------- */

/* Session bookkeeping for one HINTS message of epoch (the open one, or a
 * stale one under HM_UNSAFE_APPLY_STALE). false: flooded, reject it. */
static bool session_admit(struct hm_hints *h, uint64_t epoch, uint32_t n)
{
	if (h->sess_epoch != epoch) {
		h->sess_epoch = epoch;
		h->sess_ranges = 0;
		h->sess_msgs = 0;
		h->sess_pages = 0;
		h->sess_flooded = false;
		h->sess_warned = false;
		h->sess_warned_iso = false;
	}
	if (h->sess_flooded)
		return false;
	h->sess_msgs++;
	if (h->sess_ranges + n > h->max_ranges ||
	    h->sess_msgs > h->max_msgs) {
		h->sess_flooded = true;
		ctr_add(&h->n_floods, 1);
		hm_logf(&h->log, HM_LOG_WARN,
			"hints: epoch %" PRIu64 ": flood (%" PRIu64
			" ranges, %" PRIu64 " messages, limit %u ranges): "
			"session ended, the rest is rejected",
			epoch, h->sess_ranges + n, h->sess_msgs, h->max_ranges);
		return false;
	}
	h->sess_ranges += n;
	return true;
}

/* The work budget (docs/design.md, R13): a session may name at most
 * max_pages pages, counted range by range, overlaps counted again. Every
 * step of applying a hint (M, the hinted map, L and the re-protection of
 * ISOLATED ranges) costs at most a word operation per 64 named pages
 * plus one per range, so a session costs O(max_pages / 64 + max_ranges),
 * whatever the ranges repeat or overlap: a lying guest cannot stretch the
 * apply section that the sync, and so the cut-over, waits for. Over the
 * budget, the session ends as a flood. */
static bool session_admit_pages(struct hm_hints *h, uint64_t epoch,
				uint64_t pages)
{
	if (h->sess_pages + pages <= h->max_pages) {
		h->sess_pages += pages;
		if (h->sess_pages > atomic_load(&h->sess_pages_max))
			atomic_store(&h->sess_pages_max, h->sess_pages);
		return true;
	}
	h->sess_flooded = true;
	ctr_add(&h->n_floods, 1);
	hm_logf(&h->log, HM_LOG_WARN, "hints: epoch %" PRIu64 ": flood (%"
		PRIu64 " pages named, budget %" PRIu64 "): session ended, the "
		"rest is rejected", epoch, h->sess_pages + pages,
		h->max_pages);
	return false;
}

/* Validate the ranges of msg into h->pr (pages) and h->ack (gpa). Returns
 * how many passed. */
static uint32_t validate(struct hm_hints *h, const struct hm_hc_msg *msg)
{
	uint32_t ok = 0, bad = 0;
	int first_err = 0;

	for (uint32_t i = 0; i < msg->u.hints.count; i++) {
		const struct hm_gpa_range *g = &msg->u.hints.ranges[i];
		uint64_t first, n;
		int r = hm_guest_gpa_to_pages(h->guest, g->gpa, g->len, &first,
					      &n);

		if (r < 0) {
			if (!bad)
				first_err = r;
			bad++;
			continue;
		}
		h->pr[ok].start = first;
		h->pr[ok].len = n;
		h->ack[ok] = *g;
		ok++;
	}
	if (bad) {
		ctr_add(&h->n_rejected, bad);
		if (!h->sess_warned) {
			h->sess_warned = true;
			hm_logf(&h->log, HM_LOG_WARN,
				"hints: epoch %" PRIu64 ": %u of %u ranges "
				"rejected (%s), e.g. gpa 0x%" PRIx64
				" len 0x%" PRIx64, msg->epoch, bad,
				msg->u.hints.count, strerror(-first_err),
				msg->u.hints.ranges[0].gpa,
				msg->u.hints.ranges[0].len);
		}
	}
	return ok;
}

/* HM_UNSAFE_HINT_CLEARS_LOG only: re-protect the validated FREE ranges,
 * which forgets their writes in L (R3 broken). A range whose
 * re-protection fails goes back into M. Returns how many ranges stay
 * applied (compacted in place). */
static uint32_t reprotect(struct hm_hints *h, uint32_t n)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < n; i++) {
		int r = hm_tracker_reprotect(h->tracker, h->pr[i].start,
					     h->pr[i].len);

		if (r < 0) {
			hm_bitmap_set_range_atomic(h->m, h->pr[i].start,
						   h->pr[i].len);
			hm_logf(&h->log, HM_LOG_WARN,
				"hints: re-protecting pages %" PRIu64
				"+%" PRIu64 " failed (%s): hint not applied",
				h->pr[i].start, h->pr[i].len, strerror(-r));
			continue;
		}
		h->pr[kept] = h->pr[i];
		h->ack[kept] = h->ack[i];
		kept++;
	}
	return kept;
}

/* Re-protect and acknowledge n pending ISOLATED parts (R4): the ACK goes
 * only after the re-protection (HM_UNSAFE_ACK_BEFORE_REPROTECT turns the
 * order round, with a delay that lets the reporter reuse the pages). A
 * part whose re-protection fails goes back into M and is not
 * acknowledged. Returns the pages applied. */
static uint64_t iso_flush(struct hm_hints *h, uint64_t epoch, uint32_t n,
			  bool early_ack)
{
	uint64_t pages = 0;
	uint32_t kept = 0;
	int r;

	if (early_ack && n) {
		r = send_ack(h, epoch, h->sub_gpa, n);
		if (r < 0)
			disable(h, r, "ACK send failed");
		else
			ctr_add(&h->n_acked, n);
		usleep(HINTS_UNSAFE_ACK_DELAY_US);
	}
	for (uint32_t j = 0; j < n; j++) {
		r = hm_tracker_reprotect(h->tracker, h->sub_pr[j].start,
					 h->sub_pr[j].len);
		if (r < 0) {
			hm_bitmap_set_range_atomic(h->m, h->sub_pr[j].start,
						   h->sub_pr[j].len);
			hm_logf(&h->log, HM_LOG_WARN,
				"hints: re-protecting pages %" PRIu64
				"+%" PRIu64 " failed (%s): hint not applied",
				h->sub_pr[j].start, h->sub_pr[j].len,
				strerror(-r));
			continue;
		}
		h->sub_pr[kept] = h->sub_pr[j];
		h->sub_gpa[kept] = h->sub_gpa[j];
		kept++;
	}
	if (!early_ack && kept) {
		r = send_ack(h, epoch, h->sub_gpa, kept);
		if (r < 0)
			disable(h, r, "ACK send failed");
		else
			ctr_add(&h->n_acked, kept);
	}
	for (uint32_t j = 0; j < kept; j++) {
		hm_bitmap_set_range_atomic(&h->acked, h->sub_pr[j].start,
					   h->sub_pr[j].len);
		pages += h->sub_pr[j].len;
	}
	return pages;
}

/* ISOLATED ranges h->pr[0..n) (M already cleared): re-protect and
 * acknowledge what this epoch has not acknowledged yet. A page reported
 * ISOLATED again after its ACK is no longer held by the guest, which may
 * have reused it already: re-protecting it would forget a legitimate
 * write, so it keeps the FREE treatment (M only, R3). Returns the pages
 * re-protected. */
static uint64_t isolate(struct hm_hints *h, uint64_t epoch, uint32_t n,
			bool early_ack)
{
	uint64_t ps = h->guest->page_size, pages = 0, again = 0;
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t start = h->pr[i].start, end = start + h->pr[i].len;
		uint64_t p = start;

		while (p < end) {
			uint64_t q = hm_bitmap_find_next_set(&h->acked, p);

			if (q > end)
				q = end;
			if (q > p) {
				h->sub_pr[k].start = p;
				h->sub_pr[k].len = q - p;
				h->sub_gpa[k].gpa = h->ack[i].gpa +
						    (p - start) * ps;
				h->sub_gpa[k].len = (q - p) * ps;
				if (++k == HM_HC_MAX_RANGES) {
					pages += iso_flush(h, epoch, k,
							   early_ack);
					k = 0;
				}
			}
			if (q >= end)
				break;
			p = hm_bitmap_find_next_clear(&h->acked, q);
			if (p > end)
				p = end;
			again += p - q;
		}
	}
	if (k)
		pages += iso_flush(h, epoch, k, early_ack);
	if (again) {
		ctr_add(&h->n_reisolated, again);
		if (!h->sess_warned_iso) {
			h->sess_warned_iso = true;
			hm_logf(&h->log, HM_LOG_WARN,
				"hints: epoch %" PRIu64 ": %" PRIu64 " pages "
				"reported ISOLATED again after their ACK: "
				"taken as FREE", epoch, again);
		}
	}
	return pages;
}

static void apply_hints(struct hm_hints *h, const struct hm_hc_msg *msg)
{
	uint32_t count = msg->u.hints.count;
	uint32_t kind = msg->u.hints.kind;
	uint32_t n = 0;
	uint64_t cur, pages = 0, named = 0;
	struct timespec t0, t1;
	long cleared;
	bool isolated = kind == HM_HINT_ISOLATED;
	bool log_too = kind == HM_HINT_FREE &&
		       (h->unsafe & HM_UNSAFE_HINT_CLEARS_LOG);
	bool early_ack = isolated &&
			 (h->unsafe & HM_UNSAFE_ACK_BEFORE_REPROTECT);

	ctr_add(&h->n_received, count);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	apply_enter(h);
	cur = atomic_load_explicit(&h->cur_epoch, memory_order_acquire);
	if ((cur == 0 || msg->epoch != cur) &&
	    !((h->unsafe & HM_UNSAFE_APPLY_STALE) && msg->epoch != 0 &&
	      !atomic_load(&h->disabled))) {
		ctr_add(&h->n_stale, count);
		goto out;
	}
	if (!session_admit(h, msg->epoch, count)) {
		ctr_add(&h->n_rejected, count);
		goto out;
	}
	if (kind != HM_HINT_FREE && kind != HM_HINT_ISOLATED) {
		ctr_add(&h->n_rejected, count);
		goto out;
	}
	n = validate(h, msg);
	if (n == 0)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		named += h->pr[i].len;
	if (!session_admit_pages(h, msg->epoch, named)) {
		ctr_add(&h->n_rejected, n);
		goto out;
	}

	/* M &= ~H: both kinds (R3, R4); what was pending there is recorded
	 * as hinted, until the page is sent again (source.c) */
	cleared = h->hinted ? hm_bitmap_clear_ranges_into(h->m, h->pr, n,
							  h->hinted)
			    : hm_bitmap_apply_ranges(h->m, h->pr, n, false);
	if (cleared < 0) { /* validated above: cannot happen */
		ctr_add(&h->n_rejected, n);
		goto out;
	}
	ctr_add(&h->n_pages_cleared, (uint64_t)cleared);
	if (isolated) {
		/* R4: L too, re-protected, then the ACK */
		isolate(h, msg->epoch, n, early_ack);
	} else if (log_too) {
		/* R3 broken on purpose: a FREE hint also forgets L */
		n = reprotect(h, n);
	}
	for (uint32_t i = 0; i < n; i++)
		pages += h->pr[i].len;
	ctr_add(&h->n_applied, n);
	ctr_add(&h->n_pages_applied, pages);
out:
	apply_leave(h);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ctr_add(&h->apply_ns, (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000ll +
					 (t1.tv_nsec - t0.tv_nsec)));
}

static void handle_done(struct hm_hints *h, const struct hm_hc_msg *msg)
{
	uint64_t cur = atomic_load(&h->cur_epoch);

	if (cur == 0 || msg->epoch != cur)
		return;
	ctr_add(&h->n_done, 1);
	pthread_mutex_lock(&h->lock);
	if (msg->epoch > h->done_epoch)
		h->done_epoch = msg->epoch;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* Read what the source has now. false when the thread should stop
 * reading the source (hinting disabled). */
static bool drain_source(struct hm_hints *h)
{
	for (int i = 0; i < HINTS_BURST; i++) {
		struct hm_hc_msg msg;
		int r;

		if (atomic_load(&h->stop) || atomic_load(&h->hold))
			return true;
		r = h->src->ops->recv(h->src, &msg);
		if (r == -EAGAIN || r == -EINTR)
			return true;
		if (r < 0) {
			disable(h, r, r == -EPROTO ? "malformed hint frame"
				: r == -ENODATA ? "hint channel closed"
				: "hint channel failed");
			return false;
		}
		switch (msg.type) {
		case HM_HC_HINTS:
			apply_hints(h, &msg);
			break;
		case HM_HC_DONE:
			handle_done(h, &msg);
			break;
		case HM_HC_BYE:
			disable(h, ENODATA, "the guest said BYE");
			return false;
		default:
			/* HELLO repeated or anything else: ignored */
			break;
		}
	}
	return true;
}

static void *hints_thread(void *arg)
{
	struct hm_hints *h = arg;

#if HM_HAVE_URCU
	urcu_memb_register_thread();
#endif
	while (!atomic_load(&h->stop)) {
		struct pollfd p[2];
		nfds_t np = 1;
		bool reading = !atomic_load(&h->disabled) &&
			       !atomic_load(&h->hold);

		p[0].fd = h->wake_fd;
		p[0].events = POLLIN;
		p[0].revents = 0;
		if (reading) {
			p[1].fd = h->src_fd;
			p[1].events = POLLIN;
			p[1].revents = 0;
			np = 2;
		}
		if (poll(p, np, HINTS_POLL_MS) < 0 && errno != EINTR) {
			disable(h, errno, "poll on the hint channel failed");
			continue;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;

			if (read(h->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: someone else drained it */
			}
		}
		if (np == 2 && p[1].revents)
			drain_source(h);
	}
#if HM_HAVE_URCU
	urcu_memb_unregister_thread();
#endif
	return NULL;
}

/* ---- API ---------------------------------------------------------------- */

struct hm_hints *hm_hints_new(const struct hm_hints_opts *o)
{
	struct hm_hints *h = NULL;
	pthread_condattr_t ca;
	int err = EINVAL;

	if (!o || !o->src || !o->src->ops || !o->guest || !o->m ||
	    !o->tracker || o->max_ranges == 0)
		goto fail;
	err = ENOMEM;
	h = calloc(1, sizeof(*h));
	if (!h)
		goto fail;
	h->wake_fd = -1;
	h->src = o->src;
	h->guest = o->guest;
	h->m = o->m;
	h->hinted = o->hinted;
	h->tracker = o->tracker;
	h->log = o->log;
	h->unsafe = o->unsafe;
	h->max_ranges = o->max_ranges;
	h->max_msgs = o->max_ranges + 16;
	/* every page twice (a guest may report a page again) and slack */
	h->max_pages = 2 * o->m->nbits + HM_HC_MAX_RANGES;
	h->pr = calloc(HM_HC_MAX_RANGES, sizeof(*h->pr));
	h->ack = calloc(HM_HC_MAX_RANGES, sizeof(*h->ack));
	h->sub_pr = calloc(HM_HC_MAX_RANGES, sizeof(*h->sub_pr));
	h->sub_gpa = calloc(HM_HC_MAX_RANGES, sizeof(*h->sub_gpa));
	if (!h->pr || !h->ack || !h->sub_pr || !h->sub_gpa ||
	    hm_bitmap_init(&h->acked, o->m->nbits) < 0)
		goto fail;
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->wake_fd < 0) {
		err = errno;
		goto fail;
	}
	pthread_mutex_init(&h->send_lock, NULL);
#if !HM_HAVE_URCU
	pthread_mutex_init(&h->apply_lock, NULL);
#endif
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	return h;

fail:
	if (h) {
		free(h->pr);
		free(h->ack);
		free(h->sub_pr);
		free(h->sub_gpa);
		hm_bitmap_fini(&h->acked);
		free(h);
	}
	errno = err;
	return NULL;
}

static const char *const poison_names[] = {
	[HM_HC_POISON_NONE] = "none",
	[HM_HC_POISON_PATTERN] = "pattern",
};

int hm_hints_start(struct hm_hints *h, uint64_t timeout_ms)
{
	struct hm_hc_msg hello;
	char why[128];
	int r;

	memset(&hello, 0, sizeof(hello));
	r = h->src->ops->hello(h->src, &hello, timeout_ms);
	if (r < 0) {
		disable(h, r, "no HELLO from the hint source");
		goto out;
	}
	if (hello.u.hello.flags & HM_HC_HELLO_NOHINTS) {
		r = -ENOTSUP;
		snprintf(why, sizeof(why), "the guest cannot give hints: %s",
			 hm_hc_nohint_reason_name(hello.u.hello.reason));
		disable(h, r, why);
		goto out;
	}
	if (hello.u.hello.page_size != h->guest->page_size) {
		r = -EPROTO;
		snprintf(why, sizeof(why), "the guest's page size %u is not "
			 "the RAM's %" PRIu64, hello.u.hello.page_size,
			 h->guest->page_size);
		disable(h, r, why);
		goto out;
	}
	if (hello.u.hello.poison != HM_HC_POISON_NONE &&
	    !(hello.u.hello.poison == HM_HC_POISON_PATTERN &&
	      hello.u.hello.poison_byte == 0)) {
		/* R7: hinted pages are not sent, so they would arrive as the
		 * destination's fresh (zero) memory, not the pattern. */
		r = -ENOTSUP;
		snprintf(why, sizeof(why), "the guest poisons free pages "
			 "(%s, byte 0x%02x), R7 refuses hints",
			 hello.u.hello.poison < 2 ?
				 poison_names[hello.u.hello.poison] : "unknown",
			 hello.u.hello.poison_byte);
		disable(h, r, why);
		goto out;
	}
	h->src_fd = h->src->ops->pollfd(h->src);
	if (h->src_fd < 0) {
		r = h->src_fd;
		disable(h, r, "hint source has no fd");
		goto out;
	}
	r = -pthread_create(&h->thread, NULL, hints_thread, h);
	if (r < 0) {
		disable(h, r, "cannot start the hints thread");
		goto out;
	}
	h->thread_started = true;
	atomic_store(&h->started, true);
	hm_logf(&h->log, HM_LOG_DEBUG, "hints: on (max %u ranges a session)",
		h->max_ranges);
out:
	return r;
}

bool hm_hints_active(const struct hm_hints *h)
{
	return h && atomic_load(&h->started) && !atomic_load(&h->closed) &&
	       !atomic_load(&h->disabled);
}

int hm_hints_begin_epoch(struct hm_hints *h, uint64_t epoch)
{
	int r = 0;

	if (!hm_hints_active(h) || epoch == 0)
		goto out;
	/* Nothing of the closed epoch is being applied (end_epoch waited):
	 * the new one starts with nothing acknowledged. */
	hm_bitmap_clear_range_atomic(&h->acked, 0, h->acked.nbits);
	/* Open before asking, so that a quick answer is not stale. */
	atomic_store_explicit(&h->cur_epoch, epoch, memory_order_release);
	r = send_request(h, epoch);
	if (r < 0) {
		disable(h, r, "REQUEST send failed");
		goto out;
	}
	ctr_add(&h->n_requested, 1);
out:
	return r;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int hm_hints_wait_done(struct hm_hints *h, uint64_t epoch,
		       uint64_t timeout_ms, const atomic_bool *cancel)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	int done = 0;

	if (!hm_hints_active(h))
		return 0;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct timespec ts;
		uint64_t now = mono_ms(), until;

		if (h->done_epoch >= epoch) {
			done = 1;
			break;
		}
		if (atomic_load(&h->disabled) || atomic_load(&h->closed) ||
		    (cancel && atomic_load(cancel)) || now >= deadline)
			break;
		/* short slices: cancel is a plain flag */
		until = now + 50 < deadline ? now + 50 : deadline;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((until - now) / 1000);
		ts.tv_nsec += (long)((until - now) % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return done;
}

int hm_hints_end_epoch(struct hm_hints *h, uint64_t epoch)
{
	uint64_t expect = epoch;
	int r = 0;

	if (!h || epoch == 0)
		goto out;
	if (!atomic_compare_exchange_strong(&h->cur_epoch, &expect, 0))
		goto out;
	/* No applier that saw epoch is still applying after this ... */
	apply_barrier(h);
	/* ... so the STOP follows every ACK of what was applied. */
	if (!atomic_load(&h->disabled)) {
		r = send_stop(h, epoch);
		if (r < 0)
			disable(h, r, "STOP send failed");
	}
out:
	return r;
}

void hm_hints_set_hold(struct hm_hints *h, bool hold)
{
	if (!h)
		return;
	atomic_store(&h->hold, hold);
	wake_thread(h);
}

void hm_hints_close(struct hm_hints *h)
{
	uint64_t cur;

	if (!h || atomic_exchange(&h->closed, true))
		return;
	cur = atomic_exchange(&h->cur_epoch, 0);
	apply_barrier(h);
	if (cur && atomic_load(&h->started) && !atomic_load(&h->disabled) &&
	    send_stop(h, cur) < 0)
		disable(h, EPIPE, "STOP send failed");
	if (h->thread_started) {
		atomic_store(&h->stop, true);
		wake_thread(h);
		pthread_join(h->thread, NULL);
		h->thread_started = false;
	}
	pthread_mutex_lock(&h->lock);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

void hm_hints_get_stats(const struct hm_hints *h, struct hm_hints_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!h)
		return;
	st->requested = atomic_load(&h->n_requested);
	st->done = atomic_load(&h->n_done);
	st->received = atomic_load(&h->n_received);
	st->applied = atomic_load(&h->n_applied);
	st->pages_applied = atomic_load(&h->n_pages_applied);
	st->pages_cleared = atomic_load(&h->n_pages_cleared);
	st->dropped_stale = atomic_load(&h->n_stale);
	st->rejected = atomic_load(&h->n_rejected);
	st->acked = atomic_load(&h->n_acked);
	st->floods = atomic_load(&h->n_floods);
	st->reisolated_pages = atomic_load(&h->n_reisolated);
	st->session_pages_max = atomic_load(&h->sess_pages_max);
	st->apply_us = atomic_load(&h->apply_ns) / 1000;
	st->disabled = atomic_load(&h->disabled);
}

void hm_hints_free(struct hm_hints *h)
{
	if (!h)
		return;
	hm_hints_close(h);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
#if !HM_HAVE_URCU
	pthread_mutex_destroy(&h->apply_lock);
#endif
	pthread_mutex_destroy(&h->send_lock);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	free(h->pr);
	free(h->ack);
	free(h->sub_pr);
	free(h->sub_gpa);
	hm_bitmap_fini(&h->acked);
	free(h);
}

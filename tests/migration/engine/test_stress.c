/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Race stress: hundreds of short migrations of tiny synthetic guests with
 * aggressive allocate/free/reuse during the hint sessions, alternating
 * hint kinds, tracker modes, channel counts and transports, some with a
 * slow reporter (DELAY_HINTS: its hints name pages already reused, or
 * arrive after their epoch). Every one must complete with zero
 * mismatching pages.
 *
 * usage: test_stress [ITERATIONS [SECONDS]]   (default 250, 100 s: it
 * stops at whichever comes first, and needs at least 40 iterations)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "e2e.h"
#include "hm_test.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	unsigned iters = argc > 1 ? (unsigned)atoi(argv[1]) : 250;
	unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 100;
	uint64_t t0 = mono_ms(), stale = 0, applied = 0, hinted = 0;
	uint64_t checked = 0, rounds = 0;
	unsigned done = 0, sync_ok = 1;

	e2e_init("stress");
	for (unsigned i = 0; i < iters; i++) {
		struct e2e_cfg c;
		struct e2e_result r;
		char what[96];

		if (mono_ms() - t0 > (uint64_t)secs * 1000)
			break;
		e2e_cfg_default(&c);
		c.scheme = i % 5 == 4 ? "tcp" : "unix";
		c.sp.ram_bytes = (i % 3 == 0 ? 32u : 16u) << 20;
		c.sp.used_frac = 0.3 + 0.1 * (i % 4);
		c.sp.dirty_rate = 3000 + 1000 * (i % 5);
		c.sp.churn_rate = 20000;
		c.sp.writers = 1 + i % 2;
		c.sp.seed = 1000 + i;
		c.sp.memfd = i % 7 == 3;
		c.hints = i % 2 ? E2E_HINTS_ISOLATED : E2E_HINTS_FREE;
		c.sp.hint_kind = i % 2 ? HM_HINT_ISOLATED : HM_HINT_FREE;
		c.mp.tracker_mode = sync_ok && i % 4 >= 2 ? HM_TRACKER_SYNC
							  : HM_TRACKER_AUTO;
		c.mp.channels = 1 + i % 3;
		/* several short rounds, each with its own hint session */
		c.mp.max_bandwidth = 128u << 20;
		c.mp.downtime_limit_ms = 2;
		c.mp.max_rounds = 4;
		c.mp.force_on_max_rounds = true;
		c.mp.hint_timeout_ms = i % 3 ? 20 : 0;
		/* a slow but honest reporter: its late hints arrive stale,
		 * and its in-epoch hints name pages it has just reused */
		if (i % 4 == 1)
			c.sp.misbehave = HM_SYNTH_DELAY_HINTS;
		HM_CHECK_OK(e2e_migrate(&c, &r));
		snprintf(what, sizeof(what), "stress #%u", i);
		if (r.run == -ENOTSUP && c.mp.tracker_mode == HM_TRACKER_SYNC) {
			sync_ok = 0;
			continue;
		}
		if (r.run || r.mismatches || r.dest_invalid || r.check_errors ||
		    r.dest || getenv("HM_TEST_VERBOSE"))
			e2e_print(what, &r);
		HM_CHECK_EQ(r.run, 0);
		HM_CHECK_EQ(r.dest, 0);
		HM_CHECK_EQ(r.mismatches, 0);
		HM_CHECK_EQ(r.dest_invalid, 0);
		HM_CHECK_EQ(r.check_errors, 0);
		HM_CHECK_EQ(r.checked, r.inuse_pages);
		stale += r.st.hint_dropped_stale;
		applied += r.st.hint_applied;
		hinted += r.st.skipped_hinted_pages;
		checked += r.checked;
		rounds += r.st.rounds;
		done++;
	}
	fprintf(stderr, "stress: %u migrations in %" PRIu64 " ms, %" PRIu64
		" rounds, %" PRIu64 " pages verified, hints: %" PRIu64
		" ranges applied (%" PRIu64 " pages cleared), %" PRIu64
		" stale dropped; 0 mismatches\n", done, mono_ms() - t0,
		rounds, checked, applied, hinted, stale);
	HM_CHECK(done >= 40 || done == iters);
	HM_CHECK(applied > 0);
	return 0;
}

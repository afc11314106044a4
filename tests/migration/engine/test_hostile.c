/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A lying guest (enum hm_synth_misbehave): hints out of range, misaligned,
 * overlapping, floods, stale epochs, garbage frames, in-use pages hinted
 * as free. Each migration must complete (the engine drops what is wrong,
 * counts it, and goes on -- without hints if need be), verify clean except
 * on the pages the guest lied about, never stall, and leave the source
 * guest running with its memory intact (resumed after the migration: its
 * writes go on and its self-check finds nothing).
 *
 * R7 too: a guest that poisons free pages with a non-zero pattern gets
 * its hints refused (the migration goes on without them); with a zero
 * pattern (init_on_free) they are taken, since the destination's fresh
 * memory holds zeros.
 *
 * usage: test_hostile MODE [free|isolated]
 *   MODE: out-of-range misaligned overlap flood stale garbage inuse all
 *         amplify (a 2 GiB guest repeating true ranges: the page budget)
 *         poison poison-zero nohints (a reporter that says it cannot
 *         hint: none asked for, the migration verifies)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "hm_test.h"

static const struct {
	const char *name;
	unsigned misbehave;
} modes[] = {
	{ "out-of-range", HM_SYNTH_LIE_OUT_OF_RANGE },
	{ "misaligned", HM_SYNTH_LIE_MISALIGNED },
	{ "overlap", HM_SYNTH_LIE_OVERLAP },
	{ "flood", HM_SYNTH_LIE_FLOOD },
	{ "stale", HM_SYNTH_LIE_STALE },
	{ "garbage", HM_SYNTH_LIE_GARBAGE },
	{ "inuse", HM_SYNTH_LIE_INUSE },
	{ "amplify", HM_SYNTH_LIE_AMPLIFY },
	{ "poison", 0 },
	{ "poison-zero", 0 },
	{ "nohints", HM_SYNTH_SAY_NOHINTS },
	{ "all", HM_SYNTH_LIE_OUT_OF_RANGE | HM_SYNTH_LIE_MISALIGNED |
		 HM_SYNTH_LIE_OVERLAP | HM_SYNTH_LIE_FLOOD |
		 HM_SYNTH_LIE_STALE | HM_SYNTH_LIE_INUSE },
};

int main(int argc, char **argv)
{
	struct e2e_cfg c;
	struct e2e_result r;
	unsigned mb = 0;
	bool found = false, isolated;
	char what[64];

	if (argc < 2) {
		fprintf(stderr, "usage: test_hostile MODE [free|isolated]\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name)) {
			mb = modes[i].misbehave;
			found = true;
		}
	if (!found) {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	isolated = argc > 2 && !strcmp(argv[2], "isolated");
	snprintf(what, sizeof(what), "hostile %s %s", argv[1],
		 isolated ? "isolated" : "free");
	e2e_init(what);

	e2e_cfg_default(&c);
	c.sp.ram_bytes = 32u << 20;
	c.sp.used_frac = 0.3;
	c.sp.dirty_rate = 2000;
	c.sp.churn_rate = 1000;
	c.sp.writers = 1;
	c.sp.misbehave = mb;
	c.sp.hint_kind = isolated ? HM_HINT_ISOLATED : HM_HINT_FREE;
	c.hints = isolated ? E2E_HINTS_ISOLATED : E2E_HINTS_FREE;
	/* several sessions */
	c.mp.max_bandwidth = 32u << 20;
	c.mp.downtime_limit_ms = 5;
	c.mp.max_rounds = 4;
	c.mp.force_on_max_rounds = true;
	c.mp.hint_timeout_ms = 300;
	c.split_lied = true;
	c.resume_after = true;
	if (mb == HM_SYNTH_LIE_AMPLIFY) {
		/* work amplification (R13): a 2 GiB guest whose true free
		 * runs come back 4096 times a message, 16 full messages an
		 * epoch; without a budget in pages, each message would cost
		 * 4096 x the free RAM's words inside the apply section the
		 * sync (and the cut-over) waits for */
		c.sp.ram_bytes = 2ull << 30;
		c.sp.used_frac = 0.25;
		c.mp.max_bandwidth = 0;
		c.mp.downtime_limit_ms = 300;
		c.mp.hint_timeout_ms = 2000;
	}
	if (!strncmp(argv[1], "poison", 6)) {
		c.sp.poison = true;
		c.sp.poison_byte = strcmp(argv[1], "poison") ? 0 : 0xaa;
	}

	HM_CHECK_OK(e2e_migrate(&c, &r));
	e2e_print(what, &r);
	HM_CHECK_EQ(r.run, 0);
	HM_CHECK_EQ(r.st.status, HM_MIG_COMPLETED);
	/* never stalled: ~10 MiB at 32 MiB/s, a few rounds */
	HM_CHECK(r.st.total_time_ms < 20000);
	/* the guest: alive, resumed, writing, its memory intact */
	HM_CHECK(r.alive);
	HM_CHECK_EQ(r.check_errors, 0);
	HM_CHECK(r.writes_after > r.writes_before);
	/* bit for bit, except where the guest lied about its own pages */
	HM_CHECK_EQ(r.mismatches, 0);
	HM_CHECK_EQ(r.dest_invalid, 0);
	HM_CHECK(r.checked > 0);
	if (mb & (HM_SYNTH_LIE_OUT_OF_RANGE | HM_SYNTH_LIE_MISALIGNED))
		HM_CHECK(r.st.hint_rejected > 0);
	if (mb & HM_SYNTH_LIE_FLOOD)
		HM_CHECK(r.st.hint_rejected > 0);
	if (mb & HM_SYNTH_LIE_STALE)
		HM_CHECK(r.st.hint_dropped_stale > 0);
	if (mb == HM_SYNTH_LIE_OVERLAP)
		HM_CHECK(r.st.hint_applied > 0 && r.st.hint_rejected == 0);
	if (mb == HM_SYNTH_LIE_GARBAGE)
		HM_CHECK_EQ(r.st.hint_applied, 0); /* hinting switched off */
	if (!strcmp(argv[1], "poison")) /* R7: refused */
		HM_CHECK(r.st.hint_requested == 0 && r.st.hint_applied == 0);
	if (mb == HM_SYNTH_SAY_NOHINTS)
		HM_CHECK(r.st.hint_requested == 0 && r.st.hint_applied == 0);
	if (!strcmp(argv[1], "poison-zero"))
		HM_CHECK(r.st.hint_applied > 0);
	if (mb == HM_SYNTH_LIE_AMPLIFY) {
		uint64_t npages = c.sp.ram_bytes / 4096;
		uint64_t budget = 2 * npages + 4096;

		fprintf(stderr, "%s: most pages named in one session %" PRIu64
			" (budget %" PRIu64 " = 2 x %" PRIu64 " + 4096), %"
			PRIu64 " ranges rejected, %" PRIu64 " applied; %.1f ms "
			"applying hints in all, downtime %" PRIu64 " ms\n",
			what, r.st.hint_session_pages_max, budget, npages,
			r.st.hint_rejected, r.st.hint_applied,
			r.st.hint_apply_us / 1000.0, r.st.downtime_ms);
		HM_CHECK(r.st.hint_session_pages_max > 0);
		HM_CHECK(r.st.hint_session_pages_max <= budget);
		HM_CHECK(r.st.hint_rejected > 0);
		HM_CHECK(r.st.hint_applied > 0);
	}
	if (mb & HM_SYNTH_LIE_INUSE) {
		HM_CHECK(r.lied_pages > 0);
		fprintf(stderr, "%s: %ld of %" PRIu64 " lied-about in-use "
			"pages differ (allowed), 0 of the others\n", what,
			r.lied_mismatches, r.lied_pages);
	} else {
		HM_CHECK_EQ(r.lied_pages, 0);
	}
	fprintf(stderr, "PASS %s\n", what);
	return 0;
}

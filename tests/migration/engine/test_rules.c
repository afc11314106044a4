/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One test per correctness rule (DESIGN.md R1-R5) that FAILS WHEN THE RULE
 * IS BROKEN: the engine is run with the matching enum hm_unsafe switch
 * against a synthetic guest that provokes the break, and bit-for-bit
 * verification must find mismatching pages -- in every one of the broken
 * runs, not just sometimes. The same migration without the switch must
 * verify clean, so the detection is the rule's doing.
 *
 *   r1  HM_UNSAFE_TRACK_LATE: tracking starts after round 1's reads; the
 *       guest's writers rewrite pages already sent.
 *   r2  HM_UNSAFE_APPLY_STALE: DELAY_HINTS re-sends each epoch's hints
 *       after the next request, when pages of it were reused, written and
 *       harvested; applying them clears those pages from M.
 *   r3  HM_UNSAFE_HINT_CLEARS_LOG: DELAY_HINTS reuses and writes hinted
 *       pages before the FREE hint arrives; a FREE hint that also clears L
 *       forgets those writes.
 *   r4  HM_UNSAFE_ACK_BEFORE_REPROTECT: ISOLATED hints acknowledged before
 *       re-protection; the guest's allocator reuses just-released pages
 *       at once (fast churn) and the re-protection forgets the writes.
 *   r5  HM_UNSAFE_HINTS_AFTER_PAUSE: hints of a session requested while
 *       the guest runs are applied after the pause and the final harvest;
 *       DELAY_HINTS has reused and written some of those pages.
 *
 * usage: test_rules r1|r2|r3|r4|r5 [BROKEN_RUNS [auto|sync|async]]
 *        (default 2 runs, tracker auto)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "hm_test.h"

struct rule {
	const char *name;
	unsigned unsafe;
	void (*setup)(struct e2e_cfg *c);
	/* what the correct engine must show it handled */
	void (*check_ok)(const struct e2e_result *r);
};

static void base(struct e2e_cfg *c)
{
	e2e_cfg_default(c);
	c->sp.ram_bytes = 32u << 20;
	c->sp.used_frac = 0.3;
	c->sp.writers = 1;
	c->sp.dirty_rate = 0;
	c->sp.churn_rate = 0;
	c->mp.channels = 2;
	c->mp.tracker_mode = HM_TRACKER_AUTO;
}

static void setup_r1(struct e2e_cfg *c)
{
	base(c);
	c->hints = E2E_HINTS_NONE;
	c->sp.used_frac = 0.5;
	c->sp.dirty_rate = 2000;
	/* round 1 lasts ~0.5 s: ~1000 writes, many to pages already sent */
	c->mp.max_bandwidth = 64u << 20;
	c->mp.max_rounds = 5;
	c->mp.force_on_max_rounds = true;
}

static void setup_delay(struct e2e_cfg *c)
{
	base(c);
	c->hints = E2E_HINTS_FREE;
	c->sp.hint_kind = HM_HINT_FREE;
	c->sp.misbehave = HM_SYNTH_DELAY_HINTS;
	c->sp.dirty_rate = 100;
	c->mp.hint_timeout_ms = 1000;
}

static void setup_r2(struct e2e_cfg *c)
{
	setup_delay(c);
	/* three live rounds, each with a session: the late hints of epochs
	 * 1 and 2 arrive when their epoch is over (a bandwidth limit keeps
	 * the estimate above the 1 ms downtime limit) */
	c->mp.max_bandwidth = 16u << 20;
	c->mp.downtime_limit_ms = 1;
	c->mp.max_rounds = 3;
	c->mp.force_on_max_rounds = true;
}

static void setup_r3(struct e2e_cfg *c)
{
	setup_delay(c);
	c->mp.max_rounds = 3;
	c->mp.force_on_max_rounds = true;
}

static void setup_r4(struct e2e_cfg *c)
{
	base(c);
	c->hints = E2E_HINTS_ISOLATED;
	c->sp.hint_kind = HM_HINT_ISOLATED;
	c->sp.churn_rate = 5000;
	c->mp.downtime_limit_ms = 1;
	c->mp.max_rounds = 2;
	c->mp.force_on_max_rounds = true;
}

static void setup_r5(struct e2e_cfg *c)
{
	setup_delay(c);
	c->mp.hint_timeout_ms = 200;
}

static void ok_none(const struct e2e_result *r)
{
	(void)r;
}

static void ok_stale(const struct e2e_result *r)
{
	/* the correct engine saw the late hints and dropped them */
	HM_CHECK(r->st.hint_dropped_stale > 0);
}

static void ok_applied(const struct e2e_result *r)
{
	HM_CHECK(r->st.hint_applied > 0);
}

static const struct rule rules[] = {
	{ "r1", HM_UNSAFE_TRACK_LATE, setup_r1, ok_none },
	{ "r2", HM_UNSAFE_APPLY_STALE, setup_r2, ok_stale },
	{ "r3", HM_UNSAFE_HINT_CLEARS_LOG, setup_r3, ok_applied },
	{ "r4", HM_UNSAFE_ACK_BEFORE_REPROTECT, setup_r4, ok_applied },
	{ "r5", HM_UNSAFE_HINTS_AFTER_PAUSE, setup_r5, ok_applied },
};

static enum hm_tracker_mode tracker_mode = HM_TRACKER_AUTO;

static void run(const struct rule *rule, bool broken, unsigned seed,
		struct e2e_result *r)
{
	struct e2e_cfg c;
	char what[64];

	rule->setup(&c);
	c.mp.tracker_mode = tracker_mode;
	c.sp.seed = seed;
	c.mp.unsafe = broken ? rule->unsafe : 0;
	HM_CHECK_OK(e2e_migrate(&c, r));
	snprintf(what, sizeof(what), "%s %s", rule->name,
		 broken ? "BROKEN" : "correct");
	e2e_print(what, r);
	if (r->run == -ENOTSUP || r->run == -EPERM)
		e2e_skip_mode(tracker_mode, r->run);
	HM_CHECK_EQ(r->run, 0);
	HM_CHECK_EQ(r->check_errors, 0);
	HM_CHECK(r->mismatches >= 0);
	HM_CHECK_EQ(r->checked, r->inuse_pages);
}

int main(int argc, char **argv)
{
	const struct rule *rule = NULL;
	unsigned broken_runs = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
	unsigned detected = 0;
	long total = 0;
	struct e2e_result r;

	for (size_t i = 0; argc > 1 && i < sizeof(rules) / sizeof(rules[0]);
	     i++)
		if (!strcmp(argv[1], rules[i].name))
			rule = &rules[i];
	if (!rule) {
		fprintf(stderr, "usage: test_rules r1|r2|r3|r4|r5 [RUNS]\n");
		return 2;
	}
	if (argc > 3 && hm_tracker_mode_parse(argv[3], &tracker_mode)) {
		fprintf(stderr, "unknown tracker mode %s\n", argv[3]);
		return 2;
	}
	e2e_init(rule->name);

	/* the rule kept: clean */
	run(rule, false, 1, &r);
	HM_CHECK_EQ(r.mismatches, 0);
	HM_CHECK_EQ(r.dest_invalid, 0);
	rule->check_ok(&r);

	/* the rule broken: verification must catch it, every time */
	for (unsigned i = 0; i < broken_runs; i++) {
		run(rule, true, 100 + i, &r);
		if (r.mismatches > 0)
			detected++;
		total += r.mismatches;
	}
	fprintf(stderr, "%s: broken rule detected in %u of %u runs (%ld "
		"mismatching pages in all)\n", rule->name, detected,
		broken_runs, total);
	if (detected != broken_runs)
		hm_test_fail("%s broken but verification did not notice in "
			     "%u of %u runs", rule->name,
			     broken_runs - detected, broken_runs);
	return 0;
}

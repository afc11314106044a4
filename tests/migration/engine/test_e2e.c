/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * End-to-end migration of a running synthetic guest, verified bit for bit
 * against the paused source (and every in-use destination page checked
 * against its own checksum).
 *
 * usage: test_e2e SCHEME TRACKER HINTS [OPTION...]
 *   SCHEME  unix | tcp
 *   TRACKER auto | sync | async
 *   HINTS   none | free | isolated
 *   OPTION  zstd, chN (N channels), memfd (guest RAM), thp, destmemfd,
 *           ramM (guest RAM in MiB), bwM (bandwidth limit, MiB/s;
 *           default 128), unlimited (no bandwidth limit),
 *           idle (no writers), repeatN (run N times)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "hm_test.h"

static void usage(void)
{
	fprintf(stderr, "usage: test_e2e unix|tcp auto|sync|async "
			"none|free|isolated [zstd] [chN] [memfd] [thp] "
			"[destmemfd] [ramM] [bwM] [idle] [repeatN]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct e2e_cfg c;
	struct e2e_result res;
	unsigned repeat = 1;
	char name[128];

	if (argc < 4)
		usage();
	snprintf(name, sizeof(name), "e2e %s %s %s", argv[1], argv[2],
		 argv[3]);
	e2e_init(name);
	e2e_cfg_default(&c);
	if (strcmp(argv[1], "unix") && strcmp(argv[1], "tcp"))
		usage();
	c.scheme = argv[1];
	if (hm_tracker_mode_parse(argv[2], &c.mp.tracker_mode))
		usage();
	if (!strcmp(argv[3], "none"))
		c.hints = E2E_HINTS_NONE;
	else if (!strcmp(argv[3], "free"))
		c.hints = E2E_HINTS_FREE;
	else if (!strcmp(argv[3], "isolated"))
		c.hints = E2E_HINTS_ISOLATED;
	else
		usage();
	c.sp.hint_kind = c.hints == E2E_HINTS_ISOLATED ? HM_HINT_ISOLATED
						       : HM_HINT_FREE;
	/* a few rounds, each with a hint session, while the guest writes a
	 * hot set and allocates/frees pages */
	c.sp.ram_bytes = 128u << 20;
	c.sp.used_frac = 0.3;
	c.sp.dirty_rate = 10000;
	c.sp.pattern = HM_SYNTH_HOTSET;
	c.sp.hot_frac = 0.1;
	c.sp.churn_rate = 2000;
	c.sp.writers = 2;
	c.sp.seed = 12345;
	c.mp.max_bandwidth = 128u << 20;
	c.mp.downtime_limit_ms = 20;
	c.mp.max_rounds = 10;
	c.mp.force_on_max_rounds = true;
	for (int i = 4; i < argc; i++) {
		const char *o = argv[i];

		if (!strcmp(o, "zstd"))
			c.mp.compress = HM_COMPRESS_ZSTD;
		else if (!strncmp(o, "ch", 2))
			c.mp.channels = (unsigned)atoi(o + 2);
		else if (!strcmp(o, "memfd"))
			c.sp.memfd = true;
		else if (!strcmp(o, "thp"))
			c.sp.thp = true;
		else if (!strcmp(o, "destmemfd"))
			c.dest_memfd = true;
		else if (!strcmp(o, "destwrite"))
			c.dest_fill = HM_DEST_FILL_WRITE;
		else if (!strncmp(o, "ram", 3))
			c.sp.ram_bytes = (uint64_t)atoi(o + 3) << 20;
		else if (!strncmp(o, "bw", 2))
			c.mp.max_bandwidth = (uint64_t)atoi(o + 2) << 20;
		else if (!strcmp(o, "unlimited"))
			c.mp.max_bandwidth = 0;
		else if (!strcmp(o, "idle")) {
			c.sp.dirty_rate = 0;
			c.sp.churn_rate = 0;
		} else if (!strncmp(o, "repeat", 6))
			repeat = (unsigned)atoi(o + 6);
		else
			usage();
	}

	for (unsigned it = 0; it < repeat; it++) {
		c.sp.seed = 12345 + it;
		HM_CHECK_OK(e2e_migrate(&c, &res));
		e2e_print(name, &res);
		if (res.run == -ENOTSUP || res.run == -EPERM)
			e2e_skip_mode(c.mp.tracker_mode, res.run);
		HM_CHECK_EQ(res.run, 0);
		HM_CHECK_EQ(res.dest, 0);
		HM_CHECK_EQ(res.st.status, HM_MIG_COMPLETED);
		HM_CHECK(res.inuse_pages > 0);
		HM_CHECK_EQ(res.checked, res.inuse_pages);
		HM_CHECK_EQ(res.mismatches, 0);
		HM_CHECK_EQ(res.dest_invalid, 0);
		HM_CHECK_EQ(res.check_errors, 0);
		HM_CHECK(res.st.dirty_sync_count >= 2);
		/* fresh memory and memfds are filled by UFFDIO_COPY unless
		 * told not to (userfaultfd works here: the tracker needs
		 * it too) */
		if (c.dest_fill == HM_DEST_FILL_WRITE) {
			HM_CHECK_EQ(res.dst.fill, HM_DEST_FILL_WRITE);
		} else {
			HM_CHECK_EQ(res.dst.fill, HM_DEST_FILL_UFFD);
			HM_CHECK(res.dst.placed_pages > 0);
		}
		if (c.mp.tracker_mode != HM_TRACKER_AUTO)
			HM_CHECK_EQ(res.st.tracker_mode, c.mp.tracker_mode);
		if (c.hints != E2E_HINTS_NONE) {
			HM_CHECK(res.st.hint_requested >= 1);
			HM_CHECK(res.st.hint_applied > 0);
			HM_CHECK(res.st.skipped_hinted_pages > 0);
			HM_CHECK_EQ(res.st.hint_rejected, 0);
		} else {
			/* free pages are garbage: everything goes */
			HM_CHECK(res.st.normal_pages + res.st.duplicate_pages +
					 res.st.skipped_empty_pages >=
				 c.sp.ram_bytes / 4096);
		}
	}
	fprintf(stderr, "PASS %s\n", name);
	return 0;
}

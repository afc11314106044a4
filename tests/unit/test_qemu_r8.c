/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * R8's last check on the destination (hm_qemu_r8_verdict): the RAM is
 * acknowledged only when QEMU's answers prove that it has not loaded
 * device state. Every way the answers can leave it unsure must refuse
 * (fail closed); the states that precede the device state must pass.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hm_test.h"
#include "migrate/guests/qemu/qemu.h"

struct r8_case {
	const char *mig, *run;	/* NULL: that query failed */
	int want;
	const char *why;	/* what the case is */
};

static const struct r8_case cases[] = {
	{ "none", "inmigrate", 0, "7.2: waiting, nothing received" },
	{ "setup", "inmigrate", 0, "10.0: waiting after migrate-incoming" },
	{ "active", "inmigrate", 0,
	  "QEMU's stream of non-shared blocks before pre-switchover" },
	{ NULL, "inmigrate", -EIO, "query-migrate failed" },
	{ "active", NULL, -EIO, "query-status failed" },
	{ NULL, NULL, -EIO, "both failed (QEMU gone)" },
	{ "completed", "inmigrate", -EPROTO, "device state loaded" },
	{ "completed", "paused", -EPROTO, "loaded, paused" },
	{ "failed", "inmigrate", -EPROTO, "the load failed" },
	{ "cancelled", "inmigrate", -EPROTO, "cancelled" },
	{ "device", "inmigrate", -EPROTO, "device state under way" },
	{ "postcopy-active", "inmigrate", -EPROTO, "postcopy" },
	{ "wait-unplug", "inmigrate", -EPROTO, "a state not on the list" },
	{ "x-some-future-state", "inmigrate", -EPROTO, "an unknown state" },
	{ "", "inmigrate", -EPROTO, "an empty status" },
	{ "active", "running", -EPROTO, "the guest already runs" },
	{ "setup", "paused", -EPROTO, "left inmigrate" },
	{ "none", "postmigrate", -EPROTO, "an odd run state" },
	{ "none", "", -EPROTO, "an empty run state" },
};

int main(void)
{
	unsigned n = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct r8_case *c = &cases[i];
		char why[256] = "";
		int r = hm_qemu_r8_verdict(c->mig, c->run, why, sizeof(why));

		printf("%-22s %-12s -> %-3d %s%s%s\n",
		       c->mig ? c->mig : "(query failed)",
		       c->run ? c->run : "(failed)", r, c->why,
		       why[0] ? ": " : "", why);
		if (r != c->want)
			hm_test_fail("case '%s': got %d, want %d", c->why, r,
				     c->want);
		if (r < 0 && !why[0])
			hm_test_fail("case '%s': refused without a reason",
				     c->why);
		n++;
	}
	printf("ok: %u cases, every unsure one refused\n", n);
	return 0;
}

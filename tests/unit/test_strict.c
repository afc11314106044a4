/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The skip rule of the test programs (tests/hm_test.h, hm_absent.h).
 *
 * For every skip reason: a program that skips for it exits 77 without
 * strict mode; under HINTMIG_TEST_STRICT=1 it exits 77 only when this
 * machine really lacks the thing, and 1 when it has it. The absence checks
 * are compared with hintmig's own kernel probe, a second opinion: where
 * one says "absent" and the other "present", one of them is wrong.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

#include "hm_test.h"

static int skip_in_child(enum hm_absent_kind k, bool strict)
{
	pid_t pid = fork();
	int st;

	HM_CHECK(pid >= 0);
	if (pid == 0) {
		if (strict)
			setenv("HINTMIG_TEST_STRICT", "1", 1);
		else
			unsetenv("HINTMIG_TEST_STRICT");
		/* Its "SKIP:"/"FAIL:" lines would read as this test's own
		 * in a CI log: the exit code is what is checked. */
		if (!freopen("/dev/null", "w", stderr))
			_exit(3);
		hm_test_skip_absent(k, "self-test skip for want of %s",
				    hm_absent_kinds[k].name);
	}
	HM_CHECK(waitpid(pid, &st, 0) == pid);
	HM_CHECK(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* What hintmig's probe says of the same thing: 1 has it, 0 lacks it, -1
 * no opinion. */
static int probe_has(const struct hm_caps *c, enum hm_absent_kind k)
{
	switch (k) {
	case HM_ABSENT_KVM:
		return access("/dev/kvm", F_OK) == 0;
	case HM_ABSENT_UFFD:
		return c->uffd_syscall || c->uffd_dev;
	case HM_ABSENT_UFFD_WP:
		return c->uffd_wp;
	case HM_ABSENT_WP_ASYNC:
		return c->wp_async && c->pagemap_scan;
	case HM_ABSENT_PIDFD_GETFD:
		return c->pidfd_getfd;
	default:
		return -1;
	}
}

int main(void)
{
	unsigned present = 0;
	struct hm_caps caps;

	setvbuf(stdout, NULL, _IOLBF, 0);
	HM_CHECK_OK(hm_caps_probe(&caps, NULL));
	for (int i = 0; i < HM_ABSENT_NKINDS; i++) {
		enum hm_absent_kind k = (enum hm_absent_kind)i;
		const char *name = hm_absent_kinds[k].name;
		char why[200];
		int absent = hm_absent_check(k, why, sizeof(why));
		int has = probe_has(&caps, k);
		int rc;

		printf("%s: %s (%s); hintmig's probe: %s\n", name,
		       absent ? "absent" : "present", why,
		       has < 0 ? "-" : has ? "present" : "absent");
		if (has == 1 && absent)
			hm_test_fail("%s: confirmed absent, but hintmig's probe "
				     "finds it", name);
		if (has == 0 && !absent && geteuid() == 0)
			hm_test_fail("%s: hintmig's probe finds none, but it is "
				     "not absent (%s)", name, why);
		rc = skip_in_child(k, false);
		if (rc != HM_TEST_SKIP_CODE)
			hm_test_fail("%s: skip without strict mode exited %d",
				     name, rc);
		rc = skip_in_child(k, true);
		if (rc != (absent ? HM_TEST_SKIP_CODE : 1))
			hm_test_fail("%s: strict skip exited %d, expected %d",
				     name, rc, absent ? HM_TEST_SKIP_CODE : 1);
		printf("ok %s: strict mode %s the skip\n", name,
		       absent ? "accepts" : "refuses");
		present += !absent;
	}
	/* Userfaultfd is what this project runs on: a machine where every
	 * kind is absent tests nothing of the refusing path. */
	HM_CHECK(present > 0);
	printf("all passed\n");
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared helpers of the test programs: checks that fail loudly, and the
 * skip convention (exit 77, reason printed; under HINTMIG_TEST_STRICT=1 a
 * skip is a failure, because CI's machine has every feature). */
#ifndef HM_TEST_H
#define HM_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HM_TEST_SKIP_CODE 77

static inline int hm_test_strict(void)
{
	const char *s = getenv("HINTMIG_TEST_STRICT");
	return s && *s && strcmp(s, "0") != 0;
}

/* Skip the whole program: only when a kernel feature or device is truly
 * absent. */
#define hm_test_skip(...)                                                   \
	do {                                                                \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                      \
		fputc('\n', stderr);                                        \
		if (hm_test_strict()) {                                     \
			fprintf(stderr, "FAIL: skipping is not allowed "    \
					"with HINTMIG_TEST_STRICT=1\n");    \
			exit(1);                                            \
		}                                                           \
		exit(HM_TEST_SKIP_CODE);                                    \
	} while (0)

#define hm_test_fail(...)                                                   \
	do {                                                                \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);        \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		exit(1);                                                    \
	} while (0)

#define HM_CHECK(cond)                                                      \
	do {                                                                \
		if (!(cond))                                                \
			hm_test_fail("check failed: %s", #cond);            \
	} while (0)

#define HM_CHECK_EQ(a, b)                                                   \
	do {                                                                \
		long long _a = (long long)(a), _b = (long long)(b);         \
		if (_a != _b)                                               \
			hm_test_fail("%s == %lld, expected %s == %lld", #a, \
				     _a, #b, _b);                           \
	} while (0)

/* An int-returning call that must succeed (>= 0). */
#define HM_CHECK_OK(expr)                                                   \
	do {                                                                \
		long long _r = (long long)(expr);                           \
		if (_r < 0)                                                 \
			hm_test_fail("%s failed: %s", #expr,                \
				     strerror((int)-_r));                   \
	} while (0)

/* Sleep ms milliseconds, whatever signals arrive meanwhile. */
static inline void hm_test_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#endif

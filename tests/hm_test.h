/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared helpers of the test programs: checks that fail loudly, and the
 * skip convention (exit 77, reason printed; under HINTMIG_TEST_STRICT=1 a
 * skip passes only when the absence it names is confirmed, hm_absent.h). */
#ifndef HM_TEST_H
#define HM_TEST_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hm_absent.h"

#define HM_TEST_SKIP_CODE 77

static inline int hm_test_strict(void)
{
	const char *s = getenv("HINTMIG_TEST_STRICT");
	return s && *s && strcmp(s, "0") != 0;
}

/* Skip the whole program because `kind` is absent from this machine (the
 * only reason to skip; tests/hm_absent.h). Prints "SKIP: <reason>". Under
 * HINTMIG_TEST_STRICT=1 the absence is checked independently: confirmed,
 * the program still exits 77 (a skip CI accepts and lists); not confirmed,
 * it exits 1, because a skip must never hide something this machine has. */
static inline void __attribute__((noreturn, format(printf, 2, 3)))
hm_test_skip_absent(enum hm_absent_kind kind, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	fprintf(stderr, "SKIP: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (hm_test_strict()) {
		if (!hm_absent_check(kind, why, sizeof(why))) {
			fprintf(stderr, "FAIL: skipped for want of %s, but this "
				"machine has it (%s); HINTMIG_TEST_STRICT=1 "
				"allows only confirmed absences\n",
				hm_absent_kinds[kind].name, why);
			exit(1);
		}
		fprintf(stderr, "strict: absence of %s confirmed: %s\n",
			hm_absent_kinds[kind].name, why);
	}
	exit(HM_TEST_SKIP_CODE);
}

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

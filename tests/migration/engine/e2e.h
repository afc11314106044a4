/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers of the end-to-end engine tests: a destination running in a
 * thread of the test (or a forked process), and one call that migrates a
 * running synthetic guest to it, verifies it bit for bit against the
 * paused source, and reports everything a test wants to check.
 */
#ifndef HM_TEST_E2E_H
#define HM_TEST_E2E_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#include "fixture/synth.h"

/* Log sink of the tests: errors and warnings unless HM_TEST_VERBOSE is
 * set (then debug), with a prefix. */
extern struct hm_log e2e_log;
void e2e_init(const char *name);

/* A listening address of the scheme ("unix" / "tcp"): the fd, and the
 * address to connect to in addr. */
int e2e_listen(const char *scheme, char *addr, size_t addrlen);

/* Destination in a thread. */
struct e2e_dest {
	struct hm_dest *d;
	pthread_t thread;
	bool started;
	int lfd;
	int result;
	char addr[128];
	struct hm_dest_stats st;
};

int e2e_dest_start(struct e2e_dest *ed, const char *scheme, int ram_fd,
		   enum hm_dest_fill fill);
/* Wait for hm_dest_run_fd to return: its result. */
int e2e_dest_join(struct e2e_dest *ed);
void e2e_dest_free(struct e2e_dest *ed);

/* Destination in a forked process (to kill it). pid, or -errno. The
 * child runs hm_dest_run_fd on the listening fd and exits 0/1. */
pid_t e2e_dest_fork(const char *scheme, char *addr, size_t addrlen);

enum e2e_hints {
	E2E_HINTS_NONE = 0,
	E2E_HINTS_FREE,
	E2E_HINTS_ISOLATED,
};

struct e2e_cfg {
	const char *scheme;		/* "unix" (default) or "tcp" */
	struct hm_synth_params sp;
	struct hm_migrate_params mp;
	enum e2e_hints hints;
	bool dest_memfd;		/* destination receives into a memfd */
	enum hm_dest_fill dest_fill;	/* into fresh memory: how */
	bool no_verify;
	/* Cancel hm_migration_run() this long after it started (0: no). */
	unsigned cancel_after_ms;
	/* Use this address instead of a destination thread (a forked or
	 * fake destination the test runs itself). */
	const char *addr;
	/* Called in a thread once the migration runs, with the migration
	 * and the synthetic guest (e.g. to kill the destination). */
	void (*during)(struct hm_migration *m, struct hm_synth *s, void *op);
	void *during_opaque;
	/* Called once the guest runs, before the migration: the place to
	 * start test threads (the guest is forked first: a fork while other
	 * threads run is what sanitizers and allocators like least). */
	void (*before_run)(void *op);
	/* LIE_INUSE: verify the in-use pages the guest lied about apart
	 * (res.lied_mismatches); res.mismatches then covers the others. */
	bool split_lied;
	/* After a completed run: resume the guest, let it run 200 ms and
	 * measure it (writes go on, self-check stays clean). */
	bool resume_after;
};

void e2e_cfg_default(struct e2e_cfg *c);

struct e2e_result {
	int run;		/* hm_migration_run() */
	int dest;		/* the destination thread's result */
	long mismatches;	/* hm_migration_verify() (or -errno) */
	uint64_t checked;
	uint64_t inuse_pages;
	uint64_t lied_pages;	/* in use and lied about (split_lied) */
	long lied_mismatches;
	struct hm_migrate_stats st;
	struct hm_dest_stats dst;
	/* the guest after the migration (failed runs: resumed) */
	uint64_t check_errors;	/* self-check failures, must stay 0 */
	uint64_t writes_before, writes_after; /* around a 200 ms wait */
	bool alive;		/* the guest process still exists */
	/* pages the destination holds that do not carry valid synthetic
	 * content although in use (independent of the source) */
	uint64_t dest_invalid;
};

/* Migrate one synthetic guest as configured. 0 when the harness itself
 * worked (look at res for the migration's outcome), -errno otherwise. */
int e2e_migrate(const struct e2e_cfg *c, struct e2e_result *res);

/* Print a one-line summary of res to stderr. */
void e2e_print(const char *what, const struct e2e_result *res);

/* Skip, naming what the kernel lacks, when a migration could not run in
 * tracker mode `mode` (run == -ENOTSUP or -EPERM); strict mode checks it. */
#define e2e_skip_mode(mode, run)                                            \
	hm_test_skip_absent((mode) == HM_TRACKER_ASYNC ? HM_ABSENT_WP_ASYNC \
						       : HM_ABSENT_UFFD_WP, \
			    "tracker mode %s not available here (%s)",      \
			    hm_tracker_mode_name(mode), strerror(-(run)))

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig track-demo: track the writes of another process, the way the
 * engine tracks a VMM's guest RAM.
 *
 * A workload child creates its userfaultfd (hm_uffd_create), tells us the
 * descriptor number, maps memory and, once told to, writes random pages at
 * a set rate, logging each page it writes in a shared bitmap before
 * writing it. We take its userfaultfd with pidfd_getfd, the child closes
 * its own copy, and we track its memory from outside: harvest every
 * 200 ms, print pages harvested against pages the child says it wrote,
 * and at the end check that every written page was reported.
 * Exit status: 0 all reported, 1 a write was missed, 2 usage, 3 setup.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

#include "cmd.h"
#include "parse.h"

#define INTERVAL_MS 200

/* Shared between the parent and the workload child. */
struct demo_shared {
	atomic_int go, stop, stopped;
	atomic_ulong writes;
	uint64_t log[]; /* a bit per page, set before the page is written */
};

struct demo_hello {
	int uffd; /* descriptor number in the child, or -errno */
	uint64_t base;
};

struct demo_opts {
	enum hm_tracker_mode mode;
	uint64_t size;
	unsigned seconds;
	unsigned rate;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull),
			       (long)(t % 1000000000ull) };

	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: hintmig track-demo [--mode auto|sync|async] [--size SIZE] "
		"[--seconds N] [--rate PAGES/s]\n"
		"Fork a workload that writes random pages at a known rate, track\n"
		"its memory from outside (its own userfaultfd, taken with\n"
		"pidfd_getfd), harvest every %d ms and check that every page it\n"
		"wrote was reported.\n"
		"  --mode auto|sync|async  tracker mode (default auto)\n"
		"  --size SIZE             workload memory, 1M..64G (default 256M)\n"
		"  --seconds N             how long to track, 1..3600 (default 3)\n"
		"  --rate PAGES/s          page writes per second (default 20k)\n"
		"  --help                  this text\n"
		"  --version               the version\n", INTERVAL_MS);
}

/* ---- the workload child ---- */

static void __attribute__((noreturn))
child_main(int wr, int rd, struct demo_shared *sh, const struct demo_opts *o)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const uint64_t npages = o->size / page;
	struct demo_hello h;
	uint64_t rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull | 1;
	uint64_t next, per_tick;
	char *mem, c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The userfaultfd must be born here: it carries this mm. */
	h.uffd = hm_uffd_create();
	mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		h.uffd = -errno;
	h.base = (uintptr_t)mem;
	if (write(wr, &h, sizeof(h)) != sizeof(h) || h.uffd < 0)
		_exit(3);
	/* Taken: drop our copy, so that only the tracker holds it. */
	if (read(rd, &c, 1) != 1)
		_exit(3);
	close(h.uffd);
	while (!atomic_load(&sh->go))
		usleep(1000);

	/* rate pages per second, in 1 ms ticks. */
	per_tick = o->rate / 1000 ? o->rate / 1000 : 1;
	next = now_ns();
	while (!atomic_load(&sh->stop)) {
		for (uint64_t k = 0; k < per_tick; k++) {
			uint64_t p;

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			p = rng % npages;
			__atomic_fetch_or(&sh->log[p / 64], UINT64_C(1) << (p % 64),
					  __ATOMIC_SEQ_CST);
			mem[p * page + (rng >> 52) % page] = (char)rng;
			atomic_fetch_add(&sh->writes, 1);
		}
		next += o->rate >= 1000 ? 1000000ull :
					  1000000000ull / (o->rate ? o->rate : 1);
		sleep_until(next);
	}
	atomic_store(&sh->stopped, 1);
	while (read(rd, &c, 1) > 0) /* until the parent closes the pipe */
		;
	_exit(0);
}

/* ---- the tracker side ---- */

static long take_child_log(struct demo_shared *sh, struct hm_bitmap *into)
{
	long n = 0;

	for (size_t w = 0; w < into->nwords; w++) {
		uint64_t v = __atomic_exchange_n(&sh->log[w], 0, __ATOMIC_SEQ_CST);

		n += __builtin_popcountll(v & ~into->words[w]);
		into->words[w] |= v;
	}
	return n;
}

static int run_demo(const struct demo_opts *o)
{
	struct hm_log log = { hm_log_stderr, NULL, HM_LOG_WARN };
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const uint64_t npages = o->size / page;
	struct hm_tracker_opts to = { .mode = o->mode, .log = log,
				      .nbits = npages };
	struct hm_bitmap got, harvested, written, child_iv;
	struct hm_tracker *t = NULL;
	struct demo_shared *sh;
	struct demo_hello h;
	struct hm_caps caps;
	size_t shsize = sizeof(*sh) + (npages / 64 + 1) * sizeof(uint64_t);
	int p2c[2], c2p[2], uffd, ret = 3, st;
	uint64_t t0, tick;
	unsigned long missed = 0, extra = 0;
	pid_t pid;

	hm_caps_probe(&caps, &log);
	if (hm_tracker_mode_pick(&caps, o->mode) < 0) {
		fprintf(stderr, "hintmig track-demo: mode %s: %s (see "
				"'hintmig features')\n",
			hm_tracker_mode_name(o->mode),
			strerror(-hm_tracker_mode_pick(&caps, o->mode)));
		return 3;
	}
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || pipe2(p2c, O_CLOEXEC) || pipe2(c2p, O_CLOEXEC)) {
		perror("hintmig track-demo");
		return 3;
	}
	if (hm_bitmap_init(&got, npages) || hm_bitmap_init(&harvested, npages) ||
	    hm_bitmap_init(&written, npages) || hm_bitmap_init(&child_iv, npages)) {
		fprintf(stderr, "hintmig track-demo: out of memory\n");
		return 3;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 3;
	}
	if (pid == 0) {
		close(p2c[1]);
		close(c2p[0]);
		child_main(c2p[1], p2c[0], sh, o);
	}
	close(p2c[0]);
	close(c2p[1]);

	if (read(c2p[0], &h, sizeof(h)) != sizeof(h) || h.uffd < 0) {
		fprintf(stderr, "hintmig track-demo: child could not create a "
				"userfaultfd: %s\n",
			strerror(h.uffd < 0 ? -h.uffd : EIO));
		goto out;
	}
	uffd = hm_uffd_take_remote(pid, h.uffd);
	if (uffd < 0) {
		fprintf(stderr, "hintmig track-demo: pidfd_getfd: %s\n",
			strerror(-uffd));
		goto out;
	}
	if (write(p2c[1], "T", 1) != 1)
		goto out;
	t = hm_tracker_open_remote(&caps, &to, pid, uffd);
	if (!t || hm_tracker_add_range(t, h.base, o->size, 0) < 0 ||
	    hm_tracker_start(t) < 0) {
		fprintf(stderr, "hintmig track-demo: tracking pid %d failed\n",
			(int)pid);
		goto out;
	}

	printf("tracking child pid %d: %s mode, %" PRIu64 " MiB, %u pages/s "
	       "for %u s (kernel %s)\n", (int)pid,
	       hm_tracker_mode_name(hm_tracker_get_mode(t)), o->size >> 20,
	       o->rate, o->seconds, caps.kernel_release);
	printf("%8s %12s %14s %12s\n", "time", "harvested", "child wrote",
	       "harvest ms");
	atomic_store(&sh->go, 1);
	t0 = tick = now_ns();
	for (;;) {
		bool last = now_ns() - t0 >= (uint64_t)o->seconds * 1000000000ull;
		uint64_t h0;
		long n, w;

		if (last) {
			/* Stop the writer; the final harvest sees all. */
			atomic_store(&sh->stop, 1);
			while (!atomic_load(&sh->stopped))
				usleep(1000);
		} else {
			tick += INTERVAL_MS * 1000000ull;
			sleep_until(tick);
		}
		memset(got.words, 0, got.nwords * sizeof(uint64_t));
		h0 = now_ns();
		n = hm_tracker_harvest(t, &got);
		h0 = now_ns() - h0;
		if (n < 0) {
			fprintf(stderr, "hintmig track-demo: harvest: %s\n",
				strerror((int)-n));
			goto out;
		}
		hm_bitmap_or(&harvested, &got);
		/* The child's log, taken after the harvest: it holds every
		 * page written before it (and perhaps a few more). */
		memset(child_iv.words, 0, child_iv.nwords * sizeof(uint64_t));
		w = take_child_log(sh, &child_iv);
		hm_bitmap_or(&written, &child_iv);
		printf("%7.2fs %12ld %14ld %12.2f%s\n",
		       (double)(now_ns() - t0) / 1e9, n, w, (double)h0 / 1e6,
		       last ? "  (writer stopped)" : "");
		if (last)
			break;
	}
	for (size_t i = 0; i < npages; i++) {
		bool wr = hm_bitmap_test(&written, i);
		bool hv = hm_bitmap_test(&harvested, i);

		missed += wr && !hv;
		extra += hv && !wr;
	}
	printf("verdict: every written page was reported: %s (%zu pages "
	       "written by %lu writes, %lu missed, %lu extra pages reported)\n",
	       missed ? "NO" : "yes", hm_bitmap_count(&written),
	       atomic_load(&sh->writes), missed, extra);
	ret = missed ? 1 : 0;
out:
	hm_tracker_close(t); /* the child keeps running, untracked */
	close(p2c[1]);
	close(c2p[0]);
	if (ret == 3)
		kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	hm_bitmap_fini(&got);
	hm_bitmap_fini(&harvested);
	hm_bitmap_fini(&written);
	hm_bitmap_fini(&child_iv);
	munmap(sh, shsize);
	return ret;
}

int hm_cmd_track_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo_opts o = { HM_TRACKER_AUTO, 256ull << 20, 3, 20000 };
	uint64_t u;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:s:t:r:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (hm_tracker_mode_parse(optarg, &o.mode) < 0) {
				fprintf(stderr, "hintmig track-demo: unknown "
						"mode '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			if (hm_parse_size(optarg, &o.size) ||
			    o.size < (1u << 20) || o.size > (64ull << 30)) {
				fprintf(stderr, "hintmig track-demo: --size "
						"between 1M and 64G\n");
				return 2;
			}
			o.size &= ~(uint64_t)0xfff; /* whole pages */
			break;
		case 't':
			if (hm_parse_uint(optarg, 3600, &u) || !u) {
				fprintf(stderr, "hintmig track-demo: --seconds "
						"1..3600\n");
				return 2;
			}
			o.seconds = (unsigned)u;
			break;
		case 'r':
			if (hm_parse_rate(optarg, 10000000, &u) || !u) {
				fprintf(stderr, "hintmig track-demo: --rate "
						"1..10000000 pages/s\n");
				return 2;
			}
			o.rate = (unsigned)u;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			return hm_print_version("hintmig track-demo");
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	return run_demo(&o);
}

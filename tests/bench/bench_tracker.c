/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Write tracker costs, both modes:
 *  - harvest time per GiB tracked with 0%, 1%, 10% and 100% of the pages
 *    written since the previous harvest;
 *  - the cost of a first write to a protected page (sync: a round trip
 *    through the fault thread; async: a fault resolved in the kernel)
 *    against a write to an unprotected, present page.
 * Prints a table, asserts nothing. Memory is private anonymous, populated
 * before tracking starts (THP as the system default).
 *
 * Usage: bench_tracker [--quick] [--size 1G]   (--quick: 64 MiB)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Page i is in the pct% sample: a fixed scattered pattern. */
static bool in_sample(size_t i, unsigned pct)
{
	return (i * 2654435761u >> 7) % 100 < pct;
}

/* One byte into each sampled page; returns ns spent, *n pages. */
static uint64_t write_pages(volatile char *mem, size_t npages, size_t page,
			    unsigned pct, char val, size_t *n)
{
	uint64_t t0 = now_ns();

	*n = 0;
	for (size_t i = 0; i < npages; i++) {
		if (!in_sample(i, pct))
			continue;
		mem[i * page] = val;
		(*n)++;
	}
	return now_ns() - t0;
}

static void bench_mode(const struct hm_caps *caps, enum hm_tracker_mode mode,
		       size_t size)
{
	static const unsigned pcts[] = { 0, 1, 10, 100 };
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t npages = size / page;
	const double gib = (double)size / (double)(1ull << 30);
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { hm_log_stderr, NULL, HM_LOG_WARN },
		.nbits = npages,
	};
	struct hm_bitmap out;
	struct hm_tracker *t;
	uint64_t t0, start_ns;
	char *mem;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(mem, 1, size);
	if (hm_bitmap_init(&out, npages) < 0)
		exit(1);
	t = hm_tracker_open(caps, &o);
	if (!t || hm_tracker_add_range(t, (uintptr_t)mem, size, 0) < 0) {
		fprintf(stderr, "tracker (%s): %s\n", hm_tracker_mode_name(mode),
			strerror(errno));
		exit(1);
	}
	t0 = now_ns();
	if (hm_tracker_start(t) < 0)
		exit(1);
	start_ns = now_ns() - t0;
	printf("%-6s start (protect all)                %10.2f ms/GiB\n",
	       hm_tracker_mode_name(mode), (double)start_ns / 1e6 / gib);

	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
		uint64_t wns, hns = UINT64_MAX;
		size_t n;
		long got = 0;

		/* One write pass (a sync-mode fault is slow), then the
		 * harvest; best of 3 only when nothing was written. */
		wns = write_pages(mem, npages, page, pcts[k], (char)k, &n);
		for (int rep = 0; rep < (pcts[k] ? 1 : 3); rep++) {
			uint64_t h;

			memset(out.words, 0, out.nwords * sizeof(uint64_t));
			t0 = now_ns();
			got = hm_tracker_harvest(t, &out);
			h = now_ns() - t0;
			if (h < hns)
				hns = h;
		}
		printf("%-6s %3u%% written %9zu pages     harvest %10.2f ms/GiB"
		       "   first write %7.0f ns/page%s\n",
		       hm_tracker_mode_name(mode), pcts[k], n,
		       (double)hns / 1e6 / gib,
		       n ? (double)wns / (double)n : 0.0,
		       got == (long)n ? "" : "  (count mismatch!)");
	}
	hm_tracker_close(t);
	hm_bitmap_fini(&out);
	munmap(mem, size);
}

static void bench_unprotected(size_t size)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t npages = size / page;
	uint64_t ns;
	size_t n;
	char *mem;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		exit(1);
	memset(mem, 1, size);
	ns = write_pages(mem, npages, page, 100, 2, &n);
	printf("%-6s 100%% written %9zu pages     (no tracking)            "
	       "         write %7.1f ns/page\n", "none", n,
	       (double)ns / (double)n);
	munmap(mem, size);
}

int main(int argc, char **argv)
{
	const enum hm_tracker_mode modes[] = { HM_TRACKER_SYNC,
					       HM_TRACKER_ASYNC };
	size_t size = 1ull << 30;
	struct hm_caps caps;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			size = 64ull << 20;
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			size = strtoull(argv[++i], NULL, 10) << 20;
		} else {
			fprintf(stderr, "usage: bench_tracker [--quick] "
					"[--size MiB]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	hm_caps_probe(&caps, NULL);
	printf("bench_tracker: %zu MiB private anonymous, kernel %s, "
	       "THP %s\n", size >> 20, caps.kernel_release,
	       caps.thp ? "available" : "off");
	bench_unprotected(size);
	for (size_t m = 0; m < 2; m++) {
		if (hm_tracker_mode_pick(&caps, modes[m]) < 0) {
			printf("%-6s not available on this kernel\n",
			       hm_tracker_mode_name(modes[m]));
			continue;
		}
		bench_mode(&caps, modes[m], size);
	}
	return 0;
}

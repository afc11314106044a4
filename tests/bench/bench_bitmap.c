/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Microbenchmark of src/bitmap.c: ns per operation, and the guest memory
 * a full scan covers per second (bits * 4 KiB / scan time) on a bitmap of
 * 64 GiB of 4 KiB pages (16M bits). Prints numbers, asserts nothing.
 *
 *   bench_bitmap [--quick]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hintmig/bitmap.h"

#define NBITS (UINT64_C(16) << 20) /* 64 GiB of 4 KiB pages */
#define PAGE 4096.0
#define NIDX (1u << 20)

static volatile uint64_t sink;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng_s = UINT64_C(0x12345678abcdef);

static uint64_t rnd(void)
{
	uint64_t z = (rng_s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void report(const char *what, double ns, double ops)
{
	printf("%-34s %10.2f ns/op\n", what, ns / ops);
}

static void report_scan(const char *what, double ns, double ops)
{
	double gib = (double)NBITS * PAGE / (1024.0 * 1024 * 1024);

	printf("%-34s %10.2f ns/op  %10.1f GiB/s covered (%.3f ms/scan)\n",
	       what, ns / ops, gib * ops / (ns / 1e9), ns / ops / 1e6);
}

/* Fill with density ppm (parts per million), random positions. */
static void fill(struct hm_bitmap *b, unsigned ppm)
{
	memset(b->words, 0, b->nwords * sizeof(uint64_t));
	for (size_t i = 0; i < b->nbits; i++)
		if (rnd() % 1000000 < ppm)
			hm_bitmap_set(b, i);
}

/* One full walk of the set bits; returns the number found. */
static size_t walk(const struct hm_bitmap *b)
{
	size_t n = 0;

	for (size_t i = hm_bitmap_find_next_set(b, 0); i < b->nbits;
	     i = hm_bitmap_find_next_set(b, i + 1))
		n++;
	return n;
}

static void bench_walk(const char *what, struct hm_bitmap *b, int reps)
{
	char label[64];
	size_t found = 0;
	double t0 = now_ns(), t;

	for (int k = 0; k < reps; k++)
		found = walk(b);
	t = now_ns() - t0;
	sink += found;
	report_scan(what, t, reps);
	snprintf(label, sizeof(label), "  per bit found (%zu bits)", found);
	if (found)
		report(label, t, (double)reps * (double)found);
}

int main(int argc, char **argv)
{
	int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	int scale = quick ? 1 : 5;
	struct hm_bitmap a, b;
	size_t *idx;
	struct hm_page_range *rl;
	size_t nrl = 4096, pages = 0;
	double t0, t;

	if (hm_bitmap_init(&a, NBITS) < 0 || hm_bitmap_init(&b, NBITS) < 0) {
		fprintf(stderr, "bench_bitmap: out of memory\n");
		return 1;
	}
	idx = malloc(NIDX * sizeof(*idx));
	rl = malloc(nrl * sizeof(*rl));
	if (!idx || !rl) {
		fprintf(stderr, "bench_bitmap: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < NIDX; i++)
		idx[i] = (size_t)(rnd() % NBITS);
	printf("bench_bitmap: %" PRIu64 " bits (%.0f GiB of 4 KiB pages)%s\n",
	       NBITS, (double)NBITS * PAGE / (1u << 30),
	       quick ? ", quick" : "");

	/* single bits, random positions (cache misses included) */
	t0 = now_ns();
	for (int k = 0; k < scale; k++)
		for (size_t i = 0; i < NIDX; i++)
			hm_bitmap_set(&a, idx[i]);
	report("set (random)", now_ns() - t0, (double)NIDX * scale);

	t0 = now_ns();
	for (int k = 0; k < scale; k++)
		for (size_t i = 0; i < NIDX; i++)
			hm_bitmap_set_atomic(&a, idx[i]);
	report("set_atomic (random)", now_ns() - t0, (double)NIDX * scale);

	t0 = now_ns();
	for (int k = 0; k < scale; k++)
		for (size_t i = 0; i < NIDX; i++)
			hm_bitmap_set_atomic(&a, i);
	report("set_atomic (sequential)", now_ns() - t0, (double)NIDX * scale);

	{
		uint64_t hits = 0;

		t0 = now_ns();
		for (int k = 0; k < scale; k++)
			for (size_t i = 0; i < NIDX; i++)
				hits += hm_bitmap_test(&a, idx[i]);
		t = now_ns() - t0;
		sink += hits;
		report("test (random)", t, (double)NIDX * scale);
	}

	/* full scans */
	memset(a.words, 0, a.nwords * sizeof(uint64_t));
	bench_walk("find_next_set, empty", &a, 20 * scale);
	fill(&a, 10000);
	bench_walk("find_next_set, 1% dense", &a, 2 * scale);
	fill(&a, 500000);
	bench_walk("find_next_set, 50% dense", &a, scale);
	{
		size_t c = 0;

		hm_bitmap_set_range(&b, 0, NBITS);
		t0 = now_ns();
		for (int k = 0; k < 10 * scale; k++)
			c += hm_bitmap_find_next_clear(&b, 0);
		report_scan("find_next_clear, full", now_ns() - t0,
			    10 * scale);
		sink += c;
		hm_bitmap_clear_range(&b, 0, NBITS);
	}

	/* count */
	{
		size_t c = 0;

		t0 = now_ns();
		for (int k = 0; k < 20 * scale; k++)
			c += hm_bitmap_count(&a);
		report_scan("count (whole bitmap)", now_ns() - t0, 20 * scale);
		t0 = now_ns();
		for (int k = 0; k < scale; k++)
			for (size_t i = 0; i < NIDX; i++)
				c += hm_bitmap_count_range(&a, idx[i],
							   idx[i] & 1023);
		report("count_range (random, <=1023 bits)", now_ns() - t0,
		       (double)NIDX * scale);
		sink += c;
	}

	/* the sender's word grab */
	{
		uint64_t acc = 0;
		double words = 0;

		t = 0;
		for (int k = 0; k < 2 * scale; k++) {
			fill(&a, k % 2 ? 10000 : 500000);
			t0 = now_ns();
			for (size_t w = 0; w < a.nwords; w++)
				acc ^= hm_bitmap_fetch_clear_word(&a, w);
			t += now_ns() - t0;
			words += (double)a.nwords;
		}
		sink += acc;
		report_scan("fetch_clear_word, all words", t, 2 * scale);
		report("  per word", t, words);
	}

	/* or: a 1%-dense log into a 50%-dense migration bitmap */
	{
		long c = 0;

		fill(&a, 500000);
		fill(&b, 10000);
		t0 = now_ns();
		for (int k = 0; k < 4 * scale; k++)
			c += hm_bitmap_or(&a, &b);
		report_scan("or (1% src into 50% dst)", now_ns() - t0,
			    4 * scale);
		t0 = now_ns();
		for (int k = 0; k < 4 * scale; k++)
			c += hm_bitmap_andnot(&a, &b);
		report_scan("andnot (1% src)", now_ns() - t0, 4 * scale);
		sink += (uint64_t)c;
	}

	/* apply_ranges: hint batches of 4096 ranges of 1..512 pages */
	{
		long c = 0;
		int reps = 20 * scale;

		for (size_t i = 0; i < nrl; i++) {
			rl[i].len = 1 + rnd() % 512;
			rl[i].start = rnd() % (NBITS - rl[i].len);
			pages += rl[i].len;
		}
		fill(&a, 500000);
		t0 = now_ns();
		for (int k = 0; k < reps; k++)
			c += hm_bitmap_apply_ranges(&a, rl, nrl, k % 2);
		t = now_ns() - t0;
		sink += (uint64_t)c;
		report("apply_ranges, per range", t, (double)reps * nrl);
		report("apply_ranges, per page", t, (double)reps * pages);

		for (size_t i = 0; i < nrl; i++) {
			rl[i].len = 1;
			rl[i].start = rnd() % NBITS;
		}
		t0 = now_ns();
		for (int k = 0; k < reps; k++)
			c += hm_bitmap_apply_ranges(&a, rl, nrl, k % 2);
		report("apply_ranges, 1-page ranges", now_ns() - t0,
		       (double)reps * nrl);
		sink += (uint64_t)c;
	}

	free(idx);
	free(rl);
	hm_bitmap_fini(&a);
	hm_bitmap_fini(&b);
	return 0;
}

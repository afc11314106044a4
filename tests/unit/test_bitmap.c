/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit test of src/bitmap.c against a naive model (one bool per bit):
 * randomized operations on many sizes with a bias toward word boundaries,
 * the error contracts, and a concurrency test (markers setting and
 * clearing atomically while a sender takes whole words).
 *
 * Seed: printed; override with HM_TEST_SEED=<number>.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hintmig/bitmap.h"
#include "hm_test.h"

/* ---- deterministic PRNG (splitmix64) ------------------------------------ */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (bias negligible for test purposes). */
static size_t rng_below(struct rng *r, size_t n)
{
	return (size_t)(rng_next(r) % n);
}

/* A position in [0, lim]: half the time next to a word boundary. */
static size_t rng_pos(struct rng *r, size_t lim)
{
	size_t p;

	if (rng_below(r, 2) == 0) {
		size_t k = rng_below(r, lim / 64 + 2);

		p = k * 64 + rng_below(r, 3);
		p = p >= 1 ? p - 1 : 0;
	} else {
		p = rng_below(r, lim + 1);
	}
	return p > lim ? lim : p;
}

/* A range [*s, *s + *n) inside [0, nbits]; biased to edge cases. */
static void rng_range(struct rng *r, size_t nbits, size_t *s, size_t *n)
{
	size_t rem;

	*s = rng_pos(r, nbits);
	rem = nbits - *s;
	switch (rng_below(r, 6)) {
	case 0:
		*n = 0;
		break;
	case 1:
		*n = rem; /* to the end */
		break;
	case 2: /* end at a word boundary (or +-1) */
		*n = rng_pos(r, nbits);
		*n = *n > *s ? *n - *s : 0;
		break;
	case 3:
		*n = rng_below(r, 130 < rem + 1 ? 130 : rem + 1);
		break;
	default:
		*n = rng_below(r, rem + 1);
		break;
	}
	if (*n > rem)
		*n = rem;
}

/* ---- model ------------------------------------------------------------- */

struct model {
	bool *v;
	size_t n;
};

static void model_init(struct model *m, size_t n)
{
	m->v = calloc(n, sizeof(bool));
	HM_CHECK(m->v != NULL);
	m->n = n;
}

static void model_fini(struct model *m)
{
	free(m->v);
	m->v = NULL;
}

static size_t model_next(const struct model *m, size_t from, bool val)
{
	for (size_t i = from; i < m->n; i++)
		if (m->v[i] == val)
			return i;
	return m->n;
}

static size_t model_count(const struct model *m, size_t s, size_t n)
{
	size_t c = 0;

	for (size_t i = s; i < m->n && i - s < n; i++)
		c += m->v[i];
	return c;
}

/* Full comparison, including the tail invariant. */
static void check_same(const struct hm_bitmap *b, const struct model *m,
		       const char *what)
{
	size_t nw = (m->n + 63) / 64;

	HM_CHECK_EQ(b->nbits, m->n);
	HM_CHECK_EQ(b->nwords, nw);
	for (size_t i = 0; i < m->n; i++) {
		if (hm_bitmap_test(b, i) != m->v[i])
			hm_test_fail("%s: nbits %zu bit %zu is %d, model %d",
				     what, m->n, i, hm_bitmap_test(b, i),
				     m->v[i]);
	}
	if (m->n % 64) {
		uint64_t tail = b->words[nw - 1] >> (m->n % 64);

		if (tail)
			hm_test_fail("%s: nbits %zu tail bits set: %#" PRIx64,
				     what, m->n, tail);
	}
}

/* Fill both with random content of a chosen density. */
static void random_fill(struct rng *r, struct hm_bitmap *b, struct model *m)
{
	unsigned dens = (unsigned)rng_below(r, 5); /* 0, 25, 50, 75, 100 % */

	for (size_t i = 0; i < m->n; i++) {
		bool v = rng_below(r, 4) < dens;

		m->v[i] = v;
		if (v)
			hm_bitmap_set(b, i);
		else
			hm_bitmap_clear(b, i);
	}
}

/* ---- randomized operations ------------------------------------------------ */

enum {
	OP_SET, OP_CLEAR, OP_SET_A, OP_CLEAR_A, OP_TEST,
	OP_SETR, OP_CLEARR, OP_SETR_A, OP_CLEARR_A,
	OP_NEXT_SET, OP_NEXT_CLEAR, OP_COUNT, OP_FETCH_CLEAR,
	OP_OR, OP_ANDNOT, OP_APPLY, OP_APPLY_BAD, OP_RANGE_BAD, OP_FILL,
	OP_ITERATE, OP_NUM
};

static void one_op(struct rng *r, struct hm_bitmap *b, struct model *m,
		   int op)
{
	size_t nbits = m->n, i, s, n;

	switch (op) {
	case OP_SET:
	case OP_CLEAR:
		i = rng_pos(r, nbits - 1);
		if (op == OP_SET)
			hm_bitmap_set(b, i);
		else
			hm_bitmap_clear(b, i);
		m->v[i] = op == OP_SET;
		break;
	case OP_SET_A:
	case OP_CLEAR_A: {
		bool prev;

		i = rng_pos(r, nbits - 1);
		prev = op == OP_SET_A ? hm_bitmap_set_atomic(b, i)
				      : hm_bitmap_clear_atomic(b, i);
		HM_CHECK_EQ(prev, m->v[i]);
		m->v[i] = op == OP_SET_A;
		break;
	}
	case OP_TEST:
		i = rng_pos(r, nbits - 1);
		HM_CHECK_EQ(hm_bitmap_test(b, i), m->v[i]);
		HM_CHECK_EQ(hm_bitmap_test_atomic(b, i), m->v[i]);
		break;
	case OP_SETR:
	case OP_CLEARR:
	case OP_SETR_A:
	case OP_CLEARR_A: {
		bool val = op == OP_SETR || op == OP_SETR_A;
		int ret;

		rng_range(r, nbits, &s, &n);
		switch (op) {
		case OP_SETR:
			ret = hm_bitmap_set_range(b, s, n);
			break;
		case OP_CLEARR:
			ret = hm_bitmap_clear_range(b, s, n);
			break;
		case OP_SETR_A:
			ret = hm_bitmap_set_range_atomic(b, s, n);
			break;
		default:
			ret = hm_bitmap_clear_range_atomic(b, s, n);
			break;
		}
		HM_CHECK_EQ(ret, 0);
		for (size_t k = s; k < s + n; k++)
			m->v[k] = val;
		break;
	}
	case OP_NEXT_SET:
	case OP_NEXT_CLEAR: {
		bool val = op == OP_NEXT_SET;
		size_t got;

		/* from may be past the end */
		i = rng_below(r, 8) == 0 ? nbits + rng_below(r, 100)
					 : rng_pos(r, nbits);
		got = val ? hm_bitmap_find_next_set(b, i)
			  : hm_bitmap_find_next_clear(b, i);
		if (got != model_next(m, i, val))
			hm_test_fail("find_next_%s(%zu) nbits %zu = %zu, "
				     "model %zu",
				     val ? "set" : "clear", i, nbits, got,
				     model_next(m, i, val));
		break;
	}
	case OP_COUNT:
		if (rng_below(r, 8) == 0) {
			/* clipping: start past the end, or n past the end */
			s = rng_pos(r, nbits + 130);
			n = rng_below(r, 4) == 0 ? SIZE_MAX
						 : rng_below(r, nbits + 200);
		} else {
			rng_range(r, nbits, &s, &n);
		}
		HM_CHECK_EQ(hm_bitmap_count_range(b, s, n),
			    model_count(m, s, n));
		break;
	case OP_FETCH_CLEAR: {
		size_t w = rng_below(r, b->nwords);
		uint64_t got = hm_bitmap_fetch_clear_word(b, w), want = 0;

		for (size_t k = 0; k < 64 && w * 64 + k < nbits; k++) {
			if (m->v[w * 64 + k])
				want |= UINT64_C(1) << k;
			m->v[w * 64 + k] = false;
		}
		if (got != want)
			hm_test_fail("fetch_clear_word(%zu) = %#" PRIx64
				     ", model %#" PRIx64, w, got, want);
		HM_CHECK_EQ(b->words[w], 0);
		break;
	}
	case OP_OR:
	case OP_ANDNOT: {
		struct hm_bitmap src;
		struct model ms;
		long ret, want = 0;

		HM_CHECK_OK(hm_bitmap_init(&src, nbits));
		model_init(&ms, nbits);
		random_fill(r, &src, &ms);
		ret = op == OP_OR ? hm_bitmap_or(b, &src)
				  : hm_bitmap_andnot(b, &src);
		for (size_t k = 0; k < nbits; k++) {
			if (!ms.v[k])
				continue;
			if (op == OP_OR && !m->v[k]) {
				want++;
				m->v[k] = true;
			} else if (op == OP_ANDNOT && m->v[k]) {
				want++;
				m->v[k] = false;
			}
		}
		HM_CHECK_EQ(ret, want);
		check_same(&src, &ms, "or/andnot source unchanged");
		hm_bitmap_fini(&src);
		model_fini(&ms);
		break;
	}
	case OP_APPLY: {
		struct hm_page_range rl[12];
		size_t nr = rng_below(r, 12);
		bool set = rng_below(r, 2);
		long want = 0;

		for (size_t k = 0; k < nr; k++) {
			if (k > 0 && rng_below(r, 3) == 0) {
				/* overlap the previous range */
				rl[k].start = rl[k - 1].start +
					      rng_below(r, rl[k - 1].len + 1);
				rl[k].len = rng_below(r,
						      nbits - rl[k].start + 1);
			} else {
				rng_range(r, nbits, &s, &n);
				rl[k].start = s;
				rl[k].len = n;
			}
		}
		for (size_t k = 0; k < nr; k++)
			for (uint64_t j = rl[k].start;
			     j < rl[k].start + rl[k].len; j++) {
				if (m->v[j] != set)
					want++;
				m->v[j] = set;
			}
		HM_CHECK_EQ(hm_bitmap_apply_ranges(b, nr ? rl : NULL, nr, set),
			    want);
		break;
	}
	case OP_APPLY_BAD: {
		/* Valid ranges plus one bad one anywhere: nothing applied. */
		struct hm_page_range rl[6];
		size_t nr = 1 + rng_below(r, 6), bad = rng_below(r, nr);

		for (size_t k = 0; k < nr; k++) {
			rng_range(r, nbits, &s, &n);
			rl[k].start = s;
			rl[k].len = n ? n : 1;
			if (rl[k].start + rl[k].len > nbits)
				rl[k].start = nbits - rl[k].len;
		}
		switch (rng_below(r, 4)) {
		case 0: /* one past the end */
			rl[bad].start = nbits - rl[bad].len + 1;
			break;
		case 1: /* start past the end */
			rl[bad].start = nbits + 1 + rng_below(r, 100);
			rl[bad].len = 0;
			break;
		case 2: /* start + len wraps around */
			rl[bad].start = nbits - 1;
			rl[bad].len = UINT64_MAX;
			break;
		default: /* huge start */
			rl[bad].start = UINT64_MAX - 3;
			rl[bad].len = 5;
			break;
		}
		HM_CHECK_EQ(hm_bitmap_apply_ranges(b, rl, nr, rng_below(r, 2)),
			    -ERANGE);
		check_same(b, m, "apply_ranges -ERANGE must not change bits");
		break;
	}
	case OP_RANGE_BAD: {
		size_t bs, bn;

		switch (rng_below(r, 3)) {
		case 0:
			bs = nbits - rng_below(r, nbits < 5 ? nbits : 5);
			bn = nbits - bs + 1;
			break;
		case 1:
			bs = nbits + 1;
			bn = 0;
			break;
		default:
			bs = 1 + rng_below(r, nbits);
			bn = SIZE_MAX; /* wraps */
			break;
		}
		HM_CHECK_EQ(hm_bitmap_set_range(b, bs, bn), -ERANGE);
		HM_CHECK_EQ(hm_bitmap_clear_range(b, bs, bn), -ERANGE);
		HM_CHECK_EQ(hm_bitmap_set_range_atomic(b, bs, bn), -ERANGE);
		HM_CHECK_EQ(hm_bitmap_clear_range_atomic(b, bs, bn), -ERANGE);
		check_same(b, m, "range -ERANGE must not change bits");
		break;
	}
	case OP_FILL:
		random_fill(r, b, m);
		break;
	case OP_ITERATE: {
		/* Walk all set bits, then all clear bits. */
		for (int val = 0; val < 2; val++) {
			size_t p = 0, q = 0, got;

			for (;;) {
				got = val ? hm_bitmap_find_next_set(b, p)
					  : hm_bitmap_find_next_clear(b, p);
				q = model_next(m, p, val);
				HM_CHECK_EQ(got, q);
				if (got >= nbits)
					break;
				p = got + 1;
			}
		}
		HM_CHECK_EQ(hm_bitmap_count(b), model_count(m, 0, nbits));
		break;
	}
	}
}

static void test_random_size(struct rng *r, size_t nbits, unsigned nops)
{
	struct hm_bitmap b;
	struct model m;
	/* Full comparison after every op on small sizes, periodically on
	 * large ones. */
	unsigned every = nbits <= 4096 ? 1 : 64;

	HM_CHECK_OK(hm_bitmap_init(&b, nbits));
	model_init(&m, nbits);
	check_same(&b, &m, "init is zero");
	HM_CHECK_EQ(hm_bitmap_find_next_set(&b, 0), nbits);
	HM_CHECK_EQ(hm_bitmap_find_next_clear(&b, 0), 0);
	HM_CHECK_EQ(hm_bitmap_count(&b), 0);

	for (unsigned k = 0; k < nops; k++) {
		int op = (int)rng_below(r, OP_NUM);

		/* Expensive ops less often on big bitmaps. */
		if (nbits > 4096 &&
		    (op == OP_FILL || op == OP_OR || op == OP_ANDNOT ||
		     op == OP_ITERATE || op == OP_APPLY_BAD ||
		     op == OP_RANGE_BAD) &&
		    rng_below(r, 8) != 0)
			op = OP_NEXT_SET;
		one_op(r, &b, &m, op);
		if (k % every == 0)
			check_same(&b, &m, "after random op");
	}
	one_op(r, &b, &m, OP_ITERATE);
	check_same(&b, &m, "end");

	/* Full-bitmap extremes. */
	HM_CHECK_OK(hm_bitmap_set_range(&b, 0, nbits));
	memset(m.v, 1, nbits);
	check_same(&b, &m, "set all");
	HM_CHECK_EQ(hm_bitmap_count(&b), nbits);
	HM_CHECK_EQ(hm_bitmap_find_next_clear(&b, 0), nbits);
	HM_CHECK_EQ(hm_bitmap_find_next_set(&b, nbits - 1), nbits - 1);
	HM_CHECK_OK(hm_bitmap_clear_range_atomic(&b, 0, nbits));
	memset(m.v, 0, nbits);
	check_same(&b, &m, "clear all");
	HM_CHECK_OK(hm_bitmap_set_range_atomic(&b, 0, nbits));
	HM_CHECK_EQ(hm_bitmap_count(&b), nbits);
	{
		struct hm_page_range all = { 0, nbits };

		HM_CHECK_EQ(hm_bitmap_apply_ranges(&b, &all, 1, true), 0);
		HM_CHECK_EQ(hm_bitmap_apply_ranges(&b, &all, 1, false), nbits);
		HM_CHECK_EQ(hm_bitmap_apply_ranges(&b, &all, 1, false), 0);
		HM_CHECK_EQ(hm_bitmap_apply_ranges(&b, &all, 1, true), nbits);
		memset(m.v, 1, nbits);
		check_same(&b, &m, "apply all");
	}

	hm_bitmap_fini(&b);
	model_fini(&m);
}

/* ---- fixed cases ---------------------------------------------------------- */

static void test_contracts(void)
{
	struct hm_bitmap a, b;
	struct hm_page_range rl[3];

	HM_CHECK_EQ(hm_bitmap_init(&a, 0), -EINVAL);
	HM_CHECK(a.words == NULL);
	hm_bitmap_fini(&a); /* fini after a failed init is harmless */
	hm_bitmap_fini(&a);

	HM_CHECK_OK(hm_bitmap_init(&a, 100));
	HM_CHECK_OK(hm_bitmap_init(&b, 101));
	HM_CHECK_EQ(a.nwords, 2);
	HM_CHECK_EQ(hm_bitmap_or(&a, &b), -EINVAL);
	HM_CHECK_EQ(hm_bitmap_andnot(&a, &b), -EINVAL);

	/* Zero-length ranges at the very end are valid no-ops. */
	HM_CHECK_EQ(hm_bitmap_set_range(&a, 100, 0), 0);
	HM_CHECK_EQ(hm_bitmap_set_range_atomic(&a, 100, 0), 0);
	HM_CHECK_EQ(hm_bitmap_set_range(&a, 101, 0), -ERANGE);
	HM_CHECK_EQ(hm_bitmap_set_range(&a, 0, 101), -ERANGE);
	HM_CHECK_EQ(hm_bitmap_count(&a), 0);

	/* Overlapping ranges count each changed bit once. */
	rl[0] = (struct hm_page_range){ 10, 60 };  /* 10..69 */
	rl[1] = (struct hm_page_range){ 50, 30 };  /* 50..79 */
	rl[2] = (struct hm_page_range){ 60, 0 };
	HM_CHECK_EQ(hm_bitmap_apply_ranges(&a, rl, 3, true), 70);
	HM_CHECK_EQ(hm_bitmap_count(&a), 70);
	HM_CHECK_EQ(hm_bitmap_find_next_set(&a, 0), 10);
	HM_CHECK_EQ(hm_bitmap_find_next_clear(&a, 10), 80);
	HM_CHECK_EQ(hm_bitmap_apply_ranges(&a, rl, 3, true), 0);
	HM_CHECK_EQ(hm_bitmap_apply_ranges(&a, NULL, 0, true), 0);
	rl[2] = (struct hm_page_range){ 99, 2 };
	HM_CHECK_EQ(hm_bitmap_apply_ranges(&a, rl, 3, false), -ERANGE);
	HM_CHECK_EQ(hm_bitmap_count(&a), 70);
	rl[2] = (struct hm_page_range){ 99, 1 };
	HM_CHECK_EQ(hm_bitmap_apply_ranges(&a, rl, 3, false), 70);
	HM_CHECK_EQ(hm_bitmap_count(&a), 0);

	/* fetch_clear_word of the partial last word */
	hm_bitmap_set(&a, 64);
	hm_bitmap_set(&a, 99);
	HM_CHECK_EQ(hm_bitmap_fetch_clear_word(&a, 1),
		    (UINT64_C(1) << 0) | (UINT64_C(1) << 35));
	HM_CHECK_EQ(hm_bitmap_fetch_clear_word(&a, 1), 0);

	/* or/andnot with itself */
	hm_bitmap_set_range(&a, 3, 90);
	HM_CHECK_EQ(hm_bitmap_or(&a, &a), 0);
	HM_CHECK_EQ(hm_bitmap_andnot(&a, &a), 90);
	HM_CHECK_EQ(hm_bitmap_count(&a), 0);

	hm_bitmap_fini(&a);
	hm_bitmap_fini(&b);
	HM_CHECK(a.words == NULL && a.nbits == 0 && a.nwords == 0);
}

/* ---- concurrency ---------------------------------------------------------- */

/*
 * nbits bits cut into 40-bit blocks (deliberately not word-aligned, so
 * that words are shared between zones). Blocks with k % 3 == 0 are the
 * "clear zone": pre-set, and clearer threads clear chosen parts of them.
 * The other blocks are the "set zone": marker threads set chosen bits,
 * some by several threads at once. One sender takes words with
 * fetch_clear_word meanwhile. At the end, per bit:
 *   set zone:   taken | remaining == set by some marker
 *   clear zone: not cleared -> taken | remaining;
 *               cleared     -> not remaining;
 *               (taken | remaining) never holds a bit outside the preset.
 */
#define CC_BLOCK 40
#define CC_MARKERS 4

struct cc_shared {
	struct hm_bitmap bm;
	size_t nbits;
	bool *expect_set;   /* set by some marker */
	bool *expect_clear; /* cleared by some clearer */
	uint64_t *taken;    /* sender's haul, one bit per page */
	int markers_done;
	uint64_t seed;
	size_t rounds; /* operations per marker */
	unsigned busy_passes; /* sender passes while markers ran */
	pthread_barrier_t start;
};

struct cc_thread {
	struct cc_shared *sh;
	int id;
	bool clearer;
	/* planned operations: kind, start, len */
	size_t nops;
	struct { int kind; size_t s, n; } *ops;
	pthread_t th;
};

static bool cc_in_clear_zone(size_t i)
{
	return (i / CC_BLOCK) % 3 == 0;
}

/* Plan a thread's work (single-threaded, before start), recording the
 * expected effect. */
static void cc_plan(struct cc_thread *t, struct rng *r)
{
	struct cc_shared *sh = t->sh;

	t->nops = sh->rounds;
	t->ops = calloc(t->nops, sizeof(*t->ops));
	HM_CHECK(t->ops != NULL);
	for (size_t k = 0; k < t->nops; k++) {
		size_t blk, bs, be, s, n;

		/* pick a block of this thread's zone */
		do {
			blk = rng_below(r, sh->nbits / CC_BLOCK);
		} while (cc_in_clear_zone(blk * CC_BLOCK) != t->clearer);
		bs = blk * CC_BLOCK;
		be = bs + CC_BLOCK;
		/* a sub-range of that block, and sometimes of the next
		 * blocks of the same zone (set zone: two blocks in a row) */
		s = bs + rng_below(r, CC_BLOCK);
		n = 1 + rng_below(r, be - s);
		if (!t->clearer && (blk % 3) == 1 && rng_below(r, 4) == 0)
			n = be + CC_BLOCK - s; /* spans blocks 1 and 2 */
		if (s + n > sh->nbits)
			n = sh->nbits - s;
		t->ops[k].kind = (int)rng_below(r, 4);
		t->ops[k].s = s;
		t->ops[k].n = n;
		for (size_t i = s; i < s + n; i++) {
			if (t->clearer)
				sh->expect_clear[i] = true;
			else
				sh->expect_set[i] = true;
		}
	}
}

static void *cc_worker(void *arg)
{
	struct cc_thread *t = arg;
	struct hm_bitmap *bm = &t->sh->bm;
	struct hm_bitmap priv;
	bool set = !t->clearer;

	HM_CHECK_OK(hm_bitmap_init(&priv, t->sh->nbits));
	pthread_barrier_wait(&t->sh->start);
	for (size_t k = 0; k < t->nops; k++) {
		size_t s = t->ops[k].s, n = t->ops[k].n;
		struct hm_page_range rr = { s, n };

		switch (t->ops[k].kind) {
		case 0:
			for (size_t i = s; i < s + n; i++) {
				if (set)
					hm_bitmap_set_atomic(bm, i);
				else
					hm_bitmap_clear_atomic(bm, i);
			}
			break;
		case 1:
			HM_CHECK_OK(set ? hm_bitmap_set_range_atomic(bm, s, n)
					: hm_bitmap_clear_range_atomic(bm, s,
								       n));
			break;
		case 2:
			HM_CHECK_OK(hm_bitmap_apply_ranges(bm, &rr, 1, set));
			break;
		default:
			/* through a private bitmap and or/andnot */
			HM_CHECK_OK(hm_bitmap_set_range(&priv, s, n));
			HM_CHECK_OK(set ? hm_bitmap_or(bm, &priv)
					: hm_bitmap_andnot(bm, &priv));
			HM_CHECK_OK(hm_bitmap_clear_range(&priv, s, n));
			break;
		}
	}
	hm_bitmap_fini(&priv);
	return NULL;
}

static void *cc_sender(void *arg)
{
	struct cc_shared *sh = arg;
	struct hm_bitmap *bm = &sh->bm;
	unsigned passes = 0;

	pthread_barrier_wait(&sh->start);
	for (;;) {
		int done = __atomic_load_n(&sh->markers_done, __ATOMIC_ACQUIRE);

		/* Once the markers are finished: with odd seeds stop right
		 * away, so that "remaining" is not empty; with even seeds
		 * take one more full pass. */
		if (done && (sh->seed & 1))
			break;
		if (!done)
			sh->busy_passes++;
		if (passes % 2 == 0) {
			/* every word */
			for (size_t w = 0; w < bm->nwords; w++)
				sh->taken[w] |=
					hm_bitmap_fetch_clear_word(bm, w);
		} else {
			/* only words find_next_set points at */
			size_t i = hm_bitmap_find_next_set(bm, 0);

			while (i < bm->nbits) {
				size_t w = i / 64;

				sh->taken[w] |=
					hm_bitmap_fetch_clear_word(bm, w);
				i = hm_bitmap_find_next_set(bm, (w + 1) * 64);
			}
		}
		passes++;
		if (done)
			break;
	}
	return NULL;
}

static void test_concurrency(uint64_t seed, size_t nbits, size_t rounds,
			     bool verbose)
{
	struct cc_shared sh = { .nbits = nbits, .seed = seed,
				.rounds = rounds };
	struct cc_thread th[CC_MARKERS + 2];
	pthread_t sender;
	struct rng r = { seed ^ UINT64_C(0xc0ffee) };
	size_t nth = CC_MARKERS + 2, nw, nset = 0, ncleared = 0, ntaken = 0;

	HM_CHECK_OK(hm_bitmap_init(&sh.bm, sh.nbits));
	nw = sh.bm.nwords;
	sh.expect_set = calloc(sh.nbits, sizeof(bool));
	sh.expect_clear = calloc(sh.nbits, sizeof(bool));
	sh.taken = calloc(nw, sizeof(uint64_t));
	HM_CHECK(sh.expect_set && sh.expect_clear && sh.taken);

	/* Pre-set the clear zone. */
	for (size_t i = 0; i < sh.nbits; i++)
		if (cc_in_clear_zone(i))
			hm_bitmap_set(&sh.bm, i);

	for (size_t k = 0; k < nth; k++) {
		th[k].sh = &sh;
		th[k].id = (int)k;
		th[k].clearer = k >= CC_MARKERS;
		cc_plan(&th[k], &r);
	}
	HM_CHECK_EQ(pthread_barrier_init(&sh.start, NULL, (unsigned)nth + 1),
		    0);
	HM_CHECK_EQ(pthread_create(&sender, NULL, cc_sender, &sh), 0);
	for (size_t k = 0; k < nth; k++)
		HM_CHECK_EQ(pthread_create(&th[k].th, NULL, cc_worker, &th[k]),
			    0);
	for (size_t k = 0; k < nth; k++)
		HM_CHECK_EQ(pthread_join(th[k].th, NULL), 0);
	__atomic_store_n(&sh.markers_done, 1, __ATOMIC_RELEASE);
	HM_CHECK_EQ(pthread_join(sender, NULL), 0);
	HM_CHECK_EQ(pthread_barrier_destroy(&sh.start), 0);

	for (size_t i = 0; i < sh.nbits; i++) {
		bool tk = (sh.taken[i / 64] >> (i % 64)) & 1;
		bool rem = hm_bitmap_test(&sh.bm, i);
		bool any = tk || rem;

		ntaken += tk;
		if (!cc_in_clear_zone(i)) {
			nset += sh.expect_set[i];
			if (any != sh.expect_set[i])
				hm_test_fail("concurrency: set-zone bit %zu: "
					     "taken %d remaining %d, marker "
					     "set %d",
					     i, tk, rem, sh.expect_set[i]);
		} else if (sh.expect_clear[i]) {
			ncleared++;
			if (rem)
				hm_test_fail("concurrency: cleared bit %zu "
					     "still set", i);
		} else if (!any) {
			hm_test_fail("concurrency: preset bit %zu lost", i);
		}
	}
	/* bits past nbits never appear */
	HM_CHECK_EQ(sh.taken[nw - 1] >> (sh.nbits % 64), 0);
	HM_CHECK_EQ(sh.bm.words[nw - 1] >> (sh.nbits % 64), 0);
	if (verbose)
		printf("concurrency: %zu bits, %d markers + %d clearers + "
		       "1 sender: %zu set, %zu cleared, %zu taken, %zu "
		       "remaining, %u sender passes during marking\n",
		       sh.nbits, CC_MARKERS, 2, nset, ncleared, ntaken,
		       hm_bitmap_count(&sh.bm), sh.busy_passes);

	for (size_t k = 0; k < nth; k++)
		free(th[k].ops);
	free(sh.expect_set);
	free(sh.expect_clear);
	free(sh.taken);
	hm_bitmap_fini(&sh.bm);
}

/*
 * Lost-update stress: RACE_THREADS threads hammer the same two words, each
 * owning 16 bits of every word (bits 16t .. 16t+15). Each thread sets its
 * own bits with one atomic API, checks they are all set, clears them,
 * checks they are all clear, and so on. Nobody else touches those bits, so
 * a read-modify-write that is not atomic (another thread storing a stale
 * copy of the word) shows up as a thread's own bits changing behind its
 * back, or as a wrong change count.
 */
#define RACE_THREADS 4
#define RACE_WORDS 2
#define RACE_ITERS 50000

enum {
	RACE_BIT, RACE_RANGE, RACE_APPLY, RACE_OR, RACE_NKINDS
};

static const char *const race_names[] = { "bit", "range", "apply_ranges",
					  "or/andnot" };

struct race_thread {
	struct hm_bitmap *bm;
	pthread_barrier_t *bar;
	int t, kind;
	pthread_t th;
};

/* Set or clear this thread's bits in every word; returns bits changed. */
static long race_op(struct race_thread *rt, struct hm_bitmap *priv,
		    const struct hm_page_range *rl, bool set)
{
	struct hm_bitmap *bm = rt->bm;
	size_t off = 16 * (size_t)rt->t;
	long changed = 0;

	switch (rt->kind) {
	case RACE_BIT:
		for (size_t w = 0; w < bm->nwords; w++)
			for (size_t k = 0; k < 16; k++) {
				size_t i = w * 64 + off + k;

				changed += (set ? hm_bitmap_set_atomic(bm, i)
						: hm_bitmap_clear_atomic(bm, i))
					   != set;
			}
		return changed;
	case RACE_RANGE:
		for (size_t w = 0; w < bm->nwords; w++)
			HM_CHECK_OK(set ? hm_bitmap_set_range_atomic(
						  bm, w * 64 + off, 16)
					: hm_bitmap_clear_range_atomic(
						  bm, w * 64 + off, 16));
		return (long)bm->nwords * 16;
	case RACE_APPLY:
		return hm_bitmap_apply_ranges(bm, rl, bm->nwords, set);
	default:
		return set ? hm_bitmap_or(bm, priv) : hm_bitmap_andnot(bm, priv);
	}
}

static void *race_worker(void *arg)
{
	struct race_thread *rt = arg;
	struct hm_bitmap *bm = rt->bm;
	size_t off = 16 * (size_t)rt->t;
	struct hm_bitmap priv;
	struct hm_page_range rl[RACE_WORDS];

	HM_CHECK_OK(hm_bitmap_init(&priv, bm->nbits));
	for (size_t w = 0; w < bm->nwords; w++) {
		HM_CHECK_OK(hm_bitmap_set_range(&priv, w * 64 + off, 16));
		rl[w] = (struct hm_page_range){ w * 64 + off, 16 };
	}
	pthread_barrier_wait(rt->bar);
	for (int it = 0; it < RACE_ITERS; it++) {
		for (int set = 1; set >= 0; set--) {
			long c = race_op(rt, &priv, rl, set);

			if (c != (long)bm->nwords * 16)
				hm_test_fail("race %s %s: thread %d changed "
					     "%ld bits, expected %ld",
					     race_names[rt->kind],
					     set ? "set" : "clear", rt->t, c,
					     (long)bm->nwords * 16);
			for (size_t w = 0; w < bm->nwords; w++) {
				uint64_t own = (__atomic_load_n(&bm->words[w],
								__ATOMIC_ACQUIRE)
						>> off) & 0xffff;

				if (own != (set ? 0xffffu : 0))
					hm_test_fail("race %s %s: thread %d's "
						     "bits in word %zu are "
						     "%#" PRIx64
						     " (lost update)",
						     race_names[rt->kind],
						     set ? "set" : "clear",
						     rt->t, w, own);
			}
		}
	}
	hm_bitmap_fini(&priv);
	return NULL;
}

static void test_race(void)
{
	struct hm_bitmap bm;
	pthread_barrier_t bar;
	struct race_thread rt[RACE_THREADS];

	HM_CHECK_OK(hm_bitmap_init(&bm, RACE_WORDS * 64));
	for (int kind = 0; kind < RACE_NKINDS; kind++) {
		HM_CHECK_EQ(pthread_barrier_init(&bar, NULL, RACE_THREADS), 0);
		for (int t = 0; t < RACE_THREADS; t++) {
			rt[t] = (struct race_thread){ .bm = &bm, .bar = &bar,
						      .t = t, .kind = kind };
			HM_CHECK_EQ(pthread_create(&rt[t].th, NULL,
						   race_worker, &rt[t]),
				    0);
		}
		for (int t = 0; t < RACE_THREADS; t++)
			HM_CHECK_EQ(pthread_join(rt[t].th, NULL), 0);
		HM_CHECK_EQ(pthread_barrier_destroy(&bar), 0);
		HM_CHECK_EQ(hm_bitmap_count(&bm), 0);
	}
	hm_bitmap_fini(&bm);
}

int main(void)
{
	static const size_t sizes[] = {
		1, 2, 31, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255,
		256, 257, 1000, 4095, 4096, 4097, 100003, 131072,
	};
	const char *env = getenv("HM_TEST_SEED");
	uint64_t seed = UINT64_C(0x5eed0b17a9);
	struct rng r;

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	printf("test_bitmap: seed %" PRIu64 " (set HM_TEST_SEED to repeat)\n",
	       seed);
	fflush(stdout);
	r.s = seed;

	test_contracts();
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		unsigned nops = sizes[k] <= 4096 ? 3000 : 1500;

		test_random_size(&r, sizes[k], nops);
	}
	/* a few random sizes */
	for (int k = 0; k < 8; k++)
		test_random_size(&r, 1 + rng_below(&r, 5000), 1000);
	test_race();
	/* Long runs on a large bitmap, then many short runs on a small
	 * one: few words, so threads collide on the same word, and few
	 * operations, so that a lost update is rarely repaired by a later
	 * set of the same bit. */
	for (int k = 0; k < 3; k++)
		test_concurrency(seed + (uint64_t)k, 65536 + 37, 3000, true);
	for (int k = 0; k < 400; k++)
		test_concurrency(seed + (uint64_t)k, 1000 + 37, 40, k == 0);
	printf("test_bitmap: OK\n");
	return 0;
}

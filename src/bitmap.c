/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Page bitmaps (see include/hintmig/bitmap.h for the contract).
 *
 * Concurrency: every word that another thread may touch is accessed with
 * __atomic builtins. Range operations use a masked read-modify-write on the
 * partial first/last words (so that bits outside the range, which may
 * belong to a concurrent marker, are never overwritten) and whole-word
 * stores or exchanges on the full words in between (a whole-word store of
 * all-ones or all-zeros is equivalent to an atomic OR/AND with a full mask,
 * whatever the previous value was). Readers (find, count, the source of
 * or/andnot) use relaxed atomic loads: each word is a consistent snapshot,
 * the whole bitmap is not.
 *
 * The tail invariant (bits at or past nbits in the last word are zero)
 * holds because no operation ever builds a mask reaching past nbits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hintmig/bitmap.h"

#define WORD_ONES UINT64_MAX

static inline uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Without -mpopcnt, GCC turns __builtin_popcountll into a libgcc call:
 * use a branch-free SWAR count for single words in that case. */
static inline unsigned popcount64(uint64_t x)
{
#if defined(__POPCNT__) || !(defined(__x86_64__) || defined(__i386__))
	return (unsigned)__builtin_popcountll(x);
#else
	x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
	x = (x & UINT64_C(0x3333333333333333)) +
	    ((x >> 2) & UINT64_C(0x3333333333333333));
	x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
	return (unsigned)((x * UINT64_C(0x0101010101010101)) >> 56);
#endif
}

/* Bulk population count of n words: the hot loop of hm_bitmap_count. On
 * x86 without -mpopcnt, a popcnt-targeted clone is chosen at run time. */
static size_t count_words_generic(const uint64_t *w, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += popcount64(ld(&w[i]));
	return c;
}

#if (defined(__x86_64__) || defined(__i386__)) && !defined(__POPCNT__)
__attribute__((target("popcnt")))
static size_t count_words_popcnt(const uint64_t *w, size_t n)
{
	size_t c0 = 0, c1 = 0, i = 0;

	for (; i + 2 <= n; i += 2) {
		c0 += (size_t)__builtin_popcountll(ld(&w[i]));
		c1 += (size_t)__builtin_popcountll(ld(&w[i + 1]));
	}
	if (i < n)
		c0 += (size_t)__builtin_popcountll(ld(&w[i]));
	return c0 + c1;
}

static size_t count_words(const uint64_t *w, size_t n)
{
	static int have_popcnt = -1;
	int h = __atomic_load_n(&have_popcnt, __ATOMIC_RELAXED);

	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("popcnt") ? 1 : 0;
		__atomic_store_n(&have_popcnt, h, __ATOMIC_RELAXED);
	}
	return h ? count_words_popcnt(w, n) : count_words_generic(w, n);
}
#else
static size_t count_words(const uint64_t *w, size_t n)
{
	return count_words_generic(w, n);
}
#endif

/* Mask of bits [start % 64, 64) of start's word. */
static inline uint64_t mask_from(size_t start)
{
	return WORD_ONES << (start % HM_BITS_PER_WORD);
}

/* Mask of bits [0, end % 64) of the word holding bit end - 1 (all ones
 * when end is a multiple of 64). */
static inline uint64_t mask_to(size_t end)
{
	return WORD_ONES >> ((HM_BITS_PER_WORD - end % HM_BITS_PER_WORD) %
			     HM_BITS_PER_WORD);
}

int hm_bitmap_init(struct hm_bitmap *b, size_t nbits)
{
	size_t nwords;

	if (!b)
		return -EINVAL;
	b->words = NULL;
	b->nbits = 0;
	b->nwords = 0;
	if (nbits == 0)
		return -EINVAL;
	nwords = nbits / HM_BITS_PER_WORD + (nbits % HM_BITS_PER_WORD != 0);
	b->words = calloc(nwords, sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	b->nwords = nwords;
	return 0;
}

void hm_bitmap_fini(struct hm_bitmap *b)
{
	if (!b)
		return;
	free(b->words);
	b->words = NULL;
	b->nbits = 0;
	b->nwords = 0;
}

/* ---- ranges ------------------------------------------------------------ */

enum {
	OP_SET = 1,    /* set, else clear */
	OP_ATOMIC = 2, /* atomic RMW / stores, else plain */
	OP_COUNT = 4,  /* count the bits changed (atomic only) */
};

/* Apply op to the bits of m in *w; returns bits changed if OP_COUNT. */
static inline __attribute__((always_inline)) size_t
word_apply(uint64_t *w, uint64_t m, unsigned op)
{
	uint64_t old, want = (op & OP_SET) ? m : 0;

	if (!(op & OP_ATOMIC)) {
		if (op & OP_SET)
			*w |= m;
		else
			*w &= ~m;
		return 0;
	}
	/* Nothing to do: the load is the linearization point, and the
	 * cache line stays clean. */
	old = ld(w);
	if ((old & m) == want)
		return 0;
	if (op & OP_SET)
		old = __atomic_fetch_or(w, m, __ATOMIC_ACQ_REL);
	else
		old = __atomic_fetch_and(w, ~m, __ATOMIC_ACQ_REL);
	if (!(op & OP_COUNT))
		return 0;
	return popcount64((old ^ want) & m);
}

/* Apply op to n whole words. */
static inline __attribute__((always_inline)) size_t
full_words_apply(uint64_t *w, size_t n, unsigned op)
{
	uint64_t want = (op & OP_SET) ? WORD_ONES : 0;
	size_t c = 0;

	if (!(op & OP_ATOMIC)) {
		memset(w, (op & OP_SET) ? 0xff : 0, n * sizeof(*w));
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t old = ld(&w[i]);

		if (old == want)
			continue;
		if (op & OP_COUNT) {
			old = __atomic_exchange_n(&w[i], want,
						  __ATOMIC_ACQ_REL);
			c += popcount64(old ^ want);
		} else {
			__atomic_store_n(&w[i], want, __ATOMIC_RELEASE);
		}
	}
	return c;
}

/* Apply op to bits [start, end), start < end <= nbits. */
static inline __attribute__((always_inline)) size_t
range_apply(struct hm_bitmap *b, size_t start, size_t end, unsigned op)
{
	size_t ws = start / HM_BITS_PER_WORD;
	size_t we = (end - 1) / HM_BITS_PER_WORD;
	size_t c;

	if (ws == we)
		return word_apply(&b->words[ws], mask_from(start) & mask_to(end),
				  op);
	c = word_apply(&b->words[ws], mask_from(start), op);
	c += full_words_apply(&b->words[ws + 1], we - ws - 1, op);
	c += word_apply(&b->words[we], mask_to(end), op);
	return c;
}

static inline int range_check(const struct hm_bitmap *b, size_t start,
			      size_t n)
{
	if (start > b->nbits || n > b->nbits - start)
		return -ERANGE;
	return 0;
}

int hm_bitmap_set_range(struct hm_bitmap *b, size_t start, size_t n)
{
	int r = range_check(b, start, n);

	if (r < 0 || n == 0)
		return r;
	range_apply(b, start, start + n, OP_SET);
	return 0;
}

int hm_bitmap_clear_range(struct hm_bitmap *b, size_t start, size_t n)
{
	int r = range_check(b, start, n);

	if (r < 0 || n == 0)
		return r;
	range_apply(b, start, start + n, 0);
	return 0;
}

int hm_bitmap_set_range_atomic(struct hm_bitmap *b, size_t start, size_t n)
{
	int r = range_check(b, start, n);

	if (r < 0 || n == 0)
		return r;
	range_apply(b, start, start + n, OP_SET | OP_ATOMIC);
	return 0;
}

int hm_bitmap_clear_range_atomic(struct hm_bitmap *b, size_t start,
				 size_t n)
{
	int r = range_check(b, start, n);

	if (r < 0 || n == 0)
		return r;
	range_apply(b, start, start + n, OP_ATOMIC);
	return 0;
}

/* Does every range lie inside [0, nbits)? */
static bool ranges_inside(const struct hm_bitmap *b,
			  const struct hm_page_range *ranges, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ranges[i].start > (uint64_t)b->nbits ||
		    ranges[i].len > (uint64_t)b->nbits - ranges[i].start)
			return false;
	return true;
}

long hm_bitmap_apply_ranges(struct hm_bitmap *b,
			    const struct hm_page_range *ranges, size_t n,
			    bool op_set)
{
	size_t changed = 0;

	if (n == 0)
		return 0;
	if (!ranges)
		return -EINVAL;
	/* All or nothing: validate the whole list before touching b. */
	if (!ranges_inside(b, ranges, n))
		return -ERANGE;
	for (size_t i = 0; i < n; i++) {
		size_t s = (size_t)ranges[i].start;
		size_t e = s + (size_t)ranges[i].len;

		if (e == s)
			continue;
		if (op_set)
			changed += range_apply(b, s, e,
					       OP_ATOMIC | OP_COUNT | OP_SET);
		else
			changed += range_apply(b, s, e, OP_ATOMIC | OP_COUNT);
	}
	return (long)changed;
}

/* Clear [start, end) of b, setting in into (atomically) every bit that
 * was set in b and is now clear. Returns the count of those bits. */
static size_t range_move(struct hm_bitmap *b, struct hm_bitmap *into,
			 size_t start, size_t end)
{
	size_t ws = start / HM_BITS_PER_WORD;
	size_t we = (end - 1) / HM_BITS_PER_WORD;
	size_t c = 0;

	for (size_t w = ws; w <= we; w++) {
		uint64_t m = WORD_ONES, old;

		if (w == ws)
			m &= mask_from(start);
		if (w == we)
			m &= mask_to(end);
		if (!(ld(&b->words[w]) & m))
			continue;
		old = __atomic_fetch_and(&b->words[w], ~m, __ATOMIC_ACQ_REL);
		old &= m;
		if (!old)
			continue;
		__atomic_fetch_or(&into->words[w], old, __ATOMIC_ACQ_REL);
		c += popcount64(old);
	}
	return c;
}

long hm_bitmap_clear_ranges_into(struct hm_bitmap *b,
				 const struct hm_page_range *ranges, size_t n,
				 struct hm_bitmap *into)
{
	size_t moved = 0;

	if (n == 0)
		return 0;
	if (!ranges || !into || into->nbits != b->nbits)
		return -EINVAL;
	if (!ranges_inside(b, ranges, n))
		return -ERANGE;
	for (size_t i = 0; i < n; i++)
		if (ranges[i].len)
			moved += range_move(b, into, (size_t)ranges[i].start,
					    (size_t)(ranges[i].start +
						     ranges[i].len));
	return (long)moved;
}

/* ---- search and count ---------------------------------------------------- */

/* First bit at or after from whose value, XORed with inv, is 1. Bits past
 * nbits read as zero in memory, so for inv = ~0 the result is clamped. */
static inline __attribute__((always_inline)) size_t
find_next(const struct hm_bitmap *b, size_t from, uint64_t inv)
{
	const uint64_t *w = b->words;
	size_t nw = b->nwords, wi, r;
	uint64_t x;

	if (from >= b->nbits)
		return b->nbits;
	wi = from / HM_BITS_PER_WORD;
	x = (ld(&w[wi]) ^ inv) & mask_from(from);
	for (;;) {
		if (x) {
			r = wi * HM_BITS_PER_WORD +
			    (size_t)__builtin_ctzll(x);
			return r < b->nbits ? r : b->nbits;
		}
		if (++wi >= nw)
			return b->nbits;
		x = ld(&w[wi]) ^ inv;
		if (x)
			continue;
		/* Two empty words in a row: skip the stretch four words at
		 * a time. */
		wi++;
		while (wi + 4 <= nw &&
		       ((ld(&w[wi]) ^ inv) | (ld(&w[wi + 1]) ^ inv) |
			(ld(&w[wi + 2]) ^ inv) | (ld(&w[wi + 3]) ^ inv)) == 0)
			wi += 4;
		if (wi >= nw)
			return b->nbits;
		x = ld(&w[wi]) ^ inv;
	}
}

size_t hm_bitmap_find_next_set(const struct hm_bitmap *b, size_t from)
{
	return find_next(b, from, 0);
}

size_t hm_bitmap_find_next_clear(const struct hm_bitmap *b, size_t from)
{
	return find_next(b, from, WORD_ONES);
}

size_t hm_bitmap_count_range(const struct hm_bitmap *b, size_t start,
			     size_t n)
{
	size_t end, ws, we, c;

	if (start >= b->nbits || n == 0)
		return 0;
	if (n > b->nbits - start)
		n = b->nbits - start;
	end = start + n;
	ws = start / HM_BITS_PER_WORD;
	we = (end - 1) / HM_BITS_PER_WORD;
	if (ws == we)
		return popcount64(ld(&b->words[ws]) & mask_from(start) &
				  mask_to(end));
	c = popcount64(ld(&b->words[ws]) & mask_from(start));
	c += count_words(&b->words[ws + 1], we - ws - 1);
	c += popcount64(ld(&b->words[we]) & mask_to(end));
	return c;
}

/* ---- whole-bitmap operations --------------------------------------------- */

long hm_bitmap_or(struct hm_bitmap *dst, const struct hm_bitmap *src)
{
	size_t c = 0;

	if (!dst || !src || dst->nbits != src->nbits)
		return -EINVAL;
	for (size_t i = 0; i < dst->nwords; i++) {
		uint64_t s = ld(&src->words[i]), old;

		if (i == dst->nwords - 1)
			s &= mask_to(dst->nbits);
		if (!s || (ld(&dst->words[i]) & s) == s)
			continue;
		old = __atomic_fetch_or(&dst->words[i], s, __ATOMIC_ACQ_REL);
		c += popcount64(s & ~old);
	}
	return (long)c;
}

long hm_bitmap_andnot(struct hm_bitmap *dst, const struct hm_bitmap *src)
{
	size_t c = 0;

	if (!dst || !src || dst->nbits != src->nbits)
		return -EINVAL;
	for (size_t i = 0; i < dst->nwords; i++) {
		uint64_t s = ld(&src->words[i]), old;

		if (!s || (ld(&dst->words[i]) & s) == 0)
			continue;
		old = __atomic_fetch_and(&dst->words[i], ~s, __ATOMIC_ACQ_REL);
		c += popcount64(s & old);
	}
	return (long)c;
}

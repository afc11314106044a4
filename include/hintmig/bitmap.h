/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Page bitmaps: the migration bitmap M and the tracker log L.
 *
 * One bit per guest page. Concurrency model (no global lock): one sender
 * takes 64 pages at a time with hm_bitmap_fetch_clear_word(); any number of
 * markers (fault thread, harvest, hint applier) use the _atomic variants
 * and the atomic range/OR/apply functions, which operate word by word with
 * atomic read-modify-write. The plain (non-atomic) variants are for bitmaps
 * owned by a single thread.
 *
 * Bits past nbits in the last word are always zero; every function keeps
 * it so (out-of-range bits passed to range functions are clipped by the
 * caller's contract: start + n <= nbits, checked, -ERANGE otherwise).
 */
#ifndef HINTMIG_BITMAP_H
#define HINTMIG_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_BITS_PER_WORD 64u

struct hm_bitmap {
	uint64_t *words;
	size_t nbits;
	size_t nwords;
};

/* A run of pages: [start, start + len), in bit (page) units. */
struct hm_page_range {
	uint64_t start;
	uint64_t len;
};

/* Allocate a zeroed bitmap of nbits bits. 0, -EINVAL (nbits == 0),
 * -ENOMEM. */
int hm_bitmap_init(struct hm_bitmap *b, size_t nbits);
void hm_bitmap_fini(struct hm_bitmap *b);

/* Single bits: plain (caller owns the bitmap) ... */
static inline void hm_bitmap_set(struct hm_bitmap *b, size_t i)
{
	b->words[i / 64] |= UINT64_C(1) << (i % 64);
}
static inline void hm_bitmap_clear(struct hm_bitmap *b, size_t i)
{
	b->words[i / 64] &= ~(UINT64_C(1) << (i % 64));
}
static inline bool hm_bitmap_test(const struct hm_bitmap *b, size_t i)
{
	return (b->words[i / 64] >> (i % 64)) & 1;
}
/* ... and atomic (concurrent markers and one sender). set/clear return
 * the previous value of the bit. */
static inline bool hm_bitmap_set_atomic(struct hm_bitmap *b, size_t i)
{
	uint64_t m = UINT64_C(1) << (i % 64);
	return __atomic_fetch_or(&b->words[i / 64], m, __ATOMIC_ACQ_REL) & m;
}
static inline bool hm_bitmap_clear_atomic(struct hm_bitmap *b, size_t i)
{
	uint64_t m = UINT64_C(1) << (i % 64);
	return __atomic_fetch_and(&b->words[i / 64], ~m, __ATOMIC_ACQ_REL) & m;
}
static inline bool hm_bitmap_test_atomic(const struct hm_bitmap *b, size_t i)
{
	return (__atomic_load_n(&b->words[i / 64], __ATOMIC_ACQUIRE) >>
		(i % 64)) & 1;
}

/* Ranges [start, start + n). 0 or -ERANGE. The _atomic variants are safe
 * against concurrent markers and the sender. */
int hm_bitmap_set_range(struct hm_bitmap *b, size_t start, size_t n);
int hm_bitmap_clear_range(struct hm_bitmap *b, size_t start, size_t n);
int hm_bitmap_set_range_atomic(struct hm_bitmap *b, size_t start, size_t n);
int hm_bitmap_clear_range_atomic(struct hm_bitmap *b, size_t start, size_t n);

/* Index of the first set (clear) bit at or after from; b->nbits if none. */
size_t hm_bitmap_find_next_set(const struct hm_bitmap *b, size_t from);
size_t hm_bitmap_find_next_clear(const struct hm_bitmap *b, size_t from);

/* Number of set bits in [start, start + n) (clipped to nbits). */
size_t hm_bitmap_count_range(const struct hm_bitmap *b, size_t start,
			     size_t n);
static inline size_t hm_bitmap_count(const struct hm_bitmap *b)
{
	return hm_bitmap_count_range(b, 0, b->nbits);
}

/* Atomically take word widx (bits widx*64 .. widx*64+63) and leave it
 * zero: the sender's way of claiming 64 pages at once. */
static inline uint64_t hm_bitmap_fetch_clear_word(struct hm_bitmap *b,
						  size_t widx)
{
	return __atomic_exchange_n(&b->words[widx], 0, __ATOMIC_ACQ_REL);
}

/* dst |= src, word by word, atomic on dst (src must not change during the
 * call or the caller accepts a snapshot per word). Same nbits, else
 * -EINVAL. Returns the number of bits newly set in dst (>= 0). */
long hm_bitmap_or(struct hm_bitmap *dst, const struct hm_bitmap *src);

/* dst &= ~src, atomic on dst. Same contract as hm_bitmap_or; returns the
 * number of bits that were set in dst and are now clear. */
long hm_bitmap_andnot(struct hm_bitmap *dst, const struct hm_bitmap *src);

/* Apply a list of ranges, atomically per word: set (op_set true) or clear.
 * Every range is checked first; on any range outside [0, nbits) nothing is
 * applied and -ERANGE is returned. Otherwise returns the number of bits
 * whose value changed (>= 0). Overlapping ranges are allowed. */
long hm_bitmap_apply_ranges(struct hm_bitmap *b,
			    const struct hm_page_range *ranges, size_t n,
			    bool op_set);

/* Clear a list of ranges of b, atomically per word, and set in into every
 * bit this call found set in b (the pages a hint took out of the
 * migration bitmap: the hinted map of hintmig send --hinted-map). Checked
 * as hm_bitmap_apply_ranges (-ERANGE, nothing done); -EINVAL when into is
 * NULL or of another size. Returns the number of bits moved (>= 0). */
long hm_bitmap_clear_ranges_into(struct hm_bitmap *b,
				 const struct hm_page_range *ranges, size_t n,
				 struct hm_bitmap *into);

#ifdef __cplusplus
}
#endif
#endif

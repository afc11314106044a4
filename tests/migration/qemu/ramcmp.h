/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Page-by-page comparison of two guest RAM dumps (pmemsave of the paused
 * source and of the paused destination after a migration). */
#ifndef HM_QEMU_RAMCMP_H
#define HM_QEMU_RAMCMP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HM_RAMCMP_PAGE 4096u
#define HM_RAMCMP_LIST 16

struct hm_ramcmp_diff {
	uint64_t gpa;            /* guest-physical address of the page */
	uint32_t first_byte;     /* offset of the first differing byte */
	uint32_t ndiff;          /* bytes that differ in the page */
	unsigned char src, dst;  /* the first differing byte on each side */
	int dst_zero;            /* destination page is all zeros */
};

struct hm_ramcmp {
	uint64_t pages;
	uint64_t equal;          /* identical pages */
	uint64_t src_nonzero;    /* source pages that are not all zeros */
	uint64_t dst_nonzero;
	uint64_t zero_on_dst;    /* differ, destination all zeros (allowed
				  * with hinting: a hinted page never sent) */
	uint64_t hinted;         /* pages in the hinted map */
	uint64_t hinted_older;   /* differ, in the map, destination not zero
				  * (sent, then hinted: an older copy) */
	uint64_t bad;            /* differences that are never allowed */
	/* the first differences, and the first bad ones */
	struct hm_ramcmp_diff diffs[HM_RAMCMP_LIST];
	unsigned ndiffs;
	struct hm_ramcmp_diff bads[HM_RAMCMP_LIST];
	unsigned nbads;
	/* pages whose first bytes are the marker (see hm_ramcmp_files) */
	uint64_t marker_gpa;     /* the first one, or UINT64_MAX */
	unsigned marker_pages;
};

/* Which differences are allowed. Neither set: none. */
struct hm_ramcmp_allow {
	/* any page all zeros on the destination (QEMU's own free page
	 * hinting, which says nothing of which pages it left out) */
	int dst_zero;
	/* hintmig's hinted map (hintmig send --hinted-map, loaded with
	 * hm_ramcmp_load_hinted): exactly the pages set there may differ,
	 * whatever the destination holds; any other difference is bad */
	const uint64_t *hinted;
	uint64_t hinted_pages;
};

/* Load a hinted map file (include/hintmig/hinted_map.h) of 4 KiB pages:
 * *words (malloc'ed) and *pages. 0, or -1 with err set. */
int hm_ramcmp_load_hinted(const char *path, uint64_t **words, uint64_t *pages,
			  char *err, size_t errlen);

/* Compare the files (both must be size bytes, size a multiple of 4096)
 * under the rules of allow (NULL: identical or bad; a hinted map must have
 * size / 4096 pages). marker/marker_len (may be NULL): report where the
 * source holds a page starting with these bytes.
 * Returns 0, or -1 with err set when the files cannot be read. */
int hm_ramcmp_files(const char *src_path, const char *dst_path, uint64_t size,
		    const struct hm_ramcmp_allow *allow, const void *marker,
		    size_t marker_len, struct hm_ramcmp *r, char *err,
		    size_t errlen);

/* Print the counts and the listed differences. */
void hm_ramcmp_print(FILE *f, const struct hm_ramcmp *r);

#endif

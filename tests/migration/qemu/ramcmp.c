/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM dump comparison: see ramcmp.h. */
#include "ramcmp.h"

#include <hintmig/hinted_map.h>

#include "migrate/wire/le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int page_is_zero(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < HM_RAMCMP_PAGE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static const unsigned char *map_file(const char *path, uint64_t size,
				     char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *p;

	if (fd < 0) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || (uint64_t)st.st_size != size) {
		snprintf(err, errlen, "%s holds %lld bytes, expected %" PRIu64,
			 path, (long long)st.st_size, size);
		close(fd);
		return NULL;
	}
	/* shared: a private mapping of hugetlbfs would reserve huge pages */
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "mmap %s: %s", path, strerror(errno));
		return NULL;
	}
	madvise(p, size, MADV_SEQUENTIAL);
	return p;
}

int hm_ramcmp_load_hinted(const char *path, uint64_t **words, uint64_t *pages,
			  char *err, size_t errlen)
{
	unsigned char h[HM_HINTED_MAP_HEADER], w[8];
	uint64_t n, nw, set = 0, *out;
	FILE *f = fopen(path, "re");

	*words = NULL;
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fread(h, sizeof(h), 1, f) != 1 ||
	    memcmp(h, HM_HINTED_MAP_MAGIC, 8) ||
	    get32(h + 8) != HM_HINTED_MAP_VERSION ||
	    get32(h + 12) != HM_RAMCMP_PAGE) {
		snprintf(err, errlen, "%s: not a version %u hinted map of "
			 "4 KiB pages", path, HM_HINTED_MAP_VERSION);
		fclose(f);
		return -1;
	}
	n = get64(h + 16);
	nw = (n + 63) / 64;
	out = n > (1ull << 40) ? NULL : calloc(nw ? nw : 1, sizeof(*out));
	for (uint64_t i = 0; out && i < nw; i++) {
		if (fread(w, sizeof(w), 1, f) != 1) {
			free(out);
			out = NULL;
			break;
		}
		out[i] = get64(w);
		set += (uint64_t)__builtin_popcountll(out[i]);
	}
	fclose(f);
	if (!out || set != get64(h + 24) ||
	    (n % 64 && (out[nw - 1] >> (n % 64)))) {
		snprintf(err, errlen, "%s: truncated or inconsistent hinted "
			 "map", path);
		free(out);
		return -1;
	}
	*words = out;
	*pages = n;
	return 0;
}

int hm_ramcmp_files(const char *src_path, const char *dst_path, uint64_t size,
		    const struct hm_ramcmp_allow *allow, const void *marker,
		    size_t marker_len, struct hm_ramcmp *r, char *err,
		    size_t errlen)
{
	static const struct hm_ramcmp_allow none;
	const unsigned char *s, *d;

	memset(r, 0, sizeof(*r));
	r->marker_gpa = UINT64_MAX;
	if (!allow)
		allow = &none;
	if (!size || size % HM_RAMCMP_PAGE) {
		snprintf(err, errlen, "bad dump size %" PRIu64, size);
		return -1;
	}
	if (allow->hinted && allow->hinted_pages != size / HM_RAMCMP_PAGE) {
		snprintf(err, errlen, "the hinted map has %" PRIu64 " pages, "
			 "the RAM %" PRIu64, allow->hinted_pages,
			 size / HM_RAMCMP_PAGE);
		return -1;
	}
	s = map_file(src_path, size, err, errlen);
	if (!s)
		return -1;
	d = map_file(dst_path, size, err, errlen);
	if (!d) {
		munmap((void *)s, size);
		return -1;
	}
	for (uint64_t off = 0; off < size; off += HM_RAMCMP_PAGE) {
		const unsigned char *sp = s + off, *dp = d + off;
		int sz = page_is_zero(sp);
		uint64_t pg = off / HM_RAMCMP_PAGE;
		int in_map = allow->hinted &&
			     (allow->hinted[pg / 64] >> (pg % 64) & 1);

		r->pages++;
		r->hinted += (uint64_t)in_map;
		if (!sz)
			r->src_nonzero++;
		if (marker && marker_len && !memcmp(sp, marker, marker_len)) {
			if (!r->marker_pages++)
				r->marker_gpa = off;
		}
		if (!memcmp(sp, dp, HM_RAMCMP_PAGE)) {
			r->equal++;
			if (!sz)
				r->dst_nonzero++;
			continue;
		}
		struct hm_ramcmp_diff df = { .gpa = off };
		for (uint32_t i = 0; i < HM_RAMCMP_PAGE; i++) {
			if (sp[i] != dp[i]) {
				if (!df.ndiff++) {
					df.first_byte = i;
					df.src = sp[i];
					df.dst = dp[i];
				}
			}
		}
		df.dst_zero = page_is_zero(dp);
		if (!df.dst_zero)
			r->dst_nonzero++;
		if (r->ndiffs < HM_RAMCMP_LIST)
			r->diffs[r->ndiffs++] = df;
		if (in_map || (!allow->hinted && allow->dst_zero &&
			       df.dst_zero)) {
			if (df.dst_zero)
				r->zero_on_dst++;
			else
				r->hinted_older++;
			continue;
		}
		r->bad++;
		if (r->nbads < HM_RAMCMP_LIST)
			r->bads[r->nbads++] = df;
	}
	munmap((void *)s, size);
	munmap((void *)d, size);
	return 0;
}

static void print_diff(FILE *f, const struct hm_ramcmp_diff *df)
{
	fprintf(f,
		"    gpa 0x%09" PRIx64 ": %4u bytes differ, first at +0x%03x "
		"(src 0x%02x dst 0x%02x)%s\n",
		df->gpa, df->ndiff, df->first_byte, df->src, df->dst,
		df->dst_zero ? ", destination page all zeros" : "");
}

void hm_ramcmp_print(FILE *f, const struct hm_ramcmp *r)
{
	fprintf(f,
		"  page compare: %" PRIu64 " pages, %" PRIu64 " identical, %" PRIu64
		" differ where the destination is all zeros (hinted, never sent), "
		"%" PRIu64 " differ holding an older copy (hinted after it was "
		"sent), %" PRIu64 " BAD; source non-zero pages %" PRIu64
		", destination non-zero pages %" PRIu64 "; %" PRIu64 " pages "
		"in the hinted map\n",
		r->pages, r->equal, r->zero_on_dst, r->hinted_older, r->bad,
		r->src_nonzero, r->dst_nonzero, r->hinted);
	if (r->nbads) {
		fprintf(f, "  first bad pages (of %" PRIu64 "):\n", r->bad);
		for (unsigned i = 0; i < r->nbads; i++)
			print_diff(f, &r->bads[i]);
	} else if (r->ndiffs) {
		fprintf(f, "  first differing pages (allowed):\n");
		for (unsigned i = 0; i < r->ndiffs && i < 4; i++)
			print_diff(f, &r->diffs[i]);
	}
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Free-list snapshots through /dev/hintmig_free (see freelist.h and
 * kmod/hintmig_free.c for why the lists are read there, under the lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "freelist.h"

#define FL_RECS 4096u		/* records per ioctl */
#define FL_MAX_RANGES (1u << 22) /* hard cap on what one snapshot keeps
				  * before merging: 64 MiB of ranges */

int hm_fl_open(struct hm_fl *fl, const char *dev, unsigned *reason,
	       char *why, size_t whylen)
{
	int e;

	memset(fl, 0, sizeof(*fl));
	fl->fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fl->fd < 0) {
		e = errno;
		*reason = e == ENOENT || e == ENXIO || e == ENODEV
				  ? HM_HC_NOHINT_NO_MODULE
				  : HM_HC_NOHINT_MODULE_ERROR;
		snprintf(why, whylen, "cannot open %s: %s%s", dev,
			 strerror(e), e == ENOENT ? " (modprobe hintmig_free; "
			 "the module comes with hintmig-agent-dkms)" : "");
		return -e;
	}
	if (ioctl(fl->fd, HMF_IOC_INFO, &fl->info) < 0) {
		e = errno;
		*reason = e == ENOTTY ? HM_HC_NOHINT_MODULE_VERSION
				      : HM_HC_NOHINT_MODULE_ERROR;
		snprintf(why, whylen, "%s: info: %s", dev, strerror(e));
		goto fail;
	}
	if (fl->info.version != HMF_VERSION) {
		e = EPROTO;
		*reason = HM_HC_NOHINT_MODULE_VERSION;
		snprintf(why, whylen, "%s speaks version %u, the agent %u",
			 dev, fl->info.version, HMF_VERSION);
		goto fail;
	}
	fl->recs = calloc(FL_RECS, sizeof(*fl->recs));
	if (!fl->recs) {
		e = ENOMEM;
		*reason = HM_HC_NOHINT_MODULE_ERROR;
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	fl->nrecs = FL_RECS;
	return 0;
fail:
	close(fl->fd);
	fl->fd = -1;
	return -e;
}

void hm_fl_close(struct hm_fl *fl)
{
	if (fl->fd >= 0)
		close(fl->fd);
	free(fl->recs);
	memset(fl, 0, sizeof(*fl));
	fl->fd = -1;
}

int hm_fl_info(struct hm_fl *fl)
{
	return ioctl(fl->fd, HMF_IOC_INFO, &fl->info) < 0 ? -errno : 0;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int by_gpa(const void *a, const void *b)
{
	const struct hm_gpa_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int by_len_desc(const void *a, const void *b)
{
	const struct hm_gpa_range *x = a, *y = b;

	return x->len > y->len ? -1 : x->len < y->len;
}

/* Sort and merge n ranges in place: overlapping or touching ones become
 * one (a block read twice, or buddies read in different pieces). */
static size_t merge(struct hm_gpa_range *r, size_t n)
{
	size_t k = 0;

	if (!n)
		return 0;
	qsort(r, n, sizeof(*r), by_gpa);
	for (size_t i = 1; i < n; i++) {
		uint64_t end = r[k].gpa + r[k].len;

		if (r[i].gpa <= end) {
			if (r[i].gpa + r[i].len > end)
				r[k].len = r[i].gpa + r[i].len - r[k].gpa;
		} else {
			r[++k] = r[i];
		}
	}
	return k + 1;
}

long hm_fl_snapshot(struct hm_fl *fl, struct hm_gpa_range **out,
		    size_t *cap, uint32_t max_ranges, hm_fl_abort_fn abort_fn,
		    void *opaque, struct hm_fl_stats *st)
{
	struct hmf_walk w;
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	unsigned shift = fl->info.page_shift;
	size_t n = 0;

	memset(st, 0, sizeof(*st));
	memset(&w, 0, sizeof(w));
	do {
		w.buf = (uint64_t)(uintptr_t)fl->recs;
		w.cap = (uint32_t)fl->nrecs;
		if (ioctl(fl->fd, HMF_IOC_WALK, &w) < 0)
			return -errno;
		st->records += w.count;
		st->holds += w.holds;
		st->hold_ns_total += w.hold_ns_total;
		if (w.hold_ns_max > st->hold_ns_max)
			st->hold_ns_max = w.hold_ns_max;
		st->restarts += w.restarts;
		st->cut += w.cut;
		if (n + w.count > FL_MAX_RANGES)
			n = merge(*out, n); /* merge before growing further */
		if (n + w.count > FL_MAX_RANGES) {
			st->dropped += w.count;
			goto next;
		}
		if (n + w.count > *cap) {
			size_t nc = *cap < 4096 ? 4096 : *cap;
			struct hm_gpa_range *p;

			while (nc < n + w.count)
				nc *= 2;
			if (nc > FL_MAX_RANGES)
				nc = FL_MAX_RANGES;
			p = realloc(*out, nc * sizeof(*p));
			if (!p)
				return -ENOMEM;
			*out = p;
			*cap = nc;
		}
		for (uint32_t i = 0; i < w.count; i++) {
			(*out)[n].gpa = fl->recs[i].pfn << shift;
			(*out)[n].len = (uint64_t)1 << (shift +
							fl->recs[i].order);
			n++;
		}
next:
		if (abort_fn && abort_fn(opaque))
			return -ECANCELED;
	} while (!(w.flags & HMF_WALK_DONE));

	n = merge(*out, n);
	if (n > max_ranges) {
		/* keep the biggest: most bytes per range */
		qsort(*out, n, sizeof(**out), by_len_desc);
		st->dropped += n - max_ranges;
		n = max_ranges;
		qsort(*out, n, sizeof(**out), by_gpa);
	}
	for (size_t i = 0; i < n; i++)
		st->pages += (*out)[i].len >> shift;
	st->walk_ns = clock_ns(CLOCK_MONOTONIC) - t0;
	st->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	return (long)n;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hm-agent-check: the agent's free-list snapshots checked inside the test
 * guest (Debian's kernel, the hintmig_free module loaded), against the
 * truth. Started by the guest's /init with hm.check=agent; reports on the
 * console, one line each, prefixed "HMC: ", and ends with "HMC: PASS" or
 * "HMC: FAIL <why>".
 *
 *  1. quiet: a snapshot of an idle guest. Every hinted page must have been
 *     free, so read right after, almost all must still be free buddy pages
 *     (/proc/kpageflags KPF_BUDDY: the kernel's own word, read without the
 *     lock, so a few may have been taken since); the hinted pages must add
 *     up to MemFree minus what sits on per-CPU lists (not on the free
 *     lists), within a margin.
 *  2. churn: a child allocates, writes, frees and rewrites memory all the
 *     time while snapshots are taken. It also keeps an in-use set, mlocked
 *     (its frames do not move: compaction of unevictable pages is off),
 *     rewritten every pass, whose frames it publishes. Not one of those
 *     frames may ever be hinted.
 *  3. figures: time of a snapshot, guest CPU, longest zone->lock hold,
 *     pages hinted against MemFree.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "freelist.h"

#define PAGE 4096u
#define KPF_BUDDY 10
#define INUSE_MIB 32u		/* the churner's in-use set */
#define CHURN_MIB 64u		/* what it allocates and frees, per cycle */
#define SNAPSHOTS 20u

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "HMC: ");

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(1, buf, (size_t)n) < 0)
		return;
}

static int failed;
static char first_failure[256];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	say("ERROR %s", buf);
	if (!failed++)
		snprintf(first_failure, sizeof(first_failure), "%s", buf);
}

/* pfn of a mapped, present page of ours (/proc/self/pagemap), or 0 */
static uint64_t pfn_of(int pm, const void *p)
{
	uint64_t e = 0;

	if (pread(pm, &e, 8, (off_t)((uintptr_t)p / PAGE * 8)) != 8)
		return 0;
	if (!(e >> 63))
		return 0;
	return e & ((1ull << 55) - 1);
}

/* ---- the churner ---- */

struct shared {
	volatile uint64_t passes;	/* in-use set rewritten this often */
	volatile uint64_t cycles;	/* alloc/write/free cycles */
	volatile int ready;
	volatile int stop;
	volatile uint64_t moved;	/* in-use frames that moved meanwhile */
	uint64_t npfn;
	uint64_t pfn[INUSE_MIB * 256];	/* the in-use set's frames */
};

static void churner(struct shared *sh)
{
	size_t n = INUSE_MIB * 256;
	unsigned char *inuse = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint64_t gen = 1;

	if (inuse == MAP_FAILED || pm < 0) {
		say("ERROR churner: %s", strerror(errno));
		_exit(1);
	}
	memset(inuse, 0x5c, n * PAGE);
	if (mlock(inuse, n * PAGE))
		say("warning: mlock: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		sh->pfn[i] = pfn_of(pm, inuse + i * PAGE);
	sh->npfn = n;
	sh->ready = 1;
	while (!sh->stop) {
		size_t len = (size_t)CHURN_MIB << 20;
		unsigned char *t = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (t != MAP_FAILED) {
			for (size_t o = 0; o < len; o += PAGE)
				t[o] = (unsigned char)(o >> 12 ^ gen);
			munmap(t, len);
		}
		for (size_t i = 0; i < n; i++)
			inuse[i * PAGE + (gen % PAGE)] = (unsigned char)gen;
		gen++;
		sh->passes++;
		sh->cycles++;
	}
	/* the check is sound only if the set stayed where it was */
	for (size_t i = 0; i < n; i++)
		sh->moved += pfn_of(pm, inuse + i * PAGE) != sh->pfn[i];
	_exit(0);
}

/* ---- checks ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* How many pages of the ranges are not KPF_BUDDY right now. */
static uint64_t not_buddy(int kpf, const struct hm_gpa_range *r, size_t n,
			  uint64_t *pages)
{
	static uint64_t flags[512];
	uint64_t bad = 0;

	*pages = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t pfn = r[i].gpa / PAGE, end = pfn + r[i].len / PAGE;

		while (pfn < end) {
			size_t c = end - pfn < 512 ? (size_t)(end - pfn) : 512;
			ssize_t got = pread(kpf, flags, c * 8, (off_t)(pfn * 8));

			if (got != (ssize_t)(c * 8)) {
				bad += c;
			} else {
				for (size_t k = 0; k < c; k++)
					bad += !(flags[k] >> KPF_BUDDY & 1);
			}
			*pages += c;
			pfn += c;
		}
	}
	return bad;
}

/* Frames of the sorted set that lie in the ranges. */
static uint64_t hinted_in_use(const struct hm_gpa_range *r, size_t n,
			      const uint64_t *set, size_t nset)
{
	uint64_t hits = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t lo = r[i].gpa / PAGE, hi = lo + r[i].len / PAGE;
		size_t a = 0, b = nset;

		while (a < b) { /* first set entry >= lo */
			size_t m = (a + b) / 2;

			if (set[m] < lo)
				a = m + 1;
			else
				b = m;
		}
		for (; a < nset && set[a] < hi; a++) {
			if (hits < 4)
				say("ERROR in-use frame 0x%" PRIx64 " hinted "
				    "free (range 0x%" PRIx64 "+0x%" PRIx64 ")",
				    set[a], r[i].gpa, r[i].len);
			hits++;
		}
	}
	return hits;
}

int main(void)
{
	struct hm_fl fl;
	struct hm_fl_stats st;
	struct hm_gpa_range *ranges = NULL;
	size_t cap = 0;
	unsigned reason = 0;
	char why[160];
	struct shared *sh;
	uint64_t *set;
	long n;
	int kpf;
	pid_t pid;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (hm_fl_open(&fl, HMF_DEVICE, &reason, why, sizeof(why)) < 0) {
		say("FAIL the module: %s", why);
		return 1;
	}
	kpf = open("/proc/kpageflags", O_RDONLY);
	if (kpf < 0) {
		say("FAIL /proc/kpageflags: %s", strerror(errno));
		return 1;
	}
	say("module: version %u, %u orders, %u migrate types, piece %u, "
	    "poison %u, init_on_alloc %u", fl.info.version, fl.info.orders,
	    fl.info.migrate_types, fl.info.piece, fl.info.poison,
	    fl.info.init_on_alloc);

	/* 1. quiet */
	for (int rep = 0; rep < 3; rep++) {
		uint64_t pages, nb, free_pages, pcp;

		n = hm_fl_snapshot(&fl, &ranges, &cap, UINT32_MAX, NULL, NULL,
				   &st);
		hm_fl_info(&fl);
		if (n < 0) {
			fail("snapshot: %s", strerror((int)-n));
			break;
		}
		nb = not_buddy(kpf, ranges, (size_t)n, &pages);
		free_pages = fl.info.free_pages;
		pcp = fl.info.pcp_pages;
		say("quiet %d: %ld ranges, %" PRIu64 " pages hinted, MemFree %"
		    PRIu64 " pages, %" PRIu64 " on per-CPU lists; %" PRIu64
		    " blocks, %.2f ms (%.2f ms CPU), %" PRIu64 " lock holds, "
		    "longest %.1f us; %" PRIu64 " hinted pages no longer "
		    "free", rep, n, pages, free_pages, pcp, st.records,
		    (double)st.walk_ns / 1e6, (double)st.cpu_ns / 1e6,
		    st.holds, (double)st.hold_ns_max / 1e3, nb);
		if (pages != st.pages)
			fail("ranges hold %" PRIu64 " pages, the snapshot said "
			     "%" PRIu64, pages, st.pages);
		/* read without the lock, after the snapshot: the kernel may
		 * have taken a few since, never many in an idle guest */
		if (nb > pages / 100 + 256)
			fail("%" PRIu64 " of %" PRIu64 " hinted pages are not "
			     "free buddy pages", nb, pages);
		if (pages > free_pages + 1024)
			fail("%" PRIu64 " pages hinted, more than MemFree %"
			     PRIu64, pages, free_pages);
		if (pages + pcp + free_pages / 20 + 1024 < free_pages)
			fail("only %" PRIu64 " pages hinted of MemFree %" PRIu64
			     " (%" PRIu64 " on per-CPU lists)", pages,
			     free_pages, pcp);
	}

	/* 2. churn */
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		say("FAIL mmap: %s", strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid == 0)
		churner(sh);
	while (!sh->ready)
		usleep(10000);
	set = malloc(sh->npfn * sizeof(*set));
	if (!set) {
		say("FAIL malloc");
		return 1;
	}
	memcpy(set, sh->pfn, sh->npfn * sizeof(*set));
	qsort(set, sh->npfn, sizeof(*set), cmp_u64);
	if (!set[0])
		fail("the in-use set has frames without a pfn");
	{
		uint64_t hits = 0, worst_hold = 0, total_pages = 0, nb_all = 0;
		uint64_t hinted_all = 0;
		double worst_ms = 0;

		for (unsigned k = 0; k < SNAPSHOTS; k++) {
			uint64_t pages, nb;

			n = hm_fl_snapshot(&fl, &ranges, &cap, UINT32_MAX,
					   NULL, NULL, &st);
			if (n < 0) {
				fail("snapshot under churn: %s",
				     strerror((int)-n));
				break;
			}
			hits += hinted_in_use(ranges, (size_t)n, set,
					      sh->npfn);
			nb = not_buddy(kpf, ranges, (size_t)n, &pages);
			nb_all += nb;
			hinted_all += pages;
			total_pages += st.pages;
			if (st.hold_ns_max > worst_hold)
				worst_hold = st.hold_ns_max;
			if ((double)st.walk_ns / 1e6 > worst_ms)
				worst_ms = (double)st.walk_ns / 1e6;
			usleep(50000);
		}
		say("churn: %u snapshots while the churner ran %" PRIu64
		    " cycles; %" PRIu64 " pages hinted in all, %" PRIu64
		    " of them no longer free when checked; longest snapshot "
		    "%.2f ms, longest zone->lock hold %.1f us; %" PRIu64
		    " in-use frames hinted", SNAPSHOTS, sh->cycles, total_pages,
		    nb_all, worst_ms, (double)worst_hold / 1e3, hits);
		if (hits)
			fail("%" PRIu64 " in-use frames were hinted free", hits);
		if (sh->cycles < 2)
			fail("the churner did not churn (%" PRIu64 " cycles)",
			     sh->cycles);
		if (!hinted_all)
			fail("nothing hinted under churn");
	}
	sh->stop = 1;
	waitpid(pid, NULL, 0);
	if (sh->moved)
		fail("%" PRIu64 " frames of the in-use set moved during the "
		     "check: the check is void", sh->moved);
	if (failed) {
		say("FAIL %s", first_failure);
		return 1;
	}
	say("PASS");
	return 0;
}

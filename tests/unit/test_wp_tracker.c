/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Write tracker (src/wp_tracker.c): every write made after a harvest is
 * reported by the next harvest, and nothing that was not written is.
 *
 *  exact    one writer, known page sets: harvest == written set, for every
 *           memory kind (private anon with THP on / off, memfd, /dev/shm
 *           file), pages never populated before start (R6), both modes,
 *           and the 6.1 code path (WP_UNPOPULATED disabled); reprotect();
 *           MADV_DONTNEED; stop() leaves the memory writable.
 *  threads  randomized writer threads vs. a harvester that copies what it
 *           harvests into a shadow, as the migration sender does: at the
 *           end the shadow must equal memory (no write lost) and nothing
 *           unwritten may have been reported.
 *  remote   the same with the writers in a child process that created the
 *           userfaultfd and handed it over (pidfd_getfd).
 *  errors   EBUSY, EINVAL, ENOTSUP, ESRCH (target killed mid-tracking),
 *           stop() leaves the target running, EPERM for an unprivileged
 *           process under vm.unprivileged_userfaultfd=0.
 *
 * Usage: test_wp_tracker [exact|threads|remote|errors]... (default all).
 * HM_TEST_SEED=N reproduces a run; HM_TEST_VERBOSE=1 shows the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

#include "hm_test.h"
#include "uffd_compat.h"

#define MiB (1024ul * 1024ul)
#define HUGE_SZ (2 * MiB)

static size_t page_size;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* ---- log capture ---- */

static char log_text[16384];
static size_t log_len;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void test_log(void *opaque, enum hm_log_level level, const char *msg)
{
	(void)opaque;
	pthread_mutex_lock(&log_lock);
	log_len += (size_t)snprintf(log_text + log_len,
				    sizeof(log_text) - log_len, "%s\n", msg);
	if (log_len >= sizeof(log_text))
		log_len = 0; /* keep the most recent lines only */
	pthread_mutex_unlock(&log_lock);
	if (getenv("HM_TEST_VERBOSE"))
		fprintf(stderr, "  log %s: %s\n", hm_log_level_name(level), msg);
}

static void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	log_text[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
	bool r;

	pthread_mutex_lock(&log_lock);
	r = strstr(log_text, s) != NULL;
	pthread_mutex_unlock(&log_lock);
	return r;
}

/* ---- memory kinds ---- */

enum kind { K_ANON, K_THP, K_NOTHP, K_MEMFD, K_SHMFILE, N_KINDS };

static const char *const kind_names[N_KINDS] = {
	[K_ANON] = "anon",
	[K_THP] = "anon+THP",
	[K_NOTHP] = "anon-noTHP",
	[K_MEMFD] = "memfd",
	[K_SHMFILE] = "/dev/shm file",
};

struct region {
	enum kind kind;
	char *base;
	size_t len;
	void *raw;
	size_t rawlen;
};

static void map_region(struct region *r, enum kind k, size_t len)
{
	static unsigned seq;
	char path[128];
	int fd = -1;

	memset(r, 0, sizeof(*r));
	r->kind = k;
	r->len = len;
	switch (k) {
	case K_ANON:
	case K_THP:
	case K_NOTHP:
		/* 2 MiB aligned so that THP can be used. */
		r->rawlen = len + HUGE_SZ;
		r->raw = mmap(NULL, r->rawlen, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		HM_CHECK(r->raw != MAP_FAILED);
		r->base = (char *)(((uintptr_t)r->raw + HUGE_SZ - 1) &
				   ~(uintptr_t)(HUGE_SZ - 1));
		if (k == K_THP)
			HM_CHECK(madvise(r->base, len, MADV_HUGEPAGE) == 0);
		if (k == K_NOTHP)
			HM_CHECK(madvise(r->base, len, MADV_NOHUGEPAGE) == 0);
		return;
	case K_MEMFD:
		fd = memfd_create("hm-test", MFD_CLOEXEC);
		break;
	case K_SHMFILE:
		snprintf(path, sizeof(path), "/dev/shm/hintmig-test-%d-%u",
			 (int)getpid(), seq++);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			unlink(path);
		break;
	default:
		hm_test_fail("kind %d", (int)k);
	}
	HM_CHECK(fd >= 0);
	HM_CHECK(ftruncate(fd, (off_t)len) == 0);
	r->raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	HM_CHECK(r->raw != MAP_FAILED);
	r->rawlen = len;
	r->base = r->raw;
	close(fd);
}

static void unmap_region(struct region *r)
{
	munmap(r->raw, r->rawlen);
}

static bool is_anon(enum kind k)
{
	return k == K_ANON || k == K_THP || k == K_NOTHP;
}

/* Pages before start: the first half of every 2 MiB populated (written),
 * the second half never touched (R6: never-populated pages are tracked). */
static void prefill(char *base, size_t len)
{
	for (size_t off = 0; off < len; off += page_size)
		if ((off % HUGE_SZ) < HUGE_SZ / 2)
			base[off] = 1;
}

/* exact: every written page protected again at every harvest (the
 * default), so that a harvest reports exactly the pages written since the
 * previous one; otherwise hot pages are kept writable (R11). */
static struct hm_tracker *open_tracker(const struct hm_caps *caps,
				       enum hm_tracker_mode mode,
				       uint64_t nbits, uint64_t disable,
				       bool exact)
{
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = nbits,
		.disable_features = disable,
		.keep_hot = !exact,
	};
	struct hm_tracker *t = hm_tracker_open(caps, &o);

	if (!t)
		hm_test_fail("hm_tracker_open(%s): %s",
			     hm_tracker_mode_name(mode), strerror(errno));
	HM_CHECK_EQ(hm_tracker_get_mode(t), mode);
	return t;
}

/* Compare got against want (same nbits); print the first differences. */
static void check_same(const struct hm_bitmap *got,
		       const struct hm_bitmap *want, const char *what)
{
	size_t missed = 0, extra = 0;

	for (size_t i = 0; i < got->nbits; i++) {
		bool g = hm_bitmap_test(got, i), w = hm_bitmap_test(want, i);

		if (g == w)
			continue;
		if (w) {
			if (missed++ < 5)
				fprintf(stderr, "  %s: bit %zu written, not "
						"reported\n", what, i);
		} else if (extra++ < 5) {
			fprintf(stderr, "  %s: bit %zu reported, not "
					"written\n", what, i);
		}
	}
	if (missed || extra)
		hm_test_fail("%s: %zu writes missed, %zu extra pages", what,
			     missed, extra);
}

static void bm_zero(struct hm_bitmap *b)
{
	memset(b->words, 0, b->nwords * sizeof(uint64_t));
}

/* ------------------------------------------------------------------ */
/* exact: one writer, known sets                                      */
/* ------------------------------------------------------------------ */

#define EXACT_LEN (8 * MiB)
#define BIT0 7 /* ranges start at a non-zero, unaligned bit */

static void write_set(struct region *r, const struct hm_bitmap *want,
		      char val)
{
	for (size_t i = hm_bitmap_find_next_set(want, 0); i < want->nbits;
	     i = hm_bitmap_find_next_set(want, i + 1))
		r->base[(i - BIT0) * page_size + rnd() % page_size] = val;
}

static void harvest_expect(struct hm_tracker *t, struct hm_bitmap *got,
			   const struct hm_bitmap *want, const char *what)
{
	static unsigned step;
	char label[200];
	long n;

	snprintf(label, sizeof(label), "%s, check %u", what, ++step);
	what = label;
	bm_zero(got);
	n = hm_tracker_harvest(t, got);
	if (n < 0)
		hm_test_fail("%s: harvest: %s", what, strerror((int)-n));
	check_same(got, want, what);
	HM_CHECK_EQ(n, hm_bitmap_count(want));
}

static bool pagemap_any_wp(pid_t pid, const char *base, size_t len)
{
	char path[64];
	uint64_t e;
	bool any = false;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	HM_CHECK(fd >= 0);
	for (size_t off = 0; off < len; off += page_size) {
		off_t o = (off_t)(((uintptr_t)base + off) / page_size * 8);

		HM_CHECK(pread(fd, &e, sizeof(e), o) == sizeof(e));
		if (e & HM_PM_UFFD_WP)
			any = true;
	}
	close(fd);
	return any;
}

static void test_exact_one(const struct hm_caps *caps,
			   enum hm_tracker_mode mode, enum kind k,
			   uint64_t disable)
{
	static const unsigned density_pct10[] = { 0, 1, 10, 100, 500, 1000 };
	const size_t npages = EXACT_LEN / page_size;
	const uint64_t nbits = npages + BIT0 + 9;
	struct hm_bitmap want, got;
	struct hm_tracker *t;
	struct region r;
	char what[160];

	snprintf(what, sizeof(what), "exact %s %s%s", hm_tracker_mode_name(mode),
		 kind_names[k], disable ? " (no WP_UNPOPULATED)" : "");
	map_region(&r, k, EXACT_LEN);
	prefill(r.base, r.len);
	HM_CHECK_OK(hm_bitmap_init(&want, nbits));
	HM_CHECK_OK(hm_bitmap_init(&got, nbits));
	t = open_tracker(caps, mode, nbits, disable, true);
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	HM_CHECK_OK(hm_tracker_start(t));
	harvest_expect(t, &got, &want, what); /* nothing written yet */

	/* Rounds of known writes at several densities, never-populated
	 * pages included. */
	for (size_t d = 0; d < sizeof(density_pct10) / sizeof(density_pct10[0]);
	     d++) {
		bm_zero(&want);
		for (size_t i = 0; i < npages; i++)
			if (rnd() % 1000 < density_pct10[d])
				hm_bitmap_set(&want, BIT0 + i);
		if (d == 1) /* at least one page */
			hm_bitmap_set(&want, BIT0 + npages - 1);
		write_set(&r, &want, (char)(d + 2));
		harvest_expect(t, &got, &want, what);
	}
	/* Reads are not writes, also of never-populated pages. */
	bm_zero(&want);
	for (size_t i = 0; i < npages; i += 3) {
		volatile char c = r.base[i * page_size];
		(void)c;
	}
	harvest_expect(t, &got, &want, what);

	/* reprotect(): forget the first half of the pages written. */
	bm_zero(&want);
	for (size_t i = 0; i < 64; i++)
		hm_bitmap_set(&want, BIT0 + 1000 + i);
	write_set(&r, &want, 9);
	HM_CHECK_OK(hm_tracker_reprotect(t, BIT0 + 1000, 32));
	hm_bitmap_clear_range(&want, BIT0 + 1000, 32);
	harvest_expect(t, &got, &want, what);
	/* ... and those pages are tracked anew. */
	hm_bitmap_set_range(&want, BIT0 + 1000, 32);
	write_set(&r, &want, 10);
	harvest_expect(t, &got, &want, what);
	HM_CHECK_EQ(hm_tracker_reprotect(t, nbits - 1, 2), -EINVAL);

	/* MADV_DONTNEED: anonymous memory reads back as zeroes afterwards, a
	 * change of content that is reported; shmem keeps its pages (and its
	 * pte markers). Writes afterwards are tracked either way. */
	bm_zero(&want);
	for (size_t i = 0; i < npages; i += 97)
		hm_bitmap_set(&want, BIT0 + i);
	for (size_t i = hm_bitmap_find_next_set(&want, 0); i < nbits;
	     i = hm_bitmap_find_next_set(&want, i + 1))
		HM_CHECK(madvise(r.base + (i - BIT0) * page_size, page_size,
				 MADV_DONTNEED) == 0);
	if (is_anon(k)) {
		harvest_expect(t, &got, &want, what);
	} else {
		struct hm_bitmap none;

		HM_CHECK_OK(hm_bitmap_init(&none, nbits));
		harvest_expect(t, &got, &none, what);
		hm_bitmap_fini(&none);
	}
	write_set(&r, &want, 11);
	harvest_expect(t, &got, &want, what);

	/* stop(): nothing protected any more, every page writable. */
	HM_CHECK_OK(hm_tracker_stop(t));
	HM_CHECK_OK(hm_tracker_stop(t)); /* idempotent */
	HM_CHECK(!pagemap_any_wp(getpid(), r.base, r.len));
	memset(r.base, 12, r.len);
	HM_CHECK_EQ(hm_tracker_harvest(t, &got), -EINVAL);
	hm_tracker_close(t);
	hm_bitmap_fini(&want);
	hm_bitmap_fini(&got);
	unmap_region(&r);
	printf("ok %s\n", what);
}

/* ------------------------------------------------------------------ */
/* big ranges: protected in pieces, one thread per CPU                */
/* ------------------------------------------------------------------ */

#define SPLIT_LEN (320 * MiB) /* over two 128 MiB pieces */

/* Pages of [base, base + len) whose pte carries the uffd-wp bit. */
static size_t pagemap_count_wp(const char *base, size_t len)
{
	uint64_t e[512];
	size_t n = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	HM_CHECK(fd >= 0);
	for (size_t off = 0; off < len; off += sizeof(e) / 8 * page_size) {
		size_t k = (len - off) / page_size;
		off_t o = (off_t)(((uintptr_t)base + off) / page_size * 8);

		if (k > sizeof(e) / 8)
			k = sizeof(e) / 8;
		HM_CHECK(pread(fd, e, k * 8, o) == (ssize_t)(k * 8));
		for (size_t i = 0; i < k; i++)
			n += !!(e[i] & HM_PM_UFFD_WP);
	}
	close(fd);
	return n;
}

/* Every page of a range split over threads is protected when start()
 * returns (pagemap says so, page by page), and writes next to every 2 MiB
 * boundary (where pieces end) and at both ends are all recorded. */
static void test_split(const struct hm_caps *caps, enum hm_tracker_mode mode)
{
	const size_t npages = SPLIT_LEN / page_size;
	const uint64_t nbits = npages + BIT0;
	struct hm_bitmap want, got;
	struct hm_tracker *t;
	struct region r;
	char what[96];
	size_t wp;

	snprintf(what, sizeof(what), "split protection %s, %zu MiB",
		 hm_tracker_mode_name(mode), SPLIT_LEN / MiB);
	map_region(&r, K_NOTHP, SPLIT_LEN);
	memset(r.base, 3, r.len); /* all populated: every pte counts */
	HM_CHECK_OK(hm_bitmap_init(&want, nbits));
	HM_CHECK_OK(hm_bitmap_init(&got, nbits));
	t = open_tracker(caps, mode, nbits, 0, true);
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	HM_CHECK_OK(hm_tracker_start(t));
	wp = pagemap_count_wp(r.base, r.len);
	if (wp != npages)
		hm_test_fail("%s: %zu of %zu pages write-protected after "
			     "start", what, wp, npages);
	for (size_t i = 0; i < npages; i += HUGE_SZ / page_size) {
		hm_bitmap_set(&want, BIT0 + i);
		if (i)
			hm_bitmap_set(&want, BIT0 + i - 1);
	}
	hm_bitmap_set(&want, BIT0 + npages - 1);
	write_set(&r, &want, 4);
	harvest_expect(t, &got, &want, what);
	HM_CHECK_OK(hm_tracker_stop(t));
	HM_CHECK_EQ(pagemap_count_wp(r.base, r.len), 0);
	hm_tracker_close(t);
	hm_bitmap_fini(&want);
	hm_bitmap_fini(&got);
	unmap_region(&r);
	printf("ok %s\n", what);
}

static long anon_huge_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* THP: after the prefill the first half of each 2 MiB is populated; with
 * THP on, the page fault of the first write maps a whole huge page. A
 * write to one 4 KiB page of it must be reported as that page alone:
 * sync mode un-protects 4 KiB (the kernel splits the pmd); async mode's
 * write fault splits the pmd too (PAGEMAP_SCAN then works per pte). */
static void test_thp_granularity(const struct hm_caps *caps,
				 enum hm_tracker_mode mode)
{
	const size_t npages = EXACT_LEN / page_size;
	struct hm_bitmap want, got;
	struct hm_tracker *t;
	struct region r;
	long kb;

	map_region(&r, K_THP, EXACT_LEN);
	memset(r.base, 1, r.len);
	kb = anon_huge_kb();
	HM_CHECK_OK(hm_bitmap_init(&want, npages + BIT0));
	HM_CHECK_OK(hm_bitmap_init(&got, npages + BIT0));
	t = open_tracker(caps, mode, npages + BIT0, 0, true);
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	HM_CHECK_OK(hm_tracker_start(t));
	/* One page in each huge page, at a different offset each. */
	for (size_t h = 0; h < EXACT_LEN / HUGE_SZ; h++)
		hm_bitmap_set(&want, BIT0 + h * (HUGE_SZ / page_size) + 17 * h + 3);
	write_set(&r, &want, 5);
	harvest_expect(t, &got, &want, "THP granularity");
	write_set(&r, &want, 6);
	harvest_expect(t, &got, &want, "THP granularity (again)");
	hm_tracker_close(t);
	hm_bitmap_fini(&want);
	hm_bitmap_fini(&got);
	unmap_region(&r);
	printf("ok THP granularity %s: 4 KiB pages reported (AnonHugePages "
	       "was %ld kB before start)\n", hm_tracker_mode_name(mode), kb);
}

/* Two rounds on a started tracker t over r (4 units of 2 MiB, bits from
 * BIT0): a write to one page of units 1 and 3, then to a neighbour in
 * each; the harvest must report both units whole, and (sync mode) the
 * first writes take one fault a unit, the neighbours none. */
static void unit_rounds(struct hm_tracker *t, struct region *r, bool sync,
			const char *what)
{
	const size_t per = HUGE_SZ / page_size;
	const uint64_t nbits = r->len / page_size + BIT0;
	struct hm_bitmap one, neigh, want, got;
	struct hm_tracker_stats st0, st1;

	HM_CHECK_OK(hm_bitmap_init(&one, nbits));
	HM_CHECK_OK(hm_bitmap_init(&neigh, nbits));
	HM_CHECK_OK(hm_bitmap_init(&want, nbits));
	HM_CHECK_OK(hm_bitmap_init(&got, nbits));
	hm_bitmap_set(&one, BIT0 + 1 * per + 77);
	hm_bitmap_set(&one, BIT0 + 3 * per + 500);
	hm_bitmap_set(&neigh, BIT0 + 1 * per + 3);
	hm_bitmap_set(&neigh, BIT0 + 3 * per + 200);
	hm_bitmap_set_range(&want, BIT0 + 1 * per, per);
	hm_bitmap_set_range(&want, BIT0 + 3 * per, per);
	for (int round = 0; round < 2; round++) {
		hm_tracker_get_stats(t, &st0);
		write_set(r, &one, 10 + round);
		/* the thread counts a fault after it woke the writer */
		for (int i = 0; sync && i < 2000; i++) {
			hm_tracker_get_stats(t, &st1);
			if (st1.faults - st0.faults >= 2)
				break;
			usleep(1000);
		}
		hm_tracker_get_stats(t, &st1);
		if (sync)	/* one a unit */
			HM_CHECK_EQ(st1.faults - st0.faults, 2);
		write_set(r, &neigh, 20 + round);
		hm_tracker_get_stats(t, &st0);
		if (sync)	/* the units are writable now */
			HM_CHECK_EQ(st0.faults, st1.faults);
		harvest_expect(t, &got, &want, what);	/* whole units */
		HM_CHECK_EQ(pagemap_count_wp(r->base, r->len),
			    r->len / page_size);	/* protected again */
	}
	hm_bitmap_fini(&one);
	hm_bitmap_fini(&neigh);
	hm_bitmap_fini(&want);
	hm_bitmap_fini(&got);
}

/* R12: a tracking unit of 2 MiB (sync mode). A write to one page of a
 * unit un-protects the whole unit and reports every page of it; further
 * writes to that unit take no fault until the harvest protects it again.
 * Fails if a unit's pages are un-protected without being recorded (a
 * write to a neighbour would be lost: the harvest would miss it) or
 * recorded without being un-protected (the neighbour's write would fault
 * again). On THP the kernel keeps the huge page whole. */
static void test_units(const struct hm_caps *caps, enum kind k)
{
	struct hm_tracker_opts o = {
		.mode = HM_TRACKER_AUTO,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = EXACT_LEN / page_size + BIT0,
		.unit_bytes = HUGE_SZ,
	};
	struct hm_tracker_stats st0, st1;
	struct hm_tracker *t;
	struct region r;
	long kb0, kb1;
	char what[64];

	snprintf(what, sizeof(what), "2 MiB units %s", kind_names[k]);
	map_region(&r, k, 4 * HUGE_SZ);
	memset(r.base, 1, r.len);
	t = hm_tracker_open(caps, &o);
	if (!t)
		hm_test_fail("%s: open: %s", what, strerror(errno));
	HM_CHECK_EQ(hm_tracker_get_mode(t), HM_TRACKER_SYNC);
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	HM_CHECK_OK(hm_tracker_start(t));
	kb0 = anon_huge_kb();
	hm_tracker_get_stats(t, &st0);
	unit_rounds(t, &r, true, what);
	hm_tracker_get_stats(t, &st1);
	HM_CHECK_EQ(st1.faults - st0.faults, 4);	/* 2 units x 2 rounds */
	kb1 = anon_huge_kb();
	hm_tracker_close(t);
	unmap_region(&r);
	printf("ok %s: one fault a unit, units reported whole (AnonHugePages "
	       "%ld kB at start, %ld kB after two harvests)\n", what, kb0, kb1);
}

/* hugetlbfs (2 MiB pages from the pool, grown for the test and restored):
 * the kernel protects and faults whole huge pages, so the tracker must
 * un-protect and report whole ones in either mode (sync mode with 4 KiB
 * un-protects would leave the writer blocked for ever). */
static long long pool_total(void)
{
	char line[128];
	long long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Total: %lld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static int set_pool(long long n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");

	if (!f)
		return -1;
	fprintf(f, "%lld\n", n);
	return fclose(f);
}

static void test_hugetlb(const struct hm_caps *caps, enum hm_tracker_mode mode)
{
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = 4 * HUGE_SZ / page_size + BIT0,
	};
	struct hm_tracker_stats st0, st1;
	long long was = pool_total();
	struct region r = { .len = 4 * HUGE_SZ };
	struct hm_tracker *t;
	char what[64];

	snprintf(what, sizeof(what), "hugetlb %s", hm_tracker_mode_name(mode));
	if (was < 0 || set_pool(was + 4) != 0 || pool_total() < was + 4) {
		if (was >= 0)
			set_pool(was);
		hm_test_fail("%s: cannot grow the hugetlb pool by 4 pages "
			     "(vm.nr_hugepages %lld)", what, was);
	}
	r.base = mmap(NULL, r.len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	HM_CHECK(r.base != MAP_FAILED);
	memset(r.base, 1, r.len);
	t = hm_tracker_open(caps, &o);
	if (!t)
		hm_test_fail("%s: open: %s", what, strerror(errno));
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	/* a range that splits a huge page: refused */
	HM_CHECK_EQ(hm_tracker_add_range(t, (uintptr_t)r.base + 4096, 4096,
					 0), -EINVAL);
	HM_CHECK_OK(hm_tracker_start(t));
	hm_tracker_get_stats(t, &st0);
	unit_rounds(t, &r, mode == HM_TRACKER_SYNC, what);
	hm_tracker_get_stats(t, &st1);
	if (mode == HM_TRACKER_SYNC)
		HM_CHECK_EQ(st1.faults - st0.faults, 4);
	hm_tracker_close(t);
	munmap(r.base, r.len);
	set_pool(was);
	printf("ok %s: whole huge pages reported, a neighbour written after "
	       "the fault is in them\n", what);
}

/* A unit above the page size with the async tracker: refused. */
static void test_units_async(const struct hm_caps *caps)
{
	struct hm_tracker_opts o = {
		.mode = HM_TRACKER_ASYNC,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = 64,
		.unit_bytes = HUGE_SZ,
	};

	errno = 0;
	HM_CHECK(hm_tracker_open(caps, &o) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	printf("ok 2 MiB units with the async tracker: refused\n");
}

/* ------------------------------------------------------------------ */
/* R11: hot pages left writable, reported at every harvest            */
/* ------------------------------------------------------------------ */

#define HOT_PERIOD 6 /* harvests; the 6th, 12th... protect everything */

/* Pages [from, from + n) of the region (bits BIT0 + from...) protected? */
static size_t count_wp(const struct region *r, size_t from, size_t n)
{
	return pagemap_count_wp(r->base + from * page_size, n * page_size);
}

static void test_hot(const struct hm_caps *caps, enum hm_tracker_mode mode,
		     enum kind k)
{
	const size_t npages = EXACT_LEN / page_size;
	const uint64_t nbits = npages + BIT0;
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = nbits,
		.keep_hot = true,
		.hot_period = HOT_PERIOD,
	};
	struct hm_bitmap hot, cold, both, none, got;
	struct hm_tracker_stats st0, st1;
	struct hm_tracker *t;
	struct region r;
	char what[96];

	snprintf(what, sizeof(what), "hot %s %s", hm_tracker_mode_name(mode),
		 kind_names[k]);
	map_region(&r, k, EXACT_LEN);
	prefill(r.base, r.len);
	HM_CHECK_OK(hm_bitmap_init(&hot, nbits));
	HM_CHECK_OK(hm_bitmap_init(&cold, nbits));
	HM_CHECK_OK(hm_bitmap_init(&both, nbits));
	HM_CHECK_OK(hm_bitmap_init(&none, nbits));
	HM_CHECK_OK(hm_bitmap_init(&got, nbits));
	hm_bitmap_set_range(&hot, BIT0 + 100, 64);	/* pages 100..163 */
	hm_bitmap_set_range(&cold, BIT0 + 1000, 64);	/* pages 1000..1063 */
	hm_bitmap_or(&both, &hot);
	hm_bitmap_or(&both, &cold);
	t = hm_tracker_open(caps, &o);
	if (!t)
		hm_test_fail("%s: open: %s", what, strerror(errno));
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, BIT0));
	HM_CHECK_OK(hm_tracker_start(t));	/* harvest 0 follows */
	harvest_expect(t, &got, &none, what);

	/* Harvest 1: written once, so protected again. */
	write_set(&r, &hot, 1);
	harvest_expect(t, &got, &hot, what);
	HM_CHECK_EQ(count_wp(&r, 100, 64), 64);
	/* Harvest 2: written in two intervals in a row: left writable; the
	 * cold pages, written for the first time, are protected again. */
	write_set(&r, &both, 2);
	harvest_expect(t, &got, &both, what);
	HM_CHECK_EQ(count_wp(&r, 100, 64), 0);
	HM_CHECK_EQ(count_wp(&r, 1000, 64), 64);
	/* Harvest 3: hot pages written again, with no fault (sync mode
	 * counts faults), and reported. */
	hm_tracker_get_stats(t, &st0);
	write_set(&r, &hot, 3);
	hm_tracker_get_stats(t, &st1);
	HM_CHECK_EQ(st1.faults, st0.faults);
	harvest_expect(t, &got, &hot, what);
	/* Harvest 4: not written, reported anyway (the rule's price). */
	harvest_expect(t, &got, &hot, what);
	HM_CHECK_EQ(count_wp(&r, 100, 64), 0);
	/* Harvest 5 (the period's last, the 6th): the same, and then every
	 * page is protected again. */
	harvest_expect(t, &got, &hot, what);
	HM_CHECK_EQ(count_wp(&r, 100, 64), 64);
	/* Harvest 6: exact again, nothing written. */
	harvest_expect(t, &got, &none, what);
	/* A hot page protected again by reprotect() (R4) is tracked anew. */
	write_set(&r, &hot, 4);
	harvest_expect(t, &got, &hot, what);
	write_set(&r, &hot, 5);
	harvest_expect(t, &got, &hot, what);	/* now hot */
	HM_CHECK_EQ(count_wp(&r, 100, 64), 0);
	HM_CHECK_OK(hm_tracker_reprotect(t, BIT0 + 100, 32));
	HM_CHECK_EQ(count_wp(&r, 100, 32), 32);
	{
		struct hm_bitmap rest;

		HM_CHECK_OK(hm_bitmap_init(&rest, nbits));
		hm_bitmap_set_range(&rest, BIT0 + 132, 32);
		harvest_expect(t, &got, &rest, what); /* the kept half */
		hm_bitmap_fini(&rest);
	}
	hm_tracker_get_stats(t, &st1);
	HM_CHECK(st1.pages_kept > 0);
	HM_CHECK_OK(hm_tracker_stop(t));
	HM_CHECK(!pagemap_any_wp(getpid(), r.base, r.len));
	hm_tracker_close(t);
	hm_bitmap_fini(&hot);
	hm_bitmap_fini(&cold);
	hm_bitmap_fini(&both);
	hm_bitmap_fini(&none);
	hm_bitmap_fini(&got);
	unmap_region(&r);
	printf("ok %s: %" PRIu64 " pages kept writable, %" PRIu64
	       " protected again\n", what, st1.pages_kept,
	       st1.pages_reprotected);
}

/* ------------------------------------------------------------------ */
/* threads: concurrent writers, shadow copy                           */
/* ------------------------------------------------------------------ */

#define THR_LEN (16 * MiB)
#define N_WRITERS 3

struct thr_ctx {
	char *base;
	size_t npages;
	uint64_t *truth; /* bit per page: set (atomic) before each write */
	atomic_int stop;
	uint64_t seed;
};

static void *writer_main(void *arg)
{
	struct thr_ctx *c = arg;
	uint64_t s = c->seed;
	unsigned n = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		size_t p, off;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* Skewed: half of the writes hit the first 1/16 of memory. */
		p = (s >> 8) % ((s & 1) ? c->npages : c->npages / 16);
		off = ((s >> 40) % (page_size / 8)) * 8;
		__atomic_fetch_or(&c->truth[p / 64], UINT64_C(1) << (p % 64),
				  __ATOMIC_SEQ_CST);
		__atomic_store_n((uint64_t *)(c->base + p * page_size + off),
				 s, __ATOMIC_RELAXED);
		if (++n % 64 == 0)
			sleep_us(20);
	}
	return NULL;
}

/* Copy the pages set in got from src (memory, possibly being written)
 * to shadow, the way a migration sender reads what a harvest reported.
 * remote_pid > 0: src is in that process. */
static void copy_pages(char *shadow, const char *src, const struct hm_bitmap *got,
		       uint64_t bit0, pid_t remote_pid)
{
	for (size_t i = hm_bitmap_find_next_set(got, 0); i < got->nbits;
	     i = hm_bitmap_find_next_set(got, i + 1)) {
		size_t off = (i - bit0) * page_size;

		if (remote_pid > 0) {
			struct iovec l = { shadow + off, page_size };
			struct iovec rv = { (void *)(src + off), page_size };

			HM_CHECK(process_vm_readv(remote_pid, &l, 1, &rv, 1, 0) ==
				 (ssize_t)page_size);
		} else {
			/* Racy by design against the writers: volatile
			 * word copy, as a sender would read. */
			const volatile uint64_t *s =
				(const volatile uint64_t *)(src + off);
			uint64_t *d = (uint64_t *)(shadow + off);

			for (size_t w = 0; w < page_size / 8; w++)
				d[w] = s[w];
		}
	}
}

/* Reported pages must all have been written (truth is set before the
 * write, so truth read after the harvest covers every reported page). */
static void check_subset(const struct hm_bitmap *got, const uint64_t *truth,
			 uint64_t bit0, const char *what)
{
	for (size_t i = hm_bitmap_find_next_set(got, 0); i < got->nbits;
	     i = hm_bitmap_find_next_set(got, i + 1)) {
		size_t p = i - bit0;

		if (!(__atomic_load_n(&truth[p / 64], __ATOMIC_SEQ_CST) &
		      (UINT64_C(1) << (p % 64))))
			hm_test_fail("%s: page %zu reported but never written",
				     what, p);
	}
}

static void compare_shadow(const char *shadow, const char *mem, size_t len,
			   const char *what)
{
	for (size_t off = 0; off < len; off += page_size)
		if (memcmp(shadow + off, mem + off, page_size))
			hm_test_fail("%s: page %zu differs from its copy: a "
				     "write was lost", what, off / page_size);
}

static void test_threads_one(const struct hm_caps *caps,
			     enum hm_tracker_mode mode, enum kind k,
			     unsigned ms)
{
	const size_t npages = THR_LEN / page_size;
	pthread_t th[N_WRITERS];
	struct thr_ctx c[N_WRITERS];
	uint64_t *truth;
	struct hm_bitmap got, all;
	struct hm_tracker *t;
	struct region r;
	char *shadow;
	char what[128];
	uint64_t t_end, rounds = 0, reported = 0;
	long n;

	snprintf(what, sizeof(what), "threads %s %s", hm_tracker_mode_name(mode),
		 kind_names[k]);
	map_region(&r, k, THR_LEN);
	prefill(r.base, r.len);
	shadow = malloc(THR_LEN);
	truth = calloc(npages / 64 + 1, sizeof(uint64_t));
	HM_CHECK(shadow && truth);
	HM_CHECK_OK(hm_bitmap_init(&got, npages));
	HM_CHECK_OK(hm_bitmap_init(&all, npages));
	t = open_tracker(caps, mode, npages, 0, false);
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)r.base, r.len, 0));
	HM_CHECK_OK(hm_tracker_start(t));
	/* R1: tracking is on before the first page is read. */
	memcpy(shadow, r.base, THR_LEN);
	for (int i = 0; i < N_WRITERS; i++) {
		c[i].base = r.base;
		c[i].npages = npages;
		c[i].truth = truth;
		atomic_init(&c[i].stop, 0);
		c[i].seed = rnd() | 1;
		HM_CHECK(pthread_create(&th[i], NULL, writer_main, &c[i]) == 0);
	}
	t_end = now_ms() + ms;
	while (now_ms() < t_end) {
		sleep_us(10000 + (long)(rnd() % 20000));
		bm_zero(&got);
		n = hm_tracker_harvest(t, &got);
		HM_CHECK_OK(n);
		HM_CHECK_EQ(n, hm_bitmap_count(&got));
		check_subset(&got, truth, 0, what);
		copy_pages(shadow, r.base, &got, 0, 0);
		hm_bitmap_or(&all, &got);
		reported += (uint64_t)n;
		rounds++;
	}
	for (int i = 0; i < N_WRITERS; i++) {
		atomic_store(&c[i].stop, 1);
		pthread_join(th[i], NULL);
	}
	/* Final round, writers stopped: the copy must now be exact. */
	bm_zero(&got);
	HM_CHECK_OK(hm_tracker_harvest(t, &got));
	check_subset(&got, truth, 0, what);
	copy_pages(shadow, r.base, &got, 0, 0);
	hm_bitmap_or(&all, &got);
	compare_shadow(shadow, r.base, THR_LEN, what);
	for (size_t p = 0; p < npages; p++)
		if ((truth[p / 64] >> (p % 64)) & 1)
			HM_CHECK(hm_bitmap_test(&all, p));
	hm_tracker_close(t);
	printf("ok %s: %" PRIu64 " harvests, %" PRIu64 " pages reported, %zu "
	       "distinct pages written\n", what, rounds, reported,
	       hm_bitmap_count(&all));
	hm_bitmap_fini(&got);
	hm_bitmap_fini(&all);
	free(shadow);
	free(truth);
	unmap_region(&r);
}

/* ------------------------------------------------------------------ */
/* remote: writers in a child process                                 */
/* ------------------------------------------------------------------ */

#define REM_LEN (8 * MiB)
#define REM_PAGES (REM_LEN / 4096)

struct rem_shared {
	atomic_int go, stop, stopped;
	atomic_ulong progress;
	uint64_t truth[REM_PAGES / 64 + 1];
};

struct rem_hello {
	int uffd;
	int err;
	uint64_t base;
};

struct child {
	pid_t pid;
	int to_child, from_child;
	struct rem_shared *sh;
	char *base;
	int uffd; /* taken into this process */
};

static void child_main(int rd, int wr, struct rem_shared *sh, enum kind k,
		       bool write_loop)
{
	struct rem_hello h = { -1, 0, 0 };
	struct region r;
	uint64_t s = rnd() | 1;
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	h.uffd = hm_uffd_create();
	if (h.uffd < 0)
		h.err = -h.uffd;
	map_region(&r, k, REM_LEN);
	prefill(r.base, r.len);
	h.base = (uintptr_t)r.base;
	if (write(wr, &h, sizeof(h)) != sizeof(h))
		_exit(3);
	/* The parent took our userfaultfd: drop our copy (hm_uffd_create's
	 * contract: the engine's exit must release us). */
	if (read(rd, &c, 1) != 1)
		_exit(4);
	close(h.uffd);
	if (write(wr, "C", 1) != 1)
		_exit(5);
	while (!atomic_load(&sh->go))
		sleep_us(100);
	while (write_loop && !atomic_load(&sh->stop)) {
		size_t p, off;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p = (s >> 8) % ((s & 1) ? REM_PAGES : REM_PAGES / 16);
		off = ((s >> 40) % (page_size / 8)) * 8;
		__atomic_fetch_or(&sh->truth[p / 64], UINT64_C(1) << (p % 64),
				  __ATOMIC_SEQ_CST);
		__atomic_store_n((uint64_t *)(r.base + p * page_size + off), s,
				 __ATOMIC_RELAXED);
		if (atomic_fetch_add(&sh->progress, 1) % 64 == 0)
			sleep_us(20);
	}
	atomic_store(&sh->stopped, 1);
	/* Stay until the parent closes the pipe. */
	while (read(rd, &c, 1) > 0)
		;
	_exit(0);
}

static void child_spawn(struct child *ch, enum kind k, bool write_loop)
{
	int p2c[2], c2p[2];
	struct rem_hello h;
	char c;

	memset(ch, 0, sizeof(*ch));
	ch->sh = mmap(NULL, sizeof(*ch->sh), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	HM_CHECK(ch->sh != MAP_FAILED);
	HM_CHECK(pipe2(p2c, O_CLOEXEC) == 0 && pipe2(c2p, O_CLOEXEC) == 0);
	rnd();
	ch->pid = fork();
	HM_CHECK(ch->pid >= 0);
	if (ch->pid == 0) {
		close(p2c[1]);
		close(c2p[0]);
		child_main(p2c[0], c2p[1], ch->sh, k, write_loop);
	}
	close(p2c[0]);
	close(c2p[1]);
	ch->to_child = p2c[1];
	ch->from_child = c2p[0];
	HM_CHECK(read(ch->from_child, &h, sizeof(h)) == sizeof(h));
	if (h.uffd < 0)
		hm_test_fail("child: userfaultfd: %s", strerror(h.err));
	ch->base = (char *)(uintptr_t)h.base;
	ch->uffd = hm_uffd_take_remote(ch->pid, h.uffd);
	HM_CHECK_OK(ch->uffd);
	HM_CHECK(write(ch->to_child, "T", 1) == 1);
	HM_CHECK(read(ch->from_child, &c, 1) == 1 && c == 'C');
}

static int child_end(struct child *ch)
{
	int st = 0;

	close(ch->to_child);
	close(ch->from_child);
	if (waitpid(ch->pid, &st, 0) < 0)
		st = -1;
	munmap(ch->sh, sizeof(*ch->sh));
	return st;
}

static struct hm_tracker *open_remote(const struct hm_caps *caps,
				      enum hm_tracker_mode mode,
				      struct child *ch, uint64_t disable)
{
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { test_log, NULL, HM_LOG_DEBUG },
		.nbits = REM_PAGES,
		.disable_features = disable,
	};
	struct hm_tracker *t = hm_tracker_open_remote(caps, &o, ch->pid,
						      ch->uffd);

	if (!t)
		hm_test_fail("hm_tracker_open_remote: %s", strerror(errno));
	ch->uffd = -1; /* the tracker owns it */
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)ch->base, REM_LEN, 0));
	return t;
}

static void read_remote(pid_t pid, char *dst, const char *src, size_t len)
{
	struct iovec l = { dst, len }, r = { (void *)src, len };

	HM_CHECK(process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)len);
}

static void test_remote_one(const struct hm_caps *caps,
			    enum hm_tracker_mode mode, enum kind k,
			    uint64_t disable, unsigned ms)
{
	struct hm_bitmap got, all;
	struct hm_tracker *t;
	struct child ch;
	char *shadow, *final;
	char what[160];
	uint64_t t_end, rounds = 0;
	size_t written = 0;
	unsigned long writes;

	snprintf(what, sizeof(what), "remote %s %s%s",
		 hm_tracker_mode_name(mode), kind_names[k],
		 disable ? " (no WP_UNPOPULATED)" : "");
	shadow = malloc(REM_LEN);
	final = malloc(REM_LEN);
	HM_CHECK(shadow && final);
	HM_CHECK_OK(hm_bitmap_init(&got, REM_PAGES));
	HM_CHECK_OK(hm_bitmap_init(&all, REM_PAGES));
	child_spawn(&ch, k, true);
	t = open_remote(caps, mode, &ch, disable);
	HM_CHECK_OK(hm_tracker_start(t));
	read_remote(ch.pid, shadow, ch.base, REM_LEN);
	atomic_store(&ch.sh->go, 1);
	t_end = now_ms() + ms;
	while (now_ms() < t_end) {
		sleep_us(10000 + (long)(rnd() % 20000));
		bm_zero(&got);
		HM_CHECK_OK(hm_tracker_harvest(t, &got));
		check_subset(&got, ch.sh->truth, 0, what);
		copy_pages(shadow, ch.base, &got, 0, ch.pid);
		hm_bitmap_or(&all, &got);
		rounds++;
	}
	atomic_store(&ch.sh->stop, 1);
	while (!atomic_load(&ch.sh->stopped))
		sleep_us(100);
	bm_zero(&got);
	HM_CHECK_OK(hm_tracker_harvest(t, &got));
	check_subset(&got, ch.sh->truth, 0, what);
	copy_pages(shadow, ch.base, &got, 0, ch.pid);
	hm_bitmap_or(&all, &got);
	read_remote(ch.pid, final, ch.base, REM_LEN);
	compare_shadow(shadow, final, REM_LEN, what);
	for (size_t p = 0; p < REM_PAGES; p++)
		if ((ch.sh->truth[p / 64] >> (p % 64)) & 1) {
			HM_CHECK(hm_bitmap_test(&all, p));
			written++;
		}
	HM_CHECK(written > 0);
	HM_CHECK_OK(hm_tracker_stop(t));
	HM_CHECK(!pagemap_any_wp(ch.pid, ch.base, REM_LEN));
	hm_tracker_close(t);
	writes = atomic_load(&ch.sh->progress);
	HM_CHECK_EQ(child_end(&ch), 0);
	printf("ok %s: %" PRIu64 " harvests, %zu pages written, %lu writes\n",
	       what, rounds, written, writes);
	hm_bitmap_fini(&got);
	hm_bitmap_fini(&all);
	free(shadow);
	free(final);
}

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

static void test_ebusy_einval(const struct hm_caps *caps,
			      enum hm_tracker_mode mode)
{
	struct hm_tracker *a, *b;
	struct region r;

	map_region(&r, K_ANON, 4 * MiB);
	a = open_tracker(caps, mode, 4096, 0, false);
	b = open_tracker(caps, mode, 4096, 0, false);
	HM_CHECK_EQ(hm_tracker_add_range(a, (uintptr_t)r.base + 1, page_size, 0),
		    -EINVAL);
	HM_CHECK_EQ(hm_tracker_add_range(a, (uintptr_t)r.base, 4 * MiB, 4000),
		    -EINVAL); /* bits past nbits */
	HM_CHECK_OK(hm_tracker_add_range(a, (uintptr_t)r.base, 2 * MiB, 0));
	/* Ours already. */
	HM_CHECK_EQ(hm_tracker_add_range(a, (uintptr_t)r.base + MiB, 2 * MiB,
					 1024), -EBUSY);
	/* Two ranges on one bit. */
	HM_CHECK_EQ(hm_tracker_add_range(a, (uintptr_t)r.base + 2 * MiB,
					 page_size, 10), -EINVAL);
	/* Registered with another userfaultfd. */
	log_reset();
	HM_CHECK_EQ(hm_tracker_add_range(b, (uintptr_t)r.base, 2 * MiB, 0),
		    -EBUSY);
	HM_CHECK(log_has("already registered"));
	HM_CHECK_OK(hm_tracker_add_range(b, (uintptr_t)r.base + 2 * MiB,
					 MiB, 0));
	/* Not mapped at all. */
	HM_CHECK(munmap(r.base + 3 * MiB, MiB) == 0);
	HM_CHECK_EQ(hm_tracker_add_range(a, (uintptr_t)r.base + 3 * MiB, MiB,
					 2048), -ENOMEM);
	hm_tracker_close(a);
	hm_tracker_close(b);
	/* After a's close, the range is free for another tracker. */
	b = open_tracker(caps, mode, 4096, 0, false);
	HM_CHECK_OK(hm_tracker_add_range(b, (uintptr_t)r.base, 2 * MiB, 0));
	HM_CHECK_OK(hm_tracker_start(b));
	hm_tracker_close(b);
	unmap_region(&r);
	printf("ok EBUSY/EINVAL %s\n", hm_tracker_mode_name(mode));
}

static void test_enotsup(const struct hm_caps *real)
{
	struct hm_tracker_opts o = { .mode = HM_TRACKER_ASYNC, .nbits = 16 };
	struct hm_caps c = *real;
	enum hm_tracker_mode m;

	HM_CHECK(hm_tracker_mode_parse("sync", &m) == 0 && m == HM_TRACKER_SYNC);
	HM_CHECK(hm_tracker_mode_parse("async", &m) == 0 &&
		 m == HM_TRACKER_ASYNC);
	HM_CHECK(hm_tracker_mode_parse("auto", &m) == 0 && m == HM_TRACKER_AUTO);
	HM_CHECK_EQ(hm_tracker_mode_parse("fast", &m), -EINVAL);
	HM_CHECK(hm_tracker_mode_name((enum hm_tracker_mode)7) == NULL);

	c.wp_async = false; /* a 6.1 kernel */
	HM_CHECK_EQ(hm_tracker_mode_pick(&c, HM_TRACKER_ASYNC), -ENOTSUP);
	HM_CHECK_EQ(hm_tracker_mode_pick(&c, HM_TRACKER_AUTO), HM_TRACKER_SYNC);
	HM_CHECK_EQ(hm_tracker_mode_pick(&c, HM_TRACKER_SYNC), HM_TRACKER_SYNC);
	errno = 0;
	HM_CHECK(hm_tracker_open(&c, &o) == NULL && errno == ENOTSUP);
	c.uffd_wp = false; /* a kernel without uffd-wp */
	HM_CHECK_EQ(hm_tracker_mode_pick(&c, HM_TRACKER_SYNC), -ENOTSUP);
	o.mode = HM_TRACKER_AUTO;
	errno = 0;
	HM_CHECK(hm_tracker_open(&c, &o) == NULL && errno == ENOTSUP);
	c.uffd_syscall = c.uffd_dev = false;
	c.uffd_errno = EPERM;
	HM_CHECK_EQ(hm_tracker_mode_pick(&c, HM_TRACKER_AUTO), -EPERM);
	o.nbits = 0;
	errno = 0;
	HM_CHECK(hm_tracker_open(real, &o) == NULL && errno == EINVAL);
	printf("ok ENOTSUP/EINVAL and mode names\n");
}

static void test_esrch(const struct hm_caps *caps, enum hm_tracker_mode mode)
{
	struct hm_bitmap got;
	struct hm_tracker *t;
	struct child ch;
	int st;

	HM_CHECK_OK(hm_bitmap_init(&got, REM_PAGES));
	child_spawn(&ch, K_ANON, true);
	t = open_remote(caps, mode, &ch, 0);
	HM_CHECK_OK(hm_tracker_start(t));
	atomic_store(&ch.sh->go, 1);
	sleep_us(20000);
	HM_CHECK_OK(hm_tracker_harvest(t, &got));
	log_reset();
	kill(ch.pid, SIGKILL);
	HM_CHECK(waitpid(ch.pid, &st, 0) == ch.pid);
	HM_CHECK_EQ(hm_tracker_harvest(t, &got), -ESRCH);
	HM_CHECK(log_has("is gone"));
	HM_CHECK_EQ(hm_tracker_reprotect(t, 0, 10), -ESRCH);
	HM_CHECK_EQ(hm_tracker_start(t), -ESRCH);
	HM_CHECK_EQ(hm_tracker_stop(t), -ESRCH);
	hm_tracker_close(t);
	close(ch.to_child);
	close(ch.from_child);
	munmap(ch.sh, sizeof(*ch.sh));

	/* Killed between open and start, still a zombie (not reaped). */
	child_spawn(&ch, K_ANON, false);
	t = open_remote(caps, mode, &ch, 0);
	kill(ch.pid, SIGKILL);
	HM_CHECK(waitid(P_PID, (id_t)ch.pid, NULL, WEXITED | WNOWAIT) == 0);
	HM_CHECK_EQ(hm_tracker_start(t), -ESRCH);
	HM_CHECK_EQ(hm_tracker_harvest(t, &got), -ESRCH);
	hm_tracker_close(t);
	child_end(&ch);
	hm_bitmap_fini(&got);
	printf("ok ESRCH %s\n", hm_tracker_mode_name(mode));
}

/* stop() and close() leave the target running and unprotected, also
 * while it is writing as fast as it can (in sync mode: faulting). */
static void test_stop_leaves_running(const struct hm_caps *caps,
				     enum hm_tracker_mode mode, bool close_only)
{
	struct hm_bitmap got;
	struct hm_tracker *t;
	struct child ch;
	unsigned long p0;

	HM_CHECK_OK(hm_bitmap_init(&got, REM_PAGES));
	child_spawn(&ch, K_THP, true);
	t = open_remote(caps, mode, &ch, 0);
	HM_CHECK_OK(hm_tracker_start(t));
	atomic_store(&ch.sh->go, 1);
	sleep_us(30000);
	HM_CHECK_OK(hm_tracker_harvest(t, &got));
	sleep_us(10000);
	if (close_only) {
		hm_tracker_close(t); /* no stop() first */
	} else {
		HM_CHECK_OK(hm_tracker_stop(t));
	}
	HM_CHECK(!pagemap_any_wp(ch.pid, ch.base, REM_LEN));
	p0 = atomic_load(&ch.sh->progress);
	sleep_us(100000);
	HM_CHECK(atomic_load(&ch.sh->progress) > p0 + 100);
	if (!close_only)
		hm_tracker_close(t);
	p0 = atomic_load(&ch.sh->progress);
	sleep_us(50000);
	HM_CHECK(atomic_load(&ch.sh->progress) > p0 + 100);
	atomic_store(&ch.sh->stop, 1);
	HM_CHECK_EQ(child_end(&ch), 0);
	hm_bitmap_fini(&got);
	printf("ok %s %s leaves the target running, unprotected\n",
	       close_only ? "close()" : "stop()", hm_tracker_mode_name(mode));
}

/* EPERM: an unprivileged process under vm.unprivileged_userfaultfd=0
 * (and /dev/userfaultfd root-only) gets no userfaultfd. */
static void test_eperm(const struct hm_caps *root_caps)
{
	pid_t pid;
	int st;

	if (root_caps->unprivileged_userfaultfd != 0 || getuid() != 0) {
		printf("-- EPERM case not run: needs root and "
		       "vm.unprivileged_userfaultfd=0 (is %d)\n",
		       root_caps->unprivileged_userfaultfd);
		return;
	}
	pid = fork();
	HM_CHECK(pid >= 0);
	if (pid == 0) {
		struct hm_tracker_opts o = {
			.mode = HM_TRACKER_AUTO,
			.log = { test_log, NULL, HM_LOG_DEBUG },
			.nbits = 16,
		};
		struct hm_caps c;
		int ret;

		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(10);
		/* With the root's probe: creating the uffd fails. */
		errno = 0;
		if (hm_tracker_open(root_caps, &o) != NULL || errno != EPERM)
			_exit(11);
		if (!log_has("vm.unprivileged_userfaultfd"))
			_exit(12);
		ret = hm_uffd_create();
		if (ret != -EPERM)
			_exit(13);
		/* With our own probe: the mode cannot be picked. */
		HM_CHECK_OK(hm_caps_probe(&c, NULL));
		if (c.uffd_syscall || c.uffd_errno != EPERM)
			_exit(14);
		if (hm_tracker_mode_pick(&c, HM_TRACKER_AUTO) != -EPERM)
			_exit(15);
		log_reset();
		errno = 0;
		if (hm_tracker_open(&c, &o) != NULL || errno != EPERM ||
		    !log_has("vm.unprivileged_userfaultfd"))
			_exit(16);
		_exit(0);
	}
	HM_CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		hm_test_fail("EPERM child: status 0x%x", st);
	printf("ok EPERM for an unprivileged process, log names "
	       "vm.unprivileged_userfaultfd\n");
}

/* ------------------------------------------------------------------ */

static bool want_part(int argc, char **argv, const char *name)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const enum hm_tracker_mode all_modes[] = { HM_TRACKER_SYNC,
						   HM_TRACKER_ASYNC };
	enum hm_tracker_mode modes[2];
	struct hm_caps caps;
	size_t nmodes = 0;
	const char *seed_env = getenv("HM_TEST_SEED");
	uint64_t seed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	HM_CHECK_EQ(page_size, 4096);
	seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
	rng_state = seed | 1;
	printf("seed %" PRIu64 " (HM_TEST_SEED to repeat)\n", seed);

	HM_CHECK_OK(hm_caps_probe(&caps, NULL));
	if (!caps.uffd_syscall && !caps.uffd_dev)
		hm_test_skip_absent(HM_ABSENT_UFFD, "no userfaultfd: %s", strerror(caps.uffd_errno));
	if (!caps.uffd_wp)
		hm_test_skip_absent(HM_ABSENT_UFFD_WP, "kernel %s has no userfaultfd write-protect",
			     caps.kernel_release);
	for (size_t i = 0; i < 2; i++)
		if (hm_tracker_mode_pick(&caps, all_modes[i]) >= 0)
			modes[nmodes++] = all_modes[i];

	for (size_t m = 0; m < nmodes; m++) {
		if (want_part(argc, argv, "exact")) {
			for (int k = 0; k < N_KINDS; k++) {
				if (!is_anon((enum kind)k) &&
				    !caps.wp_hugetlbfs_shmem)
					continue;
				test_exact_one(&caps, modes[m], (enum kind)k, 0);
				/* The 6.1 path: none anon ptes populated
				 * read-only before protecting. */
				if (caps.wp_unpopulated)
					test_exact_one(&caps, modes[m],
						       (enum kind)k,
						       UFFD_FEATURE_WP_UNPOPULATED);
			}
			if (caps.thp)
				test_thp_granularity(&caps, modes[m]);
			test_split(&caps, modes[m]);
		}
		if (want_part(argc, argv, "units") &&
		    modes[m] == HM_TRACKER_SYNC) {
			test_units(&caps, K_NOTHP);
			if (caps.thp)
				test_units(&caps, K_THP);
			if (caps.wp_async)
				test_units_async(&caps);
		}
		if (want_part(argc, argv, "hugetlb") && geteuid() == 0)
			test_hugetlb(&caps, modes[m]);
		if (want_part(argc, argv, "hot")) {
			test_hot(&caps, modes[m], K_NOTHP);
			test_hot(&caps, modes[m], K_THP);
			if (caps.wp_hugetlbfs_shmem)
				test_hot(&caps, modes[m], K_MEMFD);
		}
		if (want_part(argc, argv, "threads")) {
			test_threads_one(&caps, modes[m], K_THP, 700);
			test_threads_one(&caps, modes[m], K_NOTHP, 400);
			if (caps.wp_hugetlbfs_shmem) {
				test_threads_one(&caps, modes[m], K_MEMFD, 400);
				test_threads_one(&caps, modes[m], K_SHMFILE, 400);
			}
		}
		if (want_part(argc, argv, "remote")) {
			if (!caps.pidfd_getfd)
				hm_test_skip_absent(HM_ABSENT_PIDFD_GETFD, "no pidfd_getfd(2)");
			test_remote_one(&caps, modes[m], K_THP, 0, 600);
			if (caps.wp_unpopulated)
				test_remote_one(&caps, modes[m], K_ANON,
						UFFD_FEATURE_WP_UNPOPULATED, 400);
			if (caps.wp_hugetlbfs_shmem) {
				test_remote_one(&caps, modes[m], K_MEMFD, 0, 400);
				test_remote_one(&caps, modes[m], K_SHMFILE, 0, 400);
			}
		}
		if (want_part(argc, argv, "errors")) {
			test_ebusy_einval(&caps, modes[m]);
			if (caps.pidfd_getfd) {
				test_esrch(&caps, modes[m]);
				test_stop_leaves_running(&caps, modes[m], false);
				test_stop_leaves_running(&caps, modes[m], true);
			}
		}
	}
	if (want_part(argc, argv, "errors")) {
		test_enotsup(&caps);
		test_eperm(&caps);
	}
	if (nmodes < 2)
		hm_test_skip_absent(HM_ABSENT_WP_ASYNC, "async mode not tested: kernel %s lacks WP_ASYNC "
			     "or PAGEMAP_SCAN (sync mode passed)",
			     caps.kernel_release);
	printf("all passed\n");
	return 0;
}

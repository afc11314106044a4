/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest backends: the local one (memory of this process) and the process
 * one (a forked child): block validation, page numbering and gpa
 * translation, read, R6 "populated" (anonymous present / not present /
 * swapped / uffd-wp markers, memfd holes, shared memory without an fd),
 * pause/resume of a child really stopping its writes, and -ESRCH once the
 * child is gone. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hm_test.h"
#include "migrate/guests/guest.h"
#include "migrate/guests/guest_priv.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static uint64_t ps;
static char last_log[1024];

static void cap_log(void *opaque, enum hm_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(last_log, sizeof(last_log), "%s", msg);
	if (getenv("HM_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

static const struct hm_log tlog = { cap_log, NULL, HM_LOG_DEBUG };


static void *map_anon(size_t pages, int shared)
{
	void *p = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
		       -1, 0);

	HM_CHECK(p != MAP_FAILED);
	/* small pages only: a THP would make neighbours present too */
	madvise(p, pages * ps, MADV_NOHUGEPAGE);
	return p;
}

static struct hm_ram_block mkblock(const char *name, uint64_t gpa,
				   void *host, size_t pages, int memfd)
{
	struct hm_ram_block b;

	memset(&b, 0, sizeof(b));
	snprintf(b.name, sizeof(b.name), "%s", name);
	b.gpa = gpa;
	b.len = pages * ps;
	b.host_addr = (uint64_t)(uintptr_t)host;
	b.memfd = memfd;
	return b;
}

/* populated() of the whole guest into a fresh bitmap */
static void populated_all(struct hm_guest *g, struct hm_bitmap *bm)
{
	HM_CHECK_OK(hm_bitmap_init(bm, g->npages));
	for (size_t i = 0; i < g->nblocks; i++)
		HM_CHECK_OK(g->ops->populated(g, &g->blocks[i], 0,
					      g->blocks[i].len / ps, bm));
}

static void expect_bits(const struct hm_bitmap *bm, const int *want,
			size_t nwant, const char *what)
{
	size_t n = 0;

	for (size_t i = 0; i < bm->nbits; i++) {
		int expected = 0;

		for (size_t k = 0; k < nwant; k++)
			expected |= (size_t)want[k] == i;
		if (hm_bitmap_test(bm, i) != expected)
			hm_test_fail("%s: page %zu populated=%d, expected %d",
				     what, i, hm_bitmap_test(bm, i), expected);
		n += expected;
	}
	HM_CHECK_EQ(hm_bitmap_count(bm), n);
}

/* as on a kernel without PAGEMAP_SCAN (< 6.7) */
static void no_scan(struct hm_guest *g)
{
	((struct hm_guest_common *)g->priv)->scan_state = -1;
}

static void test_translate(const struct hm_guest *g)
{
	uint64_t first = 99, n = 99;
	const uint64_t G = UINT64_C(1) << 30;

	HM_CHECK_OK(hm_guest_gpa_to_pages(g, 0, ps, &first, &n));
	HM_CHECK_EQ(first, 0);
	HM_CHECK_EQ(n, 1);
	HM_CHECK_OK(hm_guest_gpa_to_pages(g, 15 * ps, ps, &first, &n));
	HM_CHECK_EQ(first, 15);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 15 * ps, 2 * ps, &first, &n),
		    -ERANGE);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 16 * ps, ps, &first, &n),
		    -ERANGE);
	HM_CHECK_OK(hm_guest_gpa_to_pages(g, G + 7 * ps, ps, &first, &n));
	HM_CHECK_EQ(first, 16 + 7);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, G + 7 * ps, 2 * ps, &first, &n),
		    -ERANGE);
	HM_CHECK_OK(hm_guest_gpa_to_pages(g, G, 8 * ps, &first, &n));
	HM_CHECK_EQ(first, 16);
	HM_CHECK_EQ(n, 8);
	HM_CHECK_OK(hm_guest_gpa_to_pages(g, 2 * G + 3 * ps, ps, &first, &n));
	HM_CHECK_EQ(first, 27);
	/* two adjacent ranges are still two blocks */
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, G - ps, 2 * ps, &first, &n),
		    -ERANGE);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 1, ps, &first, &n), -EINVAL);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 0, 0, &first, &n), -EINVAL);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 0, ps + 1, &first, &n), -EINVAL);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, UINT64_MAX / ps * ps, ps, &first,
					  &n), -ERANGE);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, UINT64_MAX / ps * ps, 2 * ps,
					  &first, &n), -ERANGE);
	HM_CHECK_EQ(hm_guest_gpa_to_pages(g, 0, UINT64_MAX / ps * ps, &first,
					  &n), -ERANGE);
	HM_CHECK(hm_guest_block_of_page(g, 0) == &g->blocks[0]);
	HM_CHECK(hm_guest_block_of_page(g, 15) == &g->blocks[0]);
	HM_CHECK(hm_guest_block_of_page(g, 16) == &g->blocks[1]);
	HM_CHECK(hm_guest_block_of_page(g, 23) == &g->blocks[1]);
	HM_CHECK(hm_guest_block_of_page(g, 24) == &g->blocks[2]);
	HM_CHECK(hm_guest_block_of_page(g, 27) == &g->blocks[2]);
	HM_CHECK(hm_guest_block_of_page(g, 28) == NULL);
	HM_CHECK(hm_guest_block_of_page(g, UINT64_MAX) == NULL);
}

static int pauses, resumes;

static int cb_pause(void *o)
{
	(void)o;
	pauses++;
	return 0;
}

static int cb_resume(void *o)
{
	(void)o;
	resumes++;
	return -EIO;
}

static void test_local(void)
{
	const uint64_t G = UINT64_C(1) << 30;
	unsigned char *a = map_anon(16, 0), *s = map_anon(4, 1), *m;
	struct hm_ram_block blocks[3];
	struct hm_guest_callbacks cb = { cb_pause, cb_resume, NULL };
	struct hm_bitmap bm;
	struct hm_guest *g;
	unsigned char *buf = malloc(2 * ps);
	volatile unsigned char sink;
	int mfd = memfd_create("test-guest", MFD_CLOEXEC);
	uint64_t pm;
	int pmfd;

	HM_CHECK(mfd >= 0 && buf);
	HM_CHECK_OK(ftruncate(mfd, (off_t)(8 * ps)));
	m = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	HM_CHECK(m != MAP_FAILED);
	memset(a, 0x11, ps);
	memset(a + 3 * ps, 0x33, ps);
	sink = a[5 * ps]; /* read fault: the zero page, counted as data */
	(void)sink;
	memset(buf, 0x22, ps);
	HM_CHECK_EQ(pwrite(mfd, buf, ps, (off_t)(2 * ps)), (ssize_t)ps);
	m[5 * ps] = 0x55; /* written through the mapping */
	HM_CHECK(lseek(mfd, 123, SEEK_SET) == 123);

	blocks[0] = mkblock("anon", 0, a, 16, -1);
	blocks[1] = mkblock("memfd", G, m, 8, mfd);
	blocks[2] = mkblock("shared", 2 * G, s, 4, -1);
	g = hm_guest_local_new(blocks, 3, &cb, &tlog);
	if (!g)
		hm_test_fail("hm_guest_local_new: %s (%s)", strerror(errno),
			     last_log);
	HM_CHECK(strcmp(g->ops->name, "local") == 0);
	HM_CHECK_EQ(g->npages, 28);
	HM_CHECK_EQ(g->page_size, ps);
	HM_CHECK_EQ(g->blocks[0].first_bit, 0);
	HM_CHECK_EQ(g->blocks[1].first_bit, 16);
	HM_CHECK_EQ(g->blocks[2].first_bit, 24);
	HM_CHECK_EQ(g->pid, 0);
	test_translate(g);

	/* read */
	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], 3 * ps, buf, ps));
	HM_CHECK(buf[0] == 0x33 && buf[ps - 1] == 0x33);
	HM_CHECK_OK(g->ops->read(g, &g->blocks[1], 2 * ps, buf, ps));
	HM_CHECK(buf[0] == 0x22 && buf[ps - 1] == 0x22);
	HM_CHECK_EQ(g->ops->read(g, &g->blocks[0], 15 * ps, buf, 2 * ps),
		    -ERANGE);
	HM_CHECK_EQ(g->ops->read(g, &g->blocks[0], UINT64_MAX, buf, 1),
		    -ERANGE);
	/* map: the block itself */
	HM_CHECK(g->ops->map);
	HM_CHECK(g->ops->map(g, &g->blocks[1]) ==
		 (const void *)(uintptr_t)g->blocks[1].host_addr);
	{
		struct hm_ram_block other = g->blocks[1];

		other.host_addr += ps; /* not a block of g */
		HM_CHECK(g->ops->map(g, &other) == NULL);
	}

	/* R6 */
	{
		const int want[] = { 0, 3, 5, 16 + 2, 16 + 5, 24, 25, 26, 27 };

		populated_all(g, &bm);
		expect_bits(&bm, want, sizeof(want) / sizeof(want[0]),
			    "local");
		hm_bitmap_fini(&bm);
		no_scan(g);
		populated_all(g, &bm);
		expect_bits(&bm, want, sizeof(want) / sizeof(want[0]),
			    "local, pagemap only");
		hm_bitmap_fini(&bm);
	}
	/* the caller's file offset is not ours to move */
	HM_CHECK(lseek(mfd, 0, SEEK_CUR) == 123);
	/* sub-ranges and bounds */
	HM_CHECK_OK(hm_bitmap_init(&bm, 28));
	HM_CHECK_OK(g->ops->populated(g, &g->blocks[0], 1, 3, &bm));
	HM_CHECK_EQ(hm_bitmap_count(&bm), 1);
	HM_CHECK(hm_bitmap_test(&bm, 3));
	HM_CHECK_OK(g->ops->populated(g, &g->blocks[1], 3, 2, &bm));
	HM_CHECK_EQ(hm_bitmap_count(&bm), 1);
	HM_CHECK_EQ(g->ops->populated(g, &g->blocks[0], 10, 7, &bm), -ERANGE);
	HM_CHECK_EQ(g->ops->populated(g, &g->blocks[1], 9, 0, &bm), -ERANGE);
	hm_bitmap_fini(&bm);
	HM_CHECK_OK(hm_bitmap_init(&bm, 20));
	HM_CHECK_EQ(g->ops->populated(g, &g->blocks[1], 0, 8, &bm), -ERANGE);
	hm_bitmap_fini(&bm);

	/* dropped anonymous memory holds nothing any more */
	HM_CHECK_OK(madvise(a, ps, MADV_DONTNEED));
	{
		const int want[] = { 3, 5, 16 + 2, 16 + 5, 24, 25, 26, 27 };

		populated_all(g, &bm);
		expect_bits(&bm, want, sizeof(want) / sizeof(want[0]),
			    "after MADV_DONTNEED");
		hm_bitmap_fini(&bm);
	}

	/* swapped-out anonymous memory holds data */
	pmfd = open("/proc/self/pagemap", O_RDONLY);
	HM_CHECK(pmfd >= 0);
	madvise(a + 3 * ps, ps, MADV_PAGEOUT);
	HM_CHECK_EQ(pread(pmfd, &pm, 8, (off_t)((uintptr_t)(a + 3 * ps) / ps
						* 8)), 8);
	close(pmfd);
	if (pm & (UINT64_C(1) << 62)) {
		populated_all(g, &bm);
		HM_CHECK(hm_bitmap_test(&bm, 3));
		hm_bitmap_fini(&bm);
		printf("guest: swapped page counted as data\n");
	} else {
		printf("guest: no swap here, the swapped case is not "
		       "exercised\n");
	}

	/* callbacks replace the backend's pause/resume */
	HM_CHECK_OK(g->ops->pause(g));
	HM_CHECK_EQ(g->ops->resume(g), -EIO);
	HM_CHECK_EQ(pauses, 1);
	HM_CHECK_EQ(resumes, 1);
	HM_CHECK_EQ(hm_guest_process_set_uffd(g, dup(0)), -EINVAL);
	hm_guest_free(g);

	/* without callbacks: nothing to stop */
	g = hm_guest_local_new(blocks, 1, NULL, &tlog);
	HM_CHECK(g != NULL);
	HM_CHECK_OK(g->ops->pause(g));
	HM_CHECK_OK(g->ops->resume(g));
	hm_guest_free(g);

	munmap(a, 16 * ps);
	munmap(s, 4 * ps);
	munmap(m, 8 * ps);
	close(mfd);
	free(buf);
}

/* R6 once the tracker has write-protected RAM: never-populated pages are
 * uffd-wp markers, which pagemap reports as "swapped". */
static void test_local_tracked(void)
{
	unsigned char *a = map_anon(64, 0);
	struct hm_ram_block b = mkblock("anon", 0, a, 64, -1);
	struct hm_tracker_opts opts;
	struct hm_tracker *t;
	struct hm_caps caps;
	struct hm_bitmap bm;
	struct hm_guest *g;
	const int want[] = { 1, 7, 63 };

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		a[(size_t)want[i] * ps] = 1;
	g = hm_guest_local_new(&b, 1, NULL, &tlog);
	HM_CHECK(g != NULL);
	HM_CHECK_OK(hm_caps_probe(&caps, &tlog));
	memset(&opts, 0, sizeof(opts));
	opts.mode = HM_TRACKER_AUTO;
	opts.log = tlog;
	opts.nbits = g->npages;
	t = g->ops->open_tracker(g, &caps, &opts);
	if (!t) {
		printf("guest: no tracker here (%s): the uffd-wp marker case "
		       "is not exercised\n", strerror(errno));
		goto out;
	}
	HM_CHECK_OK(hm_tracker_start(t));
	populated_all(g, &bm);
	if (geteuid() == 0) {
		expect_bits(&bm, want, 3, "tracked");
		hm_bitmap_fini(&bm);
		no_scan(g);
		populated_all(g, &bm);
		expect_bits(&bm, want, 3, "tracked, pagemap only");
		printf("guest: uffd-wp markers (features 0x%llx) seen as "
		       "empty\n",
		       (unsigned long long)hm_tracker_get_features(t));
	} else {
		/* pagemap hides swap types from us: markers count as data */
		for (size_t i = 0; i < 3; i++)
			HM_CHECK(hm_bitmap_test(&bm, (size_t)want[i]));
	}
	hm_bitmap_fini(&bm);
	/* a write after the scan is the tracker's business: in L */
	a[9 * ps] = 1;
	HM_CHECK_OK(hm_bitmap_init(&bm, g->npages));
	HM_CHECK(hm_tracker_harvest(t, &bm) >= 1);
	HM_CHECK(hm_bitmap_test(&bm, 9));
	hm_bitmap_fini(&bm);
	hm_tracker_close(t);
out:
	hm_guest_free(g);
	munmap(a, 64 * ps);
}

static void test_local_invalid(void)
{
	unsigned char *a = map_anon(8, 0), *hole = map_anon(4, 0);
	struct hm_ram_block b[2];
	int mfd = memfd_create("inv", MFD_CLOEXEC);

	HM_CHECK(mfd >= 0);
	munmap(hole, 4 * ps);
	b[0] = mkblock("a", 0, a, 4, -1);
	b[1] = mkblock("b", 4 * ps, a + 4 * ps, 4, -1);
	HM_CHECK(hm_guest_local_new(b, 0, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	HM_CHECK(hm_guest_local_new(NULL, 1, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[0].len = 0;
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[0].len = 4 * ps + 1;
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[0].len = 4 * ps;
	b[0].gpa = 1;
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[0].gpa = 0;
	b[0].host_addr += 8;
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[0].host_addr -= 8;
	b[1].gpa = 3 * ps; /* guest-physical overlap */
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[1].gpa = 4 * ps;
	b[1].host_addr = (uintptr_t)a; /* host overlap */
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[1].host_addr = (uintptr_t)hole; /* not mapped */
	HM_CHECK(hm_guest_local_new(b, 2, NULL, &tlog) == NULL);
	HM_CHECK_EQ(errno, EFAULT);
	b[1] = mkblock("b", 4 * ps, a + 4 * ps, 4, mfd);
	b[1].memfd_offset = 100;
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	b[1].memfd_offset = 0;
	b[1].gpa = UINT64_MAX / ps * ps; /* wraps */
	HM_CHECK(hm_guest_local_new(b, 2, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, EINVAL);
	munmap(a, 8 * ps);
	close(mfd);
}

/* ---- the process backend ---- */

struct child_info {
	uint64_t anon, memfd_map, shared;
};

static void *child_spin(void *arg)
{
	volatile uint64_t *c = arg;

	for (;;)
		(*c)++;
	return NULL;
}

static pid_t start_child(int mfd, struct child_info *ci)
{
	int p[2];
	pid_t pid;

	HM_CHECK_OK(pipe(p));
	pid = fork();
	HM_CHECK(pid >= 0);
	if (pid == 0) {
		unsigned char *a, *s, *m;
		struct child_info me;
		pthread_t t;

		/* never outlive the test */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		a = map_anon(32, 0);
		s = map_anon(4, 1);

		m = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, mfd,
			 0);
		if (m == MAP_FAILED)
			_exit(2);
		for (int i = 0; i < 8; i++)
			memset(a + (size_t)i * ps, i + 1, ps);
		m[ps] = 0x77;
		me.anon = (uintptr_t)a;
		me.memfd_map = (uintptr_t)m;
		me.shared = (uintptr_t)s;
		a[8 * ps] = 1;
		a[9 * ps] = 1;
		if (pthread_create(&t, NULL, child_spin, a + 9 * ps))
			_exit(2);
		if (write(p[1], &me, sizeof(me)) != sizeof(me))
			_exit(2);
		child_spin(a + 8 * ps);
	}
	close(p[1]);
	HM_CHECK_EQ(read(p[0], ci, sizeof(*ci)), sizeof(*ci));
	close(p[0]);
	return pid;
}

static uint64_t read_u64(struct hm_guest *g, uint64_t page)
{
	uint64_t v = 0;

	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], page * ps, &v, sizeof(v)));
	return v;
}

static void test_process(void)
{
	const uint64_t G = UINT64_C(1) << 30;
	int mfd = memfd_create("test-proc", MFD_CLOEXEC);
	struct child_info ci;
	struct hm_ram_block b[3];
	struct hm_bitmap bm;
	struct hm_guest *g;
	unsigned char *buf = malloc(12 * ps);
	uint64_t c8, c9;
	struct timespec t0, t1;
	pid_t pid;
	int st;

	HM_CHECK(mfd >= 0 && buf);
	HM_CHECK_OK(ftruncate(mfd, (off_t)(8 * ps)));
	pid = start_child(mfd, &ci);
	/* data the child never mapped in: only SEEK_DATA can see it */
	memset(buf, 0x66, ps);
	HM_CHECK_EQ(pwrite(mfd, buf, ps, (off_t)(6 * ps)), (ssize_t)ps);

	b[0] = mkblock("anon", 0, (void *)(uintptr_t)ci.anon, 32, -1);
	b[1] = mkblock("memfd", G, (void *)(uintptr_t)ci.memfd_map, 8, mfd);
	b[2] = mkblock("shared", 2 * G, (void *)(uintptr_t)ci.shared, 4, -1);
	g = hm_guest_process_new(pid, b, 3, -1, NULL, &tlog);
	if (!g)
		hm_test_fail("hm_guest_process_new: %s (%s)", strerror(errno),
			     last_log);
	HM_CHECK(strcmp(g->ops->name, "process") == 0);
	HM_CHECK_EQ(g->pid, pid);
	HM_CHECK_EQ(g->npages, 44);

	/* R6 before anything reads the untouched pages */
	{
		int want[8 + 2 + 2 + 4], n = 0;

		for (int i = 0; i < 10; i++)
			want[n++] = i;
		want[n++] = 32 + 1;
		want[n++] = 32 + 6;
		for (int i = 0; i < 4; i++)
			want[n++] = 40 + i;
		populated_all(g, &bm);
		expect_bits(&bm, want, (size_t)n, "process");
		hm_bitmap_fini(&bm);
	}

	/* read: many pages in one call, memfd through our own fd */
	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], 0, buf, 8 * ps));
	for (int i = 0; i < 8; i++)
		HM_CHECK(buf[(size_t)i * ps] == i + 1 &&
			 buf[(size_t)i * ps + ps - 1] == i + 1);
	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], 20 * ps, buf, 12 * ps));
	HM_CHECK(buf[0] == 0 && buf[12 * ps - 1] == 0);
	HM_CHECK_OK(g->ops->read(g, &g->blocks[1], ps, buf, 6 * ps));
	HM_CHECK(buf[0] == 0x77 && buf[5 * ps] == 0x66 && buf[ps] == 0);
	HM_CHECK_EQ(g->ops->read(g, &g->blocks[2], 3 * ps, buf, 2 * ps),
		    -ERANGE);
	/* map: only the memfd block, a mapping that reads what read reads */
	HM_CHECK(g->ops->map(g, &g->blocks[0]) == NULL);
	HM_CHECK(g->ops->map(g, &g->blocks[2]) == NULL);
	{
		const unsigned char *mp = g->ops->map(g, &g->blocks[1]);

		HM_CHECK(mp);
		HM_CHECK(g->ops->map(g, &g->blocks[1]) == mp);
		HM_CHECK_OK(g->ops->read(g, &g->blocks[1], 0, buf, 7 * ps));
		HM_CHECK(!memcmp(mp, buf, 7 * ps));
		HM_CHECK(mp[ps] == 0x77 && mp[6 * ps] == 0x66);
		/* a change in the guest's memfd shows through it */
		memset(buf, 0x55, ps);
		HM_CHECK_EQ(pwrite(mfd, buf, ps, (off_t)(5 * ps)),
			    (ssize_t)ps);
		HM_CHECK(mp[5 * ps] == 0x55 && mp[6 * ps - 1] == 0x55);
	}

	/* pause stops every thread; resume starts them again */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	HM_CHECK_OK(g->ops->pause(g));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("guest: pause took %.2f ms\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	c8 = read_u64(g, 8);
	c9 = read_u64(g, 9);
	hm_test_sleep_ms(100);
	HM_CHECK_EQ(read_u64(g, 8), c8);
	HM_CHECK_EQ(read_u64(g, 9), c9);
	HM_CHECK_OK(g->ops->pause(g)); /* idempotent */
	HM_CHECK_OK(g->ops->resume(g));
	hm_test_sleep_ms(50);
	HM_CHECK(read_u64(g, 8) != c8);
	HM_CHECK(read_u64(g, 9) != c9);

	/* no tracker without a userfaultfd */
	{
		struct hm_caps caps;
		struct hm_tracker_opts o;

		memset(&caps, 0, sizeof(caps));
		memset(&o, 0, sizeof(o));
		HM_CHECK(g->ops->open_tracker(g, &caps, &o) == NULL);
		HM_CHECK_EQ(errno, EBADF);
	}

	/* gone: a zombie first, then reaped */
	kill(pid, SIGKILL);
	{
		/* exited, but left a zombie (not reaped) */
		siginfo_t si;

		HM_CHECK_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
	}
	for (int round = 0; round < 2; round++) {
		HM_CHECK_EQ(g->ops->read(g, &g->blocks[0], 0, buf, ps),
			    -ESRCH);
		HM_CHECK_EQ(g->ops->read(g, &g->blocks[1], 0, buf, ps),
			    -ESRCH);
		HM_CHECK_EQ(g->ops->pause(g), -ESRCH);
		HM_CHECK_EQ(g->ops->resume(g), -ESRCH);
		HM_CHECK_OK(hm_bitmap_init(&bm, g->npages));
		HM_CHECK_EQ(g->ops->populated(g, &g->blocks[0], 0, 32, &bm),
			    -ESRCH);
		hm_bitmap_fini(&bm);
		if (round == 0) {
			HM_CHECK_EQ(waitpid(pid, &st, 0), pid);
			HM_CHECK(WIFSIGNALED(st));
		}
	}
	hm_guest_free(g);
	HM_CHECK(hm_guest_process_new(pid, b, 3, -1, NULL, NULL) == NULL);
	HM_CHECK_EQ(errno, ESRCH);
	/* the uffd is the guest's even when the constructor fails */
	{
		int fd = dup(0);

		HM_CHECK(hm_guest_process_new(pid, b, 3, fd, NULL, NULL) ==
			 NULL);
		HM_CHECK(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
	}
	close(mfd);
	free(buf);
}

int main(void)
{
	ps = (uint64_t)sysconf(_SC_PAGESIZE);
	test_local_invalid();
	test_local();
	test_local_tracked();
	test_process();
	printf("guest: ok\n");
	return 0;
}

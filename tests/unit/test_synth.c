/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The synthetic guest: steady state (in-use count, valid in-use pages,
 * non-zero garbage in free pages), pause stops its writes, its uffd
 * serves a tracker (and a second one), FREE hints cover exactly the free
 * pages, ISOLATED hints are held until acked and released by ACK, STOP or
 * the next epoch, DELAY_HINTS reuses hinted pages and repeats the hints
 * late, and the lying modes lie as documented. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hm_test.h"
#include "migrate/guests/guest.h"
#include "fixture/synth.h"

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


static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t shv(const struct hm_synth *s, const uint64_t *field)
{
	(void)s;
	return __atomic_load_n(field, __ATOMIC_RELAXED);
}

static void start(struct hm_synth_params *p, struct hm_synth *s)
{
	double t0 = now_ms();
	int r = hm_synth_start(p, s, &tlog);

	if (r < 0)
		hm_test_fail("hm_synth_start: %s (%s)", strerror(-r),
			     last_log);
	HM_CHECK_EQ(shv(s, &s->shared->ready), 1);
	HM_CHECK_EQ(s->block.len, p->ram_bytes);
	HM_CHECK_EQ(s->npages, p->ram_bytes / ps);
	if (getenv("HM_TEST_VERBOSE"))
		fprintf(stderr, "started %llu MiB in %.1f ms\n",
			(unsigned long long)(p->ram_bytes >> 20),
			now_ms() - t0);
}

static struct hm_guest *guest_of(struct hm_synth *s)
{
	struct hm_guest *g = hm_guest_process_new(s->pid, &s->block, 1,
						  s->uffd, NULL, &tlog);

	s->uffd = -1; /* the guest's now */
	if (!g)
		hm_test_fail("hm_guest_process_new: %s (%s)", strerror(errno),
			     last_log);
	return g;
}

/* Next message within timeout_ms: 0, or the error. */
static int recv_to(struct hm_hc *hc, struct hm_hc_msg *m, int timeout_ms)
{
	double end = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pf = { .fd = hc->fd, .events = POLLIN };
		int r = hm_hc_recv(hc, m, 1);
		double left = end - now_ms();

		if (r != -EAGAIN)
			return r;
		if (left <= 0)
			return -ETIMEDOUT;
		poll(&pf, 1, (int)left + 1);
	}
}

static void open_channel(struct hm_synth *s, struct hm_hc *hc,
			 struct hm_hc_msg *hello)
{
	HM_CHECK_OK(hm_hc_init(hc, s->hint_fd, NULL));
	s->hint_fd = -1;
	HM_CHECK_OK(recv_to(hc, hello, 5000));
	HM_CHECK_EQ(hello->type, HM_HC_HELLO);
	HM_CHECK_EQ(hello->u.hello.version, HM_HC_VERSION);
	HM_CHECK_EQ(hello->u.hello.page_size, ps);
}

static void request(struct hm_hc *hc, uint64_t epoch, uint32_t max)
{
	struct hm_hc_msg m = { .type = HM_HC_REQUEST, .epoch = epoch };

	m.u.request.max_ranges = max;
	HM_CHECK_OK(hm_hc_send(hc, &m));
}

static void send_simple(struct hm_hc *hc, uint16_t type, uint64_t epoch)
{
	struct hm_hc_msg m = { .type = type, .epoch = epoch };

	HM_CHECK_OK(hm_hc_send(hc, &m));
}

/* What came back for one request. */
struct answer {
	struct hm_bitmap pages;		/* union of the epoch's in-RAM ranges */
	struct hm_gpa_range *r;		/* the epoch's ranges, in order */
	size_t n, cap;
	size_t other_epoch;		/* ranges of other epochs */
	uint64_t first_epoch;		/* epoch of the first HINTS */
	size_t bad;			/* out of RAM or unaligned */
	uint32_t kind;
};

static void answer_init(struct answer *a, const struct hm_synth *s)
{
	memset(a, 0, sizeof(*a));
	HM_CHECK_OK(hm_bitmap_init(&a->pages, s->npages));
	a->first_epoch = UINT64_MAX;
}

static void answer_fini(struct answer *a)
{
	hm_bitmap_fini(&a->pages);
	free(a->r);
}

/* Collect HINTS until DONE(epoch). */
static void collect(struct hm_hc *hc, const struct hm_synth *s,
		    uint64_t epoch, struct answer *a)
{
	uint64_t ram = s->npages * ps;

	for (;;) {
		struct hm_hc_msg m;
		int r = recv_to(hc, &m, 5000);

		if (r < 0)
			hm_test_fail("waiting for hints of epoch %llu: %s",
				     (unsigned long long)epoch, strerror(-r));
		if (m.type == HM_HC_DONE && m.epoch == epoch)
			return;
		HM_CHECK_EQ(m.type, HM_HC_HINTS);
		if (a->first_epoch == UINT64_MAX)
			a->first_epoch = m.epoch;
		if (m.epoch != epoch) {
			a->other_epoch += m.u.hints.count;
			continue;
		}
		a->kind = m.u.hints.kind;
		for (uint32_t i = 0; i < m.u.hints.count; i++) {
			const struct hm_gpa_range *g = &m.u.hints.ranges[i];

			if (g->gpa % ps || g->len % ps || g->len == 0 ||
			    g->gpa > ram || g->len > ram - g->gpa) {
				a->bad++;
				continue;
			}
			if (a->n == a->cap) {
				a->cap = a->cap ? 2 * a->cap : 1024;
				a->r = realloc(a->r, a->cap * sizeof(*a->r));
				HM_CHECK(a->r != NULL);
			}
			a->r[a->n++] = *g;
			hm_bitmap_set_range(&a->pages, g->gpa / ps,
					    g->len / ps);
		}
	}
}

/* every page in a (the union) satisfies in-use == want */
static size_t count_inuse_in(const struct hm_bitmap *inuse,
			     const struct hm_bitmap *pages)
{
	size_t n = 0;

	for (size_t i = 0; i < pages->nbits; i++)
		n += hm_bitmap_test(pages, i) && hm_bitmap_test(inuse, i);
	return n;
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return 0;
	}
	return 1;
}

/* Steady state, page content, pause, tracking through the process guest. */
static void test_steady(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_guest *g;
	struct hm_bitmap inuse, busy;
	unsigned char *ram;
	uint64_t w0, w1, target, valid = 0, garbage = 0;
	double t0;

	hm_synth_params_default(&p);
	p.ram_bytes = 64u << 20;
	p.used_frac = 0.25;
	p.dirty_rate = 20000;
	p.writers = 2;
	start(&p, &s);
	target = (uint64_t)((double)s.npages * 0.25 + 0.5);
	/* no churn: the count is exact */
	HM_CHECK_EQ(hm_synth_inuse_count(&s), target);
	g = guest_of(&s);

	/* writes happen at about the rate asked */
	w0 = shv(&s, &s.shared->writes);
	t0 = now_ms();
	hm_test_sleep_ms(500);
	w1 = shv(&s, &s.shared->writes);
	{
		double rate = (double)(w1 - w0) / ((now_ms() - t0) / 1e3);

		printf("synth: %.0f writes/s (asked 20000)\n", rate);
		HM_CHECK(rate > 12000 && rate < 28000);
	}

	/* paused: no write at all */
	HM_CHECK_OK(g->ops->pause(g));
	w0 = shv(&s, &s.shared->writes);
	hm_test_sleep_ms(150);
	HM_CHECK_EQ(shv(&s, &s.shared->writes), w0);

	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));
	HM_CHECK_OK(hm_bitmap_init(&busy, s.npages));
	HM_CHECK_OK(hm_synth_inuse(&s, &inuse));
	HM_CHECK_OK(hm_synth_busy(&s, &busy));
	HM_CHECK_EQ(hm_bitmap_count(&inuse), target);
	ram = malloc(p.ram_bytes);
	HM_CHECK(ram != NULL);
	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], 0, ram, p.ram_bytes));
	for (uint64_t i = 0; i < s.npages; i++) {
		unsigned char *pg = ram + i * ps;

		if (hm_bitmap_test(&inuse, i)) {
			if (hm_bitmap_test(&busy, i))
				continue; /* a writer stopped mid-page */
			if (!hm_synth_page_valid(pg, ps, i))
				hm_test_fail("in-use page %llu is not valid",
					     (unsigned long long)i);
			valid++;
		} else {
			/* free: garbage, never zero */
			if (all_zero(pg, ps))
				hm_test_fail("free page %llu is all zero",
					     (unsigned long long)i);
			garbage++;
		}
	}
	HM_CHECK(valid + hm_bitmap_count(&busy) >= target);
	HM_CHECK_EQ(garbage, s.npages - target);
	/* the checker catches damage */
	{
		uint64_t i = hm_bitmap_find_next_set(&inuse, 0);
		unsigned char *pg = ram + i * ps;

		HM_CHECK(hm_synth_page_valid(pg, ps, i));
		HM_CHECK(!hm_synth_page_valid(pg, ps, i + 1));
		pg[ps / 2] ^= 1;
		HM_CHECK(!hm_synth_page_valid(pg, ps, i));
		pg[ps / 2] ^= 1;
		pg[8] ^= 1; /* the version */
		HM_CHECK(!hm_synth_page_valid(pg, ps, i));
		memset(pg, 0, ps);
		HM_CHECK(!hm_synth_page_valid(pg, ps, 0));
	}
	HM_CHECK_OK(g->ops->resume(g));
	hm_test_sleep_ms(50);
	HM_CHECK(shv(&s, &s.shared->writes) > w0);

	/* the child's uffd serves a tracker, and a fresh one the next */
	if (s.uffd_errno) {
		printf("synth: no userfaultfd (%s): tracking not exercised\n",
		       strerror(s.uffd_errno));
	} else {
		struct hm_caps caps;
		struct hm_tracker_opts o;

		HM_CHECK_OK(hm_caps_probe(&caps, &tlog));
		memset(&o, 0, sizeof(o));
		o.log = tlog;
		o.nbits = s.npages;
		for (int round = 0; round < 2; round++) {
			struct hm_tracker *t;

			/* async where the kernel has it, then sync: a fault
			 * the child cannot see resolved would hang it */
			o.mode = round ? HM_TRACKER_SYNC : HM_TRACKER_AUTO;
			t = g->ops->open_tracker(g, &caps, &o);
			struct hm_bitmap l;
			long n;

			if (!t)
				hm_test_fail("open_tracker: %s (%s)",
					     strerror(errno), last_log);
			HM_CHECK_OK(hm_tracker_start(t));
			hm_test_sleep_ms(100);
			HM_CHECK_OK(hm_bitmap_init(&l, s.npages));
			n = hm_tracker_harvest(t, &l);
			HM_CHECK(n > 100);
			/* writers write in-use pages only (no churn here) */
			HM_CHECK_EQ(count_inuse_in(&inuse, &l),
				    hm_bitmap_count(&l));
			hm_bitmap_fini(&l);
			printf("synth: tracked %ld pages in 100 ms (%s)\n", n,
			       hm_tracker_mode_name(hm_tracker_get_mode(t)));
			hm_tracker_close(t);
			/* a used-up uffd: ask the child for another */
			HM_CHECK(g->ops->open_tracker(g, &caps, &o) == NULL);
			HM_CHECK_OK(hm_guest_process_set_uffd(
				g, hm_synth_new_uffd(&s)));
		}
	}
	HM_CHECK_EQ(shv(&s, &s.shared->check_errors), 0);
	free(ram);
	hm_bitmap_fini(&inuse);
	hm_bitmap_fini(&busy);
	hm_guest_free(g);
	hm_synth_stop(&s);
	HM_CHECK_EQ(s.pid, 0);
	hm_synth_stop(&s); /* twice is fine */
}

/* FREE hints: exactly the free pages, the largest first under a limit. */
static void test_free_hints(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_hc hc;
	struct hm_hc_msg hello;
	struct hm_bitmap inuse;
	struct answer a;
	uint64_t smallest = UINT64_MAX;

	hm_synth_params_default(&p);
	p.ram_bytes = 64u << 20;
	p.dirty_rate = 2000;
	start(&p, &s);
	open_channel(&s, &hc, &hello);
	HM_CHECK_EQ(hello.u.hello.poison, HM_HC_POISON_NONE);
	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));

	answer_init(&a, &s);
	request(&hc, 1, 0);
	collect(&hc, &s, 1, &a);
	HM_CHECK_OK(hm_synth_inuse(&s, &inuse)); /* stable: no churn */
	HM_CHECK_EQ(a.kind, HM_HINT_FREE);
	HM_CHECK_EQ(a.bad, 0);
	HM_CHECK_EQ(a.other_epoch, 0);
	HM_CHECK_EQ(count_inuse_in(&inuse, &a.pages), 0);
	HM_CHECK_EQ(hm_bitmap_count(&a.pages) + hm_bitmap_count(&inuse),
		    s.npages);
	printf("synth: %zu free ranges for %zu free pages\n", a.n,
	       hm_bitmap_count(&a.pages));
	for (size_t i = 0; i < a.n; i++) /* coalesced */
		HM_CHECK(i == 0 || a.r[i].gpa > a.r[i - 1].gpa +
					      a.r[i - 1].len);
	for (size_t i = 0; i < a.n; i++)
		smallest = a.r[i].len < smallest ? a.r[i].len : smallest;
	answer_fini(&a);

	/* a limit: that many ranges, and no smaller one left out for it */
	answer_init(&a, &s);
	request(&hc, 2, 10);
	collect(&hc, &s, 2, &a);
	HM_CHECK_EQ(a.n, 10);
	HM_CHECK_EQ(count_inuse_in(&inuse, &a.pages), 0);
	for (size_t i = 1; i < a.n; i++)
		HM_CHECK(a.r[i].len <= a.r[i - 1].len);
	HM_CHECK(a.r[a.n - 1].len >= smallest);
	answer_fini(&a);
	HM_CHECK_EQ(shv(&s, &s.shared->hint_requests), 2);

	hm_bitmap_fini(&inuse);
	hm_hc_fini(&hc);
	hm_synth_stop(&s);
}

static void read_pages(struct hm_guest *g, const struct hm_bitmap *pages,
		       unsigned char *ram)
{
	for (size_t i = hm_bitmap_find_next_set(pages, 0); i < pages->nbits;
	     i = hm_bitmap_find_next_set(pages, i + 1))
		HM_CHECK_OK(g->ops->read(g, &g->blocks[0], i * ps,
					 ram + i * ps, ps));
}

static size_t changed_pages(struct hm_guest *g, const struct hm_bitmap *pages,
			    const unsigned char *ram, unsigned char *tmp)
{
	size_t n = 0;

	for (size_t i = hm_bitmap_find_next_set(pages, 0); i < pages->nbits;
	     i = hm_bitmap_find_next_set(pages, i + 1)) {
		HM_CHECK_OK(g->ops->read(g, &g->blocks[0], i * ps, tmp, ps));
		n += memcmp(tmp, ram + i * ps, ps) != 0;
	}
	return n;
}

static int wait_held(struct hm_synth *s, uint64_t want)
{
	for (int i = 0; i < 200; i++) {
		if (shv(s, &s->shared->isolated_held) == want)
			return 1;
		hm_test_sleep_ms(5);
	}
	return 0;
}

/* ISOLATED hints: held, untouched, until ACK / STOP / the next epoch. */
static void test_isolated(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_hc hc;
	struct hm_hc_msg hello;
	struct hm_bitmap inuse, acked, rest;
	struct hm_guest *g;
	struct answer a;
	unsigned char *ram, *tmp;
	uint64_t allocs, held;
	size_t half;

	hm_synth_params_default(&p);
	p.ram_bytes = 32u << 20;
	p.used_frac = 0.9;
	p.churn_rate = 20000; /* reuses free pages within milliseconds */
	p.dirty_rate = 5000;
	p.hint_kind = HM_HINT_ISOLATED;
	start(&p, &s);
	g = guest_of(&s);
	open_channel(&s, &hc, &hello);
	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));
	HM_CHECK_OK(hm_bitmap_init(&acked, s.npages));
	HM_CHECK_OK(hm_bitmap_init(&rest, s.npages));
	ram = malloc(p.ram_bytes);
	tmp = malloc(ps);
	HM_CHECK(ram && tmp);

	answer_init(&a, &s);
	request(&hc, 1, 0);
	collect(&hc, &s, 1, &a);
	HM_CHECK_EQ(a.kind, HM_HINT_ISOLATED);
	held = hm_bitmap_count(&a.pages);
	HM_CHECK(held > 0);
	HM_CHECK(wait_held(&s, held));
	read_pages(g, &a.pages, ram);

	/* while held: never in use, never written, whatever the churn */
	allocs = shv(&s, &s.shared->allocs);
	for (int k = 0; k < 10; k++) {
		HM_CHECK_OK(hm_synth_inuse(&s, &inuse));
		HM_CHECK_EQ(count_inuse_in(&inuse, &a.pages), 0);
		hm_test_sleep_ms(20);
	}
	HM_CHECK(shv(&s, &s.shared->allocs) > allocs + 1000);
	HM_CHECK_EQ(changed_pages(g, &a.pages, ram, tmp), 0);

	/* ACK half: those go back to the free list and get reused */
	half = a.n / 2 ? a.n / 2 : 1;
	for (size_t i = 0; i < a.n; i++)
		hm_bitmap_set_range(i < half ? &acked : &rest,
				    a.r[i].gpa / ps, a.r[i].len / ps);
	{
		struct hm_hc_msg m = { .type = HM_HC_ACK, .epoch = 1 };
		struct hm_gpa_range bogus = { p.ram_bytes, ps };

		m.u.hints.count = (uint32_t)half;
		m.u.hints.ranges = a.r;
		HM_CHECK_OK(hm_hc_send(&hc, &m));
		/* an ACK of another epoch or outside RAM releases nothing */
		m.epoch = 7;
		m.u.hints.count = (uint32_t)(a.n - half);
		m.u.hints.ranges = a.r + half;
		HM_CHECK_OK(hm_hc_send(&hc, &m));
		m.epoch = 1;
		m.u.hints.count = 1;
		m.u.hints.ranges = &bogus;
		HM_CHECK_OK(hm_hc_send(&hc, &m));
	}
	HM_CHECK(wait_held(&s, hm_bitmap_count(&rest)));
	hm_test_sleep_ms(200);
	HM_CHECK(changed_pages(g, &acked, ram, tmp) > 0);
	HM_CHECK_EQ(changed_pages(g, &rest, ram, tmp), 0);

	/* STOP releases the rest without an ack */
	send_simple(&hc, HM_HC_STOP, 1);
	HM_CHECK(wait_held(&s, 0));
	answer_fini(&a);

	/* a new epoch ends the previous one */
	answer_init(&a, &s);
	request(&hc, 2, 5);
	collect(&hc, &s, 2, &a);
	HM_CHECK(a.n <= 5 && a.n > 0);
	HM_CHECK(wait_held(&s, hm_bitmap_count(&a.pages)));
	answer_fini(&a);
	answer_init(&a, &s);
	request(&hc, 3, 3);
	collect(&hc, &s, 3, &a);
	HM_CHECK(wait_held(&s, hm_bitmap_count(&a.pages)));
	answer_fini(&a);

	/* the host goes away: nothing stays held */
	hm_hc_fini(&hc);
	HM_CHECK(wait_held(&s, 0));
	HM_CHECK_EQ(shv(&s, &s.shared->check_errors), 0);
	free(ram);
	free(tmp);
	hm_bitmap_fini(&inuse);
	hm_bitmap_fini(&acked);
	hm_bitmap_fini(&rest);
	hm_guest_free(g);
	hm_synth_stop(&s);
}

/* DELAY_HINTS: hinted pages are reused before the hints go out, and the
 * same hints come again once the epoch is over. */
static void test_delay(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_hc hc;
	struct hm_hc_msg hello;
	struct hm_bitmap inuse;
	struct answer a, b;
	size_t reused;

	hm_synth_params_default(&p);
	p.ram_bytes = 16u << 20;
	p.misbehave = HM_SYNTH_DELAY_HINTS;
	start(&p, &s);
	open_channel(&s, &hc, &hello);
	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));
	answer_init(&a, &s);
	request(&hc, 1, 0);
	collect(&hc, &s, 1, &a);
	HM_CHECK_OK(hm_synth_inuse(&s, &inuse));
	reused = count_inuse_in(&inuse, &a.pages);
	HM_CHECK(reused > 0);
	HM_CHECK_EQ(reused, shv(&s, &s.shared->reused_hinted));
	/* ... and the in-use count is kept */
	HM_CHECK_EQ(hm_bitmap_count(&inuse),
		    (uint64_t)((double)s.npages * p.used_frac + 0.5));

	answer_init(&b, &s);
	request(&hc, 2, 0);
	collect(&hc, &s, 2, &b);
	HM_CHECK_EQ(b.first_epoch, 1);	/* late, before anything else */
	HM_CHECK_EQ(b.other_epoch, a.n);
	answer_fini(&a);
	answer_fini(&b);
	hm_bitmap_fini(&inuse);
	hm_hc_fini(&hc);
	hm_synth_stop(&s);
}

/* The lying modes. */
static void test_lies(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_hc hc;
	struct hm_hc_msg hello, m;
	struct hm_bitmap lied, inuse;
	struct answer a;
	size_t total = 0;
	int r;

	hm_synth_params_default(&p);
	p.ram_bytes = 8u << 20;
	p.misbehave = HM_SYNTH_LIE_OUT_OF_RANGE | HM_SYNTH_LIE_MISALIGNED |
		      HM_SYNTH_LIE_OVERLAP | HM_SYNTH_LIE_INUSE |
		      HM_SYNTH_LIE_STALE;
	start(&p, &s);
	open_channel(&s, &hc, &hello);
	HM_CHECK_OK(hm_bitmap_init(&lied, s.npages));
	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));
	answer_init(&a, &s);
	request(&hc, 1, 0);
	collect(&hc, &s, 1, &a);
	HM_CHECK_EQ(a.bad, 4 + 4);	/* out of range, misaligned */
	HM_CHECK_OK(hm_synth_lied(&s, &lied));
	HM_CHECK_OK(hm_synth_inuse(&s, &inuse));
	HM_CHECK(hm_bitmap_count(&lied) > 0);
	HM_CHECK_EQ(hm_bitmap_count(&lied), shv(&s, &s.shared->lies));
	/* the hinted in-use pages are exactly the lied ones */
	HM_CHECK_EQ(count_inuse_in(&inuse, &a.pages), hm_bitmap_count(&lied));
	HM_CHECK_EQ(count_inuse_in(&lied, &a.pages), hm_bitmap_count(&lied));
	{
		/* overlaps: more pages in ranges than in their union */
		uint64_t sum = 0;

		for (size_t i = 0; i < a.n; i++)
			sum += a.r[i].len / ps;
		HM_CHECK(sum > hm_bitmap_count(&a.pages));
	}
	answer_fini(&a);
	answer_init(&a, &s);
	request(&hc, 2, 0);
	collect(&hc, &s, 2, &a);
	HM_CHECK_EQ(a.first_epoch, 1);	/* stale */
	HM_CHECK(a.other_epoch > 0);
	answer_fini(&a);
	hm_hc_fini(&hc);
	hm_synth_stop(&s);

	/* a flood */
	p.misbehave = HM_SYNTH_LIE_FLOOD;
	start(&p, &s);
	open_channel(&s, &hc, &hello);
	request(&hc, 1, 100);
	for (;;) {
		HM_CHECK_OK(recv_to(&hc, &m, 5000));
		if (m.type == HM_HC_DONE)
			break;
		total += m.u.hints.count;
	}
	HM_CHECK(total >= 16 * HM_HC_MAX_RANGES);
	hm_hc_fini(&hc);
	hm_synth_stop(&s);

	/* garbage: every flavour (one per epoch mod 5) is malformed */
	p.misbehave = HM_SYNTH_LIE_GARBAGE;
	for (uint64_t e = 0; e < 5; e++) {
		start(&p, &s);
		open_channel(&s, &hc, &hello);
		request(&hc, e, 0);
		r = recv_to(&hc, &m, 5000);
		if (r != -EPROTO)
			hm_test_fail("garbage flavour %llu: %d",
				     (unsigned long long)e, r);
		hm_hc_fini(&hc);
		hm_synth_stop(&s);
	}
	hm_bitmap_fini(&lied);
	hm_bitmap_fini(&inuse);
}

/* memfd RAM and poisoned free pages. */
static void test_memfd_poison(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	struct hm_hc hc;
	struct hm_hc_msg hello;
	struct hm_guest *g;
	struct hm_bitmap inuse, pop, busy;
	unsigned char *ram;

	hm_synth_params_default(&p);
	p.ram_bytes = 16u << 20;
	p.used_frac = 0.5;
	p.memfd = true;
	p.poison = true;
	p.poison_byte = 0xa5;
	p.thp = true;
	p.churn_rate = 5000;
	p.dirty_rate = 5000;
	start(&p, &s);
	HM_CHECK(s.block.memfd >= 0);
	open_channel(&s, &hc, &hello);
	HM_CHECK_EQ(hello.u.hello.poison, HM_HC_POISON_PATTERN);
	HM_CHECK_EQ(hello.u.hello.poison_byte, 0xa5);
	g = guest_of(&s);
	hm_test_sleep_ms(100); /* churn frees (and poisons) pages */
	HM_CHECK_OK(g->ops->pause(g));
	HM_CHECK_OK(hm_bitmap_init(&pop, s.npages));
	HM_CHECK_OK(g->ops->populated(g, &g->blocks[0], 0, s.npages, &pop));
	HM_CHECK_EQ(hm_bitmap_count(&pop), s.npages); /* all filled */
	HM_CHECK_OK(hm_bitmap_init(&inuse, s.npages));
	HM_CHECK_OK(hm_bitmap_init(&busy, s.npages));
	HM_CHECK(shv(&s, &s.shared->frees) > 100);
	HM_CHECK_OK(hm_synth_inuse(&s, &inuse));
	HM_CHECK_OK(hm_synth_busy(&s, &busy));
	ram = malloc(p.ram_bytes);
	HM_CHECK(ram != NULL);
	HM_CHECK_OK(g->ops->read(g, &g->blocks[0], 0, ram, p.ram_bytes));
	for (uint64_t i = 0; i < s.npages; i++) {
		const unsigned char *pg = ram + i * ps;

		if (hm_bitmap_test(&busy, i))
			continue; /* stopped mid-write */
		if (hm_bitmap_test(&inuse, i)) {
			HM_CHECK(hm_synth_page_valid(pg, ps, i));
			continue;
		}
		for (uint64_t k = 0; k < ps; k++)
			HM_CHECK(pg[k] == 0xa5);
	}
	free(ram);
	hm_bitmap_fini(&inuse);
	hm_bitmap_fini(&busy);
	hm_bitmap_fini(&pop);
	hm_guest_free(g);
	hm_hc_fini(&hc);
	hm_synth_stop(&s);
}

static void test_start_stop(void)
{
	struct hm_synth_params p;
	struct hm_synth s;
	int st;

	hm_synth_params_default(&p);
	p.ram_bytes = 4096 * 3 + 1;
	HM_CHECK_EQ(hm_synth_start(&p, &s, NULL), -EINVAL);
	HM_CHECK_EQ(s.pid, 0);
	HM_CHECK_EQ(s.hint_fd, -1);
	hm_synth_stop(&s);
	p.ram_bytes = 4u << 20;
	p.used_frac = 1.5;
	HM_CHECK_EQ(hm_synth_start(&p, &s, NULL), -EINVAL);

	/* a stopped child is killed and reaped all the same */
	p.used_frac = 0;
	p.dirty_rate = 1000;
	start(&p, &s);
	HM_CHECK_EQ(hm_synth_inuse_count(&s), 0);
	{
		pid_t pid = s.pid;

		kill(pid, SIGSTOP);
		hm_synth_stop(&s);
		HM_CHECK(waitpid(pid, &st, WNOHANG) < 0 && errno == ECHILD);
	}
	p.used_frac = 1;
	start(&p, &s);
	HM_CHECK_EQ(hm_synth_inuse_count(&s), s.npages);
	hm_synth_stop(&s);
}

int main(void)
{
	ps = (uint64_t)sysconf(_SC_PAGESIZE);
	test_start_stop();
	test_steady();
	test_free_hints();
	test_isolated();
	test_delay();
	test_lies();
	test_memfd_poison();
	printf("synth: ok\n");
	return 0;
}

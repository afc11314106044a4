/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synthetic guest (synth.h): a forked child that behaves like a
 * guest's memory.
 *
 * Fork, no exec. The parent may already run threads (an engine, a test
 * harness): after fork only the forking thread exists in the child, and a
 * lock that another parent thread held stays held forever. The child
 * therefore touches nothing of the parent's but glibc, whose malloc and
 * stdio reinitialise their locks at fork, and the kernel: it never logs
 * (the caller's log callback might take a lock), never returns into the
 * caller's code, and leaves with _exit(). After that it creates its own
 * threads, which is fine.
 *
 * Inside the child:
 *  - main thread: creates the userfaultfd first and hands its number to
 *    the parent, which takes it with pidfd_getfd; the child closes its
 *    copy once told "taken" (a sync-mode fault with nobody reading would
 *    block it forever otherwise). Then maps and fills RAM, starts the
 *    threads, says "ready", and serves the control socket (new uffds)
 *    until the parent goes away, then exits.
 *  - writers: rewrite random in-use pages at dirty_rate.
 *  - allocator: churn (free a random in-use page, allocate a free one and
 *    write it) and a periodic self-check of in-use pages.
 *  - hint thread: answers the hint channel from the free lists.
 *
 * Ownership of a page (who may write it):
 *  - state[] (FREE, INUSE, ALLOC, ISOLATED) and the free bag are under
 *    the allocator lock, taken by the allocator and the hint thread only;
 *  - a writer owns an INUSE page while it holds the page's busy bit
 *    (a bit lock in the shared mapping); the allocator takes the busy bit
 *    too before it frees a page, so a page is never rewritten and freed
 *    at once. Lock order: allocator lock, then busy bit.
 *  - the shared in-use bit is set only after the content is fully written
 *    (release) and cleared before the page goes back to the free list.
 *
 * Page content (in use): u64 page index, u64 version, u64 checksum of
 * (index, version, rest), then a pseudo-random fill from (seed, index,
 * version). Free pages keep whatever they held (non-zero garbage), or the
 * poison byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "synth.h"
#include <hintmig/wp_tracker.h>

#ifndef __NR_close_range
#define __NR_close_range 436
#endif

#define SY_MAX_WRITERS 64
#define SY_MAX_FILLERS 4
#define SY_HDR_WORDS 3
#define SY_HOT_SHARE 90		/* percent of HOTSET writes to the hot set */
#define SY_FREE_RUN_MEAN 64	/* initial layout: mean free run, pages */
#define SY_ALLOC_WINDOW 64	/* alloc picks among the last freed pages */
#define SY_CHECK_MS 20
#define SY_CHECK_PAGES 16
#define SY_LIE_PAGES 8
#define SY_DELAY_MAX_REUSE 64
#define SY_FLOOD_MSGS 16
#define SY_CTL_TIMEOUT_MS 10000
#define SY_HUGE (2u << 20)

enum sy_state { SY_FREE = 0, SY_INUSE, SY_ALLOC, SY_ISOLATED };

/* Control messages between parent and child (SOCK_SEQPACKET). */
enum sy_ctl_type {
	SY_CTL_UFFD = 1,	/* child: val = fd number there, or -errno */
	SY_CTL_TAKEN,		/* parent: done with it, close yours */
	SY_CTL_READY,		/* child: a = RAM address */
	SY_CTL_FAIL,		/* child: val = -errno, a = stage */
	SY_CTL_NEWUFFD,		/* parent: make another uffd */
};

struct sy_ctl {
	uint32_t type;
	int32_t val;
	uint64_t a;
};

static const char *const sy_stage_names[] = {
	"start", "userfaultfd", "mapping RAM", "allocating state",
	"filling RAM", "starting threads",
};

enum sy_stage {
	SY_ST_START, SY_ST_UFFD, SY_ST_MAP, SY_ST_ALLOC, SY_ST_FILL,
	SY_ST_THREADS,
};

/* ---- page content (both sides) ---- */

static inline uint64_t sy_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

#define SY_GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define SY_FNV UINT64_C(0x100000001b3)

static uint64_t sy_csum_finish(const uint64_t c[4], uint64_t idx,
			       uint64_t ver)
{
	uint64_t h = sy_mix(c[0] ^ idx) ^ sy_mix(c[1] + ver);

	return h ^ sy_mix(c[2] + SY_GOLDEN) ^ sy_mix(c[3] ^ ~idx);
}

static void sy_csum_init(uint64_t c[4], uint64_t idx, uint64_t ver)
{
	c[0] = UINT64_C(0xcbf29ce484222325) ^ idx;
	c[1] = UINT64_C(0x84222325cbf29ce4) ^ ver;
	c[2] = UINT64_C(0x1234567890abcdef);
	c[3] = UINT64_C(0xfedcba0987654321);
}

static void sy_fill_page(void *page, uint64_t ps, uint64_t seed,
			 uint64_t idx, uint64_t ver)
{
	uint64_t *w = page;
	size_t nw = ps / 8;
	uint64_t x = sy_mix(seed ^ sy_mix(idx + SY_GOLDEN) ^
			    sy_mix(ver * SY_GOLDEN + 1));
	uint64_t c[4];
	size_t i;

	sy_csum_init(c, idx, ver);
	/* four independent checksum lanes: no serial multiply chain */
	for (i = SY_HDR_WORDS; i < nw; i++) {
		uint64_t v;

		x += SY_GOLDEN;
		v = sy_mix(x);
		w[i] = v;
		c[i & 3] = (c[i & 3] ^ v) * SY_FNV;
	}
	w[0] = idx;
	w[1] = ver;
	w[2] = sy_csum_finish(c, idx, ver);
}

int hm_synth_page_valid(const void *page, uint64_t page_size,
			uint64_t page_index)
{
	const uint64_t *w = page;
	uint64_t c[4];

	if (!page || page_size < 64 || page_size % 8)
		return 0;
	if (w[0] != page_index)
		return 0;
	sy_csum_init(c, w[0], w[1]);
	for (size_t i = SY_HDR_WORDS; i < page_size / 8; i++)
		c[i & 3] = (c[i & 3] ^ w[i]) * SY_FNV;
	return sy_csum_finish(c, w[0], w[1]) == w[2];
}

/* ---- small helpers ---- */

static inline uint64_t sy_rand(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

static double sy_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sy_sleep(double sec)
{
	struct timespec ts;

	if (sec <= 0)
		return;
	ts.tv_sec = (time_t)sec;
	ts.tv_nsec = (long)((sec - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static inline bool bit_test(const uint64_t *w, uint64_t i)
{
	return (__atomic_load_n(&w[i / 64], __ATOMIC_ACQUIRE) >> (i % 64)) &
	       1;
}

static inline void bit_set(uint64_t *w, uint64_t i)
{
	__atomic_fetch_or(&w[i / 64], UINT64_C(1) << (i % 64),
			  __ATOMIC_RELEASE);
}

static inline void bit_clear(uint64_t *w, uint64_t i)
{
	__atomic_fetch_and(&w[i / 64], ~(UINT64_C(1) << (i % 64)),
			   __ATOMIC_RELEASE);
}

static inline bool busy_trylock(uint64_t *busy, uint64_t i)
{
	uint64_t m = UINT64_C(1) << (i % 64);

	return !(__atomic_fetch_or(&busy[i / 64], m, __ATOMIC_ACQUIRE) & m);
}

static inline void busy_lock(uint64_t *busy, uint64_t i)
{
	while (!busy_trylock(busy, i))
		sched_yield();
}

static inline void busy_unlock(uint64_t *busy, uint64_t i)
{
	__atomic_fetch_and(&busy[i / 64], ~(UINT64_C(1) << (i % 64)),
			   __ATOMIC_RELEASE);
}

#define STAT_ADD(ch, field, n) \
	__atomic_fetch_add(&(ch)->sh->field, (n), __ATOMIC_RELAXED)

static size_t sy_shared_hdr(void)
{
	return (sizeof(struct hm_synth_shared) + 63) / 64 * 64;
}

/* ---- the child ---- */

struct sy_frame {
	struct sy_frame *next;
	uint64_t epoch;
	uint16_t type;
	size_t len, off;
	unsigned char data[];
};

struct sy_child {
	struct hm_synth_params p;
	uint64_t ps, npages, nwords;
	unsigned char *ram;
	struct hm_synth_shared *sh;
	uint64_t *inuse, *lied, *busy;
	int ctl, hint, memfd;

	pthread_mutex_t lock;	/* state, iso_epoch, bag, pos, nfree */
	uint8_t *state;
	uint32_t *iso_epoch;	/* low 32 bits of the epoch holding it */
	uint32_t *bag;		/* free pages */
	uint32_t *pos;		/* page -> index in bag */
	uint64_t nfree;
	uint64_t held;		/* ISOLATED pages */
	uint64_t gen;		/* version counter (atomic) */
	uint64_t hot_pages;
	uint64_t rng;		/* for free_one_locked: lock held */

	/* hint thread */
	struct hm_gpa_range *runs, *prev;
	size_t nruns, nprev;
	uint64_t prev_epoch;
	bool have_prev;
	struct hm_gpa_range *late;	/* DELAY_HINTS: held back snapshot */
	size_t nlate;
	uint64_t late_epoch;
	bool have_late;
	struct hm_gpa_range *extra;	/* lies, built per request */
	size_t nextra;
	struct sy_frame *q, **qtail;
	uint64_t hrng;
};

struct sy_writer {
	struct sy_child *ch;
	double rate;
	uint64_t rng;
};

static inline unsigned char *sy_page(struct sy_child *ch, uint64_t i)
{
	return ch->ram + i * ch->ps;
}

static uint64_t sy_next_version(struct sy_child *ch)
{
	return __atomic_fetch_add(&ch->gen, 1, __ATOMIC_RELAXED);
}

/* bag: free pages, O(1) insert and removal anywhere (lock held) */
static void bag_push(struct sy_child *ch, uint32_t i)
{
	ch->pos[i] = (uint32_t)ch->nfree;
	ch->bag[ch->nfree++] = i;
}

static void bag_remove(struct sy_child *ch, uint32_t i)
{
	uint32_t at = ch->pos[i];
	uint32_t last = ch->bag[--ch->nfree];

	ch->bag[at] = last;
	ch->pos[last] = at;
}

/* Pacing: ops due now, at most max; sleeps a little when none is. */
struct sy_pace {
	double rate, t0;
	uint64_t done;
};

static uint64_t pace_due(struct sy_pace *pc, uint64_t max)
{
	double now, backlog, cap;

	if (pc->rate >= 1e9)
		return max;
	now = sy_now();
	backlog = (now - pc->t0) * pc->rate - (double)pc->done;
	cap = pc->rate * 0.05 + 1; /* never catch up more than 50 ms */
	if (backlog > cap) {
		/* stopped (SIGSTOP) or starved: forget the backlog */
		pc->t0 = now - ((double)pc->done + cap) / pc->rate;
		backlog = cap;
	}
	if (backlog < 1) {
		double wait = (1 - backlog) / pc->rate;

		sy_sleep(wait > 0.01 ? 0.01 : wait);
		return 0;
	}
	return (uint64_t)backlog < max ? (uint64_t)backlog : max;
}

/* A random in-use page in [lo, hi), or UINT64_MAX. Rejection sampling
 * is uniform over in-use pages; when they are sparse, fall back to a
 * random set bit of a random non-empty word (biased towards pages in
 * sparse words, but it finds one). */
static uint64_t pick_inuse(struct sy_child *ch, uint64_t *rng, uint64_t lo,
			   uint64_t hi)
{
	for (int t = 0; t < 32; t++) {
		uint64_t r = lo + sy_rand(rng) % (hi - lo);

		if (bit_test(ch->inuse, r))
			return r;
	}
	for (int t = 0; t < 64; t++) {
		uint64_t r = lo + sy_rand(rng) % (hi - lo);
		uint64_t w = __atomic_load_n(&ch->inuse[r / 64],
					     __ATOMIC_ACQUIRE);
		unsigned k;

		if (!w)
			continue;
		/* the k-th set bit, k uniform */
		k = (unsigned)(sy_rand(rng) % (uint64_t)__builtin_popcountll(w));
		while (k--)
			w &= w - 1;
		return r / 64 * 64 + (unsigned)__builtin_ctzll(w);
	}
	return UINT64_MAX;
}

static void *writer_main(void *arg)
{
	struct sy_writer *wr = arg;
	struct sy_child *ch = wr->ch;
	struct sy_pace pc = { .rate = wr->rate, .t0 = sy_now() };

	if (wr->rate <= 0) {
		for (;;)
			sy_sleep(1);
	}
	for (;;) {
		uint64_t n = pace_due(&pc, 256), wrote = 0;

		for (uint64_t k = 0; k < n; k++) {
			for (int t = 0; t < 8; t++) {
				uint64_t hi = ch->npages, i;

				if (ch->p.pattern == HM_SYNTH_HOTSET &&
				    sy_rand(&wr->rng) % 100 < SY_HOT_SHARE)
					hi = ch->hot_pages;
				i = pick_inuse(ch, &wr->rng, 0, hi);
				if (i == UINT64_MAX && hi != ch->npages)
					i = pick_inuse(ch, &wr->rng, 0,
						       ch->npages);
				if (i == UINT64_MAX ||
				    !busy_trylock(ch->busy, i))
					continue;
				if (bit_test(ch->inuse, i)) {
					sy_fill_page(sy_page(ch, i), ch->ps,
						     ch->p.seed, i,
						     sy_next_version(ch));
					wrote++;
				}
				busy_unlock(ch->busy, i);
				break;
			}
		}
		pc.done += n;
		if (wrote)
			STAT_ADD(ch, writes, wrote);
	}
	return NULL;
}

static bool in_list(const uint64_t *l, size_t n, uint64_t i)
{
	for (size_t k = 0; k < n; k++) {
		if (l[k] == i)
			return true;
	}
	return false;
}

/* Free one random in-use page, not one of keep[nkeep] (allocator lock
 * held). */
static bool free_one_locked(struct sy_child *ch, const uint64_t *keep,
			    size_t nkeep)
{
	uint64_t i = UINT64_MAX;

	for (int t = 0; t < 256; t++) {
		uint64_t r = sy_rand(&ch->rng) % ch->npages;

		if (ch->state[r] == SY_INUSE && !in_list(keep, nkeep, r)) {
			i = r;
			break;
		}
	}
	if (i == UINT64_MAX)
		return false;
	busy_lock(ch->busy, i);	/* wait out a writer */
	/* poisoned before it shows as free: a free page that is not busy
	 * holds the pattern whenever the parent looks */
	if (ch->p.poison)
		memset(sy_page(ch, i), ch->p.poison_byte, ch->ps);
	bit_clear(ch->inuse, i);
	busy_unlock(ch->busy, i);
	ch->state[i] = SY_FREE;
	bag_push(ch, (uint32_t)i);
	return true;
}

/* Write fresh content into page i (state ALLOC, owned by the caller),
 * then publish it as in use. */
static void publish_alloc(struct sy_child *ch, uint64_t i)
{
	/* busy while half written: the parent skips it when checking */
	busy_lock(ch->busy, i);
	sy_fill_page(sy_page(ch, i), ch->ps, ch->p.seed, i,
		     sy_next_version(ch));
	pthread_mutex_lock(&ch->lock);
	ch->state[i] = SY_INUSE;
	bit_set(ch->inuse, i); /* after the content: release order */
	busy_unlock(ch->busy, i);
	pthread_mutex_unlock(&ch->lock);
}

static void churn_one(struct sy_child *ch)
{
	uint64_t i, k;

	pthread_mutex_lock(&ch->lock);
	if (free_one_locked(ch, NULL, 0))
		STAT_ADD(ch, frees, 1);
	if (ch->nfree == 0) {
		pthread_mutex_unlock(&ch->lock);
		STAT_ADD(ch, alloc_failures, 1);
		return;
	}
	/* like a per-cpu free list: mostly reuse what was freed lately */
	k = ch->nfree < SY_ALLOC_WINDOW ? ch->nfree : SY_ALLOC_WINDOW;
	i = ch->bag[ch->nfree - 1 - sy_rand(&ch->rng) % k];
	bag_remove(ch, (uint32_t)i);
	ch->state[i] = SY_ALLOC;
	pthread_mutex_unlock(&ch->lock);
	publish_alloc(ch, i);
	STAT_ADD(ch, allocs, 1);
}

static void self_check(struct sy_child *ch, uint64_t *rng)
{
	for (int k = 0; k < SY_CHECK_PAGES; k++) {
		uint64_t i = pick_inuse(ch, rng, 0, ch->npages);

		if (i == UINT64_MAX || !busy_trylock(ch->busy, i))
			continue;
		if (bit_test(ch->inuse, i) &&
		    !hm_synth_page_valid(sy_page(ch, i), ch->ps, i))
			STAT_ADD(ch, check_errors, 1);
		busy_unlock(ch->busy, i);
	}
}

static void *alloc_main(void *arg)
{
	struct sy_child *ch = arg;
	struct sy_pace pc = { .rate = (double)ch->p.churn_rate,
			      .t0 = sy_now() };
	double next_check = sy_now();
	uint64_t crng = sy_mix(ch->p.seed + 3) | 1; /* ch->rng: lock held */

	for (;;) {
		double now = sy_now();
		uint64_t n;

		if (now >= next_check) {
			self_check(ch, &crng);
			next_check = now + SY_CHECK_MS / 1000.0;
		}
		if (ch->p.churn_rate == 0) {
			sy_sleep(SY_CHECK_MS / 1000.0);
			continue;
		}
		n = pace_due(&pc, 64);
		for (uint64_t k = 0; k < n; k++)
			churn_one(ch);
		pc.done += n;
	}
	return NULL;
}

/* ---- the hint thread ---- */

static int q_append(struct sy_child *ch, const void *data, size_t len,
		    uint16_t type, uint64_t epoch)
{
	struct sy_frame *f = malloc(sizeof(*f) + len);

	if (!f)
		return -ENOMEM;
	memcpy(f->data, data, len);
	f->next = NULL;
	f->len = len;
	f->off = 0;
	f->type = type;
	f->epoch = epoch;
	*ch->qtail = f;
	ch->qtail = &f->next;
	return 0;
}

static int q_msg(struct sy_child *ch, const struct hm_hc_msg *m)
{
	size_t cap = HM_HC_HDR_SIZE + 16 +
		     (size_t)HM_HC_MAX_RANGES * sizeof(struct hm_gpa_range);
	unsigned char *buf = malloc(cap);
	long len;
	int ret;

	if (!buf)
		return -ENOMEM;
	len = hm_hc_encode(m, buf, cap);
	ret = len < 0 ? (int)len : q_append(ch, buf, (size_t)len, m->type,
					     m->epoch);
	free(buf);
	return ret;
}

static int q_ranges(struct sy_child *ch, uint64_t epoch, uint32_t kind,
		    const struct hm_gpa_range *r, size_t n)
{
	int ret = 0;

	while (ret == 0 && n > 0) {
		struct hm_hc_msg m = { .type = HM_HC_HINTS, .epoch = epoch };
		uint32_t k = n > HM_HC_MAX_RANGES ? HM_HC_MAX_RANGES :
						    (uint32_t)n;

		m.u.hints.kind = kind;
		m.u.hints.count = k;
		m.u.hints.ranges = r;
		ret = q_msg(ch, &m);
		STAT_ADD(ch, hint_ranges_sent, k);
		r += k;
		n -= k;
	}
	return ret;
}

static int q_simple(struct sy_child *ch, uint16_t type, uint64_t epoch)
{
	struct hm_hc_msg m = { .type = type, .epoch = epoch };

	return q_msg(ch, &m);
}

/* STOP(e): hints of e that have not started going out are dropped. */
static void q_drop_epoch(struct sy_child *ch, uint64_t epoch)
{
	struct sy_frame **pp = &ch->q;

	while (*pp) {
		struct sy_frame *f = *pp;

		if (f->type == HM_HC_HINTS && f->epoch == epoch &&
		    f->off == 0) {
			*pp = f->next;
			free(f);
		} else {
			pp = &f->next;
		}
	}
	ch->qtail = &ch->q;
	while (*ch->qtail)
		ch->qtail = &(*ch->qtail)->next;
}

static void q_free(struct sy_child *ch)
{
	while (ch->q) {
		struct sy_frame *f = ch->q;

		ch->q = f->next;
		free(f);
	}
	ch->qtail = &ch->q;
}

/* Write what the socket takes now. 0, or -errno (the channel is dead). */
static int q_flush(struct sy_child *ch, int fd)
{
	while (ch->q) {
		struct sy_frame *f = ch->q;
		ssize_t n = send(fd, f->data + f->off, f->len - f->off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -errno;
		f->off += (size_t)n;
		if (f->off == f->len) {
			ch->q = f->next;
			if (!ch->q)
				ch->qtail = &ch->q;
			free(f);
		}
	}
	return 0;
}

/* Frames a broken guest might send, one flavour per request. */
static int q_garbage(struct sy_child *ch, uint64_t epoch)
{
	unsigned char b[HM_HC_HDR_SIZE + 24];
	struct hm_gpa_range r = { 0, ch->ps };
	struct hm_hc_msg m = { .type = HM_HC_HINTS, .epoch = epoch };
	long len;

	m.u.hints.kind = HM_HINT_FREE;
	m.u.hints.count = 1;
	m.u.hints.ranges = &r;
	len = hm_hc_encode(&m, b, sizeof(b));
	if (len < 0)
		return (int)len;
	switch (epoch % 5) {
	case 0: /* noise */
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (unsigned char)sy_rand(&ch->hrng);
		b[0] ^= 0x5a; /* never the magic */
		break;
	case 1: /* unknown type */
		b[4] = 0x77;
		break;
	case 2: /* count does not match the payload */
		b[HM_HC_HDR_SIZE + 4] = 2;
		break;
	case 3: /* unknown kind */
		b[HM_HC_HDR_SIZE] = 9;
		break;
	default: /* payload length past the limit */
		b[10] = 0x7f;
		break;
	}
	return q_append(ch, b, (size_t)len, 0, epoch);
}

/* Free runs of the free list, in page order (lock held). */
static void collect_runs(struct sy_child *ch)
{
	uint64_t i = 0;

	ch->nruns = 0;
	while (i < ch->npages) {
		uint64_t j;

		if (ch->state[i] != SY_FREE) {
			i++;
			continue;
		}
		for (j = i + 1; j < ch->npages && ch->state[j] == SY_FREE; j++)
			;
		ch->runs[ch->nruns].gpa = i * ch->ps;
		ch->runs[ch->nruns].len = (j - i) * ch->ps;
		ch->nruns++;
		i = j;
	}
}

static int cmp_len_desc(const void *a, const void *b)
{
	const struct hm_gpa_range *x = a, *y = b;

	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

/* Release ISOLATED pages (lock held): those of epoch e, or with others
 * true those of every other epoch. */
static void release_isolated(struct sy_child *ch, uint64_t e, bool others)
{
	uint32_t e32 = (uint32_t)e;

	if (!ch->held)
		return;
	for (uint64_t i = 0; i < ch->npages; i++) {
		if (ch->state[i] != SY_ISOLATED ||
		    (ch->iso_epoch[i] == e32) == others)
			continue;
		ch->state[i] = SY_FREE;
		bag_push(ch, (uint32_t)i);
		ch->held--;
	}
	__atomic_store_n(&ch->sh->isolated_held, ch->held, __ATOMIC_RELAXED);
}

static void isolate_runs(struct sy_child *ch, uint64_t e)
{
	for (size_t r = 0; r < ch->nruns; r++) {
		uint64_t a = ch->runs[r].gpa / ch->ps;
		uint64_t n = ch->runs[r].len / ch->ps;

		for (uint64_t i = a; i < a + n; i++) {
			bag_remove(ch, (uint32_t)i);
			ch->state[i] = SY_ISOLATED;
			ch->iso_epoch[i] = (uint32_t)e;
			ch->held++;
		}
	}
	__atomic_store_n(&ch->sh->isolated_held, ch->held, __ATOMIC_RELAXED);
}

static void add_extra(struct sy_child *ch, uint64_t gpa, uint64_t len)
{
	if (ch->nextra < 64) {
		ch->extra[ch->nextra].gpa = gpa;
		ch->extra[ch->nextra].len = len;
		ch->nextra++;
	}
}

/* The lies of this request (misbehave modes), into ch->extra. */
static void build_lies(struct sy_child *ch)
{
	uint64_t ps = ch->ps, ram = ch->npages * ch->ps;
	unsigned mb = ch->p.misbehave;
	uint64_t g = ch->nruns ? ch->runs[0].gpa : 0;

	ch->nextra = 0;
	if (mb & HM_SYNTH_LIE_OUT_OF_RANGE) {
		add_extra(ch, ram, ps);			/* just past the end */
		add_extra(ch, ram - ps, 2 * ps);	/* straddles the end */
		add_extra(ch, UINT64_MAX / ps * ps, ps); /* gpa + len wraps */
		add_extra(ch, 0, UINT64_MAX / ps * ps);	/* all of memory */
	}
	if (mb & HM_SYNTH_LIE_MISALIGNED) {
		add_extra(ch, g + 1, ps);
		add_extra(ch, g, ps - 1);
		add_extra(ch, g + ps / 2, ps / 2);
		add_extra(ch, g, 0);
	}
	if (mb & HM_SYNTH_LIE_OVERLAP) {
		/* overlapping, but every page really free */
		for (size_t r = 0; r < ch->nruns && r < 8; r++) {
			add_extra(ch, ch->runs[r].gpa, ch->runs[r].len);
			if (ch->runs[r].len >= 2 * ps)
				add_extra(ch, ch->runs[r].gpa + ps,
					  ch->runs[r].len - ps);
		}
	}
	if (mb & HM_SYNTH_LIE_INUSE) {
		for (int k = 0; k < SY_LIE_PAGES; k++) {
			uint64_t i = pick_inuse(ch, &ch->hrng, 0, ch->npages);

			if (i == UINT64_MAX)
				continue;
			/* recorded before it is said */
			if (!(__atomic_fetch_or(&ch->lied[i / 64],
						UINT64_C(1) << (i % 64),
						__ATOMIC_RELEASE) &
			      (UINT64_C(1) << (i % 64))))
				STAT_ADD(ch, lies, 1);
			add_extra(ch, i * ps, ps);
		}
	}
}

/* DELAY_HINTS: reuse and write some of the pages just collected, so that
 * the hints about them are out of date when they arrive. */
static void delay_reuse(struct sy_child *ch)
{
	uint64_t reused[SY_DELAY_MAX_REUSE];
	uint64_t total = 0, k;
	size_t n = 0;

	for (size_t r = 0; r < ch->nruns; r++)
		total += ch->runs[r].len / ch->ps;
	k = total / 16;
	if (k > SY_DELAY_MAX_REUSE)
		k = SY_DELAY_MAX_REUSE;
	if (k == 0 && total)
		k = 1;
	for (uint64_t t = 0; t < k; t++) {
		const struct hm_gpa_range *r =
			&ch->runs[sy_rand(&ch->hrng) % ch->nruns];
		uint64_t i = r->gpa / ch->ps +
			     sy_rand(&ch->hrng) % (r->len / ch->ps);

		pthread_mutex_lock(&ch->lock);
		if (ch->state[i] != SY_FREE) {
			pthread_mutex_unlock(&ch->lock);
			continue;
		}
		bag_remove(ch, (uint32_t)i);
		ch->state[i] = SY_ALLOC;
		pthread_mutex_unlock(&ch->lock);
		publish_alloc(ch, i);
		reused[n++] = i;
		STAT_ADD(ch, reused_hinted, 1);
	}
	/* keep the in-use count, but not by freeing what was just reused */
	pthread_mutex_lock(&ch->lock);
	for (size_t t = 0; t < n; t++)
		free_one_locked(ch, reused, n);
	pthread_mutex_unlock(&ch->lock);
}

/* FLOOD: far more single-page ranges than any session allows. */
static int q_flood(struct sy_child *ch, uint64_t epoch)
{
	struct hm_gpa_range *f;
	size_t n = HM_HC_MAX_RANGES, r = 0;
	uint64_t off = 0;
	int ret = 0;

	if (!ch->nruns)
		return 0;
	f = malloc(n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (off >= ch->runs[r].len) {
			off = 0;
			r = (r + 1) % ch->nruns;
		}
		f[i].gpa = ch->runs[r].gpa + off;
		f[i].len = ch->ps;
		off += ch->ps;
	}
	for (int m = 0; ret == 0 && m < SY_FLOOD_MSGS; m++)
		ret = q_ranges(ch, epoch, HM_HINT_FREE, f, n);
	free(f);
	return ret;
}

/* HM_SYNTH_LIE_AMPLIFY: the epoch's longest true free run, repeated to
 * fill SY_FLOOD_MSGS full messages: every range true, each of its pages
 * named tens of thousands of times. */
static int q_amplify(struct sy_child *ch, uint64_t epoch)
{
	struct hm_gpa_range *f;
	size_t n = HM_HC_MAX_RANGES, big = 0;
	int ret = 0;

	if (!ch->nruns)
		return 0;
	for (size_t i = 1; i < ch->nruns; i++)
		if (ch->runs[i].len > ch->runs[big].len)
			big = i;
	f = malloc(n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		f[i] = ch->runs[big];
	for (int m = 0; ret == 0 && m < SY_FLOOD_MSGS; m++)
		ret = q_ranges(ch, epoch, HM_HINT_FREE, f, n);
	free(f);
	return ret;
}

static void copy_runs(struct hm_gpa_range *dst, size_t *ndst,
		      const struct hm_gpa_range *src, size_t n)
{
	memcpy(dst, src, n * sizeof(*src));
	*ndst = n;
}

static int handle_request(struct sy_child *ch, uint64_t e, uint32_t max)
{
	unsigned mb = ch->p.misbehave;
	bool delay = mb & HM_SYNTH_DELAY_HINTS;
	uint32_t kind = delay ? HM_HINT_FREE : ch->p.hint_kind;
	int ret = 0;

	STAT_ADD(ch, hint_requests, 1);
	if (delay && ch->have_late && ch->late_epoch != e) {
		/* the hints of the last epoch, now that it is over (R2) */
		ret = q_ranges(ch, ch->late_epoch, HM_HINT_FREE, ch->late,
			       ch->nlate);
		ch->have_late = false;
	}
	if (ret == 0 && (mb & HM_SYNTH_LIE_STALE) && ch->have_prev)
		ret = q_ranges(ch, ch->prev_epoch, HM_HINT_FREE, ch->prev,
			       ch->nprev);
	if (ret == 0 && (mb & HM_SYNTH_LIE_GARBAGE))
		ret = q_garbage(ch, e);
	if (ret < 0)
		return ret;

	pthread_mutex_lock(&ch->lock);
	/* a new epoch ends every older one: release what they held */
	release_isolated(ch, e, true);
	collect_runs(ch);
	if (max && ch->nruns > max) {
		/* the largest runs cover the most */
		qsort(ch->runs, ch->nruns, sizeof(*ch->runs), cmp_len_desc);
		ch->nruns = max;
	}
	if (kind == HM_HINT_ISOLATED)
		isolate_runs(ch, e);
	pthread_mutex_unlock(&ch->lock);

	build_lies(ch);
	if (delay && ch->nruns)
		delay_reuse(ch);
	ret = q_ranges(ch, e, kind, ch->extra, ch->nextra);
	if (ret == 0)
		ret = q_ranges(ch, e, kind, ch->runs, ch->nruns);
	if (ret == 0 && (mb & HM_SYNTH_LIE_FLOOD))
		ret = q_flood(ch, e);
	if (ret == 0 && (mb & HM_SYNTH_LIE_AMPLIFY))
		ret = q_amplify(ch, e);
	if (ret == 0)
		ret = q_simple(ch, HM_HC_DONE, e);
	if (mb & HM_SYNTH_LIE_STALE) {
		copy_runs(ch->prev, &ch->nprev, ch->runs, ch->nruns);
		ch->prev_epoch = e;
		ch->have_prev = true;
	}
	if (delay) {
		copy_runs(ch->late, &ch->nlate, ch->runs, ch->nruns);
		ch->late_epoch = e;
		ch->have_late = true;
	}
	return ret;
}

static void handle_stop(struct sy_child *ch, uint64_t e)
{
	q_drop_epoch(ch, e);
	pthread_mutex_lock(&ch->lock);
	release_isolated(ch, e, false);
	pthread_mutex_unlock(&ch->lock);
}

static void handle_ack(struct sy_child *ch, const struct hm_hc_msg *m)
{
	uint32_t e32 = (uint32_t)m->epoch;
	uint64_t ram = ch->npages * ch->ps;

	pthread_mutex_lock(&ch->lock);
	for (uint32_t k = 0; k < m->u.hints.count; k++) {
		const struct hm_gpa_range *r = &m->u.hints.ranges[k];

		/* the host is not trusted either */
		if (r->gpa % ch->ps || r->len % ch->ps || r->gpa > ram ||
		    r->len > ram - r->gpa)
			continue;
		for (uint64_t i = r->gpa / ch->ps;
		     i < (r->gpa + r->len) / ch->ps; i++) {
			if (ch->state[i] != SY_ISOLATED ||
			    ch->iso_epoch[i] != e32)
				continue;
			ch->state[i] = SY_FREE;
			bag_push(ch, (uint32_t)i);
			ch->held--;
		}
	}
	__atomic_store_n(&ch->sh->isolated_held, ch->held, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&ch->lock);
	STAT_ADD(ch, acks, 1);
}

static void *hint_main(void *arg)
{
	struct sy_child *ch = arg;
	struct hm_hc hc;
	struct hm_hc_msg hello = { .type = HM_HC_HELLO };

	if (hm_hc_init(&hc, ch->hint, NULL) < 0)
		return NULL;
	hello.u.hello.version = HM_HC_VERSION;
	hello.u.hello.page_size = (uint32_t)ch->ps;
	hello.u.hello.poison = ch->p.poison ? HM_HC_POISON_PATTERN :
					      HM_HC_POISON_NONE;
	hello.u.hello.poison_byte = ch->p.poison ? ch->p.poison_byte : 0;
	if (ch->p.misbehave & HM_SYNTH_SAY_NOHINTS) {
		hello.u.hello.flags = HM_HC_HELLO_NOHINTS;
		hello.u.hello.reason = HM_HC_NOHINT_NO_MODULE;
	}
	if (q_msg(ch, &hello) < 0)
		goto out;
	for (;;) {
		struct pollfd pf = { .fd = hc.fd, .events = POLLIN };

		if (ch->q)
			pf.events |= POLLOUT;
		if (poll(&pf, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			for (;;) {
				struct hm_hc_msg m;
				int r = hm_hc_recv(&hc, &m, 1);

				if (r == -EAGAIN)
					break;
				if (r < 0)
					goto out;
				if (m.type == HM_HC_REQUEST) {
					if (handle_request(ch, m.epoch,
						m.u.request.max_ranges) < 0)
						goto out;
				} else if (m.type == HM_HC_STOP) {
					handle_stop(ch, m.epoch);
				} else if (m.type == HM_HC_ACK) {
					handle_ack(ch, &m);
				} else {
					goto out; /* BYE, or not for us */
				}
			}
		}
		if (q_flush(ch, hc.fd) < 0)
			goto out;
	}
out:
	/* the host is gone: nothing stays isolated */
	pthread_mutex_lock(&ch->lock);
	release_isolated(ch, 0, true);
	release_isolated(ch, 0, false);
	pthread_mutex_unlock(&ch->lock);
	q_free(ch);
	hm_hc_fini(&hc);
	return NULL;
}

/* ---- child setup ---- */

static void close_fds_range(unsigned lo, unsigned hi)
{
	long max;

	if (lo > hi)
		return;
	if (syscall(__NR_close_range, lo, hi, 0) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > (1 << 20))
		max = 1 << 20;
	for (long fd = lo; fd <= (long)hi && fd < max; fd++)
		close((int)fd);
}

/* Keep 0-2 and keep[] (n fds), close every other inherited fd: a copy of
 * the parent's sockets held here would keep its peers from seeing EOF. */
static void close_other_fds(int *keep, int n)
{
	unsigned lo = 3;

	for (int i = 1; i < n; i++) { /* sort, n is tiny */
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	}
	for (int i = 0; i < n; i++) {
		if (keep[i] < (int)lo)
			continue;
		close_fds_range(lo, (unsigned)keep[i] - 1);
		lo = (unsigned)keep[i] + 1;
	}
	close_fds_range(lo, ~0u);
}

static void child_reset_signals(void)
{
	static const int dfl[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP,
				   SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
				   SIGALRM, SIGCHLD };
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (size_t i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
		sigaction(dfl[i], &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
}

static void ctl_send(int ctl, uint32_t type, int32_t val, uint64_t a)
{
	struct sy_ctl m = { .type = type, .val = val, .a = a };

	if (send(ctl, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		_exit(1); /* parent gone */
}

static __attribute__((noreturn)) void child_fail(int ctl, int err,
						 enum sy_stage st)
{
	ctl_send(ctl, SY_CTL_FAIL, err, st);
	_exit(1);
}

/* Create a uffd here and hand it over: the parent takes it with
 * pidfd_getfd; we close ours when it says so. */
static void child_give_uffd(int ctl)
{
	int fd = hm_uffd_create();
	struct sy_ctl m;
	ssize_t n;

	ctl_send(ctl, SY_CTL_UFFD, fd, 0);
	if (fd < 0)
		return;
	do {
		n = recv(ctl, &m, sizeof(m), 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		_exit(0);
	close(fd);
}

static unsigned char *child_map_ram(uint64_t len, int memfd, bool thp,
				    bool hugetlb)
{
	unsigned char *r, *a;
	uint64_t head;
	void *m;

	/* reserve with 2 MiB slack, so that THP can use whole huge pages */
	r = mmap(NULL, len + SY_HUGE, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return NULL;
	a = (unsigned char *)(((uintptr_t)r + SY_HUGE - 1) &
			      ~(uintptr_t)(SY_HUGE - 1));
	head = (uint64_t)(a - r);
	if (head)
		munmap(r, head);
	if (SY_HUGE - head)
		munmap(a + len, SY_HUGE - head);
	if (memfd >= 0)
		m = mmap(a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			 memfd, 0);
	else if (hugetlb) /* reserved now: ENOMEM here, not SIGBUS later */
		m = mmap(a, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB,
			 -1, 0);
	else
		m = mmap(a, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
				 MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (!hugetlb)
		madvise(a, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

struct sy_fill_job {
	struct sy_child *ch;
	uint64_t from, to;
};

static void *fill_main(void *arg)
{
	struct sy_fill_job *j = arg;

	for (uint64_t i = j->from; i < j->to; i++)
		sy_fill_page(sy_page(j->ch, i), j->ch->ps, j->ch->p.seed, i,
			     1);
	return NULL;
}

/* Fill all of RAM with version-1 content, on a few threads. */
static int child_fill(struct sy_child *ch)
{
	struct sy_fill_job jobs[SY_MAX_FILLERS];
	pthread_t th[SY_MAX_FILLERS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nf = ncpu > 0 ? (unsigned)ncpu : 1, started = 0;
	int ret = 0;

	if (nf > SY_MAX_FILLERS)
		nf = SY_MAX_FILLERS;
	if (ch->npages < 4096)
		nf = 1;
	for (unsigned t = 0; t < nf; t++) {
		jobs[t].ch = ch;
		jobs[t].from = ch->npages * t / nf;
		jobs[t].to = ch->npages * (t + 1) / nf;
	}
	for (unsigned t = 1; t < nf; t++) {
		if (pthread_create(&th[t], NULL, fill_main, &jobs[t]) != 0)
			break;
		started = t;
	}
	fill_main(&jobs[0]);
	/* whatever could not get a thread of its own */
	for (unsigned t = started + 1; t < nf; t++)
		fill_main(&jobs[t]);
	for (unsigned t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
	ch->gen = 2;
	return ret;
}

/* Choose which pages are in use: runs of random length (a fragmented but
 * not shredded free list), then exactly round(npages * used_frac). */
static void child_layout(struct sy_child *ch)
{
	uint64_t target = (uint64_t)((double)ch->npages * ch->p.used_frac +
				     0.5);
	double uf = ch->p.used_frac;
	uint64_t mean_used, count = 0, i = 0;
	bool used;

	if (target > ch->npages)
		target = ch->npages;
	mean_used = uf >= 1 ? ch->npages :
		    (uint64_t)(uf / (1 - uf) * SY_FREE_RUN_MEAN) + 1;
	used = sy_rand(&ch->rng) & 1;
	while (i < ch->npages) {
		uint64_t mean = used ? mean_used : SY_FREE_RUN_MEAN;
		uint64_t len = 1 + sy_rand(&ch->rng) % (2 * mean);

		for (uint64_t k = 0; k < len && i < ch->npages; k++, i++) {
			ch->state[i] = used ? SY_INUSE : SY_FREE;
			count += used;
		}
		used = !used;
	}
	while (count > target) {
		uint64_t r = sy_rand(&ch->rng) % ch->npages;

		if (ch->state[r] == SY_INUSE) {
			ch->state[r] = SY_FREE;
			count--;
		}
	}
	while (count < target) {
		uint64_t r = sy_rand(&ch->rng) % ch->npages;

		if (ch->state[r] == SY_FREE) {
			ch->state[r] = SY_INUSE;
			count++;
		}
	}
	for (i = 0; i < ch->npages; i++) {
		if (ch->state[i] == SY_INUSE) {
			bit_set(ch->inuse, i);
		} else {
			if (ch->p.poison)
				memset(sy_page(ch, i), ch->p.poison_byte,
				       ch->ps);
			bag_push(ch, (uint32_t)i);
		}
	}
}

static int child_alloc(struct sy_child *ch)
{
	size_t maxruns = ch->npages / 2 + 1;
	unsigned mb = ch->p.misbehave;

	if (pthread_mutex_init(&ch->lock, NULL))
		return -ENOMEM;
	ch->state = calloc(ch->npages, 1);
	ch->iso_epoch = calloc(ch->npages, sizeof(uint32_t));
	ch->bag = calloc(ch->npages, sizeof(uint32_t));
	ch->pos = calloc(ch->npages, sizeof(uint32_t));
	ch->runs = calloc(maxruns, sizeof(*ch->runs));
	ch->extra = calloc(64, sizeof(*ch->extra));
	if (mb & HM_SYNTH_LIE_STALE)
		ch->prev = calloc(maxruns, sizeof(*ch->prev));
	if (mb & HM_SYNTH_DELAY_HINTS)
		ch->late = calloc(maxruns, sizeof(*ch->late));
	if (!ch->state || !ch->iso_epoch || !ch->bag || !ch->pos ||
	    !ch->runs || !ch->extra ||
	    (!ch->prev && (mb & HM_SYNTH_LIE_STALE)) ||
	    (!ch->late && (mb & HM_SYNTH_DELAY_HINTS)))
		return -ENOMEM;
	ch->qtail = &ch->q;
	return 0;
}

static int child_threads(struct sy_child *ch)
{
	struct sy_writer *wr;
	pthread_attr_t at;
	pthread_t t;
	int ret;

	/* lives as long as the child: its threads never end */
	wr = calloc(ch->p.writers, sizeof(*wr));
	if (!wr)
		return -ENOMEM;
	ret = -pthread_attr_init(&at);
	if (ret < 0)
		return ret;
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	for (unsigned i = 0; ret == 0 && i < ch->p.writers; i++) {
		wr[i].ch = ch;
		wr[i].rate = (double)ch->p.dirty_rate / ch->p.writers;
		wr[i].rng = sy_mix(ch->p.seed + 1000 + i) | 1;
		ret = -pthread_create(&t, &at, writer_main, &wr[i]);
	}
	if (ret == 0)
		ret = -pthread_create(&t, &at, alloc_main, ch);
	if (ret == 0)
		ret = -pthread_create(&t, &at, hint_main, ch);
	pthread_attr_destroy(&at);
	return ret;
}

static __attribute__((noreturn)) void
child_main(const struct hm_synth_params *p, struct hm_synth_shared *sh,
	   uint64_t npages, uint64_t ps, int ctl, int hint, int memfd)
{
	struct sy_child *ch;
	int keep[3] = { ctl, hint, memfd };
	int ret;

	/* Our own process group: a terminal's ^C is for the parent, who
	 * decides what happens to its guest. If the parent dies while we
	 * are stopped, the orphaned group gets SIGHUP+SIGCONT and we die. */
	setpgid(0, 0);
	child_reset_signals();
	close_other_fds(keep, memfd >= 0 ? 3 : 2);

	child_give_uffd(ctl); /* first, before any memory exists */

	ch = calloc(1, sizeof(*ch));
	if (!ch)
		child_fail(ctl, -ENOMEM, SY_ST_ALLOC);
	ch->p = *p;
	ch->ps = ps;
	ch->npages = npages;
	ch->nwords = (npages + 63) / 64;
	ch->sh = sh;
	ch->inuse = (uint64_t *)((char *)sh + sy_shared_hdr());
	ch->lied = ch->inuse + ch->nwords;
	ch->busy = ch->lied + ch->nwords;
	ch->ctl = ctl;
	ch->hint = hint;
	ch->memfd = memfd;
	ch->rng = sy_mix(p->seed) | 1;
	ch->hrng = sy_mix(p->seed + 7) | 1;
	ch->hot_pages = (uint64_t)(p->hot_frac * (double)npages);
	if (ch->hot_pages == 0)
		ch->hot_pages = 1;

	ch->ram = child_map_ram(npages * ps, memfd, p->thp, p->hugetlb);
	if (!ch->ram)
		child_fail(ctl, -errno, SY_ST_MAP);
	ret = child_alloc(ch);
	if (ret < 0)
		child_fail(ctl, ret, SY_ST_ALLOC);
	ret = child_fill(ch);
	if (ret < 0)
		child_fail(ctl, ret, SY_ST_FILL);
	child_layout(ch);
	ret = child_threads(ch);
	if (ret < 0)
		child_fail(ctl, ret, SY_ST_THREADS);
	__atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
	ctl_send(ctl, SY_CTL_READY, 0, (uint64_t)(uintptr_t)ch->ram);

	/* serve the parent until it goes away */
	for (;;) {
		struct sy_ctl m;
		ssize_t n = recv(ctl, &m, sizeof(m), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		if (n == (ssize_t)sizeof(m) && m.type == SY_CTL_NEWUFFD)
			child_give_uffd(ctl);
	}
}

/* ---- the parent ---- */

void hm_synth_params_default(struct hm_synth_params *p)
{
	memset(p, 0, sizeof(*p));
	p->ram_bytes = 256u << 20;
	p->used_frac = 0.25;
	p->dirty_rate = 0;
	p->pattern = HM_SYNTH_UNIFORM;
	p->hot_frac = 0.1;
	p->writers = 1;
	p->churn_rate = 0;
	p->hint_kind = HM_HINT_FREE;
	p->seed = 1;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Next control message: 0, -ETIMEDOUT, -ECHILD (the child is gone). */
static int ctl_recv(int fd, struct sy_ctl *m, int64_t timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - mono_ms();
		ssize_t n;
		int r;

		if (left < 0)
			left = 0;
		r = poll(&pf, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = recv(fd, m, sizeof(*m), MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECHILD;
		if (n == (ssize_t)sizeof(*m))
			return 0;
	}
}

static int ctl_send_parent(int fd, uint32_t type)
{
	struct sy_ctl m = { .type = type };

	return send(fd, &m, sizeof(m), MSG_NOSIGNAL) == (ssize_t)sizeof(m) ?
		       0 : -errno;
}

/* Take the uffd the child announced in m (if any), then say "taken". */
static int take_uffd(struct hm_synth *s, const struct sy_ctl *m,
		     const struct hm_log *log)
{
	int fd;

	if (m->type != SY_CTL_UFFD)
		return -EPROTO;
	if (m->val < 0) {
		s->uffd_errno = -m->val;
		hm_logf(log, HM_LOG_WARN, "synthetic guest: no userfaultfd in "
			"the child: %s (no write tracking possible)",
			strerror(-m->val));
		return m->val;
	}
	fd = hm_uffd_take_remote(s->pid, m->val);
	if (fd < 0) {
		s->uffd_errno = -fd;
		hm_logf(log, HM_LOG_WARN, "synthetic guest: taking its "
			"userfaultfd: %s", strerror(-fd));
	}
	ctl_send_parent(s->ctl_fd, SY_CTL_TAKEN);
	return fd;
}

static int validate_params(struct hm_synth_params *p, uint64_t ps,
			   const struct hm_log *log)
{
	if (p->writers == 0)
		p->writers = 1;
	if (p->hot_frac <= 0 || p->hot_frac > 1)
		p->hot_frac = 0.1;
	if (p->ram_bytes == 0 || p->ram_bytes % ps ||
	    (p->hugetlb && (p->memfd || p->ram_bytes % SY_HUGE)) ||
	    p->ram_bytes / ps >= UINT32_MAX || !(p->used_frac >= 0) ||
	    p->used_frac > 1 || p->writers > SY_MAX_WRITERS ||
	    (p->hint_kind != HM_HINT_FREE &&
	     p->hint_kind != HM_HINT_ISOLATED) ||
	    (p->pattern != HM_SYNTH_UNIFORM && p->pattern != HM_SYNTH_HOTSET)) {
		hm_logf(log, HM_LOG_ERROR, "synthetic guest: invalid "
			"parameters (RAM a page multiple below 16 TiB, used "
			"0..1, 1..%d writers, a known hint kind and pattern)",
			SY_MAX_WRITERS);
		return -EINVAL;
	}
	return 0;
}

int hm_synth_start(const struct hm_synth_params *pin, struct hm_synth *s,
		   const struct hm_log *log)
{
	struct hm_synth_params p;
	int sv_ctl[2] = { -1, -1 }, sv_hint[2] = { -1, -1 };
	long psl = sysconf(_SC_PAGESIZE);
	uint64_t ps = psl > 0 ? (uint64_t)psl : 4096, nwords;
	int64_t t0 = mono_ms(), timeout;
	struct sy_ctl m;
	void *sh;
	int ret;

	if (!pin || !s)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->hint_fd = s->ctl_fd = s->uffd = -1;
	s->block.memfd = -1;
	p = *pin;
	ret = validate_params(&p, ps, log);
	if (ret < 0)
		goto fail;
	s->params = p;
	s->page_size = ps;
	s->npages = p.ram_bytes / ps;
	nwords = (s->npages + 63) / 64;
	s->shared_len = (sy_shared_hdr() + 3 * nwords * 8 + ps - 1) / ps * ps;
	sh = mmap(NULL, s->shared_len, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	s->shared = sh;
	if (p.memfd) {
		s->block.memfd = memfd_create("hm-synth-ram", MFD_CLOEXEC);
		if (s->block.memfd < 0 ||
		    ftruncate(s->block.memfd, (off_t)p.ram_bytes) < 0) {
			ret = -errno;
			goto fail;
		}
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv_ctl) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv_hint)) {
		ret = -errno;
		goto fail;
	}
	s->pid = fork();
	if (s->pid < 0) {
		ret = -errno;
		s->pid = 0;
		goto fail;
	}
	if (s->pid == 0) {
		close(sv_ctl[0]);
		close(sv_hint[0]);
		child_main(&p, s->shared, s->npages, ps, sv_ctl[1], sv_hint[1],
			   s->block.memfd);
	}
	close(sv_ctl[1]);
	close(sv_hint[1]);
	s->ctl_fd = sv_ctl[0];
	s->hint_fd = sv_hint[0];
	sv_ctl[0] = sv_ctl[1] = sv_hint[0] = sv_hint[1] = -1;

	ret = ctl_recv(s->ctl_fd, &m, SY_CTL_TIMEOUT_MS);
	if (ret == 0 && m.type == SY_CTL_UFFD) {
		int fd = take_uffd(s, &m, log);

		s->uffd = fd >= 0 ? fd : -1;
		/* filling RAM takes time: 10 s plus 10 s per GiB */
		timeout = SY_CTL_TIMEOUT_MS +
			  (int64_t)(p.ram_bytes >> 30) * 10000;
		ret = ctl_recv(s->ctl_fd, &m, timeout);
	}
	if (ret < 0) {
		hm_logf(log, HM_LOG_ERROR, "synthetic guest: no word from the "
			"child: %s", strerror(-ret));
		goto fail;
	}
	if (m.type == SY_CTL_FAIL) {
		ret = m.val < 0 ? m.val : -EIO;
		hm_logf(log, HM_LOG_ERROR, "synthetic guest: %s failed: %s",
			m.a < sizeof(sy_stage_names) / sizeof(sy_stage_names[0])
				? sy_stage_names[m.a] : "?", strerror(-ret));
		goto fail;
	}
	if (m.type != SY_CTL_READY) {
		ret = -EPROTO;
		goto fail;
	}
	snprintf(s->block.name, sizeof(s->block.name), "synth.ram");
	s->block.gpa = 0;
	s->block.len = p.ram_bytes;
	s->block.host_addr = m.a;
	s->block.first_bit = 0;
	s->block.memfd_offset = 0;
	hm_logf(log, HM_LOG_INFO, "synthetic guest: pid %d, %" PRIu64
		" MiB, %" PRIu64 " pages in use, ready in %lld ms",
		(int)s->pid, p.ram_bytes >> 20, hm_synth_inuse_count(s),
		(long long)(mono_ms() - t0));
	return 0;

fail:
	for (int i = 0; i < 2; i++) {
		if (sv_ctl[i] >= 0)
			close(sv_ctl[i]);
		if (sv_hint[i] >= 0)
			close(sv_hint[i]);
	}
	hm_synth_stop(s);
	return ret;
}

int hm_synth_new_uffd(struct hm_synth *s)
{
	struct sy_ctl m;
	int ret;

	if (!s || s->pid <= 0 || s->ctl_fd < 0)
		return -EINVAL;
	/* An answer to an earlier call that timed out (the child was
	 * paused) may be waiting: release its uffd, the child waits for
	 * that before it reads anything else. */
	while (ctl_recv(s->ctl_fd, &m, 0) == 0) {
		if (m.type == SY_CTL_UFFD && m.val >= 0)
			ctl_send_parent(s->ctl_fd, SY_CTL_TAKEN);
	}
	ret = ctl_send_parent(s->ctl_fd, SY_CTL_NEWUFFD);
	if (ret == 0)
		ret = ctl_recv(s->ctl_fd, &m, SY_CTL_TIMEOUT_MS);
	if (ret == 0)
		ret = take_uffd(s, &m, NULL);
	return ret;
}

static const uint64_t *shared_map(const struct hm_synth *s, unsigned which)
{
	uint64_t nwords = (s->npages + 63) / 64;

	return (const uint64_t *)((const char *)s->shared + sy_shared_hdr()) +
	       which * nwords;
}

static int copy_map(const struct hm_synth *s, unsigned which,
		    struct hm_bitmap *out)
{
	const uint64_t *src;
	uint64_t nwords, tail;

	if (!s || !s->shared || !out || !out->words || out->nbits < s->npages)
		return -EINVAL;
	src = shared_map(s, which);
	nwords = (s->npages + 63) / 64;
	tail = s->npages % 64;
	for (uint64_t i = 0; i < nwords; i++) {
		uint64_t v = __atomic_load_n(&src[i], __ATOMIC_ACQUIRE);

		if (tail && i == nwords - 1) {
			/* leave out's own bits past npages alone */
			uint64_t mask = (UINT64_C(1) << tail) - 1;

			v = (out->words[i] & ~mask) | (v & mask);
		}
		out->words[i] = v;
	}
	return 0;
}

int hm_synth_inuse(const struct hm_synth *s, struct hm_bitmap *out)
{
	return copy_map(s, 0, out);
}

int hm_synth_lied(const struct hm_synth *s, struct hm_bitmap *out)
{
	return copy_map(s, 1, out);
}

int hm_synth_busy(const struct hm_synth *s, struct hm_bitmap *out)
{
	return copy_map(s, 2, out);
}

uint64_t hm_synth_inuse_count(const struct hm_synth *s)
{
	const uint64_t *w;
	uint64_t n = 0;

	if (!s || !s->shared)
		return 0;
	w = shared_map(s, 0);
	for (uint64_t i = 0; i < (s->npages + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(
			__atomic_load_n(&w[i], __ATOMIC_RELAXED));
	return n;
}

void hm_synth_stop(struct hm_synth *s)
{
	if (!s)
		return;
	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
		s->pid = 0;
	}
	if (s->ctl_fd >= 0)
		close(s->ctl_fd);
	if (s->hint_fd >= 0)
		close(s->hint_fd);
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->block.memfd >= 0)
		close(s->block.memfd);
	s->ctl_fd = s->hint_fd = s->uffd = s->block.memfd = -1;
	if (s->shared)
		munmap(s->shared, s->shared_len);
	s->shared = NULL;
}

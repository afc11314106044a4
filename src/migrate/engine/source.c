/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * src/migrate/engine/ owns the migration itself: this file the source
 * (rounds, senders, convergence, the final round, verification), dest.c
 * the destination (channels, placing pages, R8's acknowledgement).
 *
 * The source side of a precopy migration (include/hintmig/migrate.h).
 *
 * Threads and who owns what:
 *  - the migration thread (the caller of hm_migration_run) owns the
 *    round state machine, the tracker, the guest's pause/resume, channel
 *    0 between rounds (HELLO, DEVICE_STATE, END, COMPLETE, VERIFY) and
 *    every fd (only it closes or shuts them down);
 *  - one sender thread per channel; sender i owns the bitmap words w with
 *    w % N == i during a round and takes them whole with
 *    hm_bitmap_fetch_clear_word(), so page k always travels on channel
 *    (k / 64) % N and the newest copy of a page is the last on its channel;
 *  - the hints thread (hints.c) clears bits of M concurrently (atomic).
 *  - senders only send; while they run, the migration thread polls every
 *    channel for input: the destination says nothing during a round
 *    except ABORT, so a readable channel (ABORT, garbage, hang-up) fails
 *    the migration at once instead of at the next send.
 *
 * The source guest is never written: failure or cancel stops the
 * senders, closes hinting, stops the tracker (the guest runs untracked),
 * resumes the guest if we paused it and sends ABORT where it can.
 *
 * Rounds (DESIGN.md R1-R6): tracker started before the first read and the
 * first hint request (R1); M = populated pages (R6); each round opens a
 * hint epoch, drains M, closes the epoch (R2) and harvests L into M; the
 * final round closes hinting for good (R5) before the pause.
 *
 * Hot path: no allocation; each sender has a batch buffer of up to
 * HM_WIRE_MAX_BATCH_PAGES pages (hm_wire_max_pages), the index array and
 * (zstd) an output buffer, all allocated in setup. Contiguous set bits of
 * a word are read from the guest in one call; zero pages become ZERO_RUN
 * messages ("duplicate" in QEMU's words); a batch is compressed only when
 * that shrinks it. Memory: M (1 bit a page) plus those per-channel
 * buffers; the hints add one more bit a page (ISOLATED acknowledgements).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hm_config.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

#include <hintmig/migrate.h>

#include "migrate/guests/guest.h"
#include "migrate/hints/hints.h"
#include "migrate/hints/hintchan.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/gate.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/wire.h"

#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)
#define PROGRESS_NS (100 * NS_PER_MS)
/* After a stop request, how long senders may take before their sockets
 * are shut down under them. */
#define STOP_GRACE_NS (2 * NS_PER_S)
/* Token bucket: burst allowance of the bandwidth limit. */
#define BUCKET_BURST_NS (50 * NS_PER_MS)
/* Rounds that moved less than this do not update the bandwidth estimate
 * (a few pages say more about latency than about bandwidth). */
#define BW_MIN_BYTES (256u * 1024u)
#define ABORT_TIMEOUT_MS 1000

/* ---- tables ------------------------------------------------------------ */

static const char *const status_names[] = {
	[HM_MIG_SETUP] = "setup",
	[HM_MIG_ACTIVE] = "active",
	[HM_MIG_DEVICE] = "device",
	[HM_MIG_COMPLETED] = "completed",
	[HM_MIG_FAILED] = "failed",
	[HM_MIG_CANCELLED] = "cancelled",
};

const char *hm_migrate_status_name(enum hm_migrate_status s)
{
	if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
		return NULL;
	return status_names[s];
}

void hm_migrate_params_default(struct hm_migrate_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_limit_ms = 300;
	p->max_bandwidth = 0;
	p->max_rounds = 30;
	p->force_on_max_rounds = false;
	p->channels = 0;
	p->compress = HM_COMPRESS_NONE;
	p->compress_level = 0;
	p->tracker_mode = HM_TRACKER_AUTO;
	p->max_hint_ranges = 0;
	p->hint_timeout_ms = 1000;
	p->unsafe = 0;
	p->connect_timeout_ms = 10000;
	p->io_timeout_ms = 30000;
}

/* ---- state ------------------------------------------------------------- */

enum tx_job {
	TX_JOB_NONE = 0,
	TX_JOB_ROUND,	/* drain M, then a ROUND marker */
	TX_JOB_FINAL,	/* drain M (END is sent by the migration thread) */
	TX_JOB_QUIT,
};

struct hm_migration;

struct tx_chan {
	struct hm_migration *m;
	unsigned idx;
	struct hm_wire_chan wc;
	bool wc_init;
	pthread_t thread;
	bool thread_started;
	uint64_t gen_seen;

	uint8_t *data;		/* batch: MAX_BATCH pages read */
	uint64_t *pages;	/* batch: page indexes */
	uint32_t nbatch;
	struct iovec *iov;	/* batch data: [0] the index, [1..niov]
				 * runs in data or in mapped guest RAM */
	unsigned niov;
	uint8_t *ibuf;		/* encoded count + indexes */
	size_t icap;
	uint64_t zfirst, zcount, zend; /* pending zero run (zend: block end) */
#if HM_HAVE_ZSTD
	ZSTD_CCtx *cctx;
	void *zbuf;
	size_t zcap;
#endif
	uint64_t pages_sent;	/* normal + zero, this channel */
	bool peer_gone;		/* the destination spoke or hung up */
};

struct hm_migration {
	char tls_path[200];		/* what carries TLS (under lock) */
	struct hm_guest *g;
	struct hm_hint_source *src;
	struct hm_migrate_params p;
	struct hm_log log;
	hm_progress_fn progress;
	void *progress_opaque;
	void *dev_state;
	size_t dev_state_len;

	struct hm_bitmap M;
	/* pages a hint took out of M since they were last sent: what the
	 * destination does not hold the source's copy of (hinted map) */
	struct hm_bitmap hinted;
	struct hm_tracker *tracker;
	struct hm_hints *hints;
	struct hm_wire_geometry geo;
	uint64_t session_id;
	uint64_t ps;
	uint32_t max_batch;	/* pages in one PAGES message */
	const uint8_t **bmap;	/* per block: its data mapped here (sent
				 * without a copy), or NULL (read) */
	uint32_t max_verify;	/* pages in one VERIFY_REQ */
	unsigned nch;
	struct tx_chan *ch;
	bool ran;
	bool paused;		/* by us */
	bool completed;

	/* sender coordination */
	pthread_mutex_t lock;
	pthread_cond_t work_cond;	/* senders wait for a job */
	int wake_fd;			/* eventfd: a sender finished, cancel */
	uint64_t gen;
	enum tx_job job;
	uint64_t job_round;
	unsigned finished;
	int tx_err;
	atomic_bool stop;	/* senders: leave the drain now */
	atomic_bool cancel;	/* hm_migration_cancel() */

	/* bandwidth limit, shared by every sender */
	pthread_mutex_t bucket_lock;
	uint64_t bucket_tat;	/* theoretical arrival time, ns */

	/* statistics (readers: any thread) */
	_Atomic int status;
	_Atomic uint64_t t_start_ns, t_end_ns;
	_Atomic uint64_t setup_ms, downtime_ms, expected_downtime_ms;
	_Atomic uint64_t tx_bytes, normal_pages, dup_pages;
	_Atomic uint64_t skipped_empty, dirty_syncs, dirty_rate;
	_Atomic uint64_t rounds, remaining_pages, mbps_milli;
	_Atomic uint64_t tracker_faults;
	_Atomic int tracker_mode;
	uint64_t last_progress_ns;
	uint64_t round_t0, round_b0;	/* the round in progress (0: none) */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void ctr_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

static uint64_t ctr(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / NS_PER_S),
		.tv_nsec = (long)(ns % NS_PER_S),
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void wake(struct hm_migration *m)
{
	uint64_t one = 1;

	if (write(m->wake_fd, &one, sizeof(one)) < 0) {
		/* saturated: the waiter is awake anyway */
	}
}

/* ---- bandwidth limit: one token bucket (GCRA) for all senders ---------- */

/* Not while the guest is paused for the final round: a limit there only
 * lengthens the downtime (QEMU lifts its own max-bandwidth for the
 * completion stage too). */
static int bucket_take(struct hm_migration *m, uint64_t bytes)
{
	uint64_t rate = m->p.max_bandwidth, now, until;

	if (!rate || atomic_load(&m->status) == HM_MIG_DEVICE)
		return 0;
	pthread_mutex_lock(&m->bucket_lock);
	now = now_ns();
	if (m->bucket_tat < now)
		m->bucket_tat = now;
	m->bucket_tat += (uint64_t)((double)bytes * (double)NS_PER_S /
				    (double)rate);
	until = m->bucket_tat > BUCKET_BURST_NS ?
		       m->bucket_tat - BUCKET_BURST_NS : 0;
	pthread_mutex_unlock(&m->bucket_lock);
	/* sleep in slices so that a stop is seen */
	while ((now = now_ns()) < until) {
		if (atomic_load(&m->stop))
			return -ECANCELED;
		sleep_ns(until - now < 20 * NS_PER_MS ? until - now
						     : 20 * NS_PER_MS);
	}
	return 0;
}

/* ---- senders ------------------------------------------------------------ */

static int tx_send(struct tx_chan *c, uint16_t type, uint32_t flags,
		   const struct iovec *iov, int iovcnt)
{
	uint64_t len = HM_WIRE_HDR_SIZE;
	int r;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	r = bucket_take(c->m, len);
	if (r < 0)
		return r;
	r = hm_wire_send(&c->wc, type, flags, iov, iovcnt);
	if (r == 0)
		ctr_add(&c->m->tx_bytes, len);
	return r;
}

/* A message whose payload is one u64 (END, COMPLETE). */
static int tx_send_u64(struct tx_chan *c, uint16_t type, uint64_t v)
{
	uint8_t buf[8];
	struct iovec iov;
	long n = hm_wire_enc_u64(buf, sizeof(buf), v);

	if (n < 0)
		return (int)n;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	return tx_send(c, type, 0, &iov, 1);
}

static int tx_flush_zero(struct tx_chan *c)
{
	uint8_t buf[64];
	struct iovec iov;
	long n;
	int r;

	if (!c->zcount)
		return 0;
	n = hm_wire_enc_zero_run(buf, sizeof(buf), c->zfirst, c->zcount);
	if (n < 0)
		return (int)n;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	r = tx_send(c, HM_MSG_ZERO_RUN, 0, &iov, 1);
	if (r < 0)
		return r;
	ctr_add(&c->m->dup_pages, c->zcount);
	c->pages_sent += c->zcount;
	c->zcount = 0;
	return 0;
}

static int tx_flush_pages(struct tx_chan *c)
{
	struct hm_migration *m = c->m;
	struct iovec iov[2];
	uint32_t flags = 0;
	size_t dlen = (size_t)c->nbatch * m->ps; /* contiguous in c->data
						  * when compressing */
	void *data = c->data;
	long n;
	int r;

	if (!c->nbatch)
		return 0;
	n = hm_wire_enc_pages_index(c->ibuf, c->icap, c->pages, c->nbatch);
	if (n < 0)
		return (int)n;
#if HM_HAVE_ZSTD
	if (c->cctx) {
		size_t z = ZSTD_compress2(c->cctx, c->zbuf, c->zcap, c->data,
					  dlen);

		/* only when it shrinks */
		if (!ZSTD_isError(z) && z < dlen) {
			data = c->zbuf;
			dlen = z;
			flags |= HM_BATCH_ZSTD;
		}
	}
#endif
	if (flags & HM_BATCH_ZSTD) {
		iov[0].iov_base = c->ibuf;
		iov[0].iov_len = (size_t)n;
		iov[1].iov_base = data;
		iov[1].iov_len = dlen;
		r = tx_send(c, HM_MSG_PAGES, flags, iov, 2);
	} else {
		c->iov[0].iov_base = c->ibuf;
		c->iov[0].iov_len = (size_t)n;
		r = tx_send(c, HM_MSG_PAGES, flags, c->iov, (int)c->niov + 1);
	}
	if (r < 0)
		return r;
	ctr_add(&m->normal_pages, c->nbatch);
	c->pages_sent += c->nbatch;
	c->nbatch = 0;
	c->niov = 0;
	return 0;
}

static bool page_is_zero(const uint8_t *p, uint64_t ps)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w == 0 && memcmp(p, p + 8, ps - 8) == 0;
}

/* Page pg, whose data is at p, joins the batch. */
static void batch_add(struct tx_chan *c, uint64_t pg, const uint8_t *p)
{
	struct iovec *last = &c->iov[c->niov];
	size_t ps = (size_t)c->m->ps;

	c->pages[c->nbatch++] = pg;
	if (c->niov && (const uint8_t *)last->iov_base + last->iov_len == p) {
		last->iov_len += ps;
		return;
	}
	c->niov++;
	c->iov[c->niov].iov_base = (void *)(uintptr_t)p;
	c->iov[c->niov].iov_len = ps;
}

/* Send pages [page, page + len), all taken from M by this sender. Every
 * page that holds data is copied into the batch buffer first (a mapped
 * block's straight from guest RAM, the others through the guest's read):
 * the message's checksum must cover exactly the bytes sent, and a running
 * guest may write a page while it is being sent (such a write is tracked
 * and the page sent again, as for one racing with the copy). */
static int tx_pages(struct tx_chan *c, uint64_t page, uint64_t len)
{
	struct hm_migration *m = c->m;
	struct hm_guest *g = m->g;
	uint64_t ps = m->ps;
	int r = 0;

	while (len) {
		const struct hm_ram_block *b = hm_guest_block_of_page(g, page);
		const uint8_t *mapped;
		uint64_t bend, chunk;
		uint8_t *dst, *out;

		if (!b) {
			r = -EFAULT;
			goto out;
		}
		mapped = m->bmap ? m->bmap[b - g->blocks] : NULL;
		bend = b->first_bit + b->len / ps;
		chunk = m->max_batch - c->nbatch;
		if (chunk > len)
			chunk = len;
		if (chunk > bend - page)
			chunk = bend - page;
		out = c->data + (size_t)c->nbatch * ps;
		if (mapped) {
			dst = (uint8_t *)(uintptr_t)mapped +
			      (page - b->first_bit) * ps;
		} else {
			dst = out;
			r = g->ops->read(g, b, (page - b->first_bit) * ps,
					 dst, (size_t)(chunk * ps));
			if (r < 0)
				goto out;
		}
		for (uint64_t j = 0; j < chunk; j++) {
			uint8_t *p = dst + j * ps;
			uint64_t pg = page + j;

			if (page_is_zero(p, ps)) {
				if (c->zcount && c->zfirst + c->zcount == pg &&
				    pg < c->zend) {
					c->zcount++;
					continue;
				}
				r = tx_flush_zero(c);
				if (r < 0)
					goto out;
				c->zfirst = pg;
				c->zcount = 1;
				c->zend = bend;
				continue;
			}
			if (out != p)
				memcpy(out, p, ps);
			batch_add(c, pg, out);
			out += ps;
		}
		page += chunk;
		len -= chunk;
		if (c->nbatch == m->max_batch) {
			r = tx_flush_pages(c);
			if (r < 0)
				goto out;
		}
	}
out:
	return r;
}

/* Drain this sender's words of M. */
static int tx_drain(struct tx_chan *c)
{
	struct hm_migration *m = c->m;
	int r = 0;

	for (size_t w = c->idx; w < m->M.nwords; w += m->nch) {
		uint64_t bits;

		if (atomic_load_explicit(&m->stop, memory_order_relaxed)) {
			r = -ECANCELED;
			goto out;
		}
		bits = hm_bitmap_fetch_clear_word(&m->M, w);
		/* these go now: no longer hinted (a hint clears M and sets
		 * hinted in one apply section, which a sync waits for, so
		 * no hint of an earlier send can land after this) */
		if (bits)
			__atomic_fetch_and(&m->hinted.words[w], ~bits,
					   __ATOMIC_ACQ_REL);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			uint64_t rest = bits >> b;
			unsigned len = ~rest == 0 ? 64 - b
				       : (unsigned)__builtin_ctzll(~rest);
			uint64_t mask = len == 64 ? UINT64_MAX
				: ((UINT64_C(1) << len) - 1) << b;

			bits &= ~mask;
			r = tx_pages(c, (uint64_t)w * 64 + b, len);
			if (r < 0)
				goto out;
		}
	}
	r = tx_flush_zero(c);
	if (r == 0)
		r = tx_flush_pages(c);
out:
	return r;
}

static int tx_round_marker(struct tx_chan *c, uint64_t round)
{
	uint8_t buf[64];
	struct iovec iov;
	long n = hm_wire_enc_round(buf, sizeof(buf), round,
				   ctr(&c->m->remaining_pages));

	if (n < 0)
		return (int)n;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	return tx_send(c, HM_MSG_ROUND, 0, &iov, 1);
}

static void *tx_thread(void *arg)
{
	struct tx_chan *c = arg;
	struct hm_migration *m = c->m;

	for (;;) {
		enum tx_job job;
		uint64_t round;
		int r = 0;

		pthread_mutex_lock(&m->lock);
		while (m->gen == c->gen_seen)
			pthread_cond_wait(&m->work_cond, &m->lock);
		c->gen_seen = m->gen;
		job = m->job;
		round = m->job_round;
		pthread_mutex_unlock(&m->lock);
		if (job == TX_JOB_QUIT)
			break;

		r = tx_drain(c);
		if (r == 0 && job == TX_JOB_ROUND)
			r = tx_round_marker(c, round);

		pthread_mutex_lock(&m->lock);
		if (r < 0) {
			if (!m->tx_err)
				m->tx_err = r;
			atomic_store(&m->stop, true);
		}
		m->finished++;
		pthread_mutex_unlock(&m->lock);
		wake(m);
	}
	return NULL;
}

static void tx_dispatch(struct hm_migration *m, enum tx_job job,
			uint64_t round)
{
	pthread_mutex_lock(&m->lock);
	m->job = job;
	m->job_round = round;
	m->finished = 0;
	m->gen++;
	pthread_cond_broadcast(&m->work_cond);
	pthread_mutex_unlock(&m->lock);
}

static void shutdown_channels(struct hm_migration *m)
{
	for (unsigned i = 0; i < m->nch; i++)
		if (m->ch[i].wc_init && m->ch[i].wc.fd >= 0)
			shutdown(m->ch[i].wc.fd, SHUT_RDWR);
}

static void report_progress(struct hm_migration *m, bool force);

static void record_error(struct hm_migration *m, int r)
{
	pthread_mutex_lock(&m->lock);
	if (!m->tx_err)
		m->tx_err = r;
	pthread_mutex_unlock(&m->lock);
	atomic_store(&m->stop, true);
}

static int chan_recv(struct hm_migration *m, struct tx_chan *c,
		     struct hm_wire_msg *msg);

/* The destination sends nothing while RAM streams, except ABORT, and it
 * may go away: a channel that turns readable during a round is an error,
 * found at once rather than when a send fails. */
static int peer_event(struct hm_migration *m, struct tx_chan *c)
{
	struct hm_wire_msg msg;
	int r = chan_recv(m, c, &msg);

	if (r < 0) {
		if (r != -EPROTO)
			hm_logf(&m->log, HM_LOG_ERROR,
				"channel %u: the destination went away: %s",
				c->idx, strerror(-r));
		return r;
	}
	hm_logf(&m->log, HM_LOG_ERROR,
		"channel %u: unexpected %s from the destination", c->idx,
		hm_wire_type_name(msg.hdr.type));
	return -EPROTO;
}

/* Wait for every sender to finish the job, watching the channels for an
 * ABORT or a hang-up; progress every 100 ms; on cancel, stop the senders
 * (and shut their sockets down if they do not come back within
 * STOP_GRACE_NS). 0 or the first error. */
static int tx_wait(struct hm_migration *m)
{
	struct pollfd p[1 + HM_WIRE_MAX_CHANNELS];
	unsigned map[1 + HM_WIRE_MAX_CHANNELS];
	uint64_t stop_at = 0;
	bool shut = false;
	int r;

	for (;;) {
		unsigned np = 0, fin;

		pthread_mutex_lock(&m->lock);
		fin = m->finished;
		pthread_mutex_unlock(&m->lock);
		if (fin >= m->nch)
			break;
		p[np].fd = m->wake_fd;
		p[np].events = POLLIN;
		p[np].revents = 0;
		np++;
		for (unsigned i = 0; i < m->nch && !shut; i++) {
			struct tx_chan *c = &m->ch[i];

			if (!c->wc_init || c->wc.fd < 0 || c->peer_gone)
				continue;
			p[np].fd = c->wc.fd;
			p[np].events = POLLIN;
			p[np].revents = 0;
			map[np++] = i;
		}
		if (poll(p, np, 100) < 0 && errno != EINTR) {
			record_error(m, -errno);
			continue;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;

			if (read(m->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: nothing pending */
			}
		}
		for (unsigned k = 1; k < np; k++) {
			struct tx_chan *c = &m->ch[map[k]];

			if (!p[k].revents)
				continue;
			c->peer_gone = true;
			record_error(m, peer_event(m, c));
			/* the peer is done with us: no sender should wait
			 * for it to read any more */
			if (!shut) {
				shutdown_channels(m);
				shut = true;
			}
		}
		report_progress(m, false);
		if (atomic_load(&m->cancel) || atomic_load(&m->stop)) {
			atomic_store(&m->stop, true);
			if (!stop_at) {
				stop_at = now_ns();
			} else if (!shut && now_ns() - stop_at > STOP_GRACE_NS) {
				shutdown_channels(m);
				shut = true;
			}
		}
	}
	pthread_mutex_lock(&m->lock);
	r = m->tx_err;
	pthread_mutex_unlock(&m->lock);
	if (atomic_load(&m->cancel))
		r = -ECANCELED;
	return r;
}

static void tx_stop_all(struct hm_migration *m)
{
	bool any = false;

	for (unsigned i = 0; i < m->nch; i++)
		any |= m->ch[i].thread_started;
	if (!any)
		return;
	atomic_store(&m->stop, true);
	tx_dispatch(m, TX_JOB_QUIT, 0);
	for (unsigned i = 0; i < m->nch; i++) {
		struct tx_chan *c = &m->ch[i];
		struct timespec ts;

		if (!c->thread_started)
			continue;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += STOP_GRACE_NS / NS_PER_S;
		if (pthread_timedjoin_np(c->thread, NULL, &ts) != 0) {
			shutdown_channels(m);
			pthread_join(c->thread, NULL);
		}
		c->thread_started = false;
	}
}

/* ---- statistics ---------------------------------------------------------- */

const struct hm_bitmap *hm_migration_hinted(const struct hm_migration *m)
{
	return m ? &m->hinted : NULL;
}

void hm_migration_get_stats(const struct hm_migration *m,
			    struct hm_migrate_stats *st)
{
	struct hm_hints_stats hs;
	uint64_t t0, t1;

	memset(st, 0, sizeof(*st));
	if (!m)
		return;
	st->status = (enum hm_migrate_status)atomic_load(&m->status);
	st->tracker_mode = (enum hm_tracker_mode)atomic_load(&m->tracker_mode);
	t0 = ctr(&m->t_start_ns);
	t1 = ctr(&m->t_end_ns);
	if (t0)
		st->total_time_ms = ((t1 ? t1 : now_ns()) - t0) / NS_PER_MS;
	st->setup_time_ms = ctr(&m->setup_ms);
	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
	memcpy(st->tls_path, m->tls_path, sizeof(st->tls_path));
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
	st->downtime_ms = ctr(&m->downtime_ms);
	st->expected_downtime_ms = ctr(&m->expected_downtime_ms);
	st->ram_total = m->g->npages * m->ps;
	st->ram_transferred = ctr(&m->tx_bytes);
	st->ram_remaining = ctr(&m->remaining_pages) * m->ps;
	st->normal_pages = ctr(&m->normal_pages);
	st->normal_bytes = st->normal_pages * m->ps;
	st->duplicate_pages = ctr(&m->dup_pages);
	st->skipped_empty_pages = ctr(&m->skipped_empty);
	st->dirty_sync_count = ctr(&m->dirty_syncs);
	st->dirty_pages_rate = ctr(&m->dirty_rate);
	st->rounds = ctr(&m->rounds);
	st->mbps = (double)ctr(&m->mbps_milli) / 1000.0;
	st->tracker_faults = ctr(&m->tracker_faults);
	hm_hints_get_stats(__atomic_load_n(&m->hints, __ATOMIC_ACQUIRE), &hs);
	st->skipped_hinted_pages = hs.pages_cleared;
	st->hint_requested = hs.requested;
	st->hint_received = hs.received;
	st->hint_applied = hs.applied;
	st->hint_pages_applied = hs.pages_applied;
	st->hint_dropped_stale = hs.dropped_stale;
	st->hint_rejected = hs.rejected;
	st->hint_session_pages_max = hs.session_pages_max;
	st->hint_apply_us = hs.apply_us;
}

static void update_tracker_stats(struct hm_migration *m)
{
	struct hm_tracker_stats ts;

	if (!m->tracker)
		return;
	hm_tracker_get_stats(m->tracker, &ts);
	ctr_set(&m->tracker_faults, ts.faults);
}

static void report_progress(struct hm_migration *m, bool force)
{
	struct hm_migrate_stats st;
	uint64_t now = now_ns();

	if (!m->progress)
		return;
	if (!force && now - m->last_progress_ns < PROGRESS_NS)
		return;
	m->last_progress_ns = now;
	update_tracker_stats(m);
	hm_migration_get_stats(m, &st);
	if (st.status == HM_MIG_ACTIVE || st.status == HM_MIG_DEVICE)
		st.ram_remaining = hm_bitmap_count(&m->M) * m->ps;
	if (m->round_t0 && now > m->round_t0 + 50 * NS_PER_MS) {
		/* the rate of the round in progress */
		double bytes = (double)(ctr(&m->tx_bytes) - m->round_b0);

		st.mbps = bytes * 8.0 / 1e6 /
			  ((double)(now - m->round_t0) / (double)NS_PER_S);
	}
	m->progress(m->progress_opaque, &st);
}

/* ---- life cycle ---------------------------------------------------------- */

struct hm_migration *hm_migration_new(struct hm_guest *g,
				      struct hm_hint_source *hints,
				      const struct hm_migrate_params *p,
				      const struct hm_log *log)
{
	struct hm_migration *m = NULL;
	int err = EINVAL;

	if (!g || !g->ops || !g->npages || !g->page_size ||
	    g->nblocks == 0 || g->nblocks > HM_WIRE_MAX_BLOCKS)
		goto fail;
	if (p && (p->channels > HM_WIRE_MAX_CHANNELS ||
		  (unsigned)p->compress > HM_COMPRESS_ZSTD ||
		  (unsigned)p->tracker_mode > HM_TRACKER_SYNC))
		goto fail;
#if !HM_HAVE_ZSTD
	if (p && p->compress == HM_COMPRESS_ZSTD) {
		err = ENOTSUP;
		goto fail;
	}
#endif
	err = ENOMEM;
	m = calloc(1, sizeof(*m));
	if (!m)
		goto fail;
	m->wake_fd = -1;
	m->g = g;
	m->src = hints;
	if (p)
		m->p = *p;
	else
		hm_migrate_params_default(&m->p);
	if (log)
		m->log = *log;
	m->ps = g->page_size;
	m->max_batch = hm_wire_max_pages(HM_MSG_PAGES, (uint32_t)m->ps);
	m->max_verify = hm_wire_max_pages(HM_MSG_VERIFY_REQ, (uint32_t)m->ps);
	if (!m->max_batch || !m->max_verify) {
		err = EINVAL; /* page size the wire cannot carry */
		goto fail;
	}
	if (!m->p.downtime_limit_ms)
		m->p.downtime_limit_ms = 300;
	if (!m->p.max_rounds)
		m->p.max_rounds = 30;
	if (!m->p.connect_timeout_ms)
		m->p.connect_timeout_ms = 10000;
	if (!m->p.io_timeout_ms)
		m->p.io_timeout_ms = 30000;
	if (!m->p.max_hint_ranges) {
		uint64_t d = g->npages;

		if (d < 4096)
			d = 4096;
		if (d > (1u << 24))
			d = 1u << 24;
		m->p.max_hint_ranges = (unsigned)d;
	}
	m->nch = m->p.channels;
	if (!m->nch) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		m->nch = n < 1 ? 1 : n > HM_WIRE_MAX_CHANNELS ?
				     HM_WIRE_MAX_CHANNELS : (unsigned)n;
	}
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->wake_fd < 0) {
		err = errno;
		goto fail;
	}
	if (hm_bitmap_init(&m->M, g->npages) < 0 ||
	    hm_bitmap_init(&m->hinted, g->npages) < 0)
		goto fail;
	m->ch = calloc(m->nch, sizeof(*m->ch));
	if (!m->ch)
		goto fail;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->bucket_lock, NULL);
	pthread_cond_init(&m->work_cond, NULL);
	atomic_store(&m->status, HM_MIG_SETUP);
	atomic_store(&m->tracker_mode, m->p.tracker_mode);
	return m;

fail:
	if (m) {
		hm_bitmap_fini(&m->M);
		hm_bitmap_fini(&m->hinted);
		if (m->wake_fd >= 0)
			close(m->wake_fd);
		free(m->ch);
		free(m);
	}
	errno = err;
	return NULL;
}

void hm_migration_set_progress(struct hm_migration *m, hm_progress_fn fn,
			       void *opaque)
{
	m->progress = fn;
	m->progress_opaque = opaque;
}

int hm_migration_set_device_state(struct hm_migration *m, const void *blob,
				  size_t len)
{
	void *copy = NULL;

	if (len > HM_WIRE_MAX_PAYLOAD || (len && !blob))
		return -EINVAL;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, blob, len);
	}
	free(m->dev_state);
	m->dev_state = copy;
	m->dev_state_len = len;
	return 0;
}

void hm_migration_cancel(struct hm_migration *m)
{
	if (!m)
		return;
	atomic_store(&m->cancel, true);
	atomic_store(&m->stop, true);
	wake(m);
}

/* ---- setup ------------------------------------------------------------ */

static int chan_alloc(struct tx_chan *c)
{
	struct hm_migration *m = c->m;

	c->data = malloc((size_t)m->max_batch * m->ps);
	c->pages = calloc(m->max_batch, sizeof(*c->pages));
	c->iov = calloc((size_t)m->max_batch + 1, sizeof(*c->iov));
	c->icap = 16 + (size_t)m->max_batch * sizeof(uint64_t);
	c->ibuf = malloc(c->icap);
	if (!c->data || !c->pages || !c->ibuf || !c->iov)
		return -ENOMEM;
#if HM_HAVE_ZSTD
	if (m->p.compress == HM_COMPRESS_ZSTD) {
		c->zcap = ZSTD_compressBound((size_t)m->max_batch * m->ps);
		c->zbuf = malloc(c->zcap);
		c->cctx = ZSTD_createCCtx();
		if (!c->zbuf || !c->cctx)
			return -ENOMEM;
		ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel,
				       m->p.compress_level ?
					       m->p.compress_level : 1);
	}
#endif
	return 0;
}

static void chan_free(struct tx_chan *c)
{
	if (c->wc_init)
		hm_wire_chan_fini(&c->wc);
	c->wc_init = false;
	free(c->data);
	free(c->pages);
	free(c->ibuf);
	free(c->iov);
	c->iov = NULL;
	c->data = NULL;
	c->pages = NULL;
	c->ibuf = NULL;
#if HM_HAVE_ZSTD
	ZSTD_freeCCtx(c->cctx);
	free(c->zbuf);
	c->cctx = NULL;
	c->zbuf = NULL;
#endif
}

/* R18 then R17: a TLS session when the migration has credentials (the
 * destination's certificate checked), then the key's proof both ways
 * (inside TLS), before anything else goes over fd. fd with *tls, or
 * -errno (fd closed): -EACCES refused either way. */
static int secure_chan(struct hm_migration *m, int fd, unsigned i,
		       struct hm_tls **tls)
{
	struct hm_auth_key key = { .len = 0 };
	char why[440];
	int r;

	*tls = NULL;
	if (m->p.auth_key_len && (!m->p.auth_key ||
				  m->p.auth_key_len < HM_AUTH_KEY_MIN ||
				  m->p.auth_key_len > HM_AUTH_KEY_MAX)) {
		close(fd);
		hm_logf(&m->log, HM_LOG_ERROR, "channel %u: authentication "
			"failed: a key must be %d to %d bytes", i,
			HM_AUTH_KEY_MIN, HM_AUTH_KEY_MAX);
		return -EINVAL;
	}
	if (m->p.auth_key_len) {
		memcpy(key.k, m->p.auth_key, m->p.auth_key_len);
		key.len = m->p.auth_key_len;
	}
	r = hm_gate_enter(fd, m->p.tls, m->p.tls_peer_name, &key,
			  m->p.io_timeout_ms, tls, why, sizeof(why));
	explicit_bzero(&key, sizeof(key));
	if (r < 0) {
		close(fd);
		hm_logf(&m->log, HM_LOG_ERROR, "channel %u: %s", i, why);
		return r;
	}
	if (*tls && i == 0) {
		pthread_mutex_lock(&m->lock);
		snprintf(m->tls_path, sizeof(m->tls_path), "%s",
			 hm_tls_describe(*tls));
		pthread_mutex_unlock(&m->lock);
		hm_logf(&m->log, HM_LOG_INFO, "TLS with %s: %s",
			m->p.tls_peer_name, hm_tls_describe(*tls));
	}
	return fd;
}

/* Channel i's connection. With connect_wait the first one is retried
 * while the destination is not listening yet (refused, or its unix socket
 * not there), until connect_timeout_ms. */
static int connect_chan(struct hm_migration *m, const char *addr, unsigned i,
			struct hm_tls **tls)
{
	uint64_t t0 = now_ns();
	bool said = false;

	for (;;) {
		int fd = hm_transport_connect(addr, m->p.connect_timeout_ms);
		uint64_t spent = (now_ns() - t0) / 1000000;

		*tls = NULL;
		if (fd >= 0 && (m->p.auth_key_len || m->p.tls))
			return secure_chan(m, fd, i, tls);
		if (fd >= 0 || i || !m->p.connect_wait ||
		    (fd != -ECONNREFUSED && fd != -ENOENT) ||
		    spent >= m->p.connect_timeout_ms)
			return fd;
		if (!said)
			hm_logf(&m->log, HM_LOG_INFO, "%s: not listening yet, "
				"retrying for up to %" PRIu64 " ms", addr,
				m->p.connect_timeout_ms);
		said = true;
		usleep(100 * 1000);
	}
}

static void fill_geometry(struct hm_migration *m)
{
	struct hm_wire_geometry *geo = &m->geo;

	memset(geo, 0, sizeof(*geo));
	geo->page_size = (uint32_t)m->ps;
	geo->nblocks = (uint32_t)m->g->nblocks;
	geo->channels = m->nch;
	geo->npages = m->g->npages;
	for (size_t i = 0; i < m->g->nblocks; i++) {
		const struct hm_ram_block *b = &m->g->blocks[i];

		memcpy(geo->blocks[i].name, b->name, sizeof(b->name));
		geo->blocks[i].name[HM_BLOCK_NAME_MAX - 1] = 0;
		geo->blocks[i].gpa = b->gpa;
		geo->blocks[i].len = b->len;
		geo->blocks[i].first_bit = b->first_bit;
		geo->blocks[i].memfd = -1;
	}
}

/* Wait until fd is readable, io_timeout or cancel. 0 or -errno. */
static int wait_readable(struct hm_migration *m, int fd)
{
	uint64_t deadline = now_ns() + m->p.io_timeout_ms * NS_PER_MS;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r;

		if (atomic_load(&m->cancel))
			return -ECANCELED;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		r = poll(&p, 1, 100);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		report_progress(m, false);
	}
}

/* Receive the next message on channel c, answering ABORT with an error.
 * 0 or -errno. */
static int chan_recv(struct hm_migration *m, struct tx_chan *c,
		     struct hm_wire_msg *msg)
{
	int r = hm_wire_chan_pending(&c->wc) ? 0 : wait_readable(m, c->wc.fd);

	if (r < 0)
		return r;
	r = hm_wire_recv(&c->wc, msg);
	if (r == -ENODATA)
		r = -ECONNRESET;
	if (r < 0) {
		if (r == -EPROTO)
			hm_logf(&m->log, HM_LOG_ERROR,
				"channel %u: invalid message from the "
				"destination: %s", c->idx, c->wc.err);
		return r;
	}
	if (msg->hdr.type == HM_MSG_ABORT) {
		hm_logf(&m->log, HM_LOG_ERROR,
			"channel %u: the destination aborted: %s (%s)", c->idx,
			msg->u.abort_.text, strerror((int)msg->u.abort_.reason));
		return msg->u.abort_.reason > 0 && msg->u.abort_.reason < 4096 ?
			       -(int)msg->u.abort_.reason : -EPROTO;
	}
	return 0;
}

/* The destination refused channel i's HELLO with errno st: say why. The
 * -errno to fail with. */
static int hello_refused(struct hm_migration *m, unsigned i, uint32_t st)
{
	hm_logf(&m->log, HM_LOG_ERROR,
		"channel %u: the destination refused: %s%s", i,
		strerror((int)st),
		st == EMEDIUMTYPE
			? " (its RAM is not laid out like this guest's: the "
			  "two VMs differ; the destination's log says how)"
		: st == EFBIG ? " (more RAM than it accepts)"
		: st == EPROTONOSUPPORT ? " (it cannot decompress zstd)"
		: st == ENOMEM
			? " (not enough memory there, or not enough free "
			  "huge pages for huge page RAM: its log has the "
			  "numbers)"
			: "");
	return st < 4096 ? -(int)st : -EPROTO;
}

/* Channel i > 0 could not connect: the destination may have refused
 * channel 0's HELLO already and stopped listening. Its answer, when one
 * is there within a second, is the reason to give. */
static int refused_meanwhile(struct hm_migration *m, int r)
{
	struct tx_chan *c0 = &m->ch[0];
	struct pollfd p = { .fd = c0->wc.fd, .events = POLLIN };
	struct hm_wire_msg msg;

	if (!c0->wc_init || c0->wc.fd < 0 ||
	    (!hm_wire_chan_pending(&c0->wc) && poll(&p, 1, 1000) <= 0))
		return r;
	if (hm_wire_recv(&c0->wc, &msg) < 0 ||
	    msg.hdr.type != HM_MSG_HELLO_ACK || !msg.u.hello_ack.status)
		return r;
	return hello_refused(m, 0, msg.u.hello_ack.status);
}

static int connect_channels(struct hm_migration *m, const char *addr)
{
	uint8_t *buf = NULL;
	size_t cap = 64 + sizeof(struct hm_wire_geometry) * 2;
	int r = -ENOMEM;

	buf = malloc(cap);
	if (!buf)
		goto out;
	fill_geometry(m);
	for (unsigned i = 0; i < m->nch; i++) {
		struct tx_chan *c = &m->ch[i];
		struct iovec iov;
		struct hm_tls *tls = NULL;
		long n;
		int fd;

		c->m = m;
		c->idx = i;
		r = chan_alloc(c);
		if (r < 0)
			goto out;
		fd = connect_chan(m, addr, i, &tls);
		if (fd < 0) {
			r = fd;
			hm_logf(&m->log, i ? HM_LOG_WARN : HM_LOG_ERROR,
				"cannot connect channel %u to %s: %s", i, addr,
				strerror(-r));
			if (i)
				r = refused_meanwhile(m, r);
			goto out;
		}
		r = hm_transport_set_timeouts(fd, m->p.io_timeout_ms);
		if (r == 0)
			r = hm_wire_chan_init(&c->wc, fd, (uint16_t)i,
					      m->session_id);
		if (r < 0) {
			hm_tls_free(tls);
			close(fd);
			goto out;
		}
		c->wc.tls = tls;
		c->wc_init = true;
		c->wc.geo = &m->geo;
		n = hm_wire_enc_hello(buf, cap, (uint16_t)i, &m->geo);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		iov.iov_base = buf;
		iov.iov_len = (size_t)n;
		r = tx_send(c, HM_MSG_HELLO,
			    m->p.compress == HM_COMPRESS_ZSTD ? HM_HELLO_ZSTD
							      : 0,
			    &iov, 1);
		if (r < 0 && i)
			r = refused_meanwhile(m, r);
		if (r < 0)
			goto out;
	}
	for (unsigned i = 0; i < m->nch; i++) {
		struct hm_wire_msg msg;

		r = chan_recv(m, &m->ch[i], &msg);
		if (r < 0)
			goto out;
		if (msg.hdr.type != HM_MSG_HELLO_ACK) {
			hm_logf(&m->log, HM_LOG_ERROR,
				"channel %u: expected HELLO_ACK, got type %u",
				i, msg.hdr.type);
			r = -EPROTO;
			goto out;
		}
		if (msg.u.hello_ack.status) {
			r = hello_refused(m, i, msg.u.hello_ack.status);
			goto out;
		}
	}
	r = 0;
out:
	free(buf);
	return r;
}

/* Blocks the guest can show us in place are sent without a copy, unless
 * batches are compressed (zstd wants them in one buffer). */
static void map_blocks(struct hm_migration *m)
{
	struct hm_guest *g = m->g;
	size_t mapped = 0;

	if (!g->ops->map || m->p.compress != HM_COMPRESS_NONE)
		return;
	m->bmap = calloc(g->nblocks, sizeof(*m->bmap));
	if (!m->bmap)
		return; /* reads still work */
	for (size_t i = 0; i < g->nblocks; i++) {
		m->bmap[i] = g->ops->map(g, &g->blocks[i]);
		mapped += m->bmap[i] != NULL;
	}
	hm_logf(&m->log, HM_LOG_DEBUG,
		"%zu of %zu blocks sent straight from guest RAM", mapped,
		g->nblocks);
}

static int start_senders(struct hm_migration *m)
{
	map_blocks(m);
	for (unsigned i = 0; i < m->nch; i++) {
		struct tx_chan *c = &m->ch[i];
		int r = -pthread_create(&c->thread, NULL, tx_thread, c);
		char name[16];

		if (r < 0)
			return r;
		c->thread_started = true;
		snprintf(name, sizeof(name), "hm-tx%u", i);
		pthread_setname_np(c->thread, name);
	}
	return 0;
}

/* R6: M = pages whose backing store holds data. */
static int mark_populated(struct hm_migration *m)
{
	uint64_t have;

	for (size_t i = 0; i < m->g->nblocks; i++) {
		const struct hm_ram_block *b = &m->g->blocks[i];
		int r = m->g->ops->populated(m->g, b, 0, b->len / m->ps, &m->M);

		if (r < 0) {
			hm_logf(&m->log, HM_LOG_ERROR,
				"block %s: cannot tell populated pages: %s",
				b->name, strerror(-r));
			return r;
		}
	}
	have = hm_bitmap_count(&m->M);
	ctr_set(&m->skipped_empty, m->g->npages - have);
	ctr_set(&m->remaining_pages, have);
	return 0;
}

static int open_tracker(struct hm_migration *m)
{
	struct hm_tracker_opts to;
	struct hm_caps caps;
	int r;

	r = hm_caps_probe(&caps, &m->log);
	if (r < 0)
		return r;
	memset(&to, 0, sizeof(to));
	to.mode = m->p.tracker_mode;
	to.log = m->log;
	to.nbits = m->g->npages;
	to.keep_hot = m->p.tracker_keep_hot;
	to.unit_bytes = m->p.tracker_unit;
	m->tracker = m->g->ops->open_tracker(m->g, &caps, &to);
	if (!m->tracker) {
		r = -errno;
		hm_logf(&m->log, HM_LOG_ERROR,
			"cannot track the guest's writes (%s mode): %s",
			hm_tracker_mode_name(m->p.tracker_mode),
			strerror(-r));
		return r ? r : -EIO;
	}
	atomic_store(&m->tracker_mode, hm_tracker_get_mode(m->tracker));
	return 0;
}

static int start_tracker(struct hm_migration *m)
{
	int r = hm_tracker_start(m->tracker);

	if (r < 0)
		hm_logf(&m->log, HM_LOG_ERROR,
			"cannot start write tracking: %s", strerror(-r));
	return r;
}

static int open_hints(struct hm_migration *m)
{
	struct hm_hints_opts o;
	struct hm_hints *h;

	if (!m->src)
		return 0;
	memset(&o, 0, sizeof(o));
	o.src = m->src;
	o.guest = m->g;
	o.m = &m->M;
	o.hinted = &m->hinted;
	o.tracker = m->tracker;
	o.max_ranges = m->p.max_hint_ranges;
	o.unsafe = m->p.unsafe;
	o.log = m->log;
	h = hm_hints_new(&o);
	if (!h)
		return -errno;
	__atomic_store_n(&m->hints, h, __ATOMIC_RELEASE);
	/* A refusal only means no hints: the migration goes on. */
	hm_hints_start(m->hints, m->p.hint_timeout_ms ? m->p.hint_timeout_ms
						       : 1000);
	return 0;
}

/* ---- rounds ----------------------------------------------------------- */

/* Harvest L into M (the sync). Returns the number of pages harvested. */
static long harvest(struct hm_migration *m)
{
	long r = hm_tracker_harvest(m->tracker, &m->M);

	if (r < 0) {
		hm_logf(&m->log, HM_LOG_ERROR, "harvest failed: %s",
			strerror((int)-r));
		return r;
	}
	ctr_add(&m->dirty_syncs, 1);
	update_tracker_stats(m);
	return r;
}

static int send_abort(struct hm_migration *m, int reason, const char *text)
{
	uint8_t buf[256];
	struct iovec iov;
	long n;
	struct tx_chan *c = &m->ch[0];

	if (!m->ch || !c->wc_init || c->wc.fd < 0)
		return -ENOTCONN;
	n = hm_wire_enc_abort(buf, sizeof(buf), (uint32_t)reason, text);
	if (n < 0)
		return (int)n;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	hm_transport_set_timeouts(c->wc.fd, ABORT_TIMEOUT_MS);
	return hm_wire_send(&c->wc, HM_MSG_ABORT, 0, &iov, 1);
}

/* The final round on the destination's side: DEVICE_STATE, END on every
 * channel, COMPLETE, and the acknowledgement. */
static int finish(struct hm_migration *m)
{
	struct tx_chan *c0 = &m->ch[0];
	struct hm_wire_msg msg;
	struct iovec iov;
	uint64_t total = 0;
	int r;

	iov.iov_base = m->dev_state;
	iov.iov_len = m->dev_state_len;
	r = tx_send(c0, HM_MSG_DEVICE_STATE, 0, &iov, m->dev_state_len ? 1 : 0);
	if (r < 0)
		goto out;
	for (unsigned i = 0; i < m->nch; i++) {
		struct tx_chan *c = &m->ch[i];

		r = tx_send_u64(c, HM_MSG_END, c->pages_sent);
		if (r < 0)
			goto out;
		total += c->pages_sent;
	}
	r = tx_send_u64(c0, HM_MSG_COMPLETE, total);
	if (r < 0)
		goto out;
	r = chan_recv(m, c0, &msg);
	if (r < 0)
		goto out;
	if (msg.hdr.type != HM_MSG_COMPLETE_ACK) {
		hm_logf(&m->log, HM_LOG_ERROR,
			"expected COMPLETE_ACK, got message type %u",
			msg.hdr.type);
		r = -EPROTO;
		goto out;
	}
	if (msg.u.complete_ack.status) {
		hm_logf(&m->log, HM_LOG_ERROR,
			"the destination did not complete: %s",
			strerror((int)msg.u.complete_ack.status));
		r = msg.u.complete_ack.status < 4096 ?
			    -(int)msg.u.complete_ack.status : -EPROTO;
		goto out;
	}
	if (msg.u.complete_ack.pages_received != total)
		hm_logf(&m->log, HM_LOG_WARN,
			"the destination counted %" PRIu64 " pages, we sent %"
			PRIu64, msg.u.complete_ack.pages_received, total);
out:
	return r;
}

static int pause_guest(struct hm_migration *m)
{
	int r = m->g->ops->pause(m->g);

	if (r < 0)
		hm_logf(&m->log, HM_LOG_ERROR, "cannot pause the guest: %s",
			strerror(-r));
	else
		m->paused = true;
	return r;
}

/* Stop the guest and take the writes it made since the last sync. */
static int pause_and_harvest(struct hm_migration *m)
{
	int r = pause_guest(m);
	long h;

	if (r < 0)
		return r;
	h = harvest(m);
	return h < 0 ? (int)h : 0;
}

/* HM_UNSAFE_HINTS_AFTER_PAUSE (R5 broken on purpose, tests only): one more
 * session is requested while the guest runs, its answers are held back,
 * and they are applied after the pause and the final harvest. */
static int final_unsafe_r5(struct hm_migration *m, uint64_t epoch)
{
	int r;

	hm_hints_set_hold(m->hints, true);
	hm_hints_begin_epoch(m->hints, epoch);
	/* let the guest answer (and reuse pages) while it runs */
	sleep_ns((m->p.hint_timeout_ms ? m->p.hint_timeout_ms : 100) *
		 NS_PER_MS);
	r = pause_and_harvest(m);
	if (r < 0)
		goto out;
	hm_hints_set_hold(m->hints, false);
	hm_hints_wait_done(m->hints, epoch, m->p.hint_timeout_ms ?
						    m->p.hint_timeout_ms : 100,
			   &m->cancel);
	hm_hints_close(m->hints);
out:
	return r;
}

static int final_round(struct hm_migration *m, uint64_t round,
		       uint64_t epoch)
{
	uint64_t t_pause, t_sent, t_fin;
	int r;

	atomic_store(&m->status, HM_MIG_DEVICE);
	report_progress(m, true);
	t_pause = now_ns();
	if (m->hints && (m->p.unsafe & HM_UNSAFE_HINTS_AFTER_PAUSE) &&
	    hm_hints_active(m->hints)) {
		r = final_unsafe_r5(m, epoch);
		if (r < 0)
			goto out;
		t_pause = now_ns();
	} else {
		/* R5: hinting ends for good before the guest stops. */
		hm_hints_close(m->hints);
		t_pause = now_ns();
		r = pause_and_harvest(m);
		if (r < 0)
			goto out;
	}
	ctr_set(&m->remaining_pages, hm_bitmap_count(&m->M));
	ctr_set(&m->rounds, round);
	t_sent = now_ns();
	tx_dispatch(m, TX_JOB_FINAL, round);
	r = tx_wait(m);
	if (r < 0)
		goto out;
	t_fin = now_ns();
	r = finish(m);
	if (r < 0)
		goto out;
	hm_logf(&m->log, HM_LOG_DEBUG,
		"final round: %" PRIu64 " pages; paused and synced in %" PRIu64
		" us, sent in %" PRIu64 " us, acknowledged in %" PRIu64 " us",
		ctr(&m->remaining_pages), (t_sent - t_pause) / 1000,
		(t_fin - t_sent) / 1000, (now_ns() - t_fin) / 1000);
	ctr_set(&m->remaining_pages, 0);
	ctr_set(&m->downtime_ms, (now_ns() - t_pause) / NS_PER_MS);
out:
	return r;
}

/* The live rounds, then the final one. */
static int run_rounds(struct hm_migration *m)
{
	uint64_t round = 0, epoch = 0;
	double bw = 0; /* bytes/s, 0 = unknown */
	int r;

	atomic_store(&m->status, HM_MIG_ACTIVE);
	for (;;) {
		uint64_t t0, t1, b0, bytes, remaining, exp_ms, th0, th1;
		long dirty;

		if (atomic_load(&m->cancel)) {
			r = -ECANCELED;
			goto out;
		}
		round++;
		epoch++;
		ctr_set(&m->rounds, round);
		if (hm_hints_active(m->hints)) {
			uint64_t th = now_ns();
			int done = 0;

			hm_hints_begin_epoch(m->hints, epoch);
			if (m->p.hint_timeout_ms)
				done = hm_hints_wait_done(m->hints, epoch,
							  m->p.hint_timeout_ms,
							  &m->cancel);
			hm_logf(&m->log, HM_LOG_DEBUG,
				"round %" PRIu64 ": hint session %" PRIu64
				" %s after %" PRIu64 " ms", round, epoch,
				done ? "done" : "still open",
				(now_ns() - th) / NS_PER_MS);
		}
		t0 = now_ns();
		b0 = ctr(&m->tx_bytes);
		m->round_t0 = t0;
		m->round_b0 = b0;
		tx_dispatch(m, TX_JOB_ROUND, round);
		r = tx_wait(m);
		m->round_t0 = 0;
		if (r < 0)
			goto out;
		t1 = now_ns();
		bytes = ctr(&m->tx_bytes) - b0;
		if (round == 1 && (m->p.unsafe & HM_UNSAFE_TRACK_LATE)) {
			/* R1 broken on purpose: writes during round 1 are
			 * not recorded. */
			r = start_tracker(m);
			if (r < 0)
				goto out;
		}
		/* R2: the epoch ends before the sync. */
		th0 = now_ns();
		hm_hints_end_epoch(m->hints, epoch);
		th1 = now_ns();
		dirty = harvest(m);
		if (dirty < 0) {
			r = (int)dirty;
			goto out;
		}
		hm_logf(&m->log, HM_LOG_DEBUG,
			"round %" PRIu64 ": epoch closed in %" PRIu64 " us, "
			"harvest in %" PRIu64 " us", round,
			(th1 - th0) / 1000, (now_ns() - th1) / 1000);
		remaining = hm_bitmap_count(&m->M);
		ctr_set(&m->remaining_pages, remaining);
		if (t1 > t0)
			ctr_set(&m->dirty_rate, (uint64_t)((double)dirty *
					NS_PER_S / (double)(t1 - t0)));
		if (t1 > t0 && (bytes >= BW_MIN_BYTES || bw == 0) && bytes) {
			bw = (double)bytes * NS_PER_S / (double)(t1 - t0);
			ctr_set(&m->mbps_milli,
				(uint64_t)(bw * 8.0 / 1e6 * 1000.0));
		}
		if (remaining == 0)
			exp_ms = 0;
		else if (bw <= 0)
			exp_ms = UINT64_MAX;
		else
			exp_ms = (uint64_t)((double)remaining *
					    (double)m->ps / bw * 1000.0);
		ctr_set(&m->expected_downtime_ms,
			exp_ms == UINT64_MAX ? 0 : exp_ms);
		hm_logf(&m->log, HM_LOG_DEBUG,
			"round %" PRIu64 ": %" PRIu64 " bytes in %" PRIu64
			" ms, %ld dirtied, %" PRIu64 " remaining, expected "
			"downtime %" PRIu64 " ms", round, bytes,
			(t1 - t0) / NS_PER_MS, dirty, remaining, exp_ms);
		report_progress(m, true);
		if (exp_ms <= m->p.downtime_limit_ms)
			break;
		if (round >= m->p.max_rounds) {
			if (m->p.force_on_max_rounds) {
				hm_logf(&m->log, HM_LOG_INFO,
					"no convergence after %" PRIu64
					" rounds: forcing the final round",
					round);
				break;
			}
			hm_logf(&m->log, HM_LOG_ERROR,
				"no convergence after %" PRIu64 " rounds "
				"(expected downtime %" PRIu64 " ms > %" PRIu64
				" ms)", round, exp_ms, m->p.downtime_limit_ms);
			r = -ETIMEDOUT;
			goto out;
		}
	}
	r = final_round(m, round + 1, epoch + 1);
out:
	return r;
}

int hm_migration_run(struct hm_migration *m, const char *addr)
{
	uint64_t t_start = now_ns(), t_conn, t_track;
	int r;

	if (!m || !addr)
		return -EINVAL;
	if (m->ran)
		return -EALREADY;
	m->ran = true;
	ctr_set(&m->t_start_ns, t_start);
	if (getrandom(&m->session_id, sizeof(m->session_id), 0) !=
	    sizeof(m->session_id))
		m->session_id = t_start ^ (uint64_t)getpid() << 32;
	if (!m->session_id)
		m->session_id = 1;

	r = connect_channels(m, addr);
	if (r < 0)
		goto out;
	t_conn = now_ns();
	if (atomic_load(&m->cancel)) {
		r = -ECANCELED;
		goto out;
	}
	/* R1: writes are tracked before the first read and the first hint
	 * request. */
	r = open_tracker(m);
	if (r < 0)
		goto out;
	if (!(m->p.unsafe & HM_UNSAFE_TRACK_LATE)) {
		r = start_tracker(m);
		if (r < 0)
			goto out;
	}
	/* R6, after the tracker: a page first written after this test is
	 * in L. */
	t_track = now_ns();
	r = mark_populated(m);
	if (r < 0)
		goto out;
	hm_logf(&m->log, HM_LOG_DEBUG, "setup: %u channels connected in %"
		PRIu64 " ms, tracker started in %" PRIu64 " ms, %" PRIu64
		" populated pages found in %" PRIu64 " ms", m->nch,
		(t_conn - t_start) / NS_PER_MS, (t_track - t_conn) / NS_PER_MS,
		ctr(&m->remaining_pages), (now_ns() - t_track) / NS_PER_MS);
	r = open_hints(m);
	if (r < 0)
		goto out;
	r = start_senders(m);
	if (r < 0)
		goto out;
	ctr_set(&m->setup_ms, (now_ns() - t_start) / NS_PER_MS);
	r = run_rounds(m);
	if (r < 0)
		goto out;
	/* QEMU's total-time ends at completion, before the clean-up */
	ctr_set(&m->t_end_ns, now_ns());
	m->completed = true;
	atomic_store(&m->status, HM_MIG_COMPLETED);
out:
	tx_stop_all(m);
	hm_hints_close(m->hints);
	if (m->tracker) {
		update_tracker_stats(m);
		hm_tracker_stop(m->tracker);
	}
	if (r < 0) {
		int a;

		if (m->paused) {
			a = m->g->ops->resume(m->g);
			if (a < 0)
				hm_logf(&m->log, HM_LOG_ERROR,
					"cannot resume the guest: %s",
					strerror(-a));
			else
				m->paused = false;
		}
		a = send_abort(m, -r, r == -ECANCELED ? "migration cancelled"
					              : strerror(-r));
		(void)a;
		atomic_store(&m->status, r == -ECANCELED ? HM_MIG_CANCELLED
							 : HM_MIG_FAILED);
		hm_logf(&m->log, r == -ECANCELED ? HM_LOG_INFO : HM_LOG_ERROR,
			"migration %s: %s",
			r == -ECANCELED ? "cancelled" : "failed",
			strerror(-r));
	}
	if (r < 0)
		ctr_set(&m->t_end_ns, now_ns());
	report_progress(m, true);
	return r;
}

/* ---- after completion ------------------------------------------------- */

int hm_migration_resume_guest(struct hm_migration *m)
{
	int r = 0;

	if (m && m->paused) {
		r = m->g->ops->resume(m->g);
		if (r == 0)
			m->paused = false;
	}
	return r;
}

long hm_migration_verify(struct hm_migration *m, const struct hm_bitmap *pages,
			 uint64_t *checked)
{
	struct tx_chan *c0;
	uint64_t *idx = NULL;
	uint8_t *ibuf = NULL, *mine = NULL;
	size_t icap;
	uint64_t nchecked = 0, mism = 0;
	size_t next = 0;
	long r;

	if (checked)
		*checked = 0;
	if (!m || !pages || pages->nbits != m->g->npages)
		return -EINVAL;
	if (!m->completed || !m->ch || !m->ch[0].wc_init)
		return -ENOTCONN;
	c0 = &m->ch[0];
	icap = 16 + (size_t)m->max_verify * sizeof(uint64_t);
	idx = calloc(m->max_verify, sizeof(*idx));
	ibuf = malloc(icap);
	mine = malloc(m->ps);
	r = -ENOMEM;
	if (!idx || !ibuf || !mine)
		goto out;
	hm_transport_set_timeouts(c0->wc.fd, m->p.io_timeout_ms);
	for (;;) {
		struct hm_wire_msg msg;
		struct iovec iov;
		uint32_t n = 0;
		long len;

		while (n < m->max_verify) {
			next = hm_bitmap_find_next_set(pages, next);
			if (next >= pages->nbits)
				break;
			idx[n++] = next++;
		}
		if (!n)
			break;
		len = hm_wire_enc_pages_index(ibuf, icap, idx, n);
		if (len < 0) {
			r = len;
			goto out;
		}
		iov.iov_base = ibuf;
		iov.iov_len = (size_t)len;
		r = hm_wire_send(&c0->wc, HM_MSG_VERIFY_REQ, 0, &iov, 1);
		if (r < 0)
			goto out;
		r = chan_recv(m, c0, &msg);
		if (r < 0)
			goto out;
		if (msg.hdr.type != HM_MSG_VERIFY_DATA ||
		    msg.u.verify_data.count != n) {
			hm_logf(&m->log, HM_LOG_ERROR,
				"verify: unexpected answer (type %u, %u pages "
				"for %u)", msg.hdr.type,
				msg.u.verify_data.count, n);
			r = -EPROTO;
			goto out;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint64_t pg = hm_wire_idx(msg.u.verify_data.pages_le,
						  i);
			const struct hm_ram_block *b;
			const uint8_t *theirs =
				(const uint8_t *)msg.u.verify_data.data +
				(size_t)i * m->ps;

			if (pg != idx[i]) {
				r = -EPROTO;
				goto out;
			}
			b = hm_guest_block_of_page(m->g, pg);
			if (!b) {
				r = -EFAULT;
				goto out;
			}
			r = m->g->ops->read(m->g, b,
					    (pg - b->first_bit) * m->ps, mine,
					    m->ps);
			if (r < 0)
				goto out;
			nchecked++;
			if (memcmp(mine, theirs, m->ps)) {
				if (mism < 8)
					hm_logf(&m->log, HM_LOG_WARN,
						"verify: page %" PRIu64
						" differs", pg);
				mism++;
			}
		}
	}
	r = (long)mism;
out:
	if (checked)
		*checked = nchecked;
	free(idx);
	free(ibuf);
	free(mine);
	return r;
}

void hm_migration_free(struct hm_migration *m)
{
	if (!m)
		return;
	tx_stop_all(m);
	hm_hints_free(m->hints);
	m->hints = NULL;
	hm_tracker_close(m->tracker);
	m->tracker = NULL;
	for (unsigned i = 0; i < m->nch; i++)
		chan_free(&m->ch[i]);
	free(m->ch);
	free(m->bmap);
	hm_bitmap_fini(&m->M);
	hm_bitmap_fini(&m->hinted);
	free(m->dev_state);
	pthread_cond_destroy(&m->work_cond);
	close(m->wake_fd);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->bucket_lock);
	free(m);
}

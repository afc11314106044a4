/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit test of src/migrate/dest.c: hm_dest_run_fd() in a thread, fed by a
 * hand-rolled source in this file (byte streams built with the wire
 * encoders, one per channel).
 *
 *  - valid migrations (1 and 4 channels, anonymous RAM and a memfd): pages
 *    over three rounds, zero runs over pages that held data, a zstd batch,
 *    pages never sent, device state, a verify exchange; the received RAM
 *    is compared byte for byte with the model;
 *  - hostile streams: truncated at every message boundary and inside every
 *    message, every header byte corrupted, a page index outside RAM or on
 *    the wrong channel, a seq gap, wrong session ids, duplicate channels,
 *    wrong counts, a bad zstd body, an ABORT from the source, stalls, and
 *    a disconnect at every stage. Each must give the expected non-zero
 *    return and a log line saying what happened, never crash (run it
 *    under ASan: build-asan), never write outside RAM (the destination
 *    puts guard pages around it, so such a write would crash).
 *
 * HM_TEST_VERBOSE=1 prints the destination's log.
 */
#include <errno.h>
#include <linux/magic.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hm_config.h"
#include "hm_test.h"
#include "hintmig/migrate.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/wire.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

#define PS 4096u
#define MAXCH 4

static bool verbose;

/* ---- captured log -------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];
static size_t log_len;

static void log_sink(void *opaque, enum hm_log_level level, const char *m)
{
	size_t n = strlen(m);

	(void)opaque;
	pthread_mutex_lock(&log_lock);
	if (log_len + n + 2 < sizeof(log_text)) {
		memcpy(log_text + log_len, m, n);
		log_len += n;
		log_text[log_len++] = '\n';
		log_text[log_len] = 0;
	}
	pthread_mutex_unlock(&log_lock);
	if (verbose)
		fprintf(stderr, "    dest %s: %s\n", hm_log_level_name(level),
			m);
}

static const struct hm_log test_log = { .fn = log_sink,
					 .max_level = HM_LOG_DEBUG };

static void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	log_text[0] = 0;
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

#define CHECK_LOG(s)                                                        \
	do {                                                                \
		if (!log_has(s))                                            \
			hm_test_fail("log lacks \"%s\"; log:\n%s", s,       \
				     log_text);                             \
	} while (0)

/* ---- a byte stream of messages ------------------------------------------- */

#define MAXMSG 512

struct stream {
	unsigned char *p;
	size_t len, cap;
	size_t start[MAXMSG + 1]; /* start of message i; start[n] = len */
	uint16_t type[MAXMSG];
	unsigned n;
	uint16_t ch;
	uint64_t sid;
};

static void st_reserve(struct stream *s, size_t more)
{
	if (s->len + more <= s->cap)
		return;
	while (s->len + more > s->cap)
		s->cap = s->cap ? s->cap * 2 : 65536;
	s->p = realloc(s->p, s->cap);
	HM_CHECK(s->p);
}

/* Append one message: header (seq = its index) + a + b. */
static void st_add(struct stream *s, uint16_t type, uint32_t flags,
		   const void *a, size_t alen, const void *b, size_t blen)
{
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = type,
				 .flags = flags,
				 .payload_len = (uint32_t)(alen + blen),
				 .channel = s->ch,
				 .session_id = s->sid,
				 .seq = s->n };

	HM_CHECK(s->n < MAXMSG);
	st_reserve(s, HM_WIRE_HDR_SIZE + alen + blen);
	s->start[s->n] = s->len;
	s->type[s->n] = type;
	hm_wire_put_hdr(s->p + s->len, &h);
	s->len += HM_WIRE_HDR_SIZE;
	if (alen)
		memcpy(s->p + s->len, a, alen);
	s->len += alen;
	if (blen)
		memcpy(s->p + s->len, b, blen);
	s->len += blen;
	{
		unsigned char *hp = s->p + s->start[s->n];
		struct iovec v = { hp + HM_WIRE_HDR_SIZE, alen + blen };

		hm_wire_seal(hp, &v, 1);
	}
	s->n++;
	s->start[s->n] = s->len;
}

static void st_free(struct stream *s)
{
	free(s->p);
	memset(s, 0, sizeof(*s));
}

/* ---- a migration model ---------------------------------------------------- */

struct mig {
	struct hm_wire_geometry geo;
	unsigned nch;
	uint64_t sid;
	struct stream s[MAXCH];
	unsigned char *exp;	/* expected RAM */
	uint64_t pages_on[MAXCH];
	uint64_t total;
	unsigned char dev[1000];
	bool zstd;
};

static void fill_page(unsigned char *p, uint64_t pg, unsigned version)
{
	uint64_t w = pg * UINT64_C(0x9e3779b97f4a7c15) ^
		     ((uint64_t)version << 56) ^ 0x5a5a5a5a5a5a5a5aull;

	for (size_t i = 0; i < PS; i += 8) {
		uint64_t v = i < 128 ? w + i : w;

		memcpy(p + i, &v, 8);
	}
	p[0] |= 1; /* never a zero page */
}

/* One PAGES message (or several, 64 pages at most each) for the listed
 * pages at version; zstd compresses the batch. */
static void add_pages(struct mig *m, unsigned c, const uint64_t *idx,
		      uint32_t n, unsigned version, bool zstd)
{
	static unsigned char data[64 * PS];
	unsigned char ibuf[8 + 64 * 8];
	long k;

	HM_CHECK(n <= 64);
	if (!n)
		return;
	for (uint32_t i = 0; i < n; i++) {
		fill_page(data + (size_t)i * PS, idx[i], version);
		memcpy(m->exp + idx[i] * PS, data + (size_t)i * PS, PS);
	}
	k = hm_wire_enc_pages_index(ibuf, sizeof(ibuf), idx, n);
	HM_CHECK(k > 0);
#if HM_HAVE_ZSTD
	if (zstd) {
		static unsigned char z[ZSTD_COMPRESSBOUND(64 * PS)];
		size_t zl = ZSTD_compress(z, sizeof(z), data, (size_t)n * PS,
					  1);

		HM_CHECK(!ZSTD_isError(zl));
		st_add(&m->s[c], HM_MSG_PAGES, HM_BATCH_ZSTD, ibuf, (size_t)k,
		       z, zl);
		m->pages_on[c] += n;
		return;
	}
#else
	(void)zstd;
#endif
	st_add(&m->s[c], HM_MSG_PAGES, 0, ibuf, (size_t)k, data,
	       (size_t)n * PS);
	m->pages_on[c] += n;
}

static void add_zero_run(struct mig *m, unsigned c, uint64_t first,
			 uint64_t n)
{
	unsigned char b[16];

	hm_wire_enc_zero_run(b, sizeof(b), first, n);
	st_add(&m->s[c], HM_MSG_ZERO_RUN, 0, b, 16, NULL, 0);
	memset(m->exp + first * PS, 0, n * PS);
	m->pages_on[c] += n;
}

static void add_round(struct mig *m, unsigned c, uint64_t round)
{
	unsigned char b[16];

	hm_wire_enc_round(b, sizeof(b), round, 0);
	st_add(&m->s[c], HM_MSG_ROUND, 0, b, 16, NULL, 0);
}

static void add_u64(struct mig *m, unsigned c, uint16_t type, uint64_t v)
{
	unsigned char b[8];

	hm_wire_enc_u64(b, sizeof(b), v);
	st_add(&m->s[c], type, 0, b, 8, NULL, 0);
}

/* Round 1 sends every page of the channel except pages with pg % 17 ==
 * 16 (never sent: they must read as zero), pages with pg % 16 in 3..5
 * as zero runs; round 2 re-sends pg % 3 == 0 (zstd when available) and
 * zeroes pg % 11 == 1 (pages that held data: the destination must clear
 * them); the final round re-sends pg % 13 == 0, then zeroes the channel's
 * first 64-page word in one run. */
static void build(struct mig *m, unsigned nch, uint64_t npages, bool zstd)
{
	unsigned char hello[24 + 88 * 2];
	uint64_t idx[64];
	long hl;

	memset(m, 0, sizeof(*m));
	m->nch = nch;
	m->sid = UINT64_C(0xfeedface00000000) + nch;
	m->zstd = zstd && HM_HAVE_ZSTD;
	m->geo.page_size = PS;
	m->geo.nblocks = 2;
	m->geo.channels = nch;
	m->geo.npages = npages;
	strcpy(m->geo.blocks[0].name, "pc.ram");
	m->geo.blocks[0].gpa = 0;
	m->geo.blocks[0].len = (npages - 100) * PS;
	strcpy(m->geo.blocks[1].name, "high");
	m->geo.blocks[1].gpa = UINT64_C(1) << 32;
	m->geo.blocks[1].len = 100 * PS;
	m->geo.blocks[1].first_bit = npages - 100;
	m->exp = calloc(npages, PS);
	HM_CHECK(m->exp);
	for (size_t i = 0; i < sizeof(m->dev); i++)
		m->dev[i] = (unsigned char)(i * 13 + 5);

	for (unsigned c = 0; c < nch; c++) {
		struct stream *s = &m->s[c];

		s->ch = (uint16_t)c;
		s->sid = m->sid;
		hl = hm_wire_enc_hello(hello, sizeof(hello), (uint16_t)c,
				       &m->geo);
		HM_CHECK(hl > 0);
		st_add(s, HM_MSG_HELLO, m->zstd ? HM_HELLO_ZSTD : 0, hello,
		       (size_t)hl, NULL, 0);
		/* round 1, word by word */
		for (uint64_t w = c; w * 64 < npages; w += nch) {
			uint32_t n = 0;
			uint64_t end = (w + 1) * 64 < npages ? (w + 1) * 64 :
							       npages;

			for (uint64_t pg = w * 64; pg < end; pg++) {
				if (pg % 17 == 16)
					continue;
				if (pg % 16 >= 3 && pg % 16 <= 5)
					continue;
				idx[n++] = pg;
			}
			add_pages(m, c, idx, n, 1, false);
			for (uint64_t pg = w * 64 + 3; pg < end; pg += 16) {
				uint64_t k = end - pg < 3 ? end - pg : 3;

				add_zero_run(m, c, pg, k);
			}
		}
		add_round(m, c, 1);
		/* round 2 */
		for (uint64_t w = c; w * 64 < npages; w += nch) {
			uint32_t n = 0;

			for (uint64_t pg = w * 64;
			     pg < (w + 1) * 64 && pg < npages; pg++)
				if (pg % 3 == 0)
					idx[n++] = pg;
			add_pages(m, c, idx, n, 2, m->zstd);
			for (uint64_t pg = w * 64;
			     pg < (w + 1) * 64 && pg < npages; pg++)
				if (pg % 11 == 1 && pg % 3 != 0)
					add_zero_run(m, c, pg, 1);
		}
		add_round(m, c, 2);
		/* final round */
		for (uint64_t w = c; w * 64 < npages; w += nch) {
			uint32_t n = 0;

			for (uint64_t pg = w * 64;
			     pg < (w + 1) * 64 && pg < npages; pg++)
				if (pg % 13 == 0)
					idx[n++] = pg;
			add_pages(m, c, idx, n, 3, false);
		}
		/* a whole word of pages holding data becomes zero: big runs
		 * release memory (MADV_DONTNEED / a hole in the memfd) */
		if ((uint64_t)(c + 1) * 64 <= npages) {
			add_zero_run(m, c, (uint64_t)c * 64, 64);
			/* and some of them hold data again (a placed page
			 * dropped, then placed anew) */
			for (uint32_t i = 0; i < 5; i++)
				idx[i] = (uint64_t)c * 64 + 10 + i;
			add_pages(m, c, idx, 5, 4, false);
		}
		if (c == 0)
			st_add(s, HM_MSG_DEVICE_STATE, 0, m->dev,
			       sizeof(m->dev), NULL, 0);
		add_u64(m, c, HM_MSG_END, m->pages_on[c]);
		m->total += m->pages_on[c];
	}
	add_u64(m, 0, HM_MSG_COMPLETE, m->total);
}

static void mig_free(struct mig *m)
{
	for (unsigned c = 0; c < MAXCH; c++)
		st_free(&m->s[c]);
	free(m->exp);
}

/* Index of the first message of type in stream s (from message from). */
static unsigned find_msg(const struct stream *s, uint16_t type, unsigned from)
{
	for (unsigned i = from; i < s->n; i++)
		if (s->type[i] == type)
			return i;
	hm_test_fail("no message of type %u", type);
}

/* ---- the destination in a thread ------------------------------------------ */

struct drun {
	struct hm_dest *d;
	int lfd;
	char addr[96];
	pthread_t th;
	int rc;
};

static void *drun_thread(void *arg)
{
	struct drun *r = arg;

	r->rc = hm_dest_run_fd(r->d, r->lfd);
	return NULL;
}

static void drun_start(struct drun *r, const struct hm_dest_params *pp)
{
	static atomic_uint counter;
	struct hm_dest_params p;

	if (pp) {
		p = *pp;
	} else {
		hm_dest_params_default(&p);
		p.io_timeout_ms = 3000;
		p.accept_timeout_ms = 5000;
	}
	log_reset();
	memset(r, 0, sizeof(*r));
	snprintf(r->addr, sizeof(r->addr), "unix:@hm-test-dest-%d-%u",
		 (int)getpid(), atomic_fetch_add(&counter, 1));
	r->lfd = hm_transport_listen(r->addr, 8);
	HM_CHECK_OK(r->lfd);
	r->d = hm_dest_new(&p, &test_log);
	HM_CHECK(r->d);
	HM_CHECK_EQ(pthread_create(&r->th, NULL, drun_thread, r), 0);
}

static int drun_join(struct drun *r)
{
	pthread_join(r->th, NULL);
	close(r->lfd);
	r->lfd = -1;
	return r->rc;
}

static void drun_free(struct drun *r)
{
	hm_dest_free(r->d);
	r->d = NULL;
}

/* ---- the source's side ------------------------------------------------------ */

static int src_connect(const struct drun *r)
{
	int fd = hm_transport_connect(r->addr, 3000);

	HM_CHECK_OK(fd);
	HM_CHECK_OK(hm_transport_set_timeouts(fd, 5000));
	return fd;
}

/* Send, ignoring errors: the destination may have given up already. */
static void src_send(int fd, const void *p, size_t len)
{
	(void)hm_send_all(fd, p, len);
}

/* Half-close and read until the destination closes: an orderly end on
 * our side whatever state the destination is in. */
static void src_drain_close(int fd)
{
	char buf[4096];

	shutdown(fd, SHUT_WR);
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
}

/* Read the next message the destination sends on fd. */
static int src_recv(struct hm_wire_chan *wc, struct hm_wire_msg *msg)
{
	return hm_wire_recv(wc, msg);
}

/* Full handshake: connect every channel, send its HELLO, read its
 * HELLO_ACK. wc[c] is set up for reading the destination's answers. */
static void src_hello_all(const struct drun *r, struct mig *m,
			  struct hm_wire_chan *wc)
{
	struct hm_wire_msg msg;

	for (unsigned c = 0; c < m->nch; c++) {
		int fd = src_connect(r);

		HM_CHECK_OK(hm_wire_chan_init(&wc[c], fd, (uint16_t)c,
					      m->sid));
		wc[c].geo = &m->geo;
		src_send(fd, m->s[c].p, m->s[c].start[1]);
		wc[c].tx_seq = 1;
	}
	for (unsigned c = 0; c < m->nch; c++) {
		HM_CHECK_OK(src_recv(&wc[c], &msg));
		HM_CHECK_EQ(msg.hdr.type, HM_MSG_HELLO_ACK);
		HM_CHECK_EQ(msg.u.hello_ack.status, 0);
	}
}

/* Send messages [from, to) of stream c raw on wc, keeping its seq. */
static void src_send_msgs(struct hm_wire_chan *wc, const struct mig *m,
			  unsigned c, unsigned from, unsigned to)
{
	const struct stream *s = &m->s[c];

	src_send(wc->fd, s->p + s->start[from], s->start[to] - s->start[from]);
	wc->tx_seq = to;
}

/* Everything after HELLO on every channel, channel 0 last. */
static void src_send_all(struct hm_wire_chan *wc, const struct mig *m)
{
	for (unsigned c = m->nch; c-- > 0;)
		src_send_msgs(&wc[c], m, c, 1, m->s[c].n);
}

/* Check the destination's RAM against the model. */
static void check_ram(const struct hm_dest *d, const struct mig *m)
{
	HM_CHECK_EQ(hm_dest_nblocks(d), m->geo.nblocks);
	for (size_t i = 0; i < m->geo.nblocks; i++) {
		const void *data;
		const struct hm_ram_block *b = hm_dest_block(d, i, &data);

		HM_CHECK(b && data);
		HM_CHECK(!strcmp(b->name, m->geo.blocks[i].name));
		HM_CHECK_EQ(b->gpa, m->geo.blocks[i].gpa);
		HM_CHECK_EQ(b->len, m->geo.blocks[i].len);
		HM_CHECK_EQ(b->first_bit, m->geo.blocks[i].first_bit);
		for (uint64_t p = 0; p < b->len / PS; p++) {
			uint64_t pg = b->first_bit + p;

			if (memcmp((const unsigned char *)data + p * PS,
				   m->exp + pg * PS, PS))
				hm_test_fail("page %" PRIu64 " (block %s) "
					     "differs",
					     pg, b->name);
		}
	}
	HM_CHECK(!hm_dest_block(d, m->geo.nblocks, NULL));
}

/* ---- valid migrations -------------------------------------------------------- */

/* use_memfd: into a memfd, or with disk_file into a file of the build
 * tree (not tmpfs: no userfaultfd there, pages are written) */
static void test_valid(unsigned nch, bool zstd, bool use_memfd,
		       bool disk_file, enum hm_dest_fill fill)
{
	struct hm_wire_chan wc[MAXCH];
	struct hm_dest_params p;
	struct hm_dest_stats st;
	struct hm_wire_msg msg;
	struct drun r;
	struct mig m;
	uint64_t vidx[600];
	unsigned char ibuf[8 + 600 * 8];
	struct iovec iov;
	uint32_t nv = 0;
	size_t dlen;
	const unsigned char *dev;
	int memfd = -1;
	long k;

	build(&m, nch, 64 * 9 + 17, zstd);
	hm_dest_params_default(&p);
	p.io_timeout_ms = 3000;
	p.fill = fill;
	if (use_memfd) {
		if (disk_file) {
			char path[] = "test_dest-ram-XXXXXX";
			struct statfs sf;

			memfd = mkstemp(path);
			HM_CHECK(memfd >= 0);
			unlink(path);
			HM_CHECK(fstatfs(memfd, &sf) == 0);
			/* a working directory on tmpfs is a tmpfs file:
			 * filled like a memfd */
			disk_file = sf.f_type != TMPFS_MAGIC;
		} else {
			memfd = memfd_create("hm-test-dest", MFD_CLOEXEC);
		}
		HM_CHECK(memfd >= 0);
		/* stale content must not survive */
		HM_CHECK(ftruncate(memfd, 1 << 20) == 0);
		HM_CHECK(pwrite(memfd, "junk", 4, 16 * PS) == 4);
		p.ram_fd = memfd;
	}
	drun_start(&r, &p);
	src_hello_all(&r, &m, wc);
	src_send_all(wc, &m);
	HM_CHECK_OK(src_recv(&wc[0], &msg));
	if (msg.hdr.type != HM_MSG_COMPLETE_ACK)
		hm_test_fail("got %s, log:\n%s",
			     hm_wire_type_name(msg.hdr.type), log_text);
	HM_CHECK_EQ(msg.u.complete_ack.status, 0);
	HM_CHECK_EQ(msg.u.complete_ack.pages_received, m.total);

	/* verify: every 7th page, in two requests, answer compared */
	for (uint64_t pg = 0; pg < m.geo.npages && nv < 600; pg += 7)
		vidx[nv++] = pg;
	vidx[nv++] = m.geo.npages - 1;
	for (uint32_t off = 0; off < nv;) {
		uint32_t n = nv - off > 50 ? 50 : nv - off;

		k = hm_wire_enc_pages_index(ibuf, sizeof(ibuf), vidx + off, n);
		iov.iov_base = ibuf;
		iov.iov_len = (size_t)k;
		HM_CHECK_OK(hm_wire_send(&wc[0], HM_MSG_VERIFY_REQ, 0, &iov,
					 1));
		HM_CHECK_OK(src_recv(&wc[0], &msg));
		HM_CHECK_EQ(msg.hdr.type, HM_MSG_VERIFY_DATA);
		HM_CHECK_EQ(msg.u.verify_data.count, n);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t pg = hm_wire_idx(msg.u.verify_data.pages_le, i);

			HM_CHECK_EQ(pg, vidx[off + i]);
			HM_CHECK(!memcmp((const unsigned char *)
						 msg.u.verify_data.data +
						 (size_t)i * PS,
					 m.exp + pg * PS, PS));
		}
		off += n;
	}
	for (unsigned c = 0; c < nch; c++)
		hm_wire_chan_fini(&wc[c]);
	HM_CHECK_EQ(drun_join(&r), 0);

	check_ram(r.d, &m);
	dev = hm_dest_device_state(r.d, &dlen);
	HM_CHECK_EQ(dlen, sizeof(m.dev));
	HM_CHECK(dev && !memcmp(dev, m.dev, dlen));
	hm_dest_get_stats(r.d, &st);
	HM_CHECK_EQ(st.channels, nch);
	HM_CHECK_EQ(st.session_id, m.sid);
	HM_CHECK_EQ(st.rounds, 2);
	HM_CHECK_EQ(st.pages_received + st.zero_pages, m.total);
	HM_CHECK(st.zero_pages > 0);
	HM_CHECK_EQ(st.device_state_len, sizeof(m.dev));
	if (fill == HM_DEST_FILL_WRITE || disk_file) {
		HM_CHECK_EQ(st.fill, HM_DEST_FILL_WRITE);
		HM_CHECK_EQ(st.placed_pages, 0);
	} else {
		/* userfaultfd is on this machine (the tracker needs it);
		 * a memfd is filled the same way */
		HM_CHECK_EQ(st.fill, HM_DEST_FILL_UFFD);
		/* every first arrival, and the 5 pages placed anew */
		HM_CHECK(st.placed_pages > 0);
		HM_CHECK(st.placed_pages < st.pages_received);
	}
	{
		uint64_t bytes = 0;

		for (unsigned c = 0; c < nch; c++)
			bytes += m.s[c].len;
		/* VERIFY_REQs counted too */
		HM_CHECK(st.bytes_received > bytes);
	}
	CHECK_LOG("migration complete");
	if (use_memfd) {
		unsigned char *pg = malloc(PS);

		HM_CHECK(pg);
		for (uint64_t i = 0; i < m.geo.npages; i++) {
			HM_CHECK(pread(memfd, pg, PS, (off_t)(i * PS)) ==
				 (ssize_t)PS);
			if (memcmp(pg, m.exp + i * PS, PS))
				hm_test_fail("memfd page %" PRIu64 " differs",
					     i);
		}
		free(pg);
	}
	/* the RAM outlives the run; a second run is refused */
	HM_CHECK_EQ(hm_dest_run_fd(r.d, 0), -EBUSY);
	drun_free(&r);
	if (memfd >= 0)
		close(memfd);
	mig_free(&m);
	printf("valid migration: %u channel(s)%s%s, %s fill: ok\n", nch,
	       m.zstd ? ", zstd" : "",
	       disk_file ? ", disk file" : use_memfd ? ", memfd" : "",
	       fill == HM_DEST_FILL_WRITE ? "write" :
	       fill == HM_DEST_FILL_UFFD ? "uffd" : "auto");
}

/* ---- hostile streams ---------------------------------------------------------- */

/* Run a one-channel migration whose stream is bytes[0:len), then the
 * source half-closes. Returns the destination's result. */
static int run_bytes(const struct mig *m, const unsigned char *bytes,
		     size_t len, const struct hm_dest_params *p)
{
	struct drun r;
	int fd, rc;

	(void)m;
	drun_start(&r, p);
	fd = src_connect(&r);
	src_send(fd, bytes, len);
	src_drain_close(fd);
	rc = drun_join(&r);
	drun_free(&r);
	return rc;
}

static void test_truncated(void)
{
	struct mig m;
	const struct stream *s;
	unsigned runs = 0;

	build(&m, 1, 64 * 3 + 5, true);
	s = &m.s[0];
	/* every boundary before COMPLETE's end, 1 byte into every message,
	 * inside every header, inside every payload */
	for (unsigned i = 0; i < s->n; i++) {
		size_t cuts[4] = { s->start[i], s->start[i] + 1,
				   s->start[i] + HM_WIRE_HDR_SIZE - 1,
				   (s->start[i] + HM_WIRE_HDR_SIZE +
				    s->start[i + 1]) / 2 };

		for (unsigned k = 0; k < 4; k++) {
			int rc;

			if (k == 3 && s->start[i + 1] - s->start[i] <=
					      HM_WIRE_HDR_SIZE)
				continue; /* no payload */
			rc = run_bytes(&m, s->p, cuts[k], NULL);
			if (rc != -ECONNRESET)
				hm_test_fail("cut at %zu (message %u %s): %d, "
					     "log:\n%s",
					     cuts[k], i,
					     hm_wire_type_name(s->type[i]), rc,
					     log_text);
			if (!log_has("disconnected") &&
			    !log_has("connection lost"))
				hm_test_fail("cut at %zu: log:\n%s", cuts[k],
					     log_text);
			if (k == 0 && i == s->n - 1)
				CHECK_LOG("after END");
			runs++;
		}
	}
	/* no bytes at all */
	HM_CHECK_EQ(run_bytes(&m, s->p, 0, NULL), -ECONNRESET);
	CHECK_LOG("waiting for HELLO");
	mig_free(&m);
	printf("truncated streams: %u cuts: ok\n", runs);
}

static void test_corrupt_header(void)
{
	struct mig m;
	const struct stream *s;
	unsigned char *copy;
	unsigned victims[3];
	unsigned runs = 0;

	build(&m, 1, 64 * 3 + 5, true);
	s = &m.s[0];
	copy = malloc(s->len);
	HM_CHECK(copy);
	victims[0] = 0;					/* HELLO */
	victims[1] = find_msg(s, HM_MSG_PAGES, 3);	/* mid round 1 */
	victims[2] = find_msg(s, HM_MSG_END, 0);
	for (unsigned v = 0; v < 3; v++) {
		for (unsigned pos = 0; pos < HM_WIRE_HDR_SIZE; pos++) {
			for (unsigned x = 0; x < 2; x++) {
				size_t at = s->start[victims[v]] + pos;
				bool len_byte = pos >= 12 && pos < 16;
				int rc;

				memcpy(copy, s->p, s->len);
				copy[at] ^= x ? 0x01 : 0xff;
				rc = run_bytes(&m, copy, s->len, NULL);
				if (rc == 0 || (!len_byte && rc != -EPROTO))
					hm_test_fail("byte %u of %s ^%s: %d, "
						     "log:\n%s",
						     pos,
						     hm_wire_type_name(
							     s->type[victims[v]]),
						     x ? "01" : "ff", rc,
						     log_text);
				if (rc == -EPROTO &&
				    !log_has("invalid message") &&
				    !log_has("seq"))
					hm_test_fail("no reason logged:\n%s",
						     log_text);
				runs++;
			}
		}
	}
	free(copy);
	mig_free(&m);
	printf("corrupt headers: %u runs: ok\n", runs);
}

/* Replace message i of stream s with the given payload (same header
 * fields but type (unless 0), flags and length). Returns a new buffer in
 * *out and its length. */
static size_t splice_msg(const struct stream *s, unsigned i, uint16_t type,
			 uint32_t flags, const void *pl, size_t plen,
			 unsigned char **out)
{
	struct hm_wire_hdr h;
	size_t before = s->start[i], after = s->len - s->start[i + 1];
	unsigned char *b = malloc(s->len + plen + HM_WIRE_HDR_SIZE);

	HM_CHECK(b);
	HM_CHECK_EQ(hm_wire_get_hdr(s->p + before, &h), 0);
	h.payload_len = (uint32_t)plen;
	h.flags = flags;
	if (type)
		h.type = type;
	memcpy(b, s->p, before);
	hm_wire_put_hdr(b + before, &h);
	memcpy(b + before + HM_WIRE_HDR_SIZE, pl, plen);
	{
		struct iovec v = { b + before + HM_WIRE_HDR_SIZE, plen };

		hm_wire_seal(b + before, &v, 1);
	}
	memcpy(b + before + HM_WIRE_HDR_SIZE + plen, s->p + s->start[i + 1],
	       after);
	*out = b;
	return before + HM_WIRE_HDR_SIZE + plen + after;
}

/* A hostile one-channel stream: message i replaced by a payload; expect
 * rc and a log line containing what. */
static void expect_spliced(const struct mig *m, unsigned i, uint16_t type,
			   uint32_t flags, const void *pl, size_t plen,
			   int rc_want, const char *what)
{
	unsigned char *b;
	size_t len = splice_msg(&m->s[0], i, type, flags, pl, plen, &b);
	int rc = run_bytes(m, b, len, NULL);

	if (rc != rc_want)
		hm_test_fail("%s: %d, expected %d; log:\n%s", what, rc, rc_want,
			     log_text);
	CHECK_LOG(what);
	free(b);
}

static void test_hostile_pages(void)
{
	struct mig m;
	const struct stream *s;
	unsigned char pl[8 + 8 + PS];
	uint64_t pg;
	unsigned ip;
	long k;

	build(&m, 1, 64 * 3 + 5, true);
	s = &m.s[0];
	ip = find_msg(s, HM_MSG_PAGES, 1);

	/* a page just outside RAM, and far outside */
	pg = m.geo.npages;
	k = hm_wire_enc_pages_index(pl, sizeof(pl), &pg, 1);
	memset(pl + k, 0xee, PS);
	expect_spliced(&m, ip, 0, 0, pl, (size_t)k + PS, -EPROTO, "outside RAM");
	pg = UINT64_MAX / PS;
	hm_wire_enc_pages_index(pl, sizeof(pl), &pg, 1);
	expect_spliced(&m, ip, 0, 0, pl, (size_t)k + PS, -EPROTO, "outside RAM");
	/* data length off by one */
	pg = 1;
	hm_wire_enc_pages_index(pl, sizeof(pl), &pg, 1);
	expect_spliced(&m, ip, 0, 0, pl, (size_t)k + PS - 1, -EPROTO,
		       "data bytes");
	/* zero run past the end */
	{
		unsigned char z[16];

		hm_wire_enc_zero_run(z, sizeof(z), m.geo.npages - 2, 3);
		expect_spliced(&m, ip, HM_MSG_ZERO_RUN, 0, z, 16, -EPROTO, "outside RAM");
	}
#if HM_HAVE_ZSTD
	/* a zstd frame with the right content size whose body is garbage:
	 * passes the decoder's checks, fails decompression */
	{
		static unsigned char page[PS], z[ZSTD_COMPRESSBOUND(PS) + 64];
		size_t zl;

		for (size_t i = 0; i < PS; i++)
			page[i] = (unsigned char)(i * i + 7);
		zl = ZSTD_compress(z, sizeof(z), page, PS, 3);
		HM_CHECK(!ZSTD_isError(zl) && zl > 40);
		/* frame header (magic, descriptor, size) and block header
		 * are the first ~10 bytes: keep them, spoil the body */
		for (size_t i = 16; i < zl; i++)
			z[i] ^= 0x5a;
		pg = 1;
		k = hm_wire_enc_pages_index(pl, sizeof(pl), &pg, 1);
		memcpy(pl + k, z, zl);
		{
			unsigned char *b;
			size_t len = splice_msg(s, ip, 0, HM_BATCH_ZSTD, pl,
						(size_t)k + zl, &b);
			int rc = run_bytes(&m, b, len, NULL);

			HM_CHECK_EQ(rc, -EPROTO);
			CHECK_LOG("does not decompress");
			free(b);
		}
	}
#endif
	/* a seq gap: message ip left out */
	{
		unsigned char *b = malloc(s->len);
		size_t l1 = s->start[ip], l2 = s->len - s->start[ip + 1];
		int rc;

		HM_CHECK(b);
		memcpy(b, s->p, l1);
		memcpy(b + l1, s->p + s->start[ip + 1], l2);
		rc = run_bytes(&m, b, l1 + l2, NULL);
		HM_CHECK_EQ(rc, -EPROTO);
		CHECK_LOG("sequence number");
		free(b);
	}
	/* message types out of place */
	{
		unsigned char v[16];

		k = hm_wire_enc_pages_index(v, sizeof(v), &pg, 1);
		expect_spliced(&m, ip, HM_MSG_VERIFY_REQ, 0, v, (size_t)k, -EPROTO,
			       "unexpected VERIFY_REQ");
	}
	/* wrong counts in END and COMPLETE */
	{
		unsigned char u[8];
		unsigned ie = find_msg(s, HM_MSG_END, 0);

		hm_wire_enc_u64(u, sizeof(u), m.pages_on[0] + 1);
		expect_spliced(&m, ie, 0, 0, u, 8, -EPROTO, "END: the source");
		hm_wire_enc_u64(u, sizeof(u), m.total - 1);
		expect_spliced(&m, s->n - 1, 0, 0, u, 8, -EPROTO,
			       "COMPLETE: the source");
	}
	/* rounds must increase */
	{
		unsigned char rb[16];
		unsigned ir = find_msg(s, HM_MSG_ROUND, 0);

		ir = find_msg(s, HM_MSG_ROUND, ir + 1);
		hm_wire_enc_round(rb, sizeof(rb), 1, 0);
		expect_spliced(&m, ir, 0, 0, rb, 16, -EPROTO, "ROUND 1 after");
	}
	/* the source aborts */
	{
		unsigned char ab[64];

		k = hm_wire_enc_abort(ab, sizeof(ab), ECANCELED, "user cancel");
		expect_spliced(&m, ip, HM_MSG_ABORT, 0, ab, (size_t)k,
			       -ECONNABORTED,
			       "user cancel");
	}
	/* a second DEVICE_STATE: replace END by one */
	{
		unsigned ie = find_msg(s, HM_MSG_END, 0);

		expect_spliced(&m, ie, HM_MSG_DEVICE_STATE, 0, "x", 1, -EPROTO,
			       "second DEVICE_STATE");
	}
	mig_free(&m);
	printf("hostile pages, counts, order: ok\n");
}

/* Several channels: a bad page on channel 2 must stop the whole
 * migration, wake the other receive threads and send ABORT on 0. */
static void test_hostile_multichannel(void)
{
	struct hm_wire_chan wc[MAXCH];
	struct hm_wire_msg msg;
	struct drun r;
	struct mig m;
	unsigned char pl[16 + PS];
	uint64_t pg;
	bool aborted = false;
	long k;

	build(&m, 4, 64 * 8, false);
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	/* channel 1 fully, channel 2 a page of channel 3, nothing on 0 and
	 * 3: their threads wait in recv */
	src_send(wc[1].fd, m.s[1].p + m.s[1].start[1],
		 m.s[1].len - m.s[1].start[1]);
	pg = 64 * 3; /* word 3: channel 3 */
	k = hm_wire_enc_pages_index(pl, sizeof(pl), &pg, 1);
	memset(pl + k, 1, PS);
	{
		struct iovec iov = { .iov_base = pl,
				     .iov_len = (size_t)k + PS };

		HM_CHECK_OK(hm_wire_send(&wc[2], HM_MSG_PAGES, 0, &iov, 1));
	}
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("belongs to channel 3, not 2");
	CHECK_LOG("channel 2 (receiving RAM): invalid message: seq 1 ");
	/* channel 0 carries an ABORT with the reason */
	while (src_recv(&wc[0], &msg) == 0)
		if (msg.hdr.type == HM_MSG_ABORT) {
			aborted = msg.u.abort_.reason == EPROTO;
			break;
		}
	HM_CHECK(aborted);
	for (unsigned c = 0; c < 4; c++)
		hm_wire_chan_fini(&wc[c]);
	drun_free(&r);
	mig_free(&m);
	printf("hostile page on one of 4 channels: ok\n");
}

/* Handshake problems with several channels. */
static void test_hello_rules(void)
{
	struct hm_dest_params p;
	struct hm_wire_msg msg;
	struct drun r;
	struct mig m, other;
	int fd[3];

	build(&m, 2, 64 * 4, false);
	build(&other, 2, 64 * 4, false);

	/* channel 1 connects first */
	drun_start(&r, NULL);
	fd[0] = src_connect(&r);
	src_send(fd[0], m.s[1].p, m.s[1].start[1]);
	src_drain_close(fd[0]);
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("channel 0 must connect first");
	drun_free(&r);

	/* channel 1 of another session */
	other.s[1].sid = m.sid + 1;
	st_free(&other.s[1]);
	{
		unsigned char hello[24 + 88 * 2];
		long hl = hm_wire_enc_hello(hello, sizeof(hello), 1, &m.geo);

		other.s[1].ch = 1;
		other.s[1].sid = m.sid + 1;
		st_add(&other.s[1], HM_MSG_HELLO, 0, hello, (size_t)hl, NULL,
		       0);
	}
	drun_start(&r, NULL);
	fd[0] = src_connect(&r);
	src_send(fd[0], m.s[0].p, m.s[0].start[1]);
	fd[1] = src_connect(&r);
	src_send(fd[1], other.s[1].p, other.s[1].start[1]);
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("HELLO of session");
	src_drain_close(fd[0]);
	src_drain_close(fd[1]);
	drun_free(&r);

	/* channel 0 twice */
	drun_start(&r, NULL);
	fd[0] = src_connect(&r);
	src_send(fd[0], m.s[0].p, m.s[0].start[1]);
	fd[1] = src_connect(&r);
	src_send(fd[1], m.s[0].p, m.s[0].start[1]);
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("connected twice");
	src_drain_close(fd[0]);
	src_drain_close(fd[1]);
	drun_free(&r);

	/* a different geometry on channel 1 */
	{
		struct hm_wire_geometry g2 = m.geo;
		unsigned char hello[24 + 88 * 2];
		struct stream s1 = { .ch = 1, .sid = m.sid };
		long hl;

		strcpy(g2.blocks[1].name, "other");
		hl = hm_wire_enc_hello(hello, sizeof(hello), 1, &g2);
		st_add(&s1, HM_MSG_HELLO, 0, hello, (size_t)hl, NULL, 0);
		drun_start(&r, NULL);
		fd[0] = src_connect(&r);
		src_send(fd[0], m.s[0].p, m.s[0].start[1]);
		fd[1] = src_connect(&r);
		src_send(fd[1], s1.p, s1.len);
		HM_CHECK_EQ(drun_join(&r), -EPROTO);
		CHECK_LOG("differs from channel 0");
		src_drain_close(fd[0]);
		src_drain_close(fd[1]);
		drun_free(&r);
		st_free(&s1);
	}

	/* channel 1 never comes */
	hm_dest_params_default(&p);
	p.io_timeout_ms = 200;
	drun_start(&r, &p);
	fd[0] = src_connect(&r);
	src_send(fd[0], m.s[0].p, m.s[0].start[1]);
	HM_CHECK_EQ(drun_join(&r), -ETIMEDOUT);
	CHECK_LOG("did not come");
	src_drain_close(fd[0]);
	drun_free(&r);

	/* the source stalls mid-round */
	drun_start(&r, &p);
	{
		struct hm_wire_chan wc[2];

		src_hello_all(&r, &m, wc);
		src_send(wc[0].fd, m.s[0].p + m.s[0].start[1],
			 m.s[0].start[3] - m.s[0].start[1]);
		HM_CHECK_EQ(drun_join(&r), -ETIMEDOUT);
		CHECK_LOG("nothing received");
		hm_wire_chan_fini(&wc[0]);
		hm_wire_chan_fini(&wc[1]);
	}
	drun_free(&r);

	/* too much RAM: refused in HELLO_ACK */
	hm_dest_params_default(&p);
	p.io_timeout_ms = 3000;
	p.max_ram_bytes = 64 * 4 * PS - 1;
	drun_start(&r, &p);
	{
		struct hm_wire_chan wc;

		HM_CHECK_OK(hm_wire_chan_init(&wc, src_connect(&r), 0, m.sid));
		src_send(wc.fd, m.s[0].p, m.s[0].start[1]);
		HM_CHECK_OK(src_recv(&wc, &msg));
		HM_CHECK_EQ(msg.hdr.type, HM_MSG_HELLO_ACK);
		HM_CHECK_EQ(msg.u.hello_ack.status, EFBIG);
		hm_wire_chan_fini(&wc);
	}
	HM_CHECK_EQ(drun_join(&r), -EFBIG);
	CHECK_LOG("refused");
	HM_CHECK_EQ(hm_dest_nblocks(r.d), 0);
	drun_free(&r);

	/* a HELLO with a bad geometry: ABORT names the rule */
	drun_start(&r, NULL);
	{
		struct hm_wire_chan wc;
		unsigned char *bad = malloc(m.s[0].start[1]);

		HM_CHECK(bad);
		memcpy(bad, m.s[0].p, m.s[0].start[1]);
		bad[HM_WIRE_HDR_SIZE + 4] = 0xe8; /* page size 4096 -> 4328 */
		{	/* sealed again: the decoder's rule is the subject */
			struct iovec v = { bad + HM_WIRE_HDR_SIZE,
					   m.s[0].start[1] - HM_WIRE_HDR_SIZE };

			hm_wire_seal(bad, &v, 1);
		}
		HM_CHECK_OK(hm_wire_chan_init(&wc, src_connect(&r), 0, m.sid));
		src_send(wc.fd, bad, m.s[0].start[1]);
		HM_CHECK_OK(src_recv(&wc, &msg));
		HM_CHECK_EQ(msg.hdr.type, HM_MSG_ABORT);
		HM_CHECK_EQ(msg.u.abort_.reason, EPROTO);
		HM_CHECK(strstr(msg.u.abort_.text, "bad page size"));
		hm_wire_chan_fini(&wc);
		free(bad);
	}
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("bad page size 4328");
	drun_free(&r);

	/* garbage instead of a HELLO */
	drun_start(&r, NULL);
	fd[0] = src_connect(&r);
	{
		static const char http[] =
			"GET / HTTP/1.0\r\n\r\n0123456789abcdef0123";

		src_send(fd[0], http, sizeof(http) - 1);
	}
	src_drain_close(fd[0]);
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("bad magic");
	drun_free(&r);

	mig_free(&m);
	mig_free(&other);
	printf("handshake rules: ok\n");
}

/* The source disconnects at each stage of a 2-channel migration. */
static void test_disconnects(void)
{
	struct hm_wire_chan wc[2];
	struct hm_wire_msg msg;
	struct drun r;
	struct mig m;
	int fd;

	build(&m, 2, 64 * 4 + 3, true);

	/* before HELLO */
	drun_start(&r, NULL);
	fd = src_connect(&r);
	close(fd);
	HM_CHECK_EQ(drun_join(&r), -ECONNRESET);
	CHECK_LOG("disconnected");
	drun_free(&r);

	/* after HELLO on every channel */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	HM_CHECK_EQ(drun_join(&r), -ECONNRESET);
	CHECK_LOG("receiving RAM");
	drun_free(&r);

	/* mid-round: channel 1 done, channel 0 half way, then gone */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send(wc[1].fd, m.s[1].p + m.s[1].start[1],
		 m.s[1].len - m.s[1].start[1]);
	src_send(wc[0].fd, m.s[0].p + m.s[0].start[1],
		 m.s[0].start[m.s[0].n / 2] - m.s[0].start[1] + 100);
	hm_wire_chan_fini(&wc[0]);
	HM_CHECK_EQ(drun_join(&r), -ECONNRESET);
	HM_CHECK(log_has("connection lost") || log_has("disconnected"));
	hm_wire_chan_fini(&wc[1]);
	drun_free(&r);

	/* before COMPLETE: everything but COMPLETE */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send(wc[1].fd, m.s[1].p + m.s[1].start[1],
		 m.s[1].len - m.s[1].start[1]);
	src_send(wc[0].fd, m.s[0].p + m.s[0].start[1],
		 m.s[0].start[m.s[0].n - 1] - m.s[0].start[1]);
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	HM_CHECK_EQ(drun_join(&r), -ECONNRESET);
	CHECK_LOG("after END");
	drun_free(&r);

	/* before the ACK: the source stops reading, sends COMPLETE and
	 * goes; the destination cannot acknowledge */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send(wc[1].fd, m.s[1].p + m.s[1].start[1],
		 m.s[1].len - m.s[1].start[1]);
	shutdown(wc[0].fd, SHUT_RD);
	src_send(wc[0].fd, m.s[0].p + m.s[0].start[1],
		 m.s[0].len - m.s[0].start[1]);
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	HM_CHECK_EQ(drun_join(&r), -ECONNRESET);
	CHECK_LOG("cannot acknowledge completion");
	drun_free(&r);

	/* after the ACK: a completed migration */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send_all(wc, &m);
	HM_CHECK_OK(src_recv(&wc[0], &msg));
	HM_CHECK_EQ(msg.hdr.type, HM_MSG_COMPLETE_ACK);
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	HM_CHECK_EQ(drun_join(&r), 0);
	check_ram(r.d, &m);
	drun_free(&r);

	/* after the ACK, an invalid verify request: an error */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send_all(wc, &m);
	HM_CHECK_OK(src_recv(&wc[0], &msg));
	{
		unsigned char ib[16];
		uint64_t pg = m.geo.npages;
		struct iovec iov = { .iov_base = ib, .iov_len = 16 };

		hm_wire_enc_pages_index(ib, sizeof(ib), &pg, 1);
		HM_CHECK_OK(hm_wire_send(&wc[0], HM_MSG_VERIFY_REQ, 0, &iov,
					 1));
	}
	HM_CHECK_EQ(drun_join(&r), -EPROTO);
	CHECK_LOG("after completion");
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	drun_free(&r);

	/* after the ACK, the source ends with ABORT: done */
	drun_start(&r, NULL);
	src_hello_all(&r, &m, wc);
	src_send_all(wc, &m);
	HM_CHECK_OK(src_recv(&wc[0], &msg));
	{
		unsigned char ab[32];
		long k = hm_wire_enc_abort(ab, sizeof(ab), 0, "bye");
		struct iovec iov = { .iov_base = ab, .iov_len = (size_t)k };

		HM_CHECK_OK(hm_wire_send(&wc[0], HM_MSG_ABORT, 0, &iov, 1));
	}
	HM_CHECK_EQ(drun_join(&r), 0);
	CHECK_LOG("ended the session: bye");
	hm_wire_chan_fini(&wc[0]);
	hm_wire_chan_fini(&wc[1]);
	drun_free(&r);

	mig_free(&m);
	printf("disconnect at every stage: ok\n");
}

/* hm_dest_run with an address, and its argument checks. */
static void test_api(void)
{
	struct hm_dest *d = hm_dest_new(NULL, NULL);
	struct hm_dest_stats st;
	size_t len = 1;

	HM_CHECK(d);
	HM_CHECK_EQ(hm_dest_run(d, "bogus:x"), -EINVAL);
	HM_CHECK_EQ(hm_dest_run_fd(d, -1), -EINVAL);
	HM_CHECK_EQ(hm_dest_nblocks(d), 0);
	HM_CHECK(!hm_dest_block(d, 0, NULL));
	HM_CHECK(!hm_dest_device_state(d, &len) && len == 0);
	hm_dest_get_stats(d, &st);
	HM_CHECK_EQ(st.channels, 0);
	hm_dest_free(d);
	hm_dest_free(NULL);
}

int main(void)
{
	const char *v = getenv("HM_TEST_VERBOSE");

	verbose = v && *v && strcmp(v, "0");
	test_api();
	test_valid(1, false, false, false, HM_DEST_FILL_AUTO);
	test_valid(1, false, false, false, HM_DEST_FILL_WRITE);
	test_valid(4, true, false, false, HM_DEST_FILL_UFFD);
	test_valid(4, true, false, false, HM_DEST_FILL_WRITE);
	test_valid(3, true, true, false, HM_DEST_FILL_AUTO);
	test_valid(2, false, true, false, HM_DEST_FILL_WRITE);
	test_valid(2, false, true, true, HM_DEST_FILL_AUTO);
	test_hello_rules();
	test_disconnects();
	test_hostile_pages();
	test_hostile_multichannel();
	test_truncated();
	test_corrupt_header();
	printf("dest: all checks passed\n");
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * src/migrate/wire/ owns what crosses between source and destination:
 * this file the protocol, crc32c.c its checksum (R16), transport.c the
 * UNIX/TCP connections, auth.c the key's proof (R17), tls.c TLS (R18),
 * gate.c the destination's handshakes.
 *
 * Wire protocol v2: header and payload codecs, the validating decoder and
 * the per-connection channel (docs/protocol.md is the specification; keep
 * the two in step).
 *
 * The decoder never trusts a byte: every count, index and length is checked
 * against the payload length and the HELLO geometry before a pointer into
 * the payload is handed out. It does not allocate and does not decompress
 * (the destination decompresses into a buffer of exactly the checked size).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hm_config.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/wire.h"
#include "migrate/wire/crc32c.h"
#include "migrate/wire/le.h"
#include "migrate/wire/tls.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

#define HELLO_FIXED 24u
#define HELLO_BLOCK 88u
#define INDEX_PREFIX 8u /* count u32 + reserved u32 */
#define MAX_SEND_IOV HM_WIRE_MAX_SEND_IOV

/* ---- names --------------------------------------------------------------- */

static const char *const type_names[HM_MSG_TYPE_MAX] = {
	[HM_MSG_HELLO] = "HELLO",
	[HM_MSG_HELLO_ACK] = "HELLO_ACK",
	[HM_MSG_PAGES] = "PAGES",
	[HM_MSG_ZERO_RUN] = "ZERO_RUN",
	[HM_MSG_ROUND] = "ROUND",
	[HM_MSG_DEVICE_STATE] = "DEVICE_STATE",
	[HM_MSG_END] = "END",
	[HM_MSG_COMPLETE] = "COMPLETE",
	[HM_MSG_COMPLETE_ACK] = "COMPLETE_ACK",
	[HM_MSG_VERIFY_REQ] = "VERIFY_REQ",
	[HM_MSG_VERIFY_DATA] = "VERIFY_DATA",
	[HM_MSG_ABORT] = "ABORT",
};

const char *hm_wire_type_name(unsigned type)
{
	if (type >= HM_MSG_TYPE_MAX || !type_names[type])
		return "?";
	return type_names[type];
}

/* Per-type rules as a table: header flags allowed, whether the message
 * needs the session geometry, whether it is confined to channel 0, and
 * its payload length (exact, or a minimum when var). */
struct msg_rule {
	uint32_t flags;
	bool needs_geo;
	bool chan0;
	bool var;
	uint32_t len;
};

static const struct msg_rule rules[HM_MSG_TYPE_MAX] = {
	[HM_MSG_HELLO] = { HM_HELLO_ZSTD, false, false, true, HELLO_FIXED },
	[HM_MSG_HELLO_ACK] = { 0, false, false, false, 4 },
	[HM_MSG_PAGES] = { HM_BATCH_ZSTD, true, false, true, INDEX_PREFIX },
	[HM_MSG_ZERO_RUN] = { 0, true, false, false, 16 },
	[HM_MSG_ROUND] = { 0, true, false, false, 16 },
	[HM_MSG_DEVICE_STATE] = { 0, true, true, true, 0 },
	[HM_MSG_END] = { 0, true, false, false, 8 },
	[HM_MSG_COMPLETE] = { 0, true, true, false, 8 },
	[HM_MSG_COMPLETE_ACK] = { 0, true, true, false, 16 },
	[HM_MSG_VERIFY_REQ] = { 0, true, true, true, INDEX_PREFIX },
	[HM_MSG_VERIFY_DATA] = { 0, true, true, true, INDEX_PREFIX },
	[HM_MSG_ABORT] = { 0, false, false, true, 8 },
};

__attribute__((format(printf, 3, 4))) static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

uint32_t hm_wire_max_pages(unsigned type, uint32_t page_size)
{
	uint64_t fit, lim;

	if (type == HM_MSG_PAGES)
		lim = HM_WIRE_MAX_BATCH_PAGES;
	else if (type == HM_MSG_VERIFY_REQ || type == HM_MSG_VERIFY_DATA)
		lim = HM_WIRE_MAX_VERIFY_PAGES;
	else
		return 0;
	if (page_size == 0)
		return 0;
	fit = (HM_WIRE_MAX_PAYLOAD - INDEX_PREFIX) / ((uint64_t)page_size + 8);
	return (uint32_t)(fit < lim ? fit : lim);
}

/* ---- header -------------------------------------------------------------- */

void hm_wire_put_hdr(void *out, const struct hm_wire_hdr *h)
{
	unsigned char *p = out;

	put32(p + 0, h->magic);
	put16(p + 4, h->version);
	put16(p + 6, h->type);
	put32(p + 8, h->flags);
	put32(p + 12, h->payload_len);
	put16(p + 16, h->channel);
	put16(p + 18, h->reserved0);
	put64(p + 20, h->session_id);
	put32(p + 28, h->seq);
	put32(p + 32, h->crc);
}

static int get_hdr(const void *in, struct hm_wire_hdr *h, char *err,
		   size_t errlen)
{
	const unsigned char *p = in;

	h->magic = get32(p + 0);
	h->version = get16(p + 4);
	h->type = get16(p + 6);
	h->flags = get32(p + 8);
	h->payload_len = get32(p + 12);
	h->channel = get16(p + 16);
	h->reserved0 = get16(p + 18);
	h->session_id = get64(p + 20);
	h->seq = get32(p + 28);
	h->crc = get32(p + 32);
	if (h->magic != HM_WIRE_MAGIC)
		return fail(err, errlen, "bad magic 0x%08x", h->magic);
	if (h->version != HM_WIRE_VERSION)
		return fail(err, errlen, "unsupported version %u (this is %u)",
			    h->version, HM_WIRE_VERSION);
	if (h->type == 0 || h->type >= HM_MSG_TYPE_MAX)
		return fail(err, errlen, "unknown message type %u", h->type);
	if (h->reserved0)
		return fail(err, errlen, "%s: reserved header field not zero",
			    hm_wire_type_name(h->type));
	if (h->payload_len > HM_WIRE_MAX_PAYLOAD)
		return fail(err, errlen, "%s: payload length %u over %u",
			    hm_wire_type_name(h->type), h->payload_len,
			    HM_WIRE_MAX_PAYLOAD);
	if (h->flags & ~rules[h->type].flags)
		return fail(err, errlen, "%s: unknown flags 0x%x",
			    hm_wire_type_name(h->type), h->flags);
	return 0;
}

int hm_wire_get_hdr(const void *in, struct hm_wire_hdr *h)
{
	return get_hdr(in, h, NULL, 0);
}

/* ---- geometry ------------------------------------------------------------ */

int hm_wire_check_geometry(const struct hm_wire_geometry *g, char *err,
			   size_t errlen)
{
	uint64_t sum = 0;

	if (g->page_size < 4096 || g->page_size > (2u << 20) ||
	    (g->page_size & (g->page_size - 1)))
		return fail(err, errlen, "bad page size %u", g->page_size);
	if (g->nblocks == 0 || g->nblocks > HM_WIRE_MAX_BLOCKS)
		return fail(err, errlen, "bad block count %u", g->nblocks);
	if (g->channels == 0 || g->channels > HM_WIRE_MAX_CHANNELS)
		return fail(err, errlen, "bad channel count %u", g->channels);
	for (uint32_t i = 0; i < g->nblocks; i++) {
		const struct hm_ram_block *b = &g->blocks[i];

		if (!memchr(b->name, 0, sizeof(b->name)) || !b->name[0])
			return fail(err, errlen,
				    "block %u: name empty or not terminated",
				    i);
		if (b->gpa % g->page_size || b->len % g->page_size ||
		    b->len == 0)
			return fail(err, errlen,
				    "block %u (%s): gpa 0x%llx len 0x%llx not "
				    "page aligned or empty",
				    i, b->name, (unsigned long long)b->gpa,
				    (unsigned long long)b->len);
		if (b->len > UINT64_MAX - b->gpa)
			return fail(err, errlen,
				    "block %u (%s): gpa + len overflows", i,
				    b->name);
		if (b->first_bit != sum)
			return fail(err, errlen,
				    "block %u (%s): first page %llu, expected "
				    "%llu",
				    i, b->name,
				    (unsigned long long)b->first_bit,
				    (unsigned long long)sum);
		for (uint32_t j = 0; j < i; j++) {
			const struct hm_ram_block *o = &g->blocks[j];

			if (b->gpa < o->gpa + o->len &&
			    o->gpa < b->gpa + b->len)
				return fail(err, errlen,
					    "blocks %u and %u overlap", j, i);
		}
		/* each len/page_size < 2^52 and at most 64 blocks: no
		 * overflow of sum */
		sum += b->len / g->page_size;
	}
	if (g->npages != sum)
		return fail(err, errlen, "npages %llu, blocks hold %llu",
			    (unsigned long long)g->npages,
			    (unsigned long long)sum);
	if (sum > HM_WIRE_MAX_RAM_BYTES / g->page_size)
		return fail(err, errlen, "RAM of %llu pages too large",
			    (unsigned long long)sum);
	return 0;
}

bool hm_wire_geometry_equal(const struct hm_wire_geometry *a,
			    const struct hm_wire_geometry *b)
{
	if (a->page_size != b->page_size || a->nblocks != b->nblocks ||
	    a->channels != b->channels || a->npages != b->npages ||
	    a->nblocks > HM_WIRE_MAX_BLOCKS)
		return false;
	for (uint32_t i = 0; i < a->nblocks; i++) {
		const struct hm_ram_block *x = &a->blocks[i];
		const struct hm_ram_block *y = &b->blocks[i];

		if (strncmp(x->name, y->name, sizeof(x->name)) ||
		    x->gpa != y->gpa || x->len != y->len ||
		    x->first_bit != y->first_bit)
			return false;
	}
	return true;
}

/* ---- encoders ------------------------------------------------------------ */

long hm_wire_enc_hello(void *buf, size_t cap, uint16_t channel_index,
		       const struct hm_wire_geometry *geo)
{
	unsigned char *p = buf;
	size_t need;

	if (!geo || hm_wire_check_geometry(geo, NULL, 0) < 0 ||
	    channel_index >= geo->channels)
		return -EINVAL;
	need = HELLO_FIXED + (size_t)geo->nblocks * HELLO_BLOCK;
	if (cap < need)
		return -ENOSPC;
	memset(p, 0, need);
	put16(p + 0, channel_index);
	put32(p + 4, geo->page_size);
	put32(p + 8, geo->nblocks);
	put32(p + 12, geo->channels);
	put64(p + 16, geo->npages);
	for (uint32_t i = 0; i < geo->nblocks; i++) {
		unsigned char *q = p + HELLO_FIXED + (size_t)i * HELLO_BLOCK;
		const struct hm_ram_block *b = &geo->blocks[i];

		memcpy(q, b->name, strnlen(b->name, HM_BLOCK_NAME_MAX - 1));
		put64(q + 64, b->gpa);
		put64(q + 72, b->len);
		put64(q + 80, b->first_bit);
	}
	return (long)need;
}

long hm_wire_enc_pages_index(void *buf, size_t cap, const uint64_t *pages,
			     uint32_t count)
{
	unsigned char *p = buf;
	size_t need = INDEX_PREFIX + (size_t)count * 8;

	if (count == 0 || count > HM_WIRE_MAX_VERIFY_PAGES || !pages)
		return -EINVAL;
	if (cap < need)
		return -ENOSPC;
	put32(p, count);
	put32(p + 4, 0);
	for (uint32_t i = 0; i < count; i++)
		put64(p + INDEX_PREFIX + 8 * (size_t)i, pages[i]);
	return (long)need;
}

static long enc_two64(void *buf, size_t cap, uint64_t a, uint64_t b)
{
	if (cap < 16)
		return -ENOSPC;
	put64(buf, a);
	put64((unsigned char *)buf + 8, b);
	return 16;
}

long hm_wire_enc_zero_run(void *buf, size_t cap, uint64_t first,
			  uint64_t count)
{
	if (count == 0)
		return -EINVAL;
	return enc_two64(buf, cap, first, count);
}

long hm_wire_enc_round(void *buf, size_t cap, uint64_t round,
		       uint64_t remaining)
{
	return enc_two64(buf, cap, round, remaining);
}

long hm_wire_enc_u32(void *buf, size_t cap, uint32_t v)
{
	if (cap < 4)
		return -ENOSPC;
	put32(buf, v);
	return 4;
}

long hm_wire_enc_u64(void *buf, size_t cap, uint64_t v)
{
	if (cap < 8)
		return -ENOSPC;
	put64(buf, v);
	return 8;
}

long hm_wire_enc_complete_ack(void *buf, size_t cap, uint32_t status,
			      uint64_t pages_received)
{
	unsigned char *p = buf;

	if (cap < 16)
		return -ENOSPC;
	put32(p, status);
	put32(p + 4, 0);
	put64(p + 8, pages_received);
	return 16;
}

long hm_wire_enc_abort(void *buf, size_t cap, uint32_t reason,
		       const char *text)
{
	unsigned char *p = buf;
	size_t n = text ? strnlen(text, HM_WIRE_ABORT_TEXT_MAX) : 0;

	if (cap < 8 + n)
		return -ENOSPC;
	put32(p, reason);
	put32(p + 4, (uint32_t)n);
	memcpy(p + 8, text ? text : "", n);
	return (long)(8 + n);
}

/* ---- decoder ------------------------------------------------------------- */

/* A page index of a message on hdr->channel: inside RAM and on its
 * channel. */
static int check_page(const struct hm_wire_hdr *h,
		      const struct hm_wire_geometry *g, uint64_t pg,
		      uint32_t i, bool channel_rule, char *err, size_t errlen)
{
	if (pg >= g->npages)
		return fail(err, errlen, "%s: page %u of the batch: index %llu "
			    "outside RAM (%llu pages)",
			    hm_wire_type_name(h->type), i,
			    (unsigned long long)pg,
			    (unsigned long long)g->npages);
	if (channel_rule && (pg / 64) % g->channels != h->channel)
		return fail(err, errlen, "%s: page %llu belongs to channel "
			    "%llu, not %u",
			    hm_wire_type_name(h->type), (unsigned long long)pg,
			    (unsigned long long)((pg / 64) % g->channels),
			    h->channel);
	return 0;
}

/* count + indexes, as in PAGES / VERIFY_*: fills *count, *idx and the
 * number of bytes after the index in *rest. */
static int dec_index(const struct hm_wire_hdr *h, const unsigned char *p,
		     const struct hm_wire_geometry *g, bool channel_rule,
		     uint32_t *count, const uint64_t **idx, size_t *rest,
		     char *err, size_t errlen)
{
	uint32_t n = get32(p), max = hm_wire_max_pages(h->type, g->page_size);
	const char *tn = hm_wire_type_name(h->type);
	int r;

	if (get32(p + 4))
		return fail(err, errlen, "%s: reserved field not zero", tn);
	if (n == 0 || n > max)
		return fail(err, errlen, "%s: page count %u not in 1..%u", tn,
			    n, max);
	if ((uint64_t)h->payload_len - INDEX_PREFIX < (uint64_t)n * 8)
		return fail(err, errlen, "%s: %u page indexes do not fit a "
			    "payload of %u bytes", tn, n, h->payload_len);
	for (uint32_t i = 0; i < n; i++) {
		r = check_page(h, g, get64(p + INDEX_PREFIX + 8 * (size_t)i),
			       i, channel_rule, err, errlen);
		if (r < 0)
			return r;
	}
	*count = n;
	*idx = (const uint64_t *)(const void *)(p + INDEX_PREFIX);
	*rest = h->payload_len - INDEX_PREFIX - (size_t)n * 8;
	return 0;
}

static int dec_zstd(const struct hm_wire_hdr *h, const void *data,
		    size_t len, uint64_t want, char *err, size_t errlen)
{
#if HM_HAVE_ZSTD
	unsigned long long fcs;
	size_t csize;

	if (len == 0)
		return fail(err, errlen, "PAGES: empty zstd frame");
	fcs = ZSTD_getFrameContentSize(data, len);
	if (fcs == ZSTD_CONTENTSIZE_ERROR)
		return fail(err, errlen, "PAGES: not a zstd frame");
	if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
		return fail(err, errlen,
			    "PAGES: zstd frame without a content size");
	if (fcs != want)
		return fail(err, errlen, "PAGES: zstd frame of %llu bytes for "
			    "%llu bytes of pages",
			    fcs, (unsigned long long)want);
	csize = ZSTD_findFrameCompressedSize(data, len);
	if (ZSTD_isError(csize) || csize != len)
		return fail(err, errlen, "PAGES: zstd frame does not span the "
			    "%zu data bytes exactly", len);
	(void)h;
	return 0;
#else
	(void)data;
	(void)len;
	(void)want;
	(void)h;
	return fail(err, errlen, "PAGES: zstd batch, but this build has no "
		    "zstd");
#endif
}

static int dec_hello(const struct hm_wire_hdr *h, const unsigned char *p,
		     struct hm_wire_msg *m, char *err, size_t errlen)
{
	struct hm_wire_geometry *g = &m->u.hello.geo;
	uint32_t nb;
	int r;

	memset(g, 0, sizeof(*g));
	m->u.hello.channel_index = get16(p);
	if (get16(p + 2))
		return fail(err, errlen, "HELLO: reserved field not zero");
	g->page_size = get32(p + 4);
	nb = get32(p + 8);
	g->channels = get32(p + 12);
	g->npages = get64(p + 16);
	if (nb == 0 || nb > HM_WIRE_MAX_BLOCKS)
		return fail(err, errlen, "HELLO: bad block count %u", nb);
	if (h->payload_len != HELLO_FIXED + nb * HELLO_BLOCK)
		return fail(err, errlen, "HELLO: payload of %u bytes for %u "
			    "blocks (%u expected)",
			    h->payload_len, nb, HELLO_FIXED + nb * HELLO_BLOCK);
	g->nblocks = nb;
	for (uint32_t i = 0; i < nb; i++) {
		const unsigned char *q = p + HELLO_FIXED + i * HELLO_BLOCK;
		struct hm_ram_block *b = &g->blocks[i];

		/* copied whole: the terminator check happens below */
		memcpy(b->name, q, HM_BLOCK_NAME_MAX);
		b->gpa = get64(q + 64);
		b->len = get64(q + 72);
		b->first_bit = get64(q + 80);
		b->memfd = -1;
	}
	r = hm_wire_check_geometry(g, err, errlen);
	if (r < 0) {
		char tmp[160];

		if (err && errlen) {
			snprintf(tmp, sizeof(tmp), "HELLO: %s", err);
			snprintf(err, errlen, "%s", tmp);
		}
		return r;
	}
	if (m->u.hello.channel_index >= g->channels)
		return fail(err, errlen,
			    "HELLO: channel index %u >= %u channels",
			    m->u.hello.channel_index, g->channels);
	if (h->channel != m->u.hello.channel_index)
		return fail(err, errlen, "HELLO: header channel %u, payload "
			    "channel %u",
			    h->channel, m->u.hello.channel_index);
	return 0;
}

int hm_wire_decode(const struct hm_wire_hdr *h, const void *payload,
		   const struct hm_wire_geometry *g, struct hm_wire_msg *m,
		   char *err, size_t errlen)
{
	const unsigned char *p = payload;
	const struct msg_rule *rule;
	const char *tn;
	size_t rest;
	int r;

	if (err && errlen)
		err[0] = 0;
	if (!h || !m || (h->payload_len && !p))
		return fail(err, errlen, "no message");
	if (h->type == 0 || h->type >= HM_MSG_TYPE_MAX)
		return fail(err, errlen, "unknown message type %u", h->type);
	rule = &rules[h->type];
	tn = hm_wire_type_name(h->type);
	if (h->flags & ~rule->flags)
		return fail(err, errlen, "%s: unknown flags 0x%x", tn,
			    h->flags);
	if (h->payload_len > HM_WIRE_MAX_PAYLOAD)
		return fail(err, errlen, "%s: payload length %u over %u", tn,
			    h->payload_len, HM_WIRE_MAX_PAYLOAD);
	if (rule->var ? h->payload_len < rule->len :
			h->payload_len != rule->len)
		return fail(err, errlen, "%s: payload of %u bytes, %s %u", tn,
			    h->payload_len, rule->var ? "at least" : "expected",
			    rule->len);
	if (rule->needs_geo) {
		if (!g)
			return fail(err, errlen, "%s before HELLO", tn);
		if (h->channel >= g->channels)
			return fail(err, errlen,
				    "%s: channel %u >= %u channels", tn,
				    h->channel, g->channels);
	}
	if (rule->chan0 && h->channel != 0)
		return fail(err, errlen, "%s on channel %u (only on 0)", tn,
			    h->channel);
	m->hdr = *h;
	switch (h->type) {
	case HM_MSG_HELLO:
		return dec_hello(h, p, m, err, errlen);
	case HM_MSG_HELLO_ACK:
		m->u.hello_ack.status = get32(p);
		return 0;
	case HM_MSG_PAGES: {
		uint64_t want;

		r = dec_index(h, p, g, true, &m->u.pages.count,
			      &m->u.pages.pages_le, &rest, err, errlen);
		if (r < 0)
			return r;
		want = (uint64_t)m->u.pages.count * g->page_size;
		m->u.pages.data = p + (h->payload_len - rest);
		m->u.pages.data_len = (uint32_t)rest;
		m->u.pages.zstd = h->flags & HM_BATCH_ZSTD;
		m->u.pages.placed = false;
		if (m->u.pages.zstd)
			return dec_zstd(h, m->u.pages.data, rest, want, err,
					errlen);
		if (rest != want)
			return fail(err, errlen, "PAGES: %zu data bytes for %u "
				    "pages of %u",
				    rest, m->u.pages.count, g->page_size);
		return 0;
	}
	case HM_MSG_ZERO_RUN: {
		uint64_t first = get64(p), n = get64(p + 8), last;

		if (n == 0 || first >= g->npages || n > g->npages - first)
			return fail(err, errlen, "ZERO_RUN: pages %llu+%llu "
				    "outside RAM (%llu pages)",
				    (unsigned long long)first,
				    (unsigned long long)n,
				    (unsigned long long)g->npages);
		last = first + n - 1;
		/* every page on this channel: with several channels a run
		 * cannot leave its 64-page word */
		if ((first / 64) % g->channels != h->channel ||
		    (g->channels > 1 && first / 64 != last / 64))
			return fail(err, errlen, "ZERO_RUN: pages %llu..%llu "
				    "not all on channel %u",
				    (unsigned long long)first,
				    (unsigned long long)last, h->channel);
		m->u.zero_run.first = first;
		m->u.zero_run.count = n;
		return 0;
	}
	case HM_MSG_ROUND:
		m->u.round.round = get64(p);
		m->u.round.remaining_pages = get64(p + 8);
		return 0;
	case HM_MSG_DEVICE_STATE:
		m->u.device_state.data = p;
		m->u.device_state.len = h->payload_len;
		return 0;
	case HM_MSG_END:
		m->u.end.pages_sent = get64(p);
		return 0;
	case HM_MSG_COMPLETE:
		m->u.complete.total_pages_sent = get64(p);
		return 0;
	case HM_MSG_COMPLETE_ACK:
		m->u.complete_ack.status = get32(p);
		if (get32(p + 4))
			return fail(err, errlen,
				    "COMPLETE_ACK: reserved field not zero");
		m->u.complete_ack.pages_received = get64(p + 8);
		return 0;
	case HM_MSG_VERIFY_REQ:
		r = dec_index(h, p, g, false, &m->u.verify_req.count,
			      &m->u.verify_req.pages_le, &rest, err, errlen);
		if (r == 0 && rest)
			r = fail(err, errlen, "VERIFY_REQ: %zu bytes after the "
				 "index", rest);
		return r;
	case HM_MSG_VERIFY_DATA:
		r = dec_index(h, p, g, false, &m->u.verify_data.count,
			      &m->u.verify_data.pages_le, &rest, err, errlen);
		if (r < 0)
			return r;
		if (rest != (uint64_t)m->u.verify_data.count * g->page_size)
			return fail(err, errlen, "VERIFY_DATA: %zu data bytes "
				    "for %u pages",
				    rest, m->u.verify_data.count);
		m->u.verify_data.data = p + (h->payload_len - rest);
		return 0;
	case HM_MSG_ABORT: {
		uint32_t n = get32(p + 4);

		m->u.abort_.reason = get32(p);
		if (n > HM_WIRE_ABORT_TEXT_MAX || h->payload_len != 8 + n)
			return fail(err, errlen, "ABORT: text of %u bytes in a "
				    "payload of %u",
				    n, h->payload_len);
		memcpy(m->u.abort_.text, p + 8, n);
		m->u.abort_.text[n] = 0;
		return 0;
	}
	default:
		return fail(err, errlen, "unknown message type %u", h->type);
	}
}

/* ---- channel ------------------------------------------------------------- */

int hm_wire_chan_init(struct hm_wire_chan *c, int fd, uint16_t channel,
		      uint64_t session_id)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (fd < 0)
		return -EBADF;
	c->fd = fd;
	c->channel = channel;
	c->session_id = session_id;
	return 0;
}

void hm_wire_chan_fini(struct hm_wire_chan *c)
{
	hm_tls_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rxbuf);
	c->rxbuf = NULL;
	c->rxcap = 0;
}

void hm_wire_seal(void *hdr, const struct iovec *iov, int iovcnt)
{
	unsigned char *p = hdr;
	uint32_t crc;

	put32(p + 32, 0);
	crc = hm_crc32c(0, p, HM_WIRE_HDR_SIZE);
	for (int i = 0; i < iovcnt; i++)
		crc = hm_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	put32(p + 32, crc);
}

/* The crc a received message should carry: its header with crc 0, then
 * the payload pieces (continued by the caller for placed pages). */
static uint32_t crc_hdr(const unsigned char *hb)
{
	unsigned char z[HM_WIRE_HDR_SIZE];

	memcpy(z, hb, sizeof(z));
	put32(z + 32, 0);
	return hm_crc32c(0, z, sizeof(z));
}

static int crc_mismatch(char *why, size_t whylen, const struct hm_wire_hdr *h,
			uint32_t got)
{
	return fail(why, whylen, "%s: checksum 0x%08x, the message carries "
		    "0x%08x (corrupted on the way)", hm_wire_type_name(h->type),
		    got, h->crc);
}

int hm_wire_send(struct hm_wire_chan *c, uint16_t type, uint32_t flags,
		 const struct iovec *iov, int iovcnt)
{
	struct iovec v[MAX_SEND_IOV + 1];
	unsigned char hb[HM_WIRE_HDR_SIZE];
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = type,
				 .flags = flags,
				 .channel = c->channel,
				 .session_id = c->session_id,
				 .seq = c->tx_seq };
	uint64_t len = 0;
	int r;

	if (iovcnt < 0 || iovcnt > MAX_SEND_IOV || (iovcnt && !iov) ||
	    c->fd < 0)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		len += iov[i].iov_len;
		v[i + 1] = iov[i];
	}
	if (len > HM_WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	h.payload_len = (uint32_t)len;
	hm_wire_put_hdr(hb, &h);
	hm_wire_seal(hb, iov, iovcnt);
	v[0].iov_base = hb;
	v[0].iov_len = sizeof(hb);
	r = c->tls ? hm_tls_sendv_all(c->tls, v, iovcnt + 1)
		    : hm_sendv_all(c->fd, v, iovcnt + 1);
	if (r < 0)
		return r;
	c->tx_seq++;
	c->tx_bytes += sizeof(hb) + len;
	return 0;
}

static int rx_reserve(struct hm_wire_chan *c, size_t need)
{
	size_t cap = c->rxcap ? c->rxcap : 64 * 1024;
	void *p;

	if (need <= c->rxcap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > HM_WIRE_MAX_PAYLOAD)
		cap = HM_WIRE_MAX_PAYLOAD;
	p = realloc(c->rxbuf, cap);
	if (!p)
		return -ENOMEM;
	c->rxbuf = p;
	c->rxcap = cap;
	return 0;
}

/* Receive exactly the bytes of iov[0..n) (consumed as it goes). 0 or
 * -errno as hm_recv_all (-ECONNRESET for EOF: always inside a message). */
static int recv_iov_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr mh = { .msg_iov = iov,
				     .msg_iovlen = (size_t)(n > IOV_MAX ?
							      IOV_MAX : n) };
		ssize_t got;

		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		got = recvmsg(fd, &mh, MSG_WAITALL);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ?
				       -ETIMEDOUT :
				       -errno;
		}
		if (got == 0)
			return -ECONNRESET;
		while (n > 0 && (size_t)got >= iov->iov_len) {
			got -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0 && got) {
			iov->iov_base = (char *)iov->iov_base + got;
			iov->iov_len -= (size_t)got;
		}
	}
	return 0;
}

/* The channel's bytes: through TLS when it has a session (R18). */
static int chan_recv_all(struct hm_wire_chan *c, void *buf, size_t len)
{
	int r;

	if (!c->tls)
		return hm_recv_all(c->fd, buf, len);
	r = hm_tls_recv_all(c->tls, buf, len);
	if (r == -EPROTO)
		snprintf(c->err, sizeof(c->err), "at byte %llu: %s",
			 (unsigned long long)c->rx_msg_offset,
			 hm_tls_error(c->tls));
	return r;
}

static int chan_recv_iov(struct hm_wire_chan *c, struct iovec *iov, int n)
{
	if (!c->tls)
		return recv_iov_all(c->fd, iov, n);
	for (int i = 0; i < n; i++) {
		int r = chan_recv_all(c, iov[i].iov_base, iov[i].iov_len);

		if (r < 0)
			return r == -ENODATA ? -ECONNRESET : r;
	}
	return 0;
}

size_t hm_wire_chan_pending(const struct hm_wire_chan *c)
{
	return hm_tls_pending(c->tls);
}

/* The payload of an uncompressed PAGES message whose header h passed the
 * channel checks: receive count and index into c->rxbuf, decode (every
 * check of hm_wire_decode), then the page data straight into place.
 * Falls back to receiving the whole payload into c->rxbuf and decoding it
 * as usual when the lengths do not add up (the decoder then says why).
 * 0, -EPROTO (why says), or an I/O error. */
static int recv_pages_placed(struct hm_wire_chan *c,
			     const struct hm_wire_hdr *h, uint32_t crc,
			     struct hm_wire_msg *msg, hm_wire_place_fn place,
			     void *ctx, char *why, size_t whylen)
{
	struct iovec iov[HM_WIRE_MAX_BATCH_PAGES], where[HM_WIRE_MAX_BATCH_PAGES];
	const struct hm_wire_geometry *g = c->geo;
	unsigned char *p = c->rxbuf;
	uint64_t ps = g->page_size, pre;
	uint32_t n, max = hm_wire_max_pages(HM_MSG_PAGES, g->page_size);
	int niov = 0, r;

	r = chan_recv_all(c, p, INDEX_PREFIX);
	if (r < 0)
		return r == -ENODATA ? -ECONNRESET : r;
	n = get32(p);
	pre = INDEX_PREFIX + (uint64_t)n * 8;
	if (n == 0 || n > max || n > HM_WIRE_MAX_BATCH_PAGES ||
	    h->payload_len != pre + (uint64_t)n * ps) {
		/* not a well-formed batch: the usual path reports it */
		r = chan_recv_all(c, p + INDEX_PREFIX,
				h->payload_len - INDEX_PREFIX);
		if (r < 0)
			return r == -ENODATA ? -ECONNRESET : r;
		c->rx_bytes += h->payload_len;
		crc = hm_crc32c(crc, p, h->payload_len);
		if (crc != h->crc)
			return crc_mismatch(why, whylen, h, crc);
		return hm_wire_decode(h, p, g, msg, why, whylen);
	}
	r = chan_recv_all(c, p + INDEX_PREFIX, (size_t)n * 8);
	if (r < 0)
		return r == -ENODATA ? -ECONNRESET : r;
	c->rx_bytes += pre;
	/* the decoder reads no page data of an uncompressed batch */
	r = hm_wire_decode(h, p, g, msg, why, whylen);
	if (r < 0)
		return r;
	if (msg->hdr.type != HM_MSG_PAGES || msg->u.pages.zstd ||
	    msg->u.pages.count != n || msg->u.pages.data_len != n * ps)
		return fail(why, whylen, "PAGES: internal: not a plain batch");
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pg = hm_wire_idx(msg->u.pages.pages_le, i);
		unsigned char *dst = place(ctx, pg);

		if (!dst)
			return fail(why, whylen, "PAGES: page %llu refused by "
				    "the receiver",
				    (unsigned long long)pg);
		if (niov && (unsigned char *)iov[niov - 1].iov_base +
					    iov[niov - 1].iov_len ==
				    dst)
			iov[niov - 1].iov_len += ps;
		else
			iov[niov++] = (struct iovec){ .iov_base = dst,
						      .iov_len = ps };
	}
	crc = hm_crc32c(crc, p, pre);
	memcpy(where, iov, (size_t)niov * sizeof(iov[0])); /* iov is consumed */
	r = chan_recv_iov(c, iov, niov);
	if (r < 0)
		return r;
	c->rx_bytes += (uint64_t)n * ps;
	/* the pages are in place already: a mismatch fails the migration,
	 * whose destination then never runs (R8) */
	for (int i = 0; i < niov; i++)
		crc = hm_crc32c(crc, where[i].iov_base, where[i].iov_len);
	if (crc != h->crc)
		return crc_mismatch(why, whylen, h, crc);
	msg->u.pages.data = NULL;
	msg->u.pages.placed = true;
	return 0;
}

int hm_wire_recv(struct hm_wire_chan *c, struct hm_wire_msg *msg)
{
	return hm_wire_recv_place(c, msg, NULL, NULL);
}

int hm_wire_recv_place(struct hm_wire_chan *c, struct hm_wire_msg *msg,
		       hm_wire_place_fn place, void *ctx)
{
	unsigned char hb[HM_WIRE_HDR_SIZE];
	struct hm_wire_hdr h;
	char why[128] = "";
	bool learn = c->session_id == 0;
	uint32_t crc;
	int r;

	c->err[0] = 0;
	c->rx_msg_offset = c->rx_bytes;
	r = chan_recv_all(c, hb, sizeof(hb));
	if (r < 0)
		goto out;
	c->rx_bytes += sizeof(hb);
	r = get_hdr(hb, &h, why, sizeof(why));
	if (r < 0)
		goto bad;
	crc = crc_hdr(hb);
	if (h.seq != c->rx_seq) {
		r = fail(why, sizeof(why),
			 "%s: sequence number %u, expected %u",
			 hm_wire_type_name(h.type), h.seq, c->rx_seq);
		goto bad;
	}
	if (learn && h.payload_len > HELLO_FIXED +
				     HM_WIRE_MAX_BLOCKS * HELLO_BLOCK) {
		/* before anything is allocated for an unknown peer */
		r = fail(why, sizeof(why), "%s of %u bytes where a HELLO "
			 "(at most %u) must come first",
			 hm_wire_type_name(h.type), h.payload_len,
			 HELLO_FIXED + HM_WIRE_MAX_BLOCKS * HELLO_BLOCK);
		goto bad;
	}
	if (learn && (h.type != HM_MSG_HELLO || h.session_id == 0)) {
		r = fail(why, sizeof(why), "%s (session %llu) where a HELLO "
			 "with a non-zero session id must come first",
			 hm_wire_type_name(h.type),
			 (unsigned long long)h.session_id);
		goto bad;
	}
	if (!learn && h.session_id != c->session_id) {
		r = fail(why, sizeof(why), "%s: session id %llu, expected %llu",
			 hm_wire_type_name(h.type),
			 (unsigned long long)h.session_id,
			 (unsigned long long)c->session_id);
		goto bad;
	}
	if (!learn && h.channel != c->channel) {
		r = fail(why, sizeof(why), "%s: channel %u on connection of "
			 "channel %u",
			 hm_wire_type_name(h.type), h.channel, c->channel);
		goto bad;
	}
	if (learn) {
		/* a well-formed HELLO header: adopt its session and channel
		 * now, so that the receiver can answer an invalid payload
		 * with an ABORT the peer recognises */
		c->session_id = h.session_id;
		c->channel = h.channel;
	}
	r = rx_reserve(c, h.payload_len);
	if (r < 0)
		goto out;
	if (place && c->geo && h.type == HM_MSG_PAGES &&
	    !(h.flags & HM_BATCH_ZSTD) && h.payload_len >= INDEX_PREFIX &&
	    h.payload_len <= HM_WIRE_MAX_PAYLOAD) {
		r = recv_pages_placed(c, &h, crc, msg, place, ctx, why,
				      sizeof(why));
		if (r == -EPROTO && why[0])
			goto bad;
		if (r < 0)
			goto out;
		c->rx_seq++;
		goto out;
	}
	if (h.payload_len) {
		r = chan_recv_all(c, c->rxbuf, h.payload_len);
		if (r == -ENODATA)
			r = -ECONNRESET; /* EOF inside a message */
		if (r < 0)
			goto out;
		c->rx_bytes += h.payload_len;
		crc = hm_crc32c(crc, c->rxbuf, h.payload_len);
	}
	if (crc != h.crc) {
		r = crc_mismatch(why, sizeof(why), &h, crc);
		goto bad;
	}
	r = hm_wire_decode(&h, c->rxbuf, c->geo, msg, why, sizeof(why));
	if (r < 0)
		goto bad;
	c->rx_seq++;
	goto out;
bad:
	snprintf(c->err, sizeof(c->err), "seq %u at byte %llu: %s", c->rx_seq,
		 (unsigned long long)c->rx_msg_offset, why);
out:
	return r;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit test of src/migrate/wire.c and transport.c: every message type
 * encoded and decoded back; every validation rule of the decoder given an
 * input that breaks it (and only it); the channel layer's sequence,
 * session and EOF handling over a socketpair; transport address parsing
 * and the socket helpers' error mapping.
 *
 * Payloads are copied into exactly-sized heap buffers before decoding, so
 * that under ASan a decoder reading one byte too far is caught.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "hm_config.h"
#include "hm_test.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/wire.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

#define PS 4096u

static int verbose;

/* Two blocks, 4 channels: block "ram0" 300 pages at gpa 0, block "ram1"
 * 200 pages at 4 GiB. */
static void geo_init(struct hm_wire_geometry *g)
{
	memset(g, 0, sizeof(*g));
	g->page_size = PS;
	g->nblocks = 2;
	g->channels = 4;
	g->npages = 500;
	strcpy(g->blocks[0].name, "ram0");
	g->blocks[0].gpa = 0;
	g->blocks[0].len = 300 * PS;
	g->blocks[0].first_bit = 0;
	strcpy(g->blocks[1].name, "ram1");
	g->blocks[1].gpa = UINT64_C(4) << 30;
	g->blocks[1].len = 200 * PS;
	g->blocks[1].first_bit = 300;
}

/* Channel of page pg in geometry g. */
static uint16_t chan_of(const struct hm_wire_geometry *g, uint64_t pg)
{
	return (uint16_t)((pg / 64) % g->channels);
}

/* Field by field (the struct has padding). */
static int hdr_eq(const struct hm_wire_hdr *a, const struct hm_wire_hdr *b)
{
	return a->magic == b->magic && a->version == b->version &&
	       a->type == b->type && a->flags == b->flags &&
	       a->payload_len == b->payload_len && a->channel == b->channel &&
	       a->reserved0 == b->reserved0 &&
	       a->session_id == b->session_id && a->seq == b->seq &&
	       a->crc == b->crc;
}

/* Build a header for (type, flags, channel, len), run it through
 * put/get, then decode a heap copy of the payload. Returns the decoder's
 * (or the header check's) result; err receives the message. */
static int dec_full(uint16_t type, uint32_t flags, uint16_t channel,
		    const void *payload, size_t len,
		    const struct hm_wire_geometry *g, struct hm_wire_msg *m,
		    char *err, size_t errlen)
{
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = type,
				 .flags = flags,
				 .payload_len = (uint32_t)len,
				 .channel = channel,
				 .session_id = 42,
				 .seq = 7 };
	unsigned char hb[HM_WIRE_HDR_SIZE];
	struct hm_wire_hdr back;
	static void *copy; /* kept until the next call: m points into it */
	int r;

	err[0] = 0;
	hm_wire_put_hdr(hb, &h);
	r = hm_wire_get_hdr(hb, &back);
	if (r < 0) {
		snprintf(err, errlen, "header rejected");
		return r;
	}
	HM_CHECK(hdr_eq(&h, &back));
	free(copy);
	copy = malloc(len ? len : 1);
	HM_CHECK(copy);
	if (len)
		memcpy(copy, payload, len);
	r = hm_wire_decode(&back, copy, g, m, err, errlen);
	if (r == 0 && type == HM_MSG_PAGES && !m->u.pages.zstd)
		HM_CHECK((const unsigned char *)m->u.pages.data ==
			 (unsigned char *)copy + len - m->u.pages.data_len);
	return r;
}

static struct hm_wire_msg msg;
static char err[256];

static int dec(uint16_t type, uint32_t flags, uint16_t channel,
	       const void *payload, size_t len,
	       const struct hm_wire_geometry *g)
{
	return dec_full(type, flags, channel, payload, len, g, &msg, err,
			sizeof(err));
}

#define EXPECT_OK(call)                                                     \
	do {                                                                \
		int _r = (call);                                            \
		if (_r != 0)                                                \
			hm_test_fail("%s: %d (%s)", #call, _r, err);        \
	} while (0)

/* A rejection must be -EPROTO with a description. */
#define EXPECT_REJECT(call)                                                 \
	do {                                                                \
		int _r;                                                     \
		err[0] = 0;                                                 \
		_r = (call);                                                \
		if (_r != -EPROTO)                                          \
			hm_test_fail("%s accepted (%d), expected -EPROTO",  \
				     #call, _r);                            \
		if (!err[0])                                                \
			hm_test_fail("%s: no error text", #call);           \
		if (verbose)                                                \
			fprintf(stderr, "  rejected: %s\n", err);           \
	} while (0)

/* ---- header ------------------------------------------------------------ */

static void test_header(void)
{
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = HM_MSG_ROUND,
				 .payload_len = 16,
				 .channel = 3,
				 .session_id = UINT64_C(0x1122334455667788),
				 .seq = 0xa1b2c3d4 };
	unsigned char b[HM_WIRE_HDR_SIZE], c[HM_WIRE_HDR_SIZE];
	struct hm_wire_hdr o;
	static const unsigned char expect[HM_WIRE_HDR_SIZE] = {
		'H', 'M', 'W', '1', 2, 0, HM_MSG_ROUND, 0, 0, 0, 0, 0,
		16, 0, 0, 0, 3, 0, 0, 0, 0x88, 0x77, 0x66, 0x55,
		0x44, 0x33, 0x22, 0x11, 0xd4, 0xc3, 0xb2, 0xa1, 0, 0, 0, 0,
	};

	hm_wire_put_hdr(b, &h);
	/* the documented byte layout, little-endian */
	HM_CHECK(memcmp(b, expect, sizeof(b)) == 0);
	HM_CHECK_EQ(hm_wire_get_hdr(b, &o), 0);
	HM_CHECK(hdr_eq(&o, &h));

	/* each header rule alone */
	for (int k = 0; k < 9; k++) {
		struct hm_wire_hdr x = h;

		switch (k) {
		case 0: x.magic ^= 1; break;
		case 1: x.version = 1; break; /* the version before crc */
		case 2: x.version = 0; break;
		case 3: x.type = 0; break;
		case 4: x.type = HM_MSG_TYPE_MAX; break;
		case 5: x.reserved0 = 1; break;
		case 6: x.version = 3; break;
		case 7: x.payload_len = HM_WIRE_MAX_PAYLOAD + 1; break;
		case 8: x.flags = 1; break; /* ROUND has no flags */
		}
		memcpy(c, b, sizeof(c));
		hm_wire_put_hdr(c, &x);
		if (hm_wire_get_hdr(c, &o) != -EPROTO)
			hm_test_fail("header rule %d not enforced", k);
	}
	/* the largest payload is fine */
	h.payload_len = HM_WIRE_MAX_PAYLOAD;
	hm_wire_put_hdr(b, &h);
	HM_CHECK_EQ(hm_wire_get_hdr(b, &o), 0);
	/* allowed flags per type */
	h.type = HM_MSG_PAGES;
	h.flags = HM_BATCH_ZSTD;
	hm_wire_put_hdr(b, &h);
	HM_CHECK_EQ(hm_wire_get_hdr(b, &o), 0);
	h.flags = 2;
	hm_wire_put_hdr(b, &h);
	HM_CHECK_EQ(hm_wire_get_hdr(b, &o), -EPROTO);
	h.type = HM_MSG_HELLO;
	h.flags = HM_HELLO_ZSTD;
	hm_wire_put_hdr(b, &h);
	HM_CHECK_EQ(hm_wire_get_hdr(b, &o), 0);

	HM_CHECK(!strcmp(hm_wire_type_name(HM_MSG_VERIFY_DATA),
			 "VERIFY_DATA"));
	HM_CHECK(!strcmp(hm_wire_type_name(0), "?"));
	HM_CHECK(!strcmp(hm_wire_type_name(999), "?"));
}

/* ---- HELLO and geometry ------------------------------------------------ */

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void test_hello(void)
{
	struct hm_wire_geometry g, bad;
	unsigned char buf[24 + 88 * HM_WIRE_MAX_BLOCKS + 16];
	unsigned char b2[sizeof(buf)];
	long n;

	geo_init(&g);
	HM_CHECK_EQ(hm_wire_check_geometry(&g, err, sizeof(err)), 0);
	n = hm_wire_enc_hello(buf, sizeof(buf), 2, &g);
	HM_CHECK_EQ(n, 24 + 2 * 88);
	HM_CHECK_EQ(hm_wire_enc_hello(buf, (size_t)n - 1, 2, &g), -ENOSPC);
	HM_CHECK_EQ(hm_wire_enc_hello(buf, sizeof(buf), 4, &g), -EINVAL);
	EXPECT_OK(dec(HM_MSG_HELLO, 0, 2, buf, (size_t)n, NULL));
	HM_CHECK_EQ(msg.u.hello.channel_index, 2);
	HM_CHECK(hm_wire_geometry_equal(&msg.u.hello.geo, &g));
	HM_CHECK_EQ(msg.u.hello.geo.blocks[1].memfd, -1);
	HM_CHECK(!strcmp(msg.u.hello.geo.blocks[1].name, "ram1"));
	EXPECT_OK(dec(HM_MSG_HELLO, HM_HELLO_ZSTD, 2, buf, (size_t)n, NULL));
	HM_CHECK_EQ(msg.hdr.flags, HM_HELLO_ZSTD);
	/* a geometry given to HELLO does not matter */
	EXPECT_OK(dec(HM_MSG_HELLO, 0, 2, buf, (size_t)n, &g));

	/* header channel must match the payload's channel index */
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 1, buf, (size_t)n, NULL));
	/* payload length must match the block count exactly */
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, buf, (size_t)n - 1, NULL));
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, buf, 23, NULL));
	memcpy(b2, buf, (size_t)n);
	b2[n] = 0;
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n + 1, NULL));
	/* reserved field */
	memcpy(b2, buf, (size_t)n);
	b2[2] = 1;
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n, NULL));
	/* nblocks patched: 0, 1 (length mismatch), 65 */
	for (uint32_t nb = 0; nb <= 3; nb++) {
		if (nb == 2)
			continue;
		memcpy(b2, buf, (size_t)n);
		put_le32(b2 + 8, nb == 3 ? HM_WIRE_MAX_BLOCKS + 1 : nb);
		EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n, NULL));
	}
	/* name not NUL-terminated: 64 non-zero bytes */
	memcpy(b2, buf, (size_t)n);
	memset(b2 + 24, 'x', 64);
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n, NULL));
	/* empty name */
	memcpy(b2, buf, (size_t)n);
	memset(b2 + 24 + 88, 0, 64);
	EXPECT_REJECT(dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n, NULL));

	/* geometry rules, each alone, through the encoder's bytes */
	for (int k = 0; k < 19; k++) {
		size_t bo = 24 + 88; /* block 1 */

		memcpy(b2, buf, (size_t)n);
		switch (k) {
		case 0: put_le32(b2 + 4, 2048); break;		/* page size */
		case 1: put_le32(b2 + 4, 4 << 20); break;
		case 2: put_le32(b2 + 4, 12288); break;		/* not pow2 */
		case 3: put_le32(b2 + 4, 0); break;
		case 4: put_le32(b2 + 12, 0); break;		/* channels */
		case 5: put_le32(b2 + 12, HM_WIRE_MAX_CHANNELS + 1); break;
		case 6: put_le32(b2 + 12, 2); break;	/* index 2 >= 2 */
		case 7: put_le64(b2 + 16, 499); break;		/* npages */
		case 8: put_le64(b2 + 16, 501); break;
		case 9: put_le64(b2 + bo + 64, 4096 * 1000 + 512); break;
		case 10: put_le64(b2 + bo + 72, 200 * PS + 1); break;
		case 11: put_le64(b2 + bo + 72, 0); break;	/* empty */
		case 12: put_le64(b2 + bo + 64, 299 * PS); break; /* overlap */
		case 13: put_le64(b2 + bo + 64, 0); break;	/* same base */
		case 14: put_le64(b2 + bo + 80, 299); break;	/* first_bit */
		case 15: put_le64(b2 + 24 + 80, 1); break;
		case 16: /* gpa + len wraps */
			put_le64(b2 + bo + 64, UINT64_MAX - PS + 1);
			put_le64(b2 + bo + 72, 2 * PS);
			put_le64(b2 + 16, 302);
			break;
		case 17: /* RAM over HM_WIRE_MAX_RAM_BYTES */
			put_le64(b2 + bo + 72, HM_WIRE_MAX_RAM_BYTES);
			put_le64(b2 + 16,
				 300 + HM_WIRE_MAX_RAM_BYTES / PS);
			break;
		case 18: /* a block below a previous one overlapping it */
			put_le64(b2 + 24 + 64, 8 * PS);
			put_le64(b2 + bo + 64, 0);
			put_le64(b2 + bo + 72, 16 * PS);
			put_le64(b2 + 16, 316);
			break;
		}
		err[0] = 0;
		if (dec(HM_MSG_HELLO, 0, 2, b2, (size_t)n, NULL) != -EPROTO)
			hm_test_fail("geometry rule %d not enforced", k);
		if (verbose)
			fprintf(stderr, "  geometry %d: %s\n", k, err);
	}
	/* every legal page size */
	for (uint32_t ps = 4096; ps <= (2u << 20); ps *= 2) {
		bad = g;
		bad.page_size = ps;
		bad.blocks[0].len = 300ull * ps;
		bad.blocks[1].len = 200ull * ps;
		bad.blocks[1].gpa = UINT64_C(1) << 40;
		HM_CHECK_EQ(hm_wire_check_geometry(&bad, err, sizeof(err)), 0);
	}
	/* encoder refuses an insane geometry */
	bad = g;
	bad.npages = 1;
	HM_CHECK_EQ(hm_wire_enc_hello(buf, sizeof(buf), 0, &bad), -EINVAL);
	/* a long name is cut to 63 bytes + NUL */
	bad = g;
	memset(bad.blocks[0].name, 'n', sizeof(bad.blocks[0].name));
	n = hm_wire_enc_hello(buf, sizeof(buf), 0, &bad);
	HM_CHECK_EQ(n, -EINVAL); /* not terminated: insane */
	/* the largest geometry */
	memset(&bad, 0, sizeof(bad));
	bad.page_size = PS;
	bad.nblocks = HM_WIRE_MAX_BLOCKS;
	bad.channels = HM_WIRE_MAX_CHANNELS;
	for (uint32_t i = 0; i < HM_WIRE_MAX_BLOCKS; i++) {
		snprintf(bad.blocks[i].name, sizeof(bad.blocks[i].name),
			 "block-%u", i);
		bad.blocks[i].gpa = (uint64_t)i << 32;
		bad.blocks[i].len = 2 * PS;
		bad.blocks[i].first_bit = 2ull * i;
	}
	bad.npages = 2 * HM_WIRE_MAX_BLOCKS;
	n = hm_wire_enc_hello(buf, sizeof(buf), 63, &bad);
	HM_CHECK_EQ(n, 24 + 88 * HM_WIRE_MAX_BLOCKS);
	EXPECT_OK(dec(HM_MSG_HELLO, 0, 63, buf, (size_t)n, NULL));
	HM_CHECK(hm_wire_geometry_equal(&msg.u.hello.geo, &bad));
	bad.blocks[5].len = 4 * PS;
	HM_CHECK(!hm_wire_geometry_equal(&msg.u.hello.geo, &bad));
}

/* ---- PAGES, VERIFY ------------------------------------------------------- */

/* count + indexes + data for pages on channel ch of g. */
static size_t mk_pages(unsigned char *buf, size_t cap, const uint64_t *idx,
		       uint32_t n, size_t data_len)
{
	long k = hm_wire_enc_pages_index(buf, cap, idx, n);

	if (k == -EINVAL && n > 0) {
		/* over the encoder's limit: build it by hand */
		k = 8 + 8 * (long)n;
		HM_CHECK((size_t)k <= cap);
		put_le32(buf, n);
		put_le32(buf + 4, 0);
		for (uint32_t i = 0; i < n; i++)
			put_le64(buf + 8 + 8 * i, idx[i]);
	}
	HM_CHECK(k > 0);
	HM_CHECK((size_t)k + data_len <= cap);
	for (size_t i = 0; i < data_len; i++)
		buf[k + (long)i] = (unsigned char)(i * 7 + 1);
	return (size_t)k + data_len;
}

static void test_pages(void)
{
	struct hm_wire_geometry g;
	static unsigned char buf[HM_WIRE_MAX_PAYLOAD + 4096];
	uint64_t idx[HM_WIRE_MAX_VERIFY_PAGES + 1];
	size_t len;
	uint32_t maxp;

	geo_init(&g);
	HM_CHECK_EQ(hm_wire_max_pages(HM_MSG_PAGES, PS),
		    HM_WIRE_MAX_BATCH_PAGES);
	HM_CHECK_EQ(hm_wire_max_pages(HM_MSG_VERIFY_REQ, PS),
		    HM_WIRE_MAX_VERIFY_PAGES);
	HM_CHECK_EQ(hm_wire_max_pages(HM_MSG_PAGES, 2u << 20), 7);
	HM_CHECK_EQ(hm_wire_max_pages(HM_MSG_ROUND, PS), 0);
	HM_CHECK_EQ(hm_wire_max_pages(HM_MSG_PAGES, 0), 0);

	/* pages 64..66 and 320..321 are channel 1 (words 1 and 5) */
	idx[0] = 64;
	idx[1] = 66;
	idx[2] = 320;
	idx[3] = 321;
	HM_CHECK_EQ(chan_of(&g, 320), 1);
	len = mk_pages(buf, sizeof(buf), idx, 4, 4 * PS);
	EXPECT_OK(dec(HM_MSG_PAGES, 0, 1, buf, len, &g));
	HM_CHECK_EQ(msg.u.pages.count, 4);
	HM_CHECK_EQ(msg.u.pages.data_len, 4 * PS);
	HM_CHECK(!msg.u.pages.zstd);
	/* the index words are read back through hm_wire_idx (unaligned) */
	{
		unsigned char *odd = malloc(len + 1);
		struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
					 .version = 1,
					 .type = HM_MSG_PAGES,
					 .payload_len = (uint32_t)len,
					 .channel = 1 };

		HM_CHECK(odd);
		memcpy(odd + 1, buf, len);
		HM_CHECK_EQ(hm_wire_decode(&h, odd + 1, &g, &msg, err,
					   sizeof(err)),
			    0);
		for (uint32_t i = 0; i < 4; i++)
			HM_CHECK_EQ(hm_wire_idx(msg.u.pages.pages_le, i),
				    idx[i]);
		HM_CHECK(((const unsigned char *)msg.u.pages.data)[0] == 1);
		free(odd);
	}
	/* duplicates within a batch are legal (the later copy wins) */
	idx[1] = 64;
	len = mk_pages(buf, sizeof(buf), idx, 2, 2 * PS);
	EXPECT_OK(dec(HM_MSG_PAGES, 0, 1, buf, len, &g));

	/* wrong channel, out of range, last page ok */
	idx[0] = 0;
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 1, buf, len, &g));
	EXPECT_OK(dec(HM_MSG_PAGES, 0, 0, buf, len, &g));
	idx[0] = 499; /* word 7 -> channel 3 */
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_OK(dec(HM_MSG_PAGES, 0, 3, buf, len, &g));
	idx[0] = 500;
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 3, buf, len, &g));
	idx[0] = UINT64_MAX;
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 3, buf, len, &g));
	/* a bad index at the end of a long batch */
	for (uint32_t i = 0; i < 64; i++)
		idx[i] = 128 + i; /* word 2: channel 2 */
	idx[63] = 192; /* word 3 */
	len = mk_pages(buf, sizeof(buf), idx, 64, 64 * PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 2, buf, len, &g));
	/* header channel beyond the geometry */
	idx[0] = 0;
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 4, buf, len, &g));

	/* data length: one byte short / long, none */
	idx[0] = 1;
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len - 1, &g));
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len + 1, &g));
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, 16, &g));
	/* truncated: the index does not fit */
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, 12, &g));
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, 7, &g));
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, 0, &g));
	/* count 0 and count over the maximum */
	put_le32(buf, 0);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, 8, &g));
	/* a big count whose index would not fit: rejected before reading */
	put_le32(buf, 0xffffffffu);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len, &g));
	/* reserved field after count */
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	buf[5] = 1;
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len, &g));
	/* PAGES without a geometry */
	len = mk_pages(buf, sizeof(buf), idx, 1, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len, NULL));

	/* the largest batch, and one more page: use a 1-channel geometry
	 * with enough pages */
	{
		struct hm_wire_geometry g1;

		geo_init(&g1);
		g1.channels = 1;
		maxp = hm_wire_max_pages(HM_MSG_PAGES, PS);
		for (uint32_t i = 0; i <= maxp; i++)
			idx[i] = i;
		len = mk_pages(buf, sizeof(buf), idx, maxp, (size_t)maxp * PS);
		EXPECT_OK(dec(HM_MSG_PAGES, 0, 0, buf, len, &g1));
		len = mk_pages(buf, sizeof(buf), idx, maxp + 1,
			       (size_t)(maxp + 1) * PS);
		EXPECT_REJECT(dec(HM_MSG_PAGES, 0, 0, buf, len, &g1));

		/* VERIFY_REQ: any channel's pages, on channel 0 only */
		maxp = hm_wire_max_pages(HM_MSG_VERIFY_REQ, PS);
		for (uint32_t i = 0; i <= maxp; i++)
			idx[i] = i % 500;
		len = mk_pages(buf, sizeof(buf), idx, maxp, 0);
		EXPECT_OK(dec(HM_MSG_VERIFY_REQ, 0, 0, buf, len, &g));
		HM_CHECK_EQ(msg.u.verify_req.count, maxp);
		HM_CHECK_EQ(hm_wire_idx(msg.u.verify_req.pages_le, 499), 499);
		EXPECT_REJECT(dec(HM_MSG_VERIFY_REQ, 0, 1, buf, len, &g));
		EXPECT_REJECT(dec(HM_MSG_VERIFY_REQ, 0, 0, buf, len + 8, &g));
		len = mk_pages(buf, sizeof(buf), idx, maxp + 1, 0);
		EXPECT_REJECT(dec(HM_MSG_VERIFY_REQ, 0, 0, buf, len, &g));
		idx[3] = 500;
		len = mk_pages(buf, sizeof(buf), idx, 4, 0);
		EXPECT_REJECT(dec(HM_MSG_VERIFY_REQ, 0, 0, buf, len, &g));
		idx[3] = 3;
		len = mk_pages(buf, sizeof(buf), idx, 4, 0);
		EXPECT_REJECT(dec(HM_MSG_VERIFY_REQ, 0, 0, buf, len - 1, &g));

		/* VERIFY_DATA */
		len = mk_pages(buf, sizeof(buf), idx, 4, 4 * PS);
		EXPECT_OK(dec(HM_MSG_VERIFY_DATA, 0, 0, buf, len, &g));
		HM_CHECK_EQ(msg.u.verify_data.count, 4);
		EXPECT_REJECT(dec(HM_MSG_VERIFY_DATA, 0, 0, buf, len - 1, &g));
		EXPECT_REJECT(dec(HM_MSG_VERIFY_DATA, 0, 0, buf, len + 1, &g));
		EXPECT_REJECT(dec(HM_MSG_VERIFY_DATA, 0, 2, buf, len, &g));
		EXPECT_REJECT(dec(HM_MSG_VERIFY_DATA, 0, 0, buf, len, NULL));
	}
	HM_CHECK_EQ(hm_wire_enc_pages_index(buf, 15, idx, 1), -ENOSPC);
	HM_CHECK_EQ(hm_wire_enc_pages_index(buf, sizeof(buf), idx, 0),
		    -EINVAL);
}

#if HM_HAVE_ZSTD
static void test_zstd(void)
{
	struct hm_wire_geometry g;
	static unsigned char data[8 * PS], frame[ZSTD_COMPRESSBOUND(8 * PS)];
	static unsigned char buf[16 + 8 * 8 + sizeof(frame) + 64];
	uint64_t idx[8];
	size_t z, len;
	long k;
	ZSTD_CCtx *cc = ZSTD_createCCtx();

	HM_CHECK(cc);
	geo_init(&g);
	for (uint32_t i = 0; i < 8; i++) {
		idx[i] = 128 + i * 3; /* channel 2 */
		memset(data + i * PS, (int)i + 1, PS);
	}
	/* good: a frame of exactly 8 pages */
	z = ZSTD_compress(frame, sizeof(frame), data, sizeof(data), 1);
	HM_CHECK(!ZSTD_isError(z));
	k = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 8);
	memcpy(buf + k, frame, z);
	len = (size_t)k + z;
	EXPECT_OK(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, len, &g));
	HM_CHECK(msg.u.pages.zstd);
	HM_CHECK_EQ(msg.u.pages.data_len, z);
	/* the same frame for 7 pages: content size mismatch */
	k = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 7);
	memcpy(buf + k, frame, z);
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, (size_t)k + z,
			  &g));
	/* trailing garbage after the frame */
	k = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 8);
	memcpy(buf + k, frame, z);
	buf[k + (long)z] = 0x55;
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf,
			  (size_t)k + z + 1, &g));
	/* truncated frame */
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf,
			  (size_t)k + z - 1, &g));
	/* garbage, and an empty frame */
	memset(buf + k, 0xa5, 64);
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, (size_t)k + 64,
			  &g));
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, (size_t)k, &g));
	/* raw data sent with the zstd flag */
	k = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 1);
	memcpy(buf + k, data, PS);
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, (size_t)k + PS,
			  &g));
	/* a frame that does not declare its content size */
	HM_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(
		cc, ZSTD_c_contentSizeFlag, 0)));
	{
		ZSTD_outBuffer out = { frame, sizeof(frame), 0 };
		ZSTD_inBuffer in = { data, sizeof(data), 0 };
		size_t left = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);

		HM_CHECK(left == 0);
		z = out.pos;
	}
	HM_CHECK_EQ(ZSTD_getFrameContentSize(frame, z),
		    ZSTD_CONTENTSIZE_UNKNOWN);
	k = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 8);
	memcpy(buf + k, frame, z);
	EXPECT_REJECT(dec(HM_MSG_PAGES, HM_BATCH_ZSTD, 2, buf, (size_t)k + z,
			  &g));
	ZSTD_freeCCtx(cc);
}
#endif

/* ---- the small messages --------------------------------------------------- */

static void test_small(void)
{
	struct hm_wire_geometry g;
	unsigned char buf[256], big[300];
	long n;

	geo_init(&g);

	/* HELLO_ACK */
	n = hm_wire_enc_u32(buf, sizeof(buf), 71);
	HM_CHECK_EQ(n, 4);
	EXPECT_OK(dec(HM_MSG_HELLO_ACK, 0, 3, buf, 4, NULL));
	HM_CHECK_EQ(msg.u.hello_ack.status, 71);
	EXPECT_REJECT(dec(HM_MSG_HELLO_ACK, 0, 0, buf, 3, NULL));
	EXPECT_REJECT(dec(HM_MSG_HELLO_ACK, 0, 0, buf, 5, NULL));
	HM_CHECK_EQ(hm_wire_enc_u32(buf, 3, 1), -ENOSPC);

	/* ZERO_RUN: channel 1 owns pages 64..127 and 320..383 */
	n = hm_wire_enc_zero_run(buf, sizeof(buf), 64, 64);
	HM_CHECK_EQ(n, 16);
	EXPECT_OK(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 16, &g));
	HM_CHECK_EQ(msg.u.zero_run.first, 64);
	HM_CHECK_EQ(msg.u.zero_run.count, 64);
	hm_wire_enc_zero_run(buf, sizeof(buf), 64, 65); /* into word 2 */
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 16, &g));
	hm_wire_enc_zero_run(buf, sizeof(buf), 0, 1); /* channel 0's */
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 16, &g));
	hm_wire_enc_zero_run(buf, sizeof(buf), 499, 1);
	EXPECT_OK(dec(HM_MSG_ZERO_RUN, 0, 3, buf, 16, &g));
	hm_wire_enc_zero_run(buf, sizeof(buf), 499, 2); /* past the end */
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 3, buf, 16, &g));
	hm_wire_enc_zero_run(buf, sizeof(buf), 500, 1);
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 3, buf, 16, &g));
	put_le64(buf, 100);
	put_le64(buf + 8, UINT64_MAX); /* first + count wraps */
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 16, &g));
	put_le64(buf + 8, 0); /* empty run */
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 16, &g));
	HM_CHECK_EQ(hm_wire_enc_zero_run(buf, sizeof(buf), 1, 0), -EINVAL);
	EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 1, buf, 15, &g));
	{
		/* one channel: a run may span words and blocks */
		struct hm_wire_geometry g1 = g;

		g1.channels = 1;
		hm_wire_enc_zero_run(buf, sizeof(buf), 0, 500);
		EXPECT_OK(dec(HM_MSG_ZERO_RUN, 0, 0, buf, 16, &g1));
		hm_wire_enc_zero_run(buf, sizeof(buf), 1, 500);
		EXPECT_REJECT(dec(HM_MSG_ZERO_RUN, 0, 0, buf, 16, &g1));
	}

	/* ROUND */
	n = hm_wire_enc_round(buf, sizeof(buf), 5, 123456);
	HM_CHECK_EQ(n, 16);
	EXPECT_OK(dec(HM_MSG_ROUND, 0, 2, buf, 16, &g));
	HM_CHECK_EQ(msg.u.round.round, 5);
	HM_CHECK_EQ(msg.u.round.remaining_pages, 123456);
	EXPECT_REJECT(dec(HM_MSG_ROUND, 0, 2, buf, 17, &g));
	EXPECT_REJECT(dec(HM_MSG_ROUND, 0, 2, buf, 16, NULL));

	/* DEVICE_STATE: any length, channel 0 only */
	memcpy(buf, "device-blob", 11);
	EXPECT_OK(dec(HM_MSG_DEVICE_STATE, 0, 0, buf, 11, &g));
	HM_CHECK_EQ(msg.u.device_state.len, 11);
	EXPECT_OK(dec(HM_MSG_DEVICE_STATE, 0, 0, buf, 0, &g));
	HM_CHECK_EQ(msg.u.device_state.len, 0);
	EXPECT_REJECT(dec(HM_MSG_DEVICE_STATE, 0, 1, buf, 11, &g));
	EXPECT_REJECT(dec(HM_MSG_DEVICE_STATE, 0, 0, buf, 11, NULL));

	/* END, COMPLETE */
	n = hm_wire_enc_u64(buf, sizeof(buf), 987654321);
	HM_CHECK_EQ(n, 8);
	EXPECT_OK(dec(HM_MSG_END, 0, 3, buf, 8, &g));
	HM_CHECK_EQ(msg.u.end.pages_sent, 987654321);
	EXPECT_REJECT(dec(HM_MSG_END, 0, 3, buf, 9, &g));
	EXPECT_OK(dec(HM_MSG_COMPLETE, 0, 0, buf, 8, &g));
	HM_CHECK_EQ(msg.u.complete.total_pages_sent, 987654321);
	EXPECT_REJECT(dec(HM_MSG_COMPLETE, 0, 1, buf, 8, &g));
	EXPECT_REJECT(dec(HM_MSG_COMPLETE, 0, 0, buf, 7, &g));
	HM_CHECK_EQ(hm_wire_enc_u64(buf, 7, 1), -ENOSPC);

	/* COMPLETE_ACK */
	n = hm_wire_enc_complete_ack(buf, sizeof(buf), 5, 777);
	HM_CHECK_EQ(n, 16);
	EXPECT_OK(dec(HM_MSG_COMPLETE_ACK, 0, 0, buf, 16, &g));
	HM_CHECK_EQ(msg.u.complete_ack.status, 5);
	HM_CHECK_EQ(msg.u.complete_ack.pages_received, 777);
	buf[6] = 1;
	EXPECT_REJECT(dec(HM_MSG_COMPLETE_ACK, 0, 0, buf, 16, &g));
	EXPECT_REJECT(dec(HM_MSG_COMPLETE_ACK, 0, 0, buf, 8, &g));

	/* ABORT: no geometry needed, text NUL-terminated on decode */
	n = hm_wire_enc_abort(buf, sizeof(buf), 71, "disk on fire");
	HM_CHECK_EQ(n, 8 + 12);
	EXPECT_OK(dec(HM_MSG_ABORT, 0, 2, buf, (size_t)n, NULL));
	HM_CHECK_EQ(msg.u.abort_.reason, 71);
	HM_CHECK(!strcmp(msg.u.abort_.text, "disk on fire"));
	EXPECT_REJECT(dec(HM_MSG_ABORT, 0, 2, buf, (size_t)n - 1, NULL));
	EXPECT_REJECT(dec(HM_MSG_ABORT, 0, 2, buf, (size_t)n + 1, NULL));
	EXPECT_REJECT(dec(HM_MSG_ABORT, 0, 2, buf, 7, NULL));
	memset(big, 'a', sizeof(big));
	big[sizeof(big) - 1] = 0;
	n = hm_wire_enc_abort(buf, sizeof(buf), 1, (char *)big);
	HM_CHECK_EQ(n, 8 + HM_WIRE_ABORT_TEXT_MAX);
	EXPECT_OK(dec(HM_MSG_ABORT, 0, 0, buf, (size_t)n, NULL));
	HM_CHECK_EQ(strlen(msg.u.abort_.text), HM_WIRE_ABORT_TEXT_MAX);
	put_le32(buf + 4, HM_WIRE_ABORT_TEXT_MAX + 1);
	buf[n] = 'a';
	EXPECT_REJECT(dec(HM_MSG_ABORT, 0, 0, buf, (size_t)n + 1, NULL));
	n = hm_wire_enc_abort(buf, sizeof(buf), 0, NULL);
	HM_CHECK_EQ(n, 8);
	EXPECT_OK(dec(HM_MSG_ABORT, 0, 0, buf, 8, NULL));
	HM_CHECK_EQ(msg.u.abort_.text[0], 0);
	HM_CHECK_EQ(hm_wire_enc_abort(buf, 10, 0, "long text"), -ENOSPC);

	/* oversize payload given straight to the decoder */
	{
		struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
					 .version = 1,
					 .type = HM_MSG_DEVICE_STATE,
					 .payload_len =
						 HM_WIRE_MAX_PAYLOAD + 1 };

		EXPECT_REJECT(hm_wire_decode(&h, buf, &g, &msg, err,
					     sizeof(err)));
		h.type = 0;
		h.payload_len = 0;
		EXPECT_REJECT(hm_wire_decode(&h, buf, &g, &msg, err,
					     sizeof(err)));
		h.type = HM_MSG_ROUND;
		h.flags = 4;
		h.payload_len = 16;
		EXPECT_REJECT(hm_wire_decode(&h, buf, &g, &msg, err,
					     sizeof(err)));
		/* NULL err is allowed */
		HM_CHECK_EQ(hm_wire_decode(&h, buf, &g, &msg, NULL, 0),
			    -EPROTO);
	}
}

/* ---- channel ------------------------------------------------------------- */

/* Write one raw message with explicit header fields, sealed; flip >= 0
 * flips a bit of payload byte flip after sealing (damage on the way). */
static void raw_send_at(int fd, uint16_t type, uint16_t channel, uint64_t sid,
			uint32_t seq, const void *p, uint32_t len, long flip)
{
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = type,
				 .payload_len = len,
				 .channel = channel,
				 .session_id = sid,
				 .seq = seq };
	unsigned char hb[HM_WIRE_HDR_SIZE], *q = malloc(len ? len : 1);
	struct iovec v = { (void *)(uintptr_t)p, len };

	HM_CHECK(q);
	hm_wire_put_hdr(hb, &h);
	hm_wire_seal(hb, &v, len ? 1 : 0);
	if (len)
		memcpy(q, p, len);
	if (flip >= 0)
		q[flip] ^= 0x10;
	HM_CHECK_OK(hm_send_all(fd, hb, sizeof(hb)));
	if (len)
		HM_CHECK_OK(hm_send_all(fd, q, len));
	free(q);
}

static void raw_send(int fd, uint16_t type, uint16_t channel, uint64_t sid,
		     uint32_t seq, const void *p, uint32_t len)
{
	raw_send_at(fd, type, channel, sid, seq, p, len, -1);
}

static void test_chan(void)
{
	struct hm_wire_geometry g;
	struct hm_wire_chan src, dst;
	unsigned char buf[24 + 88 * 2], pl[64];
	struct iovec iov[3];
	int sv[2];
	long n;

	geo_init(&g);
	HM_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	HM_CHECK_OK(hm_transport_set_timeouts(sv[1], 2000));
	HM_CHECK_OK(hm_wire_chan_init(&src, sv[0], 1, 99));
	HM_CHECK_OK(hm_wire_chan_init(&dst, sv[1], 0, 0)); /* learn */
	HM_CHECK_EQ(hm_wire_chan_init(&dst, -1, 0, 0), -EBADF);
	HM_CHECK_OK(hm_wire_chan_init(&dst, sv[1], 0, 0));

	n = hm_wire_enc_hello(buf, sizeof(buf), 1, &g);
	iov[0].iov_base = buf;
	iov[0].iov_len = 10;
	iov[1].iov_base = NULL;
	iov[1].iov_len = 0;
	iov[2].iov_base = buf + 10;
	iov[2].iov_len = (size_t)n - 10;
	HM_CHECK_OK(hm_wire_send(&src, HM_MSG_HELLO, HM_HELLO_ZSTD, iov, 3));
	HM_CHECK_OK(hm_wire_recv(&dst, &msg));
	HM_CHECK_EQ(msg.hdr.type, HM_MSG_HELLO);
	HM_CHECK_EQ(dst.session_id, 99);
	HM_CHECK_EQ(dst.channel, 1);
	HM_CHECK_EQ(dst.rx_seq, 1);
	HM_CHECK_EQ(dst.rx_bytes, HM_WIRE_HDR_SIZE + (size_t)n);
	HM_CHECK_EQ(src.tx_bytes, dst.rx_bytes);
	dst.geo = &g;
	src.geo = &g;

	/* a message with no payload: iovcnt 0 */
	HM_CHECK_OK(hm_wire_send(&src, HM_MSG_DEVICE_STATE, 0, NULL, 0));
	/* DEVICE_STATE is channel-0 only: src is channel 1 -> rejected,
	 * with where it happened in the text */
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	HM_CHECK(strstr(dst.err, "seq 1") && strstr(dst.err, "byte"));
	if (verbose)
		fprintf(stderr, "  chan: %s\n", dst.err);
	dst.rx_seq++; /* skip it and go on */

	/* ROUND on channel 1: fine */
	n = hm_wire_enc_round(pl, sizeof(pl), 1, 0);
	iov[0].iov_base = pl;
	iov[0].iov_len = (size_t)n;
	HM_CHECK_OK(hm_wire_send(&src, HM_MSG_ROUND, 0, iov, 1));
	HM_CHECK_OK(hm_wire_recv(&dst, &msg));
	HM_CHECK_EQ(msg.hdr.seq, 2);

	/* seq gap; after a header error the payload is left unread (the
	 * channel is unusable): the test drains it to go on */
	raw_send(sv[0], HM_MSG_ROUND, 1, 99, 4, pl, 16);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	HM_CHECK(strstr(dst.err, "sequence"));
	HM_CHECK_OK(hm_recv_all(sv[1], pl + 32, 16)); /* unread payload */
	/* wrong session id (reader still expects seq 3) */
	raw_send(sv[0], HM_MSG_ROUND, 1, 98, 3, pl, 16);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	HM_CHECK(strstr(dst.err, "session"));
	HM_CHECK_OK(hm_recv_all(sv[1], pl + 32, 16)); /* unread payload */
	/* wrong channel */
	raw_send(sv[0], HM_MSG_ROUND, 2, 99, 3, pl, 16);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	HM_CHECK(strstr(dst.err, "channel"));
	HM_CHECK_OK(hm_recv_all(sv[1], pl + 32, 16)); /* unread payload */
	/* oversize send */
	iov[0].iov_base = pl;
	iov[0].iov_len = HM_WIRE_MAX_PAYLOAD + 1;
	HM_CHECK_EQ(hm_wire_send(&src, HM_MSG_DEVICE_STATE, 0, iov, 1),
		    -EMSGSIZE);
	HM_CHECK_EQ(hm_wire_send(&src, HM_MSG_ROUND, 0, iov,
				 HM_WIRE_MAX_SEND_IOV + 1), -EINVAL);
	/* a good one again */
	raw_send(sv[0], HM_MSG_ROUND, 1, 99, 3, pl, 16);
	HM_CHECK_OK(hm_wire_recv(&dst, &msg));
	/* a bit flipped in a payload that still decodes: the checksum
	 * catches it (the message is not taken: the next seq stays 4) */
	raw_send_at(sv[0], HM_MSG_ROUND, 1, 99, 4, pl, 16, 3);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	if (!strstr(dst.err, "checksum"))
		hm_test_fail("a flipped payload bit: %s", dst.err);
	/* header, then EOF in the payload: -ECONNRESET */
	{
		struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
					 .version = HM_WIRE_VERSION,
					 .type = HM_MSG_ROUND,
					 .payload_len = 16,
					 .channel = 1,
					 .session_id = 99,
					 .seq = 4 };
		unsigned char hb[HM_WIRE_HDR_SIZE];

		hm_wire_put_hdr(hb, &h);
		HM_CHECK_OK(hm_send_all(sv[0], hb, sizeof(hb)));
		HM_CHECK_OK(hm_send_all(sv[0], pl, 5));
		shutdown(sv[0], SHUT_WR);
		HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -ECONNRESET);
	}
	hm_wire_chan_fini(&src);
	hm_wire_chan_fini(&dst);
	HM_CHECK_EQ(src.fd, -1);

	/* learn mode: the first message must be a HELLO with a session */
	HM_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	HM_CHECK_OK(hm_wire_chan_init(&dst, sv[1], 0, 0));
	raw_send(sv[0], HM_MSG_ROUND, 0, 5, 0, pl, 16);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO);
	hm_wire_chan_fini(&dst);
	close(sv[0]);
	HM_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	HM_CHECK_OK(hm_wire_chan_init(&dst, sv[1], 0, 0));
	n = hm_wire_enc_hello(buf, sizeof(buf), 0, &g);
	raw_send(sv[0], HM_MSG_HELLO, 0, 0, 0, buf, (uint32_t)n);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -EPROTO); /* session 0 */
	hm_wire_chan_fini(&dst);
	close(sv[0]);

	/* orderly EOF between messages: -ENODATA */
	HM_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	HM_CHECK_OK(hm_wire_chan_init(&dst, sv[1], 0, 0));
	close(sv[0]);
	HM_CHECK_EQ(hm_wire_recv(&dst, &msg), -ENODATA);
	hm_wire_chan_fini(&dst);
}

/* ---- transport ----------------------------------------------------------- */

static void test_addr(void)
{
	char host[64], port[8];
	struct sockaddr_un sa;
	unsigned sl;
	const char *rest;
	char longpath[200];
	static const struct {
		const char *in, *host, *port;
	} good[] = {
		{ "localhost:4444", "localhost", "4444" },
		{ "127.0.0.1:0", "127.0.0.1", "0" },
		{ "[::1]:65535", "::1", "65535" },
		{ "[fe80::1%eth0]:22", "fe80::1%eth0", "22" },
		{ ":80", "", "80" },
		{ "host.example:1", "host.example", "1" },
	};
	static const char *const bad[] = {
		"localhost", "localhost:", "localhost:65536",
		"localhost:-1", "localhost:0x10", "localhost:123456",
		"::1:80", "[::1]80", "[::1]", "[]:80", "[1.2.3.4]:80",
		"a]b:80", "a:b:80", "h: 80", "",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (hm_transport_parse_tcp(good[i].in, host, sizeof(host),
					   port, sizeof(port)) != 0)
			hm_test_fail("tcp address '%s' refused", good[i].in);
		HM_CHECK(!strcmp(host, good[i].host));
		HM_CHECK(!strcmp(port, good[i].port));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hm_transport_parse_tcp(bad[i], host, sizeof(host), port,
					   sizeof(port)) == 0)
			hm_test_fail("tcp address '%s' accepted", bad[i]);
	HM_CHECK_EQ(hm_transport_parse_tcp("averylonghostname:1", host, 5,
					   port, sizeof(port)),
		    -ENAMETOOLONG);

	HM_CHECK_OK(hm_transport_parse_unix("/tmp/x.sock", &sa, &sl));
	HM_CHECK(!strcmp(sa.sun_path, "/tmp/x.sock"));
	HM_CHECK_OK(hm_transport_parse_unix("@abstract", &sa, &sl));
	HM_CHECK(sa.sun_path[0] == 0 && !memcmp(sa.sun_path + 1, "abstract",
						8));
	HM_CHECK_EQ(hm_transport_parse_unix("", &sa, &sl), -EINVAL);
	HM_CHECK_EQ(hm_transport_parse_unix("@", &sa, &sl), -EINVAL);
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	HM_CHECK_EQ(hm_transport_parse_unix(longpath, &sa, &sl), -EINVAL);

	HM_CHECK(hm_transport_lookup("unix:/a", &rest) &&
		 !strcmp(rest, "/a"));
	HM_CHECK(!strcmp(hm_transport_lookup("tcp:h:1", &rest)->scheme,
			 "tcp"));
	HM_CHECK(!strcmp(rest, "h:1"));
	errno = 0;
	HM_CHECK(!hm_transport_lookup("udp:h:1", &rest) && errno == EINVAL);
	HM_CHECK(!hm_transport_lookup("tcp:h", &rest));
	HM_CHECK(!hm_transport_lookup("unix:", &rest));
	HM_CHECK(!hm_transport_lookup("unix", &rest));
	HM_CHECK(!hm_transport_lookup("tcpx:h:1", &rest));
	HM_CHECK(!hm_transport_lookup(NULL, &rest));
	HM_CHECK_EQ(hm_transport_connect("bogus:1", 100), -EINVAL);
	HM_CHECK_EQ(hm_transport_listen("tcp:nohost", 1), -EINVAL);
	HM_CHECK_EQ(hm_transport_connect("tcp::80", 100), -EINVAL);
}

/* connect to lfd's address, accept, exchange bytes, check error
 * mapping. */
static void pair_check(int lfd)
{
	char addr[128], buf[16];
	int c, a;

	HM_CHECK(hm_transport_local_addr(lfd, addr, sizeof(addr)) > 0);
	if (verbose)
		fprintf(stderr, "  listening on %s\n", addr);
	c = hm_transport_connect(addr, 2000);
	HM_CHECK_OK(c);
	a = hm_transport_accept(lfd, 2000);
	HM_CHECK_OK(a);
	HM_CHECK_OK(hm_transport_set_timeouts(a, 100));
	HM_CHECK_OK(hm_transport_set_timeouts(c, 100));
	HM_CHECK_OK(hm_send_all(c, "hello", 5));
	HM_CHECK_OK(hm_recv_all(a, buf, 5));
	HM_CHECK(!memcmp(buf, "hello", 5));
	/* nothing more: the receive timeout */
	HM_CHECK_EQ(hm_recv_all(a, buf, 1), -ETIMEDOUT);
	/* EOF mid-buffer and at the start */
	HM_CHECK_OK(hm_send_all(c, "ab", 2));
	shutdown(c, SHUT_WR);
	HM_CHECK_EQ(hm_recv_all(a, buf, 3), -ECONNRESET);
	HM_CHECK_EQ(hm_recv_all(a, buf, 1), -ENODATA);
	close(c);
	/* sending to a closed peer: an error, never SIGPIPE */
	{
		int r = 0;

		for (int i = 0; i < 100 && r == 0; i++)
			r = hm_send_all(a, buf, sizeof(buf));
		HM_CHECK(r == -EPIPE || r == -ECONNRESET);
	}
	close(a);
}

static void test_sockets(void)
{
	char path[128], addr[160];
	int lfd, lfd2, fd;
	struct iovec iov[3];
	char rb[16];
	int sv[2];

	/* unix, path: listen, a stale file is replaced, a live one not */
	snprintf(path, sizeof(path), "/tmp/hm-test-wire-%d.sock", getpid());
	snprintf(addr, sizeof(addr), "unix:%s", path);
	unlink(path);
	lfd = hm_transport_listen(addr, 4);
	HM_CHECK_OK(lfd);
	pair_check(lfd);
	HM_CHECK_EQ(hm_transport_listen(addr, 4), -EADDRINUSE);
	close(lfd); /* the file stays: stale */
	lfd = hm_transport_listen(addr, 4);
	HM_CHECK_OK(lfd);
	close(lfd);
	unlink(path);
	/* not a socket: left alone */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	HM_CHECK(fd >= 0);
	close(fd);
	HM_CHECK_EQ(hm_transport_listen(addr, 4), -EADDRINUSE);
	{
		struct stat st;

		HM_CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode));
	}
	unlink(path);
	/* nobody there */
	HM_CHECK_EQ(hm_transport_connect(addr, 500), -ENOENT);

	/* unix, abstract */
	snprintf(addr, sizeof(addr), "unix:@hm-test-wire-%d", getpid());
	lfd = hm_transport_listen(addr, 4);
	HM_CHECK_OK(lfd);
	pair_check(lfd);
	lfd2 = hm_transport_listen(addr, 4);
	HM_CHECK_EQ(lfd2, -EADDRINUSE);
	/* accept timeout */
	HM_CHECK_EQ(hm_transport_accept(lfd, 50), -ETIMEDOUT);
	close(lfd);
	HM_CHECK_EQ(hm_transport_connect(addr, 500), -ECONNREFUSED);

	/* tcp, port 0, IPv4 */
	lfd = hm_transport_listen("tcp:127.0.0.1:0", 4);
	HM_CHECK_OK(lfd);
	pair_check(lfd);
	close(lfd);
	/* tcp IPv6 loopback, where the machine has it */
	lfd = hm_transport_listen("tcp:[::1]:0", 4);
	if (lfd >= 0) {
		pair_check(lfd);
		close(lfd);
	} else if (verbose) {
		fprintf(stderr, "  no IPv6 loopback: %s\n", strerror(-lfd));
	}
	/* a refused tcp connection */
	lfd = hm_transport_listen("tcp:127.0.0.1:0", 4);
	HM_CHECK_OK(lfd);
	HM_CHECK(hm_transport_local_addr(lfd, addr, sizeof(addr)) > 0);
	close(lfd);
	HM_CHECK_EQ(hm_transport_connect(addr, 1000), -ECONNREFUSED);

	/* sendv: empty entries and partial progress */
	HM_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	iov[0].iov_base = (void *)"abc";
	iov[0].iov_len = 3;
	iov[1].iov_base = NULL;
	iov[1].iov_len = 0;
	iov[2].iov_base = (void *)"defg";
	iov[2].iov_len = 4;
	HM_CHECK_OK(hm_sendv_all(sv[0], iov, 3));
	HM_CHECK_OK(hm_sendv_all(sv[0], iov, 0));
	HM_CHECK_OK(hm_recv_all(sv[1], rb, 7));
	HM_CHECK(!memcmp(rb, "abcdefg", 7));
	close(sv[0]);
	close(sv[1]);
}

int main(int argc, char **argv)
{
	verbose = argc > 1 && !strcmp(argv[1], "-v");
	test_header();
	test_hello();
	test_pages();
#if HM_HAVE_ZSTD
	test_zstd();
#else
	fprintf(stderr, "note: built without zstd, zstd cases skipped\n");
#endif
	test_small();
	test_chan();
	test_addr();
	test_sockets();
	printf("wire: all checks passed\n");
	return 0;
}

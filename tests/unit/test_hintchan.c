/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The hint channel: codec round trips, every rejection rule, partial
 * frames, nonblocking and blocking endpoints over a socketpair, the send
 * timeout, and the "channel" hint source. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hm_test.h"
#include "migrate/hints/hintchan.h"

#define BUFSZ (HM_HC_HDR_SIZE + HM_HC_MAX_PAYLOAD)

static unsigned char fbuf[BUFSZ];
static struct hm_gpa_range dranges[HM_HC_MAX_RANGES];
static struct hm_gpa_range many[HM_HC_MAX_RANGES + 1000];

static void check_same(const struct hm_hc_msg *a, const struct hm_hc_msg *b)
{
	HM_CHECK_EQ(a->type, b->type);
	HM_CHECK_EQ(a->epoch, b->epoch);
	HM_CHECK_EQ(b->flags, 0);
	switch (a->type) {
	case HM_HC_HELLO:
		HM_CHECK_EQ(a->u.hello.version, b->u.hello.version);
		HM_CHECK_EQ(a->u.hello.page_size, b->u.hello.page_size);
		HM_CHECK_EQ(a->u.hello.poison, b->u.hello.poison);
		HM_CHECK_EQ(a->u.hello.poison_byte, b->u.hello.poison_byte);
		HM_CHECK_EQ(a->u.hello.flags, b->u.hello.flags);
		HM_CHECK_EQ(a->u.hello.reason, b->u.hello.reason);
		break;
	case HM_HC_REQUEST:
		HM_CHECK_EQ(a->u.request.max_ranges, b->u.request.max_ranges);
		break;
	case HM_HC_HINTS:
	case HM_HC_ACK:
		if (a->type == HM_HC_HINTS)
			HM_CHECK_EQ(a->u.hints.kind, b->u.hints.kind);
		HM_CHECK_EQ(a->u.hints.count, b->u.hints.count);
		for (uint32_t i = 0; i < a->u.hints.count; i++) {
			HM_CHECK_EQ(a->u.hints.ranges[i].gpa,
				    b->u.hints.ranges[i].gpa);
			HM_CHECK_EQ(a->u.hints.ranges[i].len,
				    b->u.hints.ranges[i].len);
		}
		break;
	default:
		break;
	}
}

/* encode, decode, compare; and every strict prefix asks for more */
static long roundtrip(const struct hm_hc_msg *m)
{
	struct hm_hc_msg d;
	char err[128] = "";
	long len = hm_hc_encode(m, fbuf, sizeof(fbuf));
	long r;

	HM_CHECK(len >= HM_HC_HDR_SIZE);
	r = hm_hc_decode(fbuf, (size_t)len, &d, dranges, err, sizeof(err));
	if (r != len)
		hm_test_fail("decode of %s: %ld (%s)", hm_hc_type_name(m->type),
			     r, err);
	check_same(m, &d);
	for (long k = 0; k < len; k += (len > 4096 ? 997 : 1))
		HM_CHECK_EQ(hm_hc_decode(fbuf, (size_t)k, &d, dranges, err,
					 sizeof(err)), 0);
	/* trailing bytes of the next frame are not consumed */
	HM_CHECK_EQ(hm_hc_decode(fbuf, (size_t)len, &d, dranges, err,
				 sizeof(err)), len);
	return len;
}

static void test_roundtrip(void)
{
	struct hm_gpa_range r3[3] = { { 0, 4096 },
				      { UINT64_C(0x123456789000), 8192 },
				      { UINT64_MAX - 4095, 4096 } };
	struct hm_hc_msg m;

	memset(&m, 0, sizeof(m));
	m.type = HM_HC_HELLO;
	m.epoch = 0;
	m.u.hello.version = 1;
	m.u.hello.page_size = 4096;
	m.u.hello.poison = HM_HC_POISON_PATTERN;
	m.u.hello.poison_byte = 0xaa;
	HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE + 20);
	m.u.hello.poison = HM_HC_POISON_NONE;
	m.u.hello.poison_byte = 0;
	m.u.hello.page_size = 65536;
	roundtrip(&m);
	/* an agent that cannot hint says why */
	m.u.hello.page_size = 4096;
	m.u.hello.flags = HM_HC_HELLO_NOHINTS;
	m.u.hello.reason = HM_HC_NOHINT_NO_MODULE;
	roundtrip(&m);
	HM_CHECK(strstr(hm_hc_nohint_reason_name(HM_HC_NOHINT_NO_MODULE),
			"hintmig_free") != NULL);
	HM_CHECK(strcmp(hm_hc_nohint_reason_name(200), "unspecified") == 0);

	memset(&m, 0, sizeof(m));
	m.type = HM_HC_REQUEST;
	m.epoch = UINT64_C(0x0102030405060708);
	m.u.request.max_ranges = 77;
	HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE + 8);

	memset(&m, 0, sizeof(m));
	m.type = HM_HC_HINTS;
	m.epoch = 5;
	m.u.hints.kind = HM_HINT_FREE;
	m.u.hints.count = 3;
	m.u.hints.ranges = r3;
	HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE + 8 + 48);
	m.u.hints.kind = HM_HINT_ISOLATED;
	m.u.hints.count = 0;
	HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE + 8);
	for (uint32_t i = 0; i < HM_HC_MAX_RANGES; i++) {
		many[i].gpa = (uint64_t)i * 8192;
		many[i].len = 4096;
	}
	m.u.hints.count = HM_HC_MAX_RANGES;
	m.u.hints.ranges = many;
	HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE + HM_HC_MAX_PAYLOAD - 8);

	memset(&m, 0, sizeof(m));
	m.type = HM_HC_ACK;
	m.epoch = UINT64_MAX;
	m.u.hints.count = 2;
	m.u.hints.ranges = r3;
	roundtrip(&m);

	for (unsigned t = HM_HC_DONE; t <= HM_HC_BYE; t++) {
		if (t == HM_HC_ACK)
			continue;
		memset(&m, 0, sizeof(m));
		m.type = (uint16_t)t;
		m.epoch = 42;
		HM_CHECK_EQ(roundtrip(&m), HM_HC_HDR_SIZE);
	}
}

/* the wire is little-endian, byte by byte */
static void test_layout(void)
{
	struct hm_gpa_range r = { UINT64_C(0x1122334455667000), 0x3000 };
	struct hm_hc_msg m = { .type = HM_HC_HINTS,
			       .epoch = UINT64_C(0x0807060504030201) };
	static const unsigned char want[] = {
		'H', 'M', 'H', '1', 3, 0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0,
		1, 2, 3, 4, 5, 6, 7, 8,
		2, 0, 0, 0, 1, 0, 0, 0,
		0x00, 0x70, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
		0x00, 0x30, 0, 0, 0, 0, 0, 0,
	};

	m.u.hints.kind = HM_HINT_ISOLATED;
	m.u.hints.count = 1;
	m.u.hints.ranges = &r;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, sizeof(fbuf)), sizeof(want));
	HM_CHECK(memcmp(fbuf, want, sizeof(want)) == 0);
	HM_CHECK(strcmp(hm_hc_type_name(HM_HC_STOP), "stop") == 0);
	HM_CHECK(hm_hc_type_name(0) == NULL);
	HM_CHECK(hm_hc_type_name(HM_HC_TYPE_MAX) == NULL);
	HM_CHECK(strcmp(hm_hint_kind_name(HM_HINT_ISOLATED), "isolated") == 0);
	HM_CHECK(hm_hint_kind_name(0) == NULL);
	HM_CHECK(hm_hint_kind_name(3) == NULL);
}

static void test_encode_rejects(void)
{
	struct hm_hc_msg m = { .type = HM_HC_HINTS };

	m.u.hints.kind = HM_HINT_FREE;
	m.u.hints.count = HM_HC_MAX_RANGES + 1;
	m.u.hints.ranges = many;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, sizeof(fbuf)), -EINVAL);
	m.u.hints.count = 1;
	m.u.hints.ranges = NULL;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, sizeof(fbuf)), -EINVAL);
	m.u.hints.ranges = many;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, HM_HC_HDR_SIZE + 8 + 15), -ENOSPC);
	m.type = 0;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, sizeof(fbuf)), -EINVAL);
	m.type = HM_HC_TYPE_MAX;
	HM_CHECK_EQ(hm_hc_encode(&m, fbuf, sizeof(fbuf)), -EINVAL);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Encode m, let mutate change the bytes, expect -EPROTO with a reason. */
static void expect_reject(const struct hm_hc_msg *m, size_t off,
			  const void *bytes, size_t n, long newlen,
			  const char *what)
{
	struct hm_hc_msg d;
	char err[128] = "";
	long len = hm_hc_encode(m, fbuf, sizeof(fbuf));
	long r;

	HM_CHECK(len > 0);
	if (bytes)
		memcpy(fbuf + off, bytes, n);
	if (newlen >= 0) {
		put32(fbuf + 8, (uint32_t)(newlen - HM_HC_HDR_SIZE));
		len = newlen;
	}
	r = hm_hc_decode(fbuf, (size_t)len, &d, dranges, err, sizeof(err));
	if (r != -EPROTO)
		hm_test_fail("%s: decode returned %ld, not -EPROTO", what, r);
	if (!err[0])
		hm_test_fail("%s: no reason given", what);
}

static void test_decode_rejects(void)
{
	struct hm_gpa_range r2[2] = { { 0, 4096 }, { 8192, 4096 } };
	struct hm_hc_msg hello = { .type = HM_HC_HELLO };
	struct hm_hc_msg req = { .type = HM_HC_REQUEST, .epoch = 3 };
	struct hm_hc_msg hints = { .type = HM_HC_HINTS, .epoch = 3 };
	struct hm_hc_msg ack = { .type = HM_HC_ACK, .epoch = 3 };
	struct hm_hc_msg done = { .type = HM_HC_DONE, .epoch = 3 };
	unsigned char one = 1, zero16[2] = { 0, 0 }, b4[4];
	struct hm_hc_msg d;
	char err[128];

	hello.u.hello.version = 1;
	hello.u.hello.page_size = 4096;
	hints.u.hints.kind = HM_HINT_FREE;
	hints.u.hints.count = 2;
	hints.u.hints.ranges = r2;
	ack.u.hints.count = 2;
	ack.u.hints.ranges = r2;

	/* magic: seen from the first 4 bytes on */
	HM_CHECK(hm_hc_encode(&done, fbuf, sizeof(fbuf)) > 0);
	fbuf[0] = 'X';
	HM_CHECK_EQ(hm_hc_decode(fbuf, 4, &d, dranges, err, sizeof(err)),
		    -EPROTO);
	HM_CHECK_EQ(hm_hc_decode(fbuf, 3, &d, dranges, err, sizeof(err)), 0);
	expect_reject(&done, 3, "2", 1, -1, "bad magic");

	expect_reject(&done, 4, zero16, 2, -1, "type 0");
	put32(b4, 99);
	expect_reject(&done, 4, b4, 2, -1, "type 99");
	b4[0] = HM_HC_TYPE_MAX;
	expect_reject(&done, 4, b4, 2, -1, "type max");
	expect_reject(&done, 6, &one, 1, -1, "flags");
	expect_reject(&done, 13, &one, 1, -1, "header reserved");
	expect_reject(&done, 0, NULL, 0,
		      HM_HC_HDR_SIZE + HM_HC_MAX_PAYLOAD + 16, "huge payload");
	expect_reject(&done, 0, NULL, 0, HM_HC_HDR_SIZE + 8, "done payload");
	expect_reject(&hello, 0, NULL, 0, HM_HC_HDR_SIZE + 19, "hello short");
	expect_reject(&hello, 0, NULL, 0, HM_HC_HDR_SIZE + 21, "hello long");
	expect_reject(&req, 0, NULL, 0, HM_HC_HDR_SIZE + 4, "request short");
	expect_reject(&hints, 0, NULL, 0, HM_HC_HDR_SIZE + 8 + 31,
		      "hints not whole ranges");
	expect_reject(&hints, 0, NULL, 0, HM_HC_HDR_SIZE + 7, "hints short");
	put32(b4, 3);
	expect_reject(&hints, HM_HC_HDR_SIZE + 4, b4, 4, -1,
		      "count above payload");
	put32(b4, 1);
	expect_reject(&hints, HM_HC_HDR_SIZE + 4, b4, 4, -1,
		      "count below payload");
	put32(b4, HM_HC_MAX_RANGES + 1);
	expect_reject(&hints, HM_HC_HDR_SIZE + 4, b4, 4, -1,
		      "count above the maximum");
	put32(b4, 0);
	expect_reject(&hints, HM_HC_HDR_SIZE, b4, 4, -1, "kind 0");
	put32(b4, 3);
	expect_reject(&hints, HM_HC_HDR_SIZE, b4, 4, -1, "kind 3");
	put32(b4, 3);
	expect_reject(&ack, HM_HC_HDR_SIZE, b4, 4, -1, "ack count");
	expect_reject(&ack, HM_HC_HDR_SIZE + 4, &one, 1, -1, "ack reserved");
	expect_reject(&req, HM_HC_HDR_SIZE + 7, &one, 1, -1,
		      "request reserved");
	b4[0] = 2;
	expect_reject(&hello, HM_HC_HDR_SIZE + 2, b4, 1, -1,
		      "hello unknown flag");
	expect_reject(&hello, HM_HC_HDR_SIZE + 13, &one, 1, -1,
		      "hello reason without NOHINTS");
	expect_reject(&hello, HM_HC_HDR_SIZE + 14, &one, 1, -1,
		      "hello reserved head");
	expect_reject(&hello, HM_HC_HDR_SIZE + 19, &one, 1, -1,
		      "hello reserved tail");
	put32(b4, 0);
	expect_reject(&hello, HM_HC_HDR_SIZE + 4, b4, 4, -1, "page size 0");
	put32(b4, 3000);
	expect_reject(&hello, HM_HC_HDR_SIZE + 4, b4, 4, -1, "page size 3000");
	put32(b4, 2048);
	expect_reject(&hello, HM_HC_HDR_SIZE + 4, b4, 4, -1, "page size 2048");
	put32(b4, 2);
	expect_reject(&hello, HM_HC_HDR_SIZE + 8, b4, 4, -1, "poison 2");
	expect_reject(&hello, HM_HC_HDR_SIZE + 12, &one, 1, -1,
		      "poison byte without poisoning");
	/* a 4097-range payload is past HM_HC_MAX_PAYLOAD already */
	expect_reject(&hints, 0, NULL, 0,
		      HM_HC_HDR_SIZE + 8 + (HM_HC_MAX_RANGES + 1) * 16,
		      "4097 ranges");
}

/* ---- endpoints ---- */

static void mkpair(int sv[2])
{
	HM_CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
}

static void write_all(int fd, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n) {
		ssize_t r = write(fd, b, n);

		HM_CHECK(r > 0);
		b += r;
		n -= (size_t)r;
	}
}

static void test_endpoint_nonblock(void)
{
	struct hm_hc c;
	struct hm_hc_msg m, out = { .type = HM_HC_REQUEST, .epoch = 9 };
	int sv[2];
	long len;

	out.u.request.max_ranges = 100;
	mkpair(sv);
	HM_CHECK_OK(hm_hc_init(&c, sv[0], NULL));
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EAGAIN);

	/* a frame that trickles in byte by byte */
	len = hm_hc_encode(&out, fbuf, sizeof(fbuf));
	for (long i = 0; i < len - 1; i++) {
		write_all(sv[1], fbuf + i, 1);
		HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EAGAIN);
	}
	write_all(sv[1], fbuf + len - 1, 1);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), 0);
	check_same(&out, &m);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EAGAIN);

	/* two frames and a half in one write */
	memcpy(fbuf + len, fbuf, (size_t)len);
	memcpy(fbuf + 2 * len, fbuf, 5);
	write_all(sv[1], fbuf, (size_t)(2 * len + 5));
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), 0);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), 0);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EAGAIN);
	/* EOF inside a frame: malformed, and it stays so */
	close(sv[1]);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EPROTO);
	HM_CHECK(c.err[0] != '\0');
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 0), -EPROTO);
	hm_hc_fini(&c);

	/* EOF between frames: orderly */
	mkpair(sv);
	HM_CHECK_OK(hm_hc_init(&c, sv[0], NULL));
	write_all(sv[1], fbuf, (size_t)len);
	close(sv[1]);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), 0);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -ENODATA);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 0), -ENODATA);
	hm_hc_fini(&c);

	/* garbage: -EPROTO at once, sticky, even if good frames follow */
	mkpair(sv);
	HM_CHECK_OK(hm_hc_init(&c, sv[0], NULL));
	write_all(sv[1], "GARBAGE!", 8);
	write_all(sv[1], fbuf, (size_t)len);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EPROTO);
	HM_CHECK(strstr(c.err, "magic") != NULL);
	HM_CHECK_EQ(hm_hc_recv(&c, &m, 1), -EPROTO);
	hm_hc_fini(&c);
	close(sv[1]);
}

struct delayed {
	int fd;
	long len;
};

static void *delayed_writer(void *arg)
{
	struct delayed *d = arg;
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	write_all(d->fd, fbuf, (size_t)d->len);
	return NULL;
}

static void test_endpoint_blocking(void)
{
	struct hm_hc a, b;
	struct hm_hc_msg m, out = { .type = HM_HC_HINTS, .epoch = 77 };
	struct delayed d;
	pthread_t th;
	int sv[2];

	mkpair(sv);
	HM_CHECK_OK(hm_hc_init(&a, sv[0], NULL));
	HM_CHECK_OK(hm_hc_init(&b, sv[1], NULL));
	out.u.hints.kind = HM_HINT_FREE;
	out.u.hints.count = HM_HC_MAX_RANGES;
	out.u.hints.ranges = many;
	/* the largest frame (64 KiB) fits in the socket's buffer */
	HM_CHECK_OK(hm_hc_send(&a, &out));
	HM_CHECK_EQ(hm_hc_recv(&b, &m, 0), 0);
	check_same(&out, &m);
	out.u.hints.count = HM_HC_MAX_RANGES + 1;
	HM_CHECK_EQ(hm_hc_send(&a, &out), -EINVAL);

	/* a blocking receive waits for a late writer */
	out.type = HM_HC_STOP;
	d.fd = sv[0];
	d.len = hm_hc_encode(&out, fbuf, sizeof(fbuf));
	HM_CHECK_OK(pthread_create(&th, NULL, delayed_writer, &d));
	HM_CHECK_EQ(hm_hc_recv(&b, &m, 0), 0);
	HM_CHECK_EQ(m.type, HM_HC_STOP);
	HM_CHECK_EQ(m.epoch, 77);
	pthread_join(th, NULL);

	/* a peer that never reads: the send times out, never hangs */
	a.send_timeout_ms = 50;
	out.type = HM_HC_HINTS;
	out.u.hints.count = HM_HC_MAX_RANGES;
	for (int i = 0; i < 1000; i++) {
		int r = hm_hc_send(&a, &out);

		if (r == -ETIMEDOUT)
			break;
		HM_CHECK_OK(r);
		HM_CHECK(i < 999);
	}
	/* a frame was cut: nothing more may go out, even once the peer
	 * reads again */
	{
		unsigned char junk[65536];

		while (recv(sv[1], junk, sizeof(junk), MSG_DONTWAIT) > 0)
			;
	}
	out.type = HM_HC_DONE;
	HM_CHECK_EQ(hm_hc_send(&a, &out), -ETIMEDOUT);
	hm_hc_fini(&a);
	hm_hc_fini(&b);
}

/* ---- the channel hint source ---- */

static void test_source(void)
{
	struct hm_hint_source *src;
	struct hm_hc g;
	struct hm_hc_msg m, hello = { .type = HM_HC_HELLO };
	int sv[2];
	int acks = 0;
	uint32_t acked = 0;

	mkpair(sv);
	src = hm_hint_source_channel_new(sv[0], NULL);
	HM_CHECK(src != NULL);
	HM_CHECK_OK(hm_hc_init(&g, sv[1], NULL));
	HM_CHECK(strcmp(src->ops->name, "channel") == 0);
	HM_CHECK_EQ(src->ops->pollfd(src), sv[0]);
	HM_CHECK_EQ(src->ops->hello(src, &m, 30), -ETIMEDOUT);

	hello.u.hello.version = HM_HC_VERSION;
	hello.u.hello.page_size = 4096;
	HM_CHECK_OK(hm_hc_send(&g, &hello));
	HM_CHECK_OK(src->ops->hello(src, &m, 1000));
	HM_CHECK_EQ(m.u.hello.page_size, 4096);

	HM_CHECK_OK(src->ops->request(src, 4, 123));
	HM_CHECK_OK(hm_hc_recv(&g, &m, 0));
	HM_CHECK_EQ(m.type, HM_HC_REQUEST);
	HM_CHECK_EQ(m.epoch, 4);
	HM_CHECK_EQ(m.u.request.max_ranges, 123);
	HM_CHECK_EQ(src->ops->recv(src, &m), -EAGAIN);

	m.type = HM_HC_HINTS;
	m.epoch = 4;
	m.u.hints.kind = HM_HINT_ISOLATED;
	m.u.hints.count = 2;
	m.u.hints.ranges = many;
	HM_CHECK_OK(hm_hc_send(&g, &m));
	m.type = HM_HC_DONE;
	HM_CHECK_OK(hm_hc_send(&g, &m));
	HM_CHECK_OK(src->ops->recv(src, &m));
	HM_CHECK_EQ(m.type, HM_HC_HINTS);
	HM_CHECK_EQ(m.u.hints.count, 2);
	HM_CHECK_EQ(m.u.hints.ranges[1].gpa, many[1].gpa);
	HM_CHECK_OK(src->ops->recv(src, &m));
	HM_CHECK_EQ(m.type, HM_HC_DONE);

	/* an ack larger than one message goes out in pieces */
	HM_CHECK_OK(src->ops->ack(src, 4, many, HM_HC_MAX_RANGES + 1000));
	while (acked < HM_HC_MAX_RANGES + 1000) {
		HM_CHECK_OK(hm_hc_recv(&g, &m, 0));
		HM_CHECK_EQ(m.type, HM_HC_ACK);
		HM_CHECK_EQ(m.epoch, 4);
		HM_CHECK_EQ(m.u.hints.ranges[0].gpa, many[acked].gpa);
		acked += m.u.hints.count;
		acks++;
	}
	HM_CHECK_EQ(acks, 2);
	HM_CHECK_OK(src->ops->stop(src, 4));
	HM_CHECK_OK(hm_hc_recv(&g, &m, 0));
	HM_CHECK_EQ(m.type, HM_HC_STOP);

	/* the guest may not send host messages */
	m.type = HM_HC_REQUEST;
	m.u.request.max_ranges = 1;
	HM_CHECK_OK(hm_hc_send(&g, &m));
	HM_CHECK_EQ(src->ops->recv(src, &m), -EPROTO);
	HM_CHECK_EQ(src->ops->recv(src, &m), -EPROTO);

	/* destroy says goodbye */
	hm_hint_source_free(src);
	HM_CHECK_OK(hm_hc_recv(&g, &m, 0));
	HM_CHECK_EQ(m.type, HM_HC_BYE);
	HM_CHECK_EQ(hm_hc_recv(&g, &m, 0), -ENODATA);
	hm_hc_fini(&g);

	/* BYE from the guest ends the source */
	mkpair(sv);
	src = hm_hint_source_channel_new(sv[0], NULL);
	HM_CHECK_OK(hm_hc_init(&g, sv[1], NULL));
	HM_CHECK_OK(hm_hc_send(&g, &hello));
	HM_CHECK_OK(src->ops->hello(src, &m, 1000));
	m.type = HM_HC_BYE;
	HM_CHECK_OK(hm_hc_send(&g, &m));
	HM_CHECK_EQ(src->ops->recv(src, &m), -ENODATA);
	hm_hint_source_free(src);
	hm_hc_fini(&g);

	/* first message not HELLO; HELLO of another version */
	mkpair(sv);
	src = hm_hint_source_channel_new(sv[0], NULL);
	HM_CHECK_OK(hm_hc_init(&g, sv[1], NULL));
	m.type = HM_HC_DONE;
	HM_CHECK_OK(hm_hc_send(&g, &m));
	HM_CHECK_EQ(src->ops->hello(src, &m, 1000), -EPROTO);
	hm_hint_source_free(src);
	hm_hc_fini(&g);
	mkpair(sv);
	src = hm_hint_source_channel_new(sv[0], NULL);
	HM_CHECK_OK(hm_hc_init(&g, sv[1], NULL));
	hello.u.hello.version = 2;
	HM_CHECK_OK(hm_hc_send(&g, &hello));
	HM_CHECK_EQ(src->ops->hello(src, &m, 1000), -EPROTONOSUPPORT);
	hm_hint_source_free(src);
	hm_hc_fini(&g);

	/* no fd: NULL with errno */
	HM_CHECK(hm_hint_source_channel_new(-1, NULL) == NULL);
	HM_CHECK_EQ(errno, EBADF);
}

int main(void)
{
	test_roundtrip();
	test_layout();
	test_encode_rejects();
	test_decode_rejects();
	test_endpoint_nonblock();
	test_endpoint_blocking();
	test_source();
	printf("hintchan: ok\n");
	return 0;
}

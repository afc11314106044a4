/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target of the wire protocol decoder (src/migrate/wire.c).
 *
 * Input: a 36-byte message header followed by its payload. The header is
 * parsed with hm_wire_get_hdr(); whatever it says, payload_len is cut to
 * the bytes actually present (so every input reaches the payload
 * decoder), and the payload is decoded from an exactly-sized heap copy
 * (ASan sees any read past it) against:
 *   - a sane 4-channel geometry and a 1-channel one,
 *   - no geometry (what a destination has before HELLO).
 * Whatever the decoder accepts is then checked against the protocol's
 * promises (indexes inside RAM and on the message's channel, lengths
 * adding up, HELLO geometry sane, ABORT text bounded), and every byte it
 * points at is read; a broken promise aborts. zstd batches are
 * decompressed into a buffer of exactly the promised size, as the
 * destination does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hm_config.h"
#include "fuzz_geo.h"
#include "migrate/wire/wire.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROMISE(c)                                                          \
	do {                                                                \
		if (!(c))                                                   \
			abort();                                            \
	} while (0)

static volatile unsigned sink;

static void touch(const void *p, size_t len)
{
	const unsigned char *b = p;
	unsigned s = 0;

	for (size_t i = 0; i < len; i++)
		s += b[i];
	sink += s;
}

static void check_index(const struct hm_wire_geometry *g,
			const struct hm_wire_hdr *h, const uint64_t *idx,
			uint32_t n, int channel_rule)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pg = hm_wire_idx(idx, i);

		PROMISE(pg < g->npages);
		if (channel_rule)
			PROMISE((pg / 64) % g->channels == h->channel);
	}
}

static void check(const struct hm_wire_hdr *h, const unsigned char *p,
		  const struct hm_wire_geometry *g, const struct hm_wire_msg *m)
{
	const unsigned char *end = p ? p + h->payload_len : NULL;
	uint32_t n;

	PROMISE(h->type > 0 && h->type < HM_MSG_TYPE_MAX);
	PROMISE(h->payload_len <= HM_WIRE_MAX_PAYLOAD);
	switch (h->type) {
	case HM_MSG_HELLO:
		PROMISE(hm_wire_check_geometry(&m->u.hello.geo, NULL, 0) == 0);
		PROMISE(m->u.hello.channel_index < m->u.hello.geo.channels);
		for (uint32_t i = 0; i < m->u.hello.geo.nblocks; i++)
			PROMISE(strlen(m->u.hello.geo.blocks[i].name) <
				HM_BLOCK_NAME_MAX);
		break;
	case HM_MSG_PAGES:
		PROMISE(g);
		n = m->u.pages.count;
		PROMISE(n >= 1 && n <= hm_wire_max_pages(HM_MSG_PAGES,
							  g->page_size));
		check_index(g, h, m->u.pages.pages_le, n, 1);
		PROMISE((const unsigned char *)m->u.pages.data >= p &&
			(const unsigned char *)m->u.pages.data +
					m->u.pages.data_len ==
				end);
		touch(m->u.pages.data, m->u.pages.data_len);
		if (!m->u.pages.zstd) {
			PROMISE(m->u.pages.data_len ==
				(uint64_t)n * g->page_size);
		} else {
#if HM_HAVE_ZSTD
			size_t want = (size_t)n * g->page_size;
			void *out = malloc(want);
			size_t got;

			PROMISE(out);
			got = ZSTD_decompress(out, want, m->u.pages.data,
					      m->u.pages.data_len);
			PROMISE(ZSTD_isError(got) || got == want);
			free(out);
#else
			PROMISE(0);
#endif
		}
		break;
	case HM_MSG_ZERO_RUN: {
		uint64_t f = m->u.zero_run.first, c = m->u.zero_run.count;

		PROMISE(g && c >= 1 && f < g->npages && c <= g->npages - f);
		PROMISE((f / 64) % g->channels == h->channel);
		PROMISE(g->channels == 1 || f / 64 == (f + c - 1) / 64);
		break;
	}
	case HM_MSG_DEVICE_STATE:
		PROMISE(h->channel == 0);
		PROMISE(m->u.device_state.len == h->payload_len);
		touch(m->u.device_state.data, m->u.device_state.len);
		break;
	case HM_MSG_VERIFY_REQ:
		PROMISE(g && h->channel == 0);
		n = m->u.verify_req.count;
		PROMISE(n >= 1 && 8 + 8ull * n == h->payload_len);
		check_index(g, h, m->u.verify_req.pages_le, n, 0);
		break;
	case HM_MSG_VERIFY_DATA:
		PROMISE(g && h->channel == 0);
		n = m->u.verify_data.count;
		PROMISE(n >= 1 &&
			8 + 8ull * n + (uint64_t)n * g->page_size ==
				h->payload_len);
		check_index(g, h, m->u.verify_data.pages_le, n, 0);
		touch(m->u.verify_data.data, (size_t)n * g->page_size);
		break;
	case HM_MSG_ABORT:
		PROMISE(strlen(m->u.abort_.text) <= HM_WIRE_ABORT_TEXT_MAX);
		break;
	default:
		if (h->type != HM_MSG_HELLO_ACK)
			PROMISE(g);
		break;
	}
}

static void one(const struct hm_wire_hdr *h, const unsigned char *p,
		const struct hm_wire_geometry *g)
{
	struct hm_wire_msg m;
	char err[160];
	int r;

	memset(&m, 0, sizeof(m));
	r = hm_wire_decode(h, p, g, &m, err, sizeof(err));
	PROMISE(r == 0 || r == -EPROTO);
	if (r == 0)
		check(h, p, g, &m);
	else
		PROMISE(memchr(err, 0, sizeof(err)) && err[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hm_wire_geometry g4, g1;
	static int init;
	struct hm_wire_hdr h;
	unsigned char *p;
	size_t plen;

	if (!init) {
		fuzz_geo(&g4, 4);
		fuzz_geo(&g1, 1);
		init = 1;
	}
	if (size < HM_WIRE_HDR_SIZE)
		return 0;
	(void)hm_wire_get_hdr(data, &h); /* fills h even when it refuses */
	plen = size - HM_WIRE_HDR_SIZE;
	if (plen > HM_WIRE_MAX_PAYLOAD)
		return 0;
	/* the header's length when the input holds that much (the rest is
	 * ignored: lets the fuzzer match length fields by comparison),
	 * otherwise the bytes present */
	if (h.payload_len < plen)
		plen = h.payload_len;
	h.payload_len = (uint32_t)plen;
	p = malloc(plen ? plen : 1);
	if (!p)
		return 0;
	memcpy(p, data + HM_WIRE_HDR_SIZE, plen);
	one(&h, plen ? p : NULL, &g4);
	one(&h, plen ? p : NULL, &g1);
	one(&h, plen ? p : NULL, NULL);
	free(p);
	return 0;
}

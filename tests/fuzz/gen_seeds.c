/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Seed corpus of the wire fuzzer: one valid message of every type (and a
 * few variants) for the geometries of fuzz_geo.h, each in its own file as
 * header + payload. Usage: gen_seeds DIR STAMP
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/stat.h>

#include "hm_config.h"
#include "fuzz_geo.h"
#include "migrate/wire/wire.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

static const char *dir;
static unsigned nseeds;

static void seed(uint16_t type, uint32_t flags, uint16_t channel,
		 const void *a, size_t alen, const void *b, size_t blen)
{
	struct hm_wire_hdr h = { .magic = HM_WIRE_MAGIC,
				 .version = HM_WIRE_VERSION,
				 .type = type,
				 .flags = flags,
				 .payload_len = (uint32_t)(alen + blen),
				 .channel = channel,
				 .session_id = 0x1234,
				 .seq = 1 };
	unsigned char hb[HM_WIRE_HDR_SIZE];
	char path[512];
	FILE *f;

	struct iovec v[2] = { { (void *)(uintptr_t)a, alen },
			      { (void *)(uintptr_t)b, blen } };

	hm_wire_put_hdr(hb, &h);
	hm_wire_seal(hb, v, 2);
	snprintf(path, sizeof(path), "%s/%02u-%s", dir, nseeds++,
		 hm_wire_type_name(type));
	f = fopen(path, "wb");
	if (!f || fwrite(hb, 1, sizeof(hb), f) != sizeof(hb) ||
	    (alen && fwrite(a, 1, alen, f) != alen) ||
	    (blen && fwrite(b, 1, blen, f) != blen) || fclose(f)) {
		perror(path);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static unsigned char pages[3 * FUZZ_PS], buf[8192];
	struct hm_wire_geometry g4, g1;
	uint64_t idx[5] = { 64, 65, 127, 999, 0 };
	FILE *stamp;
	long n;

	if (argc != 3) {
		fprintf(stderr, "usage: gen_seeds DIR STAMP\n");
		return 2;
	}
	dir = argv[1];
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	fuzz_geo(&g4, 4);
	fuzz_geo(&g1, 1);
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (unsigned char)(i % 251 + (i > 5000 ? 7 : 0));

	n = hm_wire_enc_hello(buf, sizeof(buf), 0, &g4);
	seed(HM_MSG_HELLO, 0, 0, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_hello(buf, sizeof(buf), 3, &g4);
	seed(HM_MSG_HELLO, HM_HELLO_ZSTD, 3, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_hello(buf, sizeof(buf), 0, &g1);
	seed(HM_MSG_HELLO, 0, 0, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_u32(buf, sizeof(buf), 0);
	seed(HM_MSG_HELLO_ACK, 0, 0, buf, (size_t)n, NULL, 0);
	/* pages 64, 65, 127: channel 1 of 4 */
	n = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 3);
	seed(HM_MSG_PAGES, 0, 1, buf, (size_t)n, pages, sizeof(pages));
#if HM_HAVE_ZSTD
	{
		static unsigned char z[ZSTD_COMPRESSBOUND(3 * FUZZ_PS)];
		size_t zl = ZSTD_compress(z, sizeof(z), pages, sizeof(pages),
					  1);

		if (ZSTD_isError(zl))
			return 1;
		seed(HM_MSG_PAGES, HM_BATCH_ZSTD, 1, buf, (size_t)n, z, zl);
	}
#endif
	n = hm_wire_enc_zero_run(buf, sizeof(buf), 128, 10);
	seed(HM_MSG_ZERO_RUN, 0, 2, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_round(buf, sizeof(buf), 3, 12345);
	seed(HM_MSG_ROUND, 0, 1, buf, (size_t)n, NULL, 0);
	seed(HM_MSG_DEVICE_STATE, 0, 0, "vmstate:cpu,rtc,", 16, NULL, 0);
	n = hm_wire_enc_u64(buf, sizeof(buf), 250);
	seed(HM_MSG_END, 0, 3, buf, (size_t)n, NULL, 0);
	seed(HM_MSG_COMPLETE, 0, 0, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_complete_ack(buf, sizeof(buf), 0, 1000);
	seed(HM_MSG_COMPLETE_ACK, 0, 0, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 5);
	seed(HM_MSG_VERIFY_REQ, 0, 0, buf, (size_t)n, NULL, 0);
	n = hm_wire_enc_pages_index(buf, sizeof(buf), idx, 2);
	seed(HM_MSG_VERIFY_DATA, 0, 0, buf, (size_t)n, pages, 2 * FUZZ_PS);
	n = hm_wire_enc_abort(buf, sizeof(buf), 71, "protocol error");
	seed(HM_MSG_ABORT, 0, 2, buf, (size_t)n, NULL, 0);

	stamp = fopen(argv[2], "w");
	if (!stamp || fprintf(stamp, "%u seeds\n", nseeds) < 0 ||
	    fclose(stamp))
		return 1;
	return 0;
}

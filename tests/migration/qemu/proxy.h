/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A TCP proxy for the migration stream (source -> proxy -> destination, on
 * loopback) that corrupts one byte of one guest page on the way.
 *
 * It looks in the source's stream for a byte pattern that only a guest page
 * holds (a static page of hm-workload: its magic and index at the start of
 * the page) and flips (XOR) the byte flip_offset bytes after the pattern's
 * first byte, once.  Flipping inside a page's payload rather than at a
 * random offset keeps the stream's framing intact: the migration completes
 * and only the destination's copy of that page is wrong, which is what the
 * checks must catch. */
#ifndef HM_QEMU_PROXY_H
#define HM_QEMU_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct hm_proxy;

struct hm_proxy_stats {
	uint64_t to_dst_bytes;  /* forwarded source -> destination */
	uint64_t to_src_bytes;  /* forwarded destination -> source */
	unsigned pattern_hits;  /* times the pattern was seen */
	unsigned flips;         /* bytes flipped (0 or 1) */
	uint64_t flip_offset;   /* stream offset of the flipped byte */
	unsigned char before, after;
	char error[256];        /* empty unless the proxy failed */
};

/* Listen on 127.0.0.1 (an ephemeral port) and forward the first
 * connection to 127.0.0.1:dst_port.  pattern is copied. */
struct hm_proxy *hm_proxy_start(int dst_port, const void *pattern,
				size_t pattern_len, size_t flip_offset,
				unsigned char xor_mask, char *err,
				size_t errlen);
int hm_proxy_port(const struct hm_proxy *p);
/* Stop (closes the connections if still open), join, fill stats, free. */
void hm_proxy_stop(struct hm_proxy *p, struct hm_proxy_stats *stats);

#endif

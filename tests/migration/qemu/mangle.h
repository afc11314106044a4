/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A TCP proxy for hintmig's own RAM stream (hintmig send -> proxy ->
 * hintmig recv, on loopback) that damages one connection once, at a
 * seeded stream offset: a flipped byte, the connection cut, a block of
 * bytes sent twice, or two blocks swapped. Every other connection and
 * every byte before and after the damage pass unchanged. Unlike proxy.h
 * (which keeps the framing intact to hide a flip inside a page of QEMU's
 * stream), anything may be hit here: headers, indexes, page data. */
#ifndef HM_QEMU_MANGLE_H
#define HM_QEMU_MANGLE_H

#include <stddef.h>
#include <stdint.h>

enum hm_mangle_kind {
	HM_MANGLE_NONE,
	HM_MANGLE_FLIP,		/* one byte XOR a non-zero mask */
	HM_MANGLE_TRUNCATE,	/* the connection cut (both ways) there */
	HM_MANGLE_DUPLICATE,	/* len bytes from there sent twice */
	HM_MANGLE_REORDER,	/* [at, at+len) and [at+len, at+2 len)
				 * swapped */
};

struct hm_mangle_stats {
	unsigned connections;	/* accepted */
	int done;		/* the damage happened */
	uint64_t at, len;	/* where, in the victim connection's bytes */
	uint64_t to_dst_bytes;	/* forwarded towards hintmig recv */
	char error[200];	/* empty unless the proxy failed */
};

struct hm_mangle;

const char *hm_mangle_name(enum hm_mangle_kind k);
/* A TCP connection to 127.0.0.1:port (blocking, close-on-exec), or -1. */
int hm_loopback_connect(int port);
/* Listen on 127.0.0.1 (ephemeral port), forward every connection to
 * 127.0.0.1:dst_port, damage the first one as kind says, at an offset
 * and length drawn from seed (offset 1-5 MiB into the connection, length
 * 4-12 KiB). NULL and err on failure. */
struct hm_mangle *hm_mangle_start(int dst_port, enum hm_mangle_kind kind,
				  unsigned seed, char *err, size_t errlen);
int hm_mangle_port(const struct hm_mangle *m);
/* Close every connection, join, fill stats, free. */
void hm_mangle_stop(struct hm_mangle *m, struct hm_mangle_stats *st);

#endif

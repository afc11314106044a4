/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Wire protocol v1 between source and destination (docs/protocol.md).
 *
 * Every message: a 32-byte header, little-endian fixed-width fields
 *   magic u32 "HMW1", version u16, type u16, flags u32, payload_len u32,
 *   channel u16, reserved u16 (0), session_id u64, seq u32, reserved u32
 * then payload_len bytes. Decoders check every length, offset and count
 * against the session's geometry before anything touches memory.
 *
 * Channels: a migration uses N parallel streams (connections). Page k is
 * always sent on channel (k / 64) % N, so the last copy of a page is the
 * last one on its channel and TCP ordering alone makes the newest copy win.
 */
#ifndef HM_MIGRATE_WIRE_H
#define HM_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hintmig/migrate.h>

#define HM_WIRE_MAGIC 0x31574d48u /* "HMW1" as little-endian bytes */
#define HM_WIRE_VERSION 1
#define HM_WIRE_HDR_SIZE 32
#define HM_WIRE_MAX_PAYLOAD (16u << 20)	/* any message */
#define HM_WIRE_MAX_BATCH_PAGES 256	/* pages in one PAGES message */
#define HM_WIRE_MAX_CHANNELS 64
#define HM_WIRE_MAX_BLOCKS 64

enum hm_msg_type {
	HM_MSG_HELLO = 1,	/* src->dst, first on every channel */
	HM_MSG_HELLO_ACK,	/* dst->src */
	HM_MSG_PAGES,		/* src->dst: page batch */
	HM_MSG_ZERO_RUN,	/* src->dst: run of zero pages */
	HM_MSG_ROUND,		/* src->dst: end of a round on this channel */
	HM_MSG_DEVICE_STATE,	/* src->dst: channel 0, final round */
	HM_MSG_END,		/* src->dst: this channel sent all it will */
	HM_MSG_COMPLETE,	/* src->dst: channel 0, after END everywhere */
	HM_MSG_COMPLETE_ACK,	/* dst->src: channel 0, status */
	HM_MSG_VERIFY_REQ,	/* src->dst: send these pages back */
	HM_MSG_VERIFY_DATA,	/* dst->src */
	HM_MSG_ABORT,		/* either way: reason code, the session ends */
	HM_MSG_TYPE_MAX
};

enum hm_page_batch_flags {
	HM_BATCH_ZSTD = 1u << 0,	/* page data is one zstd frame */
};

struct hm_wire_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint32_t payload_len;
	uint16_t channel;
	uint16_t reserved0;
	uint64_t session_id;
	uint32_t seq;		/* per channel, from 0, +1 per message */
	uint32_t reserved1;
};

/* Geometry agreed in HELLO; the decoder checks against it. */
struct hm_wire_geometry {
	uint32_t page_size;
	uint32_t nblocks;
	uint32_t channels;
	uint64_t npages;
	struct hm_ram_block blocks[HM_WIRE_MAX_BLOCKS]; /* name, gpa, len,
							 * first_bit */
};

/* A decoded message; pointers point into the receive buffer. */
struct hm_wire_msg {
	struct hm_wire_hdr hdr;
	union {
		struct {
			uint16_t channel_index;
			struct hm_wire_geometry geo;
		} hello;
		struct {
			uint32_t status; /* 0 ok, else an errno value */
		} hello_ack;
		struct {
			uint32_t count;		/* pages */
			const uint64_t *pages_le; /* count global page indexes,
						   * little-endian */
			const void *data;	/* count * page_size bytes,
						   * or a zstd frame */
			uint32_t data_len;
			bool zstd;
		} pages;
		struct {
			uint64_t first;	/* global page index */
			uint64_t count;
		} zero_run;
		struct {
			uint64_t round;
			uint64_t remaining_pages;
		} round;
		struct {
			const void *data;
			uint32_t len;
		} device_state;
		struct {
			uint64_t pages_sent; /* on this channel, for a check */
		} end;
		struct {
			uint64_t total_pages_sent;
		} complete;
		struct {
			uint32_t status; /* 0 ok, else errno value */
			uint64_t pages_received;
		} complete_ack;
		struct {
			uint32_t count;
			const uint64_t *pages_le;
		} verify_req;
		struct {
			uint32_t count;
			const uint64_t *pages_le;
			const void *data; /* count * page_size */
		} verify_data;
		struct {
			uint32_t reason;	/* errno value */
			char text[128];		/* NUL-terminated */
		} abort_;
	} u;
};

/* Encode a header into out[HM_WIRE_HDR_SIZE]. */
void hm_wire_put_hdr(void *out, const struct hm_wire_hdr *h);
/* Decode and check magic, version, type range, reserved == 0,
 * payload_len <= HM_WIRE_MAX_PAYLOAD. 0 or -EPROTO. */
int hm_wire_get_hdr(const void *in, struct hm_wire_hdr *h);

/* Decode payload (payload_len bytes at p) of a message whose header is
 * hdr into msg, checking every count, index and length against geo (may be
 * NULL only for HELLO, HELLO_ACK, ABORT). 0 or -EPROTO; on -EPROTO, err (if
 * not NULL) receives a short human description. */
int hm_wire_decode(const struct hm_wire_hdr *hdr, const void *p,
		   const struct hm_wire_geometry *geo, struct hm_wire_msg *msg,
		   char *err, size_t errlen);

/* Payload encoders: write the payload into buf (capacity cap) and return
 * its length, or -ENOSPC / -EINVAL. */
long hm_wire_enc_hello(void *buf, size_t cap, uint16_t channel_index,
		       const struct hm_wire_geometry *geo);
long hm_wire_enc_pages_index(void *buf, size_t cap, const uint64_t *pages,
			     uint32_t count); /* count + indexes, data follows */
long hm_wire_enc_zero_run(void *buf, size_t cap, uint64_t first,
			  uint64_t count);
long hm_wire_enc_round(void *buf, size_t cap, uint64_t round,
		       uint64_t remaining);
long hm_wire_enc_u32(void *buf, size_t cap, uint32_t v);
long hm_wire_enc_u64(void *buf, size_t cap, uint64_t v);
long hm_wire_enc_abort(void *buf, size_t cap, uint32_t reason,
		       const char *text);

/* ---- channel I/O: one connection, its sequence numbers and buffers ---- */

struct hm_wire_chan {
	int fd;
	uint16_t channel;
	uint64_t session_id;
	uint32_t tx_seq, rx_seq;
	uint64_t tx_bytes, rx_bytes;	/* headers included */
	void *rxbuf;			/* HM_WIRE_MAX_PAYLOAD bytes */
	const struct hm_wire_geometry *geo; /* set after HELLO */
	char err[160];			/* last decode error */
};

int hm_wire_chan_init(struct hm_wire_chan *c, int fd, uint16_t channel,
		      uint64_t session_id);
void hm_wire_chan_fini(struct hm_wire_chan *c); /* closes fd */

/* Send one message: header + the concatenation of iov (payload). 0 or
 * -errno from the transport. */
struct iovec;
int hm_wire_send(struct hm_wire_chan *c, uint16_t type, uint32_t flags,
		 const struct iovec *iov, int iovcnt);
/* Receive and decode the next message; checks seq and session id. 0 or
 * -errno (-EPROTO with c->err describing it). */
int hm_wire_recv(struct hm_wire_chan *c, struct hm_wire_msg *msg);

#endif

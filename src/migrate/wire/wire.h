/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Wire protocol v1 between source and destination (docs/protocol.md).
 *
 * Every message: a 36-byte header, little-endian fixed-width fields
 *   magic u32 "HMW1" @0, version u16 @4, type u16 @6, flags u32 @8,
 *   payload_len u32 @12, channel u16 @16, reserved u16 (0) @18,
 *   session_id u64 @20, seq u32 @28, crc u32 @32
 * then payload_len bytes. crc (version 2) is the CRC-32C of the header
 * with crc 0 and of the payload: a receiver checks it before it trusts a
 * message, and for page data written straight into place before the
 * message counts (a mismatch fails the migration). (These fields add up to 36 bytes: the first
 * draft of this header said 32.) Decoders check every length, offset and count
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
#define HM_WIRE_VERSION 2
#define HM_WIRE_HDR_SIZE 36
#define HM_WIRE_MAX_PAYLOAD (16u << 20)	/* any message */
#define HM_WIRE_MAX_BATCH_PAGES 256	/* pages in one PAGES message */
/* iovecs one hm_wire_send() takes: a batch's index and a run per page */
#define HM_WIRE_MAX_SEND_IOV (HM_WIRE_MAX_BATCH_PAGES + 1)
#define HM_WIRE_MAX_CHANNELS 64
#define HM_WIRE_MAX_BLOCKS 64
#define HM_WIRE_MAX_VERIFY_PAGES 1024	/* pages in one VERIFY_REQ/DATA */
#define HM_WIRE_MAX_RAM_BYTES (UINT64_C(1) << 46) /* 64 TiB, any HELLO */
#define HM_WIRE_ABORT_TEXT_MAX 127	/* bytes of text in ABORT */

/* HELLO header flags. */
enum hm_hello_flags {
	HM_HELLO_ZSTD = 1u << 0,	/* the source may send zstd batches:
					 * a destination without zstd refuses
					 * the HELLO (EPROTONOSUPPORT) */
};

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
	uint32_t crc;		/* CRC-32C of header (crc 0) and payload */
};

/* Geometry agreed in HELLO; the decoder checks against it. Rules
 * (hm_wire_check_geometry): page_size a power of two in [4096, 2 MiB];
 * 1..HM_WIRE_MAX_BLOCKS blocks, 1..HM_WIRE_MAX_CHANNELS channels; each
 * block a non-empty NUL-terminated name, gpa and len page aligned, len > 0,
 * no overflow, no two blocks overlapping in guest-physical space,
 * first_bit = sum of the page counts of the blocks before it; npages = the
 * sum of all; npages * page_size <= HM_WIRE_MAX_RAM_BYTES. host_addr,
 * memfd and memfd_offset are not on the wire (decoded as 0, -1, 0). */
struct hm_wire_geometry {
	uint32_t page_size;
	uint32_t nblocks;
	uint32_t channels;
	uint64_t npages;
	struct hm_ram_block blocks[HM_WIRE_MAX_BLOCKS]; /* name, gpa, len,
							 * first_bit */
};

/* A decoded message; pointers point into the receive buffer. The index
 * arrays (pages_le) are little-endian and may be unaligned: read them with
 * hm_wire_idx(). */
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
			bool placed;	/* hm_wire_recv_place: the page data
					 * is already in place, data is
					 * NULL */
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

/* Index i of a decoded pages_le array, in host order. */
static inline uint64_t hm_wire_idx(const uint64_t *pages_le, uint32_t i)
{
	const unsigned char *b = (const unsigned char *)pages_le + 8u * i;
	uint64_t v = 0;

	for (int k = 7; k >= 0; k--)
		v = v << 8 | b[k];
	return v;
}

/* "HELLO", "PAGES", ...; "?" for an unknown type. */
const char *hm_wire_type_name(unsigned type);

/* The largest page count allowed in one message of type (PAGES,
 * VERIFY_REQ, VERIFY_DATA) for page_size: min(HM_WIRE_MAX_BATCH_PAGES or
 * HM_WIRE_MAX_VERIFY_PAGES, what fits HM_WIRE_MAX_PAYLOAD uncompressed
 * with its index). 0 for other types or a bad page size. A source must
 * batch at most this many (256 / 1024 for 4 KiB pages, 7 for 2 MiB). */
uint32_t hm_wire_max_pages(unsigned type, uint32_t page_size);

/* Check a geometry against the rules above. 0 or -EPROTO (err says). */
int hm_wire_check_geometry(const struct hm_wire_geometry *geo, char *err,
			   size_t errlen);
/* Same page size, channels, blocks (name, gpa, len, first_bit). */
bool hm_wire_geometry_equal(const struct hm_wire_geometry *a,
			    const struct hm_wire_geometry *b);

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
 * its length, or -ENOSPC / -EINVAL. Which encoder builds which message:
 *   HELLO          hm_wire_enc_hello (geometry checked: -EINVAL)
 *   HELLO_ACK      hm_wire_enc_u32(status)
 *   PAGES          hm_wire_enc_pages_index, then count * page_size bytes
 *                  (or one zstd frame, flag HM_BATCH_ZSTD) as a 2nd iovec
 *   ZERO_RUN       hm_wire_enc_zero_run
 *   ROUND          hm_wire_enc_round
 *   DEVICE_STATE   the blob itself (no encoder; may be empty)
 *   END, COMPLETE  hm_wire_enc_u64(pages on this channel / in total)
 *   COMPLETE_ACK   hm_wire_enc_complete_ack
 *   VERIFY_REQ     hm_wire_enc_pages_index
 *   VERIFY_DATA    hm_wire_enc_pages_index, then count * page_size bytes
 *   ABORT          hm_wire_enc_abort (text truncated to 127 bytes) */
long hm_wire_enc_hello(void *buf, size_t cap, uint16_t channel_index,
		       const struct hm_wire_geometry *geo);
/* count u32, reserved u32, count x u64 index: the prefix of PAGES,
 * VERIFY_REQ and VERIFY_DATA; count 1..HM_WIRE_MAX_VERIFY_PAGES here (the
 * decoder applies hm_wire_max_pages() per type). */
long hm_wire_enc_pages_index(void *buf, size_t cap, const uint64_t *pages,
			     uint32_t count);
long hm_wire_enc_zero_run(void *buf, size_t cap, uint64_t first,
			  uint64_t count);
long hm_wire_enc_round(void *buf, size_t cap, uint64_t round,
		       uint64_t remaining);
long hm_wire_enc_u32(void *buf, size_t cap, uint32_t v);
long hm_wire_enc_u64(void *buf, size_t cap, uint64_t v);
long hm_wire_enc_abort(void *buf, size_t cap, uint32_t reason,
		       const char *text);
long hm_wire_enc_complete_ack(void *buf, size_t cap, uint32_t status,
			      uint64_t pages_received);

/* ---- channel I/O: one connection, its sequence numbers and buffers ---- */

/* One connection. Not thread safe: one thread receives; sends from
 * several threads need the caller's lock (seq numbers).
 *
 * A source initialises it with its channel index and (non-zero) session
 * id, sends HELLO, then sets geo. A destination initialises it with
 * session_id 0 ("learn"): the first message received must then be a HELLO
 * with a non-zero session id, whose session id and channel the channel
 * adopts (from its header, even when the payload then proves invalid, so
 * that an ABORT can be addressed; the decoder checks that the payload's
 * channel index equals the header's). From then on every received header must carry that
 * session id and channel, and seq must be exactly rx_seq (0, 1, 2, ...);
 * anything else is -EPROTO. The receive buffer grows on demand up to
 * HM_WIRE_MAX_PAYLOAD (no per-message or per-page allocation after). */
struct hm_tls;

struct hm_wire_chan {
	int fd;
	struct hm_tls *tls;		/* NULL: plain; owned (R18) */
	uint16_t channel;
	uint64_t session_id;
	uint32_t tx_seq, rx_seq;
	uint64_t tx_bytes, rx_bytes;	/* headers included */
	void *rxbuf;			/* grows up to HM_WIRE_MAX_PAYLOAD */
	size_t rxcap;
	uint64_t rx_msg_offset;		/* stream offset of the last message
					 * received (for error reports) */
	const struct hm_wire_geometry *geo; /* set after HELLO */
	char err[160];			/* last decode error */
};

/* 0 or -EBADF (fd < 0). Does not allocate. */
int hm_wire_chan_init(struct hm_wire_chan *c, int fd, uint16_t channel,
		      uint64_t session_id);
void hm_wire_chan_fini(struct hm_wire_chan *c); /* ends TLS, closes fd */
/* Decrypted bytes waiting that poll() on fd does not see (TLS). */
size_t hm_wire_chan_pending(const struct hm_wire_chan *c);

/* Send one message: header + the concatenation of iov (payload; iovcnt
 * 0..16, entries may be empty). 0, -EMSGSIZE (payload over
 * HM_WIRE_MAX_PAYLOAD), -EINVAL, or -errno from the transport. */
struct iovec;
int hm_wire_send(struct hm_wire_chan *c, uint16_t type, uint32_t flags,
		 const struct iovec *iov, int iovcnt);
/* Write the crc of a message whose header (as hm_wire_put_hdr wrote it,
 * crc 0) is at hdr and whose payload is iov[0..iovcnt) into that header:
 * what hm_wire_send does; for tests that build streams by hand. */
void hm_wire_seal(void *hdr, const struct iovec *iov, int iovcnt);
/* Receive and decode the next message; checks seq and session id. 0 or
 * -errno: -EPROTO with c->err describing it ("seq N at byte B: ..."),
 * -ENODATA orderly EOF between messages, -ECONNRESET EOF inside a message
 * or reset, -ETIMEDOUT, -ENOMEM. msg points into c->rxbuf until the next
 * call. */
int hm_wire_recv(struct hm_wire_chan *c, struct hm_wire_msg *msg);

/* Where page pg of an uncompressed PAGES batch goes: page_size writable
 * bytes, or NULL to refuse the page (the receive then fails, -EPROTO). */
typedef void *(*hm_wire_place_fn)(void *ctx, uint64_t pg);
/* hm_wire_recv, except that the data of an uncompressed PAGES message is
 * read straight to place(ctx, pg) for each page, after the header and
 * the whole index were received and checked (msg->u.pages.placed is
 * then set). Only the pages of a batch that passed every check are
 * written; on an I/O error after that, some of them may hold part of
 * the batch's data. Other messages behave as with hm_wire_recv. */
int hm_wire_recv_place(struct hm_wire_chan *c, struct hm_wire_msg *msg,
		       hm_wire_place_fn place, void *ctx);

#endif

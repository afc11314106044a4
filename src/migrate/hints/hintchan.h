/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hint channel: one small versioned protocol between the host engine
 * and whatever answers for the guest (the synthetic guest process now; the
 * in-guest agent over virtio-serial later). docs/protocol.md, "Hint
 * channel".
 *
 * Frame: 24-byte header, little-endian:
 *   magic u32 "HMH1", type u16, flags u16, payload_len u32, reserved u32,
 *   epoch u64
 * then payload_len bytes (<= HM_HC_MAX_PAYLOAD).
 *
 *   HELLO   guest->host  version u16, flags u16 (HM_HC_HELLO_NOHINTS),
 *                        page_size u32, poison u32 (enum hm_hc_poison),
 *                        poison_byte u8, reason u8 (enum
 *                        hm_hc_nohint_reason, with NOHINTS), reserved u8[6]
 *   REQUEST host->guest  epoch; max_ranges u32, reserved u32
 *   HINTS   guest->host  epoch; kind u32 (FREE/ISOLATED), count u32,
 *                        count x { gpa u64, len u64 } (bytes)
 *   DONE    guest->host  epoch: nothing more for this epoch
 *   STOP    host->guest  epoch: the epoch is over, stop reporting; an
 *                        ISOLATED reporter releases what it still holds
 *                        for that epoch without an ack (the host applied
 *                        none of it)
 *   ACK     host->guest  epoch; count u32, reserved u32, ranges: these
 *                        ISOLATED ranges are applied (M and L cleared and
 *                        re-protected); the guest may free them now
 *   BYE     either way   the channel closes
 */
#ifndef HM_MIGRATE_HINTCHAN_H
#define HM_MIGRATE_HINTCHAN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#define HM_HC_MAGIC 0x31484d48u /* "HMH1" little-endian */
#define HM_HC_VERSION 1
#define HM_HC_HDR_SIZE 24
#define HM_HC_MAX_RANGES 4096 /* per HINTS / ACK message */
#define HM_HC_MAX_PAYLOAD (16 + HM_HC_MAX_RANGES * 16)

enum hm_hc_type {
	HM_HC_HELLO = 1,
	HM_HC_REQUEST,
	HM_HC_HINTS,
	HM_HC_DONE,
	HM_HC_STOP,
	HM_HC_ACK,
	HM_HC_BYE,
	HM_HC_TYPE_MAX
};

enum hm_hint_kind {
	HM_HINT_FREE = 1,	/* free at some instant after the request (R3) */
	HM_HINT_ISOLATED = 2,	/* held by the reporter until acked (R4) */
};

enum hm_hc_poison {
	HM_HC_POISON_NONE = 0,	/* free pages hold anything */
	HM_HC_POISON_PATTERN = 1, /* free pages are filled with poison_byte
				   * (page_poison, init_on_free) (R7) */
};

/* HELLO flags */
#define HM_HC_HELLO_NOHINTS 0x1u /* the reporter cannot give hints on this
				  * guest; reason says why. The host asks for
				  * none and migrates without them. */

/* Why a reporter cannot hint (HELLO reason, with NOHINTS). */
enum hm_hc_nohint_reason {
	HM_HC_NOHINT_UNSPECIFIED = 0,
	HM_HC_NOHINT_NO_MODULE = 1,	 /* no free-list reader in the guest
					  * kernel (module not loaded) */
	HM_HC_NOHINT_MODULE_VERSION = 2, /* reader of another version */
	HM_HC_NOHINT_MODULE_ERROR = 3,	 /* reader present, but failing */
	HM_HC_NOHINT_REASON_MAX
};

struct hm_gpa_range {
	uint64_t gpa;
	uint64_t len;
};

struct hm_hc_msg {
	uint16_t type;
	uint16_t flags;
	uint64_t epoch;
	union {
		struct {
			uint16_t version;
			uint16_t flags;		/* HM_HC_HELLO_* */
			uint32_t page_size;
			uint32_t poison;
			uint8_t poison_byte;
			uint8_t reason;		/* enum hm_hc_nohint_reason */
		} hello;
		struct {
			uint32_t max_ranges;
		} request;
		struct {	/* HINTS and ACK */
			uint32_t kind;	/* HINTS only */
			uint32_t count;
			/* count ranges, decoded to host order, owned by the
			 * receive buffer of the channel */
			const struct hm_gpa_range *ranges;
		} hints;
	} u;
};

/* A channel endpoint on a connected stream socket. Either side. */
struct hm_hc {
	int fd;
	struct hm_log log;
	unsigned char *buf;		/* receive buffer */
	size_t have;			/* bytes buffered */
	struct hm_gpa_range *ranges;	/* decoded ranges of the last msg */
	char err[128];
	/* send side: frames are encoded into sbuf and written whole under
	 * send_lock, so that several threads may send on one channel */
	unsigned char *sbuf;
	pthread_mutex_t send_lock;
	int send_timeout_ms;	/* a peer that does not read for this long
				 * fails hm_hc_send with -ETIMEDOUT (a stuck
				 * guest must not stall the host); < 0 waits
				 * forever. Default 10000. */
	int rerr;		/* sticky receive error (-EPROTO, -ENODATA) */
	int serr;		/* sticky send error (a frame was cut) */
};

int hm_hc_init(struct hm_hc *c, int fd, const struct hm_log *log);
void hm_hc_fini(struct hm_hc *c); /* closes fd */

/* Send a message. For HINTS/ACK, u.hints.ranges/count are sent. 0 or
 * -errno (-EINVAL: count > HM_HC_MAX_RANGES). */
int hm_hc_send(struct hm_hc *c, const struct hm_hc_msg *m);

/* Receive the next message. With nonblock, returns -EAGAIN when no whole
 * message is buffered and none can be read now. 0, -ENODATA (orderly EOF),
 * -EPROTO (malformed: c->err says why; the channel is unusable), -errno. */
int hm_hc_recv(struct hm_hc *c, struct hm_hc_msg *m, int nonblock);

/* Pure decoder, for the fuzzer and the tests: decode one frame at buf
 * (len bytes available). Returns the frame's total length (> 0), 0 when
 * more bytes are needed, or -EPROTO. ranges must hold HM_HC_MAX_RANGES. */
long hm_hc_decode(const void *buf, size_t len, struct hm_hc_msg *m,
		  struct hm_gpa_range *ranges, char *err, size_t errlen);

/* Pure encoder: write m's frame into buf (cap bytes). Returns the frame's
 * length (> 0), or -EINVAL (unknown type, count > HM_HC_MAX_RANGES, NULL
 * ranges with count > 0), -ENOSPC (cap too small). Reserved fields are
 * written as zero; the fields of other types are ignored. */
long hm_hc_encode(const struct hm_hc_msg *m, void *buf, size_t cap);

/* "hello", "request", ... ; NULL for an unknown value. */
const char *hm_hc_type_name(unsigned type);
/* What a HELLO's reason means, for logs ("unspecified" if unknown). */
const char *hm_hc_nohint_reason_name(unsigned reason);
/* Drop whatever is buffered for receiving and clear the sticky errors:
 * a reporter resynchronizes this way after garbage from the host. */
void hm_hc_discard(struct hm_hc *c);
/* "free", "isolated"; NULL for an unknown value. */
const char *hm_hint_kind_name(unsigned kind);

/* ---- host side: hint sources behind one interface ---- */

struct hm_hint_source_ops {
	const char *name;	/* "channel", later "agent", "balloon" */
	/* Wait for the guest's HELLO (timeout_ms): 0 and *hello, or -errno. */
	int (*hello)(struct hm_hint_source *s, struct hm_hc_msg *hello,
		     uint64_t timeout_ms);
	int (*request)(struct hm_hint_source *s, uint64_t epoch,
		       uint32_t max_ranges);
	int (*stop)(struct hm_hint_source *s, uint64_t epoch);
	int (*ack)(struct hm_hint_source *s, uint64_t epoch,
		   const struct hm_gpa_range *r, uint32_t n);
	/* An fd that polls readable when recv may have something. */
	int (*pollfd)(struct hm_hint_source *s);
	/* Next HINTS or DONE message, -EAGAIN if none now, else as
	 * hm_hc_recv. The ranges stay valid until the next call. */
	int (*recv)(struct hm_hint_source *s, struct hm_hc_msg *m);
	void (*destroy)(struct hm_hint_source *s);
};

struct hm_hint_source {
	const struct hm_hint_source_ops *ops;
	void *priv;
};

#endif

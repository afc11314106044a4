/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hint channel codec and endpoint (hintchan.h has the frame format).
 *
 * Every field is encoded and decoded byte by byte in little-endian order:
 * no struct is ever cast onto the wire. The decoder is pure and strict: it
 * accepts exactly the frames that the encoder can produce (known type, no
 * flags, reserved fields zero, payload length exactly what the type and
 * count say), so that anything else from an untrusted guest is -EPROTO
 * before a single range is looked at. What the ranges mean (inside guest
 * RAM, aligned, bounded) is the host's business (hints.c).
 *
 * The endpoint keeps one bounded receive buffer (a header plus the largest
 * payload): a peer can never make it grow.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migrate/hints/hintchan.h"
#include "migrate/wire/le.h"

#define HC_RBUF_SIZE (HM_HC_HDR_SIZE + HM_HC_MAX_PAYLOAD)
#define HC_RANGE_SIZE 16u
#define HC_RANGES_HDR 8u	/* kind/count or count/reserved */
#define HC_HELLO_SIZE 20u
#define HC_REQUEST_SIZE 8u
#define HC_DEFAULT_SEND_TIMEOUT_MS 10000

/* Per type: its name, and its payload: fixed bytes, plus count ranges
 * when it carries ranges. */
struct hc_type_info {
	const char *name;
	uint32_t fixed;
	bool ranges;
};

static const struct hc_type_info hc_types[HM_HC_TYPE_MAX] = {
	[HM_HC_HELLO] = { "hello", HC_HELLO_SIZE, false },
	[HM_HC_REQUEST] = { "request", HC_REQUEST_SIZE, false },
	[HM_HC_HINTS] = { "hints", HC_RANGES_HDR, true },
	[HM_HC_DONE] = { "done", 0, false },
	[HM_HC_STOP] = { "stop", 0, false },
	[HM_HC_ACK] = { "ack", HC_RANGES_HDR, true },
	[HM_HC_BYE] = { "bye", 0, false },
};

static const char *const hint_kind_names[] = {
	[HM_HINT_FREE] = "free",
	[HM_HINT_ISOLATED] = "isolated",
};

const char *hm_hc_type_name(unsigned type)
{
	if (type >= HM_HC_TYPE_MAX)
		return NULL;
	return hc_types[type].name;
}

const char *hm_hint_kind_name(unsigned kind)
{
	if (kind >= sizeof(hint_kind_names) / sizeof(hint_kind_names[0]))
		return NULL;
	return hint_kind_names[kind];
}

static const char *const nohint_names[HM_HC_NOHINT_REASON_MAX] = {
	[HM_HC_NOHINT_UNSPECIFIED] = "unspecified",
	[HM_HC_NOHINT_NO_MODULE] =
		"no free-list reader in the guest kernel (module hintmig_free "
		"not loaded)",
	[HM_HC_NOHINT_MODULE_VERSION] =
		"the guest's free-list module is of another version",
	[HM_HC_NOHINT_MODULE_ERROR] = "the guest's free-list module fails",
};

const char *hm_hc_nohint_reason_name(unsigned reason)
{
	if (reason >= HM_HC_NOHINT_REASON_MAX)
		return nohint_names[HM_HC_NOHINT_UNSPECIFIED];
	return nohint_names[reason];
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return false;
	}
	return true;
}

/* ---- codec ---- */

long hm_hc_encode(const struct hm_hc_msg *m, void *buf, size_t cap)
{
	unsigned char *p = buf;
	const struct hc_type_info *ti;
	uint32_t count = 0, plen;

	if (!m || !buf || m->type == 0 || m->type >= HM_HC_TYPE_MAX)
		return -EINVAL;
	ti = &hc_types[m->type];
	if (ti->ranges) {
		count = m->u.hints.count;
		if (count > HM_HC_MAX_RANGES ||
		    (count && !m->u.hints.ranges))
			return -EINVAL;
	}
	plen = ti->fixed + count * HC_RANGE_SIZE;
	if (cap < HM_HC_HDR_SIZE + (size_t)plen)
		return -ENOSPC;
	memset(p, 0, HM_HC_HDR_SIZE + (size_t)plen);
	put32(p, HM_HC_MAGIC);
	put16(p + 4, m->type);
	put16(p + 6, m->flags);
	put32(p + 8, plen);
	/* p + 12: reserved u32 */
	put64(p + 16, m->epoch);
	p += HM_HC_HDR_SIZE;
	switch (m->type) {
	case HM_HC_HELLO:
		put16(p, m->u.hello.version);
		put16(p + 2, m->u.hello.flags);
		put32(p + 4, m->u.hello.page_size);
		put32(p + 8, m->u.hello.poison);
		p[12] = m->u.hello.poison_byte;
		p[13] = m->u.hello.reason;
		break;
	case HM_HC_REQUEST:
		put32(p, m->u.request.max_ranges);
		break;
	case HM_HC_HINTS:
		put32(p, m->u.hints.kind);
		put32(p + 4, count);
		break;
	case HM_HC_ACK:
		put32(p, count);
		break;
	default:
		break;
	}
	for (uint32_t i = 0; i < count; i++) {
		unsigned char *r = p + HC_RANGES_HDR + (size_t)i * HC_RANGE_SIZE;

		put64(r, m->u.hints.ranges[i].gpa);
		put64(r + 8, m->u.hints.ranges[i].len);
	}
	return HM_HC_HDR_SIZE + (long)plen;
}

#define REJECT(...)                                                         \
	do {                                                                \
		if (err && errlen)                                          \
			snprintf(err, errlen, __VA_ARGS__);                 \
		return -EPROTO;                                             \
	} while (0)

/* Header checks that need no payload: 0 when the header is acceptable and
 * *plen set. */
static long check_header(const unsigned char *p, uint32_t *plen, char *err,
			 size_t errlen)
{
	uint16_t type = get16(p + 4), flags = get16(p + 6);
	uint32_t len = get32(p + 8), rsv = get32(p + 12);
	const struct hc_type_info *ti;

	if (type == 0 || type >= HM_HC_TYPE_MAX)
		REJECT("unknown message type %u", type);
	ti = &hc_types[type];
	if (flags)
		REJECT("%s: unknown flags 0x%x", ti->name, flags);
	if (rsv)
		REJECT("%s: reserved header field is 0x%x, not zero", ti->name,
		       rsv);
	if (len > HM_HC_MAX_PAYLOAD)
		REJECT("%s: payload of %u bytes exceeds %u", ti->name, len,
		       (unsigned)HM_HC_MAX_PAYLOAD);
	if (!ti->ranges && len != ti->fixed)
		REJECT("%s: payload of %u bytes, must be %u", ti->name, len,
		       ti->fixed);
	if (ti->ranges && (len < ti->fixed ||
			   (len - ti->fixed) % HC_RANGE_SIZE ||
			   (len - ti->fixed) / HC_RANGE_SIZE >
				   HM_HC_MAX_RANGES))
		REJECT("%s: payload of %u bytes is not %u + n * %u with n <= "
		       "%u", ti->name, len, ti->fixed, HC_RANGE_SIZE,
		       HM_HC_MAX_RANGES);
	*plen = len;
	return 0;
}

long hm_hc_decode(const void *buf, size_t len, struct hm_hc_msg *m,
		  struct hm_gpa_range *ranges, char *err, size_t errlen)
{
	const unsigned char *p = buf;
	uint32_t plen = 0, count = 0;
	long r;

	if (!buf || !m || !ranges)
		return -EINVAL;
	/* reject garbage as early as its first bytes allow */
	if (len >= 4 && get32(p) != HM_HC_MAGIC)
		REJECT("bad magic 0x%08x", get32(p));
	if (len < HM_HC_HDR_SIZE)
		return 0;
	r = check_header(p, &plen, err, errlen);
	if (r < 0)
		return r;
	if (len < HM_HC_HDR_SIZE + (size_t)plen)
		return 0;

	memset(m, 0, sizeof(*m));
	m->type = get16(p + 4);
	m->flags = 0;
	m->epoch = get64(p + 16);
	p += HM_HC_HDR_SIZE;
	switch (m->type) {
	case HM_HC_HELLO:
		m->u.hello.version = get16(p);
		m->u.hello.page_size = get32(p + 4);
		m->u.hello.poison = get32(p + 8);
		m->u.hello.poison_byte = p[12];
		m->u.hello.flags = get16(p + 2);
		m->u.hello.reason = p[13];
		if (!all_zero(p + 14, 6))
			REJECT("hello: reserved bytes not zero");
		if (m->u.hello.flags & ~HM_HC_HELLO_NOHINTS)
			REJECT("hello: unknown flags 0x%x", m->u.hello.flags);
		if (!(m->u.hello.flags & HM_HC_HELLO_NOHINTS) &&
		    m->u.hello.reason)
			REJECT("hello: reason %u without NOHINTS",
			       m->u.hello.reason);
		if (m->u.hello.page_size < 4096 ||
		    m->u.hello.page_size & (m->u.hello.page_size - 1))
			REJECT("hello: page size %u", m->u.hello.page_size);
		if (m->u.hello.poison != HM_HC_POISON_NONE &&
		    m->u.hello.poison != HM_HC_POISON_PATTERN)
			REJECT("hello: unknown poison mode %u",
			       m->u.hello.poison);
		if (m->u.hello.poison == HM_HC_POISON_NONE &&
		    m->u.hello.poison_byte)
			REJECT("hello: poison byte without poisoning");
		break;
	case HM_HC_REQUEST:
		m->u.request.max_ranges = get32(p);
		if (get32(p + 4))
			REJECT("request: reserved field not zero");
		break;
	case HM_HC_HINTS:
		m->u.hints.kind = get32(p);
		count = get32(p + 4);
		if (!hm_hint_kind_name(m->u.hints.kind))
			REJECT("hints: unknown kind %u", m->u.hints.kind);
		break;
	case HM_HC_ACK:
		count = get32(p);
		if (get32(p + 4))
			REJECT("ack: reserved field not zero");
		break;
	default:
		break;
	}
	if (hc_types[m->type].ranges) {
		if (count != (plen - HC_RANGES_HDR) / HC_RANGE_SIZE)
			REJECT("%s: count %u does not match a payload of %u "
			       "bytes", hc_types[m->type].name, count, plen);
		for (uint32_t i = 0; i < count; i++) {
			const unsigned char *q = p + HC_RANGES_HDR +
						 (size_t)i * HC_RANGE_SIZE;

			ranges[i].gpa = get64(q);
			ranges[i].len = get64(q + 8);
		}
		m->u.hints.count = count;
		m->u.hints.ranges = ranges;
	}
	return HM_HC_HDR_SIZE + (long)plen;
}

#undef REJECT

/* ---- endpoint ---- */

int hm_hc_init(struct hm_hc *c, int fd, const struct hm_log *log)
{
	int ret;

	if (!c || fd < 0)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->buf = malloc(HC_RBUF_SIZE);
	c->sbuf = malloc(HC_RBUF_SIZE);
	c->ranges = calloc(HM_HC_MAX_RANGES, sizeof(*c->ranges));
	if (!c->buf || !c->sbuf || !c->ranges) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = -pthread_mutex_init(&c->send_lock, NULL);
	if (ret < 0)
		goto fail;
	c->fd = fd;
	if (log)
		c->log = *log;
	c->send_timeout_ms = HC_DEFAULT_SEND_TIMEOUT_MS;
	return 0;
fail:
	free(c->buf);
	free(c->sbuf);
	free(c->ranges);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return ret;
}

void hm_hc_fini(struct hm_hc *c)
{
	if (!c || !c->buf)
		return;
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->send_lock);
	free(c->buf);
	free(c->sbuf);
	free(c->ranges);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

void hm_hc_discard(struct hm_hc *c)
{
	c->have = 0;
	c->rerr = 0;
	c->serr = 0;
	c->err[0] = 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One write attempt that never blocks on a socket (MSG_DONTWAIT) and
 * never raises SIGPIPE; plain write() for other fds (a char device). */
static ssize_t write_some(int fd, const void *p, size_t n)
{
	ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (r < 0 && errno == ENOTSOCK)
		r = write(fd, p, n);
	return r;
}

int hm_hc_send(struct hm_hc *c, const struct hm_hc_msg *m)
{
	const unsigned char *p;
	size_t left, sent = 0;
	int64_t deadline;
	long len;
	int ret = 0;

	if (!c || !c->sbuf || !m)
		return -EINVAL;
	pthread_mutex_lock(&c->send_lock);
	if (c->serr) {
		ret = c->serr;
		goto out;
	}
	len = hm_hc_encode(m, c->sbuf, HC_RBUF_SIZE);
	if (len < 0) {
		ret = (int)len;
		goto out;
	}
	p = c->sbuf;
	left = (size_t)len;
	deadline = mono_ms() + c->send_timeout_ms;
	while (left > 0) {
		ssize_t r = write_some(c->fd, p + sent, left);
		struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
		int wait_ms = -1;

		if (r > 0) {
			sent += (size_t)r;
			left -= (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			ret = -errno;
			break;
		}
		if (c->send_timeout_ms >= 0) {
			int64_t now = mono_ms();

			if (now >= deadline) {
				ret = -ETIMEDOUT;
				break;
			}
			wait_ms = (int)(deadline - now);
		}
		if (poll(&pf, 1, wait_ms) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
	}
	if (ret < 0 && sent > 0) {
		/* half a frame went out: the stream cannot carry more */
		c->serr = ret;
	}
	if (ret < 0)
		hm_logf(&c->log, HM_LOG_DEBUG, "hint channel: sending %s: %s",
			hm_hc_type_name(m->type), strerror(-ret));
out:
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int hm_hc_recv(struct hm_hc *c, struct hm_hc_msg *m, int nonblock)
{
	int ret;

	if (!c || !c->buf || !m)
		return -EINVAL;
	if (c->rerr)
		return c->rerr;
	for (;;) {
		long r = hm_hc_decode(c->buf, c->have, m, c->ranges, c->err,
				      sizeof(c->err));
		struct pollfd pf = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (r < 0) {
			c->rerr = -EPROTO;
			hm_logf(&c->log, HM_LOG_WARN,
				"hint channel: malformed frame: %s", c->err);
			ret = -EPROTO;
			goto out;
		}
		if (r > 0) {
			c->have -= (size_t)r;
			memmove(c->buf, c->buf + r, c->have);
			ret = 0;
			goto out;
		}
		/* Need more. Poll first so that a blocking fd is never read
		 * in nonblocking mode (the fd may not be a socket). */
		n = poll(&pf, 1, nonblock ? 0 : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0) {
			ret = -EAGAIN;
			goto out;
		}
		n = read(c->fd, c->buf + c->have, HC_RBUF_SIZE - c->have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (nonblock) {
				ret = -EAGAIN;
				goto out;
			}
			continue;
		}
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0) {
			if (c->have) {
				snprintf(c->err, sizeof(c->err),
					 "end of stream inside a frame (%zu "
					 "bytes)", c->have);
				c->rerr = -EPROTO;
				hm_logf(&c->log, HM_LOG_WARN,
					"hint channel: %s", c->err);
			} else {
				c->rerr = -ENODATA;
			}
			ret = c->rerr;
			goto out;
		}
		c->have += (size_t)n;
	}
out:
	return ret;
}

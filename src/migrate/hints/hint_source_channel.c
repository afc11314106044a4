/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "channel" hint source: the host side of the hint channel protocol
 * (hintchan.h) over a connected stream socket. The synthetic guest speaks
 * it now; the in-guest agent will over virtio-serial.
 *
 * It only moves messages: what is sent and accepted when (epochs, R2-R5)
 * and whether a range is acceptable is decided by the caller (hints.c).
 * It does enforce the direction of the protocol: from the guest, only
 * HELLO (first), HINTS, DONE and BYE are legal.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/hints/hintchan.h"

#define HC_BYE_TIMEOUT_MS 100

struct hs_channel {
	struct hm_hint_source base;
	struct hm_hc hc;
	struct hm_log log;
};

static struct hs_channel *hs(struct hm_hint_source *s)
{
	return (struct hs_channel *)s;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ch_hello(struct hm_hint_source *s, struct hm_hc_msg *hello,
		    uint64_t timeout_ms)
{
	struct hs_channel *h = hs(s);
	int64_t deadline = mono_ms() + (int64_t)(timeout_ms > INT32_MAX ?
						  INT32_MAX : timeout_ms);
	int ret;

	for (;;) {
		struct pollfd pf = { .fd = h->hc.fd, .events = POLLIN };
		int64_t left;

		ret = hm_hc_recv(&h->hc, hello, 1);
		if (ret != -EAGAIN)
			break;
		left = deadline - mono_ms();
		if (left <= 0) {
			hm_logf(&h->log, HM_LOG_WARN,
				"hint channel: no HELLO within %llu ms",
				(unsigned long long)timeout_ms);
			ret = -ETIMEDOUT;
			goto out;
		}
		if (poll(&pf, 1, (int)left) < 0 && errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	if (ret < 0)
		goto out;
	if (hello->type != HM_HC_HELLO) {
		hm_logf(&h->log, HM_LOG_WARN,
			"hint channel: expected hello, got %s",
			hm_hc_type_name(hello->type));
		h->hc.rerr = ret = -EPROTO;
		goto out;
	}
	if (hello->u.hello.version != HM_HC_VERSION) {
		hm_logf(&h->log, HM_LOG_WARN,
			"hint channel: guest speaks version %u, we speak %u",
			hello->u.hello.version, HM_HC_VERSION);
		ret = -EPROTONOSUPPORT;
		goto out;
	}
	ret = 0;
out:
	return ret;
}

static int ch_request(struct hm_hint_source *s, uint64_t epoch,
		      uint32_t max_ranges)
{
	struct hm_hc_msg m = { .type = HM_HC_REQUEST, .epoch = epoch };

	m.u.request.max_ranges = max_ranges;
	return hm_hc_send(&hs(s)->hc, &m);
}

static int ch_stop(struct hm_hint_source *s, uint64_t epoch)
{
	struct hm_hc_msg m = { .type = HM_HC_STOP, .epoch = epoch };

	return hm_hc_send(&hs(s)->hc, &m);
}

/* Acks of more than one message's worth go out as several ACKs. */
static int ch_ack(struct hm_hint_source *s, uint64_t epoch,
		  const struct hm_gpa_range *r, uint32_t n)
{
	int ret = 0;

	do {
		struct hm_hc_msg m = { .type = HM_HC_ACK, .epoch = epoch };
		uint32_t k = n > HM_HC_MAX_RANGES ? HM_HC_MAX_RANGES : n;

		m.u.hints.count = k;
		m.u.hints.ranges = r;
		ret = hm_hc_send(&hs(s)->hc, &m);
		r += k;
		n -= k;
	} while (ret == 0 && n > 0);
	return ret;
}

static int ch_pollfd(struct hm_hint_source *s)
{
	return hs(s)->hc.fd;
}

static int ch_recv(struct hm_hint_source *s, struct hm_hc_msg *m)
{
	struct hs_channel *h = hs(s);
	int ret = hm_hc_recv(&h->hc, m, 1);

	if (ret < 0)
		return ret;
	switch (m->type) {
	case HM_HC_HINTS:
	case HM_HC_DONE:
		return 0;
	case HM_HC_BYE:
		h->hc.rerr = -ENODATA;
		return -ENODATA;
	default:
		snprintf(h->hc.err, sizeof(h->hc.err),
			 "%s from the guest side", hm_hc_type_name(m->type));
		hm_logf(&h->log, HM_LOG_WARN, "hint channel: %s", h->hc.err);
		h->hc.rerr = -EPROTO;
		return -EPROTO;
	}
}

static void ch_destroy(struct hm_hint_source *s)
{
	struct hs_channel *h = hs(s);
	struct hm_hc_msg bye = { .type = HM_HC_BYE };

	if (!h)
		return;
	/* best effort: a guest that does not read must not hold us up */
	h->hc.send_timeout_ms = HC_BYE_TIMEOUT_MS;
	hm_hc_send(&h->hc, &bye);
	hm_hc_fini(&h->hc);
	free(h);
}

static const struct hm_hint_source_ops channel_ops = {
	.name = "channel",
	.hello = ch_hello,
	.request = ch_request,
	.stop = ch_stop,
	.ack = ch_ack,
	.pollfd = ch_pollfd,
	.recv = ch_recv,
	.destroy = ch_destroy,
};

struct hm_hint_source *hm_hint_source_channel_new(int fd,
						  const struct hm_log *log)
{
	struct hs_channel *h = NULL;
	int ret;

	if (fd < 0) {
		ret = -EBADF;
		goto fail;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = hm_hc_init(&h->hc, fd, log);
	if (ret < 0)
		goto fail;
	if (log)
		h->log = *log;
	h->base.ops = &channel_ops;
	h->base.priv = h;
	return &h->base;
fail:
	free(h);
	if (fd >= 0)
		close(fd);
	errno = -ret;
	return NULL;
}

void hm_hint_source_free(struct hm_hint_source *src)
{
	if (src && src->ops && src->ops->destroy)
		src->ops->destroy(src);
}

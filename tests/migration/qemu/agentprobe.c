/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host end of hintmig-agent's port, played by the test: HELLO on
 * connect, resynchronization after garbage, answers to requests, a STOP in
 * the middle, BYE, and a second connection. See agentprobe.h.
 */
#include "agentprobe.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/hints/hintchan.h"
#include "migrate/wire/transport.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int say(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int say(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* The next message within timeout_ms: 0, or -ETIMEDOUT / -errno. */
static int next(struct hm_hc *c, struct hm_hc_msg *m, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = hm_hc_recv(c, m, 1);
		int64_t left = end - now_ms();

		if (r != -EAGAIN)
			return r;
		if (left <= 0)
			return -ETIMEDOUT;
		poll(&p, 1, (int)left);
	}
}

/* Connect and take the HELLO (the agent says it once the host end is
 * open). */
static int open_and_hello(const char *sock, struct hm_hc *c, char *why,
			  size_t len)
{
	char addr[300];
	struct hm_hc_msg m;
	int fd, r;

	snprintf(addr, sizeof(addr), "unix:%s", sock);
	fd = hm_transport_connect(addr, 10000);
	if (fd < 0)
		return say(why, len, "connect %s: %s", sock, strerror(-fd));
	if (hm_hc_init(c, fd, NULL) < 0) {
		close(fd);
		return say(why, len, "hm_hc_init failed");
	}
	r = next(c, &m, 60000);
	if (r < 0)
		return say(why, len, "no HELLO: %s", strerror(-r));
	if (m.type != HM_HC_HELLO)
		return say(why, len, "first message %s, not hello",
			   hm_hc_type_name(m.type));
	if (m.u.hello.flags & HM_HC_HELLO_NOHINTS)
		return say(why, len, "the agent cannot hint: %s",
			   hm_hc_nohint_reason_name(m.u.hello.reason));
	if (m.u.hello.page_size != 4096)
		return say(why, len, "page size %u", m.u.hello.page_size);
	return 0;
}

/* REQUEST(epoch) and read up to its DONE: the ranges and bytes hinted. */
static int ask(struct hm_hc *c, uint64_t epoch, uint64_t *ranges,
	       uint64_t *bytes, char *why, size_t len)
{
	struct hm_hc_msg m = { .type = HM_HC_REQUEST, .epoch = epoch };
	int r;

	m.u.request.max_ranges = 65536;
	*ranges = *bytes = 0;
	if ((r = hm_hc_send(c, &m)) < 0)
		return say(why, len, "REQUEST %" PRIu64 ": %s", epoch,
			   strerror(-r));
	for (;;) {
		r = next(c, &m, 30000);
		if (r < 0)
			return say(why, len, "epoch %" PRIu64 ": %s", epoch,
				   strerror(-r));
		if (m.type == HM_HC_DONE && m.epoch == epoch)
			return 0;
		if (m.type != HM_HC_HINTS)
			return say(why, len, "epoch %" PRIu64 ": got %s",
				   epoch, hm_hc_type_name(m.type));
		if (m.epoch != epoch) /* an abandoned epoch's: never late */
			return say(why, len, "hints of epoch %" PRIu64
				   " while %" PRIu64 " is asked", m.epoch,
				   epoch);
		if (m.u.hints.kind != HM_HINT_FREE)
			return say(why, len, "hints of kind %u",
				   m.u.hints.kind);
		for (uint32_t i = 0; i < m.u.hints.count; i++) {
			const struct hm_gpa_range *g = &m.u.hints.ranges[i];

			if (!g->len || (g->gpa | g->len) & 4095)
				return say(why, len, "range 0x%" PRIx64
					   "+0x%" PRIx64 " not page aligned",
					   g->gpa, g->len);
			*bytes += g->len;
		}
		*ranges += m.u.hints.count;
	}
}

int hm_agent_probe(const char *sock, struct hm_agent_probe *st, char *why,
		   size_t len)
{
	static const unsigned char junk[64] = { 0xff, 0xfe, 0xfd, 0xfc, 0x55 };
	struct hm_hc c;
	struct hm_hc_msg m;
	int64_t t0;
	int r;

	memset(st, 0, sizeof(*st));
	memset(&c, 0, sizeof(c));
	c.fd = -1;
	if (open_and_hello(sock, &c, why, len))
		goto fail;
	if (ask(&c, 1, &st->ranges, &st->bytes, why, len))
		goto fail;
	if (!st->ranges) {
		say(why, len, "epoch 1: no hints at all");
		goto fail;
	}

	/* garbage: the agent drops it and says HELLO again */
	if (write(c.fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk)) {
		say(why, len, "write: %s", strerror(errno));
		goto fail;
	}
	t0 = now_ms();
	r = next(&c, &m, 10000);
	if (r < 0 || m.type != HM_HC_HELLO) {
		say(why, len, "no HELLO after garbage (%s)",
		    r < 0 ? strerror(-r) : hm_hc_type_name(m.type));
		goto fail;
	}
	st->resync_ms = now_ms() - t0;
	if (ask(&c, 2, &st->ranges2, &st->bytes2, why, len))
		goto fail;

	/* a STOP right behind a REQUEST: whatever the agent had of epoch 3
	 * ends; epoch 4 is answered, and nothing of 3 comes after it */
	{
		struct hm_hc_msg q = { .type = HM_HC_REQUEST, .epoch = 3 };
		struct hm_hc_msg s = { .type = HM_HC_STOP, .epoch = 3 };
		uint64_t n, b;

		q.u.request.max_ranges = 65536;
		if (hm_hc_send(&c, &q) < 0 || hm_hc_send(&c, &s) < 0) {
			say(why, len, "REQUEST/STOP 3 not sent");
			goto fail;
		}
		/* drain what epoch 3 got out before the STOP */
		for (;;) {
			r = next(&c, &m, 2000);
			if (r == -ETIMEDOUT)
				break;
			if (r < 0 || m.epoch != 3 ||
			    (m.type != HM_HC_HINTS && m.type != HM_HC_DONE)) {
				say(why, len, "after STOP 3: %s",
				    r < 0 ? strerror(-r)
					  : hm_hc_type_name(m.type));
				goto fail;
			}
			if (m.type == HM_HC_DONE)
				break;
		}
		if (ask(&c, 4, &n, &b, why, len))
			goto fail;
	}

	/* BYE, a new host */
	m = (struct hm_hc_msg){ .type = HM_HC_BYE };
	hm_hc_send(&c, &m);
	hm_hc_fini(&c);
	t0 = now_ms();
	if (open_and_hello(sock, &c, why, len))
		goto fail;
	st->reconnect_ms = now_ms() - t0;
	if (ask(&c, 5, &st->ranges3, &st->bytes3, why, len))
		goto fail;
	hm_hc_fini(&c);
	return 0;
fail:
	hm_hc_fini(&c);
	return -1;
}

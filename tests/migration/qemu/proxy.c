/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Byte-flipping migration stream proxy: see proxy.h. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_BUF (256u << 10)
#define MAX_PATTERN 64

struct hm_proxy {
	int lfd;
	int port, dst_port;
	int stop_pipe[2];
	pthread_t thr;
	unsigned char pattern[MAX_PATTERN];
	size_t plen, flip_off;
	unsigned char mask;
	/* scan state: the last plen-1 bytes of the source stream */
	unsigned char tail[MAX_PATTERN];
	size_t tail_len;
	uint64_t flip_at; /* absolute stream offset to flip, or UINT64_MAX */
	struct hm_proxy_stats st;
};

static void perr(struct hm_proxy *p, const char *what)
{
	if (!p->st.error[0])
		snprintf(p->st.error, sizeof(p->st.error), "%s: %s", what,
			 strerror(errno));
}

/* Look for the pattern in the bytes of [off, off + n) of the source stream
 * (plus the tail kept from before) and flip the chosen byte when it lies
 * in this chunk.  The flip target is always after the pattern's start, and
 * flip_off >= plen, so it is never in bytes already forwarded. */
static void scan_and_flip(struct hm_proxy *p, unsigned char *buf, size_t n,
			  uint64_t off)
{
	unsigned char win[MAX_PATTERN * 2];

	if (!p->st.flips && p->flip_at == UINT64_MAX) {
		/* Matches that straddle the previous chunk. */
		size_t head = n < p->plen - 1 ? n : p->plen - 1;

		memcpy(win, p->tail, p->tail_len);
		memcpy(win + p->tail_len, buf, head);
		for (size_t i = 0; i + p->plen <= p->tail_len + head; i++) {
			if (i >= p->tail_len)
				break;
			if (!memcmp(win + i, p->pattern, p->plen)) {
				p->st.pattern_hits++;
				p->flip_at = off - p->tail_len + i + p->flip_off;
				break;
			}
		}
		for (size_t i = 0; p->flip_at == UINT64_MAX && i + p->plen <= n;
		     i++) {
			unsigned char *hit =
				memchr(buf + i, p->pattern[0], n - i);

			if (!hit)
				break;
			i = (size_t)(hit - buf);
			if (i + p->plen > n)
				break;
			if (!memcmp(hit, p->pattern, p->plen)) {
				p->st.pattern_hits++;
				p->flip_at = off + i + p->flip_off;
			}
		}
	} else if (p->st.flips) {
		/* Count further occurrences (the page sent again?) for the
		 * report; no second flip. */
		for (size_t i = 0; i + p->plen <= n; i++) {
			unsigned char *hit =
				memchr(buf + i, p->pattern[0], n - i);

			if (!hit)
				break;
			i = (size_t)(hit - buf);
			if (i + p->plen <= n && !memcmp(hit, p->pattern, p->plen))
				p->st.pattern_hits++;
		}
	}
	if (p->flip_at != UINT64_MAX && p->flip_at >= off &&
	    p->flip_at < off + n) {
		unsigned char *b = buf + (p->flip_at - off);

		p->st.before = *b;
		*b ^= p->mask;
		p->st.after = *b;
		p->st.flips = 1;
		p->st.flip_offset = p->flip_at;
		p->flip_at = UINT64_MAX;
	}
	/* keep the last plen-1 bytes */
	if (n >= p->plen - 1) {
		p->tail_len = p->plen - 1;
		memcpy(p->tail, buf + n - p->tail_len, p->tail_len);
	} else {
		size_t keep = p->tail_len + n > p->plen - 1
				      ? p->plen - 1 - n : p->tail_len;
		memmove(p->tail, p->tail + p->tail_len - keep, keep);
		memcpy(p->tail + keep, buf, n);
		p->tail_len = keep + n;
	}
}

static int write_all(int fd, const unsigned char *b, size_t n, int stopfd)
{
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf[2] = { { .fd = fd, .events = POLLOUT },
						{ .fd = stopfd, .events = POLLIN } };
			poll(pf, 2, 1000);
			if (pf[1].revents)
				return -1;
			continue;
		}
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *proxy_thread(void *arg)
{
	struct hm_proxy *p = arg;
	int sfd = -1, dfd = -1;
	unsigned char *buf = malloc(PROXY_BUF);
	int src_open = 1, dst_open = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	if (!buf) {
		snprintf(p->st.error, sizeof(p->st.error), "out of memory");
		return NULL;
	}
	for (;;) {
		struct pollfd pf[2] = { { .fd = p->lfd, .events = POLLIN },
					{ .fd = p->stop_pipe[0], .events = POLLIN } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR) {
			perr(p, "poll");
			goto out;
		}
		if (pf[1].revents)
			goto out;
		if (pf[0].revents) {
			sfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (sfd >= 0)
				break;
			if (errno != EINTR && errno != EAGAIN) {
				perr(p, "accept");
				goto out;
			}
		}
	}
	dfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)p->dst_port);
	if (dfd < 0 || connect(dfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perr(p, "connect to the destination");
		goto out;
	}
	while (src_open || dst_open) {
		struct pollfd pf[3] = {
			{ .fd = src_open ? sfd : -1, .events = POLLIN },
			{ .fd = dst_open ? dfd : -1, .events = POLLIN },
			{ .fd = p->stop_pipe[0], .events = POLLIN },
		};
		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			perr(p, "poll");
			goto out;
		}
		if (pf[2].revents)
			goto out;
		if (pf[0].revents) {
			ssize_t n = recv(sfd, buf, PROXY_BUF, 0);

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				/* Source done (or reset): pass the EOF on. */
				src_open = 0;
				shutdown(dfd, SHUT_WR);
			} else {
				scan_and_flip(p, buf, (size_t)n,
					      p->st.to_dst_bytes);
				if (write_all(dfd, buf, (size_t)n,
					      p->stop_pipe[0]) < 0) {
					perr(p, "write to the destination");
					goto out;
				}
				p->st.to_dst_bytes += (uint64_t)n;
			}
		}
		if (pf[1].revents) {
			ssize_t n = recv(dfd, buf, PROXY_BUF, 0);

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				dst_open = 0;
				shutdown(sfd, SHUT_WR);
			} else {
				if (write_all(sfd, buf, (size_t)n,
					      p->stop_pipe[0]) < 0) {
					/* The source may have gone. */
					dst_open = 0;
					continue;
				}
				p->st.to_src_bytes += (uint64_t)n;
			}
		}
	}
out:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	free(buf);
	return NULL;
}

struct hm_proxy *hm_proxy_start(int dst_port, const void *pattern,
				size_t pattern_len, size_t flip_offset,
				unsigned char xor_mask, char *err,
				size_t errlen)
{
	struct hm_proxy *p;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	if (!pattern_len || pattern_len > MAX_PATTERN ||
	    flip_offset < pattern_len || !xor_mask) {
		snprintf(err, errlen, "bad proxy pattern");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(p->pattern, pattern, pattern_len);
	p->plen = pattern_len;
	p->flip_off = flip_offset;
	p->mask = xor_mask;
	p->flip_at = UINT64_MAX;
	p->dst_port = dst_port;
	p->stop_pipe[0] = p->stop_pipe[1] = -1;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(p->lfd, 1) ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &sl) ||
	    pipe2(p->stop_pipe, O_CLOEXEC)) {
		snprintf(err, errlen, "proxy socket: %s", strerror(errno));
		goto fail;
	}
	p->port = ntohs(sa.sin_port);
	if (pthread_create(&p->thr, NULL, proxy_thread, p)) {
		snprintf(err, errlen, "pthread_create failed");
		goto fail;
	}
	return p;
fail:
	if (p->lfd >= 0)
		close(p->lfd);
	if (p->stop_pipe[0] >= 0) {
		close(p->stop_pipe[0]);
		close(p->stop_pipe[1]);
	}
	free(p);
	return NULL;
}

int hm_proxy_port(const struct hm_proxy *p)
{
	return p->port;
}

void hm_proxy_stop(struct hm_proxy *p, struct hm_proxy_stats *stats)
{
	if (!p)
		return;
	if (write(p->stop_pipe[1], "x", 1) < 0) {
		/* the thread then ends on its own when the streams close */
	}
	pthread_join(p->thr, NULL);
	if (stats)
		*stats = p->st;
	close(p->lfd);
	close(p->stop_pipe[0]);
	close(p->stop_pipe[1]);
	free(p);
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The stream-damaging proxy: see mangle.h. One thread accepts; each
 * connection gets a thread per direction (blocking I/O, no deadlock when
 * both directions fill). */
#include "mangle.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONN 16
#define BUF (64u << 10)
#define MAX_HOLD (32u << 10)

struct pipe_dir {
	struct hm_mangle *m;
	int in, out;
	bool victim;		/* the damaged direction */
	pthread_t thr;
	bool started;
};

struct hm_mangle {
	int lfd, port, dst_port;
	int stop_pipe[2];
	enum hm_mangle_kind kind;
	uint64_t at, len;
	pthread_t thr;
	pthread_mutex_t lock;
	struct pipe_dir dirs[MAX_CONN * 2];
	int fds[MAX_CONN * 2];
	unsigned ndirs, nfds;
	struct hm_mangle_stats st;
};

const char *hm_mangle_name(enum hm_mangle_kind k)
{
	switch (k) {
	case HM_MANGLE_FLIP: return "flip";
	case HM_MANGLE_TRUNCATE: return "truncate";
	case HM_MANGLE_DUPLICATE: return "duplicate";
	case HM_MANGLE_REORDER: return "reorder";
	default: return "none";
	}
}

static void merr(struct hm_mangle *m, const char *what)
{
	pthread_mutex_lock(&m->lock);
	if (!m->st.error[0])
		snprintf(m->st.error, sizeof(m->st.error), "%s: %s", what,
			 strerror(errno));
	pthread_mutex_unlock(&m->lock);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The damage, once the held bytes [at, at + 2 len) are all here. Returns
 * -1 when the connection is to be cut. */
static int emit_damaged(struct pipe_dir *d, unsigned char *hold)
{
	struct hm_mangle *m = d->m;
	size_t l = (size_t)m->len;
	int r = 0;

	switch (m->kind) {
	case HM_MANGLE_FLIP:
		hold[0] ^= 0x5a;
		r = write_all(d->out, hold, 2 * l);
		break;
	case HM_MANGLE_TRUNCATE:
		r = -1;
		break;
	case HM_MANGLE_DUPLICATE:
		r = write_all(d->out, hold, l);
		if (!r)
			r = write_all(d->out, hold, 2 * l);
		break;
	case HM_MANGLE_REORDER:
		r = write_all(d->out, hold + l, l);
		if (!r)
			r = write_all(d->out, hold, l);
		break;
	default:
		r = write_all(d->out, hold, 2 * l);
	}
	pthread_mutex_lock(&m->lock);
	m->st.done = 1;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static void *pump(void *arg)
{
	struct pipe_dir *d = arg;
	struct hm_mangle *m = d->m;
	unsigned char *buf = malloc(BUF), *hold = malloc(2 * MAX_HOLD);
	uint64_t off = 0, hend = m->at + 2 * m->len;
	size_t held = 0;
	bool damaged = !d->victim;

	if (!buf || !hold) {
		merr(m, "malloc");
		goto out;
	}
	for (;;) {
		ssize_t n = read(d->in, buf, BUF);
		size_t pos = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (d->victim) {
			pthread_mutex_lock(&m->lock);
			m->st.to_dst_bytes += (uint64_t)n;
			pthread_mutex_unlock(&m->lock);
		}
		while (!damaged && pos < (size_t)n) {
			uint64_t here = off + pos;

			if (here < m->at) {	/* before the damage */
				size_t k = (size_t)(m->at - here);

				if (k > (size_t)n - pos)
					k = (size_t)n - pos;
				if (write_all(d->out, buf + pos, k))
					goto out;
				pos += k;
				continue;
			}
			{	/* inside the held range */
				size_t k = (size_t)(hend - here);

				if (k > (size_t)n - pos)
					k = (size_t)n - pos;
				memcpy(hold + held, buf + pos, k);
				held += k;
				pos += k;
			}
			if (held == 2 * m->len) {
				damaged = true;
				if (emit_damaged(d, hold))
					goto out;	/* cut */
			}
		}
		if (pos < (size_t)n && write_all(d->out, buf + pos,
						  (size_t)n - pos))
			break;
		off += (uint64_t)n;
	}
	/* ended before the damage: what was held goes on unchanged */
	if (!damaged && held)
		write_all(d->out, hold, held);
	shutdown(d->out, SHUT_WR);
	free(buf);
	free(hold);
	return NULL;
out:
	/* cut, or an error: both sides of this connection see it end */
	shutdown(d->out, SHUT_RDWR);
	shutdown(d->in, SHUT_RDWR);
	free(buf);
	free(hold);
	return NULL;
}

int hm_loopback_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void *acceptor(void *arg)
{
	struct hm_mangle *m = arg;

	for (;;) {
		struct pollfd p[2] = { { m->lfd, POLLIN, 0 },
				       { m->stop_pipe[0], POLLIN, 0 } };
		int c, t;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			merr(m, "poll");
			break;
		}
		if (p[1].revents)
			break;
		c = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		t = hm_loopback_connect(m->dst_port);
		pthread_mutex_lock(&m->lock);
		if (t < 0 || m->ndirs + 2 > MAX_CONN * 2) {
			pthread_mutex_unlock(&m->lock);
			if (t < 0)
				merr(m, "connect to the destination");
			close(c);
			if (t >= 0)
				close(t);
			continue;
		}
		m->fds[m->nfds++] = c;
		m->fds[m->nfds++] = t;
		for (int k = 0; k < 2; k++) {
			struct pipe_dir *d = &m->dirs[m->ndirs++];

			d->m = m;
			d->in = k ? t : c;
			d->out = k ? c : t;
			d->victim = !k && m->st.connections == 0 &&
				    m->kind != HM_MANGLE_NONE;
			d->started = pthread_create(&d->thr, NULL, pump, d) == 0;
		}
		m->st.connections++;
		pthread_mutex_unlock(&m->lock);
	}
	return NULL;
}

struct hm_mangle *hm_mangle_start(int dst_port, enum hm_mangle_kind kind,
				  unsigned seed, char *err, size_t errlen)
{
	struct hm_mangle *m = calloc(1, sizeof(*m));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	unsigned x = seed * 2654435761u + 1;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->dst_port = dst_port;
	m->kind = kind;
	x ^= x >> 13;
	m->at = (1u << 20) + (uint64_t)(x % (4u << 20));
	m->len = 4096 + (x / 7) % (8192 + 1);
	m->st.at = m->at;
	m->st.len = m->len;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	m->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->lfd < 0 || bind(m->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(m->lfd, 16) ||
	    getsockname(m->lfd, (struct sockaddr *)&sa, &sl) ||
	    pipe(m->stop_pipe)) {
		snprintf(err, errlen, "mangling proxy: %s", strerror(errno));
		if (m->lfd >= 0)
			close(m->lfd);
		free(m);
		return NULL;
	}
	m->port = ntohs(sa.sin_port);
	if (pthread_create(&m->thr, NULL, acceptor, m)) {
		snprintf(err, errlen, "mangling proxy: thread");
		close(m->lfd);
		close(m->stop_pipe[0]);
		close(m->stop_pipe[1]);
		free(m);
		return NULL;
	}
	return m;
}

int hm_mangle_port(const struct hm_mangle *m)
{
	return m->port;
}

void hm_mangle_stop(struct hm_mangle *m, struct hm_mangle_stats *st)
{
	if (write(m->stop_pipe[1], "x", 1) != 1)
		merr(m, "stop");
	pthread_join(m->thr, NULL);
	for (unsigned i = 0; i < m->nfds; i++)
		shutdown(m->fds[i], SHUT_RDWR);
	for (unsigned i = 0; i < m->ndirs; i++)
		if (m->dirs[i].started)
			pthread_join(m->dirs[i].thr, NULL);
	for (unsigned i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	close(m->lfd);
	close(m->stop_pipe[0]);
	close(m->stop_pipe[1]);
	if (st)
		*st = m->st;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

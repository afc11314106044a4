/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Byte-stream transports: "unix:PATH" (PATH starting with '@' is a Linux
 * abstract socket) and "tcp:HOST:PORT". Each backend is a const ops
 * struct; everything else (accept, timeouts, send/receive loops) works on
 * any stream socket.
 *
 * Error mapping, shared by every function here, so that callers see one
 * vocabulary: EAGAIN/EWOULDBLOCK from a socket with SO_RCVTIMEO/SO_SNDTIMEO
 * become -ETIMEDOUT; EINTR is retried; SIGPIPE is never raised
 * (MSG_NOSIGNAL).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hm_config.h"
#include "migrate/wire/transport.h"

/* ---- time helpers ------------------------------------------------------ */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds left until deadline as a poll() timeout: -1 for no
 * deadline (0), 0 when passed. */
static int poll_left(uint64_t deadline)
{
	uint64_t now;

	if (!deadline)
		return -1;
	now = mono_ms();
	if (now >= deadline)
		return 0;
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

static uint64_t deadline_of(uint64_t timeout_ms)
{
	return timeout_ms ? mono_ms() + timeout_ms : 0;
}

/* ---- address parsing --------------------------------------------------- */

int hm_transport_parse_unix(const char *rest, struct sockaddr_un *sa,
			    unsigned *salen)
{
	size_t n;

	if (!rest || !sa || !salen)
		return -EINVAL;
	n = strlen(rest);
	/* abstract: "@name" -> sun_path[0] = 0, no terminator counted */
	if (n == 0 || (rest[0] == '@' && n == 1) || n >= sizeof(sa->sun_path))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, rest, n);
	if (rest[0] == '@') {
		sa->sun_path[0] = 0;
		*salen = (unsigned)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*salen = (unsigned)(offsetof(struct sockaddr_un, sun_path) + n +
				    1);
	}
	return 0;
}

int hm_transport_parse_tcp(const char *rest, char *host, size_t hostlen,
			   char *port, size_t portlen)
{
	const char *h, *p, *colon;
	size_t hl, pl;

	if (!rest || !host || !port || !hostlen || !portlen)
		return -EINVAL;
	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = rest + 1;
		hl = (size_t)(close - h);
		if (hl == 0 || !memchr(h, ':', hl))
			return -EINVAL; /* brackets are for IPv6 literals */
		p = close + 2;
	} else {
		colon = strrchr(rest, ':');
		if (!colon)
			return -EINVAL;
		h = rest;
		hl = (size_t)(colon - rest);
		if (memchr(h, ':', hl) || memchr(h, '[', hl) ||
		    memchr(h, ']', hl))
			return -EINVAL; /* IPv6 needs [brackets] */
		p = colon + 1;
	}
	pl = strlen(p);
	if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl ||
	    strtoul(p, NULL, 10) > 65535)
		return -EINVAL;
	if (hl >= hostlen || pl >= portlen)
		return -ENAMETOOLONG;
	memcpy(host, h, hl);
	host[hl] = 0;
	memcpy(port, p, pl + 1);
	return 0;
}

/* ---- generic socket helpers -------------------------------------------- */

/* Non-blocking connect to one address, bounded by deadline. fd or -errno. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
		       uint64_t deadline)
{
	int fd, r, err = 0;
	socklen_t elen = sizeof(err);

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	for (;;) {
		r = connect(fd, sa, len);
		if (r == 0)
			break;
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN && family == AF_UNIX) {
			/* unix: backlog full; retry until the deadline */
			if (deadline && mono_ms() >= deadline) {
				r = -ETIMEDOUT;
				goto fail;
			}
			poll(NULL, 0, 5);
			continue;
		}
		if (r != -EINPROGRESS)
			goto fail;
		for (;;) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int left = poll_left(deadline);

			if (left == 0) {
				r = -ETIMEDOUT;
				goto fail;
			}
			r = poll(&p, 1, left);
			if (r > 0)
				break;
			if (r < 0 && errno != EINTR) {
				r = -errno;
				goto fail;
			}
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
			r = -errno;
			goto fail;
		}
		if (err) {
			r = -err;
			goto fail;
		}
		break;
	}
	/* back to blocking: the timeouts come from SO_*TIMEO from now on */
	r = fcntl(fd, F_GETFL);
	if (r < 0 || fcntl(fd, F_SETFL, r & ~O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

/* ---- unix backend ------------------------------------------------------ */

static int unix_connect(const char *rest, uint64_t timeout_ms)
{
	struct sockaddr_un sa;
	unsigned len;
	int r = hm_transport_parse_unix(rest, &sa, &len);

	if (r < 0)
		return r;
	return connect_one(AF_UNIX, (struct sockaddr *)&sa, (socklen_t)len,
			   deadline_of(timeout_ms));
}

/* A socket file at path: remove it only when nobody listens there any
 * more (connect refused). 0 (gone or never there), -EADDRINUSE (in use or
 * not a socket), -errno. */
static int unix_remove_stale(const struct sockaddr_un *sa, unsigned len)
{
	struct stat st;
	int fd, r;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EADDRINUSE;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, (socklen_t)len);
	if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		r = -EADDRINUSE;
	} else if (errno == ECONNREFUSED) {
		r = unlink(sa->sun_path) < 0 && errno != ENOENT ? -errno : 0;
	} else {
		r = -errno;
	}
	close(fd);
	return r;
}

static int unix_listen(const char *rest, int backlog)
{
	struct sockaddr_un sa;
	unsigned len;
	int fd = -1, r = hm_transport_parse_unix(rest, &sa, &len);

	if (r < 0)
		goto out;
	if (sa.sun_path[0]) {
		r = unix_remove_stale(&sa, len);
		if (r < 0)
			goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (bind(fd, (struct sockaddr *)&sa, (socklen_t)len) < 0 ||
	    listen(fd, backlog > 0 ? backlog : 16) < 0) {
		r = -errno;
		goto out;
	}
	r = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

static const struct hm_transport_ops unix_ops = {
	.scheme = "unix",
	.connect = unix_connect,
	.listen = unix_listen,
};

/* ---- tcp backend ------------------------------------------------------- */

static int gai_errno(int e)
{
	switch (e) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
		return -EHOSTUNREACH;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EINVAL;
	}
}

static int tcp_connect(const char *rest, uint64_t timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_family = AF_UNSPEC };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	uint64_t deadline = deadline_of(timeout_ms);
	int r = hm_transport_parse_tcp(rest, host, sizeof(host), port,
				       sizeof(port));

	if (r < 0)
		goto out;
	if (!host[0] || strcmp(port, "0") == 0) {
		r = -EINVAL; /* nowhere to connect to */
		goto out;
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		r = gai_errno(r);
		goto out;
	}
	r = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		r = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen,
				deadline);
		if (r >= 0 || r == -ETIMEDOUT)
			break;
	}
out:
	if (res)
		freeaddrinfo(res);
	return r;
}

static int tcp_listen(const char *rest, int backlog)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_family = AF_UNSPEC,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	int fd = -1, one = 1;
	int r = hm_transport_parse_tcp(rest, host, sizeof(host), port,
				       sizeof(port));

	if (r < 0)
		goto out;
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r) {
		r = gai_errno(r);
		goto out;
	}
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			       sizeof(one)) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, backlog > 0 ? backlog : 16) == 0) {
			r = fd;
			fd = -1;
			break;
		}
		r = -errno;
		close(fd);
		fd = -1;
	}
out:
	if (res)
		freeaddrinfo(res);
	return r;
}

static const struct hm_transport_ops tcp_ops = {
	.scheme = "tcp",
	.connect = tcp_connect,
	.listen = tcp_listen,
};

/* ---- lookup ------------------------------------------------------------ */

static const struct hm_transport_ops *const backends[] = {
	&unix_ops,
	&tcp_ops,
};

const struct hm_transport_ops *hm_transport_lookup(const char *addr,
						   const char **rest)
{
	char host[256], port[8];
	struct sockaddr_un sa;
	unsigned salen;

	if (!addr) {
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		const struct hm_transport_ops *ops = backends[i];
		size_t n = strlen(ops->scheme);
		const char *r;
		int ok;

		if (strncmp(addr, ops->scheme, n) != 0 || addr[n] != ':')
			continue;
		r = addr + n + 1;
		ok = ops == &unix_ops ?
			     hm_transport_parse_unix(r, &sa, &salen) :
			     hm_transport_parse_tcp(r, host, sizeof(host),
						    port, sizeof(port));
		if (ok < 0)
			break;
		if (rest)
			*rest = r;
		return ops;
	}
	errno = EINVAL;
	return NULL;
}

/* TCP_NODELAY on a TCP socket: the handshakes before HELLO (TLS, the
 * key's proof) are small messages each waited for; with Nagle and delayed
 * ACKs every round trip would wait some 40 ms. */
static int no_delay(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1;

	if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

int hm_transport_connect(const char *addr, uint64_t timeout_ms)
{
	const char *rest;
	const struct hm_transport_ops *ops = hm_transport_lookup(addr, &rest);
	int fd;

	if (!ops)
		return -EINVAL;
	fd = ops->connect(rest, timeout_ms);
	(void)no_delay(fd);
	return fd;
}

int hm_transport_listen(const char *addr, int backlog)
{
	const char *rest;
	const struct hm_transport_ops *ops = hm_transport_lookup(addr, &rest);

	if (!ops)
		return -EINVAL;
	return ops->listen(rest, backlog);
}

int hm_transport_accept(int listen_fd, uint64_t timeout_ms)
{
	uint64_t deadline = deadline_of(timeout_ms);
	int fd;

	for (;;) {
		struct pollfd p = { .fd = listen_fd, .events = POLLIN };
		int left = poll_left(deadline), r;

		if (left == 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			continue; /* re-check the deadline */
		if (p.revents & POLLNVAL)
			return -EBADF;
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			(void)no_delay(fd);
			return fd;
		}
		/* a connection that vanished between poll and accept, or a
		 * non-blocking listener: wait again */
		if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
			continue;
		return -errno;
	}
}

int hm_transport_set_timeouts(int fd, uint64_t timeout_ms)
{
	struct timeval tv = { .tv_sec = (time_t)(timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(timeout_ms % 1000) *
					 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return no_delay(fd);
}

int hm_transport_local_addr(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN + 2], port[8];
	int n;

	if (!buf || !len)
		return -EINVAL;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
		size_t pl = sl > offsetof(struct sockaddr_un, sun_path) ?
				    sl - offsetof(struct sockaddr_un,
						  sun_path) :
				    0;

		if (pl == 0)
			return -EINVAL; /* unnamed */
		if (su->sun_path[0])
			n = snprintf(buf, len, "unix:%s", su->sun_path);
		else
			n = snprintf(buf, len, "unix:@%.*s", (int)(pl - 1),
				     su->sun_path + 1);
	} else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
		int r = getnameinfo((struct sockaddr *)&ss, sl, host,
				    sizeof(host), port, sizeof(port),
				    NI_NUMERICHOST | NI_NUMERICSERV);

		if (r)
			return gai_errno(r);
		n = snprintf(buf, len,
			     ss.ss_family == AF_INET6 ? "tcp:[%s]:%s" :
							"tcp:%s:%s",
			     host, port);
	} else {
		return -EAFNOSUPPORT;
	}
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return n;
}

/* ---- data ---------------------------------------------------------------- */

static int io_errno(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : -e;
}

int hm_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_errno(errno);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int hm_recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_errno(errno);
		}
		if (n == 0)
			return got ? -ECONNRESET : -ENODATA;
		got += (size_t)n;
	}
	return 0;
}

int hm_sendv_all(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr mh = { .msg_iov = iov,
				     .msg_iovlen = (size_t)(iovcnt > IOV_MAX ?
								    IOV_MAX :
								    iovcnt) };
		ssize_t n;

		/* skip empty leading entries (also makes iovcnt 0 cheap) */
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_errno(errno);
		}
		while (n > 0 && iovcnt > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov->iov_len = 0;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Byte-stream transports between source and destination: "unix:PATH" and
 * "tcp:HOST:PORT" (HOST may be a name, an IPv4 or a [IPv6] literal).
 * Backends are const ops structs; a connection is a plain blocking socket
 * with send/receive timeouts, so a stalled peer turns into -ETIMEDOUT and a
 * killed peer into -ECONNRESET/-EPIPE, never into SIGPIPE or a hang.
 */
#ifndef HM_MIGRATE_TRANSPORT_H
#define HM_MIGRATE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <hintmig/hintmig.h>

struct hm_transport_ops {
	const char *scheme; /* "unix", "tcp" */
	/* Connected fd, or -errno. rest is the address after "scheme:". */
	int (*connect)(const char *rest, uint64_t timeout_ms);
	/* Listening fd, or -errno. */
	int (*listen)(const char *rest, int backlog);
};

/* The backend for addr, and *rest pointing after "scheme:"; NULL with
 * errno EINVAL when the scheme is unknown or the address malformed. */
const struct hm_transport_ops *hm_transport_lookup(const char *addr,
						   const char **rest);

/* Connected blocking socket (CLOEXEC; TCP: TCP_NODELAY), or -errno: -EINVAL bad address,
 * -ETIMEDOUT, -ECONNREFUSED/-ENOENT nobody listening (not retried). No
 * I/O timeouts are set: call hm_transport_set_timeouts(). */
int hm_transport_connect(const char *addr, uint64_t timeout_ms);
/* Listening socket (CLOEXEC), or -errno. tcp: SO_REUSEADDR, port 0 picks
 * one (see hm_transport_local_addr), empty HOST listens on all addresses.
 * unix: a leftover socket file nobody listens on is removed; any other
 * file there gives -EADDRINUSE. unix:@NAME is an abstract socket. */
int hm_transport_listen(const char *addr, int backlog);
/* Accept with a timeout (0 = wait forever): fd (TCP: TCP_NODELAY) or
 * -errno (-ETIMEDOUT). */
int hm_transport_accept(int listen_fd, uint64_t timeout_ms);
/* Apply send/receive timeouts (SO_SNDTIMEO/SO_RCVTIMEO) and TCP_NODELAY
 * where it applies. 0 or -errno. */
int hm_transport_set_timeouts(int fd, uint64_t timeout_ms);

/* Send/receive exactly len bytes (MSG_NOSIGNAL, EINTR retried).
 * 0, or -errno: -ECONNRESET/-EPIPE peer gone, -ETIMEDOUT, and for recv
 * -ECONNRESET also on an orderly EOF in the middle of the buffer and
 * -ENODATA on EOF before the first byte. */
int hm_send_all(int fd, const void *buf, size_t len);
int hm_recv_all(int fd, void *buf, size_t len);
/* Address parsers (exported for the tests). unix: rest is PATH or @NAME,
 * fills *sa and its length; tcp: rest is HOST:PORT or [V6]:PORT, HOST may
 * be empty, PORT 0..65535. 0, -EINVAL, -ENAMETOOLONG. */
struct sockaddr_un;
int hm_transport_parse_unix(const char *rest, struct sockaddr_un *sa,
			    unsigned *salen);
int hm_transport_parse_tcp(const char *rest, char *host, size_t hostlen,
			   char *port, size_t portlen);
/* The address a socket is bound to, as "unix:PATH" / "tcp:IP:PORT" /
 * "tcp:[IP6]:PORT" (e.g. to learn the port after listening on port 0).
 * Length written or -errno. */
int hm_transport_local_addr(int fd, char *buf, size_t len);

/* Scatter-gather variant of hm_send_all (iov is modified). */
struct iovec;
int hm_sendv_all(int fd, struct iovec *iov, int iovcnt);

#endif

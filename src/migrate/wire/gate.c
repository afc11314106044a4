/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's gate (gate.h): one thread per connection in its
 * handshake (TLS, then the key's proof), a slot each, the caller taking
 * the connections that passed. Handshakes block in their threads on
 * their own deadlines; the caller waits in poll() on the listening socket
 * and an eventfd the threads ring when they end. A slot's state changes
 * under the gate's lock; its thread is joined by whoever frees the slot.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/wire/gate.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/transport.h"

enum slot_state { S_FREE = 0, S_RUNNING, S_PASSED, S_FAILED };

struct slot {
	struct hm_gate *g;
	enum slot_state state;
	pthread_t th;
	int fd;
	struct hm_tls *tls;
	uint64_t deadline;
	bool local;		/* a UNIX socket: no per-peer limit */
	uint64_t passed;	/* order in which it passed */
	char host[INET6_ADDRSTRLEN];
	char who[96];		/* host and port, for the log */
	char why[400];
};

struct hm_gate {
	pthread_mutex_t lock;
	struct slot slot[HM_GATE_MAX];
	struct hm_auth_key key;
	const struct hm_tls_creds *tls;
	uint64_t hello_ms;
	uint64_t refused;
	uint64_t passed;	/* handshakes passed so far */
	int efd;		/* rung by a handshake that ended */
	struct hm_log log;
};

int hm_gate_enter(int fd, const struct hm_tls_creds *cr, const char *peer_name,
		  const struct hm_auth_key *key, uint64_t timeout_ms,
		  struct hm_tls **tls, char *why, size_t whylen)
{
	char w[400] = "";
	int r = 0;

	*tls = NULL;
	if (cr) {
		r = hm_tls_start(tls, fd, cr, peer_name, NULL,
				 hm_auth_now_ms() + timeout_ms, w, sizeof(w));
		if (r < 0) {
			snprintf(why, whylen, "TLS: %s", w);
			return r;
		}
	}
	if (!key || !key->len)
		return 0;
	r = hm_auth_connect(fd, *tls, key, timeout_ms, w, sizeof(w));
	if (r == 0)
		return 0;
	hm_tls_free(*tls);
	*tls = NULL;
	snprintf(why, whylen, "authentication failed: %s", w);
	return r == -EPROTO ? -EACCES : r;
}

struct hm_gate *hm_gate_new(const struct hm_auth_key *key,
			    const struct hm_tls_creds *tls,
			    uint64_t hello_timeout_ms, const struct hm_log *log)
{
	struct hm_gate *g = calloc(1, sizeof(*g));

	if (!g) {
		errno = ENOMEM;
		return NULL;
	}
	g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g->efd < 0) {
		int e = errno;

		free(g);
		errno = e;
		return NULL;
	}
	pthread_mutex_init(&g->lock, NULL);
	if (key && key->len)
		g->key = *key;
	g->tls = tls;
	g->hello_ms = hello_timeout_ms ? hello_timeout_ms : 3000;
	if (log)
		g->log = *log;
	return g;
}

static void *handshake(void *arg)
{
	struct slot *s = arg;
	struct hm_gate *g = s->g;
	struct hm_tls *tls = NULL;
	char why[400] = "";
	uint64_t one = 1;
	int r = 0;

	if (g->tls)
		r = hm_tls_start(&tls, s->fd, g->tls, NULL, NULL, s->deadline, why,
				 sizeof(why));
	if (r == 0 && g->key.len)
		r = hm_auth_accept(s->fd, tls, &g->key, s->deadline, why,
				   sizeof(why));
	if (r < 0) {
		hm_tls_free(tls);
		tls = NULL;
	}
	pthread_mutex_lock(&g->lock);
	s->tls = tls;
	s->state = r == 0 ? S_PASSED : S_FAILED;
	if (r == 0)
		s->passed = ++g->passed;
	snprintf(s->why, sizeof(s->why), "%s", why);
	pthread_mutex_unlock(&g->lock);
	if (write(g->efd, &one, sizeof(one)) < 0) {
		/* the counter is full: the caller wakes anyway */
	}
	return NULL;
}

static void refused(struct hm_gate *g, const char *who, const char *why)
{
	g->refused++;
	hm_logf(&g->log, HM_LOG_WARN, "connection from %s refused: %s%s (%"
		PRIu64 " refused so far); still waiting for the source", who,
		g->tls ? "TLS or key: " : "", why, g->refused);
}

/* Reap failed handshakes; take the one that passed first (a source
 * opens its next channel only once the last one passed: channel 0 comes
 * out first). Under the lock. fd or -1. */
static int take(struct hm_gate *g, struct hm_tls **tls)
{
	struct slot *first = NULL;

	for (int i = 0; i < HM_GATE_MAX; i++) {
		struct slot *s = &g->slot[i];

		if (s->state == S_FAILED) {
			pthread_join(s->th, NULL);
			close(s->fd);
			refused(g, s->who, s->why);
			s->state = S_FREE;
		}
	}
	for (int i = 0; i < HM_GATE_MAX; i++) {
		struct slot *s = &g->slot[i];

		if (s->state == S_PASSED && (!first || s->passed < first->passed))
			first = s;
	}
	if (!first)
		return -1;
	pthread_join(first->th, NULL);
	*tls = first->tls;
	first->tls = NULL;
	first->state = S_FREE;
	return first->fd;
}

static void peer_of(int fd, struct slot *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	unsigned port = 0;

	s->local = true;
	snprintf(s->host, sizeof(s->host), "local");
	snprintf(s->who, sizeof(s->who), "a local connection");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
			  s->host, sizeof(s->host));
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
			  s->host, sizeof(s->host));
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		return;
	}
	s->local = false;
	snprintf(s->who, sizeof(s->who), "%s port %u", s->host, port);
}

/* A new connection on lfd into a free slot, its handshake started. */
static void admit(struct hm_gate *g, int lfd)
{
	struct slot tmp, *s = NULL;
	int fd = hm_transport_accept(lfd, 1), same = 0;

	if (fd < 0)
		return;		/* gone between poll and accept */
	memset(&tmp, 0, sizeof(tmp));
	peer_of(fd, &tmp);
	pthread_mutex_lock(&g->lock);
	for (int i = 0; i < HM_GATE_MAX; i++) {
		struct slot *o = &g->slot[i];

		if (o->state == S_FREE && !s)
			s = o;
		else if (o->state != S_FREE && !tmp.local && !o->local &&
			 !strcmp(o->host, tmp.host))
			same++;
	}
	if (!s || same >= HM_GATE_PER_PEER) {
		char why[96];

		snprintf(why, sizeof(why), "%s handshakes at once%s",
			 !s ? "too many" : "too many of its address's",
			 !s ? "" : " (the limit per address)");
		close(fd);
		refused(g, tmp.who, why);
		pthread_mutex_unlock(&g->lock);
		return;
	}
	*s = tmp;
	s->g = g;
	s->fd = fd;
	s->deadline = hm_auth_now_ms() + g->hello_ms;
	s->state = S_RUNNING;
	if (pthread_create(&s->th, NULL, handshake, s) != 0) {
		s->state = S_FREE;
		close(fd);
		refused(g, tmp.who, "no thread for its handshake");
	}
	pthread_mutex_unlock(&g->lock);
}

int hm_gate_next(struct hm_gate *g, int lfd, uint64_t deadline_ms,
		 struct hm_tls **tls)
{
	*tls = NULL;
	for (;;) {
		struct pollfd p[2] = { { .fd = g->efd, .events = POLLIN },
				       { .fd = lfd, .events = POLLIN } };
		uint64_t now = hm_auth_now_ms(), v;
		int fd, busy = 0, ms = 1000;

		pthread_mutex_lock(&g->lock);
		fd = take(g, tls);
		for (int i = 0; i < HM_GATE_MAX; i++)
			busy += g->slot[i].state != S_FREE;
		pthread_mutex_unlock(&g->lock);
		if (fd >= 0)
			return fd;
		if (deadline_ms && now >= deadline_ms)
			return -ETIMEDOUT;
		if (deadline_ms && deadline_ms - now < (uint64_t)ms)
			ms = (int)(deadline_ms - now);
		/* a full gate accepts nothing more (the listen queue holds
		 * them) until a handshake ends */
		if (poll(p, busy < HM_GATE_MAX ? 2 : 1, ms) < 0 &&
		    errno != EINTR)
			return -errno;
		if (p[0].revents & POLLIN) {
			if (read(g->efd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another reader took it */
			}
		}
		if (busy < HM_GATE_MAX && (p[1].revents & POLLIN))
			admit(g, lfd);
		if (p[1].revents & (POLLNVAL | POLLERR))
			return -EBADF;
	}
}

uint64_t hm_gate_refused(struct hm_gate *g)
{
	uint64_t n;

	pthread_mutex_lock(&g->lock);
	n = g->refused;
	pthread_mutex_unlock(&g->lock);
	return n;
}

uint64_t hm_gate_free(struct hm_gate *g)
{
	uint64_t n;

	if (!g)
		return 0;
	/* a handshake still running ends at once on its shut socket */
	pthread_mutex_lock(&g->lock);
	for (int i = 0; i < HM_GATE_MAX; i++)
		if (g->slot[i].state == S_RUNNING)
			shutdown(g->slot[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&g->lock);
	for (int i = 0; i < HM_GATE_MAX; i++) {
		struct slot *s = &g->slot[i];
		bool was_running;

		if (s->state == S_FREE)
			continue;
		was_running = s->state == S_RUNNING;
		pthread_join(s->th, NULL);
		/* every connection that did not come out is counted and
		 * logged, as while the gate was open */
		if (s->state == S_FAILED || was_running)
			refused(g, s->who, was_running
				? "the migration's connections were all in"
				: s->why);
		else
			refused(g, s->who, "it passed after the migration's "
				"connections were all in");
		hm_tls_free(s->tls);
		close(s->fd);
		s->state = S_FREE;
	}
	n = g->refused;
	close(g->efd);
	explicit_bzero(&g->key, sizeof(g->key));
	pthread_mutex_destroy(&g->lock);
	free(g);
	return n;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's gate (src/migrate/wire/gate.c), with a key, on TCP
 * loopback:
 *  - six connections held open from 127.0.0.2: four take slots, two are
 *    refused at once (the limit per address);
 *  - a client with another key is refused;
 *  - the real client, from 127.0.0.1, comes out of hm_gate_next while the
 *    held ones still wait, and its connection works;
 *  - two clients that pass while one is taken: the other is kept;
 *  - hm_gate_free ends the handshakes still running (run under ASan in
 *    the test setup: no leak, no use after free).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hm_test.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/gate.h"
#include "migrate/wire/transport.h"

static struct hm_auth_key key_a, key_b;
static char addr[64];

static int connect_from(const char *src)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *port = strrchr(addr, ':') + 1;

	HM_CHECK(fd >= 0);
	inet_pton(AF_INET, src, &sa.sin_addr);
	HM_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	sa.sin_port = htons((uint16_t)atoi(port));
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	HM_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

struct client {
	const struct hm_auth_key *key;
	int fd, rc;
	pthread_t th;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	char why[200];

	c->rc = hm_auth_connect(c->fd, NULL, c->key, 5000, why, sizeof(why));
	return NULL;
}

static void start_client(struct client *c, const struct hm_auth_key *k)
{
	c->key = k;
	c->fd = connect_from("127.0.0.1");
	HM_CHECK(pthread_create(&c->th, NULL, client_main, c) == 0);
}

int main(void)
{
	struct hm_log log = { .fn = hm_log_stderr, .max_level = HM_LOG_WARN };
	struct client bad, good, first, second;
	struct hm_gate *g;
	struct hm_tls *tls;
	int lfd, held[6], fd, fd2;
	char byte = 'x';

	memset(&key_a, 0x11, sizeof(key_a.k));
	key_a.len = 32;
	memset(&key_b, 0x22, sizeof(key_b.k));
	key_b.len = 32;
	lfd = hm_transport_listen("tcp:127.0.0.1:0", 64);
	HM_CHECK(lfd >= 0);
	HM_CHECK(hm_transport_local_addr(lfd, addr, sizeof(addr)) > 0);
	g = hm_gate_new(&key_a, NULL, 4000, &log);
	HM_CHECK(g != NULL);

	for (int i = 0; i < 6; i++)
		held[i] = connect_from("127.0.0.2");
	start_client(&bad, &key_b);
	start_client(&good, &key_a);
	fd = hm_gate_next(g, lfd, hm_auth_now_ms() + 3000, &tls);
	HM_CHECK(fd >= 0);
	HM_CHECK(tls == NULL);
	pthread_join(good.th, NULL);
	pthread_join(bad.th, NULL);
	HM_CHECK_EQ(good.rc, 0);
	HM_CHECK_EQ(bad.rc, -EACCES);
	/* the connection that came out is the good client's */
	HM_CHECK(write(good.fd, &byte, 1) == 1);
	byte = 0;
	HM_CHECK(read(fd, &byte, 1) == 1 && byte == 'x');
	/* the bad one is counted once its thread is reaped: ask again */
	HM_CHECK_EQ(hm_gate_next(g, lfd, hm_auth_now_ms() + 200, &tls),
		    -ETIMEDOUT);
	HM_CHECK_EQ(hm_gate_refused(g), 3); /* 2 over the limit + 1 key */
	printf("ok six held from one address (two refused at once), "
	       "another key refused, the real client through: %llu "
	       "refused\n", (unsigned long long)hm_gate_refused(g));

	/* two that pass while the caller takes one: the other is kept for
	 * the next call */
	start_client(&first, &key_a);
	start_client(&second, &key_a);
	fd2 = hm_gate_next(g, lfd, hm_auth_now_ms() + 3000, &tls);
	HM_CHECK(fd2 >= 0);
	pthread_join(first.th, NULL);
	pthread_join(second.th, NULL);
	HM_CHECK_EQ(first.rc, 0);
	HM_CHECK_EQ(second.rc, 0);
	{
		int fd3 = hm_gate_next(g, lfd, hm_auth_now_ms() + 3000, &tls);
		char b2 = 0, b3 = 0;

		HM_CHECK(fd3 >= 0);
		byte = 'f';
		HM_CHECK(write(first.fd, &byte, 1) == 1);
		byte = 's';
		HM_CHECK(write(second.fd, &byte, 1) == 1);
		HM_CHECK(read(fd2, &b2, 1) == 1 && read(fd3, &b3, 1) == 1);
		HM_CHECK((b2 == 'f' && b3 == 's') || (b2 == 's' && b3 == 'f'));
		close(fd3);
	}
	close(fd2);
	printf("ok two passed at once: one taken, the other kept for the "
	       "next call\n");

	/* handshakes still running (the held ones): freed */
	hm_gate_free(g);
	printf("ok freed with handshakes running\n");
	for (int i = 0; i < 6; i++)
		close(held[i]);
	close(fd);
	close(good.fd);
	close(bad.fd);
	close(first.fd);
	close(second.fd);
	close(lfd);
	return 0;
}

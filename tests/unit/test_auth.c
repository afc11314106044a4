/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Connection authentication (src/migrate/auth.c, R17), over socketpairs:
 *  - the same key: both sides accept;
 *  - another key: both refuse (-EACCES), each saying so;
 *  - replay: a source's answer recorded on one connection, sent on a new
 *    one, is refused (the challenge is fresh);
 *  - reflection: a false destination that hands the source its own proof
 *    back as the verdict is refused by the source (labels differ);
 *  - a peer that trickles bytes is cut at the deadline, not later;
 *    garbage is -EPROTO;
 *  - key files: hex and raw accepted, short or group-readable refused;
 *    an inherited descriptor named /proc/self/fd/N or /dev/fd/N (a memfd,
 *    as hintmig's libvirt parts pass keys) read from its start, then
 *    close-on-exec; a group-readable or closed one refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "hm_test.h"
#include "migrate/wire/auth.h"

static struct hm_auth_key key_a, key_b;

struct side {
	int fd;
	const struct hm_auth_key *key;
	int rc;
	char why[200];
};

static void *dest_side(void *arg)
{
	struct side *s = arg;

	s->rc = hm_auth_accept(s->fd, NULL, s->key, hm_auth_now_ms() + 5000, s->why,
			       sizeof(s->why));
	return NULL;
}

/* run the destination in a thread, the source here */
static void pair(const struct hm_auth_key *kd, const struct hm_auth_key *ks,
		 int *rd, int *rs, char *whyd, char *whys)
{
	struct side d = { .key = kd }, s = { .key = ks };
	int sv[2];
	pthread_t t;

	HM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	d.fd = sv[0];
	s.fd = sv[1];
	HM_CHECK(pthread_create(&t, NULL, dest_side, &d) == 0);
	s.rc = hm_auth_connect(s.fd, NULL, ks, 5000, s.why, sizeof(s.why));
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	*rd = d.rc;
	*rs = s.rc;
	if (whyd)
		strcpy(whyd, d.why);
	if (whys)
		strcpy(whys, s.why);
}

static void test_keys(void)
{
	int rd, rs;
	char wd[200], ws[200];

	pair(&key_a, &key_a, &rd, &rs, wd, ws);
	HM_CHECK_EQ(rd, 0);
	HM_CHECK_EQ(rs, 0);
	pair(&key_a, &key_b, &rd, &rs, wd, ws);
	HM_CHECK_EQ(rd, -EACCES);
	HM_CHECK_EQ(rs, -EACCES);
	HM_CHECK(strstr(wd, "wrong proof"));
	HM_CHECK(strstr(ws, "refused our proof"));
	printf("ok keys: the same key accepted both ways; another refused by "
	       "both (%s / %s)\n", wd, ws);
}

static void hmac(const struct hm_auth_key *k, const char *label,
		 const unsigned char *nd, const unsigned char *ns,
		 unsigned char *out)
{
	unsigned char m[64 + 2 * HM_AUTH_NONCE];
	size_t l = strlen(label) + 1;

	memcpy(m, label, l);
	memcpy(m + l, nd, HM_AUTH_NONCE);
	memcpy(m + l + HM_AUTH_NONCE, ns, HM_AUTH_NONCE);
	HM_CHECK(gnutls_hmac_fast(GNUTLS_MAC_SHA256, k->k, k->len, m,
				  l + 2 * HM_AUTH_NONCE, out) == 0);
}

static void read_n(int fd, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		HM_CHECK(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

/* A socketpair, the destination's side running in a thread on sv[0],
 * its challenge read from sv[1] into ch. */
static void start_dest(struct side *d, int sv[2], pthread_t *t,
		       unsigned char ch[40])
{
	HM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	d->fd = sv[0];
	HM_CHECK(pthread_create(t, NULL, dest_side, d) == 0);
	read_n(sv[1], ch, 40);
}

/* A recorded answer from one connection replayed on another. */
static void test_replay(void)
{
	unsigned char ch[40], rs[72], vd[40];
	struct side d = { .key = &key_a };
	int sv[2];
	pthread_t t;

	/* connection 1: the test plays an honest source, and keeps its
	 * answer */
	start_dest(&d, sv, &t, ch);
	memcpy(rs, "HMA1\x01\x00\x02\x00", 8);
	memset(rs + 8, 0x42, HM_AUTH_NONCE);
	hmac(&key_a, "hintmig-auth1 source", ch + 8, rs + 8, rs + 40);
	HM_CHECK(write(sv[1], rs, sizeof(rs)) == (ssize_t)sizeof(rs));
	read_n(sv[1], vd, sizeof(vd));
	pthread_join(t, NULL);
	HM_CHECK_EQ(d.rc, 0);	/* the hand-made answer is right */
	HM_CHECK_EQ(vd[6], 3);	/* accepted */
	close(sv[0]);
	close(sv[1]);

	/* connection 2: the same answer again */
	start_dest(&d, sv, &t, ch);
	HM_CHECK(write(sv[1], rs, sizeof(rs)) == (ssize_t)sizeof(rs));
	read_n(sv[1], vd, sizeof(vd));
	pthread_join(t, NULL);
	HM_CHECK_EQ(d.rc, -EACCES);
	HM_CHECK_EQ(vd[6], 4);	/* refused */
	close(sv[0]);
	close(sv[1]);
	printf("ok replay: an answer recorded on one connection is refused on "
	       "the next (%s)\n", d.why);
}

/* A false destination reflects the source's proof as its verdict. */
static void test_reflection(void)
{
	unsigned char ch[40], rs[72], vd[40];
	struct side s = { .key = &key_a };
	int sv[2];

	HM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	memcpy(ch, "HMA1\x01\x00\x01\x00", 8);
	memset(ch + 8, 0x17, HM_AUTH_NONCE);
	HM_CHECK(write(sv[0], ch, sizeof(ch)) == (ssize_t)sizeof(ch));
	memcpy(vd, "HMA1\x01\x00\x03\x00", 8);	/* "accepted" */
	{
		pid_t pid = fork();

		HM_CHECK(pid >= 0);
		if (pid == 0) {
			/* the false destination */
			close(sv[1]);
			read_n(sv[0], rs, sizeof(rs));
			memcpy(vd + 8, rs + 40, HM_AUTH_MAC);
			_exit(write(sv[0], vd, sizeof(vd)) == (ssize_t)sizeof(vd)
			      ? 0 : 1);
		}
		close(sv[0]);
		s.rc = hm_auth_connect(sv[1], NULL, &key_a, 5000, s.why,
				       sizeof(s.why));
		close(sv[1]);
		HM_CHECK(waitpid(pid, NULL, 0) == pid);
	}
	HM_CHECK_EQ(s.rc, -EACCES);
	HM_CHECK(strstr(s.why, "could not prove"));
	printf("ok reflection: the source's own proof handed back as the "
	       "verdict is refused (%s)\n", s.why);
}

static void test_slow_and_garbage(void)
{
	struct side d = { .key = &key_a };
	unsigned char ch[40];
	uint64_t t0;
	int sv[2];
	pthread_t t;

	t0 = hm_auth_now_ms();
	start_dest(&d, sv, &t, ch);
	/* a byte every 200 ms: 72 bytes would take 14 s; the deadline is
	 * 5 s after the start */
	for (int i = 0; i < 40; i++) {
		if (write(sv[1], "x", 1) != 1)
			break;
		hm_test_sleep_ms(200);
	}
	pthread_join(t, NULL);
	HM_CHECK_EQ(d.rc, -ETIMEDOUT);
	HM_CHECK(hm_auth_now_ms() - t0 < 12000); /* the trickle needs 14 s */
	close(sv[0]);
	close(sv[1]);

	start_dest(&d, sv, &t, ch);
	{
		unsigned char junk[72];

		memset(junk, 'G', sizeof(junk));
		HM_CHECK(write(sv[1], junk, sizeof(junk)) == 72);
	}
	pthread_join(t, NULL);
	HM_CHECK_EQ(d.rc, -EPROTO);
	close(sv[0]);
	close(sv[1]);
	printf("ok a trickling peer is cut at the deadline (-ETIMEDOUT), "
	       "garbage is -EPROTO\n");
}

static void write_file(const char *path, const void *p, size_t n, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	HM_CHECK(fd >= 0);
	HM_CHECK(write(fd, p, n) == (ssize_t)n);
	HM_CHECK(fchmod(fd, (mode_t)mode) == 0);
	close(fd);
}

static void test_key_files(void)
{
	char dir[] = "/tmp/hm-authkey.XXXXXX", path[64], err[200];
	struct hm_auth_key k;
	static const char hex[] = "00112233445566778899aabbccddeeff\n"
				  "0011223344556677\n";

	HM_CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k", dir);
	write_file(path, hex, sizeof(hex) - 1, 0600);
	HM_CHECK_OK(hm_auth_key_load(path, &k, err, sizeof(err)));
	HM_CHECK_EQ(k.len, 24);
	HM_CHECK_EQ(k.k[1], 0x11);
	write_file(path, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"
		   "\x0d\x0e\x0f\x10\xff", 17, 0600);
	HM_CHECK_OK(hm_auth_key_load(path, &k, err, sizeof(err)));
	HM_CHECK_EQ(k.len, 17);
	/* 17 hex digits: an odd count is an error, not 18 raw bytes */
	write_file(path, "0123456789abcdef0\n", 18, 0600);
	HM_CHECK_EQ(hm_auth_key_load(path, &k, err, sizeof(err)), -EINVAL);
	write_file(path, "short", 5, 0600);
	HM_CHECK_EQ(hm_auth_key_load(path, &k, err, sizeof(err)), -EINVAL);
	write_file(path, hex, sizeof(hex) - 1, 0640);
	HM_CHECK_EQ(hm_auth_key_load(path, &k, err, sizeof(err)), -EPERM);
	HM_CHECK(strstr(err, "chmod 600"));
	unlink(path);
	rmdir(dir);
	printf("ok key files: hex and raw read, a short key and a "
	       "group-readable file refused\n");
}

static void test_key_fds(void)
{
	static const char hex[] = "00112233445566778899aabbccddeeff\n";
	struct hm_auth_key k;
	char path[64], err[200];
	int fd = memfd_create("hm-test-key", 0);

	HM_CHECK(fd > 2);
	HM_CHECK(fchmod(fd, 0600) == 0);
	/* written: the offset is at its end, the read starts at 0 */
	HM_CHECK(write(fd, hex, sizeof(hex) - 1) == (ssize_t)sizeof(hex) - 1);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	HM_CHECK_OK(hm_auth_key_load(path, &k, err, sizeof(err)));
	HM_CHECK_EQ(k.len, 16);
	HM_CHECK_EQ(k.k[15], 0xff);
	HM_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	snprintf(path, sizeof(path), "/dev/fd/%d", fd);
	memset(&k, 0, sizeof(k));
	HM_CHECK_OK(hm_auth_key_load(path, &k, err, sizeof(err)));
	HM_CHECK_EQ(k.len, 16);
	HM_CHECK(fchmod(fd, 0640) == 0);
	HM_CHECK_EQ(hm_auth_key_load(path, &k, err, sizeof(err)), -EPERM);
	close(fd);
	HM_CHECK_EQ(hm_auth_key_load(path, &k, err, sizeof(err)), -EBADF);
	HM_CHECK(strstr(err, path));
	printf("ok key descriptors: /proc/self/fd/N and /dev/fd/N read from "
	       "the start, then close-on-exec; group-readable and closed "
	       "ones refused\n");
}

int main(void)
{
	char hex[2 * HM_AUTH_KEY_MAX + 1];

	setvbuf(stdout, NULL, _IOLBF, 0);
	HM_CHECK_OK(hm_auth_key_new(&key_a, hex));
	HM_CHECK_EQ(strlen(hex), 64);
	HM_CHECK_OK(hm_auth_key_new(&key_b, hex));
	test_keys();
	test_replay();
	test_reflection();
	test_slow_and_garbage();
	test_key_files();
	test_key_fds();
	printf("all passed\n");
	return 0;
}

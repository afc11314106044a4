/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Connection authentication (auth.h). Three fixed frames before HELLO:
 *   CHALLENGE  destination -> source  magic "HMA1", version 1, kind 1,
 *              nonce_d[32]                                    (40 bytes)
 *   RESPONSE   source -> destination  magic, version, kind 2, nonce_s[32],
 *              HMAC-SHA256(K, "hintmig-auth1 source" 0 nonce_d nonce_s)
 *                                                             (72 bytes)
 *   VERDICT    destination -> source  magic, version, kind 3 (accepted)
 *              or 4 (refused), HMAC-SHA256(K, "hintmig-auth1 destination"
 *              0 nonce_d nonce_s), zeros when refused         (40 bytes)
 * Each side's nonce is fresh (getrandom), so a RESPONSE or VERDICT
 * recorded from another connection does not fit; the labels differ, so
 * one side's proof reflected back is not the other's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "migrate/wire/auth.h"
#include "migrate/wire/le.h"
#include "migrate/wire/tls.h"

#define AUTH_MAGIC 0x31414d48u	/* "HMA1" */
#define AUTH_VERSION 1
enum { K_CHALLENGE = 1, K_RESPONSE, K_ACCEPTED, K_REFUSED };
#define HDR 8
#define CHALLENGE_LEN (HDR + HM_AUTH_NONCE)
#define RESPONSE_LEN (HDR + HM_AUTH_NONCE + HM_AUTH_MAC)
#define VERDICT_LEN (HDR + HM_AUTH_MAC)

static const char label_src[] = "hintmig-auth1 source";
static const char label_dst[] = "hintmig-auth1 destination";

uint64_t hm_auth_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fail(char *why, size_t len, int rc, const char *text)
{
	if (why && len)
		snprintf(why, len, "%s", text);
	return rc;
}

static int mac(const struct hm_auth_key *key, const char *label,
	       const uint8_t *nd, const uint8_t *ns, uint8_t out[HM_AUTH_MAC])
{
	uint8_t msg[sizeof(label_dst) + 2 * HM_AUTH_NONCE];
	size_t l = strlen(label) + 1;	/* with its NUL */

	memcpy(msg, label, l);
	memcpy(msg + l, nd, HM_AUTH_NONCE);
	memcpy(msg + l + HM_AUTH_NONCE, ns, HM_AUTH_NONCE);
	return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key->k, key->len, msg,
				l + 2 * HM_AUTH_NONCE, out) < 0 ? -EIO : 0;
}

static bool same(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static int random_bytes(uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Exactly n bytes before deadline (ms, monotonic). */
static int read_by(int fd, struct hm_tls *tls, uint8_t *p, size_t n,
		   uint64_t deadline)
{
	if (tls) {
		int r = hm_tls_recv_by(tls, p, n, deadline);

		return r == -ENODATA ? -ECONNRESET : r;
	}
	while (n) {
		uint64_t now = hm_auth_now_ms();
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;
		int pr;

		if (now >= deadline)
			return -ETIMEDOUT;
		pr = poll(&pf, 1, (int)(deadline - now > 60000 ? 60000
							      : deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			continue;
		r = recv(fd, p, n, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN ||
			      errno == EWOULDBLOCK))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_full(int fd, struct hm_tls *tls, const uint8_t *p, size_t n)
{
	if (tls)
		return hm_tls_send_all(tls, p, n);
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void put_hdr(uint8_t *p, unsigned kind)
{
	put32(p, AUTH_MAGIC);
	put16(p + 4, AUTH_VERSION);
	put16(p + 6, (uint16_t)kind);
}

static int check_hdr(const uint8_t *p, unsigned want, unsigned want2)
{
	unsigned k = get16(p + 6);

	if (get32(p) != AUTH_MAGIC || get16(p + 4) != AUTH_VERSION)
		return -EPROTO;
	return k == want || k == want2 ? (int)k : -EPROTO;
}

int hm_auth_accept(int fd, struct hm_tls *tls, const struct hm_auth_key *key,
		   uint64_t deadline_ms, char *why, size_t whylen)
{
	uint8_t ch[CHALLENGE_LEN], rs[RESPONSE_LEN], vd[VERDICT_LEN];
	uint8_t expect[HM_AUTH_MAC];
	const uint8_t *nd = ch + HDR, *ns = rs + HDR;
	int r;

	put_hdr(ch, K_CHALLENGE);
	r = random_bytes(ch + HDR, HM_AUTH_NONCE);
	if (r == 0)
		r = write_full(fd, tls, ch, sizeof(ch));
	if (r < 0)
		return fail(why, whylen, r, "cannot send the challenge");
	r = read_by(fd, tls, rs, sizeof(rs), deadline_ms);
	if (r == -ETIMEDOUT)
		return fail(why, whylen, r, "no complete answer to the "
			    "challenge in time");
	if (r < 0)
		return fail(why, whylen, r, "connection closed before it "
			    "answered the challenge");
	if (check_hdr(rs, K_RESPONSE, K_RESPONSE) < 0)
		return fail(why, whylen, -EPROTO, "not hintmig's "
			    "authentication (wrong magic, version or kind)");
	if (mac(key, label_src, nd, ns, expect) < 0)
		return fail(why, whylen, -EIO, "HMAC failed");
	put_hdr(vd, K_REFUSED);
	memset(vd + HDR, 0, HM_AUTH_MAC);
	if (!same(expect, rs + HDR + HM_AUTH_NONCE, HM_AUTH_MAC)) {
		(void)write_full(fd, tls, vd, sizeof(vd));
		return fail(why, whylen, -EACCES, "wrong proof of the key "
			    "(another key, or a replayed answer)");
	}
	put_hdr(vd, K_ACCEPTED);
	if (mac(key, label_dst, nd, ns, vd + HDR) < 0)
		return fail(why, whylen, -EIO, "HMAC failed");
	r = write_full(fd, tls, vd, sizeof(vd));
	return r < 0 ? fail(why, whylen, r, "cannot send the verdict") : 0;
}

int hm_auth_connect(int fd, struct hm_tls *tls, const struct hm_auth_key *key,
		    uint64_t timeout_ms, char *why, size_t whylen)
{
	uint64_t now = hm_auth_now_ms();
	uint64_t deadline = timeout_ms > UINT64_MAX - now ? UINT64_MAX
							   : now + timeout_ms;
	uint8_t ch[CHALLENGE_LEN], rs[RESPONSE_LEN], vd[VERDICT_LEN];
	uint8_t expect[HM_AUTH_MAC];
	int r, k;

	r = read_by(fd, tls, ch, sizeof(ch), deadline);
	if (r < 0)
		return fail(why, whylen, r, r == -ETIMEDOUT
			    ? "no challenge from the destination in time (not "
			      "a hintmig receiver with a key?)"
			    : "connection closed before the challenge");
	if (check_hdr(ch, K_CHALLENGE, K_CHALLENGE) < 0)
		return fail(why, whylen, -EPROTO, "the destination does not "
			    "speak hintmig's authentication (a receiver "
			    "without --key-file, or not hintmig)");
	put_hdr(rs, K_RESPONSE);
	r = random_bytes(rs + HDR, HM_AUTH_NONCE);
	if (r == 0)
		r = mac(key, label_src, ch + HDR, rs + HDR,
			rs + HDR + HM_AUTH_NONCE);
	if (r == 0)
		r = write_full(fd, tls, rs, sizeof(rs));
	if (r < 0)
		return fail(why, whylen, r, "cannot answer the challenge");
	r = read_by(fd, tls, vd, sizeof(vd), deadline);
	if (r < 0)
		return fail(why, whylen, r, "no verdict from the destination");
	k = check_hdr(vd, K_ACCEPTED, K_REFUSED);
	if (k < 0)
		return fail(why, whylen, -EPROTO, "garbled verdict");
	if (k == K_REFUSED)
		return fail(why, whylen, -EACCES, "the destination refused "
			    "our proof: its key is another");
	if (mac(key, label_dst, ch + HDR, rs + HDR, expect) < 0)
		return fail(why, whylen, -EIO, "HMAC failed");
	if (!same(expect, vd + HDR, HM_AUTH_MAC))
		return fail(why, whylen, -EACCES, "the destination could not "
			    "prove it holds the key: not the receiver meant "
			    "(nothing sent to it)");
	return 0;
}

/* ---- keys ------------------------------------------------------------------ */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex text (whitespace ignored) into key, or -EINVAL. */
static int parse_hex(const char *s, size_t n, struct hm_auth_key *key)
{
	size_t len = 0;
	int hi = -1;

	for (size_t i = 0; i < n; i++) {
		int v = hexval((unsigned char)s[i]);

		if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' ||
		    s[i] == '\r')
			continue;
		if (v < 0 || (hi < 0 && len == HM_AUTH_KEY_MAX))
			return -EINVAL;
		if (hi < 0) {
			hi = v;
		} else {
			key->k[len++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0 || len < HM_AUTH_KEY_MIN)
		return -EINVAL;
	key->len = len;
	return 0;
}

/* Only hex digits and whitespace (and at least one digit)? */
static bool all_hex_text(const char *s, size_t n)
{
	bool digit = false;

	for (size_t i = 0; i < n; i++) {
		if (hexval((unsigned char)s[i]) >= 0)
			digit = true;
		else if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' &&
			 s[i] != '\r')
			return false;
	}
	return digit;
}

int hm_auth_key_hex(const char *hex, struct hm_auth_key *key)
{
	return parse_hex(hex, strlen(hex), key);
}

int hm_fd_path_number(const char *path)
{
	const char *c = NULL;
	int n = 0;

	if (!strncmp(path, "/proc/self/fd/", 14))
		c = path + 14;
	else if (!strncmp(path, "/dev/fd/", 8))
		c = path + 8;
	if (!c || !*c)
		return -1;
	for (; *c >= '0' && *c <= '9' && n < 1 << 20; c++)
		n = n * 10 + (*c - '0');
	return *c ? -1 : n;
}

int hm_auth_key_load(const char *path, struct hm_auth_key *key, char *err,
		     size_t errlen)
{
	char buf[2 * HM_AUTH_KEY_MAX + 64];
	struct stat st;
	ssize_t n;
	int nfd = hm_fd_path_number(path), e;
	/* a named descriptor as it is (no reopening through /proc, whose
	 * magic link O_NOFOLLOW refuses), read from its start; not on into
	 * whatever this process runs later */
	int fd = nfd >= 0 ? fcntl(nfd, F_DUPFD_CLOEXEC, 3)
			  : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (nfd >= 0 && fd >= 0)
		(void)fcntl(nfd, F_SETFD, FD_CLOEXEC);

	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & 077) ||
	    (st.st_uid != geteuid() && st.st_uid != 0)) {
		close(fd);
		snprintf(err, errlen, "key file %s: must be a regular file of "
			 "ours (or root's) readable by its owner only (chmod "
			 "600)", path);
		return -EPERM;
	}
	if ((uint64_t)st.st_size >= sizeof(buf)) {
		close(fd);
		snprintf(err, errlen, "key file %s: %lld bytes, too long for "
			 "a key", path, (long long)st.st_size);
		return -EINVAL;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0) {
		e = -errno;
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return e;
	}
	e = -EINVAL;
	if (all_hex_text(buf, (size_t)n)) {
		/* hex text is hex: a bad one is an error, never raw bytes */
		if (parse_hex(buf, (size_t)n, key) == 0)
			e = 0;
	} else if (n >= HM_AUTH_KEY_MIN && (size_t)n <= HM_AUTH_KEY_MAX) {
		memcpy(key->k, buf, (size_t)n);
		key->len = (size_t)n;
		e = 0;
	}
	explicit_bzero(buf, sizeof(buf));
	if (e < 0)
		snprintf(err, errlen, "key file %s: want %d to %d bytes, raw "
			 "or as an even number of hex digits (head -c 32 "
			 "/dev/urandom > FILE)", path, HM_AUTH_KEY_MIN,
			 HM_AUTH_KEY_MAX);
	return e;
}

void hm_auth_key_to_hex(const struct hm_auth_key *key,
			char hex[2 * HM_AUTH_KEY_MAX + 1])
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < key->len; i++) {
		hex[2 * i] = d[key->k[i] >> 4];
		hex[2 * i + 1] = d[key->k[i] & 15];
	}
	hex[2 * key->len] = 0;
}

int hm_auth_key_new(struct hm_auth_key *key, char hex[2 * HM_AUTH_KEY_MAX + 1])
{
	int r = random_bytes(key->k, 32);

	if (r < 0)
		return r;
	key->len = 32;
	hm_auth_key_to_hex(key, hex);
	return 0;
}

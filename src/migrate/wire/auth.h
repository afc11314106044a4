/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Mutual authentication of a migration's connections (R17,
 * docs/protocol.md "Authentication"): both ends hold a secret key for
 * this migration; on every connection, before HELLO, each proves it with
 * an HMAC-SHA256 over a fresh nonce of each side, in a direction-labelled
 * form (a reply replayed from an earlier connection or reflected back
 * fails). No page moves on a connection that has not passed it.
 */
#ifndef HM_MIGRATE_AUTH_H
#define HM_MIGRATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define HM_AUTH_KEY_MIN 16
#define HM_AUTH_KEY_MAX 64
#define HM_AUTH_NONCE 32
#define HM_AUTH_MAC 32

struct hm_auth_key {
	uint8_t k[HM_AUTH_KEY_MAX];
	size_t len;
};

/* The key in path: 16-64 bytes, raw, or as hex text (whitespace
 * ignored). The file must not be readable or writable by group or others.
 * "/proc/self/fd/N" or "/dev/fd/N" is inherited descriptor N (read from
 * its start, then close-on-exec). 0, or -errno with err saying why. */
/* N of "/proc/self/fd/N" or "/dev/fd/N", else -1. Async-signal-safe (a
 * child forked from a threaded process calls it before exec). */
int hm_fd_path_number(const char *path);
int hm_auth_key_load(const char *path, struct hm_auth_key *key, char *err,
		     size_t errlen);
/* A fresh random key of 32 bytes, and its hex form (65 bytes with NUL). */
int hm_auth_key_new(struct hm_auth_key *key, char hex[2 * HM_AUTH_KEY_MAX + 1]);
/* key as lowercase hex. */
void hm_auth_key_to_hex(const struct hm_auth_key *key,
			char hex[2 * HM_AUTH_KEY_MAX + 1]);
/* Parse hex into key: 0 or -EINVAL. */
int hm_auth_key_hex(const char *hex, struct hm_auth_key *key);

/* The destination's side, on a fresh connection: challenge, check the
 * source's proof, prove itself. Everything must arrive before deadline_ms
 * (CLOCK_MONOTONIC, ms): a slow peer cannot hold the receiver. 0, or
 * -EACCES (proof wrong), -EPROTO (not this protocol), -ETIMEDOUT,
 * -ECONNRESET; why says which. */
struct hm_tls;
/* tls: the connection's TLS session (R18), NULL on a plain one. */
int hm_auth_accept(int fd, struct hm_tls *tls, const struct hm_auth_key *key,
		   uint64_t deadline_ms, char *why, size_t whylen);
/* The source's side, right after connecting: 0 only when the destination
 * proved it holds the key. Errors as hm_auth_accept. */
int hm_auth_connect(int fd, struct hm_tls *tls, const struct hm_auth_key *key,
		    uint64_t timeout_ms, char *why, size_t whylen);

uint64_t hm_auth_now_ms(void);

#endif

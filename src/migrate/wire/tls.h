/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * TLS on a migration's connections (R18, docs/protocol.md "TLS"):
 * GnuTLS, x509 credentials from a directory laid out as libvirt's and
 * QEMU's (ca-cert.pem, server-cert.pem + server-key.pem on the
 * destination, client-cert.pem + client-key.pem on the source, optional
 * ca-crl.pem). Both ends present a certificate and verify the other's
 * against the CA; the source also checks the destination's name. The
 * kernel's TLS offload (kTLS) is used when GnuTLS turns it on, and each
 * session says which path runs.
 */
#ifndef HM_MIGRATE_TLS_H
#define HM_MIGRATE_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hintmig/migrate.h>

struct hm_tls;
struct iovec;

/* A TLS session on the connected socket fd (not owned): handshake done
 * before deadline_ms (CLOCK_MONOTONIC ms, hm_auth_now_ms), the peer's
 * certificate verified (client: against peer_name too, which must not be
 * NULL). 0 with *out, or -errno (-EACCES the peer's certificate is
 * refused, -EPROTO not TLS or no common parameters, -ETIMEDOUT,
 * -ECONNRESET) with why saying which, the peer called peer_role there
 * (NULL: "the source" on a server, "the destination" on a client). */
int hm_tls_start(struct hm_tls **out, int fd, const struct hm_tls_creds *cr,
		 const char *peer_name, const char *peer_role,
		 uint64_t deadline_ms, char *why, size_t whylen);
/* Send close_notify (best effort, not waiting) and free. NULL is fine. */
void hm_tls_free(struct hm_tls *t);

/* Exactly len bytes, as hm_send_all/hm_recv_all on a plain socket (the
 * socket's SO_SNDTIMEO/SO_RCVTIMEO bound each wait): 0 or -errno,
 * -ETIMEDOUT, -ECONNRESET (EOF inside the buffer, or a reset), -ENODATA
 * (orderly EOF before the first byte), -EPROTO (a record failed its
 * integrity check: someone wrote into the stream). */
int hm_tls_send_all(struct hm_tls *t, const void *buf, size_t len);
int hm_tls_sendv_all(struct hm_tls *t, const struct iovec *iov, int iovcnt);
int hm_tls_recv_all(struct hm_tls *t, void *buf, size_t len);
/* hm_tls_recv_all, waiting at most until deadline_ms in all. */
int hm_tls_recv_by(struct hm_tls *t, void *buf, size_t len,
		   uint64_t deadline_ms);
/* What the last -EPROTO (or other record error) was. */
const char *hm_tls_error(const struct hm_tls *t);
/* Bytes already decrypted and waiting (poll() on the socket does not
 * see them). */
size_t hm_tls_pending(const struct hm_tls *t);

/* What runs: "TLS1.3 AES-256-GCM, kTLS (the kernel encrypts and
 * decrypts)" or "..., GnuTLS in user space (no kTLS: <why not>)". */
const char *hm_tls_describe(const struct hm_tls *t);

#endif

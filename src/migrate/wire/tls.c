/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * TLS sessions for the migration stream (tls.h, R18). Credentials come
 * from one directory in the layout libvirt's migrate_tls_x509_cert_dir
 * and QEMU's tls-creds-x509 use, so a host set up for libvirt's migration
 * TLS is set up for hintmig's. Both ends must present a certificate the
 * CA signed; the source checks that the destination's names the host it
 * meant to reach. GnuTLS carries the records; when it has turned the
 * kernel's TLS offload on for a session, the kernel does.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/socket.h>
#include <gnutls/x509.h>

#include "migrate/wire/auth.h"
#include "migrate/wire/tls.h"

struct hm_tls_creds {
	gnutls_certificate_credentials_t x;
	bool server;
	char dir[PATH_MAX];
};

struct hm_tls {
	gnutls_session_t s;
	int fd;
	char desc[200];
	char err[160];		/* the last record error, for -EPROTO */
};

static int say(char *why, size_t len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int say(char *why, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int file_in(const char *dir, const char *name, char *out, size_t len,
		   bool must, char *err, size_t errlen)
{
	struct stat st;

	if ((size_t)snprintf(out, len, "%s/%s", dir, name) >= len)
		return say(err, errlen, -ENAMETOOLONG, "%s/%s: path too long",
			   dir, name);
	if (stat(out, &st) == 0)
		return 1;
	if (!must && errno == ENOENT)
		return 0;
	return say(err, errlen, -errno, "%s: %s", out, strerror(errno));
}

struct hm_tls_creds *hm_tls_creds_load(const char *dir, bool server,
				       char *err, size_t errlen)
{
	const char *role = server ? "server" : "client";
	char ca[PATH_MAX], crl[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	char n1[32], n2[32];
	struct hm_tls_creds *c;
	int r;

	if (!dir || !*dir)
		dir = HM_TLS_DEFAULT_DIR;
	snprintf(n1, sizeof(n1), "%s-cert.pem", role);
	snprintf(n2, sizeof(n2), "%s-key.pem", role);
	if (file_in(dir, "ca-cert.pem", ca, sizeof(ca), true, err, errlen) < 0 ||
	    file_in(dir, n1, cert, sizeof(cert), true, err, errlen) < 0 ||
	    file_in(dir, n2, key, sizeof(key), true, err, errlen) < 0 ||
	    (r = file_in(dir, "ca-crl.pem", crl, sizeof(crl), false, err,
			 errlen)) < 0) {
		errno = ENOENT;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		say(err, errlen, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	c->server = server;
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (gnutls_certificate_allocate_credentials(&c->x) < 0) {
		free(c);
		say(err, errlen, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	int n = gnutls_certificate_set_x509_trust_file(c->x, ca,
						       GNUTLS_X509_FMT_PEM);
	if (n <= 0) {
		say(err, errlen, -EINVAL, "%s: %s", ca,
		    n == 0 ? "no certificate in it"
			   : gnutls_strerror(n));
		goto bad;
	}
	if (r == 1) {
		n = gnutls_certificate_set_x509_crl_file(c->x, crl,
							 GNUTLS_X509_FMT_PEM);
		if (n < 0) {
			say(err, errlen, -EINVAL, "%s: %s", crl,
			    gnutls_strerror(n));
			goto bad;
		}
	}
	n = gnutls_certificate_set_x509_key_file(c->x, cert, key,
						 GNUTLS_X509_FMT_PEM);
	if (n < 0) {
		say(err, errlen, -EINVAL, "%s with %s: %s", cert, key,
		    gnutls_strerror(n));
		goto bad;
	}
	return c;
bad:
	gnutls_certificate_free_credentials(c->x);
	free(c);
	errno = EINVAL;
	return NULL;
}

void hm_tls_creds_free(struct hm_tls_creds *c)
{
	if (!c)
		return;
	gnutls_certificate_free_credentials(c->x);
	free(c);
}

const char *hm_tls_creds_dir(const struct hm_tls_creds *c)
{
	return c ? c->dir : NULL;
}

/* Why the kernel does not carry this session's records. */
static const char *no_ktls_reason(void)
{
	char ulp[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");

	if (f) {
		if (!fgets(ulp, sizeof(ulp), f))
			ulp[0] = 0;
		fclose(f);
	}
	if (!strstr(ulp, "tls"))
		return "the kernel has no TLS offload (no \"tls\" in "
		       "net.ipv4.tcp_available_ulp: CONFIG_TLS off or the tls "
		       "module not loaded)";
	return "GnuTLS left it off (its system configuration turns it on: "
	       "\"ktls = true\" under [global] in /etc/gnutls/config)";
}

static void describe(struct hm_tls *t)
{
	const char *ver = gnutls_protocol_get_name(
		gnutls_protocol_get_version(t->s));
	const char *ciph = gnutls_cipher_get_name(gnutls_cipher_get(t->s));
	int k = gnutls_transport_is_ktls_enabled(t->s);

	if (k == GNUTLS_KTLS_DUPLEX)
		snprintf(t->desc, sizeof(t->desc), "%s %s, kTLS (the kernel "
			 "encrypts and decrypts)", ver ? ver : "?",
			 ciph ? ciph : "?");
	else if (k)
		snprintf(t->desc, sizeof(t->desc), "%s %s, kTLS for %s only, "
			 "GnuTLS in user space for the other direction",
			 ver ? ver : "?", ciph ? ciph : "?",
			 k == GNUTLS_KTLS_SEND ? "sending" : "receiving");
	else
		snprintf(t->desc, sizeof(t->desc), "%s %s, GnuTLS in user "
			 "space (no kTLS: %s)", ver ? ver : "?",
			 ciph ? ciph : "?", no_ktls_reason());
}

static int io_rc(struct hm_tls *t, int g)
{
	if (g == GNUTLS_E_DECRYPTION_FAILED || g == GNUTLS_E_MAC_VERIFY_FAILED)
		snprintf(t->err, sizeof(t->err), "a TLS record failed its "
			 "integrity check (the stream was altered on the way)");
	else if (g == GNUTLS_E_FATAL_ALERT_RECEIVED)
		snprintf(t->err, sizeof(t->err), "the peer ended TLS: %s",
			 gnutls_alert_get_name(gnutls_alert_get(t->s)) ?: "?");
	else
		snprintf(t->err, sizeof(t->err), "TLS: %s", gnutls_strerror(g));
	switch (g) {
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_TIMEDOUT:
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		return -ECONNRESET;
	default:
		return -EPROTO;
	}
}

static bool is_ip_literal(const char *name)
{
	return strspn(name, "0123456789.") == strlen(name) ||
	       strchr(name, ':') != NULL;
}

/* The handshake failed with g: why (the other end called peer), and the
 * errno. */
static int handshake_failed(struct hm_tls *t, int g, bool server,
			    const char *peer_name, const char *peer,
			    char *why, size_t whylen)
{

	if (g == GNUTLS_E_CERTIFICATE_REQUIRED ||
	    (server && g == GNUTLS_E_NO_CERTIFICATE_FOUND))
		return say(why, whylen, -EACCES, "%s presented no certificate "
			   "(none of its signed by this CA)", peer);
	if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR ||
	    g == GNUTLS_E_CERTIFICATE_ERROR || g == GNUTLS_E_NO_CERTIFICATE_FOUND) {
		unsigned st = gnutls_session_get_verify_cert_status(t->s);
		gnutls_datum_t out = { NULL, 0 };
		int rc;

		if (g == GNUTLS_E_NO_CERTIFICATE_FOUND || !st ||
		    gnutls_certificate_verification_status_print(
			    st, GNUTLS_CRT_X509, &out, 0) < 0)
			rc = say(why, whylen, -EACCES, "%s's certificate is "
				 "refused: %s", peer, gnutls_strerror(g));
		else {
			char *e = (char *)out.data + strlen((char *)out.data);

			while (e > (char *)out.data && e[-1] == ' ')
				*--e = 0;
			rc = say(why, whylen, -EACCES, "%s's certificate is "
				 "refused%s%s%s: %s", peer,
				 server ? "" : " (expected name \"",
				 server ? "" : peer_name, server ? "" : "\")",
				 (const char *)out.data);
		}
		gnutls_free(out.data);
		return rc;
	}
	if (g == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		gnutls_alert_description_t a = gnutls_alert_get(t->s);
		const char *an = gnutls_alert_get_name(a);
		bool cert = a == GNUTLS_A_BAD_CERTIFICATE ||
			    a == GNUTLS_A_UNSUPPORTED_CERTIFICATE ||
			    a == GNUTLS_A_CERTIFICATE_REVOKED ||
			    a == GNUTLS_A_CERTIFICATE_EXPIRED ||
			    a == GNUTLS_A_CERTIFICATE_UNKNOWN ||
			    a == GNUTLS_A_UNKNOWN_CA ||
			    a == GNUTLS_A_ACCESS_DENIED ||
			    a == GNUTLS_A_CERTIFICATE_REQUIRED;

		return say(why, whylen, cert ? -EACCES : -EPROTO,
			   "%s refused the handshake: %s%s", peer,
			   an ? an : "alert",
			   cert ? " (it does not trust our certificate)" : "");
	}
	if (g == GNUTLS_E_TIMEDOUT || g == GNUTLS_E_AGAIN)
		return say(why, whylen, -ETIMEDOUT, "TLS handshake with %s "
			   "did not finish in time", peer);
	if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PULL_ERROR ||
	    g == GNUTLS_E_PUSH_ERROR)
		return say(why, whylen, -ECONNRESET, "%s closed the connection "
			   "during the TLS handshake", peer);
	return say(why, whylen, -EPROTO, "TLS handshake with %s failed: %s "
		   "(not TLS, or no parameters in common)", peer,
		   gnutls_strerror(g));
}

int hm_tls_start(struct hm_tls **out, int fd, const struct hm_tls_creds *cr,
		 const char *peer_name, const char *peer_role,
		 uint64_t deadline_ms, char *why, size_t whylen)
{
	const char *role = peer_role ? peer_role : cr && cr->server ?
			   "the source" : "the destination";
	struct hm_tls *t;
	int g;

	*out = NULL;
	if (!cr || fd < 0 || (!cr->server && (!peer_name || !*peer_name)))
		return say(why, whylen, -EINVAL, "TLS needs credentials%s",
			   cr && !cr->server ? " and the destination's name"
					     : "");
	t = calloc(1, sizeof(*t));
	if (!t)
		return say(why, whylen, -ENOMEM, "out of memory");
	t->fd = fd;
	g = gnutls_init(&t->s, (cr->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
				       GNUTLS_NO_SIGNAL);
	if (g < 0) {
		free(t);
		return say(why, whylen, -ENOMEM, "gnutls_init: %s",
			   gnutls_strerror(g));
	}
	g = gnutls_set_default_priority(t->s);
	if (g == 0)
		g = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cr->x);
	if (g == 0 && cr->server) {
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->s, NULL, 0);
	} else if (g == 0) {
		if (!is_ip_literal(peer_name))
			g = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS,
						   peer_name,
						   strlen(peer_name));
		gnutls_session_set_verify_cert(t->s, peer_name, 0);
	}
	if (g < 0) {
		gnutls_deinit(t->s);
		free(t);
		return say(why, whylen, -EINVAL, "TLS setup: %s",
			   gnutls_strerror(g));
	}
	gnutls_transport_set_int(t->s, fd);
	for (;;) {
		uint64_t now = hm_auth_now_ms();

		if (now >= deadline_ms) {
			g = GNUTLS_E_TIMEDOUT;
			break;
		}
		gnutls_handshake_set_timeout(t->s, (unsigned)(
			deadline_ms - now > 600000 ? 600000 : deadline_ms - now));
		g = gnutls_handshake(t->s);
		if (g >= 0 || gnutls_error_is_fatal(g))
			break;
		if (g == GNUTLS_E_AGAIN && hm_auth_now_ms() >= deadline_ms)
			break;
	}
	if (g < 0) {
		int rc = handshake_failed(t, g, cr->server, peer_name, role, why,
					  whylen);

		/* tell the peer why (best effort): its report names it */
		if (g != GNUTLS_E_FATAL_ALERT_RECEIVED &&
		    g != GNUTLS_E_PREMATURE_TERMINATION &&
		    g != GNUTLS_E_PULL_ERROR && g != GNUTLS_E_PUSH_ERROR)
			(void)gnutls_alert_send_appropriate(t->s, g);
		gnutls_deinit(t->s);
		free(t);
		return rc;
	}
	gnutls_handshake_set_timeout(t->s, 0);
	/* In TLS 1.3 the client is done before the server has checked the
	 * client's certificate: the server says so in one record, and the
	 * client waits for it, so that a refusal is reported here as one
	 * (the server's alert) and not as a reset later. */
	if (cr->server) {
		g = hm_tls_send_all(t, "A", 1);
	} else {
		char a = 0;

		g = hm_tls_recv_by(t, &a, 1, deadline_ms);
		if (g == -EPROTO &&
		    gnutls_alert_get(t->s) != GNUTLS_A_CLOSE_NOTIFY)
			g = handshake_failed(t, GNUTLS_E_FATAL_ALERT_RECEIVED,
					     false, peer_name, role, why,
					     whylen);
		else if (g == 0 && a != 'A')
			g = say(why, whylen, -EPROTO, "%s's first TLS record "
				"is not hintmig's", role);
		else if (g < 0)
			g = say(why, whylen, g, "%s closed the connection "
				"after the TLS handshake (%s)", role,
				strerror(-g));
	}
	if (g < 0) {
		if (cr->server)
			say(why, whylen, g, "%s left after the TLS handshake",
			    role);
		gnutls_deinit(t->s);
		free(t);
		return g;
	}
	describe(t);
	*out = t;
	return 0;
}

void hm_tls_free(struct hm_tls *t)
{
	if (!t)
		return;
	/* tell the peer this end is done, without waiting: a peer gone or
	 * stalled (its receive buffer full) must not hold our cleanup for a
	 * send timeout; the socket is closed right after */
	{
		int fl = fcntl(t->fd, F_GETFL);

		if (fl >= 0)
			(void)fcntl(t->fd, F_SETFL, fl | O_NONBLOCK);
	}
	gnutls_record_set_timeout(t->s, 0);
	(void)gnutls_bye(t->s, GNUTLS_SHUT_WR);
	gnutls_deinit(t->s);
	free(t);
}

int hm_tls_send_all(struct hm_tls *t, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = gnutls_record_send(t->s, p, len);

		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return io_rc(t, (int)n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int hm_tls_sendv_all(struct hm_tls *t, const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	int r = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	/* one message, one run of full records: cork while it is small
	 * enough that the copy into GnuTLS's buffer is cheaper than a
	 * short record of its own (a header ahead of its pages) */
	if (total <= 256 * 1024 && iovcnt > 1) {
		gnutls_record_cork(t->s);
		for (int i = 0; i < iovcnt && r == 0; i++)
			r = hm_tls_send_all(t, iov[i].iov_base, iov[i].iov_len);
		for (;;) {
			int g = gnutls_record_uncork(t->s, GNUTLS_RECORD_WAIT);

			if (g == GNUTLS_E_INTERRUPTED)
				continue;
			if (g < 0 && r == 0)
				r = io_rc(t, g);
			break;
		}
		return r;
	}
	for (int i = 0; i < iovcnt && r == 0; i++)
		r = hm_tls_send_all(t, iov[i].iov_base, iov[i].iov_len);
	return r;
}

static int recv_some(struct hm_tls *t, char *p, size_t len, size_t got)
{
	for (;;) {
		ssize_t n = gnutls_record_recv(t->s, p, len);

		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n > 0)
			return (int)(n > INT_MAX ? INT_MAX : n);
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			return got ? -ECONNRESET : -ENODATA;
		return io_rc(t, (int)n);
	}
}

int hm_tls_recv_all(struct hm_tls *t, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		size_t want = len - got;
		int n = recv_some(t, p + got, want > INT_MAX ? INT_MAX : want,
				  got);

		if (n < 0)
			return n;
		got += (size_t)n;
	}
	return 0;
}

int hm_tls_recv_by(struct hm_tls *t, void *buf, size_t len,
		   uint64_t deadline_ms)
{
	char *p = buf;
	size_t got = 0;
	int n = 0;

	while (got < len) {
		uint64_t now = hm_auth_now_ms();

		if (now >= deadline_ms) {
			n = -ETIMEDOUT;
			break;
		}
		gnutls_record_set_timeout(t->s, (unsigned)(
			deadline_ms - now > 600000 ? 600000 : deadline_ms - now));
		n = recv_some(t, p + got, len - got, got);
		if (n < 0)
			break;
		got += (size_t)n;
		n = 0;
	}
	gnutls_record_set_timeout(t->s, 0);
	return n;
}

const char *hm_tls_error(const struct hm_tls *t)
{
	return t ? t->err : "";
}

size_t hm_tls_pending(const struct hm_tls *t)
{
	return t ? gnutls_record_check_pending(t->s) : 0;
}

const char *hm_tls_describe(const struct hm_tls *t)
{
	return t ? t->desc : "plain";
}

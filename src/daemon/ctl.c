/* SPDX-License-Identifier: GPL-2.0-or-later */
/* hintmigd's control messages: framing over a TLS session (ctl.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "daemon/ctl.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/le.h"
#include "migrate/wire/tls.h"

int hm_ctl_send(struct hm_tls *t, struct json_object *msg)
{
	const char *s = json_object_to_json_string_ext(msg,
						       JSON_C_TO_STRING_PLAIN);
	size_t n = s ? strlen(s) : 0;
	unsigned char hdr[4];
	int r;

	if (!s || n > HM_CTL_MAX)
		return -EMSGSIZE;
	put32(hdr, (uint32_t)n);
	r = hm_tls_send_all(t, hdr, sizeof(hdr));
	return r ? r : hm_tls_send_all(t, s, n);
}

int hm_ctl_readable(struct hm_tls *t, int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	if (hm_tls_pending(t))
		return 1;
	r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r > 0;
}

int hm_ctl_recv(struct hm_tls *t, int fd, uint64_t deadline_ms,
		struct json_object **msg, char *why, size_t whylen)
{
	unsigned char hdr[4];
	uint32_t n;
	char *buf;
	int r;

	(void)fd;
	*msg = NULL;
	r = hm_tls_recv_by(t, hdr, sizeof(hdr), deadline_ms);
	if (r) {
		snprintf(why, whylen, "%s", r == -ENODATA ? "connection closed"
			 : r == -ETIMEDOUT ? "no answer in time"
			 : r == -EPROTO ? hm_tls_error(t) : strerror(-r));
		return r;
	}
	n = get32(hdr);
	if (n == 0 || n > HM_CTL_MAX) {
		snprintf(why, whylen, "a message of %u bytes", n);
		return -EPROTO;
	}
	buf = malloc((size_t)n + 1);
	if (!buf) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	r = hm_tls_recv_by(t, buf, n, deadline_ms);
	if (r) {
		free(buf);
		snprintf(why, whylen, "%s", r == -ETIMEDOUT ?
			 "a message cut short" : strerror(-r));
		return r == -ENODATA ? -ECONNRESET : r;
	}
	buf[n] = 0;
	*msg = json_tokener_parse(buf);
	free(buf);
	if (!*msg || !json_object_is_type(*msg, json_type_object)) {
		json_object_put(*msg);
		*msg = NULL;
		snprintf(why, whylen, "a message that is not a JSON object");
		return -EPROTO;
	}
	return 0;
}

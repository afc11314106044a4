/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QMP client: see qmp.h.  The wire format (QEMU's docs/interop/qmp-spec):
 * the server greets with {"QMP": {...}}, the client must send
 * qmp_capabilities first; then each command {"execute", "arguments", "id"}
 * is answered by {"return"} or {"error": {"class", "desc"}} carrying the
 * same id, and {"event", "data", "timestamp"} messages may come in between.
 * QEMU writes every message as one line. */
#include "migrate/guests/qemu/qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_MAX_LINE (16u << 20)
#define QMP_MAX_EVENTS 256

struct hm_qmp {
	int fd;
	char *buf;
	size_t len, cap;
	unsigned long next_id;
	struct json_object *events[QMP_MAX_EVENTS];
	int nevents;
	char err[512];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(struct hm_qmp *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_err(struct hm_qmp *q, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q->err, sizeof(q->err), fmt, ap);
	va_end(ap);
}

const char *hm_qmp_error(const struct hm_qmp *q)
{
	return q ? q->err : "no QMP connection";
}

static void queue_event(struct hm_qmp *q, struct json_object *ev)
{
	if (q->nevents == QMP_MAX_EVENTS) {
		/* Drop the oldest: a test waits for recent events. */
		json_object_put(q->events[0]);
		memmove(q->events, q->events + 1,
			sizeof(q->events[0]) * (QMP_MAX_EVENTS - 1));
		q->nevents--;
	}
	q->events[q->nevents++] = ev;
}

/* Read one message (one line) before the deadline; NULL on failure. */
static struct json_object *read_msg(struct hm_qmp *q, int64_t deadline)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;

		if (nl) {
			size_t linelen = (size_t)(nl - q->buf);
			struct json_object *o = NULL;
			enum json_tokener_error jerr = json_tokener_success;

			*nl = 0;
			if (linelen && q->buf[linelen - 1] == '\r')
				q->buf[linelen - 1] = 0;
			if (q->buf[0]) {
				o = json_tokener_parse_verbose(q->buf, &jerr);
				if (!o)
					set_err(q, "bad JSON from QEMU (%s): %.200s",
						json_tokener_error_desc(jerr),
						q->buf);
			}
			q->len -= linelen + 1;
			memmove(q->buf, nl + 1, q->len);
			if (o)
				return o;
			if (jerr != json_tokener_success)
				return NULL;
			continue;
		}
		if (q->len + 4096 > q->cap) {
			size_t ncap = q->cap ? q->cap * 2 : 65536;
			char *nb;

			if (ncap > QMP_MAX_LINE) {
				set_err(q, "QMP message longer than %u bytes",
					QMP_MAX_LINE);
				return NULL;
			}
			nb = realloc(q->buf, ncap);
			if (!nb) {
				set_err(q, "out of memory");
				return NULL;
			}
			q->buf = nb;
			q->cap = ncap;
		}
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			set_err(q, "timed out waiting for QEMU");
			return NULL;
		}
		struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
		int r = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			set_err(q, "poll: %s", strerror(errno));
			return NULL;
		}
		if (r == 0)
			continue;
		ssize_t n = read(q->fd, q->buf + q->len, q->cap - q->len - 1);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			set_err(q, "read from QMP socket: %s", strerror(errno));
			return NULL;
		}
		if (n == 0) {
			set_err(q, "QEMU closed the QMP connection");
			return NULL;
		}
		q->len += (size_t)n;
	}
}

static int send_all(struct hm_qmp *q, const char *s, size_t len,
		    int64_t deadline)
{
	while (len) {
		ssize_t n = send(q->fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pfd = { .fd = q->fd, .events = POLLOUT };
			int64_t left = deadline - mono_ms();

			if (left <= 0) {
				set_err(q, "timed out writing to QEMU");
				return -1;
			}
			poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
			continue;
		}
		if (n < 0) {
			set_err(q, "write to QMP socket: %s", strerror(errno));
			return -1;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

struct json_object *hm_qmp_exec(struct hm_qmp *q, const char *cmd,
				struct json_object *args, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	struct json_object *req = json_object_new_object(), *res = NULL;
	unsigned long id = ++q->next_id;
	const char *text;

	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_int64((int64_t)id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (send_all(q, text, strlen(text), deadline) < 0 ||
	    send_all(q, "\n", 1, deadline) < 0) {
		json_object_put(req);
		return NULL;
	}
	json_object_put(req);

	for (;;) {
		struct json_object *msg = read_msg(q, deadline), *v;

		if (!msg) {
			size_t l = strlen(q->err);
			snprintf(q->err + l, sizeof(q->err) - l, " (command %s)",
				 cmd);
			return NULL;
		}
		if (json_object_object_get_ex(msg, "event", NULL)) {
			queue_event(q, msg);
			continue;
		}
		if (!json_object_object_get_ex(msg, "id", &v) ||
		    (unsigned long)json_object_get_int64(v) != id) {
			/* An answer to a command we gave up on. */
			json_object_put(msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "return", &v)) {
			res = json_object_get(v);
			json_object_put(msg);
			return res;
		}
		if (json_object_object_get_ex(msg, "error", &v))
			set_err(q, "%s: %s: %s", cmd,
				hm_json_str(v, "class", "?"),
				hm_json_str(v, "desc", "?"));
		else
			set_err(q, "%s: unexpected answer %.200s", cmd,
				json_object_to_json_string(msg));
		json_object_put(msg);
		return NULL;
	}
}

static struct json_object *parse_args(struct hm_qmp *q, const char *fmt,
				      va_list ap, int *bad)
	__attribute__((format(printf, 2, 0)));
static struct json_object *parse_args(struct hm_qmp *q, const char *fmt,
				      va_list ap, int *bad)
{
	char *text = NULL;
	struct json_object *args;

	*bad = 0;
	if (!fmt || !*fmt)
		return NULL;
	if (vasprintf(&text, fmt, ap) < 0) {
		set_err(q, "out of memory");
		*bad = 1;
		return NULL;
	}
	args = json_tokener_parse(text);
	if (!args || !json_object_is_type(args, json_type_object)) {
		set_err(q, "bad QMP arguments: %s", text);
		json_object_put(args);
		args = NULL;
		*bad = 1;
	}
	free(text);
	return args;
}

struct json_object *hm_qmp_execf(struct hm_qmp *q, int timeout_ms,
				 const char *cmd, const char *args_fmt, ...)
{
	va_list ap;
	int bad;
	struct json_object *args;

	va_start(ap, args_fmt);
	args = parse_args(q, args_fmt, ap, &bad);
	va_end(ap);
	if (bad)
		return NULL;
	return hm_qmp_exec(q, cmd, args, timeout_ms);
}

int hm_qmp_run(struct hm_qmp *q, int timeout_ms, const char *cmd,
	       const char *args_fmt, ...)
{
	va_list ap;
	int bad;
	struct json_object *args, *res;

	va_start(ap, args_fmt);
	args = parse_args(q, args_fmt, ap, &bad);
	va_end(ap);
	if (bad)
		return -1;
	res = hm_qmp_exec(q, cmd, args, timeout_ms);
	if (!res)
		return -1;
	json_object_put(res);
	return 0;
}

int hm_qmp_wait_event(struct hm_qmp *q, const char *name, int timeout_ms,
		      struct json_object **data)
{
	int64_t deadline = mono_ms() + timeout_ms;

	for (;;) {
		for (int i = 0; i < q->nevents; i++) {
			struct json_object *ev = q->events[i];

			if (strcmp(hm_json_str(ev, "event", ""), name))
				continue;
			if (data) {
				struct json_object *d = hm_json_obj(ev, "data");
				*data = d ? json_object_get(d) : NULL;
			}
			json_object_put(ev);
			memmove(q->events + i, q->events + i + 1,
				sizeof(q->events[0]) *
					(size_t)(q->nevents - i - 1));
			q->nevents--;
			return 0;
		}
		struct json_object *msg = read_msg(q, deadline);
		if (!msg)
			return -1;
		if (json_object_object_get_ex(msg, "event", NULL))
			queue_event(q, msg);
		else
			json_object_put(msg);
	}
}

struct hm_qmp *hm_qmp_connect(const char *path, int timeout_ms, char *err,
			      size_t errlen)
{
	int64_t deadline = mono_ms() + timeout_ms;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hm_qmp *q;
	struct json_object *greeting, *res;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd < 0) {
			snprintf(err, errlen, "socket: %s", strerror(errno));
			free(q);
			return NULL;
		}
		if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		int e = errno;
		close(q->fd);
		if (mono_ms() >= deadline) {
			snprintf(err, errlen, "connect %s: %s", path,
				 strerror(e));
			free(q);
			return NULL;
		}
		usleep(20000);
	}
	greeting = read_msg(q, deadline);
	if (!greeting || !json_object_object_get_ex(greeting, "QMP", NULL)) {
		snprintf(err, errlen, "no QMP greeting on %s: %s", path,
			 greeting ? "unexpected message" : q->err);
		json_object_put(greeting);
		hm_qmp_close(q);
		return NULL;
	}
	json_object_put(greeting);
	res = hm_qmp_exec(q, "qmp_capabilities", NULL,
			  (int)(deadline - mono_ms() > 1000
					? deadline - mono_ms() : 1000));
	if (!res) {
		snprintf(err, errlen, "%s", q->err);
		hm_qmp_close(q);
		return NULL;
	}
	json_object_put(res);
	return q;
}

void hm_qmp_forget(struct hm_qmp *q, unsigned long id_base)
{
	q->len = 0;
	for (int i = 0; i < q->nevents; i++)
		json_object_put(q->events[i]);
	q->nevents = 0;
	q->next_id = id_base;
}

pid_t hm_qmp_peer_pid(const struct hm_qmp *q)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	return cr.pid > 0 ? cr.pid : -ESRCH;
}

int hm_qmp_fd(const struct hm_qmp *q)
{
	return q->fd;
}

void hm_qmp_close(struct hm_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	for (int i = 0; i < q->nevents; i++)
		json_object_put(q->events[i]);
	free(q->buf);
	free(q);
}

long long hm_json_int(struct json_object *o, const char *key, long long dflt)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !(json_object_is_type(v, json_type_int) ||
	      json_object_is_type(v, json_type_double)))
		return dflt;
	return (long long)json_object_get_int64(v);
}

const char *hm_json_str(struct json_object *o, const char *key,
			const char *dflt)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return dflt;
	return json_object_get_string(v);
}

struct json_object *hm_json_obj(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small QMP client (QEMU Machine Protocol) over a unix socket, on json-c.
 *
 * Used by the QEMU guest backend (qemu.c) and by the QEMU test harness.
 * One connection per QEMU process, used from one thread.  Every call has a
 * timeout.  Asynchronous events that arrive while waiting for a command's
 * answer are queued and can be waited for with hm_qmp_wait_event(). */
#ifndef HM_QEMU_QMP_H
#define HM_QEMU_QMP_H

#include <json-c/json.h>
#include <stddef.h>
#include <sys/types.h>

struct hm_qmp;

/* Connect to the QMP socket at path, retrying until it appears or
 * timeout_ms passes; reads the greeting and negotiates capabilities.
 * On failure returns NULL and writes the reason to err. */
struct hm_qmp *hm_qmp_connect(const char *path, int timeout_ms, char *err,
			      size_t errlen);
void hm_qmp_close(struct hm_qmp *q);

/* The process at the other end of the socket (SO_PEERCRED): QEMU's pid,
 * or -errno. */
pid_t hm_qmp_peer_pid(const struct hm_qmp *q);

/* For a process that took over a connection another one used (a forked
 * child after its parent died): drop what was buffered and queued, and
 * number commands from id_base on, so that answers to the other process's
 * commands are never taken for ours. */
void hm_qmp_forget(struct hm_qmp *q, unsigned long id_base);

/* The connection's socket, for a process that inherits it (the guardian
 * of a QEMU migration, src/migrate/qemu.c). */
int hm_qmp_fd(const struct hm_qmp *q);

/* The reason of the last failed call on q. */
const char *hm_qmp_error(const struct hm_qmp *q);

/* Run cmd with args (a JSON object, consumed; NULL for none).  Returns the
 * "return" member (a new reference: json_object_put it), or NULL on a QMP
 * error, a timeout or a broken connection (hm_qmp_error says which). */
struct json_object *hm_qmp_exec(struct hm_qmp *q, const char *cmd,
				struct json_object *args, int timeout_ms);

/* Same, with the arguments given as JSON text built printf-style (NULL or
 * "" for none). */
struct json_object *hm_qmp_execf(struct hm_qmp *q, int timeout_ms,
				 const char *cmd, const char *args_fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Run a command whose answer does not matter beyond success: 0 or -1. */
int hm_qmp_run(struct hm_qmp *q, int timeout_ms, const char *cmd,
	       const char *args_fmt, ...) __attribute__((format(printf, 4, 5)));

/* Wait for the event called name (queued or arriving); returns 0 and, when
 * data is not NULL, its "data" member (new reference, may be NULL); -1 on
 * timeout or a broken connection. */
int hm_qmp_wait_event(struct hm_qmp *q, const char *name, int timeout_ms,
		      struct json_object **data);

/* Helpers to read members of a JSON object: a missing or mistyped member
 * yields the default. */
long long hm_json_int(struct json_object *o, const char *key, long long dflt);
const char *hm_json_str(struct json_object *o, const char *key,
			const char *dflt);
struct json_object *hm_json_obj(struct json_object *o, const char *key);

#endif

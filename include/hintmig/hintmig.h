/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig: live migration of KVM guest RAM that skips what the guest does
 * not use (free page hinting over userfaultfd-wp write tracking).
 *
 * Conventions of the whole library:
 *  - every exported symbol starts with hm_ / HM_;
 *  - int functions return >= 0 on success or a negative errno value;
 *  - pointer functions return NULL and set errno;
 *  - the library never prints and never exits: it reports through the
 *    struct hm_log callback given by the caller (may be left empty);
 *  - there is no process-global library state: everything hangs off a
 *    context handle owned by the caller.
 */
#ifndef HINTMIG_HINTMIG_H
#define HINTMIG_HINTMIG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum hm_log_level {
	HM_LOG_ERROR = 0,
	HM_LOG_WARN = 1,
	HM_LOG_INFO = 2,
	HM_LOG_DEBUG = 3,
};

/* Log sink. fn may be NULL (silence). Messages have no trailing newline. */
typedef void (*hm_log_fn)(void *opaque, enum hm_log_level level,
			  const char *msg);

struct hm_log {
	hm_log_fn fn;
	void *opaque;
	enum hm_log_level max_level; /* messages above this level are dropped */
};

/* Format and deliver one message to log (NULL-safe). */
void hm_logf(const struct hm_log *log, enum hm_log_level level,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hm_vlogf(const struct hm_log *log, enum hm_log_level level,
	      const char *fmt, va_list ap);

/* A ready-made sink that writes "hintmig: level: msg\n" to stderr;
 * opaque is unused. For programs, never used by the library itself. */
void hm_log_stderr(void *opaque, enum hm_log_level level, const char *msg);

const char *hm_log_level_name(enum hm_log_level level);

/* Library version string, e.g. "0.1.0". */
const char *hm_version(void);

#ifdef __cplusplus
}
#endif
#endif

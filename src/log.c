/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The library's only way to speak: the caller's log callback. */
#include <stdio.h>

#include "hm_config.h"
#include <hintmig/hintmig.h>

static const char *const level_names[] = {
	[HM_LOG_ERROR] = "error",
	[HM_LOG_WARN] = "warning",
	[HM_LOG_INFO] = "info",
	[HM_LOG_DEBUG] = "debug",
};

const char *hm_log_level_name(enum hm_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

void hm_vlogf(const struct hm_log *log, enum hm_log_level level,
	      const char *fmt, va_list ap)
{
	char buf[1024];

	if (!log || !log->fn || level > log->max_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	log->fn(log->opaque, level, buf);
}

void hm_logf(const struct hm_log *log, enum hm_log_level level,
	     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hm_vlogf(log, level, fmt, ap);
	va_end(ap);
}

void hm_log_stderr(void *opaque, enum hm_log_level level, const char *msg)
{
	(void)opaque;
	fprintf(stderr, "hintmig: %s: %s\n", hm_log_level_name(level), msg);
}

const char *hm_version(void)
{
	return HM_VERSION;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Option values of the command-line programs: see parse.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <hintmig/hintmig.h>

#include "migrate/wire/auth.h"
#include "migrate/wire/transport.h"
#include <hintmig/migrate.h>
#include "parse.h"

/* 2^64 as a double: the first value a uint64_t cannot hold. */
#define TWO64 18446744073709551616.0

/* strtod, rejecting empty, out of range, negative and non-finite. */
static int parse_number(const char *s, double *v, char **end)
{
	errno = 0;
	*v = strtod(s, end);
	if (errno || *end == s || !isfinite(*v) || *v < 0)
		return -EINVAL;
	return 0;
}

int hm_parse_size(const char *s, uint64_t *out)
{
	static const char suffixes[] = "kmgt";
	const char *p;
	char *end;
	double v;
	uint64_t mul = 1;

	if (parse_number(s, &v, &end))
		return -EINVAL;
	p = *end ? strchr(suffixes, tolower((unsigned char)*end)) : NULL;
	if (p) {
		mul <<= 10 * (p - suffixes + 1);
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
	}
	if (*end == 'b' || *end == 'B')
		end++;
	if (!strcmp(end, "/s") || !strcmp(end, "ps"))
		end += 2;
	if (*end)
		return -EINVAL;
	v *= (double)mul;
	if (v > 1.8e19)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int hm_parse_frac(const char *s, double *out)
{
	char *end;
	double v;

	if (parse_number(s, &v, &end))
		return -EINVAL;
	if (*end == '%') {
		v /= 100.0;
		end++;
	} else if (v > 1) {
		v /= 100.0;
	}
	if (*end || v > 1)
		return -EINVAL;
	*out = v;
	return 0;
}

static int rate_tail(const char *end)
{
	if (end[0] == '/' && (end[1] == 's' || end[1] == 'S'))
		end += 2;
	return *end ? -EINVAL : 0;
}

int hm_parse_rate(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	double v, mul = 1;
	uint64_t r;

	if (!strcmp(s, "idle")) {
		*out = 0;
		return 0;
	}
	if (!strcmp(s, "max")) {
		*out = max;
		return 0;
	}
	/* a plain integer exactly, even past 2^53 */
	if (isdigit((unsigned char)*s)) {
		errno = 0;
		r = strtoull(s, &end, 10);
		if (!errno && !rate_tail(end)) {
			if (r > max)
				return -EINVAL;
			*out = r;
			return 0;
		}
	}
	if (parse_number(s, &v, &end))
		return -EINVAL;
	if (*end == 'k' || *end == 'K')
		mul = 1e3, end++;
	else if (*end == 'M')
		mul = 1e6, end++;
	else if (*end == 'G')
		mul = 1e9, end++;
	if (rate_tail(end))
		return -EINVAL;
	v *= mul;
	if (v >= TWO64 || v > (double)max)
		return -EINVAL;
	r = (uint64_t)v;
	if (r > max)
		return -EINVAL;
	*out = r;
	return 0;
}

int hm_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	uint64_t v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int hm_parse_name(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && !strcmp(s, names[i]))
			return (int)i;
	return -EINVAL;
}

int hm_print_version(const char *prog)
{
	printf("%s %s\n", prog, hm_version());
	return 0;
}

int hm_cli_key(const char *prog, const char *addr, const char *key_file,
	       int insecure, bool tls, struct hm_auth_key *key)
{
	char err[300];

	key->len = 0;
	if (key_file) {
		if (hm_auth_key_load(key_file, key, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return -1;
		}
		return 0;
	}
	/* TCP, and abstract UNIX sockets (no file, no permissions) */
	if (addr && (!strncmp(addr, "tcp:", 4) || !strncmp(addr, "unix:@", 6))
	    && !insecure && !tls) {
		fprintf(stderr, "%s: %s without --key-file or --tls: whoever "
			"connects first could receive or write the guest's "
			"RAM; give both ends the same key (head -c 32 "
			"/dev/urandom > FILE; chmod 600) or certificates "
			"(--tls), or say --insecure\n", prog, addr);
		return -1;
	}
	return 0;
}

int hm_cli_tls(const char *prog, const char *dir, bool server,
	       struct hm_tls_creds **out)
{
	char err[600];

	*out = hm_tls_creds_load(dir, server, err, sizeof(err));
	if (*out)
		return 0;
	fprintf(stderr, "%s: --tls: %s (the directory holds ca-cert.pem and "
		"%s-cert.pem + %s-key.pem, as libvirt's migration TLS; "
		"docs/protocol.md \"TLS\")\n", prog, err,
		server ? "server" : "client", server ? "server" : "client");
	return -1;
}

int hm_cli_tls_name(const char *addr, char *name, size_t len)
{
	char port[16];

	if (!addr || strncmp(addr, "tcp:", 4))
		return -1;
	return hm_transport_parse_tcp(addr + 4, name, len, port,
				      sizeof(port)) < 0 || !*name ? -1 : 0;
}

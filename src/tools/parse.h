/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Option values of the command-line programs (hintmig, hintmig-bench):
 * sizes, fractions, rates, counts and names. Each parser reads the whole
 * string: trailing characters it does not know make it fail. All return
 * 0, or -EINVAL and leave *out untouched.
 */
#ifndef HM_TOOLS_PARSE_H
#define HM_TOOLS_PARSE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define HM_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Bytes (or bytes per second): a non-negative finite number, fractions
 * allowed ("1.5G"), then an optional binary suffix K, M, G or T in
 * either case (x 1024^n) optionally followed by "i", then an optional
 * "B"/"b", then an optional "/s" or "ps". "4096", "512M", "1.5G",
 * "2GiB", "100MiB/s", "64Mps". Up to 1.8e19; the result is truncated
 * to whole bytes. */
int hm_parse_size(const char *s, uint64_t *out);

/* A fraction in [0, 1]: "0.25", "25%", or a bare number over 1 taken as
 * a percentage ("75" = 0.75). NaN and infinities are rejected. */
int hm_parse_frac(const char *s, double *out);

/* Events per second in decimal: "20000", "20k", "1.5M", "2G" (k or K =
 * 1e3, M = 1e6, G = 1e9), each optionally followed by "/s" or "/S";
 * "idle" is 0 and "max" is max. Plain integers are read exactly; a
 * fractional result is truncated. Values over max are rejected. */
int hm_parse_rate(const char *s, uint64_t max, uint64_t *out);

/* A count: decimal digits only (no sign, space or suffix), at most max. */
int hm_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* The index i of names[0..n) with names[i] equal to s (NULL entries are
 * skipped), or -EINVAL. */
int hm_parse_name(const char *s, const char *const *names, size_t n);

/* "--version": print "PROG VERSION" on stdout (the form help2man reads);
 * returns 0, the exit status. */
int hm_print_version(const char *prog);

/* R17 for the command line: the key of --key-file FILE into key (its
 * length 0 when there is none), and the rule that a TCP address without a
 * key needs --insecure (anyone who connects first could receive or write
 * guest RAM). prog names the command in the message. 0, or -1 with the
 * reason printed. */
struct hm_auth_key;
int hm_cli_key(const char *prog, const char *addr, const char *key_file,
	       int insecure, bool tls, struct hm_auth_key *key);

/* R18 for the command line: the x509 credentials of --tls (dir NULL:
 * libvirt's /etc/pki/qemu), the destination's (server) or the source's.
 * 0, or -1 with the reason printed. */
struct hm_tls_creds;
int hm_cli_tls(const char *prog, const char *dir, bool server,
	       struct hm_tls_creds **out);
/* The host of a tcp:HOST:PORT address (the name the destination's
 * certificate must carry, unless --tls-name says another): 0 or -1. */
int hm_cli_tls_name(const char *addr, char *name, size_t len);

#endif

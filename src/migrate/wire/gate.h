/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination's gate (R17, R18): connections accepted on the
 * listening socket go through TLS and the key's proof in parallel, each
 * within the hello timeout, at most HM_GATE_MAX at once and
 * HM_GATE_PER_PEER from one address; only those that pass come out. An
 * intruder holding connections open costs the real source nothing but
 * its own slots.
 */
#ifndef HM_MIGRATE_GATE_H
#define HM_MIGRATE_GATE_H

#include <stdint.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#include "migrate/wire/auth.h"

#define HM_GATE_MAX 16
#define HM_GATE_PER_PEER 4

struct hm_gate;
struct hm_tls;

/* The source's side, on a fresh connection fd (not closed here): TLS
 * with cr when not NULL (the destination's certificate checked against
 * peer_name, the handshake within timeout_ms), then the key's proof
 * when key has one (within timeout_ms again). 0 with *tls (NULL without
 * TLS), or -errno with why saying which step failed ("TLS: ..." or
 * "authentication failed: ..."); a proof refused or garbled is
 * -EACCES. */
int hm_gate_enter(int fd, const struct hm_tls_creds *cr, const char *peer_name,
		  const struct hm_auth_key *key, uint64_t timeout_ms,
		  struct hm_tls **tls, char *why, size_t whylen);

/* key (copied; NULL or len 0: none) and/or tls; hello_timeout_ms for the
 * whole handshake of one connection. NULL with errno. */
struct hm_gate *hm_gate_new(const struct hm_auth_key *key,
			    const struct hm_tls_creds *tls,
			    uint64_t hello_timeout_ms, const struct hm_log *log);
/* The next connection on lfd that passed, waiting until deadline_ms
 * (hm_auth_now_ms clock; 0: no deadline): its fd (blocking) and TLS
 * session (NULL without TLS), or -errno: -ETIMEDOUT. Connections that
 * pass while no one asks are kept for the next call. */
int hm_gate_next(struct hm_gate *g, int lfd, uint64_t deadline_ms,
		 struct hm_tls **tls);
/* Connections dropped so far: a failed handshake, or one peer too many. */
uint64_t hm_gate_refused(struct hm_gate *g);
/* Ends the handshakes still running (their connections closed), closes
 * the connections that passed and were not taken, each counted and
 * logged as refused, frees. The count of refused connections in all. */
uint64_t hm_gate_free(struct hm_gate *g);

#endif

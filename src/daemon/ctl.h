/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmigd's control connection (docs/libvirt.md "Plain virsh migrate"):
 * one TLS session per request, both hosts presenting a certificate of
 * libvirt's migration CA (R19), carrying JSON messages, each a 4-byte
 * little-endian length and that many bytes (at most HM_CTL_MAX).
 *
 * The destination's hook asks:   {"op":"send","uuid":U,"port":P,
 *                                 "name":N,"key":HEX,"timeout":S}
 * the source's hintmigd answers: {"status":"started"} when its sender
 * runs, then {"status":"done","exit":E,"summary":S[,"error":W]} when it
 * ends, or at any point {"status":"refused","error":W}.
 * The hook, once its receiver has acknowledged the final round:
 *                                {"op":"received"}
 * and the sender may finish (its hinted map, its detach); the
 * connection's end without it ends the sender.
 */
#ifndef HM_DAEMON_CTL_H
#define HM_DAEMON_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct hm_tls;
struct hm_tls_creds;

#define HM_CTL_PORT 49290	/* hintmigd's default port */
#define HM_CTL_MAX 65536
/* hintmigd's live metadata on each domain set up for hintmig: where the
 * host's hintmigd answers, and the name its certificate carries */
#define HM_LV_HOST_NS "http://hintmig.org/xmlns/libvirt/hintmigd/1"
#define HM_LV_HOST_PREFIX "hintmigd"

/* Send one message. 0 or -errno. */
int hm_ctl_send(struct hm_tls *t, struct json_object *msg);
/* Receive one message, waiting at most until deadline_ms (hm_auth_now_ms
 * clock). 0 with *msg (caller puts it), or -errno with why: -ENODATA the
 * peer closed, -ETIMEDOUT, -EPROTO malformed. */
int hm_ctl_recv(struct hm_tls *t, int fd, uint64_t deadline_ms,
		struct json_object **msg, char *why, size_t whylen);
/* Whether a message (or the peer's close) is waiting, within timeout_ms:
 * 1 yes, 0 no, -errno. */
int hm_ctl_readable(struct hm_tls *t, int fd, int timeout_ms);

#endif

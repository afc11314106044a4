/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig send --qemu: the QEMU guest's part of the send command (with
 * --libvirt, the part `hintmig migrate` runs on the source): attach
 * (docs/qemu.md), the guest and its agent's hints, and the cut-over after
 * the destination's acknowledgement (R8). cmd_send.c runs the rest.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "send.h"

#if HM_HAVE_JSONC
#include "migrate/guests/guest.h"
#include "migrate/hints/hints.h"
#include "migrate/wire/transport.h"

struct hm_qemu *send_qemu_attach(struct send_opts *o, const struct hm_log *log,
				 uint64_t *guest_ram)
{
	struct hm_qemu_opts qo = { .qmp_path = o->qemu, .source = true,
				   .expect_pid = (pid_t)o->expect_pid,
				   .qemu_uri = o->qemu_uri,
				   .libvirt = o->libvirt };
	const char *unsafe = getenv("HINTMIG_TEST_UNSAFE");
	char quri[300];
	struct hm_qemu *q;
	int r;

	if (o->tls) {
		qo.tls_dir = hm_tls_creds_dir(o->tls_creds);
		qo.tls_hostname = o->mp.tls_peer_name;
	}
	/* test hook: break R8 so that the QEMU suite can show that
	 * the destination catches it */
	qo.unsafe_continue_early = unsafe &&
				   !strcmp(unsafe, "r8-continue-early");

	if (!qo.qemu_uri && !o->libvirt) {
		r = hm_qemu_default_uri(o->to, quri, sizeof(quri));
		if (r < 0) {
			fprintf(stderr, "hintmig send: no default "
				"--qemu-uri for %s\n", o->to);
			return NULL;
		}
		qo.qemu_uri = quri;
	}
	/* before any thread: attach forks the guardian */
	q = hm_qemu_attach(&qo, log);
	if (!q) {
		fprintf(stderr, "hintmig send: cannot migrate the QEMU "
			"guest at %s: %s\n", o->qemu, strerror(errno));
		return NULL;
	}
	/* Test hook of the QEMU suite's fault tests: die here, the
	 * way any SIGKILL would, after attaching and before
	 * tracking. */
	{
		const char *die = getenv("HINTMIG_TEST_DIE_AT");

		if (die && !strcmp(die, "attached"))
			raise(SIGKILL);
	}
	{
		size_t nb;
		const struct hm_ram_block *b = hm_qemu_blocks(q, &nb);

		for (size_t i = 0; i < nb; i++)
			*guest_ram += b[i].len;
	}
	if (!o->quiet && o->libvirt)
		fprintf(stderr, "hintmig send: QEMU %d, device state "
			"by libvirt\n", (int)hm_qemu_pid(q));
	else if (!o->quiet)
		fprintf(stderr, "hintmig send: QEMU %d, device state "
			"to %s\n", (int)hm_qemu_pid(q), qo.qemu_uri);
	return q;
}

int send_qemu_guest(const struct send_opts *o, struct hm_qemu *q,
		    const struct hm_log *log, struct hm_guest **g,
		    struct hm_hint_source **hs)
{
	*g = hm_qemu_guest(q, log);
	if (!*g) {
		fprintf(stderr, "hintmig send: QEMU guest: %s\n",
			strerror(errno));
		return -1;
	}
	/* --agent turns hinting on unless --hints none */
	if (o->agent && !(o->hints_set && o->hints == HINTS_NONE)) {
		char aaddr[300];
		int afd;

		snprintf(aaddr, sizeof(aaddr), "%s%s",
			 strncmp(o->agent, "unix:", 5) ? "unix:" : "",
			 o->agent);
		afd = hm_transport_connect(aaddr, 5000);

		if (afd < 0 && o->hints_set && o->hints == HINTS_AUTO) {
			fprintf(stderr, "hintmig send: warning: --agent "
				"%s: %s: migrating without hints\n",
				o->agent, strerror(-afd));
		} else if (afd < 0) {
			fprintf(stderr, "hintmig send: --agent %s: "
				"%s\n", o->agent, strerror(-afd));
			return -1;
		}
		if (afd >= 0)
			*hs = hm_hint_source_channel_new(afd, log);
		if (afd >= 0 && !*hs) {
			fprintf(stderr, "hintmig send: hint channel: "
				"%s\n", strerror(errno));
			return -1;
		}
	} else if (!o->agent && o->hints_set && o->hints == HINTS_AUTO) {
		fprintf(stderr, "hintmig send: --hints auto without "
			"--agent SOCKET: no hint source, migrating "
			"without hints\n");
	}
	return 0;
}

int send_qemu_switchover(const struct send_opts *o, struct hm_qemu *q,
			 struct summary *sum)
{
	int r = 0;

	/* R8: the destination has acknowledged all RAM; only now may QEMU
	 * send the device state. */
	if (o->libvirt) {
		/* libvirt sends `migrate` once the destination's started hook
		 * (hintmig recv --libvirt) returns: after this ack */
		if (!o->quiet)
			fprintf(stderr, "hintmig send: RAM acknowledged, guest "
				"paused; libvirt migrates the device state\n");
	} else {
		r = hm_qemu_switchover(q);
		hm_qemu_get_stats(q, &sum->qst);
		if (r < 0)
			fprintf(stderr, "hintmig send: QEMU's device state "
				"migration failed; QEMU resumes the source "
				"guest\n");
	}
	return r;
}
#endif

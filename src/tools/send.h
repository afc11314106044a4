/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig send, shared by its two files: cmd_send.c (options, the
 * synthetic guest, the migration, the report) and send_qemu.c (the QEMU
 * guest, with or without libvirt).
 */
#ifndef HM_TOOLS_SEND_H
#define HM_TOOLS_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include "hm_config.h"

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#include "fixture/synth.h"
#include "migrate/wire/auth.h"
#if HM_HAVE_JSONC
#include "migrate/guests/qemu/qemu.h"
#endif

#define MIB (1024.0 * 1024.0)

enum {
	EXIT_MISMATCH = 1,
	EXIT_USAGE = 2,
	EXIT_MIGRATION = 3,
	EXIT_SETUP = 4,
};

enum hints_mode { HINTS_NONE, HINTS_FREE, HINTS_ISOLATED, HINTS_AUTO };

struct send_opts {
	const char *to;
	const char *qemu, *qemu_uri, *agent;
	const char *json, *hinted_map;
	uint64_t expect_pid;	/* --expect-pid, 0: any QEMU */
	const char *key_file;
	bool insecure, tls;
	const char *tls_dir, *tls_name;
	char tls_host[256];
	struct hm_tls_creds *tls_creds;	/* mp.tls */
	struct hm_auth_key key;	/* mp.auth_key points here */
	bool verify, quiet, raw, hints_set, libvirt, progress_virsh;
	int verbose;
	enum hints_mode hints;
	struct hm_synth_params sp;
	struct hm_migrate_params mp;
};

struct summary {
	struct hm_migrate_stats st;
	uint64_t in_use_bytes;
	uint64_t pages_checked;
	long mismatches;
	bool raw;
	double raw_bps;
	double raw_fresh_bps;	/* into fresh memory */
	bool qemu;
#if HM_HAVE_JSONC
	struct hm_qemu_stats qst; /* QEMU's own figures (--qemu) */
#endif
};

#if HM_HAVE_JSONC
struct hm_guest;
struct hm_hint_source;

/* --qemu: attach to the QEMU at o->qemu (before any thread: attaching
 * forks the guardian), its RAM's size into *guest_ram. NULL with the
 * reason printed. */
struct hm_qemu *send_qemu_attach(struct send_opts *o, const struct hm_log *log,
				 uint64_t *guest_ram);
/* The QEMU guest and, with --agent, the hint source of its agent
 * channel (*hs stays NULL without one). 0, or -1 with the reason
 * printed. */
int send_qemu_guest(const struct send_opts *o, struct hm_qemu *q,
		    const struct hm_log *log, struct hm_guest **g,
		    struct hm_hint_source **hs);
/* After the destination acknowledged all RAM (R8): QEMU sends the device
 * state now (libvirt: it will, once the destination's hook returns). 0
 * or -errno; QEMU's figures into sum. */
int send_qemu_switchover(const struct send_opts *o, struct hm_qemu *q,
			 struct summary *sum);
#endif

#endif

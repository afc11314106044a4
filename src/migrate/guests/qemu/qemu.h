/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QEMU guest backend: a running QEMU (Debian 12's 7.2) whose guest RAM
 * hintmig moves, while QEMU's own migration moves only the device state
 * (x-ignore-shared). See docs/qemu.md for the flow and why.
 *
 * Source: hm_qemu_attach(source) -> hm_qemu_guest() (a "qemu" guest: the
 * process backend on QEMU's RAM file, a userfaultfd injected into QEMU,
 * pause = QEMU's `migrate` up to pre-switchover, resume = migrate_cancel)
 * -> hm_migration_run() -> hm_qemu_switchover() -> hm_qemu_detach().
 * Destination: hm_qemu_attach(destination) -> hm_qemu_incoming() ->
 * hm_dest_run() into hm_qemu_ram_fd() -> hm_qemu_wait_incoming() ->
 * hm_qemu_detach().
 */
#ifndef HM_MIGRATE_QEMU_H
#define HM_MIGRATE_QEMU_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>
#include <hintmig/wp_tracker.h>

#define HM_QEMU_MAX_BLOCKS 8

struct hm_qemu;

struct hm_qemu_opts {
	const char *qmp_path;	/* QEMU's QMP socket (-qmp unix:PATH,...) */
	bool source;		/* false: the destination, -incoming defer */
	/* QEMU's own stream (device state): the source sends it there, the
	 * destination listens there (QEMU URI: unix:PATH, tcp:HOST:PORT). */
	const char *qemu_uri;
	unsigned timeout_ms;	/* QMP commands; 0: 30000 */
	/* Tests only: break R8 on purpose (migrate-continue as soon as QEMU
	 * reaches pre-switchover, before the final round), so that the test
	 * can show the destination's check catches it. */
	bool unsafe_continue_early;
	/* libvirt owns QEMU's monitor and migrates the device state itself
	 * (hintmig migrate, docs/libvirt.md): hintmig talks to a second QMP
	 * monitor. Source: pause = QMP stop (x-ignore-shared set first,
	 * pause-before-switchover left to libvirt), resume does nothing
	 * (libvirt resumes the source when its migration fails: resuming it
	 * ourselves after the final round could let the guest write RAM the
	 * destination will never get), no switchover; x-ignore-shared is
	 * turned off again by the guardian once the guest runs again with no
	 * migration active, never while libvirt may still migrate it.
	 * Destination: hm_qemu_incoming() only sets x-ignore-shared (libvirt
	 * has sent migrate-incoming); qemu_uri is not used. */
	bool libvirt;
	/* Identity (docs/design.md R14): the pid the QEMU must have
	 * (libvirt's pidfile of the domain, hintmig send/recv --expect-pid);
	 * 0: any process whose program is QEMU's. */
	pid_t expect_pid;
	/* R18 (not with libvirt, which sets its own): QEMU's own stream in
	 * TLS too, QEMU's tls-creds-x509 from this directory (libvirt's
	 * layout), verify-peer on; the source checks tls_hostname. Removed
	 * again when hintmig detaches. */
	const char *tls_dir;
	const char *tls_hostname;
};

/* QEMU's figures of its own migration (query-migrate on the source). */
struct hm_qemu_stats {
	char status[32];
	int64_t total_ms, downtime_ms, setup_ms;
	int64_t transferred;	/* bytes QEMU sent: device state and the RAM
				 * blocks that are not shared (ROMs, VRAM) */
	int64_t cutover_ms;	/* pre-switchover to completed, our clock */
};

/* Connect to QEMU's QMP socket and check that hintmig can migrate it:
 * guest RAM in one shared memory backend (memory-backend-file with
 * share=on, or memory-backend-memfd), no device that writes guest RAM
 * behind the page tables (R10: vfio, vhost-user, O_DIRECT disks), no
 * virtio-balloon free-page-hint, the right run state (source: not
 * migrating; destination: waiting for -incoming defer). Every refusal is
 * logged with what to change. The source forks a guardian that cancels
 * QEMU's migration and restores its capabilities if this process dies.
 * NULL with errno: ENOENT/ECONNREFUSED (no QMP there), EMEDIUMTYPE (RAM
 * not shared), EXDEV (an R10 device), EBUSY (wrong run state: a source
 * that holds no guest, a destination not started with -incoming),
 * EINPROGRESS (QEMU already runs a migration), EPERM (the process on the
 * socket is not QEMU, or not the expected one: R14), ENOTSUP. */
struct hm_qemu *hm_qemu_attach(const struct hm_qemu_opts *o,
			       const struct hm_log *log);

/* The guest RAM blocks (guest-physical pieces of the backend, in backing
 * file order; host_addr are QEMU's addresses, memfd our fd of the file). */
const struct hm_ram_block *hm_qemu_blocks(const struct hm_qemu *q, size_t *n);
/* Our fd of the RAM file (owned by q). */
int hm_qemu_ram_fd(const struct hm_qemu *q);
pid_t hm_qemu_pid(const struct hm_qemu *q);
bool hm_qemu_kvm(const struct hm_qemu *q);

/* Source: a guest of the "qemu" kind on q (q must outlive it): injects a
 * userfaultfd into QEMU (R9: QEMU's copy is closed at once). NULL with
 * errno (EPERM: ptrace or userfaultfd refused). */
struct hm_guest *hm_qemu_guest(struct hm_qemu *q, const struct hm_log *log);

/* Source, after hm_migration_run() returned 0 (QEMU at pre-switchover,
 * the destination has acknowledged all RAM: R8): let QEMU send the device
 * state and wait for it to complete. 0, or -errno (QEMU's migration
 * failed: QEMU resumes the source guest itself). */
int hm_qemu_switchover(struct hm_qemu *q);

/* Destination: x-ignore-shared on, migrate-incoming on qemu_uri (libvirt
 * mode: x-ignore-shared only). */
int hm_qemu_incoming(struct hm_qemu *q);
/* Destination, after the RAM arrived: wait until QEMU has loaded the
 * device state (its incoming migration completed). 0 or -errno. */
int hm_qemu_wait_incoming(struct hm_qemu *q, unsigned timeout_ms);
/* Destination, all RAM in place, before acknowledging it (a
 * hm_dest_params.before_ack): 0 while QEMU has not loaded device state,
 * -EPROTO (logged, "R8") when it already has: it read guest RAM that was
 * not complete. opaque: the struct hm_qemu. */
int hm_qemu_check_not_loaded(void *opaque);

/* The decision of hm_qemu_check_not_loaded from QEMU's answers (NULL: the
 * query failed): 0 when they prove that no device state was loaded,
 * else -EIO (cannot tell) or -EPROTO (loaded or left the incoming
 * state), why set. Fail-closed: an unknown state refuses. */
int hm_qemu_r8_verdict(const char *mig_status, const char *run_status,
		       char *why, size_t len);

/* The default QEMU URI beside hintmig's address addr: tcp:HOST:PORT+1, or
 * unix:PATH.qemu. 0, or -EINVAL. */
int hm_qemu_default_uri(const char *addr, char *out, size_t len);

void hm_qemu_get_stats(const struct hm_qemu *q, struct hm_qemu_stats *st);

/* Restore QEMU's migration capabilities (x-ignore-shared and
 * pause-before-switchover off, so that a later save or snapshot includes
 * RAM again), stop the guardian, disconnect. */
void hm_qemu_detach(struct hm_qemu *q);

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The precopy engine: move guest RAM from a source to a destination while
 * the guest runs, skipping pages that the guest hints as free.
 *
 * Parameter names follow QEMU's migration parameters where the concept is
 * the same (downtime-limit, max-bandwidth, multifd-channels).
 */
#ifndef HINTMIG_MIGRATE_H
#define HINTMIG_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hintmig/bitmap.h>
#include <hintmig/hintmig.h>
#include <hintmig/wp_tracker.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TLS credentials (R18) ---- */

/* libvirt's and QEMU's default x509 directory (migrate_tls_x509_cert_dir) */
#define HM_TLS_DEFAULT_DIR "/etc/pki/qemu"

struct hm_tls_creds;
/* x509 credentials from dir (NULL: HM_TLS_DEFAULT_DIR) in libvirt's
 * layout: ca-cert.pem, optional ca-crl.pem, and server-cert.pem +
 * server-key.pem (server: the destination) or client-cert.pem +
 * client-key.pem (the source). NULL with errno and err saying which file
 * and why. */
struct hm_tls_creds *hm_tls_creds_load(const char *dir, bool server,
				       char *err, size_t errlen);
void hm_tls_creds_free(struct hm_tls_creds *c);
const char *hm_tls_creds_dir(const struct hm_tls_creds *c);

/* ---- guest RAM ---- */

#define HM_BLOCK_NAME_MAX 64

struct hm_ram_block {
	char name[HM_BLOCK_NAME_MAX];	/* NUL-terminated, e.g. "pc.ram" */
	uint64_t gpa;		/* guest-physical base, page aligned */
	uint64_t len;		/* bytes, page aligned, > 0 */
	uint64_t host_addr;	/* address in the owning process */
	uint64_t first_bit;	/* global page index of its first page
				 * (filled in by the guest constructors) */
	int memfd;		/* backing memfd/shm fd in THIS process, or
				 * -1 (anonymous): used for R6 (SEEK_DATA)
				 * and optionally for reading */
	uint64_t memfd_offset;
};

struct hm_guest;

/* Optional overrides of how the guest is paused and resumed (QEMU: QMP
 * stop/cont). NULL members keep the backend default. */
struct hm_guest_callbacks {
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	void *opaque;
};

/* Guest RAM in this process. blocks are copied; first_bit is assigned in
 * order. NULL with errno (EINVAL: misaligned, overlapping gpa, empty). */
struct hm_guest *hm_guest_local_new(const struct hm_ram_block *blocks,
				    size_t nblocks,
				    const struct hm_guest_callbacks *cb,
				    const struct hm_log *log);

/* Guest RAM in process pid (host_addr are addresses there). uffd: a
 * userfaultfd created inside pid and taken into this process
 * (hm_uffd_take_remote), or -1 to take none (no tracking possible then);
 * the guest owns it from now on. NULL with errno (ESRCH: no such process). */
struct hm_guest *hm_guest_process_new(pid_t pid,
				      const struct hm_ram_block *blocks,
				      size_t nblocks, int uffd,
				      const struct hm_guest_callbacks *cb,
				      const struct hm_log *log);

void hm_guest_free(struct hm_guest *g);

/* ---- hint sources ---- */

struct hm_hint_source;

/* A hint source that speaks the hint channel protocol (docs/protocol.md,
 * "Hint channel") over a connected stream socket fd (the synthetic guest;
 * later the in-guest agent over virtio-serial). Takes ownership of fd. */
struct hm_hint_source *hm_hint_source_channel_new(int fd,
						  const struct hm_log *log);
void hm_hint_source_free(struct hm_hint_source *src);

/* ---- source side ---- */

enum hm_compress {
	HM_COMPRESS_NONE = 0,
	HM_COMPRESS_ZSTD,
};

/* Debug-only switches that break a correctness rule on purpose, so that
 * the tests can show verification catches the break. Never set them
 * outside the tests. */
enum hm_unsafe {
	HM_UNSAFE_APPLY_STALE = 1u << 0,	/* R2: apply stale-epoch hints */
	HM_UNSAFE_HINT_CLEARS_LOG = 1u << 1,	/* R3: FREE hint also clears L */
	HM_UNSAFE_ACK_BEFORE_REPROTECT = 1u << 2, /* R4 */
	HM_UNSAFE_HINTS_AFTER_PAUSE = 1u << 3,	/* R5 */
	HM_UNSAFE_TRACK_LATE = 1u << 4,		/* R1: start tracking after
						 * the first round's reads */
};

struct hm_migrate_params {
	uint64_t downtime_limit_ms;	/* default 300 */
	uint64_t max_bandwidth;		/* bytes/s while the guest runs (not in
					 * the final round, as QEMU), 0 = unlimited */
	unsigned max_rounds;		/* default 30 */
	bool force_on_max_rounds;	/* true: stop-and-copy at max_rounds;
					 * false: fail with -ETIMEDOUT */
	unsigned channels;		/* parallel streams, 0 = one per core */
	enum hm_compress compress;
	int compress_level;		/* zstd level, 0 = default (1) */
	enum hm_tracker_mode tracker_mode;
	bool tracker_keep_hot;		/* R11: hot pages stay writable */
	uint64_t tracker_unit;		/* R12: bytes a fault un-protects and
					 * records (0: a page; 2 MiB: a THP);
					 * picks the sync tracker */
	unsigned max_hint_ranges;	/* per session, 0 = default */
	unsigned hint_timeout_ms;	/* how long a round waits for "done",
					 * 0 = do not wait */
	unsigned unsafe;		/* enum hm_unsafe, tests only */
	uint64_t connect_timeout_ms;	/* default 10000 */
	uint64_t io_timeout_ms;		/* default 30000 */
	/* The destination may not listen yet (it is being started, as by
	 * libvirt's migration): retry a refused first connection until
	 * connect_timeout_ms. */
	bool connect_wait;
	/* The migration's secret (R17): when auth_key_len > 0 (16..64),
	 * every connection must first prove it to the destination and the
	 * destination to us; nothing is sent to one that cannot. Not
	 * copied: it must stay valid until the migration is freed. */
	const uint8_t *auth_key;
	size_t auth_key_len;
	/* TLS (R18): every connection is a TLS session with these client
	 * credentials, the destination's certificate checked against the CA
	 * and tls_peer_name (the host name or address the destination is
	 * known by). Not owned. */
	const struct hm_tls_creds *tls;
	const char *tls_peer_name;
};

void hm_migrate_params_default(struct hm_migrate_params *p);

enum hm_migrate_status {
	HM_MIG_SETUP = 0,
	HM_MIG_ACTIVE,
	HM_MIG_DEVICE,		/* guest paused, final round */
	HM_MIG_COMPLETED,
	HM_MIG_FAILED,
	HM_MIG_CANCELLED,
};
const char *hm_migrate_status_name(enum hm_migrate_status s);

/* Counters shaped after QEMU's query-migrate "ram" object, plus ours. */
struct hm_migrate_stats {
	enum hm_migrate_status status;
	enum hm_tracker_mode tracker_mode;
	uint64_t setup_time_ms;
	uint64_t total_time_ms;
	uint64_t downtime_ms;
	uint64_t expected_downtime_ms;
	uint64_t ram_total;		/* bytes of guest RAM */
	uint64_t ram_transferred;	/* bytes on the wire, all messages */
	uint64_t ram_remaining;		/* dirty bytes still to send */
	uint64_t normal_pages;		/* pages sent with their data */
	uint64_t normal_bytes;
	uint64_t duplicate_pages;	/* zero pages sent as a marker */
	uint64_t skipped_empty_pages;	/* R6: no backing data, not sent */
	uint64_t skipped_hinted_pages;	/* cleared from M by hints */
	uint64_t dirty_sync_count;	/* harvests */
	uint64_t dirty_pages_rate;	/* pages/s dirtied, last round */
	uint64_t rounds;
	double mbps;			/* last round's throughput */
	uint64_t hint_requested;	/* sessions requested */
	uint64_t hint_received;		/* ranges received */
	uint64_t hint_applied;		/* ranges applied */
	uint64_t hint_pages_applied;
	uint64_t hint_dropped_stale;	/* ranges of an old epoch (R2/R5) */
	uint64_t hint_rejected;		/* ranges failing validation */
	uint64_t hint_session_pages_max; /* most pages one session named
					  * (overlaps counted again): at most
					  * the budget, 2 * pages + 4096 */
	uint64_t hint_apply_us;		/* time spent applying hints */
	uint64_t tracker_faults;
	char tls_path[200];		/* "" plain, or what carries TLS (R18):
					 * version, cipher, kTLS or user space
					 * and why */
};

struct hm_migration;

typedef void (*hm_progress_fn)(void *opaque,
			       const struct hm_migrate_stats *st);

/* A migration of guest g. hints may be NULL (no hinting). Neither is owned.
 * NULL with errno. */
struct hm_migration *hm_migration_new(struct hm_guest *g,
				      struct hm_hint_source *hints,
				      const struct hm_migrate_params *p,
				      const struct hm_log *log);

/* Called about every 100 ms from the migration thread. */
void hm_migration_set_progress(struct hm_migration *m, hm_progress_fn fn,
			       void *opaque);

/* Device state sent after RAM in the final round (may be empty). Copied. */
int hm_migration_set_device_state(struct hm_migration *m, const void *blob,
				  size_t len);

/* Run the migration to addr ("unix:PATH", "tcp:HOST:PORT"); blocks.
 * 0: completed, the destination acknowledged, the guest stays PAUSED (the
 * caller resumes it with hm_migration_resume_guest() to roll back, or
 * ends it). Negative errno on failure or cancel: the tracker is released,
 * the guest is resumed if this call paused it, and its memory is untouched.
 * -ECANCELED: hm_migration_cancel(); -ETIMEDOUT: did not converge within
 * max_rounds (force_on_max_rounds false); -ECONNRESET/-EPIPE: peer gone;
 * -EPROTO: the destination sent something invalid. */
int hm_migration_run(struct hm_migration *m, const char *addr);

/* Ask a running hm_migration_run() to stop as soon as possible. Safe from
 * any thread (not from a signal handler). */
void hm_migration_cancel(struct hm_migration *m);

/* After a completed run, while the connection is still open: have the
 * destination send back every page set in pages (global page indexes) and
 * compare it bit for bit with the (paused) source guest. Returns the
 * number of mismatching pages (>= 0) and sets *checked, or -errno. */
long hm_migration_verify(struct hm_migration *m, const struct hm_bitmap *pages,
			 uint64_t *checked);

int hm_migration_resume_guest(struct hm_migration *m);

void hm_migration_get_stats(const struct hm_migration *m,
			    struct hm_migrate_stats *st);

/* The hinted map: one bit a guest page (global page index), set for every
 * page a hint took out of the migration bitmap after it was last sent, so
 * that the destination holds an older copy of it or none (zero). Every
 * other page the destination holds exactly as the paused source does.
 * Complete once hm_migration_run() returned 0; owned by m. NULL if m is
 * NULL. (hintmig send --hinted-map writes it: docs/protocol.md.) */
const struct hm_bitmap *hm_migration_hinted(const struct hm_migration *m);

/* Closes the connection (telling the destination it is done) and frees. */
void hm_migration_free(struct hm_migration *m);

/* ---- destination side ---- */

/* How pages land in fresh anonymous RAM. */
enum hm_dest_fill {
	HM_DEST_FILL_AUTO = 0,	/* UFFD when the kernel allows it, else WRITE */
	HM_DEST_FILL_UFFD,	/* first arrival placed with UFFDIO_COPY: the
				 * kernel fills a new page with the data, no
				 * clearing first, one call per run */
	HM_DEST_FILL_WRITE,	/* received into place (the page is cleared
				 * at first touch, then written); densely
				 * received 2 MiB regions get a huge page */
};

struct hm_dest_params {
	/* Where received RAM goes: NULL / -1 = fresh anonymous memory;
	 * otherwise a memfd or file (fd) sized by the destination to the
	 * total RAM, blocks laid out in order. */
	int ram_fd;
	uint64_t io_timeout_ms;		/* default 30000 */
	uint64_t max_ram_bytes;		/* refuse larger guests, 0 = 64 GiB */
	uint64_t accept_timeout_ms;	/* wait for the first connection;
					 * 0 = forever (later channels wait
					 * io_timeout_ms) */
	enum hm_dest_fill fill;		/* fresh anonymous RAM, or a memfd /
					 * tmpfs ram_fd (other files: WRITE) */
	/* ram_fd is a VMM's guest RAM (the destination QEMU's backing file,
	 * mapped by QEMU): it is never truncated. It must already be exactly
	 * the size of the source's RAM; it is emptied by punching holes, so
	 * that pages never sent read as zero. */
	bool ram_fd_fixed;
	/* When not NULL: the RAM blocks the destination has (name, gpa, len,
	 * in order); a source whose blocks differ is refused in HELLO_ACK
	 * (-EMEDIUMTYPE) before anything is written. */
	const struct hm_ram_block *expect_blocks;
	size_t n_expect_blocks;
	/* Called once all RAM is in place, before the completion is
	 * acknowledged (after it nothing of hintmig writes RAM): a VMM's
	 * last check (QEMU: it must not have loaded device state yet, R8).
	 * < 0 refuses: the migration fails and the source is told. */
	int (*before_ack)(void *opaque);
	void *before_ack_opaque;
	/* The migration's secret (R17): when auth_key_len > 0 (16..64), a
	 * connection counts only after it proved the key (challenge and
	 * HMAC, before HELLO); one that fails, closes or stalls past
	 * hello_timeout_ms (default 3000: one round trip) is dropped and
	 * counted, and the destination goes on waiting for the real source
	 * until its deadline. */
	const uint8_t *auth_key;
	size_t auth_key_len;
	uint64_t hello_timeout_ms;
	/* TLS (R18): every connection must be a TLS session, the source's
	 * certificate signed by the CA; one that is not is dropped and
	 * counted like a failed authentication. Not owned. */
	const struct hm_tls_creds *tls;
};

/* ram_fd -1, the defaults above. (A zeroed struct means ram_fd 0!) */
void hm_dest_params_default(struct hm_dest_params *p);

struct hm_dest_stats {
	uint64_t pages_received;
	uint64_t zero_pages;
	uint64_t bytes_received;
	uint64_t rounds;
	uint64_t device_state_len;
	uint64_t session_id;
	unsigned channels;
	enum hm_dest_fill fill;		/* used: UFFD or WRITE */
	uint64_t placed_pages;		/* pages placed by UFFDIO_COPY */
	uint64_t refused_connections;	/* failed authentication (R17) */
	char tls_path[200];		/* as in hm_migrate_stats */
};

struct hm_dest;

/* p NULL: defaults. Copied; ram_fd is not owned (the caller closes it
 * after hm_dest_free). NULL with errno (ENOMEM). */
struct hm_dest *hm_dest_new(const struct hm_dest_params *p,
			    const struct hm_log *log);

/* Listen on addr, accept one migration (all its channels), receive it,
 * acknowledge completion, serve verification requests until the source
 * closes. 0 on a completed migration, -errno otherwise (-EPROTO: invalid
 * stream, the log says what and where; -ECONNRESET: source gone before
 * completion). A completed migration's RAM stays readable.
 * Also: -ECONNABORTED the source sent ABORT; -ETIMEDOUT nothing arrived
 * for io_timeout_ms (accept_timeout_ms for the first connection);
 * -EFBIG RAM over max_ram_bytes, -EPROTONOSUPPORT the source wants zstd
 * and this build has none (both refused in HELLO_ACK); -EBUSY called
 * twice; -EINVAL bad address; -EMEDIUMTYPE the source's RAM blocks are
 * not expect_blocks, or a ram_fd_fixed file is not the RAM's size. With
 * ram_fd, the file is truncated to 0 and then to the RAM size (pages never
 * sent read as zero; ram_fd_fixed: holes punched instead). Runs once per
 * struct hm_dest. */
int hm_dest_run(struct hm_dest *d, const char *listen_addr);

/* Like hm_dest_run on an already listening socket (tests). */
int hm_dest_run_fd(struct hm_dest *d, int listen_fd);

/* RAM block i of a received migration: NULL when none. */
const struct hm_ram_block *hm_dest_block(const struct hm_dest *d, size_t i,
					 const void **data);
size_t hm_dest_nblocks(const struct hm_dest *d);
const void *hm_dest_device_state(const struct hm_dest *d, size_t *len);
/* Valid after hm_dest_run returned (not while it runs). */
void hm_dest_get_stats(const struct hm_dest *d, struct hm_dest_stats *st);
void hm_dest_free(struct hm_dest *d);

#ifdef __cplusplus
}
#endif
#endif

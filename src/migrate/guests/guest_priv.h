/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal to the guest backends (guest.c, guest_local.c, guest_process.c):
 * the state both backends share and the helpers that build it. Nothing
 * outside src/migrate/guest*.c includes this.
 */
#ifndef HM_MIGRATE_GUEST_PRIV_H
#define HM_MIGRATE_GUEST_PRIV_H

#include <stdbool.h>

#include "migrate/guests/guest.h"

/* What the backing store of one block is, found once at construction
 * from /proc/PID/maps and the block's memfd. */
struct hm_guest_blk {
	int fd;			/* own open file description of the block's
				 * memfd (reopened, so that lseek/pread never
				 * move the caller's offset), or -1 */
	bool anon_private;	/* every page is in a private anonymous
				 * mapping: "not present and not swapped"
				 * means "no data" (R6) */
	void *map;		/* process backend: read-only shared mapping
				 * of the memfd (map op), or NULL */
	size_t map_len;
};

/* Backend state common to both backends (g->priv points at it). */
struct hm_guest_common {
	int pagemap_fd;		/* /proc/PID/pagemap (self for local) */
	int scan_state;		/* PAGEMAP_SCAN: 0 untried, 1 works,
				 * -1 missing (atomic) */
	struct hm_guest_blk *blk; /* one per block */
	size_t nblk;
	/* process backend only */
	int pidfd;		/* -1 when pidfd_open is unavailable */
	int uffd;		/* owned until open_tracker gives it away */
};

/* Allocate a guest with ops, a validated copy of blocks (first_bit
 * assigned in order) and a zeroed struct hm_guest_common as priv (fds -1).
 * NULL with errno: EINVAL (no blocks, zero/misaligned length or address,
 * overlapping guest-physical ranges, too many pages), ENOMEM. */
struct hm_guest *hm_guest_alloc(const struct hm_guest_ops *ops,
				const struct hm_ram_block *blocks,
				size_t nblocks,
				const struct hm_guest_callbacks *cb,
				const struct hm_log *log);

/* Fill c->blk (and c->pagemap_fd) for process pid (0: this process):
 * check that every block is mapped there, classify its mappings, reopen
 * the memfds. 0, or -EFAULT (a block is not wholly mapped), -ESRCH,
 * -EACCES/-EPERM (no access to /proc/PID), -errno. */
int hm_guest_common_probe(struct hm_guest *g, struct hm_guest_common *c,
			  pid_t pid);

/* Release what hm_guest_common_probe() and hm_guest_alloc() made (not
 * the uffd and pidfd, which the process backend owns). */
void hm_guest_common_fini(struct hm_guest_common *c);

/* Index of block b in g->blocks (b may be a pointer into g->blocks or a
 * copy of one of them), or -EINVAL. */
long hm_guest_block_index(const struct hm_guest *g,
			  const struct hm_ram_block *b);

/* The populated() op of both backends (R6). */
int hm_guest_common_populated(struct hm_guest *g,
			      const struct hm_ram_block *b, uint64_t first,
			      uint64_t n, struct hm_bitmap *out);

/* The shared front half of read(): index of block b and a bounds check of
 * [off, off + len): >= 0 (the index), -EINVAL, -ERANGE. */
long hm_guest_check_read(const struct hm_guest *g,
			 const struct hm_ram_block *b, uint64_t off,
			 size_t len);

/* hm_tracker_add_range() for every block; 0 or -errno. */
int hm_guest_track_blocks(struct hm_guest *g, struct hm_tracker *t);

/* The options a backend opens its tracker with: nbits defaults to the
 * guest's page count and may not be smaller. 0 or -EINVAL. */
int hm_guest_tracker_opts(const struct hm_guest *g,
			  const struct hm_caps *caps,
			  const struct hm_tracker_opts *in,
			  struct hm_tracker_opts *out);

/* Register every block with a freshly opened tracker t: t, or NULL with
 * errno (t is closed then). NULL t passes through. */
struct hm_tracker *hm_guest_tracker_finish(struct hm_guest *g,
					   struct hm_tracker *t);

#endif

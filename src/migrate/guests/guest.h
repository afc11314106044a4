/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest backends: whoever owns guest RAM. One interface (const ops), two
 * backends: memory of this process ("local": tests, benchmark) and memory
 * of another process ("process": the synthetic guest process, later QEMU).
 *
 * Guest RAM is a list of blocks. Every page of every block has one bit
 * index ("page number") shared by the migration bitmap M, the tracker log
 * L and the wire: block i's pages are bits first_bit .. first_bit +
 * len/page_size - 1, blocks laid out in order without gaps.
 */
#ifndef HM_MIGRATE_GUEST_H
#define HM_MIGRATE_GUEST_H

#include <stdint.h>
#include <sys/types.h>

#include <hintmig/bitmap.h>
#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>
#include <hintmig/wp_tracker.h>

struct hm_guest;

struct hm_guest_ops {
	const char *name; /* "local", "process" */
	/* Copy len bytes at byte offset off of block b into buf. 0 or
	 * -errno (-ESRCH: process gone, -EFAULT: not mapped). */
	int (*read)(struct hm_guest *g, const struct hm_ram_block *b,
		    uint64_t off, void *buf, size_t len);
	/* Optional: block b's data readable in this process for as long as
	 * the guest object lives (the block itself for the local backend,
	 * a shared read-only mapping of its memfd for the process one), so
	 * that a sender can hand pages to the transport without copying
	 * them first. NULL: not available, use read. */
	const void *(*map)(struct hm_guest *g, const struct hm_ram_block *b);
	/* R6: for pages [first, first + n) of block b, set in out (global
	 * bit index) every page whose backing store holds data: anonymous
	 * memory present or swapped; shmem/memfd not a hole (SEEK_DATA).
	 * Never "not mapped in this process". 0 or -errno. */
	int (*populated)(struct hm_guest *g, const struct hm_ram_block *b,
			 uint64_t first, uint64_t n, struct hm_bitmap *out);
	/* A write tracker over every block of the guest, not yet started;
	 * NULL with errno. The process backend takes the uffd it was given. */
	struct hm_tracker *(*open_tracker)(struct hm_guest *g,
					   const struct hm_caps *caps,
					   const struct hm_tracker_opts *opts);
	/* Stop / restart the guest's vCPUs (writers). The process backend's
	 * default is SIGSTOP (waiting until every thread is stopped) /
	 * SIGCONT; hm_guest_callbacks override both. 0 or -errno. */
	int (*pause)(struct hm_guest *g);
	int (*resume)(struct hm_guest *g);
	void (*destroy)(struct hm_guest *g);
};

struct hm_guest {
	const struct hm_guest_ops *ops;
	struct hm_ram_block *blocks; /* owned copy */
	size_t nblocks;
	uint64_t page_size;
	uint64_t npages;	/* total over all blocks */
	pid_t pid;		/* owning process; 0 for local */
	struct hm_guest_callbacks cb;
	struct hm_log log;
	void *priv;		/* backend state */
};

/* Block holding global page index page, or NULL. */
const struct hm_ram_block *hm_guest_block_of_page(const struct hm_guest *g,
						  uint64_t page);
/* Translate a guest-physical range to global page indexes: 0 and
 * *first and *n set, or -ERANGE when [gpa, gpa + len) is not inside one
 * block, -EINVAL when not page aligned or len == 0. */
int hm_guest_gpa_to_pages(const struct hm_guest *g, uint64_t gpa,
			  uint64_t len, uint64_t *first, uint64_t *n);

/* Process backend: give g a fresh userfaultfd taken from its process (the
 * previous one went to the tracker that open_tracker made, and is closed
 * with it; a userfaultfd cannot be set up twice). Takes ownership of uffd
 * even on failure. 0, or -EINVAL (not a process guest, uffd < 0). For the
 * synthetic guest: hm_guest_process_set_uffd(g, hm_synth_new_uffd(s)). */
int hm_guest_process_set_uffd(struct hm_guest *g, int uffd);

#endif

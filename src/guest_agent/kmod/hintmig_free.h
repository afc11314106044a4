/* SPDX-License-Identifier: GPL-2.0-or-later WITH Linux-syscall-note */
/*
 * hintmig_free: the interface between the hintmig_free kernel module and
 * hintmig-agent (user space). The module reads the buddy allocator's free
 * lists under zone->lock, in pieces of at most `piece` list entries per
 * lock hold, and hands back (pfn, order) records of blocks that were free
 * while it held the lock. Device: /dev/hintmig_free (root only).
 *
 * HMF_IOC_INFO  the kernel's state: page size, orders, poisoning (R7),
 *               free and per-CPU-list page counts.
 * HMF_IOC_WALK  continue a snapshot: fill up to `cap` records at `buf`,
 *               resuming from the cursor in the struct (all zero: start).
 *               Returns with HMF_WALK_DONE in flags once every list of
 *               every populated zone has been read.
 */
#ifndef HINTMIG_FREE_UAPI_H
#define HINTMIG_FREE_UAPI_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <stdint.h>
#include <sys/ioctl.h>
typedef uint64_t __u64;
typedef uint32_t __u32;
#endif

#define HMF_DEVICE "/dev/hintmig_free"
#define HMF_VERSION 1

/* free pages are filled at free time (R7) */
enum hmf_poison {
	HMF_POISON_NONE = 0,
	HMF_POISON_PAGE_POISON = 1,	/* page_poison=1: PAGE_POISON (0xaa) */
	HMF_POISON_INIT_ON_FREE = 2,	/* init_on_free=1: zeros */
};

struct hmf_info {
	__u32 version;		/* HMF_VERSION */
	__u32 page_shift;	/* PAGE_SHIFT */
	__u32 orders;		/* number of buddy orders (MAX_ORDER) */
	__u32 migrate_types;	/* MIGRATE_TYPES */
	__u32 poison;		/* enum hmf_poison */
	__u32 poison_byte;	/* the value free pages hold, if poisoned */
	__u32 init_on_alloc;	/* 1: allocations are zeroed (informational) */
	__u32 piece;		/* list entries read per lock hold */
	__u64 free_pages;	/* sum of NR_FREE_PAGES over populated zones */
	__u64 pcp_pages;	/* pages on per-CPU lists (not in a walk) */
	__u64 managed_pages;	/* sum of managed pages */
	__u64 reserved[4];
};

struct hmf_rec {
	__u64 pfn;		/* first page of the free block */
	__u32 order;		/* block of 1 << order pages */
	__u32 reserved;
};

#define HMF_WALK_DONE	1u	/* out: the snapshot is complete */
#define HMF_WALK_INLIST	2u	/* cursor: resume inside a list at pfn */

struct hmf_walk {
	/* cursor: all zero starts a snapshot; kept between calls */
	__u32 nid, zid, order, mt;
	__u64 pfn;		/* next entry to read (with HMF_WALK_INLIST) */
	__u32 flags;
	__u32 budget;		/* entries left for the current list */
	/* in */
	__u64 buf;		/* user address of struct hmf_rec[cap] */
	__u32 cap;		/* records wanted, >= 1 */
	/* out, for this call */
	__u32 count;		/* records written */
	__u64 hold_ns_max;	/* longest zone->lock hold */
	__u64 hold_ns_total;	/* all lock holds together */
	__u32 holds;		/* times the lock was taken */
	__u32 restarts;		/* cursor found stale: list read again */
	__u32 cut;		/* lists given up on (budget spent) */
	__u32 reserved;
};

#define HMF_IOC_MAGIC 0xb7
#define HMF_IOC_INFO _IOR(HMF_IOC_MAGIC, 1, struct hmf_info)
#define HMF_IOC_WALK _IOWR(HMF_IOC_MAGIC, 2, struct hmf_walk)

#endif

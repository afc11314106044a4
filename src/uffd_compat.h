/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one place for kernel uapi that the build host's headers may lack.
 *
 * Debian 12 ships linux-libc-dev 6.1: it knows userfaultfd write-protect
 * (5.7) and WP_HUGETLBFS_SHMEM (5.19) but not WP_UNPOPULATED (6.4),
 * WP_ASYNC (6.7) nor the PAGEMAP_SCAN ioctl (6.7); its glibc (2.36) may
 * lack wrappers for pidfd_open/pidfd_getfd. Everything here is guarded so
 * that newer headers win, and every feature is probed at run time
 * (hm_caps_probe()): a definition here says nothing about the kernel.
 *
 * Values are the kernel's uapi (include/uapi/linux/userfaultfd.h,
 * include/uapi/linux/fs.h) and PAGEMAP_SCAN(2const).
 */
#ifndef HM_UFFD_COMPAT_H
#define HM_UFFD_COMPAT_H

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* ---- userfaultfd ---- */

#ifndef __NR_userfaultfd
#define __NR_userfaultfd 323 /* x86_64 */
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* /dev/userfaultfd (6.1): ioctl(devfd, USERFAULTFD_IOC_NEW, flags). */
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef UFFD_FEATURE_PAGEFAULT_FLAG_WP
#define UFFD_FEATURE_PAGEFAULT_FLAG_WP (1 << 0)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
/* 6.4: write-protect none (never populated) anonymous ptes too. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
/* 6.7: write faults resolve in the kernel; the pte's wp bit is the state. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef UFFD_PAGEFAULT_FLAG_WP
#define UFFD_PAGEFAULT_FLAG_WP (1 << 1)
#endif
#ifndef UFFDIO_REGISTER_MODE_WP
#define UFFDIO_REGISTER_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_WP
#define UFFDIO_WRITEPROTECT_MODE_WP ((__u64)1 << 0)
#endif

/* ---- PAGEMAP_SCAN (6.7) ---- */

#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start;
	__u64 end; /* exclusive */
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end; /* out: where the walk stopped (== end when done) */
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE (1 << 2)
#endif
#ifndef PAGE_IS_PRESENT
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef PAGE_IS_SWAPPED
#define PAGE_IS_SWAPPED (1 << 4)
#endif
#ifndef PAGE_IS_PFNZERO
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PAGE_IS_HUGE
#define PAGE_IS_HUGE (1 << 6)
#endif

/* ---- /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap) ---- */

#define HM_PM_SOFT_DIRTY (UINT64_C(1) << 55)
#define HM_PM_UFFD_WP (UINT64_C(1) << 57) /* pte is uffd-wp protected (5.13) */
#define HM_PM_FILE (UINT64_C(1) << 61)
#define HM_PM_SWAP (UINT64_C(1) << 62)
#define HM_PM_PRESENT (UINT64_C(1) << 63)

/* ---- madvise ---- */

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* 5.14 */
#endif

/* ---- pidfd (5.3 / 5.6): raw syscalls, whatever libc offers ---- */

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif

static inline int hm_sys_pidfd_open(pid_t pid, unsigned int flags)
{
	return (int)syscall(__NR_pidfd_open, pid, flags);
}

static inline int hm_sys_pidfd_getfd(int pidfd, int targetfd,
				     unsigned int flags)
{
	return (int)syscall(__NR_pidfd_getfd, pidfd, targetfd, flags);
}

#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif

static inline int hm_sys_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Has the process of pidfd exited (a zombie included)? A pidfd polls
 * readable from then on. */
static inline bool hm_pidfd_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

static inline int hm_sys_userfaultfd(int flags)
{
	return (int)syscall(__NR_userfaultfd, flags);
}

#endif

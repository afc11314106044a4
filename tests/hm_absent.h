/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a test may skip for, and how strict mode checks the claim.
 *
 * A test skips (exit 77) only because something is absent from this
 * machine: a device, a kernel feature. Under HINTMIG_TEST_STRICT=1 (CI) the
 * claim is checked here, independently of the code under test (raw
 * syscalls and ioctls, not hm_caps_probe()): a confirmed absence stays a
 * skip, a skip for something this machine has is a failure. Machines of
 * one kind differ (with and without /dev/kvm, other kernels), so "every
 * skip fails" would fail honest runs and "no check" would hide regressions.
 *
 * The one table of skip reasons is hm_absent_kinds[] below; the scripts use
 * the same checks through the small program tests/hm_absent.c
 * (`hm-absent KIND`).
 */
#ifndef HM_ABSENT_H
#define HM_ABSENT_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uffd_compat.h"

enum hm_absent_kind {
	HM_ABSENT_KVM,		/* /dev/kvm does not exist */
	HM_ABSENT_UFFD,		/* no userfaultfd(2) and no /dev/userfaultfd */
	HM_ABSENT_UFFD_WP,	/* UFFDIO_API offers no write-protect */
	HM_ABSENT_WP_ASYNC,	/* no UFFD_FEATURE_WP_ASYNC or no PAGEMAP_SCAN */
	HM_ABSENT_PIDFD_GETFD,	/* pidfd_getfd(2) is ENOSYS */
	HM_ABSENT_NKINDS
};

/* Each check returns 1 when the absence is confirmed, 0 when the thing is
 * there (or could not be shown absent: a permission error is not an
 * absence); why gets the evidence either way. */
typedef int (*hm_absent_check_fn)(char *why, size_t len);

static inline int hm_absent_kvm(char *why, size_t len)
{
	struct stat st;

	if (stat("/dev/kvm", &st) == 0) {
		snprintf(why, len, "/dev/kvm exists");
		return 0;
	}
	snprintf(why, len, "stat(/dev/kvm): %s", strerror(errno));
	return errno == ENOENT;
}

/* A userfaultfd, or -errno. User-mode-only first: with
 * vm.unprivileged_userfaultfd=0 only that flag works without privilege. */
static inline int hm_absent_open_uffd(void)
{
	int fd = hm_sys_userfaultfd(O_CLOEXEC | UFFD_USER_MODE_ONLY), dev, e;

	if (fd < 0 && errno == EINVAL)
		fd = hm_sys_userfaultfd(O_CLOEXEC);
	if (fd >= 0)
		return fd;
	e = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		e = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	} else if (errno != ENOENT && errno != ENODEV) {
		e = errno;
	}
	return -e;
}

static inline int hm_absent_uffd(char *why, size_t len)
{
	int fd = hm_absent_open_uffd();

	if (fd >= 0) {
		close(fd);
		snprintf(why, len, "userfaultfd(2) works");
		return 0;
	}
	snprintf(why, len, "userfaultfd(2) and /dev/userfaultfd: %s",
		 strerror(-fd));
	return fd == -ENOSYS;
}

/* The features the kernel offers (UFFDIO_API with none asked for returns
 * them all), or -errno. */
static inline long long hm_absent_uffd_features(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = hm_absent_open_uffd(), r;

	if (fd < 0)
		return fd;
	r = ioctl(fd, UFFDIO_API, &api);
	r = r < 0 ? -errno : 0;
	close(fd);
	return r < 0 ? r : (long long)api.features;
}

static inline int hm_absent_uffd_wp(char *why, size_t len)
{
	long long f = hm_absent_uffd_features();

	if (f == -ENOSYS) {
		snprintf(why, len, "no userfaultfd at all");
		return 1;
	}
	if (f < 0) {
		snprintf(why, len, "UFFDIO_API: %s", strerror((int)-f));
		return 0;
	}
	snprintf(why, len, "UFFDIO_API features 0x%llx %s PAGEFAULT_FLAG_WP",
		 f, (f & UFFD_FEATURE_PAGEFAULT_FLAG_WP) ? "include" : "lack");
	return !(f & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
}

static inline int hm_absent_wp_async(char *why, size_t len)
{
	struct pm_scan_arg arg;
	long long f;
	int fd, r, e;

	if (hm_absent_uffd_wp(why, len))
		return 1;
	f = hm_absent_uffd_features();
	if (f < 0)
		return 0; /* why already says why */
	if (!(f & UFFD_FEATURE_WP_ASYNC)) {
		snprintf(why, len, "UFFDIO_API features 0x%llx lack WP_ASYNC",
			 f);
		return 1;
	}
	/* A PAGEMAP_SCAN of nothing: EINVAL (a zero size) if the ioctl
	 * exists, ENOTTY if not. */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "/proc/self/pagemap: %s", strerror(errno));
		return 0;
	}
	memset(&arg, 0, sizeof(arg));
	r = ioctl(fd, PAGEMAP_SCAN, &arg);
	e = errno;
	close(fd);
	if (r < 0 && e == ENOTTY) {
		snprintf(why, len, "WP_ASYNC offered, PAGEMAP_SCAN: %s",
			 strerror(e));
		return 1;
	}
	snprintf(why, len, "UFFDIO_API offers WP_ASYNC and PAGEMAP_SCAN "
		 "exists");
	return 0;
}

static inline int hm_absent_pidfd_getfd(char *why, size_t len)
{
	int r = hm_sys_pidfd_getfd(-1, 0, 0);

	snprintf(why, len, "pidfd_getfd(-1, 0, 0): %s",
		 r < 0 ? strerror(errno) : "succeeded");
	return r < 0 && errno == ENOSYS;
}

static const struct hm_absent_kind_desc {
	const char *name;
	hm_absent_check_fn check;
} hm_absent_kinds[HM_ABSENT_NKINDS] = {
	[HM_ABSENT_KVM] = { "kvm", hm_absent_kvm },
	[HM_ABSENT_UFFD] = { "uffd", hm_absent_uffd },
	[HM_ABSENT_UFFD_WP] = { "uffd-wp", hm_absent_uffd_wp },
	[HM_ABSENT_WP_ASYNC] = { "wp-async", hm_absent_wp_async },
	[HM_ABSENT_PIDFD_GETFD] = { "pidfd-getfd", hm_absent_pidfd_getfd },
};

/* The kind of a name, or -1. */
static inline int hm_absent_lookup(const char *name)
{
	for (int k = 0; k < HM_ABSENT_NKINDS; k++)
		if (!strcmp(hm_absent_kinds[k].name, name))
			return k;
	return -1;
}

static inline int hm_absent_check(enum hm_absent_kind k, char *why,
				  size_t len)
{
	return hm_absent_kinds[k].check(why, len);
}

#endif

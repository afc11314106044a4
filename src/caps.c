/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Kernel capability probe (hm_caps_probe), tracker mode choice, and the
 * two halves of getting a userfaultfd: creating it inside the process that
 * owns the memory (hm_uffd_create) and taking it from outside
 * (hm_uffd_take_remote).
 *
 * The probe only opens and closes descriptors of its own; it changes
 * nothing in the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hm_config.h"
#include "uffd_compat.h"
#include <hintmig/wp_tracker.h>

static const char *const mode_names[] = {
	[HM_TRACKER_AUTO] = "auto",
	[HM_TRACKER_ASYNC] = "async",
	[HM_TRACKER_SYNC] = "sync",
};

#define N_MODES (sizeof(mode_names) / sizeof(mode_names[0]))

const char *hm_tracker_mode_name(enum hm_tracker_mode mode)
{
	if ((unsigned)mode >= N_MODES)
		return NULL;
	return mode_names[mode];
}

int hm_tracker_mode_parse(const char *name, enum hm_tracker_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned i = 0; i < N_MODES; i++) {
		if (!strcmp(name, mode_names[i])) {
			*out = (enum hm_tracker_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

int hm_tracker_mode_pick(const struct hm_caps *caps,
			 enum hm_tracker_mode want)
{
	bool async_ok;

	if (!caps || (unsigned)want >= N_MODES)
		return -EINVAL;
	if (!caps->uffd_syscall && !caps->uffd_dev)
		return caps->uffd_errno == EPERM || caps->uffd_errno == EACCES ?
			       -EPERM : -ENOTSUP;
	if (!caps->uffd_wp)
		return -ENOTSUP;
	async_ok = caps->wp_async && caps->pagemap_scan;
	switch (want) {
	case HM_TRACKER_ASYNC:
		return async_ok ? HM_TRACKER_ASYNC : -ENOTSUP;
	case HM_TRACKER_SYNC:
		return HM_TRACKER_SYNC;
	case HM_TRACKER_AUTO:
	default:
		return async_ok ? HM_TRACKER_ASYNC : HM_TRACKER_SYNC;
	}
}

/* /dev/userfaultfd (6.1+): permission is the device node's mode, not
 * vm.unprivileged_userfaultfd. */
static int uffd_from_dev(int flags)
{
	int dev, fd, err;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	err = errno;
	close(dev);
	return fd < 0 ? -err : fd;
}

int hm_uffd_create(void)
{
	const int flags = O_CLOEXEC | O_NONBLOCK;
	int fd, dev_fd;

	/* No UFFD_USER_MODE_ONLY: KVM's writes to guest memory fault in
	 * kernel mode (get_user_pages on behalf of the vCPU) and must be
	 * tracked too. */
	fd = hm_sys_userfaultfd(flags);
	if (fd >= 0)
		return fd;
	fd = -errno;
	dev_fd = uffd_from_dev(flags);
	if (dev_fd >= 0)
		return dev_fd;
	/* Report the syscall's reason (EPERM is the useful one) unless it
	 * just does not exist. */
	return fd == -ENOSYS ? dev_fd : fd;
}

int hm_uffd_take_remote(pid_t pid, int target_fd)
{
	int pidfd, fd, err;

	if (pid <= 0 || target_fd < 0)
		return -EINVAL;
	pidfd = hm_sys_pidfd_open(pid, 0);
	if (pidfd < 0)
		return -errno;
	fd = hm_sys_pidfd_getfd(pidfd, target_fd, 0);
	err = errno;
	close(pidfd);
	if (fd < 0)
		return -err;
	/* pidfd_getfd sets O_CLOEXEC on the new descriptor; the status
	 * flags (O_NONBLOCK) are those of the shared open file. */
	return fd;
}

static int read_small_file(const char *path, char *buf, size_t size)
{
	int fd, ret = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		ret = -errno;
	else
		buf[n] = '\0';
	close(fd);
	return ret;
}

static void probe_uffd(struct hm_caps *caps, const struct hm_log *log)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd, err_sys;

	fd = hm_sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		caps->uffd_syscall = true;
	} else {
		err_sys = errno;
		fd = uffd_from_dev(O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			caps->uffd_dev = true;
		} else {
			caps->uffd_errno = err_sys == ENOSYS ? -fd : err_sys;
			hm_logf(log, HM_LOG_INFO,
				"userfaultfd unavailable: %s (syscall), %s "
				"(/dev/userfaultfd); vm.unprivileged_userfaultfd=%d",
				strerror(err_sys), strerror(-fd),
				caps->unprivileged_userfaultfd);
			return;
		}
	}
	/* With features = 0 the kernel answers with every feature it has. */
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		caps->uffd_errno = errno;
		hm_logf(log, HM_LOG_WARN, "UFFDIO_API: %s", strerror(errno));
		close(fd);
		return;
	}
	if (!caps->uffd_dev) {
		/* Record /dev/userfaultfd too, for the report. */
		int dfd = uffd_from_dev(O_CLOEXEC | O_NONBLOCK);
		if (dfd >= 0) {
			caps->uffd_dev = true;
			close(dfd);
		}
	}
	caps->uffd_features = api.features;
	caps->uffd_wp = api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	caps->wp_hugetlbfs_shmem = api.features &
				   UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	caps->wp_async = api.features & UFFD_FEATURE_WP_ASYNC;
	caps->wp_unpopulated = api.features & UFFD_FEATURE_WP_UNPOPULATED;
	close(fd);
}

static void probe_pagemap_scan(struct hm_caps *caps)
{
	/* A scan of one page of our own stack, no output, no flags: any
	 * answer but ENOTTY/EINVAL-on-size means the ioctl exists. */
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t here = (uintptr_t)&page & ~((uintptr_t)page - 1);
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = here,
		.end = here + (uintptr_t)page,
		.category_anyof_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (ioctl(fd, PAGEMAP_SCAN, &arg) >= 0)
		caps->pagemap_scan = true;
	close(fd);
}

static void probe_pidfd_getfd(struct hm_caps *caps)
{
	int pidfd, fd;

	pidfd = hm_sys_pidfd_open(getpid(), 0);
	if (pidfd < 0)
		return;
	fd = hm_sys_pidfd_getfd(pidfd, pidfd, 0);
	if (fd >= 0) {
		caps->pidfd_getfd = true;
		close(fd);
	}
	close(pidfd);
}

int hm_caps_probe(struct hm_caps *caps, const struct hm_log *log)
{
	struct utsname uts;
	char buf[128];
	int fd;

	if (!caps)
		return -EINVAL;
	memset(caps, 0, sizeof(*caps));
	caps->unprivileged_userfaultfd = -1;

	if (uname(&uts) == 0)
		snprintf(caps->kernel_release, sizeof(caps->kernel_release),
			 "%s", uts.release);
	if (read_small_file("/proc/sys/vm/unprivileged_userfaultfd", buf,
			    sizeof(buf)) == 0)
		caps->unprivileged_userfaultfd = atoi(buf);

	probe_uffd(caps, log);
	probe_pagemap_scan(caps);
	probe_pidfd_getfd(caps);

	if (read_small_file("/sys/kernel/mm/transparent_hugepage/enabled",
			    buf, sizeof(buf)) == 0)
		caps->thp = strstr(buf, "[never]") == NULL;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		caps->kvm = true;
		close(fd);
	}

	hm_logf(log, HM_LOG_DEBUG,
		"caps: kernel %s uffd-wp %d shmem %d async %d unpopulated %d "
		"pagemap_scan %d pidfd_getfd %d thp %d kvm %d",
		caps->kernel_release, caps->uffd_wp, caps->wp_hugetlbfs_shmem,
		caps->wp_async, caps->wp_unpopulated, caps->pagemap_scan,
		caps->pidfd_getfd, caps->thp, caps->kvm);
	return 0;
}

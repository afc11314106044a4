/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Run system calls inside another process with ptrace: how hintmig gets a
 * userfaultfd that belongs to QEMU's mm (no kernel interface creates one
 * for another process), also for a QEMU that may not create one itself
 * (R15 in docs/design.md). x86_64 only.
 */
#ifndef HM_MIGRATE_UFFD_INJECT_H
#define HM_MIGRATE_UFFD_INJECT_H

#include <stdbool.h>
#include <sys/types.h>

#include <hintmig/hintmig.h>

struct hm_inject_session;

/* Seize and stop thread tid (tid: the process's pid for its main thread)
 * and, with all_threads, every other thread of its process, so that none
 * runs until hm_inject_end(). pidfd (or -1): the process identified
 * before (R14); if it has exited once tid is stopped, tid is another
 * process's and nothing is done (-ESRCH). 0, or -errno: -ESRCH gone,
 * -EPERM ptrace refused (no CAP_SYS_PTRACE, Yama), -EBUSY traced by
 * someone else, -ENOEXEC no syscall instruction found, -ENOTSUP not
 * x86_64. */
int hm_inject_begin(pid_t tid, int pidfd, bool all_threads,
		    const struct hm_log *log, struct hm_inject_session **out);

/* Run syscall nr(args[0..5]) in the session's thread and store what it
 * returned (which may be -errno of the remote call) in *ret. The thread
 * runs one `syscall` instruction of its own code (none is written) and has
 * its registers back right after; a system call it was blocked in
 * restarts as after any signal stop once it is detached. */
int hm_inject_call(struct hm_inject_session *s, long nr, const long args[6],
		   long *ret);

/* Detach every thread (signals that came meanwhile sent again). NULL is
 * fine. */
void hm_inject_end(struct hm_inject_session *s);

/* begin (this thread only), call, end. */
int hm_inject_syscall(pid_t tid, long nr, const long args[6], long *ret,
		      const struct hm_log *log);

/* A userfaultfd of process pid's mm (kernel faults included), taken into
 * this process (O_CLOEXEC), with every thread of pid stopped meanwhile:
 * userfaultfd(flags) inside it, or, when it may not (-EPERM: not
 * CAP_SYS_PTRACE, vm.unprivileged_userfaultfd 0), /dev/userfaultfd opened
 * here, passed in, ioctl(USERFAULTFD_IOC_NEW) there. Everything made
 * inside (the userfaultfd, the device descriptor, a socketpair, a scratch
 * page) is closed or unmapped before any of its threads runs again, and
 * its descriptor table is checked for that (R9, R15). pidfd: the process
 * identified (R14), or -1 to open one here. Our fd, or -errno (the remote
 * call's too). */
int hm_inject_userfaultfd(pid_t pid, int pidfd, int flags,
			  const struct hm_log *log);

/* A number from /proc/TID/status ("TracerPid", "Tgid", "Uid": its first
 * value), or -1. */
int hm_proc_status_field(pid_t tid, const char *key);

/* How many descriptors of pid are a userfaultfd or /dev/userfaultfd (what
 * a grant could leave behind), or -errno. */
int hm_inject_grants_held(pid_t pid);

#endif

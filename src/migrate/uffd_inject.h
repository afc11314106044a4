/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Run a system call inside another process with ptrace: how hintmig gets a
 * userfaultfd that belongs to QEMU's mm (no kernel interface creates one
 * for another process). x86_64 only.
 */
#ifndef HM_MIGRATE_UFFD_INJECT_H
#define HM_MIGRATE_UFFD_INJECT_H

#include <sys/types.h>

#include <hintmig/hintmig.h>

/* Run syscall nr(args[0..5]) in thread tid of its process (tid: the
 * process's pid for its main thread) and store what it returned (which
 * may be -errno of the remote call) in *ret. The thread is seized,
 * interrupted, run one `syscall` instruction of its own code (none is
 * written), and given back its registers; a system call it was blocked in
 * restarts as after any signal stop. 0, or -errno of the injection:
 * -ESRCH gone, -EPERM ptrace refused (no CAP_SYS_PTRACE, Yama), -EBUSY
 * traced by someone else, -ENOEXEC no syscall instruction found,
 * -ENOTSUP not x86_64. */
int hm_inject_syscall(pid_t tid, long nr, const long args[6], long *ret,
		      const struct hm_log *log);

/* userfaultfd(flags) inside process pid, taken into this process with
 * pidfd_getfd(2), and the process's own copy closed at once (R9: the fd
 * has one owner, so that if we die the kernel releases the tracking).
 * Our fd (O_CLOEXEC), or -errno (the remote userfaultfd's error too:
 * -EPERM when the process may not create one). */
int hm_inject_userfaultfd(pid_t pid, int flags, const struct hm_log *log);

#endif

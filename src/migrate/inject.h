/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System call injection: run one system call inside another process (a
 * running QEMU that we do not control) with ptrace. It is how hintmig gets
 * a userfaultfd of QEMU's mm: the kernel creates a userfaultfd only for
 * the mm of the calling process, so the call has to be made by a QEMU
 * thread. x86_64 only (-ENOTSUP elsewhere). Internal header.
 *
 * What the target sees (details in inject.c): its thread is seized
 * (PTRACE_SEIZE, no SIGSTOP), stopped with PTRACE_INTERRUPT, executes one
 * `syscall` instruction that is already in its memory (nothing of it is
 * written), gets every register back and is detached. A system call it
 * was blocked in is restarted by the kernel exactly as after any ptrace
 * stop; signals that arrive meanwhile are held back and delivered after
 * the registers are restored, never on the injected context.
 *
 * The calls block until the thread can stop: a thread in an
 * uninterruptible sleep stops only when that sleep ends. The calling
 * thread becomes the tracer for the duration; nothing else in this
 * process may wait for the target meanwhile (waitpid(-1, ..., __WALL)
 * elsewhere would steal its stops).
 */
#ifndef HM_MIGRATE_INJECT_H
#define HM_MIGRATE_INJECT_H

#include <stdbool.h>
#include <sys/types.h>

#include <hintmig/hintmig.h>

/* Run syscall nr(args[0..5]) in thread pid (a process's pid names its main
 * thread) and store its return value in *ret: the value the kernel left in
 * rax, so a failed remote call gives -errno there. Returns 0, or -errno of
 * the injection itself:
 *   -ESRCH   no such thread, or it exited (a zombie) or died meanwhile
 *   -EPERM   ptrace refused (no CAP_SYS_PTRACE over it, Yama); logged
 *   -EBUSY   already traced (a debugger, another hintmig); logged
 *   -ENOEXEC no `syscall` instruction found in its executable mappings
 *   -ENOTSUP not x86_64, or the thread runs 32-bit code
 *   -EINVAL  bad arguments, our own process, or nr is a call that does not
 *            return to the instruction after it (execve, clone, fork,
 *            vfork, exit, rt_sigreturn, restart_syscall)
 *   -EIO     the thread did not come back from the call where expected
 * A remote call interrupted by a signal (it returned -ERESTART*) is issued
 * again, up to a few times; then *ret is -EINTR. Injecting a call that
 * sleeps with a timeout (nanosleep, poll, futex) into a thread that was
 * itself interrupted in such a sleep is unsafe if the injected one gets
 * interrupted: both use the thread's single restart block. */
int hm_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
		      const struct hm_log *log);

/* userfaultfd(flags) inside process pid (flags: O_CLOEXEC, O_NONBLOCK,
 * UFFD_USER_MODE_ONLY), taken into this process with pidfd_getfd(2), and
 * the process's own copy closed with a second injected close() before its
 * thread runs again (R9: one owner, so that if we die the kernel releases
 * the tracking). Our fd (O_CLOEXEC), or -errno: those of
 * hm_inject_syscall(), the remote userfaultfd()'s (-EPERM: the process
 * may not create one; logged), or pidfd_getfd's. */
int hm_inject_userfaultfd(pid_t pid, int flags, const struct hm_log *log);

/* What one injection found and did; for tests and diagnostics. */
struct hm_inject_info {
	unsigned long long at;		/* address of the `syscall` run */
	bool at_rip;			/* the one the thread stopped behind */
	/* the thread's registers when it stopped: */
	unsigned long long saved_rip;
	long long saved_orig_rax;	/* >= 0: it was in that system call */
	long long saved_rax;		/* -ERESTART* if it was interrupted */
	int signals;			/* held back while seized, resent */
	int restarts;			/* injected call interrupted, reissued */
};

/* hm_inject_syscall(), and if info is not NULL, what it did. */
int hm_inject_syscall_info(pid_t pid, long nr, const long args[6], long *ret,
			   struct hm_inject_info *info,
			   const struct hm_log *log);

#endif

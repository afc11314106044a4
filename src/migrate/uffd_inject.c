/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System call injection with ptrace (uffd_inject.h).
 *
 * The sequence, and why each step is safe for a running QEMU:
 *  1. PTRACE_SEIZE (no SIGSTOP is sent, unlike ATTACH) and
 *     PTRACE_INTERRUPT: the thread stops at its next return to user mode,
 *     inside the kernel's signal handling, in a PTRACE_EVENT_STOP (or in a
 *     signal-delivery stop if a signal was already pending: that stop
 *     serves as well, and the signal is sent again after detaching).
 *  2. Its registers are saved. If it was blocked in a system call, rax
 *     holds -ERESTART* and orig_rax the call's number: the kernel decides
 *     about the restart only after this stop, from the registers it finds
 *     then. So the injected context gets orig_rax = -1 (no restart logic
 *     applies to it), and the saved registers, put back verbatim before
 *     detaching, make the kernel restart the interrupted call exactly as
 *     after any signal stop.
 *  3. The call runs at a `syscall` instruction that is already in the
 *     process: right behind rip when the thread was in a system call
 *     (checked), else one found in an executable mapping (libc first).
 *     Nothing of the target is written. PTRACE_SINGLESTEP executes that
 *     one instruction; the trap after it stops the thread again with the
 *     result in rax.
 *  4. Registers restored, PTRACE_DETACH. Signals that arrived meanwhile
 *     (their delivery stops were suppressed so that no handler runs on the
 *     injected context) are sent again with tgkill.
 * If this process dies between 3 and 4 the kernel detaches the thread
 * with the injected registers: the window is one instruction, restored
 * right after the trap, but it exists; hintmig injects only at attach.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

#include "uffd_inject.h"
#include "../uffd_compat.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif
#define MAX_PENDING 8
#define SCAN_CHUNK (1u << 20)

#if defined(__x86_64__)

struct injection {
	pid_t tid;
	struct user_regs_struct saved;
	int pending[MAX_PENDING];	/* signals to send again */
	int npending;
	const struct hm_log *log;
};

static void remember_signal(struct injection *in, int sig)
{
	if (in->npending < MAX_PENDING)
		in->pending[in->npending++] = sig;
}

/* Wait for the next stop of in->tid: its status, or -errno (-ESRCH: the
 * thread exited or was killed). */
static int wait_stop(struct injection *in)
{
	int st;

	for (;;) {
		pid_t w = waitpid(in->tid, &st, __WALL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (WIFEXITED(st) || WIFSIGNALED(st))
			return -ESRCH;
		if (WIFSTOPPED(st))
			return st;
	}
}

/* A number from /proc/TID/status ("TracerPid", "Tgid"), or -1. */
static int status_field(pid_t tid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	int v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = atoi(line + kl + 1);
			break;
		}
	fclose(f);
	return v;
}

/* Two bytes 0f 05 at addr of the target? */
static int is_syscall_insn(pid_t pid, uint64_t addr)
{
	unsigned char b[2];
	struct iovec l = { b, 2 }, r = { (void *)(uintptr_t)addr, 2 };

	if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 2)
		return 0;
	return b[0] == 0x0f && b[1] == 0x05;
}

/* Address of a `syscall` instruction in an executable mapping of pid:
 * libc's text first (always has one), then any. 0 when none. */
static uint64_t find_syscall_insn(pid_t pid)
{
	char path[64], line[1024];
	uint64_t found = 0;
	unsigned char *buf = malloc(SCAN_CHUNK + 1);

	if (!buf)
		return 0;
	for (int pass = 0; pass < 2 && !found; pass++) {
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
		f = fopen(path, "re");
		if (!f)
			break;
		while (!found && fgets(line, sizeof(line), f)) {
			unsigned long long s, e;
			char perms[8];

			if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) != 3 ||
			    perms[2] != 'x' || perms[0] != 'r')
				continue;
			if (pass == 0 && !strstr(line, "/libc."))
				continue;
			for (uint64_t a = s; a < e && !found; a += SCAN_CHUNK) {
				size_t n = e - a < SCAN_CHUNK ? e - a
							      : SCAN_CHUNK;
				struct iovec l = { buf, n + 1 };
				struct iovec r = { (void *)(uintptr_t)a, n + 1 };
				ssize_t got;

				/* one byte more: an instruction that spans
				 * the chunk boundary */
				if (a + n == e)
					l.iov_len = r.iov_len = n;
				got = process_vm_readv(pid, &l, 1, &r, 1, 0);
				for (ssize_t i = 0; i + 1 < got; i++)
					if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
						found = a + (uint64_t)i;
						break;
					}
			}
		}
		fclose(f);
	}
	free(buf);
	return found;
}

/* Seize and stop the thread; its registers in in->saved. */
static int seize(struct injection *in)
{
	int st, tr;

	if (ptrace(PTRACE_SEIZE, in->tid, 0, 0) < 0) {
		int e = errno;

		tr = status_field(in->tid, "TracerPid");
		if (e == EPERM && tr > 0) {
			hm_logf(in->log, HM_LOG_ERROR, "thread %d is already "
				"traced by process %d", (int)in->tid, tr);
			return -EBUSY;
		}
		if (e == EPERM)
			hm_logf(in->log, HM_LOG_ERROR, "ptrace of thread %d "
				"refused: hintmig needs CAP_SYS_PTRACE over "
				"it (root; see also "
				"/proc/sys/kernel/yama/ptrace_scope)",
				(int)in->tid);
		return -e;
	}
	if (ptrace(PTRACE_INTERRUPT, in->tid, 0, 0) < 0)
		return -errno;
	st = wait_stop(in);
	if (st < 0)
		return st;
	if ((st >> 16) != PTRACE_EVENT_STOP) {
		/* a signal-delivery stop came first: the signal is taken
		 * out now and sent again after detaching */
		remember_signal(in, WSTOPSIG(st));
	}
	if (ptrace(PTRACE_GETREGS, in->tid, 0, &in->saved) < 0)
		return -errno;
	return 0;
}

/* Single-step once from a stop; suppress other signals until the trap. */
static int step(struct injection *in)
{
	for (int tries = 0; tries < 64; tries++) {
		int st;

		if (ptrace(PTRACE_SINGLESTEP, in->tid, 0, 0) < 0)
			return -errno;
		st = wait_stop(in);
		if (st < 0)
			return st;
		if ((st >> 16) == 0 && WSTOPSIG(st) == SIGTRAP)
			return 0;
		if ((st >> 16) == 0)
			remember_signal(in, WSTOPSIG(st));
		/* a signal or event stop before the instruction ran: the
		 * registers are still the injected ones, step again */
	}
	return -EAGAIN;
}

static void detach(struct injection *in)
{
	int tgid = in->npending ? status_field(in->tid, "Tgid") : -1;

	ptrace(PTRACE_DETACH, in->tid, 0, 0);
	for (int i = 0; i < in->npending && tgid > 0; i++)
		syscall(SYS_tgkill, tgid, in->tid, in->pending[i]);
}

int hm_inject_syscall(pid_t tid, long nr, const long args[6], long *ret,
		      const struct hm_log *log)
{
	struct injection in = { .tid = tid, .log = log };
	struct user_regs_struct r;
	uint64_t at = 0;
	int e;

	e = seize(&in);
	if (e < 0)
		goto out;
	if ((long long)in.saved.orig_rax >= 0 && in.saved.rip >= 2 &&
	    is_syscall_insn(tid, in.saved.rip - 2))
		at = in.saved.rip - 2;
	else
		at = find_syscall_insn(tid);
	if (!at) {
		hm_logf(log, HM_LOG_ERROR, "thread %d: no syscall instruction "
			"found to run a system call at", (int)tid);
		e = -ENOEXEC;
		goto restore;
	}
	r = in.saved;
	r.rax = (unsigned long long)nr;
	r.orig_rax = (unsigned long long)-1;
	r.rdi = (unsigned long long)args[0];
	r.rsi = (unsigned long long)args[1];
	r.rdx = (unsigned long long)args[2];
	r.r10 = (unsigned long long)args[3];
	r.r8 = (unsigned long long)args[4];
	r.r9 = (unsigned long long)args[5];
	r.rip = at;
	if (ptrace(PTRACE_SETREGS, tid, 0, &r) < 0) {
		e = -errno;
		goto restore;
	}
	e = step(&in);
	if (e == 0 && ptrace(PTRACE_GETREGS, tid, 0, &r) < 0)
		e = -errno;
	if (e == 0 && r.rip != at + 2) {
		hm_logf(log, HM_LOG_ERROR, "thread %d: the injected system call "
			"stopped at 0x%llx, not after it", (int)tid,
			(unsigned long long)r.rip);
		e = -EFAULT;
	}
	if (e == 0)
		*ret = (long)r.rax;
restore:
	if (ptrace(PTRACE_SETREGS, tid, 0, &in.saved) < 0 && e == 0)
		e = -errno;
out:
	if (e != -ESRCH && e != -EPERM && e != -EBUSY)
		detach(&in);
	if (e < 0 && e != -EPERM && e != -EBUSY)
		hm_logf(log, HM_LOG_ERROR, "system call injection into thread "
			"%d: %s", (int)tid, strerror(-e));
	return e;
}

#else /* !__x86_64__ */

int hm_inject_syscall(pid_t tid, long nr, const long args[6], long *ret,
		      const struct hm_log *log)
{
	(void)tid;
	(void)nr;
	(void)args;
	(void)ret;
	hm_logf(log, HM_LOG_ERROR, "system call injection: x86_64 only");
	return -ENOTSUP;
}

#endif

int hm_inject_userfaultfd(pid_t pid, int flags, const struct hm_log *log)
{
	long args[6] = { flags, 0, 0, 0, 0, 0 }, remote = -1, rc = 0;
	int e, fd;

	e = hm_inject_syscall(pid, __NR_userfaultfd, args, &remote, log);
	if (e < 0)
		return e;
	if (remote < 0) {
		hm_logf(log, HM_LOG_ERROR, "userfaultfd() inside process %d: "
			"%s%s", (int)pid, strerror((int)-remote),
			remote == -EPERM ? " (the process lacks "
					   "CAP_SYS_PTRACE and "
					   "vm.unprivileged_userfaultfd is 0)"
					 : "");
		return (int)remote;
	}
	fd = hm_uffd_take_remote(pid, (int)remote);
	/* R9: whatever happened, the process must not keep its copy */
	args[0] = remote;
	e = hm_inject_syscall(pid, __NR_close, args, &rc, log);
	if (e == 0 && rc < 0)
		e = (int)rc;
	if (e < 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		hm_logf(log, HM_LOG_ERROR, "process %d: %s the userfaultfd "
			"(fd %ld there): %s", (int)pid,
			fd < 0 ? "cannot take" : "cannot close its copy of",
			remote, strerror(fd < 0 ? -fd : -e));
		return fd < 0 ? fd : e;
	}
	return fd;
}

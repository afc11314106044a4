/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System call injection with ptrace (inject.h), x86_64.
 *
 * One injection, and why each step is safe for a running QEMU:
 *
 *  1. PTRACE_SEIZE, then PTRACE_INTERRUPT. SEIZE sends no SIGSTOP (ATTACH
 *     would, and QEMU would see a stop/continue of the whole process).
 *     INTERRUPT wakes the thread from an interruptible sleep and stops it
 *     on its way back to user mode, inside get_signal(), in a
 *     PTRACE_EVENT_STOP. If a signal was already pending the thread may
 *     report that signal's delivery stop instead; that stop serves as well
 *     (any ptrace stop consumes the INTERRUPT) and the signal is held.
 *
 *  2. PTRACE_GETREGS. If the thread was blocked in a system call,
 *     orig_rax is its number and rax is -ERESTARTSYS (512),
 *     -ERESTARTNOINTR (513), -ERESTARTNOHAND (514) or
 *     -ERESTART_RESTARTBLOCK (516); rip is already behind its `syscall`.
 *
 *  3. The call runs at a `syscall` (0f 05) already in the process: the one
 *     behind rip if the thread stopped in a system call (orig_rax >= 0 and
 *     the two bytes checked), else the first found in its vDSO, its libc
 *     or any other readable executable mapping (/proc/PID/maps, read with
 *     process_vm_readv). Setting rip decodes from that byte whatever the
 *     instruction boundaries around it, and nothing of the target is ever
 *     written. Nothing is cached: no library-global state.
 *
 *  4. Registers: rax = nr, rdi rsi rdx r10 r8 r9 = args, rip = that
 *     address, orig_rax = -1 so that the kernel's restart logic (below)
 *     sees "no system call" in the injected context; the rest (rsp, fs,
 *     flags...) as saved. PTRACE_SINGLESTEP executes exactly that one
 *     instruction; the kernel reports the step at the system call's exit
 *     with a SIGTRAP signal-delivery stop, rip = address + 2, rax = result.
 *
 *  5. Registers restored, verbatim, at once (the same stop), then
 *     PTRACE_DETACH.
 *
 * Restart of the call the thread was blocked in. The decision is taken in
 * arch_do_signal_or_restart() (arch/x86/kernel/signal.c) *after*
 * get_signal() returns, from the registers it finds then:
 *   get_signal() true  -> handle_signal(): -ERESTARTSYS restarts only with
 *                         SA_RESTART, -ERESTARTNOHAND/-ERESTART_RESTARTBLOCK
 *                         become -EINTR, -ERESTARTNOINTR always restarts;
 *   get_signal() false -> if orig_ax != -1: -ERESTARTSYS, -ERESTARTNOHAND,
 *                         -ERESTARTNOINTR: ax = orig_ax, ip -= 2;
 *                         -ERESTART_RESTARTBLOCK: ax = __NR_restart_syscall,
 *                         ip -= 2 (restart_block keeps the remaining time).
 * Both our stops, the INTERRUPT's event stop and the step's SIGTRAP stop,
 * are inside get_signal() (do_jobctl_trap(), ptrace_signal()). So:
 *  - resuming into the injected context, get_signal() returns false and
 *    the restart code sees orig_ax == -1: it leaves rip/rax alone and the
 *    thread executes our `syscall` (without orig_rax = -1 it would still
 *    do nothing, as rax = nr is no -ERESTART code; -1 makes it explicit);
 *  - after the restore the thread is in ptrace_signal() for its SIGTRAP;
 *    PTRACE_DETACH with data 0 discards that SIGTRAP, get_signal() finds
 *    nothing else and returns false, and the restart code now sees the
 *    thread's own orig_ax and -ERESTART* value: the interrupted call is
 *    restarted exactly as after a plain ptrace stop (or, if we hand a held
 *    signal back through PTRACE_DETACH, handled as that signal arriving
 *    during the call: EINTR only when a handler runs without SA_RESTART,
 *    as POSIX has it). tests/unit/test_inject.c checks read(2)
 *    (-ERESTARTSYS), nanosleep(2) (-ERESTART_RESTARTBLOCK, restarted as
 *    restart_syscall with the remaining time) and ppoll(2)
 *    (-ERESTARTNOHAND, restarted with the remaining time the kernel wrote
 *    back, and its temporary signal mask set again).
 * Side effects that remain, as after any ptrace stop: a thread in
 * ppoll/pselect/epoll_pwait with a temporary signal mask has its normal
 * mask back from the first resume until the call restarts (the kernel
 * restores the saved mask when it does not restart, which is what it sees
 * in the injected context); calls that return -EINTR when merely stopped
 * (epoll_wait, semtimedop, sigtimedwait: signal(7)) return -EINTR.
 *
 * Signals. A tracee's signal stops before any handler runs: every signal
 * that arrives while the injected context is installed shows up as a
 * signal-delivery stop first. Each is held (its siginfo kept), resumed
 * with data 0 so that nothing is delivered on the injected context, and
 * given back after the restore: the first one through PTRACE_DETACH's data
 * with PTRACE_SETSIGINFO (the kernel then delivers it exactly as if it had
 * just arrived, requeued if blocked), any others queued again to the
 * thread before detaching with rt_tgsigqueueinfo (siginfo kept, for
 * sigqueue()-style codes) or tgkill (kernel and kill() codes: the sender
 * fields become ours). A process-directed signal comes back directed to
 * this thread. An injected call that a signal interrupts (it returns
 * -ERESTART*) is issued again; the thread's mask is never changed. Two
 * synchronous signals caused by the injected context itself are not
 * handed back: SIGSYS from a seccomp filter that refuses the call (the
 * call returns -ENOSYS) and SIGSEGV/SIGBUS for fetching the instruction.
 *
 * If this process dies while the thread is seized, the kernel detaches it
 * (we never set PTRACE_O_EXITKILL). Two windows remain, kept as short as
 * possible (a few system calls each, no allocation or logging in them):
 *  - between PTRACE_SETREGS of the injected context and the restore right
 *    after the step, a SIGKILL of this process leaves the thread running
 *    with the injected registers: it crashes, or worse;
 *  - between the step's SIGTRAP stop and PTRACE_DETACH the thread sits in
 *    a signal-delivery stop for SIGTRAP; an implicit detach delivers that
 *    SIGTRAP (exit_code is left as it was), whose default action kills the
 *    process, registers restored or not. hm_inject_userfaultfd() keeps
 *    that stop across pidfd_getfd(2) and the second call, so that the
 *    thread never runs with the second copy of the fd.
 * hintmig injects once per migration, at attach.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
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

#include "inject.h"
#include "uffd_compat.h"

#if defined(__x86_64__) && !defined(__ILP32__)

/* Kernel-internal values (include/linux/errno.h) that user space never
 * sees but a tracer does, in rax of a thread stopped on its way out of an
 * interrupted system call. */
#define K_ERESTARTSYS 512
#define K_ERESTARTNOINTR 513
#define K_ERESTARTNOHAND 514
#define K_ERESTART_RESTARTBLOCK 516

#define USER64_CS 0x33		/* __USER_CS: the thread runs 64-bit code */

#define MAX_HELD 32		/* signals held back during one injection */
#define MAX_STOPS 64		/* stops tolerated while stepping one call */
#define MAX_REISSUE 8		/* re-issues of an interrupted injected call */
#define SCAN_CHUNK (64 * 1024)

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif
#ifndef KCMP_FILE
#define KCMP_FILE 0
#endif

/* One injection session on one thread. */
struct inj {
	pid_t tid;
	const struct hm_log *log;
	struct hm_inject_info *info;
	struct user_regs_struct saved;
	char where[80];		/* where `at` comes from, for the log */
	bool stopped;		/* in a ptrace stop: we may touch it */
	bool sigstop;		/* that stop is a signal-delivery stop */
	bool dirty;		/* its registers may not be `saved` */
	int nheld;
	int lost;
	siginfo_t held[MAX_HELD];
};

static bool is_restart(unsigned long long rax)
{
	long long v = (long long)rax;

	return v == -K_ERESTARTSYS || v == -K_ERESTARTNOINTR ||
	       v == -K_ERESTARTNOHAND || v == -K_ERESTART_RESTARTBLOCK;
}

/* Calls that do not come back to the instruction after the `syscall` with
 * the injected context (or at all): the session could not restore it. */
static bool nr_refused(long nr)
{
	switch (nr) {
	case __NR_rt_sigreturn:
	case __NR_execve:
	case __NR_execveat:
	case __NR_fork:
	case __NR_vfork:
	case __NR_clone:
#ifdef __NR_clone3
	case __NR_clone3:
#endif
	case __NR_exit:
	case __NR_restart_syscall:
		return true;
	default:
		return false;
	}
}

/* Fields of /proc/TID/status: state letter, Tgid, TracerPid (-1/0 when
 * not found). 0 or -errno. */
static int read_status(pid_t tid, char *state, int *tgid, int *tracer)
{
	char path[64], line[256];
	FILE *f;

	*state = 0;
	*tgid = -1;
	*tracer = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "State:", 6))
			sscanf(line + 6, " %c", state);
		else if (!strncmp(line, "Tgid:", 5))
			*tgid = atoi(line + 5);
		else if (!strncmp(line, "TracerPid:", 10))
			*tracer = atoi(line + 10);
	}
	fclose(f);
	return 0;
}

static int yama_scope(void)
{
	char buf[16] = "";
	FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return buf[0] ? atoi(buf) : -1;
}

/* PTRACE_SEIZE failed with err: say why, as precisely as we can tell. */
static int seize_refused(struct inj *in, int err)
{
	char state;
	int tgid, tracer, scope;

	if (err == ESRCH) {
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d does not "
			"exist", (int)in->tid);
		return -ESRCH;
	}
	if (err != EPERM) {
		hm_logf(in->log, HM_LOG_ERROR, "inject: PTRACE_SEIZE of thread "
			"%d: %s", (int)in->tid, strerror(err));
		return -err;
	}
	if (read_status(in->tid, &state, &tgid, &tracer) < 0) {
		/* vanished between the two */
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d does not "
			"exist", (int)in->tid);
		return -ESRCH;
	}
	if (state == 'Z' || state == 'X') {
		/* the kernel refuses exiting tasks with EPERM */
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d has exited",
			(int)in->tid);
		return -ESRCH;
	}
	if (tracer > 0) {
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d is already "
			"traced by %d (a debugger? another hintmig?)",
			(int)in->tid, tracer);
		return -EBUSY;
	}
	if (tgid == (int)getpid()) {
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d is in our "
			"own process", (int)in->tid);
		return -EINVAL;
	}
	scope = yama_scope();
	if (scope >= 3)
		hm_logf(in->log, HM_LOG_ERROR, "inject: ptrace of thread %d "
			"refused: kernel.yama.ptrace_scope=%d forbids ptrace "
			"for everyone until reboot", (int)in->tid, scope);
	else if (scope >= 1)
		hm_logf(in->log, HM_LOG_ERROR, "inject: ptrace of thread %d "
			"refused: kernel.yama.ptrace_scope=%d, which requires "
			"CAP_SYS_PTRACE%s (run as root, or set the scope to 0)",
			(int)in->tid, scope,
			scope == 1 ? " unless the target is our descendant"
				   : "");
	else
		hm_logf(in->log, HM_LOG_ERROR, "inject: ptrace of thread %d "
			"refused: needs CAP_SYS_PTRACE, or the same user and a "
			"dumpable process (is it setuid or PR_SET_DUMPABLE 0?)",
			(int)in->tid);
	return -EPERM;
}

/* Wait for the thread's next stop. 0, or -ESRCH when it is gone. */
static int wait_stop(struct inj *in, int *status)
{
	pid_t w;
	int st;

	in->stopped = false;
	do
		w = waitpid(in->tid, &st, __WALL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == ECHILD ? -ESRCH : -errno;
	if (!WIFSTOPPED(st))
		return -ESRCH;	/* exited or killed */
	in->stopped = true;
	/* Seized tracees report group stops as PTRACE_EVENT_STOP too; with
	 * no PTRACE_SYSCALL and no options, the only stops without an event
	 * in the high bits are signal-delivery stops. */
	in->sigstop = (st >> 16) == 0;
	*status = st;
	return 0;
}

static void hold(struct inj *in, const siginfo_t *si)
{
	in->info->signals++;
	if (in->nheld < MAX_HELD)
		in->held[in->nheld++] = *si;
	else
		in->lost++;
}

/* The thread is in a signal-delivery stop for someone else's signal:
 * hold it; it is discarded when we resume with data 0. */
static int hold_current(struct inj *in)
{
	siginfo_t si;

	if (ptrace(PTRACE_GETSIGINFO, in->tid, NULL, &si) < 0)
		return -errno;
	hold(in, &si);
	return 0;
}

/* Is there 0f 05 at addr in the target? */
static bool syscall_insn_at(pid_t tid, unsigned long long addr)
{
	unsigned char b[2];
	struct iovec l = { b, sizeof(b) };
	struct iovec r = { (void *)(uintptr_t)addr, sizeof(b) };

	if (process_vm_readv(tid, &l, 1, &r, 1, 0) == 2)
		return b[0] == 0x0f && b[1] == 0x05;
	/* Execute-only text: PTRACE_PEEKTEXT reads with FOLL_FORCE. It reads
	 * a word, which may cross into an unmapped page from addr; the word
	 * ending at addr + 2 cannot (rip = addr + 2 was executed). */
	for (int back = 0; back <= 6; back += 6) {
		unsigned char w[sizeof(long)];
		long v;

		if (addr < (unsigned long long)back)
			continue;
		errno = 0;
		v = ptrace(PTRACE_PEEKTEXT, tid,
			   (void *)(uintptr_t)(addr - back), NULL);
		if (errno)
			continue;
		memcpy(w, &v, sizeof(w));
		return w[back] == 0x0f && w[back + 1] == 0x05;
	}
	return false;
}

/* Where to borrow a `syscall` from: the vDSO first (always mapped, small,
 * never unmapped), then libc's text, then any other readable executable
 * mapping. -1: not usable ([vsyscall] is execute-only, for one). */
static int map_rank(const char *perms, const char *path)
{
	const char *base = strrchr(path, '/');

	if (perms[0] != 'r' || perms[2] != 'x')
		return -1;
	if (!strcmp(path, "[vdso]"))
		return 0;
	base = base ? base + 1 : path;
	if (!strncmp(base, "libc.so", 7) || !strncmp(base, "libc-", 5))
		return 1;
	return 2;
}

/* First 0f 05 in [start, end) of the target, in *at. */
static bool scan_range(pid_t tid, unsigned long long start,
		       unsigned long long end, unsigned char *buf,
		       unsigned long long *at)
{
	unsigned long long a = start;

	while (a < end) {
		size_t n = end - a < SCAN_CHUNK ? (size_t)(end - a)
						: SCAN_CHUNK;
		struct iovec l = { buf, n };
		struct iovec r = { (void *)(uintptr_t)a, n };
		ssize_t got = process_vm_readv(tid, &l, 1, &r, 1, 0);

		if (got < 2)
			return false;
		for (ssize_t i = 0; i + 1 < got; i++) {
			if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
				*at = a + (unsigned long long)i;
				return true;
			}
		}
		/* overlap one byte: a pair may straddle two reads */
		a += (unsigned long long)got - 1;
	}
	return false;
}

static int find_in_maps(struct inj *in, unsigned long long *at)
{
	char path[64];
	char *line = NULL;
	size_t cap = 0;
	unsigned char *buf;
	FILE *f;
	int ret = -ENOEXEC;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)in->tid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	buf = malloc(SCAN_CHUNK);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	for (int want = 0; want <= 2 && ret < 0; want++) {
		rewind(f);
		while (ret < 0 && getline(&line, &cap, f) > 0) {
			unsigned long long s, e;
			char perms[5];
			char *name;
			int off = 0;

			if (sscanf(line, "%llx-%llx %4s %*s %*s %*s %n", &s, &e,
				   perms, &off) != 3 || off == 0)
				continue;
			name = line + off;
			name[strcspn(name, "\n")] = 0;
			if (map_rank(perms, name) != want)
				continue;
			if (scan_range(in->tid, s, e, buf, at)) {
				snprintf(in->where, sizeof(in->where), "%s",
					 *name ? name : "anonymous text");
				ret = 0;
			}
		}
	}
	free(line);
	free(buf);
	fclose(f);
	return ret;
}

/* Seize the thread, stop it, save its registers, pick the instruction. */
static int begin(struct inj *in)
{
	unsigned long long at = 0;
	int st, e;

	if (ptrace(PTRACE_SEIZE, in->tid, NULL, NULL) < 0)
		return seize_refused(in, errno);
	if (ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL) < 0)
		return -errno;	/* ESRCH: it died right after the seize */
	e = wait_stop(in, &st);
	if (e < 0)
		return e;
	if (in->sigstop) {
		e = hold_current(in);
		if (e < 0)
			return e;
	}
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &in->saved) < 0)
		return -errno;
	in->info->saved_rip = in->saved.rip;
	in->info->saved_orig_rax = (long long)in->saved.orig_rax;
	in->info->saved_rax = (long long)in->saved.rax;
	if (in->saved.cs != USER64_CS) {
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d runs 32-bit "
			"code (cs %#llx): not supported", (int)in->tid,
			(unsigned long long)in->saved.cs);
		return -ENOTSUP;
	}
	if ((long long)in->saved.orig_rax >= 0 && in->saved.rip >= 2 &&
	    syscall_insn_at(in->tid, in->saved.rip - 2)) {
		at = in->saved.rip - 2;
		in->info->at_rip = true;
		snprintf(in->where, sizeof(in->where), "behind its own "
			 "system call %lld", (long long)in->saved.orig_rax);
	} else {
		e = find_in_maps(in, &at);
		if (e == -ENOEXEC)
			hm_logf(in->log, HM_LOG_ERROR, "inject: no syscall "
				"instruction in any executable mapping of "
				"thread %d", (int)in->tid);
		if (e < 0)
			return e;
	}
	in->info->at = at;
	return 0;
}

/* A synchronous signal caused by the injected context itself: SIGSYS of
 * a seccomp filter refusing the call (1), the instruction fetch faulting
 * (-EFAULT); 0 for anything else. */
static int caused_by_us(const struct inj *in, const siginfo_t *si)
{
	unsigned long long addr = (unsigned long long)(uintptr_t)si->si_addr;

	if (si->si_code <= 0)
		return 0;	/* sent by a process */
	if (si->si_signo == SIGSYS && si->si_code == SYS_SECCOMP &&
	    addr == in->info->at + 2)
		return 1;
	if ((si->si_signo == SIGSEGV || si->si_signo == SIGBUS) &&
	    addr >= in->info->at && addr < in->info->at + 2)
		return -EFAULT;
	return 0;
}

/* Execute the installed context's one instruction. 0 with the thread in
 * our SIGTRAP stop and its registers in *r; 1 if seccomp refused the call;
 * -errno. Other signals on the way are held. */
static int step(struct inj *in, struct user_regs_struct *r)
{
	unsigned long long after = in->info->at + 2;

	for (int n = 0; n < MAX_STOPS; n++) {
		siginfo_t si;
		int st, e;

		/* data 0: the stop's signal is our trap (discarded) or was
		 * held; nothing is delivered on the injected context. */
		if (ptrace(PTRACE_SINGLESTEP, in->tid, NULL, NULL) < 0)
			return -errno;
		e = wait_stop(in, &st);
		if (e < 0)
			return e;
		if (!in->sigstop)
			continue;	/* a group stop: step again */
		if (ptrace(PTRACE_GETREGS, in->tid, NULL, r) < 0)
			return -errno;
		/* Only executing the `syscall` moves rip there in one step,
		 * and the kernel's step trap is dequeued before any other
		 * signal (synchronous first). */
		if (WSTOPSIG(st) == SIGTRAP && r->rip == after)
			return 0;
		if (ptrace(PTRACE_GETSIGINFO, in->tid, NULL, &si) < 0)
			return -errno;
		e = caused_by_us(in, &si);
		if (e)
			return e;
		hold(in, &si);
	}
	return -EIO;
}

static int restore(struct inj *in)
{
	if (!in->dirty)
		return 0;
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved) < 0)
		return -errno;
	in->dirty = false;
	return 0;
}

/* Run nr(args) on the stopped thread; *ret as the kernel returned it. The
 * registers are `saved` again when this returns (unless the thread died). */
static int call(struct inj *in, long nr, const long args[6], long *ret)
{
	struct user_regs_struct r;
	int e, e2;

	for (int issue = 0;; issue++) {
		r = in->saved;
		r.orig_rax = (unsigned long long)-1;
		r.rax = (unsigned long long)nr;
		r.rdi = (unsigned long long)args[0];
		r.rsi = (unsigned long long)args[1];
		r.rdx = (unsigned long long)args[2];
		r.r10 = (unsigned long long)args[3];
		r.r8 = (unsigned long long)args[4];
		r.r9 = (unsigned long long)args[5];
		r.rip = in->info->at;
		in->dirty = true;
		if (ptrace(PTRACE_SETREGS, in->tid, NULL, &r) < 0) {
			e = -errno;
			break;
		}
		e = step(in, &r);
		if (e == 0 && is_restart(r.rax) && issue < MAX_REISSUE) {
			in->info->restarts++;
			continue;
		}
		break;
	}
	/* At once: the window in which our death leaves the thread with the
	 * injected registers ends here. */
	e2 = in->stopped ? restore(in) : 0;
	if (e == 0 && e2 < 0)
		e = e2;
	if (e == 1) {
		hm_logf(in->log, HM_LOG_WARN, "inject: a seccomp filter of "
			"thread %d refused system call %ld", (int)in->tid, nr);
		*ret = -ENOSYS;
		return 0;
	}
	if (e == -EIO)
		hm_logf(in->log, HM_LOG_ERROR, "inject: thread %d did not come "
			"back from system call %ld at %#llx", (int)in->tid, nr,
			in->info->at);
	if (e == 0)
		*ret = is_restart(r.rax) ? -EINTR : (long)r.rax;
	return e;
}

/* Queue a held signal to the thread again, siginfo kept where the kernel
 * lets us (a negative si_code other than SI_TKILL). */
static void resend(struct inj *in, const siginfo_t *si, int *tgid)
{
	siginfo_t copy = *si;
	long r = -1;

	if (*tgid <= 0) {
		char state;
		int tracer;

		read_status(in->tid, &state, tgid, &tracer);
	}
	if (si->si_code < 0 && si->si_code != SI_TKILL)
		r = syscall(SYS_rt_tgsigqueueinfo, *tgid, in->tid,
			    si->si_signo, &copy);
	if (r < 0)
		r = syscall(SYS_tgkill, *tgid, in->tid, si->si_signo);
	if (r < 0)
		hm_logf(in->log, HM_LOG_WARN, "inject: signal %d for thread %d "
			"held back and lost: %s", si->si_signo, (int)in->tid,
			strerror(errno));
}

/* Give back held signals and detach. The thread is stopped, registers
 * `saved` (or the thread is gone and there is nothing to do). */
static void end(struct inj *in)
{
	long data = 0;
	int tgid = -1, first = 0;

	if (!in->stopped)
		return;
	if (restore(in) < 0)
		hm_logf(in->log, HM_LOG_ERROR, "inject: cannot restore the "
			"registers of thread %d: %s", (int)in->tid,
			strerror(errno));
	/* PTRACE_DETACH's data is a signal to deliver only from a
	 * signal-delivery stop; from an event stop all go by queue. */
	if (in->sigstop && in->nheld > 0) {
		first = 1;
		data = in->held[0].si_signo;
	}
	for (int i = first; i < in->nheld; i++)
		resend(in, &in->held[i], &tgid);
	if (data && ptrace(PTRACE_SETSIGINFO, in->tid, NULL, &in->held[0]) < 0)
		hm_logf(in->log, HM_LOG_WARN, "inject: thread %d: signal %ld "
			"given back without its siginfo: %s", (int)in->tid,
			data, strerror(errno));
	if (ptrace(PTRACE_DETACH, in->tid, NULL, (void *)data) < 0)
		hm_logf(in->log, HM_LOG_ERROR, "inject: PTRACE_DETACH of thread "
			"%d: %s", (int)in->tid, strerror(errno));
	in->stopped = false;
	if (in->lost)
		hm_logf(in->log, HM_LOG_WARN, "inject: thread %d: %d signals "
			"beyond the first %d that arrived meanwhile were lost",
			(int)in->tid, in->lost, MAX_HELD);
}

static int check_args(pid_t pid, const struct hm_log *log)
{
	if (pid <= 0)
		return -EINVAL;
	if (pid == getpid()) {
		hm_logf(log, HM_LOG_ERROR, "inject: %d is our own process",
			(int)pid);
		return -EINVAL;
	}
	return 0;
}

static void log_done(const struct inj *in, long nr, long ret)
{
	const struct hm_inject_info *i = in->info;

	if ((long long)i->saved_orig_rax >= 0)
		hm_logf(in->log, HM_LOG_DEBUG, "inject: thread %d: system call "
			"%ld at %#llx (%s) returned %ld; the thread was in "
			"system call %lld (rax %lld); %d signals held, %d "
			"reissues", (int)in->tid, nr, i->at, in->where, ret,
			i->saved_orig_rax, i->saved_rax, i->signals,
			i->restarts);
	else
		hm_logf(in->log, HM_LOG_DEBUG, "inject: thread %d: system call "
			"%ld at %#llx (%s) returned %ld; the thread was in user "
			"mode at %#llx; %d signals held, %d reissues",
			(int)in->tid, nr, i->at, in->where, ret, i->saved_rip,
			i->signals, i->restarts);
}

int hm_inject_syscall_info(pid_t pid, long nr, const long args[6], long *ret,
			   struct hm_inject_info *info,
			   const struct hm_log *log)
{
	struct hm_inject_info local;
	struct inj in;
	int e;

	e = check_args(pid, log);
	if (e < 0)
		return e;
	if (nr < 0 || !args || !ret)
		return -EINVAL;
	if (nr_refused(nr)) {
		hm_logf(log, HM_LOG_ERROR, "inject: system call %ld does not "
			"return to its caller's context; not injected", nr);
		return -EINVAL;
	}
	memset(&in, 0, offsetof(struct inj, held));
	in.tid = pid;
	in.log = log;
	in.info = info ? info : &local;
	memset(in.info, 0, sizeof(*in.info));
	e = begin(&in);
	if (e == 0)
		e = call(&in, nr, args, ret);
	end(&in);
	if (e == 0)
		log_done(&in, nr, *ret);
	else if (e != -EPERM && e != -EBUSY && e != -ESRCH)
		hm_logf(log, HM_LOG_ERROR, "inject: system call %ld into thread "
			"%d: %s", nr, (int)pid, strerror(-e));
	return e;
}

int hm_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
		      const struct hm_log *log)
{
	return hm_inject_syscall_info(pid, nr, args, ret, NULL, log);
}

/* Is our fd the same open file as the target's tfd? 1 yes, 0 no, -errno
 * when it cannot tell (no kcmp in this kernel). */
static int same_file(pid_t pid, int fd, int tfd)
{
	long r = syscall(SYS_kcmp, (long)getpid(), (long)pid, KCMP_FILE,
			 (long)fd, (long)tfd);

	if (r < 0)
		return -errno;
	return r == 0;
}

int hm_inject_userfaultfd(pid_t pid, int flags, const struct hm_log *log)
{
	const int allowed = O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY;
	struct hm_inject_info info;
	long args[6] = { 0 }, remote = -1, rc = 0;
	struct inj in;
	int e, fd = -1, same;

	e = check_args(pid, log);
	if (e < 0)
		return e;
	if (flags & ~allowed)
		return -EINVAL;
	memset(&in, 0, offsetof(struct inj, held));
	memset(&info, 0, sizeof(info));
	in.tid = pid;
	in.log = log;
	in.info = &info;
	/* One session: the thread stays stopped from userfaultfd() to
	 * close(), so it never runs holding the fd. */
	e = begin(&in);
	if (e < 0)
		goto out;
	args[0] = flags;
	e = call(&in, __NR_userfaultfd, args, &remote);
	if (e < 0)
		goto out;
	if (remote < 0) {
		e = (int)remote;
		hm_logf(log, HM_LOG_ERROR, "inject: userfaultfd() inside "
			"process %d: %s%s", (int)pid, strerror(-e),
			e == -EPERM ? " (it lacks CAP_SYS_PTRACE and "
				      "vm.unprivileged_userfaultfd is 0)" :
			e == -ENOSYS ? " (no userfaultfd in this kernel, or "
				       "a seccomp filter refuses it)" : "");
		goto out;
	}
	fd = hm_uffd_take_remote(pid, (int)remote);
	if (fd < 0)
		hm_logf(log, HM_LOG_ERROR, "inject: pidfd_getfd of fd %ld of "
			"process %d: %s", remote, (int)pid, strerror(-fd));
	/* R9: the process must not keep its copy, whether or not we got
	 * ours. Unless it is no longer that file: then it is not ours to
	 * close (some thread of it closed and reused the number). */
	same = fd >= 0 ? same_file(pid, fd, (int)remote) : -ENOSYS;
	if (same == 0) {
		hm_logf(log, HM_LOG_ERROR, "inject: fd %ld of process %d is no "
			"longer the userfaultfd created there", remote,
			(int)pid);
		e = -EBADF;
		goto out;
	}
	args[0] = remote;
	e = call(&in, __NR_close, args, &rc);
	/* close() releases the descriptor even when it reports EINTR */
	if (e == 0 && rc < 0 && rc != -EINTR)
		e = (int)rc;
	if (e < 0) {
		hm_logf(log, HM_LOG_ERROR, "inject: cannot close fd %ld, the "
			"userfaultfd copy of process %d: %s", remote, (int)pid,
			strerror(-e));
		goto out;
	}
	if (fd < 0)
		e = fd;
out:
	end(&in);
	if (e < 0) {
		if (fd >= 0)
			close(fd);
		return e;
	}
	hm_logf(log, HM_LOG_DEBUG, "inject: userfaultfd of process %d taken "
		"as our fd %d (its fd %ld closed); %d signals held back",
		(int)pid, fd, remote, info.signals);
	return fd;
}

#else /* !x86_64 */

int hm_inject_syscall_info(pid_t pid, long nr, const long args[6], long *ret,
			   struct hm_inject_info *info,
			   const struct hm_log *log)
{
	(void)pid;
	(void)nr;
	(void)args;
	(void)ret;
	(void)info;
	hm_logf(log, HM_LOG_ERROR, "inject: system call injection is "
		"implemented for x86_64 only");
	return -ENOTSUP;
}

int hm_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
		      const struct hm_log *log)
{
	return hm_inject_syscall_info(pid, nr, args, ret, NULL, log);
}

int hm_inject_userfaultfd(pid_t pid, int flags, const struct hm_log *log)
{
	(void)pid;
	(void)flags;
	hm_logf(log, HM_LOG_ERROR, "inject: system call injection is "
		"implemented for x86_64 only");
	return -ENOTSUP;
}

#endif

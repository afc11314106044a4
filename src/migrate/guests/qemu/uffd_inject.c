/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System call injection with ptrace (uffd_inject.h).
 *
 * The sequence, and why each step is safe for a running QEMU:
 *  1. PTRACE_SEIZE (no SIGSTOP is sent, unlike ATTACH) and
 *     PTRACE_INTERRUPT: the thread stops at its next return to user mode,
 *     inside the kernel's signal handling, in a PTRACE_EVENT_STOP (or in a
 *     signal-delivery stop if a signal was already pending: that stop
 *     serves as well, and the signal is sent again after detaching). For a
 *     grant (below) every thread of the process is stopped this way, and
 *     the task list is read again until no thread is left running.
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
 *     No code of the target is written. PTRACE_SINGLESTEP executes that
 *     one instruction; the trap after it stops the thread again with the
 *     result in rax, and the saved registers go back at once.
 *  4. PTRACE_DETACH. Signals that arrived meanwhile (their delivery stops
 *     were suppressed so that no handler runs on the injected context)
 *     are sent again with tgkill.
 * If this process dies during 3 the kernel detaches the thread with the
 * injected registers: the window is one instruction, but it exists;
 * hintmig injects only at attach.
 *
 * The grant through /dev/userfaultfd (R15 in docs/design.md). A process
 * that may not call userfaultfd(2) for kernel faults (not CAP_SYS_PTRACE,
 * vm.unprivileged_userfaultfd 0: QEMU as libvirt-qemu) can still be given
 * one userfaultfd of its own mm: root opens /dev/userfaultfd (its mode is
 * the permission) and, with every thread of the process stopped, passes
 * that descriptor in (a socketpair made inside it, SCM_RIGHTS), has it
 * call ioctl(USERFAULTFD_IOC_NEW), closes the device descriptor, the
 * sockets and the new userfaultfd inside it (after taking the latter with
 * pidfd_getfd), unmaps the scratch page it used, and checks the process's
 * descriptor table before any thread runs again: nothing new is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hintmig/wp_tracker.h>

#include "migrate/guests/qemu/uffd_inject.h"
#include "uffd_compat.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif
#define MAX_PENDING 8
#define SCAN_CHUNK (1u << 20)
#define MAX_WATCHED 64		/* userfaultfd-ish descriptors remembered */

/* (uffd_inject.h) */
int hm_proc_status_field(pid_t tid, const char *key)
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

#if defined(__x86_64__)

struct stopped {
	pid_t tid;
	struct user_regs_struct saved;
	int pending[MAX_PENDING];	/* signals to send again */
	int npending;
};

struct hm_inject_session {
	pid_t pid;			/* the thread injected into */
	pid_t tgid;
	struct stopped *t;		/* t[0]: pid; then the other threads */
	size_t n, cap;
	uint64_t at;			/* a `syscall` instruction */
	const struct hm_log *log;
};

static void remember_signal(struct stopped *t, int sig)
{
	if (t->npending < MAX_PENDING)
		t->pending[t->npending++] = sig;
}

#define STOP_WAIT_MS 5000

/* Wait for the next stop of tid, for at most STOP_WAIT_MS (a thread in
 * an uninterruptible sleep does not stop; every other thread of the
 * process may be stopped meanwhile, so this must not wait forever): its
 * status, or -errno (-ESRCH: the thread exited or was killed,
 * -ETIMEDOUT). */
static int wait_stop(pid_t tid)
{
	for (int waited = 0;; waited++) {
		int st = 0;
		pid_t w = waitpid(tid, &st, __WALL | WNOHANG);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == tid && (WIFEXITED(st) || WIFSIGNALED(st)))
			return -ESRCH;
		if (w == tid && WIFSTOPPED(st))
			return st;
		if (waited >= STOP_WAIT_MS * 10)
			return -ETIMEDOUT;
		usleep(100);
	}
}

/* Has thread tid exited (gone, or a zombie)? */
static bool thread_gone(pid_t tgid, pid_t tid)
{
	char path[96], buf[256], *p;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)tgid,
		 (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
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

static void detach(struct hm_inject_session *s, struct stopped *t)
{
	ptrace(PTRACE_DETACH, t->tid, 0, 0);
	for (int i = 0; i < t->npending && s->tgid > 0; i++)
		syscall(SYS_tgkill, s->tgid, t->tid, t->pending[i]);
}

/* Seize and stop one thread; its registers in t->saved. */
static int seize(struct hm_inject_session *s, struct stopped *t)
{
	int st, tr;

	if (ptrace(PTRACE_SEIZE, t->tid, 0, 0) < 0) {
		int e = errno;

		tr = hm_proc_status_field(t->tid, "TracerPid");
		if (e == EPERM && tr > 0) {
			hm_logf(s->log, HM_LOG_ERROR, "thread %d is already "
				"traced by process %d", (int)t->tid, tr);
			return -EBUSY;
		}
		if (e == EPERM)
			hm_logf(s->log, HM_LOG_ERROR, "ptrace of thread %d "
				"refused: hintmig needs CAP_SYS_PTRACE over "
				"it (root; see also "
				"/proc/sys/kernel/yama/ptrace_scope)",
				(int)t->tid);
		return -e;
	}
	if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0)
		return -errno;
	st = wait_stop(t->tid);
	if (st < 0)
		return st;	/* gone, or not stopping (see add_thread) */
	if ((st >> 16) != PTRACE_EVENT_STOP) {
		/* a signal-delivery stop came first: the signal is taken
		 * out now and sent again after detaching */
		remember_signal(t, WSTOPSIG(st));
	}
	if (ptrace(PTRACE_GETREGS, t->tid, 0, &t->saved) < 0) {
		int e = -errno;

		detach(s, t);	/* stopped: let it go, its signal again */
		return e;
	}
	return 0;
}


static bool seized(const struct hm_inject_session *s, pid_t tid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->t[i].tid == tid)
			return true;
	return false;
}

/* Seize tid into s->t[s->n]. -ESRCH is the thread's exit. */
static int add_thread(struct hm_inject_session *s, pid_t tid)
{
	struct stopped *t;
	int e;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct stopped *nt = realloc(s->t, cap * sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		s->t = nt;
		s->cap = cap;
	}
	t = &s->t[s->n];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	e = seize(s, t);
	if (e == 0)
		s->n++;
	/* PTRACE_SEIZE of a thread that is exiting is refused with EPERM:
	 * a worker thread ending is no reason to fail */
	if (e == -EPERM && s->n && thread_gone(s->tgid, tid))
		return -ESRCH;
	/* seized, but it did not stop in time: it stays ours until it does
	 * or we exit (the kernel then detaches it); the grant fails */
	return e;
}

/* Stop every thread of s->tgid: read the task list until a pass finds
 * none running that is not stopped by us (a thread may be cloning
 * another while we list). */
static int stop_all(struct hm_inject_session *s)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task", (int)s->tgid);
	for (int pass = 0; pass < 100; pass++) {
		bool added = false;
		struct dirent *d;
		DIR *dir = opendir(path);

		if (!dir)
			return -errno;
		while ((d = readdir(dir))) {
			pid_t tid = (pid_t)atoi(d->d_name);
			int e;

			if (tid <= 0 || seized(s, tid))
				continue;
			e = add_thread(s, tid);
			if (e == -ESRCH)
				continue;	/* it exited meanwhile */
			if (e < 0) {
				closedir(dir);
				return e;
			}
			added = true;
		}
		closedir(dir);
		if (!added)
			return 0;
	}
	return -EAGAIN;
}

int hm_inject_begin(pid_t tid, int pidfd, bool all_threads,
		    const struct hm_log *log, struct hm_inject_session **out)
{
	struct hm_inject_session *s = calloc(1, sizeof(*s));
	int e;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->pid = tid;
	s->log = log;
	s->tgid = hm_proc_status_field(tid, "Tgid");
	e = add_thread(s, tid);
	if (e < 0)
		goto fail;
	/* R14: the pidfd names the process identified; if it has exited,
	 * the thread just seized is another process that got its pid */
	if (pidfd >= 0 && hm_pidfd_exited(pidfd)) {
		hm_logf(log, HM_LOG_ERROR, "process %d exited before it was "
			"stopped: nothing done to whatever has its pid now",
			(int)tid);
		e = -ESRCH;
		goto fail;
	}
	if (all_threads) {
		e = stop_all(s);
		if (e < 0) {
			hm_logf(log, HM_LOG_ERROR, "process %d: cannot stop "
				"all its threads: %s", (int)s->tgid,
				strerror(-e));
			goto fail;
		}
	}
	if ((long long)s->t[0].saved.orig_rax >= 0 && s->t[0].saved.rip >= 2 &&
	    is_syscall_insn(tid, s->t[0].saved.rip - 2))
		s->at = s->t[0].saved.rip - 2;
	else
		s->at = find_syscall_insn(tid);
	if (!s->at) {
		hm_logf(log, HM_LOG_ERROR, "thread %d: no syscall instruction "
			"found to run a system call at", (int)tid);
		e = -ENOEXEC;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	hm_inject_end(s);
	return e;
}

/* Single-step once from a stop; suppress other signals until the trap. */
static int step(struct stopped *t)
{
	for (int tries = 0; tries < 64; tries++) {
		int st;

		if (ptrace(PTRACE_SINGLESTEP, t->tid, 0, 0) < 0)
			return -errno;
		st = wait_stop(t->tid);
		if (st < 0)
			return st;
		if ((st >> 16) == 0 && WSTOPSIG(st) == SIGTRAP)
			return 0;
		if ((st >> 16) == 0)
			remember_signal(t, WSTOPSIG(st));
		/* a signal or event stop before the instruction ran: the
		 * registers are still the injected ones, step again */
	}
	return -EAGAIN;
}

int hm_inject_call(struct hm_inject_session *s, long nr, const long args[6],
		   long *ret)
{
	struct stopped *t = &s->t[0];
	struct user_regs_struct r = t->saved;
	int e;

	r.rax = (unsigned long long)nr;
	r.orig_rax = (unsigned long long)-1;
	r.rdi = (unsigned long long)args[0];
	r.rsi = (unsigned long long)args[1];
	r.rdx = (unsigned long long)args[2];
	r.r10 = (unsigned long long)args[3];
	r.r8 = (unsigned long long)args[4];
	r.r9 = (unsigned long long)args[5];
	r.rip = s->at;
	if (ptrace(PTRACE_SETREGS, t->tid, 0, &r) < 0)
		return -errno;
	e = step(t);
	if (e == 0 && ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0)
		e = -errno;
	if (e == 0 && r.rip != s->at + 2) {
		hm_logf(s->log, HM_LOG_ERROR, "thread %d: the injected system "
			"call stopped at 0x%llx, not after it", (int)t->tid,
			(unsigned long long)r.rip);
		e = -EFAULT;
	}
	if (e == 0)
		*ret = (long)r.rax;
	/* the thread's own registers back at once, between calls too */
	if (ptrace(PTRACE_SETREGS, t->tid, 0, &t->saved) < 0 && e == 0)
		e = -errno;
	if (e < 0)
		hm_logf(s->log, HM_LOG_ERROR, "system call injection into "
			"thread %d: %s", (int)t->tid, strerror(-e));
	return e;
}

void hm_inject_end(struct hm_inject_session *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		detach(s, &s->t[i]);
	free(s->t);
	free(s);
}

int hm_inject_syscall(pid_t tid, long nr, const long args[6], long *ret,
		      const struct hm_log *log)
{
	struct hm_inject_session *s;
	int e = hm_inject_begin(tid, -1, false, log, &s);

	if (e < 0)
		return e;
	e = hm_inject_call(s, nr, args, ret);
	hm_inject_end(s);
	return e;
}

/* ---- the grant -------------------------------------------------------------- */

/* The descriptors of pid that are a userfaultfd or /dev/userfaultfd. */
static int uffd_fds(pid_t pid, int *fds, int max)
{
	char path[64], link[64], lp[320];
	struct dirent *d;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		ssize_t l;

		if (d->d_name[0] == '.')
			continue;
		snprintf(lp, sizeof(lp), "%s/%s", path, d->d_name);
		l = readlink(lp, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = 0;
		if (strcmp(link, "anon_inode:[userfaultfd]") &&
		    strcmp(link, "/dev/userfaultfd"))
			continue;
		if (n < max)
			fds[n] = atoi(d->d_name);
		n++;
	}
	closedir(dir);
	return n;
}

int hm_inject_grants_held(pid_t pid)
{
	int fds[MAX_WATCHED];

	return uffd_fds(pid, fds, MAX_WATCHED);
}

/* close(fd) inside the process; -errno of the injection or the call. */
static int remote_close(struct hm_inject_session *s, long fd)
{
	long args[6] = { fd, 0, 0, 0, 0, 0 }, rc = 0;
	int e = hm_inject_call(s, __NR_close, args, &rc);

	return e < 0 ? e : (int)rc;
}

/* The layout of the scratch page inside the process. */
enum { SCR_MSG = 0, SCR_IOV = 128, SCR_BYTE = 192, SCR_CTL = 256,
       SCR_SV = 512, SCR_SIZE = 4096 };

static int remote_write(pid_t pid, uint64_t at, const void *p, size_t n)
{
	struct iovec l = { (void *)p, n }, r = { (void *)(uintptr_t)at, n };

	return process_vm_writev(pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0
								   : -EIO;
}

static int remote_read(pid_t pid, uint64_t at, void *p, size_t n)
{
	struct iovec l = { p, n }, r = { (void *)(uintptr_t)at, n };

	return process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0
								  : -EIO;
}

/* Send fd over our copy of the process's socket sock (pidfd_getfd). */
static int send_fd_into(int pidfd, int sock, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char byte = 'u';
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	int w = hm_sys_pidfd_getfd(pidfd, sock, 0), e = 0;

	if (w < 0)
		return -errno;
	memset(u.buf, 0, sizeof(u.buf));
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(w, &m, MSG_DONTWAIT) != 1)
		e = -errno;
	close(w);
	return e;
}

/* Inside the stopped process: receive /dev/userfaultfd and run
 * ioctl(USERFAULTFD_IOC_NEW, flags) with it. The process's userfaultfd
 * number, or -errno; everything else made inside is closed again. */
static long new_via_device(struct hm_inject_session *s, int pidfd, int flags)
{
	long a[6] = { 0 }, scratch = -1, r = 0, uffd = -ENOTRECOVERABLE;
	int sv[2] = { -1, -1 }, rdev = -1, dev, e;
	pid_t pid = s->pid;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		e = -errno;
		hm_logf(s->log, HM_LOG_ERROR, "/dev/userfaultfd: %s (the "
			"process may not call userfaultfd(2) itself, and the "
			"device is how root hands it one: Linux 6.1+)",
			strerror(errno));
		return e;
	}
	a[0] = 0;
	a[1] = SCR_SIZE;
	a[2] = PROT_READ | PROT_WRITE;
	a[3] = MAP_PRIVATE | MAP_ANONYMOUS;
	a[4] = -1;
	e = hm_inject_call(s, __NR_mmap, a, &scratch);
	if (e == 0 && (unsigned long)scratch > -4096UL)
		e = (int)scratch;
	if (e < 0) {
		scratch = -1;
		goto out;
	}
	memset(a, 0, sizeof(a));
	a[0] = AF_UNIX;
	a[1] = SOCK_DGRAM | SOCK_CLOEXEC;
	a[3] = scratch + SCR_SV;
	e = hm_inject_call(s, __NR_socketpair, a, &r);
	if (e == 0 && r < 0)
		e = (int)r;
	if (e == 0)
		e = remote_read(pid, (uint64_t)scratch + SCR_SV, sv,
				sizeof(sv));
	if (e == 0)
		e = send_fd_into(pidfd, sv[1], dev);
	if (e == 0) {
		struct iovec iov = {
			(void *)(uintptr_t)(scratch + SCR_BYTE), 1 };
		struct msghdr m = {
			.msg_iov = (void *)(uintptr_t)(scratch + SCR_IOV),
			.msg_iovlen = 1,
			.msg_control = (void *)(uintptr_t)(scratch + SCR_CTL),
			.msg_controllen = CMSG_SPACE(sizeof(int)) };

		e = remote_write(pid, (uint64_t)scratch + SCR_IOV, &iov,
				 sizeof(iov));
		if (e == 0)
			e = remote_write(pid, (uint64_t)scratch + SCR_MSG, &m,
					 sizeof(m));
	}
	if (e == 0) {
		memset(a, 0, sizeof(a));
		a[0] = sv[0];
		a[1] = scratch + SCR_MSG;
		a[2] = MSG_CMSG_CLOEXEC | MSG_DONTWAIT;
		e = hm_inject_call(s, __NR_recvmsg, a, &r);
		if (e == 0 && r != 1)
			e = r < 0 ? (int)r : -EPROTO;
	}
	if (e == 0) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr m;
		struct cmsghdr *c;

		e = remote_read(pid, (uint64_t)scratch + SCR_MSG, &m,
				sizeof(m));
		if (e == 0)
			e = remote_read(pid, (uint64_t)scratch + SCR_CTL,
					u.buf, sizeof(u.buf));
		m.msg_control = u.buf;
		c = e == 0 ? CMSG_FIRSTHDR(&m) : NULL;
		if (c && c->cmsg_level == SOL_SOCKET &&
		    c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&rdev, CMSG_DATA(c), sizeof(int));
		else if (e == 0)
			e = (m.msg_flags & MSG_CTRUNC) ? -EACCES : -EPROTO;
		if (e == -EACCES)
			hm_logf(s->log, HM_LOG_ERROR, "process %d refused the "
				"/dev/userfaultfd descriptor (an LSM profile "
				"without /dev/userfaultfd rw? see "
				"docs/libvirt.md, AppArmor)", (int)pid);
	}
	if (e == 0) {
		memset(a, 0, sizeof(a));
		a[0] = rdev;
		a[1] = USERFAULTFD_IOC_NEW;
		a[2] = flags;
		e = hm_inject_call(s, __NR_ioctl, a, &r);
		if (e == 0)
			uffd = r;	/* the process's fd, or its -errno */
	}
out:
	close(dev);
	/* R15: nothing that was made inside stays there */
	if (rdev >= 0 && remote_close(s, rdev) < 0)
		e = e < 0 ? e : -ENOTRECOVERABLE;
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0 && remote_close(s, sv[i]) < 0)
			e = e < 0 ? e : -ENOTRECOVERABLE;
	if (scratch >= 0) {
		memset(a, 0, sizeof(a));
		a[0] = scratch;
		a[1] = SCR_SIZE;
		if (hm_inject_call(s, __NR_munmap, a, &r) < 0 || r < 0)
			e = e < 0 ? e : -ENOTRECOVERABLE;
	}
	if (e < 0) {
		if (uffd >= 0)
			remote_close(s, uffd);
		return e;
	}
	return uffd;
}

int hm_inject_userfaultfd(pid_t pid, int pidfd, int flags,
			  const struct hm_log *log)
{
	long args[6] = { flags, 0, 0, 0, 0, 0 }, remote = -1;
	int before[MAX_WATCHED], nbefore, fd = -1, e, own_pidfd = -1;
	const char *how = "its own userfaultfd(2)";
	struct hm_inject_session *s;

	if (pidfd < 0) {
		own_pidfd = pidfd = hm_sys_pidfd_open(pid, 0);
		if (pidfd < 0)
			return -errno;
	}
	e = hm_inject_begin(pid, pidfd, true, log, &s);
	if (e < 0)
		goto done;
	nbefore = uffd_fds(pid, before, MAX_WATCHED);
	e = hm_inject_call(s, __NR_userfaultfd, args, &remote);
	if (e == 0 && (remote == -EPERM || remote == -ENOSYS)) {
		how = "/dev/userfaultfd, handed in for one ioctl";
		remote = new_via_device(s, pidfd, flags);
		if (remote < 0 && remote != -EPERM)
			e = (int)remote;
	}
	if (e == 0 && remote < 0) {
		hm_logf(log, HM_LOG_ERROR, "userfaultfd() inside process %d: "
			"%s", (int)pid, strerror((int)-remote));
		e = (int)remote;
	}
	if (e == 0) {
		fd = hm_sys_pidfd_getfd(pidfd, (int)remote, 0);
		if (fd < 0)
			e = -errno;
		/* R9: whatever happened, the process must not keep its copy */
		if (remote_close(s, remote) < 0 && e == 0)
			e = -ENOTRECOVERABLE;
	}
	/* R15: before any thread runs again, nothing new is left inside */
	if (nbefore >= 0) {
		int after[MAX_WATCHED], nafter = uffd_fds(pid, after,
							  MAX_WATCHED);

		for (int i = 0; i < nafter && i < MAX_WATCHED; i++) {
			bool old = false;

			for (int j = 0; j < nbefore && j < MAX_WATCHED; j++)
				old |= before[j] == after[i];
			if (old)
				continue;
			hm_logf(log, HM_LOG_ERROR, "process %d still holds "
				"descriptor %d made for it: closing it",
				(int)pid, after[i]);
			remote_close(s, after[i]);
			e = e < 0 ? e : -ENOTRECOVERABLE;
		}
	}
	hm_inject_end(s);
	if (e == 0)
		hm_logf(log, HM_LOG_INFO, "process %d: userfaultfd made in it "
			"through %s; nothing of it left inside", (int)pid,
			how);
done:
	if (own_pidfd >= 0)
		close(own_pidfd);
	if (e < 0) {
		if (fd >= 0)
			close(fd);
		return e;
	}
	return fd;
}

#else /* !__x86_64__ */

int hm_inject_begin(pid_t tid, int pidfd, bool all_threads,
		    const struct hm_log *log, struct hm_inject_session **out)
{
	(void)tid;
	(void)pidfd;
	(void)all_threads;
	*out = NULL;
	hm_logf(log, HM_LOG_ERROR, "system call injection: x86_64 only");
	return -ENOTSUP;
}

int hm_inject_call(struct hm_inject_session *s, long nr, const long args[6],
		   long *ret)
{
	(void)s;
	(void)nr;
	(void)args;
	(void)ret;
	return -ENOTSUP;
}

void hm_inject_end(struct hm_inject_session *s)
{
	(void)s;
}

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

int hm_inject_userfaultfd(pid_t pid, int pidfd, int flags,
			  const struct hm_log *log)
{
	(void)pid;
	(void)pidfd;
	(void)flags;
	hm_logf(log, HM_LOG_ERROR, "system call injection: x86_64 only");
	return -ENOTSUP;
}

int hm_inject_grants_held(pid_t pid)
{
	(void)pid;
	return -ENOTSUP;
}

#endif

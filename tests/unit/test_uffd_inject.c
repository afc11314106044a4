/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System call injection with ptrace (src/migrate/uffd_inject.c), on child
 * processes that check their own work:
 *  - a child blocked in read(2) on a pipe (a restartable call): getpid()
 *    injected returns its pid; userfaultfd() injected gives us a working
 *    userfaultfd and leaves none in the child (R9); the child's read then
 *    completes with the right bytes (the interrupted call was restarted);
 *  - a child blocked in nanosleep (ERESTART_RESTARTBLOCK): it still sleeps
 *    at least what it asked for;
 *  - a child spinning in user space (no system call to reuse: the
 *    instruction comes from its libc) survives 200 injections with its
 *    registers intact: it checks a register-heavy computation every turn;
 *  - a child running as nobody (userfaultfd(2) refused to it) gets one
 *    through /dev/userfaultfd (R15), which sees a kernel-mode fault;
 *    nothing is left in it;
 *  - errors: a pid that does not exist (-ESRCH), a thread already traced
 *    by another process (-EBUSY).
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include <hintmig/wp_tracker.h>

#include "hm_test.h"
#include "migrate/guests/qemu/uffd_inject.h"

static const struct hm_log test_log = { hm_log_stderr, NULL, HM_LOG_WARN };

static int child_holds_uffd(pid_t pid)
{
	char path[64], link[128], p[128];
	int found = 0;

	for (int fd = 0; fd < 256; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		snprintf(p, sizeof(p), "%s", link);
		if (strstr(p, "userfaultfd"))
			found++;
	}
	return found;
}

static pid_t reap_ok(pid_t pid)
{
	int st;

	HM_CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		hm_test_fail("child %d ended with status 0x%x", (int)pid, st);
	return pid;
}

/* Sleep until the child is blocked in the kernel (state S). */
static void wait_sleeping(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 2000; i++) {
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = 0;
			p = strrchr(buf, ')');
			if (p && p[1] == ' ' && p[2] == 'S')
				return;
		}
		hm_test_sleep_ms(1);
	}
	hm_test_fail("child %d never blocked", (int)pid);
}

static void test_blocked_read(void)
{
	static const char msg[] = "restarted read got this";
	long args[6] = { 0 }, ret = 0;
	int pfd[2], uffd;
	struct uffdio_api api = { .api = UFFD_API };
	pid_t pid;

	HM_CHECK(pipe(pfd) == 0);
	pid = fork();
	HM_CHECK(pid >= 0);
	if (pid == 0) {
		char buf[64] = "";
		ssize_t n;

		close(pfd[1]);
		n = read(pfd[0], buf, sizeof(buf) - 1);
		/* EINTR here would mean the restart failed */
		_exit(n == (ssize_t)strlen(msg) && !strcmp(buf, msg) ? 0 : 1);
	}
	close(pfd[0]);
	wait_sleeping(pid);
	HM_CHECK_OK(hm_inject_syscall(pid, SYS_getpid, args, &ret, &test_log));
	HM_CHECK_EQ(ret, pid);
	uffd = hm_inject_userfaultfd(pid, -1, O_CLOEXEC | O_NONBLOCK,
				     &test_log);
	HM_CHECK_OK(uffd);
	HM_CHECK(ioctl(uffd, UFFDIO_API, &api) == 0);
	HM_CHECK_EQ(child_holds_uffd(pid), 0);
	if (write(pfd[1], msg, strlen(msg)) != (ssize_t)strlen(msg))
		hm_test_fail("the child stopped reading: its read was not "
			     "restarted after the injection (%s)",
			     strerror(errno));
	close(pfd[1]);
	reap_ok(pid);
	close(uffd);
	printf("ok blocked read: getpid and userfaultfd injected, the child's "
	       "read restarted and got its data, no userfaultfd left in it\n");
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_blocked_nanosleep(void)
{
	long args[6] = { 0 }, ret = 0;
	pid_t pid = fork();

	HM_CHECK(pid >= 0);
	if (pid == 0) {
		struct timespec ts = { 0, 600 * 1000000L };
		uint64_t t0 = now_ms();
		int r = nanosleep(&ts, NULL);

		_exit(r == 0 && now_ms() - t0 >= 600 ? 0 : 1);
	}
	wait_sleeping(pid);
	for (int i = 0; i < 5; i++) {
		HM_CHECK_OK(hm_inject_syscall(pid, SYS_getppid, args, &ret,
					      &test_log));
		HM_CHECK_EQ(ret, getpid());
	}
	reap_ok(pid);
	printf("ok blocked nanosleep: 5 injections, the sleep still lasted "
	       "its whole time\n");
}

/* A computation that keeps many values live in registers; the child
 * checks each turn against a second evaluation. */
static uint64_t mix(uint64_t x, unsigned n)
{
	uint64_t a = x, b = x ^ 0x9e3779b97f4a7c15ull, c = ~x, d = x * 3;
	uint64_t e = x + 7, f = x >> 3, g = x << 5, h = x ^ 0xdeadbeefull;

	for (unsigned i = 0; i < n; i++) {
		a += b ^ (c >> 1);
		b ^= c + (d << 3);
		c -= d ^ (e >> 2);
		d += e ^ (f << 1);
		e ^= f + (g >> 4);
		f -= g ^ (h << 2);
		g += h ^ (a >> 5);
		h ^= a + (b << 7);
	}
	return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h;
}

static void test_spinning(void)
{
	long args[6] = { 0 }, ret = 0;
	int pfd[2];
	pid_t pid;

	HM_CHECK(pipe(pfd) == 0);
	pid = fork();
	HM_CHECK(pid >= 0);
	if (pid == 0) {
		volatile uint64_t seed = 12345;
		uint64_t turns = 0;
		char c;

		close(pfd[1]);
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
		for (;;) {
			uint64_t x = mix(seed + turns, 2000);
			uint64_t y = mix(seed + turns, 2000);

			if (x != y)
				_exit(2);
			turns++;
			/* every 4096 turns a non-blocking read for "stop" */
			if (!(turns & 4095) && read(pfd[0], &c, 1) == 1)
				_exit(turns > 0 ? 0 : 3);
		}
	}
	close(pfd[0]);
	hm_test_sleep_ms(50);
	for (int i = 0; i < 200; i++) {
		HM_CHECK_OK(hm_inject_syscall(pid, SYS_getpid, args, &ret,
					      &test_log));
		HM_CHECK_EQ(ret, pid);
	}
	HM_CHECK(write(pfd[1], "x", 1) == 1);
	close(pfd[1]);
	reap_ok(pid);
	printf("ok spinning child: 200 injections, its computation checked "
	       "every turn stayed right\n");
}

/* A second thread of the unprivileged child: spins on a register-heavy
 * computation, checked every turn, until told to stop. */
static volatile int spin_stop, spin_bad;

static void *spinner(void *arg)
{
	uint64_t turns = 0;

	(void)arg;
	while (!spin_stop) {
		if (mix(turns, 500) != mix(turns, 500))
			spin_bad = 1;
		turns++;
	}
	return NULL;
}

/* R15: a child running as nobody (it may not call userfaultfd(2) for
 * kernel faults while vm.unprivileged_userfaultfd is 0) gets one through
 * /dev/userfaultfd with all its threads stopped; the userfaultfd handles
 * a fault the kernel takes on its behalf (read(2) into a missing page);
 * afterwards it holds no userfaultfd, no /dev/userfaultfd and no tracer. */
static void test_unprivileged(void)
{
	static const char msg[] = "copied by the kernel into a missing page";
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct uffdio_zeropage zp;
	struct uffd_msg ev;
	struct pollfd pf;
	int pfd[2], rep[2], uffd, sysctl = -1, child_errno = 0;
	char *region;
	FILE *f;
	pid_t pid;

	f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	if (f && fscanf(f, "%d", &sysctl) != 1)
		sysctl = -1;
	if (f)
		fclose(f);
	if (getuid() != 0 || sysctl != 0 ||
	    access("/dev/userfaultfd", F_OK) != 0) {
		printf("# unprivileged grant not exercised: %s\n",
		       getuid() ? "not root" : sysctl ? "vm.unprivileged_"
		       "userfaultfd is not 0" : "no /dev/userfaultfd");
		return;
	}
	region = mmap(NULL, pg, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	HM_CHECK(region != MAP_FAILED);
	HM_CHECK(pipe(pfd) == 0 && pipe(rep) == 0);
	pid = fork();
	HM_CHECK(pid >= 0);
	if (pid == 0) {
		pthread_t th;
		ssize_t n;
		int own, err;

		close(pfd[1]);
		close(rep[0]);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(10);
		own = (int)syscall(__NR_userfaultfd, O_CLOEXEC);
		err = own < 0 ? errno : 0;
		if (write(rep[1], &err, sizeof(err)) != sizeof(err))
			_exit(11);
		close(rep[1]);
		if (pthread_create(&th, NULL, spinner, NULL))
			_exit(12);
		/* the kernel's copy into the page faults in kernel mode */
		n = read(pfd[0], region, pg);
		spin_stop = 1;
		pthread_join(th, NULL);
		_exit(n == (ssize_t)sizeof(msg) && !memcmp(region, msg,
		      sizeof(msg)) && !spin_bad ? 0 : 13);
	}
	close(pfd[0]);
	close(rep[1]);
	HM_CHECK(read(rep[0], &child_errno, sizeof(child_errno)) ==
		 sizeof(child_errno));
	close(rep[0]);
	HM_CHECK_EQ(child_errno, EPERM);
	wait_sleeping(pid);
	uffd = hm_inject_userfaultfd(pid, -1, O_CLOEXEC | O_NONBLOCK,
				     &test_log);
	HM_CHECK_OK(uffd);
	HM_CHECK_EQ(child_holds_uffd(pid), 0);
	HM_CHECK_EQ(hm_inject_grants_held(pid), 0);
	HM_CHECK(ioctl(uffd, UFFDIO_API, &api) == 0);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)region;
	reg.range.len = pg;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	HM_CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
	HM_CHECK(write(pfd[1], msg, sizeof(msg)) == (ssize_t)sizeof(msg));
	pf.fd = uffd;
	pf.events = POLLIN;
	if (poll(&pf, 1, 10000) != 1)
		hm_test_fail("no fault event: the granted userfaultfd does not "
			     "see the kernel's fault (user-mode only?)");
	HM_CHECK(read(uffd, &ev, sizeof(ev)) == sizeof(ev));
	HM_CHECK_EQ(ev.event, UFFD_EVENT_PAGEFAULT);
	HM_CHECK_EQ(ev.arg.pagefault.address & ~(uint64_t)(pg - 1),
		    (uint64_t)(uintptr_t)region);
	memset(&zp, 0, sizeof(zp));
	zp.range.start = (uintptr_t)region;
	zp.range.len = pg;
	HM_CHECK(ioctl(uffd, UFFDIO_ZEROPAGE, &zp) == 0);
	close(pfd[1]);
	reap_ok(pid);
	close(uffd);
	munmap(region, pg);
	printf("ok unprivileged: a nobody child (its own userfaultfd(2): "
	       "EPERM) got one through /dev/userfaultfd with both threads "
	       "stopped; it saw the kernel's fault; nothing left in the "
	       "child; its spinning thread stayed right\n");
}

static void test_errors(void)
{
	long args[6] = { 0 }, ret = 0;
	int pfd[2], st;
	pid_t victim, tracer;
	char c;

	HM_CHECK_EQ(hm_inject_syscall(0x3ffffff0, SYS_getpid, args, &ret,
				      &test_log), -ESRCH);
	HM_CHECK(pipe(pfd) == 0);
	victim = fork();
	HM_CHECK(victim >= 0);
	if (victim == 0) {
		close(pfd[1]);
		_exit(read(pfd[0], &c, 1) == 1 ? 0 : 1);
	}
	tracer = fork();
	HM_CHECK(tracer >= 0);
	if (tracer == 0) {
		/* another tracer holds the victim while we try */
		if (ptrace(PTRACE_SEIZE, victim, 0, 0) < 0)
			_exit(4);
		pause();
		_exit(0);
	}
	for (int i = 0; i < 1000; i++) {
		char path[64], line[256];
		int tr = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)victim);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "TracerPid: %d", &tr) == 1)
				break;
		if (f)
			fclose(f);
		if (tr == tracer)
			break;
		hm_test_sleep_ms(2);
	}
	HM_CHECK_EQ(hm_inject_syscall(victim, SYS_getpid, args, &ret,
				      &test_log), -EBUSY);
	kill(tracer, SIGKILL);
	HM_CHECK(waitpid(tracer, &st, 0) == tracer);
	close(pfd[0]);
	HM_CHECK(write(pfd[1], "x", 1) == 1);
	close(pfd[1]);
	reap_ok(victim);
	printf("ok errors: -ESRCH for no such process, -EBUSY when traced by "
	       "another\n");
}

int main(void)
{
	struct hm_caps caps;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* a child that died early shows as a failed write, not as SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	HM_CHECK_OK(hm_caps_probe(&caps, NULL));
	if (!caps.uffd_syscall && !caps.uffd_dev)
		hm_test_skip_absent(HM_ABSENT_UFFD, "no userfaultfd: %s",
				    strerror(caps.uffd_errno));
	if (!caps.pidfd_getfd)
		hm_test_skip_absent(HM_ABSENT_PIDFD_GETFD,
				    "no pidfd_getfd(2)");
	test_blocked_read();
	test_blocked_nanosleep();
	test_spinning();
	test_unprivileged();
	test_errors();
	printf("all passed\n");
	return 0;
}

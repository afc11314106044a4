/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-agent: the guest half of hintmig's free page hinting.
 *
 * Runs as root in a stock Linux guest, answers the hint channel protocol
 * (docs/protocol.md, part 2) on the virtio-serial port
 * org.hintmig.agent.0. At every REQUEST(e) it takes a snapshot of the
 * kernel's free lists through the hintmig_free module (free blocks read
 * under zone->lock, after the request: R3), sends them as FREE ranges of
 * epoch e and DONE. It holds no guest memory for hinting. Without the
 * module it still says HELLO, with NOHINTS and the reason, so that the host
 * migrates without hints and says why.
 *
 * It costs nothing while no migration asks: it sleeps in poll() while the
 * host end is open and in sigtimedwait(SIGIO) while it is closed (the
 * virtio console driver signals a change of the host end).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "freelist.h"
#include "hm_config.h"

#define PORT_NAME "org.hintmig.agent.0"
#define RESYNC_QUIET_MS 300	/* garbage: drop input until quiet this long */
#define HUP_WAIT_S 30		/* re-check a closed host end this often */

static struct {
	const char *port;	/* NULL: find by name */
	const char *device;
	bool drop_caches;
	bool use_syslog;
	int verbose;
} opt = { .device = HMF_DEVICE };

/* ---- logging ---- */

static void log_sink(void *opaque, enum hm_log_level level, const char *msg)
{
	static const char *const names[] = { "error", "warning", "info",
					     "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO,
				    LOG_DEBUG };
	unsigned l = (unsigned)level < 4 ? (unsigned)level : 3;

	(void)opaque;
	if (opt.use_syslog)
		syslog(prio[l], "%s", msg);
	else
		fprintf(stderr, "hintmig-agent: %s: %s\n", names[l], msg);
}

static struct hm_log g_log = { .fn = log_sink, .max_level = HM_LOG_INFO };

#define LOG(level, ...) hm_logf(&g_log, HM_LOG_##level, __VA_ARGS__)

/* ---- the port ---- */

/* /dev/virtio-ports/NAME is udev's link; without udev (an initramfs),
 * /sys/class/virtio-ports/vportXpY/name names the port. */
static int find_port(char *path, size_t len)
{
	DIR *d;
	struct dirent *e;
	int found = -ENOENT;

	snprintf(path, len, "/dev/virtio-ports/%s", PORT_NAME);
	if (access(path, F_OK) == 0)
		return 0;
	d = opendir("/sys/class/virtio-ports");
	while (d && (e = readdir(d))) {
		char np[300], name[64] = "";
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(np, sizeof(np), "/sys/class/virtio-ports/%s/name",
			 e->d_name);
		fd = open(np, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, name, sizeof(name) - 1);
		close(fd);
		name[n > 0 ? n : 0] = 0;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, PORT_NAME))
			continue;
		snprintf(path, len, "/dev/%s", e->d_name);
		found = 0;
		break;
	}
	if (d)
		closedir(d);
	return found;
}

static int open_port(char *path, size_t len)
{
	int fd;

	if (opt.port)
		snprintf(path, len, "%s", opt.port);
	else if (find_port(path, len) < 0)
		return -ENOENT;
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* SIGIO when the host end opens or closes (blocked: taken with
	 * sigtimedwait) */
	if (fcntl(fd, F_SETOWN, getpid()) < 0 ||
	    fcntl(fd, F_SETFL, O_RDWR | O_NONBLOCK | O_ASYNC) < 0)
		LOG(WARN, "%s: no SIGIO (%s): a closed host end is re-checked "
		    "every %d s", path, strerror(errno), HUP_WAIT_S);
	return fd;
}

static void wait_sigio(int seconds)
{
	sigset_t set;
	struct timespec ts = { .tv_sec = seconds };

	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigtimedwait(&set, NULL, &ts);
}

/* Wait until the host end is open (no POLLHUP). */
static void wait_host(int fd)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 0) < 0 && errno != EINTR)
			return;
		if (!(p.revents & POLLHUP))
			return;
		wait_sigio(HUP_WAIT_S);
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After garbage: read and drop until the host has been quiet for a while
 * (or gone), so that the next frame we parse starts at a frame boundary. */
static void drain(int fd)
{
	char buf[4096];
	int64_t quiet_since = mono_ms();
	size_t dropped = 0;

	while (mono_ms() - quiet_since < RESYNC_QUIET_MS) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, RESYNC_QUIET_MS) <= 0)
			continue;
		if (p.revents & POLLHUP && !(p.revents & POLLIN))
			break;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		dropped += (size_t)n;
		quiet_since = mono_ms();
	}
	LOG(INFO, "resynchronized: dropped %zu more bytes", dropped);
}

/* ---- answering ---- */

struct session {
	struct hm_hc hc;
	struct hm_fl fl;
	bool have_fl;
	unsigned nohint_reason;
	char nohint_why[160];
	/* a message that arrived during a snapshot and ended it */
	struct hm_hc_msg pending;
	bool have_pending;
	int recv_err;		/* sticky error seen during a snapshot */
	uint64_t epoch;		/* the epoch being answered */
	struct hm_gpa_range *ranges;
	size_t cap;
};

static int send_hello(struct session *s)
{
	struct hm_hc_msg m = { .type = HM_HC_HELLO };

	m.u.hello.version = HM_HC_VERSION;
	m.u.hello.page_size = 4096;
	if (s->have_fl) {
		m.u.hello.page_size = 1u << s->fl.info.page_shift;
		if (s->fl.info.poison != HMF_POISON_NONE) {
			m.u.hello.poison = HM_HC_POISON_PATTERN;
			m.u.hello.poison_byte = (uint8_t)s->fl.info.poison_byte;
		}
	} else {
		m.u.hello.flags = HM_HC_HELLO_NOHINTS;
		m.u.hello.reason = (uint8_t)s->nohint_reason;
	}
	return hm_hc_send(&s->hc, &m);
}

/* Between pieces of a snapshot: anything from the host ends it (STOP of
 * this epoch, a newer REQUEST, BYE, garbage). */
static int check_host(void *opaque)
{
	struct session *s = opaque;
	struct hm_hc_msg m;
	int r = hm_hc_recv(&s->hc, &m, 1);

	if (r == -EAGAIN)
		return 0;
	if (r < 0) {
		s->recv_err = r;
		return 1;
	}
	if (m.type == HM_HC_STOP && m.epoch != s->epoch)
		return 0; /* an older epoch's STOP: nothing to stop */
	s->pending = m;
	s->have_pending = true;
	return 1;
}

static uint64_t meminfo_free_kib(void)
{
	char buf[4096], *q;
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	q = strstr(buf, "MemFree:");
	return q ? strtoull(q + 8, NULL, 10) : 0;
}

static void drop_caches(void)
{
	uint64_t before = meminfo_free_kib(), after;
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		LOG(WARN, "--drop-caches: /proc/sys/vm/drop_caches: %s",
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	after = meminfo_free_kib();
	LOG(INFO, "--drop-caches: clean page cache dropped, %" PRIu64
	    " MiB freed", after > before ? (after - before) >> 10 : 0);
}

static int send_ranges(struct session *s, uint64_t epoch,
		       const struct hm_gpa_range *r, size_t n)
{
	for (size_t k = 0; k < n;) {
		struct hm_hc_msg m = { .type = HM_HC_HINTS, .epoch = epoch };
		size_t c = n - k < HM_HC_MAX_RANGES ? n - k : HM_HC_MAX_RANGES;
		int ret;

		m.u.hints.kind = HM_HINT_FREE;
		m.u.hints.count = (uint32_t)c;
		m.u.hints.ranges = r + k;
		ret = hm_hc_send(&s->hc, &m);
		if (ret < 0)
			return ret;
		k += c;
		/* the host may have closed the epoch meanwhile */
		if (check_host(s))
			return -ECANCELED;
	}
	return 0;
}

static int answer(struct session *s, uint64_t epoch, uint32_t max_ranges)
{
	struct hm_hc_msg done = { .type = HM_HC_DONE, .epoch = epoch };
	struct hm_fl_stats st;
	long n = 0;
	int r;

	s->epoch = epoch;
	if (s->have_fl && max_ranges) {
		if (opt.drop_caches)
			drop_caches();
		n = hm_fl_snapshot(&s->fl, &s->ranges, &s->cap, max_ranges,
				   check_host, s, &st);
		if (n == -ECANCELED) {
			LOG(INFO, "epoch %" PRIu64 ": snapshot abandoned (%s)",
			    epoch, s->recv_err ? strerror(-s->recv_err) :
			    hm_hc_type_name(s->pending.type));
			return 0;
		}
		if (n < 0) {
			LOG(ERROR, "epoch %" PRIu64 ": snapshot failed: %s; "
			    "answering with no hints", epoch, strerror((int)-n));
			n = 0;
		} else {
			hm_fl_info(&s->fl);
			r = send_ranges(s, epoch, s->ranges, (size_t)n);
			if (r == -ECANCELED)
				return 0;
			if (r < 0)
				return r;
			LOG(INFO, "epoch %" PRIu64 ": %ld ranges, %" PRIu64
			    " MiB free hinted (MemFree %" PRIu64 " MiB, %" PRIu64
			    " MiB on per-CPU lists not hinted), %" PRIu64
			    " blocks read in %.1f ms (%.1f ms CPU), %" PRIu64
			    " zone->lock holds, longest %.1f us, %" PRIu64
			    " stale cursors, %" PRIu64 " lists cut, %" PRIu64
			    " ranges left out", epoch, n,
			    st.pages >> (20 - s->fl.info.page_shift),
			    s->fl.info.free_pages >> (20 - s->fl.info.page_shift),
			    s->fl.info.pcp_pages >> (20 - s->fl.info.page_shift),
			    st.records, (double)st.walk_ns / 1e6,
			    (double)st.cpu_ns / 1e6, st.holds,
			    (double)st.hold_ns_max / 1e3, st.restarts, st.cut,
			    st.dropped);
		}
	}
	return hm_hc_send(&s->hc, &done);
}

/* One connection of the host: HELLO, then answer until it goes. */
static void serve(struct session *s, int fd)
{
	if (hm_hc_init(&s->hc, fd, &g_log) < 0) {
		close(fd);
		return;
	}
	s->hc.send_timeout_ms = 5000;
	for (;;) {
		struct hm_hc_msg m;
		int r;

		wait_host(fd);
		hm_hc_discard(&s->hc);
		if (send_hello(s) < 0) {
			/* the host end closed again before it read */
			wait_sigio(1);
			continue;
		}
		LOG(INFO, "host connected: hello sent (%s)",
		    s->have_fl ? "free page hints on" : s->nohint_why);
		for (;;) {
			if (s->have_pending) {
				m = s->pending;
				s->have_pending = false;
				r = 0;
			} else if (s->recv_err) {
				r = s->recv_err;
				s->recv_err = 0;
			} else {
				r = hm_hc_recv(&s->hc, &m, 0);
			}
			if (r == -EPROTO) {
				LOG(WARN, "the host sent a malformed frame (%s): "
				    "resynchronizing", s->hc.err);
				drain(fd);
				hm_hc_discard(&s->hc);
				if (send_hello(s) < 0)
					break;
				continue;
			}
			if (r < 0) {
				if (r != -ENODATA)
					LOG(INFO, "host end: %s", strerror(-r));
				break;
			}
			if (m.type == HM_HC_REQUEST) {
				if (answer(s, m.epoch,
					   m.u.request.max_ranges) < 0)
					break;
			} else if (m.type == HM_HC_BYE) {
				LOG(INFO, "host said bye");
				break;
			} else if (m.type != HM_HC_STOP &&
				   m.type != HM_HC_ACK) {
				LOG(WARN, "unexpected %s from the host: ignored",
				    hm_hc_type_name(m.type));
			}
		}
		/* Gone (or going): wait for the end to close, so that our
		 * next HELLO goes to the next host, not this one. */
		{
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int64_t t0 = mono_ms();

			while (mono_ms() - t0 < 2000 && poll(&p, 1, 100) >= 0 &&
			       !(p.revents & POLLHUP)) {
				char junk[4096];

				if ((p.revents & POLLIN) &&
				    read(fd, junk, sizeof(junk)) <= 0)
					break;
			}
		}
		LOG(INFO, "host disconnected: waiting for the next one");
	}
}

static void usage(FILE *f)
{
	fputs("Usage: hintmig-agent [options]\n"
"Answers hintmig's free page hint requests from inside a Linux guest, over\n"
"the virtio-serial port " PORT_NAME ". Free pages are read from the\n"
"kernel's free lists under zone->lock by the hintmig_free module.\n"
"  --port PATH       the port's device (default: found by its name)\n"
"  --device PATH     the module's device (default " HMF_DEVICE ")\n"
"  --drop-caches     sync and drop the clean page cache before each answer\n"
"                    (a smaller migration, a colder cache; off by default)\n"
"  --syslog          log to syslog (default: standard error, which systemd\n"
"                    sends to the journal)\n"
"  -v, --verbose     log more\n"
"  --version         print the version and exit\n"
"  -h, --help        print this help and exit\n", f);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "device", required_argument, NULL, 'd' },
		{ "drop-caches", no_argument, NULL, 'D' },
		{ "syslog", no_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct session s;
	sigset_t set;
	bool told = false;
	int c;

	while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (c) {
		case 'p': opt.port = optarg; break;
		case 'd': opt.device = optarg; break;
		case 'D': opt.drop_caches = true; break;
		case 's': opt.use_syslog = true; break;
		case 'v': opt.verbose++; break;
		case 'V': printf("hintmig-agent %s\n", HM_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hintmig-agent: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (opt.use_syslog)
		openlog("hintmig-agent", LOG_PID, LOG_DAEMON);
	if (opt.verbose)
		g_log.max_level = HM_LOG_DEBUG;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);

	memset(&s, 0, sizeof(s));
	if (hm_fl_open(&s.fl, opt.device, &s.nohint_reason, s.nohint_why,
		       sizeof(s.nohint_why)) == 0) {
		s.have_fl = true;
		LOG(INFO, "free lists: %s, %u orders, %u entries per "
		    "zone->lock hold; free pages %s", opt.device,
		    s.fl.info.orders, s.fl.info.piece,
		    s.fl.info.poison == HMF_POISON_PAGE_POISON ?
			    "poisoned (page_poison, 0xaa): the host will "
			    "refuse hints (R7)" :
		    s.fl.info.poison == HMF_POISON_INIT_ON_FREE ?
			    "zeroed (init_on_free)" : "not poisoned");
	} else {
		LOG(WARN, "no free page hints: %s", s.nohint_why);
	}
	for (;;) {
		char path[300];
		int fd = open_port(path, sizeof(path));

		if (fd < 0) {
			if (!told)
				LOG(WARN, "no virtio-serial port %s (%s): "
				    "waiting for it", opt.port ? opt.port :
				    PORT_NAME, strerror(-fd));
			told = true;
			sleep(5);
			continue;
		}
		told = false;
		LOG(INFO, "port %s open", path);
		serve(&s, fd); /* returns only if the channel cannot start */
		hm_hc_fini(&s.hc);
		sleep(1);
	}
}

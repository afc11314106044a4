/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Migrations that must fail cleanly: the destination process killed
 * mid-round, cancel at several moments, no convergence within max-rounds
 * (and its forced variant, which must succeed), and a peer that misbehaves
 * or disconnects at every stage of the protocol (a fake destination in a
 * thread).
 *
 * Every failure must: return a clear -errno quickly, release the tracker,
 * resume the guest if it was paused, and leave it running with its memory
 * intact (its writes continue; its self-check errors stay 0).
 *
 * usage: test_failures dest-killed | cancel | max-rounds | peer STAGE...
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"
#include "hm_test.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/wire.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}


static void base_cfg(struct e2e_cfg *c)
{
	e2e_cfg_default(c);
	c->sp.ram_bytes = 32u << 20;
	c->sp.used_frac = 0.4;
	c->sp.dirty_rate = 3000;
	c->sp.churn_rate = 500;
	c->sp.writers = 1;
	c->hints = E2E_HINTS_FREE;
	c->mp.channels = 2;
	c->mp.io_timeout_ms = 3000;
	c->mp.connect_timeout_ms = 3000;
}

/* The checks every failed migration must pass. */
static void check_clean_failure(const char *what, const struct e2e_result *r,
				uint64_t elapsed_ms, uint64_t max_ms)
{
	e2e_print(what, r);
	HM_CHECK(r->run < 0);
	HM_CHECK(r->st.status == HM_MIG_FAILED ||
		 r->st.status == HM_MIG_CANCELLED);
	HM_CHECK(r->alive);
	HM_CHECK_EQ(r->check_errors, 0);
	/* resumed and untracked: its writes go on */
	HM_CHECK(r->writes_after > r->writes_before);
	if (elapsed_ms > max_ms)
		hm_test_fail("%s: took %" PRIu64 " ms (> %" PRIu64 ")", what,
			     elapsed_ms, max_ms);
}

/* ---- the destination process killed mid-round -------------------------- */

struct kill_ctx {
	pid_t pid;
	uint64_t after_bytes;
	bool killed;
};

static void kill_dest(struct hm_migration *m, struct hm_synth *s, void *op)
{
	struct kill_ctx *k = op;
	uint64_t t0 = mono_ms();

	(void)s;
	while (mono_ms() - t0 < 20000) {
		struct hm_migrate_stats st;

		hm_migration_get_stats(m, &st);
		if (st.ram_transferred >= k->after_bytes) {
			kill(k->pid, SIGKILL);
			k->killed = true;
			return;
		}
		if (st.status >= HM_MIG_COMPLETED)
			return;
		hm_test_sleep_ms(2);
	}
}

static void test_dest_killed(void)
{
	for (int i = 0; i < 4; i++) {
		struct e2e_cfg c;
		struct e2e_result r;
		struct kill_ctx k = { 0 };
		char addr[128];
		uint64_t t0;
		int st;

		base_cfg(&c);
		c.scheme = i % 2 ? "tcp" : "unix";
		c.mp.tracker_mode = i < 2 ? HM_TRACKER_SYNC : HM_TRACKER_AUTO;
		c.mp.max_bandwidth = 24u << 20; /* ~1.3 s for the guest */
		k.pid = e2e_dest_fork(c.scheme, addr, sizeof(addr));
		HM_CHECK(k.pid > 0);
		k.after_bytes = (uint64_t)(2 + 3 * i) << 20;
		c.addr = addr;
		c.during = kill_dest;
		c.during_opaque = &k;
		t0 = mono_ms();
		HM_CHECK_OK(e2e_migrate(&c, &r));
		HM_CHECK(k.killed);
		waitpid(k.pid, &st, 0);
		HM_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		check_clean_failure("dest-killed", &r, mono_ms() - t0, 15000);
		HM_CHECK(r.run == -ECONNRESET || r.run == -EPIPE ||
			 r.run == -ETIMEDOUT);
		if (!strncmp(addr, "unix:", 5))
			unlink(addr + 5);
	}
}

/* ---- cancel ---------------------------------------------------------------- */

static void test_cancel(void)
{
	static const unsigned at_ms[] = { 1, 30, 150, 400, 800 };
	unsigned cancelled = 0;

	for (size_t i = 0; i < sizeof(at_ms) / sizeof(at_ms[0]); i++) {
		struct e2e_cfg c;
		struct e2e_result r;
		uint64_t t0;

		base_cfg(&c);
		c.hints = i % 2 ? E2E_HINTS_ISOLATED : E2E_HINTS_FREE;
		c.sp.hint_kind = i % 2 ? HM_HINT_ISOLATED : HM_HINT_FREE;
		c.mp.tracker_mode = i % 2 ? HM_TRACKER_SYNC : HM_TRACKER_AUTO;
		c.mp.max_bandwidth = 16u << 20;
		c.cancel_after_ms = at_ms[i];
		t0 = mono_ms();
		HM_CHECK_OK(e2e_migrate(&c, &r));
		if (r.run == 0) {
			/* finished before the cancel: fine if verified */
			e2e_print("cancel (too late)", &r);
			HM_CHECK_EQ(r.mismatches, 0);
			continue;
		}
		check_clean_failure("cancel", &r, mono_ms() - t0, 8000);
		HM_CHECK_EQ(r.run, -ECANCELED);
		HM_CHECK_EQ(r.st.status, HM_MIG_CANCELLED);
		cancelled++;
	}
	/* a cancel that does nothing must not pass as "every run finished
	 * first": at 16 MiB/s the early cancels land mid-migration */
	printf("cancel: %u of %zu runs cancelled\n", cancelled,
	       sizeof(at_ms) / sizeof(at_ms[0]));
	if (cancelled == 0)
		hm_test_fail("no run was cancelled: a cancel that does "
			     "nothing would pass");
}

/* ---- max rounds --------------------------------------------------------- */

static void test_max_rounds(void)
{
	struct e2e_cfg c;
	struct e2e_result r;
	uint64_t t0;

	/* dirtying far faster than the bandwidth: never converges */
	base_cfg(&c);
	c.sp.ram_bytes = 16u << 20;
	c.sp.dirty_rate = 40000;
	c.sp.writers = 2;
	c.sp.used_frac = 0.6;
	c.mp.max_bandwidth = 16u << 20;
	c.mp.max_rounds = 3;
	c.mp.downtime_limit_ms = 10;
	t0 = mono_ms();
	HM_CHECK_OK(e2e_migrate(&c, &r));
	check_clean_failure("max-rounds", &r, mono_ms() - t0, 30000);
	HM_CHECK_EQ(r.run, -ETIMEDOUT);
	HM_CHECK_EQ(r.st.rounds, 3);

	c.mp.force_on_max_rounds = true;
	HM_CHECK_OK(e2e_migrate(&c, &r));
	e2e_print("force-converge", &r);
	HM_CHECK_EQ(r.run, 0);
	HM_CHECK_EQ(r.st.rounds, 4); /* 3 live + the forced final one */
	HM_CHECK_EQ(r.mismatches, 0);
	HM_CHECK_EQ(r.check_errors, 0);
}

/* ---- a fake destination that misbehaves at one stage ------------------- */

enum stage {
	ST_ACCEPT_CLOSE,	/* close right after accept */
	ST_HELLO_CLOSE,		/* read HELLO, close */
	ST_HELLO_GARBAGE,	/* answer HELLO with garbage bytes */
	ST_HELLO_REFUSE,	/* HELLO_ACK with an error status */
	ST_HELLO_WRONG,		/* answer HELLO with another message */
	ST_HELLO_SILENT,	/* read HELLO, never answer */
	ST_MID_CLOSE,		/* close after some page data */
	ST_MID_ABORT,		/* ABORT after some page data */
	ST_MID_GARBAGE,		/* garbage back in the middle */
	ST_MID_STALL,		/* stop reading in the middle */
	ST_COMPLETE_CLOSE,	/* read up to COMPLETE, close */
	ST_COMPLETE_GARBAGE,	/* garbage instead of COMPLETE_ACK */
	ST_COMPLETE_NAK,	/* COMPLETE_ACK with an error status */
	ST_COMPLETE_SILENT,	/* never acknowledge */
	ST_COUNT
};

static const char *const stage_names[] = {
	[ST_ACCEPT_CLOSE] = "accept-close",
	[ST_HELLO_CLOSE] = "hello-close",
	[ST_HELLO_GARBAGE] = "hello-garbage",
	[ST_HELLO_REFUSE] = "hello-refuse",
	[ST_HELLO_WRONG] = "hello-wrong",
	[ST_HELLO_SILENT] = "hello-silent",
	[ST_MID_CLOSE] = "mid-close",
	[ST_MID_ABORT] = "mid-abort",
	[ST_MID_GARBAGE] = "mid-garbage",
	[ST_MID_STALL] = "mid-stall",
	[ST_COMPLETE_CLOSE] = "complete-close",
	[ST_COMPLETE_GARBAGE] = "complete-garbage",
	[ST_COMPLETE_NAK] = "complete-nak",
	[ST_COMPLETE_SILENT] = "complete-silent",
};

/* What hm_migration_run must return for each stage (either value). */
static const int stage_errno[] = {
	[ST_ACCEPT_CLOSE] = -ECONNRESET,
	[ST_HELLO_CLOSE] = -ECONNRESET,
	[ST_HELLO_GARBAGE] = -EPROTO,
	[ST_HELLO_REFUSE] = -EINVAL,
	[ST_HELLO_WRONG] = -EPROTO,
	[ST_HELLO_SILENT] = -ETIMEDOUT,
	[ST_MID_CLOSE] = -ECONNRESET,
	[ST_MID_ABORT] = -ENOSPC,
	[ST_MID_GARBAGE] = -EPROTO,
	[ST_MID_STALL] = -ETIMEDOUT,
	[ST_COMPLETE_CLOSE] = -ECONNRESET,
	[ST_COMPLETE_GARBAGE] = -EPROTO,
	[ST_COMPLETE_NAK] = -EIO,
	[ST_COMPLETE_SILENT] = -ETIMEDOUT,
};
static const int stage_errno2[] = {
	[ST_ACCEPT_CLOSE] = -EPIPE,
	[ST_HELLO_CLOSE] = -EPIPE,
	[ST_MID_CLOSE] = -EPIPE,
	[ST_COMPLETE_CLOSE] = -EPIPE,
};

struct fake {
	int lfd;
	enum stage stage;
	unsigned nch;
	int fds[HM_WIRE_MAX_CHANNELS];
	uint32_t seq[HM_WIRE_MAX_CHANNELS];
	uint64_t session;
	void *buf;
	volatile bool quit;
	pthread_t thread;
};

/* Read one message from fd into buf: 0 and hdr, or -errno. */
static int fake_recv(int fd, void *buf, struct hm_wire_hdr *h)
{
	uint8_t raw[HM_WIRE_HDR_SIZE];
	int r = hm_recv_all(fd, raw, sizeof(raw));

	if (r < 0)
		return r;
	r = hm_wire_get_hdr(raw, h);
	if (r < 0)
		return r;
	return h->payload_len ? hm_recv_all(fd, buf, h->payload_len) : 0;
}

static int fake_send(struct fake *f, unsigned ch, uint16_t type,
		     const void *payload, size_t len)
{
	struct hm_wire_hdr h = {
		.magic = HM_WIRE_MAGIC,
		.version = HM_WIRE_VERSION,
		.type = type,
		.payload_len = (uint32_t)len,
		.channel = (uint16_t)ch,
		.session_id = f->session,
		.seq = f->seq[ch]++,
	};
	uint8_t raw[HM_WIRE_HDR_SIZE];
	struct iovec v = { (void *)(uintptr_t)payload, len };
	int r;

	hm_wire_put_hdr(raw, &h);
	hm_wire_seal(raw, &v, len ? 1 : 0);
	r = hm_send_all(f->fds[ch], raw, sizeof(raw));
	if (r == 0 && len)
		r = hm_send_all(f->fds[ch], payload, len);
	return r;
}

static void fake_garbage(struct fake *f, unsigned ch)
{
	static const char junk[] = "this is not a hintmig message at all!!";

	hm_send_all(f->fds[ch], junk, sizeof(junk));
}

static void fake_close_all(struct fake *f)
{
	for (unsigned i = 0; i < HM_WIRE_MAX_CHANNELS; i++)
		if (f->fds[i] >= 0) {
			close(f->fds[i]);
			f->fds[i] = -1;
		}
}

static void fake_hold(struct fake *f)
{
	while (!f->quit)
		hm_test_sleep_ms(20);
}

/* Read from every channel until want is seen on channel 0 (or enough
 * pages went by for a "mid" stage): 0, or -errno. */
static int fake_pump(struct fake *f, uint16_t want, uint64_t mid_bytes)
{
	uint64_t got = 0;

	for (;;) {
		struct pollfd p[HM_WIRE_MAX_CHANNELS];

		for (unsigned i = 0; i < f->nch; i++) {
			p[i].fd = f->fds[i];
			p[i].events = POLLIN;
			p[i].revents = 0;
		}
		if (poll(p, f->nch, 10000) <= 0)
			return -ETIMEDOUT;
		for (unsigned i = 0; i < f->nch; i++) {
			struct hm_wire_hdr h;
			int r;

			if (!p[i].revents)
				continue;
			r = fake_recv(f->fds[i], f->buf, &h);
			if (r < 0)
				return r;
			got += HM_WIRE_HDR_SIZE + h.payload_len;
			if (mid_bytes && got >= mid_bytes)
				return 0;
			if (i == 0 && h.type == want)
				return 0;
		}
	}
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	struct hm_wire_hdr h;
	struct hm_wire_msg msg;
	uint8_t pay[64];
	long n;
	int fd;

	fd = hm_transport_accept(f->lfd, 10000);
	if (fd < 0)
		return NULL;
	if (f->stage == ST_ACCEPT_CLOSE) {
		close(fd);
		return NULL;
	}
	if (fake_recv(fd, f->buf, &h) < 0 || h.type != HM_MSG_HELLO ||
	    hm_wire_decode(&h, f->buf, NULL, &msg, NULL, 0) < 0) {
		close(fd);
		return NULL;
	}
	f->session = h.session_id;
	f->nch = msg.u.hello.geo.channels;
	if (f->nch < 1 || f->nch > HM_WIRE_MAX_CHANNELS)
		f->nch = 1;
	f->fds[msg.u.hello.channel_index % f->nch] = fd;
	switch (f->stage) {
	case ST_HELLO_CLOSE:
		fake_close_all(f);
		return NULL;
	case ST_HELLO_GARBAGE:
		fake_garbage(f, 0);
		fake_hold(f);
		fake_close_all(f);
		return NULL;
	case ST_HELLO_SILENT:
		fake_hold(f);
		fake_close_all(f);
		return NULL;
	default:
		break;
	}
	/* the other channels */
	for (unsigned i = 1; i < f->nch; i++) {
		fd = hm_transport_accept(f->lfd, 10000);
		if (fd < 0 || fake_recv(fd, f->buf, &h) < 0 ||
		    hm_wire_decode(&h, f->buf, NULL, &msg, NULL, 0) < 0) {
			if (fd >= 0)
				close(fd);
			fake_close_all(f);
			return NULL;
		}
		f->fds[msg.u.hello.channel_index % f->nch] = fd;
	}
	for (unsigned i = 0; i < f->nch; i++) {
		if (f->fds[i] < 0)
			continue;
		if (f->stage == ST_HELLO_WRONG) {
			n = hm_wire_enc_round(pay, sizeof(pay), 1, 0);
			fake_send(f, i, HM_MSG_ROUND, pay, (size_t)n);
			continue;
		}
		n = hm_wire_enc_u32(pay, sizeof(pay),
				    f->stage == ST_HELLO_REFUSE ? EINVAL : 0);
		fake_send(f, i, HM_MSG_HELLO_ACK, pay, (size_t)n);
	}
	switch (f->stage) {
	case ST_HELLO_REFUSE:
	case ST_HELLO_WRONG:
		fake_hold(f);
		break;
	case ST_MID_CLOSE:
	case ST_MID_ABORT:
	case ST_MID_GARBAGE:
	case ST_MID_STALL:
		if (fake_pump(f, HM_MSG_COMPLETE, 3u << 20) < 0)
			break;
		if (f->stage == ST_MID_ABORT) {
			n = hm_wire_enc_abort(pay, sizeof(pay), ENOSPC,
					      "fake: no space");
			fake_send(f, 0, HM_MSG_ABORT, pay, (size_t)n);
			fake_hold(f);
		} else if (f->stage == ST_MID_GARBAGE) {
			fake_garbage(f, 0);
			fake_hold(f);
		} else if (f->stage == ST_MID_STALL) {
			fake_hold(f);
		}
		break;
	default:
		if (fake_pump(f, HM_MSG_COMPLETE, 0) < 0)
			break;
		if (f->stage == ST_COMPLETE_GARBAGE) {
			fake_garbage(f, 0);
			fake_hold(f);
		} else if (f->stage == ST_COMPLETE_NAK) {
			uint8_t ack[64];

			n = hm_wire_enc_complete_ack(ack, sizeof(ack), EIO, 0);
			fake_send(f, 0, HM_MSG_COMPLETE_ACK, ack, (size_t)n);
			fake_hold(f);
		} else if (f->stage == ST_COMPLETE_SILENT) {
			fake_hold(f);
		}
		break;
	}
	fake_close_all(f);
	return NULL;
}

static void start_fake(void *op)
{
	struct fake *f = op;

	HM_CHECK_EQ(pthread_create(&f->thread, NULL, fake_thread, f), 0);
}

static void test_peer(enum stage stage)
{
	struct e2e_cfg c;
	struct e2e_result r;
	struct fake f;
	char addr[128];
	uint64_t t0;

	memset(&f, 0, sizeof(f));
	for (unsigned i = 0; i < HM_WIRE_MAX_CHANNELS; i++)
		f.fds[i] = -1;
	f.stage = stage;
	f.buf = malloc(HM_WIRE_MAX_PAYLOAD);
	HM_CHECK(f.buf);
	base_cfg(&c);
	c.scheme = stage % 2 ? "tcp" : "unix";
	/* sync mode too: a tracker left behind would block the guest */
	c.mp.tracker_mode = stage % 3 ? HM_TRACKER_AUTO : HM_TRACKER_SYNC;
	c.mp.io_timeout_ms = 1500;
	f.lfd = e2e_listen(c.scheme, addr, sizeof(addr));
	HM_CHECK(f.lfd >= 0);
	/* connections wait in the backlog until the fake accepts them */
	c.addr = addr;
	c.before_run = start_fake;
	c.during_opaque = &f;
	t0 = mono_ms();
	HM_CHECK_OK(e2e_migrate(&c, &r));
	f.quit = true;
	pthread_join(f.thread, NULL);
	check_clean_failure(stage_names[stage], &r, mono_ms() - t0, 15000);
	HM_CHECK(r.run == stage_errno[stage] ||
		 (stage_errno2[stage] && r.run == stage_errno2[stage]));
	close(f.lfd);
	if (!strncmp(addr, "unix:", 5))
		unlink(addr + 5);
	free(f.buf);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_failures dest-killed | cancel | "
				"max-rounds | peer STAGE...|all\n");
		return 2;
	}
	e2e_init(argv[1]);
	if (!strcmp(argv[1], "dest-killed"))
		test_dest_killed();
	else if (!strcmp(argv[1], "cancel"))
		test_cancel();
	else if (!strcmp(argv[1], "max-rounds"))
		test_max_rounds();
	else if (!strcmp(argv[1], "peer")) {
		for (int i = 2; i < argc; i++) {
			int s = -1;

			for (int k = 0; k < ST_COUNT; k++)
				if (!strcmp(argv[i], stage_names[k]) ||
				    !strcmp(argv[i], "all"))
					s = k;
			if (s < 0) {
				fprintf(stderr, "unknown stage %s\n", argv[i]);
				return 2;
			}
			if (!strcmp(argv[i], "all"))
				for (int k = 0; k < ST_COUNT; k++)
					test_peer((enum stage)k);
			else
				test_peer((enum stage)s);
		}
	} else {
		fprintf(stderr, "unknown test %s\n", argv[1]);
		return 2;
	}
	fprintf(stderr, "PASS %s\n", argv[1]);
	return 0;
}

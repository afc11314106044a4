/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Helpers of the end-to-end engine tests (e2e.h). */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hintmig/bitmap.h>

#include "e2e.h"
#include "hm_test.h"
#include "migrate/wire/transport.h"

static char log_prefix[64] = "e2e";

static void test_log(void *opaque, enum hm_log_level level, const char *msg)
{
	(void)opaque;
	fprintf(stderr, "[%s] %s: %s\n", log_prefix, hm_log_level_name(level),
		msg);
}

struct hm_log e2e_log = { .fn = test_log, .max_level = HM_LOG_WARN };

void e2e_init(const char *name)
{
	const char *v = getenv("HM_TEST_VERBOSE");

	snprintf(log_prefix, sizeof(log_prefix), "%s", name);
	if (v && *v)
		e2e_log.max_level = atoi(v) > 1 ? HM_LOG_DEBUG : HM_LOG_INFO;
	/* a killed peer must be an error, not a signal */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
}


int e2e_listen(const char *scheme, char *addr, size_t addrlen)
{
	static atomic_uint counter;
	int fd;

	if (scheme && !strcmp(scheme, "tcp")) {
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);

		fd = hm_transport_listen("tcp:127.0.0.1:0", 64);
		if (fd < 0)
			return fd;
		if (getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
		snprintf(addr, addrlen, "tcp:127.0.0.1:%u",
			 ntohs(sin.sin_port));
		return fd;
	}
	snprintf(addr, addrlen, "unix:/tmp/hm-e2e-%d-%u.sock", (int)getpid(),
		 atomic_fetch_add(&counter, 1));
	unlink(addr + 5);
	return hm_transport_listen(addr, 64);
}

static void *dest_thread(void *arg)
{
	struct e2e_dest *ed = arg;

	ed->result = hm_dest_run_fd(ed->d, ed->lfd);
	hm_dest_get_stats(ed->d, &ed->st);
	return NULL;
}

int e2e_dest_start(struct e2e_dest *ed, const char *scheme, int ram_fd,
		   enum hm_dest_fill fill)
{
	struct hm_dest_params p;
	int r;

	memset(ed, 0, sizeof(*ed));
	ed->lfd = e2e_listen(scheme, ed->addr, sizeof(ed->addr));
	if (ed->lfd < 0)
		return ed->lfd;
	memset(&p, 0, sizeof(p));
	p.ram_fd = ram_fd;
	p.fill = fill;
	p.io_timeout_ms = 20000;
	/* a source that never connects must not hang the test */
	p.accept_timeout_ms = 20000;
	ed->d = hm_dest_new(&p, &e2e_log);
	if (!ed->d)
		return -errno;
	r = -pthread_create(&ed->thread, NULL, dest_thread, ed);
	if (r == 0)
		ed->started = true;
	return r;
}

int e2e_dest_join(struct e2e_dest *ed)
{
	if (ed->started) {
		pthread_join(ed->thread, NULL);
		ed->started = false;
	}
	return ed->result;
}

void e2e_dest_free(struct e2e_dest *ed)
{
	e2e_dest_join(ed);
	hm_dest_free(ed->d);
	ed->d = NULL;
	if (ed->lfd >= 0)
		close(ed->lfd);
	ed->lfd = -1;
	if (!strncmp(ed->addr, "unix:", 5))
		unlink(ed->addr + 5);
}

pid_t e2e_dest_fork(const char *scheme, char *addr, size_t addrlen)
{
	int lfd = e2e_listen(scheme, addr, addrlen);
	pid_t pid;

	if (lfd < 0)
		return lfd;
	pid = fork();
	if (pid < 0) {
		int e = -errno;

		close(lfd);
		return e;
	}
	if (pid == 0) {
		struct hm_dest_params p;
		struct hm_dest *d;
		int r;

		memset(&p, 0, sizeof(p));
		p.ram_fd = -1;
		p.io_timeout_ms = 20000;
		d = hm_dest_new(&p, &e2e_log);
		if (!d)
			_exit(2);
		r = hm_dest_run_fd(d, lfd);
		_exit(r == 0 ? 0 : 1);
	}
	close(lfd);
	return pid;
}

void e2e_cfg_default(struct e2e_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->scheme = "unix";
	hm_synth_params_default(&c->sp);
	c->sp.ram_bytes = 32u << 20;
	c->sp.used_frac = 0.25;
	hm_migrate_params_default(&c->mp);
	c->mp.channels = 2;
	c->mp.io_timeout_ms = 20000;
}

struct helper {
	const struct e2e_cfg *c;
	struct hm_migration *m;
	struct hm_synth *s;
};

static void *helper_thread(void *arg)
{
	struct helper *h = arg;

	if (h->c->cancel_after_ms) {
		hm_test_sleep_ms(h->c->cancel_after_ms);
		hm_migration_cancel(h->m);
	}
	if (h->c->during)
		h->c->during(h->m, h->s, h->c->during_opaque);
	return NULL;
}

static bool child_alive(pid_t pid)
{
	int st;

	return waitpid(pid, &st, WNOHANG) == 0 && kill(pid, 0) == 0;
}

/* Pages of the destination that are in use but do not hold valid
 * synthetic content. */
static uint64_t dest_invalid_pages(struct e2e_dest *ed,
				   const struct hm_bitmap *inuse,
				   const struct hm_bitmap *busy, uint64_t ps)
{
	const struct hm_ram_block *b;
	const void *data = NULL;
	uint64_t bad = 0;

	b = hm_dest_block(ed->d, 0, &data);
	if (!b || !data)
		return UINT64_MAX;
	for (size_t i = hm_bitmap_find_next_set(inuse, 0); i < inuse->nbits;
	     i = hm_bitmap_find_next_set(inuse, i + 1)) {
		if (i >= b->first_bit + b->len / ps)
			break;
		/* rewritten at the instant of the pause: may be torn, on
		 * both sides alike */
		if (hm_bitmap_test(busy, i))
			continue;
		if (hm_synth_page_valid((const uint8_t *)data +
					(i - b->first_bit) * ps, ps, i) != 1)
			bad++;
	}
	return bad;
}

/* Verify the lied-about in-use pages apart from the others; inuse keeps
 * the honest ones. */
static int verify_split(struct hm_migration *m, const struct hm_synth *s,
			struct hm_bitmap *inuse, struct e2e_result *res)
{
	struct hm_bitmap lied = { 0 }, honest = { 0 }, liar = { 0 };
	uint64_t c1 = 0, c2 = 0;
	int r;

	r = hm_bitmap_init(&lied, s->npages);
	if (r == 0)
		r = hm_bitmap_init(&honest, s->npages);
	if (r == 0)
		r = hm_bitmap_init(&liar, s->npages);
	if (r == 0)
		r = hm_synth_lied(s, &lied);
	if (r < 0)
		goto out;
	for (size_t w = 0; w < inuse->nwords; w++) {
		honest.words[w] = inuse->words[w] & ~lied.words[w];
		liar.words[w] = inuse->words[w] & lied.words[w];
	}
	res->lied_pages = hm_bitmap_count(&liar);
	res->mismatches = hm_migration_verify(m, &honest, &c1);
	res->lied_mismatches = res->lied_pages ?
				       hm_migration_verify(m, &liar, &c2) : 0;
	res->checked = c1 + c2;
	/* the destination's own check covers the honest pages only */
	for (size_t w = 0; w < inuse->nwords; w++)
		inuse->words[w] = honest.words[w];
out:
	hm_bitmap_fini(&lied);
	hm_bitmap_fini(&honest);
	hm_bitmap_fini(&liar);
	return r;
}

int e2e_migrate(const struct e2e_cfg *c, struct e2e_result *res)
{
	struct hm_synth s;
	struct e2e_dest ed;
	struct hm_bitmap inuse = { 0 }, busy = { 0 };
	struct hm_guest *g = NULL;
	struct hm_hint_source *hs = NULL;
	struct hm_migration *m = NULL;
	struct helper h;
	pthread_t ht;
	bool helper = false, synth_up = false, dest_up = false;
	const char *addr = c->addr;
	int ram_fd = -1, r;

	memset(res, 0, sizeof(*res));
	memset(&ed, 0, sizeof(ed));
	ed.lfd = -1;
	res->mismatches = -ENOTCONN;
	r = hm_synth_start(&c->sp, &s, &e2e_log);
	if (r < 0) {
		fprintf(stderr, "hm_synth_start: %s\n", strerror(-r));
		goto out;
	}
	synth_up = true;
	if (!addr) {
		if (c->dest_memfd) {
			ram_fd = memfd_create("hm-e2e-dest", MFD_CLOEXEC);
			if (ram_fd < 0) {
				r = -errno;
				goto out;
			}
		}
		r = e2e_dest_start(&ed, c->scheme, ram_fd, c->dest_fill);
		if (r < 0) {
			fprintf(stderr, "destination: %s\n", strerror(-r));
			goto out;
		}
		dest_up = true;
		addr = ed.addr;
	}
	g = hm_guest_process_new(s.pid, &s.block, 1, s.uffd, NULL, &e2e_log);
	s.uffd = -1;
	if (!g) {
		r = -errno;
		fprintf(stderr, "hm_guest_process_new: %s\n", strerror(-r));
		goto out;
	}
	if (c->hints != E2E_HINTS_NONE) {
		hs = hm_hint_source_channel_new(s.hint_fd, &e2e_log);
		s.hint_fd = -1;
		if (!hs) {
			r = -errno;
			goto out;
		}
	}
	m = hm_migration_new(g, hs, &c->mp, &e2e_log);
	if (!m) {
		r = -errno;
		fprintf(stderr, "hm_migration_new: %s\n", strerror(-r));
		goto out;
	}
	if (c->before_run)
		c->before_run(c->during_opaque);
	h.c = c;
	h.m = m;
	h.s = &s;
	if ((c->cancel_after_ms || c->during) &&
	    pthread_create(&ht, NULL, helper_thread, &h) == 0)
		helper = true;
	res->run = hm_migration_run(m, addr);
	if (helper)
		pthread_join(ht, NULL);
	hm_migration_get_stats(m, &res->st);
	r = hm_bitmap_init(&inuse, s.npages);
	if (r == 0)
		r = hm_bitmap_init(&busy, s.npages);
	if (r < 0)
		goto out;
	if (res->run == 0) {
		r = hm_synth_inuse(&s, &inuse);
		if (r == 0)
			r = hm_synth_busy(&s, &busy);
		if (r < 0)
			goto out;
		res->inuse_pages = hm_bitmap_count(&inuse);
		if (c->split_lied && !c->no_verify) {
			r = verify_split(m, &s, &inuse, res);
			if (r < 0)
				goto out;
		} else if (!c->no_verify) {
			res->mismatches = hm_migration_verify(m, &inuse,
							      &res->checked);
		}
		if (c->resume_after) {
			r = hm_migration_resume_guest(m);
			if (r < 0) {
				fprintf(stderr, "resume: %s\n", strerror(-r));
				goto out;
			}
			res->writes_before = __atomic_load_n(&s.shared->writes,
							     __ATOMIC_ACQUIRE);
			hm_test_sleep_ms(200);
		}
	}
	hm_migration_free(m);
	m = NULL;
	if (dest_up) {
		res->dest = e2e_dest_join(&ed);
		res->dst = ed.st;
		if (res->run == 0 && res->dest == 0)
			res->dest_invalid = dest_invalid_pages(&ed, &inuse,
							       &busy,
							       s.page_size);
	}
	res->alive = child_alive(s.pid);
	if (res->run < 0) {
		res->writes_before = __atomic_load_n(&s.shared->writes,
						     __ATOMIC_ACQUIRE);
		hm_test_sleep_ms(200);
	} else if (!c->resume_after) {
		res->writes_before = __atomic_load_n(&s.shared->writes,
						     __ATOMIC_ACQUIRE);
	}
	res->writes_after = __atomic_load_n(&s.shared->writes,
					    __ATOMIC_ACQUIRE);
	res->check_errors = __atomic_load_n(&s.shared->check_errors,
					    __ATOMIC_ACQUIRE);
	r = 0;
out:
	hm_migration_free(m);
	hm_hint_source_free(hs);
	hm_guest_free(g);
	if (dest_up)
		e2e_dest_free(&ed);
	if (synth_up)
		hm_synth_stop(&s);
	if (ram_fd >= 0)
		close(ram_fd);
	hm_bitmap_fini(&inuse);
	hm_bitmap_fini(&busy);
	return r;
}

void e2e_print(const char *what, const struct e2e_result *res)
{
	const struct hm_migrate_stats *st = &res->st;

	fprintf(stderr,
		"%s: run %d (%s) dest %d | %" PRIu64 " ms, down %" PRIu64
		" ms, %" PRIu64 " rounds, %.1f MiB sent, %" PRIu64
		" normal %" PRIu64 " zero %" PRIu64 " hinted %" PRIu64
		" empty | hints req %" PRIu64 " recv %" PRIu64 " appl %"
		PRIu64 " stale %" PRIu64 " rej %" PRIu64 " | tracker %s | "
		"in use %" PRIu64 " checked %" PRIu64 " mismatches %ld "
		"dest-invalid %" PRIu64 " lied %" PRIu64 "/%ld | guest "
		"check errors %" PRIu64 " writes %" PRIu64 "->%" PRIu64
		"\n", what, res->run, res->run ? strerror(-res->run) : "ok",
		res->dest, st->total_time_ms, st->downtime_ms, st->rounds,
		(double)st->ram_transferred / (1 << 20), st->normal_pages,
		st->duplicate_pages, st->skipped_hinted_pages,
		st->skipped_empty_pages, st->hint_requested,
		st->hint_received, st->hint_applied, st->hint_dropped_stale,
		st->hint_rejected, hm_tracker_mode_name(st->tracker_mode),
		res->inuse_pages, res->checked, res->mismatches,
		res->dest_invalid, res->lied_pages, res->lied_mismatches,
		res->check_errors, res->writes_before, res->writes_after);
}

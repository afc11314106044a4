/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig send: migrate a running synthetic guest (src/fixture/synth.h),
 * or with --qemu a running QEMU guest (send_qemu.c), to a `hintmig recv`
 * at ADDR, optionally verify every in-use page bit for bit, and write a
 * JSON summary shaped like QEMU's query-migrate. This file: options, the
 * synthetic guest, the migration and its report.
 *
 * Exit status: 0 completed (and verified when asked), 1 verification
 * found mismatching pages, 2 usage, 3 the migration failed or was
 * cancelled, 4 setup error (guest, tracker, memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "hm_config.h"

#if HM_HAVE_JSONC
#include <json-c/json.h>
#endif

#include <hintmig/hintmig.h>
#include <hintmig/hinted_map.h>
#include <hintmig/migrate.h>

#include "cmd.h"
#include "send.h"
#include "migrate/wire/auth.h"
#include "parse.h"
#include "migrate/guests/guest.h"
#include "migrate/wire/le.h"
#include "fixture/synth.h"
#include "migrate/wire/transport.h"



static const char *const hints_names[] = {
	[HINTS_NONE] = "none",
	[HINTS_FREE] = "free",
	[HINTS_ISOLATED] = "isolated",
	[HINTS_AUTO] = "auto",
};

static const char *const pattern_names[] = {
	[HM_SYNTH_UNIFORM] = "uniform",
	[HM_SYNTH_HOTSET] = "hotset",
};

static const char *const compress_names[] = {
	[HM_COMPRESS_NONE] = "none",
	[HM_COMPRESS_ZSTD] = "zstd",
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


/* ---- progress ---------------------------------------------------------- */

struct progress {
	bool tty;
	bool quiet;
	bool virsh;		/* "Migration: [ 45 %]", as virsh migrate */
	int last_pct;
	bool line_open;
	uint64_t last_round;
	uint64_t last_ns;
};

static void on_progress(void *opaque, const struct hm_migrate_stats *st)
{
	struct progress *pr = opaque;
	double rate = st->mbps * 1e6 / 8.0 / MIB;
	uint64_t now = mono_ns();

	if (pr->quiet)
		return;
	if (pr->virsh) {
		/* hintmig migrate: virsh migrate --verbose's line */
		int pct = st->ram_total ? (int)(100 - st->ram_remaining * 100 /
						st->ram_total) : 0;

		if (st->status == HM_MIG_COMPLETED)
			pct = 100;
		if (pct == pr->last_pct)
			return;
		pr->last_pct = pct;
		fprintf(stderr, pr->tty ? "\rMigration: [%3d %%]"
					: "Migration: [%3d %%]\n", pct);
		pr->line_open = pr->tty;
		return;
	}
	if (pr->tty) {
		fprintf(stderr, "\rround %" PRIu64 "  remaining %.1f MiB  "
			"rate %.1f MiB/s  %-9s   ", st->rounds,
			(double)st->ram_remaining / MIB, rate,
			hm_migrate_status_name(st->status));
		pr->line_open = true;
		return;
	}
	if (st->rounds == pr->last_round && now - pr->last_ns < 1000000000u)
		return;
	pr->last_round = st->rounds;
	pr->last_ns = now;
	fprintf(stderr, "round %" PRIu64 "  remaining %.1f MiB  rate %.1f "
		"MiB/s  %s\n", st->rounds, (double)st->ram_remaining / MIB,
		rate, hm_migrate_status_name(st->status));
}

static void progress_end(struct progress *pr)
{
	if (pr->line_open)
		fputc('\n', stderr);
	pr->line_open = false;
}

/* ---- cancel on SIGINT/SIGTERM: a thread waits for the signal --------- */

struct sigctx {
	sigset_t set;
	struct hm_migration *_Atomic m;
	pthread_t thread;
	bool started;
};

static void *sig_thread(void *arg)
{
	struct sigctx *sc = arg;

	for (;;) {
		int sig;

		if (sigwait(&sc->set, &sig) != 0)
			continue;
		if (sig == SIGUSR1) /* our own wake-up to leave */
			break;
		fprintf(stderr, "\nhintmig send: %s: cancelling\n",
			strsignal(sig));
		hm_migration_cancel(atomic_load(&sc->m));
	}
	return NULL;
}

/* ---- raw transport throughput (the physical limit) --------------------- */

struct raw_peer {
	int fd;
	uint64_t bytes;
	int err;
	void *buf;
	size_t cap;	/* sink: 0, or the size of a fresh mapping that
			 * received bytes fill in order */
};

#define RAW_BUF (1u << 20)		/* one send / recv */
#define RAW_SRC_BUF (64u << 20)		/* what a sender walks through */

static void *raw_sink(void *arg)
{
	struct raw_peer *p = arg;

	for (;;) {
		size_t off = p->cap ? (size_t)(p->bytes % p->cap) : 0;
		size_t want = p->cap && p->cap - off < RAW_BUF ? p->cap - off
							      : RAW_BUF;
		ssize_t n = recv(p->fd, (char *)p->buf + off, want, 0);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			p->err = n < 0 ? errno : 0;
			break;
		}
		p->bytes += (uint64_t)n;
	}
	return NULL;
}

static void *raw_source(void *arg)
{
	struct raw_peer *p = arg;
	uint64_t left = p->bytes, off = 0;

	/* walk a buffer larger than the caches: the data comes from memory,
	 * as guest pages would */
	while (left) {
		size_t n = left < RAW_BUF ? (size_t)left : RAW_BUF;
		int r = hm_send_all(p->fd, (char *)p->buf + off, n);

		if (r < 0) {
			p->err = -r;
			break;
		}
		left -= n;
		off = (off + RAW_BUF) % RAW_SRC_BUF;
	}
	shutdown(p->fd, SHUT_WR);
	return NULL;
}

/* Bytes per second through nch loopback connections of the scheme of
 * `to` (tcp or unix), moving total bytes. The receivers reuse a 1 MiB
 * buffer, or with fresh, receive into never-touched memory (the bytes'
 * final place, as a destination must). 0 on failure. */
static double raw_throughput(const char *to, unsigned nch, uint64_t total,
			     bool fresh)
{
	char addr[128];
	struct raw_peer *snd = NULL, *rcv = NULL;
	pthread_t *th = NULL;
	unsigned started = 0;
	double bps = 0;
	uint64_t t0, t1, got = 0;
	int lfd = -1;
	bool tcp = !strncmp(to, "tcp:", 4);

	if (tcp) {
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);

		lfd = hm_transport_listen("tcp:127.0.0.1:0", (int)nch);
		if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&sin, &sl))
			goto out;
		snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u",
			 ntohs(sin.sin_port));
	} else {
		snprintf(addr, sizeof(addr), "unix:/tmp/hintmig-raw-%d.sock",
			 (int)getpid());
		unlink(addr + 5);
		lfd = hm_transport_listen(addr, (int)nch);
		if (lfd < 0)
			goto out;
	}
	snd = calloc(nch, sizeof(*snd));
	rcv = calloc(nch, sizeof(*rcv));
	th = calloc(2 * (size_t)nch, sizeof(*th));
	if (!snd || !rcv || !th)
		goto out;
	for (unsigned i = 0; i < nch; i++) {
		snd[i].fd = rcv[i].fd = -1;
		snd[i].buf = malloc(RAW_SRC_BUF);
		if (fresh) {
			rcv[i].cap = (size_t)(total / nch) + RAW_BUF;
			rcv[i].buf = mmap(NULL, rcv[i].cap,
					  PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS |
						  MAP_NORESERVE, -1, 0);
			if (rcv[i].buf == MAP_FAILED)
				rcv[i].buf = NULL;
		} else {
			rcv[i].buf = malloc(RAW_BUF);
		}
		if (!snd[i].buf || !rcv[i].buf)
			goto out;
		memset(snd[i].buf, 0xa5, RAW_SRC_BUF);
		snd[i].fd = hm_transport_connect(addr, 5000);
		if (snd[i].fd < 0)
			goto out;
		rcv[i].fd = hm_transport_accept(lfd, 5000);
		if (rcv[i].fd < 0)
			goto out;
		snd[i].bytes = total / nch;
	}
	t0 = mono_ns();
	for (unsigned i = 0; i < nch; i++) {
		if (pthread_create(&th[started], NULL, raw_sink, &rcv[i]))
			break;
		started++;
		if (pthread_create(&th[started], NULL, raw_source, &snd[i]))
			break;
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	t1 = mono_ns();
	for (unsigned i = 0; i < nch; i++)
		got += rcv[i].bytes;
	if (started == 2 * nch && t1 > t0 && got)
		bps = (double)got * 1e9 / (double)(t1 - t0);
out:
	for (unsigned i = 0; snd && rcv && i < nch; i++) {
		if (snd[i].fd >= 0)
			close(snd[i].fd);
		if (rcv[i].fd >= 0)
			close(rcv[i].fd);
		free(snd[i].buf);
		if (rcv[i].cap && rcv[i].buf)
			munmap(rcv[i].buf, rcv[i].cap);
		else
			free(rcv[i].buf);
	}
	free(snd);
	free(rcv);
	free(th);
	if (lfd >= 0)
		close(lfd);
	if (!tcp)
		unlink(addr + 5);
	return bps;
}

/* ---- JSON summary ------------------------------------------------------ */


#if HM_HAVE_JSONC
static int add_u64(struct json_object *o, const char *k, uint64_t v)
{
	return json_object_object_add(o, k, json_object_new_int64(
						    v > INT64_MAX ? INT64_MAX
								  : (int64_t)v));
}

/* The hinted map file (include/hintmig/hinted_map.h), written whole to a
 * temporary name and renamed into place: a reader never sees half. */
static int write_hinted_map(const char *path, const struct hm_bitmap *b,
			    size_t page_size)
{
	uint8_t hdr[HM_HINTED_MAP_HEADER] = { 0 };
	char tmp[4096];
	size_t nw = (b->nbits + 63) / 64;
	int fd, r = 0;
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(hdr, HM_HINTED_MAP_MAGIC, 8);
	put32(hdr + 8, HM_HINTED_MAP_VERSION);
	put32(hdr + 12, (uint32_t)page_size);
	put64(hdr + 16, b->nbits);
	put64(hdr + 24, hm_bitmap_count(b));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		goto out;
	}
	if (fwrite(hdr, sizeof(hdr), 1, f) != 1)
		r = -EIO;
	for (size_t i = 0; r == 0 && i < nw; i++) {
		uint8_t le[8];

		put64(le, __atomic_load_n(&b->words[i],
						__ATOMIC_ACQUIRE));
		if (fwrite(le, sizeof(le), 1, f) != 1)
			r = -EIO;
	}
	if (fclose(f) && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
out:
	if (r < 0)
		unlink(tmp);
	return r;
}

static int write_json(const char *path, const struct summary *s)
{
	const struct hm_migrate_stats *st = &s->st;
	struct json_object *root = json_object_new_object();
	struct json_object *ram = json_object_new_object();
	struct json_object *hints = json_object_new_object();
	struct json_object *ver = json_object_new_object();
	const char *mode = hm_tracker_mode_name(st->tracker_mode);
	int r = -ENOMEM;

	if (!root || !ram || !hints || !ver)
		goto out;
	add_u64(root, "total-time", st->total_time_ms);
	add_u64(root, "downtime", st->downtime_ms);
	add_u64(root, "setup-time", st->setup_time_ms);
	add_u64(ram, "total", st->ram_total);
	add_u64(ram, "transferred", st->ram_transferred);
	add_u64(ram, "normal", st->normal_pages);
	add_u64(ram, "duplicate", st->duplicate_pages);
	add_u64(ram, "dirty-sync-count", st->dirty_sync_count);
	{
		char v[32];

		snprintf(v, sizeof(v), "%.3f", st->mbps);
		json_object_object_add(ram, "mbps",
				       json_object_new_double_s(st->mbps, v));
	}
	add_u64(ram, "skipped-empty", st->skipped_empty_pages);
	add_u64(ram, "skipped-hinted", st->skipped_hinted_pages);
	add_u64(ram, "normal-bytes", st->normal_bytes);
	add_u64(ram, "remaining", st->ram_remaining);
	json_object_object_add(root, "ram", ram);
	ram = NULL;
	add_u64(hints, "requested", st->hint_requested);
	add_u64(hints, "received", st->hint_received);
	add_u64(hints, "applied", st->hint_applied);
	add_u64(hints, "dropped-stale", st->hint_dropped_stale);
	add_u64(hints, "rejected", st->hint_rejected);
	add_u64(hints, "session-pages-max", st->hint_session_pages_max);
	add_u64(hints, "apply-us", st->hint_apply_us);
	json_object_object_add(root, "hints", hints);
	hints = NULL;
	json_object_object_add(root, "tracker-mode",
			       json_object_new_string(mode ? mode : "?"));
	add_u64(root, "in-use-bytes", s->in_use_bytes);
	add_u64(ver, "pages-checked", s->pages_checked);
	add_u64(ver, "mismatches", s->mismatches > 0 ?
					   (uint64_t)s->mismatches : 0);
	json_object_object_add(root, "verify", ver);
	ver = NULL;
	json_object_object_add(root, "status", json_object_new_string(
			hm_migrate_status_name(st->status)));
	add_u64(root, "rounds", st->rounds);
	add_u64(root, "tracker-faults", st->tracker_faults);
	json_object_object_add(root, "tls", st->tls_path[0]
			       ? json_object_new_string(st->tls_path) : NULL);
	if (s->raw) {
		/* only with --raw-throughput */
		struct json_object *raw = json_object_new_object();

		if (raw) {
			add_u64(raw, "bytes-per-second", (uint64_t)s->raw_bps);
			add_u64(raw, "physical-limit-ms",
				s->raw_bps > 0 ? (uint64_t)((double)
					s->in_use_bytes * 1000.0 / s->raw_bps)
					       : 0);
			add_u64(raw, "fresh-memory-bytes-per-second",
				(uint64_t)s->raw_fresh_bps);
			add_u64(raw, "fresh-memory-limit-ms",
				s->raw_fresh_bps > 0 ? (uint64_t)((double)
					s->in_use_bytes * 1000.0 /
					s->raw_fresh_bps) : 0);
			json_object_object_add(root, "raw-throughput", raw);
		}
	}
	if (s->qemu) {
		/* QEMU's own migration: device state and the RAM blocks
		 * that are not shared (firmware, ROMs) */
		const struct {
			const char *key;
			int64_t v;
		} qf[] = {
			{ "total-time", s->qst.total_ms },
			{ "downtime", s->qst.downtime_ms },
			{ "setup-time", s->qst.setup_ms },
			{ "device-state-bytes", s->qst.transferred },
			{ "cutover-ms", s->qst.cutover_ms },
		};
		struct json_object *qo = json_object_new_object();

		if (qo) {
			json_object_object_add(qo, "status",
					       json_object_new_string(
						       s->qst.status));
			for (size_t i = 0; i < HM_NELEM(qf); i++)
				json_object_object_add(
					qo, qf[i].key,
					json_object_new_int64(qf[i].v));
			json_object_object_add(root, "qemu", qo);
		}
	}
	r = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY |
				    JSON_C_TO_STRING_SPACED);
	if (r < 0)
		r = -EIO;
out:
	json_object_put(root);
	json_object_put(ram);
	json_object_put(hints);
	json_object_put(ver);
	return r;
}
#else
static int write_json(const char *path, const struct summary *s)
{
	(void)path;
	(void)s;
	return -ENOTSUP;
}
#endif

/* Peak resident memory of this process (the engine; the guest is another
 * process), from /proc/self/status, in KiB; 0 if unknown. */
static uint64_t peak_rss_kib(void)
{
	char line[256];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v;
}

/* ---- the command ------------------------------------------------------- */

static void send_usage(FILE *f)
{
	fprintf(f,
"Usage: hintmig send --to ADDR [options]\n"
"   or: hintmig send --qemu QMP_SOCKET --to ADDR [--agent SOCKET] [options]\n"
"  --to ADDR               unix:PATH or tcp:HOST:PORT (a hintmig recv)\n"
"  --key-file FILE         the migration's secret, the same as the\n"
"                          receiver's: each end proves it holds it before\n"
"                          any page moves (docs/protocol.md); mode 0600,\n"
"                          or /dev/fd/N, a descriptor handed down\n"
"  --insecure              allow TCP without --key-file or --tls\n"
"  --tls                   encrypt every connection with TLS, x509\n"
"                          certificates both ways (docs/protocol.md \"TLS\")\n"
"  --tls-dir DIR           ca-cert.pem, client-cert.pem, client-key.pem\n"
"                          (default /etc/pki/qemu, libvirt's; implies --tls)\n"
"  --tls-name NAME         the name the destination's certificate must\n"
"                          carry (default: --to's host)\n"
"a running QEMU guest (RAM in a shared memory backend; docs/qemu.md):\n"
"  --qemu QMP_SOCKET       migrate the guest of the QEMU with this QMP socket\n"
"  --expect-pid PID        the QEMU's pid (its pidfile): refuse any other\n"
"                          process on the QMP socket (any QEMU otherwise)\n"
"  --qemu-uri URI          where QEMU sends its device state: the\n"
"                          destination QEMU's incoming URI (default: --to's\n"
"                          port + 1, or its path + \".qemu\"; as hintmig recv)\n"
"  --agent SOCKET          free page hints from the guest's hint agent: the\n"
"                          QEMU chardev socket of its virtio-serial port\n"
"  --libvirt               libvirt migrates the device state (used by\n"
"                          hintmig migrate, docs/libvirt.md): QMP_SOCKET is\n"
"                          a second monitor; hintmig stops the vCPUs for the\n"
"                          final round and leaves the guest paused\n"
"  --connect-timeout MS    wait this long for ADDR to listen (default: fail\n"
"                          at once if nothing listens; connecting: 10000)\n"
"guest (synthetic, without --qemu):\n"
"  --guest-ram SIZE        RAM size, K/M/G suffixes (default 1G)\n"
"  --used FRAC             fraction in use, 25%% or 0.25 (default 25%%)\n"
"  --dirty-rate PAGES/S    page writes per second (default 0: idle)\n"
"  --pattern uniform|hotset\n"
"  --churn-rate N          alloc+free pairs per second (default 0)\n"
"  --writers N             writer threads (default 1)\n"
"  --memfd                 RAM is a memfd (MAP_SHARED)\n"
"  --thp                   transparent huge pages on the guest RAM\n"
"  --hugetlb               guest RAM from the hugetlb pool (2 MiB pages,\n"
"                          vm.nr_hugepages): tracked in whole huge pages\n"
"migration:\n"
"  --hints none|free|isolated|auto   free page hinting (default none;\n"
"                          with --agent: auto). auto: the agent's hints\n"
"                          if its socket connects and it answers with\n"
"                          hints, else none (a warning says why)\n"
"  --hint-timeout MS       how long a round waits for the guest's hints\n"
"                          (default 1000)\n"
"  --tracker auto|sync|async    write tracking mode (default auto)\n"
"  --track-unit SIZE       a write fault un-protects and reports this much\n"
"                          (R12; 2M: a transparent huge page stays whole,\n"
"                          one fault per huge page and round; sync tracker)\n"
"  --keep-hot              pages written in two harvests in a row stay\n"
"                          writable and are sent every round (R11):\n"
"                          fewer guest faults, more pages sent\n"
"  --channels N            parallel streams (default: one per core)\n"
"  --compress none|zstd    per batch (default none)\n"
"  --max-bandwidth RATE    bytes/s with K/M/G suffixes, 0 = unlimited\n"
"  --downtime-limit MS     (default 300)\n"
"  --max-rounds N          (default 30)\n"
"  --force-converge        stop-and-copy at max-rounds instead of failing\n"
"output:\n"
"  --verify                compare every in-use page with the destination\n"
"  --json FILE             QEMU query-migrate shaped summary\n"
"  --hinted-map FILE       the pages left out because hinted (never sent\n"
"                          after the hint): the only pages a compare may\n"
"                          find different (format: docs/protocol.md)\n"
"  --raw-throughput        also measure the raw loopback throughput of the\n"
"                          same transport (the physical limit): plain\n"
"                          sends of 1 MiB walking a 64 MiB buffer per\n"
"                          channel, as many channels as the migration,\n"
"                          into a reused 1 MiB buffer (the physical\n"
"                          limit) and into fresh memory (what a\n"
"                          destination's first touch adds on this host)\n"
"  --progress rounds|virsh   progress on stderr: per round (default), or\n"
"                          virsh migrate --verbose's \"Migration: [ 45 %%]\"\n"
"  --quiet, --verbose      less or more of the engine's log\n"
"  --help                  this text\n"
"  --version               the version\n"
"exit status: 0 ok, 1 verification mismatches, 2 usage, 3 migration\n"
"failed or cancelled, 4 setup error\n");
}


enum {
	OPT_TO = 256, OPT_RAM, OPT_USED, OPT_DIRTY, OPT_PATTERN, OPT_HINTS,
	OPT_TRACKER, OPT_CHANNELS, OPT_COMPRESS, OPT_BW, OPT_DOWNTIME,
	OPT_ROUNDS, OPT_FORCE, OPT_JSON, OPT_HINTED_MAP, OPT_VERIFY, OPT_MEMFD, OPT_THP,
	OPT_RAW, OPT_QUIET, OPT_VERBOSE, OPT_CHURN, OPT_WRITERS, OPT_HELP,
	OPT_QEMU, OPT_QEMU_URI, OPT_EXPECT_PID, OPT_AGENT, OPT_HINT_TIMEOUT, OPT_VERSION, OPT_KEEP_HOT,
	OPT_LIBVIRT, OPT_CONNECT_TIMEOUT, OPT_PROGRESS, OPT_TRACK_UNIT,
	OPT_HUGETLB, OPT_KEY_FILE, OPT_INSECURE, OPT_TLS, OPT_TLS_DIR,
	OPT_TLS_NAME,
};

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "hintmig send: invalid value '%s' for --%s\n", val,
		opt);
	return -EINVAL;
}

static int parse_args(int argc, char **argv, struct send_opts *o)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, OPT_TO },
		{ "guest-ram", required_argument, NULL, OPT_RAM },
		{ "used", required_argument, NULL, OPT_USED },
		{ "dirty-rate", required_argument, NULL, OPT_DIRTY },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "hints", required_argument, NULL, OPT_HINTS },
		{ "tracker", required_argument, NULL, OPT_TRACKER },
		{ "channels", required_argument, NULL, OPT_CHANNELS },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ "max-bandwidth", required_argument, NULL, OPT_BW },
		{ "downtime-limit", required_argument, NULL, OPT_DOWNTIME },
		{ "max-rounds", required_argument, NULL, OPT_ROUNDS },
		{ "force-converge", no_argument, NULL, OPT_FORCE },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "hinted-map", required_argument, NULL, OPT_HINTED_MAP },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "memfd", no_argument, NULL, OPT_MEMFD },
		{ "thp", no_argument, NULL, OPT_THP },
		{ "raw-throughput", no_argument, NULL, OPT_RAW },
		{ "churn-rate", required_argument, NULL, OPT_CHURN },
		{ "writers", required_argument, NULL, OPT_WRITERS },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "keep-hot", no_argument, NULL, OPT_KEEP_HOT },
		{ "qemu", required_argument, NULL, OPT_QEMU },
		{ "qemu-uri", required_argument, NULL, OPT_QEMU_URI },
		{ "expect-pid", required_argument, NULL, OPT_EXPECT_PID },
		{ "agent", required_argument, NULL, OPT_AGENT },
		{ "hint-timeout", required_argument, NULL, OPT_HINT_TIMEOUT },
		{ "libvirt", no_argument, NULL, OPT_LIBVIRT },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "track-unit", required_argument, NULL, OPT_TRACK_UNIT },
		{ "hugetlb", no_argument, NULL, OPT_HUGETLB },
		{ "connect-timeout", required_argument, NULL,
		  OPT_CONNECT_TIMEOUT },
		{ "key-file", required_argument, NULL, OPT_KEY_FILE },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "tls", no_argument, NULL, OPT_TLS },
		{ "tls-dir", required_argument, NULL, OPT_TLS_DIR },
		{ "tls-name", required_argument, NULL, OPT_TLS_NAME },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t u;
	int c, k;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qv", opts, NULL)) != -1) {
		switch (c) {
		case OPT_TO:
			o->to = optarg;
			break;
		case OPT_RAM:
			if (hm_parse_size(optarg, &u) || u == 0)
				return bad("guest-ram", optarg);
			o->sp.ram_bytes = u;
			break;
		case OPT_USED:
			if (hm_parse_frac(optarg, &o->sp.used_frac))
				return bad("used", optarg);
			break;
		case OPT_DIRTY:
			if (hm_parse_rate(optarg, UINT64_MAX,
					  &o->sp.dirty_rate))
				return bad("dirty-rate", optarg);
			break;
		case OPT_CHURN:
			if (hm_parse_rate(optarg, UINT64_MAX,
					  &o->sp.churn_rate))
				return bad("churn-rate", optarg);
			break;
		case OPT_WRITERS:
			if (hm_parse_uint(optarg, 256, &u) || !u)
				return bad("writers", optarg);
			o->sp.writers = (unsigned)u;
			break;
		case OPT_PATTERN:
			k = hm_parse_name(optarg, pattern_names,
					  HM_NELEM(pattern_names));
			if (k < 0)
				return bad("pattern", optarg);
			o->sp.pattern = (enum hm_synth_pattern)k;
			break;
		case OPT_HINTS:
			k = hm_parse_name(optarg, hints_names,
					  HM_NELEM(hints_names));
			if (k < 0)
				return bad("hints", optarg);
			o->hints = (enum hints_mode)k;
			o->hints_set = true;
			break;
		case OPT_TRACKER:
			if (hm_tracker_mode_parse(optarg, &o->mp.tracker_mode))
				return bad("tracker", optarg);
			break;
		case OPT_CHANNELS:
			if (hm_parse_uint(optarg, 64, &u) || !u)
				return bad("channels", optarg);
			o->mp.channels = (unsigned)u;
			break;
		case OPT_COMPRESS:
			k = hm_parse_name(optarg, compress_names,
					  HM_NELEM(compress_names));
			if (k < 0)
				return bad("compress", optarg);
			o->mp.compress = (enum hm_compress)k;
			break;
		case OPT_BW:
			if (hm_parse_size(optarg, &o->mp.max_bandwidth))
				return bad("max-bandwidth", optarg);
			break;
		case OPT_DOWNTIME:
			if (hm_parse_uint(optarg, UINT64_MAX, &u) || !u)
				return bad("downtime-limit", optarg);
			o->mp.downtime_limit_ms = u;
			break;
		case OPT_ROUNDS:
			if (hm_parse_uint(optarg, 1000000, &u) || !u)
				return bad("max-rounds", optarg);
			o->mp.max_rounds = (unsigned)u;
			break;
		case OPT_FORCE:
			o->mp.force_on_max_rounds = true;
			break;
		case OPT_HINTED_MAP:
			o->hinted_map = optarg;
			break;
		case OPT_JSON:
			o->json = optarg;
			break;
		case OPT_VERIFY:
			o->verify = true;
			break;
		case OPT_MEMFD:
			o->sp.memfd = true;
			break;
		case OPT_THP:
			o->sp.thp = true;
			break;
		case OPT_RAW:
			o->raw = true;
			break;
		case 'q':
		case OPT_QUIET:
			o->quiet = true;
			break;
		case 'v':
		case OPT_VERBOSE:
			o->verbose++;
			break;
		case OPT_QEMU:
			o->qemu = optarg;
			break;
		case OPT_QEMU_URI:
			o->qemu_uri = optarg;
			break;
		case OPT_EXPECT_PID:
			if (hm_parse_uint(optarg, INT32_MAX, &o->expect_pid) ||
			    !o->expect_pid) {
				fprintf(stderr, "hintmig send: bad --expect-pid "
					"'%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case OPT_AGENT:
			o->agent = optarg;
			break;
		case OPT_HINT_TIMEOUT:
			if (hm_parse_uint(optarg, 600000, &u))
				return bad("hint-timeout", optarg);
			o->mp.hint_timeout_ms = (unsigned)u;
			break;
		case OPT_HELP:
			send_usage(stdout);
			return 1;
		case OPT_KEEP_HOT:
			o->mp.tracker_keep_hot = true;
			break;
		case OPT_LIBVIRT:
			o->libvirt = true;
			break;
		case OPT_KEY_FILE:
			o->key_file = optarg;
			break;
		case OPT_INSECURE:
			o->insecure = true;
			break;
		case OPT_TLS:
			o->tls = true;
			break;
		case OPT_TLS_DIR:
			o->tls = true;
			o->tls_dir = optarg;
			break;
		case OPT_TLS_NAME:
			o->tls_name = optarg;
			break;
		case OPT_HUGETLB:
			o->sp.hugetlb = true;
			break;
		case OPT_TRACK_UNIT:
			if (hm_parse_size(optarg, &u) || (u & (u - 1)) ||
			    u > (1ull << 30))
				return bad("track-unit", optarg);
			o->mp.tracker_unit = u;
			break;
		case OPT_PROGRESS:
			if (strcmp(optarg, "rounds") && strcmp(optarg, "virsh"))
				return bad("progress", optarg);
			o->progress_virsh = !strcmp(optarg, "virsh");
			break;
		case OPT_CONNECT_TIMEOUT:
			if (hm_parse_uint(optarg, 3600000, &u) || !u)
				return bad("connect-timeout", optarg);
			o->mp.connect_timeout_ms = u;
			o->mp.connect_wait = true;
			break;
		case OPT_VERSION:
			hm_print_version("hintmig send");
			return 1;
		default:
			send_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "hintmig send: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!o->to) {
		fprintf(stderr, "hintmig send: --to ADDR is required\n");
		send_usage(stderr);
		return -EINVAL;
	}
	if (strncmp(o->to, "tcp:", 4) && strncmp(o->to, "unix:", 5)) {
		fprintf(stderr, "hintmig send: --to must be unix:PATH or "
				"tcp:HOST:PORT\n");
		return -EINVAL;
	}
#if !HM_HAVE_JSONC
	if (o->qemu) {
		fprintf(stderr, "hintmig send: --qemu: built without json-c "
				"(QMP)\n");
		return -EINVAL;
	}
	if (o->json) {
		fprintf(stderr, "hintmig send: --json: built without json-c\n");
		return -EINVAL;
	}
#endif
#if !HM_HAVE_ZSTD
	if (o->mp.compress == HM_COMPRESS_ZSTD) {
		fprintf(stderr, "hintmig send: --compress zstd: built without "
				"libzstd\n");
		return -EINVAL;
	}
#endif
	if (!o->qemu && (o->qemu_uri || o->agent || o->libvirt)) {
		fprintf(stderr, "hintmig send: --qemu-uri, --agent and "
				"--libvirt go with --qemu\n");
		return -EINVAL;
	}
	if (o->qemu && (o->verify || o->raw)) {
		fprintf(stderr, "hintmig send: --verify and --raw-throughput "
				"need the synthetic guest (a QEMU guest's RAM "
				"is compared by the QEMU test suite)\n");
		return -EINVAL;
	}
	o->sp.hint_kind = o->hints == HINTS_ISOLATED ? HM_HINT_ISOLATED
						      : HM_HINT_FREE;
	return 0;
}

/* Test hook of the QEMU suite's fault tests (docs/qemu-tests.md):
 * HINTMIG_TEST_DIE_AT=pre-switchover kills this process, as any SIGKILL
 * would, the moment QEMU's vCPUs are stopped for the final round (the
 * backend's log line, INFO: the suite runs with --verbose), before the
 * final harvest. */
static void log_with_hook(void *opaque, enum hm_log_level level,
			  const char *msg)
{
	hm_log_stderr(opaque, level, msg);
	if (opaque && strstr(msg, "vCPUs stopped"))
		raise(SIGKILL);
}

int hm_cmd_send(int argc, char **argv)
{
	struct send_opts o;
	struct hm_log log = { .fn = hm_log_stderr, .max_level = HM_LOG_WARN };
	struct progress pr = { 0 };
	struct summary sum;
	struct sigctx sc;
	struct hm_synth s;
	struct hm_bitmap inuse = { 0 };
	struct hm_guest *g = NULL;
	struct hm_hint_source *hs = NULL;
	struct hm_migration *m = NULL;
#if HM_HAVE_JSONC
	struct hm_qemu *q = NULL;
#endif
	bool synth_up = false;
	int ret = EXIT_USAGE, r;
	long mism;
	uint64_t raw_total = 0, guest_ram = 0;
	unsigned raw_nch = 1;

	memset(&o, 0, sizeof(o));
	memset(&sum, 0, sizeof(sum));
	memset(&sc, 0, sizeof(sc));
	memset(&s, 0, sizeof(s));
	hm_synth_params_default(&o.sp);
	o.sp.ram_bytes = 1ull << 30;
	o.sp.used_frac = 0.25;
	hm_migrate_params_default(&o.mp);
	r = parse_args(argc, argv, &o);
	if (r) {
		ret = r > 0 ? 0 : EXIT_USAGE;
		goto out;
	}
	if (hm_cli_key("hintmig send", o.to, o.key_file, o.insecure, o.tls,
		       &o.key)) {
		ret = EXIT_USAGE;
		goto out;
	}
	o.mp.auth_key = o.key.k;
	o.mp.auth_key_len = o.key.len;
	if (o.tls) {
		if (!o.tls_name && hm_cli_tls_name(o.to, o.tls_host,
						   sizeof(o.tls_host)) < 0) {
			fprintf(stderr, "hintmig send: --tls needs a tcp: "
				"destination or --tls-name NAME (the name its "
				"certificate carries)\n");
			ret = EXIT_USAGE;
			goto out;
		}
		if (hm_cli_tls("hintmig send", o.tls_dir, false,
			       &o.tls_creds)) {
			ret = EXIT_SETUP;
			goto out;
		}
		o.mp.tls = o.tls_creds;
		o.mp.tls_peer_name = o.tls_name ? o.tls_name : o.tls_host;
	}
	if (o.quiet)
		log.max_level = HM_LOG_ERROR;
	else if (o.verbose)
		log.max_level = o.verbose > 1 ? HM_LOG_DEBUG : HM_LOG_INFO;
	{
		const char *die = getenv("HINTMIG_TEST_DIE_AT");

		if (die && !strcmp(die, "pre-switchover")) {
			log.fn = log_with_hook;
			log.opaque = &log;
		}
	}
	pr.quiet = o.quiet;
	pr.tty = isatty(STDERR_FILENO);
	pr.virsh = o.progress_virsh;
	pr.last_pct = -1;

	ret = EXIT_SETUP;
#if HM_HAVE_JSONC
	if (o.qemu) {
		q = send_qemu_attach(&o, &log, &guest_ram);
		if (!q)
			goto out;
		sum.qemu = true;
	}
#endif
	if (!o.qemu) {
		if (!o.quiet)
			fprintf(stderr, "hintmig send: starting a %.0f MiB "
				"synthetic guest, %.0f%% in use\n",
				(double)o.sp.ram_bytes / MIB,
				o.sp.used_frac * 100);
		r = hm_synth_start(&o.sp, &s, &log);
		if (r < 0) {
			fprintf(stderr, "hintmig send: cannot start the "
				"synthetic guest: %s\n", strerror(-r));
			goto out;
		}
		synth_up = true;
		guest_ram = o.sp.ram_bytes;
	}

	/* SIGINT/SIGTERM cancel the migration (from a thread, not from a
	 * handler). Blocked only after the guest's fork. */
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
	if (pthread_create(&sc.thread, NULL, sig_thread, &sc) == 0)
		sc.started = true;

	if (o.raw) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		raw_nch = o.mp.channels ? o.mp.channels
					: n < 1 ? 1 : (unsigned)n;
		raw_total = hm_synth_inuse_count(&s) * s.page_size;
		if (raw_total < (256ull << 20))
			raw_total = 256ull << 20;
		sum.raw = true;
		sum.raw_bps = raw_throughput(o.to, raw_nch, raw_total, false);
		if (!o.quiet)
			fprintf(stderr, "hintmig send: raw %s loopback "
				"throughput: %.1f MiB/s over %u channels\n",
				!strncmp(o.to, "tcp:", 4) ? "tcp" : "unix",
				sum.raw_bps / MIB, raw_nch);
	}

#if HM_HAVE_JSONC
	if (q && send_qemu_guest(&o, q, &log, &g, &hs) < 0)
		goto out;
#endif
	if (!g) {
		g = hm_guest_process_new(s.pid, &s.block, 1, s.uffd, NULL,
					 &log);
		s.uffd = -1; /* the guest owns it now, even on failure */
	}
	if (!g) {
		fprintf(stderr, "hintmig send: guest: %s\n", strerror(errno));
		goto out;
	}
	if (synth_up && o.hints != HINTS_NONE) {
		hs = hm_hint_source_channel_new(s.hint_fd, &log);
		s.hint_fd = -1;
		if (!hs) {
			fprintf(stderr, "hintmig send: hint channel: %s\n",
				strerror(errno));
			goto out;
		}
	}
	m = hm_migration_new(g, hs, &o.mp, &log);
	if (!m) {
		fprintf(stderr, "hintmig send: %s\n", strerror(errno));
		goto out;
	}
	atomic_store(&sc.m, m);
	hm_migration_set_progress(m, on_progress, &pr);

	r = hm_migration_run(m, o.to);
	progress_end(&pr);
	if (r == 0 && o.hinted_map) {
		/* now, before the device state moves: under libvirt the
		 * destination's hook compares while the source is paused */
		int w = write_hinted_map(o.hinted_map, hm_migration_hinted(m),
					 g->page_size);

		if (w < 0) {
			fprintf(stderr, "hintmig send: cannot write %s: %s\n",
				o.hinted_map, strerror(-w));
			ret = EXIT_SETUP;
		}
	}
#if HM_HAVE_JSONC
	if (r == 0 && q)
		r = send_qemu_switchover(&o, q, &sum);
#endif
	if (r == 0 && synth_up) {
		/* the guest is paused: its in-use map is stable */
		if (hm_bitmap_init(&inuse, s.npages) == 0 &&
		    hm_synth_inuse(&s, &inuse) == 0)
			sum.in_use_bytes = hm_bitmap_count(&inuse) * s.page_size;
		else
			r = -ENOMEM;
	}
	ret = 0;
	if (r < 0) {
		fprintf(stderr, "hintmig send: migration %s: %s\n",
			r == -ECANCELED ? "cancelled" : "failed",
			strerror(-r));
		ret = EXIT_MIGRATION;
	} else if (o.verify) {
		mism = hm_migration_verify(m, &inuse, &sum.pages_checked);
		if (mism < 0) {
			fprintf(stderr, "hintmig send: verification failed: "
				"%s\n", strerror((int)-mism));
			ret = EXIT_MIGRATION;
		} else {
			sum.mismatches = mism;
			if (!o.quiet || mism)
				printf("verify: %" PRIu64 " pages checked, %ld "
				       "mismatches\n", sum.pages_checked, mism);
			if (mism)
				ret = EXIT_MISMATCH;
		}
	}
	if (o.raw && r == 0) {
		/* after the migration, so that memory it leaves freed does
		 * not warm the destination's (the destination still holds
		 * its RAM while it serves verification) */
		sum.raw_fresh_bps = raw_throughput(o.to, raw_nch, raw_total,
						   true);
		if (!o.quiet)
			fprintf(stderr, "hintmig send: raw loopback into "
				"fresh memory: %.1f MiB/s\n",
				sum.raw_fresh_bps / MIB);
	}
	hm_migration_get_stats(m, &sum.st);
	if (!o.quiet)
		printf("%s: total %" PRIu64 " ms, downtime %" PRIu64
		       " ms, setup %" PRIu64 " ms, %" PRIu64 " rounds, "
		       "transferred %.1f MiB (in use %.1f MiB), "
		       "%" PRIu64 " normal, %" PRIu64 " zero, %" PRIu64
		       " hinted, %" PRIu64 " empty pages, tracker %s\n",
		       hm_migrate_status_name(sum.st.status),
		       sum.st.total_time_ms, sum.st.downtime_ms,
		       sum.st.setup_time_ms, sum.st.rounds,
		       (double)sum.st.ram_transferred / MIB,
		       (double)sum.in_use_bytes / MIB, sum.st.normal_pages,
		       sum.st.duplicate_pages, sum.st.skipped_hinted_pages,
		       sum.st.skipped_empty_pages,
		       hm_tracker_mode_name(sum.st.tracker_mode));
	if (!o.quiet && sum.st.tls_path[0])
		printf("tls: %s\n", sum.st.tls_path);
#if HM_HAVE_JSONC
	if (!o.quiet && q && sum.qst.status[0])
		printf("qemu: %s, device state %" PRId64 " bytes, QEMU's "
		       "downtime %" PRId64 " ms, pre-switchover to completed "
		       "%" PRId64 " ms\n", sum.qst.status, sum.qst.transferred,
		       sum.qst.downtime_ms, sum.qst.cutover_ms);
#endif
	if (!o.quiet)
		printf("engine: peak resident memory %.1f MiB (guest RAM %.0f "
		       "MiB, in another process)\n",
		       (double)peak_rss_kib() / 1024.0,
		       (double)guest_ram / MIB);
	if (o.json) {
		r = write_json(o.json, &sum);
		if (r < 0) {
			fprintf(stderr, "hintmig send: cannot write %s: %s\n",
				o.json, strerror(-r));
			if (!ret)
				ret = EXIT_SETUP;
		}
	}
out:
	if (sc.started) {
		atomic_store(&sc.m, NULL);
		pthread_kill(sc.thread, SIGUSR1);
		pthread_join(sc.thread, NULL);
	}
	hm_migration_free(m);
	hm_hint_source_free(hs);
	hm_guest_free(g);
#if HM_HAVE_JSONC
	hm_qemu_detach(q);
#endif
	if (synth_up)
		hm_synth_stop(&s);
	hm_bitmap_fini(&inuse);
	hm_tls_creds_free(o.tls_creds);
	explicit_bzero(&o.key, sizeof(o.key));
	return ret;
}

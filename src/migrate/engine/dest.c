/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The destination: accept a migration's channels, receive guest RAM into
 * fresh memory (or the caller's file), acknowledge completion, answer
 * verification requests (docs/protocol.md, "Sequence of a migration").
 *
 * Threads: the calling thread accepts the channels and does the HELLO
 * exchange, then one receive thread per channel applies PAGES / ZERO_RUN /
 * ROUND / DEVICE_STATE until that channel's END; the calling thread joins
 * them and handles COMPLETE and VERIFY on channel 0. Each thread writes
 * only the pages of its own channel (the decoder enforces the channel
 * rule), so RAM needs no lock. The first failure wins: it is logged with
 * where it happened, ABORT goes to the source, and every other connection
 * is shut down so that the other threads return at once.
 *
 * Safety: received RAM is one mapping with an inaccessible guard region
 * on either side; every index was checked against the geometry by the
 * decoder and is checked again here before the copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "hm_config.h"
#include "hintmig/bitmap.h"
#include "hintmig/wp_tracker.h"
#include "uffd_compat.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/gate.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/transport.h"
#include "migrate/wire/wire.h"

#if HM_HAVE_ZSTD
#include <zstd.h>
#endif

#define DEFAULT_IO_TIMEOUT_MS 30000
#define DEFAULT_MAX_RAM (UINT64_C(64) << 30)
/* Zero runs from this size on release memory instead of writing zeros. */
#define ZERO_RELEASE_MIN (64 * 1024)
/* Fresh anonymous RAM is aligned to HUGE_SIZE; a HUGE_SIZE region whose
 * first batch brings at least HUGE_DENSE of its pages in one run is asked
 * for a huge page (MADV_HUGEPAGE) before they are written: one fault
 * instead of hundreds. Sparse regions stay small pages, so that scattered
 * data does not make the destination clear (and hold) whole huge pages. */
#define HUGE_SIZE ((size_t)2 << 20)
#define HUGE_DENSE_BYTES ((size_t)512 << 10)
enum { REG_FRESH = 0, REG_SMALL, REG_HUGE };

/* Where a channel is in the migration. */
enum dphase {
	PH_HELLO = 0,	/* connected, HELLO not yet received */
	PH_STREAM,	/* receiving RAM */
	PH_ENDED,	/* END received; channel 0 expects COMPLETE */
	PH_VERIFY,	/* COMPLETE_ACK sent; channel 0 serves VERIFY_REQ */
	PH_MAX
};

static const char *const phase_names[PH_MAX] = {
	[PH_HELLO] = "waiting for HELLO",
	[PH_STREAM] = "receiving RAM",
	[PH_ENDED] = "after END",
	[PH_VERIFY] = "after completion",
};

#define T(x) (1u << (x))
/* What the source may send in each phase. */
static const uint32_t phase_allows[PH_MAX] = {
	[PH_HELLO] = T(HM_MSG_HELLO),
	[PH_STREAM] = T(HM_MSG_PAGES) | T(HM_MSG_ZERO_RUN) | T(HM_MSG_ROUND) |
		      T(HM_MSG_DEVICE_STATE) | T(HM_MSG_END) | T(HM_MSG_ABORT),
	[PH_ENDED] = T(HM_MSG_COMPLETE) | T(HM_MSG_ABORT),
	[PH_VERIFY] = T(HM_MSG_VERIFY_REQ) | T(HM_MSG_ABORT),
};
#undef T

struct hm_dest;

struct dchan {
	struct hm_dest *d;
	unsigned idx;
	bool open;			/* wc holds a connection */
	struct hm_wire_chan wc;
	enum dphase phase;
	pthread_t thread;
	bool thread_started;
	int rc;
	uint64_t pages;			/* page slots: PAGES + ZERO_RUN */
	uint64_t data_pages, zero_pages;
	uint64_t placed;		/* pages placed by UFFDIO_COPY */
	uint64_t rounds;		/* ROUND markers */
	uint64_t last_round;
	uint64_t run_region, run_len;	/* huge_hint() within one batch */
	bool run_fresh;
	unsigned char *zbuf;		/* decompressed batch */
	size_t zcap;
#if HM_HAVE_ZSTD
	ZSTD_DCtx *dctx;
#endif
};

struct hm_dest {
	struct hm_log log;
	struct hm_dest_params p;
	bool ran;
	uint64_t hugetlb;		/* the RAM file's huge page size on
					 * hugetlbfs, else 0 */
	struct hm_wire_geometry geo;
	bool have_geo;
	uint64_t session_id;
	unsigned nch;
	uint64_t ps;
	uint32_t hello_flags;		/* of channel 0's HELLO */
	uint64_t refused_conns;		/* failed authentication (R17), of
					 * a gate closed */
	struct hm_gate *gate;		/* while channels are accepted */
	char tls_path[200];		/* what carries TLS (under lock) */
	struct dchan ch[HM_WIRE_MAX_CHANNELS];
	struct dchan spare;		/* handshake of channels 1.. */

	unsigned char *map;		/* guard + RAM + guard */
	size_t map_len, guard;
	unsigned char *ram;
	uint64_t ram_len;
	bool zero_release;		/* page_size % system page == 0 */
	unsigned char *region;		/* anonymous RAM: REG_* per HUGE_SIZE
					 * region (NULL: no huge pages) */
	uint64_t nregions, region_pages, huge_dense;
	int uffd;			/* HM_DEST_FILL_UFFD while receiving,
					 * else -1 */
	struct hm_bitmap present;	/* UFFD: pages that hold data; word w
					 * belongs to channel w % nch */
	enum hm_dest_fill fill;		/* in use */
	struct hm_ram_block blocks[HM_WIRE_MAX_BLOCKS];
	size_t nblocks;

	void *dev;
	size_t dev_len;
	bool have_dev;

	pthread_mutex_t lock;		/* failed, and sends during the
					 * receive phase */
	int failed;
};

/* ---- parameters ---------------------------------------------------------- */

void hm_dest_params_default(struct hm_dest_params *p)
{
	memset(p, 0, sizeof(*p));
	p->ram_fd = -1;
	p->io_timeout_ms = DEFAULT_IO_TIMEOUT_MS;
	p->max_ram_bytes = DEFAULT_MAX_RAM;
}

struct hm_dest *hm_dest_new(const struct hm_dest_params *p,
			    const struct hm_log *log)
{
	struct hm_dest *d = calloc(1, sizeof(*d));

	if (!d) {
		errno = ENOMEM;
		return NULL;
	}
	if (p)
		d->p = *p;
	else
		hm_dest_params_default(&d->p);
	if (!d->p.io_timeout_ms)
		d->p.io_timeout_ms = DEFAULT_IO_TIMEOUT_MS;
	if (!d->p.max_ram_bytes)
		d->p.max_ram_bytes = DEFAULT_MAX_RAM;
	if (!d->p.hello_timeout_ms)
		d->p.hello_timeout_ms = 3000;
	if (d->p.auth_key_len) {
		uint8_t *k = malloc(HM_AUTH_KEY_MAX);

		if (d->p.auth_key_len < HM_AUTH_KEY_MIN ||
		    d->p.auth_key_len > HM_AUTH_KEY_MAX || !d->p.auth_key ||
		    !k) {
			free(k);
			free(d);
			errno = k ? EINVAL : ENOMEM;
			return NULL;
		}
		memcpy(k, d->p.auth_key, d->p.auth_key_len);
		d->p.auth_key = k;	/* ours (freed with d) */
	}
	if (d->p.ram_fd < 0)
		d->p.ram_fd = -1;
	if (log)
		d->log = *log;
	for (unsigned i = 0; i < HM_WIRE_MAX_CHANNELS; i++) {
		d->ch[i].d = d;
		d->ch[i].idx = i;
		d->ch[i].wc.fd = -1;
	}
	d->spare.d = d;
	d->spare.wc.fd = -1;
	d->uffd = -1;
	pthread_mutex_init(&d->lock, NULL);
	return d;
}

/* ---- failure ------------------------------------------------------------- */

static void send_abort_locked(struct dchan *c, int reason, const char *text)
{
	unsigned char buf[8 + HM_WIRE_ABORT_TEXT_MAX];
	struct iovec iov;
	long n;

	if (!c->open || c->wc.session_id == 0)
		return; /* no session on it to abort */
	n = hm_wire_enc_abort(buf, sizeof(buf), (uint32_t)reason, text);
	if (n < 0)
		return;
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	/* best effort: the source may be gone already */
	(void)hm_wire_send(&c->wc, HM_MSG_ABORT, 0, &iov, 1);
}

/* Record the migration's failure rc_in (the first one wins and is logged as
 * an error; later ones are consequences, logged at debug level), tell the
 * source with ABORT on c and on channel 0 (unless tell is false: the
 * source aborted itself, or is gone), and shut every connection down so
 * that the receive threads return. Returns the first failure. */
__attribute__((format(printf, 5, 6))) static int
dest_fail(struct hm_dest *d, struct dchan *c, int rc_in, bool tell,
	  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&d->lock);
	if (d->failed) {
		hm_logf(&d->log, HM_LOG_DEBUG, "also: %s", msg);
		goto out;
	}
	hm_logf(&d->log, HM_LOG_ERROR, "%s", msg);
	if (c)
		c->rc = rc_in;
	if (tell) {
		int reason = -rc_in;

		if (c)
			send_abort_locked(c, reason, msg);
		if (!c || c->idx != 0)
			send_abort_locked(&d->ch[0], reason, msg);
	}
	d->failed = rc_in < 0 ? rc_in : -EPROTO;
	for (unsigned i = 0; i < HM_WIRE_MAX_CHANNELS; i++)
		if (d->ch[i].open)
			shutdown(d->ch[i].wc.fd, SHUT_RDWR);
	if (d->spare.open)
		shutdown(d->spare.wc.fd, SHUT_RDWR);
out:
	rc = d->failed;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

/* Fail channel c with rc, describing the message just received. */
__attribute__((format(printf, 3, 4))) static int
msg_fail(struct dchan *c, int rc, const char *fmt, ...)
{
	char what[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return dest_fail(c->d, c, rc, true,
			 "%s %u, seq %u at byte %" PRIu64 " (%s): %s",
			 c == &c->d->spare ? "connection" : "channel", c->idx,
			 c->wc.rx_seq ? c->wc.rx_seq - 1 : 0,
			 c->wc.rx_msg_offset, phase_names[c->phase], what);
}

/* hm_wire_recv failed on c with r: explain it. */
static int recv_fail(struct dchan *c, int r)
{
	struct hm_dest *d = c->d;

	switch (r) {
	case -EPROTO:
		return dest_fail(d, c, -EPROTO, true,
				 "channel %u (%s): invalid message: %s",
				 c->idx, phase_names[c->phase], c->wc.err);
	case -ENODATA:
		return dest_fail(d, c, -ECONNRESET, false,
				 "channel %u: the source disconnected (%s, "
				 "after %u messages, %" PRIu64 " bytes) "
				 "before the migration completed",
				 c->idx, phase_names[c->phase], c->wc.rx_seq,
				 c->wc.rx_bytes);
	case -ECONNRESET:
		return dest_fail(d, c, -ECONNRESET, false,
				 "channel %u: connection lost inside a message "
				 "(seq %u at byte %" PRIu64 ", %s): truncated "
				 "stream or reset",
				 c->idx, c->wc.rx_seq, c->wc.rx_msg_offset,
				 phase_names[c->phase]);
	case -ETIMEDOUT:
		return dest_fail(d, c, -ETIMEDOUT, true,
				 "channel %u: nothing received for %" PRIu64
				 " ms (%s, after %u messages)",
				 c->idx, d->p.io_timeout_ms,
				 phase_names[c->phase], c->wc.rx_seq);
	default:
		return dest_fail(d, c, r, false,
				 "channel %u: receive failed: %s (%s)",
				 c->idx, strerror(-r), phase_names[c->phase]);
	}
}

/* The source sent ABORT. */
static int abort_received(struct dchan *c, const struct hm_wire_msg *m)
{
	return dest_fail(c->d, c, -ECONNABORTED, false,
			 "channel %u: the source aborted the migration (%s): "
			 "%s (reason %u)",
			 c->idx, phase_names[c->phase], m->u.abort_.text,
			 m->u.abort_.reason);
}

/* ---- RAM ----------------------------------------------------------------- */

/* ---- placing pages into fresh RAM (HM_DEST_FILL_UFFD) --------------------
 *
 * Writing a page into never-touched memory (anonymous, or a hole of a
 * memfd) costs a fault that clears a new page, then the write; on nested
 * or shadow-paged hosts that fault dominates the whole receive. Instead, RAM is registered with a
 * userfaultfd in missing mode for the receive phase, and the first arrival
 * of a page is placed with UFFDIO_COPY: the kernel allocates the page and
 * fills it straight from the receive buffer, one call per run of pages,
 * with no clearing. A page placed before is written in place (it exists).
 *
 * present says which pages hold data; its word w is only touched by the
 * channel that owns pages [64w, 64w + 64) (channel w % nch). No thread
 * answers the userfaultfd: while it is registered, nothing of the
 * destination may touch a page that is not present (UFFD_FEATURE_SIGBUS
 * turns a mistake into SIGBUS instead of a hang). uffd_close() ends it
 * when the receive threads are done; missing pages then read as zero. */

static long long sysfs_num(const char *path)
{
	long long v = -1;
	FILE *f = fopen(path, "re");

	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* hugetlbfs RAM: every huge page of it must be there for the taking
 * (free in the pool, reserved for it included, or the file's already):
 * refused before anything is written otherwise, with the numbers. */
static int huge_preflight(struct hm_dest *d, int fd)
{
	char p[128];
	long long freep, resv, have, need = (long long)(d->ram_len / d->hugetlb);
	struct stat st;

	snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64
		 "kB/free_hugepages", d->hugetlb >> 10);
	freep = sysfs_num(p);
	snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64
		 "kB/resv_hugepages", d->hugetlb >> 10);
	resv = sysfs_num(p);
	have = fstat(fd, &st) == 0 ? (long long)st.st_blocks * 512 /
				     (long long)d->hugetlb : 0;
	if (freep < 0)
		return 0;	/* no figures: the kernel's faults decide */
	if (freep + have < need) {
		hm_logf(&d->log, HM_LOG_ERROR, "not enough huge pages: the "
			"guest's RAM needs %lld of %" PRIu64 " KiB, this host "
			"has %lld free (%lld of them reserved) and the RAM "
			"file holds %lld (vm.nr_hugepages)", need,
			d->hugetlb >> 10, freep, resv, have);
		return -ENOMEM;
	}
	return 0;
}

/* p + a rounded up to a multiple of a (a power of two), past p: the
 * start of RAM behind its leading guard. */
static unsigned char *align_up(unsigned char *p, size_t a)
{
	uintptr_t at = (uintptr_t)p + a;

	return (unsigned char *)((at + a - 1) & ~(uintptr_t)(a - 1));
}

/* Fresh anonymous memory, or a memfd / tmpfs file (shmem: UFFDIO_COPY
 * fills a new page cache page there too); whole system pages per
 * protocol page. Not hugetlbfs (UFFDIO_COPY would want whole huge pages)
 * nor disk files (no missing mode). */
static bool uffd_usable(const struct hm_dest *d, int fd)
{
	struct statfs sf;

	if (!d->zero_release)
		return false;
	return fd < 0 || (fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC);
}

static int uffd_open(struct hm_dest *d)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_SIGBUS };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)d->ram, .len = d->ram_len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int fd, r;

	/* user-mode-only needs no privilege; the destination's own
	 * kernel-mode accesses (recv into a page) never reach a missing
	 * page. Kernels before 5.11 refuse the flag. */
	fd = hm_sys_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		fd = hm_uffd_create();
	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0 ||
	    ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (!(reg.ioctls & (UINT64_C(1) << _UFFDIO_COPY))) {
		close(fd);
		return -ENOTSUP;
	}
	r = hm_bitmap_init(&d->present, d->geo.npages);
	if (r < 0) {
		close(fd);
		return r;
	}
	d->uffd = fd;
	d->fill = HM_DEST_FILL_UFFD;
	/* huge pages come from faults, which no longer happen */
	free(d->region);
	d->region = NULL;
	return 0;
}

/* End of the receive phase (no receive thread runs): RAM becomes plain
 * memory again. */
static void uffd_close(struct hm_dest *d)
{
	if (d->uffd < 0)
		return;
	close(d->uffd);
	d->uffd = -1;
	hm_bitmap_fini(&d->present);
}

/* Place n pages of data at page pg, none of them present. */
static int uffd_place(struct hm_dest *d, uint64_t pg, const unsigned char *src,
		      uint64_t n)
{
	uint64_t done = 0;

	while (done < n) {
		struct uffdio_copy uc = {
			.dst = (uintptr_t)(d->ram + (pg + done) * d->ps),
			.src = (uintptr_t)(src + done * d->ps),
			.len = (n - done) * d->ps,
			.mode = UFFDIO_COPY_MODE_DONTWAKE,
		};
		int e;

		if (ioctl(d->uffd, UFFDIO_COPY, &uc) == 0) {
			done = n;
			break;
		}
		e = errno;
		if (uc.copy > 0) {
			/* partial: go on after what was placed */
			done += (uint64_t)uc.copy / d->ps;
			continue;
		}
		if (e == EAGAIN || e == EINTR)
			continue;
		if (e == EEXIST) {
			/* already there after all: an ordinary write */
			memcpy(d->ram + (pg + done) * d->ps,
			       src + done * d->ps, d->ps);
			done++;
			continue;
		}
		return -e;
	}
	return 0;
}

static int ram_alloc(struct hm_dest *d)
{
	long sys = sysconf(_SC_PAGESIZE);
	int fd = d->p.ram_fd, r;
	unsigned char *ram;

	d->ram_len = d->geo.npages * d->ps;
	d->zero_release = sys > 0 && d->ps % (uint64_t)sys == 0;
	d->guard = d->ps > (uint64_t)sys ? d->ps : (size_t)sys;
	{
		struct statfs sf;

		/* hugetlbfs (a VMM's huge page RAM): mapped at a huge page
		 * boundary; pages are written into place (UFFDIO_COPY
		 * would want whole huge pages), zero pages are written
		 * where not zero already (a hole punched in part of a huge
		 * page is only zeroed by newer kernels) */
		if (fd >= 0 && fstatfs(fd, &sf) == 0 &&
		    sf.f_type == HUGETLBFS_MAGIC && sf.f_bsize > sys) {
			d->hugetlb = (uint64_t)sf.f_bsize;
			if (d->ram_len % d->hugetlb) {
				hm_logf(&d->log, HM_LOG_ERROR, "RAM of %zu "
					"bytes is not whole %" PRIu64 "-byte "
					"huge pages of its file", d->ram_len,
					d->hugetlb);
				return -EINVAL;
			}
			d->zero_release = false;
			d->guard = d->hugetlb;
			r = huge_preflight(d, fd);
			if (r < 0)
				return r;
			hm_logf(&d->log, HM_LOG_INFO, "RAM on hugetlbfs "
				"(%" PRIu64 " KiB pages): written into place",
				d->hugetlb >> 10);
		}
	}
	/* (hugetlbfs: one more guard, room to align RAM) */
	d->map_len = d->ram_len + (d->hugetlb ? 3 : 2) * d->guard;
#ifdef MADV_HUGEPAGE
	if (fd < 0 && d->zero_release && HUGE_SIZE % d->ps == 0) {
		d->region_pages = HUGE_SIZE / d->ps;
		/* a channel gets 64-page words of a region in turn: with
		 * many channels, fewer of its pages count as dense */
		d->huge_dense = HUGE_DENSE_BYTES / d->ps;
		if (d->nch && d->huge_dense > d->region_pages / 2 / d->nch)
			d->huge_dense = d->region_pages / 2 / d->nch;
		if (!d->huge_dense)
			d->huge_dense = 1;
		d->nregions = (d->geo.npages + d->region_pages - 1) /
			      d->region_pages;
		d->region = calloc(d->nregions, 1);
		if (!d->region)
			return -ENOMEM;
		d->map_len += HUGE_SIZE; /* room to align RAM */
	}
#endif
	d->map = mmap(NULL, d->map_len, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (d->map == MAP_FAILED) {
		d->map = NULL;
		r = -errno;
		free(d->region);
		d->region = NULL;
		return r;
	}
	if (fd >= 0 && d->p.ram_fd_fixed) {
		/* A VMM maps this file: never change its size under it.
		 * Start from holes all the same (pages never sent read as
		 * zero); the VMM waits for incoming migration and does not
		 * touch guest RAM meanwhile. */
		struct stat st;

		/* (a hugetlbfs file that is all holes stays as it is: a
		 * punch would drop the VMM's reservation of its pages) */
		if (!(d->hugetlb && fstat(fd, &st) == 0 && st.st_blocks == 0) &&
		    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, (off_t)d->ram_len) < 0) {
			r = -errno;
			goto fail;
		}
		ram = mmap(align_up(d->map, d->guard), d->ram_len,
			   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			   0);
	} else if (fd >= 0) {
		/* start from holes: pages never sent read as zero */
		if (ftruncate(fd, 0) < 0 ||
		    ftruncate(fd, (off_t)d->ram_len) < 0) {
			r = -errno;
			goto fail;
		}
		ram = mmap(align_up(d->map, d->guard), d->ram_len,
			   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			   0);
	} else {
		uintptr_t at = (uintptr_t)(d->map + d->guard);

		/* a whole guard stays PROT_NONE on each side */
		if (d->region)
			at = (at + HUGE_SIZE - 1) &
			     ~(uintptr_t)(HUGE_SIZE - 1);
		ram = mmap((void *)at, d->ram_len,
			   PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
				   MAP_FIXED,
			   -1, 0);
	}
	if (ram == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	d->ram = ram;
	d->fill = HM_DEST_FILL_WRITE;
	if (d->p.fill != HM_DEST_FILL_WRITE) {
		r = uffd_usable(d, fd) ? uffd_open(d) : -ENOTSUP;
		if (r < 0 && d->p.fill == HM_DEST_FILL_UFFD) {
			hm_logf(&d->log, HM_LOG_ERROR,
				"cannot place pages with a userfaultfd: %s",
				strerror(-r));
			goto fail;
		}
		if (r < 0)
			hm_logf(&d->log, HM_LOG_DEBUG,
				"no userfaultfd (%s): pages are written "
				"into place", strerror(-r));
	}
	d->nblocks = d->geo.nblocks;
	for (size_t i = 0; i < d->nblocks; i++) {
		d->blocks[i] = d->geo.blocks[i];
		d->blocks[i].host_addr =
			(uint64_t)(uintptr_t)(ram +
					      d->blocks[i].first_bit * d->ps);
		d->blocks[i].memfd = fd;
		d->blocks[i].memfd_offset = d->blocks[i].first_bit * d->ps;
	}
	return 0;
fail:
	munmap(d->map, d->map_len);
	d->map = NULL;
	d->ram = NULL;
	free(d->region);
	d->region = NULL;
	return r;
}

/* Before page pg of a batch is written (pages of a batch in order, run
 * state reset per batch by chan_next): a fresh region that gets
 * huge_dense pages in one run of this batch becomes a huge page region. */
static void huge_hint(struct dchan *c, uint64_t pg)
{
	struct hm_dest *d = c->d;
	uint64_t reg;

	if (!d->region || pg >= d->geo.npages)
		return;
	reg = pg / d->region_pages;
	if (reg != c->run_region) {
		unsigned char fresh = REG_FRESH;

		c->run_region = reg;
		c->run_len = 0;
		/* claim it: other channels share the region */
		c->run_fresh = __atomic_compare_exchange_n(
			&d->region[reg], &fresh, REG_SMALL, false,
			__ATOMIC_RELAXED, __ATOMIC_RELAXED);
	}
	if (++c->run_len == d->huge_dense && c->run_fresh) {
		size_t len = d->region_pages * d->ps;

		if ((reg + 1) * d->region_pages > d->geo.npages)
			len = (d->geo.npages - reg * d->region_pages) * d->ps;
		if (madvise(d->ram + reg * d->region_pages * d->ps, len,
			    MADV_HUGEPAGE) == 0)
			__atomic_store_n(&d->region[reg], REG_HUGE,
					 __ATOMIC_RELAXED);
	}
}

/* Pages [first, first + n) touch a huge page region. */
static bool range_has_huge(struct hm_dest *d, uint64_t first, uint64_t n)
{
	if (!d->region)
		return false;
	for (uint64_t reg = first / d->region_pages;
	     reg <= (first + n - 1) / d->region_pages; reg++)
		if (__atomic_load_n(&d->region[reg], __ATOMIC_RELAXED) ==
		    REG_HUGE)
			return true;
	return false;
}

/* The address of page pg, NULL outside RAM (cannot happen after the
 * decoder's checks; kept as the last line of defence). */
static unsigned char *page_addr(struct hm_dest *d, uint64_t pg)
{
	if (pg >= d->geo.npages)
		return NULL;
	return d->ram + pg * d->ps;
}

static bool page_is_zero(const unsigned char *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* ---- receive phase ------------------------------------------------------- */

/* Make pages [first, first + n) zero by dropping their memory: a hole
 * in the caller's file, or fresh zero pages in anonymous memory. 0 or
 * -errno (the caller then writes zeros itself). */
static int zero_release(struct hm_dest *d, uint64_t first, uint64_t n)
{
	size_t off = first * d->ps, len = n * d->ps;

	if (d->p.ram_fd >= 0)
		return fallocate(d->p.ram_fd,
				 FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 (off_t)off, (off_t)len) < 0 ? -errno : 0;
	return madvise(d->ram + off, len, MADV_DONTNEED) < 0 ? -errno : 0;
}

/* HM_DEST_FILL_UFFD: the batch's pages, data at src. */
static int place_pages(struct dchan *c, const struct hm_wire_msg *m,
		       const unsigned char *src)
{
	struct hm_dest *d = c->d;
	uint32_t n = m->u.pages.count;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t pg = hm_wire_idx(m->u.pages.pages_le, i);

		if (pg >= d->geo.npages || (pg / 64) % d->nch != c->idx)
			return msg_fail(c, -EPROTO, "PAGES: page %" PRIu64
					" not on this channel or outside RAM",
					pg);
	}
	for (uint32_t i = 0; i < n;) {
		uint64_t pg = hm_wire_idx(m->u.pages.pages_le, i);
		const unsigned char *data = src + (size_t)i * d->ps;
		uint32_t j = i + 1;
		int r;

		if (hm_bitmap_test(&d->present, pg)) {
			memcpy(d->ram + pg * d->ps, data, d->ps);
			i++;
			continue;
		}
		/* the run of consecutive pages not present yet */
		while (j < n && hm_wire_idx(m->u.pages.pages_le, j) ==
					pg + (j - i) &&
		       !hm_bitmap_test(&d->present, pg + (j - i)))
			j++;
		r = uffd_place(d, pg, data, j - i);
		if (r < 0)
			return dest_fail(d, c, r, true,
					 "channel %u: cannot place pages %"
					 PRIu64 "+%u: %s", c->idx, pg, j - i,
					 strerror(-r));
		hm_bitmap_set_range(&d->present, pg, j - i);
		c->placed += j - i;
		i = j;
	}
	c->pages += n;
	c->data_pages += n;
	return 0;
}

static int apply_pages(struct dchan *c, const struct hm_wire_msg *m)
{
	struct hm_dest *d = c->d;
	uint32_t n = m->u.pages.count;
	size_t want = (size_t)n * d->ps;
	const unsigned char *src = m->u.pages.data;

	if (m->u.pages.zstd && !(d->hello_flags & HM_HELLO_ZSTD))
		return msg_fail(c, -EPROTO, "PAGES: zstd batch, but the HELLO "
				"did not announce zstd");
	if (m->u.pages.zstd) {
#if HM_HAVE_ZSTD
		size_t got;

		if (!c->zbuf) {
			c->zcap = (size_t)hm_wire_max_pages(HM_MSG_PAGES,
							    (uint32_t)d->ps) *
				  d->ps;
			c->zbuf = malloc(c->zcap);
			c->dctx = ZSTD_createDCtx();
			if (!c->zbuf || !c->dctx)
				return msg_fail(c, -ENOMEM, "out of memory "
						"for decompression");
		}
		if (want > c->zcap)
			return msg_fail(c, -EPROTO, "PAGES: batch of %u pages "
					"over the limit",
					n);
		got = ZSTD_decompressDCtx(c->dctx, c->zbuf, want, src,
					  m->u.pages.data_len);
		if (ZSTD_isError(got) || got != want)
			return msg_fail(c, -EPROTO,
					"PAGES: zstd frame does not "
					"decompress to %zu bytes: %s",
					want,
					ZSTD_isError(got) ?
						ZSTD_getErrorName(got) :
						"short");
		src = c->zbuf;
#else
		return msg_fail(c, -EPROTO, "PAGES: zstd batch, no zstd here");
#endif
	} else if (m->u.pages.data_len != want) {
		return msg_fail(c, -EPROTO, "PAGES: %u data bytes for %u pages",
				m->u.pages.data_len, n);
	} else if (m->u.pages.placed) {
		/* already received into place by place_page() */
		goto done;
	}
	if (d->uffd >= 0)
		return place_pages(c, m, src);
	for (uint32_t i = 0; i < n; i++)
		huge_hint(c, hm_wire_idx(m->u.pages.pages_le, i));
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pg = hm_wire_idx(m->u.pages.pages_le, i);
		unsigned char *dst = page_addr(d, pg);

		if (!dst || (pg / 64) % d->nch != c->idx)
			return msg_fail(c, -EPROTO, "PAGES: page %" PRIu64
					" not on this channel or outside RAM",
					pg);
		memcpy(dst, src + (size_t)i * d->ps, d->ps);
	}
done:
	c->pages += n;
	c->data_pages += n;
	return 0;
}

/* HM_DEST_FILL_UFFD: pages [first, first + n) read as zero: those
 * present are dropped (big runs) or cleared; the others already are. */
static void zero_present(struct hm_dest *d, uint64_t first, uint64_t n)
{
	if (n * d->ps >= ZERO_RELEASE_MIN && zero_release(d, first, n) == 0) {
		hm_bitmap_clear_range(&d->present, first, n);
		return;
	}
	for (uint64_t pg = first; pg < first + n; pg++)
		if (hm_bitmap_test(&d->present, pg))
			memset(d->ram + pg * d->ps, 0, d->ps);
}

static int apply_zero_run(struct dchan *c, const struct hm_wire_msg *m)
{
	struct hm_dest *d = c->d;
	uint64_t first = m->u.zero_run.first, n = m->u.zero_run.count;
	bool resident = true;

	if (first >= d->geo.npages || n > d->geo.npages - first)
		return msg_fail(c, -EPROTO, "ZERO_RUN outside RAM");
	if (d->uffd >= 0) {
		zero_present(d, first, n);
		goto done;
	}
	/* Big runs: give the memory back instead of writing zeros (the
	 * range is whole pages of this channel only, and protocol pages
	 * are whole system pages when zero_release is set). */
	/* (not in huge page regions: dropping part of one splits it) */
	if (d->zero_release && n * d->ps >= ZERO_RELEASE_MIN &&
	    !range_has_huge(d, first, n) && zero_release(d, first, n) == 0)
		goto done;
	for (uint64_t pg = first, hp = UINT64_MAX; pg < first + n; pg++) {
		unsigned char *dst = page_addr(d, pg);

		/* hugetlbfs: a huge page not in our page tables was never
		 * written (the file started as holes, the VMM waits): it
		 * reads as zero, and reading it would allocate it */
		if (d->hugetlb && pg * d->ps / d->hugetlb != hp) {
			unsigned char v = 1;

			hp = pg * d->ps / d->hugetlb;
			/* (one byte: the first page of the huge page) */
			resident = mincore(d->ram + hp * d->hugetlb, 1, &v) < 0 ||
				   (v & 1);
		}
		if (d->hugetlb && !resident)
			continue;

		/* reading a never-written anonymous page maps the shared
		 * zero page: only pages that hold data get written */
		if (!page_is_zero(dst, d->ps))
			memset(dst, 0, d->ps);
	}
done:
	c->pages += n;
	c->zero_pages += n;
	return 0;
}

static int save_device_state(struct dchan *c, const struct hm_wire_msg *m)
{
	struct hm_dest *d = c->d;
	size_t len = m->u.device_state.len;

	if (d->have_dev)
		return msg_fail(c, -EPROTO, "second DEVICE_STATE");
	if (len) {
		d->dev = malloc(len);
		if (!d->dev)
			return msg_fail(c, -ENOMEM,
					"no memory for %zu bytes of "
					"device state",
					len);
		memcpy(d->dev, m->u.device_state.data, len);
	}
	d->dev_len = len;
	d->have_dev = true;
	return 0;
}

/* Receive one message of c and check that it is allowed in c's phase.
 * 0 or the migration's failure. */
/* hm_wire_place_fn for the receive phase: page pg of a batch on c, whose
 * header and index the decoder checked; the same checks as apply_pages
 * (inside RAM, on this channel) are made again here. */
static void *place_page(void *ctx, uint64_t pg)
{
	struct dchan *c = ctx;
	struct hm_dest *d = c->d;

	if ((pg / 64) % d->nch != c->idx || pg >= d->geo.npages)
		return NULL;
	huge_hint(c, pg);
	return page_addr(d, pg);
}

static int chan_next(struct dchan *c, struct hm_wire_msg *m)
{
	/* uncompressed page data straight into RAM, only while RAM is
	 * what this channel may receive (PAGES allowed, RAM allocated) */
	bool direct = c->d->ram && c->d->uffd < 0 &&
		      (phase_allows[c->phase] & (1u << HM_MSG_PAGES));
	int r;

	c->run_region = UINT64_MAX;
	r = direct ? hm_wire_recv_place(&c->wc, m, place_page, c) :
			 hm_wire_recv(&c->wc, m);

	if (r < 0)
		return recv_fail(c, r);
	if (!(phase_allows[c->phase] & (1u << m->hdr.type)))
		return msg_fail(c, -EPROTO, "unexpected %s",
				hm_wire_type_name(m->hdr.type));
	if (m->hdr.type == HM_MSG_ABORT)
		return abort_received(c, m);
	return 0;
}

static int chan_receive(struct dchan *c)
{
	struct hm_wire_msg *m = malloc(sizeof(*m));
	int r = -ENOMEM;

	if (!m) {
		r = dest_fail(c->d, c, -ENOMEM, true,
			      "channel %u: out of memory", c->idx);
		goto out;
	}
	for (;;) {
		r = chan_next(c, m);
		if (r < 0)
			goto out;
		switch (m->hdr.type) {
		case HM_MSG_PAGES:
			r = apply_pages(c, m);
			break;
		case HM_MSG_ZERO_RUN:
			r = apply_zero_run(c, m);
			break;
		case HM_MSG_ROUND:
			if (c->rounds && m->u.round.round <= c->last_round) {
				r = msg_fail(c, -EPROTO, "ROUND %" PRIu64
					     " after ROUND %" PRIu64,
					     m->u.round.round, c->last_round);
				break;
			}
			c->last_round = m->u.round.round;
			c->rounds++;
			break;
		case HM_MSG_DEVICE_STATE:
			r = save_device_state(c, m);
			break;
		case HM_MSG_END:
			if (m->u.end.pages_sent != c->pages) {
				r = msg_fail(c, -EPROTO,
					     "END: the source sent %" PRIu64
					     " pages on this channel, %" PRIu64
					     " arrived",
					     m->u.end.pages_sent, c->pages);
				break;
			}
			c->phase = PH_ENDED;
			r = 0;
			goto out;
		default:
			r = msg_fail(c, -EPROTO, "unexpected %s",
				     hm_wire_type_name(m->hdr.type));
			break;
		}
		if (r < 0)
			goto out;
	}
out:
	free(m);
	return r;
}

static void *chan_thread(void *arg)
{
	struct dchan *c = arg;

	c->rc = chan_receive(c);
	return NULL;
}

/* ---- setup: channels and HELLO ------------------------------------------- */

static int send_u32(struct dchan *c, uint16_t type, uint32_t v)
{
	unsigned char buf[4];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };

	hm_wire_enc_u32(buf, sizeof(buf), v);
	return hm_wire_send(&c->wc, type, 0, &iov, 1);
}

/* Refuse a HELLO with status, and fail with rc. */
__attribute__((format(printf, 4, 5))) static int
refuse(struct dchan *c, uint32_t status, int rc, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	(void)send_u32(c, HM_MSG_HELLO_ACK, status);
	return dest_fail(c->d, c, rc, false,
			 "channel %u: migration refused: %s", c->idx, what);
}

/* An accepted connection, in TLS when the migration has credentials
 * (R18) and authenticated when it has a key (R17): through the gate
 * (gate.h), whose handshakes run in parallel, each within the hello
 * timeout; one that fails is dropped and counted there. The fd with
 * *tls, or -errno (-ETIMEDOUT at the deadline). */
static int accept_auth(struct hm_dest *d, int lfd, uint64_t timeout_ms,
		       struct hm_tls **tls)
{
	uint64_t now0 = hm_auth_now_ms();
	uint64_t deadline = !timeout_ms ? 0
			    : timeout_ms > UINT64_MAX - now0 ? UINT64_MAX
							     : now0 + timeout_ms;
	int fd;

	*tls = NULL;
	if (!d->p.auth_key_len && !d->p.tls)
		return hm_transport_accept(lfd, timeout_ms);
	if (!d->gate) {
		struct hm_auth_key key = { .len = 0 };

		if (d->p.auth_key_len) {
			memcpy(key.k, d->p.auth_key, d->p.auth_key_len);
			key.len = d->p.auth_key_len;
		}
		d->gate = hm_gate_new(&key, d->p.tls, d->p.hello_timeout_ms,
				      &d->log);
		explicit_bzero(&key, sizeof(key));
		if (!d->gate)
			return -errno;
	}
	fd = hm_gate_next(d->gate, lfd, deadline, tls);
	if (fd >= 0 && *tls) {
		pthread_mutex_lock(&d->lock);
		snprintf(d->tls_path, sizeof(d->tls_path), "%s",
			 hm_tls_describe(*tls));
		pthread_mutex_unlock(&d->lock);
	}
	return fd;
}

/* Connections the gate refused so far. */
static uint64_t refused_conns(struct hm_dest *d)
{
	return d->refused_conns + (d->gate ? hm_gate_refused(d->gate) : 0);
}

/* All channels are in: handshakes still running end, and the count of
 * refused connections stays. */
static void gate_close(struct hm_dest *d)
{
	if (!d->gate)
		return;
	d->refused_conns += hm_gate_free(d->gate);
	d->gate = NULL;
}

/* Accept one connection into slot c and read its HELLO into m. */
static int accept_hello(struct hm_dest *d, struct dchan *c, int lfd,
			uint64_t timeout_ms, struct hm_wire_msg *m)
{
	struct hm_tls *tls = NULL;
	int fd = accept_auth(d, lfd, timeout_ms, &tls), r;

	if (fd == -ETIMEDOUT)
		return dest_fail(d, NULL, fd, true,
				 "connection %u of the migration did not come "
				 "within %" PRIu64 " ms%s",
				 c->idx, timeout_ms, refused_conns(d)
				 ? " (only connections that failed "
				   "authentication)" : "");
	if (fd < 0)
		return dest_fail(d, NULL, fd, true, "accept failed: %s",
				 strerror(-fd));
	r = hm_transport_set_timeouts(fd, d->p.io_timeout_ms);
	if (r == 0)
		r = hm_wire_chan_init(&c->wc, fd, 0, 0);
	if (r < 0) {
		hm_tls_free(tls);
		close(fd);
		return dest_fail(d, NULL, r, true,
				 "cannot set up a connection: %s",
				 strerror(-r));
	}
	c->wc.tls = tls;
	c->open = true;
	c->phase = PH_HELLO;
	return chan_next(c, m);
}

/* The source's RAM against what this destination has (a VMM's RAM):
 * refused in HELLO_ACK before anything is written. */
static int check_expected(struct hm_dest *d, struct dchan *c0)
{
	const struct hm_ram_block *e = d->p.expect_blocks;
	struct stat st;

	if (e && d->p.n_expect_blocks != d->geo.nblocks)
		return refuse(c0, EMEDIUMTYPE, -EMEDIUMTYPE,
			      "the source sends %u RAM blocks, this "
			      "destination has %zu: the two VMs are not "
			      "configured alike",
			      d->geo.nblocks, d->p.n_expect_blocks);
	for (size_t i = 0; e && i < d->p.n_expect_blocks; i++) {
		const struct hm_ram_block *b = &d->geo.blocks[i];

		if (strcmp(b->name, e[i].name) || b->gpa != e[i].gpa ||
		    b->len != e[i].len)
			return refuse(c0, EMEDIUMTYPE, -EMEDIUMTYPE,
				      "RAM block %zu: the source sends '%s' "
				      "(%" PRIu64 " bytes at 0x%" PRIx64 "), "
				      "this destination has '%s' (%" PRIu64
				      " bytes at 0x%" PRIx64 ")",
				      i, b->name, b->len, b->gpa, e[i].name,
				      e[i].len, e[i].gpa);
	}
	if (d->p.ram_fd >= 0 && d->p.ram_fd_fixed) {
		if (fstat(d->p.ram_fd, &st) < 0)
			return refuse(c0, (uint32_t)errno, -errno,
				      "destination RAM file: %s",
				      strerror(errno));
		if ((uint64_t)st.st_size != d->geo.npages * d->ps)
			return refuse(c0, EMEDIUMTYPE, -EMEDIUMTYPE,
				      "the source sends %" PRIu64 " bytes of "
				      "RAM, the destination's RAM file holds "
				      "%lld",
				      d->geo.npages * d->ps,
				      (long long)st.st_size);
	}
	return 0;
}

static int setup(struct hm_dest *d, int lfd)
{
	struct hm_wire_msg *m = malloc(sizeof(*m));
	struct dchan *c0 = &d->ch[0];
	int r;

	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	r = accept_hello(d, c0, lfd, d->p.accept_timeout_ms, m);
	if (r < 0)
		goto out;
	if (m->u.hello.channel_index != 0) {
		r = msg_fail(c0, -EPROTO, "first connection is channel %u: "
			     "channel 0 must connect first",
			     m->u.hello.channel_index);
		goto out;
	}
	d->geo = m->u.hello.geo;
	d->have_geo = true;
	d->session_id = c0->wc.session_id;
	d->nch = d->geo.channels;
	d->ps = d->geo.page_size;
	d->hello_flags = m->hdr.flags;
	hm_logf(&d->log, HM_LOG_INFO,
		"session %" PRIu64 ": %" PRIu64 " pages of %" PRIu64
		" bytes in %u blocks, %u channels%s",
		d->session_id, d->geo.npages, d->ps, d->geo.nblocks, d->nch,
		d->hello_flags & HM_HELLO_ZSTD ? ", zstd" : "");
	if ((d->hello_flags & HM_HELLO_ZSTD) && !HM_HAVE_ZSTD) {
		r = refuse(c0, EPROTONOSUPPORT, -EPROTONOSUPPORT,
			   "the source wants zstd, this build has none");
		goto out;
	}
	if (d->geo.npages > d->p.max_ram_bytes / d->ps) {
		r = refuse(c0, EFBIG, -EFBIG,
			   "%" PRIu64 " bytes of RAM, the limit is %" PRIu64,
			   d->geo.npages * d->ps, d->p.max_ram_bytes);
		goto out;
	}
	r = check_expected(d, c0);
	if (r < 0)
		goto out;
	r = ram_alloc(d);
	if (r < 0) {
		r = refuse(c0, (uint32_t)-r, r, "cannot allocate %" PRIu64
			   " bytes of RAM: %s",
			   d->geo.npages * d->ps, strerror(-r));
		goto out;
	}
	c0->wc.geo = &d->geo;
	c0->phase = PH_STREAM;
	r = send_u32(c0, HM_MSG_HELLO_ACK, 0);
	if (r < 0) {
		r = dest_fail(d, c0, r, false,
			      "channel 0: cannot answer HELLO: %s",
			      strerror(-r));
		goto out;
	}
	/* The other channels, in any order: each handshake runs in the
	 * spare slot, and the connection moves to its channel's slot once
	 * its HELLO is found good. */
	for (unsigned k = 1; k < d->nch; k++) {
		struct dchan *c = &d->spare;
		unsigned idx;

		c->idx = k;
		r = accept_hello(d, c, lfd, d->p.io_timeout_ms, m);
		if (r < 0)
			goto out;
		idx = m->u.hello.channel_index;
		if (c->wc.session_id != d->session_id) {
			r = msg_fail(c, -EPROTO, "HELLO of session %" PRIu64
				     ", this migration is session %" PRIu64,
				     c->wc.session_id, d->session_id);
			goto out;
		}
		if (!hm_wire_geometry_equal(&m->u.hello.geo, &d->geo) ||
		    m->hdr.flags != d->hello_flags) {
			r = msg_fail(c, -EPROTO, "HELLO of channel %u differs "
				     "from channel 0's",
				     idx);
			goto out;
		}
		if (d->ch[idx].open) {
			r = msg_fail(c, -EPROTO, "channel %u connected twice",
				     idx);
			goto out;
		}
		pthread_mutex_lock(&d->lock);
		d->ch[idx].wc = c->wc;
		d->ch[idx].open = true;
		c->open = false;
		c->wc.fd = -1;
		c->wc.tls = NULL;
		c->wc.rxbuf = NULL;
		c->wc.rxcap = 0;
		pthread_mutex_unlock(&d->lock);
		c = &d->ch[idx];
		c->wc.geo = &d->geo;
		c->phase = PH_STREAM;
		r = send_u32(c, HM_MSG_HELLO_ACK, 0);
		if (r < 0) {
			r = dest_fail(d, c, r, false,
				      "channel %u: cannot answer HELLO: %s",
				      idx, strerror(-r));
			goto out;
		}
	}
	r = 0;
out:
	gate_close(d);
	free(m);
	return r;
}

/* ---- receive, complete, verify ------------------------------------------- */

static int receive(struct hm_dest *d)
{
	for (unsigned i = 0; i < d->nch; i++) {
		struct dchan *c = &d->ch[i];
		int r = -pthread_create(&c->thread, NULL, chan_thread, c);
		char name[16];

		if (r < 0) {
			dest_fail(d, c, r, true,
				  "cannot start receive thread %u: %s", i,
				  strerror(-r));
			break;
		}
		c->thread_started = true;
		snprintf(name, sizeof(name), "hm-rx%u", i);
		pthread_setname_np(c->thread, name);
	}
	for (unsigned i = 0; i < d->nch; i++) {
		struct dchan *c = &d->ch[i];

		if (c->thread_started)
			pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	return d->failed;
}

static int complete(struct hm_dest *d, struct hm_wire_msg *m)
{
	struct dchan *c0 = &d->ch[0];
	unsigned char buf[16];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	uint64_t total = 0, zero = 0;
	int r = chan_next(c0, m);

	if (r < 0)
		return r;
	for (unsigned i = 0; i < d->nch; i++)
		total += d->ch[i].pages;
	if (m->u.complete.total_pages_sent != total)
		return msg_fail(c0, -EPROTO,
				"COMPLETE: the source sent %" PRIu64
				" pages, %" PRIu64 " arrived",
				m->u.complete.total_pages_sent, total);
	if (d->p.before_ack) {
		r = d->p.before_ack(d->p.before_ack_opaque);
		if (r < 0)
			return dest_fail(d, c0, r, true,
					 "all RAM arrived, but the destination "
					 "refuses to acknowledge it: %s",
					 strerror(-r));
	}
	hm_wire_enc_complete_ack(buf, sizeof(buf), 0, total);
	r = hm_wire_send(&c0->wc, HM_MSG_COMPLETE_ACK, 0, &iov, 1);
	if (r < 0) {
		return dest_fail(d, c0, r == -EPIPE ? -ECONNRESET : r, false,
				 "cannot acknowledge completion (%s): the "
				 "source will not consider the migration done",
				 strerror(-r));
	}
	c0->phase = PH_VERIFY;
	for (unsigned i = 0; i < d->nch; i++)
		zero += d->ch[i].zero_pages;
	hm_logf(&d->log, HM_LOG_INFO,
		"migration complete: %" PRIu64 " pages (%" PRIu64
		" zero) on %u channels, device state %zu bytes",
		total, zero, d->nch, d->dev_len);
	return 0;
}

/* Answer VERIFY_REQ until the source closes. The migration is complete
 * by now: the source going away in any manner ends this phase normally;
 * only an invalid request is an error. */
static int serve_verify(struct hm_dest *d, struct hm_wire_msg *m)
{
	struct dchan *c0 = &d->ch[0];
	unsigned char *vbuf = NULL;
	size_t vcap = 0;
	uint64_t served = 0;
	int r;

	for (;;) {
		struct iovec iov[2];
		uint32_t n;

		r = hm_wire_recv(&c0->wc, m);
		if (r == -EPROTO) {
			r = recv_fail(c0, r);
			goto out;
		}
		if (r < 0) {
			hm_logf(&d->log,
				r == -ENODATA ? HM_LOG_INFO : HM_LOG_WARN,
				"channel 0: session over after %" PRIu64
				" verified pages (%s)",
				served,
				r == -ENODATA ? "the source closed" :
						strerror(-r));
			r = 0;
			goto out;
		}
		if (m->hdr.type == HM_MSG_ABORT) {
			hm_logf(&d->log, HM_LOG_INFO,
				"channel 0: the source ended the session: %s",
				m->u.abort_.text);
			r = 0;
			goto out;
		}
		if (m->hdr.type != HM_MSG_VERIFY_REQ) {
			r = msg_fail(c0, -EPROTO, "unexpected %s",
				     hm_wire_type_name(m->hdr.type));
			goto out;
		}
		n = m->u.verify_req.count;
		if (!vbuf) {
			vcap = (size_t)hm_wire_max_pages(HM_MSG_VERIFY_DATA,
							 (uint32_t)d->ps) *
			       d->ps;
			vbuf = malloc(vcap);
			if (!vbuf) {
				r = msg_fail(c0, -ENOMEM, "out of memory");
				goto out;
			}
		}
		if ((size_t)n * d->ps > vcap) {
			r = msg_fail(c0, -EPROTO, "VERIFY_REQ of %u pages", n);
			goto out;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint64_t pg = hm_wire_idx(m->u.verify_req.pages_le, i);
			const unsigned char *src = page_addr(d, pg);

			if (!src) {
				r = msg_fail(c0, -EPROTO, "VERIFY_REQ: page %"
					     PRIu64 " outside RAM",
					     pg);
				goto out;
			}
			memcpy(vbuf + (size_t)i * d->ps, src, d->ps);
		}
		/* the request's payload (count, reserved, indexes) is the
		 * answer's prefix */
		iov[0].iov_base = c0->wc.rxbuf;
		iov[0].iov_len = m->hdr.payload_len;
		iov[1].iov_base = vbuf;
		iov[1].iov_len = (size_t)n * d->ps;
		r = hm_wire_send(&c0->wc, HM_MSG_VERIFY_DATA, 0, iov, 2);
		if (r < 0) {
			hm_logf(&d->log, HM_LOG_WARN,
				"channel 0: cannot answer VERIFY_REQ (%s); "
				"session over",
				strerror(-r));
			r = 0;
			goto out;
		}
		served += n;
	}
out:
	free(vbuf);
	return r;
}

static void close_channels(struct hm_dest *d)
{
	struct dchan *all[HM_WIRE_MAX_CHANNELS + 1];

	for (unsigned i = 0; i < HM_WIRE_MAX_CHANNELS; i++)
		all[i] = &d->ch[i];
	all[HM_WIRE_MAX_CHANNELS] = &d->spare;
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i <= HM_WIRE_MAX_CHANNELS; i++) {
		struct dchan *c = all[i];

		if (c->open || c->wc.rxbuf)
			hm_wire_chan_fini(&c->wc);
		c->open = false;
		free(c->zbuf);
		c->zbuf = NULL;
#if HM_HAVE_ZSTD
		ZSTD_freeDCtx(c->dctx);
		c->dctx = NULL;
#endif
	}
	pthread_mutex_unlock(&d->lock);
}

int hm_dest_run_fd(struct hm_dest *d, int listen_fd)
{
	struct hm_wire_msg *m = NULL;
	int r;

	if (!d || listen_fd < 0)
		return -EINVAL;
	if (d->ran)
		return -EBUSY;
	d->ran = true;
	r = setup(d, listen_fd);
	if (r < 0)
		goto out;
	r = receive(d);
	uffd_close(d);
	if (r < 0)
		goto out;
	m = malloc(sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	r = complete(d, m);
	if (r < 0)
		goto out;
	r = serve_verify(d, m);
out:
	free(m);
	close_channels(d);
	uffd_close(d);
	return r;
}

int hm_dest_run(struct hm_dest *d, const char *listen_addr)
{
	const struct hm_transport_ops *ops;
	const char *rest = NULL;
	int lfd, r;

	if (!d || !listen_addr)
		return -EINVAL;
	ops = hm_transport_lookup(listen_addr, &rest);
	if (!ops) {
		hm_logf(&d->log, HM_LOG_ERROR, "bad address '%s'", listen_addr);
		return -EINVAL;
	}
	lfd = ops->listen(rest, HM_WIRE_MAX_CHANNELS + 1);
	if (lfd < 0) {
		hm_logf(&d->log, HM_LOG_ERROR, "cannot listen on %s: %s",
			listen_addr, strerror(-lfd));
		return lfd;
	}
	r = hm_dest_run_fd(d, lfd);
	close(lfd);
	if (!strcmp(ops->scheme, "unix") && rest[0] != '@')
		unlink(rest);
	return r;
}

/* ---- results ------------------------------------------------------------- */

const struct hm_ram_block *hm_dest_block(const struct hm_dest *d, size_t i,
					 const void **data)
{
	if (!d || !d->ram || i >= d->nblocks) {
		if (data)
			*data = NULL;
		return NULL;
	}
	if (data)
		*data = (const void *)(uintptr_t)d->blocks[i].host_addr;
	return &d->blocks[i];
}

size_t hm_dest_nblocks(const struct hm_dest *d)
{
	return d && d->ram ? d->nblocks : 0;
}

const void *hm_dest_device_state(const struct hm_dest *d, size_t *len)
{
	if (len)
		*len = d && d->have_dev ? d->dev_len : 0;
	return d && d->have_dev ? d->dev : NULL;
}

void hm_dest_get_stats(const struct hm_dest *d, struct hm_dest_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!d)
		return;
	for (unsigned i = 0; i < d->nch; i++) {
		const struct dchan *c = &d->ch[i];

		st->pages_received += c->data_pages;
		st->zero_pages += c->zero_pages;
		st->bytes_received += c->wc.rx_bytes;
	}
	st->rounds = d->ch[0].rounds;
	st->device_state_len = d->dev_len;
	st->session_id = d->session_id;
	st->channels = d->nch;
	st->fill = d->fill;
	for (unsigned i = 0; i < d->nch; i++)
		st->placed_pages += d->ch[i].placed;
	st->refused_connections = refused_conns((struct hm_dest *)d);
	pthread_mutex_lock((pthread_mutex_t *)&d->lock);
	memcpy(st->tls_path, d->tls_path, sizeof(st->tls_path));
	pthread_mutex_unlock((pthread_mutex_t *)&d->lock);
}

void hm_dest_free(struct hm_dest *d)
{
	if (!d)
		return;
	gate_close(d);
	close_channels(d);
	uffd_close(d);
	if (d->map)
		munmap(d->map, d->map_len);
	free(d->region);
	free(d->dev);
	if (d->p.auth_key_len) {
		explicit_bzero((void *)(uintptr_t)d->p.auth_key,
			       HM_AUTH_KEY_MAX);
		free((void *)(uintptr_t)d->p.auth_key);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hm-workload: the guest side of the QEMU migration tests.
 *
 * Runs as the init of a tiny initramfs guest (started by /init after the
 * virtio modules are loaded), linked statically.  Parameters come from the
 * kernel command line (hm.fill=MiB hm.ws=MiB hm.static=MiB hm.hot=KiB
 * hm.hotreps=N hm.seed=N).
 *
 *  1. fill: maps hm.fill MiB, writes non-zero data to every byte of it, and
 *     unmaps it again, so the guest holds lots of free pages whose frames are
 *     dirty (the pages free page hinting lets the host skip);
 *  2. static region: hm.static MiB written once, then only read; page k
 *     starts with a 16-byte magic and its index (the corrupting proxy of the
 *     corrupt-detect tests looks for static page 3 in the stream);
 *  3. working set (hm.ws MiB) and hot set (hm.hot KiB, rewritten hm.hotreps
 *     times a round): every pass verifies each page (header, generation,
 *     checksum of the body) and rewrites it with the next generation.  A
 *     stale page (an older generation, as left behind by lost dirty
 *     tracking) fails the generation check, a flipped byte the checksum.
 *     The hot set is small enough that under TCG its TLB entries survive
 *     from one pass to the next: the case where QEMU < 9.0 loses dirty
 *     pages (docs/qemu-tests.md).
 *
 * Reports on the console (ttyS0), one line each, prefixed "HMW: ":
 *   "HMW: ready ..." once, "HMW: round N ok ..." for a round every 200 ms,
 *   "HMW: ERROR ..." for failed checks (up to 8 a round) and
 *   "HMW: round N FAILED ..." for every round with a failed check.
 *
 * 4. hint region (hm.hint=MiB, default 0): the stand-in of the in-guest
 *    agent for hintmig's QEMU tests. A region written once with data and
 *    never touched again; a child process reports its guest-physical pages
 *    (from /proc/self/pagemap) as FREE hints over the virtio-serial port
 *    org.hintmig.agent.0, in the hint channel protocol (docs/protocol.md),
 *    at every request. The pages hold data but the workload never reads
 *    them again, so the destination may hold anything there; the harness
 *    checks that only such pages differ. "HMW: hint region ..." gives its
 *    size and how many guest-physical ranges it spans.
 *
 *    hm.hintlie=N makes the stand-in the test's broken agent:
 *      1 lies: per request, hints of the previous epoch, ranges past the
 *        end of RAM and misaligned ones, then a flood of 16 full HINTS
 *        messages of the region's pages (past the host's limit per epoch);
 *      2 garbage: bytes that are no frame, at the first request;
 *      3 in use: the region is hinted as usual, but the workload keeps
 *        checking it every round (pages it uses, hinted free): the
 *        destination must report exactly those as lost, nothing else;
 *      4 amplify: per request, the region's true ranges once, then 16
 *        messages of 4096 ranges each spanning the whole region (R13:
 *        the host must bound its work in pages and reject the excess).
 *
 * Nothing here allocates after the start; the regions are mlocked so the
 * guest kernel does not move them (compaction) behind our back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define REPORT_MS 200u
#define WORDS (PAGE / 8u)

/* Working-set page header, in 64-bit words. */
enum { WS_MAGIC, WS_INDEX, WS_GEN, WS_CSUM, WS_HDR };
/* Static page: 16 magic bytes, index, checksum; body follows. */
enum { ST_MAGIC0, ST_MAGIC1, ST_INDEX, ST_CSUM, ST_HDR };

/* The static magic is stored XORed so that its plain bytes never sit in
 * this binary (which is itself in guest RAM); the host side
 * (tests/migration/qemu/harness.c) knows the same string.  volatile: else
 * the compiler folds the XOR and stores the plain magic after all. */
#define STATIC_MAGIC_XOR 0x5a
static const volatile unsigned char static_magic_x[16] = {
	'H' ^ 0x5a, 'M' ^ 0x5a, 'W' ^ 0x5a, '-' ^ 0x5a, 'S' ^ 0x5a, 'T' ^ 0x5a,
	'A' ^ 0x5a, 'T' ^ 0x5a, 'I' ^ 0x5a, 'C' ^ 0x5a, '-' ^ 0x5a, 'P' ^ 0x5a,
	'A' ^ 0x5a, 'G' ^ 0x5a, 'E' ^ 0x5a, '!' ^ 0x5a,
};
#define WS_MAGIC_VALUE 0x48574d2d57534731ull /* "1GSW-MWH" */

static unsigned long opt_fill = 256, opt_ws = 32, opt_static = 4;
static unsigned long opt_hot_kib = 0, opt_hot_reps = 64;
static uint64_t opt_seed = 1;
static unsigned long opt_hint = 0;
static unsigned long opt_hintlie = 0;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "HMW: ");

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	for (int off = 0; off < n;) {
		ssize_t w = write(1, buf + off, (size_t)(n - off));
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return;
		}
		off += (int)w;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* Body words: xorshift stream seeded from (seed, page, gen); never zero. */
static void fill_body(uint64_t *w, unsigned from, uint64_t key)
{
	uint64_t s = mix64(key) | 1;

	for (unsigned i = from; i < WORDS; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		w[i] = s;
	}
}

static uint64_t csum_body(const uint64_t *w, unsigned from, uint64_t key)
{
	uint64_t h = key ^ 0xcbf29ce484222325ull;

	for (unsigned i = from; i < WORDS; i++)
		h = (h ^ w[i]) * 0x100000001b3ull;
	return mix64(h);
}

static uint64_t ws_key(uint64_t salt, uint64_t idx, uint64_t gen)
{
	return opt_seed * 0x9e3779b97f4a7c15ull ^ idx * 0xd6e8feb86659fd93ull ^
	       gen * 0xa0761d6478bd642full ^ salt;
}

static uint64_t st_key(uint64_t idx)
{
	return opt_seed * 0x9e3779b97f4a7c15ull ^ idx * 0xe7037ed1a0b428dbull ^
	       0x5354415449430000ull;
}

static void parse_cmdline(void)
{
	char buf[4096];
	int fd = open("/proc/cmdline", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
		if (!strncmp(tok, "hm.fill=", 8))
			opt_fill = strtoul(tok + 8, NULL, 0);
		else if (!strncmp(tok, "hm.ws=", 6))
			opt_ws = strtoul(tok + 6, NULL, 0);
		else if (!strncmp(tok, "hm.static=", 10))
			opt_static = strtoul(tok + 10, NULL, 0);
		else if (!strncmp(tok, "hm.hot=", 7))
			opt_hot_kib = strtoul(tok + 7, NULL, 0);
		else if (!strncmp(tok, "hm.hotreps=", 11))
			opt_hot_reps = strtoul(tok + 11, NULL, 0);
		else if (!strncmp(tok, "hm.seed=", 8))
			opt_seed = strtoull(tok + 8, NULL, 0);
		else if (!strncmp(tok, "hm.hint=", 8))
			opt_hint = strtoul(tok + 8, NULL, 0);
		else if (!strncmp(tok, "hm.hintlie=", 11))
			opt_hintlie = strtoul(tok + 11, NULL, 0);
	}
}

static void *map_region(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, bytes, MADV_NOHUGEPAGE);
	return p;
}

static void fill_and_free(void)
{
	struct sysinfo si;
	uint64_t t0 = now_ms();
	size_t want = opt_fill << 20, room;
	uint64_t *p;

	/* Leave room for the other regions and the kernel. */
	if (sysinfo(&si) == 0) {
		room = (size_t)si.freeram * si.mem_unit;
		size_t keep = ((opt_ws + opt_static) << 20) +
			      (opt_hot_kib << 10) + (24u << 20);
		room = room > keep ? room - keep : 0;
		if (want > room) {
			say("fill capped from %lu to %zu MiB (free %zu MiB)",
			    opt_fill, room >> 20,
			    ((size_t)si.freeram * si.mem_unit) >> 20);
			want = room & ~(size_t)(PAGE - 1);
		}
	}
	if (!want) {
		say("filled 0 MiB");
		return;
	}
	p = map_region(want);
	if (!p) {
		say("ERROR fill mmap of %zu MiB failed: %s", want >> 20,
		    strerror(errno));
		return;
	}
	for (size_t pg = 0; pg < want / PAGE; pg++) {
		uint64_t *w = p + pg * WORDS;
		uint64_t v = mix64(pg ^ opt_seed) | 0x0101010101010101ull;

		for (unsigned i = 0; i < WORDS; i++)
			w[i] = v + i * 0x0202020202020202ull;
	}
	munmap(p, want);
	say("filled %zu MiB with non-zero data in %llu ms, freed it",
	    want >> 20, (unsigned long long)(now_ms() - t0));
}

/* A region whose pages are verified and rewritten with the next
 * generation, pass after pass. */
struct region {
	const char *name;
	uint64_t *base;
	size_t pages;
	uint64_t gen;   /* generation every page holds between passes */
	uint64_t salt;
};

static void region_init(struct region *r)
{
	for (size_t k = 0; k < r->pages; k++) {
		uint64_t *w = r->base + k * WORDS;

		w[WS_MAGIC] = WS_MAGIC_VALUE ^ r->salt;
		w[WS_INDEX] = k;
		w[WS_GEN] = 0;
		fill_body(w, WS_HDR, ws_key(r->salt, k, 0));
		w[WS_CSUM] = csum_body(w, WS_HDR, ws_key(r->salt, k, 0));
	}
}

/* Verify every page (magic, index, generation, checksum), then rewrite it
 * with generation gen + 1.  A stale page, as left by a lost dirty page,
 * holds an older generation; a flipped byte fails the checksum. */
static uint64_t region_pass(struct region *r, uint64_t reported)
{
	uint64_t err = 0, gen = r->gen;

	for (size_t k = 0; k < r->pages; k++) {
		uint64_t *w = r->base + k * WORDS;
		uint64_t c = csum_body(w, WS_HDR, ws_key(r->salt, k, gen));
		int mok = w[WS_MAGIC] == (WS_MAGIC_VALUE ^ r->salt);

		if (!mok || w[WS_INDEX] != k || w[WS_GEN] != gen ||
		    w[WS_CSUM] != c) {
			if (reported + err < 8)
				say("ERROR %s page %zu: magic %s index %llu gen "
				    "%llu (expected %llu) csum %s", r->name, k,
				    mok ? "ok" : "BAD",
				    (unsigned long long)w[WS_INDEX],
				    (unsigned long long)w[WS_GEN],
				    (unsigned long long)gen,
				    w[WS_CSUM] == c ? "ok" : "BAD");
			err++;
		}
		w[WS_MAGIC] = WS_MAGIC_VALUE ^ r->salt;
		w[WS_INDEX] = k;
		w[WS_GEN] = gen + 1;
		fill_body(w, WS_HDR, ws_key(r->salt, k, gen + 1));
		w[WS_CSUM] = csum_body(w, WS_HDR, ws_key(r->salt, k, gen + 1));
	}
	r->gen = gen + 1;
	return err;
}

static uint64_t static_check(const uint64_t *st, size_t st_pages,
			     uint64_t reported)
{
	uint64_t err = 0;

	for (size_t k = 0; k < st_pages; k++) {
		const uint64_t *w = st + k * WORDS;
		uint64_t c = csum_body(w, ST_HDR, st_key(k));
		int mok = 1;

		for (unsigned i = 0; i < 16; i++)
			mok &= (((const unsigned char *)w)[i] ^
				STATIC_MAGIC_XOR) == static_magic_x[i];
		if (!mok || w[ST_INDEX] != k || w[ST_CSUM] != c) {
			if (reported + err < 8)
				say("ERROR static page %zu: magic %s index %llu "
				    "csum %s", k, mok ? "ok" : "BAD",
				    (unsigned long long)w[ST_INDEX],
				    w[ST_CSUM] == c ? "ok" : "BAD");
			err++;
		}
	}
	return err;
}

static void *map_locked(size_t pages, const char *what)
{
	void *p;

	if (!pages)
		return NULL;
	p = map_region(pages * PAGE);
	if (!p) {
		say("ERROR cannot map the %s: %s", what, strerror(errno));
		for (;;)
			pause();
	}
	if (mlock(p, pages * PAGE))
		say("warning: mlock of the %s failed: %s", what,
		    strerror(errno));
	return p;
}

/* ---- the stand-in hint reporter ------------------------------------------ */

/* Hint channel frames (docs/protocol.md): 24-byte header, little-endian
 * (x86: host order). */
enum { HC_HELLO = 1, HC_REQUEST, HC_HINTS, HC_DONE, HC_STOP, HC_ACK, HC_BYE };
#define HC_MAGIC 0x31484d48u
#define HC_HDR 24u
#define HC_MAX_RANGES 4096u
#define HC_FREE 1u

struct hc_hdr {
	uint32_t magic;
	uint16_t type, flags;
	uint32_t len, reserved;
	uint64_t epoch;
} __attribute__((packed));

/* All n bytes written (out) or read, or -1. */
static int io_all(int fd, void *p, size_t n, int out)
{
	char *c = p;

	while (n) {
		ssize_t k = out ? write(fd, c, n) : read(fd, c, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	return io_all(fd, (void *)p, n, 1);
}

static int read_all(int fd, void *p, size_t n)
{
	return io_all(fd, p, n, 0);
}

static int hc_send(int fd, uint16_t type, uint64_t epoch, const void *payload,
		   uint32_t len)
{
	struct hc_hdr h = { HC_MAGIC, type, 0, len, 0, epoch };

	if (write_all(fd, &h, sizeof(h)))
		return -1;
	return len ? write_all(fd, payload, len) : 0;
}

/* The region's pages as guest-physical ranges {gpa, len}, coalesced. */
static size_t region_ranges(const char *base, size_t pages, uint64_t *out,
			    size_t max)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	size_t n = 0;

	if (fd < 0)
		return 0;
	/* a forked child does not inherit the page table entries of a
	 * shared mapping: read each page once to map it here too */
	for (size_t i = 0; i < pages; i++)
		(void)*(const volatile char *)(base + i * PAGE);
	for (size_t i = 0; i < pages; i++) {
		uint64_t e, pfn, gpa;
		off_t off = (off_t)(((uintptr_t)base / PAGE + i) * 8);

		if (pread(fd, &e, 8, off) != 8 || !(e >> 63))
			continue;
		pfn = e & ((1ull << 55) - 1);
		gpa = pfn * PAGE;
		if (n && out[2 * (n - 1)] + out[2 * (n - 1) + 1] == gpa) {
			out[2 * (n - 1) + 1] += PAGE;
		} else if (n < max) {
			out[2 * n] = gpa;
			out[2 * n + 1] = PAGE;
			n++;
		}
	}
	close(fd);
	return n;
}

static int open_agent_port(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	int fd = -1;

	while (d && (e = readdir(d))) {
		char path[300], name[64] = "";
		int nf;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name",
			 e->d_name);
		nf = open(path, O_RDONLY);
		if (nf < 0)
			continue;
		n = read(nf, name, sizeof(name) - 1);
		close(nf);
		name[n > 0 ? n : 0] = 0;
		if (strncmp(name, "org.hintmig.agent.0", 19))
			continue;
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		fd = open(path, O_RDWR);
		break;
	}
	if (d)
		closedir(d);
	return fd;
}

static int send_hints(int fd, uint64_t epoch, const uint64_t *r, uint32_t cnt,
		      unsigned char *buf)
{
	uint32_t kind = HC_FREE;

	memcpy(buf, &kind, 4);
	memcpy(buf + 4, &cnt, 4);
	memcpy(buf + 8, r, 16u * cnt);
	return hc_send(fd, HC_HINTS, epoch, buf, 8 + 16 * cnt);
}

/* hm.hintlie=1: everything a broken agent can say wrong about epoch e,
 * and no true hint. */
static void lie(int fd, uint64_t epoch, const char *base, size_t pages,
		uint64_t *ranges, unsigned char *buf)
{
	size_t n = region_ranges(base, pages, ranges, HC_MAX_RANGES);
	uint64_t bad[6] = {
		1ull << 50, PAGE,		/* far past the end of RAM */
		0, 0,				/* misaligned (below) */
		0, 0,				/* empty */
	};
	uint64_t flood[2 * HC_MAX_RANGES];

	if (!n)
		return;
	if (epoch > 1)
		send_hints(fd, epoch - 1, ranges, (uint32_t)n, buf);
	bad[2] = ranges[0] + 100;
	bad[3] = PAGE;
	bad[4] = ranges[0];
	send_hints(fd, epoch, bad, 3, buf);
	/* the flood: the first region page over and over, 16 x 4096 ranges */
	for (size_t i = 0; i < HC_MAX_RANGES; i++) {
		flood[2 * i] = ranges[0];
		flood[2 * i + 1] = PAGE;
	}
	for (int k = 0; k < 16; k++)
		if (send_hints(fd, epoch, flood, HC_MAX_RANGES, buf))
			break;
	hc_send(fd, HC_DONE, epoch, NULL, 0);
}

/* hm.hintlie=4: the true ranges of epoch e (in messages of at most 4096
 * ranges), then 16 full messages repeating them. */
static void amplify(int fd, uint64_t epoch, const char *base, size_t pages,
		    uint64_t *ranges, unsigned char *buf)
{
	static uint64_t flood[2 * HC_MAX_RANGES];
	size_t n = region_ranges(base, pages, ranges, pages);

	if (!n)
		return;
	for (size_t k = 0; k < n; k += HC_MAX_RANGES) {
		size_t c = n - k < HC_MAX_RANGES ? n - k : HC_MAX_RANGES;

		if (send_hints(fd, epoch, &ranges[2 * k], (uint32_t)c, buf))
			return;
	}
	/* the region's whole span, 4096 times a message: however the guest
	 * kernel laid the region out (6.1: a few long runs, 6.12: one page
	 * a range), one message names far more than the session's budget;
	 * the span holds pages in use, so a flood the host applied would
	 * lose them (the compare and the guest would say so) */
	{
		uint64_t lo = ranges[0], hi = ranges[0] + ranges[1];

		for (size_t i = 1; i < n; i++) {
			if (ranges[2 * i] < lo)
				lo = ranges[2 * i];
			if (ranges[2 * i] + ranges[2 * i + 1] > hi)
				hi = ranges[2 * i] + ranges[2 * i + 1];
		}
		for (size_t i = 0; i < HC_MAX_RANGES; i++) {
			flood[2 * i] = lo;
			flood[2 * i + 1] = hi - lo;
		}
	}
	for (int k = 0; k < 16; k++)
		if (send_hints(fd, epoch, flood, HC_MAX_RANGES, buf))
			break;
	hc_send(fd, HC_DONE, epoch, NULL, 0);
}

/* The child: wait for the host end of the port, say HELLO, answer every
 * REQUEST with the region's ranges as FREE hints and DONE. */
static void hint_reporter(const char *base, size_t pages)
{
	/* as many ranges as pages: a guest kernel may give the region
	 * scattered pages (Debian 13's 6.12 does: one range a page), sent
	 * in messages of at most the host's maximum */
	uint64_t *ranges = calloc(2 * (pages > HC_MAX_RANGES ? pages
							     : HC_MAX_RANGES),
				  sizeof(*ranges));
	static unsigned char buf[16 + 16 * HC_MAX_RANGES];
	int fd;

	if (!ranges) {
		say("ERROR hint reporter: no memory for %zu ranges", pages);
		_exit(1);
	}

	for (int i = 0; (fd = open_agent_port()) < 0; i++) {
		if (i == 50) {
			say("ERROR hint reporter: no virtio-serial port "
			    "org.hintmig.agent.0");
			_exit(1);
		}
		usleep(100000);
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		/* version u16, reserved u16, page size u32, poison u32,
		 * poison byte u8, reserved u8[7] */
		unsigned char hello[20] = { 0 };
		struct hc_hdr h;

		/* POLLHUP while no host program holds the chardev */
		if (poll(&p, 1, 200) < 0 || (p.revents & POLLHUP)) {
			usleep(100000);
			continue;
		}
		hello[0] = 1; /* version u16 */
		hello[4] = 0x00, hello[5] = 0x10; /* page size 4096 u32 */
		if (hc_send(fd, HC_HELLO, 0, hello, sizeof(hello)))
			continue;
		while (read_all(fd, &h, sizeof(h)) == 0) {
			if (h.magic != HC_MAGIC || h.len > sizeof(buf) ||
			    read_all(fd, buf, h.len))
				break;
			if (h.type == HC_BYE)
				break;
			if (h.type != HC_REQUEST)
				continue;
			if (opt_hintlie == 2) {
				static const unsigned char junk[100] = {
					0xff, 0xfe, 0xfd, 0xfc };

				write_all(fd, junk, sizeof(junk));
				continue;
			}
			if (opt_hintlie == 1) {
				lie(fd, h.epoch, base, pages, ranges, buf);
				continue;
			}
			if (opt_hintlie == 4) {
				amplify(fd, h.epoch, base, pages, ranges, buf);
				continue;
			}
			{
				uint32_t max = 0, k, cnt;
				size_t n = region_ranges(base, pages, ranges,
							 pages);

				memcpy(&max, buf, 4);
				if (!max || max > HC_MAX_RANGES)
					max = HC_MAX_RANGES;
				for (k = 0; k < n; k += cnt) {
					uint32_t kind = HC_FREE;

					cnt = (uint32_t)(n - k) < max
						      ? (uint32_t)(n - k) : max;
					memcpy(buf, &kind, 4);
					memcpy(buf + 4, &cnt, 4);
					memcpy(buf + 8, &ranges[2 * k],
					       16u * cnt);
					if (hc_send(fd, HC_HINTS, h.epoch, buf,
						    8 + 16 * cnt))
						break;
				}
				hc_send(fd, HC_DONE, h.epoch, NULL, 0);
			}
		}
		/* the host went away: wait for the next one */
		usleep(100000);
	}
}

static const char *g_hint_base;	/* hm.hintlie=3: checked every round */
static size_t g_hint_pages;

/* hm.hintlie=3: the hint region is in use after all; a page that does not
 * hold what was written is lost. */
static uint64_t hint_region_check(uint64_t so_far)
{
	uint64_t bad = 0;

	for (size_t i = 0; i < g_hint_pages; i++) {
		const unsigned char *p = (const unsigned char *)g_hint_base +
					 i * PAGE;
		unsigned char want = (unsigned char)(0xa5 ^ (int)(i & 0x3f));

		if (p[0] == want && p[PAGE / 2] == want && p[PAGE - 1] == want)
			continue;
		if (so_far + bad < 8)
			say("ERROR hint region page %zu lost (in use, hinted "
			    "free by the broken agent): 0x%02x, want 0x%02x",
			    i, p[0], want);
		bad++;
	}
	return bad;
}

static void hint_region_start(void)
{
	size_t pages = (opt_hint << 20) / PAGE, n;
	uint64_t *ranges;
	char *base;
	pid_t pid;

	if (!pages)
		return;
	/* shared: the child sees the same pages; unevictable pages are not
	 * moved by compaction with this off */
	int fd = open("/proc/sys/vm/compact_unevictable_allowed", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "0", 1) != 1)
			say("warning: compact_unevictable_allowed");
		close(fd);
	}
	base = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		say("ERROR cannot map the hint region: %s", strerror(errno));
		return;
	}
	for (size_t i = 0; i < pages; i++)
		memset(base + i * PAGE, 0xa5 ^ (int)(i & 0x3f), PAGE);
	if (mlock(base, pages * PAGE))
		say("warning: mlock of the hint region failed: %s",
		    strerror(errno));
	ranges = calloc(2 * pages, sizeof(*ranges));
	n = ranges ? region_ranges(base, pages, ranges, pages) : 0;
	free(ranges);
	say("hint region pages=%zu ranges=%zu lie=%lu", pages, n, opt_hintlie);
	if (opt_hintlie == 3) {
		g_hint_base = base;
		g_hint_pages = pages;
	}
	pid = fork();
	if (pid == 0) {
		hint_reporter(base, pages);
		_exit(0);
	}
	if (pid < 0)
		say("ERROR cannot start the hint reporter: %s",
		    strerror(errno));
}

int main(void)
{
	struct region ws = { .name = "ws", .salt = 0 };
	struct region hot = { .name = "hot", .salt = 0x686f74ull << 40 };
	uint64_t *st, round = 0, errors = 0, last_say = 0;
	size_t st_pages;

	parse_cmdline();
	say("start fill=%lu ws=%lu static=%lu hot=%luK hotreps=%lu seed=%llu",
	    opt_fill, opt_ws, opt_static, opt_hot_kib, opt_hot_reps,
	    (unsigned long long)opt_seed);

	fill_and_free();
	hint_region_start();

	ws.pages = (opt_ws << 20) / PAGE;
	hot.pages = (opt_hot_kib << 10) / PAGE;
	st_pages = (opt_static << 20) / PAGE;
	ws.base = map_locked(ws.pages, "working set");
	hot.base = map_locked(hot.pages, "hot set");
	st = map_locked(st_pages, "static region");

	/* The magic goes straight into the page, byte by byte, so that no
	 * copy of it followed by an index lands anywhere else (stack). */
	for (size_t k = 0; k < st_pages; k++) {
		uint64_t *w = st + k * WORDS;

		for (unsigned i = 0; i < 16; i++)
			((unsigned char *)w)[i] =
				static_magic_x[i] ^ STATIC_MAGIC_XOR;
		w[ST_INDEX] = k;
		fill_body(w, ST_HDR, st_key(k));
		w[ST_CSUM] = csum_body(w, ST_HDR, st_key(k));
	}
	region_init(&ws);
	region_init(&hot);
	say("ready ws_pages=%zu hot_pages=%zu static_pages=%zu", ws.pages,
	    hot.pages, st_pages);
	{
		/* what the guest itself calls in use: the benchmark's
		 * yardstick for bytes sent */
		char mbuf[4096];
		unsigned long tot = 0, fr = 0;
		int mfd = open("/proc/meminfo", O_RDONLY);
		ssize_t mn = mfd >= 0 ? read(mfd, mbuf, sizeof(mbuf) - 1) : -1;

		if (mfd >= 0)
			close(mfd);
		if (mn > 0) {
			char *q;

			mbuf[mn] = 0;
			if ((q = strstr(mbuf, "MemTotal:")))
				tot = strtoul(q + 9, NULL, 10);
			if ((q = strstr(mbuf, "MemFree:")))
				fr = strtoul(q + 8, NULL, 10);
		}
		say("meminfo total_kib=%lu free_kib=%lu", tot, fr);
	}

	/* A round: the hot set hotreps times over (a few pages written again
	 * and again: their TLB entries stay in place under TCG), the working
	 * set once, the static region read. */
	for (;;) {
		uint64_t t0 = now_ms(), round_err = 0;

		for (unsigned long i = 0; hot.pages && i < opt_hot_reps; i++)
			round_err += region_pass(&hot, round_err);
		round_err += region_pass(&ws, round_err);
		round_err += static_check(st, st_pages, round_err);
		if (g_hint_base)
			round_err += hint_region_check(round_err);
		round++;
		errors += round_err;
		if (round_err) {
			say("round %llu FAILED errors=%llu total_errors=%llu",
			    (unsigned long long)round,
			    (unsigned long long)round_err,
			    (unsigned long long)errors);
			last_say = now_ms();
		} else if (now_ms() - last_say >= REPORT_MS) {
			/* A round can take milliseconds: report a few a
			 * second, not every one. */
			say("round %llu ok ms=%llu total_errors=%llu",
			    (unsigned long long)round,
			    (unsigned long long)(now_ms() - t0),
			    (unsigned long long)errors);
			last_say = now_ms();
		}
	}
}

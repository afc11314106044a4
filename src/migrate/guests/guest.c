/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * src/migrate/guests/ owns the guest whose RAM moves: this file the
 * backends' common half, guest_local.c this process, guest_process.c
 * another process, qemu/ a running QEMU (QMP, RAM discovery, the
 * cut-over, the injector of R15).
 *
 * Guest backends, the common half: block validation and page numbering,
 * guest-physical translation, and the R6 "does this page hold data" scan
 * that both backends share (they differ only in whose /proc/PID they look
 * at and how they read and pause).
 *
 * R6, how a page is judged empty:
 *  - the block has a memfd: SEEK_DATA/SEEK_HOLE on it; a hole is empty.
 *    (The owner's page tables say nothing here: a shmem page can hold data
 *    without being mapped by anyone.)
 *  - the block is wholly private anonymous memory: /proc/PID/pagemap;
 *    neither present nor swapped is empty. A pte marker (a swap-format
 *    entry of type SWP_PTE_MARKER: the uffd-wp marker that
 *    UFFD_FEATURE_WP_UNPOPULATED leaves on never-populated pages, or a
 *    guard marker) shows as "swapped" in both pagemap and PAGEMAP_SCAN,
 *    yet holds no data: it is told apart by its swap type, which pagemap
 *    shows only to a reader with CAP_SYS_ADMIN. Without it the entry is
 *    taken as data (safe, only less saving).
 *  - anything else (shared anonymous or file mappings without an fd):
 *    every page counts as populated.
 * PAGEMAP_SCAN, when the kernel has it, is a fast first pass: pte-none
 * pages are skipped without reading their entries, present pages are data
 * at once, and only "swapped" runs are read from pagemap.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "migrate/guests/guest_priv.h"
#include "uffd_compat.h"

/* Swap type of pte markers: always the last of the 32 swap types (see
 * include/linux/swap.h, SWP_PTE_MARKER); marker bits live in the offset. */
#define HM_SWP_TYPE_BITS 5
#define HM_SWP_PTE_MARKER 31u
#define HM_PM_FRAME_MASK ((UINT64_C(1) << 55) - 1)
#define HM_PM_CHUNK 4096u	/* pagemap entries read per pread */
#define HM_SCAN_VEC 256u	/* regions per PAGEMAP_SCAN call */

/* ---- blocks and page numbers ---- */

static int ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
			  uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int validate_block(const struct hm_ram_block *b, uint64_t ps)
{
	if (b->len == 0 || b->len % ps || b->gpa % ps || b->host_addr % ps)
		return -EINVAL;
	if (b->gpa + b->len < b->gpa || b->host_addr + b->len < b->host_addr)
		return -EINVAL;
	if (b->memfd >= 0 && b->memfd_offset % ps)
		return -EINVAL;
	return 0;
}

struct hm_guest *hm_guest_alloc(const struct hm_guest_ops *ops,
				const struct hm_ram_block *blocks,
				size_t nblocks,
				const struct hm_guest_callbacks *cb,
				const struct hm_log *log)
{
	struct hm_guest *g = NULL;
	struct hm_guest_common *c = NULL;
	long psl = sysconf(_SC_PAGESIZE);
	uint64_t ps = psl > 0 ? (uint64_t)psl : 4096;
	uint64_t next_bit = 0;
	int err = EINVAL;

	if (!ops || !blocks || nblocks == 0 || nblocks > 65536)
		goto fail;
	for (size_t i = 0; i < nblocks; i++) {
		if (validate_block(&blocks[i], ps) < 0) {
			hm_logf(log, HM_LOG_ERROR,
				"guest block %zu: zero or unaligned length or "
				"address (page size %" PRIu64 ")", i, ps);
			goto fail;
		}
		for (size_t j = 0; j < i; j++) {
			if (ranges_overlap(blocks[i].gpa, blocks[i].len,
					   blocks[j].gpa, blocks[j].len) ||
			    ranges_overlap(blocks[i].host_addr, blocks[i].len,
					   blocks[j].host_addr, blocks[j].len)) {
				hm_logf(log, HM_LOG_ERROR,
					"guest blocks %zu and %zu overlap", j,
					i);
				goto fail;
			}
		}
		if (next_bit + blocks[i].len / ps < next_bit)
			goto fail;
		next_bit += blocks[i].len / ps;
	}

	err = ENOMEM;
	g = calloc(1, sizeof(*g));
	c = calloc(1, sizeof(*c));
	if (!g || !c)
		goto fail;
	g->blocks = calloc(nblocks, sizeof(*g->blocks));
	c->blk = calloc(nblocks, sizeof(*c->blk));
	if (!g->blocks || !c->blk)
		goto fail;
	c->nblk = nblocks;
	c->pagemap_fd = -1;
	c->pidfd = -1;
	c->uffd = -1;
	for (size_t i = 0; i < nblocks; i++)
		c->blk[i].fd = -1;

	next_bit = 0;
	for (size_t i = 0; i < nblocks; i++) {
		g->blocks[i] = blocks[i];
		g->blocks[i].name[HM_BLOCK_NAME_MAX - 1] = '\0';
		g->blocks[i].first_bit = next_bit;
		next_bit += blocks[i].len / ps;
	}
	g->ops = ops;
	g->nblocks = nblocks;
	g->page_size = ps;
	g->npages = next_bit;
	if (cb)
		g->cb = *cb;
	if (log)
		g->log = *log;
	g->priv = c;
	return g;

fail:
	if (c)
		free(c->blk);
	free(c);
	if (g)
		free(g->blocks);
	free(g);
	errno = err;
	return NULL;
}

const struct hm_ram_block *hm_guest_block_of_page(const struct hm_guest *g,
						  uint64_t page)
{
	size_t lo = 0, hi;

	if (!g || page >= g->npages)
		return NULL;
	/* blocks are numbered in order: binary search on first_bit */
	hi = g->nblocks;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (g->blocks[mid].first_bit <= page)
			lo = mid;
		else
			hi = mid;
	}
	return &g->blocks[lo];
}

int hm_guest_gpa_to_pages(const struct hm_guest *g, uint64_t gpa,
			  uint64_t len, uint64_t *first, uint64_t *n)
{
	if (!g || len == 0 || gpa % g->page_size || len % g->page_size)
		return -EINVAL;
	if (gpa + len < gpa)
		return -ERANGE;
	for (size_t i = 0; i < g->nblocks; i++) {
		const struct hm_ram_block *b = &g->blocks[i];

		if (gpa < b->gpa || gpa - b->gpa >= b->len)
			continue;
		if (len > b->len - (gpa - b->gpa))
			return -ERANGE; /* runs past the block's end */
		if (first)
			*first = b->first_bit + (gpa - b->gpa) / g->page_size;
		if (n)
			*n = len / g->page_size;
		return 0;
	}
	return -ERANGE;
}

long hm_guest_block_index(const struct hm_guest *g,
			  const struct hm_ram_block *b)
{
	if (!g || !b)
		return -EINVAL;
	if (b >= g->blocks && b < g->blocks + g->nblocks)
		return b - g->blocks;
	for (size_t i = 0; i < g->nblocks; i++) {
		if (g->blocks[i].first_bit == b->first_bit &&
		    g->blocks[i].host_addr == b->host_addr &&
		    g->blocks[i].len == b->len)
			return (long)i;
	}
	return -EINVAL;
}

long hm_guest_check_read(const struct hm_guest *g,
			 const struct hm_ram_block *b, uint64_t off,
			 size_t len)
{
	long idx = hm_guest_block_index(g, b);

	if (idx < 0)
		return idx;
	if (off > g->blocks[idx].len || len > g->blocks[idx].len - off)
		return -ERANGE;
	return idx;
}

void hm_guest_free(struct hm_guest *g)
{
	if (!g)
		return;
	if (g->ops && g->ops->destroy)
		g->ops->destroy(g);
	hm_guest_common_fini(g->priv);
	free(g->priv);
	free(g->blocks);
	free(g);
}

/* ---- probing what backs each block ---- */

struct vma {
	uint64_t start, end;
	bool anon_private;
};

static bool path_is_anon(const char *path, unsigned long inode)
{
	if (*path == '\0')
		return inode == 0;
	return strcmp(path, "[heap]") == 0 ||
	       strncmp(path, "[stack", 6) == 0 ||
	       strncmp(path, "[anon:", 6) == 0;
}

/* Parse /proc/PID/maps into *out (sorted by address, as the kernel lists
 * them). Returns the count, or -errno. */
static long read_maps(pid_t pid, struct vma **out)
{
	char path[64];
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0, n = 0, alloc = 0;
	struct vma *v = NULL;
	long ret;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	f = fopen(path, "re");
	if (!f) {
		ret = errno == ENOENT ? -ESRCH : -errno;
		goto out;
	}
	while (getline(&line, &cap, f) > 0) {
		unsigned long long s, e, offs;
		unsigned long inode;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		char *p;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %lu %n", &s, &e,
			   perms, &offs, &maj, &min, &inode, &pos) < 7)
			continue;
		p = line + pos;
		p[strcspn(p, "\n")] = '\0';
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 256;
			struct vma *nv = realloc(v, na * sizeof(*v));

			if (!nv) {
				ret = -ENOMEM;
				goto out;
			}
			v = nv;
			alloc = na;
		}
		v[n].start = s;
		v[n].end = e;
		v[n].anon_private = perms[3] == 'p' && path_is_anon(p, inode);
		n++;
	}
	if (n == 0) {
		/* a zombie has an empty maps file: no memory any more */
		ret = pid ? -ESRCH : -EFAULT;
		goto out;
	}
	*out = v;
	v = NULL;
	ret = (long)n;
out:
	free(v);
	free(line);
	if (f)
		fclose(f);
	return ret;
}

/* 0 and *anon when [start, end) is wholly mapped, else -EFAULT. */
static int classify(const struct vma *v, size_t nv, uint64_t start,
		    uint64_t end, bool *anon)
{
	uint64_t cur = start;

	*anon = true;
	for (size_t i = 0; i < nv && cur < end; i++) {
		if (v[i].end <= cur)
			continue;
		if (v[i].start > cur)
			return -EFAULT;
		if (!v[i].anon_private)
			*anon = false;
		cur = v[i].end;
	}
	return cur >= end ? 0 : -EFAULT;
}

static int reopen_fd(int fd)
{
	char path[64];
	int nfd;

	/* A fresh open file description: lseek(SEEK_DATA) on it does not
	 * move the caller's file offset. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	nfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nfd < 0)
		nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	return nfd < 0 ? -errno : nfd;
}

int hm_guest_common_probe(struct hm_guest *g, struct hm_guest_common *c,
			  pid_t pid)
{
	struct vma *v = NULL;
	char path[64];
	long nv;
	int ret;

	nv = read_maps(pid, &v);
	if (nv < 0) {
		ret = (int)nv;
		hm_logf(&g->log, HM_LOG_ERROR, "guest: reading maps of %s%d: "
			"%s", pid ? "process " : "self", pid ? (int)pid : 0,
			strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < g->nblocks; i++) {
		const struct hm_ram_block *b = &g->blocks[i];

		ret = classify(v, (size_t)nv, b->host_addr,
			       b->host_addr + b->len, &c->blk[i].anon_private);
		if (ret < 0) {
			hm_logf(&g->log, HM_LOG_ERROR,
				"guest block %zu (%s) at 0x%" PRIx64
				"+0x%" PRIx64 " is not wholly mapped", i,
				b->name, b->host_addr, b->len);
			goto out;
		}
		if (b->memfd >= 0) {
			ret = reopen_fd(b->memfd);
			if (ret < 0) {
				hm_logf(&g->log, HM_LOG_ERROR,
					"guest block %zu: memfd %d: %s", i,
					b->memfd, strerror(-ret));
				goto out;
			}
			c->blk[i].fd = ret;
		}
	}
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	c->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->pagemap_fd < 0) {
		ret = errno == ENOENT ? -ESRCH : -errno;
		hm_logf(&g->log, HM_LOG_ERROR, "guest: open %s: %s", path,
			strerror(-ret));
		goto out;
	}
	ret = 0;
out:
	free(v);
	return ret;
}

void hm_guest_common_fini(struct hm_guest_common *c)
{
	if (!c)
		return;
	if (c->pagemap_fd >= 0)
		close(c->pagemap_fd);
	c->pagemap_fd = -1;
	for (size_t i = 0; c->blk && i < c->nblk; i++) {
		if (c->blk[i].fd >= 0)
			close(c->blk[i].fd);
		if (c->blk[i].map)
			munmap(c->blk[i].map, c->blk[i].map_len);
	}
	free(c->blk);
	c->blk = NULL;
	c->nblk = 0;
}

/* ---- R6 ---- */

static bool pm_entry_has_data(uint64_t e)
{
	uint64_t frame, type, offset;

	if (e & HM_PM_PRESENT)
		return true;
	if (!(e & HM_PM_SWAP))
		return false;
	frame = e & HM_PM_FRAME_MASK;
	if (frame == 0)
		return true; /* swap entry hidden from us: assume data */
	type = frame & ((1u << HM_SWP_TYPE_BITS) - 1);
	offset = frame >> HM_SWP_TYPE_BITS;
	/* marker bits (uffd-wp, poisoned, guard) are the low offset bits */
	if (type == HM_SWP_PTE_MARKER && (offset & ~UINT64_C(7)) == 0)
		return false;
	return true; /* swapped, migrating, device: data */
}

/* Pages [addr, addr + npg * ps) of the owner, judged from pagemap entries;
 * data pages set from bit. */
static int populated_pagemap(struct hm_guest *g, struct hm_guest_common *c,
			     uint64_t addr, uint64_t npg, uint64_t bit,
			     struct hm_bitmap *out)
{
	uint64_t *ent = NULL;
	uint64_t ps = g->page_size;
	uint64_t done = 0;
	int ret = 0;

	ent = malloc(HM_PM_CHUNK * sizeof(*ent));
	if (!ent) {
		ret = -ENOMEM;
		goto out;
	}
	while (done < npg) {
		uint64_t cnt = npg - done;
		off_t off = (off_t)((addr / ps + done) * sizeof(*ent));
		ssize_t r;
		uint64_t got;

		if (cnt > HM_PM_CHUNK)
			cnt = HM_PM_CHUNK;
		r = pread(c->pagemap_fd, ent, cnt * sizeof(*ent), off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		got = (uint64_t)r / sizeof(*ent);
		if (got == 0) {
			/* pagemap of an exited process reads empty */
			ret = -ESRCH;
			goto out;
		}
		for (uint64_t i = 0; i < got;) {
			uint64_t j = i;

			if (!pm_entry_has_data(ent[i])) {
				i++;
				continue;
			}
			while (j < got && pm_entry_has_data(ent[j]))
				j++;
			hm_bitmap_set_range_atomic(out, bit + done + i, j - i);
			i = j;
		}
		done += got;
	}
out:
	free(ent);
	return ret;
}

/* First pass with PAGEMAP_SCAN. -ENOTTY when the kernel lacks it (the
 * caller falls back to pagemap), else 0 or -errno. */
static int populated_scan(struct hm_guest *g, struct hm_guest_common *c,
			  uint64_t addr, uint64_t npg, uint64_t bit,
			  struct hm_bitmap *out)
{
	struct page_region vec[HM_SCAN_VEC];
	uint64_t ps = g->page_size;
	uint64_t end = addr + npg * ps;
	uint64_t cur = addr;
	int ret = 0;

	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = cur,
			.end = end,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = HM_SCAN_VEC,
			.category_anyof_mask = PAGE_IS_PRESENT |
					       PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		};
		long r = ioctl(c->pagemap_fd, PAGEMAP_SCAN, &a);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			if ((ret == -ENOTTY || ret == -EINVAL ||
			     ret == -EOPNOTSUPP) &&
			    __atomic_load_n(&c->scan_state,
					    __ATOMIC_RELAXED) == 0) {
				__atomic_store_n(&c->scan_state, -1,
						 __ATOMIC_RELAXED);
				ret = -ENOTTY;
			}
			goto out;
		}
		__atomic_store_n(&c->scan_state, 1, __ATOMIC_RELAXED);
		for (long i = 0; i < r; i++) {
			uint64_t s = vec[i].start, e = vec[i].end;
			uint64_t b0 = bit + (s - addr) / ps;

			if (vec[i].categories & PAGE_IS_PRESENT)
				hm_bitmap_set_range_atomic(out, b0,
							   (e - s) / ps);
			else
				ret = populated_pagemap(g, c, s, (e - s) / ps,
							b0, out);
			if (ret < 0)
				goto out;
		}
		if (a.walk_end <= cur) {
			ret = -EIO; /* no progress: do not loop forever */
			goto out;
		}
		cur = a.walk_end;
	}
out:
	return ret;
}

static int populated_seek(struct hm_guest *g, int fd, uint64_t foff,
			  uint64_t npg, uint64_t bit, struct hm_bitmap *out)
{
	uint64_t ps = g->page_size;
	uint64_t end = foff + npg * ps;
	uint64_t pos = foff;
	int ret = 0;

	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
		off_t h;
		uint64_t ds, he;

		if (d < 0) {
			ret = errno == ENXIO ? 0 : -errno; /* ENXIO: no more */
			goto out;
		}
		if ((uint64_t)d >= end)
			goto out;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0) {
			ret = -errno;
			goto out;
		}
		ds = (uint64_t)d / ps * ps;
		he = ((uint64_t)h + ps - 1) / ps * ps;
		if (ds < pos)
			ds = pos;
		if (he > end)
			he = end;
		if (he > ds)
			hm_bitmap_set_range_atomic(out, bit + (ds - foff) / ps,
						   (he - ds) / ps);
		if ((uint64_t)h <= pos) {
			ret = -EIO;
			goto out;
		}
		pos = he > (uint64_t)h ? he : (uint64_t)h;
	}
out:
	return ret;
}

int hm_guest_common_populated(struct hm_guest *g,
			      const struct hm_ram_block *b, uint64_t first,
			      uint64_t n, struct hm_bitmap *out)
{
	struct hm_guest_common *c = g ? g->priv : NULL;
	const struct hm_ram_block *blk;
	uint64_t bpages, bit;
	long idx;
	int ret;

	idx = hm_guest_block_index(g, b);
	if (idx < 0 || !c || !out)
		return -EINVAL;
	blk = &g->blocks[idx];
	bpages = blk->len / g->page_size;
	if (first > bpages || n > bpages - first)
		return -ERANGE;
	bit = blk->first_bit + first;
	if (out->nbits < bit + n)
		return -ERANGE;
	if (n == 0)
		return 0;

	if (c->blk[idx].fd >= 0)
		return populated_seek(g, c->blk[idx].fd,
				      blk->memfd_offset + first * g->page_size,
				      n, bit, out);
	if (!c->blk[idx].anon_private)
		return hm_bitmap_set_range_atomic(out, bit, n);

	ret = -ENOTTY;
	if (__atomic_load_n(&c->scan_state, __ATOMIC_RELAXED) >= 0)
		ret = populated_scan(g, c, blk->host_addr +
					   first * g->page_size, n, bit, out);
	if (ret == -ENOTTY)
		ret = populated_pagemap(g, c, blk->host_addr +
					      first * g->page_size, n, bit,
					out);
	if (ret == -ESRCH)
		hm_logf(&g->log, HM_LOG_ERROR, "guest: process %d is gone",
			(int)g->pid);
	return ret;
}

int hm_guest_track_blocks(struct hm_guest *g, struct hm_tracker *t)
{
	for (size_t i = 0; i < g->nblocks; i++) {
		const struct hm_ram_block *b = &g->blocks[i];
		int ret = hm_tracker_add_range(t, b->host_addr, b->len,
					       b->first_bit);

		if (ret < 0) {
			hm_logf(&g->log, HM_LOG_ERROR,
				"guest block %zu (%s): tracking: %s", i,
				b->name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int hm_guest_tracker_opts(const struct hm_guest *g,
			  const struct hm_caps *caps,
			  const struct hm_tracker_opts *in,
			  struct hm_tracker_opts *out)
{
	if (!caps || !in)
		return -EINVAL;
	*out = *in;
	if (out->nbits == 0)
		out->nbits = g->npages;
	if (out->nbits < g->npages)
		return -EINVAL;
	return 0;
}

struct hm_tracker *hm_guest_tracker_finish(struct hm_guest *g,
					   struct hm_tracker *t)
{
	int ret;

	if (!t)
		return NULL;
	ret = hm_guest_track_blocks(g, t);
	if (ret < 0) {
		hm_tracker_close(t);
		errno = -ret;
		return NULL;
	}
	return t;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "local" guest backend: guest RAM is memory of this process (tests,
 * the benchmark). Reading is a memcpy; the blocks were checked to be
 * mapped at construction, and the engine never writes them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/guests/guest_priv.h"

static int local_read(struct hm_guest *g, const struct hm_ram_block *b,
		      uint64_t off, void *buf, size_t len)
{
	long idx = hm_guest_check_read(g, b, off, len);

	if (idx < 0)
		return (int)idx;
	memcpy(buf, (const void *)(uintptr_t)(g->blocks[idx].host_addr + off),
	       len);
	return 0;
}

static const void *local_map(struct hm_guest *g, const struct hm_ram_block *b)
{
	long idx = hm_guest_block_index(g, b);

	return idx < 0 ? NULL
		       : (const void *)(uintptr_t)g->blocks[idx].host_addr;
}

static struct hm_tracker *local_open_tracker(struct hm_guest *g,
					     const struct hm_caps *caps,
					     const struct hm_tracker_opts *opts)
{
	struct hm_tracker_opts o;
	int ret = hm_guest_tracker_opts(g, caps, opts, &o);

	if (ret < 0) {
		errno = -ret;
		return NULL;
	}
	return hm_guest_tracker_finish(g, hm_tracker_open(caps, &o));
}

/* Without callbacks there is nothing to stop: the caller owns whatever
 * writes this memory. */
static int local_pause(struct hm_guest *g)
{
	return g->cb.pause ? g->cb.pause(g->cb.opaque) : 0;
}

static int local_resume(struct hm_guest *g)
{
	return g->cb.resume ? g->cb.resume(g->cb.opaque) : 0;
}

static const struct hm_guest_ops local_ops = {
	.name = "local",
	.read = local_read,
	.map = local_map,
	.populated = hm_guest_common_populated,
	.open_tracker = local_open_tracker,
	.pause = local_pause,
	.resume = local_resume,
	.destroy = NULL, /* all state is common */
};

struct hm_guest *hm_guest_local_new(const struct hm_ram_block *blocks,
				    size_t nblocks,
				    const struct hm_guest_callbacks *cb,
				    const struct hm_log *log)
{
	struct hm_guest *g;
	int ret;

	g = hm_guest_alloc(&local_ops, blocks, nblocks, cb, log);
	if (!g)
		return NULL;
	ret = hm_guest_common_probe(g, g->priv, 0);
	if (ret < 0) {
		hm_guest_free(g);
		errno = -ret;
		return NULL;
	}
	return g;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fixed sane geometries the wire fuzzer decodes against; shared with
 * the seed generator so that the seeds are valid for them. */
#ifndef HM_FUZZ_GEO_H
#define HM_FUZZ_GEO_H

#include <string.h>

#include "migrate/wire/wire.h"

#define FUZZ_PS 4096u
#define FUZZ_NPAGES 1000u

/* Two blocks (600 + 400 pages, the second at 4 GiB), channels channels. */
static inline void fuzz_geo(struct hm_wire_geometry *g, unsigned channels)
{
	memset(g, 0, sizeof(*g));
	g->page_size = FUZZ_PS;
	g->nblocks = 2;
	g->channels = channels;
	g->npages = FUZZ_NPAGES;
	strcpy(g->blocks[0].name, "pc.ram");
	g->blocks[0].len = 600ull * FUZZ_PS;
	strcpy(g->blocks[1].name, "pc.ram.high");
	g->blocks[1].gpa = 1ull << 32;
	g->blocks[1].len = 400ull * FUZZ_PS;
	g->blocks[1].first_bit = 600;
}

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hinted map file (hintmig send --hinted-map FILE; docs/protocol.md):
 * which pages of a completed migration the destination does not hold as
 * the paused source does, because a hint took them out of the migration
 * after their last copy was sent (hm_migration_hinted()). A page compare
 * accepts a difference exactly there.
 *
 * Layout, all integers little-endian:
 *   0  char[8]  magic "HMHINTED"
 *   8  u32      version (1)
 *  12  u32      page size in bytes
 *  16  u64      pages (bits that follow)
 *  24  u64      pages set
 *  32  u64[]    ceil(pages / 64) words, page k is bit k % 64 of word k / 64
 * Page k is the guest RAM's k-th page in the engine's order: for a QEMU
 * guest, byte k * page size of its RAM backend file.
 */
#ifndef HINTMIG_HINTED_MAP_H
#define HINTMIG_HINTED_MAP_H

#include <stdint.h>

#define HM_HINTED_MAP_MAGIC "HMHINTED"
#define HM_HINTED_MAP_VERSION 1u
#define HM_HINTED_MAP_HEADER 32u

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82f63b78): the checksum of
 * every wire message (docs/protocol.md). SSE4.2's crc32 instruction where
 * the CPU has it, a table otherwise; both give the same values.
 */
#ifndef HM_MIGRATE_CRC32C_H
#define HM_MIGRATE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc (start with 0) over len bytes at p. */
uint32_t hm_crc32c(uint32_t crc, const void *p, size_t len);

#endif

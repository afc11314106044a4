/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CRC-32C (crc32c.h). */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "migrate/wire/crc32c.h"

#define POLY 0x82f63b78u

static uint32_t table[256];
static bool hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	hw = __builtin_cpu_supports("sse4.2");
#endif
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		table[i] = c;
	}
}

static uint32_t crc_table(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n--)
		crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_sse42(uint32_t crc, const unsigned char *p, size_t n)
{
	uint64_t c = crc;

	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	crc = (uint32_t)c;
	while (n--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

uint32_t hm_crc32c(uint32_t crc, const void *p, size_t len)
{
	pthread_once(&once, init);
	crc = ~crc;
#if defined(__x86_64__)
	if (hw)
		return ~crc_sse42(crc, p, len);
#endif
	return ~crc_table(crc, p, len);
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hm-payload: a guest without an operating system, for QEMU under KVM
 * where a stock Linux kernel cannot boot (a nested PVM host). QEMU loads it
 * with -kernel as a Multiboot (v1) ELF and enters it in 32-bit protected
 * mode, paging off, flat segments. It then
 *
 *  - fills every page from 4 MiB to the top of RAM (Multiboot's mem_upper)
 *    with a value derived from the page number and the page's generation
 *    (gens[], in the image's own bss: guest RAM like the rest);
 *  - forever: rewrites a working set of pages (generation + 1), checks
 *    every page against its generation, and reports on COM1, in the
 *    console language of hm-workload (tests/migration/qemu/workload):
 *      "HMW: ready static_pages=N ws_pages=N"
 *      "HMW: round N ok" / "HMW: ERROR page P word W ..." and
 *      "HMW: round N FAILED errors=E"
 *
 * So a migration that loses or corrupts a page is caught by the payload
 * itself on the destination, besides the test's page compare. Built
 * freestanding, -m32, no libc.
 */
#include <stdint.h>

#define COM1 0x3f8
#define FIRST 0x400000u		/* the checked region starts at 4 MiB */
#define PAGE 4096u
#define MAX_PAGES (1u << 20)	/* 4 GiB of pages: the gens[] table size */
#define WS_PAGES 64u		/* 256 KiB rewritten every round */

uint8_t payload_stack[16384] __attribute__((aligned(16)));
static uint16_t gens[MAX_PAGES];

struct mb_info {
	uint32_t flags, mem_lower, mem_upper;
};

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void putc_serial(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

static void puts_serial(const char *s)
{
	while (*s)
		putc_serial(*s++);
}

static void putu(uint32_t v)
{
	char b[11];
	int n = 0;

	do {
		b[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		putc_serial(b[--n]);
}

static void puthex(uint32_t v)
{
	puts_serial("0x");
	for (int i = 28; i >= 0; i -= 4)
		putc_serial("0123456789abcdef"[(v >> i) & 15]);
}

/* The value of every word of page p at generation g. One value a page,
 * written and checked with string instructions: under a host that runs
 * this guest's code by instruction emulation (a PVM), `rep stosl` and
 * `repe scasl` are one emulated instruction a page, not thousands. A lost
 * page (zero, or an older generation's) or a page of another page's
 * content fails the check; the test's page compare sees every bit. */
static inline uint32_t value(uint32_t p, uint32_t g)
{
	uint32_t x = p * 0x9E3779B1u ^ (g + 1) * 0x85EBCA77u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x | 1;		/* never a zero page */
}

static void fill(uint32_t p)
{
	uint32_t v = value(p, gens[p]), n = PAGE / 4;
	void *d = (void *)(uintptr_t)(p * PAGE);

	__asm__ volatile("cld; rep stosl"
			 : "+D"(d), "+c"(n) : "a"(v) : "memory");
}

static uint32_t check(uint32_t p, uint32_t errors)
{
	uint32_t v = value(p, gens[p]), n = PAGE / 4;
	const uint32_t *d = (const uint32_t *)(uintptr_t)(p * PAGE);
	uint8_t differ;

	__asm__ volatile("cld; repe scasl; setne %2"
			 : "+D"(d), "+c"(n), "=q"(differ)
			 : "a"(v) : "memory", "cc");
	if (!differ)
		return 0;
	if (errors < 8) {
		/* scasl stopped one word past the first that differs */
		puts_serial("HMW: ERROR page ");
		puthex(p * PAGE);
		puts_serial(" word ");
		putu((uint32_t)(d - 1 - (const uint32_t *)(uintptr_t)(p * PAGE)));
		puts_serial(" gen ");
		putu(gens[p]);
		puts_serial(" want ");
		puthex(v);
		puts_serial(" got ");
		puthex(d[-1]);
		puts_serial("\r\n");
	}
	return 1;
}

void payload_main(uint32_t magic, const struct mb_info *mbi);

void payload_main(uint32_t magic, const struct mb_info *mbi)
{
	uint32_t top, first = FIRST / PAGE, last, ws0, round = 0;

	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* 115200 8N1 */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	if (magic != 0x2BADB002u || !(mbi->flags & 1)) {
		puts_serial("HMW: ERROR not started by a Multiboot loader with "
			    "memory information\r\n");
		for (;;)
			__asm__ volatile("hlt");
	}
	top = 0x100000u + mbi->mem_upper * 1024u;
	last = top / PAGE;
	if (last > MAX_PAGES)
		last = MAX_PAGES;
	for (uint32_t p = first; p < last; p++)
		fill(p);
	ws0 = first + (last - first) / 2;
	puts_serial("HMW: ready static_pages=");
	putu(last - first - WS_PAGES);
	puts_serial(" ws_pages=");
	putu(WS_PAGES);
	puts_serial(" top=");
	puthex(top);
	puts_serial("\r\n");
	for (;;) {
		uint32_t errors = 0;

		round++;
		for (uint32_t p = ws0; p < ws0 + WS_PAGES && p < last; p++) {
			gens[p]++;
			fill(p);
		}
		for (uint32_t p = first; p < last; p++)
			errors += check(p, errors);
		puts_serial("HMW: round ");
		putu(round);
		if (errors) {
			puts_serial(" FAILED errors=");
			putu(errors);
		} else {
			puts_serial(" ok");
		}
		puts_serial("\r\n");
	}
}

/* The Multiboot header (magic, flags: memory information wanted,
 * checksum), within the file's first 8 KiB as the loader wants it, and the
 * entry: EAX the loader's magic, EBX the information structure. */
__asm__(".section .text\n"
	".align 4\n"
	"  .long 0x1BADB002, 0x00000002, -(0x1BADB002 + 0x00000002)\n"
	".globl _start\n"
	"_start:\n"
	"  mov $payload_stack + 16384, %esp\n"
	"  push %ebx\n"
	"  push %eax\n"
	"  call payload_main\n"
	"1: hlt\n"
	"  jmp 1b\n");

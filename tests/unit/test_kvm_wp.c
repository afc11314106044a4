/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writes by a KVM vCPU to guest memory are seen by the write tracker.
 *
 * A vCPU writes guest RAM through the second-level page tables (EPT/NPT,
 * or the shadow tables of a paravirtualised hypervisor); KVM builds those
 * from the host page tables, with get_user_pages() on a write fault. A
 * write-protected host pte therefore makes KVM take the uffd-wp path, and
 * write-protecting again (harvest) invalidates KVM's mapping through the
 * mmu notifier, so the next guest write faults again.
 *
 * The guest: one memory slot of host memory (tracked), a vCPU in real
 * mode running a few lines of code that store one byte into each page of
 * a chosen set and halt. For each mode (sync, async): the pages the guest
 * wrote must be harvested, and no other page may be.
 *
 * Skip or fail: the test skips only when /dev/kvm does not exist (strict
 * mode confirms it, tests/hm_absent.h). Once the node exists, everything
 * else is a failure with its own message: the node does not open, a VM or
 * vCPU cannot be created, or KVM_RUN ends anywhere but at the payload's
 * hlt. The last is how a host that offers /dev/kvm but cannot run a
 * real-mode guest (a PVM or some nested hypervisors) shows itself; it is
 * reported, never skipped, because a KVM that cannot run guests is a fact
 * the person reading CI must see.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <hintmig/wp_tracker.h>

#include "hm_test.h"

#define GUEST_SIZE (1024 * 1024) /* real mode reaches the first MiB */
#define PAGE 4096u
#define NPAGES (GUEST_SIZE / PAGE)
#define FIRST_DATA_PAGE 16 /* pages 1..15 hold code, one per round */

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
	void *raw;
};

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void vm_create(struct vm *v)
{
	struct kvm_userspace_memory_region slot;
	int r;

	memset(v, 0, sizeof(*v));
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		hm_test_fail("/dev/kvm exists but does not open: %s",
			     strerror(errno));
	r = ioctl(v->kvm, KVM_GET_API_VERSION, 0);
	HM_CHECK_EQ(r, KVM_API_VERSION);
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		hm_test_fail("KVM_CREATE_VM: %s", strerror(errno));

	/* Guest RAM: private anonymous host memory, 2 MiB aligned. */
	v->raw = mmap(NULL, 2 * GUEST_SIZE + (2u << 20), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	HM_CHECK(v->raw != MAP_FAILED);
	v->mem = (uint8_t *)(((uintptr_t)v->raw + (2u << 20) - 1) &
			     ~(uintptr_t)((2u << 20) - 1));
	memset(&slot, 0, sizeof(slot));
	slot.slot = 0;
	slot.guest_phys_addr = 0;
	slot.memory_size = GUEST_SIZE;
	slot.userspace_addr = (uintptr_t)v->mem;
	if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		hm_test_fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0)
		hm_test_fail("KVM_CREATE_VCPU: %s", strerror(errno));
	r = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	HM_CHECK(r > 0);
	v->run_size = (size_t)r;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->vcpu, 0);
	HM_CHECK(v->run != MAP_FAILED);
}

static void vm_destroy(struct vm *v)
{
	munmap(v->run, v->run_size);
	close(v->vcpu);
	close(v->vm);
	close(v->kvm);
	munmap(v->raw, 2 * GUEST_SIZE + (2u << 20));
}

/* Real-mode code at page code_page: for each page p in pages[], store val
 * at byte offset off of p (ds = p * 0x100, so ds:off = p * 4096 + off),
 * then hlt. */
static void emit_code(struct vm *v, unsigned code_page, const unsigned *pages,
		      size_t n, uint8_t val)
{
	uint8_t *c = v->mem + code_page * PAGE;
	size_t i = 0;

	for (size_t k = 0; k < n; k++) {
		uint16_t seg = (uint16_t)(pages[k] * 0x100);
		uint16_t off = (uint16_t)((pages[k] * 37 + k * 8) % PAGE);

		HM_CHECK(i + 16 < PAGE);
		c[i++] = 0xb8; /* mov ax, imm16 */
		c[i++] = (uint8_t)seg;
		c[i++] = (uint8_t)(seg >> 8);
		c[i++] = 0x8e; /* mov ds, ax */
		c[i++] = 0xd8;
		c[i++] = 0xc6; /* mov byte [disp16], imm8 */
		c[i++] = 0x06;
		c[i++] = (uint8_t)off;
		c[i++] = (uint8_t)(off >> 8);
		c[i++] = val;
	}
	c[i++] = 0xf4; /* hlt */
}

static void run_code(struct vm *v, unsigned code_page)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	HM_CHECK(ioctl(v->vcpu, KVM_GET_SREGS, &sregs) == 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	HM_CHECK(ioctl(v->vcpu, KVM_SET_SREGS, &sregs) == 0);
	memset(&regs, 0, sizeof(regs));
	regs.rip = code_page * PAGE;
	regs.rflags = 0x2;
	HM_CHECK(ioctl(v->vcpu, KVM_SET_REGS, &regs) == 0);
	for (;;) {
		if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			hm_test_fail("KVM_RUN: %s", strerror(errno));
		}
		if (v->run->exit_reason == KVM_EXIT_HLT)
			return;
		hm_test_fail("KVM is present but did not run the real-mode "
			     "payload to its hlt: exit reason %u (hardware "
			     "reason 0x%llx); a nested or PVM host that cannot "
			     "run real mode fails here, it is not skipped",
			     v->run->exit_reason,
			     (unsigned long long)
				     v->run->fail_entry.hardware_entry_failure_reason);
	}
}

static size_t pick_pages(unsigned *pages, size_t max, unsigned pct)
{
	size_t n = 0;

	for (unsigned p = FIRST_DATA_PAGE; p < NPAGES && n < max; p++)
		if (rnd() % 100 < pct)
			pages[n++] = p;
	return n;
}

static void check_round(struct hm_tracker *t, struct vm *v,
			struct hm_bitmap *got, const unsigned *pages, size_t n,
			uint8_t val, const char *what)
{
	struct hm_bitmap want;
	long h;

	HM_CHECK_OK(hm_bitmap_init(&want, NPAGES));
	for (size_t k = 0; k < n; k++) {
		/* The guest really wrote it. */
		HM_CHECK_EQ(v->mem[pages[k] * PAGE +
				   (pages[k] * 37 + k * 8) % PAGE], val);
		hm_bitmap_set(&want, pages[k]);
	}
	memset(got->words, 0, got->nwords * sizeof(uint64_t));
	h = hm_tracker_harvest(t, got);
	HM_CHECK_OK(h);
	for (size_t i = 0; i < NPAGES; i++) {
		if (hm_bitmap_test(got, i) && !hm_bitmap_test(&want, i))
			hm_test_fail("%s: page %zu reported, the guest did not "
				     "write it", what, i);
		if (!hm_bitmap_test(got, i) && hm_bitmap_test(&want, i))
			hm_test_fail("%s: page %zu written by the guest, not "
				     "reported", what, i);
	}
	HM_CHECK_EQ(h, n);
	hm_bitmap_fini(&want);
	printf("ok %s: %zu guest-written pages harvested, nothing else\n",
	       what, n);
}

static void test_mode(const struct hm_caps *caps, enum hm_tracker_mode mode)
{
	struct hm_tracker_opts o = {
		.mode = mode,
		.log = { hm_log_stderr, NULL, HM_LOG_WARN },
		.nbits = NPAGES,
	};
	unsigned a[NPAGES], b[NPAGES];
	size_t na, nb;
	struct hm_bitmap got;
	struct hm_tracker *t;
	struct hm_tracker_stats st;
	char what[64];
	struct vm v;

	vm_create(&v);
	na = pick_pages(a, 300, 10);
	nb = pick_pages(b, 300, 40);
	/* All code is in place before tracking starts: host writes to guest
	 * memory are writes too. Data pages 16.. are never populated before
	 * the guest touches them (half of them), or populated by the host
	 * (the other half). */
	emit_code(&v, 1, a, na, 0x11);
	emit_code(&v, 2, a, na, 0x22);
	emit_code(&v, 3, b, nb, 0x33);
	emit_code(&v, 4, NULL, 0, 0);
	for (unsigned p = FIRST_DATA_PAGE; p < NPAGES; p += 2)
		v.mem[p * PAGE] = 1;
	/* Let the vCPU run once before tracking, so that KVM already maps
	 * guest memory (the case of a running guest). */
	run_code(&v, 4);

	HM_CHECK_OK(hm_bitmap_init(&got, NPAGES));
	t = hm_tracker_open(caps, &o);
	if (!t)
		hm_test_fail("hm_tracker_open: %s", strerror(errno));
	HM_CHECK_OK(hm_tracker_add_range(t, (uintptr_t)v.mem, GUEST_SIZE, 0));
	HM_CHECK_OK(hm_tracker_start(t));

	snprintf(what, sizeof(what), "%s round 1", hm_tracker_mode_name(mode));
	run_code(&v, 1);
	check_round(t, &v, &got, a, na, 0x11, what);
	/* The same pages again: the harvest's re-protection must have
	 * reached KVM's own mapping (mmu notifier). */
	snprintf(what, sizeof(what), "%s round 2 (same pages)",
		 hm_tracker_mode_name(mode));
	run_code(&v, 2);
	check_round(t, &v, &got, a, na, 0x22, what);
	snprintf(what, sizeof(what), "%s round 3", hm_tracker_mode_name(mode));
	run_code(&v, 3);
	check_round(t, &v, &got, b, nb, 0x33, what);
	snprintf(what, sizeof(what), "%s round 4 (no writes)",
		 hm_tracker_mode_name(mode));
	run_code(&v, 4);
	check_round(t, &v, &got, NULL, 0, 0, what);

	hm_tracker_get_stats(t, &st);
	if (mode == HM_TRACKER_SYNC)
		HM_CHECK(st.faults >= na + na + nb);
	HM_CHECK_OK(hm_tracker_stop(t));
	/* The guest runs on, untracked. */
	run_code(&v, 3);
	hm_tracker_close(t);
	hm_bitmap_fini(&got);
	vm_destroy(&v);
}

int main(void)
{
	const enum hm_tracker_mode modes[] = { HM_TRACKER_SYNC,
					       HM_TRACKER_ASYNC };
	struct hm_caps caps;
	bool skipped_async = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	HM_CHECK_OK(hm_caps_probe(&caps, NULL));
	if (access("/dev/kvm", F_OK) != 0)
		hm_test_skip_absent(HM_ABSENT_KVM, "/dev/kvm is absent");
	if (!caps.uffd_wp)
		hm_test_skip_absent(HM_ABSENT_UFFD_WP, "kernel %s has no userfaultfd write-protect",
			     caps.kernel_release);
	rng ^= (uint64_t)time(NULL);
	for (size_t m = 0; m < 2; m++) {
		if (hm_tracker_mode_pick(&caps, modes[m]) < 0) {
			skipped_async = true;
			continue;
		}
		test_mode(&caps, modes[m]);
	}
	if (skipped_async)
		hm_test_skip_absent(HM_ABSENT_WP_ASYNC, "async mode not tested: kernel %s lacks WP_ASYNC "
			     "or PAGEMAP_SCAN (sync mode passed)",
			     caps.kernel_release);
	printf("all passed\n");
	return 0;
}

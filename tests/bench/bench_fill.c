// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Benchmark (prints numbers, asserts nothing but its own syscalls): what it
 * costs a destination to put received pages into fresh anonymous memory,
 * the two ways dest.c knows (HM_DEST_FILL_WRITE and HM_DEST_FILL_UFFD),
 * side by side in one run, modes interleaved over repetitions:
 *
 *   write  memcpy from a receive buffer into never-touched pages: each
 *          first touch faults, and the kernel clears the new page before
 *          the copy writes it again;
 *   uffd   the range registered with a userfaultfd (missing mode), pages
 *          placed with UFFDIO_COPY in runs: a new page filled straight
 *          from the buffer, no clearing, one call per run.
 *
 * Layout like the synthetic guest at 25% in use: runs of RUN pages, one
 * in every 4 runs filled. A "reference" line gives a plain memcpy of the
 * same bytes into memory touched before (what a recv into a reused buffer,
 * as in the raw throughput measurement, costs).
 *
 * usage: bench_fill [--quick] [--ram MiB] [--run PAGES] [--reps N]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PS 4096u

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static unsigned char *map_fresh(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	/* as dest.c's sparse regions: small pages */
	madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

/* One pass: fill every 4th run of `run` pages of a fresh `len` mapping
 * from buf. Returns ms, or a negative value when uffd is refused. */
static double pass(int mode, size_t len, size_t run, const unsigned char *buf)
{
	unsigned char *ram = map_fresh(len);
	size_t stride = 4 * run * PS, chunk = run * PS;
	int uffd = -1;
	double t0, t1;

	if (mode == 1) {
		struct uffdio_api api = { .api = UFFD_API };
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)ram, .len = len },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 ||
		    ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			fprintf(stderr, "bench_fill: userfaultfd: %s\n",
				strerror(errno));
			if (uffd >= 0)
				close(uffd);
			munmap(ram, len);
			return -1;
		}
	}
	if (mode == 2) /* reference: touched before */
		memset(ram, 1, len);
	t0 = now_ms();
	for (size_t off = 0; off + chunk <= len; off += stride) {
		if (mode != 1) {
			memcpy(ram + off, buf, chunk);
			continue;
		}
		struct uffdio_copy uc = { .dst = (uintptr_t)(ram + off),
					  .src = (uintptr_t)buf,
					  .len = chunk };

		while (ioctl(uffd, UFFDIO_COPY, &uc) < 0) {
			if (uc.copy > 0) {
				uc.dst += (uint64_t)uc.copy;
				uc.src += (uint64_t)uc.copy;
				uc.len -= (uint64_t)uc.copy;
			} else if (errno != EAGAIN) {
				perror("UFFDIO_COPY");
				exit(1);
			}
			uc.copy = 0;
		}
	}
	t1 = now_ms();
	if (uffd >= 0)
		close(uffd);
	munmap(ram, len);
	return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const char *const names[3] = { "write", "uffd",
					      "reference (memory touched "
					      "before)" };
	size_t ram_mib = 2048, run = 16;
	unsigned reps = 5;
	double t[3][32];
	unsigned char *buf;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			ram_mib = 256;
			reps = 3;
		} else if (!strcmp(argv[i], "--ram") && i + 1 < argc) {
			ram_mib = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--run") && i + 1 < argc) {
			run = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = (unsigned)strtoul(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: bench_fill [--quick] [--ram "
				"MiB] [--run PAGES] [--reps N]\n");
			return 2;
		}
	}
	if (!ram_mib || !run || !reps || reps > 32) {
		fprintf(stderr, "bench_fill: bad arguments\n");
		return 2;
	}
	buf = malloc(run * PS);
	if (!buf)
		return 1;
	memset(buf, 0xa5, run * PS);
	for (unsigned r = 0; r < reps; r++)
		for (int m = 0; m < 3; m++)
			t[m][r] = pass(m, ram_mib << 20, run, buf);
	printf("fresh anonymous memory, %zu MiB, 25%% filled in runs of %zu "
	       "pages (%zu MiB of data), %u repetitions interleaved:\n",
	       ram_mib, run, ram_mib / 4, reps);
	for (int m = 0; m < 3; m++) {
		double mib = (double)(ram_mib / 4);

		if (t[m][0] < 0) {
			printf("  %-6s refused\n", names[m]);
			continue;
		}
		qsort(t[m], reps, sizeof(double), cmp_double);
		printf("  %-6s median %7.1f ms (min %.1f, max %.1f): %.0f "
		       "MiB/s, %.2f us per page\n", names[m], t[m][reps / 2],
		       t[m][0], t[m][reps - 1], mib / (t[m][reps / 2] / 1e3),
		       t[m][reps / 2] * 1e3 / (mib * 256));
	}
	free(buf);
	return 0;
}

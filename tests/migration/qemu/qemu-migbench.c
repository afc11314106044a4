/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qemu-migbench: numbers from real migrations of the hm-workload guest:
 * QEMU's own precopy (with and without its virtio-balloon free page
 * hinting) and hintmig's (without hints, with the stand-in agent's hints,
 * with free page reporting), side by side on the same guest.
 *
 *   qemu-migbench [--reps N] [--modes plain,hint,hm,hm-hints,hm-reporting,hm-agent]
 *                 [--mem-kib K] [--hugetlb]   (RAM of both QEMUs on
 *                 hugetlbfs, 2 MiB pages, QEMU's own modes too)
 *                 [--fill MiB] [--ws MiB] [--max-bandwidth BYTES/s]
 *                 [--min-syncs N] [--compare] [--json FILE]
 *
 * Every run is a full test run (boot, migrate over TCP loopback, guest
 * checked alive and error-free on the destination; with --compare also the
 * page-by-page RAM compare); modes are interleaved run by run so that the
 * machine's load drifts alike over all of them.  Prints the query-migrate
 * figures of every run and, per mode, their medians.  Exit 1 if any run
 * failed its checks.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define MAX_REPS 50
#define MAX_MODES 8

struct mode {
	const char *name;
	enum hm_balloon balloon;
	int hintmig;		/* hintmig moves the RAM */
	unsigned hint_mib;	/* the stand-in agent's hint region */
	enum hm_agent_mode agent; /* hintmig-agent's hints */
	const char *tracker;	/* hintmig send --tracker, NULL: auto */
	int tcp, tls;		/* hintmig over TCP (with a key); in TLS */
	struct hm_run_result runs[MAX_REPS];
	int ok[MAX_REPS];
	int n;
};

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

/* Median over the successful runs of one field. */
static double median(const struct mode *m, long long (*get)(const struct hm_run_result *))
{
	long long v[MAX_REPS];
	int n = 0;

	for (int i = 0; i < m->n; i++)
		if (m->ok[i])
			v[n++] = get(&m->runs[i]);
	if (!n)
		return -1;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_ll);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* hintmig runs: the wall time of `hintmig send` (attach to QEMU's
 * completion), and QEMU's own downtime, which runs from the vCPU stop
 * before pre-switchover to QEMU's completion and so holds hintmig's final
 * round; bytes: hintmig's and QEMU's streams together. */
static long long f_total(const struct hm_run_result *r)
{
	return r->hm_wall_ms ? r->hm_wall_ms : r->mig.total_ms;
}
static long long f_down(const struct hm_run_result *r)
{
	return r->hm_wall_ms ? r->hm_qemu_downtime_ms : r->mig.downtime_ms;
}
static long long f_inuse(const struct hm_run_result *r)
{
	return (r->src_log.mem_total_kib - r->src_log.mem_free_kib) << 10;
}
static long long f_xfer_all(const struct hm_run_result *r)
{
	return r->mig.transferred +
	       (r->hm_wall_ms && r->hm_device_bytes > 0 ? r->hm_device_bytes
							: 0);
}
static long long f_xfer_inuse(const struct hm_run_result *r)
{
	long long u = f_inuse(r);

	return u > 0 ? f_xfer_all(r) * 1000 / u : -1;
}
static long long f_setup(const struct hm_run_result *r) { return r->mig.setup_ms; }

static long long f_normal(const struct hm_run_result *r) { return r->mig.normal; }
static long long f_dup(const struct hm_run_result *r) { return r->mig.duplicate; }
static long long f_syncs(const struct hm_run_result *r) { return r->mig.dirty_sync_count; }
static long long f_hinted(const struct hm_run_result *r)
{
	return r->compared ? (long long)r->cmp.zero_on_dst : -1;
}

/* The source guest's workload pace during the migration over before it,
 * x1000. */
static long long f_pace(const struct hm_run_result *r)
{
	return r->guest_rounds_ps_before > 0
		       ? (long long)(r->guest_rounds_ps_during * 1000 /
				     r->guest_rounds_ps_before)
		       : -1;
}
/* The tracker's write faults per second of hintmig's migration (QEMU's
 * vCPUs and devices writing guest RAM; one harvest per round: syncs). */
static long long f_faults_ps(const struct hm_run_result *r)
{
	return r->hm_wall_ms > 0 && r->hm_tracker_faults >= 0
		       ? r->hm_tracker_faults * 1000 / r->hm_wall_ms : -1;
}
static long long f_hm_cpu(const struct hm_run_result *r)
{
	return r->hm_wall_ms ? (long long)(r->hm_send_cpu_ms +
					   r->hm_recv_cpu_ms) : -1;
}
static long long f_qemu_cpu(const struct hm_run_result *r)
{
	return r->src_qemu_cpu_ms >= 0 && r->dst_qemu_cpu_ms >= 0
		       ? (long long)(r->src_qemu_cpu_ms + r->dst_qemu_cpu_ms)
		       : -1;
}
/* Everything the migration cost in CPU (hintmig and both QEMUs apart
 * from their vCPUs), per GiB on the wire. */
static long long f_cpu_gib(const struct hm_run_result *r)
{
	long long q = f_qemu_cpu(r), h = f_hm_cpu(r), x = f_xfer_all(r);

	if (q < 0 || x <= 0)
		return -1;
	return (long long)((double)(q + (h > 0 ? h : 0)) * (1 << 30) /
			   (double)x);
}

/* hintmig's own CPU (send and recv) per GiB on the wire: what TLS adds */
static long long f_hm_cpu_gib(const struct hm_run_result *r)
{
	long long h = f_hm_cpu(r), x = f_xfer_all(r);

	return h >= 0 && x > 0 ? (long long)((double)h * (1 << 30) / (double)x)
			       : -1;
}
/* bytes on the wire over the whole migration time */
static long long f_mibps(const struct hm_run_result *r)
{
	long long t = f_total(r), x = f_xfer_all(r);

	return t > 0 && x > 0 ? (long long)((double)x * 1000 / (1 << 20) /
					    (double)t) : -1;
}

static const struct field {
	const char *name, *unit;
	long long (*get)(const struct hm_run_result *);
	double scale;
} fields[] = {
	{ "total-time", "ms", f_total, 1 },
	{ "downtime", "ms", f_down, 1 },
	{ "setup-time", "ms", f_setup, 1 },
	{ "transferred", "MiB", f_xfer_all, 1.0 / (1 << 20) },
	{ "guest in use", "MiB", f_inuse, 1.0 / (1 << 20) },
	{ "sent / in use", "x", f_xfer_inuse, 1.0 / 1000 },
	{ "normal", "pages", f_normal, 1 },
	{ "duplicate", "pages", f_dup, 1 },
	{ "dirty-sync-count", "", f_syncs, 1 },
	{ "unsent (dst zero)", "pages", f_hinted, 1 },
	{ "guest pace", "%", f_pace, 0.1 },
	{ "sync tracker faults/s", "", f_faults_ps, 1 },
	{ "hintmig CPU", "ms", f_hm_cpu, 1 },
	{ "QEMU CPU (no vCPU)", "ms", f_qemu_cpu, 1 },
	{ "CPU per GiB sent", "ms", f_cpu_gib, 1 },
	{ "hintmig CPU per GiB", "ms", f_hm_cpu_gib, 1 },
	{ "throughput", "MiB/s", f_mibps, 1 },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--reps N] [--modes LIST] [--mem-kib K] [--hugetlb]\n"
		"          [--fill MiB] [--ws MiB] [--max-bandwidth BYTES/s]\n"
		"          [--min-syncs N] [--compare] [--json FILE]\n"
		"       %s --soak N   (random-kill soak of the hm-agent guest)\n"
		"  modes: plain (no balloon), balloon (virtio-balloon, no hinting),\n"
		"         hint (virtio-balloon free-page-hint=on + iothread),\n"
		"         hm (hintmig, no hints), hm-sync (hintmig, no hints, the\n"
		"         sync tracker: Debian 12's 6.1 kernel), hm-hints (hintmig, the workload's\n"
		"         stand-in agent hints a 128 MiB region it never reads\n"
		"         again), hm-reporting (hintmig, virtio-balloon\n"
		"         free-page-reporting=on: reported pages are holes),\n"
		"         hm-agent (hintmig, hints from hintmig-agent in the guest),\n"
		"         hm-tcp, hm-tls, hm-agent-tcp, hm-agent-tls (hintmig over\n"
		"         TCP with a key, and also in TLS: both streams, R18)\n",
		argv0, argv0);
	exit(2);
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --soak N: the agent guest migrated N times by hintmig, each run with
 * nothing killed or with a SIGKILL of hintmig send, hintmig recv or the
 * destination QEMU at a random instant of the migration (attach and the
 * userfaultfd injection included: from 0 ms on, up to the longest life of
 * hintmig send seen in a run it outlived; run 0 kills nothing). Every run is judged:
 * completed (RAM compared with the hinted map, the workload verifying on
 * the destination) or failed with the source intact (running, its
 * workload verifying, no migration and no userfaultfd left in QEMU,
 * capabilities off); anything else is BAD. Prints each run and the
 * counts per outcome; exit 1 if any run was bad. */
static int run_soak(const struct hm_scenario *base, int n)
{
	static const char *const victims[] = {
		[HM_SOAK_NONE] = "nothing", [HM_SOAK_SEND] = "hintmig send",
		[HM_SOAK_RECV] = "hintmig recv",
		[HM_SOAK_DST_QEMU] = "destination QEMU" };
	unsigned seed = (unsigned)time(NULL), completed = 0, failed = 0,
		 killed_late = 0, span_ms = 0, dst_lost = 0;
	unsigned count[4][2] = { { 0 } };	/* good runs: victim x completed */
	double t0 = mono_now();

	printf("# qemu-migbench --soak %d (seed %u): hm-agent guest, random "
	       "SIGKILL of send, recv or the destination QEMU\n", n, seed);
	srand(seed);
	for (int i = 0; i < n; i++) {
		struct hm_scenario s = *base;
		struct hm_run_result r;
		char why[768], name[64];
		int ok;

		snprintf(name, sizeof(name), "soak/%d", i);
		s.name = name;
		s.hintmig = 1;
		s.hm_agent = HM_AGENT_ON;
		s.compare = 1;
		s.hm_args = "--hint-timeout 20000";
		/* run 0 kills nothing and measures how long hintmig send
		 * lives; the instants are then spread over that whole span
		 * (the longest seen so far in a run that killed nothing) */
		s.soak_victim = i ? (enum hm_soak_victim)(rand() % 4)
				  : HM_SOAK_NONE;
		s.soak_delay_ms = (unsigned)(rand() % (span_ms + 1));
		hm_run(&s, &r);
		ok = !hm_verdict(&s, &r, why, sizeof(why));
		if (s.soak_victim != HM_SOAK_NONE && !r.soak_killed)
			killed_late++;	/* send was done before the instant */
		if (s.soak_victim == HM_SOAK_NONE &&
		    r.hm_wall_ms > (long long)span_ms)
			span_ms = (unsigned)r.hm_wall_ms;
		if (!ok)
			hm_print_logs();
		else
			count[s.soak_victim][!r.fault_recovered]++;
		if (ok && r.soak_dst_lost)
			dst_lost++;
		printf("soak %4d  kill %-16s at %4u ms%s  -> %s%s\n", i,
		       victims[s.soak_victim], s.soak_delay_ms,
		       s.soak_victim && !r.soak_killed ? " (after the end)" : "",
		       !ok ? "BAD: " : r.fault_recovered
			     ? "failed, source intact"
			     : r.soak_dst_lost
			     ? "completed, RAM verified, then the destination "
			       "died with the guest"
			     : "completed, verified",
		       !ok ? why : "");
	}
	for (int v = 0; v < 4; v++) {
		failed += count[v][0];
		completed += count[v][1];
	}
	printf("\n# soak: %d runs in %.0f s: %u completed and verified (%u "
	       "of them: the destination QEMU killed after QEMU completed, "
	       "its RAM verified), %u failed with the source intact, %u BAD "
	       "(%u kills came after hintmig send had ended)\n", n,
	       mono_now() - t0, completed, dst_lost, failed,
	       (unsigned)n - completed - failed, killed_late);
	for (int v = 0; v < 4; v++)
		printf("#   kill %-16s completed %u, failed (source intact) %u\n",
		       victims[v], count[v][1], count[v][0]);
	return completed + failed == (unsigned)n ? 0 : 1;
}

int main(int argc, char **argv)
{
	static struct mode modes[MAX_MODES];
	int nmodes = 0, reps = 3, failures = 0, soak = 0;
	const char *modelist = "plain,hint,hm,hm-hints,hm-reporting";
	const char *json = NULL;
	struct hm_scenario base;
	static const struct option lo[] = {
		{ "reps", required_argument, NULL, 'r' },
		{ "modes", required_argument, NULL, 'm' },
		{ "mem-kib", required_argument, NULL, 'k' },
		{ "fill", required_argument, NULL, 'f' },
		{ "ws", required_argument, NULL, 'w' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "min-syncs", required_argument, NULL, 's' },
		{ "compare", no_argument, NULL, 'c' },
		{ "json", required_argument, NULL, 'j' },
		{ "soak", required_argument, NULL, 'S' },
		{ "hugetlb", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	hm_scenario_defaults(&base);
	base.compare = 0;
	base.min_syncs = 0; /* QEMU's own convergence: realistic figures */
	base.rounds_after = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			reps = atoi(optarg);
			break;
		case 'm':
			modelist = optarg;
			break;
		case 'k':
			base.mem_bytes = strtoull(optarg, NULL, 0) << 10;
			break;
		case 'H':
			base.hm_hugetlb = 1;
			break;
		case 'f':
			base.fill_mib = (unsigned)atoi(optarg);
			break;
		case 'w':
			base.ws_mib = (unsigned)atoi(optarg);
			break;
		case 'b':
			base.max_bandwidth = strtoull(optarg, NULL, 0);
			break;
		case 's':
			base.min_syncs = (unsigned)atoi(optarg);
			break;
		case 'c':
			base.compare = 1;
			break;
		case 'j':
			json = optarg;
			break;
		case 'S':
			soak = atoi(optarg);
			if (soak <= 0)
				usage(argv[0]);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (soak)
		return run_soak(&base, soak);
	if (optind != argc || reps < 1 || reps > MAX_REPS)
		usage(argv[0]);
	{
		char *dup = strdup(modelist), *save = NULL;

		for (char *t = strtok_r(dup, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			if (nmodes == MAX_MODES)
				usage(argv[0]);
			struct mode *m = &modes[nmodes++];
			if (!strcmp(t, "plain")) {
				m->name = "plain";
				m->balloon = HM_BALLOON_NONE;
			} else if (!strcmp(t, "balloon")) {
				m->name = "balloon";
				m->balloon = HM_BALLOON_PLAIN;
			} else if (!strcmp(t, "hint")) {
				m->name = "hint";
				m->balloon = HM_BALLOON_HINT;
			} else if (!strcmp(t, "hm")) {
				m->name = "hm";
				m->hintmig = 1;
			} else if (!strcmp(t, "hm-sync")) {
				m->name = "hm-sync";
				m->hintmig = 1;
				m->tracker = "sync";
			} else if (!strcmp(t, "hm-hints")) {
				m->name = "hm-hints";
				m->hintmig = 1;
				m->hint_mib = 128;
			} else if (!strcmp(t, "hm-agent")) {
				m->name = "hm-agent";
				m->hintmig = 1;
				m->agent = HM_AGENT_ON;
			} else if (!strcmp(t, "hm-tcp")) {
				m->name = "hm-tcp";
				m->hintmig = 1;
				m->tcp = 1;
			} else if (!strcmp(t, "hm-tls")) {
				m->name = "hm-tls";
				m->hintmig = 1;
				m->tcp = m->tls = 1;
			} else if (!strcmp(t, "hm-agent-tcp")) {
				m->name = "hm-agent-tcp";
				m->hintmig = 1;
				m->agent = HM_AGENT_ON;
				m->tcp = 1;
			} else if (!strcmp(t, "hm-agent-tls")) {
				m->name = "hm-agent-tls";
				m->hintmig = 1;
				m->agent = HM_AGENT_ON;
				m->tcp = m->tls = 1;
			} else if (!strcmp(t, "hm-reporting")) {
				m->name = "hm-reporting";
				m->hintmig = 1;
				m->balloon = HM_BALLOON_REPORTING;
			} else {
				usage(argv[0]);
			}
		}
		free(dup);
	}

	printf("# qemu-migbench: %d rep(s) of %s; guest %" PRIu64 " KiB, fill %u "
	       "MiB, ws %u MiB, hot %u KiB, static %u MiB; max-bandwidth %" PRIu64
	       " B/s; %s; page compare %s%s\n",
	       reps, modelist,
	       (uint64_t)(base.mem_bytes ? base.mem_bytes : HM_QEMU_DEFAULT_MEM) >> 10,
	       base.fill_mib, base.ws_mib, base.hot_kib, base.static_mib,
	       base.max_bandwidth, base.min_syncs ? "forced syncs" :
	       "QEMU's convergence (downtime-limit 300 ms)",
	       base.compare ? "on" : "off",
	       base.hm_hugetlb ? "; RAM on hugetlbfs (2 MiB pages)" : "");
	printf("%-12s %3s %9s %9s %9s %10s %9s %9s %6s %10s %s\n", "mode", "rep",
	       "total_ms", "down_ms", "setup_ms", "xfer_MiB", "normal", "dup",
	       "syncs", "unsent", "check");
	for (int rep = 0; rep < reps; rep++) {
		for (int k = 0; k < nmodes; k++) {
			struct mode *m = &modes[k];
			struct hm_run_result *r = &m->runs[m->n];
			struct hm_scenario s = base;
			char why[768], name[64], hmargs[96];

			snprintf(name, sizeof(name), "bench/%s/%d", m->name, rep);
			s.name = name;
			s.balloon = m->balloon;
			s.hintmig = m->hintmig;
			s.hm_hint_mib = m->hint_mib;
			s.hm_agent = m->agent;
			s.hm_tcp = m->tcp;
			s.hm_tls = m->tls;
			/* the same link for everyone: QEMU's max-bandwidth
			 * for hintmig too */
			snprintf(hmargs, sizeof(hmargs), "--max-bandwidth %"
				 PRIu64 "%s%s%s", base.max_bandwidth,
				 m->hint_mib || m->agent
					 ? " --hint-timeout 20000" : "",
				 m->tracker ? " --tracker " : "",
				 m->tracker ? m->tracker : "");
			s.hm_args = hmargs;
			if (m->balloon == HM_BALLOON_REPORTING)
				s.settle_rounds = 25; /* reporting waits 2 s */
			hm_run(&s, r);
			m->ok[m->n] = !hm_verdict(&s, r, why, sizeof(why));
			if (!m->ok[m->n]) {
				failures++;
				hm_print_logs();
			}
			char unsent[24] = "-";

			if (r->compared)
				snprintf(unsent, sizeof(unsent), "%lld",
					 f_hinted(r));
			printf("%-12s %3d %9lld %9lld %9lld %10.1f %9lld %9lld %6lld "
			       "%10s %s%s\n",
			       m->name, rep, f_total(r), f_down(r),
			       r->mig.setup_ms,
			       (double)f_xfer_all(r) / (1 << 20),
			       r->mig.normal, r->mig.duplicate,
			       r->mig.dirty_sync_count, unsent,
			       m->ok[m->n] ? "ok" : "FAILED: ",
			       m->ok[m->n] ? "" : why);
			m->n++;
		}
	}

	printf("\n# medians over the runs that passed their checks (accel %s)\n",
	       modes[0].runs[0].accel);
	/* The ratio column: hintmig's best mode (reporting, else hints,
	 * else none) over QEMU's own hinting, else QEMU's plain precopy; or
	 * QEMU's hinting over plain when no hintmig mode ran. */
	int num = -1, den = -1;
	char rname[40];
	static const char *const nums[] = { "hm-agent", "hm-reporting",
					    "hm-hints", "hm", "hint" };
	static const char *const dens[] = { "hint", "plain", "balloon" };

	for (size_t i = 0; i < 5 && num < 0; i++)
		for (int k = 0; k < nmodes; k++)
			if (!strcmp(modes[k].name, nums[i]))
				num = k;
	for (size_t i = 0; i < 3 && den < 0; i++)
		for (int k = 0; k < nmodes; k++)
			if (k != num && !strcmp(modes[k].name, dens[i]))
				den = k;
	if (num < 0)
		num = nmodes - 1;
	if (den < 0)
		den = 0;
	snprintf(rname, sizeof(rname), "%s/%s", modes[num].name,
		 modes[den].name);
	printf("%-20s %-6s", "figure", "unit");
	for (int k = 0; k < nmodes; k++)
		printf(" %12s", modes[k].name);
	if (nmodes >= 2)
		printf(" %22s", rname);
	putchar('\n');
	for (size_t f = 0; f < NFIELDS; f++) {
		double vnum = -1, vden = -1;

		printf("%-20s %-6s", fields[f].name, fields[f].unit);
		for (int k = 0; k < nmodes; k++) {
			double v = median(&modes[k], fields[f].get);

			if (v >= 0) {
				v *= fields[f].scale;
				printf(" %12.1f", v);
			} else {
				printf(" %12s", "-");
			}
			if (k == num)
				vnum = v;
			if (k == den)
				vden = v;
		}
		if (nmodes >= 2) {
			if (vden > 0 && vnum >= 0)
				printf(" %22.3f", vnum / vden);
			else
				printf(" %22s", "-");
		}
		putchar('\n');
	}

	if (json) {
		FILE *jf = fopen(json, "w");

		if (!jf) {
			perror(json);
			return 2;
		}
		fprintf(jf, "{\"accel\": \"%s\", \"reps\": %d, \"modes\": {",
			modes[0].runs[0].accel, reps);
		for (int k = 0; k < nmodes; k++) {
			fprintf(jf, "%s\"%s\": {\"runs\": [", k ? ", " : "",
				modes[k].name);
			for (int i = 0; i < modes[k].n; i++) {
				const struct hm_run_result *r = &modes[k].runs[i];

				fprintf(jf,
					"%s{\"ok\": %s, \"total_ms\": %lld, "
					"\"downtime_ms\": %lld, \"setup_ms\": %lld, "
					"\"transferred\": %lld, \"normal\": %lld, "
					"\"duplicate\": %lld, \"dirty_sync_count\": %lld, "
					"\"unsent_pages\": %lld}",
					i ? ", " : "", modes[k].ok[i] ? "true" : "false",
					f_total(r), f_down(r),
					r->mig.setup_ms, f_xfer_all(r),
					r->mig.normal, r->mig.duplicate,
					r->mig.dirty_sync_count, f_hinted(r));
			}
			fprintf(jf, "], \"median\": {");
			for (size_t f = 0; f < NFIELDS; f++)
				fprintf(jf, "%s\"%s\": %.1f", f ? ", " : "",
					fields[f].name,
					median(&modes[k], fields[f].get));
			fprintf(jf, "}}");
		}
		fprintf(jf, "}}\n");
		fclose(jf);
	}
	return failures ? 1 : 0;
}

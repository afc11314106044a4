/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-bench: what the runs say. Medians and min-max per
 * (configuration, hint mode) over the runs that completed and verified;
 * the terminal table, the headline ratios against the targets,
 * --json (every run and every aggregate) and --plot (an SVG written here:
 * time and bytes per mode across free fractions).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The targets (reported whether met or not). */
#define TARGET_X_LIMIT 1.3	/* hints at 75% free, time / limit */
#define TARGET_WR_RATIO 0.9	/* async tracker, writes during / before */

static bool run_ok(const struct bench_run *r)
{
	return r->harness == 0 && r->result == 0 && r->mismatches == 0 &&
	       r->dest_status == 0 && r->guest_check_errors == 0;
}

/* The value of metric m in run r; false when it does not apply. */
static bool metric(const struct bench_run *r, enum bench_metric m, double *v)
{
	const struct hm_migrate_stats *st = &r->st;

	switch (m) {
	case BM_TIME_MS: *v = (double)st->total_time_ms; return true;
	case BM_DOWNTIME_MS: *v = (double)st->downtime_ms; return true;
	case BM_SETUP_MS: *v = (double)st->setup_time_ms; return true;
	case BM_BYTES: *v = (double)st->ram_transferred; return true;
	case BM_NORMAL: *v = (double)st->normal_pages; return true;
	case BM_ZERO: *v = (double)st->duplicate_pages; return true;
	case BM_HINTED: *v = (double)st->skipped_hinted_pages; return true;
	case BM_EMPTY: *v = (double)st->skipped_empty_pages; return true;
	case BM_ROUNDS: *v = (double)st->rounds; return true;
	case BM_HINT_REQ: *v = (double)st->hint_requested; return true;
	case BM_HINT_RECV: *v = (double)st->hint_received; return true;
	case BM_HINT_APPLIED: *v = (double)st->hint_applied; return true;
	case BM_HINT_STALE: *v = (double)st->hint_dropped_stale; return true;
	case BM_HINT_REJ: *v = (double)st->hint_rejected; return true;
	case BM_WR_BEFORE:
		*v = r->wr_before;
		return r->wr_before >= 0;
	case BM_WR_DURING:
		*v = r->wr_during;
		return r->wr_during >= 0;
	case BM_WR_RATIO:
		if (r->wr_before <= 0 || r->wr_during < 0)
			return false;
		*v = r->wr_during / r->wr_before;
		return true;
	case BM_WR_TRACKED_RATIO:
		if (r->wr_before <= 0 || r->wr_tracked < 0)
			return false;
		*v = r->wr_tracked / r->wr_before;
		return true;
	case BM_WR_TRACKED_HOT_RATIO:
		if (r->wr_before <= 0 || r->trk[1].wr < 0)
			return false;
		*v = r->trk[1].wr / r->wr_before; /* R11 */
		return true;
	case BM_TRK_FAULTS_PS:
		*v = r->trk[0].faults_ps;
		return r->trk[0].wr >= 0;
	case BM_TRK_HOT_FAULTS_PS:
		*v = r->trk[1].faults_ps;
		return r->trk[1].wr >= 0;
	case BM_WR_TRACKED_ALL_RATIO:
		if (r->wr_before <= 0 || r->trk[2].wr < 0)
			return false;
		*v = r->trk[2].wr / r->wr_before;
		return true;
	case BM_TRK_ALL_FAULTS_PS:
		*v = r->trk[2].faults_ps;
		return r->trk[2].wr >= 0;
	case BM_ACK_MS:
		*v = r->ack_s * 1000.0;
		return r->ack_s > 0;
	case BM_X_LIMIT_ACK:
		if (r->limit_s <= 0 || r->ack_s <= 0)
			return false;
		*v = r->ack_s / r->limit_s;
		return true;
	case BM_FRESH_BPS:
		*v = r->fresh_bps;
		return r->fresh_bps > 0;
	case BM_FRESH_LIMIT_MS: {
		double rate = r->fresh_bps;

		if (rate <= 0 || !r->inuse_pages)
			return false;
		if (r->cfg_bw && (double)r->cfg_bw < rate)
			rate = (double)r->cfg_bw;
		*v = (double)(r->inuse_pages * r->page_size) / rate * 1000.0;
		return true;
	}
	case BM_X_FRESH: {
		double rate = r->fresh_bps;

		if (rate <= 0)
			return false;
		if (r->cfg_bw && (double)r->cfg_bw < rate)
			rate = (double)r->cfg_bw;
		*v = (double)st->total_time_ms / 1000.0 /
		     ((double)(r->inuse_pages * r->page_size) / rate);
		return r->inuse_pages > 0;
	}
	case BM_RAW_BPS:
		*v = r->raw_bps;
		return r->raw_bps > 0;
	case BM_LIMIT_MS:
		*v = r->limit_s * 1000.0;
		return r->limit_s > 0;
	case BM_X_LIMIT:
		if (r->limit_s <= 0)
			return false;
		*v = (double)st->total_time_ms / 1000.0 / r->limit_s;
		return true;
	case BM_INUSE_BYTES:
		*v = (double)(r->inuse_pages * r->page_size);
		return true;
	case BM_FAULTS: *v = (double)st->tracker_faults; return true;
	case BM_WIRE_BPS:
		*v = r->ack_s > 0 ? (double)st->ram_transferred / r->ack_s : 0;
		return r->ack_s > 0;
	case BM_CPU_SRC_GIB:
		*v = r->cpu_src_s / ((double)st->ram_transferred / GIB);
		return st->ram_transferred > 0;
	case BM_CPU_DST_GIB:
		*v = r->cpu_dst_s / ((double)st->ram_transferred / GIB);
		return st->ram_transferred > 0 && r->cpu_dst_s > 0;
	case BM_NMETRICS: break;
	}
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void bench_aggregate(const struct bench *b, size_t cfg, enum bench_mode mode,
		     enum bench_metric m, struct bench_agg *out)
{
	double vals[1024];
	unsigned n = 0;

	memset(out, 0, sizeof(*out));
	out->med = out->min = out->max = NAN;
	for (size_t i = 0; i < b->nruns; i++) {
		const struct bench_run *r = &b->runs[i];
		double v;

		if (r->cfg != cfg || r->mode != mode)
			continue;
		if (!run_ok(r)) {
			out->failed++;
			continue;
		}
		if (metric(r, m, &v) && n < NELEM(vals))
			vals[n++] = v;
	}
	out->n = n;
	if (!n)
		return;
	qsort(vals, n, sizeof(vals[0]), cmp_double);
	out->min = vals[0];
	out->max = vals[n - 1];
	out->med = n % 2 ? vals[n / 2] : (vals[n / 2 - 1] + vals[n / 2]) / 2;
}

void bench_failures(const struct bench *b, size_t cfg, enum bench_mode mode,
		    unsigned *failed, uint64_t *mismatches)
{
	*failed = 0;
	*mismatches = 0;
	for (size_t i = 0; i < b->nruns; i++) {
		const struct bench_run *r = &b->runs[i];

		if (r->cfg != cfg || r->mode != mode)
			continue;
		if (!run_ok(r))
			(*failed)++;
		if (r->mismatches > 0)
			*mismatches += (uint64_t)r->mismatches;
	}
}

static unsigned runs_of(const struct bench *b, size_t cfg,
			enum bench_mode mode)
{
	unsigned n = 0;

	for (size_t i = 0; i < b->nruns; i++)
		if (b->runs[i].cfg == cfg && b->runs[i].mode == mode)
			n++;
	return n;
}

static void fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v >= (UINT64_C(1) << 30) && v % (UINT64_C(1) << 30) == 0)
		snprintf(buf, len, "%" PRIu64 "G", v >> 30);
	else if (v >= (UINT64_C(1) << 20))
		snprintf(buf, len, "%" PRIu64 "M", v >> 20);
	else
		snprintf(buf, len, "%" PRIu64 "K", v >> 10);
}

static void fmt_rate(uint64_t v, char *buf, size_t len)
{
	if (v == 0)
		snprintf(buf, len, "idle");
	else if (v >= BENCH_DIRTY_MAX)
		snprintf(buf, len, "max");
	else if (v >= 1000000 && v % 1000000 == 0)
		snprintf(buf, len, "%" PRIu64 "M/s", v / 1000000);
	else if (v >= 1000 && v % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "k/s", v / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "/s", v);
}

/* Everything but the free fraction (the plot's family key). */
/* The tracking settings that are not the defaults: " unit2M thp keep-hot". */
static const char *cfg_tag(const struct bench_cfg *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s", c->track_unit ? " unit2M" : "",
		 c->thp ? " thp" : "", c->hugetlb ? " hugetlb" : "",
		 c->keep_hot ? " keep-hot" : "", c->tls ? " tls" : "");
	return buf;
}

static void cfg_label_nofree(const struct bench_cfg *c, char *buf,
			     size_t len)
{
	char ram[16], rate[16], bw[24] = "", tag[48];

	fmt_size(c->ram, ram, sizeof(ram));
	fmt_rate(c->dirty_rate, rate, sizeof(rate));
	if (c->bandwidth) {
		char s[16];

		fmt_size(c->bandwidth, s, sizeof(s));
		snprintf(bw, sizeof(bw), " bw%s/s", s);
	}
	snprintf(buf, len, "%s %s%s%s ch%u %s%s%s", ram, rate,
		 c->dirty_rate ? " " : "",
		 c->dirty_rate ? bench_pattern_names[c->pattern] : "", c->channels,
		 hm_tracker_mode_name(c->tracker),
		 cfg_tag(c, tag, sizeof(tag)),
		 c->pin ? " pin" : "");
	if (bw[0]) {
		size_t n = strlen(buf);

		snprintf(buf + n, len - n, "%s", bw);
	}
}

void bench_cfg_label(const struct bench_cfg *c, char *buf, size_t len)
{
	char ram[16], rate[16], bw[24] = "", tag[48];

	fmt_size(c->ram, ram, sizeof(ram));
	fmt_rate(c->dirty_rate, rate, sizeof(rate));
	if (c->bandwidth) {
		char s[16];

		fmt_size(c->bandwidth, s, sizeof(s));
		snprintf(bw, sizeof(bw), " bw%s/s", s);
	}
	snprintf(buf, len, "%s %.0f%%free %s%s%s ch%u %s%s%s%s", ram,
		 c->free_frac * 100, rate, c->dirty_rate ? " " : "",
		 c->dirty_rate ? bench_pattern_names[c->pattern] : "",
		 c->channels, hm_tracker_mode_name(c->tracker),
		 cfg_tag(c, tag, sizeof(tag)),
		 c->pin ? " pin" : "", bw);
}

/* ---- terminal ---------------------------------------------------------- */

static void cell_range(char *buf, size_t len, const struct bench_agg *a,
		       double scale, int prec)
{
	if (!a->n) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%.*f [%.*f-%.*f]", prec, a->med * scale, prec,
		 a->min * scale, prec, a->max * scale);
}

static void cell_med(char *buf, size_t len, const struct bench_agg *a,
		     double scale, int prec)
{
	if (!a->n)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", prec, a->med * scale);
}

/* mode, time, /none, to ack, downtime, bytes, /none, normal, zero,
 * hinted, rounds, hints, x limit, writes (migration), writes (tracker) */
#define ROW_FMT "  %-8s %-17s %-5s %-6s %-11s %-16s %-5s %-7s %-6s %-7s " \
		"%-3s %-15s %-17s %-15s %-8s "

void bench_print_table(const struct bench *b, FILE *f)
{
	fprintf(f, "\n== hintmig-bench, preset %s: %zu runs in %.0f s, %s "
		"loopback, median [min-max] of up to %u repetitions\n"
		"   %u CPUs, load average %.1f at the start, %.1f at the end\n",
		b->o.preset, b->nruns, b->elapsed_s, b->o.transport,
		b->o.reps, b->o.ncpus, b->load_start, b->load_end);
	for (size_t ci = 0; ci < b->ncfgs; ci++) {
		const struct bench_cfg *c = &b->cfgs[ci];
		struct bench_agg raw = { 0 }, inuse = { 0 }, lim = { 0 };
		struct bench_agg fresh = { 0 };
		struct bench_agg t_none, b_none;
		char lab[128];
		bool any = false;

		for (unsigned k = 0; k < BENCH_NMODES; k++)
			if (runs_of(b, ci, (enum bench_mode)k))
				any = true;
		if (!any)
			continue;
		bench_cfg_label(c, lab, sizeof(lab));
		/* the transport's figures are shared by every mode */
		for (unsigned k = 0; k < BENCH_NMODES && !raw.n; k++) {
			bench_aggregate(b, ci, (enum bench_mode)k, BM_RAW_BPS,
					&raw);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_INUSE_BYTES, &inuse);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_LIMIT_MS, &lim);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_FRESH_BPS, &fresh);
		}
		fprintf(f, "\n[%s] %s\n", c->group, lab);
		if (raw.n)
			fprintf(f, "  raw %s x%u: %.0f MiB/s [%.0f-%.0f], into "
				"fresh memory %.0f MiB/s; in use %.0f MiB; "
				"physical limit %.0f ms\n", b->o.transport,
				c->channels, raw.med / MIB, raw.min / MIB,
				raw.max / MIB, fresh.med / MIB,
				inuse.med / MIB, lim.med);
		fprintf(f, ROW_FMT "%s\n", "mode", "time ms", "/none",
			"ack ms", "down ms", "MiB on wire", "/none", "normal",
			"zero", "hinted", "rnd", "hints a/r/s/j", "x limit",
			"writes dur/bef", "trk-only", "verify");
		bench_aggregate(b, ci, BENCH_NONE, BM_TIME_MS, &t_none);
		bench_aggregate(b, ci, BENCH_NONE, BM_BYTES, &b_none);
		for (unsigned k = 0; k < BENCH_NMODES; k++) {
			enum bench_mode md = (enum bench_mode)k;
			struct bench_agg a[BM_NMETRICS];
			char tm[40], dn[40], by[48], xl[40], wr[40], hn[48];
			char ak[16], wt[16];
			char nm[16], zr[16], hd[16], rd[16], tr[16] = "-",
			     br[16] = "-";
			unsigned total = runs_of(b, ci, md), failed;
			uint64_t mism;

			if (!total)
				continue;
			for (unsigned m = 0; m < BM_NMETRICS; m++)
				bench_aggregate(b, ci, md,
						(enum bench_metric)m, &a[m]);
			bench_failures(b, ci, md, &failed, &mism);
			cell_range(tm, sizeof(tm), &a[BM_TIME_MS], 1, 0);
			cell_range(dn, sizeof(dn), &a[BM_DOWNTIME_MS], 1, 0);
			cell_range(by, sizeof(by), &a[BM_BYTES], 1 / MIB, 0);
			cell_range(xl, sizeof(xl), &a[BM_X_LIMIT], 1, 2);
			cell_med(nm, sizeof(nm), &a[BM_NORMAL], 1, 0);
			cell_med(zr, sizeof(zr), &a[BM_ZERO], 1, 0);
			cell_med(hd, sizeof(hd), &a[BM_HINTED], 1, 0);
			cell_med(rd, sizeof(rd), &a[BM_ROUNDS], 1, 0);
			cell_med(ak, sizeof(ak), &a[BM_ACK_MS], 1, 0);
			if (a[BM_WR_TRACKED_RATIO].n)
				snprintf(wt, sizeof(wt), "%.0f%%",
					 a[BM_WR_TRACKED_RATIO].med * 100);
			else
				snprintf(wt, sizeof(wt), "-");
			if (a[BM_WR_RATIO].n)
				snprintf(wr, sizeof(wr), "%.0f%% [%.0f-%.0f]",
					 a[BM_WR_RATIO].med * 100,
					 a[BM_WR_RATIO].min * 100,
					 a[BM_WR_RATIO].max * 100);
			else
				snprintf(wr, sizeof(wr), "-");
			if (md == BENCH_NONE || !a[BM_HINT_RECV].n)
				snprintf(hn, sizeof(hn), "-");
			else
				snprintf(hn, sizeof(hn), "%.0f/%.0f/%.0f/%.0f",
					 a[BM_HINT_APPLIED].med,
					 a[BM_HINT_RECV].med,
					 a[BM_HINT_STALE].med,
					 a[BM_HINT_REJ].med);
			if (md != BENCH_NONE && t_none.n && a[BM_TIME_MS].n &&
			    t_none.med > 0)
				snprintf(tr, sizeof(tr), "%.2f",
					 a[BM_TIME_MS].med / t_none.med);
			if (md != BENCH_NONE && b_none.n && a[BM_BYTES].n &&
			    b_none.med > 0)
				snprintf(br, sizeof(br), "%.2f",
					 a[BM_BYTES].med / b_none.med);
			fprintf(f, ROW_FMT, bench_mode_names[md], tm, tr, ak,
				dn, by, br, nm, zr, hd, rd, hn, xl, wr, wt);
			if (failed || mism)
				fprintf(f, "!! %u/%u FAILED, %" PRIu64
					" MISMATCHING PAGES\n", failed, total,
					mism);
			else
				fprintf(f, "ok %u/%u\n", total, total);
		}
	}
}

/* Configurations the headline quotes: 75% free, idle guest, nothing
 * pinned, no bandwidth limit. */
static bool headline_cfg(const struct bench_cfg *c)
{
	return fabs(c->free_frac - 0.75) < 1e-9 && c->dirty_rate == 0 &&
	       c->bandwidth == 0 && !c->pin;
}

/* The plain configuration that a TLS one is measured against: the same
 * in every axis but TLS. */
static bool tls_twin(const struct bench_cfg *a, const struct bench_cfg *t)
{
	struct bench_cfg x = *t;

	x.tls = false;
	return !a->tls && !memcmp(&x, a, sizeof(x));
}

/* The same run's TLS path string (the first TLS run that has one). */
static const char *tls_path_of(const struct bench *b, size_t ci)
{
	for (size_t i = 0; i < b->nruns; i++)
		if (b->runs[i].cfg == ci && b->runs[i].st.tls_path[0])
			return b->runs[i].st.tls_path;
	return "?";
}

/* R18: TLS against plain, side by side: throughput and CPU per GiB. */
static void print_tls(const struct bench *b, FILE *f)
{
	for (size_t ti = 0; ti < b->ncfgs; ti++) {
		const struct bench_cfg *t = &b->cfgs[ti];

		if (!t->tls)
			continue;
		for (size_t pi = 0; pi < b->ncfgs; pi++) {
			struct bench_agg wt, wp, st, sp, dt, dp;
			char lab[128];

			if (!tls_twin(&b->cfgs[pi], t))
				continue;
			for (unsigned k = 0; k < BENCH_NMODES; k++) {
				enum bench_mode md = (enum bench_mode)k;

				bench_aggregate(b, ti, md, BM_WIRE_BPS, &wt);
				bench_aggregate(b, pi, md, BM_WIRE_BPS, &wp);
				if (!wt.n || !wp.n || wp.med <= 0)
					continue;
				bench_aggregate(b, ti, md, BM_CPU_SRC_GIB, &st);
				bench_aggregate(b, pi, md, BM_CPU_SRC_GIB, &sp);
				bench_aggregate(b, ti, md, BM_CPU_DST_GIB, &dt);
				bench_aggregate(b, pi, md, BM_CPU_DST_GIB, &dp);
				bench_cfg_label(&b->cfgs[pi], lab, sizeof(lab));
				fprintf(f, "  TLS vs plain (%s, hints %s), side "
					"by side:\n    throughput %.0f MiB/s "
					"[%.0f-%.0f] vs %.0f MiB/s [%.0f-%.0f]: "
					"TLS keeps %.0f%% (costs %.0f%%); CPU s "
					"per GiB: source %.2f vs %.2f, "
					"destination %.2f vs %.2f\n    TLS "
					"path: %s\n", lab, bench_mode_names[k],
					wt.med / MIB, wt.min / MIB,
					wt.max / MIB, wp.med / MIB,
					wp.min / MIB, wp.max / MIB,
					100 * wt.med / wp.med,
					100 * (1 - wt.med / wp.med), st.med,
					sp.med, dt.med, dp.med,
					tls_path_of(b, ti));
			}
		}
	}
}

void bench_print_headline(const struct bench *b, FILE *f)
{
	bool any = false;
	unsigned failed_total = 0;
	uint64_t mism_total = 0;

	fprintf(f, "\n== headline\n");
	for (size_t ci = 0; ci < b->ncfgs; ci++) {
		const struct bench_cfg *c = &b->cfgs[ci];
		struct bench_agg tn, bn;
		char lab[128];

		if (!headline_cfg(c))
			continue;
		bench_aggregate(b, ci, BENCH_NONE, BM_TIME_MS, &tn);
		bench_aggregate(b, ci, BENCH_NONE, BM_BYTES, &bn);
		bench_cfg_label(c, lab, sizeof(lab));
		for (unsigned k = BENCH_FREE; k < BENCH_NMODES; k++) {
			struct bench_agg th, bh, xl, xa, xf;

			bench_aggregate(b, ci, (enum bench_mode)k, BM_TIME_MS,
					&th);
			bench_aggregate(b, ci, (enum bench_mode)k, BM_BYTES,
					&bh);
			bench_aggregate(b, ci, (enum bench_mode)k, BM_X_LIMIT,
					&xl);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_X_LIMIT_ACK, &xa);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_X_FRESH, &xf);
			if (!th.n)
				continue;
			any = true;
			fprintf(f, "  %s, hints %s:\n    ", lab,
				bench_mode_names[k]);
			if (tn.n && bn.n)
				fprintf(f, "bytes %.3f x none, time %.3f x "
					"none; ", bh.med / bn.med,
					th.med / tn.med);
			fprintf(f, "time %.2f x physical limit [%.2f-%.2f] "
				"(target <= %.1f: %s)\n    to the "
				"destination's ack %.2f x; total time over "
				"the fresh-memory limit %.2f x\n", xl.med,
				xl.min, xl.max, TARGET_X_LIMIT,
				xl.med <= TARGET_X_LIMIT ? "met" : "NOT met",
				xa.med, xf.med);
		}
	}
	if (!any)
		fprintf(f, "  (no idle 75%%-free configuration with hints in "
			"this matrix)\n");
	any = false;
	for (size_t ci = 0; ci < b->ncfgs; ci++) {
		const struct bench_cfg *c = &b->cfgs[ci];
		char lab[128];

		if (c->dirty_rate < BENCH_DIRTY_MAX)
			continue;
		bench_cfg_label(c, lab, sizeof(lab));
		for (unsigned k = 0; k < BENCH_NMODES; k++) {
			struct bench_agg w, bef, dur, wt, wx, fk, fx, wa, fa;

			bench_aggregate(b, ci, (enum bench_mode)k, BM_WR_RATIO,
					&w);
			bench_aggregate(b, ci, (enum bench_mode)k, BM_WR_BEFORE,
					&bef);
			bench_aggregate(b, ci, (enum bench_mode)k, BM_WR_DURING,
					&dur);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_WR_TRACKED_RATIO, &wt);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_WR_TRACKED_HOT_RATIO, &wx);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_TRK_FAULTS_PS, &fk);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_TRK_HOT_FAULTS_PS, &fx);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_WR_TRACKED_ALL_RATIO, &wa);
			bench_aggregate(b, ci, (enum bench_mode)k,
					BM_TRK_ALL_FAULTS_PS, &fa);
			if (!w.n)
				continue;
			if (!any)
				fprintf(f, "  guest write throughput during "
					"migration / before (saturated "
					"writers):\n");
			any = true;
			fprintf(f, "  %s, hints %s:\n    migrating %.0f%% "
				"[%.0f-%.0f] (%.0fk -> %.0fk pages/s)", lab,
				bench_mode_names[k], w.med * 100, w.min * 100,
				w.max * 100, bef.med / 1e3, dur.med / 1e3);
			if (wt.n)
				fprintf(f, "; tracker only %.0f%% [%.0f-%.0f]",
					wt.med * 100, wt.min * 100,
					wt.max * 100);
			if (c->tracker == HM_TRACKER_ASYNC)
				fprintf(f, " (async target >= %.0f%%: %s)",
					TARGET_WR_RATIO * 100,
					w.med >= TARGET_WR_RATIO ? "met"
								 : "NOT met");
			fputc('\n', f);
			if (wt.n && wx.n && wa.n)
				fprintf(f, "    tracker only, side by side: "
					"every written page protected again "
					"(default) %.0f%% (%.0fk guest "
					"faults/s); pages written twice in a "
					"row kept writable (R11, --keep-hot) "
					"%.0f%% (%.0fk/s); every written page "
					"kept writable %.0f%% (%.0fk/s)\n",
					wt.med * 100, fk.med / 1e3,
					wx.med * 100, fx.med / 1e3,
					wa.med * 100, fa.med / 1e3);
		}
	}
	print_tls(b, f);
	for (size_t ci = 0; ci < b->ncfgs; ci++)
		for (unsigned k = 0; k < BENCH_NMODES; k++) {
			unsigned fl;
			uint64_t mm;

			bench_failures(b, ci, (enum bench_mode)k, &fl, &mm);
			failed_total += fl;
			mism_total += mm;
		}
	if (failed_total || mism_total)
		fprintf(f, "  !! %u RUNS FAILED, %" PRIu64 " MISMATCHING "
			"PAGES: see above\n", failed_total, mism_total);
	else
		fprintf(f, "  all %zu runs completed and verified bit for "
			"bit (0 mismatches)\n", b->nruns);
}

/* ---- JSON -------------------------------------------------------------- */

static void j_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void j_num(FILE *f, double v)
{
	if (!isfinite(v))
		fputs("null", f);
	else if (v == floor(v) && fabs(v) < 1e15)
		fprintf(f, "%.0f", v);
	else
		fprintf(f, "%.6g", v);
}

static void j_kv_num(FILE *f, const char *k, double v, bool comma)
{
	j_str(f, k);
	fputc(':', f);
	j_num(f, v);
	if (comma)
		fputc(',', f);
}

static void j_kv_u64(FILE *f, const char *k, uint64_t v, bool comma)
{
	j_str(f, k);
	fprintf(f, ":%" PRIu64 "%s", v, comma ? "," : "");
}

static void j_kv_str(FILE *f, const char *k, const char *v, bool comma)
{
	j_str(f, k);
	fputc(':', f);
	j_str(f, v);
	if (comma)
		fputc(',', f);
}

static void read_cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && p) {
			p++;
			while (*p == ' ')
				p++;
			p[strcspn(p, "\n")] = 0;
			snprintf(buf, len, "%s", p);
			break;
		}
	}
	fclose(f);
}

static uint64_t mem_total_kib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "MemTotal: %llu kB", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static const char *const metric_names[BM_NMETRICS] = {
	[BM_TIME_MS] = "total-time-ms",
	[BM_DOWNTIME_MS] = "downtime-ms",
	[BM_SETUP_MS] = "setup-time-ms",
	[BM_BYTES] = "transferred-bytes",
	[BM_NORMAL] = "normal-pages",
	[BM_ZERO] = "duplicate-pages",
	[BM_HINTED] = "skipped-hinted-pages",
	[BM_EMPTY] = "skipped-empty-pages",
	[BM_ROUNDS] = "rounds",
	[BM_HINT_REQ] = "hints-requested",
	[BM_HINT_RECV] = "hints-received",
	[BM_HINT_APPLIED] = "hints-applied",
	[BM_HINT_STALE] = "hints-dropped-stale",
	[BM_HINT_REJ] = "hints-rejected",
	[BM_WR_BEFORE] = "guest-writes-before-per-s",
	[BM_WR_DURING] = "guest-writes-during-per-s",
	[BM_WR_RATIO] = "guest-write-ratio",
	[BM_WR_TRACKED_RATIO] = "guest-write-ratio-tracker-only",
	[BM_WR_TRACKED_HOT_RATIO] = "guest-write-ratio-tracker-only-keep-hot",
	[BM_TRK_FAULTS_PS] = "guest-faults-per-s-tracker-only",
	[BM_TRK_HOT_FAULTS_PS] = "guest-faults-per-s-tracker-only-keep-hot",
	[BM_WR_TRACKED_ALL_RATIO] = "guest-write-ratio-tracker-only-keep-all",
	[BM_TRK_ALL_FAULTS_PS] = "guest-faults-per-s-tracker-only-keep-all",
	[BM_ACK_MS] = "time-to-ack-ms",
	[BM_X_LIMIT_ACK] = "time-to-ack-over-limit",
	[BM_RAW_BPS] = "raw-bytes-per-s",
	[BM_FRESH_BPS] = "raw-fresh-bytes-per-s",
	[BM_FRESH_LIMIT_MS] = "fresh-memory-limit-ms",
	[BM_X_FRESH] = "time-over-fresh-limit",
	[BM_LIMIT_MS] = "physical-limit-ms",
	[BM_X_LIMIT] = "time-over-limit",
	[BM_INUSE_BYTES] = "in-use-bytes",
	[BM_FAULTS] = "tracker-faults",
	[BM_WIRE_BPS] = "wire-bytes-per-s",
	[BM_CPU_SRC_GIB] = "source-cpu-s-per-gib",
	[BM_CPU_DST_GIB] = "destination-cpu-s-per-gib",
};

static void json_cfg(FILE *f, const struct bench *b, size_t ci)
{
	const struct bench_cfg *c = &b->cfgs[ci];
	char lab[128];
	bool first = true;

	bench_cfg_label(c, lab, sizeof(lab));
	fprintf(f, "{");
	j_kv_u64(f, "index", ci, true);
	j_kv_str(f, "group", c->group, true);
	j_kv_str(f, "label", lab, true);
	j_kv_u64(f, "ram-bytes", c->ram, true);
	j_kv_num(f, "free-frac", c->free_frac, true);
	j_kv_u64(f, "dirty-rate", c->dirty_rate, true);
	j_str(f, "dirty-saturated");
	fprintf(f, ":%s,", c->dirty_rate >= BENCH_DIRTY_MAX ? "true"
							     : "false");
	j_kv_str(f, "pattern", bench_pattern_names[c->pattern], true);
	j_kv_num(f, "hot-frac", c->hot_frac, true);
	j_kv_u64(f, "writers", c->writers, true);
	j_kv_u64(f, "churn-rate", c->churn_rate, true);
	j_kv_u64(f, "max-bandwidth", c->bandwidth, true);
	j_kv_u64(f, "multifd-channels", c->channels, true);
	j_kv_str(f, "tracker-mode", hm_tracker_mode_name(c->tracker), true);
	j_kv_u64(f, "tracker-unit", c->track_unit, true);
	j_str(f, "keep-hot");
	fprintf(f, ":%s,", c->keep_hot ? "true" : "false");
	j_str(f, "thp");
	fprintf(f, ":%s,", c->thp ? "true" : "false");
	j_str(f, "hugetlb");
	fprintf(f, ":%s,", c->hugetlb ? "true" : "false");
	j_str(f, "pinned");
	fprintf(f, ":%s,", c->pin ? "true" : "false");
	j_str(f, "tls");
	fprintf(f, ":%s,", c->tls ? "true" : "false");
	j_str(f, "modes");
	fprintf(f, ":{");
	for (unsigned k = 0; k < BENCH_NMODES; k++) {
		enum bench_mode md = (enum bench_mode)k;
		unsigned total = runs_of(b, ci, md), failed;
		uint64_t mism;

		if (!total)
			continue;
		bench_failures(b, ci, md, &failed, &mism);
		if (!first)
			fputc(',', f);
		first = false;
		j_str(f, bench_mode_names[k]);
		fprintf(f, ":{");
		j_kv_u64(f, "runs", total, true);
		j_kv_u64(f, "failed", failed, true);
		j_kv_u64(f, "mismatches", mism, true);
		for (unsigned m = 0; m < BM_NMETRICS; m++) {
			struct bench_agg a;

			bench_aggregate(b, ci, md, (enum bench_metric)m, &a);
			j_str(f, metric_names[m]);
			fprintf(f, ":{");
			j_kv_num(f, "median", a.med, true);
			j_kv_num(f, "min", a.min, true);
			j_kv_num(f, "max", a.max, true);
			j_kv_u64(f, "n", a.n, false);
			fprintf(f, "}%s", m + 1 < BM_NMETRICS ? "," : "");
		}
		fprintf(f, "}");
	}
	fprintf(f, "}}");
}

static void json_run(FILE *f, const struct bench *b, const struct bench_run *r)
{
	const struct hm_migrate_stats *st = &r->st;
	double v;

	fprintf(f, "{");
	j_kv_u64(f, "seq", r->seq, true);
	j_kv_u64(f, "config", r->cfg, true);
	j_kv_str(f, "hints-mode", bench_mode_names[r->mode], true);
	j_kv_u64(f, "rep", r->rep, true);
	j_kv_num(f, "load1", r->load1, true);
	j_kv_str(f, "status", r->harness ? "harness-error"
			      : r->result ? "failed"
			      : run_ok(r) ? "completed" : "bad", true);
	j_kv_num(f, "result", r->harness ? r->harness : r->result, true);
	j_kv_str(f, "error", r->error, true);
	j_kv_str(f, "migration-status", hm_migrate_status_name(st->status),
		 true);
	j_kv_u64(f, "total-time", st->total_time_ms, true);
	j_kv_u64(f, "downtime", st->downtime_ms, true);
	j_kv_u64(f, "setup-time", st->setup_time_ms, true);
	j_kv_u64(f, "expected-downtime", st->expected_downtime_ms, true);
	j_kv_num(f, "wall-s", r->wall_s, true);
	j_kv_num(f, "active-s", r->active_s, true);
	j_kv_num(f, "time-to-ack-ms", r->ack_s * 1000, true);
	j_kv_num(f, "source-cpu-s", r->cpu_src_s, true);
	j_kv_num(f, "destination-cpu-s", r->cpu_dst_s, true);
	j_kv_str(f, "tls", r->st.tls_path, true);
	j_str(f, "ram");
	fprintf(f, ":{");
	j_kv_u64(f, "total", st->ram_total, true);
	j_kv_u64(f, "transferred", st->ram_transferred, true);
	j_kv_u64(f, "normal", st->normal_pages, true);
	j_kv_u64(f, "normal-bytes", st->normal_bytes, true);
	j_kv_u64(f, "duplicate", st->duplicate_pages, true);
	j_kv_u64(f, "skipped-empty", st->skipped_empty_pages, true);
	j_kv_u64(f, "skipped-hinted", st->skipped_hinted_pages, true);
	j_kv_u64(f, "dirty-sync-count", st->dirty_sync_count, true);
	j_kv_u64(f, "dirty-pages-rate", st->dirty_pages_rate, true);
	j_kv_u64(f, "rounds", st->rounds, true);
	j_kv_num(f, "mbps", st->mbps, false);
	fprintf(f, "},");
	j_str(f, "hints");
	fprintf(f, ":{");
	j_kv_u64(f, "requested", st->hint_requested, true);
	j_kv_u64(f, "received", st->hint_received, true);
	j_kv_u64(f, "applied", st->hint_applied, true);
	j_kv_u64(f, "pages-applied", st->hint_pages_applied, true);
	j_kv_u64(f, "dropped-stale", st->hint_dropped_stale, true);
	j_kv_u64(f, "rejected", st->hint_rejected, false);
	fprintf(f, "},");
	j_kv_str(f, "tracker-mode", hm_tracker_mode_name(st->tracker_mode),
		 true);
	j_kv_u64(f, "tracker-faults", st->tracker_faults, true);
	j_kv_u64(f, "in-use-bytes", r->inuse_pages * r->page_size, true);
	j_str(f, "verify");
	fprintf(f, ":{");
	j_kv_u64(f, "pages-checked", r->checked, true);
	j_kv_num(f, "mismatches", (double)r->mismatches, false);
	fprintf(f, "},");
	j_str(f, "guest");
	fprintf(f, ":{");
	j_kv_num(f, "writes-before-per-s", r->wr_before >= 0 ? r->wr_before
							    : NAN, true);
	j_kv_num(f, "writes-during-per-s", r->wr_during >= 0 ? r->wr_during
							    : NAN, true);
	j_kv_num(f, "write-ratio", metric(r, BM_WR_RATIO, &v) ? v : NAN, true);
	j_kv_num(f, "writes-tracker-only-per-s", r->wr_tracked >= 0 ?
		 r->wr_tracked : NAN, true);
	j_kv_num(f, "write-ratio-tracker-only",
		 metric(r, BM_WR_TRACKED_RATIO, &v) ? v : NAN, true);
	j_kv_num(f, "tracker-only-start-ms", r->wr_tracked >= 0 ?
		 r->tracker_start_ms : NAN, true);
	for (int i = 0; i < 3; i++) {
		static const char *const names[3] = {
			"tracker-only", "tracker-only-keep-hot",
			"tracker-only-keep-all" };
		const struct bench_trk *k = &r->trk[i];

		j_str(f, names[i]);
		fprintf(f, ":{");
		j_kv_num(f, "writes-per-s", k->wr >= 0 ? k->wr : NAN, true);
		j_kv_num(f, "faults-per-s", k->wr >= 0 ? k->faults_ps : NAN,
			 true);
		j_kv_num(f, "harvest-ms", k->wr >= 0 ? k->harvest_ms : NAN,
			 true);
		j_kv_num(f, "pages-per-harvest", k->wr >= 0 ? k->pages_ph :
			 NAN, false);
		fprintf(f, "},");
	}
	j_kv_u64(f, "check-errors", r->guest_check_errors, true);
	j_kv_u64(f, "hint-requests", r->guest_hint_requests, true);
	j_kv_u64(f, "hint-ranges-sent", r->guest_hint_ranges, true);
	j_kv_u64(f, "acks", r->guest_acks, false);
	fprintf(f, "},");
	j_str(f, "dest");
	fprintf(f, ":{");
	j_kv_num(f, "exit-status", r->dest_status, true);
	j_kv_u64(f, "pages-received", r->dst.pages_received, true);
	j_kv_u64(f, "zero-pages", r->dst.zero_pages, true);
	j_kv_u64(f, "bytes-received", r->dst.bytes_received, true);
	j_kv_u64(f, "rounds", r->dst.rounds, true);
	j_kv_u64(f, "channels", r->dst.channels, false);
	fprintf(f, "},");
	j_kv_num(f, "raw-bytes-per-s", r->raw_bps > 0 ? r->raw_bps : NAN,
		 true);
	j_kv_num(f, "raw-fresh-bytes-per-s", r->fresh_bps > 0 ? r->fresh_bps
								  : NAN, true);
	j_kv_num(f, "time-over-fresh-limit",
		 metric(r, BM_X_FRESH, &v) ? v : NAN, true);
	j_kv_num(f, "physical-limit-ms", r->limit_s > 0 ? r->limit_s * 1000
							: NAN, true);
	j_kv_num(f, "time-over-limit", metric(r, BM_X_LIMIT, &v) ? v : NAN,
		 true);
	j_kv_num(f, "time-to-ack-over-limit",
		 metric(r, BM_X_LIMIT_ACK, &v) ? v : NAN, true);
	j_str(f, "forced-stop-and-copy");
	fprintf(f, ":%s}", r->forced ? "true" : "false");
	(void)b;
}

int bench_write_json(const struct bench *b, const char *path)
{
	struct utsname u;
	char model[128], date[64];
	time_t now = time(NULL);
	FILE *f = fopen(path, "w");
	int r = 0;

	if (!f)
		return -errno;
	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	read_cpu_model(model, sizeof(model));
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	fprintf(f, "{");
	j_kv_str(f, "tool", "hintmig-bench", true);
	j_kv_str(f, "version", hm_version(), true);
	j_kv_str(f, "date", date, true);
	j_kv_str(f, "preset", b->o.preset, true);
	j_kv_str(f, "transport", b->o.transport, true);
	j_kv_u64(f, "reps", b->o.reps, true);
	j_kv_num(f, "elapsed-s", b->elapsed_s, true);
	j_str(f, "interrupted");
	fprintf(f, ":%s,", b->interrupted ? "true" : "false");
	j_str(f, "machine");
	fprintf(f, ":{");
	j_kv_u64(f, "cpus", b->o.ncpus, true);
	j_kv_str(f, "cpu-model", model, true);
	j_kv_str(f, "kernel", u.release, true);
	j_kv_u64(f, "mem-total-kib", mem_total_kib(), true);
	j_kv_num(f, "load1-start", b->load_start, true);
	j_kv_num(f, "load1-end", b->load_end, true);
	j_str(f, "wp-async");
	fprintf(f, ":%s,", b->caps.wp_async ? "true" : "false");
	j_str(f, "pagemap-scan");
	fprintf(f, ":%s}", b->caps.pagemap_scan ? "true" : "false");
	fprintf(f, ",");
	j_str(f, "options");
	fprintf(f, ":{");
	j_kv_u64(f, "window-ms", b->o.window_ms, true);
	j_kv_u64(f, "raw-bytes", b->o.raw_bytes, true);
	j_kv_u64(f, "downtime-limit", b->o.downtime_ms, true);
	j_kv_u64(f, "max-rounds", b->o.max_rounds, true);
	j_str(f, "force-on-max-rounds");
	fprintf(f, ":true},\n");
	j_str(f, "configs");
	fprintf(f, ":[\n");
	for (size_t i = 0; i < b->ncfgs; i++) {
		json_cfg(f, b, i);
		fprintf(f, "%s\n", i + 1 < b->ncfgs ? "," : "");
	}
	fprintf(f, "],\n");
	j_str(f, "runs");
	fprintf(f, ":[\n");
	for (size_t i = 0; i < b->nruns; i++) {
		json_run(f, b, &b->runs[i]);
		fprintf(f, "%s\n", i + 1 < b->nruns ? "," : "");
	}
	fprintf(f, "]}\n");
	if (ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

/* ---- SVG plot ---------------------------------------------------------- */

static bool same_family(const struct bench_cfg *a, const char *ka,
			const struct bench_cfg *b, const char *kb)
{
	return !strcmp(ka, kb) && !strcmp(a->group, b->group) &&
	       a->modes == b->modes;
}

/* The family of configurations to plot: those equal in everything but
 * the free fraction, the family with the most members (first on ties). */
static size_t plot_family(const struct bench *b, size_t *members,
			  size_t max)
{
	size_t best = 0, nbest = 0;

	for (size_t i = 0; i < b->ncfgs; i++) {
		char ki[128];
		size_t n = 0;

		cfg_label_nofree(&b->cfgs[i], ki, sizeof(ki));
		for (size_t j = 0; j < b->ncfgs; j++) {
			char kj[128];

			cfg_label_nofree(&b->cfgs[j], kj, sizeof(kj));
			if (same_family(&b->cfgs[i], ki, &b->cfgs[j], kj))
				n++;
		}
		if (n > nbest) {
			nbest = n;
			best = i;
		}
	}
	if (!nbest)
		return 0;
	{
		char kb[128];
		size_t n = 0;

		cfg_label_nofree(&b->cfgs[best], kb, sizeof(kb));
		for (size_t j = 0; j < b->ncfgs && n < max; j++) {
			char kj[128];

			cfg_label_nofree(&b->cfgs[j], kj, sizeof(kj));
			if (same_family(&b->cfgs[best], kb, &b->cfgs[j], kj))
				members[n++] = j;
		}
		/* by free fraction */
		for (size_t i = 1; i < n; i++)
			for (size_t j = i; j > 0 &&
			     b->cfgs[members[j]].free_frac <
			     b->cfgs[members[j - 1]].free_frac; j--) {
				size_t t = members[j];

				members[j] = members[j - 1];
				members[j - 1] = t;
			}
		return n;
	}
}

static double nice_step(double range, int ticks)
{
	double raw = range / ticks, mag, m;

	if (raw <= 0)
		return 1;
	mag = pow(10, floor(log10(raw)));
	m = raw / mag;
	if (m <= 1)
		m = 1;
	else if (m <= 2)
		m = 2;
	else if (m <= 2.5)
		m = 2.5;
	else if (m <= 5)
		m = 5;
	else
		m = 10;
	return m * mag;
}

struct panel {
	double x0, y0, w, h;	/* plot area in pixels */
	double ymax;
	const char *title, *ylabel;
};

static double px(const struct panel *p, double free_pct)
{
	return p->x0 + free_pct / 100.0 * p->w;
}

static double py(const struct panel *p, double v)
{
	return p->y0 + p->h - v / p->ymax * p->h;
}

static void svg_axes(FILE *f, const struct panel *p, double step)
{
	fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' "
		"fill='none' stroke='#444'/>\n", p->x0, p->y0, p->w, p->h);
	for (double v = 0; v <= p->ymax + step * 1e-6; v += step) {
		double y = py(p, v);

		fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' "
			"stroke='#ddd'/>\n", p->x0, y, p->x0 + p->w, y);
		fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end' "
			"font-size='11'>%g</text>\n", p->x0 - 5, y + 4, v);
	}
	for (int x = 0; x <= 100; x += 25) {
		fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' "
			"stroke='#eee'/>\n", px(p, x), p->y0, px(p, x),
			p->y0 + p->h);
		fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' "
			"font-size='11'>%d%%</text>\n", px(p, x),
			p->y0 + p->h + 15, x);
	}
	fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' "
		"font-size='12'>guest RAM free (non-zero garbage)</text>\n",
		p->x0 + p->w / 2, p->y0 + p->h + 33);
	fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' "
		"font-size='13' font-weight='bold'>%s</text>\n",
		p->x0 + p->w / 2, p->y0 - 10, p->title);
	fprintf(f, "<text transform='translate(%.1f,%.1f) rotate(-90)' "
		"text-anchor='middle' font-size='12'>%s</text>\n",
		p->x0 - 48, p->y0 + p->h / 2, p->ylabel);
}

static const char *const mode_colors[BENCH_NMODES] = {
	[BENCH_NONE] = "#d62728",
	[BENCH_FREE] = "#1f77b4",
	[BENCH_ISOLATED] = "#2ca02c",
};

/* One series: medians joined, min-max as error bars. vals[i][0..2] =
 * med, min, max; NaN = no data. */
static void svg_series(FILE *f, const struct panel *p, const double *xs,
		       double (*vals)[3], size_t n, const char *color,
		       bool dashed, double dx)
{
	bool open = false;

	for (size_t i = 0; i < n; i++) {
		if (!isfinite(vals[i][0])) {
			if (open)
				fprintf(f, "'/>\n");
			open = false;
			continue;
		}
		if (!open)
			fprintf(f, "<polyline fill='none' stroke='%s' "
				"stroke-width='2'%s points='", color,
				dashed ? " stroke-dasharray='6,4'" : "");
		open = true;
		fprintf(f, "%.1f,%.1f ", px(p, xs[i]) + dx, py(p, vals[i][0]));
	}
	if (open)
		fprintf(f, "'/>\n");
	for (size_t i = 0; i < n; i++) {
		double x;

		if (!isfinite(vals[i][0]))
			continue;
		x = px(p, xs[i]) + dx;
		if (!dashed) {
			bool cut = vals[i][2] > p->ymax;
			double top = py(p, cut ? p->ymax : vals[i][2]);

			fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' "
				"y2='%.1f' stroke='%s'/>\n", x,
				py(p, vals[i][1]), x, top, color);
			fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' "
				"y2='%.1f' stroke='%s'/>\n", x - 3,
				py(p, vals[i][1]), x + 3, py(p, vals[i][1]),
				color);
			if (cut)
				fprintf(f, "<text x='%.1f' y='%.1f' "
					"text-anchor='middle' font-size='10' "
					"fill='%s'>&#8593;%.0f</text>\n", x,
					top + 10, color, vals[i][2]);
			else
				fprintf(f, "<line x1='%.1f' y1='%.1f' "
					"x2='%.1f' y2='%.1f' stroke='%s'/>\n",
					x - 3, top, x + 3, top, color);
		}
		fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
			x, py(p, vals[i][0]), color);
	}
}

int bench_write_svg(const struct bench *b, const char *path)
{
	size_t mem[64], n;
	double xs[64];
	double tv[BENCH_NMODES][64][3], bv[BENCH_NMODES][64][3];
	double lim[64][3], inuse[64][3], flim[64][3];
	double tmax = 0, bmax = 0, st, sb;
	struct panel pt = { 80, 60, 400, 300, 0, "total migration time",
			    "ms" };
	struct panel pb = { 600, 60, 400, 300, 0, "bytes on the wire",
			    "MiB" };
	char lab[128];
	FILE *f;
	int r = 0;

	n = plot_family(b, mem, NELEM(mem));
	if (!n)
		return -ENODATA;
	for (size_t i = 0; i < n; i++) {
		struct bench_agg a;

		xs[i] = b->cfgs[mem[i]].free_frac * 100;
		lim[i][0] = inuse[i][0] = flim[i][0] = NAN;
		for (unsigned k = 0; k < BENCH_NMODES; k++) {
			bench_aggregate(b, mem[i], (enum bench_mode)k,
					BM_TIME_MS, &a);
			tv[k][i][0] = a.med;
			tv[k][i][1] = a.min;
			tv[k][i][2] = a.max;
			/* the scale follows the medians: one outlier must
			 * not flatten the plot (its bar is cut, labelled) */
			if (a.n && a.med * 1.5 > tmax)
				tmax = a.med * 1.5;
			bench_aggregate(b, mem[i], (enum bench_mode)k,
					BM_BYTES, &a);
			bv[k][i][0] = a.med / MIB;
			bv[k][i][1] = a.min / MIB;
			bv[k][i][2] = a.max / MIB;
			if (a.n && a.med / MIB * 1.5 > bmax)
				bmax = a.med / MIB * 1.5;
			if (!isfinite(lim[i][0])) {
				bench_aggregate(b, mem[i], (enum bench_mode)k,
						BM_LIMIT_MS, &a);
				lim[i][0] = a.med;
				lim[i][1] = a.min;
				lim[i][2] = a.max;
				bench_aggregate(b, mem[i], (enum bench_mode)k,
						BM_INUSE_BYTES, &a);
				inuse[i][0] = a.med / MIB;
				inuse[i][1] = a.min / MIB;
				inuse[i][2] = a.max / MIB;
			}
			if (!isfinite(flim[i][0])) {
				bench_aggregate(b, mem[i], (enum bench_mode)k,
						BM_FRESH_LIMIT_MS, &a);
				flim[i][0] = a.med;
				flim[i][1] = a.min;
				flim[i][2] = a.max;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (isfinite(lim[i][0]) && lim[i][0] > tmax)
			tmax = lim[i][0];
		if (isfinite(flim[i][0]) && flim[i][0] > tmax)
			tmax = flim[i][0];
	}
	if (tmax <= 0 || bmax <= 0)
		return -ENODATA;
	st = nice_step(tmax * 1.05, 6);
	sb = nice_step(bmax * 1.05, 6);
	pt.ymax = ceil(tmax * 1.05 / st) * st;
	pb.ymax = ceil(bmax * 1.05 / sb) * sb;

	f = fopen(path, "w");
	if (!f)
		return -errno;
	cfg_label_nofree(&b->cfgs[mem[0]], lab, sizeof(lab));
	fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
		"<svg xmlns='http://www.w3.org/2000/svg' width='1060' "
		"height='470' viewBox='0 0 1060 470' "
		"font-family='DejaVu Sans, Helvetica, Arial, sans-serif'>\n"
		"<rect width='100%%' height='100%%' fill='white'/>\n");
	fprintf(f, "<text x='530' y='22' text-anchor='middle' "
		"font-size='14'>hintmig-bench (preset %s): ", b->o.preset);
	fprintf(f, "%s, %s loopback; median, bars min-max of %u reps"
		"</text>\n", lab, b->o.transport, b->o.reps);
	svg_axes(f, &pt, st);
	svg_axes(f, &pb, sb);
	svg_series(f, &pt, xs, lim, n, "#777", true, 0);
	svg_series(f, &pt, xs, flim, n, "#bbb", true, 0);
	svg_series(f, &pb, xs, inuse, n, "#777", true, 0);
	for (unsigned k = 0; k < BENCH_NMODES; k++) {
		double dx = ((double)k - 1) * 4; /* keep bars apart */

		svg_series(f, &pt, xs, tv[k], n, mode_colors[k], false, dx);
		svg_series(f, &pb, xs, bv[k], n, mode_colors[k], false, dx);
	}
	/* legend */
	{
		double y = 445, x = 40;

		for (unsigned k = 0; k < BENCH_NMODES; k++) {
			if (!(b->cfgs[mem[0]].modes & (1u << k)))
				continue;
			fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' "
				"y2='%.0f' stroke='%s' stroke-width='2'/>"
				"<text x='%.0f' y='%.0f' font-size='12'>"
				"hints %s</text>\n", x, y, x + 25, y,
				mode_colors[k], x + 30, y + 4,
				bench_mode_names[k]);
			x += 140;
		}
		fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' "
			"stroke='#777' stroke-width='2' "
			"stroke-dasharray='6,4'/><text x='%.0f' y='%.0f' "
			"font-size='12'>physical limit (time) / in-use bytes"
			"</text>\n", x, y, x + 25, y, x + 30, y + 4);
		x += 300;
		fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' "
			"stroke='#bbb' stroke-width='2' "
			"stroke-dasharray='6,4'/><text x='%.0f' y='%.0f' "
			"font-size='12'>limit into fresh memory</text>\n", x,
			y, x + 25, y, x + 30, y + 4);
	}
	fprintf(f, "</svg>\n");
	if (ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

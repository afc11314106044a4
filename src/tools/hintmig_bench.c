/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-bench: the standalone precopy benchmark.
 *
 * Runs a matrix of live migrations of the synthetic guest from this
 * process to a destination process (TCP loopback by default, UNIX
 * optional): guest RAM, free fraction, dirty rate and pattern, bandwidth
 * limit, streams, tracker mode, and hint mode (none, FREE, ISOLATED).
 * Every configuration is repeated with the hint modes interleaved, every
 * run is verified bit for bit, and each configuration's report carries
 * the physical limit measured in the same run: in-use bytes over the raw
 * throughput of the same transport with the same number of streams.
 *
 * This file: options, presets, the matrix and the loop. bench_run.c runs
 * one migration; bench_report.c prints, writes JSON and draws the plot.
 *
 * Exit status: 0 every run completed and verified, 1 some run failed or
 * mismatched, 2 usage, 3 setup, 130 interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench.h"
#include "parse.h"

#define AXIS_MAX 16
#define MIB (1024.0 * 1024.0)

const char *const bench_mode_names[BENCH_NMODES] = {
	[BENCH_NONE] = "none",
	[BENCH_FREE] = "free",
	[BENCH_ISOLATED] = "isolated",
};

const char *const bench_pattern_names[2] = {
	[HM_SYNTH_UNIFORM] = "uniform",
	[HM_SYNTH_HOTSET] = "hotset",
};

#define ALL_MODES ((1u << BENCH_NONE) | (1u << BENCH_FREE) | \
		   (1u << BENCH_ISOLATED))

/* ---- axes and presets -------------------------------------------------- */

/* The axes of one group of the matrix: the group is their cross product.
 * An n* of 0 means "not given" (the preset's value, or the default). */
struct axes {
	uint64_t ram[AXIS_MAX];
	size_t nram;
	double free[AXIS_MAX];
	size_t nfree;
	uint64_t dirty[AXIS_MAX];
	size_t ndirty;
	enum hm_synth_pattern pattern[2];
	size_t npattern;
	uint64_t bw[AXIS_MAX];
	size_t nbw;
	unsigned ch[AXIS_MAX];	/* 0 = one per CPU */
	size_t nch;
	enum hm_tracker_mode tracker[3];
	size_t ntracker;
	uint64_t unit[2];	/* R12 tracking units, 0 = a page */
	size_t nunit;
	uint64_t keep[2];	/* the migration with R11 (1) or not (0) */
	size_t nkeep;
	uint64_t tls[2];	/* plain (0) or TLS (1), R18 */
	size_t ntls;
	bool thp;		/* guest RAM on THP */
	bool hugetlb;		/* guest RAM from the hugetlb pool */
	unsigned modes;		/* 0 = not given */
	int pin;		/* -1 not given */
	double hot_frac;	/* < 0 not given */
	int writers;		/* < 0 not given */
	int64_t churn;		/* < 0 not given */
};

struct group {
	const char *name;
	const char *why;
	struct axes ax;
};

#define KD(x) ((uint64_t)(x))
#define G(x) (KD(x) << 30)
#define M(x) (KD(x) << 20)

/* The huge-page tracking groups (docs/tracker.md, R12), with the guest's
 * RAM size and modes of the preset. */
#define HUGE_TRACKING_GROUPS(RAM, MODES) \
	{ "tracking-hugetlb", "tracking cost on hugetlb guest RAM (2 MiB " \
	  "pages, tracked whole), both trackers", \
	  { .ram = { RAM }, .nram = 1, \
	    .free = { 0.75 }, .nfree = 1, \
	    .dirty = { BENCH_DIRTY_MAX }, .ndirty = 1, \
	    .pattern = { HM_SYNTH_HOTSET }, .npattern = 1, \
	    .tracker = { HM_TRACKER_ASYNC, HM_TRACKER_SYNC }, .ntracker = 2, \
	    .hugetlb = true, .modes = MODES, \
	    .pin = 1, .hot_frac = -1, .writers = -1, .churn = -1 } }, \
	{ "tracking-thp", "tracking cost on THP guest RAM, sync tracker: " \
	  "4 KiB units vs 2 MiB units (R12), without and with R11", \
	  { .ram = { RAM }, .nram = 1, \
	    .free = { 0.75 }, .nfree = 1, \
	    .dirty = { BENCH_DIRTY_MAX }, .ndirty = 1, \
	    .pattern = { HM_SYNTH_HOTSET }, .npattern = 1, \
	    .tracker = { HM_TRACKER_SYNC }, .ntracker = 1, \
	    .unit = { 0, M(2) }, .nunit = 2, .thp = true, \
	    .keep = { 0, 1 }, .nkeep = 2, .modes = MODES, \
	    .pin = 1, .hot_frac = -1, .writers = -1, .churn = -1 } }

/* Plain and TLS side by side (R18): the same guest, no hints, so that
 * every in-use page crosses; throughput and CPU per GiB of each end. */
#define TLS_GROUP(RAM) \
	{ "tls", "plain vs TLS: throughput and CPU of both ends (R18)", \
	  { .ram = { RAM }, .nram = 1, \
	    .free = { 0.25 }, .nfree = 1, \
	    .dirty = { 0 }, .ndirty = 1, \
	    .tls = { 0, 1 }, .ntls = 2, .modes = 1u << BENCH_NONE, \
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } }

/* quick: about a minute on a 2-core machine; the README runs it. */
static const struct group quick_groups[] = {
	{ "free", "free fraction, idle guest",
	  { .ram = { M(512) }, .nram = 1,
	    .free = { 0.50, 0.75 }, .nfree = 2,
	    .dirty = { 0 }, .ndirty = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	{ "dirty", "a moderately writing guest",
	  { .ram = { M(512) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { 20000 }, .ndirty = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	{ "tracking", "tracking cost: saturated writers, guest pinned",
	  { .ram = { M(512) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { BENCH_DIRTY_MAX }, .ndirty = 1,
	    .pattern = { HM_SYNTH_HOTSET }, .npattern = 1,
	    .tracker = { HM_TRACKER_ASYNC, HM_TRACKER_SYNC },
	    .ntracker = 2,
	    .modes = 1u << BENCH_FREE,
	    .pin = 1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	HUGE_TRACKING_GROUPS(M(512), 1u << BENCH_FREE),
	TLS_GROUP(M(512)),
};

/* full: the published matrix (docs/benchmarks.md), ~20 minutes here. */
static const struct group full_groups[] = {
	{ "free", "free fraction sweep, idle guest",
	  { .ram = { G(1) }, .nram = 1,
	    .free = { 0, 0.25, 0.50, 0.75, 0.90 }, .nfree = 5,
	    .dirty = { 0 }, .ndirty = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	{ "dirty", "dirty rate and pattern",
	  { .ram = { G(1) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { 10000, 100000 }, .ndirty = 2,
	    .pattern = { HM_SYNTH_UNIFORM, HM_SYNTH_HOTSET },
	    .npattern = 2,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = 1000 } },
	{ "tracking", "tracking cost: saturated writers, guest pinned",
	  { .ram = { G(1) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { BENCH_DIRTY_MAX }, .ndirty = 1,
	    .pattern = { HM_SYNTH_HOTSET }, .npattern = 1,
	    .tracker = { HM_TRACKER_ASYNC, HM_TRACKER_SYNC },
	    .ntracker = 2,
	    .pin = 1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	HUGE_TRACKING_GROUPS(G(1), 0),
	TLS_GROUP(G(1)),
	{ "streams", "one stream",
	  { .ram = { G(1) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { 0 }, .ndirty = 1,
	    .ch = { 1 }, .nch = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	{ "bandwidth", "bandwidth limit 256 MiB/s",
	  { .ram = { G(1) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { 10000 }, .ndirty = 1,
	    .bw = { M(256) }, .nbw = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
	{ "2g", "2 GiB guest (the engine's target)",
	  { .ram = { G(2) }, .nram = 1,
	    .free = { 0.75 }, .nfree = 1,
	    .dirty = { 0 }, .ndirty = 1,
	    .pin = -1, .hot_frac = -1, .writers = -1, .churn = -1 } },
};

struct preset {
	const char *name;
	const struct group *groups;
	size_t ngroups;
	unsigned reps;
};

static const struct preset presets[] = {
	{ "quick", quick_groups, HM_NELEM(quick_groups), 3 },
	{ "full", full_groups, HM_NELEM(full_groups), 5 },
};

/* ---- parsing ----------------------------------------------------------- */

/* Split a comma list; calls fn on each item. 0 or -EINVAL. */
static int each_item(const char *list, int (*fn)(const char *, void *),
		     void *opaque)
{
	char buf[512], *save = NULL, *tok;

	if (strlen(list) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int r = fn(tok, opaque);

		if (r < 0)
			return r;
	}
	return 0;
}

static int add_ram(const char *s, void *op)
{
	struct axes *a = op;
	uint64_t v;

	if (a->nram >= AXIS_MAX || hm_parse_size(s, &v) < 0 || v < (1u << 20))
		return -EINVAL;
	a->ram[a->nram++] = v;
	return 0;
}

static int add_free(const char *s, void *op)
{
	struct axes *a = op;
	double v;

	if (a->nfree >= AXIS_MAX || hm_parse_frac(s, &v) < 0 || v > 0.99)
		return -EINVAL;
	a->free[a->nfree++] = v;
	return 0;
}

static int add_dirty(const char *s, void *op)
{
	struct axes *a = op;
	uint64_t v;

	if (a->ndirty >= AXIS_MAX || hm_parse_rate(s, BENCH_DIRTY_MAX, &v) < 0)
		return -EINVAL;
	a->dirty[a->ndirty++] = v;
	return 0;
}

static int add_pattern(const char *s, void *op)
{
	struct axes *a = op;

	int k = hm_parse_name(s, bench_pattern_names,
			      HM_NELEM(bench_pattern_names));

	if (k < 0 || a->npattern >= 2)
		return -EINVAL;
	a->pattern[a->npattern++] = (enum hm_synth_pattern)k;
	return 0;
}

static int add_bw(const char *s, void *op)
{
	struct axes *a = op;
	uint64_t v;

	if (a->nbw >= AXIS_MAX)
		return -EINVAL;
	if (!strcmp(s, "unlimited"))
		v = 0;
	else if (hm_parse_size(s, &v) < 0)
		return -EINVAL;
	a->bw[a->nbw++] = v;
	return 0;
}

static int add_ch(const char *s, void *op)
{
	struct axes *a = op;
	uint64_t v;

	if (a->nch >= AXIS_MAX || hm_parse_uint(s, 64, &v) < 0 || v == 0)
		return -EINVAL;
	a->ch[a->nch++] = (unsigned)v;
	return 0;
}

static int add_tracker(const char *s, void *op)
{
	struct axes *a = op;
	enum hm_tracker_mode t;

	if (a->ntracker >= 3 || hm_tracker_mode_parse(s, &t) < 0)
		return -EINVAL;
	a->tracker[a->ntracker++] = t;
	return 0;
}

static int add_mode(const char *s, void *op)
{
	struct axes *a = op;

	int k = hm_parse_name(s, bench_mode_names, BENCH_NMODES);

	if (k < 0)
		return -EINVAL;
	a->modes |= 1u << k;
	return 0;
}

/* ---- the matrix -------------------------------------------------------- */

static unsigned default_channels(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	return n > 64 ? 64 : (unsigned)n;
}

static int push_cfg(struct bench *b, const struct bench_cfg *c)
{
	struct bench_cfg *n = realloc(b->cfgs, (b->ncfgs + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	b->cfgs = n;
	b->cfgs[b->ncfgs++] = *c;
	return 0;
}

static int add_tls(const char *s, void *op)
{
	struct axes *a = op;

	if (a->ntls >= 2 || (strcmp(s, "off") && strcmp(s, "on")))
		return -EINVAL;
	a->tls[a->ntls++] = !strcmp(s, "on");
	return 0;
}

/* TLS runs need the source's credentials: loaded here, or the TLS
 * configurations are left out with the reason (the destination process
 * loads its own from the same directory). */
static void load_tls(struct bench *b)
{
	char err[600];
	size_t k = 0;
	bool want = false;

	for (size_t i = 0; i < b->ncfgs; i++)
		want |= b->cfgs[i].tls;
	if (!want)
		return;
	b->tls = hm_tls_creds_load(b->o.tls_dir, false, err, sizeof(err));
	if (b->tls) {
		char srv[600];
		struct hm_tls_creds *t = hm_tls_creds_load(b->o.tls_dir, true,
							   srv, sizeof(srv));

		if (t) {
			hm_tls_creds_free(t);
			return;
		}
		snprintf(err, sizeof(err), "%s", srv);
		hm_tls_creds_free(b->tls);
		b->tls = NULL;
	}
	fprintf(stderr, "hintmig-bench: TLS configurations left out: %s "
		"(--tls-dir DIR with ca-cert.pem, server-*.pem and "
		"client-*.pem)\n", err);
	for (size_t i = 0; i < b->ncfgs; i++)
		if (!b->cfgs[i].tls)
			b->cfgs[k++] = b->cfgs[i];
	b->ncfgs = k;
}

/* The cross product of a group's axes, each overridden by ov where given. */
static int expand_group(struct bench *b, const char *name,
			const struct axes *g, const struct axes *ov)
{
	static const uint64_t zero64[1] = { 0 };
	static const double free_def[1] = { 0.75 };
	static const enum hm_synth_pattern pat_def[1] = { HM_SYNTH_UNIFORM };
	static const enum hm_tracker_mode trk_def[1] = { HM_TRACKER_ASYNC };
	static const unsigned ch_def[1] = { 0 };
	static const uint64_t ram_def[1] = { M(512) };
#define PICK(field, nfield, def) \
	const __typeof__((g->field)[0]) *field = ov->nfield ? ov->field : \
		g->nfield ? g->field : def; \
	size_t nfield = ov->nfield ? ov->nfield : g->nfield ? g->nfield : 1
	PICK(ram, nram, ram_def);
	PICK(free, nfree, free_def);
	PICK(dirty, ndirty, zero64);
	PICK(pattern, npattern, pat_def);
	PICK(bw, nbw, zero64);
	PICK(ch, nch, ch_def);
	PICK(tracker, ntracker, trk_def);
	PICK(unit, nunit, zero64);
	PICK(keep, nkeep, zero64);
	PICK(tls, ntls, zero64);
#undef PICK
	struct bench_cfg c;

	memset(&c, 0, sizeof(c));
	snprintf(c.group, sizeof(c.group), "%s", name);
	c.modes = ov->modes ? ov->modes : g->modes ? g->modes : ALL_MODES;
	c.pin = ov->pin >= 0 ? ov->pin : g->pin > 0;
	c.hot_frac = ov->hot_frac >= 0 ? ov->hot_frac
		   : g->hot_frac >= 0 ? g->hot_frac : 0.1;
	c.writers = (unsigned)(ov->writers >= 0 ? ov->writers
			       : g->writers >= 0 ? g->writers : 1);
	c.churn_rate = (uint64_t)(ov->churn >= 0 ? ov->churn
				  : g->churn >= 0 ? g->churn : 0);
	c.thp = ov->thp || g->thp;
	c.hugetlb = ov->hugetlb || g->hugetlb;
	for (size_t i0 = 0; i0 < nram; i0++)
	for (size_t i1 = 0; i1 < nfree; i1++)
	for (size_t i2 = 0; i2 < ndirty; i2++)
	for (size_t i3 = 0; i3 < npattern; i3++)
	for (size_t i4 = 0; i4 < nbw; i4++)
	for (size_t i5 = 0; i5 < nch; i5++)
	for (size_t i6 = 0; i6 < ntracker; i6++)
	for (size_t i7 = 0; i7 < nunit; i7++)
	for (size_t i8 = 0; i8 < nkeep; i8++)
	for (size_t i9 = 0; i9 < ntls; i9++) {
		int r;

		c.ram = ram[i0];
		c.free_frac = free[i1];
		c.dirty_rate = dirty[i2];
		c.pattern = pattern[i3];
		c.bandwidth = bw[i4];
		c.channels = ch[i5] ? ch[i5] : default_channels();
		c.tracker = tracker[i6];
		c.track_unit = unit[i7];
		c.keep_hot = keep[i8] != 0;
		c.tls = tls[i9] != 0;
		r = push_cfg(b, &c);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- progress ---------------------------------------------------------- */

struct prog {
	struct bench *b;
	const struct bench_cfg *cfg;
	const struct bench_run *run;
	unsigned rep;
	size_t done;
	bool bar_drawn;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static void fmt_dur(double s, char *buf, size_t len)
{
	unsigned t = s > 0 ? (unsigned)(s + 0.5) : 0;

	snprintf(buf, len, "%u:%02u", t / 60, t % 60);
}

static void draw_bar(struct prog *p, const struct hm_migrate_stats *st)
{
	struct bench *b = p->b;
	char el[16], left[16], lab[96], tail[96] = "", bar[32], line[256];
	struct winsize ws;
	double elapsed = bench_now() - b->started;
	double frac = b->planned ? (double)p->done / (double)b->planned : 0;
	int width = 24, fill = (int)(frac * width + 0.5);

	if (!b->o.progress_tty)
		return;
	fmt_dur(elapsed, el, sizeof(el));
	if (p->done)
		fmt_dur(elapsed / (double)p->done *
			(double)(b->planned - p->done), left, sizeof(left));
	else
		snprintf(left, sizeof(left), "?");
	bench_cfg_label(p->cfg, lab, sizeof(lab));
	if (st)
		snprintf(tail, sizeof(tail), " | round %" PRIu64 " %.0f MiB "
			 "left", st->rounds, (double)st->ram_remaining / MIB);
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	snprintf(line, sizeof(line), "[%s] %zu/%zu %s, ~%s left | %s %s "
		 "rep %u%s", bar, p->done, b->planned, el, left, lab,
		 p->run ? bench_mode_names[p->run->mode] : "raw",
		 p->rep + 1, tail);
	/* one terminal line, or \r cannot take it back */
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
	    ws.ws_col <= sizeof(line))
		line[ws.ws_col - 1] = 0;
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	p->bar_drawn = true;
}

static void clear_bar(struct prog *p)
{
	if (p->bar_drawn)
		fprintf(stderr, "\r\033[K");
	p->bar_drawn = false;
}

static void on_tick(void *opaque, const struct hm_migrate_stats *st)
{
	struct prog *p = opaque;

	if (got_signal)
		bench_cancel();
	draw_bar(p, st);
}

static void print_run_line(struct prog *p, const struct bench_run *r)
{
	char lab[96];
	bool bad = r->harness || r->result || r->mismatches != 0 ||
		   r->dest_status != 0 || r->guest_check_errors;

	bench_cfg_label(&p->b->cfgs[r->cfg], lab, sizeof(lab));
	clear_bar(p);
	fprintf(stderr, "%s[%zu/%zu] %-40s %-8s rep %u: ", bad ? "!! " : "",
		p->done, p->b->planned, lab, bench_mode_names[r->mode],
		r->rep + 1);
	if (r->harness || r->result) {
		fprintf(stderr, "FAILED: %s\n", r->error);
		return;
	}
	fprintf(stderr, "%" PRIu64 " ms (limit %.0f ms), down %" PRIu64
		" ms, %.1f MiB, %" PRIu64 " rounds, verify %s",
		r->st.total_time_ms, r->limit_s * 1000, r->st.downtime_ms,
		(double)r->st.ram_transferred / MIB, r->st.rounds,
		r->mismatches == 0 ? "ok" : r->mismatches > 0 ? "MISMATCH"
							     : "FAILED");
	if (r->wr_before > 0 && r->wr_during >= 0)
		fprintf(stderr, ", writes %.0f%%",
			100.0 * r->wr_during / r->wr_before);
	if (bad && r->error[0])
		fprintf(stderr, " -- %s", r->error);
	fputc('\n', stderr);
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: hintmig-bench [--preset quick|full] [AXIS OPTIONS] [OPTIONS]\n"
"\n"
"Live migrations of the synthetic guest to a destination process, every\n"
"configuration with hint modes none/free/isolated interleaved, each run\n"
"verified bit for bit, and the physical limit measured in the same run.\n"
"\n"
"Presets (default quick):\n"
"  quick   512 MiB, 50/75%% free, idle and 20k pages/s, tracking cost (~1 min)\n"
"  full    1-2 GiB, 0..90%% free, dirty rates and patterns, both trackers,\n"
"          1 and 2 streams, a bandwidth limit; 5 repetitions (~15 min)\n"
"Axis options (comma lists; each replaces that axis in every preset group):\n"
"  --ram SIZES          guest RAM, e.g. 512M,1G\n"
"  --free FRACS         free fraction (non-zero garbage), e.g. 0,50%%,0.9\n"
"  --dirty-rate RATES   page writes/s: idle, 10k, 100k, max (saturated)\n"
"  --pattern P          uniform, hotset\n"
"  --bandwidth BW       bytes/s limit, e.g. 256M; 0 or unlimited\n"
"  --channels N         parallel streams (default: one per CPU)\n"
"  --tracker T          async, sync, auto\n"
"  --hints MODES        none, free, isolated\n"
"  --pin / --no-pin     guest on the last CPU, engine on the others\n"
"  --hot-frac F         hot set share of in-use pages (default 10%%)\n"
"  --writers N          guest writer threads (default 1)\n"
"  --churn RATE         guest alloc+free pairs per second\n"
"  --tls off,on         plain and/or TLS connections (R18)\n"
"Options:\n"
"  --reps N             repetitions (default 3)\n"
"  --transport tcp|unix loopback transport (default tcp)\n"
"  --window MS          write-rate sample before a migration (default 500)\n"
"  --raw-bytes SIZE     bytes per raw-throughput measurement (default 1G)\n"
"  --downtime-limit MS  (default 300)\n"
"  --max-rounds N       then stop-and-copy is forced (default 30)\n"
"  --tls-dir DIR        certificates of both ends for the TLS runs, libvirt's\n"
"                       layout (default /etc/pki/qemu); none: TLS runs left out\n"
"  --tls-name NAME      the name the server certificate carries (localhost)\n"
"  --json FILE          every run and every aggregate\n"
"  --plot FILE.svg      time and bytes per mode across free fractions\n"
"  --group NAME         only this group of the preset (--list shows them)\n"
"  --list               print the configurations and exit\n"
"  --no-progress        no progress bar\n"
"  --verbose            the engine's log down to info\n"
"  --help               this text\n"
"  --version            the version\n");
}

enum {
	OPT_RAM = 256, OPT_FREE, OPT_DIRTY, OPT_PATTERN, OPT_BW, OPT_CH,
	OPT_TRACKER, OPT_HINTS, OPT_PIN, OPT_NOPIN, OPT_HOT, OPT_WRITERS,
	OPT_CHURN, OPT_REPS, OPT_TRANSPORT, OPT_WINDOW, OPT_RAW, OPT_DOWN,
	OPT_ROUNDS, OPT_JSON, OPT_PLOT, OPT_LIST, OPT_NOPROG, OPT_VERBOSE,
	OPT_PRESET, OPT_HELP, OPT_VERSION, OPT_GROUP, OPT_TLS, OPT_TLS_DIR,
	OPT_TLS_NAME,
};

static void bench_logger(void *opaque, enum hm_log_level level,
			 const char *msg)
{
	struct prog *p = opaque;

	if (p)
		clear_bar(p);
	fprintf(stderr, "hintmig-bench: %s: %s\n", hm_log_level_name(level),
		msg);
}

static int self_exe(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	if (n <= 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "preset", required_argument, NULL, OPT_PRESET },
		{ "ram", required_argument, NULL, OPT_RAM },
		{ "free", required_argument, NULL, OPT_FREE },
		{ "dirty-rate", required_argument, NULL, OPT_DIRTY },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "bandwidth", required_argument, NULL, OPT_BW },
		{ "channels", required_argument, NULL, OPT_CH },
		{ "tracker", required_argument, NULL, OPT_TRACKER },
		{ "hints", required_argument, NULL, OPT_HINTS },
		{ "pin", no_argument, NULL, OPT_PIN },
		{ "no-pin", no_argument, NULL, OPT_NOPIN },
		{ "hot-frac", required_argument, NULL, OPT_HOT },
		{ "writers", required_argument, NULL, OPT_WRITERS },
		{ "churn", required_argument, NULL, OPT_CHURN },
		{ "reps", required_argument, NULL, OPT_REPS },
		{ "transport", required_argument, NULL, OPT_TRANSPORT },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "raw-bytes", required_argument, NULL, OPT_RAW },
		{ "downtime-limit", required_argument, NULL, OPT_DOWN },
		{ "max-rounds", required_argument, NULL, OPT_ROUNDS },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "plot", required_argument, NULL, OPT_PLOT },
		{ "list", no_argument, NULL, OPT_LIST },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "no-progress", no_argument, NULL, OPT_NOPROG },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "tls", required_argument, NULL, OPT_TLS },
		{ "tls-dir", required_argument, NULL, OPT_TLS_DIR },
		{ "tls-name", required_argument, NULL, OPT_TLS_NAME },
		{ NULL, 0, NULL, 0 },
	};
	static struct bench b;
	static char exe[PATH_MAX];
	struct axes ov;
	struct prog prog;
	const struct preset *pre = NULL;
	struct sigaction sa;
	bool list = false, no_progress = false, any_bad = false;
	const char *only_group = NULL;
	unsigned reps = 0;
	uint64_t u = 0, v = 0;
	int c, r;

	/* the helper processes: this program re-executed */
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "--internal-dest"))
		return bench_child_dest(atoi(argv[2]), atoi(argv[3]),
					argc == 5 ? argv[4] : NULL);
	if (argc == 4 && !strcmp(argv[1], "--internal-sink"))
		return bench_child_sink(atoi(argv[2]), argv[3]);

	memset(&ov, 0, sizeof(ov));
	ov.pin = -1;
	ov.hot_frac = -1;
	ov.writers = -1;
	ov.churn = -1;
	b.o.transport = "tcp";
	b.o.window_ms = 500;
	b.o.raw_bytes = G(1);
	b.o.downtime_ms = 300;
	b.o.max_rounds = 30;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		r = 0;
		switch (c) {
		case OPT_PRESET:
			pre = NULL;
			for (size_t i = 0; i < HM_NELEM(presets); i++)
				if (!strcmp(optarg, presets[i].name))
					pre = &presets[i];
			r = pre ? 0 : -EINVAL;
			break;
		case OPT_RAM: r = each_item(optarg, add_ram, &ov); break;
		case OPT_FREE: r = each_item(optarg, add_free, &ov); break;
		case OPT_DIRTY: r = each_item(optarg, add_dirty, &ov); break;
		case OPT_PATTERN:
			r = each_item(optarg, add_pattern, &ov);
			break;
		case OPT_BW: r = each_item(optarg, add_bw, &ov); break;
		case OPT_CH: r = each_item(optarg, add_ch, &ov); break;
		case OPT_TRACKER:
			r = each_item(optarg, add_tracker, &ov);
			break;
		case OPT_HINTS: r = each_item(optarg, add_mode, &ov); break;
		case OPT_PIN: ov.pin = 1; break;
		case OPT_NOPIN: ov.pin = 0; break;
		case OPT_HOT:
			r = hm_parse_frac(optarg, &ov.hot_frac);
			break;
		case OPT_WRITERS:
			r = hm_parse_uint(optarg, 64, &u);
			ov.writers = (int)u;
			if (r == 0 && u == 0)
				r = -EINVAL;
			break;
		case OPT_CHURN:
			r = hm_parse_rate(optarg, BENCH_DIRTY_MAX, &v);
			ov.churn = (int64_t)v;
			break;
		case OPT_REPS:
			r = hm_parse_uint(optarg, 1000, &u);
			reps = (unsigned)u;
			if (r == 0 && reps == 0)
				r = -EINVAL;
			break;
		case OPT_TRANSPORT:
			if (!strcmp(optarg, "tcp") || !strcmp(optarg, "unix"))
				b.o.transport = !strcmp(optarg, "tcp") ?
						"tcp" : "unix";
			else
				r = -EINVAL;
			break;
		case OPT_WINDOW:
			r = hm_parse_uint(optarg, 60000, &u);
			b.o.window_ms = (unsigned)u;
			break;
		case OPT_RAW:
			r = hm_parse_size(optarg, &b.o.raw_bytes);
			if (r == 0 && b.o.raw_bytes < (1u << 20))
				r = -EINVAL;
			break;
		case OPT_DOWN:
			r = hm_parse_uint(optarg, 1000000, &u);
			b.o.downtime_ms = u;
			break;
		case OPT_ROUNDS:
			r = hm_parse_uint(optarg, 100000, &u);
			b.o.max_rounds = (unsigned)u;
			if (r == 0 && b.o.max_rounds == 0)
				r = -EINVAL;
			break;
		case OPT_JSON: b.o.json_path = optarg; break;
		case OPT_TLS: r = each_item(optarg, add_tls, &ov); break;
		case OPT_TLS_DIR: b.o.tls_dir = optarg; break;
		case OPT_TLS_NAME: b.o.tls_name = optarg; break;
		case OPT_PLOT: b.o.plot_path = optarg; break;
		case OPT_LIST: list = true; break;
		case OPT_GROUP: only_group = optarg; break;
		case OPT_NOPROG: no_progress = true; break;
		case OPT_VERBOSE: b.o.verbose = true; break;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_VERSION:
			return hm_print_version("hintmig-bench");
		default:
			usage(stderr);
			return 2;
		}
		if (r < 0) {
			const char *name = "?";

			for (size_t i = 0; lopts[i].name; i++)
				if (lopts[i].val == c)
					name = lopts[i].name;
			fprintf(stderr, "hintmig-bench: bad value for --%s: "
				"'%s'\n", name, optarg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hintmig-bench: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!pre)
		pre = &presets[0];
	b.o.preset = pre->name;
	b.o.reps = reps ? reps : pre->reps;
	b.o.ncpus = default_channels();
	for (size_t i = 0; i < pre->ngroups; i++) {
		if (only_group && strcmp(only_group, pre->groups[i].name))
			continue;
		r = expand_group(&b, pre->groups[i].name, &pre->groups[i].ax,
				 &ov);
		if (r < 0) {
			fprintf(stderr, "hintmig-bench: %s\n", strerror(-r));
			return 3;
		}
	}
	if (only_group && !b.ncfgs) {
		fprintf(stderr, "hintmig-bench: no group '%s' in preset %s\n",
			only_group, pre->name);
		return 2;
	}
	load_tls(&b);
	for (size_t i = 0; i < b.ncfgs; i++)
		for (unsigned k = 0; k < BENCH_NMODES; k++)
			if (b.cfgs[i].modes & (1u << k))
				b.planned += b.o.reps;

	if (list) {
		for (size_t i = 0; i < b.ncfgs; i++) {
			char lab[128];

			bench_cfg_label(&b.cfgs[i], lab, sizeof(lab));
			printf("%2zu %-10s %s  modes:", i, b.cfgs[i].group,
			       lab);
			for (unsigned k = 0; k < BENCH_NMODES; k++)
				if (b.cfgs[i].modes & (1u << k))
					printf(" %s", bench_mode_names[k]);
			printf("\n");
		}
		printf("%zu runs (%u repetitions), transport %s\n", b.planned,
		       b.o.reps, b.o.transport);
		return 0;
	}

	if (self_exe(exe, sizeof(exe)) < 0) {
		fprintf(stderr, "hintmig-bench: cannot resolve /proc/self/exe\n");
		return 3;
	}
	b.o.self_exe = exe;
	b.o.progress_tty = !no_progress && isatty(STDERR_FILENO);
	memset(&prog, 0, sizeof(prog));
	prog.b = &b;
	b.log.fn = bench_logger;
	b.log.opaque = &prog;
	b.log.max_level = b.o.verbose ? HM_LOG_INFO : HM_LOG_WARN;
	hm_caps_probe(&b.caps, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND; /* a second ^C ends us at once */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	fprintf(stderr, "hintmig-bench: preset %s, %zu configurations, %zu "
		"runs, %s loopback, %u CPUs\n", b.o.preset, b.ncfgs,
		b.planned, b.o.transport, b.o.ncpus);
	b.started = bench_now();
	b.load_start = bench_loadavg();
	if (b.load_start > 0.5 * b.o.ncpus)
		fprintf(stderr, "hintmig-bench: note: the machine is busy (load "
			"average %.1f on %u CPUs): expect noisy numbers\n",
			b.load_start, b.o.ncpus);
	for (unsigned rep = 0; rep < b.o.reps && !got_signal; rep++) {
		for (size_t ci = 0; ci < b.ncfgs && !got_signal; ci++) {
			struct bench_cfg *cfg = &b.cfgs[ci];
			enum bench_mode order[BENCH_NMODES];
			unsigned nm = 0;
			char err[160] = "";
			double raw, fresh;

			/* modes interleaved; the first one rotates with the
			 * repetition so that no mode always runs first */
			for (unsigned k = 0; k < BENCH_NMODES; k++) {
				unsigned mode = (k + rep) % BENCH_NMODES;

				if (cfg->modes & (1u << mode))
					order[nm++] = (enum bench_mode)mode;
			}
			prog.cfg = cfg;
			prog.run = NULL;
			prog.rep = rep;
			draw_bar(&prog, NULL);
			if (cfg->pin)
				bench_pin_self(true, b.o.ncpus);
			raw = bench_raw_throughput(&b, cfg->channels,
						   b.o.raw_bytes, false, err,
						   sizeof(err));
			if (raw < 0) {
				clear_bar(&prog);
				fprintf(stderr, "!! raw throughput: %s\n", err);
			}
			err[0] = 0;
			fresh = bench_raw_throughput(&b, cfg->channels,
						     b.o.raw_bytes, true, err,
						     sizeof(err));
			if (fresh < 0) {
				clear_bar(&prog);
				fprintf(stderr, "!! raw throughput into fresh "
					"memory: %s\n", err);
			}
			if (cfg->pin)
				bench_unpin_self(b.o.ncpus);
			for (unsigned k = 0; k < nm && !got_signal; k++) {
				struct bench_run *run;
				double rate;

				if (b.nruns == b.cap_runs) {
					size_t n = b.cap_runs ? 2 * b.cap_runs
							      : 64;
					struct bench_run *nr = realloc(
						b.runs, n * sizeof(*nr));

					if (!nr) {
						fprintf(stderr, "out of memory\n");
						return 3;
					}
					b.runs = nr;
					b.cap_runs = n;
				}
				run = &b.runs[b.nruns];
				memset(run, 0, sizeof(*run));
				run->cfg = ci;
				run->mode = order[k];
				run->rep = rep;
				run->seq = (unsigned)b.nruns;
				prog.run = run;
				draw_bar(&prog, NULL);
				bench_run_one(&b, cfg, run, on_tick, &prog);
				if (got_signal) {
					/* cut short by us: not a result */
					clear_bar(&prog);
					fprintf(stderr, "hintmig-bench: run "
						"interrupted, dropped\n");
					break;
				}
				run->raw_bps = raw > 0 ? raw : 0;
				run->fresh_bps = fresh > 0 ? fresh : 0;
				run->cfg_bw = cfg->bandwidth;
				rate = run->raw_bps;
				if (cfg->bandwidth &&
				    (rate <= 0 || (double)cfg->bandwidth < rate))
					rate = (double)cfg->bandwidth;
				run->limit_s = rate > 0 ?
					(double)(run->inuse_pages *
						 run->page_size) / rate : 0;
				b.nruns++;
				prog.done++;
				print_run_line(&prog, run);
				if (run->harness || run->result ||
				    run->mismatches != 0 ||
				    run->dest_status != 0 ||
				    run->guest_check_errors)
					any_bad = true;
			}
		}
	}
	clear_bar(&prog);
	b.elapsed_s = bench_now() - b.started;
	b.load_end = bench_loadavg();
	b.interrupted = got_signal != 0;
	if (b.interrupted)
		fprintf(stderr, "hintmig-bench: interrupted: reporting the %zu "
			"runs done\n", b.nruns);

	bench_print_table(&b, stdout);
	bench_print_headline(&b, stdout);
	if (b.o.json_path) {
		r = bench_write_json(&b, b.o.json_path);
		if (r < 0) {
			fprintf(stderr, "hintmig-bench: %s: %s\n",
				b.o.json_path, strerror(-r));
			any_bad = true;
		} else {
			printf("JSON: %s\n", b.o.json_path);
		}
	}
	if (b.o.plot_path) {
		r = bench_write_svg(&b, b.o.plot_path);
		if (r < 0) {
			fprintf(stderr, "hintmig-bench: %s: %s\n",
				b.o.plot_path, strerror(-r));
			any_bad = true;
		} else {
			printf("plot: %s\n", b.o.plot_path);
		}
	}
	free(b.cfgs);
	free(b.runs);
	if (b.interrupted)
		return 130;
	return any_bad ? 1 : 0;
}

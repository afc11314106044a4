/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig-bench: the standalone precopy benchmark. Shared types of its
 * three parts:
 *   hintmig_bench.c  options, presets, the matrix, the loop, progress
 *   bench_run.c      one measured migration; the destination and the raw
 *                    sink as separate processes; the transport's raw
 *                    throughput (the physical limit)
 *   bench_report.c   medians, the terminal table, --json, --plot (SVG)
 */
#ifndef HM_TOOLS_BENCH_H
#define HM_TOOLS_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#include "fixture/synth.h"

/* Writers as fast as they can: the synthetic guest's pacing does not
 * sleep at all from 1e9 pages/s up. */
#define BENCH_DIRTY_MAX UINT64_C(1000000000)

enum bench_mode {
	BENCH_NONE = 0,
	BENCH_FREE,
	BENCH_ISOLATED,
	BENCH_NMODES
};

extern const char *const bench_mode_names[BENCH_NMODES];
extern const char *const bench_pattern_names[2];

/* One configuration of the matrix; every hint mode in modes is run for
 * it, interleaved, reps times. */
struct bench_cfg {
	char group[32];		/* preset group it came from */
	uint64_t ram;		/* bytes */
	double free_frac;	/* 0..1 */
	uint64_t dirty_rate;	/* page writes/s, 0 idle, BENCH_DIRTY_MAX */
	enum hm_synth_pattern pattern;
	double hot_frac;
	uint64_t churn_rate;	/* alloc+free pairs/s */
	unsigned writers;
	uint64_t bandwidth;	/* bytes/s, 0 unlimited */
	unsigned channels;	/* resolved: >= 1 */
	enum hm_tracker_mode tracker;
	uint64_t track_unit;	/* R12: bytes a fault un-protects, 0 a page */
	bool keep_hot;		/* R11 in the migration (--keep-hot) */
	bool thp;		/* guest RAM on transparent huge pages */
	bool hugetlb;		/* guest RAM from the hugetlb pool */
	bool pin;		/* guest on the last CPU, the rest elsewhere */
	bool tls;		/* every connection in TLS (R18) */
	unsigned modes;		/* 1u << enum bench_mode */
};

/* Settings of the whole benchmark (not axes). */
struct bench_opts {
	const char *preset;
	const char *transport;	/* "tcp" or "unix" */
	unsigned reps;
	unsigned window_ms;	/* write-rate sample before the migration */
	uint64_t raw_bytes;	/* per raw-throughput measurement */
	uint64_t downtime_ms;
	unsigned max_rounds;
	const char *json_path;
	const char *plot_path;
	const char *self_exe;	/* for the helper processes */
	bool progress_tty;	/* draw a progress bar on stderr */
	bool verbose;
	unsigned ncpus;
	const char *tls_dir;	/* x509 of both ends (NULL: /etc/pki/qemu) */
	const char *tls_name;	/* the name the server certificate carries */
};

/* One measured migration. */
struct bench_run {
	size_t cfg;
	enum bench_mode mode;
	unsigned rep;
	unsigned seq;		/* order in which it ran */
	int harness;		/* 0, or -errno: the bench itself failed */
	char error[160];	/* what failed, when anything did */
	int result;		/* hm_migration_run() */
	int dest_status;	/* destination process: exit code, -1 killed */
	long mismatches;	/* hm_migration_verify(), -errno if not run */
	uint64_t checked;
	uint64_t inuse_pages;	/* in use at the pause */
	uint64_t page_size;
	struct hm_migrate_stats st;
	struct hm_dest_stats dst;
	double wall_s;		/* hm_migration_run(), wall clock */
	double active_s;	/* live phase: start until the final round */
	double ack_s;		/* start until the destination's ack:
				 * live phase + downtime */
	double wr_before;	/* guest page writes/s before; < 0 n/a */
	double wr_during;	/* during the live phase; < 0 n/a */
	double wr_tracked;	/* tracker only, no migration; < 0 n/a */
	/* The tracker alone, side by side: [0] as the engine runs it by
	 * default (every written page protected again at every harvest),
	 * [1] pages written in two harvests in a row kept writable (R11,
	 * --keep-hot), [2] every written page kept writable (hot_after 1). Guest writes/s, guest page faults/s (minflt), mean harvest
	 * time, pages reported per harvest; wr < 0 n/a. */
	struct bench_trk {
		double wr, faults_ps, harvest_ms, pages_ph;
	} trk[3];
	double tracker_start_ms; /* of that tracker (protect all RAM) */
	double raw_bps;		/* transport, same run (cfg, rep) */
	double fresh_bps;	/* transport + first touch at the sink */
	uint64_t cfg_bw;	/* the configuration's bandwidth limit */
	double limit_s;		/* in-use bytes / min(raw, bandwidth) */
	uint64_t guest_check_errors;
	uint64_t guest_hint_requests, guest_hint_ranges, guest_acks;
	bool forced;		/* hit max_rounds, stop-and-copy forced */
	double cpu_src_s;	/* the engine's CPU time in the migration */
	double cpu_dst_s;	/* the destination process's CPU time */
	double load1;		/* 1-minute load average as it started */
};

struct bench {
	struct bench_opts o;
	struct bench_cfg *cfgs;
	size_t ncfgs;
	struct bench_run *runs;
	size_t nruns, cap_runs;
	size_t planned;
	double started;		/* monotonic seconds */
	double elapsed_s;
	double load_start, load_end;
	struct hm_log log;
	struct hm_caps caps;
	bool interrupted;
	struct hm_tls_creds *tls;	/* the source's, for cfg.tls */
};

/* ---- bench_run.c ---- */

/* Child process entry points (hidden options of hintmig-bench): the
 * destination and the raw-throughput sink on an inherited listening fd. */
int bench_child_dest(int listen_fd, int report_fd, const char *tls_dir);
int bench_child_sink(int listen_fd, const char *spec);

/* Progress of the migration now running (for the progress bar). */
typedef void (*bench_tick_fn)(void *opaque, const struct hm_migrate_stats *st);

/* Raw throughput in bytes/s of nch streams of the transport to a sink
 * process, moving total bytes in 1 MiB writes. With fresh, the sink also
 * copies what it receives into fresh anonymous memory, as a destination
 * does (first touch of every page). < 0: -errno. */
double bench_raw_throughput(const struct bench *b, unsigned nch,
			    uint64_t total, bool fresh, char *err,
			    size_t errlen);

/* Run one migration of cfg in mode, fill r (cfg/mode/rep set by the
 * caller). Returns 0 when the harness worked (r->result tells the
 * migration's outcome), -errno otherwise. */
int bench_run_one(struct bench *b, const struct bench_cfg *cfg,
		  struct bench_run *r, bench_tick_fn tick, void *opaque);

/* Cancel the migration now running (from another thread). */
void bench_cancel(void);

/* CPU pinning of the tracking-cost configurations: the guest on the last
 * CPU, the engine and destination on the others. */
int bench_pin_self(bool engine_side, unsigned ncpus);
int bench_pin_pid(pid_t pid, unsigned ncpus);
void bench_unpin_self(unsigned ncpus);

double bench_now(void);
/* 1-minute load average (the machine's noise), < 0 unknown. */
double bench_loadavg(void);

/* ---- bench_report.c ---- */

struct bench_agg {
	unsigned n;		/* successful, verified runs */
	unsigned failed;	/* runs that failed or mismatched */
	double med, min, max;
};

/* Statistic of one metric over the runs of (cfg, mode). */
enum bench_metric {
	BM_TIME_MS = 0,
	BM_DOWNTIME_MS,
	BM_SETUP_MS,
	BM_BYTES,
	BM_NORMAL,
	BM_ZERO,
	BM_HINTED,
	BM_EMPTY,
	BM_ROUNDS,
	BM_HINT_REQ,
	BM_HINT_RECV,
	BM_HINT_APPLIED,
	BM_HINT_STALE,
	BM_HINT_REJ,
	BM_WR_BEFORE,
	BM_WR_DURING,
	BM_WR_RATIO,
	BM_WR_TRACKED_RATIO,
	BM_WR_TRACKED_HOT_RATIO,
	BM_TRK_FAULTS_PS,
	BM_TRK_HOT_FAULTS_PS,
	BM_WR_TRACKED_ALL_RATIO,
	BM_TRK_ALL_FAULTS_PS,
	BM_ACK_MS,
	BM_X_LIMIT_ACK,
	BM_RAW_BPS,
	BM_FRESH_BPS,
	BM_FRESH_LIMIT_MS,
	BM_X_FRESH,
	BM_LIMIT_MS,
	BM_X_LIMIT,
	BM_INUSE_BYTES,
	BM_FAULTS,
	BM_WIRE_BPS,		/* bytes on the wire / time to the ack */
	BM_CPU_SRC_GIB,		/* engine CPU s per GiB on the wire */
	BM_CPU_DST_GIB,		/* destination CPU s per GiB */
	BM_NMETRICS
};

void bench_aggregate(const struct bench *b, size_t cfg, enum bench_mode mode,
		     enum bench_metric m, struct bench_agg *out);
/* Mismatching pages and failed runs over (cfg, mode). */
void bench_failures(const struct bench *b, size_t cfg, enum bench_mode mode,
		    unsigned *failed, uint64_t *mismatches);

void bench_cfg_label(const struct bench_cfg *c, char *buf, size_t len);
void bench_print_table(const struct bench *b, FILE *f);
void bench_print_headline(const struct bench *b, FILE *f);
int bench_write_json(const struct bench *b, const char *path);
int bench_write_svg(const struct bench *b, const char *path);

#endif

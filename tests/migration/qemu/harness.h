/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Harness of the QEMU migration tests: a source and a destination QEMU
 * (Debian's qemu-system-x86) running the hm-workload guest, a precopy
 * migration over TCP loopback driven by QMP, a page-by-page comparison of
 * the paused guests' RAM, and a check that the guest lives on. */
#ifndef HM_QEMU_HARNESS_H
#define HM_QEMU_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "proxy.h"
#include "ramcmp.h"

enum hm_balloon {
	HM_BALLOON_NONE,  /* no balloon device */
	HM_BALLOON_PLAIN, /* virtio-balloon-pci, no free page hinting */
	HM_BALLOON_HINT,  /* virtio-balloon-pci,free-page-hint=on + iothread */
	HM_BALLOON_REPORTING, /* virtio-balloon-pci,free-page-reporting=on:
			   * the guest gives free 2 MiB blocks back, QEMU
			   * punches them out of the RAM file */
};

/* The default guest: 512 MiB + 8 KiB of RAM.  NOT a multiple of 256 KiB on
 * purpose: QEMU < 9.0 under TCG loses dirty pages on RAM blocks whose size
 * is a multiple of 256 KiB (docs/qemu-tests.md). */
#define HM_QEMU_DEFAULT_MEM ((512ull << 20) + (8u << 10))

struct hm_scenario {
	const char *name;
	enum hm_balloon balloon;
	int corrupt;              /* migrate through the byte-flipping proxy */
	uint64_t mem_bytes;       /* guest RAM; 0: HM_QEMU_DEFAULT_MEM */
	unsigned fill_mib;        /* filled and freed by the guest */
	unsigned ws_mib;          /* working set, rewritten and verified */
	unsigned static_mib;      /* written once, verified */
	unsigned hot_kib;         /* hot set, rewritten hot_reps times a round */
	unsigned hot_reps;
	uint64_t max_bandwidth;   /* bytes/s (default 256 MiB/s); 0: 1 GiB/s */
	unsigned downtime_ms;     /* 0: QEMU's default (300 ms) */
	unsigned min_syncs;       /* hold the downtime limit at 1 ms until this
				   * many dirty bitmap syncs (default 4); 0:
				   * converge at once */
	unsigned settle_rounds;   /* workload rounds before migrating */
	int compare;              /* dump both RAMs and compare */
	unsigned rounds_after;    /* workload rounds to see on the destination */
	int expect_hint;          /* check that hinting was active */
	/* hintmig moves the RAM: both QEMUs get their RAM from a shared
	 * memory-backend-file on /dev/shm, `hintmig recv --qemu` and
	 * `hintmig send --qemu` run beside them, QEMU moves only the device
	 * state (x-ignore-shared); the two RAM files are compared. */
	int hintmig;
	/* The guest is hm-payload (no Linux) under KVM: for hosts whose KVM
	 * runs small guests but cannot boot a stock kernel (a nested PVM).
	 * The payload speaks the workload's console language. */
	int kvm_payload;
	const char *hm_args;      /* more `hintmig send` options, or NULL */
	int hm_memfd;             /* memory-backend-memfd instead of a file */
	/* MiB of guest RAM that the workload's stand-in hint reporter
	 * reports FREE over virtio-serial (hintmig send --agent); 0: none */
	unsigned hm_hint_mib;
	/* The real hint agent (hintmig-agent) runs in the guest and
	 * hintmig send takes its hints (enum hm_agent_mode). */
	enum hm_agent_mode {
		HM_AGENT_NONE,
		HM_AGENT_ON,		/* with its module: hints */
		HM_AGENT_NO_MODULE,	/* module left out: NOHINTS, no hints,
					 * RAM identical */
		HM_AGENT_DROP_CACHES,	/* with --drop-caches (daemon test) */
		HM_AGENT_PAGE_POISON,	/* guest page_poison=1: R7 refuses */
		HM_AGENT_INIT_ON_FREE,	/* guest init_on_free=1: hints taken */
	} hm_agent;
	/* The stand-in as the test's broken agent (hm.hintlie=N, see
	 * hm-workload.c): 1 lies (stale, out of range, misaligned, flood),
	 * 2 garbage, 3 hints pages the workload still uses. */
	int hm_hint_lie;
	/* No migration. 1: boot the guest with hm.check=agent
	 * (hm-agent-check checks the agent's snapshots inside it) and wait
	 * for its verdict; 2: boot it with the agent running and talk to the
	 * agent as its host (agentprobe.h). */
	int guest_check;
	/* A failure injected into a hintmig migration; the run then checks
	 * that the source guest runs on intact instead of comparing RAM. */
	enum hm_fault {
		HM_FAULT_NONE,
		HM_FAULT_KILL_SEND_ATTACHED,	/* SIGKILL hintmig send after
						 * attach, before tracking */
		HM_FAULT_KILL_SEND_ROUND,	/* ... during round 1 */
		HM_FAULT_KILL_SEND_PRESWITCHOVER, /* ... with QEMU at
						 * pre-switchover */
		HM_FAULT_KILL_DST_QEMU,		/* destination QEMU killed */
		HM_FAULT_KILL_RECV,		/* hintmig recv killed */
		HM_FAULT_DST_MISMATCH,		/* destination QEMU has 4 MiB
						 * more RAM than the source */
	} fault;
	/* A guest hintmig must refuse before anything starts: `hintmig send`
	 * exits 4 with this text in its message, the source runs on. */
	const char *refuse;
	int private_ram;          /* plain -m: no shared memory backend */
	int direct_disk;          /* a virtio-blk disk with cache.direct=on */
	/* hintmig send is pointed at a QMP socket on which a process that
	 * is not QEMU answers (R14: it must refuse it) */
	int impostor;
	/* Random-kill soak (qemu-migbench --soak): SIGKILL this process
	 * soak_delay_ms after hintmig send starts, if send still runs. The
	 * run is then judged by what happened: completed (destination
	 * compared and running) or failed (source intact, R9 included). */
	enum hm_soak_victim {
		HM_SOAK_NONE, HM_SOAK_SEND, HM_SOAK_RECV, HM_SOAK_DST_QEMU,
	} soak_victim;
	unsigned soak_delay_ms;
	/* A rule broken on purpose in hintmig send (HINTMIG_TEST_UNSAFE):
	 * the run passes only if the break is caught, and says where. */
	const char *unsafe;
	/* The same for hintmig recv: "drop-page" drops one received page
	 * before the acknowledgement (the compare must name it) */
	const char *recv_unsafe;
	/* Both QEMUs run as an unprivileged system user the harness creates
	 * (hintmig-qemu-test), as libvirt runs them as libvirt-qemu: they
	 * may not call userfaultfd(2) for kernel faults, and hintmig must
	 * hand one in (R15) and leave nothing behind. */
	int qemu_user;
	/* hintmig's own stream through the damaging proxy (mangle.h: enum
	 * hm_mangle_kind; seeded by mangle_seed): the migration must fail
	 * with a clear error, the source run on, the destination never run */
	int hm_mangle;
	unsigned mangle_seed;
	/* R17: before the real sender, intruders on hintmig's port (one
	 * closes at once, one sends garbage, one answers the challenge with
	 * a wrong proof); each must be dropped and counted, the destination
	 * QEMU's RAM file unchanged by them, and the migration then pass as
	 * a normal one */
	int hm_intruders;
	int hm_tcp;               /* hintmig over TCP loopback, not UNIX */
	/* R18: both ends --tls with test certificates (tls_certs.sh), QEMU's
	 * own stream in TLS too; implies hm_tcp. The run checks that both
	 * said TLS ran and that QEMU holds no TLS settings afterwards. */
	int hm_tls;
	/* Both QEMUs' RAM on hugetlbfs, 1: 2 MiB pages, 2: 1 GiB pages (a
	 * mount of the harness's own, the pool grown for the test and shrunk
	 * again); the guest's RAM rounded up to whole huge pages. */
	int hm_hugetlb;
	unsigned hm_min_rounds;   /* hintmig must have needed this many */
	unsigned hm_min_empty_mib; /* ... and skipped this much as empty */
};

/* Fill the defaults of a scenario (sizes, rounds, compare on). */
void hm_scenario_defaults(struct hm_scenario *s);

struct hm_mig_stats {
	char status[32];
	long long total_ms, downtime_ms, setup_ms;
	long long transferred, total_ram, duplicate, normal, normal_bytes;
	long long dirty_sync_count, skipped;
	long long hint_rejected, hint_stale; /* hintmig's hints counters */
	long long hint_session_max, hint_apply_us; /* R13's measures */
	double mbps;
};

struct hm_guest_log {
	int ready;
	long long last_round;     /* highest round number reported */
	long long rounds;         /* round lines seen */
	long long failed_rounds;
	long long mem_total_kib, mem_free_kib; /* /proc/meminfo at ready */
	long long errors;         /* ERROR lines and kernel panics */
	char first_error[256];
	int check;                /* hm-agent-check: 1 PASS, -1 FAIL, 0 not yet */
	char check_line[256];     /* its verdict line */
	long long agent_epochs;   /* hintmig-agent's answer lines */
	long long lost_hint_lines; /* "ERROR hint region page" lines */
	long long agent_resyncs, agent_drops; /* agent: resync, cache drop */
	char agent_last[320];     /* the last of them */
};

struct hm_run_result {
	char accel[8];            /* "kvm" or "tcg" */
	uint64_t ram_size;        /* as QEMU reports it */
	int qemu_major, qemu_minor, qemu_micro;
	struct hm_mig_stats mig;
	int hm_send_rc, hm_recv_rc; /* exit codes of hintmig send / recv */
	long long hm_qemu_downtime_ms, hm_device_bytes; /* QEMU's own part */
	long long hm_rounds, hm_skipped_empty; /* from hintmig's summary */
	long long hm_tracker_faults;	/* write faults the tracker saw */
	long long hm_wall_ms;     /* hintmig send, start to exit */
	long long in_use_kib;     /* guest's MemTotal - MemFree at ready */
	int fault_recovered;      /* fault runs: source running, intact */
	long long converge_at_sync; /* sync count when converging was allowed */
	int migrated;             /* source said "completed" */
	int dst_paused;           /* destination reached "paused" */
	int compared;
	struct hm_ramcmp cmp;
	int pattern_found;        /* the proxy's target page seen on the source */
	struct hm_guest_log src_log, dst_log;
	int dst_alive;            /* destination guest ran rounds_after rounds */
	struct hm_proxy_stats proxy;
	double boot_s, migrate_s, compare_s, after_s, total_s;
	/* What the migration cost (docs/qemu-tests.md): CPU time of hintmig
	 * send and recv (their rusage), and of each QEMU apart from its vCPU
	 * threads, over the migration; the source guest's workload rounds
	 * per second in the second before it and during it (downtime
	 * included; from the console, so to a report interval, 200 ms). */
	double hm_send_cpu_ms, hm_recv_cpu_ms;
	char hm_tls_path[200];    /* hintmig send's "tls" (R18), or "" */
	double src_qemu_cpu_ms, dst_qemu_cpu_ms;
	double guest_rounds_ps_before, guest_rounds_ps_during;
	int soak_killed;          /* the soak's victim was killed */
	int soak_dst_lost;        /* ... the destination QEMU, after QEMU
				   * had completed the migration: the RAM
				   * files are compared, nothing runs on */
	uint64_t dropped_offset;  /* recv_unsafe drop-page: the page, or
				   * UINT64_MAX if hintmig recv named none */
	char failure[512];        /* why the run could not go on, or "" */
};

/* Run one scenario.  Returns 0 when it ran to the end (the verdict is
 * hm_verdict's), -1 when it stopped early (result->failure says why; a
 * failed migration is such a case). */
int hm_run(const struct hm_scenario *s, struct hm_run_result *r);

/* The checks of a normal test: migration completed, RAM compare clean
 * (identical; with hinting, differences only where the destination page is
 * zero), guest alive with no checksum error on either side, and with
 * expect_hint, hinting visibly active.  0 if all hold, else -1 and why. */
int hm_verdict(const struct hm_scenario *s, const struct hm_run_result *r,
	       char *why, size_t len);

/* Print a summary of a run (stats, compare, guest). */
void hm_print_result(const struct hm_scenario *s,
		     const struct hm_run_result *r);

/* Print the tails of the serial consoles and QEMU logs of the last run. */
void hm_print_logs(void);

/* The proxy's target: static page 3 of hm-workload starts with this. */
#define HM_CORRUPT_PAGE_INDEX 3u
#define HM_CORRUPT_BYTE 1000u
#define HM_CORRUPT_MASK 0x01u
size_t hm_corrupt_pattern(unsigned char *buf, size_t len);

/* Environment knobs (documented in docs/qemu-tests.md). */
int hm_env_flag(const char *name);

/* The version of the QEMU the tests run (HM_QEMU or the configured one),
 * from its --version line: 0, or -1 if it cannot be read. */
int hm_qemu_binary_version(int *major, int *minor);

/* The bound on QEMU's own stream in a run where hintmig moves the RAM:
 * device state, firmware and VRAM blocks. More means QEMU migrated the
 * guest RAM itself (x-ignore-shared did not leave it out). */
#define HM_QEMU_DEVICE_MAX (16ll << 20)

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig recv: the destination of a migration. Listens on ADDR, receives
 * one migration into fresh memory (or into --ram-file, or into the guest
 * RAM of a destination QEMU waiting with -incoming defer: --qemu),
 * acknowledges it, serves the source's verification requests, and exits
 * (with --qemu, once QEMU has loaded the device state; with --libvirt, at
 * once, libvirt's started hook waiting for it: docs/libvirt.md).
 *
 * Exit status: 0 completed, 2 usage, 3 the migration failed or was
 * aborted by the source, 4 setup (cannot open the RAM file, ...), 5 with
 * --libvirt: the QEMU is not waiting for a migration (an ordinary start).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hintmig/hintmig.h>
#include <hintmig/migrate.h>

#include "hm_config.h"
#include "cmd.h"
#include "migrate/wire/auth.h"
#include "parse.h"
#if HM_HAVE_JSONC
#include "migrate/guests/qemu/qemu.h"
#endif

/* MemAvailable in bytes (the standalone receiver's default limit), or 0
 * (the engine's default) when unknown. */
static uint64_t mem_available(void)
{
	char line[128];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb << 10;
}

static void recv_usage(FILE *f)
{
	fprintf(f,
		"Usage: hintmig recv --listen ADDR [--ram-file PATH] "
		"[--fill auto|uffd|write] [--io-timeout MS] [--quiet] "
		"[--verbose]\n"
		"   or: hintmig recv --qemu QMP_SOCKET --listen ADDR "
		"[--qemu-uri URI | --libvirt] [options]\n"
		"  --listen ADDR    where the source connects: unix:PATH or "
		"tcp:HOST:PORT\n"
		"  --key-file FILE  the migration's secret, the same as the "
		"sender's: a\n"
		"                   connection that cannot prove it is dropped "
		"and counted,\n"
		"                   and the real sender waited for (mode "
		"0600, or /dev/fd/N,\n"
		"                   a descriptor handed down)\n"
		"  --insecure       allow TCP without --key-file or --tls\n"
		"  --tls            TLS on every connection: only a source "
		"whose certificate\n"
		"                   the CA signed is accepted (docs/protocol.md "
		"\"TLS\")\n"
		"  --tls-dir DIR    ca-cert.pem, server-cert.pem, server-key.pem "
		"(default\n"
		"                   /etc/pki/qemu, libvirt's; implies --tls)\n"
		"  --hello-timeout MS  a connection must prove the key within "
		"this\n"
		"                   (default 3000)\n"
		"  --max-ram SIZE   refuse a guest with more RAM (default: "
		"MemAvailable;\n"
		"                   --qemu: the QEMU's own RAM)\n"
		"  --qemu QMP_SOCKET  receive into the guest RAM of this QEMU "
		"(started with\n"
		"                   -incoming defer and the source's machine "
		"and devices)\n"
		"  --qemu-uri URI   where this QEMU listens for the source "
		"QEMU's device state\n"
		"                   (default: ADDR's port + 1, or its path + "
		"\".qemu\")\n"
		"  --libvirt        libvirt migrates the device state (the "
		"started hook of\n"
		"                   hintmig migrate, docs/libvirt.md): exit "
		"once the RAM is\n"
		"                   acknowledged, a child turns x-ignore-shared "
		"off afterwards\n"
		"  --expect-pid PID the QEMU's pid (its pidfile): refuse any "
		"other process\n"
		"                   on the QMP socket (any QEMU otherwise)\n"
		"  --ready-fd FD    write a byte to FD and close it once "
		"listening (after\n"
		"                   --qemu's checks)\n"
		"  --accept-timeout MS  give up when no source connects for "
		"this long\n"
		"  --ram-file PATH  receive into this file (created, sized to "
		"the guest RAM)\n"
		"  --fill MODE      how pages land in fresh memory: uffd "
		"(UFFDIO_COPY,\n"
		"                   no clearing of new pages), write (into "
		"place), auto\n"
		"                   (uffd when the kernel allows it; "
		"default)\n"
		"  --io-timeout MS  give up when the source sends nothing for "
		"this long\n"
		"  --quiet, --verbose  less or more of the engine's log\n"
		"  --help           this text\n"
		"  --version        the version\n"
		"exit status: 0 completed, 2 usage, 3 migration failed, "
		"4 setup error,\n"
		"5 (--libvirt) QEMU is not waiting for a migration\n");
}

#if HM_HAVE_JSONC
/* libvirt mode: a child in a session of its own, its output to stderr's
 * file only if that is not a pipe (libvirt reads a hook's output until
 * EOF: a child holding the pipe would hold the hook), waits until QEMU
 * has loaded the device state (or the migration ended otherwise) and
 * detaches, which turns x-ignore-shared off. 0 or -errno. */
static int watch_incoming(struct hm_qemu *q, bool quiet)
{
	struct stat st;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid > 0)
		return 0;
	setsid();
	for (int fd = 0; fd <= 2; fd++) {
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
			continue;
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (nul >= 0) {
			dup2(nul, fd);
			close(nul);
		}
	}
	if (hm_qemu_wait_incoming(q, 600000) == 0 && !quiet)
		printf("destination QEMU %d: migration completed\n",
		       (int)hm_qemu_pid(q));
	fflush(NULL);
	hm_qemu_detach(q);
	_exit(0);
}
#endif

#if HM_HAVE_JSONC
/* Test hook (HINTMIG_TEST_UNSAFE=drop-page, docs/qemu-tests.md): before
 * the acknowledgement, drop one page the destination received, the first
 * holding data from 16 MiB on (a hole punched in the RAM file: it reads
 * as zeros), and say which. The page compare must catch it: it was sent,
 * so it is in no hinted map. */
struct drop_page {
	struct hm_qemu *q;
	bool armed;
};

static int drop_one_page(int fd)
{
	static char page[4096];
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	for (off_t off = 16 << 20; off + 4096 <= st.st_size; off += 4096) {
		bool data = false;

		if (pread(fd, page, sizeof(page), off) != (ssize_t)sizeof(page))
			return -EIO;
		for (size_t i = 0; i < sizeof(page) && !data; i++)
			data = page[i] != 0;
		if (!data)
			continue;
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      off, 4096) < 0)
			return -errno;
		fprintf(stderr, "hintmig recv: UNSAFE (test): dropped the "
			"received page at offset 0x%llx\n",
			(unsigned long long)off);
		return 0;
	}
	return -ENOENT;
}

static int before_ack(void *opaque)
{
	struct drop_page *dp = opaque;
	int r = hm_qemu_check_not_loaded(dp->q);

	if (r == 0 && dp->armed)
		r = drop_one_page(hm_qemu_ram_fd(dp->q));
	return r;
}
#endif

int hm_cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "ram-file", required_argument, NULL, 'f' },
		{ "io-timeout", required_argument, NULL, 't' },
		{ "fill", required_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "qemu", required_argument, NULL, 'Q' },
		{ "qemu-uri", required_argument, NULL, 'U' },
		{ "libvirt", no_argument, NULL, 'L' },
		{ "accept-timeout", required_argument, NULL, 'A' },
		{ "expect-pid", required_argument, NULL, 'P' },
		{ "key-file", required_argument, NULL, 'K' },
		{ "insecure", no_argument, NULL, 'I' },
		{ "max-ram", required_argument, NULL, 'M' },
		{ "hello-timeout", required_argument, NULL, 'H' },
		{ "tls", no_argument, NULL, 'T' },
		{ "tls-dir", required_argument, NULL, 'D' },
		{ "ready-fd", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct hm_log log = { .fn = hm_log_stderr,
			      .max_level = HM_LOG_WARN };
	struct hm_dest_params p;
	struct hm_dest_stats st;
	struct hm_dest *d = NULL;
	const char *listen = NULL, *ram_file = NULL, *qemu = NULL;
	const char *qemu_uri = NULL;
#if HM_HAVE_JSONC
	struct hm_qemu *q = NULL;
	struct drop_page dp = { 0 };
	char quri[300];
#endif
	bool quiet = false, libvirt = false, insecure = false, tls = false;
	const char *key_file = NULL, *tls_dir = NULL;
	struct hm_tls_creds *tls_creds = NULL;
	struct hm_auth_key key;
	uint64_t expect_pid = 0, ready_fd = UINT64_MAX;
	int ram_fd = -1, ret = 2, c, r;

	memset(&p, 0, sizeof(p));
	p.ram_fd = -1;
	p.io_timeout_ms = 30000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:f:t:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'f':
			ram_file = optarg;
			break;
		case 't':
			if (hm_parse_uint(optarg, UINT64_MAX, &p.io_timeout_ms)
			    || !p.io_timeout_ms) {
				fprintf(stderr, "hintmig recv: bad --io-timeout"
						" '%s'\n", optarg);
				goto out;
			}
			break;
		case 'F':
			if (!strcmp(optarg, "auto")) {
				p.fill = HM_DEST_FILL_AUTO;
			} else if (!strcmp(optarg, "uffd")) {
				p.fill = HM_DEST_FILL_UFFD;
			} else if (!strcmp(optarg, "write")) {
				p.fill = HM_DEST_FILL_WRITE;
			} else {
				fprintf(stderr, "hintmig recv: bad --fill '%s'"
					" (auto, uffd or write)\n", optarg);
				goto out;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'Q':
			qemu = optarg;
			break;
		case 'U':
			qemu_uri = optarg;
			break;
		case 'L':
			libvirt = true;
			break;
		case 'R':
			if (hm_parse_uint(optarg, INT32_MAX, &ready_fd) ||
			    ready_fd < 3) {
				fprintf(stderr, "hintmig recv: bad --ready-fd "
					"'%s'\n", optarg);
				goto out;
			}
			break;
		case 'P':
			if (hm_parse_uint(optarg, INT32_MAX, &expect_pid) ||
			    !expect_pid) {
				fprintf(stderr, "hintmig recv: bad "
					"--expect-pid '%s'\n", optarg);
				goto out;
			}
			break;
		case 'A':
			if (hm_parse_uint(optarg, UINT64_MAX,
					  &p.accept_timeout_ms) ||
			    !p.accept_timeout_ms) {
				fprintf(stderr, "hintmig recv: bad "
					"--accept-timeout '%s'\n", optarg);
				goto out;
			}
			break;
		case 'K':
			key_file = optarg;
			break;
		case 'I':
			insecure = true;
			break;
		case 'T':
			tls = true;
			break;
		case 'D':
			tls = true;
			tls_dir = optarg;
			break;
		case 'H':
			if (hm_parse_uint(optarg, UINT64_MAX,
					  &p.hello_timeout_ms) ||
			    !p.hello_timeout_ms) {
				fprintf(stderr, "hintmig recv: bad "
					"--hello-timeout '%s'\n", optarg);
				goto out;
			}
			break;
		case 'M':
			if (hm_parse_size(optarg, &p.max_ram_bytes) ||
			    !p.max_ram_bytes) {
				fprintf(stderr, "hintmig recv: bad --max-ram "
					"'%s'\n", optarg);
				goto out;
			}
			break;
		case 'v':
			log.max_level = HM_LOG_DEBUG;
			break;
		case 'h':
			recv_usage(stdout);
			ret = 0;
			goto out;
		case 'V':
			ret = hm_print_version("hintmig recv");
			goto out;
		default:
			recv_usage(stderr);
			goto out;
		}
	}
	if (!listen || optind != argc) {
		recv_usage(stderr);
		goto out;
	}
	if ((qemu && ram_file) || ((qemu_uri || libvirt) && !qemu) ||
	    (qemu_uri && libvirt)) {
		fprintf(stderr, "hintmig recv: --qemu receives into QEMU's own "
			"RAM (no --ram-file); --qemu-uri and --libvirt go "
			"with --qemu, not together\n");
		goto out;
	}
	if (hm_cli_key("hintmig recv", listen, key_file, insecure, tls, &key))
		goto out;
	p.auth_key = key.k;
	p.auth_key_len = key.len;
	if (tls && hm_cli_tls("hintmig recv", tls_dir, true, &tls_creds)) {
		ret = 4;
		goto out;
	}
	p.tls = tls_creds;
	if (!p.max_ram_bytes && !qemu)
		p.max_ram_bytes = mem_available();
	if (quiet)
		log.max_level = HM_LOG_ERROR;
	else if (qemu && log.max_level < HM_LOG_INFO)
		log.max_level = HM_LOG_INFO;
	ret = 4;
	if (qemu) {
#if HM_HAVE_JSONC
		struct hm_qemu_opts qo = { .qmp_path = qemu, .source = false,
					   .expect_pid = (pid_t)expect_pid,
					   .qemu_uri = qemu_uri,
					   .libvirt = libvirt,
					   .tls_dir = hm_tls_creds_dir(tls_creds) };

		if (!qo.qemu_uri && !libvirt) {
			if (hm_qemu_default_uri(listen, quri, sizeof(quri))) {
				fprintf(stderr, "hintmig recv: no default "
					"--qemu-uri for %s\n", listen);
				goto out;
			}
			qo.qemu_uri = quri;
		}
		q = hm_qemu_attach(&qo, &log);
		if (!q && libvirt && errno == EBUSY) {
			/* libvirt's hook on an ordinary start */
			fprintf(stderr, "hintmig recv: QEMU at %s is not "
				"waiting for a migration: nothing to receive\n",
				qemu);
			ret = 5;
			goto out;
		}
		if (!q || hm_qemu_incoming(q) < 0) {
			fprintf(stderr, "hintmig recv: cannot receive into the "
				"QEMU at %s: %s\n", qemu,
				strerror(q ? EIO : errno));
			goto out;
		}
		p.ram_fd = hm_qemu_ram_fd(q);
		p.ram_fd_fixed = true;
		p.expect_blocks = hm_qemu_blocks(q, &p.n_expect_blocks);
		dp.q = q;
		dp.armed = getenv("HINTMIG_TEST_UNSAFE") &&
			   !strcmp(getenv("HINTMIG_TEST_UNSAFE"), "drop-page");
		p.before_ack = before_ack;
		p.before_ack_opaque = &dp;
		if (!quiet)
			fprintf(stderr, "hintmig recv: QEMU %d waits for its "
				"device state %s%s\n", (int)hm_qemu_pid(q),
				libvirt ? "from libvirt" : "on ",
				libvirt ? "" : qo.qemu_uri);
#else
		fprintf(stderr, "hintmig recv: --qemu: built without json-c "
			"(QMP)\n");
		goto out;
#endif
	}
	if (ram_file) {
		ram_fd = open(ram_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (ram_fd < 0) {
			fprintf(stderr, "hintmig recv: %s: %s\n", ram_file,
				strerror(errno));
			goto out;
		}
		p.ram_fd = ram_fd;
	}
	d = hm_dest_new(&p, &log);
	if (!d) {
		fprintf(stderr, "hintmig recv: %s\n", strerror(errno));
		goto out;
	}
	if (!quiet)
		fprintf(stderr, "hintmig recv: listening on %s\n", listen);
	if (ready_fd != UINT64_MAX) {
		/* the caller (libvirt's hook) may now have the source send */
		if (write((int)ready_fd, "1", 1) != 1)
			fprintf(stderr, "hintmig recv: --ready-fd: %s\n",
				strerror(errno));
		close((int)ready_fd);
	}
	r = hm_dest_run(d, listen);
	hm_dest_get_stats(d, &st);
	if (r < 0) {
		fprintf(stderr, "hintmig recv: migration failed: %s\n",
			strerror(-r));
		ret = 3;
		goto out;
	}
	if (!quiet)
		printf("received: %" PRIu64 " pages with data, %" PRIu64
		       " zero pages, %" PRIu64 " bytes, %" PRIu64
		       " rounds, %u channels, device state %" PRIu64
		       " bytes; %s fill (%" PRIu64 " pages placed)\n",
		       st.pages_received, st.zero_pages, st.bytes_received,
		       st.rounds, st.channels, st.device_state_len,
		       st.fill == HM_DEST_FILL_UFFD ? "uffd" : "write",
		       st.placed_pages);
	if (!quiet && st.tls_path[0])
		printf("TLS: %s\n", st.tls_path);
	if (!quiet && st.refused_connections)
		printf("refused connections: %" PRIu64 "\n",
		       st.refused_connections);
#if HM_HAVE_JSONC
	if (q && libvirt) {
		/* libvirt's started hook waits for this process: return now,
		 * so that the source's libvirt sends `migrate`; a child
		 * waits for QEMU to load the device state and turns
		 * x-ignore-shared off again. */
		fflush(NULL);
		hm_dest_free(d);
		d = NULL;
		if (watch_incoming(q, quiet) < 0)
			fprintf(stderr, "hintmig recv: cannot fork the "
				"watcher: x-ignore-shared stays on in QEMU "
				"%d\n", (int)hm_qemu_pid(q));
		q = NULL;	/* the watcher's now */
		ret = 0;
		goto out;
	}
	/* The RAM is complete and acknowledged (R8) and nothing of ours
	 * writes it any more: QEMU loads the device state now. */
	if (q && hm_qemu_wait_incoming(q, 300000) < 0) {
		fprintf(stderr, "hintmig recv: the destination QEMU did not "
			"load the device state\n");
		ret = 3;
		goto out;
	}
	if (q && !quiet)
		printf("destination QEMU %d: migration completed\n",
		       (int)hm_qemu_pid(q));
#endif
	ret = 0;
out:
	hm_dest_free(d);
	hm_tls_creds_free(tls_creds);
#if HM_HAVE_JSONC
	hm_qemu_detach(q);
#endif
	if (ram_fd >= 0)
		close(ram_fd);
	return ret;
}

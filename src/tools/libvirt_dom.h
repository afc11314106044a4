/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What hintmig's libvirt commands (cmd_libvirt.c: check, hook;
 * cmd_migrate.c: migrate) read of a libvirt domain, and where hintmig's
 * own QMP monitor of its QEMU is. docs/libvirt.md. */
#ifndef HM_TOOLS_LIBVIRT_DOM_H
#define HM_TOOLS_LIBVIRT_DOM_H

#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "hm_config.h"
#include "daemon/ctl.h"

/* The emulator wrapper: QEMU with one more QMP monitor, in QEMU's HOME
 * (libvirt sets HOME to the domain's directory, HM_LV_LIBDIR/domain-ID-
 * NAME). */
#define HM_LV_WRAPPER "hintmig-qemu"
#define HM_LV_WRAPPER_PATH HM_LIBEXECDIR "/" HM_LV_WRAPPER
#define HM_LV_QMP_NAME "hintmig.qmp"
#define HM_LV_LIBDIR "/var/lib/libvirt/qemu"
#define HM_LV_LOGDIR "/var/log/libvirt/qemu"
#define HM_LV_RUNDIR "/run/libvirt/qemu"	/* NAME.pid, root's */
/* the package's AppArmor snippet, in every domain profile (R15) */
#define HM_LV_APPARMOR "/etc/apparmor.d/abstractions/libvirt-qemu.d/hintmig"
/* hintmig's RAM stream: a port of these per migration, above libvirt's
 * migration range (49152-49215) */
#define HM_LV_PORT_LO 49300
#define HM_LV_PORT_HI 49399
/* hintmig migrate's metadata in the destination's domain XML */
#define HM_LV_NS "http://hintmig.org/xmlns/libvirt/migration/1"

struct hm_lv_dom {
	int id;			/* -1: not running */
	char *name;
	char *agent_sock;	/* NULL: no hint agent channel */
	int missing, refused, notes;	/* hintmig libvirt check's verdict */
	/* hintmig migrate's metadata (destination XML), NULL/0 when absent */
	char *mig_listen;
	char *mig_key;		/* hex: the migration's key (R17) */
	bool mig_tls;		/* the source sends in TLS (R18) */
	unsigned mig_timeout_s;
	long long mig_expires;	/* epoch seconds */
	char *uuid;
	/* hintmigd's live metadata (R19): the source host's hintmigd, and
	 * the name its certificate carries; NULL when absent */
	char *src_hintmigd, *src_hintmigd_name;
};

/* libvirt's qemu hook (lv_hook.c): hintmig libvirt hook NAME OP SUBOP
 * EXTRA, the domain XML on stdin. */
int hm_lv_hook(int argc, char **argv);

/* Parse a domain XML and check it for the QEMU version qemu_ver
 * (libvirt's encoding, major * 1000000 + minor * 1000 + micro; 0 when
 * unknown), the check's lines printed to report (NULL: not printed).
 * 0, or -EINVAL (not XML). */
int hm_lv_dom_read(const char *xml, unsigned long qemu_ver, FILE *report,
		   struct hm_lv_dom *d);
void hm_lv_dom_fini(struct hm_lv_dom *d);

/* libvirt's QEMU driver configuration (/etc/libvirt/qemu.conf as this
 * mount namespace sees it) */
#define HM_LV_QEMU_CONF "/etc/libvirt/qemu.conf"
/* The value of a "key = value" setting of a libvirt configuration file
 * (quotes removed; comments and other lines skipped) into out. 0, or
 * -ENOENT (no such setting, or no file). */
int hm_lv_conf_get(const char *path, const char *key, char *out,
		   size_t len);
/* The x509 directory of libvirt's migration TLS, as libvirt takes it:
 * migrate_tls_x509_cert_dir, else default_tls_x509_cert_dir, else
 * /etc/pki/qemu. */
void hm_lv_tls_dir(const char *conf, char *out, size_t len);

/* Path of hintmig's QMP socket for the running domain with this id, as
 * seen from this mount namespace. 0, -ENOENT, -EEXIST (several). */
int hm_lv_qmp_path(int id, char *out, size_t len);

/* The pid of the running domain name's QEMU from libvirt's pidfile
 * (HM_LV_RUNDIR/NAME.pid, written by root): the process hintmig may act on
 * (R14). The pid, or -errno. */
pid_t hm_lv_qemu_pid(const char *name);

/* Run this program again (/proc/self/exe) with argv (argv[0] "hintmig",
 * NULL-terminated; an argument "/proc/self/fd/N" keeps descriptor N open
 * in the child), its stdout and stderr on out_fd when >= 0, sent
 * pdeathsig (0: none) when the calling thread ends: the hook's receiver,
 * the senders of hintmig migrate and hintmigd. The child's pid, or
 * -errno. */
pid_t hm_lv_spawn_self(const char *const argv[], int out_fd, int pdeathsig);

/* This host's name as its certificates carry it (and libvirt names a
 * migration's destination): its host name, fully qualified where the
 * resolver knows it. */
void hm_lv_host_name(char *out, size_t len);

/* A file that only this process and the children hm_lv_spawn_self starts
 * can name, and that nothing leaves behind: a memfd (0600, CLOEXEC) as
 * path "/proc/self/fd/N", the same path in such a child (it keeps the
 * descriptors its argv names). text (NULL: empty) is written and sealed:
 * a migration's key (R17) for the sender or the receiver; an empty one
 * takes the sender's --json summary. 0, or -errno. */
struct hm_lv_fdfile {
	int fd;
	char path[32];		/* "": not open */
};
int hm_lv_fdfile_open(struct hm_lv_fdfile *f, const char *name,
		      const char *text);
void hm_lv_fdfile_close(struct hm_lv_fdfile *f);

/* hintmig send --libvirt for a domain (hintmig migrate, hintmigd). */
struct hm_lv_send_opts {
	const char *qmp;	/* hintmig's monitor of the domain's QEMU */
	const char *to;		/* the destination's receiver */
	const char *agent;	/* the agent's socket; NULL: no hints */
	pid_t qemu_pid;		/* libvirt's pidfile (R14); <= 0 unknown */
	const char *key_file;	/* R17 */
	const char *tls_dir;	/* R18; NULL: no TLS */
	const char *tls_name;	/* the receiver's certificate name */
	const char *json, *hinted_map;	/* NULL: none */
	unsigned long bandwidth_mib;
	unsigned timeout_s;	/* to connect */
	bool verbose;
};
pid_t hm_lv_start_sender(const struct hm_lv_send_opts *o, int out_fd,
			 int pdeathsig);
/* Its summary from its --json file: "X MiB of Y MiB RAM (N hinted pages
 * skipped)", with detail also its rounds and TLS path; "no summary"
 * when the file has none (cmd_migrate.c: json-c). */
void hm_lv_send_summary(const char *json, bool detail, char *out,
			size_t len);

#endif

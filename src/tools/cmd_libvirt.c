/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig libvirt check DOMAIN: is this libvirt domain set up for hintmig?
 * Reads the domain's XML through libvirt's C API (read-only connection)
 * and checks what docs/libvirt.md asks for: shared RAM that hintmig can
 * read and fill, hintmig's second QMP monitor (the hintmig-qemu emulator
 * wrapper), hintmig-agent's channel, and nothing that writes guest RAM
 * behind the tracker's back (R10); for a running domain, the QEMU user,
 * mount namespace and AppArmor confinement and what hintmig needs for them
 * (R15). Says what to add where something is missing.
 *
 * hintmig libvirt hook NAME OP SUBOP EXTRA: libvirt's qemu hook (installed
 * as /etc/libvirt/hooks/qemu.d/50-hintmig). On "started" of a domain whose
 * XML carries hintmig migrate's metadata and whose QEMU waits for an
 * incoming migration, it runs hintmig recv --libvirt into that QEMU and
 * returns when the RAM is complete: libvirt runs this hook synchronously
 * after migrate-incoming and before the source's `migrate`
 * (docs/libvirt.md). Everything else: exit 0 at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <hintmig/migrate.h>

#include "cmd.h"
#include "libvirt_dom.h"
#include "migrate/wire/auth.h"
#include "parse.h"

#define AGENT_PORT "org.hintmig.agent.0"

enum { EXIT_READY = 0, EXIT_NOT_READY = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

static void usage(FILE *f)
{
	fputs("Usage: hintmig libvirt check [--connect URI] DOMAIN\n"
"   or: hintmig libvirt hook NAME OP SUBOP EXTRA < DOMAIN_XML\n"
"check: is a libvirt domain set up for hintmig migrate (docs/libvirt.md):\n"
"shared RAM (memfd or file), hintmig's QMP monitor (the emulator wrapper\n"
"hintmig-qemu), hintmig-agent's channel, and no device that writes guest\n"
"RAM behind hintmig's back. Prints what to add if not.\n"
"hook: libvirt's qemu hook (/etc/libvirt/hooks/qemu.d/50-hintmig): on the\n"
"destination of hintmig migrate, receives the guest RAM into the new QEMU\n"
"before libvirt lets the source send the device state.\n"
"  -c, --connect URI  the libvirt connection (default: libvirt's default)\n"
"  --version          the version\n"
"  -h, --help         this text\n"
"Exit status (check): 0 ready, 1 not ready (the reasons are printed),\n"
"2 usage, 3 libvirt or XML error. hook: 0, or the receiver's failure.\n",
	      f);
}

/* The string value of an XPath expression, or NULL (caller frees). */
static char *xp_str(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
	char *s = NULL;

	if (o && o->type == XPATH_STRING && o->stringval && o->stringval[0])
		s = strdup((const char *)o->stringval);
	xmlXPathFreeObject(o);
	return s;
}

static double xp_num(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
	double v = o && o->type == XPATH_NUMBER ? o->floatval : 0;

	xmlXPathFreeObject(o);
	return v;
}

struct verdict {
	int missing;	/* needed and absent: not ready */
	int refused;	/* present and unsafe: not ready */
	int notes;
};

static void ok(FILE *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void ok(FILE *f, const char *fmt, ...)
{
	va_list ap;

	fputs("ok       ", f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

/* Check the domain XML. */
static void check_xml(xmlXPathContextPtr x, unsigned long qemu_ver,
		      struct verdict *v, FILE *f)
{
	char *emu = xp_str(x, "string(/domain/devices/emulator)");
	const char *base = emu ? strrchr(emu, '/') : NULL;
	char *src = xp_str(x, "string(/domain/memoryBacking/source/@type)");
	char *acc = xp_str(x, "string(/domain/memoryBacking/access/@mode)");
	char *sock;
	bool huge = xp_num(x, "count(/domain/memoryBacking/hugepages)") > 0;
	bool named_only, shared;
	double n;

	/* RAM. QEMU >= 8.1's x-ignore-shared leaves out only RAM in a named
	 * file: memfd there would be migrated by QEMU a second time (the
	 * receiver refuses it). qemu_ver 0: unknown, the file advised. */
	named_only = !qemu_ver || qemu_ver >= 8001000;
	shared = acc && !strcmp(acc, "shared");
	if (shared && src && !strcmp(src, "memfd") && named_only) {
		v->missing++;
		fprintf(f, "MISSING  RAM in a named file: QEMU %s migrates "
			"memfd RAM itself even with x-ignore-shared. In "
			"<memoryBacking> use\n"
			"             <source type='file'/>\n"
			"             <access mode='shared'/>\n"
			"         with memory_backing_dir in qemu.conf on a "
			"tmpfs (e.g. \"/dev/shm/libvirt-ram\"), or "
			"<hugepages/>\n", qemu_ver ? "8.1 and later" : "(version "
			"unknown)");
	} else if (shared &&
		   ((src && (!strcmp(src, "memfd") || !strcmp(src, "file"))) ||
		    huge)) {
		ok(f, "RAM: shared (%s): hintmig can read and fill it",
		   huge ? "hugepages" : src);
	} else {
		v->missing++;
		fprintf(f, "MISSING  RAM that hintmig can read and fill: add to "
		       "<domain>\n"
		       "           <memoryBacking>\n"
		       "             <source type='%s'/>\n"
		       "             <access mode='shared'/>\n"
		       "           </memoryBacking>\n%s",
		       named_only ? "file" : "memfd",
		       named_only ? "         with memory_backing_dir in "
				    "qemu.conf on a tmpfs (e.g. \"/dev/shm/"
				    "libvirt-ram\"): QEMU 8.1 and later skip "
				    "only RAM in a named file\n"
				  : "         (QEMU 7.2; on 8.1 and later "
				    "source type='file' with memory_backing_dir "
				    "on a tmpfs)\n");
	}
	free(src);
	free(acc);

	/* hintmig's own QMP monitor, beside libvirt's */
	base = base ? base + 1 : emu;
	if (base && !strcmp(base, HM_LV_WRAPPER)) {
		ok(f, "emulator %s: QEMU gets hintmig's QMP monitor", emu);
	} else {
		v->missing++;
		fprintf(f, "MISSING  hintmig's QMP monitor (libvirt holds "
			"QEMU's own): in <devices> set\n"
			"           <emulator>" HM_LV_WRAPPER_PATH "</emulator>\n"
			"         (it runs %s with one more -qmp socket), then "
			"restart the domain\n", emu ? emu : "QEMU");
	}
	free(emu);

	/* the agent's channel */
	sock = xp_str(x, "string(/domain/devices/channel[@type='unix']"
			 "[target/@type='virtio'][target/@name='" AGENT_PORT
			 "']/source/@path)");
	if (sock) {
		ok(f, "hint agent channel " AGENT_PORT ": hintmig send --agent %s",
		   sock);
	} else {
		v->notes++;
		fprintf(f, "note     no hint agent channel: the migration will send "
		       "every page (no hints). Add to <devices>\n"
		       "           <channel type='unix'>\n"
		       "             <source mode='bind' path='/run/hintmig/"
		       "DOMAIN-agent.sock'/>\n"
		       "             <target type='virtio' name='" AGENT_PORT
		       "'/>\n"
		       "           </channel>\n"
		       "         and run hintmig-agent in the guest "
		       "(docs/agent.md)\n");
	}
	free(sock);

	/* R10: devices that write guest RAM without the tracker seeing it */
	n = xp_num(x, "count(/domain/devices/hostdev[@type='pci'])");
	if (n > 0) {
		v->refused++;
		fprintf(f, "REFUSED  %.0f PCI host device(s) (VFIO): device DMA "
		       "writes guest RAM without write faults (R10)\n", n);
	}
	n = xp_num(x, "count(/domain/devices/interface[@type='vhostuser'])");
	if (n > 0) {
		v->refused++;
		fprintf(f, "REFUSED  %.0f vhost-user interface(s): another process "
		       "writes guest RAM (R10)\n", n);
	}
	n = xp_num(x, "count(/domain/devices/disk/driver[@cache='none' or "
		      "@cache='directsync' or @io='native'])");
	if (n > 0) {
		v->refused++;
		fprintf(f, "REFUSED  %.0f disk(s) opened with O_DIRECT (cache='none' "
		       "or 'directsync', or io='native'): their reads land in "
		       "guest RAM by DMA-like I/O the tracker does not see "
		       "(R10); use cache='writeback'\n", n);
	}
	n = xp_num(x, "count(//*[local-name()='arg'][contains(@value,"
		      "'free-page-hint')] | //*[local-name()='property']"
		      "[contains(@name,'free-page-hint')][@value='true' or "
		      "@value='on'])");
	if (n > 0) {
		v->refused++;
		fprintf(f, "REFUSED  virtio-balloon free-page-hint (through "
		       "<qemu:override> or <qemu:commandline>): it cannot be "
		       "combined with x-ignore-shared\n");
	}
	if (xp_num(x, "count(/domain/devices/memballoon"
		      "[@freePageReporting='on'])") > 0)
		ok(f, "virtio-balloon free page reporting: reported pages are "
		   "holes in the RAM, skipped as empty (R6)");
}

/* ---- shared with hintmig migrate (libvirt_dom.h) ------------------------- */

int hm_lv_dom_read(const char *xml, unsigned long qemu_ver, FILE *report,
		   struct hm_lv_dom *d)
{
	xmlDocPtr doc;
	xmlXPathContextPtr x;
	struct verdict v = { 0 };
	FILE *f = report;
	char *id;

	memset(d, 0, sizeof(*d));
	d->id = -1;
	doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
			    XML_PARSE_NOWARNING);
	x = doc ? xmlXPathNewContext(doc) : NULL;
	if (!x) {
		if (doc)
			xmlFreeDoc(doc);
		return -EINVAL;
	}
	if (!f)
		f = fopen("/dev/null", "we");
	if (f)
		check_xml(x, qemu_ver, &v, f);
	if (f && f != report)
		fclose(f);
	d->missing = v.missing;
	d->refused = v.refused;
	d->notes = v.notes;
	id = xp_str(x, "string(/domain/@id)");
	if (id)
		d->id = atoi(id);
	free(id);
	d->name = xp_str(x, "string(/domain/name)");
	d->agent_sock = xp_str(x, "string(/domain/devices/channel"
				  "[@type='unix'][target/@type='virtio']"
				  "[target/@name='" AGENT_PORT "']"
				  "/source/@path)");
#define MIG "/domain/metadata/*[local-name()='migration']" \
	    "[namespace-uri()='" HM_LV_NS "']"
	d->mig_listen = xp_str(x, "string(" MIG "/@listen)");
	d->mig_key = xp_str(x, "string(" MIG "/@key)");
	{
		char *t = xp_str(x, "string(" MIG "/@tls)");

		d->mig_tls = t && !strcmp(t, "1");
		free(t);
	}
	d->mig_timeout_s = (unsigned)xp_num(x, "number(" MIG "/@timeout)");
	d->uuid = xp_str(x, "string(/domain/uuid)");
#define HOST "/domain/metadata/*[local-name()='host']" \
	     "[namespace-uri()='" HM_LV_HOST_NS "']"
	d->src_hintmigd = xp_str(x, "string(" HOST "/@addr)");
	d->src_hintmigd_name = xp_str(x, "string(" HOST "/@name)");
#undef HOST
	d->mig_expires = (long long)xp_num(x, "number(" MIG "/@expires)");
#undef MIG
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	return 0;
}

void hm_lv_dom_fini(struct hm_lv_dom *d)
{
	free(d->name);
	free(d->agent_sock);
	free(d->mig_listen);
	free(d->uuid);
	free(d->src_hintmigd);
	free(d->src_hintmigd_name);
	if (d->mig_key)
		explicit_bzero(d->mig_key, strlen(d->mig_key));
	free(d->mig_key);
	memset(d, 0, sizeof(*d));
}

int hm_lv_conf_get(const char *path, const char *key, char *out,
		   size_t len)
{
	char line[1024];
	size_t kl = strlen(key);
	FILE *f = fopen(path, "re");
	int rc = -ENOENT;

	while (f && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t"), *v, *e;

		if (strncmp(p, key, kl) || (p[kl] != ' ' && p[kl] != '\t' &&
					    p[kl] != '='))
			continue;
		v = p + kl + strspn(p + kl, " \t");
		if (*v != '=')
			continue;
		v++;
		v += strspn(v, " \t");
		if (*v == '"') {
			e = strchr(++v, '"');
			if (!e)
				continue;
		} else {
			e = v + strcspn(v, " \t#\n");
		}
		*e = 0;
		snprintf(out, len, "%s", v);
		rc = 0;	/* the last one counts, as in libvirt */
	}
	if (f)
		fclose(f);
	return rc;
}

void hm_lv_tls_dir(const char *conf, char *out, size_t len)
{
	if (hm_lv_conf_get(conf, "migrate_tls_x509_cert_dir", out, len) &&
	    hm_lv_conf_get(conf, "default_tls_x509_cert_dir", out, len))
		snprintf(out, len, "%s", HM_TLS_DEFAULT_DIR);
}

int hm_lv_qmp_path(int id, char *out, size_t len)
{
	char pat[128];
	glob_t g;
	int ret = -ENOENT;

	if (id < 0)
		return -ESRCH;
	/* libvirt's per-domain directory, QEMU's HOME: the wrapper puts the
	 * socket there (libvirt 9.0: cfg->libDir/domain-ID-NAME) */
	snprintf(pat, sizeof(pat), HM_LV_LIBDIR "/domain-%d-*/" HM_LV_QMP_NAME,
		 id);
	if (glob(pat, 0, NULL, &g) == 0) {
		if (g.gl_pathc == 1 && strlen(g.gl_pathv[0]) < len) {
			strcpy(out, g.gl_pathv[0]);
			ret = 0;
		} else {
			ret = -EEXIST;
		}
	}
	globfree(&g);
	return ret;
}

/* ---- hintmig libvirt check ---------------------------------------------- */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool got;

	buf[0] = 0;
	if (!f)
		return -1;
	got = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return got ? 0 : -1;
}

/* The running QEMU as a stock host runs it: its user and what hintmig
 * gives it (R15), its mount namespace, its AppArmor confinement. */
/* R18 on this host: libvirt's migration certificates as hintmig migrate
 * --tls would load them, and whether libvirt forces TLS. Notes only: TLS
 * is the user's choice. */
static int check_tls(void)
{
	int missing = 0;
	char dir[512], v[32], err[600];
	struct hm_tls_creds *c;
	bool forced = hm_lv_conf_get(HM_LV_QEMU_CONF, "migrate_tls_force", v,
				     sizeof(v)) == 0 && strcmp(v, "0");

	hm_lv_tls_dir(HM_LV_QEMU_CONF, dir, sizeof(dir));
	c = hm_tls_creds_load(dir, false, err, sizeof(err));
	if (c) {
		hm_tls_creds_free(c);
		c = hm_tls_creds_load(dir, true, err, sizeof(err));
	}
	if (c)
		printf("ok       TLS: migration certificates in %s (hintmig "
		       "migrate --tls)%s\n", dir,
		       forced ? "; libvirt here forces TLS: say --tls" : "");
	else if (forced && ++missing)
		printf("MISSING  TLS: libvirt here forces TLS on migrations "
		       "(migrate_tls_force), but: %s\n", err);
	else
		printf("note     TLS: no usable migration certificates (%s): "
		       "hintmig migrate --tls needs them (docs/libvirt.md "
		       "\"TLS\")\n", err);
	hm_tls_creds_free(c);
	return missing;
}

static void check_host(pid_t pid, struct hm_lv_dom *d)
{
	char path[64], line[256], aa[256] = "", me[64] = "", its[64] = "";
	struct stat st;
	struct passwd *pw;
	const char *who;
	int sysctl;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (stat(path, &st)) {
		printf("note     QEMU %d (libvirt's pidfile) is not visible "
		       "here: its user, namespace and AppArmor not checked\n",
		       (int)pid);
		return;
	}
	pw = getpwuid(st.st_uid);
	who = pw ? pw->pw_name : "?";
	sysctl = read_line("/proc/sys/vm/unprivileged_userfaultfd", line,
			   sizeof(line)) ? 0 : atoi(line);
	if (st.st_uid == 0)
		printf("ok       QEMU %d runs as root: it makes its own "
		       "userfaultfd\n", (int)pid);
	else if (sysctl == 1)
		printf("ok       QEMU %d runs as %s (uid %u); "
		       "vm.unprivileged_userfaultfd is 1, so it may make its "
		       "own userfaultfd\n", (int)pid, who, (unsigned)st.st_uid);
	else if (access("/dev/userfaultfd", F_OK) == 0)
		printf("ok       QEMU %d runs as %s (uid %u): hintmig hands it "
		       "a userfaultfd through /dev/userfaultfd, with its "
		       "threads stopped, and takes everything back (R15)\n",
		       (int)pid, who, (unsigned)st.st_uid);
	else {
		printf("MISSING  /dev/userfaultfd (Linux 6.1+): QEMU %d runs "
		       "as %s (uid %u) and may not make a userfaultfd that "
		       "sees kernel faults; hintmig changes no sysctl for it\n",
		       (int)pid, who, (unsigned)st.st_uid);
		d->missing++;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	if (readlink("/proc/self/ns/mnt", me, sizeof(me) - 1) > 0 &&
	    readlink(path, its, sizeof(its) - 1) > 0 && strcmp(me, its))
		printf("ok       QEMU %d has a mount namespace of its own "
		       "(private /dev): hintmig reaches its RAM through "
		       "/proc/%d/map_files, not by path\n", (int)pid,
		       (int)pid);
	snprintf(path, sizeof(path), "/proc/%d/attr/apparmor/current",
		 (int)pid);
	if (read_line(path, aa, sizeof(aa))) {
		snprintf(path, sizeof(path), "/proc/%d/attr/current",
			 (int)pid);
		read_line(path, aa, sizeof(aa));
	}
	if (aa[0] && strcmp(aa, "unconfined") &&
	    strncmp(aa, "unconfined", 10)) {
		if (read_line(HM_LV_APPARMOR, line, sizeof(line)) == 0)
			printf("ok       QEMU %d is confined by AppArmor (%s); "
			       "%s lets it receive /dev/userfaultfd\n",
			       (int)pid, aa, HM_LV_APPARMOR);
		else {
			printf("MISSING  QEMU %d is confined by AppArmor (%s) "
			       "and %s is absent: it would refuse the "
			       "/dev/userfaultfd descriptor (install the "
			       "hintmig package's snippet, then restart "
			       "the domain)\n", (int)pid, aa, HM_LV_APPARMOR);
			d->missing++;
		}
	}
}

/* Which way a plain virsh migrate of this domain goes (docs/libvirt.md
 * "Plain virsh migrate"): with hints when this host's hintmigd has
 * marked it, as libvirt alone otherwise. */
static void check_virsh_migrate(const struct hm_lv_dom *d)
{
	if (d->id < 0)
		printf("note     virsh migrate: the domain is not running "
		       "(hintmigd marks running domains)\n");
	else if (d->missing || d->refused)
		printf("note     virsh migrate: without hints, as libvirt "
		       "alone (the domain is not set up for hintmig)\n");
	else if (d->src_hintmigd && d->src_hintmigd_name)
		printf("ok       virsh migrate: with hints: hintmigd at %s "
		       "(certificate name %s) sends the RAM when the "
		       "destination's hook asks; the destination needs "
		       "hintmig, its hook and libvirt's migration "
		       "certificates, else the migration fails\n",
		       d->src_hintmigd, d->src_hintmigd_name);
	else
		printf("note     virsh migrate: without hints, as libvirt "
		       "alone (no hintmigd metadata on the domain: is "
		       "hintmigd running on this host? systemctl enable --now "
		       "hintmigd); hintmig migrate: with hints\n");
}

static int lv_check(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *uri = NULL;
	struct hm_lv_dom d = { 0 };
	virConnectPtr conn = NULL;
	virDomainPtr dom = NULL;
	char *xml = NULL, qmp[512];
	unsigned long ver = 0;
	int c, rc = EXIT_ERROR;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': uri = optarg; break;
		case 'V': return hm_print_version("hintmig libvirt");
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	conn = virConnectOpenReadOnly(uri);
	if (!conn) {
		fprintf(stderr, "hintmig libvirt: cannot connect to %s: %s\n",
			uri ? uri : "libvirt's default URI",
			virGetLastErrorMessage());
		goto out;
	}
	dom = virDomainLookupByName(conn, argv[optind]);
	if (!dom)
		dom = virDomainLookupByUUIDString(conn, argv[optind]);
	if (!dom) {
		fprintf(stderr, "hintmig libvirt: no domain %s: %s\n",
			argv[optind], virGetLastErrorMessage());
		goto out;
	}
	if (virConnectGetVersion(conn, &ver) == 0 && ver)
		printf("domain %s, QEMU %lu.%lu.%lu\n", argv[optind],
		       ver / 1000000, ver / 1000 % 1000, ver % 1000);
	xml = virDomainGetXMLDesc(dom, 0);
	if (!xml || hm_lv_dom_read(xml, ver, stdout, &d) < 0) {
		fprintf(stderr, "hintmig libvirt: cannot read the XML of %s\n",
			argv[optind]);
		goto out;
	}
	if (d.id >= 0 && hm_lv_qmp_path(d.id, qmp, sizeof(qmp)) == 0)
		printf("ok       running, hintmig's monitor at %s\n", qmp);
	else if (d.id >= 0)
		printf("note     running, but hintmig's monitor is not in "
		       HM_LV_LIBDIR "/domain-%d-*/ (started before the "
		       "emulator was hintmig-qemu? restart it; or "
		       "hintmig runs in another mount namespace)\n", d.id);
	if (d.id >= 0 && hm_lv_qemu_pid(d.name) > 0)
		check_host(hm_lv_qemu_pid(d.name), &d);
	else if (d.id >= 0)
		printf("note     libvirt's pidfile " HM_LV_RUNDIR "/%s.pid is "
		       "not readable here (not root, or another mount "
		       "namespace): QEMU's user, namespace and AppArmor not "
		       "checked\n", d.name);
	d.missing += check_tls();
	check_virsh_migrate(&d);
	if (d.missing || d.refused) {
		printf("not ready for hintmig: %d missing, %d refused\n",
		       d.missing, d.refused);
		rc = EXIT_NOT_READY;
	} else {
		printf("ready for hintmig%s\n",
		       d.notes ? " (without hints: see the note)" : "");
		rc = EXIT_READY;
	}
out:
	hm_lv_dom_fini(&d);
	free(xml);
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	return rc;
}

/* ---- processes ---------------------------------------------------------- */

pid_t hm_lv_spawn_self(const char *const argv[], int out_fd, int pdeathsig)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	pid_t pid;

	if (n <= 0)
		return n < 0 ? -errno : -ENOENT;
	self[n] = 0;
	pid_t parent = getpid();

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* ends with the thread that started it (hintmigd's request,
		 * the hook), also if that ended before the signal was set */
		if (pdeathsig && (prctl(PR_SET_PDEATHSIG, pdeathsig) < 0 ||
				  getppid() != parent))
			_exit(127);
		if (out_fd >= 0) {
			dup2(out_fd, 1);
			dup2(out_fd, 2);
		}
		/* the descriptors argv names (hm_lv_fdfile) stay open
		 * (only async-signal-safe calls after fork) */
		for (size_t i = 1; argv[i]; i++) {
			int keep = hm_fd_path_number(argv[i]);

			if (keep > 2)
				(void)fcntl(keep, F_SETFD, 0);
		}
		execv(self, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

pid_t hm_lv_start_sender(const struct hm_lv_send_opts *o, int out_fd,
			 int pdeathsig)
{
	char tmo[32], bw[32], pid[16];
	const char *av[40];
	int ac = 0;

	snprintf(tmo, sizeof(tmo), "%u", o->timeout_s * 1000);
	av[ac++] = "hintmig";
	av[ac++] = "send";
	av[ac++] = "--qemu";
	av[ac++] = o->qmp;
	av[ac++] = "--to";
	av[ac++] = o->to;
	av[ac++] = "--libvirt";
	av[ac++] = "--connect-timeout";
	av[ac++] = tmo;
	if (o->agent) {
		av[ac++] = "--agent";
		av[ac++] = o->agent;
		av[ac++] = "--hints";
		av[ac++] = "auto";
	}
	if (o->bandwidth_mib) {
		snprintf(bw, sizeof(bw), "%luM", o->bandwidth_mib);
		av[ac++] = "--max-bandwidth";
		av[ac++] = bw;
	}
	if (o->json) {
		av[ac++] = "--json";
		av[ac++] = o->json;
	}
	if (o->hinted_map) {
		av[ac++] = "--hinted-map";
		av[ac++] = o->hinted_map;
	}
	if (o->qemu_pid > 0) {
		snprintf(pid, sizeof(pid), "%d", (int)o->qemu_pid);
		av[ac++] = "--expect-pid";
		av[ac++] = pid;
	}
	if (o->key_file && *o->key_file) {
		av[ac++] = "--key-file";
		av[ac++] = o->key_file;
	}
	if (o->tls_dir) {
		av[ac++] = "--tls-dir";
		av[ac++] = o->tls_dir;
		av[ac++] = "--tls-name";
		av[ac++] = o->tls_name;
	}
	/* as virsh migrate: quiet, or --verbose's progress line */
	if (o->verbose) {
		av[ac++] = "--verbose";
		av[ac++] = "--progress";
		av[ac++] = "virsh";
	} else {
		av[ac++] = "--quiet";
	}
	av[ac] = NULL;
	return hm_lv_spawn_self(av, out_fd, pdeathsig);
}

/* The name this host's certificates carry: its host name, fully
 * qualified where the resolver knows it (as libvirt names a migration's
 * destination). */
void hm_lv_host_name(char *out, size_t len)
{
	struct addrinfo hints = { .ai_flags = AI_CANONNAME }, *ai = NULL;
	char h[256] = "localhost";

	gethostname(h, sizeof(h) - 1);
	h[sizeof(h) - 1] = 0;
	if (!getaddrinfo(h, NULL, &hints, &ai) && ai && ai->ai_canonname &&
	    strchr(ai->ai_canonname, '.'))
		snprintf(out, len, "%s", ai->ai_canonname);
	else
		snprintf(out, len, "%s", h);
	if (ai)
		freeaddrinfo(ai);
}

#define HM_MFD_NOEXEC_SEAL 0x0008U	/* linux/memfd.h of 6.3 */

int hm_lv_fdfile_open(struct hm_lv_fdfile *f, const char *name,
		      const char *text)
{
	size_t n = text ? strlen(text) : 0;
	int fd, e;

	f->path[0] = 0;
	f->fd = -1;
	/* no exec bits where the kernel knows the flag (6.3; a host with
	 * vm.memfd_noexec 2 refuses memfds without it) */
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING |
			  HM_MFD_NOEXEC_SEAL);
	if (fd < 0 && errno == EINVAL)
		fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* 0600 (hm_auth_key_load checks it); text, then sealed as it is */
	errno = 0;	/* (a short write sets none) */
	if (fchmod(fd, 0600) < 0 ||
	    (n && (write(fd, text, n) != (ssize_t)n ||
		   fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK |
			 F_SEAL_GROW | F_SEAL_WRITE) < 0))) {
		e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	f->fd = fd;
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", fd);
	return 0;
}

void hm_lv_fdfile_close(struct hm_lv_fdfile *f)
{
	if (f->path[0])
		close(f->fd);
	f->path[0] = 0;
	f->fd = -1;
}

pid_t hm_lv_qemu_pid(const char *name)
{
	char path[512], buf[32] = "";
	long v;
	FILE *f;

	if (!name || snprintf(path, sizeof(path), HM_LV_RUNDIR "/%s.pid",
			      name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	v = strtol(buf, NULL, 10);
	return v > 0 && v < INT32_MAX ? (pid_t)v : -EINVAL;
}

int hm_cmd_libvirt(int argc, char **argv)
{
	/* argv[0] is "libvirt"; the action comes next */
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version"))
		return hm_print_version("hintmig libvirt");
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return lv_check(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "hook"))
		return hm_lv_hook(argc - 1, argv + 1);
	usage(stderr);
	return EXIT_USAGE;
}

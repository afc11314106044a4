/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig migrate DOMAIN DEST_URI: migrate a running libvirt domain with
 * hintmig moving its RAM (free page hints from hintmig-agent) and libvirt
 * moving everything else, in an order neither can break (R8,
 * docs/libvirt.md "hintmig migrate"):
 *
 *  1. here: the domain is checked (hintmig libvirt check) and a sender,
 *     hintmig send --libvirt, attaches to hintmig's own QMP monitor of the
 *     source QEMU (the hintmig-qemu emulator wrapper) and waits for the
 *     destination;
 *  2. libvirt's migration starts with a destination XML that carries
 *     hintmig's metadata; libvirt 9.0 starts the destination QEMU, sends it
 *     migrate-incoming and runs the `started` hook synchronously, before
 *     the source's `migrate`;
 *  3. the hook (hintmig libvirt hook) runs hintmig recv --libvirt into the
 *     new QEMU; the sender tracks and copies the RAM while the guest runs,
 *     stops the vCPUs through its monitor (libvirt records "paused:
 *     migration"), sends the final round and gets it acknowledged;
 *  4. the hook returns, and only then does libvirt send `migrate` (device
 *     state only: x-ignore-shared on both ends), resume the destination and
 *     kill the source.
 * Any failure before 4 fails libvirt's migration (the hook's exit status)
 * and libvirt resumes the source guest itself.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>

#include "cmd.h"
#include "libvirt_dom.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/gate.h"
#include "migrate/guests/qemu/qmp.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/transport.h"
#include "parse.h"

enum { EXIT_OK = 0, EXIT_NOT_READY = 1, EXIT_USAGE = 2, EXIT_FAILED = 3,
       EXIT_SETUP = 4 };

#define DEFAULT_TIMEOUT_S 60

static void usage(FILE *f)
{
	fputs(
"Usage: hintmig migrate [options] DOMAIN DEST_URI\n"
"Migrates a running libvirt domain to DEST_URI (a libvirt URI, as for\n"
"virsh migrate): hintmig moves the guest RAM, with the free page hints of\n"
"hintmig-agent, and libvirt the rest; the domain needs the setup of\n"
"docs/libvirt.md (hintmig libvirt check DOMAIN) and the destination host\n"
"hintmig's libvirt hook.\n"
"virsh migrate's options:\n"
"  -c, --connect URI       the source's libvirt (default: libvirt's default)\n"
"  --live                  accepted: hintmig always copies RAM live\n"
"  --p2p                   peer-to-peer (the source libvirtd drives it)\n"
"  --persistent            define the domain on the destination\n"
"  --undefinesource        undefine it on the source\n"
"  --bandwidth MIB         MiB/s, for hintmig's RAM and libvirt's stream\n"
"  --migrateuri URI        QEMU's device-state stream (libvirt's default)\n"
"  --tls                   every stream in TLS: libvirt's (VIR_MIGRATE_TLS)\n"
"                          and hintmig's, both with libvirt's migration\n"
"                          certificates (docs/libvirt.md \"TLS\")\n"
"  --verbose               progress and hintmig's log\n"
"hintmig's own:\n"
"  --hintmig-uri tcp:HOST:PORT   where the source's hintmig connects\n"
"                          (default: DEST_URI's host, a port of\n"
"                          --hintmig-ports taken at random)\n"
"  --hintmig-ports LO-HI   hintmig's port range (49300-49399, outside\n"
"                          libvirt's 49152-49215)\n"
"  --tls-dir DIR           this host's certificates for --tls (default: as\n"
"                          libvirt's qemu.conf says, else /etc/pki/qemu)\n"
"  --hintmig-listen ADDR   where the destination listens (default:\n"
"                          --hintmig-uri itself: its host, not every\n"
"                          address)\n"
"  --hints auto|none       hints from the domain's agent channel (auto)\n"
"  --timeout S             how long either side waits for the other (60)\n"
"  --json FILE             hintmig send's summary (query-migrate shaped)\n"
"  --hinted-map FILE       hintmig send's map of the pages left out because\n"
"                          hinted (docs/protocol.md), written at the\n"
"                          acknowledgement, before libvirt moves the devices\n"
"  --help, --version\n"
"Exit status: 0 migrated, 1 domain not set up for hintmig (nothing done),\n"
"2 usage, 3 migration failed (the source domain runs on), 4 setup error.\n",
	      f);
}

struct mig_opts {
	const char *src_uri, *dom, *dest_uri, *hm_uri, *hm_listen, *json;
	unsigned port_lo, port_hi;	/* --hintmig-ports */
	const char *hinted_map;
	const char *migrateuri;
	const char *tls_dir;		/* --tls-dir */
	char tls_name[256];		/* the destination's name (R18) */
	unsigned long flags;
	unsigned long bandwidth;	/* MiB/s, 0 = libvirt's default */
	unsigned timeout_s;
	bool hints, verbose;
};

static int parse(int argc, char **argv, struct mig_opts *o)
{
	enum { O_LIVE = 256, O_P2P, O_PERSIST, O_UNDEF, O_BW, O_MURI, O_VERB,
	       O_HMURI, O_HMLISTEN, O_HMPORTS, O_HINTS, O_TMO, O_JSON, O_HMAP, O_VER,
	       O_HELP, O_TLS, O_TLS_DIR };
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "live", no_argument, NULL, O_LIVE },
		{ "p2p", no_argument, NULL, O_P2P },
		{ "persistent", no_argument, NULL, O_PERSIST },
		{ "undefinesource", no_argument, NULL, O_UNDEF },
		{ "bandwidth", required_argument, NULL, O_BW },
		{ "migrateuri", required_argument, NULL, O_MURI },
		{ "tls", no_argument, NULL, O_TLS },
		{ "tls-dir", required_argument, NULL, O_TLS_DIR },
		{ "verbose", no_argument, NULL, O_VERB },
		{ "hintmig-uri", required_argument, NULL, O_HMURI },
		{ "hintmig-listen", required_argument, NULL, O_HMLISTEN },
		{ "hintmig-ports", required_argument, NULL, O_HMPORTS },
		{ "hints", required_argument, NULL, O_HINTS },
		{ "timeout", required_argument, NULL, O_TMO },
		{ "json", required_argument, NULL, O_JSON },
		{ "hinted-map", required_argument, NULL, O_HMAP },
		{ "version", no_argument, NULL, O_VER },
		{ "help", no_argument, NULL, O_HELP },
		{ 0 }
	};
	uint64_t u;
	int c;

	o->hints = true;
	o->timeout_s = DEFAULT_TIMEOUT_S;
	o->flags = VIR_MIGRATE_LIVE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': o->src_uri = optarg; break;
		case O_LIVE: break;
		case O_P2P: o->flags |= VIR_MIGRATE_PEER2PEER; break;
		case O_PERSIST: o->flags |= VIR_MIGRATE_PERSIST_DEST; break;
		case O_UNDEF: o->flags |= VIR_MIGRATE_UNDEFINE_SOURCE; break;
		case O_MURI: o->migrateuri = optarg; break;
		case O_TLS: o->flags |= VIR_MIGRATE_TLS; break;
		case O_TLS_DIR: o->tls_dir = optarg; break;
		case O_VERB: o->verbose = true; break;
		case O_HMURI: o->hm_uri = optarg; break;
		case O_HMLISTEN: o->hm_listen = optarg; break;
		case O_HMPORTS: {
			unsigned plo, phi;
			char end;

			if (sscanf(optarg, "%u-%u%c", &plo, &phi, &end) != 2 ||
			    !plo || plo > phi || phi > 65535) {
				fprintf(stderr, "hintmig migrate: bad "
					"--hintmig-ports '%s' (LO-HI)\n",
					optarg);
				return -1;
			}
			o->port_lo = plo;
			o->port_hi = phi;
			break;
		}
		case O_JSON: o->json = optarg; break;
		case O_HMAP: o->hinted_map = optarg; break;
		case O_BW:
			if (hm_parse_uint(optarg, 1u << 20, &u) || !u) {
				fprintf(stderr, "hintmig migrate: bad "
					"--bandwidth '%s' (MiB/s)\n", optarg);
				return -1;
			}
			o->bandwidth = (unsigned long)u;
			break;
		case O_HINTS:
			if (strcmp(optarg, "auto") && strcmp(optarg, "none")) {
				fprintf(stderr, "hintmig migrate: --hints auto "
					"or none\n");
				return -1;
			}
			o->hints = !strcmp(optarg, "auto");
			break;
		case O_TMO:
			if (hm_parse_uint(optarg, 3600, &u) || !u) {
				fprintf(stderr, "hintmig migrate: bad "
					"--timeout '%s'\n", optarg);
				return -1;
			}
			o->timeout_s = (unsigned)u;
			break;
		case O_VER: hm_print_version("hintmig migrate"); return 1;
		case 'h': case O_HELP: usage(stdout); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return -1;
	}
	o->dom = argv[optind];
	o->dest_uri = argv[optind + 1];
	return 0;
}

/* DEST_URI's host (libxml2 keeps an IPv6 literal's brackets: without
 * them), or dflt when the URI names none (qemu:///system). */
static void uri_host(const char *dest_uri, const char *dflt, char *out,
		     size_t len)
{
	xmlURIPtr u = xmlParseURI(dest_uri);
	const char *h = u && u->server && u->server[0] ? u->server : dflt;
	size_t hl = strlen(h);

	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
		snprintf(out, len, "%.*s", (int)(hl - 2), h + 1);
	else
		snprintf(out, len, "%s", h);
	if (u)
		xmlFreeURI(u);
}

/* --hintmig-uri's default: the destination's host from DEST_URI (this
 * host when it names none, as qemu:///system does), a port of [lo, hi]
 * taken at random among those where nothing answers on the destination
 * (a connection refused: probed from here, up to 16 tries; a port taken
 * between the probe and the receiver's bind fails the destination's hook,
 * "address in use", with the source running on). */
static int default_hm_uri(const char *dest_uri, unsigned lo, unsigned hi,
			  char *out, size_t len)
{
	char plain[256], num[INET6_ADDRSTRLEN];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	unsigned r = 0, port = lo;
	int n = -1;

	uri_host(dest_uri, "127.0.0.1", plain, sizeof(plain));
	/* the address this host will connect to, as a number: the
	 * destination listens on exactly it (a name resolved there could
	 * be another address, e.g. Debian's 127.0.1.1 for its own name) */
	if (getaddrinfo(plain, NULL, &hints, &ai) == 0 && ai &&
	    getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof(num), NULL,
			0, NI_NUMERICHOST) == 0)
		snprintf(plain, sizeof(plain), "%s", num);
	if (ai)
		freeaddrinfo(ai);
	for (int tries = 0; tries < 16; tries++) {
		int fd;

		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r = (unsigned)getpid() + (unsigned)tries;
		port = lo + r % (hi - lo + 1);
		if (strchr(plain, ':'))
			n = snprintf(out, len, "tcp:[%s]:%u", plain, port);
		else
			n = snprintf(out, len, "tcp:%s:%u", plain, port);
		if (n <= 0 || (size_t)n >= len)
			break;
		fd = hm_transport_connect(out, 300);
		if (fd < 0)
			break;	/* refused (free), or no answer: take it */
		close(fd);	/* something listens there: another one */
	}
	return n > 0 && (size_t)n < len ? 0 : -EINVAL;
}

/* The destination's XML: the domain's migratable XML plus hintmig's
 * metadata telling the destination's hook where to listen. NULL on error
 * (malloc'ed otherwise). */
static char *dest_xml(virDomainPtr dom, const char *listen, unsigned tmo_s,
		      const char *key_hex, bool tls)
{
	char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE |
					VIR_DOMAIN_XML_SECURE);
	xmlDocPtr doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "dom.xml",
					    NULL, XML_PARSE_NONET) : NULL;
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL, md = NULL;
	xmlNodePtr n;
	xmlNsPtr ns;
	xmlChar *out = NULL;
	char buf[64], *ret = NULL;
	int len = 0;

	if (!root)
		goto out;
	for (n = root->children; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE &&
		    !xmlStrcmp(n->name, (const xmlChar *)"metadata"))
			md = n;
	/* one left by an earlier hintmig migrate that did not finish */
	for (n = md ? md->children : NULL; n;) {
		xmlNodePtr next = n->next;

		if (n->type == XML_ELEMENT_NODE && n->ns &&
		    !xmlStrcmp(n->ns->href, (const xmlChar *)HM_LV_NS)) {
			xmlUnlinkNode(n);
			xmlFreeNode(n);
		}
		n = next;
	}
	if (!md)
		md = xmlNewChild(root, NULL, (const xmlChar *)"metadata",
				 NULL);
	n = md ? xmlNewChild(md, NULL, (const xmlChar *)"migration", NULL)
	       : NULL;
	ns = n ? xmlNewNs(n, (const xmlChar *)HM_LV_NS,
			  (const xmlChar *)"hintmig") : NULL;
	if (!ns)
		goto out;
	xmlSetNs(n, ns);
	xmlNewProp(n, (const xmlChar *)"listen", (const xmlChar *)listen);
	snprintf(buf, sizeof(buf), "%u", tmo_s);
	xmlNewProp(n, (const xmlChar *)"timeout", (const xmlChar *)buf);
	/* a metadata left behind (hintmig migrate killed) must not make a
	 * later start or plain migration wait for a sender */
	snprintf(buf, sizeof(buf), "%lld",
		 (long long)time(NULL) + 2 * tmo_s + 60);
	xmlNewProp(n, (const xmlChar *)"expires", (const xmlChar *)buf);
	/* R17: this migration's key, for the destination's receiver (over
	 * libvirt's own authenticated connection; removed afterwards) */
	if (key_hex && *key_hex)
		xmlNewProp(n, (const xmlChar *)"key",
			   (const xmlChar *)key_hex);
	/* R18: the receiver takes TLS with its host's libvirt certificates */
	if (tls)
		xmlNewProp(n, (const xmlChar *)"tls", (const xmlChar *)"1");
	xmlDocDumpMemory(doc, &out, &len);
	if (out)
		ret = strdup((const char *)out);
out:
	xmlFree(out);
	if (doc)
		xmlFreeDoc(doc);
	free(xml);
	return ret;
}

/* ---- libvirt's migration, in a thread ------------------------------------ */

struct lv_mig {
	const struct mig_opts *o;
	virDomainPtr dom;
	virConnectPtr dconn;	/* NULL with --p2p */
	const char *dxml;
	virDomainPtr ddom;	/* result (not with --p2p) */
	int rc;			/* 0 or -1 */
	char err[1024];
	atomic_bool done;
};

static void *lv_mig_thread(void *arg)
{
	struct lv_mig *lm = arg;
	virTypedParameterPtr p = NULL;
	int np = 0, maxp = 0;

	virTypedParamsAddString(&p, &np, &maxp, VIR_MIGRATE_PARAM_DEST_XML,
				lm->dxml);
	if (lm->o->bandwidth)
		virTypedParamsAddULLong(&p, &np, &maxp,
					VIR_MIGRATE_PARAM_BANDWIDTH,
					lm->o->bandwidth);
	if (lm->o->migrateuri)
		virTypedParamsAddString(&p, &np, &maxp, VIR_MIGRATE_PARAM_URI,
					lm->o->migrateuri);
	if (lm->o->flags & VIR_MIGRATE_PEER2PEER) {
		lm->rc = virDomainMigrateToURI3(lm->dom, lm->o->dest_uri, p,
						(unsigned)np,
						(unsigned)lm->o->flags);
	} else {
		lm->ddom = virDomainMigrate3(lm->dom, lm->dconn, p,
					     (unsigned)np,
					     (unsigned)lm->o->flags);
		lm->rc = lm->ddom ? 0 : -1;
	}
	if (lm->rc < 0)
		snprintf(lm->err, sizeof(lm->err), "%s",
			 virGetLastErrorMessage());
	virTypedParamsFree(p, np);
	atomic_store(&lm->done, true);
	return NULL;
}

/* ---- the sender -------------------------------------------------------- */

static pid_t start_sender(const struct mig_opts *o, const char *qmp,
			  const char *agent, const char *to, pid_t qemu_pid,
			  const char *key_file)
{
	struct hm_lv_send_opts so = {
		.qmp = qmp, .to = to, .agent = o->hints ? agent : NULL,
		.qemu_pid = qemu_pid, .key_file = key_file, .json = o->json,
		.hinted_map = o->hinted_map, .bandwidth_mib = o->bandwidth,
		.timeout_s = o->timeout_s, .verbose = o->verbose,
		.tls_dir = o->flags & VIR_MIGRATE_TLS ? o->tls_dir : NULL,
		.tls_name = o->tls_name,
	};

	return hm_lv_start_sender(&so, -1, 0);
}

/* The sender failed, perhaps before it connected: the destination's
 * receiver would wait for it until its timeout, holding libvirt's
 * Prepare. A connection closed at once ends it now (no HELLO: it fails,
 * the hook fails, libvirt stops the destination). Tried every 500 ms
 * until libvirt's migration ends (the receiver may not listen yet);
 * harmless when nothing listens. */
static void poke_receiver(const char *to, const struct hm_auth_key *key,
			  const struct hm_tls_creds *tls, const char *name)
{
	int fd = hm_transport_connect(to, 1000);
	struct hm_tls *t = NULL;
	char why[440];

	/* R17/R18: the receiver drops a connection that is not in TLS or
	 * does not prove the key, and waits on; one that does both and
	 * closes before HELLO ends it */
	if (fd < 0)
		return;
	if (hm_gate_enter(fd, tls, name, key, 1000, &t, why, sizeof(why)) == 0)
		hm_tls_free(t);
	close(fd);
}

/* A host whose libvirt forces TLS on migrations refuses ours without it:
 * say so before anything starts (this host), or name it when libvirt's
 * error says so (either host). */
static bool tls_forced_here(void)
{
	char v[32];

	return hm_lv_conf_get(HM_LV_QEMU_CONF, "migrate_tls_force", v,
			      sizeof(v)) == 0 && strcmp(v, "0");
}

static int sender_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the summary ---------------------------------------------------------- */

static void print_jobinfo(virDomainPtr ddom, uint64_t wall_ms)
{
	virTypedParameterPtr p = NULL;
	int np = 0, type = 0;
	unsigned long long v;

	printf("%-18s %" PRIu64 " ms\n", "Time elapsed:", wall_ms);
	if (!ddom || virDomainGetJobStats(ddom, &type, &p, &np,
					  VIR_DOMAIN_JOB_STATS_COMPLETED |
					  VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED) < 0)
		return;
	if (virTypedParamsGetULLong(p, np, VIR_DOMAIN_JOB_TIME_ELAPSED,
				    &v) == 1)
		printf("%-18s %llu ms\n", "libvirt's job:", v);
	if (virTypedParamsGetULLong(p, np, VIR_DOMAIN_JOB_DOWNTIME, &v) == 1)
		printf("%-18s %llu ms (vCPUs stopped by hintmig to running "
		       "on the destination)\n", "Total downtime:", v);
	if (virTypedParamsGetULLong(p, np, VIR_DOMAIN_JOB_DATA_PROCESSED,
				    &v) == 1)
		printf("%-18s %.3f MiB (QEMU's stream: device state, ROMs)\n",
		       "Data by libvirt:", (double)v / (1 << 20));
	virTypedParamsFree(p, np);
}

void hm_lv_send_summary(const char *json, bool detail, char *out,
			size_t len)
{
	struct json_object *r = json_object_from_file(json);
	struct json_object *ram = hm_json_obj(r, "ram");
	const char *tls = detail ? hm_json_str(r, "tls", NULL) : NULL;
	char rounds[48] = "";

	if (ram && detail)
		snprintf(rounds, sizeof(rounds), ", %lld rounds",
			 hm_json_int(ram, "dirty-sync-count", 0));
	if (!ram)
		snprintf(out, len, "no summary");
	else
		snprintf(out, len, "%.3f MiB of %.0f MiB RAM (%lld hinted "
			 "pages skipped%s)%s%s",
			 (double)hm_json_int(ram, "transferred", 0) / (1 << 20),
			 (double)hm_json_int(ram, "total", 0) / (1 << 20),
			 hm_json_int(ram, "skipped-hinted", 0), rounds,
			 tls ? ", " : "", tls ? tls : "");
	json_object_put(r);
}

static void print_hintmig_json(const char *path)
{
	char s[600];

	hm_lv_send_summary(path, false, s, sizeof(s));
	if (strcmp(s, "no summary"))
		printf("%-18s %s\n", "RAM by hintmig:", s);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* After a failure, where the domain is, as libvirt on the source sees it:
 * the report must be true even when libvirt carried on without hintmig. */
static const char *where_now(virDomainPtr dom, const char *dest_uri)
{
	static char buf[512];
	int state = -1, reason = 0;

	if (virDomainGetState(dom, &state, &reason, 0) < 0 ||
	    virDomainIsActive(dom) != 1) {
		snprintf(buf, sizeof(buf), "the source domain is no longer "
			 "running: libvirt moved it to %s without hintmig's "
			 "RAM (check the guest there)", dest_uri);
		return buf;
	}
	snprintf(buf, sizeof(buf), "the source domain %s",
		 state == VIR_DOMAIN_RUNNING ? "runs on"
		 : state == VIR_DOMAIN_PAUSED ? "is paused (libvirt resumes it "
						"when its job ends)"
		 : "is in an unexpected state");
	return buf;
}

int hm_cmd_migrate(int argc, char **argv)
{
	struct mig_opts o = { 0 };
	struct hm_lv_dom d = { 0 };
	struct lv_mig lm = { 0 };
	virConnectPtr conn = NULL, dconn = NULL;
	virDomainPtr dom = NULL, ddom = NULL;
	char *xml = NULL, *dxml = NULL, *report = NULL;
	char qmp[512], hm_uri[300], listen[300];
	struct hm_lv_fdfile kf = { .fd = -1 }, jf = { .fd = -1 };
	char key_hex[2 * HM_AUTH_KEY_MAX + 1] = "";
	struct hm_auth_key key = { .len = 0 };
	const char *to;
	size_t report_len = 0;
	FILE *rf;
	pthread_t th;
	bool th_started = false;
	pid_t sender = -1;
	int rc = EXIT_SETUP, sst = 0, r;
	uint64_t t0, last_poke = 0;
	struct hm_tls_creds *tls = NULL;
	char tls_dir[512], err[600];
	unsigned long qemu_ver = 0;
	pid_t qemu_pid;

	r = parse(argc, argv, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (!(o.flags & VIR_MIGRATE_TLS) && tls_forced_here()) {
		fprintf(stderr, "hintmig migrate: libvirt on this host forces "
			"TLS on migrations (migrate_tls_force in "
			HM_LV_QEMU_CONF "): say --tls. Nothing done.\n");
		return EXIT_USAGE;
	}
	if (o.flags & VIR_MIGRATE_TLS) {
		/* R18: this host's libvirt migration certificates, loaded
		 * now so that a missing one stops us before anything runs */
		if (!o.tls_dir) {
			hm_lv_tls_dir(HM_LV_QEMU_CONF, tls_dir,
				      sizeof(tls_dir));
			o.tls_dir = tls_dir;
		}
		tls = hm_tls_creds_load(o.tls_dir, false, err, sizeof(err));
		if (!tls) {
			fprintf(stderr, "hintmig migrate: --tls: %s "
				"(docs/libvirt.md \"TLS\"). Nothing done.\n",
				err);
			return EXIT_SETUP;
		}
		/* the name libvirt checks its own stream against too */
		uri_host(o.dest_uri, "localhost", o.tls_name,
			 sizeof(o.tls_name));
	}
	conn = virConnectOpen(o.src_uri);
	if (!conn) {
		fprintf(stderr, "hintmig migrate: cannot connect to %s: %s\n",
			o.src_uri ? o.src_uri : "libvirt's default URI",
			virGetLastErrorMessage());
		goto out;
	}
	dom = virDomainLookupByName(conn, o.dom);
	if (!dom)
		dom = virDomainLookupByUUIDString(conn, o.dom);
	if (!dom) {
		fprintf(stderr, "hintmig migrate: no domain %s: %s\n", o.dom,
			virGetLastErrorMessage());
		goto out;
	}
	xml = virDomainGetXMLDesc(dom, 0);
	rf = open_memstream(&report, &report_len);
	if (virConnectGetVersion(conn, &qemu_ver) < 0)
		qemu_ver = 0;
	if (!xml || !rf || hm_lv_dom_read(xml, qemu_ver, rf, &d) < 0) {
		if (rf)
			fclose(rf);
		fprintf(stderr, "hintmig migrate: cannot read the XML of %s\n",
			o.dom);
		goto out;
	}
	fclose(rf);
	if (d.missing || d.refused) {
		fputs(report, stdout);
		fprintf(stderr, "hintmig migrate: %s is not set up for hintmig "
			"(%d missing, %d refused; docs/libvirt.md): nothing "
			"done. virsh migrate migrates it without hints.\n",
			o.dom, d.missing, d.refused);
		rc = EXIT_NOT_READY;
		goto out;
	}
	if (virDomainIsActive(dom) != 1) {
		fprintf(stderr, "hintmig migrate: %s is not running (virsh "
			"migrate --offline moves a definition)\n", o.dom);
		goto out;
	}
	r = hm_lv_qmp_path(d.id, qmp, sizeof(qmp));
	if (r < 0) {
		fprintf(stderr, "hintmig migrate: %s runs without hintmig's "
			"monitor (no " HM_LV_LIBDIR "/domain-%d-*/"
			HM_LV_QMP_NAME "): it was started before its emulator "
			"became " HM_LV_WRAPPER "; restart it. Nothing done.\n",
			o.dom, d.id);
		rc = EXIT_NOT_READY;
		goto out;
	}
	if (o.hm_uri) {
		snprintf(hm_uri, sizeof(hm_uri), "%s", o.hm_uri);
	} else if (default_hm_uri(o.dest_uri, o.port_lo ? o.port_lo
						      : HM_LV_PORT_LO,
				  o.port_lo ? o.port_hi : HM_LV_PORT_HI,
				  hm_uri, sizeof(hm_uri)) < 0) {
		fprintf(stderr, "hintmig migrate: give --hintmig-uri\n");
		goto out;
	}
	if (strncmp(hm_uri, "tcp:", 4) && strncmp(hm_uri, "unix:", 5)) {
		fprintf(stderr, "hintmig migrate: --hintmig-uri must be "
			"tcp:HOST:PORT or unix:PATH\n");
		rc = EXIT_USAGE;
		goto out;
	}
	to = hm_uri;
	if (o.hm_listen) {
		snprintf(listen, sizeof(listen), "%s", o.hm_listen);
	} else if (!strncmp(hm_uri, "tcp:", 4)) {
		/* the address the source connects to is the destination's
		 * migration address: listen there, not on every address */
		snprintf(listen, sizeof(listen), "%s", hm_uri);
	} else {
		snprintf(listen, sizeof(listen), "%s", hm_uri);
	}
	if (!strncmp(hm_uri, "tcp:", 4)) {
		/* R17: a fresh key per migration, for both ends */
		if (hm_auth_key_new(&key, key_hex) < 0) {
			fprintf(stderr, "hintmig migrate: no random key: %s\n",
				strerror(errno));
			goto out;
		}
		r = hm_lv_fdfile_open(&kf, "hintmig-key", key_hex);
		if (r < 0) {
			fprintf(stderr, "hintmig migrate: cannot hold the "
				"migration's key: %s\n", strerror(-r));
			goto out;
		}
	}
	dxml = dest_xml(dom, listen, o.timeout_s, key_hex,
			(o.flags & VIR_MIGRATE_TLS) != 0);
	if (!dxml) {
		fprintf(stderr, "hintmig migrate: cannot build the destination "
			"XML: %s\n", virGetLastErrorMessage());
		goto out;
	}
	if (!(o.flags & VIR_MIGRATE_PEER2PEER)) {
		dconn = virConnectOpen(o.dest_uri);
		if (!dconn) {
			fprintf(stderr, "hintmig migrate: cannot connect to "
				"%s: %s\n", o.dest_uri,
				virGetLastErrorMessage());
			goto out;
		}
	}
	if (!o.json) {
		/* the sender's summary, for ours: a memfd only we and the
		 * sender can name, gone with us */
		r = hm_lv_fdfile_open(&jf, "hintmig-json", NULL);
		if (r < 0) {
			fprintf(stderr, "hintmig migrate: no file for the "
				"sender's summary: %s\n", strerror(-r));
			goto out;
		}
		o.json = jf.path;
	}
	if (o.verbose)
		fprintf(stderr, "hintmig migrate: %s (id %d): hintmig's monitor "
			"%s, RAM to %s (destination listens on %s), hints %s\n",
			o.dom, d.id, qmp, to, listen,
			d.agent_sock && o.hints ? d.agent_sock : "none");
	t0 = now_ms();
	/* R14: only the domain's QEMU, as libvirt's pidfile names it */
	qemu_pid = hm_lv_qemu_pid(d.name);
	if (o.verbose)
		fprintf(stderr, "hintmig migrate: %s's QEMU: pid %d (libvirt's "
			"pidfile)%s\n", o.dom, (int)qemu_pid, qemu_pid > 0 ? ""
			: ": unknown, any QEMU on the monitor accepted");
	sender = start_sender(&o, qmp, d.agent_sock, to, qemu_pid, kf.path);
	if (sender < 0) {
		fprintf(stderr, "hintmig migrate: cannot start hintmig send: "
			"%s\n", strerror((int)-sender));
		goto out;
	}
	lm.o = &o;
	lm.dom = dom;
	lm.dconn = dconn;
	lm.dxml = dxml;
	if (pthread_create(&th, NULL, lv_mig_thread, &lm)) {
		fprintf(stderr, "hintmig migrate: no thread\n");
		kill(sender, SIGTERM);
		waitpid(sender, NULL, 0);
		goto out;
	}
	th_started = true;
	/* Wait for both. libvirt failing first (the destination refused,
	 * its hook failed) ends the sender, which may still wait for the
	 * destination. The sender failing first fails libvirt's migration
	 * through the hook (the receiver sees the connection end). */
	for (;;) {
		if (sender > 0 && waitpid(sender, &sst, WNOHANG) == sender) {
			if (sender_status(sst) && o.verbose)
				fprintf(stderr, "hintmig migrate: hintmig send "
					"failed (%d); libvirt's migration "
					"fails with it\n", sender_status(sst));
			sender = 0;
		}
		/* the sender has ended, and failed */
		if (!sender && sender_status(sst) && !atomic_load(&lm.done) &&
		    now_ms() - last_poke >= 500) {
			poke_receiver(to, &key, tls, o.tls_name);
			last_poke = now_ms();
		}
		if (atomic_load(&lm.done)) {
			if (lm.rc < 0 && sender > 0)
				kill(sender, SIGTERM);
			if (sender <= 0 || lm.rc < 0)
				break;
		}
		usleep(20000);
	}
	pthread_join(th, NULL);
	th_started = false;
	if (sender > 0) {
		while (waitpid(sender, &sst, 0) < 0 && errno == EINTR)
			;
		sender = 0;
	}
	if (lm.rc < 0 || sender_status(sst)) {
		fprintf(stderr, "hintmig migrate: migration of %s failed: %s; "
			"%s\n", o.dom, lm.rc < 0 ? lm.err : "hintmig send failed",
			where_now(dom, o.dest_uri));
		if (lm.rc < 0 && strstr(lm.err, "VIR_MIGRATE_TLS") &&
		    !(o.flags & VIR_MIGRATE_TLS))
			fprintf(stderr, "hintmig migrate: libvirt on one of the "
				"hosts forces TLS on migrations "
				"(migrate_tls_force): say --tls\n");
		rc = EXIT_FAILED;
		if (lm.ddom)
			virDomainFree(lm.ddom);
		goto out;
	}
	ddom = lm.ddom;
	if (!ddom) {
		dconn = virConnectOpen(o.dest_uri);
		ddom = dconn ? virDomainLookupByName(dconn, d.name) : NULL;
	}
	/* hintmig's metadata has done its job; a later plain migration of
	 * this domain must not find it */
	if (ddom && virDomainSetMetadata(ddom, VIR_DOMAIN_METADATA_ELEMENT,
					 NULL, NULL, HM_LV_NS,
					 VIR_DOMAIN_AFFECT_LIVE |
					 (o.flags & VIR_MIGRATE_PERSIST_DEST ?
					  VIR_DOMAIN_AFFECT_CONFIG : 0)) < 0)
		fprintf(stderr, "hintmig migrate: warning: cannot remove "
			"hintmig's metadata on the destination: %s\n",
			virGetLastErrorMessage());
	printf("Migration of %s to %s: completed\n", o.dom, o.dest_uri);
	print_jobinfo(ddom, now_ms() - t0);
	print_hintmig_json(o.json);
	rc = EXIT_OK;
out:
	if (th_started)
		pthread_join(th, NULL);
	hm_lv_fdfile_close(&jf);
	hm_lv_fdfile_close(&kf);
	explicit_bzero(&key, sizeof(key));
	explicit_bzero(key_hex, sizeof(key_hex));
	hm_tls_creds_free(tls);
	hm_lv_dom_fini(&d);
	free(report);
	free(xml);
	free(dxml);
	if (ddom)
		virDomainFree(ddom);
	if (dom)
		virDomainFree(dom);
	if (dconn)
		virConnectClose(dconn);
	if (conn)
		virConnectClose(conn);
	return rc;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig libvirt check DOMAIN: is this libvirt domain set up for hintmig?
 * Reads the domain's XML through libvirt's C API (read-only connection)
 * and checks what docs/libvirt.md asks for: shared RAM that hintmig can
 * read and fill, hintmig-agent's channel, and nothing that writes guest RAM
 * behind the tracker's back (R10). Says what to add where something is
 * missing.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "cmd.h"
#include "parse.h"

#define AGENT_PORT "org.hintmig.agent.0"

enum { EXIT_READY = 0, EXIT_NOT_READY = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

static void usage(FILE *f)
{
	fputs("Usage: hintmig libvirt check [--connect URI] DOMAIN\n"
"Checks that a libvirt domain is set up for hintmig (docs/libvirt.md):\n"
"shared RAM (memfd or file), hintmig-agent's channel, and no device that\n"
"writes guest RAM behind hintmig's back. Prints what to add if not.\n"
"  -c, --connect URI  the libvirt connection (default: libvirt's default)\n"
"  --version          the version\n"
"  -h, --help         this text\n"
"Exit status: 0 ready, 1 not ready (the reasons are printed), 2 usage,\n"
"3 libvirt or XML error.\n", f);
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

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ok(const char *fmt, ...)
{
	va_list ap;

	fputs("ok       ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Check the domain XML. */
static void check_xml(xmlXPathContextPtr x, struct verdict *v)
{
	char *src = xp_str(x, "string(/domain/memoryBacking/source/@type)");
	char *acc = xp_str(x, "string(/domain/memoryBacking/access/@mode)");
	char *sock;
	bool huge = xp_num(x, "count(/domain/memoryBacking/hugepages)") > 0;
	double n;

	/* RAM */
	if (acc && !strcmp(acc, "shared") &&
	    ((src && (!strcmp(src, "memfd") || !strcmp(src, "file"))) || huge)) {
		ok("RAM: shared (%s): hintmig can read and fill it",
		   huge ? "hugepages" : src);
	} else {
		v->missing++;
		printf("MISSING  RAM that hintmig can read and fill: add to "
		       "<domain>\n"
		       "           <memoryBacking>\n"
		       "             <source type='memfd'/>\n"
		       "             <access mode='shared'/>\n"
		       "           </memoryBacking>\n"
		       "         (source type='file' on QEMU 8.1 and later, "
		       "whose x-ignore-shared skips only named files)\n");
	}
	free(src);
	free(acc);

	/* the agent's channel */
	sock = xp_str(x, "string(/domain/devices/channel[@type='unix']"
			 "[target/@type='virtio'][target/@name='" AGENT_PORT
			 "']/source/@path)");
	if (sock) {
		ok("hint agent channel " AGENT_PORT ": hintmig send --agent %s",
		   sock);
	} else {
		v->notes++;
		printf("note     no hint agent channel: the migration will send "
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
		printf("REFUSED  %.0f PCI host device(s) (VFIO): device DMA "
		       "writes guest RAM without write faults (R10)\n", n);
	}
	n = xp_num(x, "count(/domain/devices/interface[@type='vhostuser'])");
	if (n > 0) {
		v->refused++;
		printf("REFUSED  %.0f vhost-user interface(s): another process "
		       "writes guest RAM (R10)\n", n);
	}
	n = xp_num(x, "count(/domain/devices/disk/driver[@cache='none' or "
		      "@cache='directsync' or @io='native'])");
	if (n > 0) {
		v->refused++;
		printf("REFUSED  %.0f disk(s) opened with O_DIRECT (cache='none' "
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
		printf("REFUSED  virtio-balloon free-page-hint (through "
		       "<qemu:override> or <qemu:commandline>): it cannot be "
		       "combined with x-ignore-shared\n");
	}
	if (xp_num(x, "count(/domain/devices/memballoon"
		      "[@freePageReporting='on'])") > 0)
		ok("virtio-balloon free page reporting: reported pages are "
		   "holes in the RAM, skipped as empty (R6)");
}

int hm_cmd_libvirt(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *uri = NULL;
	struct verdict v = { 0 };
	virConnectPtr conn = NULL;
	virDomainPtr dom = NULL;
	xmlDocPtr doc = NULL;
	xmlXPathContextPtr x = NULL;
	char *xml = NULL;
	unsigned long ver = 0;
	int c, rc = EXIT_ERROR;

	/* argv[0] is "libvirt"; the action comes next */
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version"))
		return hm_print_version("hintmig libvirt");
	if (argc < 2 || strcmp(argv[1], "check")) {
		usage(stderr);
		return EXIT_USAGE;
	}
	argc--;
	argv++;
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
	xml = virDomainGetXMLDesc(dom, 0);
	doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
				  XML_PARSE_NONET | XML_PARSE_NOERROR) : NULL;
	x = doc ? xmlXPathNewContext(doc) : NULL;
	if (!x) {
		fprintf(stderr, "hintmig libvirt: cannot read the XML of %s\n",
			argv[optind]);
		goto out;
	}
	if (virConnectGetVersion(conn, &ver) == 0 && ver)
		printf("domain %s, QEMU %lu.%lu.%lu\n", argv[optind],
		       ver / 1000000, ver / 1000 % 1000, ver % 1000);
	check_xml(x, &v);
	if (v.missing || v.refused) {
		printf("not ready for hintmig: %d missing, %d refused\n",
		       v.missing, v.refused);
		rc = EXIT_NOT_READY;
	} else {
		printf("ready for hintmig%s\n",
		       v.notes ? " (without hints: see the note)" : "");
		rc = EXIT_READY;
	}
out:
	if (x)
		xmlXPathFreeContext(x);
	if (doc)
		xmlFreeDoc(doc);
	free(xml);
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	return rc;
}

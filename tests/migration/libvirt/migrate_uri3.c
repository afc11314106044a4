/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A libvirt API client as management software drives migrations (Nova,
 * oVirt, scripts): virDomainMigrateToURI3 with VIR_MIGRATE_LIVE |
 * VIR_MIGRATE_PEER2PEER (and VIR_MIGRATE_TLS), nothing of hintmig's. The
 * libvirt tests check that it gets hints all the same when the domain is
 * set up (hintmigd, docs/libvirt.md "Plain virsh migrate").
 *
 *   hm-migrate-uri3 SRC_URI DOMAIN DEST_URI [--tls]
 * Exit 0 migrated, 1 failed (libvirt's error printed).
 */
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

int main(int argc, char **argv)
{
	unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER;
	virConnectPtr c;
	virDomainPtr d;
	int rc = 1;

	if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "--tls"))) {
		fprintf(stderr, "usage: %s SRC_URI DOMAIN DEST_URI [--tls]\n",
			argv[0]);
		return 2;
	}
	if (argc == 5)
		flags |= VIR_MIGRATE_TLS;
	c = virConnectOpen(argv[1]);
	d = c ? virDomainLookupByName(c, argv[2]) : NULL;
	if (d && virDomainMigrateToURI3(d, argv[3], NULL, 0, flags) == 0)
		rc = 0;
	if (rc)
		fprintf(stderr, "migration failed: %s\n",
			virGetLastErrorMessage());
	else
		printf("migrated %s to %s\n", argv[2], argv[3]);
	if (d)
		virDomainFree(d);
	if (c)
		virConnectClose(c);
	return rc;
}

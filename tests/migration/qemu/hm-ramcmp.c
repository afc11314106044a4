/* SPDX-License-Identifier: GPL-2.0-or-later */
/* hm-ramcmp: compare two guest RAM dumps page by page (the check of the
 * QEMU migration tests, by hand):
 *
 *   hm-ramcmp [--allow-dst-zero] SOURCE.ram DESTINATION.ram
 *
 * Exit 0 when no page differs (with --allow-dst-zero: except pages that are
 * all zeros on the destination), 1 when one does, 2 on usage or I/O error. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ramcmp.h"

int main(int argc, char **argv)
{
	int allow = 0, a = 1;
	struct hm_ramcmp r;
	struct stat st;
	char err[512];

	if (argc > 1 && !strcmp(argv[1], "--allow-dst-zero")) {
		allow = 1;
		a++;
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: %s [--allow-dst-zero] SOURCE DESTINATION\n",
			argv[0]);
		return 2;
	}
	if (stat(argv[a], &st)) {
		perror(argv[a]);
		return 2;
	}
	if (hm_ramcmp_files(argv[a], argv[a + 1], (uint64_t)st.st_size, allow,
			    NULL, 0, &r, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	hm_ramcmp_print(stdout, &r);
	return r.bad ? 1 : 0;
}

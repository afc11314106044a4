/* SPDX-License-Identifier: GPL-2.0-or-later */
/* hm-ramcmp: compare two guest RAM dumps page by page (the check of the
 * QEMU migration tests, by hand, and of the libvirt test's hook):
 *
 *   hm-ramcmp [--hinted-map FILE | --allow-dst-zero] SOURCE DESTINATION
 *
 * --hinted-map: hintmig send's map of the pages left out because hinted
 * (include/hintmig/hinted_map.h): exactly those may differ. --allow-dst-
 * zero: any page all zeros on the destination may differ (QEMU's own free
 * page hinting, which has no map). Neither: every page must be identical.
 * Exit 0 when no other page differs, 1 when one does, 2 on usage or I/O
 * error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ramcmp.h"

int main(int argc, char **argv)
{
	struct hm_ramcmp_allow allow = { 0 };
	uint64_t *words = NULL;
	int a = 1, rc;
	struct hm_ramcmp r;
	struct stat st;
	char err[512];

	if (argc > 1 && !strcmp(argv[1], "--allow-dst-zero")) {
		allow.dst_zero = 1;
		a++;
	} else if (argc > 2 && !strcmp(argv[1], "--hinted-map")) {
		if (hm_ramcmp_load_hinted(argv[2], &words, &allow.hinted_pages,
					  err, sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			return 2;
		}
		allow.hinted = words;
		a += 2;
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: %s [--hinted-map FILE | "
			"--allow-dst-zero] SOURCE DESTINATION\n", argv[0]);
		free(words);
		return 2;
	}
	if (stat(argv[a], &st)) {
		perror(argv[a]);
		free(words);
		return 2;
	}
	rc = hm_ramcmp_files(argv[a], argv[a + 1], (uint64_t)st.st_size,
			     &allow, NULL, 0, &r, err, sizeof(err));
	free(words);
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	hm_ramcmp_print(stdout, &r);
	return r.bad ? 1 : 0;
}

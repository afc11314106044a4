/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hm-absent KIND...: the skip-reason checks of tests/hm_absent.h for the
 * test scripts. Exit 0 when every KIND is confirmed absent, 1 when one is
 * present (or not shown absent), 2 on a bad KIND. One line per KIND.
 * `hm-absent --list` prints the kinds.
 */
#include <stdio.h>
#include <string.h>

#include "hm_absent.h"

int main(int argc, char **argv)
{
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: hm-absent KIND... | --list\n");
		return 2;
	}
	if (!strcmp(argv[1], "--list")) {
		for (int k = 0; k < HM_ABSENT_NKINDS; k++)
			puts(hm_absent_kinds[k].name);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		int k = hm_absent_lookup(argv[i]);
		char why[200];

		if (k < 0) {
			fprintf(stderr, "hm-absent: unknown kind '%s'\n",
				argv[i]);
			return 2;
		}
		if (hm_absent_check((enum hm_absent_kind)k, why, sizeof(why))) {
			printf("%s: absent (%s)\n", argv[i], why);
		} else {
			printf("%s: present (%s)\n", argv[i], why);
			rc = 1;
		}
	}
	return rc;
}

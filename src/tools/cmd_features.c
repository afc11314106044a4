/* SPDX-License-Identifier: GPL-2.0-or-later */
/* hintmig features [--json] [--mode auto|sync|async]: what the running
 * kernel offers for write tracking, and the tracker mode it leads to. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "hm_config.h"
#include <hintmig/wp_tracker.h>

#if HM_HAVE_JSONC
#include <json-c/json.h>
#endif

#include "cmd.h"
#include "parse.h"

/* One row per boolean capability: the JSON key, the human label, and
 * where the value lives. */
struct cap_row {
	const char *key;
	const char *label;
	size_t off;
};

#define ROW(field, text) { #field, text, offsetof(struct hm_caps, field) }

static const struct cap_row cap_rows[] = {
	ROW(uffd_syscall, "userfaultfd(2) usable"),
	ROW(uffd_dev, "/dev/userfaultfd usable"),
	ROW(uffd_wp, "uffd write-protect (anonymous)"),
	ROW(wp_hugetlbfs_shmem, "uffd write-protect (shmem/memfd)"),
	ROW(wp_unpopulated, "UFFD_FEATURE_WP_UNPOPULATED"),
	ROW(wp_async, "UFFD_FEATURE_WP_ASYNC"),
	ROW(pagemap_scan, "PAGEMAP_SCAN ioctl"),
	ROW(pidfd_getfd, "pidfd_getfd(2)"),
	ROW(thp, "transparent hugepages"),
	ROW(kvm, "/dev/kvm"),
};

#define N_ROWS (sizeof(cap_rows) / sizeof(cap_rows[0]))

static bool cap_value(const struct hm_caps *c, const struct cap_row *r)
{
	return *(const bool *)((const char *)c + r->off);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: hintmig features [--json] [--mode auto|sync|async]\n"
		"Print the kernel's write-tracking capabilities and the tracker\n"
		"mode that the given mode (default auto) resolves to.\n"
		"  --json                  one JSON object instead of text\n"
		"  --mode auto|sync|async  the mode to resolve (default auto)\n"
		"  --help                  this text\n"
		"  --version               the version\n");
}

static void print_human(const struct hm_caps *c, enum hm_tracker_mode want,
			int picked)
{
	char label[64];

	printf("%-35s %s\n", "kernel", c->kernel_release);
	for (size_t i = 0; i < N_ROWS; i++)
		printf("%-35s %s\n", cap_rows[i].label,
		       cap_value(c, &cap_rows[i]) ? "yes" : "no");
	if (c->uffd_errno)
		printf("%-35s %s\n", "userfaultfd error",
		       strerror(c->uffd_errno));
	if (c->unprivileged_userfaultfd >= 0)
		printf("%-35s %d\n", "vm.unprivileged_userfaultfd",
		       c->unprivileged_userfaultfd);
	else
		printf("%-35s unknown\n", "vm.unprivileged_userfaultfd");
	printf("%-35s 0x%" PRIx64 "\n", "UFFDIO_API features",
	       c->uffd_features);
	snprintf(label, sizeof(label), "tracker mode (%s)",
		 hm_tracker_mode_name(want));
	if (picked >= 0)
		printf("%-35s %s\n", label,
		       hm_tracker_mode_name((enum hm_tracker_mode)picked));
	else
		printf("%-35s unavailable: %s\n", label, strerror(-picked));
}

#if HM_HAVE_JSONC
static int print_json(const struct hm_caps *c, enum hm_tracker_mode want,
		      int picked)
{
	json_object *o = json_object_new_object();
	char feat[32];

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "kernel_release",
			       json_object_new_string(c->kernel_release));
	for (size_t i = 0; i < N_ROWS; i++)
		json_object_object_add(o, cap_rows[i].key,
				       json_object_new_boolean(
					       cap_value(c, &cap_rows[i])));
	json_object_object_add(o, "uffd_errno",
			       json_object_new_int(c->uffd_errno));
	json_object_object_add(o, "unprivileged_userfaultfd",
			       json_object_new_int(c->unprivileged_userfaultfd));
	snprintf(feat, sizeof(feat), "0x%" PRIx64, c->uffd_features);
	json_object_object_add(o, "uffd_features", json_object_new_string(feat));
	json_object_object_add(o, "requested_mode",
			       json_object_new_string(hm_tracker_mode_name(want)));
	if (picked >= 0)
		json_object_object_add(
			o, "tracker_mode",
			json_object_new_string(hm_tracker_mode_name(
				(enum hm_tracker_mode)picked)));
	else
		json_object_object_add(o, "tracker_mode", NULL);
	json_object_object_add(o, "tracker_error",
			       picked >= 0 ? NULL :
			       json_object_new_string(strerror(-picked)));
	printf("%s\n", json_object_to_json_string_ext(
			       o, JSON_C_TO_STRING_PRETTY |
					  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return 0;
}
#endif

int hm_cmd_features(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct hm_log log = { hm_log_stderr, NULL, HM_LOG_WARN };
	enum hm_tracker_mode want = HM_TRACKER_AUTO;
	struct hm_caps caps;
	bool json = false;
	int c, picked;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jm:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'm':
			if (hm_tracker_mode_parse(optarg, &want) < 0) {
				fprintf(stderr, "hintmig features: unknown "
						"mode '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			return hm_print_version("hintmig features");
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (hm_caps_probe(&caps, &log) < 0) {
		fprintf(stderr, "hintmig features: probe failed\n");
		return 1;
	}
	picked = hm_tracker_mode_pick(&caps, want);
	if (json) {
#if HM_HAVE_JSONC
		if (print_json(&caps, want, picked) < 0)
			return 1;
#else
		fprintf(stderr, "hintmig features: built without json-c\n");
		return 1;
#endif
	} else {
		print_human(&caps, want, picked);
	}
	return 0;
}

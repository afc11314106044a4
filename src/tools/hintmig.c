/* SPDX-License-Identifier: GPL-2.0-or-later */
/* hintmig: the command-line front end. Dispatches to subcommands. */
#include <stdio.h>
#include <string.h>


#include <hintmig/hintmig.h>

#include "cmd.h"
#include "hm_config.h"

static const struct hm_cmd commands[] = {
	{ "features", "print the kernel capabilities and the tracker mode",
	  hm_cmd_features },
	{ "track-demo", "track the writes of a running process (demo)",
	  hm_cmd_track_demo },
	{ "send", "migrate a running guest (QEMU or synthetic) to a hintmig recv",
	  hm_cmd_send },
	{ "recv", "receive one migration (the destination)", hm_cmd_recv },
#if HM_HAVE_LIBVIRT
	{ "libvirt", "a libvirt domain's setup for hintmig (check DOMAIN; "
	  "hook)", hm_cmd_libvirt },
#endif
#if HM_HAVE_LIBVIRT && HM_HAVE_JSONC
	{ "migrate", "migrate a running libvirt domain (DOMAIN DEST_URI)",
	  hm_cmd_migrate },
	{ "daemon", "hintmigd: plain virsh migrate with hints (the host's "
	  "daemon)", hm_cmd_daemon },
#endif
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: hintmig COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-12s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\noptions:\n"
		"  --help       this text\n"
		"  --version    the version\n"
		"\n'hintmig COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
#if HM_HAVE_LIBVIRT && HM_HAVE_JSONC
	/* /usr/sbin/hintmigd is this program */
	const char *base = argc ? strrchr(argv[0], '/') : NULL;

	if (argc && !strcmp(base ? base + 1 : argv[0], "hintmigd"))
		return hm_cmd_daemon(argc, argv);
#endif
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("hintmig %s\n", hm_version());
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "hintmig: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Subcommands of the hintmig program: one file each, one table entry in
 * hintmig.c. Each returns the process exit status. */
#ifndef HM_TOOLS_CMD_H
#define HM_TOOLS_CMD_H

struct hm_cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
};

int hm_cmd_features(int argc, char **argv);
int hm_cmd_track_demo(int argc, char **argv);
int hm_cmd_send(int argc, char **argv);
int hm_cmd_recv(int argc, char **argv);
int hm_cmd_libvirt(int argc, char **argv); /* with libvirt only */
int hm_cmd_migrate(int argc, char **argv); /* libvirt and json-c */
int hm_cmd_daemon(int argc, char **argv);  /* hintmigd: libvirt, json-c */

#endif

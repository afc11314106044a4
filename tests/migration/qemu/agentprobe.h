/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The test as the host end of a running hintmig-agent's port: HELLO,
 * answers, resynchronization after garbage, STOP, BYE and a second host. */
#ifndef HM_QEMU_AGENTPROBE_H
#define HM_QEMU_AGENTPROBE_H

#include <stddef.h>
#include <stdint.h>

struct hm_agent_probe {
	uint64_t ranges, bytes;		/* epoch 1 */
	uint64_t ranges2, bytes2;	/* after the garbage */
	uint64_t ranges3, bytes3;	/* second connection */
	int64_t resync_ms;		/* garbage to the next HELLO */
	int64_t reconnect_ms;		/* connect to HELLO, second host */
};

/* Talk to the agent behind the chardev socket sock. 0, or -1 with why. */
int hm_agent_probe(const char *sock, struct hm_agent_probe *st, char *why,
		   size_t len);

#endif

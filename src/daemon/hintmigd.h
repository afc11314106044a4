/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmigd: plain `virsh migrate` with hints (docs/libvirt.md "Plain
 * virsh migrate"). One per host. It marks every running domain set up
 * for hintmig with live metadata naming this host's hintmigd (marker.c),
 * and sends a domain's RAM when the destination host's hook asks for it
 * over TLS with both hosts' libvirt migration certificates (R19), while
 * libvirt migrates the domain out of this host (hintmigd.c).
 */
#ifndef HM_DAEMON_HINTMIGD_H
#define HM_DAEMON_HINTMIGD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <libvirt/libvirt.h>

struct hm_tls_creds;

#define HMD_MAX_REQUESTS 16

struct hmd {
	const char *uri;		/* libvirt (NULL: qemu:///system) */
	char addr[300];			/* advertised HOST:PORT */
	char name[256];			/* our certificate's name */
	char tls_dir[512];
	struct hm_tls_creds *srv;
	const char *hinted_map_dir;	/* tests: keep each hinted map */
	unsigned long bandwidth_mib;
	unsigned long qemu_ver;
	bool verbose;

	pthread_mutex_t lock;		/* conn, busy, peers */
	virConnectPtr conn;
	char busy[HMD_MAX_REQUESTS][VIR_UUID_STRING_BUFLEN];	/* domains being sent */
	char peers[HMD_MAX_REQUESTS][1025];	/* requests' peers ("": free) */
	atomic_bool stop;

	/* marker.c */
	int wake[2];
	bool want_events;		/* (under lock) on each new conn */
	int event_cb;			/* on conn, -1: none */
	pthread_t marker_th, event_th;
	bool marker_on;
};

/* Logging: stderr, the journal under systemd. */
void hmd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* libvirt, a reference the caller frees (virConnectClose), or NULL. A
 * connection found dead is replaced, the marker's lifecycle events
 * registered on the new one. */
virConnectPtr hmd_conn(struct hmd *d);

/* The marker (marker.c): threads that keep the metadata on the running
 * domains, woken by libvirt's lifecycle events and every few seconds;
 * hmd_marker_stop ends them and removes this host's metadata again. */
int hmd_marker_start(struct hmd *d);
void hmd_marker_stop(struct hmd *d);
/* (hmd_conn, under d->lock) the lifecycle events on a new connection,
 * and off the old one */
void hmd_marker_events_on(struct hmd *d, virConnectPtr c);
void hmd_marker_events_off(struct hmd *d, virConnectPtr c);

/* Whether a running domain is set up for hintmig on this host: its XML
 * passes hintmig libvirt check and hintmig's monitor is there (its path
 * into qmp). ld gets the XML's reading, ready or not (the caller
 * hm_lv_dom_fini()s it). */
struct hm_lv_dom;
bool hmd_dom_ready(struct hmd *d, virDomainPtr dom, struct hm_lv_dom *ld,
		   char *qmp, size_t len);

#endif

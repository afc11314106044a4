/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmigd's marker: live metadata <hintmigd:host addr= name=> on every
 * running domain set up for hintmig on this host, so that a destination
 * host's hook, which gets the domain's XML from libvirt's migration,
 * knows whom to ask for the RAM. Set when a domain starts or arrives
 * (libvirt's lifecycle events, and a sweep every few seconds), replaced on
 * a domain that arrived from another host, removed from a domain that is
 * no longer ready here and, when hintmigd stops, from all (a domain then
 * migrates without hints, as before).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "daemon/ctl.h"
#include "daemon/hintmigd.h"
#include "tools/libvirt_dom.h"

#define SWEEP_MS 5000

bool hmd_dom_ready(struct hmd *d, virDomainPtr dom, struct hm_lv_dom *ld,
		   char *qmp, size_t len)
{
	char *xml = virDomainGetXMLDesc(dom, 0);
	bool ok = xml && hm_lv_dom_read(xml, d->qemu_ver, NULL, ld) == 0 &&
		  !ld->missing && !ld->refused && ld->id >= 0 &&
		  hm_lv_qmp_path(ld->id, qmp, len) == 0;

	free(xml);
	return ok;
}

/* Whether libvirt runs a job on the domain (a migration: its metadata
 * waits, the job would hold a change 30 s). */
static bool busy_in_libvirt(virDomainPtr dom)
{
	virDomainJobInfo ji;

	/* an incoming migration's job cannot be read: busy too */
	return virDomainGetJobInfo(dom, &ji) < 0 ||
	       ji.type != VIR_DOMAIN_JOB_NONE;
}

static void mark(struct hmd *d, virDomainPtr dom)
{
	char want[700], qmp[512], *cur;
	struct hm_lv_dom ld = { 0 };
	bool ours, had, ready;
	const char *name = virDomainGetName(dom);

	cur = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
				   HM_LV_HOST_NS, VIR_DOMAIN_AFFECT_LIVE);
	snprintf(want, sizeof(want), "addr=\"%s\"", d->addr);
	ours = cur && strstr(cur, want);
	if (ours) {
		snprintf(want, sizeof(want), "name=\"%s\"", d->name);
		ours = strstr(cur, want) != NULL;
	}
	had = cur != NULL;
	free(cur);
	if (ours || busy_in_libvirt(dom))
		return;
	ready = hmd_dom_ready(d, dom, &ld, qmp, sizeof(qmp));
	hm_lv_dom_fini(&ld);
	if (!ready) {
		/* not set up here; metadata another host's hintmigd left
		 * (the domain came from there) must not outlive it */
		if (had && virDomainSetMetadata(dom,
				VIR_DOMAIN_METADATA_ELEMENT, NULL, NULL,
				HM_LV_HOST_NS, VIR_DOMAIN_AFFECT_LIVE) == 0)
			hmd_log("%s is not set up for hintmig on this host: "
				"virsh migrate moves it without hints", name);
		return;
	}
	snprintf(want, sizeof(want), "<host addr='%s' name='%s'/>", d->addr,
		 d->name);
	if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, want,
				 HM_LV_HOST_PREFIX, HM_LV_HOST_NS,
				 VIR_DOMAIN_AFFECT_LIVE) < 0)
		hmd_log("%s: cannot set hintmigd's metadata: %s", name,
			virGetLastErrorMessage());
	else
		hmd_log("%s: set up for hintmig: virsh migrate sends its RAM "
			"through this hintmigd (%s)", name, d->addr);
}

static void unmark(struct hmd *d, virDomainPtr dom)
{
	char want[400], *cur;

	cur = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
				   HM_LV_HOST_NS, VIR_DOMAIN_AFFECT_LIVE);
	snprintf(want, sizeof(want), "addr=\"%s\"", d->addr);
	if (cur && strstr(cur, want) &&
	    virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, NULL, NULL,
				 HM_LV_HOST_NS, VIR_DOMAIN_AFFECT_LIVE) < 0)
		hmd_log("%s: cannot remove hintmigd's metadata: %s",
			virDomainGetName(dom), virGetLastErrorMessage());
	free(cur);
}

static void sweep(struct hmd *d, void (*fn)(struct hmd *, virDomainPtr))
{
	virConnectPtr c = hmd_conn(d);
	virDomainPtr *doms = NULL;
	int n;

	if (!c)
		return;
	n = virConnectListAllDomains(c, &doms,
				     VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	for (int i = 0; i < n; i++) {
		fn(d, doms[i]);
		virDomainFree(doms[i]);
	}
	free(doms);
	virConnectClose(c);
}

static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event,
			int detail, void *opaque)
{
	struct hmd *d = opaque;

	(void)c;
	(void)dom;
	(void)detail;
	if (event == VIR_DOMAIN_EVENT_STARTED ||
	    event == VIR_DOMAIN_EVENT_RESUMED)
		(void)!write(d->wake[1], "e", 1);
	return 0;
}

static void tick(int timer, void *opaque)
{
	(void)timer;
	(void)opaque;	/* wakes the event loop to look at d->stop */
}

static void *event_loop(void *arg)
{
	struct hmd *d = arg;

	while (!atomic_load(&d->stop))
		if (virEventRunDefaultImpl() < 0)
			usleep(100000);
	return NULL;
}

static void *marker_loop(void *arg)
{
	struct hmd *d = arg;
	struct pollfd p = { .fd = d->wake[0], .events = POLLIN };
	char buf[64];

	while (!atomic_load(&d->stop)) {
		sweep(d, mark);
		if (poll(&p, 1, SWEEP_MS) > 0)
			while (read(d->wake[0], buf, sizeof(buf)) > 0)
				;
	}
	return NULL;
}

void hmd_marker_events_on(struct hmd *d, virConnectPtr c)
{
	static bool reconnect;

	d->event_cb = virConnectDomainEventRegisterAny(c, NULL,
			VIR_DOMAIN_EVENT_ID_LIFECYCLE,
			VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), d, NULL);
	if (d->event_cb < 0)
		hmd_log("no libvirt lifecycle events (%s): domains are "
			"marked every %d s", virGetLastErrorMessage(),
			SWEEP_MS / 1000);
	else if (reconnect)
		hmd_log("connected to libvirt again: lifecycle events "
			"registered again");
	reconnect = true;
}

void hmd_marker_events_off(struct hmd *d, virConnectPtr c)
{
	/* (a dead connection: libvirt drops the callback locally, the
	 * error of its call to the daemon is of no interest) */
	if (d->event_cb >= 0)
		(void)virConnectDomainEventDeregisterAny(c, d->event_cb);
	d->event_cb = -1;
}

int hmd_marker_start(struct hmd *d)
{
	virConnectPtr c;

	if (pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	/* the event loop before any registration (libvirt needs one) */
	virEventAddTimeout(1000, tick, NULL, NULL);
	pthread_mutex_lock(&d->lock);
	d->want_events = true;
	d->event_cb = -1;
	if (d->conn)
		hmd_marker_events_on(d, d->conn);
	pthread_mutex_unlock(&d->lock);
	c = hmd_conn(d);
	if (!c)
		return -1;
	virConnectClose(c);
	if (pthread_create(&d->event_th, NULL, event_loop, d) ||
	    pthread_create(&d->marker_th, NULL, marker_loop, d))
		return -1;
	d->marker_on = true;
	return 0;
}

void hmd_marker_stop(struct hmd *d)
{
	if (!d->marker_on)
		return;
	atomic_store(&d->stop, true);
	(void)!write(d->wake[1], "s", 1);
	pthread_join(d->marker_th, NULL);
	/* the event loop ends at its next event or timer: not waited for */
	sweep(d, unmark);
	d->marker_on = false;
}

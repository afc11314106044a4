/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmig libvirt hook NAME OP SUBOP EXTRA: libvirt's qemu hook (installed
 * as /etc/libvirt/hooks/qemu.d/50-hintmig). libvirt runs "started"
 * synchronously on the destination of a migration, after migrate-incoming
 * and before the source's `migrate` (docs/libvirt.md). For a domain whose
 * QEMU waits for an incoming migration it receives the guest RAM into that
 * QEMU with hintmig recv --libvirt and returns when the RAM is complete:
 *
 *  - with hintmig migrate's metadata (<hintmig:migration listen= key=>),
 *    hintmig migrate's sender connects to the receiver;
 *  - with hintmigd's metadata (<hintmigd:host addr= name=>, put on the
 *    domain by the source host's hintmigd: a plain virsh migrate), the
 *    hook asks that hintmigd, over TLS with both hosts' libvirt migration
 *    certificates, to send the domain's RAM to a receiver on a fresh port
 *    with a fresh key (R17, R19), and waits for both.
 *
 * Everything else returns 0 at once. A non-zero exit fails libvirt's
 * Prepare: libvirt stops the destination QEMU and the source runs on.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <hintmig/migrate.h>

#include "daemon/ctl.h"
#include "migrate/guests/qemu/qmp.h"
#include "libvirt_dom.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/transport.h"

struct hook {
	const char *name;
	const struct hm_lv_dom *d;
	char qmp[512];
	FILE *log;		/* NAME-hintmig.log, with the receiver's lines */
	struct hm_lv_fdfile key;	/* the migration's, for the receiver */
	pid_t recv;
	int recv_pidfd;		/* -1: none (polled) */
	int recv_status;	/* its exit status, once ended */
};

/* A line to libvirt (stderr: its error message on failure) and the log. */
static void say(struct hook *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(struct hook *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("hintmig: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (h->log) {
		va_start(ap, fmt);
		fputs("hintmig libvirt hook: ", h->log);
		vfprintf(h->log, fmt, ap);
		fputc('\n', h->log);
		fflush(h->log);
		va_end(ap);
	}
}

static char *read_all(FILE *f)
{
	size_t cap = 65536, n = 0, r;
	char *buf = malloc(cap + 1);

	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (buf)
		buf[n] = 0;
	return buf;
}

/* hintmig recv --libvirt into the domain's QEMU (whose pid libvirt's
 * pidfile gives: R14), listening on listen, its output in the log;
 * ready_fd >= 0 gets a byte once it listens. */
static int start_recv(struct hook *h, const char *listen, const char *tls_dir,
		      unsigned tmo_s, int ready_fd)
{
	char tmo[32], qpid[16], rfd[16];
	pid_t qp = hm_lv_qemu_pid(h->d->name);
	const char *av[24] = { "hintmig", "recv", "--qemu", h->qmp, "--listen",
			       listen, "--libvirt", "--accept-timeout", tmo,
			       "--io-timeout", tmo };
	int ac = 11;

	snprintf(tmo, sizeof(tmo), "%u", (tmo_s ? tmo_s : 60) * 1000);
	if (qp > 0) {
		snprintf(qpid, sizeof(qpid), "%d", (int)qp);
		av[ac++] = "--expect-pid";
		av[ac++] = qpid;
	}
	if (h->key.path[0]) {
		av[ac++] = "--key-file";
		av[ac++] = h->key.path;
	}
	if (tls_dir) {
		av[ac++] = "--tls-dir";
		av[ac++] = tls_dir;
	}
	if (ready_fd >= 0) {
		snprintf(rfd, sizeof(rfd), "%d", ready_fd);
		av[ac++] = "--ready-fd";
		av[ac++] = rfd;
	}
	av[ac] = NULL;
	fflush(h->log);
	h->recv = hm_lv_spawn_self(av, h->log ? fileno(h->log) : -1, SIGTERM);
	if (h->recv > 0)
		h->recv_pidfd = (int)syscall(SYS_pidfd_open, h->recv, 0);
	return h->recv > 0 ? 0 : -1;
}

/* The receiver's exit status once it ended (3 for a signal): block, or
 * with nohang -1 while it runs. */
static int recv_done(struct hook *h, bool nohang)
{
	int st;
	pid_t r;

	if (h->recv <= 0)
		return h->recv_status;
	do
		r = waitpid(h->recv, &st, nohang ? WNOHANG : 0);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -1;
	h->recv = 0;
	if (h->recv_pidfd >= 0)
		close(h->recv_pidfd);
	h->recv_pidfd = -1;
	h->recv_status = r < 0 ? 4 : WIFEXITED(st) ? WEXITSTATUS(st) : 3;
	return h->recv_status;
}

static void recv_stop(struct hook *h)
{
	if (h->recv > 0) {
		kill(h->recv, SIGTERM);
		recv_done(h, false);
	}
}

/* ---- hintmig migrate's metadata ------------------------------------------ */

static int hook_migrate(struct hook *h)
{
	char tls_dir[512];
	int rc;

	if (h->d->mig_expires && h->d->mig_expires < (long long)time(NULL)) {
		fprintf(stderr, "hintmig libvirt hook: %s: ignoring stale "
			"migration metadata (expired)\n", h->name);
		return 0;
	}
	if (h->d->mig_key && *h->d->mig_key &&
	    (rc = hm_lv_fdfile_open(&h->key, "hintmig-key",
				    h->d->mig_key)) < 0) {
		say(h, "cannot write the migration's key: %s", strerror(-rc));
		return 4;
	}
	/* R18: libvirt's own migration TLS directory, as this libvirtd's
	 * qemu.conf names it */
	if (h->d->mig_tls)
		hm_lv_tls_dir(HM_LV_QEMU_CONF, tls_dir, sizeof(tls_dir));
	if (start_recv(h, h->d->mig_listen, h->d->mig_tls ? tls_dir : NULL,
		       h->d->mig_timeout_s, -1) < 0)
		return 4;
	rc = recv_done(h, false);
	if (rc == 5)
		return 0;	/* an ordinary start: nothing to receive */
	if (rc)
		say(h, "receiving the RAM of %s failed (exit %d; see "
		    HM_LV_LOGDIR "/%s-hintmig.log)", h->name, rc, h->name);
	return rc;
}

/* ---- hintmigd's metadata: ask the source host ---------------------------- */

/* A port of hintmig's range free on ip (bound and released: a port taken
 * meanwhile fails the receiver, and the migration, cleanly). */
static int free_port(const char *ip)
{
	const unsigned n = HM_LV_PORT_HI - HM_LV_PORT_LO + 1;
	unsigned start = (unsigned)getpid() ^ (unsigned)time(NULL);

	for (unsigned i = 0; i < n; i++) {
		unsigned port = HM_LV_PORT_LO + (start + i) % n;
		char a[320];
		int fd;

		snprintf(a, sizeof(a), "tcp:%s:%u", ip, port);
		fd = hm_transport_listen(a, 1);
		if (fd >= 0) {
			close(fd);
			return (int)port;
		}
	}
	return -1;
}

/* Waits up to 100 ms for a message from the source or the receiver's
 * end (a pidfd: its exit ends the wait at once, and with it the guest's
 * downtime waits no longer). Whether a message is there. */
static bool ctl_readable_or_exit(struct hook *h, struct hm_tls *t, int fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
			       { .fd = h->recv_pidfd, .events = POLLIN } };

	if (hm_tls_pending(t))
		return true;
	if (poll(p, h->recv_pidfd >= 0 ? 2 : 1,
		 h->recv_pidfd >= 0 ? 100 : 10) <= 0)
		return false;
	return p[0].revents != 0;
}

/* The source's answers until the receiver ends: its exit status, or the
 * hook's failure (6) with the source's reason said. */
static int follow(struct hook *h, struct hm_tls *t, int fd, const char *src)
{
	bool ctl_open = true, sender_done = false;
	uint64_t closed_at = 0;
	char why[256], err[900] = "";
	int rc;

	for (;;) {
		rc = recv_done(h, true);
		if (rc >= 0)
			break;
		if (!ctl_open) {
			/* the source is gone: its sender with it (hintmigd
			 * ends it); the receiver may still be finishing */
			if (hm_auth_now_ms() - closed_at >
			    (sender_done && !err[0] ? 15000u : 3000u)) {
				recv_stop(h);
				rc = h->recv_status;
				break;
			}
			usleep(50000);
			continue;
		}
		if (!ctl_readable_or_exit(h, t, fd))
			continue;
		{
			struct json_object *m = NULL;
			const char *st;

			if (hm_ctl_recv(t, fd, hm_auth_now_ms() + 10000, &m,
					why, sizeof(why)) < 0) {
				if (!sender_done)
					snprintf(err, sizeof(err),
						 "the source host's hintmigd "
						 "at %s went away before the "
						 "RAM was complete (%s)", src,
						 why);
				ctl_open = false;
				closed_at = hm_auth_now_ms();
				continue;
			}
			st = hm_json_str(m, "status", "");
			if (!strcmp(st, "started")) {
				say(h, "the source host's hintmigd at %s sends "
				    "%s's RAM", src, h->name);
			} else if (!strcmp(st, "refused")) {
				snprintf(err, sizeof(err), "the source host's "
					 "hintmigd at %s refused: %s", src,
					 hm_json_str(m, "error", "?"));
				recv_stop(h);
			} else if (!strcmp(st, "done")) {
				int ex = (int)hm_json_int(m, "exit", -1);

				sender_done = true;
				if (ex)
					snprintf(err, sizeof(err), "the "
						 "source's hintmig send failed "
						 "(exit %d): %s", ex,
						 hm_json_str(m, "error", ""));
				else
					say(h, "the source's sender: %s",
					    hm_json_str(m, "summary", "done"));
			}
			json_object_put(m);
		}
	}
	if (rc == 0) {
		/* hintmigd lets its sender finish now (the hinted map, the
		 * detach); the connection's end alone would stop it */
		if (ctl_open) {
			struct json_object *m = json_object_new_object();

			json_object_object_add(m, "op",
					       json_object_new_string("received"));
			hm_ctl_send(t, m);
			json_object_put(m);
		}
		if (err[0])	/* after the acknowledgement: the RAM is here */
			say(h, "%s (after the destination acknowledged the "
			    "final round: the migration goes on)", err);
		/* the sender's summary, if it is here already: waiting for it
		 * would hold libvirt, and the guest's downtime, for the
		 * sender's detach (hintmigd's journal has it anyway) */
		if (ctl_open && !sender_done && hm_ctl_readable(t, fd, 0) > 0) {
			struct json_object *m = NULL;

			if (hm_ctl_recv(t, fd, hm_auth_now_ms() + 1000, &m,
					why, sizeof(why)) == 0 &&
			    hm_json_str(m, "summary", NULL))
				say(h, "the source's sender: %s",
				    hm_json_str(m, "summary", NULL));
			json_object_put(m);
		}
		return 0;
	}
	if (err[0])
		say(h, "%s", err);
	say(h, "receiving the RAM of %s failed (exit %d; see " HM_LV_LOGDIR
	    "/%s-hintmig.log)", h->name, rc, h->name);
	return rc == 5 ? 6 : rc ? rc : 6;
}

/* The incoming migration's source hintmigd, from the migrate hook. */
struct incoming {
	char addr[300], name[256];
};

static int hook_hintmigd(struct hook *h, const struct incoming *in)
{
	const char *src = in->addr;
	char tls_dir[512], err[512], ip[300], la[300], listen[400], me[256];
	char ctl[310], hex[2 * HM_AUTH_KEY_MAX + 1] = "", *p;
	struct hm_auth_key key = { .len = 0 };
	struct hm_tls_creds *cr = NULL;
	struct hm_tls *t = NULL;
	struct json_object *req = NULL;
	int port, rc = 6, ready[2] = { -1, -1 }, fd = -1;
	unsigned tmo_s = 60;
	char c;

	/* R19: both hosts authenticate with libvirt's migration PKI; there
	 * is no path without it */
	hm_lv_tls_dir(HM_LV_QEMU_CONF, tls_dir, sizeof(tls_dir));
	cr = hm_tls_creds_load(tls_dir, false, err, sizeof(err));
	if (!cr) {
		say(h, "%s comes from a host whose hintmigd (%s) sends its RAM, "
		    "but this host has no libvirt migration certificates: %s. "
		    "Refused: hintmig asks for guest RAM only with mutual "
		    "authentication (docs/libvirt.md \"Plain virsh migrate\"; "
		    "stop hintmigd on the source to migrate without hints)",
		    h->name, src, err);
		return 6;
	}
	snprintf(ctl, sizeof(ctl), "tcp:%s", src);
	fd = hm_transport_connect(ctl, 5000);
	if (fd < 0 || hm_transport_set_timeouts(fd, 10000) < 0) {
		say(h, "cannot reach the source host's hintmigd at %s: %s "
		    "(is hintmigd running there? the migration fails, the "
		    "source runs on)", src, strerror(fd < 0 ? -fd : errno));
		goto out;
	}
	if (hm_tls_start(&t, fd, cr, in->name, "hintmigd",
			 hm_auth_now_ms() + 10000, err, sizeof(err)) < 0) {
		say(h, "the source host's hintmigd at %s: TLS with libvirt's "
		    "migration certificates (%s) failed: %s", src, tls_dir,
		    err);
		goto out;
	}
	/* the receiver listens on the address hintmigd sees us from (the
	 * RAM comes to that address, whatever the families and routes) */
	if (hm_transport_local_addr(fd, la, sizeof(la)) < 0 ||
	    strncmp(la, "tcp:", 4) || !(p = strrchr(la, ':'))) {
		say(h, "no local address towards %s", src);
		goto out;
	}
	*p = 0;
	snprintf(ip, sizeof(ip), "%s", la + 4);
	port = free_port(ip);
	if (port < 0) {
		say(h, "no free port in %d-%d on %s", HM_LV_PORT_LO,
		    HM_LV_PORT_HI, ip);
		goto out;
	}
	snprintf(listen, sizeof(listen), "tcp:%s:%d", ip, port);
	if (hm_auth_key_new(&key, hex) < 0 ||
	    (rc = hm_lv_fdfile_open(&h->key, "hintmig-key", hex)) < 0) {
		say(h, "no key for the migration: %s",
		    strerror(rc < 0 ? -rc : errno));
		rc = 6;
		goto out;
	}
	/* the receiver checks that QEMU waits for a migration before the
	 * source is asked anything */
	if (pipe2(ready, 0) < 0 || fcntl(ready[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    start_recv(h, listen, tls_dir, tmo_s, ready[1]) < 0) {
		say(h, "cannot start hintmig recv: %s", strerror(errno));
		goto out;
	}
	close(ready[1]);
	ready[1] = -1;
	if (read(ready[0], &c, 1) != 1) {
		rc = recv_done(h, false);
		if (rc == 5) {	/* not an incoming migration after all */
			rc = 0;
			goto out;
		}
		say(h, "hintmig recv could not receive into %s's QEMU (exit "
		    "%d; see " HM_LV_LOGDIR "/%s-hintmig.log)", h->name, rc,
		    h->name);
		rc = rc ? rc : 6;
		goto out;
	}
	hm_lv_host_name(me, sizeof(me));
	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string("send"));
	json_object_object_add(req, "uuid", json_object_new_string(h->d->uuid));
	json_object_object_add(req, "port", json_object_new_int(port));
	json_object_object_add(req, "name", json_object_new_string(me));
	json_object_object_add(req, "key", json_object_new_string(hex));
	json_object_object_add(req, "timeout", json_object_new_int((int)tmo_s));
	if (hm_ctl_send(t, req) < 0) {
		say(h, "the source host's hintmigd at %s: the request was not "
		    "sent: %s", src, hm_tls_error(t));
		goto out;
	}
	say(h, "%s: asked the source host's hintmigd at %s to send the RAM to "
	    "%s (certificate name %s)", h->name, src, listen, me);
	rc = follow(h, t, fd, src);
out:
	if (rc && rc != 5)
		recv_stop(h);
	json_object_put(req);
	explicit_bzero(hex, sizeof(hex));
	explicit_bzero(&key, sizeof(key));
	hm_tls_free(t);
	if (fd >= 0)
		close(fd);
	if (ready[0] >= 0)
		close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	hm_tls_creds_free(cr);
	return rc;
}

/* ---- the migrate hook: hintmigd's metadata out of the incoming XML ------- */

/* Where the migrate hook leaves the source's hintmigd for the started hook
 * (libvirt's own run directory: per libvirtd). */
#define INCOMING_DIR "/run/libvirt/hintmig"
#define INCOMING_MAX_AGE_S 3600

static void incoming_path(const char *uuid, char *out, size_t len)
{
	snprintf(out, len, INCOMING_DIR "/incoming-%s", uuid);
}

static bool uuid_ok(const char *u)
{
	size_t n = u ? strlen(u) : 0;

	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isxdigit((unsigned char)u[i]) || u[i] == '-'))
			return false;
	return true;
}

/* "migrate begin": libvirt gives the incoming domain's XML and takes a
 * changed one from stdout. The source host's hintmigd element is taken
 * out (it names a host the domain is leaving: kept, a later migration
 * from here would ask that host) and remembered for "started". */
static int hook_incoming(const char *xml)
{
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml",
				      NULL, XML_PARSE_NONET |
				      XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlXPathContextPtr x = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr o = NULL, u = NULL;
	xmlChar *addr = NULL, *name = NULL, *out = NULL;
	char path[300];
	int len = 0, rc = 0, fd;

	if (!x)
		goto done;
	o = xmlXPathEvalExpression(BAD_CAST "/domain/metadata/*"
		"[local-name()='host'][namespace-uri()='" HM_LV_HOST_NS "']",
		x);
	u = xmlXPathEvalExpression(BAD_CAST "string(/domain/uuid)", x);
	if (!o || !o->nodesetval || o->nodesetval->nodeNr < 1 || !u ||
	    !uuid_ok((const char *)u->stringval))
		goto done;	/* nothing of hintmigd's: libvirt goes on */
	addr = xmlGetProp(o->nodesetval->nodeTab[0], BAD_CAST "addr");
	name = xmlGetProp(o->nodesetval->nodeTab[0], BAD_CAST "name");
	for (int i = 0; i < o->nodesetval->nodeNr; i++) {
		xmlUnlinkNode(o->nodesetval->nodeTab[i]);
		xmlFreeNode(o->nodesetval->nodeTab[i]);
		o->nodesetval->nodeTab[i] = NULL;
	}
	incoming_path((const char *)u->stringval, path, sizeof(path));
	if (addr && name && *addr && *name && strlen((char *)addr) < 300 &&
	    strlen((char *)name) < 256 && !strpbrk((char *)addr, " \n") &&
	    !strpbrk((char *)name, " \n")) {
		FILE *f;

		mkdir(INCOMING_DIR, 0700);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
			  O_NOFOLLOW, 0600);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f || fprintf(f, "%s %s %lld\n", (char *)addr,
				  (char *)name, (long long)time(NULL)) < 0 ||
		    fclose(f)) {
			fprintf(stderr, "hintmig: %s: %s\n", path,
				strerror(errno));
			rc = 4;	/* the migration could not get its hints */
			goto done;
		}
	} else {
		unlink(path);
	}
	xmlDocDumpMemory(doc, &out, &len);
	if (out && len > 0)
		fwrite(out, 1, (size_t)len, stdout);
done:
	xmlFree(out);
	xmlFree(addr);
	xmlFree(name);
	xmlXPathFreeObject(o);
	xmlXPathFreeObject(u);
	xmlXPathFreeContext(x);
	if (doc)
		xmlFreeDoc(doc);
	return rc;
}

/* What the migrate hook remembered for this domain (taken: removed), if
 * it is fresh. */
static bool incoming_take(const char *uuid, struct incoming *in)
{
	char path[300], line[700];
	long long when = 0;
	FILE *f;
	bool ok;

	if (!uuid_ok(uuid))
		return false;
	incoming_path(uuid, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fgets(line, sizeof(line), f) &&
	     sscanf(line, "%299s %255s %lld", in->addr, in->name, &when) == 3 &&
	     when + INCOMING_MAX_AGE_S >= (long long)time(NULL);
	fclose(f);
	unlink(path);
	return ok;
}

int hm_lv_hook(int argc, char **argv)
{
	struct hm_lv_dom d = { 0 };
	struct hook h = { .name = argc > 1 ? argv[1] : "?", .d = &d,
			  .recv_pidfd = -1 };
	struct incoming in;
	bool have_in;
	char *xml, log[512];
	int rc = 0;

	/* NAME OP SUBOP EXTRA, the domain XML on stdin */
	if (argc != 5) {
		fputs("Usage: hintmig libvirt hook NAME OP SUBOP EXTRA < "
		      "DOMAIN_XML\n", stderr);
		return 2;
	}
	xml = read_all(stdin);
	if (xml && !strcmp(argv[2], "migrate") && !strcmp(argv[3], "begin")) {
		rc = hook_incoming(xml);
		goto out;
	}
	/* started, and release (of a migration that failed before it
	 * started: the migrate hook's file goes); the rest is not ours */
	if ((strcmp(argv[2], "started") && strcmp(argv[2], "release")) ||
	    !xml || hm_lv_dom_read(xml, 0, NULL, &d) < 0)
		goto out;
	have_in = d.uuid && incoming_take(d.uuid, &in);
	if (strcmp(argv[2], "started") || (!d.mig_listen && !have_in))
		goto out;	/* not a migration hintmig receives */
	if (hm_lv_qmp_path(d.id, h.qmp, sizeof(h.qmp)) < 0) {
		/* asked to receive and cannot: fail the migration cleanly
		 * (libvirt stops this QEMU, the source runs on) */
		fprintf(stderr, "hintmig: domain %s (id %d) has no hintmig "
			"monitor on this host (emulator not hintmig-qemu?)\n",
			argv[1], d.id);
		rc = 4;
		goto out;
	}
	snprintf(log, sizeof(log), HM_LV_LOGDIR "/%s-hintmig.log", argv[1]);
	h.log = fopen(log, "ae");
	/* hintmig migrate's own metadata wins: it runs the sender itself */
	rc = d.mig_listen ? hook_migrate(&h) : hook_hintmigd(&h, &in);
	recv_stop(&h);
	hm_lv_fdfile_close(&h.key);
	if (h.log)
		fclose(h.log);
out:
	hm_lv_dom_fini(&d);
	free(xml);
	return rc;
}

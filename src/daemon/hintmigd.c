/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hintmigd (hintmig daemon): the source host's half of a plain
 * `virsh migrate` with hints (docs/libvirt.md "Plain virsh migrate").
 *
 * It listens for the destination hosts' hooks. A request is served only
 * from a peer whose certificate libvirt's migration CA signed (TLS, both
 * ways: R19), for a running domain of this host that is set up for
 * hintmig and that libvirt is migrating out right now (its job says so:
 * no host, however authenticated, can have the RAM of a domain that is
 * not leaving); the RAM goes to the peer's own address, in TLS, with the
 * key the peer made for this migration (R17, R18). The sender is
 * `hintmig send --libvirt`, as hintmig migrate runs it: attach, rounds
 * with the agent's hints, stop the vCPUs, final round, acknowledgement;
 * libvirt then moves the device state. The sender ends with the request:
 * the peer gone, or hintmigd killed, ends it (the guardian takes back
 * what it granted, R9/R15) and libvirt's migration fails with the source
 * running on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libvirt/virterror.h>

#include <hintmig/migrate.h>

#include "daemon/ctl.h"
#include "daemon/hintmigd.h"
#include "migrate/guests/qemu/qmp.h"
#include "migrate/wire/auth.h"
#include "migrate/wire/tls.h"
#include "migrate/wire/transport.h"
#include "tools/libvirt_dom.h"
#include "tools/cmd.h"
#include "tools/parse.h"

#define MAX_REQUESTS HMD_MAX_REQUESTS	/* connections served at once */
#define PER_PEER 4		/* of them from one address */
#define HANDSHAKE_MS 10000
#define AFTER_ACK_S 120		/* the sender's hinted map, summary, detach */

static volatile sig_atomic_t stop_sig;

void hmd_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("hintmigd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

virConnectPtr hmd_conn(struct hmd *d)
{
	virConnectPtr c = NULL;

	pthread_mutex_lock(&d->lock);
	if (d->conn && virConnectIsAlive(d->conn) != 1) {
		hmd_log("the connection to libvirt is gone: connecting again");
		hmd_marker_events_off(d, d->conn);
		virConnectClose(d->conn);
		d->conn = NULL;
	}
	if (!d->conn) {
		d->conn = virConnectOpen(d->uri ? d->uri : "qemu:///system");
		if (!d->conn) {
			hmd_log("cannot connect to libvirt (%s): %s",
				d->uri ? d->uri : "qemu:///system",
				virGetLastErrorMessage());
		} else {
			if (virConnectGetVersion(d->conn, &d->qemu_ver) < 0)
				d->qemu_ver = 0;
			if (d->want_events)
				hmd_marker_events_on(d, d->conn);
		}
	}
	if (d->conn && virConnectRef(d->conn) == 0)
		c = d->conn;
	pthread_mutex_unlock(&d->lock);
	return c;
}

/* ---- one request ------------------------------------------------------- */

struct req {
	struct hmd *d;
	int fd;
	char peer[NI_MAXHOST];
	bool v6;
	struct hm_tls *t;
	char uuid[VIR_UUID_STRING_BUFLEN];
	bool holds_uuid;
};

static void answer(struct req *r, const char *status, const char *error)
{
	struct json_object *m = json_object_new_object();

	json_object_object_add(m, "status", json_object_new_string(status));
	if (error)
		json_object_object_add(m, "error",
				       json_object_new_string(error));
	if (hm_ctl_send(r->t, m) < 0)
		hmd_log("%s: the answer (%s) was not delivered", r->peer,
			status);
	json_object_put(m);
}

static void refuse(struct req *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void refuse(struct req *r, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	hmd_log("refused %s: %s", r->peer, why);
	answer(r, "refused", why);
}

/* A set of strings in a fixed array (base: n strings of w bytes, ""
 * free), under d->lock: the requests' peers, the domains being sent.
 * set_add adds key if fewer than limit hold it and one is free. */
#define SET(a) &(a)[0][0], sizeof((a)[0]), (int)(sizeof(a) / sizeof((a)[0]))

static bool set_add(struct hmd *d, char *base, size_t w, int n,
		    const char *key, int limit)
{
	int held = 0, free_slot = -1;

	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < n; i++) {
		if (!base[i * w]) {
			if (free_slot < 0)
				free_slot = i;
		} else if (!strcmp(base + i * w, key)) {
			held++;
		}
	}
	if (free_slot >= 0 && held < limit)
		snprintf(base + free_slot * w, w, "%s", key);
	pthread_mutex_unlock(&d->lock);
	return free_slot >= 0 && held < limit;
}

static void set_del(struct hmd *d, char *base, size_t w, int n,
		    const char *key)
{
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < n; i++)
		if (!strcmp(base + i * w, key)) {
			base[i * w] = 0;
			break;
		}
	pthread_mutex_unlock(&d->lock);
}

/* libvirt migrates the domain out of this host now (an outgoing
 * migration job: Begin has run, the destination's Prepare waits for us). */
static bool migrating_out(virDomainPtr dom, char *why, size_t len)
{
	virTypedParameterPtr p = NULL;
	int np = 0, type = VIR_DOMAIN_JOB_NONE, op = -1;
	bool ok;

	if (virDomainGetJobStats(dom, &type, &p, &np, 0) < 0) {
		snprintf(why, len, "libvirt's job of the domain cannot be "
			 "read: %s", virGetLastErrorMessage());
		return false;
	}
	if (virTypedParamsGetInt(p, np, VIR_DOMAIN_JOB_OPERATION, &op) != 1)
		op = -1;
	virTypedParamsFree(p, np);
	ok = type != VIR_DOMAIN_JOB_NONE &&
	     op == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT;
	if (!ok)
		snprintf(why, len, "libvirt is not migrating it out of this "
			 "host (job %d, operation %d)", type, op);
	return ok;
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		      s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '.' || s[i] == '-' || s[i] == ':' ||
		      s[i] == '_'))
			return false;
	return true;
}

static int json_int(struct json_object *o, const char *k, int dflt)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) &&
	       json_object_is_type(v, json_type_int) ?
	       json_object_get_int(v) : dflt;
}

/* Reads what the sender wrote (non-blocking: the pipe is O_NONBLOCK)
 * into line (ll bytes held), logs each whole line, keeps its last
 * "hintmig send:" line in last. The last read's count: 0 at its end,
 * < 0 when nothing is there now. */
static ssize_t relay(int fd, const char *dom, char *line, size_t *ll,
		     char *last, size_t lastlen)
{
	const size_t cap = 1024;
	ssize_t n;

	while ((n = read(fd, line + *ll, cap - 1 - *ll)) > 0) {
		char *s = line, *e;

		*ll += (size_t)n;
		line[*ll] = 0;
		while ((e = strchr(s, '\n'))) {
			*e = 0;
			if (*s)
				hmd_log("%s: %s", dom, s);
			if (strstr(s, "hintmig send:"))
				snprintf(last, lastlen, "%s", s);
			s = e + 1;
		}
		*ll = strlen(s);
		memmove(line, s, *ll + 1);
		if (*ll == cap - 1)
			*ll = 0;	/* an endless line */
	}
	return n;
}

/* SIGTERM (it cancels, the guardian takes back), SIGKILL if it has not
 * ended in 10 s (the guardian still does, R9). */
static void end_sender(pid_t pid, int *st)
{
	kill(pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, st, WNOHANG) == pid)
			return;
		usleep(50000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, st, 0) < 0 && errno == EINTR)
		;
}

/* Runs the sender and relays: its output to the journal, its end to the
 * peer; the peer gone ends it. Its exit status. */
static int run_sender(struct req *r, const struct hm_lv_send_opts *so,
		      const char *dom)
{
	char line[1024], last[600] = "", part[400], sum[420];
	size_t ll = 0;
	int pfd[2], st = 0, ex;
	pid_t pid;
	bool out_open = true, peer_open = true;
	uint64_t done_by = 0;
	struct json_object *m;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	/* the child gets the write end as its stdout/stderr (dup2 drops
	 * CLOEXEC); SIGTERM if this thread ends (hintmigd killed) */
	pid = hm_lv_start_sender(so, pfd[1], SIGTERM);
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -1;
	}
	hmd_log("%s: sending to %s (hintmig send, pid %d)", dom, so->to,
		(int)pid);
	answer(r, "started", NULL);
	for (;;) {
		struct pollfd p[2] = { { .fd = pfd[0], .events = POLLIN },
				       { .fd = r->fd, .events = POLLIN } };
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid) {
			/* its last lines (its guardian may hold the pipe
			 * open: no waiting for the end) */
			relay(pfd[0], dom, line, &ll, last, sizeof(last));
			break;
		}
		if (!peer_open && hm_auth_now_ms() > done_by) {
			hmd_log("%s: the sender has not ended %d s after the "
				"destination acknowledged: ending it", dom,
				AFTER_ACK_S);
			end_sender(pid, &st);
			break;
		}
		/* a descriptor closed or done with is not polled */
		if (!out_open)
			p[0].fd = -1;
		if (!peer_open)
			p[1].fd = -1;
		if (poll(p, 2, 200) <= 0 &&
		    !(peer_open && hm_tls_pending(r->t)))
			continue;
		if (out_open && (p[0].revents & (POLLIN | POLLHUP)) &&
		    relay(pfd[0], dom, line, &ll, last, sizeof(last)) <= 0)
			out_open = false;
		if (peer_open && ((p[1].revents & (POLLIN | POLLHUP | POLLERR))
				  || hm_tls_pending(r->t))) {
			struct json_object *msg = NULL;
			const char *op;
			char why[200] = "a message that is not \"received\"";

			/* the hook's one message after its request: its
			 * receiver has the RAM (the sender may finish) */
			if (hm_ctl_recv(r->t, r->fd, hm_auth_now_ms() + 1000, &msg,
					why, sizeof(why)) == 0 &&
			    (op = hm_json_str(msg, "op", NULL)) &&
			    !strcmp(op, "received")) {
				peer_open = false;
				done_by = hm_auth_now_ms() + AFTER_ACK_S * 1000;
				json_object_put(msg);
				continue;
			}
			json_object_put(msg);
			/* anything else is its end before the RAM was
			 * complete (the hook failed or was killed) */
			hmd_log("%s: the destination's hook went away (%s): "
				"ending the sender", dom, why);
			end_sender(pid, &st);
			break;
		}
	}
	close(pfd[0]);
	ex = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	hm_lv_send_summary(so->json, true, part, sizeof(part));
	snprintf(sum, sizeof(sum), "RAM by hintmig: %s", part);
	if (ex)
		hmd_log("%s: hintmig send failed (exit %d)%s%s", dom, ex,
			last[0] ? ": " : "", last);
	else
		hmd_log("%s: sent: %s", dom, sum);
	m = json_object_new_object();
	json_object_object_add(m, "status", json_object_new_string("done"));
	json_object_object_add(m, "exit", json_object_new_int(ex));
	if (ex)
		json_object_object_add(m, "error", json_object_new_string(
					       last[0] ? last : "see the "
					       "journal of hintmigd"));
	json_object_object_add(m, "summary", json_object_new_string(sum));
	hm_ctl_send(r->t, m);
	json_object_put(m);
	return ex;
}

static void handle(struct req *r, struct json_object *q)
{
	struct hmd *d = r->d;
	const char *op = hm_json_str(q, "op", NULL);
	const char *uuid = hm_json_str(q, "uuid", NULL);
	const char *name = hm_json_str(q, "name", NULL);
	const char *hex = hm_json_str(q, "key", NULL);
	int port = json_int(q, "port", 0), tmo = json_int(q, "timeout", 60);
	struct hm_auth_key key;
	struct hm_lv_dom ld = { 0 };
	struct hm_lv_send_opts so = { 0 };
	virConnectPtr c = NULL;
	virDomainPtr dom = NULL;
	struct hm_lv_fdfile kf = { .fd = -1 }, jf = { .fd = -1 };
	char why[400], qmp[512], to[300];
	char map[1024], khex[2 * HM_AUTH_KEY_MAX + 1] = "";

	if (!op || strcmp(op, "send") || !uuid || !name_ok(name) || !hex ||
	    port < 1 || port > 65535 || tmo < 5 || tmo > 3600 ||
	    strlen(hex) > 2 * HM_AUTH_KEY_MAX || hm_auth_key_hex(hex, &key) < 0) {
		refuse(r, "a malformed request");
		return;
	}
	hm_auth_key_to_hex(&key, khex);	/* normalized */
	explicit_bzero(&key, sizeof(key));
	snprintf(r->uuid, sizeof(r->uuid), "%s", uuid);
	c = hmd_conn(d);
	dom = c ? virDomainLookupByUUIDString(c, uuid) : NULL;
	if (!dom || virDomainIsActive(dom) != 1 ||
	    virDomainGetUUIDString(dom, r->uuid) < 0) {
		refuse(r, "no running domain %s on this host", r->uuid);
		goto out;
	}
	if (!migrating_out(dom, why, sizeof(why))) {
		refuse(r, "%s: %s", virDomainGetName(dom), why);
		goto out;
	}
	if (!hmd_dom_ready(d, dom, &ld, qmp, sizeof(qmp))) {
		refuse(r, "%s is not set up for hintmig on this host "
		       "(hintmig libvirt check %s)", virDomainGetName(dom),
		       virDomainGetName(dom));
		goto out;
	}
	/* one sender per domain at a time */
	r->holds_uuid = set_add(d, SET(d->busy), r->uuid, 1);
	if (!r->holds_uuid) {
		refuse(r, "%s: a migration of it is already being sent",
		       ld.name);
		goto out;
	}
	/* R17: the peer's key, for our sender only, and its summary: in
	 * memfds (CLOEXEC: not into another request's sender) */
	{
		int e = hm_lv_fdfile_open(&kf, "hintmig-key", khex);

		if (!e)
			e = hm_lv_fdfile_open(&jf, "hintmig-json", NULL);
		if (e < 0) {
			refuse(r, "cannot hold the migration's key: %s",
			       strerror(-e));
			goto out;
		}
	}
	/* the RAM goes to the peer that asked, nowhere else */
	snprintf(to, sizeof(to), r->v6 ? "tcp:[%s]:%d" : "tcp:%s:%d", r->peer,
		 port);
	so.qmp = qmp;
	so.to = to;
	so.agent = ld.agent_sock;
	so.qemu_pid = hm_lv_qemu_pid(ld.name);
	so.key_file = kf.path;
	so.tls_dir = d->tls_dir;	/* R18: always */
	so.tls_name = name;
	so.json = jf.path;
	so.bandwidth_mib = d->bandwidth_mib;
	so.timeout_s = (unsigned)tmo;
	so.verbose = d->verbose;
	if (d->hinted_map_dir) {
		snprintf(map, sizeof(map), "%s/%s.hinted.map",
			 d->hinted_map_dir, ld.name);
		so.hinted_map = map;
	}
	hmd_log("%s: %s asks for its RAM (libvirt migrates it there)", ld.name,
		r->peer);
	if (run_sender(r, &so, ld.name) < 0)
		refuse(r, "cannot start hintmig send: %s", strerror(errno));
out:
	explicit_bzero(khex, sizeof(khex));
	hm_lv_fdfile_close(&kf);
	hm_lv_fdfile_close(&jf);
	if (r->holds_uuid)
		set_del(d, SET(d->busy), r->uuid);
	hm_lv_dom_fini(&ld);
	if (dom)
		virDomainFree(dom);
	if (c)
		virConnectClose(c);
}

static void *serve(void *arg)
{
	struct req *r = arg;
	struct json_object *q = NULL;
	char why[400];

	if (hm_transport_set_timeouts(r->fd, HANDSHAKE_MS) < 0 ||
	    hm_tls_start(&r->t, r->fd, r->d->srv, NULL, "the hook",
			 hm_auth_now_ms() + HANDSHAKE_MS, why,
			 sizeof(why)) < 0) {
		/* no certificate of libvirt's CA: not a host of ours */
		hmd_log("refused a connection from %s: %s", r->peer, why);
		goto out;
	}
	if (hm_ctl_recv(r->t, r->fd, hm_auth_now_ms() + HANDSHAKE_MS, &q, why,
			sizeof(why)) < 0) {
		hmd_log("%s: no request: %s", r->peer, why);
		goto out;
	}
	handle(r, q);
out:
	json_object_put(q);
	hm_tls_free(r->t);
	close(r->fd);
	set_del(r->d, SET(r->d->peers), r->peer);
	free(r);
	return NULL;
}

static void accept_one(struct hmd *d, int lfd)
{
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	struct req *r;
	pthread_t th;
	pthread_attr_t at;
	int fd = hm_transport_accept(lfd, 500);

	if (fd < 0)
		return;
	r = calloc(1, sizeof(*r));
	if (!r || getpeername(fd, (struct sockaddr *)&sa, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&sa, sl, r->peer, sizeof(r->peer),
			NULL, 0, NI_NUMERICHOST)) {
		hmd_log("a connection dropped: %s", r ? "its address is "
			"unreadable" : "out of memory");
		free(r);
		close(fd);
		return;
	}
	r->d = d;
	r->fd = fd;
	r->v6 = sa.ss_family == AF_INET6;
	if (r->v6 && !strncmp(r->peer, "::ffff:", 7)) {
		memmove(r->peer, r->peer + 7, strlen(r->peer + 7) + 1);
		r->v6 = false;
	}
	/* MAX_REQUESTS in all, PER_PEER from one address: a peer holding
	 * connections before or after its handshake blocks only its own */
	if (!set_add(d, SET(d->peers), r->peer, PER_PEER)) {
		hmd_log("a connection from %s dropped: %d requests from it or "
			"%d in all run already", r->peer, PER_PEER,
			MAX_REQUESTS);
		free(r);
		close(fd);
		return;
	}
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, serve, r)) {
		set_del(d, SET(d->peers), r->peer);
		close(fd);
		free(r);
	}
	pthread_attr_destroy(&at);
}

/* ---- the daemon --------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("Usage: hintmigd [OPTIONS]   (or: hintmig daemon [OPTIONS])\n"
"Plain virsh migrate with free page hints (docs/libvirt.md \"Plain virsh\n"
"migrate\"): marks this host's running domains set up for hintmig, and sends\n"
"a domain's RAM when the destination host's libvirt hook asks for it while\n"
"libvirt migrates it there. Both hosts authenticate with libvirt's migration\n"
"certificates; without them hintmigd does not start.\n"
"  -l, --listen ADDR     where the hooks connect (default tcp:[::]:49290, every\n"
"                        address, IPv6 and IPv4); a socket systemd passes\n"
"                        (hintmigd.socket) is taken instead\n"
"  -a, --advertise HOST:PORT  the address written into the domains'\n"
"                        metadata (default: this host's name and --listen's\n"
"                        port)\n"
"  -n, --name NAME       the name in this host's server certificate (default\n"
"                        --advertise's host)\n"
"  -c, --connect URI     libvirt (default qemu:///system)\n"
"  --tls-dir DIR         libvirt's migration certificates (default: qemu.conf's\n"
"                        migrate_tls_x509_cert_dir, default_tls_x509_cert_dir,\n"
"                        or /etc/pki/qemu)\n"
"  --max-bandwidth MIB   each sender's limit in MiB/s (default none)\n"
"  --hinted-map-dir DIR  keep each migration's hinted map as DIR/NAME.hinted.map\n"
"  -v, --verbose         the senders' progress in the log\n"
"  --help, --version\n", f);
}

/* The socket systemd passes (hintmigd.socket, or systemd-socket-activate):
 * LISTEN_PID is ours and LISTEN_FDS 1, fd 3 a listening TCP socket. -1
 * when nothing is passed to this process, -2 when what is passed is not
 * that (said why). The variables go: the senders must not see them. */
static int passed_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa), vl;
	int fd = 3, listening = 0, type = 0, ok = -1;
	char *end;
	long v;

	if (!pid || !n)
		return -1;
	errno = 0;
	v = strtol(pid, &end, 10);
	if (errno || *end || v != (long)getpid())
		return -1;	/* passed to another process */
	if (strcmp(n, "1")) {
		hmd_log("systemd passed %s sockets: hintmigd takes exactly "
			"one (one ListenStream= in hintmigd.socket)", n);
		ok = -2;
	} else if (vl = sizeof(listening),
		   getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening,
			      &vl) < 0 || !listening ||
		   (vl = sizeof(type), getsockopt(fd, SOL_SOCKET, SO_TYPE,
						  &type, &vl) < 0) ||
		   type != SOCK_STREAM ||
		   getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 ||
		   (sa.ss_family != AF_INET && sa.ss_family != AF_INET6)) {
		hmd_log("the socket systemd passed (fd 3) is not a listening "
			"TCP socket: hintmigd.socket needs ListenStream= with "
			"a port or an address and a port");
		ok = -2;
	} else {
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		ok = fd;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return ok;
}

/* libvirt's errors are reported where they matter, not by libvirt's
 * default handler (an incoming domain's job, a domain gone meanwhile) */
static void quiet_errors(void *opaque, virErrorPtr e)
{
	(void)opaque;
	(void)e;
}

static void on_signal(int sig)
{
	stop_sig = sig;
}

int hm_cmd_daemon(int argc, char **argv)
{
	enum { O_TLS_DIR = 256, O_BW, O_MAP, O_HELP, O_VER };
	static const struct option lo[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "advertise", required_argument, NULL, 'a' },
		{ "name", required_argument, NULL, 'n' },
		{ "connect", required_argument, NULL, 'c' },
		{ "tls-dir", required_argument, NULL, O_TLS_DIR },
		{ "max-bandwidth", required_argument, NULL, O_BW },
		{ "hinted-map-dir", required_argument, NULL, O_MAP },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, O_HELP },
		{ "version", no_argument, NULL, O_VER },
		{ 0 }
	};
	static struct hmd d = { .lock = PTHREAD_MUTEX_INITIALIZER };
	const char *listen = "tcp:[::]:49290", *advertise = NULL, *name = NULL;
	const char *tls_dir = NULL;
	char err[600], la[300], sock[300], host[256], port[16];
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t u;
	int c, lfd;
	bool listen_default = true;

	optind = 1;
	while ((c = getopt_long(argc, argv, "l:a:n:c:v", lo, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; listen_default = false; break;
		case 'a': advertise = optarg; break;
		case 'n': name = optarg; break;
		case 'c': d.uri = optarg; break;
		case 'v': d.verbose = true; break;
		case O_TLS_DIR: tls_dir = optarg; break;
		case O_MAP: d.hinted_map_dir = optarg; break;
		case O_BW:
			if (hm_parse_uint(optarg, 1 << 30, &u) || !u) {
				fprintf(stderr, "hintmigd: bad --max-bandwidth "
					"'%s'\n", optarg);
				return 2;
			}
			d.bandwidth_mib = (unsigned long)u;
			break;
		case O_HELP: usage(stdout); return 0;
		case O_VER: return hm_print_version("hintmigd");
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || strncmp(listen, "tcp:", 4)) {
		usage(stderr);
		return 2;
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	virSetErrorFunc(NULL, quiet_errors);
	/* R19: libvirt's migration PKI, or nothing at all */
	if (tls_dir)
		snprintf(d.tls_dir, sizeof(d.tls_dir), "%s", tls_dir);
	else
		hm_lv_tls_dir(HM_LV_QEMU_CONF, d.tls_dir, sizeof(d.tls_dir));
	d.srv = hm_tls_creds_load(d.tls_dir, true, err, sizeof(err));
	if (!d.srv) {
		hmd_log("no libvirt migration certificates: %s. hintmigd "
			"serves only hosts that authenticate with them "
			"(docs/libvirt.md \"Plain virsh migrate\"); without "
			"it, virsh migrate moves this host's domains without "
			"hints", err);
		return 1;
	}
	lfd = passed_socket();
	if (lfd == -2) {
		hm_tls_creds_free(d.srv);
		return 2;
	}
	if (lfd >= 0) {
		if (!listen_default)
			hmd_log("--listen %s ignored: systemd passed the "
				"socket", listen);
		if (hm_transport_local_addr(lfd, sock, sizeof(sock)) <= 0)
			snprintf(sock, sizeof(sock), "tcp::49290");
		listen = sock;
	} else {
		lfd = hm_transport_listen(listen, 64);
		if (lfd == -EAFNOSUPPORT && listen_default) {
			listen = "tcp:0.0.0.0:49290";	/* no IPv6 here */
			lfd = hm_transport_listen(listen, 64);
		}
	}
	if (lfd < 0) {
		hmd_log("cannot listen on %s: %s", listen, strerror(-lfd));
		hm_tls_creds_free(d.srv);
		return 1;
	}
	if (hm_transport_parse_tcp(listen + 4, host, sizeof(host), port,
				   sizeof(port)) < 0)
		port[0] = 0;
	if (!strcmp(port, "0") && hm_transport_local_addr(lfd, la,
							   sizeof(la)) > 0)
		snprintf(port, sizeof(port), "%s", strrchr(la, ':') + 1);
	if (advertise) {
		snprintf(d.addr, sizeof(d.addr), "%s", advertise);
	} else {
		hm_lv_host_name(host, sizeof(host));
		snprintf(d.addr, sizeof(d.addr), "%s:%s", host, port);
	}
	if (name) {
		snprintf(d.name, sizeof(d.name), "%s", name);
	} else if (hm_transport_parse_tcp(d.addr, host, sizeof(host), port,
					  sizeof(port)) == 0) {
		snprintf(d.name, sizeof(d.name), "%s", host);
	}
	if (!name_ok(d.name) || strchr(d.addr, '\'') || strchr(d.addr, '"')) {
		hmd_log("bad --advertise '%s' or --name '%s'", d.addr, d.name);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (virEventRegisterDefaultImpl() < 0 || hmd_marker_start(&d) < 0) {
		hmd_log("cannot watch libvirt's domains: %s",
			virGetLastErrorMessage());
		close(lfd);
		return 1;
	}
	hmd_log("listening on %s%s, advertised as %s (certificate name %s), "
		"libvirt migration certificates in %s", listen,
		listen == sock ? " (systemd's socket)" : "", d.addr, d.name,
		d.tls_dir);
	while (!stop_sig)
		accept_one(&d, lfd);
	hmd_log("stopping (signal %d): this host's domains lose hintmigd's "
		"metadata (virsh migrate moves them without hints)",
		(int)stop_sig);
	close(lfd);
	hmd_marker_stop(&d);
	/* running senders end with their requests' threads (SIGTERM) */
	return 0;
}

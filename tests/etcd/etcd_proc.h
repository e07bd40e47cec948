/*
 * A real single-member etcd for tests: on free loopback ports, with its data
 * in a private temporary directory, killed when the test process ends (by
 * atexit, and by the kernel if the test dies: PR_SET_PDEATHSIG).
 *
 *   struct etcd_proc e;
 *   etcd_proc_init(&e);        temp dir, ports
 *   etcd_proc_start(&e, NULL); wait until it answers
 *   ... e.url ...
 *   etcd_proc_stop(&e);        SIGKILL, reap
 *   etcd_proc_cleanup(&e);     stop, remove the directory
 */
#ifndef KSTATEFS_TESTS_ETCD_PROC_H
#define KSTATEFS_TESTS_ETCD_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd_client.h"

struct etcd_proc {
	char dir[64];        /* temp dir: data/, etcd.log */
	int client_port;
	int peer_port;
	char url[64];        /* http://127.0.0.1:client_port */
	pid_t pid;           /* 0: not running */
};

/* A loopback port nobody listens on right now (the kernel's pick). */
static inline int etcd_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static inline int etcd_proc_init(struct etcd_proc *e)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/kstatefs-etcd-XXXXXX");
	if (mkdtemp(e->dir) == NULL)
		return errno;
	e->client_port = etcd_free_port();
	e->peer_port = etcd_free_port();
	if (e->client_port < 0 || e->peer_port < 0 ||
	    e->client_port == e->peer_port)
		return EADDRINUSE;
	snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", e->client_port);
	return 0;
}

/* Starts etcd (same data every time, so a restart keeps everything) with
 * client URLs `listen` (NULL: e->url) and waits up to 20 s for it to
 * answer there.  0 or an errno. */
static inline int etcd_proc_start(struct etcd_proc *e, const char *listen)
{
	char data[128], peer[64], cluster[96], log[128];
	const char *urls = listen ? listen : e->url;
	struct ks_etcd_options o = { .prefix = "", .timeout = 1.0 };
	struct ks_etcd *c = NULL;
	struct ks_etcd_status st;
	const char *first;
	char first_url[64];
	pid_t pid;
	int err = ETIMEDOUT;
	char msg[512] = "";

	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", e->peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* never outlive the test, whatever happens to it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execlp("etcd", "etcd", "--name", "t", "--data-dir", data,
		       "--listen-client-urls", urls,
		       "--advertise-client-urls", urls,
		       "--listen-peer-urls", peer,
		       "--initial-advertise-peer-urls", peer,
		       "--initial-cluster", cluster,
		       "--logger", "zap", "--log-level", "warn",
		       (char *)NULL);
		_exit(127);
	}
	e->pid = pid;

	first = strchr(urls, ',');
	snprintf(first_url, sizeof(first_url), "%.*s",
		 first ? (int)(first - urls) : (int)strlen(urls), urls);
	o.endpoints = first_url;
	if (ks_etcd_create(&o, &c) != 0)
		return ENOMEM;
	for (int i = 0; i < 20; i++) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			e->pid = 0;
			err = ECHILD;   /* it exited: a port was taken? */
			break;
		}
		err = ks_etcd_status(c, 1.0, &st, msg, sizeof(msg));
		if (err == 0 && st.has_leader)
			break;
		if (err == 0)
			usleep(100 * 1000);
		err = err ? err : EAGAIN;
	}
	ks_etcd_free(c);
	if (err)
		fprintf(stderr, "etcd at %s: %s\n", first_url, msg);
	return err;
}

static inline void etcd_proc_signal(struct etcd_proc *e, int sig)
{
	if (e->pid > 0)
		kill(e->pid, sig);
}

/* Waits (up to 2 s) until a SIGSTOP has taken effect: state 'T' in
 * /proc/PID/stat. */
static inline void etcd_proc_wait_stopped(struct etcd_proc *e)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)e->pid);
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(path, "r");
		char *p = NULL;

		if (f != NULL) {
			if (fgets(buf, sizeof(buf), f) != NULL)
				p = strrchr(buf, ')');
			fclose(f);
		}
		if (p != NULL && p[1] == ' ' && p[2] == 'T')
			return;
		usleep(10000);
	}
}

static inline void etcd_proc_stop(struct etcd_proc *e)
{
	if (e->pid <= 0)
		return;
	kill(e->pid, SIGKILL);   /* works on a stopped process too */
	waitpid(e->pid, NULL, 0);
	e->pid = 0;
}

static inline void etcd_proc_cleanup(struct etcd_proc *e)
{
	char cmd[128];

	etcd_proc_stop(e);
	if (e->dir[0] != '\0' && strncmp(e->dir, "/tmp/kstatefs-etcd-", 19) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", e->dir);
	}
	e->dir[0] = '\0';
}

#endif

/*
 * A relay in front of a real etcd for tests: a loopback port that passes
 * every connection through to etcd, byte for byte (watch streams too), and
 * can play a member that dies after applying a write: armed, the next txn
 * with a put that passes through reaches etcd, which applies it, and its
 * answer is dropped and the connection reset.  Several relays may share one
 * arming (struct relay_arm), so that whichever one the client uses takes
 * it, and the resend passes through another.
 *
 *   struct relay_arm arm = { 0 };
 *   struct relay r;
 *   relay_start(&r, etcd_port, &arm);   r.url is the endpoint
 *   atomic_store(&arm.armed, 1);        the next write lands, answer lost
 *   relay_stop(&r);
 */
#ifndef KSTATEFS_TESTS_ETCD_RELAY_H
#define KSTATEFS_TESTS_ETCD_RELAY_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct relay_arm {
	atomic_int armed;        /* writes still to land with their answer lost */
	atomic_int landed;       /* writes that did */
	/* Called after etcd answered a landed write, before the reset (e.g.
	 * another host's commit, in between). */
	void (*after_landing)(void *arg);
	void *arg;
};

#define RELAY_CONNS 64

struct relay {
	int listen_fd;
	int etcd_port;
	char url[64];
	struct relay_arm *arm;
	atomic_bool stop;
	pthread_t thread;
	pthread_t conns[RELAY_CONNS];
	int n_conns;
};

struct relay_conn {
	struct relay *r;
	int client, server;
};

static inline int relay_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static inline bool relay_send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static inline void *relay_conn_run(void *arg)
{
	struct relay_conn *k = arg;
	struct relay *r = k->r;
	/* what the client sent since etcd last answered: one request */
	static _Thread_local char pending[1 << 16];
	size_t n_pending = 0;
	bool landing = false;
	char buf[1 << 16];

	while (!atomic_load(&r->stop)) {
		struct pollfd p[2] = { { .fd = k->client, .events = POLLIN },
				       { .fd = k->server, .events = POLLIN } };
		ssize_t got;

		if (poll(p, 2, 50) <= 0)
			continue;
		if (p[0].revents) {
			got = read(k->client, buf, sizeof(buf));
			if (got <= 0 || !relay_send_all(k->server, buf,
							 (size_t)got))
				break;
			if (n_pending + (size_t)got < sizeof(pending) - 1) {
				memcpy(pending + n_pending, buf, (size_t)got);
				n_pending += (size_t)got;
				pending[n_pending] = '\0';
			}
			if (!landing && strstr(pending, "/v3/kv/txn") &&
			    strstr(pending, "request_put")) {
				int a = atomic_load(&r->arm->armed);

				while (a > 0 && !atomic_compare_exchange_weak(
						&r->arm->armed, &a, a - 1))
					;
				landing = a > 0;
			}
		}
		if (p[1].revents) {
			got = read(k->server, buf, sizeof(buf));
			if (got <= 0)
				break;
			if (landing) {
				/* applied: the answer goes nowhere, and the
				 * client's connection is reset */
				struct linger l = { .l_onoff = 1,
						    .l_linger = 0 };

				if (r->arm->after_landing)
					r->arm->after_landing(r->arm->arg);
				atomic_fetch_add(&r->arm->landed, 1);
				setsockopt(k->client, SOL_SOCKET, SO_LINGER,
					   &l, sizeof(l));
				break;
			}
			if (!relay_send_all(k->client, buf, (size_t)got))
				break;
			n_pending = 0;
			pending[0] = '\0';
		}
	}
	close(k->client);
	close(k->server);
	free(k);
	return NULL;
}

static inline void *relay_run(void *arg)
{
	struct relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd p = { .fd = r->listen_fd, .events = POLLIN };
		struct relay_conn *k;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(r->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		k = calloc(1, sizeof(*k));
		if (k == NULL || r->n_conns == RELAY_CONNS ||
		    (k->server = relay_connect(r->etcd_port)) < 0) {
			free(k);
			close(fd);
			continue;
		}
		k->r = r;
		k->client = fd;
		if (pthread_create(&r->conns[r->n_conns], NULL, relay_conn_run,
				   k) == 0) {
			r->n_conns++;
		} else {
			close(k->server);
			close(fd);
			free(k);
		}
	}
	for (int i = 0; i < r->n_conns; i++)
		pthread_join(r->conns[i], NULL);
	return NULL;
}

static inline int relay_start(struct relay *r, int etcd_port,
			      struct relay_arm *arm)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(r, 0, sizeof(*r));
	r->etcd_port = etcd_port;
	r->arm = arm;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (r->listen_fd < 0 ||
	    bind(r->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(r->listen_fd, 16) != 0 ||
	    getsockname(r->listen_fd, (struct sockaddr *)&a, &alen) != 0 ||
	    pthread_create(&r->thread, NULL, relay_run, r) != 0)
		return -1;
	snprintf(r->url, sizeof(r->url), "http://127.0.0.1:%d",
		 ntohs(a.sin_port));
	return 0;
}

static inline void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->listen_fd);
}

#endif

/*
 * A minimal Redis client: see redis.h.
 */
#include "redis.h"

#include "bench.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF (64 * 1024)

struct redis {
	int fd;
	char *out;
	size_t out_len, out_cap;
	char in[BUF];
	size_t in_off, in_len;
};

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	CHECK(strlen(path) < sizeof(sa.sun_path), "redis socket %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0, "socket");
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	      "connect to redis at %s", path);
	return fd;
}

static int connect_tcp(const char *where)
{
	char host[256];
	const char *colon = strrchr(where, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int fd, one = 1;

	CHECK(colon && (size_t)(colon - where) < sizeof(host),
	      "KSTATEFS_BENCH_REDIS %s: unix:PATH or HOST:PORT", where);
	memcpy(host, where, (size_t)(colon - where));
	host[colon - where] = '\0';
	errno = 0;
	CHECK(getaddrinfo(host, colon + 1, &hints, &ai) == 0,
	      "redis address %s", where);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0, "socket");
	CHECK(connect(fd, ai->ai_addr, ai->ai_addrlen) == 0,
	      "connect to redis at %s", where);
	freeaddrinfo(ai);
	/* Every command waits for its reply: no Nagle delay. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

struct redis *redis_open(void)
{
	const char *where = getenv("KSTATEFS_BENCH_REDIS");
	struct redis *r = calloc(1, sizeof(*r));

	CHECK(r, "calloc");
	errno = 0;
	CHECK(where && *where, "KSTATEFS_BENCH_REDIS is not set");
	if (strncmp(where, "unix:", 5) == 0)
		r->fd = connect_unix(where + 5);
	else
		r->fd = connect_tcp(where);
	return r;
}

static void out_put(struct redis *r, const void *p, size_t len)
{
	if (r->out_len + len > r->out_cap) {
		size_t cap = r->out_cap ? r->out_cap : 8192;

		while (cap < r->out_len + len)
			cap *= 2;
		r->out = realloc(r->out, cap);
		CHECK(r->out, "realloc");
		r->out_cap = cap;
	}
	memcpy(r->out + r->out_len, p, len);
	r->out_len += len;
}

void redis_put(struct redis *r, int argc, const char *const *argv,
	       const size_t *len)
{
	char head[32];

	out_put(r, head, (size_t)snprintf(head, sizeof(head), "*%d\r\n", argc));
	for (int i = 0; i < argc; i++) {
		out_put(r, head, (size_t)snprintf(head, sizeof(head),
						  "$%zu\r\n", len[i]));
		out_put(r, argv[i], len[i]);
		out_put(r, "\r\n", 2);
	}
}

void redis_flush(struct redis *r)
{
	for (size_t off = 0; off < r->out_len;) {
		ssize_t n = write(r->fd, r->out + off, r->out_len - off);

		CHECK(n > 0 || errno == EINTR, "write to redis");
		if (n > 0)
			off += (size_t)n;
	}
	r->out_len = 0;
}

static void fill(struct redis *r)
{
	ssize_t n;

	if (r->in_off == r->in_len)
		r->in_off = r->in_len = 0;
	if (r->in_off > 0 && r->in_len == sizeof(r->in)) {
		memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
		r->in_len -= r->in_off;
		r->in_off = 0;
	}
	do
		n = read(r->fd, r->in + r->in_len, sizeof(r->in) - r->in_len);
	while (n < 0 && errno == EINTR);
	errno = n == 0 ? ECONNRESET : errno;
	CHECK(n > 0, "read from redis");
	r->in_len += (size_t)n;
}

/* One line, without its CRLF, NUL-terminated in place. */
static char *line(struct redis *r)
{
	for (;;) {
		char *start = r->in + r->in_off;
		char *end = memchr(start, '\n', r->in_len - r->in_off);

		if (end && end > start && end[-1] == '\r') {
			end[-1] = '\0';
			r->in_off = (size_t)(end + 1 - r->in);
			return start;
		}
		CHECK(r->in_len - r->in_off < sizeof(r->in), "redis line");
		fill(r);
	}
}

static void take(struct redis *r, void *buf, size_t len, size_t cap)
{
	size_t got = 0;

	while (got < len + 2) {
		size_t have = r->in_len - r->in_off, want = len + 2 - got;
		size_t n = have < want ? have : want;

		if (!n) {
			fill(r);
			continue;
		}
		/* The bytes up to len (and cap) are the value; then CRLF. */
		if (got < cap && got < len) {
			size_t copy = n;

			if (got + copy > len)
				copy = len - got;
			if (got + copy > cap)
				copy = cap - got;
			memcpy((char *)buf + got, r->in + r->in_off, copy);
		}
		r->in_off += n;
		got += n;
	}
}

enum redis_kind redis_reply(struct redis *r, void *buf, size_t cap,
			    size_t *n)
{
	char *l = line(r);
	long long v;

	*n = 0;
	switch (l[0]) {
	case '+':
		return REDIS_OK;
	case ':':
		*n = (size_t)strtoull(l + 1, NULL, 10);
		return REDIS_INT;
	case '$':
		v = strtoll(l + 1, NULL, 10);
		if (v < 0)
			return REDIS_NIL;
		take(r, buf, (size_t)v, cap);
		*n = (size_t)v < cap ? (size_t)v : cap;
		return REDIS_BULK;
	case '*':
		v = strtoll(l + 1, NULL, 10);
		if (v < 0)
			return REDIS_NIL;
		for (long long i = 0; i < v; i++) {
			size_t ignored;

			redis_reply(r, NULL, 0, &ignored);
		}
		*n = (size_t)v;
		return REDIS_ARRAY;
	default:
		errno = 0;
		bench_fail("redis replied %s", l);
	}
}

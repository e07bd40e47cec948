/*
 * A minimal Redis client for the benchmark's baselines: one connection,
 * RESP over a Unix socket or TCP, no library (Debian's redis-server is
 * all scripts/setup installs).  Only what the compare-and-swap baseline
 * needs: send commands, read replies, a bulk string's bytes.
 *
 * The server is $KSTATEFS_BENCH_REDIS: "unix:PATH" or "HOST:PORT".
 * Every failure ends the program (bench_fail).
 */
#ifndef KSTATEFS_BENCH_REDIS_H
#define KSTATEFS_BENCH_REDIS_H

#include <stdbool.h>
#include <stddef.h>

struct redis;

/* Connects to $KSTATEFS_BENCH_REDIS. */
struct redis *redis_open(void);

/* Queues one command (argv[i] of len[i] bytes) in the output buffer. */
void redis_put(struct redis *r, int argc, const char *const *argv,
	       const size_t *len);
/* Sends what is queued. */
void redis_flush(struct redis *r);

/* The kinds of reply redis_reply tells apart. */
enum redis_kind { REDIS_OK, REDIS_BULK, REDIS_NIL, REDIS_ARRAY, REDIS_INT };

/* Reads one reply.  A bulk string's bytes (at most cap of them) go to buf
 * and *n gets their count; an array's elements are read and dropped, *n
 * getting their count.  An error reply ends the program. */
enum redis_kind redis_reply(struct redis *r, void *buf, size_t cap,
			    size_t *n);

#endif

/*
 * A minimal client of etcd's JSON gateway (POST /v3/kv/..., etcd 3.4) for
 * the benchmark's baselines: libcurl and json-c only, none of kstatefs'
 * own etcd code, so that "directly against etcd" measures etcd.
 *
 * A gateway state is the keys the etcd store keeps for one state (STORE.md,
 * "The etcd store"): for PATH "/PREFIX/NAME", the page at PREFIX NAME, the
 * version in decimal at PREFIX .version/NAME and the commit time at PREFIX
 * .mtime/NAME.  Each call is one HTTP request on a kept-alive connection,
 * and fails loudly (the benchmark exits) on anything unexpected.
 */
#ifndef KSTATEFS_BENCH_GATEWAY_H
#define KSTATEFS_BENCH_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_state;

/* The etcd endpoint of the benchmark, from $KSTATEFS_BENCH_ETCD. */
const char *gw_endpoint(void);

/* A connection of its own to the endpoint, for the state at PATH
 * ("/PREFIX/NAME"; anything from a '#' on is ignored, so that the threads
 * of one measurement, given PATH#0, PATH#1..., share one state).  Creates
 * the keys (version 0, an empty page) if the version key is missing. */
struct gw_state *gw_state_open(const char *path);
void gw_state_close(struct gw_state *s);

/* One read-only txn ranging over the version key and the page: *version,
 * and the page into page[0..cap) (its length is returned). */
size_t gw_state_read(struct gw_state *s, uint64_t *version, void *page,
		     size_t cap);

/* One txn: if the version key's value is `base`, put the page, base + 1
 * and the time; what the etcd store sends per commit.  True if it did. */
bool gw_state_cas(struct gw_state *s, uint64_t base, const void *page,
		  size_t len);

/* The same puts without the compare (a blind write): one write round
 * trip, the least a commit can cost. */
void gw_state_put(struct gw_state *s, uint64_t version, const void *page,
		  size_t len);

/* A range of the version key alone: one linearizable read round trip. */
uint64_t gw_state_version(struct gw_state *s);

/* The prefix and the version key's name relative to it ("/PREFIX/",
 * ".version/NAME"), for a watcher. */
const char *gw_state_prefix(const struct gw_state *s);
const char *gw_state_version_key(const struct gw_state *s);

#endif

/*
 * What etcd_client.c (requests) and etcd_watch.c (the watch thread) share:
 * the client struct and the helpers both use to build requests.  Not for
 * users of the client; they have etcd_client.h.
 */
#ifndef KSTATEFS_CORE_ETCD_INTERNAL_H
#define KSTATEFS_CORE_ETCD_INTERNAL_H

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd_client.h"
#include "lock.h"

/* Idle easy handles kept for reuse (each keeps its connection open); more
 * concurrent requests than this still work, with handles made on demand. */
#define KS_ETCD_POOL_MAX 16

/* Answers larger than this are refused (EIO) rather than buffered: a range
 * is paged well below it, and a watch response never comes close. */
#define KS_ETCD_MAX_ANSWER ((size_t)512 << 20)

struct ks_etcd_watch;

struct ks_etcd {
	char **endpoints;             /* base URLs, no trailing '/' */
	size_t n_endpoints;
	char *prefix;                 /* raw key prefix */
	size_t plen;
	char *prefix_end;             /* first key after every prefixed key */
	size_t prefix_end_len;
	double timeout;
	double keepalive;
	double dead_after;
	uint32_t page_size;
	struct curl_slist *headers;   /* read-only once made: shared */

	atomic_size_t preferred;      /* endpoint requests start with */

	struct ks_lock pool_lock;     /* guards pool[] and n_pool */
	CURL *pool[KS_ETCD_POOL_MAX];
	size_t n_pool;

	struct ks_etcd_watch *watch;  /* NULL when no watch runs */

	atomic_bool connected;
	_Atomic int64_t watch_revision;
	_Atomic uint64_t n_requests;
	_Atomic uint64_t n_failovers;
	_Atomic uint64_t n_resends;
	_Atomic uint64_t n_reconnects;
	_Atomic uint64_t n_compactions;
	_Atomic uint64_t n_probes;
};

/* A growing buffer for an HTTP answer, capped at `max` bytes. */
struct ks_etcd_buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max;
	bool overflow;
};

/* libcurl write callback appending to a struct ks_etcd_buf. */
size_t ks_etcd_buf_write(char *data, size_t size, size_t n, void *arg);
void ks_etcd_buf_reset(struct ks_etcd_buf *b);
void ks_etcd_buf_free(struct ks_etcd_buf *b);

/* Seconds on the monotonic clock. */
double ks_etcd_now(void);

/* Sets the options every request handle needs: URL (endpoint + path), the
 * POST body (borrowed: it must outlive the transfer), JSON headers, no
 * signals, TCP keepalive, the answer into buf (may be NULL for a handle
 * whose caller sets its own write callback). */
int ks_etcd_prepare(struct ks_etcd *c, CURL *h, size_t endpoint,
		    const char *path, const char *body, size_t body_len,
		    struct ks_etcd_buf *buf);

/* Adds field: base64(prefix + key[0..len)) to obj.  When the whole key is
 * empty, "\0" instead (etcd refuses an empty key; "\0" is the first key). */
int ks_etcd_json_key(struct ks_etcd *c, struct json_object *obj,
		     const char *field, const void *key, size_t len);

/* Adds field: base64(bytes[0..len)) to obj. */
int ks_etcd_json_bytes(struct json_object *obj, const char *field,
		       const void *bytes, size_t len);

/* Adds field: "N" (etcd's 64-bit numbers are JSON strings). */
int ks_etcd_json_int64(struct json_object *obj, const char *field,
		       int64_t v);

/* The request text for obj; to free(). */
char *ks_etcd_json_text(struct json_object *obj, size_t *len);

/* The request path moves on from endpoint `failed` (if still preferred). */
void ks_etcd_endpoint_failed(struct ks_etcd *c, size_t failed);

#endif

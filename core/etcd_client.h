/*
 * A small etcd v3 client for kstatefs' etcd store, over etcd's JSON gateway
 * (HTTP/1.1 POST of JSON to /v3/..., as served by etcd 3.4 on its client
 * URLs), with libcurl for HTTP and json-c for JSON.
 *
 * What it gives the store:
 *   - ks_etcd_range, ks_etcd_txn: reads and all-or-nothing writes;
 *   - ks_etcd_watch_start: one thread that follows every change under the
 *     client's prefix, resuming after disconnects, reporting compaction;
 *   - ks_etcd_status: a health probe for mount time;
 *   - ks_etcd_compact: for tests and housekeeping.
 *
 * ---- Keys ------------------------------------------------------------------
 * The client is made for one key prefix (e.g. "/kstatefs/").  Every key in
 * this API is relative to it: the client prepends the prefix to keys it sends
 * and strips it from keys it returns.  Keys given to the client are C strings;
 * keys it returns carry a length as well (another etcd client may have
 * written a key with a NUL byte in it) and are NUL-terminated.  Values are
 * byte strings of any content and length, 0 included; returned values are
 * followed by a NUL byte that is not counted, so text can be used directly.
 *
 * ---- Errors ----------------------------------------------------------------
 * Functions return 0 or a positive errno value, never -1:
 *   ETIMEDOUT    no endpoint answered within the timeout.  Refused
 *                connections, unreachable hosts and unknown host names are
 *                retried (next endpoint, then again with a short backoff)
 *                until the deadline, and folded into ETIMEDOUT: during a
 *                restart of etcd "refused" is the same as "slow".  Also
 *                etcd's own "request timed out", "no leader", "leader
 *                changed" (gRPC Unavailable/DeadlineExceeded).
 *   EIO          an answer that is not what etcd's gateway sends: not JSON,
 *                a missing field, a field of the wrong type, bad base64, a
 *                key outside the prefix, an HTTP status or etcd error code
 *                not listed here; or the connection broke after a write was
 *                sent.  Every byte from the network is checked; bad input
 *                gives EIO, never a crash.
 *   EFBIG        etcd refused the request as too large (its
 *                --max-request-bytes, 1.5 MiB by default, counted on the
 *                binary request: keys + values + a little).
 *   EINVAL       bad arguments, or etcd said InvalidArgument (the same key
 *                twice in one txn, more ops than --max-txn-ops (128)).
 *   ESTALE       range at a revision that etcd has compacted away.
 *   ERANGE       range at a revision in the future.
 *   EACCES       etcd has authentication on (not supported).
 *   ENOMEM       out of memory.
 * A write (a txn with a put or delete) that fails with ETIMEDOUT or EIO may
 * still have been applied.  Three kinds of request:
 *   - reads (ranges, txns without put/delete, status) are retried on the
 *     next endpoint when an endpoint stops answering;
 *   - a plain write (ks_etcd_txn) is never sent again once its request may
 *     have reached etcd, to another endpoint or the same one (a retried
 *     compare-and-swap would fail its compare and look like a conflict);
 *     libcurl is not let resend a request by itself either (it would, on a
 *     reused connection that broke before any answer);
 *   - a resendable write (ks_etcd_txn_resendable), one whose compares fail
 *     once any copy of it has applied, is sent again to the next endpoint
 *     within the deadline, and its result says so (earlier_copy).
 *
 * ---- Endpoints and timeouts ------------------------------------------------
 * A request starts at the endpoint that last answered and moves on to the
 * next one (in the order given, wrapping around) when an endpoint fails; the
 * whole call, retries included, never takes longer than the timeout (plus
 * scheduling slack).  A read gets an even share of the time left per
 * endpoint still to try, so one stopped member (which accepts connections
 * but never answers) cannot eat the whole budget.
 *
 * ---- Threads ---------------------------------------------------------------
 * Every function may be called from any number of threads at once, except
 * ks_etcd_free (no other call in flight) and ks_etcd_watch_start/stop (one
 * caller at a time).  Requests use a pool of libcurl easy handles, each
 * keeping its connection alive between requests.  The first ks_etcd_create
 * initializes libcurl (curl_global_init, once per process, under
 * pthread_once); libcurl is never cleaned up, as its global state may be
 * shared with other users of libcurl in the process.
 */
#ifndef KSTATEFS_CORE_ETCD_CLIENT_H
#define KSTATEFS_CORE_ETCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ks_etcd;

struct ks_etcd_options {
	/* "http://10.0.0.1:2379,http://10.0.0.2:2379": one or more base URLs,
	 * comma separated (spaces around commas are ignored). */
	const char *endpoints;
	/* Prepended to every key; may be "" (the whole key space). */
	const char *prefix;
	/* Seconds a call may take, retries included; > 0. */
	double timeout;
	/* The watch (below) probes its endpoint when its stream has been
	 * silent this long; 0 = 1 second. */
	double keepalive;
	/* ...and declares the stream dead, and moves to the next endpoint,
	 * when a probe gets no answer in this long; 0 = the smaller of
	 * timeout and 3 seconds. */
	double dead_after;
	/* Keys per page when ks_etcd_range pages through a big range (each
	 * page is one request, all at the same revision); 0 = 500. */
	uint32_t page_size;
};

/* Checks the options (endpoints must be http:// or https:// URLs) and makes
 * a client; no network traffic yet.  0, EINVAL or ENOMEM. */
int ks_etcd_create(const struct ks_etcd_options *opts, struct ks_etcd **out);

/* Stops the watch if it runs, and frees everything.  No other call may be
 * in flight.  NULL is allowed. */
void ks_etcd_free(struct ks_etcd *c);

/* ---- key-values ------------------------------------------------------------ */

struct ks_etcd_kv {
	char *key;                 /* relative to the prefix, NUL-terminated */
	size_t key_len;
	void *value;               /* NUL-terminated, NUL not counted */
	size_t value_len;
	int64_t create_revision;   /* revision of the key's creation */
	int64_t mod_revision;      /* revision of its last change */
	int64_t version;           /* puts since creation, 1 for the first;
				    * 0 in a DELETE event */
};

/* A range's answer.  For ranges inside a txn, revision is the txn's. */
struct ks_etcd_kvs {
	int64_t revision;          /* the revision the range was read at */
	size_t n;
	struct ks_etcd_kv *kvs;    /* sorted by key (etcd's byte order) */
};

/* Frees what a range filled in and zeroes it; safe on a zeroed struct. */
void ks_etcd_kvs_free(struct ks_etcd_kvs *kvs);

/* ---- range ----------------------------------------------------------------- */

/* What a range or delete covers, relative to the prefix:
 *   range_end NULL, prefix false: the one key `key`;
 *   prefix true: every key that starts with `key` ("" = the whole prefix);
 *   range_end set: the keys in [key, range_end). */
struct ks_etcd_keys {
	const char *key;
	const char *range_end;
	bool prefix;
};

/* Reads the keys at `revision` (0 = the newest), all of them: a big range is
 * read in pages of page_size keys, every page at the revision of the first,
 * so the result is one consistent snapshot.  *out must be zeroed or freed;
 * it is filled only on success. */
int ks_etcd_range(struct ks_etcd *c, const struct ks_etcd_keys *keys,
		  int64_t revision, struct ks_etcd_kvs *out);

/* ---- txn ------------------------------------------------------------------- */

enum ks_etcd_cmp_target {
	KS_ETCD_CMP_VERSION,       /* the key's version (0: no such key) */
	KS_ETCD_CMP_CREATE,        /* its create_revision (0: no such key) */
	KS_ETCD_CMP_MOD,           /* its mod_revision (0: no such key) */
	KS_ETCD_CMP_VALUE,         /* its value (no such key: compare fails) */
};

enum ks_etcd_cmp_result {
	KS_ETCD_EQUAL,
	KS_ETCD_NOT_EQUAL,
	KS_ETCD_GREATER,           /* the key's is greater than ours */
	KS_ETCD_LESS,
};

struct ks_etcd_cmp {
	const char *key;           /* relative to the prefix; one key */
	enum ks_etcd_cmp_target target;
	enum ks_etcd_cmp_result result;
	int64_t number;            /* for VERSION, CREATE, MOD */
	const void *value;         /* for VALUE */
	size_t value_len;
};

enum ks_etcd_op_type {
	KS_ETCD_OP_RANGE,          /* read `keys` (at the txn's revision) */
	KS_ETCD_OP_PUT,            /* set keys.key to value */
	KS_ETCD_OP_DELETE,         /* delete `keys` */
};

struct ks_etcd_op {
	enum ks_etcd_op_type type;
	struct ks_etcd_keys keys;  /* PUT: keys.key only */
	const void *value;         /* PUT */
	size_t value_len;
};

struct ks_etcd_txn_result {
	bool succeeded;            /* every compare held: success ops ran */
	int64_t revision;          /* the revision after the txn (if it wrote:
				    * the revision of its changes) */
	/* One per op of the branch that ran, in order: RANGE ops' keys (a
	 * range in a txn is one request: no paging, so keep it small);
	 * DELETE ops' `deleted` count; PUT ops' entries are empty. */
	size_t n_responses;
	struct ks_etcd_txn_response {
		struct ks_etcd_kvs kvs;
		int64_t deleted;
	} *responses;
	/* ks_etcd_txn_resendable only: 0 if this answer is to the only copy
	 * that may have reached etcd; else the error (ETIMEDOUT or EIO) an
	 * earlier copy failed with after it may have: a refusal (succeeded
	 * false) may then be the work of that earlier copy, which applied
	 * (see ks_etcd_txn_resendable). */
	int earlier_copy;
};

void ks_etcd_txn_result_free(struct ks_etcd_txn_result *r);

/* One etcd transaction: if all compares hold, the success ops, else the
 * failure ops, atomically.  Any array may be empty (NULL, 0).  *out must be
 * zeroed or freed; filled only on success (a failed compare is a success of
 * the call, with succeeded false). */
int ks_etcd_txn(struct ks_etcd *c, const struct ks_etcd_cmp *cmps, size_t n_cmps,
		const struct ks_etcd_op *success, size_t n_success,
		const struct ks_etcd_op *failure, size_t n_failure,
		struct ks_etcd_txn_result *out);

/* As ks_etcd_txn, for a write guarded by compares that may be resent: when a
 * copy may have reached etcd and its answer is lost (bytes sent, then the
 * connection broke or timed out: a member killed or stopped mid-request;
 * or etcd's own "request timed out"), the same txn goes to the next
 * endpoint, within the client's timeout, instead of failing with EIO or
 * ETIMEDOUT.  Counted in ks_etcd_stats.resends.
 *
 * Only for a txn that no copy can apply once one has: its compares must be
 * made false by its own success ops, and never be true again afterwards
 * while a copy is in flight (a stale copy held by a stopped member may
 * apply seconds later).  Then at most one copy applies, and if an earlier
 * one did, the resend is refused: out->earlier_copy is set, and the caller
 * must tell its own earlier copy from a conflict (by reading back, in the
 * failure ops, what the success ops write; etcd runs them in the same
 * txn, through raft, so the reads are current whichever member answers),
 * or report the write's fate as unknown (with out->earlier_copy's errno).
 * EINVAL without compares. */
int ks_etcd_txn_resendable(struct ks_etcd *c, const struct ks_etcd_cmp *cmps,
			   size_t n_cmps, const struct ks_etcd_op *success,
			   size_t n_success, const struct ks_etcd_op *failure,
			   size_t n_failure, struct ks_etcd_txn_result *out);

/* ---- maintenance ------------------------------------------------------------ */

struct ks_etcd_status {
	char endpoint[256];        /* the endpoint that answered */
	char version[32];          /* etcd's version, e.g. "3.4.23" */
	int64_t revision;          /* its current revision */
	int64_t db_size;           /* bytes */
	bool has_leader;
};

/* Asks the endpoints in turn (POST /v3/maintenance/status) until one
 * answers, within `timeout` seconds (0 = the client's).  On failure, when
 * msg is not NULL, a line for the user ("no etcd endpoint answered within
 * 5 s: http://a:2379: Couldn't connect to server; ...", the reasons
 * being libcurl's or etcd's) goes to msg[0..msg_size). */
int ks_etcd_status(struct ks_etcd *c, double timeout,
		   struct ks_etcd_status *out, char *msg, size_t msg_size);

/* Compacts etcd's history up to `revision` (physical: returns once the space
 * is freed).  Watches from older revisions then get "compacted".  ESTALE if
 * it was already compacted that far, ERANGE for a future revision. */
int ks_etcd_compact(struct ks_etcd *c, int64_t revision);

/* ---- watch ------------------------------------------------------------------ */

enum ks_etcd_event_type {
	KS_ETCD_PUT,
	KS_ETCD_DELETE,            /* kv has key and mod_revision only */
};

struct ks_etcd_event {
	enum ks_etcd_event_type type;
	struct ks_etcd_kv kv;
};

enum ks_etcd_watch_kind {
	/* The stream is open (etcd confirmed the watch); events follow.
	 * CONNECTED and DISCONNECTED report changes of state: the first
	 * of them says how the start went; a restart that is not a failure
	 * (after COMPACTED, or asked by the callback) reports neither. */
	KS_ETCD_WATCH_CONNECTED,
	/* Changes: one etcd watch response.  All events of one revision are
	 * in one response, in the order etcd applied them (a txn with three
	 * puts: one response, three events).  A response may hold several
	 * revisions when the watch catches up on history. */
	KS_ETCD_WATCH_EVENTS,
	/* The stream is gone (etcd stopped, network down, or silent past
	 * dead_after); the watch reconnects by itself, to the next endpoint,
	 * with backoff, and resumes after the last revision delivered. */
	KS_ETCD_WATCH_DISCONNECTED,
	/* etcd compacted past the revision the watch needed: events were
	 * lost, the store must reload everything.  See the callback. */
	KS_ETCD_WATCH_COMPACTED,
	/* No change under the prefix up to `revision` (a progress note). */
	KS_ETCD_WATCH_PROGRESS,
	/* etcd's history went back: a healthy member answers a revision
	 * older than events already delivered (the cluster was made anew, or
	 * restored from an older backup).  Nothing delivered can be trusted:
	 * the store must reload everything as new.  See the callback. */
	KS_ETCD_WATCH_RESET,
};

struct ks_etcd_watch_response {
	enum ks_etcd_watch_kind kind;
	/* EVENTS: the newest event's mod_revision; every change under the
	 * prefix up to it has now been delivered.  PROGRESS: the same
	 * promise, for a revision without changes of ours.  COMPACTED: the
	 * oldest revision etcd still has (compact_revision).  RESET: etcd's
	 * revision now.  Others: 0. */
	int64_t revision;
	size_t n_events;
	const struct ks_etcd_event *events;  /* valid during the call */
	const char *endpoint;                /* the one streaming */
};

/* Called on the watch thread, one call at a time, in stream order.  It may
 * call the client (ks_etcd_range, ks_etcd_txn) but not watch_stop.
 * Returns 0 to go on as planned, or a revision R > 0 to restart the watch
 * from R (events with mod_revision >= R).  After COMPACTED the callback
 * must reload (e.g. ks_etcd_range of everything, revision 0, which answers
 * at revision N) and return N + 1; returning 0 there resumes at the
 * compaction revision, which loses the deletes before it. */
typedef int64_t (*ks_etcd_watch_cb)(void *arg,
				    const struct ks_etcd_watch_response *r);

/* Starts the client's watch thread on the whole prefix, from start_revision
 * (>= 1; typically the revision of the range that loaded everything + 1).
 * It keeps one POST /v3/watch stream open, reconnects by itself, and runs
 * until ks_etcd_watch_stop.  0, EBUSY (already running), EINVAL, ENOMEM, or
 * the pthread_create error.  No network wait: the first CONNECTED or
 * DISCONNECTED callback says how it went. */
int ks_etcd_watch_start(struct ks_etcd *c, int64_t start_revision,
			ks_etcd_watch_cb cb, void *arg);

/* Stops the watch thread and waits for it (promptly: the thread never
 * blocks without watching the stop flag).  No callback runs after it
 * returns.  A no-op if the watch is not running. */
void ks_etcd_watch_stop(struct ks_etcd *c);

/* ---- counters ----------------------------------------------------------------- */

struct ks_etcd_stats {
	bool connected;            /* the watch stream is open */
	int64_t revision;          /* newest revision the watch delivered */
	uint64_t requests;         /* HTTP requests sent (retries counted) */
	uint64_t failovers;        /* times a request moved to another endpoint */
	uint64_t resends;          /* resendable writes sent again after a copy
				    * may have reached etcd */
	uint64_t reconnects;       /* watch streams opened after the first */
	uint64_t compactions;      /* COMPACTED reports */
	uint64_t probes;           /* watch liveness probes */
	char endpoint[256];        /* the endpoint requests start with */
};

/* A snapshot of the counters; never blocks on the network. */
void ks_etcd_get_stats(struct ks_etcd *c, struct ks_etcd_stats *out);

#endif

/*
 * The etcd client's watch: one thread that keeps one POST /v3/watch stream
 * open on the client's prefix and hands each watch response to a callback.
 *
 * The thread drives a curl multi handle holding the stream and, now and
 * then, a probe.  Why a probe: a stopped or cut-off member keeps the TCP
 * connection open and simply says nothing, which a quiet watch also does;
 * etcd's own progress notifications come every 10 minutes by default, and
 * curl's low-speed limit would cut every quiet stream.  So when the stream
 * has been silent for `keepalive` seconds, the thread sends a small
 * linearizable range to the same endpoint; a member that can't answer it
 * within `dead_after` (stopped, partitioned from its quorum) is left, and the
 * stream reopens on the next endpoint, from the revision after the last one
 * delivered.  A new stream is probed at once, and the client counts as
 * connected only once a probe succeeded: a member that lost its quorum
 * still creates watches.
 *
 * The stream is parsed as it arrives with a json_tokener: etcd writes one
 * JSON object per watch response, separated by newlines.  Stopping sets a
 * flag and wakes curl_multi_poll (curl_multi_wakeup), so it never waits on
 * the network.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_internal.h"
#include "etcd_parse.h"

/* Reconnect delays grow from the first to the last, doubling, and start
 * again after a stream opens. */
#define BACKOFF_FIRST 0.05
#define BACKOFF_MAX 1.0

/* Why the stream ended, as decided by whoever ended it. */
enum stream_end {
	END_NONE,       /* still running, or ended by the network */
	END_RESTART,    /* reopen at once from next_rev: no failure */
	END_FAILED,     /* reopen on the next endpoint after a backoff */
};

struct ks_etcd_watch {
	struct ks_etcd *c;
	pthread_t thread;
	atomic_bool stop;
	ks_etcd_watch_cb cb;
	void *arg;
	CURLM *multi;

	int64_t next_rev;          /* where the next stream starts */
	size_t endpoint;
	double backoff;
	double reconnect_at;       /* when no stream: open one at this time */
	bool reported_up;          /* last state told: CONNECTED */
	bool reported_any;         /* a state was told at all */
	bool ever_opened;          /* for the reconnect counter */

	/* the stream */
	CURL *stream;              /* kept for reuse */
	bool active;               /* stream is in the multi handle */
	char *stream_body;
	struct json_tokener *tok;
	size_t obj_bytes;          /* of the JSON object being parsed */
	bool created;              /* etcd confirmed the watch */
	bool probe_due;            /* probe at once: a member without its
				    * quorum still serves watches, so a new
				    * stream counts as connected only once a
				    * (linearizable) probe succeeded */
	enum stream_end end;
	double last_rx;            /* last byte from the stream or probe ok */

	/* the probe */
	CURL *probe;               /* NULL: none in flight */
	CURL *probe_handle;        /* kept for reuse */
	char *probe_body;
	size_t probe_body_len;
	size_t probe_endpoint;
	/* next_rev when the probe was sent: every revision before it was
	 * committed by then, so a linearizable answer cannot be older.
	 * (next_rev itself may pass the answer meanwhile: the stream
	 * delivers writes made after the member served the probe.) */
	int64_t probe_floor;
	struct ks_etcd_buf probe_buf;
};

/* ---- callbacks --------------------------------------------------------------- */

/* Tells the callback; a positive answer restarts the stream from there. */
static void tell(struct ks_etcd_watch *w, enum ks_etcd_watch_kind kind,
		 int64_t revision, const struct ks_etcd_event *events,
		 size_t n_events)
{
	struct ks_etcd_watch_response r = {
		.kind = kind,
		.revision = revision,
		.n_events = n_events,
		.events = events,
		.endpoint = w->c->endpoints[w->endpoint],
	};
	int64_t restart = w->cb(w->arg, &r);

	if (restart > 0) {
		w->next_rev = restart;
		w->end = END_RESTART;
	}
}

static void set_up(struct ks_etcd_watch *w, bool up)
{
	atomic_store(&w->c->connected, up);
	if (w->reported_any && w->reported_up == up)
		return;
	w->reported_any = true;
	w->reported_up = up;
	tell(w, up ? KS_ETCD_WATCH_CONNECTED : KS_ETCD_WATCH_DISCONNECTED, 0,
	     NULL, 0);
}

/* ---- one watch response --------------------------------------------------------- */

/* Handles one object of the stream; false ends the stream (w->end says how). */
static bool handle_object(struct ks_etcd_watch *w, struct json_object *obj)
{
	struct ks_etcd *c = w->c;
	struct ks_ep_watch r;
	size_t first = 0;

	if (ks_ep_watch(obj, c->prefix, c->plen, &r) != 0) {
		/* an error object ({"error": ...}) or garbage: either way this
		 * stream is no good */
		w->end = END_FAILED;
		return false;
	}
	if (r.canceled) {
		if (r.compact_revision > 0) {
			atomic_fetch_add(&c->n_compactions, 1);
			/* by default resume where etcd still has history */
			w->next_rev = r.compact_revision;
			w->end = END_RESTART;
			tell(w, KS_ETCD_WATCH_COMPACTED, r.compact_revision,
			     NULL, 0);
		} else {
			w->end = END_FAILED;
		}
		ks_ep_watch_free(&r);
		return false;
	}
	if (r.created) {
		w->created = true;
		w->probe_due = true;
	}
	/* never deliver a revision twice (etcd doesn't resend, but a
	 * confused proxy might) */
	while (first < r.n_events && r.events[first].kv.mod_revision < w->next_rev)
		first++;
	if (first < r.n_events) {
		int64_t last = r.events[r.n_events - 1].kv.mod_revision;

		w->next_rev = last + 1;
		atomic_store(&c->watch_revision, last);
		/* not the header's revision: when etcd splits a long catch-up
		 * into several responses, every one of them carries the
		 * newest revision, though more events are still to come */
		tell(w, KS_ETCD_WATCH_EVENTS, last, r.events + first,
		     r.n_events - first);
	} else if (r.n_events == 0 && !r.created && r.revision > 0) {
		/* a progress note: etcd 3.4 sends them only to watchers that
		 * have caught up, so nothing up to it is missing */
		if (r.revision + 1 > w->next_rev) {
			w->next_rev = r.revision + 1;
			atomic_store(&c->watch_revision, r.revision);
		}
		tell(w, KS_ETCD_WATCH_PROGRESS, r.revision, NULL, 0);
	}
	ks_ep_watch_free(&r);
	return w->end == END_NONE;
}

/* curl write callback of the stream: splits the bytes into JSON objects. */
static size_t stream_write(char *data, size_t size, size_t n, void *arg)
{
	struct ks_etcd_watch *w = arg;
	size_t len = size * n;
	long status = 0;

	curl_easy_getinfo(w->stream, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200 || w->end != END_NONE || atomic_load(&w->stop)) {
		/* an HTTP error's body is not a stream; stop reading */
		if (w->end == END_NONE)
			w->end = END_FAILED;
		return 0;
	}
	w->last_rx = ks_etcd_now();
	while (len > 0) {
		/* json-c wants int lengths; curl's chunks are far smaller,
		 * but don't count on it */
		int chunk = len > 65536 ? 65536 : (int)len;
		struct json_object *obj =
			json_tokener_parse_ex(w->tok, data, chunk);
		size_t used;

		if (obj == NULL) {
			if (json_tokener_get_error(w->tok) !=
			    json_tokener_continue) {
				w->end = END_FAILED;
				return 0;
			}
			w->obj_bytes += (size_t)chunk;
			if (w->obj_bytes > KS_ETCD_MAX_ANSWER) {
				w->end = END_FAILED;
				return 0;
			}
			data += chunk;
			len -= (size_t)chunk;
			continue;
		}
		used = json_tokener_get_parse_end(w->tok);
		json_tokener_reset(w->tok);
		w->obj_bytes = 0;
		if (!json_object_is_type(obj, json_type_object) ||
		    !handle_object(w, obj)) {
			json_object_put(obj);
			if (w->end == END_NONE)
				w->end = END_FAILED;
			return 0;
		}
		json_object_put(obj);
		if (used == 0 || used > (size_t)chunk) {
			w->end = END_FAILED;   /* cannot happen; don't loop */
			return 0;
		}
		data += used;
		len -= used;
	}
	return size * n;
}

/* ---- the stream ---------------------------------------------------------------- */

static int stream_body(struct ks_etcd_watch *w)
{
	struct ks_etcd *c = w->c;
	struct json_object *req = json_object_new_object();
	struct json_object *cr = json_object_new_object();
	struct json_object *t;
	size_t len;
	int err = 0;

	if (req == NULL || cr == NULL) {
		json_object_put(req);
		json_object_put(cr);
		return ENOMEM;
	}
	if (json_object_object_add(req, "create_request", cr) != 0) {
		json_object_put(cr);
		err = ENOMEM;
	}
	if (!err)
		err = ks_etcd_json_key(c, cr, "key", "", 0);
	if (!err)
		err = ks_etcd_json_bytes(cr, "range_end", c->prefix_end,
					 c->prefix_end_len);
	if (!err)
		err = ks_etcd_json_int64(cr, "start_revision", w->next_rev);
	/* progress notes let an idle watch move its resume point; free */
	if (!err && (t = json_object_new_boolean(1)) != NULL) {
		if (json_object_object_add(cr, "progress_notify", t) != 0) {
			json_object_put(t);
			err = ENOMEM;
		}
	} else if (!err) {
		err = ENOMEM;
	}
	free(w->stream_body);
	w->stream_body = err ? NULL : ks_etcd_json_text(req, &len);
	json_object_put(req);
	if (!err && w->stream_body == NULL)
		err = ENOMEM;
	return err;
}

static void stream_open(struct ks_etcd_watch *w)
{
	struct ks_etcd *c = w->c;
	double now = ks_etcd_now();
	int err;

	if (w->stream == NULL)
		w->stream = curl_easy_init();
	err = w->stream ? stream_body(w) : ENOMEM;
	if (!err)
		err = ks_etcd_prepare(c, w->stream, w->endpoint, "/v3/watch",
				      w->stream_body, strlen(w->stream_body),
				      NULL);
	if (!err) {
		long connect_ms = (long)ceil(c->timeout * 1000);

		curl_easy_setopt(w->stream, CURLOPT_WRITEFUNCTION, stream_write);
		curl_easy_setopt(w->stream, CURLOPT_WRITEDATA, w);
		curl_easy_setopt(w->stream, CURLOPT_CONNECTTIMEOUT_MS,
				 connect_ms);
		curl_easy_setopt(w->stream, CURLOPT_TIMEOUT_MS, 0L);
		json_tokener_reset(w->tok);
		w->obj_bytes = 0;
		w->created = false;
		w->probe_due = false;
		w->end = END_NONE;
		w->last_rx = now;
		if (curl_multi_add_handle(w->multi, w->stream) != CURLM_OK)
			err = ENOMEM;
		else
			w->active = true;
	}
	if (err) {
		/* out of memory: try again later, like any failure */
		w->reconnect_at = now + BACKOFF_MAX;
		return;
	}
	if (w->ever_opened)
		atomic_fetch_add(&c->n_reconnects, 1);
	w->ever_opened = true;
	w->reconnect_at = 0;
}

/* The stream is over (it ended, or we end it): plan the next one. */
static void stream_close(struct ks_etcd_watch *w)
{
	struct ks_etcd *c = w->c;
	enum stream_end end = w->end == END_RESTART ? END_RESTART : END_FAILED;

	curl_multi_remove_handle(w->multi, w->stream);
	w->active = false;
	if (w->probe != NULL) {
		curl_multi_remove_handle(w->multi, w->probe);
		w->probe = NULL;
	}
	w->end = END_NONE;
	w->created = false;
	w->probe_due = false;
	if (end == END_RESTART) {
		atomic_store(&c->connected, false);
		w->reconnect_at = ks_etcd_now();
		return;
	}
	set_up(w, false);
	/* the request path leaves it too, if it was using it */
	ks_etcd_endpoint_failed(c, w->endpoint);
	w->endpoint = (w->endpoint + 1) % c->n_endpoints;
	w->reconnect_at = ks_etcd_now() + w->backoff;
	w->backoff = w->backoff * 2 < BACKOFF_MAX ? w->backoff * 2 : BACKOFF_MAX;
}

/* ---- the probe ------------------------------------------------------------------- */

static int probe_body(struct ks_etcd_watch *w)
{
	struct json_object *req = json_object_new_object();
	int err;

	if (req == NULL)
		return ENOMEM;
	/* one key (the prefix itself, usually absent): cheap, but a
	 * linearizable read, so it needs the member's quorum */
	err = ks_etcd_json_key(w->c, req, "key", "", 0);
	if (!err) {
		struct json_object *t = json_object_new_boolean(1);

		if (t == NULL || json_object_object_add(req, "keys_only", t)) {
			json_object_put(t);
			err = ENOMEM;
		}
	}
	if (!err) {
		w->probe_body = ks_etcd_json_text(req, &w->probe_body_len);
		if (w->probe_body == NULL)
			err = ENOMEM;
	}
	json_object_put(req);
	return err;
}

static void probe_start(struct ks_etcd_watch *w)
{
	struct ks_etcd *c = w->c;

	if (w->probe_handle == NULL)
		w->probe_handle = curl_easy_init();
	if (w->probe_handle == NULL ||
	    (w->probe_body == NULL && probe_body(w) != 0))
		return;
	ks_etcd_buf_reset(&w->probe_buf);
	if (ks_etcd_prepare(c, w->probe_handle, w->endpoint, "/v3/kv/range",
			    w->probe_body, w->probe_body_len,
			    &w->probe_buf) != 0)
		return;
	curl_easy_setopt(w->probe_handle, CURLOPT_TIMEOUT_MS,
			 (long)ceil(c->dead_after * 1000));
	curl_easy_setopt(w->probe_handle, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)ceil(c->dead_after * 1000));
	if (curl_multi_add_handle(w->multi, w->probe_handle) != CURLM_OK)
		return;
	w->probe = w->probe_handle;
	w->probe_endpoint = w->endpoint;
	w->probe_floor = w->next_rev;
	atomic_fetch_add(&c->n_probes, 1);
}

/* The probe is done: true if the endpoint answered like a healthy member. */
static bool probe_finish(struct ks_etcd_watch *w, CURLcode result,
			 int64_t *rev)
{
	struct json_object *doc = NULL;
	long status = 0;
	bool ok = false;

	curl_multi_remove_handle(w->multi, w->probe);
	w->probe = NULL;
	curl_easy_getinfo(w->probe_handle, CURLINFO_RESPONSE_CODE, &status);
	if (result == CURLE_OK && status == 200 &&
	    ks_ep_parse(w->probe_buf.p, w->probe_buf.len, &doc) == 0) {
		ok = ks_ep_header_revision(doc, true, rev) == 0;
		json_object_put(doc);
	}
	return ok;
}

/* ---- the thread -------------------------------------------------------------------- */

/* Milliseconds curl_multi_poll may sleep before we have something to do
 * (curl wakes it sooner for its own timers and for stop). */
static int poll_timeout_ms(struct ks_etcd_watch *w, double now)
{
	double until = now + 1.0;

	if (!w->active) {
		if (w->reconnect_at < until)
			until = w->reconnect_at;
	} else if (w->probe == NULL) {
		double probe_at = w->probe_due ? now
				: w->last_rx + w->c->keepalive;

		if (probe_at < until)
			until = probe_at;
	}
	if (until <= now)
		return 0;
	return (int)ceil((until - now) * 1000);
}

/* A transfer of ours is done. */
static void transfer_done(struct ks_etcd_watch *w, CURL *h, CURLcode result)
{
	if (h == w->probe) {
		size_t endpoint = w->probe_endpoint;
		int64_t rev = 0;

		if (probe_finish(w, result, &rev)) {
			w->last_rx = ks_etcd_now();
			if (w->active && w->created &&
			    endpoint == w->endpoint &&
			    rev + 1 < w->probe_floor) {
				/* The probe is linearizable: a member with its
				 * quorum answering a revision older than what
				 * was delivered serves another history. */
				fprintf(stderr, "kstatefs: etcd: the cluster's "
					"revision went back from %lld to %lld "
					"(made anew, or restored from a "
					"backup): reloading every state\n",
					(long long)(w->probe_floor - 1),
					(long long)rev);
				tell(w, KS_ETCD_WATCH_RESET, rev, NULL, 0);
				/* Unless the callback said where to go on,
				 * the same again: the next probe retries. */
				w->end = END_RESTART;
				stream_close(w);
				return;
			}
			/* the member has its quorum: connected */
			if (w->active && w->created &&
			    endpoint == w->endpoint) {
				w->backoff = BACKOFF_FIRST;
				set_up(w, true);
			}
		} else if (w->active && endpoint == w->endpoint)
			/* the member is stopped, cut off, or sick: leave */
			stream_close(w);
	} else if (w->active && h == w->stream) {
		stream_close(w);
	}
}

static void *watch_main(void *arg)
{
	struct ks_etcd_watch *w = arg;

	while (!atomic_load(&w->stop)) {
		double now = ks_etcd_now();
		struct CURLMsg *m;
		int running, queued;

		if (!w->active && now >= w->reconnect_at)
			stream_open(w);
		if (w->active && w->probe == NULL &&
		    (w->probe_due || now - w->last_rx >= w->c->keepalive)) {
			w->probe_due = false;
			probe_start(w);
		}
		curl_multi_poll(w->multi, NULL, 0, poll_timeout_ms(w, now),
				NULL);
		if (atomic_load(&w->stop))
			break;
		curl_multi_perform(w->multi, &running);
		while ((m = curl_multi_info_read(w->multi, &queued)) != NULL) {
			if (m->msg == CURLMSG_DONE)
				transfer_done(w, m->easy_handle,
					      m->data.result);
		}
	}
	return NULL;
}

/* ---- start / stop ------------------------------------------------------------------ */

static void watch_free(struct ks_etcd_watch *w)
{
	if (w->probe != NULL)
		curl_multi_remove_handle(w->multi, w->probe);
	if (w->active)
		curl_multi_remove_handle(w->multi, w->stream);
	if (w->stream != NULL)
		curl_easy_cleanup(w->stream);
	if (w->probe_handle != NULL)
		curl_easy_cleanup(w->probe_handle);
	if (w->multi != NULL)
		curl_multi_cleanup(w->multi);
	if (w->tok != NULL)
		json_tokener_free(w->tok);
	free(w->stream_body);
	free(w->probe_body);
	ks_etcd_buf_free(&w->probe_buf);
	free(w);
}

int ks_etcd_watch_start(struct ks_etcd *c, int64_t start_revision,
			ks_etcd_watch_cb cb, void *arg)
{
	struct ks_etcd_watch *w;
	int err;

	if (cb == NULL || start_revision < 1)
		return EINVAL;
	if (c->watch != NULL)
		return EBUSY;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return ENOMEM;
	w->c = c;
	w->cb = cb;
	w->arg = arg;
	w->next_rev = start_revision;
	w->backoff = BACKOFF_FIRST;
	w->probe_buf.max = KS_ETCD_MAX_ANSWER;
	/* start with the endpoint requests like best */
	w->endpoint = atomic_load(&c->preferred) % c->n_endpoints;
	atomic_init(&w->stop, false);
	w->multi = curl_multi_init();
	w->tok = json_tokener_new();
	if (w->multi == NULL || w->tok == NULL) {
		watch_free(w);
		return ENOMEM;
	}
	json_tokener_set_flags(w->tok, JSON_TOKENER_STRICT);
	atomic_store(&c->watch_revision, start_revision - 1);
	err = pthread_create(&w->thread, NULL, watch_main, w);
	if (err) {
		watch_free(w);
		return err;
	}
	c->watch = w;
	return 0;
}

void ks_etcd_watch_stop(struct ks_etcd *c)
{
	struct ks_etcd_watch *w = c->watch;

	if (w == NULL)
		return;
	atomic_store(&w->stop, true);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	c->watch = NULL;
	atomic_store(&c->connected, false);
	watch_free(w);
}

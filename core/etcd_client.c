/*
 * The etcd client's request side: endpoints, the handle pool, one request
 * with failover within a deadline, and the calls built on it (range, txn,
 * status, compact).  The watch thread is in etcd_watch.c; reading answers
 * is in etcd_parse.c.
 */
#include "etcd_client.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd_base64.h"
#include "etcd_internal.h"
#include "etcd_parse.h"

/* ---- small helpers ------------------------------------------------------- */

double ks_etcd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

size_t ks_etcd_buf_write(char *data, size_t size, size_t n, void *arg)
{
	struct ks_etcd_buf *b = arg;
	size_t len = size * n;

	if (len > b->max - b->len) {
		b->overflow = true;
		return 0;   /* makes curl fail the transfer */
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

void ks_etcd_buf_reset(struct ks_etcd_buf *b)
{
	b->len = 0;
	b->overflow = false;
}

void ks_etcd_buf_free(struct ks_etcd_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Adds VALUE, just made (NULL if making it failed), to OBJ as FIELD; OBJ
 * owns it afterwards, or it is freed. */
static int json_add_made(struct json_object *obj, const char *field,
			 struct json_object *value)
{
	if (value == NULL)
		return ENOMEM;
	if (json_object_object_add(obj, field, value) != 0) {
		json_object_put(value);
		return ENOMEM;
	}
	return 0;
}

int ks_etcd_json_bytes(struct json_object *obj, const char *field,
		       const void *bytes, size_t len)
{
	char *text;
	struct json_object *s;

	if (len > (SIZE_MAX / 4 - 4) / 4 * 3)
		return EFBIG;
	text = malloc(ks_b64_encoded_len(len) + 1);
	if (text == NULL)
		return ENOMEM;
	size_t n = ks_b64_encode(bytes, len, text);
	s = json_object_new_string_len(text, (int)n);
	free(text);
	return json_add_made(obj, field, s);
}

int ks_etcd_json_key(struct ks_etcd *c, struct json_object *obj,
		     const char *field, const void *key, size_t len)
{
	char *full;
	int err;

	if (c->plen + len == 0)
		return ks_etcd_json_bytes(obj, field, "", 1);
	full = malloc(c->plen + len + 1);
	if (full == NULL)
		return ENOMEM;
	memcpy(full, c->prefix, c->plen);
	if (len > 0)
		memcpy(full + c->plen, key, len);
	err = ks_etcd_json_bytes(obj, field, full, c->plen + len);
	free(full);
	return err;
}

int ks_etcd_json_int64(struct json_object *obj, const char *field, int64_t v)
{
	char text[32];
	struct json_object *s;

	snprintf(text, sizeof(text), "%" PRId64, v);
	s = json_object_new_string(text);
	return json_add_made(obj, field, s);
}

static int json_add_bool(struct json_object *obj, const char *field, bool v)
{
	return json_add_made(obj, field, json_object_new_boolean(v));
}

static int json_add_string(struct json_object *obj, const char *field,
			   const char *v)
{
	return json_add_made(obj, field, json_object_new_string(v));
}

char *ks_etcd_json_text(struct json_object *obj, size_t *len)
{
	size_t n;
	const char *t = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		&n);
	char *copy;

	if (t == NULL)
		return NULL;
	copy = malloc(n + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, t, n + 1);
	*len = n;
	return copy;
}

/* ---- create / free ------------------------------------------------------- */

/* The only process-wide state of the client: libcurl's global init is not
 * thread-safe and must run once per process before any handle is made;
 * pthread_once makes it both, and its result is kept for later clients. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;


static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The first key after every key that starts with p[0..len): p with its last
 * byte below 0xff incremented and what follows dropped; "\0" (meaning "to
 * the end of the key space" to etcd) when there is no such byte. */
static int make_prefix_end(const char *p, size_t len, char **out,
			   size_t *out_len)
{
	size_t n = len;
	char *e;

	while (n > 0 && (unsigned char)p[n - 1] == 0xff)
		n--;
	e = malloc(n > 0 ? n : 1);
	if (e == NULL)
		return ENOMEM;
	if (n == 0) {
		e[0] = '\0';
		*out_len = 1;
	} else {
		memcpy(e, p, n);
		e[n - 1] = (char)((unsigned char)e[n - 1] + 1);
		*out_len = n;
	}
	*out = e;
	return 0;
}

/* Splits "url,url" into c->endpoints; each must be http(s)://something. */
static int parse_endpoints(struct ks_etcd *c, const char *list)
{
	const char *p = list;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		char **grown;
		char *url;

		while (len > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			len--;
		}
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		while (len > 0 && s[len - 1] == '/')
			len--;
		if (!((len > 7 && strncmp(s, "http://", 7) == 0) ||
		      (len > 8 && strncmp(s, "https://", 8) == 0)))
			return EINVAL;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] <= ' ')
				return EINVAL;
		url = strndup(s, len);
		if (url == NULL)
			return ENOMEM;
		grown = realloc(c->endpoints,
				(c->n_endpoints + 1) * sizeof(*grown));
		if (grown == NULL) {
			free(url);
			return ENOMEM;
		}
		c->endpoints = grown;
		c->endpoints[c->n_endpoints++] = url;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return c->n_endpoints > 0 ? 0 : EINVAL;
}

int ks_etcd_create(const struct ks_etcd_options *o, struct ks_etcd **out)
{
	struct ks_etcd *c;
	int err;

	*out = NULL;
	if (o == NULL || o->endpoints == NULL || o->prefix == NULL ||
	    !(o->timeout > 0) || !isfinite(o->timeout) || o->keepalive < 0 ||
	    o->dead_after < 0 || !isfinite(o->keepalive) ||
	    !isfinite(o->dead_after))
		return EINVAL;
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return ENOMEM;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return ENOMEM;
	ks_lock_init(&c->pool_lock, "etcd->pool_lock", KS_RANK_LEAF);
	c->timeout = o->timeout;
	c->keepalive = o->keepalive > 0 ? o->keepalive : 1.0;
	c->dead_after = o->dead_after > 0 ? o->dead_after
			: (o->timeout < 3.0 ? o->timeout : 3.0);
	c->page_size = o->page_size > 0 ? o->page_size : 500;
	atomic_init(&c->preferred, 0);
	atomic_init(&c->connected, false);
	atomic_init(&c->watch_revision, 0);
	atomic_init(&c->n_requests, 0);
	atomic_init(&c->n_failovers, 0);
	atomic_init(&c->n_resends, 0);
	atomic_init(&c->n_reconnects, 0);
	atomic_init(&c->n_compactions, 0);
	atomic_init(&c->n_probes, 0);

	c->plen = strlen(o->prefix);
	c->prefix = strdup(o->prefix);
	err = c->prefix ? 0 : ENOMEM;
	if (!err)
		err = make_prefix_end(c->prefix, c->plen, &c->prefix_end,
				      &c->prefix_end_len);
	if (!err)
		err = parse_endpoints(c, o->endpoints);
	if (!err) {
		/* "Expect:" stops curl from waiting for "100 Continue" before
		 * sending a big body: a second round trip for nothing. */
		struct curl_slist *h =
			curl_slist_append(NULL, "Content-Type: application/json");
		struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
		if (h2 == NULL) {
			curl_slist_free_all(h);
			err = ENOMEM;
		}
		c->headers = h2;
	}
	if (err) {
		ks_etcd_free(c);
		return err;
	}
	*out = c;
	return 0;
}

void ks_etcd_free(struct ks_etcd *c)
{
	if (c == NULL)
		return;
	ks_etcd_watch_stop(c);
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	for (size_t i = 0; i < c->n_endpoints; i++)
		free(c->endpoints[i]);
	free(c->endpoints);
	free(c->prefix);
	free(c->prefix_end);
	curl_slist_free_all(c->headers);
	ks_lock_destroy(&c->pool_lock);
	free(c);
}

/* ---- handles and endpoints ------------------------------------------------- */

static CURL *pool_get(struct ks_etcd *c)
{
	CURL *h = NULL;

	ks_lock(&c->pool_lock);
	if (c->n_pool > 0)
		h = c->pool[--c->n_pool];
	ks_unlock(&c->pool_lock);
	return h ? h : curl_easy_init();
}

static void pool_put(struct ks_etcd *c, CURL *h)
{
	ks_lock(&c->pool_lock);
	if (c->n_pool < KS_ETCD_POOL_MAX) {
		c->pool[c->n_pool++] = h;
		h = NULL;
	}
	ks_unlock(&c->pool_lock);
	if (h != NULL)
		curl_easy_cleanup(h);
}

int ks_etcd_prepare(struct ks_etcd *c, CURL *h, size_t endpoint,
		    const char *path, const char *body, size_t body_len,
		    struct ks_etcd_buf *buf)
{
	char url[1024];
	CURLcode r = CURLE_OK;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", c->endpoints[endpoint],
			     path) >= sizeof(url))
		return EINVAL;
#define SET(opt, val) \
	do { if (r == CURLE_OK) r = curl_easy_setopt(h, opt, val); } while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);   /* threads: no SIGALRM for DNS timeouts */
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	SET(CURLOPT_HTTPHEADER, c->headers);
	/* A peer host that dies without a FIN is noticed by TCP too. */
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_KEEPIDLE, 5L);
	SET(CURLOPT_TCP_KEEPINTVL, 2L);
	if (buf != NULL) {
		SET(CURLOPT_WRITEFUNCTION, ks_etcd_buf_write);
		SET(CURLOPT_WRITEDATA, buf);
	}
#undef SET
	return r == CURLE_OK ? 0 : EINVAL;
}

void ks_etcd_endpoint_failed(struct ks_etcd *c, size_t failed)
{
	size_t expected = failed;

	/* Only if nobody moved it meanwhile: two threads failing on the same
	 * endpoint must not skip the next one. */
	if (c->n_endpoints > 1 &&
	    atomic_compare_exchange_strong(&c->preferred, &expected,
					   (failed + 1) % c->n_endpoints))
		atomic_fetch_add(&c->n_failovers, 1);
}

/* ---- one request ----------------------------------------------------------- */

/* What may be done with a request once a copy of it may have reached etcd
 * and its answer was lost. */
enum send_kind {
	SEND_READ,        /* no effect: sent again, to any endpoint */
	SEND_WRITE,       /* never sent again: its fate is unknown */
	SEND_RESENDABLE,  /* a guarded write (ks_etcd_txn_resendable): sent
			   * again; at most one copy can apply */
};

struct request {
	const char *path;
	const char *body;
	size_t body_len;
	enum send_kind kind;
	double timeout;
	char *msg;           /* optional: why it failed, for the user */
	size_t msg_size;
	size_t answered_by;  /* out: the endpoint that answered */
	/* out, SEND_RESENDABLE: 0, or the error (ETIMEDOUT, EIO) an earlier
	 * copy failed with after it may have reached etcd */
	int earlier_copy;
};

static void note(struct request *rq, size_t endpoint, struct ks_etcd *c,
		 const char *what)
{
	size_t used;

	if (rq->msg == NULL || rq->msg_size == 0)
		return;
	used = strlen(rq->msg);
	if (used + 1 >= rq->msg_size)
		return;
	/* one entry per endpoint: the first reason it failed */
	if (strstr(rq->msg, c->endpoints[endpoint]) != NULL)
		return;
	snprintf(rq->msg + used, rq->msg_size - used, "%s%s: %s",
		 used ? "; " : "", c->endpoints[endpoint], what);
}

/* A request's body, read out by libcurl as it sends. */
struct body_cursor {
	const char *p;
	size_t left;
};

static size_t body_read(char *to, size_t size, size_t n, void *arg)
{
	struct body_cursor *b = arg;
	size_t len = size * n < b->left ? size * n : b->left;

	memcpy(to, b->p, len);
	b->p += len;
	b->left -= len;
	return len;
}

/* libcurl sends a request again by itself, on a new connection to the same
 * endpoint, when a reused connection broke before any answer: for a write
 * that reached etcd, a second copy nobody knows of.  It cannot without
 * rewinding the body; refusing makes the transfer fail instead, and this
 * loop decides what may be sent again, and counts it. */
static int body_no_rewind(void *arg, curl_off_t offset, int origin)
{
	(void)arg;
	(void)offset;
	(void)origin;
	return CURL_SEEKFUNC_CANTSEEK;
}

/* Sends rq to the endpoints in turn until one answers or the deadline
 * passes; *out is the answer's JSON (to json_object_put) when 0. */
static int request(struct ks_etcd *c, struct request *rq,
		   struct json_object **out)
{
	double deadline = ks_etcd_now() + rq->timeout;
	size_t n = c->n_endpoints;
	size_t start = atomic_load(&c->preferred) % n;
	struct ks_etcd_buf buf = { .max = KS_ETCD_MAX_ANSWER };
	double backoff = 0.05;
	bool resend_due = false;
	int err = ETIMEDOUT;
	CURL *h = pool_get(c);

	*out = NULL;
	if (h == NULL)
		return ENOMEM;
	for (size_t attempt = 0;; attempt++) {
		size_t idx = (start + attempt) % n;
		size_t left_in_pass = n - attempt % n;
		double remaining = deadline - ks_etcd_now();
		double budget, connect_budget;
		struct body_cursor body;
		curl_off_t pretransfer = 0;
		long status = 0;
		CURLcode cr;
		bool sent;

		if (attempt > 0 && attempt % n == 0) {
			/* a whole pass failed fast: breathe before the next */
			sleep_seconds(backoff < remaining ? backoff : remaining);
			backoff = backoff * 2 < 1.0 ? backoff * 2 : 1.0;
			remaining = deadline - ks_etcd_now();
		}
		if (remaining <= 0.001)
			break;
		/* A stopped member accepts connections and never answers: give
		 * each endpoint left its share, so that the last gets a chance.
		 * A plain write gets it all once it is sent (it can't be
		 * resent), but connecting still gets a share; a resendable one
		 * goes on to the next endpoint like a read. */
		connect_budget = remaining / (double)left_in_pass;
		budget = rq->kind != SEND_WRITE ? connect_budget : remaining;
		ks_etcd_buf_reset(&buf);
		err = ks_etcd_prepare(c, h, idx, rq->path, rq->body,
				      rq->body_len, &buf);
		if (err)
			break;
		/* the body through a callback that cannot rewind (above) */
		body = (struct body_cursor){ rq->body, rq->body_len };
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
		curl_easy_setopt(h, CURLOPT_READDATA, &body);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, body_no_rewind);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)rq->body_len);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
				 (long)ceil(budget * 1000));
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
				 (long)ceil(connect_budget * 1000));
		atomic_fetch_add(&c->n_requests, 1);
		/* counted when it goes out, not if the deadline came first */
		if (resend_due) {
			atomic_fetch_add(&c->n_resends, 1);
			resend_due = false;
		}
		cr = curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
		/* Before "pretransfer" no byte of the request left us. */
		sent = pretransfer > 0;

		if (cr == CURLE_OK) {
			struct json_object *doc = NULL;

			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
			err = ks_ep_parse(buf.p, buf.len, &doc);
			if (err == 0 && status == 200) {
				rq->answered_by = idx;
				atomic_store(&c->preferred, idx);
				*out = doc;
				break;
			}
			if (err == 0) {
				char why[200];

				err = ks_ep_error(doc, why, sizeof(why));
				json_object_put(doc);
				note(rq, idx, c, why[0] ? why : "HTTP error");
			} else {
				char why[64];

				snprintf(why, sizeof(why),
					 "HTTP %ld, not an etcd answer", status);
				note(rq, idx, c, why);
				err = EIO;
			}
			/* etcd answered but could not serve (no leader, its
			 * own timeout): another member may.  A write may have
			 * been proposed before etcd gave up on it, so only a
			 * read or a resendable write goes on. */
			if (err == ETIMEDOUT && rq->kind != SEND_WRITE) {
				if (rq->kind == SEND_RESENDABLE) {
					rq->earlier_copy = ETIMEDOUT;
					resend_due = true;
				}
				ks_etcd_endpoint_failed(c, idx);
				continue;
			}
			break;
		}

		note(rq, idx, c, buf.overflow ? "answer too large"
			     : curl_easy_strerror(cr));
		if (buf.overflow) {
			err = EIO;
			break;
		}
		ks_etcd_endpoint_failed(c, idx);
		if (!sent || rq->kind == SEND_READ) {
			err = ETIMEDOUT;
			continue;
		}
		/* A write that may have arrived: its fate is unknown. */
		err = cr == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EIO;
		if (rq->kind == SEND_RESENDABLE) {
			/* Its compares let at most one copy apply, however
			 * many are in flight: the next endpoint may take it
			 * at once.  The caller learns that a refusal may be
			 * this copy's own doing. */
			rq->earlier_copy = err;
			resend_due = true;
			continue;
		}
		break;
	}
	/* Out of time after a resend, err is the last copy's ETIMEDOUT or
	 * EIO: both say that the write's fate is unknown. */
	pool_put(c, h);
	ks_etcd_buf_free(&buf);
	return err;
}

/* Builds obj's text and sends it. */
static int request_json(struct ks_etcd *c, const char *path,
			struct json_object *obj, enum send_kind kind,
			int *earlier_copy, struct json_object **out)
{
	struct request rq = {
		.path = path,
		.kind = kind,
		.timeout = c->timeout,
	};
	char *body = ks_etcd_json_text(obj, &rq.body_len);
	int err;

	if (body == NULL)
		return ENOMEM;
	rq.body = body;
	err = request(c, &rq, out);
	if (earlier_copy != NULL)
		*earlier_copy = rq.earlier_copy;
	free(body);
	return err;
}

/* ---- range ----------------------------------------------------------------- */

/* Adds key and range_end for `keys` to obj.  A range that starts after a
 * page boundary passes its own first raw key in from_raw. */
static int add_keys(struct ks_etcd *c, struct json_object *obj,
		    const struct ks_etcd_keys *keys, const char *from_raw,
		    size_t from_raw_len)
{
	const char *key = keys->key ? keys->key : "";
	int err;

	if (from_raw != NULL)
		err = ks_etcd_json_bytes(obj, "key", from_raw, from_raw_len);
	else
		err = ks_etcd_json_key(c, obj, "key", key, strlen(key));
	if (err)
		return err;
	if (keys->prefix) {
		size_t len = c->plen + strlen(key);
		char *full = malloc(len + 1);
		char *end;
		size_t end_len;

		if (full == NULL)
			return ENOMEM;
		memcpy(full, c->prefix, c->plen);
		memcpy(full + c->plen, key, strlen(key));
		err = make_prefix_end(full, len, &end, &end_len);
		free(full);
		if (err)
			return err;
		err = ks_etcd_json_bytes(obj, "range_end", end, end_len);
		free(end);
		return err;
	}
	if (keys->range_end != NULL)
		return ks_etcd_json_key(c, obj, "range_end", keys->range_end,
					strlen(keys->range_end));
	return 0;
}

/* Moves page's kvs to the end of all's. */
static int append_kvs(struct ks_etcd_kvs *all, struct ks_etcd_kvs *page)
{
	struct ks_etcd_kv *grown;

	if (page->n == 0)
		return 0;
	grown = realloc(all->kvs, (all->n + page->n) * sizeof(*grown));
	if (grown == NULL)
		return ENOMEM;
	all->kvs = grown;
	memcpy(all->kvs + all->n, page->kvs, page->n * sizeof(*grown));
	all->n += page->n;
	free(page->kvs);
	page->kvs = NULL;
	page->n = 0;
	return 0;
}

int ks_etcd_range(struct ks_etcd *c, const struct ks_etcd_keys *keys,
		  int64_t revision, struct ks_etcd_kvs *out)
{
	struct ks_etcd_kvs all = { .revision = revision };
	bool paged = keys->prefix || keys->range_end != NULL;
	char *from = NULL;
	size_t from_len = 0;
	int err = 0;

	if (revision < 0)
		return EINVAL;
	for (;;) {
		struct json_object *req = json_object_new_object();
		struct json_object *doc = NULL;
		struct ks_etcd_kvs page;
		bool more = false;

		if (req == NULL) {
			err = ENOMEM;
			break;
		}
		err = add_keys(c, req, keys, from, from_len);
		if (!err && all.revision > 0)
			err = ks_etcd_json_int64(req, "revision", all.revision);
		if (!err && paged)
			err = ks_etcd_json_int64(req, "limit", c->page_size);
		if (!err)
			err = request_json(c, "/v3/kv/range", req, SEND_READ,
					   NULL, &doc);
		json_object_put(req);
		if (!err) {
			err = ks_ep_range(doc, c->prefix, c->plen, &page, &more);
			json_object_put(doc);
		}
		if (err)
			break;
		/* every page at the first page's revision: one snapshot */
		if (all.revision == 0)
			all.revision = page.revision;
		if (more && (page.n == 0 || !paged)) {
			ks_etcd_kvs_free(&page);
			err = EIO;   /* "more" with nothing to go on from */
			break;
		}
		if (more) {
			/* the next page starts right after this one's last key:
			 * prefix + key + "\0" */
			struct ks_etcd_kv *last = &page.kvs[page.n - 1];
			char *next = malloc(c->plen + last->key_len + 1);

			if (next == NULL) {
				ks_etcd_kvs_free(&page);
				err = ENOMEM;
				break;
			}
			memcpy(next, c->prefix, c->plen);
			memcpy(next + c->plen, last->key, last->key_len);
			next[c->plen + last->key_len] = '\0';
			free(from);
			from = next;
			from_len = c->plen + last->key_len + 1;
		}
		err = append_kvs(&all, &page);
		ks_etcd_kvs_free(&page);
		if (err || !more)
			break;
	}
	free(from);
	if (err) {
		ks_etcd_kvs_free(&all);
		return err;
	}
	ks_etcd_kvs_free(out);
	*out = all;
	return 0;
}

/* ---- txn -------------------------------------------------------------------- */

static const char *const cmp_targets[] = {
	[KS_ETCD_CMP_VERSION] = "VERSION",
	[KS_ETCD_CMP_CREATE] = "CREATE",
	[KS_ETCD_CMP_MOD] = "MOD",
	[KS_ETCD_CMP_VALUE] = "VALUE",
};

static const char *const cmp_results[] = {
	[KS_ETCD_EQUAL] = "EQUAL",
	[KS_ETCD_NOT_EQUAL] = "NOT_EQUAL",
	[KS_ETCD_GREATER] = "GREATER",
	[KS_ETCD_LESS] = "LESS",
};

static int add_cmp(struct ks_etcd *c, struct json_object *arr,
		   const struct ks_etcd_cmp *cmp)
{
	struct json_object *o;
	int err;

	if (cmp->key == NULL || (unsigned)cmp->target > KS_ETCD_CMP_VALUE ||
	    (unsigned)cmp->result > KS_ETCD_LESS)
		return EINVAL;
	o = json_object_new_object();
	if (o == NULL)
		return ENOMEM;
	err = ks_etcd_json_key(c, o, "key", cmp->key, strlen(cmp->key));
	if (!err)
		err = json_add_string(o, "target", cmp_targets[cmp->target]);
	if (!err)
		err = json_add_string(o, "result", cmp_results[cmp->result]);
	if (!err) {
		switch (cmp->target) {
		case KS_ETCD_CMP_VERSION:
			err = ks_etcd_json_int64(o, "version", cmp->number);
			break;
		case KS_ETCD_CMP_CREATE:
			err = ks_etcd_json_int64(o, "create_revision",
						 cmp->number);
			break;
		case KS_ETCD_CMP_MOD:
			err = ks_etcd_json_int64(o, "mod_revision",
						 cmp->number);
			break;
		case KS_ETCD_CMP_VALUE:
			err = ks_etcd_json_bytes(o, "value", cmp->value,
						 cmp->value_len);
			break;
		}
	}
	if (!err && json_object_array_add(arr, o) != 0)
		err = ENOMEM;
	if (err)
		json_object_put(o);
	return err;
}

static int add_op(struct ks_etcd *c, struct json_object *arr,
		  const struct ks_etcd_op *op)
{
	struct json_object *wrap = json_object_new_object();
	struct json_object *o = json_object_new_object();
	const char *name = NULL;
	int err = 0;

	if (wrap == NULL || o == NULL) {
		json_object_put(wrap);
		json_object_put(o);
		return ENOMEM;
	}
	switch (op->type) {
	case KS_ETCD_OP_PUT:
		name = "request_put";
		if (op->keys.key == NULL || op->keys.prefix ||
		    op->keys.range_end != NULL) {
			err = EINVAL;
			break;
		}
		err = ks_etcd_json_key(c, o, "key", op->keys.key,
				       strlen(op->keys.key));
		if (!err)
			err = ks_etcd_json_bytes(o, "value", op->value,
						 op->value_len);
		break;
	case KS_ETCD_OP_DELETE:
		name = "request_delete_range";
		err = add_keys(c, o, &op->keys, NULL, 0);
		break;
	case KS_ETCD_OP_RANGE:
		name = "request_range";
		err = add_keys(c, o, &op->keys, NULL, 0);
		break;
	default:
		err = EINVAL;
	}
	if (!err && json_object_object_add(wrap, name, o) != 0)
		err = ENOMEM;
	else if (!err)
		o = NULL;    /* owned by wrap now */
	if (!err && json_object_array_add(arr, wrap) != 0)
		err = ENOMEM;
	else if (!err)
		wrap = NULL;
	json_object_put(o);
	json_object_put(wrap);
	return err;
}

static int add_array(struct json_object *obj, const char *field,
		     struct json_object **arr)
{
	*arr = json_object_new_array();
	if (*arr == NULL)
		return ENOMEM;
	if (json_object_object_add(obj, field, *arr) != 0) {
		json_object_put(*arr);
		return ENOMEM;
	}
	return 0;
}

static int txn_send(struct ks_etcd *c, bool resendable,
		    const struct ks_etcd_cmp *cmps, size_t n_cmps,
		    const struct ks_etcd_op *success, size_t n_success,
		    const struct ks_etcd_op *failure, size_t n_failure,
		    struct ks_etcd_txn_result *out)
{
	struct json_object *req = json_object_new_object();
	struct json_object *arr, *doc = NULL;
	struct ks_etcd_txn_result r;
	enum send_kind kind;
	bool writes = false;
	int earlier_copy = 0;
	int err;

	if (req == NULL)
		return ENOMEM;
	err = add_array(req, "compare", &arr);
	for (size_t i = 0; !err && i < n_cmps; i++)
		err = add_cmp(c, arr, &cmps[i]);
	if (!err)
		err = add_array(req, "success", &arr);
	for (size_t i = 0; !err && i < n_success; i++) {
		err = add_op(c, arr, &success[i]);
		writes |= success[i].type != KS_ETCD_OP_RANGE;
	}
	if (!err)
		err = add_array(req, "failure", &arr);
	for (size_t i = 0; !err && i < n_failure; i++) {
		err = add_op(c, arr, &failure[i]);
		writes |= failure[i].type != KS_ETCD_OP_RANGE;
	}
	kind = !writes ? SEND_READ : resendable ? SEND_RESENDABLE : SEND_WRITE;
	if (!err)
		err = request_json(c, "/v3/kv/txn", req, kind, &earlier_copy,
				   &doc);
	json_object_put(req);
	if (err)
		return err;
	err = ks_ep_txn(doc, c->prefix, c->plen, success, n_success, failure,
			n_failure, &r);
	json_object_put(doc);
	if (err)
		return err;
	r.earlier_copy = earlier_copy;
	ks_etcd_txn_result_free(out);
	*out = r;
	return 0;
}

int ks_etcd_txn(struct ks_etcd *c, const struct ks_etcd_cmp *cmps, size_t n_cmps,
		const struct ks_etcd_op *success, size_t n_success,
		const struct ks_etcd_op *failure, size_t n_failure,
		struct ks_etcd_txn_result *out)
{
	return txn_send(c, false, cmps, n_cmps, success, n_success, failure,
			n_failure, out);
}

int ks_etcd_txn_resendable(struct ks_etcd *c, const struct ks_etcd_cmp *cmps,
			   size_t n_cmps, const struct ks_etcd_op *success,
			   size_t n_success, const struct ks_etcd_op *failure,
			   size_t n_failure, struct ks_etcd_txn_result *out)
{
	/* Without a compare nothing stops a second copy from applying. */
	if (n_cmps == 0)
		return EINVAL;
	return txn_send(c, true, cmps, n_cmps, success, n_success, failure,
			n_failure, out);
}

/* ---- maintenance ------------------------------------------------------------- */

int ks_etcd_status(struct ks_etcd *c, double timeout,
		   struct ks_etcd_status *out, char *msg, size_t msg_size)
{
	struct request rq = {
		.path = "/v3/maintenance/status",
		.body = "{}",
		.body_len = 2,
		.kind = SEND_READ,
		.timeout = timeout > 0 ? timeout : c->timeout,
		.msg = msg,
		.msg_size = msg_size,
	};
	struct json_object *doc = NULL, *f;
	struct ks_etcd_status st;
	uint64_t leader = 0;
	int err;

	memset(&st, 0, sizeof(st));
	if (msg != NULL && msg_size > 0)
		msg[0] = '\0';
	err = request(c, &rq, &doc);
	if (err) {
		if (msg != NULL && msg_size > 0) {
			char detail[1024];

			snprintf(detail, sizeof(detail), "%s", msg);
			snprintf(msg, msg_size,
				 "no etcd endpoint answered within %g s%s%s",
				 rq.timeout, detail[0] ? ": " : "", detail);
		}
		return err;
	}
	err = ks_ep_header_revision(doc, true, &st.revision);
	if (!err)
		err = ks_ep_int64(doc, "dbSize", false, &st.db_size);
	if (!err)
		err = ks_ep_uint64(doc, "leader", false, &leader);
	if (!err && json_object_object_get_ex(doc, "version", &f)) {
		if (json_object_is_type(f, json_type_string))
			snprintf(st.version, sizeof(st.version), "%s",
				 json_object_get_string(f));
		else
			err = EIO;
	}
	json_object_put(doc);
	if (err) {
		if (msg != NULL && msg_size > 0)
			snprintf(msg, msg_size, "%s: not an etcd status answer",
				 c->endpoints[rq.answered_by]);
		return err;
	}
	st.has_leader = leader != 0;
	snprintf(st.endpoint, sizeof(st.endpoint), "%s",
		 c->endpoints[rq.answered_by]);
	*out = st;
	return 0;
}

int ks_etcd_compact(struct ks_etcd *c, int64_t revision)
{
	struct json_object *req = json_object_new_object();
	struct json_object *doc = NULL;
	int64_t rev;
	int err;

	if (req == NULL)
		return ENOMEM;
	err = ks_etcd_json_int64(req, "revision", revision);
	if (!err)
		err = json_add_bool(req, "physical", true);
	/* compacting twice to the same revision changes nothing: a retry is
	 * harmless (it may answer ESTALE, "already compacted") */
	if (!err)
		err = request_json(c, "/v3/kv/compaction", req, SEND_READ,
				   NULL, &doc);
	json_object_put(req);
	if (err)
		return err;
	err = ks_ep_header_revision(doc, true, &rev);
	json_object_put(doc);
	return err;
}

/* ---- stats -------------------------------------------------------------------- */

void ks_etcd_get_stats(struct ks_etcd *c, struct ks_etcd_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->connected = atomic_load(&c->connected);
	out->revision = atomic_load(&c->watch_revision);
	out->requests = atomic_load(&c->n_requests);
	out->failovers = atomic_load(&c->n_failovers);
	out->resends = atomic_load(&c->n_resends);
	out->reconnects = atomic_load(&c->n_reconnects);
	out->compactions = atomic_load(&c->n_compactions);
	out->probes = atomic_load(&c->n_probes);
	snprintf(out->endpoint, sizeof(out->endpoint), "%s",
		 c->endpoints[atomic_load(&c->preferred) % c->n_endpoints]);
}

/*
 * etcd's JSON gateway from C, for the baselines: see gateway.h.
 */
#include "gateway.h"

#include "bench.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gw_state {
	CURL *h;
	struct curl_slist *headers;
	char url_range[512], url_txn[512];
	char *prefix;          /* "/PREFIX/" */
	char *vkey;            /* ".version/NAME" */
	/* the three keys, in base64 */
	char *b_page, *b_version, *b_mtime;
	char *body;            /* the request being built */
	size_t body_cap;
	char *resp;            /* the answer being received */
	size_t resp_len, resp_cap;
	char *b_value;         /* a page in base64 */
};

/* ---- base64 ---------------------------------------------------------------- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

static size_t b64_encode(const void *src, size_t n, char *dst)
{
	const unsigned char *s = src;
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 |
			     s[i + 2];

		dst[o++] = b64[v >> 18];
		dst[o++] = b64[(v >> 12) & 63];
		dst[o++] = b64[(v >> 6) & 63];
		dst[o++] = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 |
			     (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);

		dst[o++] = b64[v >> 18];
		dst[o++] = b64[(v >> 12) & 63];
		dst[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}

static char *b64_dup(const char *s)
{
	char *d = malloc(b64_len(strlen(s)) + 1);

	CHECK(d, "malloc");
	b64_encode(s, strlen(s), d);
	return d;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* Decodes into dst[0..cap); the decoded length. */
static size_t b64_decode(const char *src, void *dst, size_t cap)
{
	unsigned char *d = dst;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (; *src && *src != '='; src++) {
		int v = b64_value(*src);

		errno = 0;
		CHECK(v >= 0, "bad base64 from etcd");
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			CHECK(o < cap, "a value from etcd larger than %zu", cap);
			d[o++] = (unsigned char)(acc >> bits);
		}
	}
	return o;
}

/* ---- HTTP ------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK,
	      "curl_global_init");
}

const char *gw_endpoint(void)
{
	const char *e = getenv("KSTATEFS_BENCH_ETCD");

	errno = 0;
	CHECK(e && *e, "KSTATEFS_BENCH_ETCD (the etcd endpoint) is not set");
	return e;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct gw_state *s = arg;
	size_t len = size * n;

	if (s->resp_len + len + 1 > s->resp_cap) {
		s->resp_cap = 2 * (s->resp_len + len + 1);
		s->resp = realloc(s->resp, s->resp_cap);
		CHECK(s->resp, "realloc");
	}
	memcpy(s->resp + s->resp_len, p, len);
	s->resp_len += len;
	return len;
}

/* POSTs the body built in s->body to url; the answer's JSON. */
static struct json_object *post(struct gw_state *s, const char *url,
				size_t len)
{
	struct json_object *doc;
	long status = 0;
	CURLcode r;

	s->resp_len = 0;
	curl_easy_setopt(s->h, CURLOPT_URL, url);
	curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	r = curl_easy_perform(s->h);
	errno = 0;
	CHECK(r == CURLE_OK, "POST %s: %s", url, curl_easy_strerror(r));
	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
	s->resp[s->resp_len] = '\0';
	CHECK(status == 200, "POST %s: HTTP %ld: %s", url, status, s->resp);
	doc = json_tokener_parse(s->resp);
	CHECK(doc, "POST %s: not JSON: %s", url, s->resp);
	return doc;
}

static struct json_object *field(struct json_object *o, const char *name)
{
	struct json_object *v = NULL;

	return json_object_object_get_ex(o, name, &v) ? v : NULL;
}

/* The value of the first kv of a range response, decoded; its length, or
 * (size_t)-1 if the range found nothing. */
static size_t range_value(struct json_object *range, void *dst, size_t cap)
{
	struct json_object *kvs = range ? field(range, "kvs") : NULL;
	struct json_object *kv, *v;

	if (!kvs || json_object_array_length(kvs) == 0)
		return (size_t)-1;
	kv = json_object_array_get_idx(kvs, 0);
	v = field(kv, "value");
	return v ? b64_decode(json_object_get_string(v), dst, cap) : 0;
}

static uint64_t parse_version(const char *buf, size_t len)
{
	char tmp[32];

	errno = 0;
	CHECK(len < sizeof(tmp), "a version of %zu bytes in etcd", len);
	memcpy(tmp, buf, len);
	tmp[len] = '\0';
	return strtoull(tmp, NULL, 10);
}

/* ---- the body ---------------------------------------------------------------- */

static void body_reserve(struct gw_state *s, size_t need)
{
	need += 2 * (strlen(s->b_page) + strlen(s->b_version) +
		     strlen(s->b_mtime));
	if (need > s->body_cap) {
		s->body_cap = need;
		s->body = realloc(s->body, need);
		s->b_value = realloc(s->b_value, need);
		CHECK(s->body && s->b_value, "realloc");
	}
}

/* The success ops putting page, version and mtime; the body's length. */
static int put_ops(struct gw_state *s, char *out, size_t cap,
		   uint64_t version, const void *page, size_t len)
{
	char num[24], b_num[40], b_time[40];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(num, sizeof(num), "%" PRIu64, version);
	b64_encode(num, strlen(num), b_num);
	snprintf(num, sizeof(num), "%" PRIu64,
		 (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
	b64_encode(num, strlen(num), b_time);
	b64_encode(page, len, s->b_value);
	return snprintf(out, cap,
			"[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
			"{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
			"{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]",
			s->b_page, s->b_value, s->b_version, b_num, s->b_mtime,
			b_time);
}

/* ---- states ------------------------------------------------------------------ */

struct gw_state *gw_state_open(const char *path)
{
	struct gw_state *s = calloc(1, sizeof(*s));
	char *p = strdup(path), *slash, *hash, *key;
	const char *e = gw_endpoint();
	struct json_object *doc;
	size_t n;

	CHECK(s && p, "calloc");
	pthread_once(&curl_once, curl_init);
	if ((hash = strchr(p, '#')))
		*hash = '\0';
	slash = strrchr(p, '/');
	errno = 0;
	CHECK(p[0] == '/' && slash && slash[1], "'%s' is not /PREFIX/NAME",
	      path);
	s->prefix = strndup(p, (size_t)(slash - p + 1));
	n = strlen(p) + 16;
	key = malloc(n);
	s->vkey = malloc(n);
	CHECK(s->prefix && key && s->vkey, "malloc");
	snprintf(s->vkey, n, ".version/%s", slash + 1);
	s->b_page = b64_dup(p);
	snprintf(key, n, "%s.version/%s", s->prefix, slash + 1);
	s->b_version = b64_dup(key);
	snprintf(key, n, "%s.mtime/%s", s->prefix, slash + 1);
	s->b_mtime = b64_dup(key);
	free(key);
	free(p);
	snprintf(s->url_range, sizeof(s->url_range), "%s/v3/kv/range", e);
	snprintf(s->url_txn, sizeof(s->url_txn), "%s/v3/kv/txn", e);

	s->h = curl_easy_init();
	s->headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* no "Expect: 100-continue" round trip before a big body */
	s->headers = curl_slist_append(s->headers, "Expect:");
	CHECK(s->h && s->headers, "curl_easy_init");
	curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->h, CURLOPT_POST, 1L);
	curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 10000L);
	s->resp_cap = 4096;
	s->resp = malloc(s->resp_cap);
	CHECK(s->resp, "malloc");

	/* Create the state if it is missing. */
	body_reserve(s, 1024);
	snprintf(s->body, s->body_cap,
		 "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
		 "\"result\":\"EQUAL\",\"create_revision\":\"0\"}],\"success\":",
		 s->b_version);
	n = strlen(s->body);
	n += (size_t)put_ops(s, s->body + n, s->body_cap - n, 0, "", 0);
	n += (size_t)snprintf(s->body + n, s->body_cap - n, "}");
	doc = post(s, s->url_txn, n);
	json_object_put(doc);
	return s;
}

void gw_state_close(struct gw_state *s)
{
	if (!s)
		return;
	curl_easy_cleanup(s->h);
	curl_slist_free_all(s->headers);
	free(s->prefix);
	free(s->vkey);
	free(s->b_page);
	free(s->b_version);
	free(s->b_mtime);
	free(s->body);
	free(s->b_value);
	free(s->resp);
	free(s);
}

const char *gw_state_prefix(const struct gw_state *s)
{
	return s->prefix;
}

const char *gw_state_version_key(const struct gw_state *s)
{
	return s->vkey;
}

size_t gw_state_read(struct gw_state *s, uint64_t *version, void *page,
		     size_t cap)
{
	struct json_object *doc, *resp;
	char vbuf[32];
	size_t n, len;

	n = (size_t)snprintf(s->body, s->body_cap,
			     "{\"success\":[{\"request_range\":{\"key\":\"%s\"}},"
			     "{\"request_range\":{\"key\":\"%s\"}}]}",
			     s->b_version, s->b_page);
	doc = post(s, s->url_txn, n);
	resp = field(doc, "responses");
	errno = 0;
	CHECK(resp && json_object_array_length(resp) == 2,
	      "a read txn answered %s", s->resp);
	n = range_value(field(json_object_array_get_idx(resp, 0),
			      "response_range"), vbuf, sizeof(vbuf));
	CHECK(n != (size_t)-1, "no version key in etcd");
	*version = parse_version(vbuf, n);
	len = range_value(field(json_object_array_get_idx(resp, 1),
				"response_range"), page, cap);
	CHECK(len != (size_t)-1, "no page key in etcd");
	json_object_put(doc);
	return len;
}

bool gw_state_cas(struct gw_state *s, uint64_t base, const void *page,
		  size_t len)
{
	char num[24], b_num[40];
	struct json_object *doc, *ok;
	bool succeeded;
	size_t n;

	body_reserve(s, 2 * b64_len(len) + 1024);
	snprintf(num, sizeof(num), "%" PRIu64, base);
	b64_encode(num, strlen(num), b_num);
	n = (size_t)snprintf(s->body, s->body_cap,
			     "{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\","
			     "\"result\":\"EQUAL\",\"value\":\"%s\"}],"
			     "\"success\":",
			     s->b_version, b_num);
	n += (size_t)put_ops(s, s->body + n, s->body_cap - n, base + 1, page,
			     len);
	n += (size_t)snprintf(s->body + n, s->body_cap - n, "}");
	doc = post(s, s->url_txn, n);
	/* proto3 JSON leaves false out */
	ok = field(doc, "succeeded");
	succeeded = ok && json_object_get_boolean(ok);
	json_object_put(doc);
	return succeeded;
}

void gw_state_put(struct gw_state *s, uint64_t version, const void *page,
		  size_t len)
{
	size_t n;

	body_reserve(s, 2 * b64_len(len) + 1024);
	n = (size_t)snprintf(s->body, s->body_cap, "{\"success\":");
	n += (size_t)put_ops(s, s->body + n, s->body_cap - n, version, page,
			     len);
	n += (size_t)snprintf(s->body + n, s->body_cap - n, "}");
	json_object_put(post(s, s->url_txn, n));
}

uint64_t gw_state_version(struct gw_state *s)
{
	struct json_object *doc;
	char vbuf[32];
	size_t n;

	n = (size_t)snprintf(s->body, s->body_cap, "{\"key\":\"%s\"}",
			     s->b_version);
	doc = post(s, s->url_range, n);
	n = range_value(doc, vbuf, sizeof(vbuf));
	errno = 0;
	CHECK(n != (size_t)-1, "no version key in etcd");
	json_object_put(doc);
	return parse_version(vbuf, n);
}

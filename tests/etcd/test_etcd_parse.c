/*
 * The etcd client's input checks, without an etcd: strict base64, and the
 * readers of etcd answers fed good answers, answers with a field missing or
 * of the wrong type, and many randomly damaged answers (which must give an
 * error or a result, never a crash: run it under the sanitizers).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_base64.h"
#include "etcd_parse.h"
#include "harness.h"

static int decode(const char *s, char *out, size_t *len)
{
	void *p = NULL;
	int err = ks_b64_decode(s, strlen(s), &p, len);

	if (!err) {
		memcpy(out, p, *len + 1);
		free(p);
	}
	return err;
}

static void test_base64(void)
{
	char buf[64];
	size_t len = 0;
	unsigned char all[256];
	char enc[400];
	void *back = NULL;

	KT_EQ(decode("", buf, &len), 0);
	KT_EQ(len, 0);
	KT_EQ(decode("YQ==", buf, &len), 0);
	KT_EQ(len, 1);
	KT_CHECK(buf[0] == 'a' && buf[1] == '\0');
	KT_EQ(decode("AAE=", buf, &len), 0);
	KT_EQ(len, 2);
	KT_CHECK(buf[0] == 0 && buf[1] == 1);
	KT_EQ(decode("YWJj", buf, &len), 0);
	KT_EQ(len, 3);

	/* not strict base64 */
	KT_EQ(decode("YQ=", buf, &len), EINVAL);        /* length */
	KT_EQ(decode("YQ", buf, &len), EINVAL);
	KT_EQ(decode("Y===", buf, &len), EINVAL);       /* too much padding */
	KT_EQ(decode("=YQ=", buf, &len), EINVAL);
	KT_EQ(decode("YQ==YQ==", buf, &len), EINVAL);   /* padding inside */
	KT_EQ(decode("YR==", buf, &len), EINVAL);       /* leftover bits */
	KT_EQ(decode("AAF=", buf, &len), EINVAL);
	KT_EQ(decode("Y Q=", buf, &len), EINVAL);       /* whitespace */
	KT_EQ(decode("YQ-_", buf, &len), EINVAL);       /* URL alphabet */
	KT_EQ(decode("YQ\n=", buf, &len), EINVAL);

	/* every byte value, every length */
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	for (size_t n = 0; n <= 256; n += (n < 8 ? 1 : 37)) {
		size_t e = ks_b64_encode(all, n, enc);
		size_t got = 0;

		KT_EQ(e, ks_b64_encoded_len(n));
		KT_EQ(ks_b64_decode(enc, e, &back, &got), 0);
		KT_EQ(got, n);
		KT_CHECK(memcmp(back, all, n) == 0);
		free(back);
	}
}

static struct json_object *parse(const char *text)
{
	struct json_object *o = NULL;

	if (ks_ep_parse(text, strlen(text), &o) != 0)
		return NULL;
	return o;
}

/* A range answer's reader on text: its errno. */
static int range_of(const char *text, const char *prefix,
		    struct ks_etcd_kvs *kvs)
{
	struct json_object *o = parse(text);
	bool more;
	int err;

	if (o == NULL)
		return EIO;
	err = ks_ep_range(o, prefix, strlen(prefix), kvs, &more);
	json_object_put(o);
	return err;
}

#define HDR "\"header\":{\"cluster_id\":\"1\",\"revision\":\"7\"}"

static void test_range(void)
{
	struct ks_etcd_kvs kvs = { 0 };

	/* key "p/a", value "\0\1"; a second kv with an empty (absent) value */
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":\"cC9h\",\"create_revision\":"
		       "\"2\",\"mod_revision\":\"3\",\"version\":\"2\",\"value\":"
		       "\"AAE=\"},{\"key\":\"cC9i\",\"create_revision\":\"4\","
		       "\"mod_revision\":\"4\",\"version\":\"1\"}],\"count\":\"2\"}",
		       "p/", &kvs), 0);
	KT_EQ(kvs.revision, 7);
	KT_EQ(kvs.n, 2);
	if (kvs.n == 2) {
		KT_CHECK(strcmp(kvs.kvs[0].key, "a") == 0);
		KT_EQ(kvs.kvs[0].key_len, 1);
		KT_EQ(kvs.kvs[0].value_len, 2);
		KT_CHECK(memcmp(kvs.kvs[0].value, "\0\1", 2) == 0);
		KT_EQ(kvs.kvs[0].create_revision, 2);
		KT_EQ(kvs.kvs[0].mod_revision, 3);
		KT_EQ(kvs.kvs[0].version, 2);
		KT_EQ(kvs.kvs[1].value_len, 0);
		KT_CHECK(kvs.kvs[1].value != NULL);
	}
	ks_etcd_kvs_free(&kvs);

	/* no kvs at all: an empty range */
	KT_EQ(range_of("{" HDR "}", "p/", &kvs), 0);
	KT_EQ(kvs.n, 0);

	/* broken answers */
	KT_EQ(range_of("{}", "p/", &kvs), EIO);                   /* no header */
	KT_EQ(range_of("{\"header\":{}}", "p/", &kvs), EIO);      /* no rev */
	KT_EQ(range_of("{\"header\":{\"revision\":\"x\"}}", "p/", &kvs), EIO);
	KT_EQ(range_of("{\"header\":{\"revision\":\"-1\"}}", "p/", &kvs), EIO);
	KT_EQ(range_of("{\"header\":{\"revision\":\"99999999999999999999\"}}",
		       "p/", &kvs), EIO);
	KT_EQ(range_of("{\"header\":{\"revision\":true}}", "p/", &kvs), EIO);
	KT_EQ(range_of("{" HDR ",\"kvs\":{}}", "p/", &kvs), EIO);
	KT_EQ(range_of("{" HDR ",\"kvs\":[1]}", "p/", &kvs), EIO);
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":\"cC9h\"}]}", "p/", &kvs),
	      EIO);                                               /* no revs */
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":\"cC9h\",\"create_revision\":"
		       "\"2\",\"mod_revision\":\"3\",\"version\":\"1\",\"value\":"
		       "\"AAE\"}]}", "p/", &kvs), EIO);           /* base64 */
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":\"eC9h\",\"create_revision\":"
		       "\"2\",\"mod_revision\":\"3\",\"version\":\"1\"}]}", "p/",
		       &kvs), EIO);                               /* x/a: not ours */
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":\"cC8=\",\"create_revision\":"
		       "\"2\",\"mod_revision\":\"3\",\"version\":\"1\"}]}", "p/",
		       &kvs), EIO);                               /* the prefix itself */
	KT_EQ(range_of("{" HDR ",\"kvs\":[{\"key\":5,\"create_revision\":"
		       "\"2\",\"mod_revision\":\"3\",\"version\":\"1\"}]}", "p/",
		       &kvs), EIO);
	KT_EQ(range_of("{" HDR "} x", "p/", &kvs), EIO);          /* trailing */
	KT_EQ(range_of("[1]", "p/", &kvs), EIO);
	KT_EQ(range_of("{" HDR ",\"more\":\"yes\"}", "p/", &kvs), EIO);
	KT_CHECK(kvs.n == 0 && kvs.kvs == NULL);
}

static void test_txn(void)
{
	struct ks_etcd_op ops[3] = {
		{ .type = KS_ETCD_OP_PUT },
		{ .type = KS_ETCD_OP_DELETE },
		{ .type = KS_ETCD_OP_RANGE },
	};
	struct ks_etcd_txn_result r = { 0 };
	struct json_object *o;

	o = parse("{" HDR ",\"succeeded\":true,\"responses\":["
		  "{\"response_put\":{\"header\":{\"revision\":\"7\"}}},"
		  "{\"response_delete_range\":{\"header\":{\"revision\":\"7\"},"
		  "\"deleted\":\"2\"}},"
		  "{\"response_range\":{\"header\":{\"revision\":\"7\"},\"kvs\":"
		  "[{\"key\":\"cC9h\",\"create_revision\":\"2\",\"mod_revision\":"
		  "\"3\",\"version\":\"2\"}]}}]}");
	KT_CHECK(o != NULL);
	KT_EQ(ks_ep_txn(o, "p/", 2, ops, 3, NULL, 0, &r), 0);
	KT_CHECK(r.succeeded);
	KT_EQ(r.n_responses, 3);
	if (r.n_responses == 3) {
		KT_EQ(r.responses[1].deleted, 2);
		KT_EQ(r.responses[2].kvs.n, 1);
	}
	ks_etcd_txn_result_free(&r);
	/* the same answer for a txn whose failure branch has one op: EIO */
	KT_EQ(ks_ep_txn(o, "p/", 2, ops, 2, ops, 1, &r), EIO);
	/* responses in the wrong order */
	KT_EQ(ks_ep_txn(o, "p/", 2, ops + 1, 2, NULL, 0, &r), EIO);
	json_object_put(o);

	/* failed compare: "succeeded" left out */
	o = parse("{" HDR ",\"responses\":[{\"response_range\":{\"header\":"
		  "{\"revision\":\"7\"}}}]}");
	KT_EQ(ks_ep_txn(o, "p/", 2, ops, 1, ops + 2, 1, &r), 0);
	KT_CHECK(!r.succeeded);
	KT_EQ(r.n_responses, 1);
	ks_etcd_txn_result_free(&r);
	json_object_put(o);

	/* an op response with two members */
	o = parse("{" HDR ",\"succeeded\":true,\"responses\":[{\"response_put\":"
		  "{},\"response_range\":{}}]}");
	KT_EQ(ks_ep_txn(o, "p/", 2, ops, 1, NULL, 0, &r), EIO);
	json_object_put(o);
}

static int watch_of(const char *text, struct ks_ep_watch *w)
{
	struct json_object *o = parse(text);
	int err;

	if (o == NULL)
		return EIO;
	err = ks_ep_watch(o, "p/", 2, w);
	json_object_put(o);
	return err;
}

static void test_watch(void)
{
	struct ks_ep_watch w;

	KT_EQ(watch_of("{\"result\":{" HDR ",\"created\":true}}", &w), 0);
	KT_CHECK(w.created && !w.canceled && w.n_events == 0);
	KT_EQ(w.revision, 7);

	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":"
		       "\"cC9h\",\"create_revision\":\"2\",\"mod_revision\":\"7\","
		       "\"version\":\"3\",\"value\":\"eA==\"}},{\"type\":\"DELETE\","
		       "\"kv\":{\"key\":\"cC9i\",\"mod_revision\":\"7\"}}]}}", &w),
	      0);
	KT_EQ(w.n_events, 2);
	if (w.n_events == 2) {
		KT_EQ(w.events[0].type, KS_ETCD_PUT);
		KT_EQ(w.events[0].kv.version, 3);
		KT_EQ(w.events[1].type, KS_ETCD_DELETE);
		KT_CHECK(strcmp(w.events[1].kv.key, "b") == 0);
		KT_EQ(w.events[1].kv.version, 0);
	}
	ks_ep_watch_free(&w);

	/* compacted: a header without revision */
	KT_EQ(watch_of("{\"result\":{\"header\":{\"cluster_id\":\"1\"},"
		       "\"canceled\":true,\"compact_revision\":\"5\"}}", &w), 0);
	KT_CHECK(w.canceled);
	KT_EQ(w.compact_revision, 5);

	/* broken */
	KT_EQ(watch_of("{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}", &w),
	      EIO);
	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{\"type\":\"BOOM\","
		       "\"kv\":{\"key\":\"cC9i\",\"mod_revision\":\"7\"}}]}}", &w),
	      EIO);
	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":"
		       "\"cC9i\",\"mod_revision\":\"7\"}}]}}", &w),
	      EIO);                        /* a put without version */
	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{\"type\":\"DELETE\","
		       "\"kv\":{\"key\":\"cC9i\",\"mod_revision\":\"8\"}}]}}", &w),
	      EIO);                        /* newer than the header */
	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{\"type\":\"DELETE\","
		       "\"kv\":{\"key\":\"cC9i\",\"mod_revision\":\"6\"}},"
		       "{\"type\":\"DELETE\",\"kv\":{\"key\":\"cC9i\","
		       "\"mod_revision\":\"5\"}}]}}", &w),
	      EIO);                        /* out of order */
	KT_EQ(watch_of("{\"result\":{" HDR ",\"events\":[{}]}}", &w), EIO);
	KT_EQ(watch_of("{\"result\":[]}", &w), EIO);
	KT_EQ(watch_of("{\"result\":{" HDR ",\"canceled\":1}}", &w), EIO);
}

static void test_errors(void)
{
	struct json_object *o;
	char msg[100];

	o = parse("{\"error\":\"etcdserver: request is too large\",\"message\":"
		  "\"etcdserver: request is too large\",\"code\":3}");
	KT_EQ(ks_ep_error(o, msg, sizeof(msg)), EFBIG);
	KT_CHECK(strstr(msg, "too large") != NULL);
	json_object_put(o);
	o = parse("{\"error\":\"x\",\"message\":\"etcdserver: mvcc: required "
		  "revision has been compacted\",\"code\":11}");
	KT_EQ(ks_ep_error(o, NULL, 0), ESTALE);
	json_object_put(o);
	o = parse("{\"message\":\"etcdserver: no leader\",\"code\":14}");
	KT_EQ(ks_ep_error(o, NULL, 0), ETIMEDOUT);
	json_object_put(o);
	{
		uint64_t u = 0;

		o = parse("{\"a\":\"16493188479051483444\",\"b\":"
			  "\"18446744073709551616\",\"c\":\"-1\",\"d\":"
			  "18446744073709551615}");
		KT_EQ(ks_ep_uint64(o, "a", true, &u), 0);
		KT_CHECK(u == 16493188479051483444u);
		KT_EQ(ks_ep_uint64(o, "b", true, &u), EIO);
		KT_EQ(ks_ep_uint64(o, "c", true, &u), EIO);
		KT_EQ(ks_ep_uint64(o, "d", true, &u), 0);
		KT_CHECK(u == UINT64_MAX);
		KT_EQ(ks_ep_uint64(o, "none", true, &u), EIO);
		json_object_put(o);
	}
	o = parse("{\"message\":\"x\",\"code\":\"abc\"}");
	KT_EQ(ks_ep_error(o, NULL, 0), EIO);
	json_object_put(o);
	o = parse("{\"error\":{\"grpc_code\":3,\"message\":\"duplicate key\"}}");
	KT_EQ(ks_ep_error(o, NULL, 0), EINVAL);
	json_object_put(o);
}

/* Random damage to good answers: flipped, dropped and inserted bytes.
 * Whatever comes out, no crash, no leak, and a result is whole. */
static void test_damage(void)
{
	static const char *const good[] = {
		"{" HDR ",\"kvs\":[{\"key\":\"cC9h\",\"create_revision\":\"2\","
		"\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"AAE=\"}],"
		"\"more\":true,\"count\":\"2\"}",
		"{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"cC9h\","
		"\"create_revision\":\"2\",\"mod_revision\":\"7\",\"version\":\"3\","
		"\"value\":\"eA==\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":"
		"\"cC9i\",\"mod_revision\":\"7\"}}]}}",
	};
	static const char noise[] = "{}[]\",:0123456789-+eE.truefalsnul\\u=/ \x01\x80";
	uint64_t seed = 0x9e3779b97f4a7c15u;
	int ok = 0, bad = 0;

	for (int round = 0; round < 20000; round++) {
		const char *src = good[round % 2];
		size_t n = strlen(src);
		char text[600];
		size_t len = 0;
		struct json_object *o = NULL;

		for (size_t i = 0; i < n && len < sizeof(text) - 2; i++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			unsigned r = (unsigned)(seed >> 33) % 200;
			char ch = noise[(seed >> 20) % (sizeof(noise) - 1)];

			if (r == 0)
				continue;               /* drop */
			if (r == 1) {
				text[len++] = ch;       /* replace */
				continue;
			}
			if (r == 2)
				text[len++] = ch;       /* insert */
			text[len++] = src[i];
		}
		if (ks_ep_parse(text, len, &o) != 0) {
			bad++;
			continue;
		}
		if (round % 2 == 0) {
			struct ks_etcd_kvs kvs;
			bool more;

			if (ks_ep_range(o, "p/", 2, &kvs, &more) == 0) {
				ok++;
				for (size_t i = 0; i < kvs.n; i++)
					KT_CHECK(kvs.kvs[i].key != NULL &&
						 kvs.kvs[i].value != NULL);
				ks_etcd_kvs_free(&kvs);
			} else {
				bad++;
			}
		} else {
			struct ks_ep_watch w;

			if (ks_ep_watch(o, "p/", 2, &w) == 0) {
				ok++;
				ks_ep_watch_free(&w);
			} else {
				bad++;
			}
		}
		json_object_put(o);
	}
	printf("   damaged answers: %d read, %d refused\n", ok, bad);
	KT_CHECK(bad > 0 && ok > 0);
}

int main(void)
{
	KT_RUN_HERE(test_base64, "base64");
	KT_RUN_HERE(test_range, "range");
	KT_RUN_HERE(test_txn, "txn");
	KT_RUN_HERE(test_watch, "watch");
	KT_RUN_HERE(test_errors, "errors");
	KT_RUN_HERE(test_damage, "damage");
	return kt_finish("etcd_parse");
}

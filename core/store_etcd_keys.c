/*
 * The etcd store's keys and values (STORE.md, "etcd").  Everything read
 * from etcd is checked here before it reaches the engine: another client
 * may have written anything under the prefix.
 */
#include "store_etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "etcd_parse.h"

static const char *const dirs[] = {
	[KE_PAGE] = "",
	[KE_VERSION] = ".version/",
	[KE_META] = ".meta/",
	[KE_MTIME] = ".mtime/",
};

void ke_key(char buf[KE_KEY_MAX], enum ke_kind kind, const char *name)
{
	snprintf(buf, KE_KEY_MAX, "%s%s", dirs[kind], name);
}

enum ke_kind ke_parse_key(const char *key, size_t len, const char **name)
{
	enum ke_kind kind = KE_PAGE;

	/* A NUL inside the key (etcd allows it) makes no name. */
	if (strlen(key) != len)
		return KE_OTHER;
	for (int k = KE_VERSION; k <= KE_MTIME; k++) {
		size_t dl = strlen(dirs[k]);

		if (strncmp(key, dirs[k], dl) == 0) {
			kind = (enum ke_kind)k;
			key += dl;
			break;
		}
	}
	/* ks_name_check refuses a leading '.' and a '/': so ".foo/x",
	 * "a/b" and ".version/" alone are nobody's. */
	if (ks_name_check(key) != 0)
		return KE_OTHER;
	*name = key;
	return kind;
}

int ke_parse_u64(const void *value, size_t len, uint64_t *out)
{
	const unsigned char *p = value;
	uint64_t v = 0;

	if (len == 0 || len > 20 || (len > 1 && p[0] == '0'))
		return EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)p[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

size_t ke_format_u64(char buf[24], uint64_t v)
{
	return (size_t)snprintf(buf, 24, "%" PRIu64, v);
}

static uint64_t time_ns(const struct timespec *ts)
{
	if (ts->tv_sec < 0)
		return 0;
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static int ns_time(uint64_t ns, struct timespec *out)
{
	/* time_t is signed: keep to what it holds. */
	if (ns / 1000000000u > (uint64_t)INT64_MAX / 2)
		return EINVAL;
	out->tv_sec = (time_t)(ns / 1000000000u);
	out->tv_nsec = (long)(ns % 1000000000u);
	return 0;
}

size_t ke_format_time(char buf[24], const struct timespec *ts)
{
	return ke_format_u64(buf, time_ns(ts));
}

int ke_parse_time(const void *value, size_t len, struct timespec *out)
{
	uint64_t ns;

	if (ke_parse_u64(value, len, &ns))
		return EINVAL;
	return ns_time(ns, out);
}

size_t ke_format_meta(char buf[KE_META_MAX], const struct ke_meta *m)
{
	return (size_t)snprintf(buf, KE_META_MAX,
				"{\"uid\":%u,\"gid\":%u,\"mode\":%u,"
				"\"ctime_ns\":%" PRIu64 "}",
				(unsigned)m->uid, (unsigned)m->gid,
				(unsigned)(m->mode & 07777),
				time_ns(&m->ctime));
}

/* An integer member of obj in [0, max]. */
static int member(struct json_object *obj, const char *field, uint64_t max,
		  uint64_t *out)
{
	struct json_object *f;
	int64_t v;

	if (!json_object_object_get_ex(obj, field, &f) ||
	    !json_object_is_type(f, json_type_int))
		return EINVAL;
	errno = 0;
	v = json_object_get_int64(f);
	/* json-c saturates at INT64_MAX and says so in errno */
	if (errno != 0 || v < 0 || (uint64_t)v > max)
		return EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int ke_parse_meta(const void *value, size_t len, struct ke_meta *out)
{
	struct json_object *obj = NULL;
	uint64_t uid, gid, mode, ns;
	int err;

	/* Strict JSON, one object, nothing after it. */
	if (len > 4096 || ks_ep_parse(value, len, &obj) != 0)
		return EINVAL;
	err = member(obj, "uid", UINT32_MAX, &uid) ||
	      member(obj, "gid", UINT32_MAX, &gid) ||
	      member(obj, "mode", 07777, &mode) ||
	      member(obj, "ctime_ns", INT64_MAX, &ns) ? EINVAL : 0;
	json_object_put(obj);
	if (err || ns_time(ns, &out->ctime))
		return EINVAL;
	out->uid = (uid_t)uid;
	out->gid = (gid_t)gid;
	out->mode = (mode_t)mode;
	return 0;
}

/* etcd's key order: bytes, unsigned, a prefix first. */
static int key_cmp(const struct ks_etcd_kv *kv, const char *key, size_t len)
{
	size_t n = kv->key_len < len ? kv->key_len : len;
	int c = memcmp(kv->key, key, n);

	if (c)
		return c;
	return kv->key_len < len ? -1 : kv->key_len > len;
}

const struct ks_etcd_kv *ke_find(const struct ks_etcd_kvs *kvs,
				 const char *key)
{
	size_t lo = 0, hi = kvs->n, len = strlen(key);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(&kvs->kvs[mid], key, len);

		if (c == 0)
			return &kvs->kvs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

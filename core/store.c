/*
 * The registry of store kinds, the option string, and the calls through a
 * store's ops table (store.h), so that optional ops are handled here once.
 */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct store_kind {
	const char *name;
	int (*open)(const char *options, struct ks_store **out, char *msg,
		    size_t msglen);
};

static const struct store_kind kinds[] = {
	{ "memory", ks_store_memory_open },
	{ "log", ks_store_log_open },
	{ "etcd", ks_store_etcd_open },
};

static int say(char *msg, size_t msglen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int say(char *msg, size_t msglen, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return err;
}

int ks_store_open(const char *options, struct ks_store **out, char *msg,
		  size_t msglen)
{
	const char *colon, *rest;
	size_t klen;

	if (!options)
		options = "memory";
	colon = strchr(options, ':');
	klen = colon ? (size_t)(colon - options) : strlen(options);
	rest = colon ? colon + 1 : "";
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strlen(kinds[i].name) == klen &&
		    strncmp(kinds[i].name, options, klen) == 0)
			return kinds[i].open(rest, out, msg, msglen);
	return say(msg, msglen, EINVAL, "unknown store kind '%.*s'",
		   (int)klen, options);
}

int ks_store_next_option(const char **pos, char *key, size_t keylen,
			 char *value, size_t valuelen)
{
	const char *p = *pos;
	size_t k = 0, v = 0;

	while (*p == ',')
		p++;
	if (!*p) {
		*pos = p;
		return 0;
	}
	for (; *p && *p != '=' && *p != ','; p++) {
		if (k + 1 >= keylen)
			return EINVAL;
		key[k++] = *p;
	}
	if (*p != '=' || k == 0)
		return EINVAL;
	key[k] = 0;
	/* A backslash takes the next byte as it is: "\," is a comma in a
	 * value (a directory may have one), "\\" a backslash. */
	for (p++; *p && *p != ','; p++) {
		if (*p == '\\' && p[1])
			p++;
		if (v + 1 >= valuelen)
			return EINVAL;
		value[v++] = *p;
	}
	value[v] = 0;
	*pos = p;
	return 1;
}

int ks_store_recover(struct ks_store *store, struct ks_engine *eng,
		     char *msg, size_t msglen)
{
	if (!store->ops->recover)
		return 0;
	return store->ops->recover(store, eng, msg, msglen);
}

int ks_store_start(struct ks_store *store)
{
	return store->ops->start ? store->ops->start(store) : 0;
}

int ks_store_append(struct ks_store *store, const struct ks_rec *recs,
		    size_t n)
{
	return store->ops->append(store, recs, n);
}

int ks_store_catch_up(struct ks_store *store)
{
	return store->ops->catch_up ? store->ops->catch_up(store) : 0;
}

void ks_store_stats(struct ks_store *store, ks_store_stat_fn emit, void *arg)
{
	if (store->ops->stats)
		store->ops->stats(store, emit, arg);
}

void ks_store_close(struct ks_store *store)
{
	if (store && store->ops->close)
		store->ops->close(store);
}

const char *ks_store_kind(const struct ks_store *store)
{
	return store->ops->kind ? store->ops->kind : "?";
}

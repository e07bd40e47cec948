/*
 * The memory store: states live in the engine only and vanish with the
 * daemon.  Appending succeeds at once, so a commit costs nothing but the
 * engine's own work; it reports the same counters as the log, at zero, so
 * that .stats has the same keys whatever the store.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int memory_append(struct ks_store *store, const struct ks_rec *recs,
			 size_t n)
{
	return 0;
}

static void memory_stats(struct ks_store *store, ks_store_stat_fn emit,
			 void *arg)
{
	emit(arg, "store_bytes", 0);
	emit(arg, "store_records", 0);
	emit(arg, "store_syncs", 0);
}

static void memory_close(struct ks_store *store)
{
	free(store);
}

static const struct ks_store_ops memory_ops = {
	.kind = "memory",
	.append = memory_append,
	.stats = memory_stats,
	.close = memory_close,
};

int ks_store_memory_open(const char *options, struct ks_store **out,
			 char *msg, size_t msglen)
{
	struct ks_store *store;

	if (*options) {
		if (msg && msglen)
			snprintf(msg, msglen, "the memory store takes no "
				 "options, not '%s'", options);
		return EINVAL;
	}
	store = calloc(1, sizeof(*store));
	if (!store)
		return ENOMEM;
	store->ops = &memory_ops;
	*out = store;
	return 0;
}

/*
 * The etcd store: states kept in an etcd (v3) cluster under a key prefix,
 * shared by every host that mounts the same prefix (SPEC section 9).
 *
 * Each unit the engine appends is one etcd txn, all or nothing, whose
 * compares are the engine's own checks done again where every host sees
 * them: a commit compares each state's version key with the version it
 * replaces, so a commit begun on a host that had not yet seen another
 * host's commit fails here with EAGAIN, however far behind that host is.
 * Other hosts' changes arrive through one watch (store_etcd_follow.c).
 * STORE.md ("etcd") lists every key and what each unit does.
 */
#include "store_etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recover.h"

void ke_say_ignored(struct ke_store *s, const char *key, size_t len)
{
	atomic_fetch_add(&s->ignored, 1);
	/* Once per store: a prefix shared with another program would
	 * otherwise fill the log. */
	if (!atomic_exchange(&s->junk_said, true))
		fprintf(stderr, "kstatefs: etcd: ignoring keys under %s that "
			"are not kstatefs states, e.g. \"%.*s\"\n", s->prefix,
			(int)(len > 80 ? 80 : len), key);
}

/* ---- recover ------------------------------------------------------------------ */

int ke_read_state(struct ke_store *s, const struct ks_etcd_kvs *kvs,
		  const struct ks_etcd_kv *vkv, const char *name,
		  uint64_t *version, struct ks_state_attr *attr,
		  struct timespec *mtime, const struct ks_etcd_kv **page)
{
	const struct ks_etcd_kv *mkv, *tkv;
	char key[KE_KEY_MAX];
	struct ke_meta m;

	if (ke_parse_u64(vkv->value, vkv->value_len, version)) {
		fprintf(stderr, "kstatefs: etcd: %s.version/%s is not a "
			"version; state skipped\n", s->prefix, name);
		return EINVAL;
	}
	ke_key(key, KE_PAGE, name);
	*page = ke_find(kvs, key);
	/* A page of another host's larger max_size is taken, as a store
	 * written under a larger one is (served through the files, its
	 * shared mapping withdrawn); what no host may write is not. */
	if (*page && (*page)->value_len > KS_ETCD_MAX_PAGE)
		return EFBIG;
	ke_key(key, KE_META, name);
	mkv = ke_find(kvs, key);
	if (!mkv || ke_parse_meta(mkv->value, mkv->value_len, &m)) {
		/* Owner and mode unknown: root's, private. */
		fprintf(stderr, "kstatefs: etcd: %s.meta/%s is missing or "
			"not valid; state given to root, mode 0700\n",
			s->prefix, name);
		m = (struct ke_meta){ .mode = 0700 };
	}
	*attr = (struct ks_state_attr){ .uid = m.uid, .gid = m.gid,
					.mode = m.mode, .ctime = m.ctime };
	ke_key(key, KE_MTIME, name);
	tkv = ke_find(kvs, key);
	if (!tkv || ke_parse_time(tkv->value, tkv->value_len, mtime))
		*mtime = m.ctime;
	return 0;
}

static int etcd_recover(struct ks_store *store, struct ks_engine *eng,
			char *msg, size_t msglen)
{
	struct ke_store *s = (struct ke_store *)store;
	struct ks_etcd_keys all = { .key = "", .prefix = true };
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_recovery *r;
	uint64_t id = 1;
	int err;

	s->max_size = ks_engine_config(eng)->max_size;
	if (s->max_size > KS_ETCD_MAX_PAGE)
		return ks_store_fail(msg, msglen, EINVAL, "max_size %zu is more than "
			    "etcd takes in one request; at most %u with "
			    "--etcd", s->max_size, KS_ETCD_MAX_PAGE);
	err = ks_etcd_range(s->c, &all, 0, &kvs);
	if (err)
		return ks_store_fail(msg, msglen, err, "cannot read %s from etcd: %s",
			    s->prefix, strerror(err));
	r = ks_recovery_new();
	if (!r) {
		ks_etcd_kvs_free(&kvs);
		return ks_store_fail(msg, msglen, ENOMEM, "out of memory");
	}
	ks_recovery_shared(r);
	for (size_t i = 0; i < kvs.n && !err; i++) {
		const struct ks_etcd_kv *kv = &kvs.kvs[i], *page;
		struct ks_state_attr attr;
		struct timespec mtime;
		uint64_t version;
		const char *name;
		int bad;

		if (ke_parse_key(kv->key, kv->key_len, &name) == KE_OTHER) {
			ke_say_ignored(s, kv->key, kv->key_len);
			continue;
		}
		if (ke_parse_key(kv->key, kv->key_len, &name) != KE_VERSION)
			continue; /* read with its version key */
		bad = ke_read_state(s, &kvs, kv, name, &version, &attr,
				    &mtime, &page);
		if (bad == EFBIG)
			/* No host writes that: a key written by hand, left
			 * out as a running host leaves it out. */
			fprintf(stderr, "kstatefs: etcd: state \"%s\" has "
				"%zu bytes, more than any page may have (%u); "
				"not taken\n", name, page->value_len,
				KS_ETCD_MAX_PAGE);
		else if (!bad)
			err = ks_recovery_put(r, id++, name, &attr, version,
					      &mtime, page ? page->value : "",
					      page ? page->value_len : 0);
		if (err == ENOMEM)
			ks_store_fail(msg, msglen, err, "out of memory");
	}
	if (!err)
		err = ks_recovery_finish(r, eng, msg, msglen);
	ks_recovery_free(r);
	if (!err) {
		s->eng = eng;
		s->load_rev = kvs.revision;
		atomic_store(&s->applied, kvs.revision);
		/* That read was linearizable: a member with its quorum
		 * answered.  So the mount is connected from the moment it
		 * is made, not only once its watch has proved it again
		 * (which then keeps it, or says it is lost). */
		atomic_store(&s->connected, true);
	}
	ks_etcd_kvs_free(&kvs);
	return err;
}

/* ---- the rest of the ops --------------------------------------------------------- */

static int etcd_start(struct ks_store *store)
{
	struct ke_store *s = (struct ke_store *)store;
	int err;

	if (!s->eng)
		return EINVAL; /* recover binds the engine first */
	if (s->watching)
		return 0;
	err = ks_etcd_watch_start(s->c, s->load_rev + 1, ke_watch_cb, s);
	s->watching = !err;
	return err;
}

static void etcd_stats(struct ks_store *store, ks_store_stat_fn emit,
		       void *arg)
{
	struct ke_store *s = (struct ke_store *)store;
	struct ks_etcd_stats st;

	ks_etcd_get_stats(s->c, &st);
	/* The keys every store has: etcd's size is not known without
	 * asking it, which .stats must not do. */
	emit(arg, "store_bytes", 0);
	emit(arg, "store_records", atomic_load(&s->units));
	/* Each unit is one write transaction, which etcd makes durable. */
	emit(arg, "store_syncs", atomic_load(&s->units));
	emit(arg, "etcd_connected", atomic_load(&s->connected));
	emit(arg, "etcd_revision", (uint64_t)atomic_load(&s->applied));
	emit(arg, "etcd_endpoints", s->n_endpoints);
	emit(arg, "etcd_requests", st.requests);
	emit(arg, "etcd_failovers", st.failovers);
	emit(arg, "etcd_resends", st.resends);
	emit(arg, "etcd_reconnects", st.reconnects);
	emit(arg, "etcd_failures", atomic_load(&s->failures));
	emit(arg, "etcd_refused", atomic_load(&s->conflicts));
	emit(arg, "etcd_remote_units", atomic_load(&s->remote));
	emit(arg, "etcd_reloads", atomic_load(&s->reloads));
	emit(arg, "etcd_ignored_keys", atomic_load(&s->ignored));
}

static void etcd_free(struct ke_store *s)
{
	ks_etcd_free(s->c);
	for (size_t b = 0; b < KE_OWN_BUCKETS; b++) {
		struct ke_own *e = s->own[b], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	ks_lock_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->endpoints);
	free(s->prefix);
	free(s);
}

static void etcd_close(struct ks_store *store)
{
	struct ke_store *s = (struct ke_store *)store;

	/* Every acknowledged unit is in etcd already: nothing to flush. */
	ks_etcd_watch_stop(s->c);
	etcd_free(s);
}

static const struct ks_store_ops etcd_ops = {
	.kind = "etcd",
	.recover = etcd_recover,
	.start = etcd_start,
	.append = ke_append,
	.catch_up = ke_catch_up,
	.stats = etcd_stats,
	.close = etcd_close,
};

void ke_watch_pause(struct ks_store *store)
{
	struct ke_store *s = (struct ke_store *)store;

	ks_etcd_watch_stop(s->c);
	s->watching = false;
}

int ke_watch_resume(struct ks_store *store, int64_t from)
{
	struct ke_store *s = (struct ke_store *)store;
	int err = ks_etcd_watch_start(s->c, from, ke_watch_cb, s);

	s->watching = !err;
	return err;
}

int64_t ke_applied_revision(struct ks_store *store)
{
	return atomic_load(&((struct ke_store *)store)->applied);
}

/* "endpoints=URL;URL,prefix=P,timeout=SECONDS" */
int ks_store_etcd_open(const char *options, struct ks_store **out,
		       char *msg, size_t msglen)
{
	char key[16], value[4096], endpoints[4096] = "", prefix[1024];
	struct ks_etcd_options o = { 0 };
	struct ks_etcd_status st;
	const char *pos = options;
	struct ke_store *s;
	double timeout = 5;
	char *end;
	int got, err;

	snprintf(prefix, sizeof(prefix), "/kstatefs/");
	while ((got = ks_store_next_option(&pos, key, sizeof(key), value,
					   sizeof(value))) == 1) {
		if (strcmp(key, "endpoints") == 0) {
			snprintf(endpoints, sizeof(endpoints), "%s", value);
		} else if (strcmp(key, "prefix") == 0 &&
			   strlen(value) < sizeof(prefix)) {
			snprintf(prefix, sizeof(prefix), "%s", value);
		} else if (strcmp(key, "timeout") == 0) {
			timeout = strtod(value, &end);
			if (end == value || *end || !(timeout > 0) ||
			    timeout > 3600)
				return ks_store_fail(msg, msglen, EINVAL, "etcd store: "
					    "bad timeout '%s' (seconds, more "
					    "than 0)", value);
		} else {
			return ks_store_fail(msg, msglen, EINVAL, "etcd store: bad "
				    "option %s=%s (endpoints=URL;URL..., "
				    "prefix=P, timeout=SECONDS)", key, value);
		}
	}
	if (got)
		return ks_store_fail(msg, msglen, EINVAL, "etcd store: cannot parse "
			    "options '%s'", options);
	if (!endpoints[0])
		return ks_store_fail(msg, msglen, EINVAL, "etcd store: no "
			    "endpoints=URL");
	/* The empty prefix would make every key in etcd a state's. */
	if (!prefix[0])
		return ks_store_fail(msg, msglen, EINVAL, "etcd store: the prefix "
			    "must not be empty");
	s = calloc(1, sizeof(*s));
	if (!s)
		return ks_store_fail(msg, msglen, ENOMEM, "out of memory");
	s->base.ops = &etcd_ops;
	s->timeout = timeout;
	ks_lock_init(&s->mu, "etcd store->mu", KS_RANK_STORE);
	pthread_cond_init(&s->cv, NULL);
	/* The client separates endpoints with commas; the option string
	 * cannot, so it takes ';'. */
	for (char *p = endpoints; *p; p++)
		if (*p == ';')
			*p = ',';
	s->n_endpoints = 1;
	for (char *p = endpoints; *p; p++)
		s->n_endpoints += *p == ',';
	s->endpoints = strdup(endpoints);
	s->prefix = strdup(prefix);
	if (!s->endpoints || !s->prefix) {
		etcd_free(s);
		return ks_store_fail(msg, msglen, ENOMEM, "out of memory");
	}
	o.endpoints = s->endpoints;
	o.prefix = s->prefix;
	o.timeout = timeout;
	err = ks_etcd_create(&o, &s->c);
	if (err) {
		etcd_free(s);
		return ks_store_fail(msg, msglen, err, "etcd store: bad endpoints "
			    "'%s' (http:// or https:// URLs)", endpoints);
	}
	/* Mount time is the time to say that etcd is not there. */
	err = ks_etcd_status(s->c, timeout, &st, msg, msglen);
	if (err) {
		if (msg && msglen && !msg[0])
			ks_store_fail(msg, msglen, err, "no etcd endpoint answered: %s",
			     strerror(err));
		etcd_free(s);
		return err;
	}
	*out = &s->base;
	return 0;
}


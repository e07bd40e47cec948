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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recover.h"

static int fail(char *msg, size_t msglen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t msglen, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return err;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An absolute CLOCK_REALTIME time for pthread_cond_timedwait, `sec` from
 * now (capped by the caller). */
static struct timespec abs_after(double sec)
{
	struct timespec ts;
	long long ns;

	clock_gettime(CLOCK_REALTIME, &ts);
	ns = (long long)ts.tv_nsec + (long long)(sec * 1e9);
	ts.tv_sec += (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

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

/* ---- this host's own changes ---------------------------------------------- */

static size_t own_slot(const char *name)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (size_t)h & (KE_OWN_BUCKETS - 1);
}

/* s->mu held. */
static struct ke_own *own_find(struct ke_store *s, const char *name,
			       bool make)
{
	struct ke_own **b = &s->own[own_slot(name)], *e;

	for (e = *b; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	if (!make || !(e = calloc(1, sizeof(*e))))
		return NULL;
	strcpy(e->name, name);
	e->next = *b;
	*b = e;
	return e;
}

/* An append for these names is under way: the watch waits for it before
 * deciding whether an event is this host's own.  Without memory the mark
 * is missing, which costs at most an echo applied twice (idempotent). */
static void own_begin(struct ke_store *s, const char *const *names, size_t n)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		struct ke_own *e = own_find(s, names[i], true);

		if (e)
			e->busy++;
	}
	pthread_mutex_unlock(&s->mu);
}

/* The append ended; rev > 0 is the revision of its changes to the names
 * with mine[i] (the others' events must still be applied). */
static void own_end(struct ke_store *s, const char *const *names,
		    const bool *mine, size_t n, int64_t rev)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		struct ke_own *e = own_find(s, names[i], false);

		if (!e)
			continue;
		if (e->busy)
			e->busy--;
		e->epoch++;
		if (rev > 0 && mine[i]) {
			if (e->nrevs == sizeof(e->revs) / sizeof(e->revs[0])) {
				memmove(e->revs, e->revs + 1,
					(e->nrevs - 1) * sizeof(e->revs[0]));
				e->nrevs--;
			}
			e->revs[e->nrevs++] = rev;
		}
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* s->mu held: waits until the append for NAME under way (if any) ends, for
 * at most the timeout and a second (an append never takes longer). */
static struct ke_own *own_settled(struct ke_store *s, const char *name)
{
	struct ke_own *e = own_find(s, name, false);
	struct timespec until = abs_after(s->timeout + 1);

	if (e && e->busy) {
		uint64_t epoch = e->epoch;

		while ((e = own_find(s, name, false)) && e->busy &&
		       e->epoch == epoch)
			if (pthread_cond_timedwait(&s->cv, &s->mu, &until))
				break;
	}
	return own_find(s, name, false);
}

bool ke_own_is(struct ke_store *s, const char *name, int64_t rev)
{
	struct ke_own *e;
	bool mine = false;

	pthread_mutex_lock(&s->mu);
	e = own_settled(s, name);
	for (size_t i = 0; e && i < e->nrevs; i++)
		mine |= e->revs[i] == rev;
	pthread_mutex_unlock(&s->mu);
	return mine;
}

bool ke_own_after(struct ke_store *s, const char *name, int64_t rev)
{
	struct ke_own *e;
	bool after = false;

	pthread_mutex_lock(&s->mu);
	e = own_settled(s, name);
	for (size_t i = 0; e && i < e->nrevs; i++)
		after |= e->revs[i] > rev;
	after |= e && e->busy;
	pthread_mutex_unlock(&s->mu);
	return after;
}

void ke_applied(struct ke_store *s, int64_t rev)
{
	pthread_mutex_lock(&s->mu);
	if (rev > atomic_load(&s->applied))
		atomic_store(&s->applied, rev);
	/* Echoes up to rev have come: their revisions are of no more use. */
	for (size_t b = 0; b < KE_OWN_BUCKETS; b++) {
		struct ke_own **pp = &s->own[b], *e;

		while ((e = *pp)) {
			size_t k = 0;

			for (size_t i = 0; i < e->nrevs; i++)
				if (e->revs[i] > rev)
					e->revs[k++] = e->revs[i];
			e->nrevs = k;
			if (!e->nrevs && !e->busy) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---- units ------------------------------------------------------------------ */

/* Counts the outcome of one txn; EIO/ETIMEDOUT writes may have landed:
 * the watch brings whatever happened. */
static int counted(struct ke_store *s, int err)
{
	if (err == 0)
		atomic_fetch_add(&s->units, 1);
	else if (err == EAGAIN || err == EEXIST || err == ENOENT)
		atomic_fetch_add(&s->conflicts, 1);
	else
		atomic_fetch_add(&s->failures, 1);
	return err;
}

static struct ks_etcd_op put(const char *key, const void *v, size_t len)
{
	return (struct ks_etcd_op){ .type = KS_ETCD_OP_PUT,
				    .keys = { .key = key }, .value = v,
				    .value_len = len };
}

static struct ks_etcd_op del(const char *key)
{
	return (struct ks_etcd_op){ .type = KS_ETCD_OP_DELETE,
				    .keys = { .key = key } };
}

static struct ks_etcd_op get(const char *key)
{
	return (struct ks_etcd_op){ .type = KS_ETCD_OP_RANGE,
				    .keys = { .key = key } };
}

/* The state exists (its version key has a creation revision). */
static struct ks_etcd_cmp exists(const char *key, bool yes)
{
	return (struct ks_etcd_cmp){ .key = key,
				     .target = KS_ETCD_CMP_CREATE,
				     .result = yes ? KS_ETCD_GREATER
						   : KS_ETCD_EQUAL,
				     .number = 0 };
}

/* A single-name txn, marked in the own table: 0, or `refused` if the
 * compare failed, or the client's error. */
static int one_txn(struct ke_store *s, const char *name,
		   const struct ks_etcd_cmp *cmp, const struct ks_etcd_op *ops,
		   size_t nops, int refused)
{
	struct ks_etcd_txn_result res = { 0 };
	const char *names[1] = { name };
	bool mine[1];
	int err;

	own_begin(s, names, 1);
	err = ks_etcd_txn(s->c, cmp, 1, ops, nops, NULL, 0, &res);
	mine[0] = !err && res.succeeded;
	own_end(s, names, mine, 1, mine[0] ? res.revision : 0);
	if (!err && !res.succeeded)
		err = refused;
	ks_etcd_txn_result_free(&res);
	return counted(s, err);
}

static struct ke_meta rec_meta(const struct ks_rec *rec)
{
	return (struct ke_meta){ .uid = rec->uid, .gid = rec->gid,
				 .mode = rec->mode & 07777,
				 .ctime = rec->time };
}

/* CREATE: the four keys, if the version key does not exist. */
static int do_create(struct ke_store *s, const struct ks_rec *rec)
{
	char k[4][KE_KEY_MAX], meta[KE_META_MAX], mtime[24];
	struct ke_meta m = rec_meta(rec);
	struct ks_etcd_op ops[4];
	struct ks_etcd_cmp cmp;
	size_t ml = ke_format_meta(meta, &m);
	size_t tl = ke_format_time(mtime, &rec->time);

	for (int i = 0; i < 4; i++)
		ke_key(k[i], (enum ke_kind)i, rec->name);
	cmp = exists(k[KE_VERSION], false);
	ops[0] = put(k[KE_PAGE], "", 0);
	ops[1] = put(k[KE_VERSION], "0", 1);
	ops[2] = put(k[KE_META], meta, ml);
	ops[3] = put(k[KE_MTIME], mtime, tl);
	return one_txn(s, rec->name, &cmp, ops, 4, EEXIST);
}

static int do_delete(struct ke_store *s, const struct ks_rec *rec)
{
	char k[4][KE_KEY_MAX];
	struct ks_etcd_op ops[4];
	struct ks_etcd_cmp cmp;

	for (int i = 0; i < 4; i++) {
		ke_key(k[i], (enum ke_kind)i, rec->name);
		ops[i] = del(k[i]);
	}
	cmp = exists(k[KE_VERSION], true);
	return one_txn(s, rec->name, &cmp, ops, 4, ENOENT);
}

static int do_attr(struct ke_store *s, const struct ks_rec *rec)
{
	char kv[KE_KEY_MAX], km[KE_KEY_MAX], meta[KE_META_MAX];
	struct ke_meta m = rec_meta(rec);
	struct ks_etcd_op op;
	struct ks_etcd_cmp cmp;

	ke_key(kv, KE_VERSION, rec->name);
	ke_key(km, KE_META, rec->name);
	cmp = exists(kv, true);
	op = put(km, meta, ke_format_meta(meta, &m));
	return one_txn(s, rec->name, &cmp, &op, 1, ENOENT);
}

/* A key read for a rename: unchanged since (its mod_revision), or still
 * absent. */
static struct ks_etcd_cmp unchanged(const char *key,
				    const struct ks_etcd_kvs *read)
{
	if (read->n == 0)
		return exists(key, false);
	return (struct ks_etcd_cmp){ .key = key, .target = KS_ETCD_CMP_MOD,
				     .result = KS_ETCD_EQUAL,
				     .number = read->kvs[0].mod_revision };
}

/* One try at moving OLD's keys to NEW: read them, then move exactly what
 * was read if nothing changed meanwhile.  What moves is etcd's (a commit
 * from another host this host has not seen yet moves with it), the owner
 * and mode too (a chmod elsewhere is not undone); the ctime is the
 * rename's.  0, ENOENT, EEXIST, EAGAIN (changed meanwhile: try again), or
 * the client's error. */
static int rename_once(struct ke_store *s, const struct ks_rec *rec)
{
	char ko[4][KE_KEY_MAX], kn[4][KE_KEY_MAX], meta[KE_META_MAX];
	struct ks_etcd_txn_result rd = { 0 }, mv = { 0 };
	const char *names[2] = { rec->old_name, rec->name };
	struct ks_etcd_cmp cmps[5];
	struct ks_etcd_op ops[8], reads[5];
	const struct ks_etcd_kvs *got[5];
	struct ke_meta m = rec_meta(rec), there;
	uint64_t version = 0;
	bool mine[2] = { false, false };
	int err;

	for (int i = 0; i < 4; i++) {
		ke_key(ko[i], (enum ke_kind)i, rec->old_name);
		ke_key(kn[i], (enum ke_kind)i, rec->name);
		reads[i] = get(ko[i]);
	}
	reads[4] = get(kn[KE_VERSION]);
	err = ks_etcd_txn(s->c, NULL, 0, reads, 5, NULL, 0, &rd);
	if (!err && rd.n_responses != 5)
		err = EIO;
	if (err)
		goto out;
	for (int i = 0; i < 5; i++)
		got[i] = &rd.responses[i].kvs;
	if (got[KE_VERSION]->n == 0) {
		err = ENOENT;
		goto out;
	}
	if (got[4]->n != 0) {
		err = EEXIST;
		goto out;
	}
	/* The owner as etcd has it, unless another client spoiled it. */
	if (got[KE_META]->n &&
	    ke_parse_meta(got[KE_META]->kvs[0].value,
			  got[KE_META]->kvs[0].value_len, &there) == 0 &&
	    (there.uid != m.uid || there.gid != m.gid ||
	     there.mode != m.mode)) {
		m.uid = there.uid;
		m.gid = there.gid;
		m.mode = there.mode;
	} else {
		there = m;
	}
	for (int i = 0; i < 4; i++)
		cmps[i] = unchanged(ko[i], got[i]);
	cmps[4] = exists(kn[KE_VERSION], false);
	for (int i = 0; i < 4; i++) {
		const struct ks_etcd_kvs *g = got[i];

		ops[i] = del(ko[i]);
		if (i == KE_META)
			ops[4 + i] = put(kn[i], meta, ke_format_meta(meta, &m));
		else if (g->n)
			ops[4 + i] = put(kn[i], g->kvs[0].value,
					 g->kvs[0].value_len);
		else
			ops[4 + i] = put(kn[i], "", 0);
	}
	/* Not a number: move it anyway (etcd's business), but this host
	 * cannot claim to hold it. */
	if (ke_parse_u64(got[KE_VERSION]->kvs[0].value,
			 got[KE_VERSION]->kvs[0].value_len, &version))
		version = UINT64_MAX;
	own_begin(s, names, 2);
	err = ks_etcd_txn(s->c, cmps, 5, ops, 8, &reads[4], 1, &mv);
	mine[0] = !err && mv.succeeded;
	/* NEW's echo is skipped only if it brings nothing this host lacks;
	 * otherwise it arrives as a commit (and chmod) of the renamed state. */
	mine[1] = mine[0] && version == rec->version &&
		  there.uid == rec->uid && there.gid == rec->gid &&
		  there.mode == (rec->mode & 07777);
	own_end(s, names, mine, 2, mine[0] ? mv.revision : 0);
	if (!err && !mv.succeeded)
		err = mv.n_responses == 1 && mv.responses[0].kvs.n ? EEXIST
								    : EAGAIN;
out:
	ks_etcd_txn_result_free(&rd);
	ks_etcd_txn_result_free(&mv);
	return err;
}

static int do_rename(struct ke_store *s, const struct ks_rec *rec)
{
	int err = EINVAL;

	if (!rec->old_name)
		return counted(s, EINVAL);
	for (int i = 0; i < KS_ETCD_RENAME_TRIES; i++) {
		err = rename_once(s, rec);
		if (err != EAGAIN)
			break;
	}
	return counted(s, err);
}

/* A refused commit: what catch_up must wait for before the engine tries
 * again.  Each compared version key was read in the failure branch. */
static void note_refusal(struct ke_store *s, const struct ks_rec *recs,
			 const struct ks_etcd_txn_result *res, size_t n)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n && i < res->n_responses; i++) {
		const struct ks_etcd_kvs *kv = &res->responses[i].kvs;

		if (kv->n) {
			/* The watch brings the version there now. */
			if (kv->kvs[0].mod_revision > s->catch_target)
				s->catch_target = kv->kvs[0].mod_revision;
			continue;
		}
		/* Gone: deleted or renamed elsewhere.  Its revision is not
		 * known; catch_up waits until the state is gone here too,
		 * or the watch reached this txn's revision. */
		if (s->n_absent < KE_ABSENT_MAX) {
			s->absent_rev[s->n_absent] = res->revision;
			strcpy(s->absent[s->n_absent++], recs[i].name);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

/* COMMITs and CHECKs: one txn comparing every version, writing the page,
 * version and mtime of each COMMIT. */
static int do_commit(struct ke_store *s, const struct ks_rec *recs, size_t n)
{
	struct ks_etcd_txn_result res = { 0 };
	struct ks_etcd_cmp *cmps = calloc(n, sizeof(*cmps));
	struct ks_etcd_op *ops = calloc(3 * n, sizeof(*ops));
	struct ks_etcd_op *reads = calloc(n, sizeof(*reads));
	char (*keys)[KE_KEY_MAX] = calloc(3 * n, KE_KEY_MAX);
	char (*nums)[24] = calloc(3 * n, 24);
	const char **names = calloc(n, sizeof(*names));
	bool *mine = calloc(n, sizeof(*mine));
	size_t nops = 0, nc = 0;
	int err = 0;

	if (!cmps || !ops || !reads || !keys || !nums || !names || !mine) {
		err = ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ks_rec *r = &recs[i];
		char *kv = keys[3 * i], *kp = keys[3 * i + 1];
		char *kt = keys[3 * i + 2];
		char *base = nums[3 * i], *ver = nums[3 * i + 1];
		char *mt = nums[3 * i + 2];
		uint64_t want = r->type == KS_REC_COMMIT ? r->base : r->version;

		if (r->type != KS_REC_COMMIT && r->type != KS_REC_CHECK) {
			err = EINVAL;
			goto out;
		}
		ke_key(kv, KE_VERSION, r->name);
		cmps[i] = (struct ks_etcd_cmp){
			.key = kv, .target = KS_ETCD_CMP_VALUE,
			.result = KS_ETCD_EQUAL, .value = base,
			.value_len = ke_format_u64(base, want) };
		reads[i] = get(kv);
		if (r->type != KS_REC_COMMIT)
			continue;
		ke_key(kp, KE_PAGE, r->name);
		ke_key(kt, KE_MTIME, r->name);
		ops[nops++] = put(kp, r->len ? r->bytes : "", r->len);
		ops[nops++] = put(kv, ver, ke_format_u64(ver, r->version));
		ops[nops++] = put(kt, mt, ke_format_time(mt, &r->time));
		names[nc] = r->name;
		mine[nc++] = true;
	}
	/* etcd takes at most --max-txn-ops compares, and ops, per txn. */
	if (n > KS_ETCD_MAX_TXN_OPS || nops > KS_ETCD_MAX_TXN_OPS) {
		err = E2BIG;
		goto out;
	}
	own_begin(s, names, nc);
	err = ks_etcd_txn(s->c, cmps, n, ops, nops, reads, n, &res);
	if (err || !res.succeeded)
		memset(mine, 0, nc * sizeof(*mine));
	own_end(s, names, mine, nc, !err && res.succeeded ? res.revision : 0);
	if (!err && !res.succeeded) {
		note_refusal(s, recs, &res, n);
		err = EAGAIN;
	}
out:
	ks_etcd_txn_result_free(&res);
	free(cmps);
	free(ops);
	free(reads);
	free(keys);
	free(nums);
	free(names);
	free(mine);
	return counted(s, err);
}

static int etcd_append(struct ks_store *store, const struct ks_rec *recs,
		       size_t n)
{
	struct ke_store *s = (struct ke_store *)store;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!recs[i].name)
			return EINVAL;
	switch (recs[0].type) {
	case KS_REC_CREATE:
		return do_create(s, &recs[0]);
	case KS_REC_DELETE:
		return do_delete(s, &recs[0]);
	case KS_REC_RENAME:
		return do_rename(s, &recs[0]);
	case KS_REC_ATTR:
		return do_attr(s, &recs[0]);
	default:
		return do_commit(s, recs, n);
	}
}

/* ---- catch_up ---------------------------------------------------------------- */

/* Is every absent name gone here, or the watch past its revision?  Drops
 * those that are.  Takes s->mu, then (without it) the engine's table. */
static bool absent_settled(struct ke_store *s)
{
	char name[KS_NAME_MAX + 1];
	bool all = true;
	size_t i = 0;

	for (;;) {
		struct ks_state *st;
		int64_t rev;
		bool gone;

		pthread_mutex_lock(&s->mu);
		if (i >= s->n_absent) {
			pthread_mutex_unlock(&s->mu);
			return all;
		}
		strcpy(name, s->absent[i]);
		rev = s->absent_rev[i];
		pthread_mutex_unlock(&s->mu);
		/* The table lock is outside s->mu in the lock order. */
		gone = atomic_load(&s->applied) >= rev ||
		       ks_state_lookup(s->eng, name, &st) != 0;
		if (!gone)
			ks_state_unref(st);
		pthread_mutex_lock(&s->mu);
		if (gone && i < s->n_absent &&
		    strcmp(s->absent[i], name) == 0) {
			s->n_absent--;
			memmove(&s->absent[i], &s->absent[i + 1],
				(s->n_absent - i) * sizeof(s->absent[0]));
			memmove(&s->absent_rev[i], &s->absent_rev[i + 1],
				(s->n_absent - i) * sizeof(s->absent_rev[0]));
		} else {
			all &= gone;
			i++;
		}
		pthread_mutex_unlock(&s->mu);
	}
}

static int etcd_catch_up(struct ks_store *store)
{
	struct ke_store *s = (struct ke_store *)store;
	double deadline = mono_now() + s->timeout;
	int64_t target;
	bool any;

	if (!s->eng)
		return 0;
	pthread_mutex_lock(&s->mu);
	target = s->catch_target;
	any = target > atomic_load(&s->applied) || s->n_absent;
	pthread_mutex_unlock(&s->mu);
	if (!any) {
		/* No refused commit to go by: etcd's current revision.  (If
		 * the newest changes are outside the prefix, the watch never
		 * reports them, and this waits out the timeout.) */
		struct ks_etcd_keys k = { .key = ".version/" };
		struct ks_etcd_kvs kvs = { 0 };
		int err = ks_etcd_range(s->c, &k, 0, &kvs);

		if (err)
			return err;
		target = kvs.revision;
		ks_etcd_kvs_free(&kvs);
	}
	for (;;) {
		int64_t seen = atomic_load(&s->applied);
		struct timespec until;
		double left = deadline - mono_now();

		if (seen >= target && absent_settled(s))
			return 0;
		if (left <= 0)
			return ETIMEDOUT;
		/* Absent names are checked in the engine, not under s->mu:
		 * wake now and then even without news. */
		until = abs_after(left < 0.05 ? left : 0.05);
		pthread_mutex_lock(&s->mu);
		if (atomic_load(&s->applied) == seen)
			pthread_cond_timedwait(&s->cv, &s->mu, &until);
		pthread_mutex_unlock(&s->mu);
	}
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
	if (*page && (*page)->value_len > s->max_size)
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
		return fail(msg, msglen, EINVAL, "max_size %zu is more than "
			    "etcd takes in one request; at most %u with "
			    "--etcd", s->max_size, KS_ETCD_MAX_PAGE);
	err = ks_etcd_range(s->c, &all, 0, &kvs);
	if (err)
		return fail(msg, msglen, err, "cannot read %s from etcd: %s",
			    s->prefix, strerror(err));
	r = ks_recovery_new();
	if (!r) {
		ks_etcd_kvs_free(&kvs);
		return fail(msg, msglen, ENOMEM, "out of memory");
	}
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
			err = fail(msg, msglen, EFBIG, "state \"%s\" in etcd "
				   "has %zu bytes, more than max_size (%zu)",
				   name, page->value_len, s->max_size);
		else if (!bad)
			err = ks_recovery_put(r, id++, name, &attr, version,
					      &mtime, page ? page->value : "",
					      page ? page->value_len : 0);
		if (err == ENOMEM)
			fail(msg, msglen, err, "out of memory");
	}
	if (!err)
		err = ks_recovery_finish(r, eng, msg, msglen);
	ks_recovery_free(r);
	if (!err) {
		s->eng = eng;
		s->load_rev = kvs.revision;
		atomic_store(&s->applied, kvs.revision);
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
	emit(arg, "etcd_connected", atomic_load(&s->connected));
	emit(arg, "etcd_revision", (uint64_t)atomic_load(&s->applied));
	emit(arg, "etcd_endpoints", s->n_endpoints);
	emit(arg, "etcd_requests", st.requests);
	emit(arg, "etcd_failovers", st.failovers);
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
	pthread_mutex_destroy(&s->mu);
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
	.append = etcd_append,
	.catch_up = etcd_catch_up,
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
				return fail(msg, msglen, EINVAL, "etcd store: "
					    "bad timeout '%s' (seconds, more "
					    "than 0)", value);
		} else {
			return fail(msg, msglen, EINVAL, "etcd store: bad "
				    "option %s=%s (endpoints=URL;URL..., "
				    "prefix=P, timeout=SECONDS)", key, value);
		}
	}
	if (got)
		return fail(msg, msglen, EINVAL, "etcd store: cannot parse "
			    "options '%s'", options);
	if (!endpoints[0])
		return fail(msg, msglen, EINVAL, "etcd store: no "
			    "endpoints=URL");
	/* The empty prefix would make every key in etcd a state's. */
	if (!prefix[0])
		return fail(msg, msglen, EINVAL, "etcd store: the prefix "
			    "must not be empty");
	s = calloc(1, sizeof(*s));
	if (!s)
		return fail(msg, msglen, ENOMEM, "out of memory");
	s->base.ops = &etcd_ops;
	s->timeout = timeout;
	pthread_mutex_init(&s->mu, NULL);
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
		return fail(msg, msglen, ENOMEM, "out of memory");
	}
	o.endpoints = s->endpoints;
	o.prefix = s->prefix;
	o.timeout = timeout;
	err = ks_etcd_create(&o, &s->c);
	if (err) {
		etcd_free(s);
		return fail(msg, msglen, err, "etcd store: bad endpoints "
			    "'%s' (http:// or https:// URLs)", endpoints);
	}
	/* Mount time is the time to say that etcd is not there. */
	err = ks_etcd_status(s->c, timeout, &st, msg, msglen);
	if (err) {
		if (msg && msglen && !msg[0])
			fail(msg, msglen, err, "no etcd endpoint answered: %s",
			     strerror(err));
		etcd_free(s);
		return err;
	}
	*out = &s->base;
	return 0;
}

/*
 * The etcd store's append: each unit one etcd txn, all or nothing, whose
 * compares are the engine's checks done again where every host sees them
 * (STORE.md, "etcd", says what each unit does in etcd).
 */
#include "store_etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		   size_t nops, int refused, enum ke_covers covers)
{
	struct ks_etcd_txn_result res = { 0 };
	const char *names[1] = { name };
	bool mine[1];
	int err;

	ke_own_begin(s, names, 1);
	err = ks_etcd_txn(s->c, cmp, 1, ops, nops, NULL, 0, &res);
	mine[0] = !err && res.succeeded;
	ke_own_end(s, names, mine, 1, mine[0] ? res.revision : 0, covers);
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

/* CREATE: the four keys, if the version key does not exist.  A plain
 * write, never resent: its compare ("no version key") holds again once
 * the state is removed, so a copy held by a stopped member could bring
 * back a state after an acknowledged mkdir and rmdir. */
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
	return one_txn(s, rec->name, &cmp, ops, 4, EEXIST, KE_COVERS_ALL);
}

/* DELETE: a plain write, never resent: its compare ("the version key
 * exists") holds again once another host makes the name again, which a
 * late copy would then delete. */
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
	return one_txn(s, rec->name, &cmp, ops, 4, ENOENT, KE_COVERS_ALL);
}

/* ATTR: a plain write, never resent: its compare ("the state exists")
 * still holds after it applied, so a late copy could undo a chmod or
 * chown made after it. */
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
	return one_txn(s, rec->name, &cmp, &op, 1, ENOENT, KE_COVERS_META);
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

/* Whether a rename txn refused after a resend was refused because an
 * earlier copy of it applied: NEW's version and meta keys (the failure
 * ops' reads) were made in one txn and the meta is unchanged since, and
 * holds this txn's bytes (M's, with the rename's ctime in nanoseconds).
 * Its revision, or 0. */
static int64_t renamed_already(const struct ks_etcd_txn_result *mv,
			       const struct ke_meta *m)
{
	char want[KE_META_MAX];
	size_t len = ke_format_meta(want, m);
	const struct ks_etcd_kvs *v, *t;

	if (mv->n_responses != 2)
		return 0;
	v = &mv->responses[0].kvs;
	t = &mv->responses[1].kvs;
	if (v->n != 1 || t->n != 1 || t->kvs[0].value_len != len ||
	    memcmp(t->kvs[0].value, want, len) != 0 ||
	    v->kvs[0].create_revision != t->kvs[0].create_revision ||
	    t->kvs[0].mod_revision != t->kvs[0].create_revision)
		return 0;
	return v->kvs[0].create_revision;
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
	struct ks_etcd_op ops[8], reads[6];
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
	/* Resendable: the old version key's compare is on its mod_revision,
	 * and this txn deletes that key; a key made again gets a newer
	 * revision, so no copy can apply after one has, however long it is
	 * held.  A refused resend is recognised as ours when NEW's meta holds
	 * exactly what this txn wrote (the rename's ctime, in nanoseconds) and
	 * was made with NEW's version key, in one txn; otherwise its fate is
	 * unknown.  The failure ops read NEW's version and meta keys. */
	reads[5] = get(kn[KE_META]);
	ke_own_begin(s, names, 2);
	err = ks_etcd_txn_resendable(s->c, cmps, 5, ops, 8, &reads[4], 2, &mv);
	if (!err && !mv.succeeded && mv.earlier_copy) {
		int64_t landed = renamed_already(&mv, &m);

		if (landed > 0) {
			mv.succeeded = true;
			mv.revision = landed;
		}
	}
	mine[0] = !err && mv.succeeded;
	/* NEW's echo is skipped only if it brings nothing this host lacks;
	 * otherwise it arrives as a commit (and chmod) of the renamed state. */
	mine[1] = mine[0] && version == rec->version &&
		  there.uid == rec->uid && there.gid == rec->gid &&
		  there.mode == (rec->mode & 07777);
	ke_own_end(s, names, mine, 2, mine[0] ? mv.revision : 0,
		   KE_COVERS_ALL);
	if (!err && !mv.succeeded && mv.earlier_copy)
		err = mv.earlier_copy;   /* not EEXIST or a retry: unknown */
	else if (!err && !mv.succeeded)
		err = mv.n_responses >= 1 && mv.responses[0].kvs.n ? EEXIST
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
	/* A few quick tries here, under the engine's table lock; the
	 * engine pauses between further ones with no lock held
	 * (ks_state_rename). */
	for (int i = 0; i < KS_ETCD_RENAME_TRIES; i++) {
		err = rename_once(s, rec);
		if (err != EAGAIN)
			break;
	}
	return counted(s, err);
}

/* Whether a refused commit txn is refused because it had already been
 * applied: every COMMIT's version and mtime key hold exactly what this
 * txn writes, from one etcd revision (*rev).  That happens when a request
 * reached etcd but its answer was lost and the client resent it to the
 * next endpoint (ks_etcd_txn_resendable); the second copy fails its
 * compare on the first's write.  The reads are the txn's failure ops: etcd
 * evaluates compares and ops of a txn that writes when it applies the
 * txn's raft entry, at one revision of the replicated log, so they are
 * current even if the member that answers the resend lagged behind the one
 * that took the first copy.  Taking it for a
 * conflict would make a blind write land twice, and a checked one be
 * retried by its caller over its own effect.  The mtime, in nanoseconds,
 * makes another host's identical page at the same version no match. */
static bool landed_already(const struct ks_rec *recs, size_t n,
			   const struct ks_etcd_txn_result *res,
			   char (*nums)[24], int64_t *rev)
{
	size_t j = n;   /* the mtime reads follow the n version reads */

	*rev = 0;
	for (size_t i = 0; i < n; i++) {
		const struct ks_etcd_kvs *v, *t;
		const char *ver = nums[3 * i + 1], *mt = nums[3 * i + 2];

		if (recs[i].type != KS_REC_COMMIT)
			continue;
		if (j >= res->n_responses)
			return false;
		v = &res->responses[i].kvs;
		t = &res->responses[j++].kvs;
		if (v->n != 1 || t->n != 1 ||
		    v->kvs[0].value_len != strlen(ver) ||
		    memcmp(v->kvs[0].value, ver, strlen(ver)) != 0 ||
		    t->kvs[0].value_len != strlen(mt) ||
		    memcmp(t->kvs[0].value, mt, strlen(mt)) != 0 ||
		    v->kvs[0].mod_revision != t->kvs[0].mod_revision ||
		    (*rev && *rev != v->kvs[0].mod_revision))
			return false;
		*rev = v->kvs[0].mod_revision;
	}
	return *rev > 0;
}

/* COMMITs and CHECKs: one txn comparing every version, writing the page,
 * version and mtime of each COMMIT; if refused, reading back the version
 * of each, and the mtime of each COMMIT. */
static int do_commit(struct ke_store *s, const struct ks_rec *recs, size_t n)
{
	struct ks_etcd_txn_result res = { 0 };
	struct ks_etcd_cmp *cmps = calloc(n, sizeof(*cmps));
	struct ks_etcd_op *ops = calloc(3 * n, sizeof(*ops));
	struct ks_etcd_op *reads = calloc(2 * n, sizeof(*reads));
	char (*keys)[KE_KEY_MAX] = calloc(3 * n, KE_KEY_MAX);
	char (*nums)[24] = calloc(3 * n, 24);
	const char **names = calloc(n, sizeof(*names));
	bool *mine = calloc(n, sizeof(*mine));
	size_t nops = 0, nc = 0, nreads = n;
	int64_t landed = 0;
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
		reads[nreads++] = get(kt);
		names[nc] = r->name;
		mine[nc++] = true;
	}
	/* etcd takes at most --max-txn-ops compares, and ops, per txn. */
	if (n > KS_ETCD_MAX_TXN_OPS || nops > KS_ETCD_MAX_TXN_OPS ||
	    nreads > KS_ETCD_MAX_TXN_OPS) {
		err = E2BIG;
		goto out;
	}
	/* Resendable: each compare is on a version key's value, which this
	 * txn's own put moves on and which only grows while the state lives,
	 * so once any copy has applied every other copy is refused, be it
	 * sent again now or held by a stopped member and applied later.  A
	 * refusal is then ours (landed_already) or a conflict, or, when an
	 * earlier copy may have applied and another host has committed
	 * since, cannot be told apart: its fate stays unknown.  (A stale copy
	 * would hold only after rmdir, mkdir and as many commits of the same
	 * name, all while it is held; a copy whose commit failed with
	 * ETIMEDOUT has that window already.) */
	ke_own_begin(s, names, nc);
	err = ks_etcd_txn_resendable(s->c, cmps, n, ops, nops, reads, nreads,
				     &res);
	if (!err && !res.succeeded &&
	    landed_already(recs, n, &res, nums, &landed)) {
		res.succeeded = true;
		res.revision = landed;
	}
	if (err || !res.succeeded)
		memset(mine, 0, nc * sizeof(*mine));
	ke_own_end(s, names, mine, nc, !err && res.succeeded ? res.revision : 0,
		   KE_COVERS_NOTHING);
	if (!err && !res.succeeded && res.earlier_copy) {
		/* Not a conflict to retry over: the earlier copy may be
		 * what moved the version; the watch brings what happened. */
		err = res.earlier_copy;
	} else if (!err && !res.succeeded) {
		ke_note_refusal(s, recs, &res, n);
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

int ke_append(struct ks_store *store, const struct ks_rec *recs, size_t n)
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


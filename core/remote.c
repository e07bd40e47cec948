/*
 * Changes that arrive from the store rather than from local users: another
 * host's creates, deletes, renames, attribute changes and commits.  Their
 * versions were decided where they were made; here they are only applied,
 * through the same table calls and the same commit path (commit.c) as
 * local changes, without appending them back.  The rules are in store.h
 * (ks_engine_apply_remote).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The state a record is about, with a reference: by id, or by name when
 * the id is 0.  NULL if there is none. */
static struct ks_state *find(struct ks_engine *eng, const struct ks_rec *rec)
{
	struct ks_state *st = NULL;

	if (rec->state_id)
		return ks_table_find_id(eng, rec->state_id);
	if (rec->name && ks_state_lookup(eng, rec->name, &st) == 0)
		return st;
	return NULL;
}

static struct ks_state_attr rec_attr(const struct ks_rec *rec)
{
	return (struct ks_state_attr){ .uid = rec->uid, .gid = rec->gid,
				       .mode = rec->mode & 07777,
				       .ctime = rec->time };
}

/* Tells the name listener, with no engine lock held. */
static void name_changed(struct ks_engine *eng, const char *name)
{
	if (eng->name_listener)
		eng->name_listener(eng->name_listener_arg, name);
}

static int apply_one(struct ks_engine *eng, const struct ks_rec *rec)
{
	struct ks_state_attr attr = rec_attr(rec);
	char name[KS_NAME_MAX + 1];
	struct ks_state *st;
	int err;

	if (rec->type == KS_REC_CREATE) {
		st = rec->state_id ? find(eng, rec) : NULL;
		if (st) {
			ks_state_unref(st);
			return 0;
		}
		if (!rec->name)
			return EINVAL;
		err = ks_table_create_remote(eng, rec->state_id, rec->name,
					     &attr, NULL);
		if (!err)
			name_changed(eng, rec->name);
		return err == EEXIST ? 0 : err;
	}
	if (rec->type == KS_REC_RENAME && (!rec->state_id || !rec->name))
		return EINVAL;
	st = find(eng, rec);
	if (!st)
		return 0;
	/* The name it has now: what a delete removes, what a rename frees. */
	ks_state_name(st, name);
	switch (rec->type) {
	case KS_REC_DELETE:
		err = ks_table_delete(eng, st, NULL, true, false);
		if (!err)
			name_changed(eng, name);
		break;
	case KS_REC_RENAME:
		err = ks_table_rename(eng, st, NULL, rec->name, &rec->time,
				      false);
		if (!err && strcmp(name, rec->name) != 0) {
			name_changed(eng, name);
			name_changed(eng, rec->name);
		}
		break;
	case KS_REC_ATTR:
		/* The daemon shows owner and mode on several files, which
		 * the kernel caches: it hears of the change by name. */
		err = ks_attr_set(st, &attr, false);
		if (!err)
			name_changed(eng, name);
		break;
	default:
		err = EINVAL;
		break;
	}
	ks_state_unref(st);
	/* Gone meanwhile: nothing left to change. */
	return err == ENOENT ? 0 : err;
}

/* With the commit locks held: a member's page is the record's, if it is
 * newer than what is installed. */
static int prepare_remote(void *arg, struct ks_commit_member *m, size_t n,
			  const struct timespec *now)
{
	for (size_t i = 0; i < n; i++) {
		const struct ks_rec *rec = m[i].rec;

		ks_lock_assert_held(&m[i].st->commit_lock);
		if (m[i].deleted || rec->version <= m[i].cur->version)
			continue; /* seen already: our own, come back */
		m[i].page = ks_page_new(rec->bytes, rec->len, rec->version,
					&rec->time);
		if (!m[i].page)
			return ENOMEM;
		m[i].version = rec->version;
	}
	return 0;
}

static int apply_commits(struct ks_engine *eng, const struct ks_rec *recs,
			 size_t n)
{
	struct ks_commit_member *m = calloc(n, sizeof(*m));
	struct ks_commit c = { .kind = KS_COMMIT_REMOTE, .m = m,
			       .prepare = prepare_remote };
	size_t k = 0;
	int err;

	if (!m)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct ks_state *st;
		size_t j;

		if (recs[i].type != KS_REC_COMMIT)
			continue;
		st = find(eng, &recs[i]);
		if (!st)
			continue;
		/* One member per state (a commit lock is taken once): the
		 * newest version wins. */
		for (j = 0; j < k && m[j].st != st; j++)
			;
		if (j < k) {
			if (recs[i].version > m[j].rec->version)
				m[j].rec = &recs[i];
			ks_state_unref(st);
			continue;
		}
		m[k].st = st;
		m[k].rec = &recs[i];
		k++;
	}
	c.n = k;
	err = ks_commit_run(eng, &c);
	for (size_t i = 0; i < k; i++)
		ks_state_unref(m[i].st);
	free(m);
	return err;
}

int ks_engine_apply_remote(struct ks_engine *eng, const struct ks_rec *recs,
			   size_t n)
{
	size_t commits = 0;
	int err = 0;

	for (size_t i = 0; i < n && !err; i++) {
		if (recs[i].type == KS_REC_COMMIT)
			commits++;
		else if (recs[i].type != KS_REC_CHECK)
			err = apply_one(eng, &recs[i]);
	}
	if (!err && commits)
		err = apply_commits(eng, recs, n);
	return err;
}

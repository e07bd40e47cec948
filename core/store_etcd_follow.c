/*
 * Following other hosts: the etcd store's watch callback turns each etcd
 * revision under the prefix into changes for ks_engine_apply_remote, and
 * after etcd compacted past the watch, reloads everything and brings the
 * engine to it.
 *
 * A revision is one etcd txn, so one unit of whichever host made it; the
 * keys it touched say what it was (STORE.md, "etcd"):
 *   .version/NAME deleted                  a DELETE (rmdir)
 *   .version/NAME deleted, .version/NEW
 *     created, same version as NAME here   a RENAME, so that the state
 *                                          keeps its id, open files and
 *                                          inodes, as after a local mv
 *   .version/NAME put, NAME unknown here   a CREATE (owner from .meta),
 *                                          and a COMMIT if version > 0
 *   .version/NAME put, newer than here     a COMMIT (page from NAME,
 *                                          time from .mtime/NAME)
 *   .meta/NAME put, unlike here            an ATTR (chmod, chown)
 * A revision's COMMITs are applied as one unit (a .txn commit of several
 * states arrives whole, one run of .events lines).  Events that are this
 * host's own changes coming back are skipped (the own table,
 * store_etcd_own.c), and so are events older than an own change that
 * replaced them (a commit of another host to a name this host has since
 * renamed or removed, which would otherwise bring the name back); the
 * engine skips the rest of what it already has.
 */
#include "store_etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- one revision ----------------------------------------------------------- */

/* One name's changes in one revision, and what this host has of it. */
struct change {
	const char *name;
	const struct ks_etcd_kv *put[4];   /* by enum ke_kind */
	bool gone[4];
	bool skip;                         /* this host's own */
	bool has_version, has_meta;
	uint64_t version;
	struct ke_meta meta;
	bool local;
	uint64_t local_id, local_version;
	struct ks_state_attr local_attr;
	struct change *from;               /* renamed from */
	bool renamed;                      /* the old name of a rename */
	struct ks_etcd_kvs fetched[2];     /* page, mtime read afterwards */
};

static struct change *change_of(struct change *ch, size_t *n,
				const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(ch[i].name, name) == 0)
			return &ch[i];
	memset(&ch[*n], 0, sizeof(ch[*n]));
	ch[*n].name = name;
	return &ch[(*n)++];
}

static void look_here(struct ke_store *s, struct change *c)
{
	struct ks_state *st;

	if (ks_state_lookup(s->eng, c->name, &st) != 0)
		return;
	c->local = true;
	c->local_id = ks_state_id(st);
	c->local_version = ks_state_version(st);
	ks_state_get_attr(st, &c->local_attr);
	ks_state_unref(st);
}

/* Checks what the revision says of c. */
static void parse_change(struct ke_store *s, struct change *c)
{
	const struct ks_etcd_kv *v = c->put[KE_VERSION];
	const struct ks_etcd_kv *m = c->put[KE_META];

	if (v && ke_parse_u64(v->value, v->value_len, &c->version) == 0)
		c->has_version = true;
	else if (v)
		fprintf(stderr, "kstatefs: etcd: %s%.*s is not a version; "
			"ignored\n", s->prefix, (int)v->key_len, v->key);
	if (m && ke_parse_meta(m->value, m->value_len, &c->meta) == 0)
		c->has_meta = true;
	else if (m)
		fprintf(stderr, "kstatefs: etcd: %s%.*s is not valid; "
			"ignored\n", s->prefix, (int)m->key_len, m->key);
	look_here(s, c);
}

/* The value of NAME's KIND key at revision rev: from the revision's events,
 * or read from etcd (into c->fetched[slot]).  NULL if there is none. */
static const struct ks_etcd_kv *value_at(struct ke_store *s, struct change *c,
					 enum ke_kind kind, int slot,
					 int64_t rev)
{
	char key[KE_KEY_MAX];
	struct ks_etcd_keys k = { .key = key };

	if (c->put[kind])
		return c->put[kind];
	ke_key(key, kind, c->name);
	if (ks_etcd_range(s->c, &k, rev, &c->fetched[slot]) != 0 ||
	    c->fetched[slot].n == 0)
		return NULL;
	return &c->fetched[slot].kvs[0];
}

static bool same_attr(const struct ks_state_attr *a, const struct ke_meta *m,
		      bool with_ctime)
{
	return a->uid == m->uid && a->gid == m->gid &&
	       (a->mode & 07777) == m->mode &&
	       (!with_ctime || (a->ctime.tv_sec == m->ctime.tv_sec &&
				a->ctime.tv_nsec == m->ctime.tv_nsec));
}

static struct ks_rec meta_rec(enum ks_rec_type type, const char *name,
			      const struct change *c)
{
	struct ke_meta m = c->has_meta ? c->meta
				       : (struct ke_meta){ .mode = 0700 };

	if (!c->has_meta)
		clock_gettime(CLOCK_REALTIME, &m.ctime);
	return (struct ks_rec){ .type = type, .name = name, .uid = m.uid,
				.gid = m.gid, .mode = m.mode,
				.time = m.ctime };
}

/* A COMMIT of c's version, if it is newer than what this host has. */
static bool commit_rec(struct ke_store *s, struct change *c, int64_t rev,
		       uint64_t have, struct ks_rec *out)
{
	const struct ks_etcd_kv *page, *mt;
	struct timespec when;

	if (!c->has_version || c->version == 0 || c->version <= have)
		return false;
	page = value_at(s, c, KE_PAGE, 0, rev);
	mt = value_at(s, c, KE_MTIME, 1, rev);
	if (page && page->value_len > KS_ETCD_MAX_PAGE) {
		/* No host writes that: a key written by hand.  Kept out,
		 * said; the version this host has stays. */
		fprintf(stderr, "kstatefs: etcd: state \"%s\" version %llu "
			"has %zu bytes, more than any page may have (%u); not "
			"taken\n", c->name, (unsigned long long)c->version,
			page->value_len, KS_ETCD_MAX_PAGE);
		return false;
	}
	if (!mt || ke_parse_time(mt->value, mt->value_len, &when))
		clock_gettime(CLOCK_REALTIME, &when);
	*out = (struct ks_rec){ .type = KS_REC_COMMIT, .name = c->name,
				.version = c->version,
				.base = c->version - 1,
				.bytes = page ? page->value : "",
				.len = page ? page->value_len : 0,
				.time = when };
	return true;
}

static void apply(struct ke_store *s, const struct ks_rec *recs, size_t n)
{
	int err;

	if (!n)
		return;
	err = ks_engine_apply_remote(s->eng, recs, n);
	if (err)
		fprintf(stderr, "kstatefs: etcd: cannot apply a change to "
			"\"%s\" from another host: %s\n", recs[0].name,
			strerror(err));
	atomic_fetch_add(&s->remote, 1);
}

/* Applies the records: each table change alone (one that cannot be applied
 * must not keep the others out), then every COMMIT as one unit. */
static void apply_all(struct ke_store *s, const struct ks_rec *recs, size_t n)
{
	size_t commits = 0;

	for (size_t i = 0; i < n; i++) {
		if (recs[i].type == KS_REC_COMMIT)
			commits++;
		else
			apply(s, &recs[i], 1);
	}
	/* COMMITs are last in recs. */
	apply(s, recs + (n - commits), commits);
}

static void one_revision(struct ke_store *s, const struct ks_etcd_event *ev,
			 size_t n, struct change *ch, struct ks_rec *recs)
{
	int64_t rev = ev[0].kv.mod_revision;
	size_t nch = 0, nrec = 0;

	for (size_t i = 0; i < n; i++) {
		const char *name;
		enum ke_kind kind = ke_parse_key(ev[i].kv.key,
						 ev[i].kv.key_len, &name);
		struct change *c;

		if (kind == KE_OTHER) {
			ke_say_ignored(s, ev[i].kv.key, ev[i].kv.key_len);
			continue;
		}
		c = change_of(ch, &nch, name);
		if (ev[i].type == KS_ETCD_PUT)
			c->put[kind] = &ev[i].kv;
		else
			c->gone[kind] = true;
	}
	for (size_t i = 0; i < nch; i++) {
		unsigned seen;

		/* What this host has of the name first, then its own
		 * changes: a local rename or rmdir of it may be under way
		 * (holding the table, so that look_here waits for it), and
		 * is then in the own table once look_here sees its result. */
		parse_change(s, &ch[i]);
		seen = ke_own_seen(s, ch[i].name, rev);
		ch[i].skip = (seen & (KE_OWN_ECHO | KE_OWN_STALE)) != 0;
		/* An older owner or mode than this host's own chmod since
		 * (a state this host does not have takes what it says). */
		if ((seen & KE_OWN_STALE_META) && ch[i].local)
			ch[i].has_meta = false;
	}
	/* Renames: a state gone here and one come, at the same version. */
	for (size_t i = 0; i < nch; i++) {
		struct change *c = &ch[i];

		if (c->skip || c->local || !c->has_version)
			continue;
		for (size_t j = 0; j < nch && !c->from; j++) {
			struct change *d = &ch[j];

			if (!d->skip && d->gone[KE_VERSION] && d->local &&
			    !d->renamed && d->local_version == c->version) {
				c->from = d;
				d->renamed = true;
			}
		}
	}
	for (size_t i = 0; i < nch; i++)
		if (!ch[i].skip && ch[i].gone[KE_VERSION] && ch[i].local &&
		    !ch[i].renamed)
			recs[nrec++] = (struct ks_rec){ .type = KS_REC_DELETE,
							.name = ch[i].name };
	for (size_t i = 0; i < nch; i++) {
		struct change *c = &ch[i];

		if (c->from) {
			recs[nrec] = meta_rec(KS_REC_RENAME, c->name, c);
			recs[nrec].state_id = c->from->local_id;
			recs[nrec++].old_name = c->from->name;
		}
	}
	for (size_t i = 0; i < nch; i++) {
		struct change *c = &ch[i];

		if (!c->skip && !c->local && !c->from && c->has_version)
			recs[nrec++] = meta_rec(KS_REC_CREATE, c->name, c);
	}
	for (size_t i = 0; i < nch; i++) {
		struct change *c = &ch[i];

		/* A renamed state got its ctime from the rename. */
		if (c->skip || !c->has_meta ||
		    (c->local && same_attr(&c->local_attr, &c->meta, true)) ||
		    (c->from && same_attr(&c->from->local_attr, &c->meta,
					  false)))
			continue;
		if (c->local || c->from) {
			/* By id, as commits below. */
			recs[nrec] = meta_rec(KS_REC_ATTR, c->name, c);
			recs[nrec++].state_id = c->from ? c->from->local_id
							: c->local_id;
		}
	}
	for (size_t i = 0; i < nch; i++) {
		struct change *c = &ch[i];
		uint64_t have = c->from ? c->from->local_version
			      : c->local ? c->local_version : 0;

		if (!c->skip && commit_rec(s, c, rev, have, &recs[nrec])) {
			/* By id: a local rename after look_here takes it
			 * along, and a state made since under the old name
			 * is not the one it was for. */
			recs[nrec].state_id = c->from ? c->from->local_id
				: c->local ? c->local_id : 0;
			nrec++;
		}
	}
	apply_all(s, recs, nrec);
	for (size_t i = 0; i < nch; i++) {
		ks_etcd_kvs_free(&ch[i].fetched[0]);
		ks_etcd_kvs_free(&ch[i].fetched[1]);
	}
}

/* Events in revision order; each run of one revision is one unit.  At most
 * one change and three records per event, so the buffers are sized by n. */
static void apply_events(struct ke_store *s, const struct ks_etcd_event *ev,
			 size_t n)
{
	struct change *ch = calloc(n, sizeof(*ch));
	struct ks_rec *recs = calloc(3 * n, sizeof(*recs));

	if (!ch || !recs) {
		/* Lost changes: reloading is the way back. */
		fprintf(stderr, "kstatefs: etcd: out of memory following "
			"changes; reloading\n");
		ke_reload(s, false);
	} else {
		for (size_t i = 0, j; i < n; i = j) {
			for (j = i + 1; j < n && ev[j].kv.mod_revision ==
						 ev[i].kv.mod_revision; j++)
				;
			one_revision(s, ev + i, j - i, ch, recs);
		}
	}
	free(ch);
	free(recs);
}

int64_t ke_watch_cb(void *arg, const struct ks_etcd_watch_response *r)
{
	struct ke_store *s = arg;
	int64_t rev;

	switch (r->kind) {
	case KS_ETCD_WATCH_CONNECTED:
		atomic_store(&s->connected, true);
		break;
	case KS_ETCD_WATCH_DISCONNECTED:
		atomic_store(&s->connected, false);
		break;
	case KS_ETCD_WATCH_PROGRESS:
		ke_applied(s, r->revision);
		break;
	case KS_ETCD_WATCH_EVENTS:
		apply_events(s, r->events, r->n_events);
		ke_applied(s, r->revision);
		break;
	case KS_ETCD_WATCH_COMPACTED:
		/* Changes were lost: read everything, go on after it.  If
		 * that fails, a revision surely compacted brings us back
		 * here, after a pause. */
		rev = ke_reload(s, false);
		if (rev > 0)
			return rev + 1;
		usleep(200 * 1000);
		return 1;
	case KS_ETCD_WATCH_RESET:
		/* Another history: everything from etcd anew.  If that
		 * fails, the watch finds the same again at its next probe. */
		rev = ke_reload(s, true);
		if (rev > 0)
			return rev + 1;
		usleep(200 * 1000);
		return 0;
	}
	return 0;
}

/* ---- reloading after compaction ------------------------------------------------ */

struct here {
	char name[KS_NAME_MAX + 1];
	uint64_t version;
	struct ks_state_attr attr;
};

struct here_list {
	struct here *v;
	size_t n, cap;
	bool nomem;
};

static void collect(void *arg, struct ks_state *st)
{
	struct here_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct here *v = realloc(l->v, cap * sizeof(*v));

		if (!v) {
			l->nomem = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	if (!ks_state_name(st, l->v[l->n].name))
		return;
	l->v[l->n].version = ks_state_version(st);
	ks_state_get_attr(st, &l->v[l->n].attr);
	l->n++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct here *)a)->name,
		      ((const struct here *)b)->name);
}

/* Records grow in chunks; a failure to grow drops the record (said). */
struct rec_list {
	struct ks_rec *v;
	size_t n, cap;
};

static struct ks_rec *rec_add(struct rec_list *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct ks_rec *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	memset(&l->v[l->n], 0, sizeof(l->v[0]));
	return &l->v[l->n++];
}

/* What etcd has at N and this host does not, as records: deletes of states
 * gone, creates and attrs into table, commits into commits (names point
 * into kvs and here).  Names this host changed after N are left as they
 * are. */
static void diff(struct ke_store *s, const struct ks_etcd_kvs *kvs,
		 int64_t n_rev, struct here_list *here, struct rec_list *table,
		 struct rec_list *commits)
{
	char key[KE_KEY_MAX];
	struct ks_rec *r;

	for (size_t i = 0; i < here->n; i++) {
		ke_key(key, KE_VERSION, here->v[i].name);
		if (ke_find(kvs, key) || ke_own_after(s, here->v[i].name, n_rev))
			continue;
		if ((r = rec_add(table)))
			*r = (struct ks_rec){ .type = KS_REC_DELETE,
					      .name = here->v[i].name };
	}
	for (size_t i = 0; i < kvs->n; i++) {
		const struct ks_etcd_kv *kv = &kvs->kvs[i], *page;
		struct ks_state_attr attr;
		struct timespec mtime;
		struct here *h, probe;
		uint64_t version;
		const char *name;
		int bad;

		if (ke_parse_key(kv->key, kv->key_len, &name) != KE_VERSION ||
		    ke_own_after(s, name, n_rev))
			continue;
		bad = ke_read_state(s, kvs, kv, name, &version, &attr, &mtime,
				    &page);
		if (bad == EFBIG)
			fprintf(stderr, "kstatefs: etcd: state \"%s\" has "
				"more than %u bytes; not taken\n",
				name, KS_ETCD_MAX_PAGE);
		if (bad)
			continue;
		snprintf(probe.name, sizeof(probe.name), "%s", name);
		h = bsearch(&probe, here->v, here->n, sizeof(*h), by_name);
		if (h && version < h->version && (r = rec_add(table))) {
			/* Versions only rise: etcd's older one is of another
			 * history (a backup restored with its revisions moved
			 * on, which reads as a compaction).  The state is
			 * made again as etcd has it. */
			*r = (struct ks_rec){ .type = KS_REC_DELETE,
					      .name = name };
			h = NULL;
		}
		if ((!h || h->attr.uid != attr.uid ||
		     h->attr.gid != attr.gid || h->attr.mode != attr.mode ||
		     h->attr.ctime.tv_sec != attr.ctime.tv_sec ||
		     h->attr.ctime.tv_nsec != attr.ctime.tv_nsec) &&
		    (r = rec_add(table)))
			*r = (struct ks_rec){
				.type = h ? KS_REC_ATTR : KS_REC_CREATE,
				.name = name, .uid = attr.uid,
				.gid = attr.gid, .mode = attr.mode,
				.time = attr.ctime };
		if (version > 0 && (!h || version > h->version) &&
		    (r = rec_add(commits)))
			*r = (struct ks_rec){
				.type = KS_REC_COMMIT, .name = name,
				.version = version, .base = version - 1,
				.bytes = page ? page->value : "",
				.len = page ? page->value_len : 0,
				.time = mtime };
	}
}

int64_t ke_reload(struct ke_store *s, bool anew)
{
	struct ks_etcd_keys all = { .key = "", .prefix = true };
	struct ks_etcd_kvs kvs = { 0 };
	struct here_list here = { 0 }, none = { 0 };
	struct rec_list table = { 0 }, commits = { 0 };
	int64_t rev;
	int err;

	err = ks_etcd_range(s->c, &all, 0, &kvs);
	if (err) {
		fprintf(stderr, "kstatefs: etcd: cannot reload %s: %s\n",
			s->prefix, strerror(err));
		return 0;
	}
	ks_engine_foreach(s->eng, collect, &here);
	if (here.nomem) {
		fprintf(stderr, "kstatefs: etcd: out of memory reloading\n");
		ks_etcd_kvs_free(&kvs);
		free(here.v);
		return 0;
	}
	qsort(here.v, here.n, sizeof(*here.v), by_name);
	if (anew) {
		struct ks_rec *r;

		/* Versions of another history may be newer than etcd's now:
		 * every state goes, and comes back as etcd has it. */
		ke_own_forget(s);
		/* But not a name this host is changing now: its append,
		 * answered after the read, is newer than it (diff leaves
		 * those alone too). */
		for (size_t i = 0; i < here.n; i++)
			if (!ke_own_after(s, here.v[i].name, kvs.revision) &&
			    (r = rec_add(&table)))
				*r = (struct ks_rec){ .type = KS_REC_DELETE,
						      .name = here.v[i].name };
	}
	diff(s, &kvs, kvs.revision, anew ? &none : &here, &table, &commits);
	/* Counted before its changes are applied: whoever sees them (a
	 * test waiting for a state) then sees the count too. */
	atomic_fetch_add(&s->reloads, 1);
	/* Table changes one by one, then commits in units of a bounded
	 * size (a reload is many states' news, not one unit of anybody's). */
	for (size_t i = 0; i < table.n; i++)
		apply(s, &table.v[i], 1);
	for (size_t i = 0; i < commits.n; i += 64)
		apply(s, &commits.v[i], commits.n - i < 64 ? commits.n - i : 64);
	rev = kvs.revision;
	ke_applied(s, rev);
	free(table.v);
	free(commits.v);
	free(here.v);
	ks_etcd_kvs_free(&kvs);
	return rev;
}

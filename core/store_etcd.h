/*
 * The etcd store's parts, shared by its files (not for use outside core/):
 *
 *   store_etcd.c         the ops table: options, open, recover, start,
 *                        stats, close
 *   store_etcd_units.c   append: one etcd txn per unit
 *   store_etcd_own.c     the table of this host's own changes; catch_up
 *   store_etcd_follow.c  the watch: other hosts' changes into the engine
 *                        (ks_engine_apply_remote), and the reload after
 *                        etcd compacted past us
 *   store_etcd_keys.c    the keys and values under the prefix
 *
 * STORE.md ("etcd") describes every key and what each unit does in etcd.
 */
#ifndef KSTATEFS_CORE_STORE_ETCD_H
#define KSTATEFS_CORE_STORE_ETCD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "engine.h"
#include "etcd_client.h"
#include "lock.h"
#include "store.h"

/* etcd's default --max-txn-ops: compares, and ops, per txn. */
#define KS_ETCD_MAX_TXN_OPS 128

/* A rename re-reads and retries this often when another host commits to
 * the state in between, then answers EAGAIN, and the engine tries again
 * after a pause (ks_state_rename): a rename never conflicts for users. */
#define KS_ETCD_RENAME_TRIES 2

/* ---- keys (store_etcd_keys.c) -------------------------------------------- */

enum ke_kind {
	KE_PAGE,      /* NAME           the page, exactly its bytes */
	KE_VERSION,   /* .version/NAME  the version, decimal */
	KE_META,      /* .meta/NAME     {"uid","gid","mode","ctime_ns"} */
	KE_MTIME,     /* .mtime/NAME    the page's commit time, decimal ns */
	KE_OTHER,     /* none of these: another client's key, ignored */
};

/* ".version/" + a name + NUL, and the longest of the others. */
#define KE_KEY_MAX (9 + KS_NAME_MAX + 1)

/* Builds the key (relative to the prefix) of NAME's KIND into buf. */
void ke_key(char buf[KE_KEY_MAX], enum ke_kind kind, const char *name);

/* What a key (relative to the prefix, len bytes) is; *name points into key
 * at the state's name, which has passed ks_name_check. */
enum ke_kind ke_parse_key(const char *key, size_t len, const char **name);

/* A decimal unsigned 64-bit number, exactly: digits only, no sign, no
 * leading zero but in "0", no overflow.  0 or EINVAL. */
int ke_parse_u64(const void *value, size_t len, uint64_t *out);
/* "%llu" into buf; returns the length. */
size_t ke_format_u64(char buf[24], uint64_t v);

/* A time as decimal nanoseconds since the epoch (times before it as 0). */
size_t ke_format_time(char buf[24], const struct timespec *ts);
int ke_parse_time(const void *value, size_t len, struct timespec *out);

struct ke_meta {
	uid_t uid;
	gid_t gid;
	mode_t mode;              /* permission bits */
	struct timespec ctime;
};

/* The meta value: {"uid":U,"gid":G,"mode":M,"ctime_ns":N}, the same bytes
 * for the same meta.  Returns the length. */
#define KE_META_MAX 128
size_t ke_format_meta(char buf[KE_META_MAX], const struct ke_meta *m);
/* Any JSON object with those four integer members in range (others are
 * ignored, for later additions).  0 or EINVAL. */
int ke_parse_meta(const void *value, size_t len, struct ke_meta *out);

/* Binary search of kvs (sorted by key, as etcd returns them) for KEY. */
const struct ks_etcd_kv *ke_find(const struct ks_etcd_kvs *kvs,
				 const char *key);

/* ---- the store ------------------------------------------------------------- */

/* This host's own changes to one name that the watch has not yet brought
 * back: the revisions of its txns (the watch skips those events, which
 * are this host's own, already applied), and whether an append for the
 * name is under way (the watch waits for it, so that an echo never
 * arrives before its revision is known). */
struct ke_own {
	struct ke_own *next;
	unsigned busy;            /* appends in flight */
	uint64_t epoch;           /* +1 when one ends */
	size_t nrevs;
	int64_t revs[8];          /* more than 8 pending: the oldest go */
	/* The newest own unit that replaced all of this name's keys
	 * (create, delete, either name of a rename), and its meta key
	 * (chmod, chown): events of other hosts older than it arrive after
	 * this host has applied it, and must not undo it. 0: none pending. */
	int64_t whole_rev, meta_rev;
	char name[KS_NAME_MAX + 1];
};

#define KE_OWN_BUCKETS 256
#define KE_ABSENT_MAX 8

struct ke_store {
	struct ks_store base;
	struct ks_etcd *c;
	char *endpoints;          /* comma separated, for the client */
	char *prefix;
	double timeout;
	size_t n_endpoints;

	struct ks_engine *eng;    /* bound by recover */
	size_t max_size;
	int64_t load_rev;         /* the revision recover read */
	bool watching;

	struct ks_lock mu;        /* own, the catch-up targets (KS_RANK_STORE) */
	pthread_cond_t cv;        /* applied moved, or an append ended */
	struct ke_own *own[KE_OWN_BUCKETS];
	/* What a refused commit found (catch_up waits for it): the newest
	 * mod_revision of the versions it compared, and the names whose
	 * version key was gone (deleted or renamed by another host). */
	int64_t catch_target;
	size_t n_absent;
	char absent[KE_ABSENT_MAX][KS_NAME_MAX + 1];
	int64_t absent_rev[KE_ABSENT_MAX];   /* the refused txn's revision */

	_Atomic int64_t applied;  /* every change up to it is in the engine */
	atomic_bool connected;
	atomic_bool junk_said;    /* "ignored keys" said once */
	_Atomic uint64_t units;   /* units written by this host */
	_Atomic uint64_t conflicts;   /* txns whose compare failed */
	_Atomic uint64_t failures;    /* appends that failed otherwise */
	_Atomic uint64_t remote;      /* units applied from other hosts */
	_Atomic uint64_t reloads;     /* full reloads after compaction */
	_Atomic uint64_t ignored;     /* keys that are no state's */
};

/* ---- append (store_etcd_units.c) ------------------------------------------ */

int ke_append(struct ks_store *store, const struct ks_rec *recs, size_t n);

/* ---- the own table, catch_up (store_etcd_own.c) ---------------------------- */

/* An append for these names is under way (the watch waits for it before
 * deciding whether an event is this host's own), and has ended: rev > 0 is
 * the revision of its changes to the names with mine[i]. */
void ke_own_begin(struct ke_store *s, const char *const *names, size_t n);
/* What an own unit replaced of each of its names (ke_own_seen). */
enum ke_covers {
	KE_COVERS_NOTHING,         /* commits: versions order them anyway */
	KE_COVERS_META,            /* chmod, chown */
	KE_COVERS_ALL,             /* create, delete, rename */
};
void ke_own_end(struct ke_store *s, const char *const *names,
		const bool *mine, size_t n, int64_t rev,
		enum ke_covers covers);
/* A commit txn over recs was refused; res holds the failure branch's
 * reads of each record's version key. */
void ke_note_refusal(struct ke_store *s, const struct ks_rec *recs,
		     const struct ks_etcd_txn_result *res, size_t n);
int ke_catch_up(struct ks_store *store);

/* Waits (bounded by the timeout) for an append on NAME under way to end;
 * then what this host's own changes make of another event of NAME at REV:
 * KE_OWN_ECHO if REV is one of them; KE_OWN_STALE if an own unit after REV
 * replaced all of NAME (the event is older than what this host applied:
 * a commit to a state it has since renamed or removed must not bring the
 * old name back); KE_OWN_STALE_META if one after REV set NAME's meta. */
enum { KE_OWN_ECHO = 1, KE_OWN_STALE = 2, KE_OWN_STALE_META = 4 };
unsigned ke_own_seen(struct ke_store *s, const char *name, int64_t rev);
/* True if this host changed NAME after REV, or is changing it now (after
 * waiting for it): a reload at REV must leave NAME as it is. */
bool ke_own_after(struct ke_store *s, const char *name, int64_t rev);
/* etcd's history went back: the revisions kept are of another history.
 * Forgets them (appends in flight keep their marks) and the applied
 * revision. */
void ke_own_forget(struct ke_store *s);
/* Everything up to REV has arrived: forget own revisions up to it, and
 * wake catch_up. */
void ke_applied(struct ke_store *s, int64_t rev);

/* One state as a range of the whole prefix (kvs) holds it, from its
 * version key vkv: version, owner (root's, mode 0700, if .meta is missing
 * or spoiled), mtime, page (NULL: none, an empty page).  0, EINVAL (not a
 * state: skip it; said on stderr) or EFBIG (a page over max_size). */
int ke_read_state(struct ke_store *s, const struct ks_etcd_kvs *kvs,
		  const struct ks_etcd_kv *vkv, const char *name,
		  uint64_t *version, struct ks_state_attr *attr,
		  struct timespec *mtime, const struct ks_etcd_kv **page);

/* Says something on stderr once per store (keys of another client). */
void ke_say_ignored(struct ke_store *s, const char *key, size_t len);

/* For tests: stop the watch as if the network were gone, and start it again
 * from revision FROM (an old one, to make etcd's compaction show); the
 * revision up to which every change has been applied. */
void ke_watch_pause(struct ks_store *store);
int ke_watch_resume(struct ks_store *store, int64_t from);
int64_t ke_applied_revision(struct ks_store *store);

/* ---- following (store_etcd_follow.c) --------------------------------------- */

int64_t ke_watch_cb(void *arg, const struct ks_etcd_watch_response *r);
/* Reads everything and brings the engine to it: N, etcd's revision it
 * read, or 0 on failure (after a message).  anew: etcd's history went
 * back, so nothing this host knows is kept: every state is dropped and
 * made again from etcd, versions and all, and the own-change table and
 * the applied revision start over. */
int64_t ke_reload(struct ke_store *s, bool anew);

#endif

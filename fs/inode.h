/*
 * The inode table: every inode the kernel or an open file of ours refers
 * to, by number, and which inode is each state's `data` now.
 *
 * Inode numbers: the root is 1 and the root's own entries have small
 * fixed numbers (INO_*); a state with engine id N has its directory at
 * 8N+1, its first `data` at 8N+2, `version` at 8N+3 and `every` at 8N+4.
 * Transaction files, transactions over several states, their members and
 * views get numbers from a counter above 2^62.  After `mv T data` the
 * kernel's `data` entry points at T's inode, so that inode becomes the
 * state's data inode (kept in the table's data_ino) and the old one lives
 * on only for the files still open on it.
 *
 * An inode lives while the kernel holds lookups on it (nlookup) or a
 * request or open file of ours uses it (refs); the root and its own
 * entries live as long as the daemon.
 */
#ifndef KSTATEFS_FS_INODE_H
#define KSTATEFS_FS_INODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "kind.h"
#include "lock.h"
#include "u64map.h"

#define INO_PER_STATE 8
#define INO_TXN_ROOT 2
#define INO_COMMIT_DIR 3
#define INO_EVENTS 4
#define INO_STATS 5
#define INO_SHM 6
#define INO_TXN_BASE (1ULL << 62)

struct ks_daemon;
struct ks_multi;
struct ks_view;

struct ks_inode {
	uint64_t ino;
	enum ks_role role;      /* changes only by inode_become_data */
	struct ks_state *st;    /* a reference; NULL for the root */
	struct ks_txn *txn;     /* ROLE_TXN, and after it ROLE_DATA: a ref */
	struct ks_multi *multi; /* ROLE_MULTI, ROLE_MEMBER: a reference */
	struct ks_view *view;   /* ROLE_VIEW*: a reference */
	uint64_t nlookup;       /* the kernel's references */
	unsigned refs;          /* ours: open handles, calls in progress */
	uid_t uid;              /* ROLE_TXN: creator and mode */
	gid_t gid;
	mode_t mode;
};

struct ks_inode_table {
	struct ks_lock lock;      /* inode_lock: everything below */
	struct u64map by_ino;      /* ino -> struct ks_inode */
	struct u64map data_ino;    /* state id -> current data ino */
	uint64_t next_ino;         /* for numbers above INO_TXN_BASE */
};

/* Makes the table with the root and its own entries. */
int inode_table_init(struct ks_daemon *d);
void inode_table_free(struct ks_daemon *d);

/* The inode for ino with a reference of ours (inode_put), or NULL. */
struct ks_inode *inode_get(struct ks_daemon *d, uint64_t ino);
void inode_put(struct ks_daemon *d, struct ks_inode *in);
/* The kernel dropped nlookup of its lookups. */
void inode_forget(struct ks_daemon *d, uint64_t ino, uint64_t nlookup);

/* The lookups below count one kernel lookup and one reference of ours:
 * what an entry reply (reply_entry) hands over. */

/* The inode of a state's directory/data/version/every. */
struct ks_inode *inode_lookup_state(struct ks_daemon *d, struct ks_state *st,
				    enum ks_role role);
/* The inode ino, made from the template if it does not exist (its
 * references are then taken): for members of transactions over several
 * states, views, and the root's own entries. */
struct ks_inode *inode_new(struct ks_daemon *d, uint64_t ino,
			   const struct ks_inode *tmpl);
/* count consecutive numbers above INO_TXN_BASE, never used before. */
uint64_t inode_alloc_ino(struct ks_daemon *d, unsigned count);
/* The inode of a transaction: created if the transaction has none. */
struct ks_inode *inode_lookup_txn(struct ks_daemon *d, struct ks_txn *txn,
				  uid_t uid, gid_t gid, mode_t mode);
/* The inode of a transaction over several states (.txn/T). */
struct ks_inode *inode_lookup_multi(struct ks_daemon *d, struct ks_multi *m);

/* Makes the transaction inode the state's data inode (after mv T data). */
void inode_become_data(struct ks_daemon *d, struct ks_inode *in);
/* The state with this id was deleted: its next data inode is the first. */
void inode_state_deleted(struct ks_daemon *d, uint64_t id);
uint64_t inode_data_ino(struct ks_daemon *d, struct ks_state *st);
/* The fixed number of a state's directory, first data, version, every. */
uint64_t inode_state_ino(const struct ks_state *st, enum ks_role role);
/* Tells the kernel a state's data and version attributes changed; called
 * before a commit is acknowledged. */
void inode_invalidate_state(struct ks_daemon *d, struct ks_state *st);
/* Tells the kernel the files that show a state's owner and mode (data,
 * version, every) changed with it: after chmod or chown of the state,
 * whose permission checks would otherwise use the old ones for as long
 * as attributes are cached. */
void inode_invalidate_owner(struct ks_daemon *d, struct ks_state *st);
/* The same for the state's directory itself: only from outside a request
 * on it (a change another host made), never from its own setattr. */
void inode_invalidate_state_dir(struct ks_daemon *d, struct ks_state *st);

#endif

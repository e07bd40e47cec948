/*
 * The engine side of the store: rebuilding an engine from what a store
 * replays, and taking a consistent picture of an engine for a snapshot.
 * Written against core/internal.h; these are the engine calls a store makes
 * to rebuild an engine and to copy it (store.h lists them all).
 */
#ifndef KSTATEFS_CORE_RECOVER_H
#define KSTATEFS_CORE_RECOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "store.h"

/* ---- recovery ------------------------------------------------------------
 * States are collected by id while a store replays its snapshot and log,
 * and installed into the engine only at the end, so that names may pass
 * through each other during the replay.  Replaying is idempotent: a record
 * for a state that does not exist (any more) is skipped, a CREATE of a state
 * that exists is skipped, and a COMMIT is applied only if its version is
 * newer than the state's.  So a snapshot taken while commits went on, with
 * the log that follows it replayed on top, ends at the right place. */

struct ks_recovery;

struct ks_recovery *ks_recovery_new(void);
void ks_recovery_free(struct ks_recovery *r);

/* Applies one record.  0, ENOMEM, or EINVAL for a record that cannot be
 * (a CREATE with a bad name). */
int ks_recovery_apply(struct ks_recovery *r, const struct ks_rec *rec);

/* A state as a snapshot holds it. */
int ks_recovery_put(struct ks_recovery *r, uint64_t id, const char *name,
		    const struct ks_state_attr *attr, uint64_t version,
		    const struct timespec *mtime, const void *bytes,
		    size_t len);

/* The states are every host's (etcd): this host's max_states, a limit on
 * what it makes, does not refuse them. */
void ks_recovery_shared(struct ks_recovery *r);

/* Ids below next_id are never handed out again. */
void ks_recovery_next_id(struct ks_recovery *r, uint64_t next_id);

/* Live states and their page bytes, as replayed so far. */
void ks_recovery_counts(const struct ks_recovery *r, uint64_t *states,
			uint64_t *bytes);

/* Installs the states into ENG, a fresh engine on which nothing else has
 * been called; the engine's store is not called.  0, or an errno with a
 * message (two states with one name, more than max_states). */
int ks_recovery_finish(struct ks_recovery *r, struct ks_engine *eng,
		       char *msg, size_t msglen);

/* ---- snapshots -----------------------------------------------------------
 * A snapshot reads every state's current page, name and attributes holding
 * the table lock (shared) and, for each state, its commit lock: so every
 * commit whose record the store has already accepted is either installed
 * and seen, or still to come in the store's log.  Pages are immutable and
 * only referenced; writing them out happens with no engine lock held. */

struct ks_snap_state {
	uint64_t id;
	char name[KS_NAME_MAX + 1];
	struct ks_state_attr attr;
	struct ks_page *page;   /* a reference */
};

struct ks_snapshot {
	uint64_t next_id;
	size_t n;
	struct ks_snap_state *states;
};

int ks_snapshot_take(struct ks_engine *eng, struct ks_snapshot *out);
void ks_snapshot_release(struct ks_snapshot *snap);

/* Bytes in current pages, without locks (for deciding when to compact). */
uint64_t ks_engine_live_bytes(struct ks_engine *eng);

#endif

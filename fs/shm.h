/*
 * The shared mappings (SPEC 8): every state's current page in a read-only
 * file under a directory of tmpfs (DIR, /dev/shm/kstatefs.ID by default),
 * which libkstate reads with a sequence lock instead of asking the daemon.
 * core/shm_layout.h is the layout; kstate(3) documents it for other
 * languages.  The engine keeps each state's mapping in step with the state
 * through its mirror (ks_engine_set_mirror): created with the state,
 * rewritten in the same hold of the state's lock that installs a commit
 * (so before the commit is acknowledged), re-owned on chmod and chown,
 * marked dead and unlinked when it is deleted.
 *
 * Lifetime: ks_shm_open (before recovery's states are mirrored) makes DIR and
 * its instance file and takes an exclusive flock on it for the daemon's
 * life; ks_shm_start (in the daemon, after it forks) starts the thread whose
 * robust futex word tells readers the daemon lives; ks_shm_stop ends it
 * (cleanly: readers then see the word 0); the engine's free calls every
 * mirror's gone; ks_shm_close removes DIR.  After a kill -9 the kernel marks
 * the word dead, so no reader trusts the mapping, and the next daemon that
 * opens the same parent directory removes the leftovers of every daemon
 * whose flock is free.
 *
 * No locks: the mirror's calls for one state are serialized by the engine,
 * and everything shared between states is set before the first.
 */
#ifndef KSTATEFS_FS_SHM_H
#define KSTATEFS_FS_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "engine.h"

struct ks_shm;

struct ks_shm_config {
	const char *parent;  /* where DIR goes: a tmpfs, /dev/shm */
	size_t max_size;
	/* Other users may use the mount (-o allow_other): mappings take
	 * the state's owner and read bits; otherwise only the daemon's
	 * user reads them. */
	bool shared;
	uid_t uid;           /* the daemon's user */
	gid_t gid;
	mode_t root_mode;    /* the mount root's, at mount (ks_shm_root_mode) */
};

/* Makes DIR; on failure says why on stderr and returns an errno (the
 * mount goes on without mappings). */
int ks_shm_open(const struct ks_shm_config *cfg, struct ks_shm **out);
/* Mirrors every state of eng, now and from now on. */
void ks_shm_attach(struct ks_shm *shm, struct ks_engine *eng);
/* In the process that serves: readers may trust the mappings from now. */
int ks_shm_start(struct ks_shm *shm);
/* Readers stop trusting them; before the engine is freed. */
void ks_shm_stop(struct ks_shm *shm);
/* After the engine is freed (every mapping gone): removes DIR. */
void ks_shm_close(struct ks_shm *shm);
/* Follows the mount root's mode: a class of users that may not search
 * the root (chmod 700 /mnt/state) reaches no state's files, and so no
 * mapping either (DIR loses that class's search bit). */
void ks_shm_root_mode(struct ks_shm *shm, const atomic_uint *root_mode);
/* DIR, for the mount's .shm file. */
const char *ks_shm_dir(const struct ks_shm *shm);

#endif

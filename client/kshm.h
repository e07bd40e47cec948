/*
 * libkstate's side of the shared mappings (SPEC 8, kstate(3),
 * core/shm_layout.h): finding a state's mapping from its directory,
 * checking that it is the live daemon's and the caller's to read, and
 * reading it with the sequence lock.  Not exported; the benchmark and the
 * tests link it directly to count retries.
 */
#ifndef KSTATEFS_CLIENT_KSHM_H
#define KSTATEFS_CLIENT_KSHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct kshm {
	struct ks_shm_state *map;        /* read-only */
	size_t map_size;
	uint64_t slot_size, max_size;
	struct ks_shm_instance *inst;    /* read-only */
	/* Set once a read found the mapping dead: later reads go straight
	 * to the files.  The mapping stays until kshm_close, for a thread
	 * that may still be copying from it. */
	atomic_bool dead;
	/* Attempts that a writer overtook: the benchmark's retry rate. */
	atomic_ullong retries;
};

/* Attempts per read before kshm_read gives up with EAGAIN (and the caller
 * reads the files): only a writer publishing twice in the time of one copy,
 * again and again, gets there. */
#define KSHM_TRIES 64

/* Maps the mapping of the state whose directory is open at dirfd.  0, or an
 * errno: ENOENT (the mount offers none: another host's mount, an old
 * daemon, -o noshm), EACCES (the state's mode shuts us out), ESTALE (not
 * the live daemon's), EPROTO (not a mapping to trust). */
int kshm_open(int dirfd, struct kshm **out);
void kshm_close(struct kshm *m);

/* Copies the newest whole page into buf (as much as cap holds) and sets
 * *len to its length and *version to its version.  0, ESTALE (the daemon
 * or the state is gone, or the mapping is no longer to be trusted: m is
 * dead from now on) or EAGAIN (a writer overtook every attempt).  Never
 * blocks. */
int kshm_read(struct kshm *m, void *buf, size_t cap, uint64_t *len,
	      uint64_t *version);

#endif

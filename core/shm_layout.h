/*
 * The shared mappings through which readers on the daemon's host read
 * states without a request to the daemon (SPEC 8, kstate(3)): the layout
 * of their files and the two sides of their sequence lock.  The daemon
 * (fs/shm.c) writes them; libkstate (client/kshm.c) reads them.  Both
 * include this one header, so the layout cannot drift between them; the
 * unit tests (tests/unit/test_seqlock.c) hammer the two sides here.
 *
 * A mount's mappings are one directory, named in the mount's `.shm` file:
 *
 *   DIR/instance   struct ks_shm_instance: whose mappings these are, and
 *                  whether that daemon still lives
 *   DIR/INO        struct ks_shm_state, then two slots: one state, INO
 *                  being the inode number (st_ino) of its directory
 *
 * All integers are in the host's byte order (the files never leave it).
 *
 * The sequence lock.  One writer per state (the daemon, under the state's
 * lock) and any number of readers, who never block it and never wait for
 * it.  Publication n goes into slot n % 2, so the newest page is never the
 * one being overwritten: a slot is only rewritten two publications after
 * it was the newest, and a reader copying it then sees the slot's own
 * counter move and tries again.  A slot's counter is odd while the slot is
 * being written, and goes up by 2 per publication into it: after
 * publication n, slot n % 2's counter is n rounded up to even.  A reader
 * loads the header's seq n (acquire), takes slot n % 2, loads its counter
 * (acquire) and tries again unless it is exactly that: odd is a write in
 * progress, and larger is a writer that lapped the reader (publications
 * n + 1 and n + 2 done) but has not yet raised the header's seq, whose
 * page a later read could not be sure to see again (it would load seq
 * n + 1 and go back a version).  It then copies the slot, and loads the
 * counter again after an acquire fence: unchanged means the copy is
 * publication n whole, whatever the page's size, and publication n was
 * the newest when the read began.
 */
#ifndef KSTATEFS_CORE_SHM_LAYOUT_H
#define KSTATEFS_CORE_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KS_SHM_MAGIC "kstatefs"         /* 8 bytes, no terminator */
#define KS_SHM_LAYOUT 1u
#define KS_SHM_KIND_INSTANCE 1u
#define KS_SHM_KIND_STATE 2u
#define KS_SHM_ID_LEN 16                /* random bytes per daemon */
#define KS_SHM_INSTANCE_SIZE 4096
/* The Linux robust-futex bit the kernel sets in a word whose owner thread
 * died holding it (FUTEX_OWNER_DIED), and the owner's thread id bits. */
#define KS_SHM_OWNER_DIED 0x40000000u
#define KS_SHM_OWNER_TID 0x3fffffffu

/* DIR/instance: 4096 bytes. */
struct ks_shm_instance {
	char magic[8];                  /* KS_SHM_MAGIC */
	uint32_t layout;                /* KS_SHM_LAYOUT */
	uint32_t kind;                  /* KS_SHM_KIND_INSTANCE */
	uint8_t id[KS_SHM_ID_LEN];      /* also DIR's name, in hex */
	uint8_t pad0[32];
	/* Offset 64.  The daemon's liveness, a robust futex word: the
	 * thread id of a thread of the daemon that lives as long as it
	 * does, which registered this word on its robust list.  0 before
	 * the mount serves and after a clean unmount; if the daemon dies
	 * in any other way (kill -9), the kernel sets KS_SHM_OWNER_DIED in
	 * it as the thread exits, before any other daemon can mount.  Live
	 * means: TID bits set and KS_SHM_OWNER_DIED clear. */
	_Atomic uint32_t owner;
	uint32_t pad1;
	/* The one entry of that thread's robust list, which the kernel
	 * walks at the thread's exit: its next is the list's head, in the
	 * daemon's memory, and its futex word is `owner`, at
	 * KS_SHM_ROBUST_OFFSET from it.  Readers ignore it. */
	uint64_t robust_next;
};

#define KS_SHM_ROBUST_OFFSET                                               \
	((long)offsetof(struct ks_shm_instance, owner) -                  \
	 (long)offsetof(struct ks_shm_instance, robust_next))

/* DIR/INO: this header (128 bytes), then slot 0 at offset 128 and slot 1
 * at 128 + slot_size. */
struct ks_shm_state {
	char magic[8];                  /* KS_SHM_MAGIC */
	uint32_t layout;                /* KS_SHM_LAYOUT */
	uint32_t kind;                  /* KS_SHM_KIND_STATE */
	uint8_t id[KS_SHM_ID_LEN];      /* the instance's */
	uint64_t ino;                   /* the state directory's st_ino */
	uint64_t max_size;              /* room for bytes in a slot */
	uint64_t slot_size;             /* 64 + max_size, rounded up to 64 */
	uint8_t pad0[8];
	/* Offset 64: publications so far; the newest is in slot seq % 2.
	 * 0: nothing published yet. */
	_Atomic uint64_t seq;
	/* 1 while the state exists and its daemon serves it; 0 once it is
	 * deleted or the daemon unmounts (then the file is unlinked too). */
	_Atomic uint32_t alive;
	uint8_t pad1[52];
};

/* A slot: 64 bytes, then max_size bytes of page. */
struct ks_shm_slot {
	_Atomic uint64_t seq;           /* odd while being written */
	uint64_t version;
	uint64_t len;                   /* bytes of page, <= max_size */
	int64_t mtime_sec;              /* the version's commit time */
	int64_t mtime_nsec;
	uint8_t pad[24];
	unsigned char bytes[];
};

_Static_assert(sizeof(struct ks_shm_instance) <= KS_SHM_INSTANCE_SIZE,
	       "the instance header fits its file");
_Static_assert(offsetof(struct ks_shm_instance, owner) == 64,
	       "kstate(3) documents the owner word at offset 64");
_Static_assert(sizeof(struct ks_shm_state) == 128,
	       "kstate(3) documents slot 0 at offset 128");
_Static_assert(offsetof(struct ks_shm_state, seq) == 64 &&
		       offsetof(struct ks_shm_state, alive) == 72,
	       "kstate(3) documents seq at 64 and alive at 72");
_Static_assert(sizeof(struct ks_shm_slot) == 64,
	       "kstate(3) documents the page at offset 64 of a slot");

static inline uint64_t ks_shm_slot_size(uint64_t max_size)
{
	return (sizeof(struct ks_shm_slot) + max_size + 63) & ~(uint64_t)63;
}

static inline uint64_t ks_shm_file_size(uint64_t max_size)
{
	return sizeof(struct ks_shm_state) + 2 * ks_shm_slot_size(max_size);
}

static inline struct ks_shm_slot *ks_shm_slot(struct ks_shm_state *h,
					      uint64_t slot_size, uint64_t n)
{
	return (struct ks_shm_slot *)((unsigned char *)h + sizeof(*h) +
				      (n & 1) * slot_size);
}

/* Is the daemon whose instance this is alive? */
static inline bool ks_shm_owner_alive(uint32_t owner)
{
	return (owner & KS_SHM_OWNER_TID) && !(owner & KS_SHM_OWNER_DIED);
}

/*
 * The writer: publishes a page.  One writer at a time per state (the
 * daemon calls it under the state's lock); len <= the header's max_size.
 */
static inline void ks_shm_publish(struct ks_shm_state *h, uint64_t slot_size,
				  const void *bytes, uint64_t len,
				  uint64_t version, int64_t sec, int64_t nsec)
{
	uint64_t n = atomic_load_explicit(&h->seq, memory_order_relaxed) + 1;
	struct ks_shm_slot *s = ks_shm_slot(h, slot_size, n);
	uint64_t c = atomic_load_explicit(&s->seq, memory_order_relaxed);

	atomic_store_explicit(&s->seq, c + 1, memory_order_relaxed);
	/* The odd counter is visible before any byte of the slot changes
	 * (the write side of a seqlock: smp_wmb after the increment). */
	atomic_thread_fence(memory_order_release);
	s->version = version;
	s->len = len;
	s->mtime_sec = sec;
	s->mtime_nsec = nsec;
	if (len)
		memcpy(s->bytes, bytes, len);
	atomic_store_explicit(&s->seq, c + 2, memory_order_release);
	atomic_store_explicit(&h->seq, n, memory_order_release);
}

/* What one attempt of a read got. */
enum ks_shm_read_result {
	KS_SHM_READ_OK,
	KS_SHM_READ_RETRY,   /* a writer overtook the copy: try again */
	KS_SHM_READ_EMPTY,   /* nothing published yet */
	KS_SHM_READ_BAD,     /* a field out of range: not a mapping to trust */
};

/*
 * The reader: one attempt to copy the newest page into buf (cap bytes;
 * a page longer than cap is copied only as far as cap, and *len says how
 * long it is).  max_size is the header's, checked by the caller against
 * the file's size when it mapped it.
 */
static inline enum ks_shm_read_result
ks_shm_read_once(struct ks_shm_state *h, uint64_t slot_size,
		 uint64_t max_size, void *buf, size_t cap, uint64_t *len,
		 uint64_t *version)
{
	uint64_t n = atomic_load_explicit(&h->seq, memory_order_acquire);
	struct ks_shm_slot *s;
	uint64_t c1, c2, l, v;

	if (n == 0)
		return KS_SHM_READ_EMPTY;
	s = ks_shm_slot(h, slot_size, n);
	c1 = atomic_load_explicit(&s->seq, memory_order_acquire);
	if (c1 != ((n + 1) & ~(uint64_t)1))
		return KS_SHM_READ_RETRY;  /* being written, or lapped */
	v = s->version;
	l = s->len;
	/* A length read while a writer overtook us may be anything: it is
	 * only used once bounded, and the counter decides if it was real. */
	if (l <= max_size && buf)
		memcpy(buf, s->bytes, l < cap ? l : cap);
	atomic_thread_fence(memory_order_acquire);
	c2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
	if (c1 != c2)
		return KS_SHM_READ_RETRY;
	if (l > max_size)
		return KS_SHM_READ_BAD;
	*len = l;
	*version = v;
	return KS_SHM_READ_OK;
}

#endif

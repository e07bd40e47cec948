/*
 * libkstate: use kstatefs states from C.
 *
 * A state is a directory on a kstatefs mount holding `data` (the committed
 * page) and `version` (a counter raised by every commit).  This library
 * works only through those files: reads are reads of `data`, waiting is
 * poll() on `version`, and a transaction is pread, pwrite and fsync on a
 * read-write open of `data` that the handle keeps (fsync commits, or fails
 * with EAGAIN); transactions over several states use the mount's .txn/.
 * Anything it does can be done from a shell, and the two interoperate.
 * On the daemon's own host, kstate_read, kstate_version and
 * kstate_read_ptr read the state's shared mapping instead, with no request
 * to the daemon and the same guarantees (SPEC 8); where there is none they
 * read the files.
 *
 * Errors: functions return -1 (or NULL) and set errno, as libc does.  A
 * NULL handle, to any function but kstate_unsubscribe, is EINVAL.
 * Threads: a state handle may be used by many threads at once.  A
 * transaction belongs to one thread at a time.
 *
 * See kstate(3).
 */
#ifndef KSTATE_H
#define KSTATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for kstate_subscribe. */
#define KSTATE_READ  0x1u
#define KSTATE_WRITE 0x2u  /* also creates the state if it does not exist */

/* The retry argument of kstate_transaction_using_fn: retry without limit. */
#define KSTATE_RETRY_FOREVER (-1)

struct kstate;        /* a subscription to one state */
struct kstate_txn;    /* one transaction on a state */
struct kstate_multi;  /* one transaction over several states */

/* ---- states -------------------------------------------------------------- */

/* Opens the state whose directory is PATH (e.g. "/mnt/state/counter"), a
 * directory at the root of a kstatefs mount, or a throttled view of one
 * (NAME/every/PERIOD, for reading).  With KSTATE_WRITE the state is
 * created if it does not exist, at the root of a mount only.
 * ENOENT: no such state, or PATH is no state of a kstatefs mount: a
 * directory elsewhere (even one holding data and version files), the root,
 * a file (.stats, NAME/data), or with KSTATE_WRITE a new name anywhere but
 * at a root (NAME/new is not made). */
struct kstate *kstate_subscribe(const char *path, unsigned flags);

/* Closes the handle.  Transactions still open on it must be committed or
 * aborted first.  NULL is allowed. */
void kstate_unsubscribe(struct kstate *state);

/* A file descriptor that polls readable, with POLLPRI, once a version newer
 * than the one last read through this handle (kstate_version, kstate_read)
 * has been committed: poll it, then read, then poll again.  It belongs to the
 * handle: do not read or close it.  For one event loop; threads that block
 * should call kstate_wait instead. */
int kstate_fd(const struct kstate *state);

/* Stores the current version in *VERSION: 0 before the first commit. */
int kstate_version(struct kstate *state, uint64_t *version);

/* Copies the current page into BUF and returns its length; VERSION, if not
 * NULL, receives the version of exactly that page.  ERANGE if the page is
 * longer than SIZE; with BUF NULL and SIZE 0, returns the page's length. */
ssize_t kstate_read(struct kstate *state, void *buf, size_t size,
		    uint64_t *version);

/* The current page, for reading in place: the seed API's
 * kstate_get_ptr(state), which C11 callers may also write (see below).
 * Returns a pointer to a copy of one whole committed version, owned by the
 * handle and valid until the next kstate_read_ptr on it (or
 * kstate_unsubscribe); LENGTH and VERSION, if not NULL, receive its length
 * and version.  The copy holds at least 4096 bytes (max_size on a mount
 * with larger pages, or the page's length if longer), zero past the page,
 * so a fixed-size struct can be read from it before the first commit.
 * Not a pointer into the shared mapping itself: the next commit but one
 * rewrites that memory, and a reader must never see a page change under
 * it.  NULL with errno on failure.  Calls on one handle are serialized. */
const void *kstate_read_ptr(struct kstate *state, size_t *length,
			    uint64_t *version);

/* Waits until the version exceeds AFTER, stores it in *VERSION (which may be
 * NULL) and returns 0.  TIMEOUT_MS as for poll(): -1 waits forever.
 * ETIMEDOUT when the time is up, EINTR if a signal handler ran. */
int kstate_wait(struct kstate *state, uint64_t after, int timeout_ms,
		uint64_t *version);

/* ---- transactions -------------------------------------------------------- */

/* Begins a transaction: a private copy of the page as it is now, in the
 * caller's memory (the daemon's -o max_txns does not count it).  Needs a
 * handle subscribed with KSTATE_WRITE (EBADF otherwise). */
struct kstate_txn *kstate_start_transaction(struct kstate *state);

/* The transaction's page: edit it in place.  It holds kstate_get_length()
 * bytes and stays valid until the transaction ends or its length is set.
 * Given a NULL TXN, both return NULL (or 0) with errno EINVAL. */
void *kstate_get_ptr(struct kstate_txn *txn);

size_t kstate_get_length(const struct kstate_txn *txn);

/* Makes the page LENGTH bytes long: shortens it, or extends it with zero
 * bytes.  The page may move: call kstate_get_ptr again afterwards.  A page
 * larger than the mount allows fails at commit, with EFBIG; one larger
 * than memory allows fails here, with ENOMEM, and the page is as it was. */
int kstate_set_length(struct kstate_txn *txn, size_t length);

/* Commits: 0 if nobody committed since the transaction began, and the page
 * becomes the state's next version (even if unchanged or empty).  Otherwise -1 with
 * errno EAGAIN, or another errno (EFBIG: the page is too large), and the
 * state is as it was.  The transaction is over either way: TXN is freed. */
int kstate_commit(struct kstate_txn *txn);

/* Throws the transaction away and frees TXN. */
int kstate_abort(struct kstate_txn *txn);

/* The body of a transaction: edit PAGE (kstate_get_ptr(TXN)) and return 0
 * to commit; any other value aborts, and kstate_transaction_using_fn returns
 * it unchanged (return -1 with errno set to report an error). */
typedef int kstate_txn_fn(struct kstate_txn *txn, void *page, void *arg);

/* Runs FN in a transaction and commits.  On a conflict (EAGAIN) it backs off
 * for a random, exponentially growing time and runs FN again in a new
 * transaction, at most RETRY more times (0: once; KSTATE_RETRY_FOREVER: no
 * limit; less is EINVAL); FN must therefore expect to run more than once.
 * Returns 0 once a commit succeeded, FN's value if FN aborted, or -1 with
 * errno (EAGAIN when the retries ran out). */
int kstate_transaction_using_fn(struct kstate *state, kstate_txn_fn *fn,
				void *arg, int retry);

/* ---- transactions over several states ------------------------------------ */

/* Begins a transaction over the N states of STATES (N >= 1; handles on one
 * mount, each state once): a private copy of each page, all committed
 * together or not at all.  A member whose handle lacks KSTATE_WRITE may be
 * read, not changed.  EINVAL: a NULL handle, N == 0, a state given twice,
 * a throttled view (it cannot be read as of the transaction's instant);
 * EXDEV: states on different mounts; ENOENT: a state deleted, or renamed
 * since it was subscribed. */
struct kstate_multi *kstate_multi_begin(struct kstate *const states[],
					size_t n);

/* Member I (0 to N-1, in the order given): a transaction for
 * kstate_get_ptr, kstate_get_length and kstate_set_length, which ends with
 * M (kstate_commit and kstate_abort refuse it, with EINVAL). */
struct kstate_txn *kstate_multi_member(struct kstate_multi *m, size_t i);

/* Commits.  The members were all read as of one instant, the begin (a
 * consistent snapshot).  A transaction that changed nothing always
 * returns 0 and commits nothing.  One that changed a member returns 0 if
 * no member's state was committed to since that instant; then every
 * member whose page changed (its bytes or its length) becomes its state's
 * next version, all at once, and the others keep theirs.  Otherwise -1
 * with errno EAGAIN (or EFBIG, or EBADF: a changed member of a read-only
 * handle), and nothing changed.  M is freed either way. */
int kstate_multi_commit(struct kstate_multi *m);

/* Throws the transaction away and frees M. */
int kstate_multi_abort(struct kstate_multi *m);

/* The body of a transaction over several states: TXN[i] is the member of
 * STATES[i]; return 0 to commit, anything else to abort, as for
 * kstate_txn_fn. */
typedef int kstate_multi_fn(struct kstate_txn *const txn[], size_t n,
			    void *arg);

/* kstate_transaction_using_fn over several states: runs FN in a
 * transaction over STATES and commits; on a conflict backs off and runs it
 * again, at most RETRY more times.  Returns 0, FN's value, or -1. */
int kstate_multi_using_fn(struct kstate *const states[], size_t n,
			  kstate_multi_fn *fn, void *arg, int retry);

#ifdef __cplusplus
}
#endif

/* kstate_get_ptr on a state handle (const or not) reads, as
 * kstate_read_ptr(state, NULL, NULL); on a transaction it edits, as in the
 * seed API.  An untyped pointer (void *, NULL included) could be either: it
 * is refused, with NULL and errno EINVAL.  Any other type does not compile.
 * KSTATE_NO_GENERIC leaves kstate_get_ptr a plain function. */
#if !defined(__cplusplus) && defined(__STDC_VERSION__) &&                 \
	__STDC_VERSION__ >= 201112L && !defined(KSTATE_NO_GENERIC)
/* The handle is never a const object (kstate_subscribe allocates it): a
 * const one only promises that the caller does not change it.  Through
 * uintptr_t, so that -Wcast-qual has nothing to say. */
static inline void *kstate_state_ptr_(const struct kstate *state)
{
	return (void *)(uintptr_t)kstate_read_ptr(
		(struct kstate *)(uintptr_t)state, NULL, NULL);
}

static inline void *kstate_untyped_ptr_(const void *handle)
{
	(void)handle;
	return (kstate_get_ptr)((struct kstate_txn *)0);  /* EINVAL */
}

/* No default: a type not listed is a compile error. */
#define kstate_get_ptr(h)                                                  \
	_Generic((h), struct kstate *: kstate_state_ptr_,                  \
		 const struct kstate *: kstate_state_ptr_,                 \
		 struct kstate_txn *: (kstate_get_ptr),                    \
		 void *: kstate_untyped_ptr_)(h)
#endif

#endif /* KSTATE_H */

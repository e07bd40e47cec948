/*
 * An immutable, reference-counted version of a state's page.  A commit
 * builds a new page and swaps the state's pointer; readers that pinned the
 * old one keep it until they drop their reference, so a reader always sees
 * one whole version and nobody copies under a lock.
 */
#ifndef KSTATEFS_CORE_PAGE_H
#define KSTATEFS_CORE_PAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ks_page {
	atomic_uint refs;
	uint64_t version;
	struct timespec mtime;   /* when this version was committed */
	size_t len;
	unsigned char bytes[];
};

/* A new page holding a copy of len bytes (bytes may be NULL: zeros), with
 * one reference.  NULL if memory is short. */
struct ks_page *ks_page_new(const void *bytes, size_t len, uint64_t version,
			    const struct timespec *mtime);
struct ks_page *ks_page_ref(struct ks_page *page);
void ks_page_unref(struct ks_page *page);

#endif

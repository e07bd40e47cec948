/*
 * The open files and directories the kernel holds handles of.
 *
 * A handle is normally freed at its RELEASE (or RELEASEDIR).  But the
 * kernel sends the release of a file closed after the mount left the
 * namespace (umount -l, or a process killed while holding the last file)
 * in the background, and drops it when the connection ends first: the
 * daemon never hears of it.  So every handle replied to open or opendir
 * is linked here until its release, and those still here when the
 * session has ended are freed at exit (open_files_free_left).  A write
 * to data is committed at the close's FLUSH, which the kernel does send
 * and wait for; only what waits for the release (the emptiness of an
 * O_TRUNC open that wrote nothing, kind_data.c) is lost with it.
 */
#ifndef KSTATEFS_FS_OPEN_FILES_H
#define KSTATEFS_FS_OPEN_FILES_H

#include <stddef.h>

#include "lock.h"

struct ks_daemon;

/* A link in one of the two lists, inside each handle and listing. */
struct ks_open_link {
	struct ks_open_link *prev, *next;
};

struct ks_open_files {
	struct ks_lock lock;       /* a leaf: nothing is taken under it */
	struct ks_open_link files; /* struct ks_fh (handle.h) */
	struct ks_open_link dirs;  /* struct ks_listing (listing.c) */
};

void open_files_init(struct ks_daemon *d);
/* Links an open file's or directory's handle into its list. */
void open_files_add_file(struct ks_daemon *d, struct ks_open_link *link);
void open_files_add_dir(struct ks_daemon *d, struct ks_open_link *link);
/* Unlinks it at its release; a link never added is left alone. */
void open_files_remove(struct ks_daemon *d, struct ks_open_link *link);
/* At exit, once no request can run: frees every handle whose release
 * never came; returns how many. */
size_t open_files_free_left(struct ks_daemon *d);
void open_files_destroy(struct ks_daemon *d);

#endif

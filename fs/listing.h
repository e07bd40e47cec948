/*
 * Directory listings.  opendir takes a snapshot of the names, so that a
 * listing read in several calls is consistent while states and
 * transactions come and go.
 */
#ifndef KSTATEFS_FS_LISTING_H
#define KSTATEFS_FS_LISTING_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/stat.h>

struct ks_daemon;
struct ks_inode;
struct ks_listing;

/* NULL if out of memory. */
struct ks_listing *listing_new(fuse_req_t req);
/* Adds an entry; a failure is remembered for listing_error. */
void listing_add(struct ks_listing *l, const char *name, uint64_t ino,
		 mode_t type);
int listing_error(const struct ks_listing *l);
void listing_free(struct ks_listing *l);
/* Replies to opendir with l as the directory's handle, which takes over
 * the caller's reference to dir; frees both if the reply fails. */
void listing_reply_open(struct ks_daemon *d, fuse_req_t req,
			struct fuse_file_info *fi, struct ks_listing *l,
			struct ks_inode *dir);
void listing_read(fuse_req_t req, struct fuse_file_info *fi, size_t size,
		  off_t off);
void listing_release(struct ks_daemon *d, struct fuse_file_info *fi);
/* Frees an open listing whose release never came (open_files.c). */
struct ks_open_link;
void listing_free_open(struct ks_daemon *d, struct ks_open_link *link);

#endif

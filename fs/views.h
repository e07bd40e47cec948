/*
 * Throttled views, NAME/every/PERIOD: a view shows a version of its state
 * and moves on to the latest at most once per period.  This is the views
 * themselves and the thread that moves them; their files are kind_views.c.
 */
#ifndef KSTATEFS_FS_VIEWS_H
#define KSTATEFS_FS_VIEWS_H

#include <stdint.h>

struct ks_daemon;
struct ks_page;
struct ks_state;
struct ks_view;

int views_init(struct ks_daemon *d);
/* The thread starts after the daemon forked away from its parent. */
int views_start(struct ks_daemon *d);
void views_stop(struct ks_daemon *d);
void views_free(struct ks_daemon *d);

/* The view name (a PERIOD) of st, found or made, with a reference
 * (view_unref); ENOENT if name is not a period. */
int views_get(struct ks_daemon *d, struct ks_state *st, const char *name,
	      struct ks_view **out);
/* A view file opened (readers and pollers keep a view listed), and
 * closed. */
void view_opened(struct ks_view *v);
void view_closed(struct ks_view *v);
/* Calls fn for each view of st in use, under the views lock: one with an
 * open file, or looked up in the last VIEW_IDLE_NS.  The others are
 * forgotten: left out, and dropped from the kernel's cache (views.c). */
void views_foreach(struct ks_daemon *d, struct ks_state *st,
		   void (*fn)(void *arg, const char *name, uint64_t ino),
		   void *arg);
/* A commit of st: views that lag behind schedule their next move. */
void views_on_commit(struct ks_daemon *d, struct ks_state *st);
unsigned views_count(struct ks_daemon *d);

/* Takes no lock: the caller holds a reference already. */
struct ks_view *view_ref(struct ks_view *v);
void view_unref(struct ks_daemon *d, struct ks_view *v);
/* The version shown now, with a reference. */
struct ks_page *view_shown(struct ks_view *v);
/* The view directory's inode number; data is +1, version +2. */
uint64_t view_ino(const struct ks_view *v);
/* The poll table key of the view's version file. */
uint64_t view_version_key(const struct ks_view *v);

#endif

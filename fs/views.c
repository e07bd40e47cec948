/*
 * Throttled views: NAME/every/PERIOD/{data,version} (their files are
 * kind_views.c).
 *
 * A view shows a version of its state and moves on to the latest at most
 * once per period.  It exists while the kernel or an open file refers to
 * it.  An idle view costs nothing: a commit schedules the view's next move
 * (no sooner than one period after its last), and one thread serves every
 * scheduled view, waiting for the earliest due time.  A move wakes the
 * view's pollers and makes its inotify event, like a commit does for the
 * state's own version.
 *
 * The kernel keeps a looked-up entry (and so the view) for as long as it
 * likes, so `ls every` would list views nobody reads any more.  A view
 * with no open file is forgotten VIEW_IDLE_NS after its last lookup or
 * close: left out of listings, and its entry dropped from the kernel's
 * cache (the views thread, which serves no request, does that), so the
 * kernel's forget frees it.  Looking it up again brings it back.
 */
#include "views.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "lock.h"
#include "notifier.h"
#include "period.h"

#define NSEC PERIOD_NSEC

/* How long a view with no open file stays listed after its last use. */
#define VIEW_IDLE_NS (2 * NSEC)

struct ks_view {
	atomic_uint refs;           /* dropped to 0 under views->lock */
	struct ks_views *vs;
	struct ks_state *st;        /* a reference */
	char name[32];              /* the PERIOD as looked up */
	uint64_t period;            /* ns */
	uint64_t ino;               /* the directory; data +1, version +2 */
	struct ks_page *shown;
	uint64_t last_move;         /* CLOCK_MONOTONIC ns */
	bool scheduled;
	uint64_t due;
	/* Under views->lock: */
	unsigned open;              /* open files of data and version; a
				     * failed open after ours (the state gone)
				     * may leave it counted, harmlessly */
	uint64_t last_used;         /* last lookup or close, monotonic ns */
	bool forgotten;             /* idle: not listed, entry dropped */
	struct ks_view *next;       /* the state's views */
};

struct ks_views {
	struct ks_lock lock;
	pthread_cond_t cond;        /* on CLOCK_MONOTONIC */
	pthread_t thread;
	bool started, stop;
	bool idle_pending;          /* some views wait to be forgotten */
	struct u64map by_state;     /* state id -> first view */
	unsigned count;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

/* Takes no lock (inode_lock may be held): the caller holds a reference
 * already, so the view cannot be going away. */
struct ks_view *view_ref(struct ks_view *v)
{
	atomic_fetch_add(&v->refs, 1);
	return v;
}

static void unlist_locked(struct ks_views *vs, struct ks_view *v)
{
	uint64_t id = ks_state_id(v->st);
	struct ks_view *head;

	ks_lock_assert_held(&vs->lock);
	head = u64map_get(&vs->by_state, id);
	if (head == v) {
		if (v->next)
			u64map_put(&vs->by_state, id, v->next);
		else
			u64map_del(&vs->by_state, id);
	} else {
		while (head && head->next != v)
			head = head->next;
		if (head)
			head->next = v->next;
	}
	vs->count--;
}

void view_unref(struct ks_daemon *d, struct ks_view *v)
{
	struct ks_views *vs = d->views;

	/* The last reference goes under the lock that find_or_make takes
	 * references under, so a view is never found while it is freed. */
	ks_lock(&vs->lock);
	if (atomic_fetch_sub(&v->refs, 1) != 1) {
		ks_unlock(&vs->lock);
		return;
	}
	unlist_locked(vs, v);
	ks_unlock(&vs->lock);
	ks_page_unref(v->shown);
	ks_state_unref(v->st);
	free(v);
}

uint64_t view_ino(const struct ks_view *v)
{
	return v->ino;
}

uint64_t view_version_key(const struct ks_view *v)
{
	return v->ino + 2;
}

struct ks_page *view_shown(struct ks_view *v)
{
	struct ks_page *page;

	ks_lock(&v->vs->lock);
	page = ks_page_ref(v->shown);
	ks_unlock(&v->vs->lock);
	return page;
}

void view_opened(struct ks_view *v)
{
	ks_lock(&v->vs->lock);
	v->open++;
	v->forgotten = false;
	ks_unlock(&v->vs->lock);
}

void view_closed(struct ks_view *v)
{
	struct ks_views *vs = v->vs;

	ks_lock(&vs->lock);
	if (v->open)
		v->open--;
	v->last_used = now_ns();
	if (!v->open) {
		/* The thread now has an idle view to time out. */
		vs->idle_pending = true;
		pthread_cond_signal(&vs->cond);
	}
	ks_unlock(&vs->lock);
}

unsigned views_count(struct ks_daemon *d)
{
	unsigned n;

	ks_lock(&d->views->lock);
	n = d->views->count;
	ks_unlock(&d->views->lock);
	return n;
}

/* Finds or makes the view NAME of st; views->lock held.  The caller takes
 * its reference through the inode it makes. */
static struct ks_view *find_or_make(struct ks_daemon *d, struct ks_state *st,
				    const char *name, uint64_t period,
				    uint64_t ino)
{
	struct ks_views *vs = d->views;
	uint64_t id = ks_state_id(st);
	struct ks_view *v;

	ks_lock_assert_held(&vs->lock);
	for (v = u64map_get(&vs->by_state, id); v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->vs = vs;
	v->st = ks_state_ref(st);
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->period = period;
	v->ino = ino;
	v->shown = ks_state_current(st);
	v->last_move = now_ns();
	v->last_used = v->last_move;
	v->next = u64map_get(&vs->by_state, id);
	if (u64map_put(&vs->by_state, id, v)) {
		ks_page_unref(v->shown);
		ks_state_unref(v->st);
		free(v);
		return NULL;
	}
	vs->count++;
	return v;
}

int views_get(struct ks_daemon *d, struct ks_state *st, const char *name,
	      struct ks_view **out)
{
	struct ks_views *vs = d->views;
	uint64_t period = period_parse(name), ino;
	struct ks_view *v;

	if (!period || strlen(name) >= sizeof(v->name))
		return ENOENT;
	/* Numbers taken before vs->lock (inode_lock is never taken under
	 * it); wasted if the view exists. */
	ino = inode_alloc_ino(d, 3);
	ks_lock(&vs->lock);
	v = find_or_make(d, st, name, period, ino);
	if (v) {
		atomic_fetch_add(&v->refs, 1);
		/* Looked up: in use again, for VIEW_IDLE_NS at least. */
		v->last_used = now_ns();
		v->forgotten = false;
		vs->idle_pending = true;
		pthread_cond_signal(&vs->cond);
	}
	ks_unlock(&vs->lock);
	*out = v;
	return v ? 0 : ENOMEM;
}

void views_foreach(struct ks_daemon *d, struct ks_state *st,
		   void (*fn)(void *arg, const char *name, uint64_t ino),
		   void *arg)
{
	struct ks_views *vs = d->views;

	ks_lock(&vs->lock);
	for (struct ks_view *v = u64map_get(&vs->by_state, ks_state_id(st)); v;
	     v = v->next)
		if (!v->forgotten)
			fn(arg, v->name, v->ino);
	ks_unlock(&vs->lock);
}

void views_on_commit(struct ks_daemon *d, struct ks_state *st)
{
	struct ks_views *vs = d->views;
	uint64_t now = now_ns();
	bool wake = false;

	ks_lock(&vs->lock);
	for (struct ks_view *v = u64map_get(&vs->by_state, ks_state_id(st)); v;
	     v = v->next) {
		if (v->scheduled)
			continue;
		v->scheduled = true;
		v->due = v->last_move + v->period;
		if (v->due < now)
			v->due = now;
		wake = true;
	}
	if (wake)
		pthread_cond_signal(&vs->cond);
	ks_unlock(&vs->lock);
}

/* The scheduled view due first, or NULL; views->lock held. */
static struct ks_view *earliest(struct ks_views *vs)
{
	struct ks_view *first = NULL;
	struct u64map_iter it;
	void *head;

	ks_lock_assert_held(&vs->lock);
	u64map_iter_init(&it, &vs->by_state);
	while (u64map_next(&it, NULL, &head))
		for (struct ks_view *v = head; v; v = v->next)
			if (v->scheduled && (!first || v->due < first->due))
				first = v;
	return first;
}

/* The idle view to forget first (due soonest), or NULL; views->lock
 * held.  Clears idle_pending once none is left to time out. */
static struct ks_view *earliest_idle(struct ks_views *vs)
{
	struct ks_view *first = NULL;
	struct u64map_iter it;
	void *head;

	ks_lock_assert_held(&vs->lock);
	if (!vs->idle_pending)
		return NULL;
	u64map_iter_init(&it, &vs->by_state);
	while (u64map_next(&it, NULL, &head))
		for (struct ks_view *v = head; v; v = v->next)
			if (!v->open && !v->forgotten &&
			    (!first || v->last_used < first->last_used))
				first = v;
	if (!first)
		vs->idle_pending = false;
	return first;
}

/* Forgets the idle view v (views->lock held, and released meanwhile):
 * unlisted, and its entry dropped from the kernel's cache, outside the
 * lock, for a lookup of the same name may be waiting for it. */
static void forget_view(struct ks_daemon *d, struct ks_view *v)
{
	struct ks_views *vs = d->views;
	char name[sizeof(v->name)];
	uint64_t every;

	ks_lock_assert_held(&vs->lock);
	v->forgotten = true;
	if (!d->se)
		return;
	memcpy(name, v->name, sizeof(name));
	every = inode_state_ino(v->st, ROLE_EVERY);
	ks_unlock(&vs->lock);
	fuse_lowlevel_notify_inval_entry(d->se, every, name, strlen(name));
	ks_lock(&vs->lock);
}

static void *views_main(void *arg)
{
	struct ks_daemon *d = arg;
	struct ks_views *vs = d->views;

	ks_lock(&vs->lock);
	while (!vs->stop) {
		struct ks_view *v = earliest(vs);
		struct ks_view *idle = earliest_idle(vs);
		struct ks_page *old;
		uint64_t now = now_ns(), version, wake = 0;
		struct timespec until;

		if (idle && idle->last_used + VIEW_IDLE_NS <= now) {
			forget_view(d, idle);
			continue;
		}
		if (idle)
			wake = idle->last_used + VIEW_IDLE_NS;
		if (v && (!wake || v->due < wake))
			wake = v->due;
		if (!wake) {
			ks_cond_wait(&vs->cond, &vs->lock);
			continue;
		}
		if (!v || v->due > now) {
			until.tv_sec = (time_t)(wake / NSEC);
			until.tv_nsec = (long)(wake % NSEC);
			ks_cond_timedwait(&vs->cond, &vs->lock, &until);
			continue;
		}
		/* Move on to the latest version. */
		v->scheduled = false;
		v->last_move = now;
		old = v->shown;
		v->shown = ks_state_current(v->st);
		version = v->shown->version;
		atomic_fetch_add(&v->refs, 1);
		ks_unlock(&vs->lock);

		ks_page_unref(old);
		poll_wake(d, view_version_key(v), version);
		notifier_post(d, v->st, v->name, view_version_key(v));
		view_unref(d, v);
		ks_lock(&vs->lock);
	}
	ks_unlock(&vs->lock);
	return NULL;
}

/* The thread starts after the daemon forked away from its parent. */
int views_start(struct ks_daemon *d)
{
	struct ks_views *vs = d->views;
	int err;

	err = pthread_create(&vs->thread, NULL, views_main, d);
	vs->started = err == 0;
	return err;
}

int views_init(struct ks_daemon *d)
{
	struct ks_views *vs = calloc(1, sizeof(*vs));
	pthread_condattr_t ca;

	if (!vs)
		return ENOMEM;
	ks_lock_init(&vs->lock, "views->lock", KS_RANK_FS_VIEWS);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vs->cond, &ca);
	pthread_condattr_destroy(&ca);
	u64map_init(&vs->by_state);
	d->views = vs;
	return 0;
}

void views_stop(struct ks_daemon *d)
{
	struct ks_views *vs = d->views;

	if (!vs || !vs->started)
		return;
	ks_lock(&vs->lock);
	vs->stop = true;
	pthread_cond_signal(&vs->cond);
	ks_unlock(&vs->lock);
	pthread_join(vs->thread, NULL);
	vs->started = false;
}

void views_free(struct ks_daemon *d)
{
	struct ks_views *vs = d->views;

	if (!vs)
		return;
	/* Every view belonged to an inode or open file, freed by now. */
	u64map_free(&vs->by_state);
	pthread_cond_destroy(&vs->cond);
	ks_lock_destroy(&vs->lock);
	free(vs);
	d->views = NULL;
}

/*
 * The notifier: makes inotify events for commits by writing to `version`
 * through the mount, from a child process that serves no requests (see
 * notifier.c for why), named kstatefs-notify, started again if it dies.
 */
#ifndef KSTATEFS_FS_NOTIFIER_H
#define KSTATEFS_FS_NOTIFIER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ks_daemon;
struct ks_state;

/* After the daemon forked away from its parent, with d->dev set. */
int notifier_start(struct ks_daemon *d);
/* Queues a write to a version file: the state's own (view NULL), or its
 * view's with that PERIOD name.  key: one write per key at a time. */
void notifier_post(struct ks_daemon *d, struct ks_state *st,
		   const char *view, uint64_t key);
void notifier_stop(struct ks_daemon *d);
/* Whether pid is the notifier's writer. */
bool notifier_is_self(struct ks_daemon *d, pid_t pid);
/* How many times a child that died was replaced (.stats). */
uint64_t notifier_restarts(struct ks_daemon *d);

/* The notifier's child runs the daemon's binary under its own name: main
 * asks first whether it is that child, and if so becomes it (never
 * returns). */
bool notifier_child_requested(int argc, char *argv[]);
_Noreturn void notifier_child_main(int argc, char *argv[]);

#endif

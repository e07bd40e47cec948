/*
 * The event stream behind .events: a bounded ring of text lines, shared by
 * every reader.  A reader is a cursor (a sequence number); one that falls
 * more than the ring's capacity behind gets an `overflow` line and goes on
 * with the newest events (the ring's whole content, oldest first), so
 * memory stays bounded whatever the readers do.
 */
#ifndef KSTATEFS_CORE_EVENTS_H
#define KSTATEFS_CORE_EVENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lock.h"

#define KS_EVENTS_CAPACITY 4096

/* Room for any event line: a state name (255 bytes), a word, a version. */
#define KS_EVENT_LINE_MAX 320

/* The lines of the stream (SPEC 6), formatted here so that every producer
 * writes them alike: "commit NAME VERSION\n", and "create NAME\n" /
 * "delete NAME\n" (what is "create" or "delete"). */
void ks_event_commit_line(char *buf, size_t len, const char *name,
			  uint64_t version);
void ks_event_name_line(char *buf, size_t len, const char *what,
			const char *name);

/* Who may see an event.  A commit tells of a state's page: it is for
 * those who may read the state's version (the read and search bits of
 * their class in its mode; root always).  Lines about names are
 * everyone's, as the root's listing is. */
struct ks_event_audience {
	bool restricted;       /* false: everyone */
	uid_t uid;             /* the state's owner, group and mode */
	gid_t gid;
	mode_t mode;
};

/* A reader, as its credentials were when it opened the stream. */
struct ks_event_reader {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;   /* supplementary groups */
	size_t ngroups;
};

struct ks_events {
	struct ks_lock lock;
	char **lines;          /* lines[seq % cap], each ending in '\n' */
	struct ks_event_audience *audience; /* audience[seq % cap] */
	size_t cap;
	uint64_t next;         /* sequence number of the next event */
	uint64_t dropped;      /* events readers lost to overflow */
};

int ks_events_init(struct ks_events *ev, size_t cap);
void ks_events_destroy(struct ks_events *ev);

/* Appends lines[0..n) as consecutive events, each for audience[i]
 * (audience NULL: all for everyone).  A line that cannot be allocated is
 * lost to every reader as an overflow. */
void ks_events_append(struct ks_events *ev, const char *const *lines,
		      const struct ks_event_audience *audience, size_t n);

/* The cursor of a reader that opens now: it sees what comes next. */
uint64_t ks_events_end(struct ks_events *ev);

/* Copies whole lines after *cursor that reader may see into buf (at most
 * len bytes; at least one line if len allows it), advancing *cursor past
 * those it may not.  reader NULL sees everything.  Returns the bytes
 * copied: 0 when nothing is pending for it.  A reader that fell behind
 * gets "overflow\n" and its cursor moves to the oldest event still held. */
size_t ks_events_read(struct ks_events *ev, uint64_t *cursor, char *buf,
		      size_t len, const struct ks_event_reader *reader);
bool ks_events_pending(struct ks_events *ev, uint64_t cursor);
uint64_t ks_events_dropped(struct ks_events *ev);

#endif

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

struct ks_events {
	struct ks_lock lock;
	char **lines;          /* lines[seq % cap], each ending in '\n' */
	size_t cap;
	uint64_t next;         /* sequence number of the next event */
	uint64_t dropped;      /* events readers lost to overflow */
};

int ks_events_init(struct ks_events *ev, size_t cap);
void ks_events_destroy(struct ks_events *ev);

/* Appends lines[0..n) as consecutive events.  A line that cannot be
 * allocated is lost to every reader as an overflow. */
void ks_events_append(struct ks_events *ev, const char *const *lines,
		      size_t n);

/* The cursor of a reader that opens now: it sees what comes next. */
uint64_t ks_events_end(struct ks_events *ev);

/* Copies whole lines after *cursor into buf (at most len bytes; at least
 * one line if len allows it), advancing *cursor.  Returns the bytes copied:
 * 0 when nothing is pending.  A reader that fell behind gets "overflow\n"
 * and its cursor moves to the oldest event still held. */
size_t ks_events_read(struct ks_events *ev, uint64_t *cursor, char *buf,
		      size_t len);
bool ks_events_pending(struct ks_events *ev, uint64_t cursor);
uint64_t ks_events_dropped(struct ks_events *ev);

#endif

#include "events.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ks_event_commit_line(char *buf, size_t len, const char *name,
			  uint64_t version)
{
	snprintf(buf, len, "commit %s %" PRIu64 "\n", name, version);
}

void ks_event_name_line(char *buf, size_t len, const char *what,
			const char *name)
{
	snprintf(buf, len, "%s %s\n", what, name);
}

int ks_events_init(struct ks_events *ev, size_t cap)
{
	ev->lines = calloc(cap, sizeof(*ev->lines));
	ev->audience = calloc(cap, sizeof(*ev->audience));
	if (!ev->lines || !ev->audience) {
		free(ev->lines);
		free(ev->audience);
		ev->lines = NULL;
		ev->audience = NULL;
		return ENOMEM;
	}
	ev->cap = cap;
	ev->next = 0;
	ev->dropped = 0;
	ks_lock_init(&ev->lock, "events->lock", KS_RANK_EVENTS);
	return 0;
}

void ks_events_destroy(struct ks_events *ev)
{
	for (size_t i = 0; ev->lines && i < ev->cap; i++)
		free(ev->lines[i]);
	free(ev->lines);
	free(ev->audience);
	ev->lines = NULL;
	ev->audience = NULL;
	ks_lock_destroy(&ev->lock);
}

void ks_events_append(struct ks_events *ev, const char *const *lines,
		      const struct ks_event_audience *audience, size_t n)
{
	static const struct ks_event_audience everyone = { .restricted = false };

	ks_lock(&ev->lock);
	for (size_t i = 0; i < n; i++) {
		char **slot = &ev->lines[ev->next % ev->cap];

		free(*slot);
		*slot = strdup(lines[i]);
		ev->audience[ev->next % ev->cap] =
			audience ? audience[i] : everyone;
		ev->next++;
	}
	ks_unlock(&ev->lock);
}

static bool reader_in_group(const struct ks_event_reader *r, gid_t gid)
{
	if (r->gid == gid)
		return true;
	for (size_t i = 0; i < r->ngroups; i++)
		if (r->groups[i] == gid)
			return true;
	return false;
}

/* As the kernel would let r read the state's version: the search and
 * read bits of r's class (owner, group, others: the first that fits). */
static bool may_see(const struct ks_event_audience *a,
		    const struct ks_event_reader *r)
{
	mode_t bits;

	if (!r || !a->restricted || r->uid == 0)
		return true;
	if (r->uid == a->uid)
		bits = a->mode >> 6;
	else if (reader_in_group(r, a->gid))
		bits = a->mode >> 3;
	else
		bits = a->mode;
	return (bits & 05) == 05;
}

uint64_t ks_events_end(struct ks_events *ev)
{
	uint64_t end;

	ks_lock(&ev->lock);
	end = ev->next;
	ks_unlock(&ev->lock);
	return end;
}

bool ks_events_pending(struct ks_events *ev, uint64_t cursor)
{
	return ks_events_end(ev) > cursor;
}

uint64_t ks_events_dropped(struct ks_events *ev)
{
	uint64_t n;

	ks_lock(&ev->lock);
	n = ev->dropped;
	ks_unlock(&ev->lock);
	return n;
}

size_t ks_events_read(struct ks_events *ev, uint64_t *cursor, char *buf,
		      size_t len, const struct ks_event_reader *reader)
{
	static const char overflow[] = "overflow\n";
	size_t used = 0;

	ks_lock(&ev->lock);
	if (ev->next - *cursor > ev->cap) {
		/* Overwritten before this reader got to them: it goes on
		 * with the newest events, those the ring still holds. */
		ev->dropped += ev->next - ev->cap - *cursor;
		*cursor = ev->next - ev->cap;
		if (len >= sizeof(overflow) - 1) {
			memcpy(buf, overflow, sizeof(overflow) - 1);
			used = sizeof(overflow) - 1;
		}
	}
	while (*cursor < ev->next) {
		const char *line = ev->lines[*cursor % ev->cap];
		size_t n = line ? strlen(line) : 0;

		if (!line) {
			/* Lost to a failed allocation: tell the reader. */
			line = overflow;
			n = sizeof(overflow) - 1;
		} else if (!may_see(&ev->audience[*cursor % ev->cap], reader)) {
			(*cursor)++;
			continue;
		}
		if (used + n > len)
			break;
		memcpy(buf + used, line, n);
		used += n;
		(*cursor)++;
	}
	ks_unlock(&ev->lock);
	return used;
}

/*
 * The log's on-disk format: framing records, their checksums, decoding
 * them back, and the names of the files (STORE.md, "Store layout").
 * Nothing here does I/O.
 */
#include "log.h"
#include "crc32c.h"
#include "recover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char log_seg_magic[LOG_MAGIC_LEN] = "kstatefs log 1\n";
const char log_snap_magic[LOG_MAGIC_LEN] = "kstatefs snap 1\n";

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put_time(unsigned char *p, const struct timespec *ts)
{
	log_put64(p, (uint64_t)ts->tv_sec);
	log_put32(p + 8, (uint32_t)ts->tv_nsec);
}

static int get_time(const unsigned char *p, struct timespec *ts)
{
	ts->tv_sec = (time_t)(int64_t)log_get64(p);
	ts->tv_nsec = (long)log_get32(p + 8);
	return ts->tv_nsec < 1000000000L ? 0 : EINVAL;
}

static size_t payload_len(const struct ks_rec *rec)
{
	switch (rec->type) {
	case KS_REC_CREATE:
		return 12 + LOG_TIME_LEN + strlen(rec->name);
	case KS_REC_DELETE:
		return 0;
	case KS_REC_RENAME:
		return LOG_TIME_LEN + strlen(rec->name);
	case KS_REC_COMMIT:
		return LOG_TIME_LEN + rec->len;
	case KS_REC_ATTR:
		return 12 + LOG_TIME_LEN;
	case KS_REC_CHECK:
		return 0;
	}
	return 0;
}

static void put_payload(unsigned char *p, const struct ks_rec *rec)
{
	switch (rec->type) {
	case KS_REC_CHECK:
		break;
	case KS_REC_CREATE:
	case KS_REC_ATTR:
		log_put32(p, (uint32_t)rec->uid);
		log_put32(p + 4, (uint32_t)rec->gid);
		log_put32(p + 8, (uint32_t)rec->mode);
		put_time(p + 12, &rec->time);
		if (rec->type == KS_REC_CREATE)
			memcpy(p + 24, rec->name, strlen(rec->name));
		break;
	case KS_REC_DELETE:
		break;
	case KS_REC_RENAME:
		put_time(p, &rec->time);
		memcpy(p + LOG_TIME_LEN, rec->name, strlen(rec->name));
		break;
	case KS_REC_COMMIT:
		put_time(p, &rec->time);
		if (rec->len)
			memcpy(p + LOG_TIME_LEN, rec->bytes, rec->len);
		break;
	}
}

/* CHECK records are for stores shared with other hosts, which compare
 * what a transaction read; the log is the only writer of its states, and
 * leaves them out (so a unit is framed as it always was). */
static size_t stored(const struct ks_rec *recs, size_t n, size_t *only)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (recs[i].type != KS_REC_CHECK) {
			*only = i;
			k++;
		}
	return k;
}

size_t log_unit_len(const struct ks_rec *recs, size_t n)
{
	size_t len = LOG_HDR, only = 0;

	if (stored(recs, n, &only) == 1)
		return len + payload_len(&recs[only]);
	for (size_t i = 0; i < n; i++)
		if (recs[i].type != KS_REC_CHECK)
			len += LOG_SUB_HDR + payload_len(&recs[i]);
	return len;
}

static void put_header(unsigned char *p, uint32_t len, uint32_t type,
		       uint64_t seq, uint64_t state, uint64_t version)
{
	log_put32(p + 4, len);
	log_put32(p + 8, type);
	log_put64(p + 12, seq);
	log_put64(p + 20, state);
	log_put64(p + 28, version);
}

/* The checksum of a frame whose header (but the crc) and payload are in
 * place. */
static uint32_t frame_crc(const unsigned char *p, uint32_t len)
{
	return ks_crc32c(ks_crc32c(0, p + LOG_HDR, len), p + 4, LOG_HDR - 4);
}

void log_encode_unit(unsigned char *frame, const struct ks_rec *recs,
		     size_t n)
{
	size_t flen = log_unit_len(recs, n), only = 0;
	size_t k = stored(recs, n, &only);
	uint32_t plen = (uint32_t)(flen - LOG_HDR);

	if (k == 1) {
		put_header(frame, plen, recs[only].type, 0,
			   recs[only].state_id, recs[only].version);
		put_payload(frame + LOG_HDR, &recs[only]);
	} else {
		unsigned char *p = frame + LOG_HDR;

		put_header(frame, plen, LOG_T_MULTI, 0, 0, k);
		for (size_t i = 0; i < n; i++) {
			size_t l = payload_len(&recs[i]);

			if (recs[i].type == KS_REC_CHECK)
				continue;
			log_put32(p, (uint32_t)l);
			log_put32(p + 4, recs[i].type);
			log_put64(p + 8, recs[i].state_id);
			log_put64(p + 16, recs[i].version);
			put_payload(p + LOG_SUB_HDR, &recs[i]);
			p += LOG_SUB_HDR + l;
		}
	}
	log_put32(frame, ks_crc32c(0, frame + LOG_HDR, plen));
}

void log_finish_frame(unsigned char *p, uint64_t seq)
{
	log_put64(p + 12, seq);
	log_put32(p, ks_crc32c(log_get32(p), p + 4, LOG_HDR - 4));
}

void log_seal_frame(unsigned char *p, uint32_t len, uint32_t type,
		    uint64_t seq, uint64_t state, uint64_t version)
{
	put_header(p, len, type, seq, state, version);
	log_put32(p, frame_crc(p, len));
}

static bool known_type(uint32_t type)
{
	return (type >= KS_REC_CREATE && type <= KS_REC_ATTR) ||
	       type == LOG_T_MULTI || type == LOG_T_SEGMENT ||
	       type == LOG_T_SNAP_HEAD || type == LOG_T_SNAP_STATE ||
	       type == LOG_T_SNAP_END;
}

static bool record_type(uint32_t type)
{
	return (type >= KS_REC_CREATE && type <= KS_REC_ATTR) ||
	       type == LOG_T_MULTI;
}

/* The type field is known: a known type, and an in-flight count only on
 * a log record. */
static bool known_field(uint32_t field)
{
	uint32_t type = field & LOG_TYPE_MASK;

	return known_type(type) &&
	       (record_type(type) || (field >> LOG_INFLIGHT_SHIFT) == 0);
}

bool log_is_record(const struct log_frame *f)
{
	return record_type(f->type);
}

/* Is there a whole, checksummed frame at buf[off]?  why (if not NULL) gets
 * what is wrong when there is not. */
bool log_frame_at(const unsigned char *buf, size_t size, size_t off,
		     struct log_frame *f, const char **why)
{
	const unsigned char *p = buf + off;
	const char *w = NULL;
	uint32_t field = 0;

	if (size - off < LOG_HDR) {
		w = "truncated record header";
	} else {
		f->len = log_get32(p + 4);
		field = log_get32(p + 8);
		if (!known_field(field))
			w = "unknown record type";
		else if (f->len > LOG_MAX_PAYLOAD ||
			 f->len > size - off - LOG_HDR)
			w = "record length past the end of the file";
		else if (frame_crc(p, f->len) != log_get32(p))
			w = "checksum mismatch";
	}
	if (why)
		*why = w;
	if (w)
		return false;
	f->type = field & LOG_TYPE_MASK;
	f->inflight = field >> LOG_INFLIGHT_SHIFT;
	f->seq = log_get64(p + 12);
	f->state = log_get64(p + 20);
	f->version = log_get64(p + 28);
	f->payload = p + LOG_HDR;
	return true;
}

bool log_next_frame(const unsigned char *buf, size_t size, size_t *off,
		    struct log_frame *f)
{
	for (size_t o = *off; o + LOG_HDR <= size; o++) {
		/* cheap tests first: the checksum is the slow one */
		if (!known_field(log_get32(buf + o + 8)) ||
		    log_get32(buf + o + 4) > size - o - LOG_HDR)
			continue;
		if (log_frame_at(buf, size, o, f, NULL)) {
			*off = o;
			return true;
		}
	}
	return false;
}

/* Does any whole frame start anywhere in buf[from..size)? */
bool log_any_frame_after(const unsigned char *buf, size_t size,
			    size_t from)
{
	struct log_frame f;

	return log_next_frame(buf, size, &from, &f);
}

bool log_all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Decodes one record; name must have KS_NAME_MAX + 1 bytes. */
static int decode_rec(uint32_t type, uint64_t state, uint64_t version,
		      const unsigned char *p, size_t len, struct ks_rec *rec,
		      char *name)
{
	size_t nlen;

	memset(rec, 0, sizeof(*rec));
	rec->type = (enum ks_rec_type)type;
	rec->state_id = state;
	rec->version = version;
	switch (type) {
	case KS_REC_CREATE:
	case KS_REC_ATTR:
		if (len < 12 + LOG_TIME_LEN)
			return EINVAL;
		rec->uid = (uid_t)log_get32(p);
		rec->gid = (gid_t)log_get32(p + 4);
		rec->mode = (mode_t)log_get32(p + 8);
		if (get_time(p + 12, &rec->time))
			return EINVAL;
		if (type == KS_REC_ATTR)
			return len == 12 + LOG_TIME_LEN ? 0 : EINVAL;
		p += 12 + LOG_TIME_LEN;
		nlen = len - 12 - LOG_TIME_LEN;
		break;
	case KS_REC_DELETE:
		return len == 0 ? 0 : EINVAL;
	case KS_REC_RENAME:
		if (len < LOG_TIME_LEN || get_time(p, &rec->time))
			return EINVAL;
		p += LOG_TIME_LEN;
		nlen = len - LOG_TIME_LEN;
		break;
	case KS_REC_COMMIT:
		if (len < LOG_TIME_LEN || get_time(p, &rec->time) ||
		    version == 0)
			return EINVAL;
		rec->bytes = p + LOG_TIME_LEN;
		rec->len = len - LOG_TIME_LEN;
		return 0;
	default:
		return EINVAL;
	}
	if (nlen == 0 || nlen > KS_NAME_MAX || memchr(p, 0, nlen))
		return EINVAL;
	memcpy(name, p, nlen);
	name[nlen] = 0;
	rec->name = name;
	return 0;
}

/* Applies a log frame (a single record or a unit of several). */
int log_replay_frame(struct ks_recovery *r, const struct log_frame *f,
			uint64_t *nrecs)
{
	char name[KS_NAME_MAX + 1];
	struct ks_rec rec;
	int err;

	if (f->type != LOG_T_MULTI) {
		err = decode_rec(f->type, f->state, f->version, f->payload,
				 f->len, &rec, name);
		if (!err)
			err = ks_recovery_apply(r, &rec);
		*nrecs += !err;
		return err;
	}
	{
		const unsigned char *p = f->payload, *end = p + f->len;
		uint64_t n = 0;

		while (p < end) {
			uint32_t l;

			if ((size_t)(end - p) < LOG_SUB_HDR)
				return EINVAL;
			l = log_get32(p);
			if (l > (size_t)(end - p) - LOG_SUB_HDR)
				return EINVAL;
			err = decode_rec(log_get32(p + 4), log_get64(p + 8),
					 log_get64(p + 16), p + LOG_SUB_HDR, l, &rec,
					 name);
			if (!err)
				err = ks_recovery_apply(r, &rec);
			if (err)
				return err;
			p += LOG_SUB_HDR + l;
			n++;
		}
		if (n != f->version)
			return EINVAL;
		*nrecs += n;
	}
	return 0;
}

int log_buf_put(struct log_buf *b, const void *bytes, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		unsigned char *np;

		while (cap < b->len + len)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, bytes, len);
	b->len += len;
	return 0;
}

void log_seg_header(unsigned char *hdr, uint64_t seg)
{
	memcpy(hdr + LOG_HDR, log_seg_magic, LOG_MAGIC_LEN);
	log_seal_frame(hdr, LOG_MAGIC_LEN, LOG_T_SEGMENT, 0, 0, seg);
}

void log_seg_name(char *buf, size_t len, uint64_t seg)
{
	snprintf(buf, len, "log.%016" PRIx64, seg);
}

void log_snap_name(char *buf, size_t len, uint64_t seg)
{
	snprintf(buf, len, "snap.%016" PRIx64, seg);
}

/* Parses "log.<16 hex>" / "snap.<16 hex>". */
bool log_parse_name(const char *name, const char *prefix, uint64_t *num)
{
	size_t pl = strlen(prefix);
	char *end;

	if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 16)
		return false;
	for (size_t i = pl; i < pl + 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	*num = strtoull(name + pl, &end, 16);
	return *end == 0;
}


/* ---- snapshot states ---------------------------------------------------
 * A snapshot state's payload: uid, gid, mode (u32 each), ctime, mtime,
 * u16 name length, the name, then the page. */

void log_snap_state_head(unsigned char *p, const struct ks_state_attr *attr,
			 const struct timespec *mtime, size_t nlen)
{
	log_put32(p, (uint32_t)attr->uid);
	log_put32(p + 4, (uint32_t)attr->gid);
	log_put32(p + 8, (uint32_t)attr->mode);
	put_time(p + 12, &attr->ctime);
	put_time(p + 24, mtime);
	put16(p + 36, (uint16_t)nlen);
}

int log_snap_state_decode(const unsigned char *p, size_t len,
			  struct log_snap_state *out)
{
	size_t nlen;

	if (len < LOG_SNAP_STATE_FIXED)
		return EINVAL;
	out->attr.uid = (uid_t)log_get32(p);
	out->attr.gid = (gid_t)log_get32(p + 4);
	out->attr.mode = (mode_t)log_get32(p + 8);
	nlen = get16(p + 36);
	if (get_time(p + 12, &out->attr.ctime) ||
	    get_time(p + 24, &out->mtime) ||
	    !nlen || nlen > KS_NAME_MAX || nlen > len - LOG_SNAP_STATE_FIXED ||
	    memchr(p + LOG_SNAP_STATE_FIXED, 0, nlen))
		return EINVAL;
	memcpy(out->name, p + LOG_SNAP_STATE_FIXED, nlen);
	out->name[nlen] = 0;
	out->bytes = p + LOG_SNAP_STATE_FIXED + nlen;
	out->len = len - LOG_SNAP_STATE_FIXED - nlen;
	return 0;
}

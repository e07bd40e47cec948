/*
 * Damage: a torn last record, cut at every byte offset, is dropped and the
 * records before it recover; a flipped byte anywhere else is refused with
 * the file and byte offset in the message.  The last group commit torn out
 * of order (a later record whole, an earlier one not) is dropped too, but
 * damage to a synced record followed by a later one is refused, in logs
 * with in-flight counts and in logs written before them.  A lone first
 * segment cut short of its header is a new store.
 */
#include "harness.h"

#include <sys/stat.h>

#include "crc32c.h"
#include "store.h"

#define SEG1 "log.0000000000000001"

static off_t file_size(const char *dir, const char *name)
{
	char path[4200];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(stat(path, &sb) == 0);
	return sb.st_size;
}

/* Where the log ends (zeros may be written ahead of it). */
static off_t log_end(struct st *s)
{
	uint64_t bytes;

	ks_log_stats(s->store, &bytes, NULL);
	return (off_t)bytes;
}

static void copy_store(const char *from, const char *to, const char *name)
{
	char a[4200], b[4200];

	snprintf(a, sizeof(a), "%s/%s", from, name);
	snprintf(b, sizeof(b), "%s/%s", to, name);
	st_copyfile(a, b);
}

static void set_byte(const char *dir, const char *name, off_t off, int xor)
{
	char path[4200];
	unsigned char c;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pread(fd, &c, 1, off) == 1);
	c ^= (unsigned char)xor;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static void cut(const char *dir, const char *name, off_t len)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(truncate(path, len) == 0);
}

/* A store whose last record is a unit of two commits (or one commit);
 * [*last_start, *last_end) is that record, [*older, *older_end) an older
 * one. */
static void build(const char *dir, bool multi, off_t *older, off_t *older_end,
		  off_t *last_start, off_t *last_end)
{
	struct ks_state *a, *b;
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	a = st_create(&s, "a");
	b = st_create(&s, "b");
	CHECK_ERR(ks_state_commit_bytes(a, "a1", 2, NULL), 0);
	*older = log_end(&s);
	CHECK_ERR(ks_state_commit_bytes(b, "b1-older", 8, NULL), 0);
	*older_end = log_end(&s);
	CHECK_ERR(ks_state_commit_bytes(a, "a2", 2, NULL), 0);
	*last_start = log_end(&s);
	if (multi) {
		struct ks_rec recs[2] = {
			{ .type = KS_REC_COMMIT, .state_id = ks_state_id(a),
			  .version = 3, .bytes = "a3-unit", .len = 7 },
			{ .type = KS_REC_COMMIT, .state_id = ks_state_id(b),
			  .version = 2, .bytes = "b2-unit", .len = 7 },
		};

		CHECK_ERR(s.store->ops->append(s.store, recs, 2), 0);
	} else {
		CHECK_ERR(ks_state_commit_bytes(b, "b2-last", 7, NULL), 0);
	}
	*last_end = log_end(&s);
	ks_state_unref(a);
	ks_state_unref(b);
	st_close(&s);
	/* Closing cut the zeros written ahead. */
	CHECK_EQ(file_size(dir, SEG1), *last_end);
}

static void test_torn(bool multi)
{
	char *dir = st_tmpdir(), *work = st_tmpdir();
	off_t older, older_end, start, end;
	struct st s;

	int saved = dup(2), null = open("/dev/null", O_WRONLY);

	build(dir, multi, &older, &older_end, &start, &end);
	/* Quiet: each recovery reports the record it dropped. */
	dup2(null, 2);
	for (off_t k = start; k <= end; k++) {
		copy_store(dir, work, SEG1);
		cut(work, SEG1, k);
		st_open_ok(&s, work, KS_SYNC_FULL);
		if (k == end) {
			st_expect(&s, "a", multi ? 3 : 2,
				  multi ? "a3-unit" : "a2", multi ? 7 : 2);
			st_expect(&s, "b", 2, multi ? "b2-unit" : "b2-last",
				  7);
		} else {
			/* All of the unit or none of it. */
			st_expect(&s, "a", 2, "a2", 2);
			st_expect(&s, "b", 1, "b1-older", 8);
			CHECK_EQ(file_size(work, SEG1), start);
			/* And the log goes on from there. */
			{
				struct ks_state *b = st_find(&s, "b");

				CHECK_ERR(ks_state_commit_bytes(b, "b2-new", 6,
								NULL), 0);
				ks_state_unref(b);
			}
		}
		st_close(&s);
		if (k != end) {
			st_open_ok(&s, work, KS_SYNC_FULL);
			st_expect(&s, "b", 2, "b2-new", 6);
			st_close(&s);
		}
	}
	dup2(saved, 2);
	close(saved);
	close(null);
	printf("torn %s record cut at each of %lld offsets: ok\n",
	       multi ? "multi-record" : "single", (long long)(end - start));

	/* Zeros after the end (a preallocated or extended file) are no
	 * damage either. */
	copy_store(dir, work, SEG1);
	cut(work, SEG1, end + 8192);
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_close(&s);
	CHECK_EQ(file_size(work, SEG1), end);

	/* A flipped byte in an older record: in its header, its payload,
	 * its checksum. */
	for (off_t at = older; at < older_end; at += 5) {
		char want[128];
		int err;

		copy_store(dir, work, SEG1);
		set_byte(work, SEG1, at, 0x10);
		err = st_open(&s, work, KS_SYNC_FULL);
		if (err != EUCLEAN) {
			fprintf(stderr, "FAIL: byte %lld flipped: %s\n",
				(long long)at, err ? s.msg : "opened");
			exit(1);
		}
		snprintf(want, sizeof(want), "%s/%s, byte offset %lld", work,
			 SEG1, (long long)older);
		if (!strstr(s.msg, want)) {
			fprintf(stderr, "FAIL: message '%s' lacks '%s'\n",
				s.msg, want);
			exit(1);
		}
		if (at == older)
			printf("flipped byte: %s\n", s.msg);
		/* Nothing was cut away by the refusal. */
		CHECK_EQ(file_size(work, SEG1), end);
	}
	/* The segment's own header. */
	copy_store(dir, work, SEG1);
	set_byte(work, SEG1, 20, 1);
	CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
	CHECK(strstr(s.msg, "byte offset 0"));
	printf("flipped bytes refused: ok\n");

	st_rmrf(dir);
	st_rmrf(work);
	free(dir);
	free(work);
}

/* Damage in a snapshot, a missing segment, and the leftovers of a
 * compaction that stopped half-way. */
static void test_snapshot_damage(void)
{
	char *dir = st_tmpdir(), *work = st_tmpdir();
	const char *snap = "snap.0000000000000002";
	const char *seg2 = "log.0000000000000002";
	const char *seg3 = "log.0000000000000003";
	struct ks_state *a;
	off_t size;
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	a = st_create(&s, "a");
	CHECK_ERR(ks_state_commit_bytes(a, "before", 6, NULL), 0);
	CHECK_ERR(ks_log_compact(s.store), 0);
	CHECK_ERR(ks_state_commit_bytes(a, "after", 5, NULL), 0);
	ks_state_unref(a);
	st_close(&s);
	size = file_size(dir, snap);

	for (off_t at = 0; at < size; at += 3) {
		copy_store(dir, work, snap);
		copy_store(dir, work, seg2);
		set_byte(work, snap, at, 0x40);
		CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
		CHECK(strstr(s.msg, snap));
		CHECK(strstr(s.msg, "byte offset"));
	}
	printf("snapshot damage: %s\n", s.msg);

	/* A snapshot whose segment is gone. */
	st_rmrf(work);
	CHECK(mkdir(work, 0700) == 0);
	copy_store(dir, work, snap);
	CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
	CHECK(strstr(s.msg, seg2));
	printf("missing segment: %s\n", s.msg);

	/* A compaction that created its next segment and stopped: the empty
	 * segment goes, the old ones stay in use. */
	copy_store(dir, work, seg2);
	{
		char a3[4200], b3[4200];

		snprintf(a3, sizeof(a3), "%s/%s", work, seg2);
		snprintf(b3, sizeof(b3), "%s/%s", work, seg3);
		st_copyfile(a3, b3);
		CHECK(truncate(b3, 52) == 0); /* just a header */
	}
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_expect(&s, "a", 2, "after", 5);
	st_close(&s);
	{
		char p3[4200];

		snprintf(p3, sizeof(p3), "%s/%s", work, seg3);
		CHECK(access(p3, F_OK) != 0);
	}
	printf("leftover empty segment: ok\n");

	st_rmrf(dir);
	st_rmrf(work);
	free(dir);
	free(work);
}

/* The frames of a segment: their offsets, from the first after the
 * segment header to the end (zeros written ahead cut by a clean stop). */
static int frames_of(const char *dir, off_t *offs, int max)
{
	char path[4200];
	unsigned char hdr[36];
	off_t off = 52, size = file_size(dir, SEG1);
	int fd, n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, SEG1);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	while (off < size && n < max) {
		CHECK(pread(fd, hdr, 36, off) == 36);
		offs[n++] = off;
		off += 36 + (off_t)(hdr[4] | hdr[5] << 8 | hdr[6] << 16 |
				    (uint32_t)hdr[7] << 24);
	}
	close(fd);
	return n;
}

/* Rewrites a segment as kstatefs wrote it before records carried an
 * in-flight count: the high 24 bits of every type field cleared, each
 * frame sealed again. */
static void to_old_format(const char *dir)
{
	char path[4200];
	off_t offs[64];
	int n = frames_of(dir, offs, 64), fd;

	snprintf(path, sizeof(path), "%s/%s", dir, SEG1);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	for (int i = 0; i < n; i++) {
		unsigned char buf[4096];
		uint32_t len, crc;

		CHECK(pread(fd, buf, 36, offs[i]) == 36);
		len = buf[4] | buf[5] << 8 | buf[6] << 16 |
		      (uint32_t)buf[7] << 24;
		CHECK(len <= sizeof(buf) - 36);
		CHECK(pread(fd, buf + 36, len, offs[i] + 36) == (ssize_t)len);
		buf[9] = buf[10] = buf[11] = 0;
		crc = ks_crc32c(ks_crc32c(0, buf + 36, len), buf + 4, 32);
		for (int k = 0; k < 4; k++)
			buf[k] = (unsigned char)(crc >> (8 * k));
		CHECK(pwrite(fd, buf, 36, offs[i]) == 36);
	}
	close(fd);
}

/* Zeros over [from, to): blocks that never reached the disk. */
static void zero_range(const char *dir, off_t from, off_t to)
{
	char path[4200];
	static const unsigned char z[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, SEG1);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, z, (size_t)(to - from), from) == to - from);
	close(fd);
}

/* Four commits synced one by one (--sync full), then three written with
 * --sync none and never synced until the clean stop: those three went to
 * the disk as one batch would, each carrying how many before it were in
 * flight (0, 1, 2). */
static void test_out_of_order(void)
{
	char *dir = st_tmpdir(), *work = st_tmpdir();
	int saved = dup(2), null = open("/dev/null", O_WRONLY);
	struct ks_state *a;
	off_t offs[16];
	struct st s;
	int n;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	a = st_create(&s, "a");
	for (int v = 1; v <= 3; v++) {
		char b[16];

		snprintf(b, sizeof(b), "synced %d", v);
		CHECK_ERR(ks_state_commit_bytes(a, b, strlen(b), NULL), 0);
	}
	ks_state_unref(a);
	st_close(&s);
	st_open_ok(&s, dir, KS_SYNC_NONE);
	a = st_find(&s, "a");
	for (int v = 4; v <= 6; v++) {
		char b[16];

		snprintf(b, sizeof(b), "batch %d", v);
		CHECK_ERR(ks_state_commit_bytes(a, b, strlen(b), NULL), 0);
	}
	ks_state_unref(a);
	st_close(&s);
	/* create, 3 synced, 3 in the batch */
	n = frames_of(dir, offs, 16);
	CHECK_EQ(n, 7);
	dup2(null, 2);

	/* The batch's first record lost, the two after it landed: the torn
	 * end of the batch, dropped whole. */
	copy_store(dir, work, SEG1);
	zero_range(work, offs[4], offs[5]);
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_expect(&s, "a", 3, "synced 3", 8);
	CHECK_EQ(file_size(work, SEG1), offs[4]);
	st_close(&s);

	/* Its second lost, the third landed: the first stays. */
	copy_store(dir, work, SEG1);
	set_byte(work, SEG1, offs[5] + 40, 0xff);
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_expect(&s, "a", 4, "batch 4", 7);
	st_close(&s);

	/* A synced record damaged, records written after it was synced
	 * follow: refused, at the damaged record. */
	copy_store(dir, work, SEG1);
	zero_range(work, offs[3], offs[4]);
	CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
	{
		char want[128];

		snprintf(want, sizeof(want), "byte offset %lld",
			 (long long)offs[3]);
		CHECK(strstr(s.msg, want));
	}
	dup2(saved, 2);
	printf("damage before a later batch: %s\n", s.msg);
	dup2(null, 2);

	/* The same log as written before in-flight counts: opens the same;
	 * the torn end with a whole record after it is refused, as such logs
	 * always were. */
	copy_store(dir, work, SEG1);
	to_old_format(work);
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_expect(&s, "a", 6, "batch 6", 7);
	st_close(&s);
	copy_store(dir, work, SEG1);
	to_old_format(work);
	zero_range(work, offs[4], offs[5]);
	CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
	copy_store(dir, work, SEG1);
	to_old_format(work);
	cut(work, SEG1, offs[6] + 10);
	st_open_ok(&s, work, KS_SYNC_FULL);
	st_expect(&s, "a", 5, "batch 5", 7);
	st_close(&s);

	dup2(saved, 2);
	close(saved);
	close(null);
	printf("out-of-order torn batch dropped, damage before a later batch "
	       "refused, old logs as before: ok\n");
	st_rmrf(dir);
	st_rmrf(work);
	free(dir);
	free(work);
}

/* A first start cut short before the segment header was synced, by a
 * kstatefs that created the segment in place: a new store.  A header with
 * other bytes is still refused. */
static void test_short_first_segment(void)
{
	char *dir = st_tmpdir(), *work = st_tmpdir();
	int saved = dup(2), null = open("/dev/null", O_WRONLY);
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	st_close(&s);
	CHECK_EQ(file_size(dir, SEG1), 52);
	dup2(null, 2);
	for (off_t len = 0; len < 52; len += 7) {
		copy_store(dir, work, SEG1);
		cut(work, SEG1, len);
		st_open_ok(&s, work, KS_SYNC_FULL);
		st_close(&s);
		CHECK_EQ(file_size(work, SEG1), 52);
	}
	copy_store(dir, work, SEG1);
	cut(work, SEG1, 30);
	set_byte(work, SEG1, 20, 0x01);
	CHECK_ERR(st_open(&s, work, KS_SYNC_FULL), EUCLEAN);
	dup2(saved, 2);
	close(saved);
	close(null);
	printf("lone first segment short of its header: a new store; other "
	       "bytes refused: ok\n");
	st_rmrf(dir);
	st_rmrf(work);
	free(dir);
	free(work);
}

int main(void)
{
	test_out_of_order();
	test_short_first_segment();
	test_torn(false);
	test_torn(true);
	test_snapshot_damage();
	printf("1 passed, 0 failed\n");
	return 0;
}

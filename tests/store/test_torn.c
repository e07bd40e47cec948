/*
 * Damage: a torn last record, cut at every byte offset, is dropped and the
 * records before it recover; a flipped byte anywhere else is refused with
 * the file and byte offset in the message.
 */
#include "harness.h"

#include <sys/stat.h>

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

int main(void)
{
	test_torn(false);
	test_torn(true);
	test_snapshot_damage();
	printf("1 passed, 0 failed\n");
	return 0;
}

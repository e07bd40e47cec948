/*
 * Failures: a failed write gives the committer ENOSPC or EIO and leaves no
 * half record in the log; the next commit works.  A failed fdatasync stops
 * the store: every later commit fails with EIO.  A full disk (a small
 * tmpfs) gives ENOSPC, keeps every earlier commit, and commits work again
 * once space is freed.
 */
#include "harness.h"

#include <sys/mount.h>
#include <sys/stat.h>

enum inject {
	OK,
	WRITE_HALF_ENOSPC,  /* half the bytes, then ENOSPC */
	WRITE_EIO,
	SYNC_EIO,
	WRITE_AND_TRUNCATE_EIO,
};

static enum inject inject;
static int calls;

static ssize_t bad_pwrite(void *ctx, int fd, const void *buf, size_t len,
			  off_t off)
{
	switch (inject) {
	case WRITE_HALF_ENOSPC:
		if (calls++ == 0 && len > 1)
			return pwrite(fd, buf, len / 2, off);
		errno = ENOSPC;
		return -1;
	case WRITE_EIO:
	case WRITE_AND_TRUNCATE_EIO:
		errno = EIO;
		return -1;
	default:
		return pwrite(fd, buf, len, off);
	}
}

static int bad_fdatasync(void *ctx, int fd)
{
	if (inject == SYNC_EIO) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static int bad_ftruncate(void *ctx, int fd, off_t len)
{
	if (inject == WRITE_AND_TRUNCATE_EIO) {
		errno = EIO;
		return -1;
	}
	return ftruncate(fd, len);
}

static const struct ks_log_io bad_io = {
	.pwrite = bad_pwrite,
	.fdatasync = bad_fdatasync,
	.ftruncate = bad_ftruncate,
};

static void arm(enum inject what)
{
	inject = what;
	calls = 0;
}

static off_t seg1_size(const char *dir)
{
	char path[4200];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/log.0000000000000001", dir);
	CHECK(stat(path, &sb) == 0);
	return sb.st_size;
}

static uint64_t log_bytes(struct st *s)
{
	uint64_t bytes;

	ks_log_stats(s->store, &bytes, NULL);
	return bytes;
}

static void test_injected(void)
{
	char *dir = st_tmpdir();
	struct ks_state *a, *b;
	struct ks_state_attr attr = { .mode = 0600 };
	uint64_t v;
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	ks_log_set_io(s.store, &bad_io);
	a = st_create(&s, "a");
	CHECK_ERR(ks_state_commit_bytes(a, "one", 3, &v), 0);

	/* A write that stops half-way: nothing of it stays. */
	arm(WRITE_HALF_ENOSPC);
	CHECK_ERR(ks_state_commit_bytes(a, "two", 3, &v), ENOSPC);
	arm(OK);
	CHECK_EQ(ks_state_version(a), 1);
	CHECK_EQ(seg1_size(dir), log_bytes(&s));
	CHECK_ERR(ks_state_commit_bytes(a, "three", 5, &v), 0);
	CHECK_EQ(v, 2);

	/* EIO from write: reported, and not fatal. */
	arm(WRITE_EIO);
	CHECK_ERR(ks_state_commit_bytes(a, "lost", 4, &v), EIO);
	CHECK_ERR(ks_state_create(s.eng, "b", &attr, &b), EIO);
	CHECK_ERR(ks_state_rename(s.eng, "a", "c"), EIO);
	arm(OK);
	CHECK(st_find(&s, "b") == NULL);
	CHECK_ERR(ks_state_commit_bytes(a, "four", 4, &v), 0);
	CHECK_EQ(v, 3);
	ks_state_unref(a);
	st_close(&s);

	st_open_ok(&s, dir, KS_SYNC_FULL);
	st_expect(&s, "a", 3, "four", 4);
	CHECK(st_find(&s, "b") == NULL);
	printf("failed writes: ok\n");

	/* A failed fdatasync: that commit and every later one fail. */
	ks_log_set_io(s.store, &bad_io);
	a = st_find(&s, "a");
	arm(SYNC_EIO);
	CHECK_ERR(ks_state_commit_bytes(a, "five", 4, &v), EIO);
	arm(OK);
	CHECK_ERR(ks_state_commit_bytes(a, "six", 3, &v), EIO);
	CHECK_ERR(ks_state_create(s.eng, "b", &attr, &b), EIO);
	CHECK_ERR(ks_state_delete(s.eng, "a"), EIO);
	CHECK_EQ(ks_state_version(a), 3);
	ks_state_unref(a);
	st_close(&s);

	/* What was acknowledged is there; the commit whose sync failed may
	 * or may not be (its bytes reached the file). */
	st_open_ok(&s, dir, KS_SYNC_FULL);
	a = st_find(&s, "a");
	CHECK(ks_state_version(a) == 3 || ks_state_version(a) == 4);
	if (ks_state_version(a) == 3)
		st_expect(&s, "a", 3, "four", 4);
	else
		st_expect(&s, "a", 4, "five", 4);
	ks_state_unref(a);
	printf("failed fdatasync is fatal: ok\n");

	/* A failed write that cannot be cut back off: fatal too. */
	ks_log_set_io(s.store, &bad_io);
	a = st_find(&s, "a");
	arm(WRITE_AND_TRUNCATE_EIO);
	CHECK_ERR(ks_state_commit_bytes(a, "seven", 5, &v), EIO);
	arm(OK);
	CHECK_ERR(ks_state_commit_bytes(a, "eight", 5, &v), EIO);
	ks_state_unref(a);
	st_close(&s);
	st_open_ok(&s, dir, KS_SYNC_FULL);
	a = st_find(&s, "a");
	CHECK(ks_state_version(a) == 3 || ks_state_version(a) == 4);
	ks_state_unref(a);
	st_close(&s);
	printf("failed truncate is fatal: ok\n");

	st_rmrf(dir);
	free(dir);
}

/* Fills the file system holding path; returns the filler's path. */
static void fill(const char *path)
{
	static char block[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	/* Down to the last bytes. */
	while (write(fd, block, 1) > 0)
		;
	close(fd);
}

static void test_full_disk(void)
{
	char *mnt = st_tmpdir(), dir[4200], filler[4200], page[4096];
	struct ks_state *st[4];
	uint64_t acked[4] = { 0 }, v;
	int enospc = 0, commits = 0;
	struct st s;

	if (mount("tmpfs", mnt, "tmpfs", 0, "size=512k,mode=0700")) {
		printf("SKIP full disk: cannot mount a tmpfs (%s)\n",
		       strerror(errno));
		st_rmrf(mnt);
		free(mnt);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/store", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);

	st_open_ok(&s, dir, KS_SYNC_FULL);
	for (int i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "s%d", i);
		st[i] = st_create(&s, name);
	}
	fill(filler);
	/* Commit until the disk refuses, then some more. */
	for (int round = 0; round < 400 && enospc < 20; round++) {
		int i = round % 4;
		int err;

		memset(page, 'a' + (int)((acked[i] + 1) % 26), sizeof(page));
		err = ks_state_commit_bytes(st[i], page, sizeof(page), &v);
		if (err == 0) {
			CHECK_EQ(v, acked[i] + 1);
			acked[i] = v;
			commits++;
		} else {
			CHECK_ERR(err, ENOSPC);
			CHECK_EQ(ks_state_version(st[i]), acked[i]);
			enospc++;
		}
	}
	printf("full disk: %d commits, then ENOSPC %d times\n", commits,
	       enospc);
	CHECK(enospc >= 20);

	/* Space again: commits work again. */
	CHECK(unlink(filler) == 0);
	for (int i = 0; i < 4; i++) {
		memset(page, 'a' + (int)((acked[i] + 1) % 26), sizeof(page));
		CHECK_ERR(ks_state_commit_bytes(st[i], page, sizeof(page), &v),
			  0);
		acked[i] = v;
		ks_state_unref(st[i]);
	}
	st_close(&s);

	st_open_ok(&s, dir, KS_SYNC_FULL);
	for (int i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "s%d", i);
		memset(page, 'a' + (int)(acked[i] % 26), sizeof(page));
		st_expect(&s, name, acked[i], page, sizeof(page));
	}
	st_close(&s);
	printf("full disk, then space freed: ok\n");
	umount2(mnt, MNT_DETACH);
	st_rmrf(mnt);
	free(mnt);
}

int main(void)
{
	test_injected();
	test_full_disk();
	printf("1 passed, 0 failed\n");
	return 0;
}

/*
 * libkstate refuses a state name that no state can have (kstatefs(1),
 * Names) before it touches the mount: EINVAL for a control byte,
 * ENAMETOOLONG past 255 bytes.
 *
 *   test_names MOUNT
 */
#include <dirent.h>
#include <limits.h>

#include "harness.h"
#include "kstate.h"

/* Entries of MOUNT. */
static int entries(const char *mount)
{
	DIR *d = opendir(mount);
	int n = 0;

	CHECK(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void expect_refused(const char *dir, const char *name, int err)
{
	char path[PATH_MAX + 2000];
	struct kstate *s;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	errno = 0;
	s = kstate_subscribe(path, KSTATE_WRITE);
	CHECK(!s);
	CHECK_EQ(errno, err);
	/* With a trailing slash, the last component is the same name. */
	strcat(path, "/");
	errno = 0;
	s = kstate_subscribe(path, KSTATE_READ);
	CHECK(!s);
	CHECK_EQ(errno, err);
}

int main(int argc, char **argv)
{
	static const char *const bad[] = {
		"x\ncommit other 99", "\n", "tab\there", "del\x7f", "\x01one",
		"unit\x1fsep",
	};
	char longname[1101], path[PATH_MAX];
	struct kstate *s;
	int before;

	if (argc != 2) {
		fprintf(stderr, "usage: test_names MOUNT\n");
		return 2;
	}
	before = entries(argv[1]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		expect_refused(argv[1], bad[i], EINVAL);
		/* Before the mount is touched: the directory need not exist. */
		expect_refused("/nonexistent-kstatefs-dir", bad[i], EINVAL);
	}
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	expect_refused(argv[1], longname, ENAMETOOLONG);
	longname[256] = '\0';
	expect_refused(argv[1], longname, ENAMETOOLONG);
	expect_refused("/nonexistent-kstatefs-dir", longname, ENAMETOOLONG);
	CHECK_EQ(entries(argv[1]), before);

	/* 255 bytes is a name; a control byte elsewhere in the path is the
	 * mount's business, not the state's name. */
	longname[255] = '\0';
	snprintf(path, sizeof path, "%s/%s/", argv[1], longname);
	s = kstate_subscribe(path, KSTATE_WRITE);
	CHECK(s);
	kstate_unsubscribe(s);
	CHECK_EQ(entries(argv[1]), before + 1);
	errno = 0;
	CHECK(!kstate_subscribe("/nonexistent-kstatefs-dir\n/ok", KSTATE_READ));
	CHECK_EQ(errno, ENOENT);
	printf("test_names: ok\n");
	return 0;
}

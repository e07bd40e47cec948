/*
 * A coverage-guided fuzz target (libFuzzer) for reading a log store back
 * (core/log_recover.c, core/log_codec.c): whatever bytes a store directory
 * holds, opening it either recovers or is refused with a message — never a
 * crash, a sanitizer report, or a hang.
 *
 * The input is split into files of one store directory, as chunks:
 *
 *     byte  which file: low 3 bits index names[] below; bit 3 set:
 *           make the checksum of every frame in the chunk right, so that
 *           the fuzzer gets past the checksums to what the frames hold
 *     2     length, little-endian (cut to what is left)
 *     ...   the file's bytes (a second chunk for one file appends)
 *
 * tests/fuzz/pack_store.py turns a real store directory into this form
 * (the seed corpus in tests/fuzz/corpus/).  Built with -Dfuzz=true by
 * clang (tests/fuzz/meson.build); scripts/fuzz runs it.
 */
#include "crc32c.h"
#include "engine.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[8] = {
	"log.0000000000000001",
	"log.0000000000000002",
	"log.0000000000000003",
	"snap.0000000000000001",
	"snap.0000000000000002",
	"snap.0000000000000003",
	"log.0000000000000004",
	"snap.0000000000000002.tmp",
};

static char base[256];

static void die(const char *what)
{
	fprintf(stderr, "fuzz_store_recover: %s: %s\n", what, strerror(errno));
	abort();
}

/* Empties DIR (flat: a store has no subdirectories). */
static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) != 0)
			die(path);
	}
	closedir(d);
}

static void append_file(const char *dir, const char *name,
			const uint8_t *p, size_t n)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0)
		die(path);
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0)
			die(path);
		p += w;
		n -= (size_t)w;
	}
	close(fd);
}

/* The frames of the log format (core/log.h): crc32c (4 bytes; over the
 * payload, then the rest of the header), length (4), type (4), sequence,
 * state and version (8 each), then length bytes of payload. */
#define FRAME_HDR 36

static void fix_checksums(uint8_t *p, size_t n)
{
	size_t off = 0;

	while (n - off >= FRAME_HDR) {
		uint8_t *f = p + off;
		size_t len = (size_t)f[4] | (size_t)f[5] << 8 |
			     (size_t)f[6] << 16 | (size_t)f[7] << 24;
		uint32_t crc;

		if (len > n - off - FRAME_HDR)
			return;
		crc = ks_crc32c(ks_crc32c(0, f + FRAME_HDR, len), f + 4,
				FRAME_HDR - 4);
		for (int i = 0; i < 4; i++)
			f[i] = (uint8_t)(crc >> (8 * i));
		off += FRAME_HDR + len;
	}
}

static void init_base(void)
{
	const char *tmp = getenv("KS_FUZZ_DIR");
	char tmpl[256];

	if (!tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(tmpl, sizeof(tmpl), "%s/ks-fuzz-store.XXXXXX", tmp);
	if (!mkdtemp(tmpl))
		die(tmpl);
	snprintf(base, sizeof(base), "%s", tmpl);
}

static void remove_base(void)
{
	char dir[300];

	snprintf(dir, sizeof(dir), "%s/store", base);
	empty_dir(dir);
	rmdir(dir);
	rmdir(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_engine_config cfg = { .max_size = 4096, .max_states = 1024,
					.max_txns = 16 };
	struct ks_store *store = NULL;
	struct ks_engine *eng = NULL;
	char dir[300], opts[400], msg[512];
	size_t pos = 0;
	int err;

	if (!base[0]) {
		init_base();
		atexit(remove_base);
	}
	snprintf(dir, sizeof(dir), "%s/store", base);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		die(dir);
	empty_dir(dir);

	while (pos + 3 <= size) {
		const char *name = names[data[pos] & 7];
		size_t len = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;

		pos += 3;
		if (len > size - pos)
			len = size - pos;
		if (data[pos - 3] & 8) {
			uint8_t *copy = malloc(len ? len : 1);

			if (!copy)
				abort();
			memcpy(copy, data + pos, len);
			fix_checksums(copy, len);
			append_file(dir, name, copy, len);
			free(copy);
		} else {
			append_file(dir, name, data + pos, len);
		}
		pos += len;
	}

	snprintf(opts, sizeof(opts), "log:dir=%s,sync=none", dir);
	msg[0] = '\0';
	err = ks_store_open(opts, &store, msg, sizeof(msg));
	if (err) {
		/* opening an empty directory must work: only the files can
		 * be wrong, and they are read by recover */
		fprintf(stderr, "cannot open %s: %s: %s\n", dir, strerror(err),
			msg);
		abort();
	}
	if (ks_engine_new(&cfg, store, &eng) != 0)
		abort();
	msg[0] = '\0';
	err = ks_store_recover(store, eng, msg, sizeof(msg));
	if (err) {
		/* refused: there must be a message saying why */
		if (msg[0] == '\0' || !memchr(msg, '\0', sizeof(msg))) {
			fprintf(stderr, "recover failed (%s) without a message\n",
				strerror(err));
			abort();
		}
	} else {
		struct ks_engine_stats st;

		ks_engine_stats(eng, &st);
		if (st.states > cfg.max_states)
			abort();
	}
	ks_store_close(store);
	ks_engine_free(eng);
	return 0;
}

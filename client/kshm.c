/*
 * Reading the shared mappings: see kshm.h.  Everything in them and in the
 * .shm file is checked before use: the files are the daemon's, but a
 * mapping that is not what it claims (an old layout, another daemon's, a
 * file someone else made) must send the reader back to the files, never
 * give it a wrong page.
 */
#include "kshm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm_layout.h"

/* FUSE's root inode number: the parent of a state directory is the root
 * of its mount. */
#define ROOT_INO 1

static int err_or(int fallback)
{
	return errno ? errno : fallback;
}

/* Reads the mount's .shm: DIR and a newline, or nothing.  *uid gets its
 * owner, the daemon's user. */
static int read_dir_name(int dirfd, const struct stat *state,
			 char *dir, size_t cap, uid_t *uid)
{
	struct stat rst, fst;
	ssize_t n;
	int root, fd, err = 0;

	root = openat(dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return err_or(ENOENT);
	if (fstat(root, &rst) != 0 || rst.st_dev != state->st_dev ||
	    rst.st_ino != ROOT_INO) {
		close(root);
		return ENOENT;
	}
	fd = openat(root, ".shm", O_RDONLY | O_CLOEXEC);
	close(root);
	if (fd < 0)
		return ENOENT;   /* a daemon without mappings */
	if (fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode) ||
	    fst.st_dev != state->st_dev) {
		close(fd);
		return ENOENT;
	}
	*uid = fst.st_uid;
	do
		n = pread(fd, dir, cap, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		err = errno;
	close(fd);
	if (err)
		return err;
	if (n == 0)
		return ENOENT;   /* -o noshm, or no tmpfs to put them in */
	if ((size_t)n >= cap || dir[0] != '/' || dir[n - 1] != '\n' ||
	    memchr(dir, '\0', (size_t)n))
		return EPROTO;
	dir[n - 1] = '\0';
	return 0;
}

/* An open file fit to map: a regular file of owner uid (or alt), that
 * nobody else may write, of exactly size bytes (0: at least
 * KS_SHM_INSTANCE_SIZE, for the instance). */
static int check_file(int fd, uid_t uid, uid_t alt, off_t size)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return errno;
	if (!S_ISREG(st.st_mode) || (st.st_uid != uid && st.st_uid != alt) ||
	    (st.st_mode & 0022))
		return EPROTO;
	if (size ? st.st_size != size : st.st_size < KS_SHM_INSTANCE_SIZE)
		return EPROTO;
	return 0;
}

/* The directory's name ends in the instance's id, in hex. */
static bool id_matches_name(const uint8_t *id, const char *dir)
{
	static const char digits[] = "0123456789abcdef";
	size_t n = strlen(dir);
	const char *hex;

	if (n < 2 * KS_SHM_ID_LEN)
		return false;
	hex = dir + n - 2 * KS_SHM_ID_LEN;
	for (int i = 0; i < KS_SHM_ID_LEN; i++)
		if (hex[2 * i] != digits[id[i] >> 4] ||
		    hex[2 * i + 1] != digits[id[i] & 15])
			return false;
	return true;
}

static int map_instance(int dfd, uid_t uid, struct kshm *m)
{
	int fd = openat(dfd, "instance", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	void *p;
	int err;

	if (fd < 0)
		return errno == ENOENT ? ESTALE : errno;
	err = check_file(fd, uid, uid, 0);
	if (err) {
		close(fd);
		return err;
	}
	p = mmap(NULL, KS_SHM_INSTANCE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return errno;
	m->inst = p;
	if (memcmp(m->inst->magic, KS_SHM_MAGIC, 8) ||
	    m->inst->layout != KS_SHM_LAYOUT ||
	    m->inst->kind != KS_SHM_KIND_INSTANCE)
		return EPROTO;
	if (!ks_shm_owner_alive(atomic_load(&m->inst->owner)))
		return ESTALE;
	return 0;
}

static int map_state(int dfd, const struct stat *state, uid_t uid,
		     struct kshm *m)
{
	struct ks_shm_state h;
	char name[24];
	ssize_t n;
	void *p;
	int fd, err;

	snprintf(name, sizeof(name), "%llu", (unsigned long long)state->st_ino);
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;   /* EACCES: the state's mode shuts us out */
	do
		n = pread(fd, &h, sizeof(h), 0);
	while (n < 0 && errno == EINTR);
	err = n == (ssize_t)sizeof(h) ? 0 : EPROTO;
	if (!err && (memcmp(h.magic, KS_SHM_MAGIC, 8) ||
		     h.layout != KS_SHM_LAYOUT ||
		     h.kind != KS_SHM_KIND_STATE ||
		     memcmp(h.id, m->inst->id, KS_SHM_ID_LEN) ||
		     h.ino != (uint64_t)state->st_ino ||
		     h.max_size > (1ULL << 40) ||
		     h.slot_size != ks_shm_slot_size(h.max_size)))
		err = EPROTO;
	/* The daemon's, or (given away to it) the state's owner's. */
	if (!err)
		err = check_file(fd, uid, state->st_uid,
				 (off_t)ks_shm_file_size(h.max_size));
	if (err) {
		close(fd);
		return err;
	}
	m->map_size = ks_shm_file_size(h.max_size);
	p = mmap(NULL, m->map_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return errno;
	m->map = p;
	/* From the header read before mapping, checked: the writer never
	 * changes them. */
	m->max_size = h.max_size;
	m->slot_size = h.slot_size;
	return 0;
}

int kshm_open(int dirfd, struct kshm **out)
{
	char dir[PATH_MAX];
	struct stat state, dst;
	struct kshm *m;
	uid_t uid;
	int dfd, err;

	*out = NULL;
	if (fstat(dirfd, &state) != 0)
		return errno;
	err = read_dir_name(dirfd, &state, dir, sizeof(dir), &uid);
	if (err)
		return err;
	/* O_PATH: others may only pass through DIR (mode 0711), not list
	 * it. */
	dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? ESTALE : errno;
	/* Made by the daemon, and nobody else can add to it. */
	if (fstat(dfd, &dst) != 0 || dst.st_uid != uid ||
	    (dst.st_mode & 0022)) {
		close(dfd);
		return EPROTO;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(dfd);
		return ENOMEM;
	}
	err = map_instance(dfd, uid, m);
	if (!err && !id_matches_name(m->inst->id, dir))
		err = EPROTO;
	if (!err)
		err = map_state(dfd, &state, uid, m);
	close(dfd);
	if (err) {
		kshm_close(m);
		return err;
	}
	*out = m;
	return 0;
}

void kshm_close(struct kshm *m)
{
	if (!m)
		return;
	if (m->map)
		munmap(m->map, m->map_size);
	if (m->inst)
		munmap(m->inst, KS_SHM_INSTANCE_SIZE);
	free(m);
}

int kshm_read(struct kshm *m, void *buf, size_t cap, uint64_t *len,
	      uint64_t *version)
{
	unsigned long long retries = 0;
	int err = EAGAIN;

	if (atomic_load_explicit(&m->dead, memory_order_relaxed))
		return ESTALE;
	for (int i = 0; i < KSHM_TRIES; i++) {
		enum ks_shm_read_result r;

		/* Checked before the copy: a read that begins after the
		 * daemon died (kill -9: the kernel marked the word before
		 * any new daemon could mount) or after the state was
		 * deleted (marked before rmdir returned) sees it here. */
		if (!ks_shm_owner_alive(atomic_load_explicit(
			    &m->inst->owner, memory_order_acquire)) ||
		    !atomic_load_explicit(&m->map->alive,
					  memory_order_acquire)) {
			err = ESTALE;
			break;
		}
		r = ks_shm_read_once(m->map, m->slot_size, m->max_size, buf,
				     cap, len, version);
		if (r == KS_SHM_READ_OK) {
			err = 0;
			break;
		}
		if (r != KS_SHM_READ_RETRY) {
			err = ESTALE;
			break;
		}
		retries++;
	}
	/* Only when there were any: a counter every read wrote would be
	 * one cache line all readers of the handle fight over. */
	if (retries)
		atomic_fetch_add_explicit(&m->retries, retries,
					  memory_order_relaxed);
	if (err == ESTALE)
		atomic_store(&m->dead, true);
	return err;
}

/*
 * The shared mappings: see shm.h, and core/shm_layout.h for the layout.
 */
#include "shm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "inode.h"
#include "shm_layout.h"

#define DIR_PREFIX "kstatefs."

struct ks_shm {
	struct ks_shm_config cfg;
	uint8_t id[KS_SHM_ID_LEN];
	char dir[PATH_MAX];
	int dirfd;
	int instfd;                       /* flocked for the daemon's life */
	struct ks_shm_instance *inst;     /* mapped read-write */
	uint64_t slot_size, file_size;
	bool root;                        /* may give files away (chown) */
	/* The keeper thread (ks_shm_start): it holds inst->owner until a byte
	 * arrives on, or the write end closes, stop[1]. */
	pthread_t keeper;
	bool keeping;
	int stop[2];
	int started[2];
	atomic_bool warned;               /* one message for failed mirrors */
	struct ks_lock mode_lock;         /* DIR's mode follows the root's */
};

struct ks_shm_mirror {
	struct ks_shm *shm;
	struct ks_shm_state *map;
	bool live;                        /* alive was set */
	bool withdrawn;                   /* a page too large: files only */
	char name[24];                    /* the state directory's inode */
};

static void hex(const uint8_t *id, char *out)
{
	for (int i = 0; i < KS_SHM_ID_LEN; i++)
		sprintf(out + 2 * i, "%02x", id[i]);
}

/* ---- leftovers of daemons that died ----------------------------------- */

/* Removes DIR's files and DIR itself if no daemon holds its instance
 * file's flock (the daemon takes it before it makes anything else, and
 * holds it until it has removed everything).  Its readers already know
 * the daemon is dead: the kernel marked the owner word as the daemon
 * died, or it never served.  Only directories of our own user: another
 * user's leftovers are theirs to remove (and their readers are safe all
 * the same). */
static void reap_one(int parentfd, const char *name, uid_t uid)
{
	struct stat stt;
	struct dirent *e;
	DIR *dir;
	int dfd, ifd;

	if (fstatat(parentfd, name, &stt, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISDIR(stt.st_mode) || stt.st_uid != uid)
		return;
	dfd = openat(parentfd, name,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	ifd = openat(dfd, "instance", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (ifd >= 0 && flock(ifd, LOCK_EX | LOCK_NB) != 0) {
		close(ifd);   /* a live daemon's */
		close(dfd);
		return;
	}
	/* No instance file: a daemon between its mkdir and its flock, or
	 * one that died there.  Only the second lasts. */
	if (ifd < 0 && time(NULL) - stt.st_mtime < 60) {
		close(dfd);
		return;
	}
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		if (ifd >= 0)
			close(ifd);
		return;
	}
	while ((e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(dir), e->d_name, 0);
	closedir(dir);
	unlinkat(parentfd, name, AT_REMOVEDIR);
	if (ifd >= 0)
		close(ifd);
}

static void reap(const char *parent, uid_t uid)
{
	struct dirent *e;
	DIR *dir = opendir(parent);

	if (!dir)
		return;
	while ((e = readdir(dir)))
		if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)) == 0)
			reap_one(dirfd(dir), e->d_name, uid);
	closedir(dir);
}

/* ---- the directory and its instance file ------------------------------ */

/* DIR's mode when the mount is shared: 0711, less the search bits the
 * mount root denies (ks_shm_root_mode). */
static mode_t dir_mode(mode_t root_mode)
{
	return 0700 | (root_mode & 0011);
}

static int make_dir(struct ks_shm *p)
{
	char idhex[2 * KS_SHM_ID_LEN + 1];
	/* Others may pass through to the files their modes let them read,
	 * but not list or add: file names are inode numbers, nothing more,
	 * and nobody but the daemon makes files here. */
	mode_t mode = p->cfg.shared ? dir_mode(p->cfg.root_mode) : 0700;
	int n;

	if (getrandom(p->id, sizeof(p->id), 0) != (ssize_t)sizeof(p->id))
		return errno ? errno : EIO;
	hex(p->id, idhex);
	n = snprintf(p->dir, sizeof(p->dir), "%s/" DIR_PREFIX "%s",
		     p->cfg.parent, idhex);
	if (n < 0 || (size_t)n >= sizeof(p->dir))
		return ENAMETOOLONG;
	/* A random name nobody could have made ahead of us: mkdir fails
	 * rather than use a directory someone else owns. */
	if (mkdir(p->dir, mode) != 0)
		return errno;
	/* mkdir's mode went through our umask. */
	if (chmod(p->dir, mode) != 0)
		return errno;
	p->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				O_CLOEXEC);
	return p->dirfd < 0 ? errno : 0;
}

static int make_instance(struct ks_shm *p)
{
	void *m;

	p->instfd = openat(p->dirfd, "instance",
			   O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			   0644);
	if (p->instfd < 0)
		return errno;
	/* Held until ks_shm_close: the next daemon's reap tells a live
	 * instance from a dead one by it. */
	if (flock(p->instfd, LOCK_EX | LOCK_NB) != 0 ||
	    fchmod(p->instfd, 0644) != 0 ||
	    ftruncate(p->instfd, KS_SHM_INSTANCE_SIZE) != 0)
		return errno;
	m = mmap(NULL, KS_SHM_INSTANCE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_SHARED, p->instfd, 0);
	if (m == MAP_FAILED)
		return errno;
	p->inst = m;
	memcpy(p->inst->magic, KS_SHM_MAGIC, sizeof(p->inst->magic));
	p->inst->layout = KS_SHM_LAYOUT;
	p->inst->kind = KS_SHM_KIND_INSTANCE;
	memcpy(p->inst->id, p->id, sizeof(p->id));
	atomic_store(&p->inst->owner, 0);
	return 0;
}

/* Removes what make_dir and make_instance made. */
static void remove_dir(struct ks_shm *p)
{
	if (p->inst)
		munmap(p->inst, KS_SHM_INSTANCE_SIZE);
	p->inst = NULL;
	if (p->dirfd >= 0) {
		unlinkat(p->dirfd, "instance", 0);
		close(p->dirfd);
		rmdir(p->dir);
	}
	p->dirfd = -1;
	/* Last: the flock says "live" until everything is gone. */
	if (p->instfd >= 0)
		close(p->instfd);
	p->instfd = -1;
}

int ks_shm_open(const struct ks_shm_config *cfg, struct ks_shm **out)
{
	struct ks_shm *p = calloc(1, sizeof(*p));
	int err;

	*out = NULL;
	if (!p)
		return ENOMEM;
	p->cfg = *cfg;
	p->dirfd = p->instfd = -1;
	p->stop[0] = p->stop[1] = p->started[0] = p->started[1] = -1;
	p->slot_size = ks_shm_slot_size(cfg->max_size);
	p->file_size = ks_shm_file_size(cfg->max_size);
	p->root = geteuid() == 0;
	ks_lock_init(&p->mode_lock, "shm->mode_lock", KS_RANK_LEAF);
	reap(cfg->parent, geteuid());
	err = make_dir(p);
	if (!err)
		err = make_instance(p);
	if (err) {
		fprintf(stderr, "kstatefs: no shared mappings in %s: %s\n",
			cfg->parent, strerror(err));
		remove_dir(p);
		ks_lock_destroy(&p->mode_lock);
		free(p);
		return err;
	}
	*out = p;
	return 0;
}

const char *ks_shm_dir(const struct ks_shm *shm)
{
	return shm ? shm->dir : NULL;
}

/* ---- the keeper: the daemon's liveness for readers -------------------- */

/*
 * A thread that lives as long as the daemon serves and does nothing but
 * hold inst->owner, a robust futex word (set_robust_list(2)): the kernel
 * walks a dying thread's robust list and sets FUTEX_OWNER_DIED in every
 * word that still holds the thread's id, whatever killed it.  So a reader
 * checks one word of shared memory, per read, to know the daemon lives;
 * kill -9 cannot leave a mapping that looks live behind.  The thread's own
 * list is replaced for its life (glibc's robust mutexes are never used on
 * it) and restored before it ends.
 */
static void *keeper_main(void *arg)
{
	struct ks_shm *p = arg;
	struct robust_list_head head, *saved = NULL;
	size_t saved_len = 0;
	char byte = 0;
	ssize_t n;

	syscall(SYS_get_robust_list, 0, &saved, &saved_len);
	head.list.next = (struct robust_list *)(void *)&p->inst->robust_next;
	head.futex_offset = KS_SHM_ROBUST_OFFSET;
	head.list_op_pending = NULL;
	/* The entry's next leads back to the head: a list of one. */
	p->inst->robust_next = (uint64_t)(uintptr_t)&head.list;
	if (syscall(SYS_set_robust_list, &head, sizeof(head)) == 0)
		atomic_store(&p->inst->owner,
			     (uint32_t)syscall(SYS_gettid) & KS_SHM_OWNER_TID);
	byte = atomic_load(&p->inst->owner) ? 1 : 0;
	n = write(p->started[1], &byte, 1);
	(void)n;
	do
		n = read(p->stop[0], &byte, 1);
	while (n < 0 && errno == EINTR);
	/* A clean end: readers see 0, "no daemon", and the kernel leaves a
	 * word that no longer holds our id alone. */
	atomic_store(&p->inst->owner, 0);
	if (saved)
		syscall(SYS_set_robust_list, saved, saved_len);
	return NULL;
}

int ks_shm_start(struct ks_shm *p)
{
	char ok = 0;
	ssize_t n;
	int err;

	if (!p)
		return 0;
	if (pipe2(p->stop, O_CLOEXEC) != 0 || pipe2(p->started, O_CLOEXEC))
		return errno;
	err = pthread_create(&p->keeper, NULL, keeper_main, p);
	if (err)
		return err;
	p->keeping = true;
	do
		n = read(p->started[0], &ok, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || !ok)
		fprintf(stderr, "kstatefs: no robust futex list: shared "
				"mappings are not used\n");
	return 0;
}

void ks_shm_stop(struct ks_shm *p)
{
	if (!p)
		return;
	if (p->keeping) {
		close(p->stop[1]);
		p->stop[1] = -1;
		pthread_join(p->keeper, NULL);
		p->keeping = false;
	}
	for (int i = 0; i < 2; i++) {
		if (p->stop[i] >= 0)
			close(p->stop[i]);
		if (p->started[i] >= 0)
			close(p->started[i]);
		p->stop[i] = p->started[i] = -1;
	}
}

void ks_shm_close(struct ks_shm *p)
{
	if (!p)
		return;
	ks_shm_stop(p);
	remove_dir(p);
	ks_lock_destroy(&p->mode_lock);
	free(p);
}

void ks_shm_root_mode(struct ks_shm *p, const atomic_uint *root_mode)
{
	if (!p || !p->cfg.shared || p->dirfd < 0)
		return;
	/* The mode read under the lock: of two chmods of the root at once,
	 * the last to apply one applies the newest. */
	ks_lock(&p->mode_lock);
	if (fchmod(p->dirfd, dir_mode((mode_t)atomic_load(root_mode))) != 0)
		fprintf(stderr, "kstatefs: cannot set the mode of %s: %s\n",
			p->dir, strerror(errno));
	ks_unlock(&p->mode_lock);
}

/* ---- the mirror of each state ------------------------------------------ */

/* The read bits of the users who may read a state's `data`: a class
 * needs the state directory's search bit (x) as well as its read bit. */
static mode_t data_readers(mode_t mode)
{
	return mode & 0444 & ((mode & 0111) << 2);
}

/* Owner and mode of a state's mapping: exactly the users whom the state's
 * mode lets read `data` may open it, never more (SPEC 8).  Without
 * allow_other the mount is its owner's alone, and so are the mappings. */
static void mapping_owner(const struct ks_shm *p,
			  const struct ks_state_attr *a, uid_t *uid,
			  gid_t *gid, mode_t *mode)
{
	*uid = p->cfg.uid;
	*gid = p->cfg.gid;
	*mode = 0400;
	if (!p->cfg.shared)
		return;
	*uid = a->uid;
	*gid = a->gid;
	*mode = data_readers(a->mode);
}

/* Applies the owner and mode to the file NAME (fd, or by name with fd
 * -1).  A daemon that may not give the file away (not root) keeps it, and
 * then opens it only as far as the state is open to everyone: the file's
 * owner and group are not the state's, so their bits cannot carry the
 * state's. */
static void apply_owner(struct ks_shm *p, int fd, const char *name,
			const struct ks_state_attr *a)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;
	int rc;

	mapping_owner(p, a, &uid, &gid, &mode);
	/* Tighten first: between the two calls nobody gains access the
	 * old or the new owner and mode would not give. */
	if (fd >= 0)
		rc = fchmod(fd, 0);
	else
		rc = fchmodat(p->dirfd, name, 0, 0);
	if (fd >= 0)
		rc = rc ? rc : fchown(fd, uid, gid);
	else
		rc = rc ? rc : fchownat(p->dirfd, name, uid, gid,
					AT_SYMLINK_NOFOLLOW);
	if (rc != 0) {
		/* Not ours to give: the daemon's user keeps it, and reads
		 * it as far as the state lets it; its group and others
		 * only if the state lets everyone read. */
		mode_t readers = data_readers(a->mode);
		bool all = readers == 0444;

		mode = (a->uid == p->cfg.uid ? (readers & 0400)
					     : (all ? 0400 : 0)) |
		       (all ? 0044 : 0);
	}
	if (fd >= 0)
		fchmod(fd, mode);
	else
		fchmodat(p->dirfd, name, mode, 0);
}

static void mirror_failed(struct ks_shm *p, const char *name, int err)
{
	if (!atomic_exchange(&p->warned, true))
		fprintf(stderr, "kstatefs: no shared mapping for state inode "
				"%s (%s): its readers use the files\n", name,
			strerror(err));
}

static void *mirror_created(void *arg, struct ks_state *st)
{
	struct ks_shm *p = arg;
	struct ks_shm_mirror *m = calloc(1, sizeof(*m));
	struct ks_state_attr a;
	void *map;
	int fd, err;

	if (!m)
		return NULL;
	m->shm = p;
	snprintf(m->name, sizeof(m->name), "%" PRIu64,
		 inode_state_ino(st, ROLE_STATE));
	/* Mode 0 until its owner is set: nobody opens it half made. */
	fd = openat(p->dirfd, m->name,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		mirror_failed(p, m->name, errno);
		free(m);
		return NULL;
	}
	if (ftruncate(fd, (off_t)p->file_size) != 0)
		goto fail;
	map = mmap(NULL, p->file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   0);
	if (map == MAP_FAILED)
		goto fail;
	m->map = map;
	memcpy(m->map->magic, KS_SHM_MAGIC, sizeof(m->map->magic));
	m->map->layout = KS_SHM_LAYOUT;
	m->map->kind = KS_SHM_KIND_STATE;
	memcpy(m->map->id, p->id, sizeof(p->id));
	m->map->ino = inode_state_ino(st, ROLE_STATE);
	m->map->max_size = p->cfg.max_size;
	m->map->slot_size = p->slot_size;
	ks_state_get_attr(st, &a);
	apply_owner(p, fd, m->name, &a);
	close(fd);
	return m;
fail:
	err = errno;
	close(fd);
	unlinkat(p->dirfd, m->name, 0);
	mirror_failed(p, m->name, err);
	free(m);
	return NULL;
}

static void mirror_page(void *mirror, const struct ks_page *page)
{
	struct ks_shm_mirror *m = mirror;

	if (m->withdrawn)
		return;
	if (page->len > m->shm->cfg.max_size) {
		/* A page larger than the slots hold: a store written under
		 * a larger -o max_size (commits keep to max_size).  The
		 * mapping is withdrawn for good, as if the state were gone
		 * from it (mirror_gone removes the file), and its readers
		 * use the files, which serve any page the store holds.  No
		 * call here: the state's lock is held. */
		atomic_store_explicit(&m->map->alive, 0, memory_order_release);
		m->withdrawn = true;
		return;
	}
	ks_shm_publish(m->map, m->shm->slot_size, page->bytes, page->len,
		       page->version, page->mtime.tv_sec, page->mtime.tv_nsec);
	/* Alive only once there is a page to read. */
	if (!m->live) {
		atomic_store_explicit(&m->map->alive, 1, memory_order_release);
		m->live = true;
	}
}

static void mirror_attr(void *mirror, const struct ks_state_attr *attr)
{
	struct ks_shm_mirror *m = mirror;

	if (!m->withdrawn)
		apply_owner(m->shm, -1, m->name, attr);
}

static void mirror_gone(void *mirror)
{
	struct ks_shm_mirror *m = mirror;

	/* Readers who mapped it see it dead; new ones do not find it. */
	atomic_store_explicit(&m->map->alive, 0, memory_order_release);
	unlinkat(m->shm->dirfd, m->name, 0);
	munmap(m->map, m->shm->file_size);
	free(m);
}

static const struct ks_mirror_ops mirror_ops = {
	.created = mirror_created,
	.page = mirror_page,
	.attr = mirror_attr,
	.gone = mirror_gone,
};

void ks_shm_attach(struct ks_shm *p, struct ks_engine *eng)
{
	if (p)
		ks_engine_set_mirror(eng, &mirror_ops, p);
}

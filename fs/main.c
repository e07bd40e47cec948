/*
 * kstatefs: options, mount, and the request loop.
 *
 * Exit status: 0 clean exit, 1 usage error, 2 cannot mount or cannot use
 * the store.
 */
#include "config.h"
#include "daemon.h"
#include "notifier.h"
#include "shm.h"
#include "store.h"
#include "views.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define EXIT_USAGE 1
#define EXIT_MOUNT 2

/* Largest page we accept: far past one page, well short of what a single
 * process should hold per state. */
#define MAX_SIZE_LIMIT (64UL << 20)

struct options {
	char *source;          /* mount(8)'s first argument: ignored */
	char *mountpoint;
	int extra_args;
	char *store;
	char *sync;
	char *etcd;            /* endpoints, ';' between them */
	char *etcd_prefix;
	char *etcd_timeout;
	char *max_size;
	char *max_states;
	char *max_txns;
	char *root_mode;
	char *shm_dir;         /* where the shared mappings go */
	int no_shm;
	int allow_other;
	int help;
	int version;
};

/* Endpoints come from --etcd (a comma-separated list) and from -o etcd=
 * (one per option, since -o splits at commas), as often as given. */
enum { KEY_ETCD = 1, KEY_ALLOW_OTHER };

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
/* Every option of kstatefs's own is also an -o option, as mount(8) and
 * fstab pass them. */
static const struct fuse_opt option_spec[] = {
	OPT("--store %s", store),
	OPT("--store=%s", store),
	OPT("store=%s", store),
	OPT("--sync %s", sync),
	OPT("--sync=%s", sync),
	OPT("sync=%s", sync),
	OPT("--etcd-prefix %s", etcd_prefix),
	OPT("--etcd-prefix=%s", etcd_prefix),
	OPT("etcd_prefix=%s", etcd_prefix),
	OPT("--etcd-timeout %s", etcd_timeout),
	OPT("--etcd-timeout=%s", etcd_timeout),
	OPT("etcd_timeout=%s", etcd_timeout),
	FUSE_OPT_KEY("--etcd ", KEY_ETCD),
	FUSE_OPT_KEY("etcd=", KEY_ETCD),
	OPT("max_size=%s", max_size),
	OPT("max_states=%s", max_states),
	OPT("max_txns=%s", max_txns),
	OPT("root_mode=%s", root_mode),
	OPT("--shm-dir %s", shm_dir),
	OPT("--shm-dir=%s", shm_dir),
	OPT("shm_dir=%s", shm_dir),
	OPT("--no-shm", no_shm),
	OPT("noshm", no_shm),
	/* Noted (who may read a shared mapping depends on it) and passed
	 * on to libfuse. */
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	OPT("-h", help),
	OPT("--help", help),
	OPT("-V", version),
	OPT("--version", version),
	FUSE_OPT_END
};

/* Adds endpoints (a comma-separated list) to o->etcd, ';'-separated as
 * the store's option string wants them. */
static int add_etcd_endpoints(struct options *o, const char *list)
{
	size_t old = o->etcd ? strlen(o->etcd) : 0;
	char *joined = realloc(o->etcd, old + strlen(list) + 2);

	if (!joined)
		return -1;
	o->etcd = joined;
	if (old)
		joined[old++] = ';';
	for (; *list; list++)
		joined[old++] = *list == ',' ? ';' : *list;
	joined[old] = '\0';
	return 0;
}

/* Options of mount(8) and fstab that mean nothing to a FUSE file system,
 * or that libfuse does not know: mount.fuse3 drops some of them and passes
 * the rest on.  kstatefs keeps no access times and no other inode metadata
 * these would change, so it drops them too, as other FUSE file systems do,
 * and an fstab line or a mount unit that carries them still mounts. */
static const char *const mount_only_options[] = {
	"defaults", "auto", "noauto", "nofail", "_netdev",
	"user", "nouser", "users", "owner", "group",
	"relatime", "norelatime", "strictatime", "nostrictatime",
	"diratime", "nodiratime", "lazytime", "nolazytime",
	"iversion", "noiversion", "mand", "nomand", "silent", "loud",
	"symfollow", "nosymfollow",
	NULL
};

/* Whether OPT (one -o option) is for mount(8) only; so are systemd's
 * x-systemd.* and any other "x-" option, and comment=. */
static bool mount_only_option(const char *opt)
{
	if (strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0)
		return true;
	for (const char *const *m = mount_only_options; *m; m++)
		if (strcmp(opt, *m) == 0)
			return true;
	return false;
}

/* Takes the mountpoint out of the arguments, so that a bad one is ours to
 * report (exit status 2), not a usage error of the option parser.  Two
 * arguments are mount(8)'s form, SOURCE MOUNTPOINT: the source is a name
 * only ("kstatefs" by convention). */
static int take_arguments(void *data, const char *arg, int key,
			  struct fuse_args *outargs)
{
	struct options *o = data;

	if (key == KEY_ETCD) {
		/* fuse_opt applies every template that matches, and "--etcd "
		 * matches "--etcd-prefix" and "--etcd-timeout" too: their own
		 * entries take them, they are not endpoints. */
		if (strncmp(arg, "--etcd-", 7) == 0)
			return 0;
		/* "--etcdURL" (from "--etcd URL"), "--etcd=URL", "etcd=URL" */
		if (strncmp(arg, "--etcd", 6) == 0)
			arg += arg[6] == '=' ? 7 : 6;
		else
			arg += 5;
		return add_etcd_endpoints(o, arg);
	}
	if (key == KEY_ALLOW_OTHER)
		o->allow_other = 1;
	if (key == FUSE_OPT_KEY_OPT && mount_only_option(arg))
		return 0;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (o->mountpoint && !o->source) {
		o->source = o->mountpoint;
		o->mountpoint = NULL;
	} else if (o->mountpoint) {
		o->extra_args = 1;
		return 0;
	}
	o->mountpoint = strdup(arg);
	return o->mountpoint ? 0 : -1;
}

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
"usage: %s [OPTIONS] MOUNTPOINT\n"
"       %s SOURCE MOUNTPOINT -o OPTIONS   (as mount(8) calls it)\n"
"\n"
"Mounts kstatefs: each directory is a state, a small shared page with a\n"
"version; `data` is the page, `version` counts commits, and any other file\n"
"is a transaction, committed by `mv T data`.  See kstatefs(1).\n"
"\n"
"Options:\n"
"    --store DIR            keep states in DIR (default: in memory)\n"
"    --sync full|none       with --store: acknowledge commits once on\n"
"                           stable storage (full, default) or once the OS\n"
"                           has them (none)\n"
"    --etcd URL[,URL...]    keep states in an etcd cluster, shared by every\n"
"                           host that mounts it with the same prefix\n"
"    --etcd-prefix P        the key prefix in etcd (default /kstatefs/)\n"
"    -o etcd_timeout=SECS   how long a commit waits for etcd (default 5)\n"
"    -o store=DIR, -o sync=..., -o etcd=URL, -o etcd_prefix=P: the same\n"
"                           as -o options (one etcd= per endpoint)\n"
"    -o max_size=BYTES      largest page (default 4096)\n"
"    -o max_states=N        most states (default 65536)\n"
"    -o max_txns=N          most open transactions per state (default 1024)\n"
"    -o root_mode=OCTAL     mode of the root (default 0755; 1777: every\n"
"                           user may create states)\n"
"    -o shm_dir=DIR         where the shared mappings that let readers on\n"
"                           this host skip the daemon go (default\n"
"                           /dev/shm)\n"
"    -o noshm               no shared mappings: every read is a request\n"
"    -f                     stay in the foreground\n"
"    -d                     debug output (implies -f)\n"
"    -o allow_other         let other users in (see fuse(8)); implies\n"
"                           default_permissions\n"
"    -o default_permissions let the kernel check modes\n"
"    -o rw, ro, nodev, nosuid, noexec, noatime, ...: mount flags, as for\n"
"                           any file system; fstab's own options (defaults,\n"
"                           nofail, _netdev, x-systemd.*, relatime, ...) are\n"
"                           accepted and ignored\n"
"    -h, --help             this help\n"
"    -V, --version          the version\n",
		prog, prog);
}

static int parse_number(const char *what, const char *text,
			unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	/* Digits only: strtoull would also take leading spaces and a sign. */
	if (!text || !isdigit((unsigned char)*text))
		goto bad;
	*out = strtoull(text, &end, 10);
	if (errno || *end || *out == 0 || *out > max)
		goto bad;
	return 0;
bad:
	fprintf(stderr, "kstatefs: %s must be a number from 1 to %llu, not "
			"'%s'\n", what, max, text ? text : "");
	return -1;
}

/* The root's permission bits, in octal as chmod takes them. */
static int parse_root_mode(const char *text, unsigned *out)
{
	char *end;
	unsigned long v;

	*out = 0755;
	if (!text)
		return 0;
	errno = 0;
	v = strtoul(text, &end, 8);
	if (!isdigit((unsigned char)*text) || errno || *end || v > 07777) {
		fprintf(stderr, "kstatefs: root_mode must be an octal mode from "
				"0 to 7777, not '%s'\n", text);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int engine_config(const struct options *o, struct ks_engine_config *c)
{
	unsigned long long v;

	c->max_size = 4096;
	c->max_states = 65536;
	c->max_txns = 1024;
	if (o->max_size) {
		if (parse_number("max_size", o->max_size, MAX_SIZE_LIMIT, &v))
			return -1;
		c->max_size = (size_t)v;
	}
	if (o->max_states) {
		if (parse_number("max_states", o->max_states, UINT32_MAX, &v))
			return -1;
		c->max_states = (uint32_t)v;
	}
	if (o->max_txns) {
		if (parse_number("max_txns", o->max_txns, UINT32_MAX, &v))
			return -1;
		c->max_txns = (uint32_t)v;
	}
	return 0;
}

/* What the store options allow together, before anything is opened. */
/* Each endpoint of --etcd (';' between them here) is http(s)://HOST[:PORT]
 * with no path: etcd's gateway answers at the root, and a URL with a path
 * would only be found wrong after the mount's timeout.  1 if all are. */
static int etcd_endpoints_ok(const char *list)
{
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ";");
		size_t scheme = strncmp(p, "http://", 7) == 0 ? 7 :
				strncmp(p, "https://", 8) == 0 ? 8 : 0;
		const char *slash;
		size_t host;

		if (!scheme) {
			fprintf(stderr, "kstatefs: --etcd takes http:// or "
				"https:// URLs, not '%.*s'\n", (int)len, p);
			return 0;
		}
		slash = memchr(p + scheme, '/', len - scheme);
		host = (slash ? (size_t)(slash - p) : len) - scheme;
		if (!host || (slash && strspn(slash, "/") <
					   len - (size_t)(slash - p))) {
			fprintf(stderr, "kstatefs: an etcd endpoint is "
				"http(s)://HOST[:PORT], without a path: not "
				"'%.*s'\n", (int)len, p);
			return 0;
		}
		p += len;
		if (*p == ';')
			p++;
	}
	return 1;
}

static int store_options_check(const struct options *o,
			       const struct ks_engine_config *cfg)
{
	char *end;
	double t;

	if (o->etcd && o->store) {
		fprintf(stderr, "kstatefs: --etcd and --store exclude each "
				"other: states live in one place\n");
		return -1;
	}
	if (!o->etcd && (o->etcd_prefix || o->etcd_timeout)) {
		fprintf(stderr, "kstatefs: etcd_prefix and etcd_timeout need "
				"--etcd\n");
		return -1;
	}
	if (o->etcd && !o->etcd[0]) {
		fprintf(stderr, "kstatefs: --etcd needs at least one URL\n");
		return -1;
	}
	if (o->etcd && !etcd_endpoints_ok(o->etcd))
		return -1;
	if (o->store && !o->store[0]) {
		fprintf(stderr, "kstatefs: --store (-o store=) needs a "
				"directory\n");
		return -1;
	}
	if (o->etcd_timeout) {
		errno = 0;
		t = strtod(o->etcd_timeout, &end);
		if (!isdigit((unsigned char)o->etcd_timeout[0]) || errno ||
		    end == o->etcd_timeout || *end || !(t >= 0.1) ||
		    t > 3600) {
			fprintf(stderr, "kstatefs: etcd_timeout must be a "
				"number of seconds from 0.1 to 3600, not "
				"'%s'\n", o->etcd_timeout);
			return -1;
		}
	}
	/* A commit is one etcd request holding the page: etcd refuses
	 * requests past its limit (1.5 MiB by default). */
	if (o->etcd && cfg->max_size > KS_ETCD_MAX_PAGE) {
		fprintf(stderr, "kstatefs: max_size %zu is more than etcd "
			"takes in one request; at most %u with --etcd\n",
			cfg->max_size, KS_ETCD_MAX_PAGE);
		return -1;
	}
	return 0;
}

/* Every commit, from any thread: tell the kernel before the commit is
 * acknowledged, wake pollers, and queue the inotify event. */
static void on_commit(void *arg, struct ks_state *st, uint64_t version)
{
	struct ks_daemon *d = arg;

	inode_invalidate_state(d, st);
	poll_wake(d, ks_state_id(st), version);
	notifier_post(d, st, NULL, ks_state_id(st));
	views_on_commit(d, st);
	events_wake(d);
}

/* Another host created, deleted, renamed or chmod/chowned a state.  The
 * kernel must forget what it cached of the name, an entry or that there is
 * none (entries are cached for d->timeout), and of the attributes of the
 * state's files, which show its owner and mode: called from the store's
 * thread, with no engine lock held, and the kernel waits for lookups of the
 * root in flight, so none that read the table before the change outlives
 * this.  And readers of .events have a create or delete line to read. */
static void on_name(void *arg, const char *name)
{
	struct ks_daemon *d = arg;
	struct ks_state *st;

	if (d->se) {
		fuse_lowlevel_notify_inval_entry(d->se, FUSE_ROOT_ID, name,
						 strlen(name));
		/* The root's link count and times, which the kernel keeps
		 * until told: it tells itself of local changes only. */
		fuse_lowlevel_notify_inval_inode(d->se, FUSE_ROOT_ID, -1, 0);
		if (ks_state_lookup(d->eng, name, &st) == 0) {
			inode_invalidate_state_dir(d, st);
			inode_invalidate_owner(d, st);
			ks_state_unref(st);
		}
	}
	events_wake(d);
}

/* Appends ",KEY=VALUE" (or "KEY=VALUE" first) to the option string at
 * *spec, escaping the commas and backslashes of VALUE (store.h). */
static int spec_add(char **spec, const char *key, const char *value)
{
	size_t old = *spec ? strlen(*spec) : 0;
	char *grown = realloc(*spec, old + strlen(key) + 2 * strlen(value) + 3);
	char *p;

	if (!grown)
		return -1;
	*spec = grown;
	p = grown + old;
	if (old && grown[old - 1] != ':')
		*p++ = ',';
	p += sprintf(p, "%s=", key);
	for (; *value; value++) {
		if (*value == ',' || *value == '\\')
			*p++ = '\\';
		*p++ = *value;
	}
	*p = '\0';
	return 0;
}

/* The store's option string (store.h): etcd, a log directory, or memory. */
static char *store_spec(const struct options *o)
{
	char *spec = NULL;
	int err = 0;

	if (o->etcd) {
		spec = strdup("etcd:");
		err = !spec || spec_add(&spec, "endpoints", o->etcd);
		if (!err && o->etcd_prefix)
			err = spec_add(&spec, "prefix", o->etcd_prefix);
		if (!err && o->etcd_timeout)
			err = spec_add(&spec, "timeout", o->etcd_timeout);
	} else if (o->store) {
		spec = strdup("log:");
		err = !spec || spec_add(&spec, "dir", o->store) ||
		      spec_add(&spec, "sync", o->sync ? o->sync : "full");
	} else {
		spec = strdup("memory");
	}
	if (err) {
		free(spec);
		return NULL;
	}
	return spec;
}

static int open_store(const struct options *o, struct ks_daemon *d)
{
	char msg[512] = "", *spec;
	int err = ENOMEM;

	spec = store_spec(o);
	if (spec)
		err = ks_store_open(spec, &d->store, msg, sizeof(msg));
	free(spec);

	if (err) {
		fprintf(stderr, "kstatefs: %s\n", msg[0] ? msg : strerror(err));
		return -1;
	}
	return 0;
}

static int recover_store(struct ks_daemon *d)
{
	char msg[512] = "";
	int err = ks_store_recover(d->store, d->eng, msg, sizeof(msg));

	if (err) {
		fprintf(stderr, "kstatefs: %s\n", msg[0] ? msg : strerror(err));
		return -1;
	}
	return 0;
}

#define MAX_THREADS 16

static int serve(struct ks_daemon *d, struct fuse_cmdline_opts *cl)
{
	struct fuse_loop_config *lc;
	int err;

	if (fuse_daemonize(cl->foreground) != 0)
		return EXIT_MOUNT;
	/* In the process that serves (fuse_daemonize forks): its thread is
	 * what readers of the mappings check the daemon lives by. */
	err = ks_shm_start(d->shm);
	if (!err)
		err = ks_store_start(d->store);
	if (!err)
		err = notifier_start(d);
	if (!err)
		err = views_start(d);
	if (err) {
		fprintf(stderr, "kstatefs: cannot start a thread: %s\n",
			strerror(err));
		return EXIT_MOUNT;
	}
	if (cl->singlethread) {
		err = fuse_session_loop(d->se);
	} else {
		lc = fuse_loop_cfg_create();
		if (!lc)
			return EXIT_MOUNT;
		/* Requests never wait on each other except for the
		 * notifier's own, which needs a free thread.  No thread
		 * is ever destroyed for being idle: libfuse starts one
		 * whenever none is free, so with a low idle limit every
		 * burst of requests (a commit's RELEASE, FORGET and the
		 * notifier's three arrive together) created threads that
		 * the next lull destroyed, a clone and an exit every few
		 * commits.  Sixteen idle threads cost only their stacks. */
		fuse_loop_cfg_set_max_threads(lc, MAX_THREADS);
		fuse_loop_cfg_set_idle_threads(lc, MAX_THREADS);
		fuse_loop_cfg_set_clone_fd(lc, 0);
		err = fuse_session_loop_mt(d->se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* ECONNABORTED: the kernel ended the connection (an unmount, most
	 * often a lazy one whose last file was just closed) while a thread
	 * was reading a request off it.  The end libfuse calls clean when
	 * the read comes a moment later (ENODEV), only with a line libfuse
	 * printed: the mount is gone, and that is a clean exit. */
	if (err == -ECONNABORTED)
		err = 0;
	return err < 0 ? EXIT_MOUNT : 0;
}

/* Why the mountpoint cannot be used.  ENOTCONN is a FUSE mount whose
 * daemon died (kill -9, a crash): the kernel keeps the dead mount until
 * it is unmounted, and says only "Transport endpoint is not connected";
 * tell the user what to do. */
static void mount_error(const char *mountpoint, int err)
{
	if (err == ENOTCONN) {
		fprintf(stderr,
			"kstatefs: cannot mount on %s: %s: the daemon of the "
			"mount there died; unmount it first with "
			"'fusermount3 -u %s' (or 'umount %s' as root), then "
			"mount again\n",
			mountpoint, strerror(err), mountpoint, mountpoint);
		return;
	}
	fprintf(stderr, "kstatefs: cannot mount on %s: %s\n", mountpoint,
		err ? strerror(err) : "not a directory");
}

/* What is mounted at mountpoint already: 0 nothing of kstatefs's,
 * EEXIST the root of a live kstatefs mount (FUSE's root inode, holding
 * the root files only kstatefs has: a second daemon mounted over it would
 * hide the first one's states behind a new, empty mount), ENOTCONN a FUSE
 * mount whose daemon died.  stat of a dead mount can still succeed, from
 * the attributes the kernel holds (a process whose working directory is
 * inside it keeps them), so the dead mount shows only in what follows:
 * mounting over it would bury it, still dead, under the new one. */
static int mounted_already(const char *mountpoint, const struct stat *st)
{
	struct statfs sf;
	char path[PATH_MAX];
	int n;

	if (statfs(mountpoint, &sf) != 0)
		return errno == ENOTCONN ? ENOTCONN : 0;
	if (st->st_ino != FUSE_ROOT_ID || sf.f_type != FUSE_SUPER_MAGIC)
		return 0;
	n = snprintf(path, sizeof(path), "%s/.stats", mountpoint);
	if (n < 0 || (size_t)n >= sizeof(path))
		return 0;
	if (access(path, F_OK) != 0)
		return errno == ENOTCONN ? ENOTCONN : 0;
	n = snprintf(path, sizeof(path), "%s/.commit", mountpoint);
	return n >= 0 && (size_t)n < sizeof(path) &&
		       access(path, F_OK) == 0 ? EEXIST : 0;
}

/*
 * The device of the mount just made at mountpoint, by which the notifier
 * finds it in the mount table; 0 if the mountpoint shows the directory's
 * own (the mount is gone already).  AT_STATX_DONT_SYNC: FUSE answers from
 * the inode it holds, so no thread of the daemon waits in a request to
 * its own mount (notifier.c), and the path ends at the mount's root,
 * which needs no lookup.
 */
static dev_t mounted_dev(const char *mountpoint, dev_t under)
{
	struct statx sx;
	dev_t dev;

	if (statx(AT_FDCWD, mountpoint, AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT,
		  0, &sx) != 0)
		return 0;
	dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	return dev == under ? 0 : dev;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl;
	struct ks_engine_config cfg;
	struct options o = { 0 };
	struct ks_daemon d = { 0 };
	struct stat mst;
	int status = EXIT_MOUNT, err;
	unsigned root_mode = 0755;

	if (notifier_child_requested(argc, argv))
		notifier_child_main(argc, argv);
	if (fuse_opt_parse(&args, &o, option_spec, take_arguments) != 0)
		return EXIT_USAGE;
	if (o.help) {
		usage(stdout, argv[0]);
		fuse_opt_free_args(&args);
		return 0;
	}
	if (o.version) {
		printf("kstatefs %s (libfuse %s)\n", KSTATEFS_VERSION,
		       fuse_pkgversion());
		fuse_opt_free_args(&args);
		return 0;
	}
	/* Shared with other users, the mount checks modes: the kernel does
	 * it with default_permissions, which allow_other therefore implies.
	 * allow_other alone would let any user read, write, rename and
	 * remove every state, whatever its mode (SPEC 3: `chmod 700` makes a
	 * state private), through the very fstab line a service uses. */
	if (o.allow_other &&
	    fuse_opt_add_arg(&args, "-odefault_permissions") != 0) {
		fuse_opt_free_args(&args);
		free(o.mountpoint);
		return EXIT_MOUNT;
	}
	if (fuse_parse_cmdline(&args, &cl) != 0) {
		fuse_opt_free_args(&args);
		free(o.mountpoint);
		return EXIT_USAGE;
	}
	if (!o.mountpoint || o.extra_args) {
		fprintf(stderr, o.mountpoint ? "kstatefs: one mountpoint only\n"
					     : "kstatefs: no mountpoint\n");
		fprintf(stderr, "usage: %s [OPTIONS] MOUNTPOINT (see --help)\n",
			argv[0]);
		status = EXIT_USAGE;
		goto out_args;
	}
	cl.mountpoint = realpath(o.mountpoint, NULL);
	if (!cl.mountpoint) {
		mount_error(o.mountpoint, errno);
		goto out_args;
	}
	if (engine_config(&o, &cfg) != 0 ||
	    parse_root_mode(o.root_mode, &root_mode) != 0) {
		status = EXIT_USAGE;
		goto out_args;
	}
	if (o.sync && strcmp(o.sync, "full") && strcmp(o.sync, "none")) {
		fprintf(stderr, "kstatefs: --sync must be full or none, not "
				"'%s'\n", o.sync);
		status = EXIT_USAGE;
		goto out_args;
	}
	if (o.sync && !o.store) {
		fprintf(stderr, "kstatefs: --sync needs --store\n");
		status = EXIT_USAGE;
		goto out_args;
	}
	if (store_options_check(&o, &cfg) != 0) {
		status = EXIT_USAGE;
		goto out_args;
	}
	errno = 0;
	if (stat(cl.mountpoint, &mst) != 0 || !S_ISDIR(mst.st_mode)) {
		mount_error(cl.mountpoint, errno);
		goto out_args;
	}
	err = mounted_already(cl.mountpoint, &mst);
	if (err == ENOTCONN) {
		mount_error(cl.mountpoint, err);
		goto out_args;
	}
	if (err == EEXIST) {
		fprintf(stderr,
			"kstatefs: %s is a kstatefs mount already; unmount it "
			"first ('fusermount3 -u %s') or mount elsewhere\n",
			cl.mountpoint, cl.mountpoint);
		goto out_args;
	}

	d.mountpoint = cl.mountpoint;
	d.timeout = 86400.0;
	d.uid = getuid();
	d.gid = getgid();
	d.shared = o.allow_other != 0;
	atomic_init(&d.root_mode, root_mode);
	clock_gettime(CLOCK_REALTIME, &d.started);
	poll_table_init(&d);
	open_files_init(&d);
	events_init(&d);
	if (inode_table_init(&d) || views_init(&d))
		goto out_tables;
	if (open_store(&o, &d) != 0)
		goto out_tables;
	err = ks_engine_new(&cfg, d.store, &d.eng);
	if (err) {
		fprintf(stderr, "kstatefs: %s\n", strerror(err));
		goto out_engine;
	}
	if (recover_store(&d) != 0)
		goto out_engine;
	if (!o.no_shm) {
		struct ks_shm_config sc = {
			.parent = o.shm_dir ? o.shm_dir : "/dev/shm",
			.max_size = cfg.max_size,
			.shared = o.allow_other != 0,
			.uid = d.uid,
			.gid = d.gid,
			.root_mode = root_mode,
		};

		/* Without mappings the mount still works: readers use the
		 * files. */
		if (ks_shm_open(&sc, &d.shm) == 0)
			ks_shm_attach(d.shm, d.eng);
	}
	ks_engine_set_listener(d.eng, on_commit, &d);
	ks_engine_set_name_listener(d.eng, on_name, &d);

	d.se = fuse_session_new(&args, &ks_ops, sizeof(ks_ops), &d);
	if (!d.se) {
		/* It has said why: almost always an unknown option. */
		status = EXIT_USAGE;
		goto out_engine;
	}
	/* A shell starts background jobs with SIGINT ignored, and libfuse
	 * only takes over signals left at their default: SIGINT and SIGTERM
	 * must unmount however the daemon was started. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (fuse_set_signal_handlers(d.se) != 0)
		goto out_session;
	if (fuse_session_mount(d.se, cl.mountpoint) != 0)
		goto out_signals;
	d.dev = mounted_dev(cl.mountpoint, mst.st_dev);

	status = serve(&d, &cl);
	/* Readers of .events still waiting are answered while the session
	 * can still write to the kernel: after the unmount the reply would
	 * only fail ("fuse: writing device: Bad file descriptor"). */
	events_shutdown(&d);

	/* Unmount first: a request the notifier is still waiting on then
	 * fails instead of hanging, and the notifier can be joined.  Then
	 * the store: its own threads (a watch on etcd) call the listeners,
	 * which talk to the session, so they stop before it goes. */
	fuse_session_unmount(d.se);
	ks_store_close(d.store);
	d.store = NULL;
out_signals:
	fuse_remove_signal_handlers(d.se);
out_session:
	views_stop(&d);
	events_shutdown(&d);
	fuse_session_destroy(d.se);
	notifier_stop(&d);
	/* No request runs now; what the kernel never released is freed
	 * while the engine and the inode table are still here. */
	open_files_free_left(&d);
out_engine:
	/* The store goes first: its compaction reads the engine.  Readers
	 * stop trusting the mappings before the engine unlinks them. */
	if (d.store)
		ks_store_close(d.store);
	ks_shm_stop(d.shm);
	ks_engine_free(d.eng);
	ks_shm_close(d.shm);
out_tables:
	inode_table_free(&d);
	views_free(&d);
	events_free(&d);
	poll_table_free(&d);
	open_files_destroy(&d);
out_args:
	free(cl.mountpoint);
	free(o.mountpoint);
	fuse_opt_free_args(&args);
	free(o.source);
	free(o.store);
	free(o.sync);
	free(o.etcd);
	free(o.etcd_prefix);
	free(o.etcd_timeout);
	free(o.max_size);
	free(o.max_states);
	free(o.max_txns);
	free(o.root_mode);
	free(o.shm_dir);
	return status;
}

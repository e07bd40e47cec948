/*
 * kstatefs: options, mount, and the request loop.
 *
 * Exit status: 0 clean exit, 1 usage error, 2 cannot mount or cannot use
 * the store.
 */
#include "config.h"
#include "daemon.h"
#include "notifier.h"
#include "store.h"
#include "views.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_USAGE 1
#define EXIT_MOUNT 2

/* Largest page we accept: far past one page, well short of what a single
 * process should hold per state. */
#define MAX_SIZE_LIMIT (64UL << 20)

struct options {
	char *mountpoint;
	int extra_args;
	char *store;
	char *sync;
	char *max_size;
	char *max_states;
	char *max_txns;
	int help;
	int version;
};

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
static const struct fuse_opt option_spec[] = {
	OPT("--store %s", store),
	OPT("--store=%s", store),
	OPT("--sync %s", sync),
	OPT("--sync=%s", sync),
	OPT("max_size=%s", max_size),
	OPT("max_states=%s", max_states),
	OPT("max_txns=%s", max_txns),
	OPT("-h", help),
	OPT("--help", help),
	OPT("-V", version),
	OPT("--version", version),
	FUSE_OPT_END
};

/* Takes the mountpoint out of the arguments, so that a bad one is ours to
 * report (exit status 2), not a usage error of the option parser. */
static int take_mountpoint(void *data, const char *arg, int key,
			   struct fuse_args *outargs)
{
	struct options *o = data;

	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (o->mountpoint) {
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
"    -o max_size=BYTES      largest page (default 4096)\n"
"    -o max_states=N        most states (default 65536)\n"
"    -o max_txns=N          most open transactions per state (default 1024)\n"
"    -f                     stay in the foreground\n"
"    -d                     debug output (implies -f)\n"
"    -o allow_other         let other users in (see fuse(8))\n"
"    -o default_permissions let the kernel check modes\n"
"    -h, --help             this help\n"
"    -V, --version          the version\n",
		prog);
}

static int parse_number(const char *what, const char *text,
			unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	if (!text || !*text || *text == '-')
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

/* "log:dir=DIR,sync=..." with DIR's commas and backslashes escaped. */
static char *log_store_spec(const char *dir, const char *sync)
{
	size_t len = strlen(dir);
	char *spec = malloc(2 * len + 32), *p;

	if (!spec)
		return NULL;
	p = spec + sprintf(spec, "log:dir=");
	for (; *dir; dir++) {
		if (*dir == ',' || *dir == '\\')
			*p++ = '\\';
		*p++ = *dir;
	}
	sprintf(p, ",sync=%s", sync ? sync : "full");
	return spec;
}

static int open_store(const struct options *o, struct ks_daemon *d)
{
	char msg[512] = "", *spec;
	int err = ENOMEM;

	spec = o->store ? log_store_spec(o->store, o->sync) : strdup("memory");
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

static int serve(struct ks_daemon *d, struct fuse_cmdline_opts *cl)
{
	struct fuse_loop_config *lc;
	int err;

	if (fuse_daemonize(cl->foreground) != 0)
		return EXIT_MOUNT;
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
		 * notifier's own, which needs a free thread: keep a few
		 * spare. */
		fuse_loop_cfg_set_max_threads(lc, 16);
		fuse_loop_cfg_set_idle_threads(lc, 4);
		fuse_loop_cfg_set_clone_fd(lc, 0);
		err = fuse_session_loop_mt(d->se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	return err < 0 ? EXIT_MOUNT : 0;
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

	if (fuse_opt_parse(&args, &o, option_spec, take_mountpoint) != 0)
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
		fprintf(stderr, "kstatefs: cannot mount on %s: %s\n",
			o.mountpoint, strerror(errno));
		goto out_args;
	}
	if (engine_config(&o, &cfg) != 0) {
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
	if (stat(cl.mountpoint, &mst) != 0 || !S_ISDIR(mst.st_mode)) {
		fprintf(stderr, "kstatefs: cannot mount on %s: %s\n",
			cl.mountpoint,
			errno ? strerror(errno) : "not a directory");
		goto out_args;
	}

	d.mountpoint = cl.mountpoint;
	d.timeout = 86400.0;
	clock_gettime(CLOCK_REALTIME, &d.started);
	poll_table_init(&d);
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
	ks_engine_set_listener(d.eng, on_commit, &d);

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

	status = serve(&d, &cl);

	/* Unmount first: a request the notifier is still waiting on then
	 * fails instead of hanging, and the notifier can be joined. */
	fuse_session_unmount(d.se);
out_signals:
	fuse_remove_signal_handlers(d.se);
out_session:
	views_stop(&d);
	events_shutdown(&d);
	fuse_session_destroy(d.se);
	notifier_stop(&d);
out_engine:
	/* The store goes first: its compaction reads the engine. */
	ks_store_close(d.store);
	ks_engine_free(d.eng);
out_tables:
	inode_table_free(&d);
	views_free(&d);
	events_free(&d);
	poll_table_free(&d);
out_args:
	free(cl.mountpoint);
	free(o.mountpoint);
	fuse_opt_free_args(&args);
	free(o.store);
	free(o.sync);
	free(o.max_size);
	free(o.max_states);
	free(o.max_txns);
	return status;
}

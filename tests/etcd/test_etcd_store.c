/*
 * The etcd store against a real etcd (etcd_proc.h): two engines, each with
 * its own etcd store on the same etcd and prefix, play two hosts in one
 * process.  Each test uses a prefix of its own.  Prints the commit latency
 * and the delivery delay from one engine to the other that it measured.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "etcd_client.h"
#include "etcd_proc.h"
#include "etcd_relay.h"
#include "events.h"
#include "store.h"
#include "store_etcd.h"

static struct etcd_proc etcd;
static pid_t parent;

static void cleanup_etcd(void)
{
	/* The tests run in children (KT_RUN): only the parent owns etcd. */
	if (getpid() == parent)
		etcd_proc_cleanup(&etcd);
}

/* ---- a host: an engine over an etcd store ------------------------------- */

struct host {
	struct ks_store *store;
	struct ks_engine *eng;
	pthread_mutex_t mu;
	int commits;                 /* commit listener calls */
	char commit_log[2048];       /* "NAME VERSION\n"... */
	char names[2048];            /* name listener: "NAME\n"... */
};

static void heard_commit(void *arg, struct ks_state *st, uint64_t version)
{
	struct host *h = arg;
	char name[KS_NAME_MAX + 1];
	size_t len;

	ks_state_name(st, name);
	pthread_mutex_lock(&h->mu);
	h->commits++;
	len = strlen(h->commit_log);
	if (len + 300 < sizeof(h->commit_log))
		snprintf(h->commit_log + len, sizeof(h->commit_log) - len,
			 "%s %llu\n", name, (unsigned long long)version);
	pthread_mutex_unlock(&h->mu);
}

static void heard_name(void *arg, const char *name)
{
	struct host *h = arg;
	size_t len;

	pthread_mutex_lock(&h->mu);
	len = strlen(h->names);
	if (len + 300 < sizeof(h->names))
		snprintf(h->names + len, sizeof(h->names) - len, "%s\n", name);
	pthread_mutex_unlock(&h->mu);
}

/* A host on ENDPOINTS ("URL;URL": the store's option string's form). */
static int host_open_at(struct host *h, const char *endpoints,
			const char *prefix, double timeout, size_t max_size,
			char *msg, size_t msglen)
{
	struct ks_engine_config cfg = { .max_size = max_size,
					.max_states = 65536,
					.max_txns = 1024 };
	char opts[512];
	int err;

	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	snprintf(opts, sizeof(opts), "etcd:endpoints=%s,prefix=%s,timeout=%g",
		 endpoints, prefix, timeout);
	err = ks_store_open(opts, &h->store, msg, msglen);
	if (err)
		return err;
	if (ks_engine_new(&cfg, h->store, &h->eng) != 0)
		exit(1);
	ks_engine_set_listener(h->eng, heard_commit, h);
	ks_engine_set_name_listener(h->eng, heard_name, h);
	err = ks_store_recover(h->store, h->eng, msg, msglen);
	if (!err)
		err = ks_store_start(h->store);
	if (err) {
		ks_store_close(h->store);
		ks_engine_free(h->eng);
		h->store = NULL;
		h->eng = NULL;
	}
	return err;
}

static int host_open_cfg(struct host *h, const char *prefix, double timeout,
			 size_t max_size, char *msg, size_t msglen)
{
	return host_open_at(h, etcd.url, prefix, timeout, max_size, msg,
			    msglen);
}

static void host_open(struct host *h, const char *prefix)
{
	char msg[512] = "";
	int err = host_open_cfg(h, prefix, 2, 4096, msg, sizeof(msg));

	if (err) {
		printf("   cannot open a host on %s: %s: %s\n", prefix,
		       strerror(err), msg);
		exit(1);
	}
}

static void host_close(struct host *h)
{
	ks_store_close(h->store);
	ks_engine_free(h->eng);
	pthread_mutex_destroy(&h->mu);
}

static bool heard_now(struct host *h, const char *log, const char *what)
{
	bool yes;

	pthread_mutex_lock(&h->mu);
	yes = strstr(log, what) != NULL;
	pthread_mutex_unlock(&h->mu);
	return yes;
}

/* Whether h's listener heard WHAT within 5 s.  A remote change is in the
 * table (what wait_state sees) just before the listeners hear of it. */
static bool heard(struct host *h, const char *log, const char *what)
{
	double until = now_ms() + 5000;

	while (!heard_now(h, log, what)) {
		if (now_ms() > until)
			return false;
		usleep(1000);
	}
	return true;
}

/* h's commit listener count, once it reaches n or 5 s have passed: the
 * listener runs after the page is installed, so a test that saw the new
 * version may still be ahead of it. */
static int commits_reach(struct host *h, int n)
{
	double until = now_ms() + 5000;
	int got;

	for (;;) {
		pthread_mutex_lock(&h->mu);
		got = h->commits;
		pthread_mutex_unlock(&h->mu);
		if (got >= n || now_ms() > until)
			return got;
		usleep(1000);
	}
}

/* The state NAME on h, with a reference, or NULL. */
static struct ks_state *find(struct host *h, const char *name)
{
	struct ks_state *st = NULL;

	return ks_state_lookup(h->eng, name, &st) == 0 ? st : NULL;
}

/* Waits up to 5 s until NAME on h is at version (exists, if version is
 * -1; is gone, if -2).  True if it came to that. */
static bool wait_state(struct host *h, const char *name, long long version)
{
	double until = now_ms() + 5000;

	for (;;) {
		struct ks_state *st = find(h, name);
		long long v = st ? (long long)ks_state_version(st) : -2;
		bool ok = version == -1 ? st != NULL : v == version;

		ks_state_unref(st);
		if (ok)
			return true;
		if (now_ms() > until)
			return false;
		sleep_ms(1);
	}
}

static void commit_str(struct ks_state *st, const char *s, uint64_t *version)
{
	KT_ERR(ks_state_commit_bytes(st, s, strlen(s), version), 0);
}

/* The value of a key (relative to prefix) as etcd has it, into buf. */
static bool etcd_get(const char *prefix, const char *key, char *buf,
		     size_t len)
{
	struct ks_etcd_options o = { .endpoints = etcd.url, .prefix = prefix,
				     .timeout = 2 };
	struct ks_etcd_keys k = { .key = key };
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_etcd *c = NULL;
	bool found = false;

	if (ks_etcd_create(&o, &c) == 0 && ks_etcd_range(c, &k, 0, &kvs) == 0
	    && kvs.n == 1) {
		snprintf(buf, len, "%.*s", (int)kvs.kvs[0].value_len,
			 (const char *)kvs.kvs[0].value);
		found = true;
	}
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
	return found;
}

static int etcd_put(const char *prefix, const char *key, const char *value)
{
	struct ks_etcd_options o = { .endpoints = etcd.url, .prefix = prefix,
				     .timeout = 2 };
	struct ks_etcd_op op = { .type = KS_ETCD_OP_PUT, .keys = { .key = key },
				 .value = value, .value_len = strlen(value) };
	struct ks_etcd_txn_result r = { 0 };
	struct ks_etcd *c = NULL;
	int err = ks_etcd_create(&o, &c);

	if (!err)
		err = ks_etcd_txn(c, NULL, 0, &op, 1, NULL, 0, &r);
	ks_etcd_txn_result_free(&r);
	ks_etcd_free(c);
	return err;
}

static void read_events(struct ks_engine *eng, uint64_t *cursor, char *buf,
			size_t len)
{
	size_t n = ks_events_read(ks_engine_events(eng), cursor, buf, len - 1, NULL);

	buf[n] = 0;
}

struct stat_find {
	const char *key;
	long long value;
};

static void stat_one(void *arg, const char *key, uint64_t value)
{
	struct stat_find *f = arg;

	if (strcmp(key, f->key) == 0)
		f->value = (long long)value;
}

static long long stat_of(struct host *h, const char *key)
{
	struct stat_find f = { key, -1 };

	ks_store_stats(h->store, stat_one, &f);
	return f.value;
}

static struct ks_state_attr attr_now(mode_t mode)
{
	struct ks_state_attr a = { .uid = 1000, .gid = 100, .mode = mode };

	clock_gettime(CLOCK_REALTIME, &a.ctime);
	return a;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_create_commit(void)
{
	struct host a, b;
	struct ks_state_attr at = attr_now(0640), got;
	struct ks_state *sa, *sb;
	char buf[64];
	uint64_t v = 0;
	double t0, commit_ms = 0, deliver_ms = 0;
	const int rounds = 50;

	host_open(&a, "/t1/");
	host_open(&b, "/t1/");
	KT_ERR(ks_state_create(a.eng, "counter", &at, &sa), 0);
	KT_CHECK(wait_state(&b, "counter", 0));
	KT_CHECK(heard(&b, b.names, "counter\n"));
	KT_CHECK(!heard_now(&a, a.names, "counter\n"));  /* local: not heard */
	sb = find(&b, "counter");
	KT_REQUIRE(sb);
	ks_state_get_attr(sb, &got);
	KT_EQ(got.uid, 1000);
	KT_EQ(got.gid, 100);
	KT_EQ(got.mode, 0640);
	KT_EQ(got.ctime.tv_nsec, at.ctime.tv_nsec);
	/* A second create of the name, on either host, is EEXIST. */
	KT_ERR(ks_state_create(b.eng, "counter", &at, NULL), EEXIST);

	/* Other etcd clients see the page, the version, the meta. */
	KT_CHECK(etcd_get("/t1/", "counter", buf, sizeof(buf)) && !buf[0]);
	KT_CHECK(etcd_get("/t1/", ".version/counter", buf, sizeof(buf)) &&
		 strcmp(buf, "0") == 0);
	KT_CHECK(etcd_get("/t1/", ".meta/counter", buf, sizeof(buf)) &&
		 strstr(buf, "\"mode\":416"));

	for (int i = 1; i <= rounds; i++) {
		snprintf(buf, sizeof(buf), "%d", i);
		t0 = now_ms();
		commit_str(sa, buf, &v);
		commit_ms += now_ms() - t0;
		KT_EQ(v, (uint64_t)i);
		t0 = now_ms();
		KT_CHECK(wait_state(&b, "counter", i));
		deliver_ms += now_ms() - t0;
	}
	KT_PAGE_IS(sb, "50");
	KT_CHECK(heard(&b, b.commit_log, "counter 1\n"));
	KT_CHECK(heard(&b, b.commit_log, "counter 50\n"));
	KT_CHECK(etcd_get("/t1/", "counter", buf, sizeof(buf)) &&
		 strcmp(buf, "50") == 0);
	KT_CHECK(etcd_get("/t1/", ".version/counter", buf, sizeof(buf)) &&
		 strcmp(buf, "50") == 0);
	/* The same commit time on both. */
	{
		struct ks_page *pa = ks_state_current(sa);
		struct ks_page *pb = ks_state_current(sb);

		KT_EQ(pa->mtime.tv_sec, pb->mtime.tv_sec);
		KT_EQ(pa->mtime.tv_nsec, pb->mtime.tv_nsec);
		ks_page_unref(pa);
		ks_page_unref(pb);
	}
	printf("   commit latency %.2f ms, delivery to the other engine "
	       "%.2f ms after it (mean of %d)\n", commit_ms / rounds,
	       deliver_ms / rounds, rounds);
	KT_EQ(stat_of(&a, "etcd_connected"), 1);
	KT_CHECK(stat_of(&b, "etcd_revision") > 0);
	KT_EQ(stat_of(&b, "etcd_endpoints"), 1);
	/* A's own commits came back and were skipped: no listener calls. */
	KT_EQ(a.commits, rounds);

	/* chmod on A arrives on B. */
	at = attr_now(0600);
	KT_ERR(ks_state_set_attr(sa, &at), 0);
	for (int i = 0; i < 500; i++) {
		ks_state_get_attr(sb, &got);
		if (got.mode == 0600)
			break;
		sleep_ms(2);
	}
	KT_EQ(got.mode, 0600);
	ks_state_unref(sa);
	ks_state_unref(sb);
	host_close(&a);
	host_close(&b);
}

static void test_conflict(void)
{
	struct host a, b;
	struct ks_state *sa, *sb;
	struct ks_txn *t;
	uint64_t v = 0;

	host_open(&a, "/t2/");
	host_open(&b, "/t2/");
	sa = kt_state(a.eng, "s");
	commit_str(sa, "1", NULL);
	KT_CHECK(wait_state(&b, "s", 1));
	sb = find(&b, "s");
	KT_REQUIRE(sb);

	/* B begins, then lags (its watch stopped) while A commits: B's
	 * commit compares in etcd, and fails though B has not seen A's. */
	KT_ERR(ks_txn_begin(sb, KS_TXN_CHECKED, false, "t", &t), 0);
	KT_ERR(ks_txn_write(t, "from b", 6, 0), 0);
	ke_watch_pause(b.store);
	commit_str(sa, "2", NULL);
	KT_EQ(ks_state_version(sb), 1);
	KT_ERR(ks_txn_commit(t, NULL), EAGAIN);
	KT_TXN_IS(t, "from b");           /* left as it was */
	KT_EQ(ks_state_version(sb), 1);
	ks_txn_unref(t);

	/* A blind commit on the lagging B never conflicts: it catches up
	 * and lands over A's. */
	KT_ERR(ke_watch_resume(b.store, ke_applied_revision(b.store) + 1), 0);
	commit_str(sa, "3", NULL);
	commit_str(sb, "blind", &v);
	KT_EQ(v, 4);
	KT_PAGE_IS(sb, "blind");
	KT_CHECK(wait_state(&a, "s", 4));
	KT_PAGE_IS(sa, "blind");
	ks_state_unref(sa);
	ks_state_unref(sb);
	host_close(&a);
	host_close(&b);
}

static void test_multi(void)
{
	struct host a, b;
	struct ks_state *xa, *ya, *xb, *yb;
	struct ks_multi *m;
	struct ks_txn *tx, *ty;
	uint64_t cursor;
	char ev[1024];

	host_open(&a, "/t3/");
	host_open(&b, "/t3/");
	xa = kt_state(a.eng, "x");
	ya = kt_state(a.eng, "y");
	KT_CHECK(wait_state(&b, "x", 0) && wait_state(&b, "y", 0));
	xb = find(&b, "x");
	yb = find(&b, "y");
	KT_REQUIRE(xb && yb);
	cursor = ks_events_end(ks_engine_events(b.eng));
	pthread_mutex_lock(&b.mu);
	b.commits = 0;
	pthread_mutex_unlock(&b.mu);

	KT_ERR(ks_multi_create(a.eng, "m", &m), 0);
	KT_ERR(ks_multi_join(m, xa, &tx), 0);
	KT_ERR(ks_multi_join(m, ya, &ty), 0);
	KT_ERR(ks_txn_write(tx, "X1", 2, 0), 0);
	KT_ERR(ks_txn_write(ty, "Y1", 2, 0), 0);
	KT_ERR(ks_multi_commit(m), 0);
	ks_txn_unref(tx);
	ks_txn_unref(ty);
	ks_multi_unref(m);
	KT_CHECK(wait_state(&b, "y", 1) && wait_state(&b, "x", 1));
	KT_PAGE_IS(xb, "X1");
	KT_PAGE_IS(yb, "Y1");
	KT_EQ(commits_reach(&b, 2), 2);
	read_events(b.eng, &cursor, ev, sizeof(ev));
	KT_CHECK(strcmp(ev, "commit x 1\ncommit y 1\n") == 0 ||
		 strcmp(ev, "commit y 1\ncommit x 1\n") == 0);

	/* A read-only member whose state moved on in etcd, unseen by B:
	 * EAGAIN, nothing applied. */
	KT_ERR(ks_multi_create(b.eng, "r", &m), 0);
	KT_ERR(ks_multi_join(m, xb, &tx), 0);
	KT_ERR(ks_multi_join(m, yb, &ty), 0);
	KT_ERR(ks_txn_write(ty, "Y2", 2, 0), 0);
	ke_watch_pause(b.store);
	commit_str(xa, "X2", NULL);
	KT_ERR(ks_multi_commit(m), EAGAIN);
	ks_txn_unref(tx);
	ks_txn_unref(ty);
	ks_multi_unref(m);
	KT_ERR(ke_watch_resume(b.store, ke_applied_revision(b.store) + 1), 0);
	KT_CHECK(wait_state(&b, "x", 2));
	KT_EQ(ks_state_version(yb), 1);
	KT_EQ(ks_state_version(ya), 1);
	ks_state_unref(xa);
	ks_state_unref(ya);
	ks_state_unref(xb);
	ks_state_unref(yb);
	host_close(&a);
	host_close(&b);
}

static void test_rename_delete(void)
{
	struct host a, b;
	struct ks_state *sa, *sb, *gone;
	char buf[64], name[KS_NAME_MAX + 1];
	uint64_t id;

	host_open(&a, "/t4/");
	host_open(&b, "/t4/");
	sa = kt_state(a.eng, "r1");
	commit_str(sa, "kept", NULL);
	KT_CHECK(wait_state(&b, "r1", 1));
	sb = find(&b, "r1");
	KT_REQUIRE(sb);
	id = ks_state_id(sb);

	KT_ERR(ks_state_rename(a.eng, "r1", "r2"), 0);
	KT_CHECK(wait_state(&b, "r2", 1));
	KT_CHECK(wait_state(&b, "r1", -2));
	/* The same state on B, renamed: its id and open files follow. */
	KT_CHECK(ks_state_name(sb, name) && strcmp(name, "r2") == 0);
	KT_EQ(ks_state_id(sb), id);
	KT_PAGE_IS(sb, "kept");
	KT_CHECK(heard(&b, b.names, "r1\nr2\n"));
	KT_CHECK(etcd_get("/t4/", "r2", buf, sizeof(buf)) &&
		 strcmp(buf, "kept") == 0);
	KT_CHECK(etcd_get("/t4/", ".version/r2", buf, sizeof(buf)) &&
		 strcmp(buf, "1") == 0);
	KT_CHECK(!etcd_get("/t4/", "r1", buf, sizeof(buf)));
	KT_CHECK(!etcd_get("/t4/", ".version/r1", buf, sizeof(buf)));
	/* Onto a name that exists elsewhere: EEXIST. */
	ks_state_unref(kt_state(b.eng, "r3"));
	KT_CHECK(wait_state(&a, "r3", 0));
	KT_ERR(ks_state_rename(a.eng, "r2", "r3"), EEXIST);

	/* Deleted on A while B has a file open on it: forced on B. */
	KT_ERR(ks_state_open_file(sb), 0);
	KT_ERR(ks_state_delete(a.eng, "r2"), 0);
	KT_CHECK(wait_state(&b, "r2", -2));
	KT_CHECK(ks_state_deleted(sb));
	KT_CHECK(heard(&b, b.names, "r2\n"));
	ks_state_close_file(sb);
	KT_CHECK(!etcd_get("/t4/", "r2", buf, sizeof(buf)));
	/* Deleting what another host deleted: ENOENT. */
	gone = find(&b, "r3");
	KT_ERR(ks_state_delete(a.eng, "r3"), 0);
	KT_CHECK(wait_state(&b, "r3", -2));
	ks_state_unref(gone);
	/* mkdir and rmdir at once: the late echo of the mkdir must not
	 * bring the state back. */
	for (int i = 0; i < 20; i++) {
		struct ks_state_attr at = attr_now(0644);

		KT_ERR(ks_state_create(a.eng, "flash", &at, NULL), 0);
		KT_ERR(ks_state_delete(a.eng, "flash"), 0);
	}
	sleep_ms(100);
	KT_CHECK(wait_state(&a, "flash", -2));
	KT_CHECK(wait_state(&b, "flash", -2));
	ks_state_unref(sa);
	ks_state_unref(sb);
	host_close(&a);
	host_close(&b);
}

/* ---- two engines, two threads each, CHECKED increments -------------------- */

struct incr {
	struct host *h;
	int n;
	int conflicts;
};

static void *increments(void *arg)
{
	struct incr *in = arg;
	struct ks_state *st = find(in->h, "n");

	for (int done = 0; st && done < in->n;) {
		struct ks_txn *t;
		char buf[32];
		size_t len;
		int err;

		if (ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t))
			break;
		len = ks_txn_read(t, buf, sizeof(buf) - 1, 0);
		buf[len] = 0;
		len = (size_t)snprintf(buf, sizeof(buf), "%ld",
				       strtol(buf, NULL, 10) + 1);
		ks_txn_truncate(t, 0);
		ks_txn_write(t, buf, len, 0);
		err = ks_txn_commit(t, NULL);
		ks_txn_unref(t);
		if (err == 0)
			done++;
		else if (err == EAGAIN)
			in->conflicts++;
		else
			break;
	}
	ks_state_unref(st);
	return NULL;
}

static void test_increments(void)
{
	struct host a, b;
	struct incr in[4];
	pthread_t th[4];
	int conflicts = 0;
	const int each = 25;
	double t0;

	host_open(&a, "/t5/");
	host_open(&b, "/t5/");
	ks_state_unref(kt_state(a.eng, "n"));
	KT_CHECK(wait_state(&b, "n", 0));
	t0 = now_ms();
	for (int i = 0; i < 4; i++) {
		in[i] = (struct incr){ .h = i < 2 ? &a : &b, .n = each };
		pthread_create(&th[i], NULL, increments, &in[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		conflicts += in[i].conflicts;
	}
	KT_CHECK(wait_state(&a, "n", 4 * each));
	KT_CHECK(wait_state(&b, "n", 4 * each));
	{
		struct ks_state *sa = find(&a, "n"), *sb = find(&b, "n");

		KT_REQUIRE(sa && sb);
		KT_PAGE_IS(sa, "100");
		KT_PAGE_IS(sb, "100");
		ks_state_unref(sa);
		ks_state_unref(sb);
	}
	printf("   %d increments from 2 engines x 2 threads in %.0f ms, %d "
	       "conflicts retried\n", 4 * each, now_ms() - t0, conflicts);

	/* B restarted keeps everything. */
	host_close(&b);
	host_open(&b, "/t5/");
	KT_CHECK(wait_state(&b, "n", 4 * each));
	host_close(&a);
	host_close(&b);
}

/* ---- etcd compacted past B's revision ------------------------------------ */

static void test_compaction(void)
{
	struct ks_etcd_options o = { .endpoints = etcd.url, .prefix = "/t6/",
				     .timeout = 2 };
	struct ks_etcd_status st;
	struct ks_etcd *c = NULL;
	struct host a, b;
	struct ks_state *keep, *kb;
	struct ks_state_attr at;
	int64_t old;
	char msg[256];

	host_open(&a, "/t6/");
	host_open(&b, "/t6/");
	keep = kt_state(a.eng, "keep");
	ks_state_unref(kt_state(a.eng, "doomed"));
	commit_str(keep, "k1", NULL);
	KT_CHECK(wait_state(&b, "keep", 1) && wait_state(&b, "doomed", 0));
	kb = find(&b, "keep");
	KT_REQUIRE(kb);

	ke_watch_pause(b.store);
	old = ke_applied_revision(b.store);
	commit_str(keep, "k2", NULL);
	KT_ERR(ks_state_delete(a.eng, "doomed"), 0);
	ks_state_unref(kt_state(a.eng, "born"));
	at = attr_now(0604);
	KT_ERR(ks_state_set_attr(keep, &at), 0);
	KT_ERR(ks_etcd_create(&o, &c), 0);
	KT_ERR(ks_etcd_status(c, 2, &st, msg, sizeof(msg)), 0);
	KT_ERR(ks_etcd_compact(c, st.revision), 0);
	ks_etcd_free(c);

	KT_ERR(ke_watch_resume(b.store, old + 1), 0);
	KT_CHECK(wait_state(&b, "keep", 2));
	KT_CHECK(wait_state(&b, "doomed", -2));
	KT_CHECK(wait_state(&b, "born", 0));
	KT_PAGE_IS(kb, "k2");
	ks_state_get_attr(kb, &at);
	KT_EQ(at.mode, 0604);
	KT_CHECK(stat_of(&b, "etcd_reloads") >= 1);
	/* And it follows on from there. */
	commit_str(keep, "k3", NULL);
	KT_CHECK(wait_state(&b, "keep", 3));
	ks_state_unref(keep);
	ks_state_unref(kb);
	host_close(&a);
	host_close(&b);
}

/* ---- what does not belong ---------------------------------------------- */

static void test_bad_input(void)
{
	struct ks_store *store = NULL;
	struct host a, b;
	char msg[512] = "", opts[256];
	double t0;

	/* Options. */
	KT_ERR(ks_store_open("etcd:prefix=/x/", &store, msg, sizeof(msg)),
	       EINVAL);
	snprintf(opts, sizeof(opts), "etcd:endpoints=%s,prefix=", etcd.url);
	KT_ERR(ks_store_open(opts, &store, msg, sizeof(msg)), EINVAL);
	snprintf(opts, sizeof(opts), "etcd:endpoints=%s,timeout=0", etcd.url);
	KT_ERR(ks_store_open(opts, &store, msg, sizeof(msg)), EINVAL);
	snprintf(opts, sizeof(opts), "etcd:endpoints=%s,color=red", etcd.url);
	KT_ERR(ks_store_open(opts, &store, msg, sizeof(msg)), EINVAL);
	/* Nobody there: ETIMEDOUT within the timeout, and a message. */
	snprintf(opts, sizeof(opts), "etcd:endpoints=http://127.0.0.1:%d,"
		 "timeout=1", etcd_free_port());
	t0 = now_ms();
	KT_ERR(ks_store_open(opts, &store, msg, sizeof(msg)), ETIMEDOUT);
	KT_CHECK(now_ms() - t0 < 2000);
	KT_CHECK(strstr(msg, "no etcd endpoint answered") != NULL);
	/* A max_size etcd cannot take. */
	KT_ERR(host_open_cfg(&a, "/t7/", 2, 2000000, msg, sizeof(msg)),
	       EINVAL);
	KT_CHECK(strstr(msg, "1500000") != NULL);

	/* Another client's keys under the prefix are skipped; a broken
	 * version skips its state, a broken meta only its owner. */
	KT_ERR(etcd_put("/t7/", "a/b", "junk"), 0);
	KT_ERR(etcd_put("/t7/", ".other/x", "junk"), 0);
	KT_ERR(etcd_put("/t7/", ".version/bad", "12x"), 0);
	KT_ERR(etcd_put("/t7/", "bad", "page"), 0);
	KT_ERR(etcd_put("/t7/", ".version/ok", "3"), 0);
	KT_ERR(etcd_put("/t7/", "ok", "three"), 0);
	KT_ERR(etcd_put("/t7/", ".meta/ok", "{\"uid\":\"x\"}"), 0);
	host_open(&a, "/t7/");
	KT_CHECK(wait_state(&a, "ok", 3));
	KT_CHECK(wait_state(&a, "bad", -2));
	KT_CHECK(stat_of(&a, "etcd_ignored_keys") >= 2);
	/* ... and the same arriving through the watch. */
	host_open(&b, "/t7/");
	KT_ERR(etcd_put("/t7/", ".version/w", "007"), 0);
	KT_ERR(etcd_put("/t7/", ".meta/ok", "[1,2"), 0);
	KT_ERR(etcd_put("/t7/", ".version/ok", "18446744073709551616"), 0);
	KT_ERR(etcd_put("/t7/", "x\001/y", "junk"), 0);
	KT_ERR(etcd_put("/t7/", ".version/ok", "4"), 0);
	KT_CHECK(wait_state(&b, "ok", 4));
	KT_CHECK(wait_state(&b, "w", -2));
	host_close(&a);
	host_close(&b);

	/* A page larger than this host's max_size (another host's larger
	 * one wrote it): taken, as every host shares every state. */
	KT_ERR(etcd_put("/t8/", ".version/big", "1"), 0);
	{
		char big[5000];

		memset(big, 'b', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		KT_ERR(etcd_put("/t8/", "big", big), 0);
	}
	KT_ERR(host_open_cfg(&a, "/t8/", 2, 4096, msg, sizeof(msg)), 0);
	KT_CHECK(wait_state(&a, "big", 1));
	{
		struct ks_state *st = NULL;
		struct ks_page *p;

		KT_ERR(ks_state_lookup(a.eng, "big", &st), 0);
		if (st) {
			p = ks_state_current(st);
			KT_CHECK(p->len == 4999);
			ks_page_unref(p);
			ks_state_unref(st);
		}
	}
	host_close(&a);
}

/* ---- etcd stopped: ETIMEDOUT, then back ---------------------------------- */

static void test_stopped(void)
{
	struct host a, b;
	struct ks_state *sa;
	char msg[256] = "";
	uint64_t v = 0, there = 0;
	double t0, took;
	int err;

	KT_ERR(host_open_cfg(&a, "/t9/", 1, 4096, msg, sizeof(msg)), 0);
	host_open(&b, "/t9/");
	sa = kt_state(a.eng, "s");
	commit_str(sa, "before", NULL);
	KT_CHECK(wait_state(&b, "s", 1));

	etcd_proc_signal(&etcd, SIGSTOP);
	etcd_proc_wait_stopped(&etcd);
	t0 = now_ms();
	err = ks_state_commit_bytes(sa, "during", 6, NULL);
	took = now_ms() - t0;
	KT_CHECK(err == ETIMEDOUT || err == EIO);
	KT_CHECK(took < 2000);
	printf("   a commit with etcd stopped failed (%s) after %.0f ms "
	       "(timeout 1 s)\n", strerror(err), took);
	KT_EQ(ks_state_version(sa), 1);   /* not applied here */
	for (int i = 0; i < 50 && stat_of(&a, "etcd_connected") != 0; i++)
		sleep_ms(100);
	KT_EQ(stat_of(&a, "etcd_connected"), 0);
	etcd_proc_signal(&etcd, SIGCONT);

	/* Back: commits land again, and both hosts agree on what happened
	 * to the one that timed out (etcd may have applied it). */
	t0 = now_ms();
	do {
		err = ks_state_commit_bytes(sa, "after", 5, &v);
	} while (err && now_ms() - t0 < 10000 && (sleep_ms(50), true));
	KT_ERR(err, 0);
	KT_PAGE_IS(sa, "after");
	KT_CHECK(wait_state(&b, "s", (long long)v));
	for (int i = 0; i < 50 && stat_of(&a, "etcd_connected") != 1; i++)
		sleep_ms(100);
	KT_EQ(stat_of(&a, "etcd_connected"), 1);
	{
		char buf[32];

		KT_CHECK(etcd_get("/t9/", ".version/s", buf, sizeof(buf)));
		there = strtoull(buf, NULL, 10);
	}
	KT_EQ(there, v);
	ks_state_unref(sa);
	host_close(&a);
	host_close(&b);
}

/* ---- a member dies after applying a commit, before answering -------------- */

/* Another host's commit to r2, made while the answer to A's is lost. */
static void commit_in_between(void *arg)
{
	(void)arg;
	etcd_put("/t10/", ".version/r2", "7");
}

/* A's endpoints are two relays to etcd, playing two members.  A commit
 * (and a rename) that etcd applies but whose answer is lost goes to the
 * other: refused there, it is recognised as A's own and acknowledged,
 * once.  If another host committed in between, the refusal cannot be told
 * from a conflict: the commit fails with its fate unknown, not EAGAIN. */
static void test_resend(void)
{
	struct relay_arm arm = { 0 };
	struct relay r1, r2;
	struct host a;
	struct ks_state *s;
	char eps[160], msg[256] = "", buf[64];
	uint64_t v = 0;
	int err;

	KT_REQUIRE(relay_start(&r1, etcd.client_port, &arm) == 0);
	KT_REQUIRE(relay_start(&r2, etcd.client_port, &arm) == 0);
	snprintf(eps, sizeof(eps), "%s;%s", r1.url, r2.url);
	KT_ERR(host_open_at(&a, eps, "/t10/", 5, 4096, msg, sizeof(msg)), 0);
	s = kt_state(a.eng, "r");
	commit_str(s, "1", &v);
	KT_EQ(v, 1);
	KT_EQ(stat_of(&a, "etcd_resends"), 0);

	atomic_store(&arm.armed, 1);
	commit_str(s, "2", &v);
	KT_EQ(v, 2);
	KT_EQ(atomic_load(&arm.landed), 1);
	KT_EQ(stat_of(&a, "etcd_resends"), 1);
	KT_CHECK(etcd_get("/t10/", ".version/r", buf, sizeof(buf)) &&
		 strcmp(buf, "2") == 0);
	KT_CHECK(etcd_get("/t10/", "r", buf, sizeof(buf)) &&
		 strcmp(buf, "2") == 0);
	KT_PAGE_IS(s, "2");

	atomic_store(&arm.armed, 1);
	KT_ERR(ks_state_rename(a.eng, "r", "r2"), 0);
	KT_EQ(atomic_load(&arm.landed), 2);
	KT_EQ(stat_of(&a, "etcd_resends"), 2);
	KT_CHECK(!etcd_get("/t10/", ".version/r", buf, sizeof(buf)));
	KT_CHECK(etcd_get("/t10/", ".version/r2", buf, sizeof(buf)) &&
		 strcmp(buf, "2") == 0);
	KT_CHECK(wait_state(&a, "r2", 2));
	KT_EQ(stat_of(&a, "etcd_refused"), 0);

	arm.after_landing = commit_in_between;
	atomic_store(&arm.armed, 1);
	err = ks_state_commit_bytes(s, "3", 1, NULL);
	KT_CHECK(err == EIO || err == ETIMEDOUT);
	KT_EQ(atomic_load(&arm.landed), 3);
	KT_CHECK(etcd_get("/t10/", ".version/r2", buf, sizeof(buf)) &&
		 strcmp(buf, "7") == 0);
	ks_state_unref(s);
	host_close(&a);
	relay_stop(&r1);
	relay_stop(&r2);
}

int main(void)
{
	int err;

	parent = getpid();
	if (etcd_proc_init(&etcd) != 0) {
		printf("cannot prepare etcd\n");
		return 1;
	}
	atexit(cleanup_etcd);
	err = etcd_proc_start(&etcd, NULL);
	if (err) {
		printf("cannot start etcd: %s\n", strerror(err));
		return 1;
	}
	KT_RUN(test_create_commit, "create and commits on A arrive on B; "
	       "etcd holds the page and version; chmod follows");
	KT_RUN(test_conflict, "a CHECKED commit begun on a lagging B fails "
	       "with EAGAIN; a blind one catches up and lands");
	KT_RUN(test_multi, "a two-state commit on A arrives on B as one unit; "
	       "a read-only member that moved on makes EAGAIN");
	KT_RUN(test_rename_delete, "rename on A is a rename on B (same id); "
	       "delete with an open file on B; mkdir+rmdir leave nothing");
	KT_RUN(test_increments, "2 engines x 2 threads of CHECKED increments "
	       "end at the sum; a restarted B has it all");
	KT_RUN(test_compaction, "B behind a compaction reloads and ends equal "
	       "to A");
	KT_RUN(test_bad_input, "bad options, no etcd, junk keys and values, "
	       "oversize pages");
	KT_RUN(test_stopped, "etcd stopped: ETIMEDOUT within the timeout, "
	       "etcd_connected 0, then commits again");
	KT_RUN(test_resend, "a commit and a rename whose answer is lost are "
	       "resent, recognised and acknowledged once; with a commit in "
	       "between, their fate is unknown");
	return kt_finish("test_etcd_store");
}

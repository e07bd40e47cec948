/*
 * libkstate given NULL handles, without a mount: every function fails with
 * -1 (or NULL, or 0 for kstate_get_length) and errno EINVAL instead of
 * crashing, and kstate_unsubscribe(NULL) does nothing.  The same calls with
 * live handles, and other bad arguments, are in test_lib.c.
 *
 *   test_null
 */
#include "harness.h"
#include "kstate.h"

static int body(struct kstate_txn *txn, void *page, void *arg)
{
	(void)txn;
	(void)page;
	(void)arg;
	return 0;
}

/* Each call starts from another errno, so that EINVAL is the call's. */
#define FAILS_EINVAL(call)                                                   \
	do {                                                                 \
		errno = 0;                                                   \
		CHECK(call);                                                 \
		CHECK_ERR(errno, EINVAL);                                    \
	} while (0)

int main(void)
{
	uint64_t v = 7;
	char buf[8];

	FAILS_EINVAL(!kstate_subscribe(NULL, KSTATE_READ));
	kstate_unsubscribe(NULL);
	FAILS_EINVAL(kstate_fd(NULL) == -1);
	FAILS_EINVAL(kstate_version(NULL, &v) == -1);
	FAILS_EINVAL(kstate_version(NULL, NULL) == -1);
	FAILS_EINVAL(kstate_read(NULL, buf, sizeof buf, &v) == -1);
	FAILS_EINVAL(kstate_read(NULL, NULL, 0, NULL) == -1);
	FAILS_EINVAL(kstate_wait(NULL, 0, 0, &v) == -1);
	FAILS_EINVAL(kstate_wait(NULL, 0, -1, NULL) == -1);
	FAILS_EINVAL(!kstate_start_transaction(NULL));
	FAILS_EINVAL(!kstate_get_ptr(NULL));
	FAILS_EINVAL(kstate_get_length(NULL) == 0);
	FAILS_EINVAL(kstate_set_length(NULL, 0) == -1);
	FAILS_EINVAL(kstate_commit(NULL) == -1);
	FAILS_EINVAL(kstate_abort(NULL) == -1);
	FAILS_EINVAL(kstate_transaction_using_fn(NULL, body, NULL, 0) == -1);
	FAILS_EINVAL(kstate_transaction_using_fn(NULL, NULL, NULL,
						 KSTATE_RETRY_FOREVER) == -1);
	/* Nothing written through a NULL handle's arguments. */
	CHECK(v == 7);
	printf("test_null: ok\n");
	return 0;
}

/*
 * Reading etcd's JSON gateway answers into the structs of etcd_client.h.
 * Everything here distrusts its input: each function checks the presence
 * and the JSON type of every field it uses, decodes base64 strictly, and
 * answers EIO for anything etcd would not send (ENOMEM aside), leaving its
 * output empty.  Internal to the etcd client (etcd_client.c, etcd_watch.c)
 * and its tests.
 *
 * What the gateway (etcd 3.4, proto3 JSON) leaves out, and we accept as
 * zero/empty: fields at their default value, so an empty value, version 0,
 * "succeeded": false, the PUT event type, an empty kvs list.  64-bit numbers
 * arrive as JSON strings of decimal digits; JSON integers are accepted too
 * (proto3 JSON allows both).
 */
#ifndef KSTATEFS_CORE_ETCD_PARSE_H
#define KSTATEFS_CORE_ETCD_PARSE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd_client.h"

/* Parses a whole HTTP body: one JSON object, nothing after it but
 * whitespace.  0 with *out to json_object_put, or EIO / ENOMEM. */
int ks_ep_parse(const char *buf, size_t len, struct json_object **out);

/* obj.field as an int64 (a string of digits or an integer).  A missing
 * field gives 0 when !required, else EIO. */
int ks_ep_int64(struct json_object *obj, const char *field, bool required,
		int64_t *out);

/* The same for uint64 fields (member and cluster ids use all 64 bits). */
int ks_ep_uint64(struct json_object *obj, const char *field, bool required,
		 uint64_t *out);

/* obj.field as a bool; missing is false. */
int ks_ep_bool(struct json_object *obj, const char *field, bool *out);

/* obj.header.revision (required, > 0 when required_rev). */
int ks_ep_header_revision(struct json_object *obj, bool required_rev,
			  int64_t *out);

/* One kv object.  Its key must start with prefix[0..plen), which is
 * stripped.  A DELETE event's kv has only key and mod_revision; any other
 * kv needs positive create_revision, mod_revision and version. */
int ks_ep_kv(struct json_object *obj, const char *prefix, size_t plen,
	     bool deleted, struct ks_etcd_kv *out);

/* A range response (top level or inside a txn): header.revision and kvs.
 * *more says whether etcd has more keys past the limit. */
int ks_ep_range(struct json_object *obj, const char *prefix, size_t plen,
		struct ks_etcd_kvs *out, bool *more);

/* A txn response for a txn whose branches were success/failure. */
int ks_ep_txn(struct json_object *obj, const char *prefix, size_t plen,
	      const struct ks_etcd_op *success, size_t n_success,
	      const struct ks_etcd_op *failure, size_t n_failure,
	      struct ks_etcd_txn_result *out);

/* One object of the watch stream, as the watch needs it. */
struct ks_ep_watch {
	bool created;
	bool canceled;
	int64_t compact_revision;
	int64_t revision;            /* header.revision; 0 if absent */
	size_t n_events;
	struct ks_etcd_event *events;
	char cancel_reason[128];
};

int ks_ep_watch(struct json_object *obj, const char *prefix, size_t plen,
		struct ks_ep_watch *out);
void ks_ep_watch_free(struct ks_ep_watch *w);

/* A gateway error body ({"error": ..., "message": ..., "code": N}, or the
 * stream form {"error": {"grpc_code": N, "message": ...}}) turned into an
 * errno, as documented in etcd_client.h; EIO if it is not one.  The message
 * goes to msg (may be NULL). */
int ks_ep_error(struct json_object *obj, char *msg, size_t msg_size);

/* The errno for a gRPC status code and message. */
int ks_ep_grpc_errno(int64_t code, const char *message);

void ks_etcd_kv_free(struct ks_etcd_kv *kv);

#endif

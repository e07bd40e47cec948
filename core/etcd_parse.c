/*
 * Checking readers of etcd's JSON answers; see etcd_parse.h.
 */
#include "etcd_parse.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_base64.h"

int ks_ep_parse(const char *buf, size_t len, struct json_object **out)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t end;

	/* json-c takes an int length */
	if (len == 0 || len > INT_MAX)
		return EIO;
	tok = json_tokener_new();
	if (tok == NULL)
		return ENOMEM;
	/* Strict: no comments, no single quotes, no trailing garbage; the
	 * gateway writes standard JSON. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	if (obj == NULL) {
		json_tokener_free(tok);
		return EIO;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	for (; end < len; end++) {
		char ch = buf[end];
		if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t') {
			json_object_put(obj);
			return EIO;
		}
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return EIO;
	}
	*out = obj;
	return 0;
}

/* A decimal int64 in s[0..len): optional '-', 1 to 19 digits, no overflow. */
static int parse_decimal(const char *s, size_t len, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0;
	size_t i = 0;

	if (len > 0 && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len || len - i > 19)
		return EIO;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return EIO;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
		return EIO;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int ks_ep_int64(struct json_object *obj, const char *field, bool required,
		int64_t *out)
{
	struct json_object *f;

	if (!json_object_object_get_ex(obj, field, &f) || f == NULL) {
		*out = 0;
		return required ? EIO : 0;
	}
	if (json_object_is_type(f, json_type_string))
		return parse_decimal(json_object_get_string(f),
				     (size_t)json_object_get_string_len(f), out);
	if (json_object_is_type(f, json_type_int)) {
		errno = 0;
		*out = json_object_get_int64(f);
		/* json-c saturates values beyond int64 and says so in errno */
		return errno == 0 ? 0 : EIO;
	}
	return EIO;
}

int ks_ep_uint64(struct json_object *obj, const char *field, bool required,
		 uint64_t *out)
{
	struct json_object *f;
	const char *s;
	size_t len;
	uint64_t v = 0;

	*out = 0;
	if (!json_object_object_get_ex(obj, field, &f) || f == NULL)
		return required ? EIO : 0;
	if (json_object_is_type(f, json_type_int)) {
		/* json-c keeps big positive integers as uint64 */
		errno = 0;
		*out = json_object_get_uint64(f);
		return errno == 0 ? 0 : EIO;
	}
	if (!json_object_is_type(f, json_type_string))
		return EIO;
	s = json_object_get_string(f);
	len = (size_t)json_object_get_string_len(f);
	if (len == 0 || len > 20)
		return EIO;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return EIO;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int ks_ep_bool(struct json_object *obj, const char *field, bool *out)
{
	struct json_object *f;

	*out = false;
	if (!json_object_object_get_ex(obj, field, &f) || f == NULL)
		return 0;
	if (!json_object_is_type(f, json_type_boolean))
		return EIO;
	*out = json_object_get_boolean(f);
	return 0;
}

/* obj.field as a string, or NULL (missing is allowed, a wrong type is not:
 * *err set). */
static const char *get_string(struct json_object *obj, const char *field,
			      size_t *len, int *err)
{
	struct json_object *f;

	*len = 0;
	if (!json_object_object_get_ex(obj, field, &f) || f == NULL)
		return NULL;
	if (!json_object_is_type(f, json_type_string)) {
		*err = EIO;
		return NULL;
	}
	*len = (size_t)json_object_get_string_len(f);
	return json_object_get_string(f);
}

/* obj.field as an array; missing gives NULL with 0, a wrong type EIO. */
static int get_array(struct json_object *obj, const char *field,
		     struct json_object **arr)
{
	struct json_object *f;

	*arr = NULL;
	if (!json_object_object_get_ex(obj, field, &f) || f == NULL)
		return 0;
	if (!json_object_is_type(f, json_type_array))
		return EIO;
	*arr = f;
	return 0;
}

/* obj.field as an object, required. */
static struct json_object *get_object(struct json_object *obj,
				      const char *field)
{
	struct json_object *f;

	if (!json_object_object_get_ex(obj, field, &f) || f == NULL ||
	    !json_object_is_type(f, json_type_object))
		return NULL;
	return f;
}

int ks_ep_header_revision(struct json_object *obj, bool required_rev,
			  int64_t *out)
{
	struct json_object *h = get_object(obj, "header");
	int err;

	*out = 0;
	if (h == NULL)
		return EIO;
	err = ks_ep_int64(h, "revision", required_rev, out);
	if (err)
		return err;
	if (required_rev ? *out <= 0 : *out < 0)
		return EIO;
	return 0;
}

/* Base64 field `field` of obj decoded into *out (NUL-terminated). Missing
 * means empty when !required. */
static int get_bytes(struct json_object *obj, const char *field,
		     bool required, void **out, size_t *out_len)
{
	int err = 0;
	size_t len;
	const char *s = get_string(obj, field, &len, &err);

	if (err)
		return err;
	if (s == NULL) {
		if (required)
			return EIO;
		s = "";
	}
	err = ks_b64_decode(s, len, out, out_len);
	return err == EINVAL ? EIO : err;
}

void ks_etcd_kv_free(struct ks_etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

int ks_ep_kv(struct json_object *obj, const char *prefix, size_t plen,
	     bool deleted, struct ks_etcd_kv *out)
{
	struct ks_etcd_kv kv;
	void *raw = NULL;
	size_t raw_len = 0;
	int err;

	memset(&kv, 0, sizeof(kv));
	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(obj, json_type_object))
		return EIO;
	err = get_bytes(obj, "key", true, &raw, &raw_len);
	if (err)
		return err;
	if (raw_len <= plen || memcmp(raw, prefix, plen) != 0) {
		/* etcd keys are never empty, and we only ask for ours */
		free(raw);
		return EIO;
	}
	kv.key_len = raw_len - plen;
	kv.key = malloc(kv.key_len + 1);
	if (kv.key == NULL) {
		free(raw);
		return ENOMEM;
	}
	memcpy(kv.key, (char *)raw + plen, kv.key_len + 1);
	free(raw);

	err = get_bytes(obj, "value", false, &kv.value, &kv.value_len);
	if (!err)
		err = ks_ep_int64(obj, "create_revision", false,
				  &kv.create_revision);
	if (!err)
		err = ks_ep_int64(obj, "mod_revision", true, &kv.mod_revision);
	if (!err)
		err = ks_ep_int64(obj, "version", false, &kv.version);
	if (!err && kv.mod_revision <= 0)
		err = EIO;
	if (!err && !deleted &&
	    (kv.create_revision <= 0 || kv.version <= 0 ||
	     kv.create_revision > kv.mod_revision))
		err = EIO;
	if (!err && (kv.create_revision < 0 || kv.version < 0))
		err = EIO;
	if (err) {
		ks_etcd_kv_free(&kv);
		return err;
	}
	*out = kv;
	return 0;
}

void ks_etcd_kvs_free(struct ks_etcd_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++)
		ks_etcd_kv_free(&kvs->kvs[i]);
	free(kvs->kvs);
	memset(kvs, 0, sizeof(*kvs));
}

int ks_ep_range(struct json_object *obj, const char *prefix, size_t plen,
		struct ks_etcd_kvs *out, bool *more)
{
	struct ks_etcd_kvs r;
	struct json_object *arr;
	size_t n;
	int err;

	memset(&r, 0, sizeof(r));
	memset(out, 0, sizeof(*out));
	*more = false;
	if (!json_object_is_type(obj, json_type_object))
		return EIO;
	err = ks_ep_header_revision(obj, true, &r.revision);
	if (!err)
		err = ks_ep_bool(obj, "more", more);
	if (!err)
		err = get_array(obj, "kvs", &arr);
	if (err)
		return err;
	n = arr ? json_object_array_length(arr) : 0;
	if (n > 0) {
		r.kvs = calloc(n, sizeof(*r.kvs));
		if (r.kvs == NULL)
			return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		err = ks_ep_kv(json_object_array_get_idx(arr, i), prefix, plen,
			       false, &r.kvs[i]);
		if (err) {
			ks_etcd_kvs_free(&r);
			return err;
		}
		r.n++;
	}
	*out = r;
	return 0;
}

void ks_etcd_txn_result_free(struct ks_etcd_txn_result *r)
{
	for (size_t i = 0; i < r->n_responses; i++)
		ks_etcd_kvs_free(&r->responses[i].kvs);
	free(r->responses);
	memset(r, 0, sizeof(*r));
}

/* The name etcd gives the response to an op of this type. */
static const char *op_response_name(enum ks_etcd_op_type t)
{
	switch (t) {
	case KS_ETCD_OP_RANGE:
		return "response_range";
	case KS_ETCD_OP_PUT:
		return "response_put";
	case KS_ETCD_OP_DELETE:
		return "response_delete_range";
	}
	return "";
}

int ks_ep_txn(struct json_object *obj, const char *prefix, size_t plen,
	      const struct ks_etcd_op *success, size_t n_success,
	      const struct ks_etcd_op *failure, size_t n_failure,
	      struct ks_etcd_txn_result *out)
{
	struct ks_etcd_txn_result r;
	const struct ks_etcd_op *ops;
	struct json_object *arr;
	size_t n_ops;
	int err;

	memset(&r, 0, sizeof(r));
	memset(out, 0, sizeof(*out));
	err = ks_ep_header_revision(obj, true, &r.revision);
	if (!err)
		err = ks_ep_bool(obj, "succeeded", &r.succeeded);
	if (!err)
		err = get_array(obj, "responses", &arr);
	if (err)
		return err;
	ops = r.succeeded ? success : failure;
	n_ops = r.succeeded ? n_success : n_failure;
	/* one response per op of the branch that ran, no more, no less */
	if ((arr ? json_object_array_length(arr) : 0) != n_ops)
		return EIO;
	if (n_ops > 0) {
		r.responses = calloc(n_ops, sizeof(*r.responses));
		if (r.responses == NULL)
			return ENOMEM;
	}
	for (size_t i = 0; i < n_ops; i++) {
		struct json_object *item = json_object_array_get_idx(arr, i);
		struct json_object *resp;
		bool more;

		if (item == NULL ||
		    !json_object_is_type(item, json_type_object) ||
		    json_object_object_length(item) != 1 ||
		    (resp = get_object(item, op_response_name(ops[i].type))) ==
			    NULL) {
			err = EIO;
			break;
		}
		r.n_responses++;
		if (ops[i].type == KS_ETCD_OP_RANGE)
			err = ks_ep_range(resp, prefix, plen,
					  &r.responses[i].kvs, &more);
		else if (ops[i].type == KS_ETCD_OP_DELETE)
			err = ks_ep_int64(resp, "deleted", false,
					  &r.responses[i].deleted);
		if (err)
			break;
	}
	if (err) {
		ks_etcd_txn_result_free(&r);
		return err;
	}
	*out = r;
	return 0;
}

void ks_ep_watch_free(struct ks_ep_watch *w)
{
	for (size_t i = 0; i < w->n_events; i++)
		ks_etcd_kv_free(&w->events[i].kv);
	free(w->events);
	memset(w, 0, sizeof(*w));
}

/* An event's type: missing or "PUT" (or 0) is a put, "DELETE" (or 1) a
 * delete. */
static int event_type(struct json_object *ev, enum ks_etcd_event_type *out)
{
	struct json_object *f;

	*out = KS_ETCD_PUT;
	if (!json_object_object_get_ex(ev, "type", &f) || f == NULL)
		return 0;
	if (json_object_is_type(f, json_type_string)) {
		const char *s = json_object_get_string(f);
		if (strcmp(s, "PUT") == 0)
			return 0;
		if (strcmp(s, "DELETE") == 0) {
			*out = KS_ETCD_DELETE;
			return 0;
		}
		return EIO;
	}
	if (json_object_is_type(f, json_type_int)) {
		int64_t v = json_object_get_int64(f);
		if (v == 0 || v == 1) {
			*out = v ? KS_ETCD_DELETE : KS_ETCD_PUT;
			return 0;
		}
	}
	return EIO;
}

int ks_ep_watch(struct json_object *obj, const char *prefix, size_t plen,
		struct ks_ep_watch *out)
{
	struct ks_ep_watch w;
	struct json_object *res = get_object(obj, "result");
	struct json_object *arr;
	size_t n, len;
	const char *reason;
	int err = 0;

	memset(&w, 0, sizeof(w));
	memset(out, 0, sizeof(*out));
	if (res == NULL)
		return EIO;
	/* a compacted watch's header has no revision: not required here */
	err = ks_ep_header_revision(res, false, &w.revision);
	if (!err)
		err = ks_ep_bool(res, "created", &w.created);
	if (!err)
		err = ks_ep_bool(res, "canceled", &w.canceled);
	if (!err)
		err = ks_ep_int64(res, "compact_revision", false,
				  &w.compact_revision);
	if (!err && w.compact_revision < 0)
		err = EIO;
	reason = err ? NULL : get_string(res, "cancel_reason", &len, &err);
	if (reason != NULL)
		snprintf(w.cancel_reason, sizeof(w.cancel_reason), "%s", reason);
	if (!err)
		err = get_array(res, "events", &arr);
	if (err)
		return err;
	n = arr ? json_object_array_length(arr) : 0;
	if (n > 0) {
		w.events = calloc(n, sizeof(*w.events));
		if (w.events == NULL)
			return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *ev = json_object_array_get_idx(arr, i);
		struct json_object *kv;
		enum ks_etcd_event_type type;

		if (!json_object_is_type(ev, json_type_object) ||
		    (kv = get_object(ev, "kv")) == NULL) {
			err = EIO;
			break;
		}
		err = event_type(ev, &type);
		if (!err)
			err = ks_ep_kv(kv, prefix, plen, type == KS_ETCD_DELETE,
				       &w.events[i].kv);
		if (err)
			break;
		w.events[i].type = type;
		w.n_events++;
		/* events come in revision order, within the header's */
		if (i > 0 && w.events[i].kv.mod_revision <
				     w.events[i - 1].kv.mod_revision)
			err = EIO;
		if (!err && w.revision > 0 &&
		    w.events[i].kv.mod_revision > w.revision)
			err = EIO;
		if (err)
			break;
	}
	if (err) {
		ks_ep_watch_free(&w);
		return err;
	}
	*out = w;
	return 0;
}

int ks_ep_grpc_errno(int64_t code, const char *message)
{
	switch (code) {
	case 3:   /* InvalidArgument */
		if (strstr(message, "request is too large") != NULL)
			return EFBIG;
		return EINVAL;
	case 8:   /* ResourceExhausted: a gRPC message size limit */
		return EFBIG;
	case 11:  /* OutOfRange */
		if (strstr(message, "compacted") != NULL)
			return ESTALE;
		if (strstr(message, "future") != NULL)
			return ERANGE;
		return EIO;
	case 4:   /* DeadlineExceeded */
	case 14:  /* Unavailable: no leader, leader changed, timed out */
		return ETIMEDOUT;
	case 7:   /* PermissionDenied */
	case 16:  /* Unauthenticated */
		return EACCES;
	default:
		return EIO;
	}
}

int ks_ep_error(struct json_object *obj, char *msg, size_t msg_size)
{
	struct json_object *e;
	const char *m = NULL;
	size_t len;
	int64_t code = -1;
	int err = 0;

	if (msg != NULL && msg_size > 0)
		msg[0] = '\0';
	if (!json_object_is_type(obj, json_type_object))
		return EIO;
	e = get_object(obj, "error");
	if (e != NULL) {
		/* the stream form: {"error": {"grpc_code": N, ...}} */
		if (ks_ep_int64(e, "grpc_code", true, &code) != 0)
			return EIO;
		m = get_string(e, "message", &len, &err);
	} else {
		if (ks_ep_int64(obj, "code", true, &code) != 0)
			return EIO;
		m = get_string(obj, "message", &len, &err);
		if (m == NULL && !err)
			m = get_string(obj, "error", &len, &err);
	}
	if (err || code <= 0)
		return EIO;
	if (m == NULL)
		m = "";
	if (msg != NULL && msg_size > 0)
		snprintf(msg, msg_size, "%s", m);
	return ks_ep_grpc_errno(code, m);
}

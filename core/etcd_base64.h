/*
 * Base64 (RFC 4648, standard alphabet, with padding) for the etcd JSON
 * gateway, which carries every key and value that way.
 *
 * Decoding is strict because every byte comes from the network: only the
 * standard alphabet, a length that is a multiple of 4, '=' only as the final
 * one or two characters, and zero bits where the padding leaves bits over
 * (so each byte string has exactly one encoding).  Anything else is refused.
 */
#ifndef KSTATEFS_CORE_ETCD_BASE64_H
#define KSTATEFS_CORE_ETCD_BASE64_H

#include <stddef.h>

/* Characters needed to encode len bytes, without the terminating NUL. */
size_t ks_b64_encoded_len(size_t len);

/* Encodes src[0..len) into dst, which must hold ks_b64_encoded_len(len) + 1
 * characters; dst is NUL-terminated.  Returns the encoded length. */
size_t ks_b64_encode(const void *src, size_t len, char *dst);

/* Decodes src[0..len) into a new buffer *out of *out_len bytes plus a NUL
 * byte (so text values can be used as C strings; the NUL is not counted).
 * Returns 0, EINVAL for input that is not strict base64, or ENOMEM. */
int ks_b64_decode(const char *src, size_t len, void **out, size_t *out_len);

#endif

/*
 * Strict base64; see etcd_base64.h.  Written out here rather than borrowed
 * because the decoders at hand (OpenSSL's EVP_DecodeBlock and friends)
 * accept whitespace and sloppy padding, and we want one answer for every
 * malformed input: EINVAL.
 */
#include "etcd_base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ks_b64_encoded_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

size_t ks_b64_encode(const void *src, size_t len, char *dst)
{
	const unsigned char *s = src;
	size_t o = 0;
	size_t i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 |
			     s[i + 2];
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = b64_alphabet[v >> 6 & 63];
		dst[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = '=';
		dst[o++] = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = b64_alphabet[v >> 6 & 63];
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}

/* The 6-bit value of c, or -1 if c is not in the alphabet. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int ks_b64_decode(const char *src, size_t len, void **out, size_t *out_len)
{
	size_t pad = 0;
	size_t n;
	unsigned char *d;
	size_t o = 0;

	if (len % 4 != 0)
		return EINVAL;
	if (len > 0 && src[len - 1] == '=')
		pad = (len > 1 && src[len - 2] == '=') ? 2 : 1;
	n = len / 4 * 3 - pad;
	d = malloc(n + 1);
	if (d == NULL)
		return ENOMEM;

	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];

		for (size_t k = 0; k < 4; k++) {
			/* '=' is allowed only as padding at the very end */
			if (last && k >= 4 - pad) {
				v[k] = 0;
				continue;
			}
			v[k] = b64_value((unsigned char)src[i + k]);
			if (v[k] < 0)
				goto bad;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
			     (uint32_t)v[2] << 6 | (uint32_t)v[3];
		if (last && pad == 2) {
			if (w & 0xffff)   /* leftover bits must be zero */
				goto bad;
			d[o++] = (unsigned char)(w >> 16);
		} else if (last && pad == 1) {
			if (w & 0xff)
				goto bad;
			d[o++] = (unsigned char)(w >> 16);
			d[o++] = (unsigned char)(w >> 8);
		} else {
			d[o++] = (unsigned char)(w >> 16);
			d[o++] = (unsigned char)(w >> 8);
			d[o++] = (unsigned char)w;
		}
	}
	d[o] = '\0';
	*out = d;
	*out_len = o;
	return 0;
bad:
	free(d);
	return EINVAL;
}

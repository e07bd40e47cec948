/*
 * ks_crc32c (core/crc32c.c), the checksum of the store's records: known
 * answers, and the slice-by-8 code against a bit-at-a-time reference for
 * every small length and alignment, whole and in pieces.
 */
#include "harness.h"

#include "crc32c.h"

/* One bit at a time, straight from the definition (reflected polynomial
 * 0x82F63B78, initial and final value all ones). */
static uint32_t crc32c_ref(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static void check_value(void)
{
	KT_EQ(ks_crc32c(0, "123456789", 9), 0xE3069283u);
}

static void short_strings(void)
{
	KT_EQ(ks_crc32c(0, "", 0), 0);
	KT_EQ(ks_crc32c(0, NULL, 0), 0);
	KT_EQ(ks_crc32c(0, "a", 1), 0xC1D04330u);
	KT_EQ(ks_crc32c(0, "abc", 3), 0x364B3FB7u);
	KT_EQ(ks_crc32c(0, "The quick brown fox jumps over the lazy dog", 43),
	      0x22620404u);
}

/* The test vectors of RFC 3720 (iSCSI), appendix B.4. */
static void rfc3720_vectors(void)
{
	static const unsigned char read_pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	unsigned char b[32];

	memset(b, 0, sizeof(b));
	KT_EQ(ks_crc32c(0, b, sizeof(b)), 0x8A9136AAu);
	memset(b, 0xff, sizeof(b));
	KT_EQ(ks_crc32c(0, b, sizeof(b)), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	KT_EQ(ks_crc32c(0, b, sizeof(b)), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	KT_EQ(ks_crc32c(0, b, sizeof(b)), 0x113FDB5Cu);
	KT_EQ(ks_crc32c(0, read_pdu, sizeof(read_pdu)), 0xD9963A56u);
}

static void fill(unsigned char *b, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (unsigned char)(seed >> 16);
	}
}

/* Every length up to 100 at each of the 8 alignments: the slice-by-8 loop
 * and its head and tail agree with the reference. */
static void lengths_and_alignments(void)
{
	unsigned char b[128];

	fill(b, sizeof(b), 1);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 100; len++)
			KT_EQ(ks_crc32c(0, b + off, len),
			      crc32c_ref(0, b + off, len));
}

/* crc(crc(0, a), b) == crc(0, a b), wherever the split falls. */
static void continues(void)
{
	unsigned char b[256];
	uint32_t whole;

	fill(b, sizeof(b), 2);
	whole = ks_crc32c(0, b, sizeof(b));
	KT_EQ(whole, crc32c_ref(0, b, sizeof(b)));
	for (size_t cut = 0; cut <= sizeof(b); cut++)
		KT_EQ(ks_crc32c(ks_crc32c(0, b, cut), b + cut,
				sizeof(b) - cut), whole);
	KT_EQ(ks_crc32c(ks_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* A buffer the size of a large page, and a one-bit change in it. */
static void large_buffer(void)
{
	size_t len = 1 << 20;
	unsigned char *b = malloc(len);
	uint32_t crc;

	KT_REQUIRE(b);
	fill(b, len, 3);
	crc = ks_crc32c(0, b, len);
	KT_EQ(crc, crc32c_ref(0, b, len));
	b[len / 2] ^= 0x10;
	KT_CHECK(ks_crc32c(0, b, len) != crc);
	free(b);
}

int main(void)
{
	KT_RUN(check_value, "the check value: crc32c(\"123456789\") = E3069283");
	KT_RUN(short_strings, "the empty string, \"a\", \"abc\", a sentence");
	KT_RUN(rfc3720_vectors, "the RFC 3720 vectors: zeros, ones, ramps, a PDU");
	KT_RUN(lengths_and_alignments,
	       "lengths 0..100 at 8 alignments match a bitwise reference");
	KT_RUN(continues, "a crc continues across any split of the input");
	KT_RUN(large_buffer, "1 MiB matches the reference; one bit changes it");
	return kt_finish("crc32c");
}

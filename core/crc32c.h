/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * store's records.  Software, slice-by-8: about 1.5 GB/s, far below the cost
 * of the fdatasync that follows it.
 */
#ifndef KSTATEFS_CORE_CRC32C_H
#define KSTATEFS_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc over len bytes; start with 0.  crc32c(0, "123456789", 9)
 * is 0xE3069283. */
uint32_t ks_crc32c(uint32_t crc, const void *buf, size_t len);

#endif

/*
 * The PERIOD of a view, NAME/every/PERIOD: "<n>ms", "<n>s" or "<n>hz",
 * with n a decimal number (0.5, 2.25; at most 9 digits after the point)
 * without leading zeros, from 1 ms to one day.
 */
#ifndef KSTATEFS_FS_PERIOD_H
#define KSTATEFS_FS_PERIOD_H

#include <stdint.h>

#define PERIOD_NSEC 1000000000ULL
#define PERIOD_MIN_NS (PERIOD_NSEC / 1000)
#define PERIOD_MAX_NS (86400ULL * PERIOD_NSEC)

/* The period in nanoseconds, or 0 if the name is not a period. */
uint64_t period_parse(const char *name);

#endif

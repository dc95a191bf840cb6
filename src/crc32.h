/* crc32.h -- CRC-32 (IEEE 802.3, as zlib's crc32), for model files. */
#ifndef WM_CRC32_H
#define WM_CRC32_H
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. */
uint32_t wmi_crc32(uint32_t crc, const void *data, size_t len);
#endif

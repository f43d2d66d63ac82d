/* Header-name comparison shared by the request parser and the response side. */
#ifndef SQ_HTTP_FIELD_NAME_H
#define SQ_HTTP_FIELD_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Whether the n bytes at a, a header name (tchar bytes only), spell `lit` (n >= 4 lower-case
 * letters and '-') in any case, a word at a time.  OR-ing 0x20 into every byte is exact here:
 * it turns an upper-case letter into its lower-case one, and the only other byte it turns into
 * a letter or '-' is that letter's upper case or CR, which no name holds.  The last load
 * overlaps the ones before instead of reading past the name. */
static inline bool sq__http_name_is(const char *a, const char *lit, size_t n)
{
    uint32_t a4, b4, l4, m4;
    uint64_t a8, l8;
    if (n < 8) {
        memcpy(&a4, a, 4), memcpy(&b4, a + n - 4, 4);
        memcpy(&l4, lit, 4), memcpy(&m4, lit + n - 4, 4);
        return (((a4 | 0x20202020u) ^ l4) | ((b4 | 0x20202020u) ^ m4)) == 0;
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&a8, a + i, 8), memcpy(&l8, lit + i, 8);
        if ((a8 | 0x2020202020202020ull) != l8) return false;
    }
    if (i == n) return true;
    memcpy(&a8, a + n - 8, 8), memcpy(&l8, lit + n - 8, 8);
    return (a8 | 0x2020202020202020ull) == l8;
}

#endif

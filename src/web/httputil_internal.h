/* Internals shared by the src/web/ httputil files (not part of the public API). */
#ifndef SQ_WEB_HTTPUTIL_INTERNAL_H
#define SQ_WEB_HTTPUTIL_INTERNAL_H

#include "squall/httputil.h"

/* Defaults of sq_form_limits (a NULL pointer or a zero field means the default). */
#define SQ__FORM_MAX_ARGS   1000
#define SQ__FORM_MAX_PART   ((size_t)100 << 20)
#define SQ__FORM_MAX_HEADER ((size_t)16 << 10)

/* `l` with defaults filled in. */
sq_form_limits sq__form_limits(const sq_form_limits *l);
/* Append one argument; filename/content_type may be NULL (not set).  0 or -ENOMEM. */
int sq__args_add_full(sq_args *a, const char *name, size_t name_len, const char *value,
                      size_t value_len, const char *filename, size_t filename_len,
                      const char *content_type, size_t content_type_len);
/* Drop (and free) every argument past the first `len`: undoes a failed parse. */
void sq__args_truncate(sq_args *a, size_t len);
/* sq_url_escape for a path: '/' stays (Python's quote(), which Tornado's reverse_url uses). */
size_t sq__url_escape_path(char *dst, size_t dstlen, const char *src, size_t len);
/* RFC 7230 tchar. */
bool sq__is_tchar(unsigned char c);
/* Hex digit value or -1. */
int sq__hexval(unsigned char c);
/* Code point cp as UTF-8 into o (room for 4 bytes); returns the bytes written (0: NUL, or
 * not a Unicode scalar value). */
size_t sq__put_utf8(char *o, unsigned long cp);

#endif

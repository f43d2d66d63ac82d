/* Internals shared by src/web/app.c and src/web/static.c (not part of the public API). */
#ifndef SQ_WEB_INTERNAL_H
#define SQ_WEB_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "squall/web.h"
#include "internal.h"

/* Bytes from the handler's per-request arena (freed when the request ends); NULL on ENOMEM. */
void *sq__handler_alloc(sq_handler *h, size_t n);
/* The decoded length of path group i (the string may hold a NUL decoded from %00); 0 if
 * the group is absent. */
size_t sq__path_arg_len(sq_handler *h, size_t i);
/* realpath() of a static root, computed once per app and root string.  NULL if it does
 * not resolve (errno set). */
const char *sq__app_static_root(sq_app *app, const char *root);
/* Whether the request is a HEAD (the body is not sent). */
bool sq__handler_is_head(sq_handler *h);
/* The app's settings (static_max_age, static_default_filename). */
const sq_app_settings *sq__app_settings(const sq_app *app);
/* The request's If-None-Match (every line of it: a list may be split over several, as
 * Tornado reads it) against `etag`: 1 when it names it (weak comparison; "*" matches
 * anything), 0 when it does not, -1 when the request has none. */
int sq__if_none_match(const sq_http_request *req, const char *etag);

/* Compact JSON of a json_t appended to b, jansson's bytes (src/web/json.c): 0, or -ENOMEM,
 * or -EINVAL for a string jansson will not write (b as it was). */
int sq__json_dump(sq__buf *b, void *json);
/* JSON from a json_pack() format and its arguments appended to b: 0, or -EINVAL (a bad
 * format or argument, logged) or -ENOMEM with b as it was.  Every argument is taken either
 * way up to a format error ('o' references dropped). */
int sq__json_vpack(sq__buf *b, const char *fmt, va_list ap);

#endif

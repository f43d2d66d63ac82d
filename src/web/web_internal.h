/* Internals shared by src/web/app.c and src/web/static.c (not part of the public API). */
#ifndef SQ_WEB_INTERNAL_H
#define SQ_WEB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "squall/web.h"

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
/* Whether an If-None-Match list names `etag` (weak comparison; "*" matches anything). */
bool sq__etag_listed(sq_str list, const char *etag);

#endif

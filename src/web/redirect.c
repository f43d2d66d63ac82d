/* sq_redirect_handler: a route that redirects (Tornado's RedirectHandler). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squall/web.h"
#include "internal.h"

/* Path bytes a Location may carry as they are: RFC 3986 unreserved, sub-delims, ':', '@'
 * and '/' (a group like "a/b" keeps its slashes); everything else is percent-encoded. */
static bool keep(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,;=:@/", c);
}

static int put_escaped(sq__buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        int r = keep(c) ? sq__buf_append(b, s, 1) : sq__buf_append(b, e, 3);
        if (r < 0) return r;
    }
    return 0;
}

/* Expand {0}, {name}, {{ and }} of the target; -EINVAL for a reference to a group the
 * route does not have, or an unmatched brace. */
static int expand(sq_handler *h, const char *url, sq__buf *b)
{
    for (const char *p = url; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (sq__buf_append(b, p, 1) < 0) return -ENOMEM;
            p++;
            continue;
        }
        if (*p == '}') return -EINVAL;
        if (*p != '{') {
            if (sq__buf_append(b, p, 1) < 0) return -ENOMEM;
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end || end == p + 1) return -EINVAL;
        char name[64];
        size_t n = (size_t)(end - p - 1);
        if (n >= sizeof name) return -EINVAL;
        memcpy(name, p + 1, n);
        name[n] = '\0';
        char *num_end;
        unsigned long i = strtoul(name, &num_end, 10);
        const char *v = *num_end ? sq_path_kwarg(h, name) : sq_path_arg(h, i);
        if (!v) return -EINVAL;
        if (put_escaped(b, v) < 0) return -ENOMEM;
        p = end;
    }
    return 0;
}

static void redirect_get(sq_handler *h)
{
    const sq_redirect_target *t = sq_handler_init_arg(h);
    if (!t || !t->url) {
        sq_handler_fail(h, 500, "sq_redirect_handler: the route's init_arg has no url");
        return;
    }
    sq__buf b = {0};
    int e = expand(h, t->url, &b);
    sq_str q = sq_handler_request(h)->query;
    if (!e && q.len) {
        bool has_q = b.len && memchr(b.ptr, '?', b.len);
        e = sq__buf_append(&b, has_q ? "&" : "?", 1);
        if (!e) e = sq__buf_append(&b, q.ptr, q.len);
    }
    if (!e) e = sq__buf_append(&b, "", 1);
    if (e < 0) {
        sq_handler_fail(h, 500, "sq_redirect_handler: target \"%s\": %s", t->url,
                        e == -EINVAL ? "names a group the route does not have" : "out of memory");
    } else {
        int r = sq_redirect_status(h, b.ptr, t->status ? t->status : 301);
        if (r == -EINVAL)
            sq_handler_fail(h, 500, "sq_redirect_handler: %d is not a redirect status", t->status);
    }
    sq__buf_free(&b);
}

const sq_handler_class sq_redirect_handler = {.get = redirect_get};

/* The web framework: applications, routes, dispatch and the handler API (Tornado's
 * tornado.web.Application and RequestHandler).
 *
 * Each request runs on the HTTP server's coroutine: match the path against the routes
 * (PCRE2, JIT, anchored at both ends), take a handler from the app's free list, then
 * initialize -> prepare -> [body streaming] -> method -> finish -> on_finish.  The response
 * body is buffered here, not in the server, so that sq_send_error() can still discard it
 * while nothing has been flushed.
 */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pcre2.h>
#define XXH_INLINE_ALL /* the ETag's hash: compiled in, nothing to link */
#include <xxhash.h>

#include "squall/coro.h"
#include "squall/error.h"
#include "squall/template.h"
#include "squall/web.h"
#include "internal.h"
#include "web/httputil_internal.h"
#include "web/web_internal.h"

#define SQ__POOL_MAX     1024        /* idle handlers kept per app */
#define SQ__OUT_KEEP     (64u << 10) /* output buffer capacity kept by a pooled handler */
#define SQ__ARENA_INLINE 512         /* bytes of arena inside each handler */
#define SQ__ARENA_BLOCK  4096

typedef struct compiled_route {
    pcre2_code *code;
    size_t literal_len; /* a pattern without metacharacters matches by memcmp */
    bool literal;
    uint32_t ngroups;
    uint32_t name_count, name_entry_size;
    PCRE2_SPTR name_table;
} compiled_route;

typedef struct root_cache {
    struct root_cache *next;
    char *root;
    char *real;
} root_cache;

struct file_version {
    struct file_version *next;
    char *path;
    struct timespec mtime;
    off_t size;
    char hash[17];
};

/* A route table: the routes of sq_app_new (every host, tried last) or of one
 * sq_app_add_handlers call (for the hosts its pattern matches). */
typedef struct route_table {
    struct route_table *next;
    pcre2_code *host; /* anchored, caseless; NULL: every host */
    const sq_route *routes;
    compiled_route *compiled;
    size_t nroutes;
    /* the slow-callback warning's labels, nroutes x SQ__NMETHODS: a request's coroutine
     * points at its (route, method) entry */
    struct sq__coro_label *labels;
} route_table;

struct sq_app {
    route_table *tables; /* in matching order: added ones first, sq_app_new's last */
    uint32_t max_groups;
    pcre2_match_data *md;
    sq_app_settings settings;
    sq_templates *templates; /* settings.template_path's loader, or NULL */
    struct file_version *versions; /* sq_static_url's hashes */
    char *cookie_secret;
    sq_cookie_secret *cookie_secrets; /* copies, ending with a NULL secret */
    const char *signing_secret;       /* cookie_secrets' current one, or cookie_secret */
    sq_http_server *server;
    sq_http_server *tls_server; /* sq_app_listen_tls: HTTPS beside plain HTTP */
    const sq_tls_context *tls_ctx; /* its context (the server holds the reference) */
    size_t state_max; /* largest state_size of any class */
    sq_handler *pool;
    size_t npool;
    root_cache *roots;
    size_t live;  /* handlers taken from the pool and not yet given back */
    bool freeing; /* sq_app_free() was called: the last handler given back frees the app */
    sq__coro_label *unmatched_labels; /* SQ__NMETHODS labels for the default handler */
    sq_loop *label_loop; /* the loop the servers run on (forgets the labels at free) */
};

enum { SQ__NMETHODS = 8 }; /* GET POST HEAD PUT DELETE PATCH OPTIONS, other */

typedef struct arena_block {
    struct arena_block *next;
    _Alignas(max_align_t) char data[];
} arena_block;

struct sq_handler {
    sq_app *app;
    size_t state_cap; /* bytes of state[] this object has (state_max when it was made) */
    bool handed_off;  /* the fallback handler gave the request to a plain HTTP handler */
    const sq_handler_class *cls;
    const sq_route *route;
    const compiled_route *cr;
    sq_http_request *req;
    sq_handler *next_free;
    /* path groups: decoded copies in the arena */
    char **args;
    size_t *arg_lens;
    size_t nargs;
    /* buffered response body */
    sq__buf out;
    /* lazily parsed arguments and cookies */
    sq_args qargs, bargs, cookies;
    const char *body;
    size_t body_len;
    bool q_parsed, b_parsed, c_parsed, body_read;
    bool body_failed; /* reading the body failed: the server answered or the client left */
    bool is_head, flushed, finished, detached, method_done, ended, in_close_cb;
    bool *ended_flag; /* set while on_connection_close runs: end_request reports through it */
    int fail_status;
    char *fail_msg;
    void *user;        /* get_current_user's answer, once asked */
    bool user_known;
    const char *xsrf_raw; /* the token (16 bytes), from the cookie or new; arena */
    /* arena */
    char *arena_ptr;
    size_t arena_left;
    arena_block *blocks;
    _Alignas(max_align_t) char arena_inline[SQ__ARENA_INLINE];
    _Alignas(max_align_t) unsigned char state[];
};

static void not_found_prepare(sq_handler *h)
{
    sq_send_error(h, 404, NULL);
}
static const sq_handler_class not_found_class = {.prepare = not_found_prepare};

extern const sq_handler_class sq_static_file_handler;

/* --- arena ------------------------------------------------------------------------------ */

void *sq__handler_alloc(sq_handler *h, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n <= h->arena_left) {
        void *p = h->arena_ptr;
        h->arena_ptr += n;
        h->arena_left -= n;
        return p;
    }
    size_t sz = n > SQ__ARENA_BLOCK / 2 ? n : SQ__ARENA_BLOCK;
    arena_block *b = malloc(sizeof *b + sz);
    if (!b) return NULL;
    b->next = h->blocks;
    h->blocks = b;
    if (sz > n) {
        h->arena_ptr = b->data + n;
        h->arena_left = sz - n;
    }
    return b->data;
}

static char *arena_strndup(sq_handler *h, const char *s, size_t n)
{
    char *p = sq__handler_alloc(h, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* --- app -------------------------------------------------------------------------------- */

static bool compile_route(const sq_route *r, compiled_route *cr)
{
    int err;
    PCRE2_SIZE off;
    cr->code = pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, &err, &off, NULL);
    if (!cr->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        sq_log(SQ_LOG_ERROR, "web: bad route pattern \"%s\" at offset %zu: %s", r->pattern,
               (size_t)off, (const char *)msg);
        return false;
    }
    (void)pcre2_jit_compile(cr->code, PCRE2_JIT_COMPLETE); /* interpreter if no JIT */
    pcre2_pattern_info(cr->code, PCRE2_INFO_CAPTURECOUNT, &cr->ngroups);
    pcre2_pattern_info(cr->code, PCRE2_INFO_NAMECOUNT, &cr->name_count);
    pcre2_pattern_info(cr->code, PCRE2_INFO_NAMEENTRYSIZE, &cr->name_entry_size);
    pcre2_pattern_info(cr->code, PCRE2_INFO_NAMETABLE, &cr->name_table);
    /* "/json", "/static/app.css": no regex metacharacters, so an anchored match is equality
     * (the compiled code is kept: it has no groups to report) */
    cr->literal = !strpbrk(r->pattern, "\\^$.|?*+()[]{}");
    cr->literal_len = strlen(r->pattern);
    return true;
}

static sq__coro_label *make_labels(const sq_route *routes, size_t n,
                                   const sq_handler_class *cls);

sq_app *sq_app_new(const sq_route *routes, const sq_app_settings *settings)
{
    sq_app *app = calloc(1, sizeof *app);
    if (!app) return NULL;
    if (settings) app->settings = *settings;
    if (app->settings.template_path) {
        app->templates = sq_templates_new(
            app->settings.template_path,
            &(sq_template_options){.debug = app->settings.debug,
                                   .no_autoescape = app->settings.template_no_autoescape});
        if (!app->templates) goto nomem;
        app->settings.template_path = NULL; /* the loader keeps its own copy */
    }
    if (app->settings.cookie_secret) {
        app->cookie_secret = strdup(app->settings.cookie_secret);
        if (!app->cookie_secret) goto nomem;
        app->settings.cookie_secret = app->cookie_secret;
        app->signing_secret = app->cookie_secret;
    }
    if (app->settings.cookie_secrets) {
        size_t k = 0;
        while (app->settings.cookie_secrets[k].secret) k++;
        app->cookie_secrets = calloc(k + 1, sizeof *app->cookie_secrets);
        if (!app->cookie_secrets) goto nomem;
        app->signing_secret = NULL;
        for (size_t i = 0; i < k; i++) {
            const sq_cookie_secret *cs = &app->settings.cookie_secrets[i];
            app->cookie_secrets[i].version = cs->version;
            app->cookie_secrets[i].secret = strdup(cs->secret);
            if (!app->cookie_secrets[i].secret) goto nomem;
            if (cs->version == app->settings.cookie_key_version)
                app->signing_secret = app->cookie_secrets[i].secret;
            if (cs->version < 0 || !*cs->secret) {
                sq_log(SQ_LOG_ERROR, "web: cookie_secrets[%zu]: a key needs a version >= 0 and "
                       "a non-empty secret", i);
                goto inval;
            }
        }
        app->settings.cookie_secrets = app->cookie_secrets;
        if (!app->signing_secret) {
            sq_log(SQ_LOG_ERROR, "web: cookie_key_version %d is not in cookie_secrets",
                   app->settings.cookie_key_version);
            goto inval;
        }
    }
    const sq_handler_class *dh = app->settings.default_handler;
    if (dh) app->state_max = dh->state_size;
    app->unmatched_labels = make_labels(NULL, 0, dh ? dh : &not_found_class);
    if (!app->unmatched_labels) goto nomem;
    int e = sq_app_add_handlers(app, NULL, routes);
    if (e < 0) {
        sq_app_free(app);
        errno = -e;
        return NULL;
    }
    return app;
nomem:
    sq_app_free(app);
    errno = ENOMEM;
    return NULL;
inval:
    sq_app_free(app);
    errno = EINVAL;
    return NULL;
}

/* Free the idle handlers the app keeps beyond `keep` (0: all of them). */
static void pool_trim(sq_app *app, size_t keep)
{
    while (app->pool && app->npool > keep) {
        sq_handler *h = app->pool;
        app->pool = h->next_free;
        app->npool--;
        free(h->out.ptr);
        free(h);
    }
}

/* The server's trim after a burst (sq_http_server_on_trim): a handler per open connection
 * is all the pool has to keep. */
static void app_trim(void *arg, size_t open)
{
    pool_trim(arg, open);
}

static void table_free(route_table *t)
{
    for (size_t i = 0; i < t->nroutes && t->compiled; i++) pcre2_code_free(t->compiled[i].code);
    free(t->compiled);
    pcre2_code_free(t->host);
    free(t->labels);
    free(t);
}

int sq_app_add_handlers(sq_app *app, const char *host_pattern, const sq_route *routes)
{
    if (!app) return -EINVAL;
    route_table *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    if (host_pattern) {
        int err;
        PCRE2_SIZE off;
        t->host = pcre2_compile((PCRE2_SPTR)host_pattern, PCRE2_ZERO_TERMINATED,
                                PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_CASELESS, &err, &off,
                                NULL);
        if (!t->host) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            sq_log(SQ_LOG_ERROR, "web: bad host pattern \"%s\" at offset %zu: %s", host_pattern,
                   (size_t)off, (const char *)msg);
            free(t);
            return -EINVAL;
        }
        (void)pcre2_jit_compile(t->host, PCRE2_JIT_COMPLETE);
    }
    size_t n = 0;
    while (routes && routes[n].pattern) n++;
    t->routes = routes;
    t->nroutes = n;
    t->compiled = calloc(n ? n : 1, sizeof *t->compiled);
    if (!t->compiled) goto nomem;
    uint32_t groups = app->max_groups;
    size_t state = app->state_max;
    for (size_t i = 0; i < n; i++) {
        if (!routes[i].cls) {
            sq_log(SQ_LOG_ERROR, "web: route \"%s\" has no handler class", routes[i].pattern);
            table_free(t);
            return -EINVAL;
        }
        if (!compile_route(&routes[i], &t->compiled[i])) {
            table_free(t);
            return -EINVAL;
        }
        if (t->compiled[i].ngroups > groups) groups = t->compiled[i].ngroups;
        if (routes[i].cls->state_size > state) state = routes[i].cls->state_size;
    }
    t->labels = make_labels(routes, n, NULL);
    if (!t->labels) goto nomem;
    if (!app->md || groups > app->max_groups) {
        /* dispatch copies the groups out before any handler code runs: no request is
         * between a match and its copy while this replaces the match data */
        pcre2_match_data *md = pcre2_match_data_create(groups + 1, NULL);
        if (!md) goto nomem;
        pcre2_match_data_free(app->md);
        app->md = md;
        app->max_groups = groups;
    }
    if (state > app->state_max) {
        /* the pooled handlers are too small for the new classes: dropped now; those in use
         * are freed when given back (handler_put) */
        pool_trim(app, 0);
        app->state_max = state;
    }
    /* the first table (sq_app_new's, for every host) stays last: the ones added later are
     * tried before it, in the order they were added (Tornado's add_handlers) */
    route_table **at = &app->tables;
    while (*at && (*at)->next) at = &(*at)->next;
    if (*at) {
        t->next = *at;
    }
    *at = t;
    return 0;
nomem:
    table_free(t);
    return -ENOMEM;
}

static void dispatch(sq_http_request *req, void *arg);

static int app_server(sq_app *app)
{
    if (!app->server) {
        sq_loop *loop = sq_loop_current();
        if (!loop) loop = sq_loop_default();
        sq_http_settings hs = app->settings.http;
        hs.access_log = !app->settings.no_access_log;
        app->server = sq_http_server_new(loop, &hs, dispatch, app);
        if (!app->server) return errno ? -errno : -ENOMEM;
        sq_http_server_on_trim(app->server, app_trim, app);
        app->label_loop = loop;
    }
    return 0;
}

int sq_app_add_sockets(sq_app *app, const int *fds, int n)
{
    if (!app) return -EINVAL;
    int e = app_server(app);
    return e < 0 ? e : sq_http_server_add_sockets(app->server, fds, n);
}

int sq_app_listen(sq_app *app, int port, const char *host)
{
    if (!app) return -EINVAL;
    int e = app_server(app);
    return e < 0 ? e : sq_http_server_listen(app->server, host, port);
}

int sq_app_listen_tls(sq_app *app, int port, const char *host, sq_tls_context *tls)
{
    if (!app || !tls) return -EINVAL;
    /* one HTTPS server per app: another certificate is the SNI callback's business */
    if (app->tls_server && app->tls_ctx != tls) return -EINVAL;
    if (!app->tls_server) {
        sq_loop *loop = sq_loop_current();
        if (!loop) loop = sq_loop_default();
        sq_http_settings hs = app->settings.http;
        hs.access_log = !app->settings.no_access_log;
        hs.tls = tls;
        app->tls_server = sq_http_server_new(loop, &hs, dispatch, app);
        if (!app->tls_server) return errno ? -errno : -ENOMEM;
        sq_http_server_on_trim(app->tls_server, app_trim, app);
        app->label_loop = loop;
        app->tls_ctx = tls;
    }
    return sq_http_server_listen(app->tls_server, host, port);
}

sq_http_server *sq_app_server(sq_app *app)
{
    return app ? app->server : NULL;
}

sq_http_server *sq_app_tls_server(sq_app *app)
{
    return app ? app->tls_server : NULL;
}

static void app_destroy(sq_app *app)
{
    sq_coro *self = sq_coro_self(); /* the last handler's coroutine, usually */
    if (self) sq__coro_set_label(self, NULL);
    if (app->label_loop) {
        for (route_table *t = app->tables; t; t = t->next)
            sq__loop_forget_labels(app->label_loop, t->labels,
                                   t->labels + t->nroutes * SQ__NMETHODS);
        if (app->unmatched_labels)
            sq__loop_forget_labels(app->label_loop, app->unmatched_labels,
                                   app->unmatched_labels + SQ__NMETHODS);
    }
    free(app->unmatched_labels);
    while (app->tables) {
        route_table *t = app->tables;
        app->tables = t->next;
        table_free(t);
    }
    sq_templates_free(app->templates);
    while (app->versions) {
        struct file_version *v = app->versions;
        app->versions = v->next;
        free(v->path);
        free(v);
    }
    pcre2_match_data_free(app->md);
    pool_trim(app, 0);
    while (app->roots) {
        root_cache *r = app->roots;
        app->roots = r->next;
        free(r->root);
        free(r->real);
        free(r);
    }
    free(app->cookie_secret);
    for (size_t i = 0; app->cookie_secrets && app->cookie_secrets[i].secret; i++)
        free((char *)app->cookie_secrets[i].secret);
    free(app->cookie_secrets);
    free(app);
}

void sq_app_free(sq_app *app)
{
    if (!app) return;
    if (app->server) sq_http_server_free(app->server);
    if (app->tls_server) sq_http_server_free(app->tls_server);
    app->server = app->tls_server = NULL;
    /* Handlers still suspended run on (on a closed connection) and need the app until
     * they are given back. */
    app->freeing = true;
    if (!app->live) app_destroy(app);
}

const char *sq__app_static_root(sq_app *app, const char *root)
{
    for (root_cache *r = app->roots; r; r = r->next)
        if (strcmp(r->root, root) == 0) return r->real;
    char *real = realpath(root, NULL);
    if (!real) return NULL;
    root_cache *r = calloc(1, sizeof *r);
    if (!r || !(r->root = strdup(root))) {
        free(r);
        free(real);
        errno = ENOMEM;
        return NULL;
    }
    r->real = real;
    r->next = app->roots;
    app->roots = r;
    return real;
}

/* --- reverse_url ------------------------------------------------------------------------ */

/* The route called `name`, in matching order (the first table that has one). */
static const sq_route *named_route(const sq_app *app, const char *name)
{
    for (const route_table *t = app->tables; t; t = t->next)
        for (size_t i = 0; i < t->nroutes; i++)
            if (t->routes[i].name && strcmp(t->routes[i].name, name) == 0) return &t->routes[i];
    return NULL;
}

static void put(char *dst, size_t dstlen, size_t *pos, const char *s, size_t n)
{
    if (*pos < dstlen) {
        size_t room = dstlen - *pos - 1;
        memcpy(dst + *pos, s, n < room ? n : room);
    }
    *pos += n;
}

ssize_t sq_reverse_url(const sq_app *app, const char *name, char *dst, size_t dstlen,
                       const char *const *args, size_t n)
{
    if (!app || !name) return -EINVAL;
    const sq_route *r = named_route(app, name);
    if (!r) return -ENOENT;
    const char *p = r->pattern;
    size_t plen = strlen(p);
    if (plen && p[0] == '^') p++, plen--;
    if (plen && p[plen - 1] == '$' && (plen < 2 || p[plen - 2] != '\\')) plen--;
    size_t pos = 0, group = 0;
    for (size_t i = 0; i < plen; i++) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= plen) return -EINVAL;
            char e = p[++i];
            if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
                return -EINVAL; /* \d, \w … are classes, not literals */
            put(dst, dstlen, &pos, &e, 1);
        } else if (c == '(') {
            /* A capturing group that is not nested: replaced by the next argument. */
            if (i + 1 < plen && p[i + 1] == '?') {
                bool named =
                    (i + 2 < plen && (p[i + 2] == '<' || p[i + 2] == '\'' || p[i + 2] == 'P')) &&
                    !(i + 3 < plen && p[i + 2] == '<' && (p[i + 3] == '=' || p[i + 3] == '!'));
                if (!named) return -EINVAL;
            }
            size_t j = i + 1;
            for (; j < plen; j++) {
                if (p[j] == '\\') {
                    j++;
                    continue;
                }
                if (p[j] == '(') return -EINVAL;
                if (p[j] == ')') break;
            }
            if (j >= plen) return -EINVAL;
            if (group >= n) return -EINVAL;
            const char *a = args[group] ? args[group] : "";
            size_t alen = strlen(a);
            /* '/' stays, as in Tornado: a static file in a folder, a path-like argument */
            size_t need = sq__url_escape_path(NULL, 0, a, alen);
            char tmp[256];
            char *buf = need < sizeof tmp ? tmp : malloc(need + 1);
            if (!buf) return -ENOMEM;
            sq__url_escape_path(buf, need + 1, a, alen);
            put(dst, dstlen, &pos, buf, need);
            if (buf != tmp) free(buf);
            group++;
            i = j;
        } else if (strchr("?*+{}[]|^$)", c)) {
            return -EINVAL;
        } else {
            put(dst, dstlen, &pos, &c, 1);
        }
    }
    if (group != n) return -EINVAL;
    if (dstlen) dst[pos < dstlen ? pos : dstlen - 1] = '\0';
    return (ssize_t)pos;
}

/* --- handler pool and lifecycle -------------------------------------------------------- */

static sq_handler *handler_get(sq_app *app)
{
    sq_handler *h = app->pool;
    if (h) {
        app->pool = h->next_free;
        app->npool--;
        sq__buf out = h->out; /* keep the pooled buffer */
        /* the fields and the class's state start zeroed; the arena's bytes need not be */
        memset(h, 0, offsetof(sq_handler, arena_inline));
        if (app->state_max) memset(h->state, 0, app->state_max);
        h->out = out;
    } else {
        h = calloc(1, sizeof *h + app->state_max);
        if (!h) return NULL;
    }
    h->state_cap = app->state_max;
    h->app = app;
    app->live++;
    h->arena_ptr = h->arena_inline;
    h->arena_left = sizeof h->arena_inline;
    return h;
}

static void handler_put(sq_handler *h)
{
    sq_app *app = h->app;
    /* (most requests parse none of them: no call then) */
    if (h->qargs.items) sq_args_free(&h->qargs);
    if (h->bargs.items) sq_args_free(&h->bargs);
    if (h->cookies.items) sq_args_free(&h->cookies);
    free(h->fail_msg);
    h->fail_msg = NULL;
    while (h->blocks) {
        arena_block *b = h->blocks;
        h->blocks = b->next;
        free(b);
    }
    if (h->out.cap > SQ__OUT_KEEP) sq__buf_free(&h->out);
    h->out.len = 0;
    app->live--;
    if (app->npool >= SQ__POOL_MAX || app->freeing || h->state_cap < app->state_max) {
        free(h->out.ptr);
        free(h);
        if (app->freeing && !app->live) app_destroy(app);
        return;
    }
    h->next_free = app->pool;
    app->pool = h;
    app->npool++;
}

/* on_finish, then give the handler back.  Runs once, after the response is finished and
 * the method has returned. */
SQ__HOT static void end_request(sq_handler *h)
{
    if (h->ended) return;
    h->ended = true;
    if (h->ended_flag) *h->ended_flag = true;
    if (h->cls->on_finish) h->cls->on_finish(h);
    if (h->req->data == h) h->req->data = NULL; /* (a plain handler given it may use it) */
    handler_put(h);
}

static int push_out(sq_handler *h)
{
    if (!h->out.len) return 0;
    /* For HEAD the server counts the body for Content-Length but does not send it. */
    int rc = sq_http_write(h->req, h->out.ptr, h->out.len);
    h->out.len = 0;
    return rc;
}

/* --- static URLs ----------------------------------------------------------------------------- */

const sq_app_settings *sq__app_settings(const sq_app *app)
{
    return &app->settings;
}

/* The 8 nibbles of v as 8 lowercase hex digits, the first in the lowest byte: each nibble
 * spread to a byte of its own (nibble k in byte k), the bytes reversed, then '0' added to
 * all and 'a' - '0' - 10 more to those over 9. */
static uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = (x | x << 16) & 0x0000ffff0000ffffull;
    x = (x | x << 8) & 0x00ff00ff00ff00ffull;
    x = (x | x << 4) & 0x0f0f0f0f0f0f0f0full;
    x = __builtin_bswap64(x);
    uint64_t over9 = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return x + 0x3030303030303030ull + over9 * ('a' - '0' - 10);
}

/* x as 16 lowercase hex digits at p (no NUL). */
SQ__HOT static void put_hex64(char *p, uint64_t x)
{
    uint64_t hi = hex8((uint32_t)(x >> 32)), lo = hex8((uint32_t)x);
    memcpy(p, &hi, 8);
    memcpy(p + 8, &lo, 8);
}

/* XXH3-64 of a file's contents, as 16 hex digits; false if unreadable. */
static bool file_hash(const char *root, const char *path, char out[17])
{
    char full[PATH_MAX];
    if (snprintf(full, sizeof full, "%s/%s", root, path) >= (int)sizeof full) return false;
    FILE *f = fopen(full, "re");
    if (!f) return false;
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset(&st);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) XXH3_64bits_update(&st, buf, n);
    fclose(f);
    put_hex64(out, XXH3_64bits_digest(&st));
    out[16] = 0;
    return true;
}

const char *sq_static_url(sq_handler *h, const char *path)
{
    sq_app *app = h->app;
    const sq_route *route = named_route(app, "static");
    if (!route || route->cls != &sq_static_file_handler || !route->init_arg || !path ||
        strstr(path, "..") || path[0] == '/') {
        sq_log(SQ_LOG_ERROR, "sq_static_url(%s): no route named \"static\" serving files, or a bad path",
               path ? path : "NULL");
        return NULL;
    }
    const char *root = sq__app_static_root(app, route->init_arg);
    char full[PATH_MAX];
    struct stat st;
    if (!root || snprintf(full, sizeof full, "%s/%s", root, path) >= (int)sizeof full ||
        stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
        sq_log(SQ_LOG_ERROR, "sq_static_url(%s): not a file under the static root", path);
        return NULL;
    }
    struct file_version *v = app->versions;
    while (v && strcmp(v->path, path)) v = v->next;
    bool stale = !v || (app->settings.debug && (v->size != st.st_size || v->mtime.tv_sec != st.st_mtim.tv_sec ||
                                                v->mtime.tv_nsec != st.st_mtim.tv_nsec));
    if (stale) {
        char hash[17];
        if (!file_hash(root, path, hash)) return NULL;
        if (!v) {
            v = calloc(1, sizeof *v);
            if (!v || !(v->path = strdup(path))) {
                free(v);
                return NULL;
            }
            v->next = app->versions;
            app->versions = v;
        }
        memcpy(v->hash, hash, sizeof hash);
        v->mtime = st.st_mtim;
        v->size = st.st_size;
    }
    const char *args[] = {path};
    char url[PATH_MAX];
    ssize_t n = sq_reverse_url(app, "static", url, sizeof url - 20, args, 1);
    if (n < 0) return NULL;
    char *s = sq__handler_alloc(h, (size_t)n + 20);
    if (s) sprintf(s, "%s?v=%s", url, v->hash);
    return s;
}

/* --- users, login and XSRF ----------------------------------------------------------------- */

void *sq_current_user(sq_handler *h)
{
    if (!h->user_known) {
        h->user_known = true;
        h->user = h->cls->get_current_user ? h->cls->get_current_user(h) : NULL;
    }
    return h->user;
}

#define XSRF_LEN  16
#define XSRF_MASK 4 /* Tornado's os.urandom(4), repeated over the token */

/* n hex digits (either case, as binascii.a2b_hex) at s into out[n / 2]; false if any is not */
static bool hex_decode(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i += 2) {
        int a = sq__hexval((unsigned char)s[i]), b = sq__hexval((unsigned char)s[i + 1]);
        if (a < 0 || b < 0) return false;
        out[i / 2] = (unsigned char)(a << 4 | b);
    }
    return true;
}

/* A token or _xsrf cookie decoded to the raw token in out; false if malformed.  Tornado's
 * forms: version 2 "2|<mask hex>|<masked token hex>|<timestamp>" (a 4-byte mask repeated
 * over the token) and version 1, the token in hex; and squall's earlier
 * "2|<16-byte mask hex>|<masked token hex>", still read so its cookies stay valid. */
static bool xsrf_decode(const char *v, unsigned char out[XSRF_LEN])
{
    if (!v) return false;
    size_t len = strlen(v);
    if (len == 2 * XSRF_LEN) return hex_decode(v, len, out); /* version 1 */
    if (strncmp(v, "2|", 2)) return false;
    const char *m = v + 2, *bar = strchr(m, '|');
    size_t mlen = bar ? (size_t)(bar - m) : 0;
    if (mlen != 2 * XSRF_MASK && mlen != 2 * XSRF_LEN) return false;
    const char *t = bar + 1, *ts = t + 2 * XSRF_LEN;
    if (strlen(t) < 2 * XSRF_LEN) return false;
    if (mlen == 2 * XSRF_MASK) { /* Tornado's: a timestamp follows */
        if (*ts != '|' || !ts[1] || strspn(ts + 1, "0123456789") != strlen(ts + 1)) return false;
    } else if (*ts) {
        return false;
    }
    unsigned char mask[XSRF_LEN];
    if (!hex_decode(m, mlen, mask) || !hex_decode(t, 2 * XSRF_LEN, out)) return false;
    for (size_t i = 0; i < XSRF_LEN; i++) out[i] ^= mask[i % (mlen / 2)];
    return true;
}

/* Tornado's version 2 token for raw, with a fresh mask: Tornado reads it, as squall reads
 * Tornado's. */
static char *xsrf_encode(sq_handler *h, const unsigned char raw[XSRF_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mask[XSRF_MASK];
    char *s = sq__handler_alloc(h, 2 + 2 * XSRF_MASK + 1 + 2 * XSRF_LEN + 1 + 20 + 1);
    if (!s || RAND_bytes(mask, sizeof mask) != 1) return NULL;
    char *p = s;
    *p++ = '2';
    *p++ = '|';
    for (int i = 0; i < XSRF_MASK; i++) *p++ = hex[mask[i] >> 4], *p++ = hex[mask[i] & 15];
    *p++ = '|';
    for (int i = 0; i < XSRF_LEN; i++) {
        unsigned char x = mask[i % XSRF_MASK] ^ raw[i];
        *p++ = hex[x >> 4];
        *p++ = hex[x & 15];
    }
    sprintf(p, "|%lld", (long long)time(NULL));
    return s;
}

/* The raw token: the cookie's, else a new one (and the cookie set). */
static const unsigned char *xsrf_raw(sq_handler *h)
{
    if (h->xsrf_raw) return (const unsigned char *)h->xsrf_raw;
    unsigned char *raw = sq__handler_alloc(h, XSRF_LEN);
    if (!raw) return NULL;
    if (!xsrf_decode(sq_get_cookie(h, "_xsrf", NULL), raw)) {
        char *cookie;
        if (RAND_bytes(raw, XSRF_LEN) != 1 || !(cookie = xsrf_encode(h, raw))) return NULL;
        sq_set_cookie(h, "_xsrf", cookie, &(sq_cookie_options){.path = "/", .same_site = "Lax"});
    }
    h->xsrf_raw = (const char *)raw;
    return raw;
}

const char *sq_xsrf_token(sq_handler *h)
{
    const unsigned char *raw = xsrf_raw(h);
    return raw ? xsrf_encode(h, raw) : NULL;
}

const char *sq_xsrf_form_html(sq_handler *h)
{
    const char *t = sq_xsrf_token(h);
    if (!t) return NULL;
    static const char pre[] = "<input type=\"hidden\" name=\"_xsrf\" value=\"", post[] = "\">";
    char *s = sq__handler_alloc(h, sizeof pre + strlen(t) + sizeof post);
    if (s) sprintf(s, "%s%s%s", pre, t, post); /* the token is hex and '|': nothing to escape */
    return s;
}

/* Tornado's check_xsrf_cookie: the submitted token must unmask to the cookie's. */
static bool xsrf_ok(sq_handler *h, const char **why)
{
    /* Tornado's get_argument: the query's too; an empty one counts as none */
    const char *sent = sq_get_argument(h, "_xsrf", NULL);
    if (sent && !*sent) sent = NULL;
    sq_str hv = {NULL, 0};
    if (!sent) {
        hv = sq_http_header_get(h->req, "X-XSRFToken");
        if (!hv.ptr) hv = sq_http_header_get(h->req, "X-CSRFToken");
    }
    char hbuf[80];
    if (!sent && hv.ptr && hv.len < sizeof hbuf) {
        memcpy(hbuf, hv.ptr, hv.len);
        hbuf[hv.len] = '\0';
        sent = hbuf;
    }
    if (!sent) {
        *why = "'_xsrf' argument missing from the request";
        return false;
    }
    unsigned char a[XSRF_LEN], b[XSRF_LEN];
    if (!xsrf_decode(sq_get_cookie(h, "_xsrf", NULL), a)) {
        *why = "'_xsrf' cookie missing";
        return false;
    }
    if (!xsrf_decode(sent, b) || CRYPTO_memcmp(a, b, XSRF_LEN) != 0) {
        *why = "XSRF cookie does not match the request's token";
        return false;
    }
    return true;
}

/* Whether url starts with a scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"). */
static bool has_scheme(const char *url)
{
    size_t k = 0;
    while (url[k] && (isalnum((unsigned char)url[k]) || strchr("+-.", url[k]))) k++;
    return k > 0 && url[k] == ':' && isalpha((unsigned char)url[0]);
}

/* GET, HEAD or OPTIONS: no XSRF check; the login redirect is for the first two. */
static bool safe_method(const sq_handler *h)
{
    sq_str m = h->req->method;
    return (m.len == 3 && !memcmp(m.ptr, "GET", 3)) || h->is_head ||
           (m.len == 7 && !memcmp(m.ptr, "OPTIONS", 7));
}

/* `authenticated`: checked after prepare, as Tornado's decorator wraps the method (prepare
 * is where an app looks its user up), and before a streamed body is taken in.  false when
 * it answered (a redirect to the login page, or a 403). */
static bool login_gate(sq_handler *h)
{
    sq_http_request *req = h->req;
    sq_str m = req->method;
    bool safe = safe_method(h);
    if (h->cls->authenticated && !sq_current_user(h)) {
        const char *login = h->app->settings.login_url;
        if (safe && login && m.len != 7) {
            /* login_url?next=<the URI, escaped>; the full URL when the login page is on
             * another site (an absolute login_url); a login_url with a query of its own
             * gets no next (Tornado's get_login_url handling) */
            bool absolute = has_scheme(login);
            const char *proto = req->protocol ? req->protocol : "http";
            size_t nlen = (absolute ? strlen(proto) + 3 + req->host.len : 0) + req->uri.len;
            size_t cap = strlen(login) + 3 * nlen + 8;
            char *next = sq__handler_alloc(h, nlen + 1), *url = sq__handler_alloc(h, cap);
            if (next && url) {
                int k = absolute ? snprintf(next, nlen + 1, "%s://%.*s", proto, (int)req->host.len,
                                            req->host.ptr)
                                 : 0;
                memcpy(next + k, req->uri.ptr, req->uri.len);
                next[nlen] = '\0';
                if (strchr(login, '?')) {
                    snprintf(url, cap, "%s", login);
                } else {
                    size_t n = (size_t)snprintf(url, cap, "%s?next=", login);
                    sq_url_escape(url + n, cap - n, next, nlen, false);
                }
                sq_redirect(h, url, false);
                return false;
            }
        }
        sq_send_error(h, 403, "login required");
        return false;
    }
    return true;
}

/* The XSRF token, before prepare as in Tornado's _execute.  false when it answered 403. */
static bool xsrf_gate(sq_handler *h)
{
    sq_http_request *req = h->req;
    sq_str m = req->method;
    if (h->app->settings.xsrf_cookies && !h->cls->no_xsrf_check && !safe_method(h)) {
        const char *why = NULL;
        if (!xsrf_ok(h, &why)) {
            sq_log(SQ_LOG_WARNING, "web: %.*s %.*s refused: %s", (int)m.len, m.ptr, (int)req->path.len,
                   req->path.ptr, why);
            sq_send_error(h, 403, why);
            return false;
        }
    }
    return true;
}

/* Tornado's compute_etag + check_etag_header for a response finished in one piece: a hash of
 * the body, and a 304 without the body when the client already has it.  Tornado hashes with
 * SHA-1; XXH3-64 (a few cycles for a short body, a fraction of one per byte for a long one)
 * tells versions of one URL apart as well, and nothing here needs a cryptographic hash. */
static void set_etag(sq_handler *h)
{
    sq_http_request *req = h->req;
    if (h->app->settings.no_etag || h->flushed || !h->out.len || sq_http_get_status(req) != 200)
        return;
    if (!(req->method.len == 3 && !memcmp(req->method.ptr, "GET", 3)) && !h->is_head) return;
    if (sq__http_resp_has_etag(req)) return;
    uint64_t x = XXH3_64bits(h->out.ptr, h->out.len);
    char etag[19];
    etag[0] = etag[17] = '"';
    put_hex64(etag + 1, x);
    etag[18] = 0;
    sq__http_resp_add_etag(req, etag, 18); /* there is none (above): nothing to replace */
    if (sq__if_none_match(req, etag) == 1) {
        sq_http_set_status(req, 304, NULL);
        h->out.len = 0; /* a 304 has no body */
    }
}

static void conn_closed(sq_http_request *req, void *arg)
{
    sq_handler *h = arg;
    if (h->ended || !h->cls->on_connection_close) return;
    /* The callback may finish the request, which can free h: learn that through a flag on
     * this stack, never by reading h afterwards. */
    bool ended = false;
    h->ended_flag = &ended;
    h->in_close_cb = true;
    h->cls->on_connection_close(h);
    if (!ended) {
        h->in_close_cb = false;
        h->ended_flag = NULL;
    }
}

static void finish_later(void *arg)
{
    sq_http_finish(arg);
}

SQ__HOT static sq_handler_fn method_fn(const sq_handler_class *c, sq_str m, bool *is_head, int *idx)
{
#define M(s) (m.len == sizeof(s) - 1 && memcmp(m.ptr, s, m.len) == 0)
    *is_head = false;
    if (M("GET")) return *idx = 0, c->get;
    if (M("POST")) return *idx = 1, c->post;
    if (M("HEAD")) {
        *is_head = true;
        *idx = 2;
        return c->head ? c->head : c->get;
    }
    if (M("PUT")) return *idx = 3, c->put;
    if (M("DELETE")) return *idx = 4, c->delete_;
    if (M("PATCH")) return *idx = 5, c->patch;
    if (M("OPTIONS")) return *idx = 6, c->options;
    *idx = 7;
    return NULL;
#undef M
}

/* One label per (route, method) for the slow-callback warning ("GET /sync (sync_get)"):
 * n routes x SQ__NMETHODS, or one row for `cls` (unmatched paths) when routes is NULL. */
static sq__coro_label *make_labels(const sq_route *routes, size_t n,
                                   const sq_handler_class *cls)
{
    static const char *const names[SQ__NMETHODS] = {"GET",    "POST",  "HEAD",    "PUT",
                                                    "DELETE", "PATCH", "OPTIONS", "(other)"};
    size_t rows = routes ? n : 1;
    sq__coro_label *labels = calloc(rows ? rows * SQ__NMETHODS : 1, sizeof *labels);
    if (!labels) return NULL;
    for (size_t i = 0; i < rows; i++) {
        const sq_handler_class *c = routes ? routes[i].cls : cls;
        for (int k = 0; k < SQ__NMETHODS; k++) {
            sq__coro_label *l = &labels[i * SQ__NMETHODS + (size_t)k];
            bool head;
            int idx;
            sq_str m = {names[k], strlen(names[k])};
            sq_handler_fn fn = method_fn(c, m, &head, &idx);
            if (!fn) fn = c->prepare;
            l->method = names[k];
            l->pattern = routes ? routes[i].pattern : NULL;
            l->fn = fn ? (const void *)fn : NULL;
        }
    }
    return labels;
}

static void send_405(sq_handler *h)
{
    const sq_handler_class *c = h->cls;
    char allow[64] = "";
    size_t n = 0;
    const struct {
        bool on;
        const char *name;
    } ms[] = {
        {c->get != NULL, "GET"},         {c->get || c->head, "HEAD"},
        {c->post != NULL, "POST"},       {c->put != NULL, "PUT"},
        {c->delete_ != NULL, "DELETE"},  {c->patch != NULL, "PATCH"},
        {c->options != NULL, "OPTIONS"},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (ms[i].on)
            n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", ms[i].name);
    sq_http_set_header(h->req, "Allow", allow);
    sq_send_error(h, 405, NULL);
}

static void stream_body(sq_handler *h)
{
    for (int guard = 0;; guard++) {
        const char *data;
        ssize_t n = sq_http_read_body_chunk(h->req, &data);
        if (n == 0) break;
        if (n < 0) {
            /* The server has answered (400) or the client is gone: no method call. */
            h->finished = true;
            break;
        }
        h->cls->data_received(h, data, (size_t)n);
        if (h->finished || h->fail_status) break;
        (void)guard;
    }
    h->body_read = true;
}

static void handle_failure(sq_handler *h)
{
    int status = h->fail_status;
    const char *msg = h->fail_msg ? h->fail_msg : "handler failed";
    if (h->finished) return;
    if (h->flushed) {
        /* Too late for an error page: end the response as it is. */
        sq_finish(h);
        return;
    }
    sq_send_error(h, status, msg);
}

/* The Host header's name without the port ("[::1]:8888" -> "::1"), for host patterns. */
static sq_str host_name(sq_str h)
{
    if (!h.ptr) return h;
    if (h.len && h.ptr[0] == '[') {
        const char *e = memchr(h.ptr, ']', h.len);
        return e ? (sq_str){h.ptr + 1, (size_t)(e - h.ptr - 1)} : h;
    }
    const char *colon = memchr(h.ptr, ':', h.len);
    if (colon) h.len = (size_t)(colon - h.ptr);
    return h;
}

SQ__HOT static void dispatch(sq_http_request *req, void *arg)
{
    sq_app *app = arg;
    const sq_route *route = NULL;
    const compiled_route *cr = NULL;
    sq__coro_label *label = app->unmatched_labels;
    sq_str host = {NULL, 0};
    bool host_known = false;
    for (const route_table *t = app->tables; t && !route; t = t->next) {
        if (t->host) {
            if (!host_known) {
                host = host_name(req->host);
                host_known = true;
            }
            if (pcre2_match(t->host, (PCRE2_SPTR)(host.ptr ? host.ptr : ""), host.len, 0, 0,
                            app->md, NULL) < 0)
                continue;
        }
        for (size_t i = 0; i < t->nroutes; i++) {
            const compiled_route *c = &t->compiled[i];
            if (c->literal) {
                if (req->path.len != c->literal_len ||
                    memcmp(req->path.ptr, t->routes[i].pattern, c->literal_len))
                    continue;
            } else if (pcre2_match(c->code, (PCRE2_SPTR)req->path.ptr, req->path.len, 0, 0,
                                   app->md, NULL) < 0) {
                continue;
            }
            route = &t->routes[i];
            cr = c;
            label = &t->labels[i * SQ__NMETHODS];
            break;
        }
    }
    sq_handler *h = handler_get(app);
    if (!h) {
        sq_log(SQ_LOG_ERROR, "web: out of memory for a handler");
        sq_http_set_status(req, 503, NULL);
        return;
    }
    h->req = req;
    req->data = h;
    h->route = route;
    h->cr = cr;
    h->cls =
        route ? route->cls
              : (app->settings.default_handler ? app->settings.default_handler : &not_found_class);
    bool nul_in_path = false;
    if (cr && cr->ngroups) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(app->md);
        h->nargs = cr->ngroups;
        h->args = sq__handler_alloc(h, h->nargs * sizeof *h->args);
        h->arg_lens = sq__handler_alloc(h, h->nargs * sizeof *h->arg_lens);
        if (!h->args || !h->arg_lens) {
            h->nargs = 0;
        }
        for (size_t g = 0; g < h->nargs; g++) {
            PCRE2_SIZE s = ov[2 * (g + 1)], e = ov[2 * (g + 1) + 1];
            h->args[g] = NULL;
            h->arg_lens[g] = 0;
            if (s == PCRE2_UNSET) continue;
            char *d = arena_strndup(h, req->path.ptr + s, e - s);
            if (!d) continue;
            ssize_t dl = sq_url_unescape(d, d, e - s, false);
            if (dl < 0) { /* malformed escape: keep the raw bytes (decoding was in place) */
                memcpy(d, req->path.ptr + s, e - s);
                dl = (ssize_t)(e - s);
            } else
                d[dl] = '\0';
            h->args[g] = d;
            h->arg_lens[g] = (size_t)dl;
            if (memchr(d, '\0', (size_t)dl)) nul_in_path = true;
        }
    }
    const sq_handler_class *c = h->cls;
    int midx;
    sq_handler_fn fn = method_fn(c, req->method, &h->is_head, &midx);
    /* name what this coroutine serves for the slow-callback warning: a pointer store */
    sq_coro *self = sq_coro_self();
    if (self) sq__coro_set_label(self, &label[midx]);

    if (c->set_default_headers) c->set_default_headers(h);
    if (c->initialize) c->initialize(h);
    if (c->on_connection_close) sq_http_on_connection_close(req, conn_closed, h);
    /* A path group holding a decoded %00 would reach the method as a C string cut short
     * ("/files/a%00b" as "a"): refused as nginx refuses a NUL in a URI. */
    if (nul_in_path && !h->finished) sq_send_error(h, 400, "NUL byte (%00) in the path");
    /* As in Tornado, a method runs only after its whole body arrived and was well formed:
     * a malformed chunked body gets 400, an oversized one 413, a client that leaves
     * mid-body nothing; in each case no method (and no prepare) runs.  Streaming classes
     * (data_received) see the body as it comes instead. */
    if (fn && !c->data_received && !h->finished && !h->fail_status &&
        (req->content_length > 0 || req->chunked))
        sq_get_body(h);
    /* The XSRF token, then prepare, then login required (Tornado's order): answered here
     * (a 403 or a redirect) when they fail. */
    bool denied = !h->finished && !h->fail_status && fn && !xsrf_gate(h);
    if (!denied && !h->finished && !h->fail_status && c->prepare) c->prepare(h);
    if (!denied && !h->finished && !h->fail_status) {
        if (!fn) {
            send_405(h);
        } else if (login_gate(h)) {
            if (c->data_received) stream_body(h);
            if (!h->finished && !h->fail_status) fn(h);
        }
    }
    if (h->handed_off) { /* the plain handler owns the response: the server finishes it */
        end_request(h);
        return;
    }
    if (h->fail_status) handle_failure(h);
    h->method_done = true;
    if (h->finished) {
        sq_http_finish(req); /* idempotent: also covers a response the server answered */
        end_request(h);
    } else if (h->detached) {
        sq_http_detach(req);
    } else {
        sq_finish(h);
    }
}

/* --- the fallback class ----------------------------------------------------------------------- */

static void fallback_prepare(sq_handler *h)
{
    const sq_fallback *fb = sq_handler_init_arg(h);
    sq_http_request *req = h->req;
    if (!fb || !fb->fn) {
        sq_handler_fail(h, 500, "sq_fallback_handler: the route's init_arg has no function");
        return;
    }
    h->handed_off = true;
    h->finished = true; /* nothing of the handler runs after this */
    req->data = NULL;   /* the plain handler's, as on a request fresh from the server */
    fb->fn(req, fb->arg);
}

/* The methods only let the standard gates run (the body read whole, the XSRF check);
 * prepare hands the request over before any of them is called, and also takes the
 * methods no class names (PROPFIND …). */
static void fallback_nop(sq_handler *h)
{
    (void)h;
}

const sq_handler_class sq_fallback_handler = {
    .get = fallback_nop,
    .post = fallback_nop,
    .put = fallback_nop,
    .delete_ = fallback_nop,
    .patch = fallback_nop,
    .head = fallback_nop,
    .options = fallback_nop,
    .prepare = fallback_prepare,
};

/* --- handler accessors -------------------------------------------------------------------- */

sq_http_request *sq_handler_request(sq_handler *h)
{
    return h->req;
}
sq_app *sq_handler_app(sq_handler *h)
{
    return h->app;
}
void *sq_handler_state(sq_handler *h)
{
    return h->cls->state_size ? h->state : NULL;
}
void *sq_handler_init_arg(sq_handler *h)
{
    return h->route ? h->route->init_arg : NULL;
}
bool sq__handler_is_head(sq_handler *h)
{
    return h->is_head;
}

const char *sq_path_arg(sq_handler *h, size_t i)
{
    return i < h->nargs ? h->args[i] : NULL;
}

size_t sq__path_arg_len(sq_handler *h, size_t i)
{
    return i < h->nargs && h->args[i] ? h->arg_lens[i] : 0;
}

const char *sq_path_kwarg(sq_handler *h, const char *name)
{
    const compiled_route *cr = h->cr;
    if (!cr || !name) return NULL;
    for (uint32_t i = 0; i < cr->name_count; i++) {
        PCRE2_SPTR e = cr->name_table + (size_t)i * cr->name_entry_size;
        unsigned g = ((unsigned)e[0] << 8) | e[1];
        if (strcmp((const char *)e + 2, name) == 0 && g >= 1) return sq_path_arg(h, g - 1);
    }
    return NULL;
}

/* --- arguments ---------------------------------------------------------------------------- */

/* The getters hand out C strings: a decoded %00 would end a value early ("admin%00x" read
 * as "admin") with nothing to tell.  As Tornado's get_argument does, the control bytes
 * 0x00-0x08 and 0x0e-0x1f of argument values become spaces (tab, LF, VT, FF, CR stay);
 * uploaded files keep their bytes (sq_get_file has their length). */
static void args_as_text(sq_args *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->items[i].filename) continue;
        char *v = a->items[i].value;
        for (size_t j = 0; j < a->items[i].value_len; j++)
            if ((unsigned char)v[j] < 0x20 && (v[j] < '\t' || v[j] > '\r')) v[j] = ' ';
    }
}

/* Whether argument `a` is called `name`: the whole name, so that one with a NUL in it
 * ("v%00x") is not taken for its prefix. */
static bool arg_named(const sq_arg *a, const char *name)
{
    return strcmp(a->name, name) == 0 && a->name_len == strlen(name);
}

static void parse_query(sq_handler *h)
{
    if (h->q_parsed) return;
    h->q_parsed = true;
    sq_args_init(&h->qargs);
    if (h->req->query.len) {
        int rc =
            sq_parse_qs(h->req->query.ptr, h->req->query.len, &h->qargs, &h->app->settings.form);
        if (rc < 0) sq_log(SQ_LOG_WARNING, "web: invalid query string: %s", sq_strerror(rc));
        args_as_text(&h->qargs);
    }
}

sq_str sq_get_body(sq_handler *h)
{
    if (!h->body_read) {
        h->body_read = true;
        if (h->cls->data_received) return (sq_str){"", 0}; /* streamed to the class */
        const char *data = NULL;
        ssize_t n = sq_http_read_body(h->req, &data);
        if (n < 0) {
            if (n != SQ_ENOTCORO) {
                h->finished = true; /* the server answered, or nobody is left to answer */
                h->body_failed = true;
            }
            return (sq_str){"", 0};
        }
        h->body = data;
        h->body_len = (size_t)n;
    }
    return (sq_str){h->body ? h->body : "", h->body_len};
}

static bool ctype_is(sq_str v, const char *t)
{
    size_t n = strlen(t);
    return v.len >= n && strncasecmp(v.ptr, t, n) == 0 &&
           (v.len == n || v.ptr[n] == ';' || v.ptr[n] == ' ' || v.ptr[n] == '\t');
}

static void parse_body_args(sq_handler *h)
{
    if (h->b_parsed) return;
    h->b_parsed = true;
    sq_args_init(&h->bargs);
    if (h->cls->data_received) return; /* streamed: the class has the body */
    sq_str ct = sq_http_header_get(h->req, "Content-Type");
    if (!ct.ptr) return;
    bool form = ctype_is(ct, "application/x-www-form-urlencoded");
    bool multi = !form && ctype_is(ct, "multipart/form-data");
    if (!form && !multi) return;
    sq_str body = sq_get_body(h);
    if (h->body_failed) return; /* said by the server already (400/413, or the access log) */
    /* reading the body may have moved the connection's buffer: take the slice again */
    ct = sq_http_header_get(h->req, "Content-Type");
    int rc = 0;
    if (form) {
        rc = sq_parse_qs(body.ptr, body.len, &h->bargs, &h->app->settings.form);
    } else {
        const char *b;
        size_t blen;
        rc = sq_multipart_boundary(ct.ptr, ct.len, &b, &blen);
        if (rc == 0)
            rc = sq_parse_multipart(body.ptr, body.len, b, blen, &h->bargs, &h->app->settings.form);
    }
    if (rc < 0) sq_log(SQ_LOG_WARNING, "web: invalid form body: %s", sq_strerror(rc));
    args_as_text(&h->bargs);
}

/* The last non-file value for name in a, or NULL. */
static const char *args_last(const sq_args *a, const char *name)
{
    for (size_t i = a->len; i-- > 0;)
        if (!a->items[i].filename && arg_named(&a->items[i], name)) return a->items[i].value;
    return NULL;
}

static size_t args_collect(const sq_args *a, const char *name, const char **out, size_t max,
                           size_t n)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->items[i].filename || !arg_named(&a->items[i], name)) continue;
        if (n < max) out[n] = a->items[i].value;
        n++;
    }
    return n;
}

const char *sq_get_query_argument(sq_handler *h, const char *name, const char *def)
{
    parse_query(h);
    const char *v = args_last(&h->qargs, name);
    return v ? v : def;
}

const char *sq_get_body_argument(sq_handler *h, const char *name, const char *def)
{
    parse_body_args(h);
    const char *v = args_last(&h->bargs, name);
    return v ? v : def;
}

const char *sq_get_argument(sq_handler *h, const char *name, const char *def)
{
    /* Query values come before body values; the last one wins. */
    const char *v = sq_get_body_argument(h, name, NULL);
    return v ? v : sq_get_query_argument(h, name, def);
}

size_t sq_get_arguments(sq_handler *h, const char *name, const char **out, size_t max)
{
    parse_query(h);
    parse_body_args(h);
    size_t n = args_collect(&h->qargs, name, out, max, 0);
    return args_collect(&h->bargs, name, out, max, n);
}

size_t sq_get_query_arguments(sq_handler *h, const char *name, const char **out, size_t max)
{
    parse_query(h);
    return args_collect(&h->qargs, name, out, max, 0);
}

size_t sq_get_body_arguments(sq_handler *h, const char *name, const char **out, size_t max)
{
    parse_body_args(h);
    return args_collect(&h->bargs, name, out, max, 0);
}

const char *sq_get_required_argument(sq_handler *h, const char *name)
{
    const char *v = sq_get_argument(h, name, NULL);
    if (v || h->finished) return v;
    char msg[160];
    snprintf(msg, sizeof msg, "missing argument %.120s", name);
    sq_set_status(h, 400, NULL);
    sq_set_header(h, "Content-Type", "text/plain; charset=UTF-8");
    h->out.len = 0;
    sq_write(h, msg);
    sq_finish(h);
    return NULL;
}

void *sq_json_body(sq_handler *h)
{
    sq_str b = sq_get_body(h);
    if (h->finished) return NULL;
    json_error_t e;
    json_t *j = json_loadb(b.ptr, b.len, JSON_DECODE_ANY, &e);
    if (j) return j;
    char msg[256];
    snprintf(msg, sizeof msg, "malformed JSON body: %s (line %d, column %d)", e.text, e.line, e.column);
    sq_set_status(h, 400, NULL);
    sq_set_header(h, "Content-Type", "text/plain; charset=UTF-8");
    h->out.len = 0;
    sq_write(h, msg);
    sq_finish(h);
    return NULL;
}

const sq_arg *sq_get_file(sq_handler *h, const char *name)
{
    parse_body_args(h);
    for (size_t i = h->bargs.len; i-- > 0;)
        if (h->bargs.items[i].filename && arg_named(&h->bargs.items[i], name))
            return &h->bargs.items[i];
    return NULL;
}

/* --- cookies ------------------------------------------------------------------------------ */

static void parse_cookies(sq_handler *h)
{
    if (h->c_parsed) return;
    h->c_parsed = true;
    sq_args_init(&h->cookies);
    const sq_http_request *req = h->req;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sq_http_header *hd = &req->headers[i];
        if (hd->name_len != 6 || strncasecmp(hd->name, "Cookie", 6) != 0) continue;
        int rc =
            sq_parse_cookie_header(hd->value, hd->value_len, &h->cookies, &h->app->settings.form);
        if (rc < 0) sq_log(SQ_LOG_WARNING, "web: too many cookies: %s", sq_strerror(rc));
    }
}

static const sq_arg *cookie_find(sq_handler *h, const char *name)
{
    parse_cookies(h);
    /* Browsers send the most specific cookie first; that is the one to use. */
    for (size_t i = 0; i < h->cookies.len; i++)
        if (strcmp(h->cookies.items[i].name, name) == 0) return &h->cookies.items[i];
    return NULL;
}

const char *sq_get_cookie(sq_handler *h, const char *name, const char *def)
{
    const sq_arg *a = cookie_find(h, name);
    return a ? a->value : def;
}

/* The value of attribute `attr` ("; Path=") in a Set-Cookie value, as a slice. */
static sq_str cookie_attr(const char *v, size_t len, const char *attr)
{
    size_t al = strlen(attr);
    for (size_t i = 0; i + al <= len; i++) {
        if (strncasecmp(v + i, attr, al)) continue;
        size_t s = i + al, e = s;
        while (e < len && v[e] != ';') e++;
        return (sq_str){v + s, e - s};
    }
    return (sq_str){NULL, 0};
}

static bool same_slice(sq_str a, sq_str b)
{
    return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len));
}

/* A Set-Cookie for the same cookie: name, Path and Domain equal (what a browser keys on). */
static bool same_cookie(const char *v, size_t len, void *arg)
{
    const char *mine = arg;
    size_t ml = strlen(mine);
    const char *eq = memchr(mine, '=', ml);
    size_t nl = eq ? (size_t)(eq - mine) + 1 : ml;
    if (len < nl || memcmp(v, mine, nl)) return false;
    return same_slice(cookie_attr(v, len, "; Path="), cookie_attr(mine, ml, "; Path=")) &&
           same_slice(cookie_attr(v, len, "; Domain="), cookie_attr(mine, ml, "; Domain="));
}

int sq_set_cookie(sq_handler *h, const char *name, const char *value, const sq_cookie_options *opts)
{
    char buf[1024];
    ssize_t n = sq_format_set_cookie(buf, sizeof buf, name, value ? value : "", opts);
    if (n < 0) return (int)n;
    char *p = buf;
    if ((size_t)n >= sizeof buf) {
        p = malloc((size_t)n + 1);
        if (!p) return -ENOMEM;
        sq_format_set_cookie(p, (size_t)n + 1, name, value ? value : "", opts);
    }
    /* setting a cookie again replaces it (Tornado keeps one per name): a second
     * Set-Cookie for it would leave the browser to pick one */
    sq__http_remove_headers(h->req, "Set-Cookie", same_cookie, p);
    int rc = sq_http_add_header(h->req, "Set-Cookie", p);
    if (p != buf) free(p);
    return rc;
}

int sq_clear_cookie(sq_handler *h, const char *name, const sq_cookie_options *opts)
{
    sq_cookie_options o = {0};
    if (opts) o = *opts;
    o.expires = time(NULL) - 365 * 24 * 3600;
    o.max_age = -1; /* Max-Age=0 */
    return sq_set_cookie(h, name, "", &o);
}

static const char *secret_or_log(sq_handler *h)
{
    const char *s = h->app->signing_secret;
    if (!s || !*s)
        sq_log(SQ_LOG_ERROR, "web: signed cookies need the app's cookie_secret or cookie_secrets");
    return s && *s ? s : NULL;
}

/* The secret a signed value was made with, as Tornado's get_signed_cookie picks it: without
 * cookie_secrets (Tornado's str secret) cookie_secret, whatever version the value names;
 * with them (Tornado's dict) the one of the value's version.  Version 0 is what a single
 * secret writes, so with no key of that version it is cookie_secret's: the cookies of an app
 * that had only cookie_secret keep working once it adds cookie_secrets.  A value of squall's
 * former format without a version is cookie_secret's too. */
static const char *verifying_secret(const sq_app *app, const char *v, size_t len)
{
    int kv = sq_cookie_value_key_version(v, len);
    if (kv < 0 || !app->cookie_secrets) return app->cookie_secret;
    for (size_t i = 0; app->cookie_secrets[i].secret; i++)
        if (app->cookie_secrets[i].version == kv) return app->cookie_secrets[i].secret;
    return kv == 0 ? app->cookie_secret : NULL; /* else a retired key: no longer valid */
}

const char *sq_get_signed_cookie(sq_handler *h, const char *name, double max_age_days)
{
    if (!secret_or_log(h)) return NULL;
    const sq_arg *a = cookie_find(h, name);
    if (!a) return NULL;
    const char *secret = verifying_secret(h->app, a->value, a->value_len);
    if (!secret) return NULL;
    char *dst = sq__handler_alloc(h, a->value_len + 1);
    if (!dst) return NULL;
    ssize_t n = sq_verify_cookie_value(dst, a->value_len + 1, secret, name, a->value, a->value_len,
                                       max_age_days, time(NULL));
    return n < 0 ? NULL : dst;
}

int sq_set_signed_cookie(sq_handler *h, const char *name, const char *value,
                         const sq_cookie_options *opts)
{
    const char *secret = secret_or_log(h);
    if (!secret) return -EINVAL;
    int kv = h->app->cookie_secrets ? h->app->settings.cookie_key_version : 0; /* as Tornado */
    if (!value) value = "";
    size_t vlen = strlen(value);
    time_t now = time(NULL);
    char buf[512];
    ssize_t n = sq_sign_cookie_value_kv(buf, sizeof buf, secret, kv, name, value, vlen, now);
    if (n < 0) return (int)n;
    char *p = buf;
    if ((size_t)n >= sizeof buf) {
        p = malloc((size_t)n + 1);
        if (!p) return -ENOMEM;
        n = sq_sign_cookie_value_kv(p, (size_t)n + 1, secret, kv, name, value, vlen, now);
    }
    int rc = n < 0 ? (int)n : sq_set_cookie(h, name, p, opts);
    if (p != buf) free(p);
    return rc;
}

/* --- response ----------------------------------------------------------------------------- */

SQ__HOT int sq_write_bytes(sq_handler *h, const void *data, size_t len)
{
    if (h->finished) return -EALREADY;
    if (!len) return 0;
    int rc = sq__buf_reserve(&h->out, len);
    if (rc < 0) return rc;
    memcpy(h->out.ptr + h->out.len, data, len);
    h->out.len += len;
    return 0;
}

SQ__HOT int sq_write(sq_handler *h, const char *s)
{
    return sq_write_bytes(h, s, s ? strlen(s) : 0);
}

int sq_writef(sq_handler *h, const char *fmt, ...)
{
    if (h->finished) return -EALREADY;
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
    va_end(ap2);
    int rc = 0;
    if (n < 0) {
        rc = -EINVAL;
    } else if ((size_t)n < sizeof tmp) {
        rc = sq_write_bytes(h, tmp, (size_t)n);
    } else if ((rc = sq__buf_reserve(&h->out, (size_t)n + 1)) == 0) {
        vsnprintf(h->out.ptr + h->out.len, (size_t)n + 1, fmt, ap);
        h->out.len += (size_t)n;
    }
    va_end(ap);
    return rc;
}

int sq_write_json(sq_handler *h, void *json)
{
    json_t *j = json;
    if (!j) return -EINVAL;
    int rc = -EALREADY;
    if (!h->finished) rc = sq__json_dump(&h->out, j);
    if (!rc) rc = sq_http_set_header(h->req, "Content-Type", "application/json");
    json_decref(j);
    return rc;
}

int sq_write_jsonf(sq_handler *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* finished: the arguments are still taken (an 'o' is stolen either way), into a scratch
     * buffer that is dropped */
    sq__buf scratch = {0};
    int rc = sq__json_vpack(h->finished ? &scratch : &h->out, fmt, ap);
    va_end(ap);
    free(scratch.ptr);
    if (h->finished) return rc ? rc : -EALREADY;
    return rc ? rc : sq_http_set_header(h->req, "Content-Type", "application/json");
}

sq_templates *sq_app_templates(sq_app *app)
{
    return app ? app->templates : NULL;
}

/* Render a compiled template into the response; tpl NULL: it failed to compile (err). */
static int render_into(sq_handler *h, sq_template *tpl, json_t *ctx, char *err, size_t errlen,
                       int fail_rc)
{
    int rc = fail_rc;
    char *text = NULL;
    size_t len = 0;
    json_t *globals = NULL;
    if (tpl && h->app->settings.xsrf_cookies) {
        const char *f = sq_xsrf_form_html(h);
        globals = f ? json_pack("{s:s}", "xsrf_form_html", f) : NULL;
    }
    if (tpl) rc = sq__template_render_globals(tpl, ctx, globals, &text, &len, err, errlen);
    json_decref(globals);
    if (rc == 0) {
        rc = sq_write_bytes(h, text, len);
        if (rc == 0 && !sq__http_resp_has_ctype(h->req))
            rc = sq_set_header(h, "Content-Type", "text/html; charset=UTF-8");
    } else if (!h->finished) {
        sq_log(SQ_LOG_ERROR, "template: %s", err);
        sq_send_error(h, 500, err);
    }
    free(text);
    return rc;
}

int sq_render(sq_handler *h, const char *name, void *ctx)
{
    json_t *c = ctx;
    char err[512] = "no template_path in the app's settings";
    sq_templates *t = h->app->templates;
    sq_template *tpl = t && name ? sq_templates_get(t, name, err, sizeof err) : NULL;
    int rc = h->finished ? -EALREADY
                         : render_into(h, tpl, c, err, sizeof err, !t || strstr(err, "No such file") ? -ENOENT : -EINVAL);
    json_decref(c);
    return rc;
}

int sq_render_string(sq_handler *h, const char *src, void *ctx)
{
    json_t *c = ctx;
    char err[512] = "";
    sq_templates *own = NULL, *t = h->app->templates;
    if (!t) t = own = sq_templates_new(NULL, NULL);
    sq_template *tpl = t && src ? sq_template_compile(t, "<string>", src, strlen(src), err, sizeof err) : NULL;
    int rc = !t ? -ENOMEM : h->finished ? -EALREADY : render_into(h, tpl, c, err, sizeof err, -EINVAL);
    sq_template_free(tpl);
    sq_templates_free(own);
    json_decref(c);
    return rc;
}

int sq_flush(sq_handler *h)
{
    if (h->finished) return -EALREADY;
    int rc = push_out(h);
    h->flushed = true;
    int rc2 = sq_http_flush(h->req);
    return rc < 0 ? rc : rc2;
}

SQ__HOT int sq_finish(sq_handler *h)
{
    if (h->finished) return 0;
    set_etag(h); /* as Tornado's finish(): also for a handler that finishes itself */
    int rc = push_out(h);
    h->finished = true;
    sq_http_request *req = h->req;
    if (h->method_done) {
        /* A detached request finishing after its method returned: the server recycles the
         * request inside sq_http_finish(), so on_finish runs just before it (the response
         * is complete by then; the request is still readable). */
        bool defer = h->in_close_cb;
        end_request(h);
        /* Inside the server's close notification the connection must not be freed under
         * it: finish on the next loop pass instead. */
        if (defer && sq_add_callback(sq_loop_current(), finish_later, req) == 0) return rc;
    }
    int rc2 = sq_http_finish(req);
    return rc < 0 ? rc : rc2;
}

int sq_set_status(sq_handler *h, int code, const char *reason)
{
    return sq_http_set_status(h->req, code, reason);
}

SQ__HOT int sq_set_header(sq_handler *h, const char *name, const char *value)
{
    return sq_http_set_header(h->req, name, value);
}

int sq_add_header(sq_handler *h, const char *name, const char *value)
{
    return sq_http_add_header(h->req, name, value);
}

int sq_clear_header(sq_handler *h, const char *name)
{
    return sq_http_clear_header(h->req, name);
}

/* RFC 3986 5.2.4: remove "." and ".." segments from the path in [p, p + n), in place;
 * returns the new length (the path stays absolute). */
static size_t remove_dot_segments(char *p, size_t n)
{
    size_t out = 0, i = 0;
    while (i < n) {
        size_t e = i + 1;
        while (e < n && p[e] != '/') e++; /* [i, e) is "/segment" */
        size_t seg = e - i;
        if (seg == 2 && p[i + 1] == '.') {
            if (e == n) p[out++] = '/';
        } else if (seg == 3 && p[i + 1] == '.' && p[i + 2] == '.') {
            while (out > 0 && p[--out] != '/') {
            }
            if (e == n) p[out++] = '/';
        } else {
            memmove(p + out, p + i, seg);
            out += seg;
        }
        i = e;
    }
    if (out == 0) p[out++] = '/';
    return out;
}

/* A Location for `url` as an absolute path: a relative reference ("x", "../x", "?q") is
 * resolved against the request's path (RFC 3986 5.2), as browsers would; an absolute URL,
 * a network-path ("//host/…") or an absolute path (dot segments removed) is kept.
 * Allocated in the handler's arena; NULL on -ENOMEM. */
static const char *resolve_location(sq_handler *h, const char *url)
{
    size_t ul = strlen(url);
    if (has_scheme(url) || (ul >= 2 && url[0] == '/' && url[1] == '/'))
        return url; /* scheme:… or //authority… */
    sq_str path = h->req->path, query = h->req->query;
    char *buf = sq__handler_alloc(h, path.len + ul + query.len + 6);
    if (!buf) return NULL;
    char *d = buf + 2; /* room for a "/." in front (below) */
    /* the base the reference is appended to */
    size_t n = 0;
    bool same_doc = url[0] == '?' || url[0] == '#' || ul == 0;
    if (same_doc) { /* the request's own path (and query, unless a new one is given) */
        memcpy(d, path.ptr, path.len);
        n = path.len;
        if (url[0] != '?' && query.len) {
            d[n++] = '?';
            memcpy(d + n, query.ptr, query.len);
            n += query.len;
        }
    } else if (url[0] != '/') { /* merge: the base path without its last segment */
        size_t cut = path.len;
        while (cut > 0 && path.ptr[cut - 1] != '/') cut--;
        if (cut == 0) d[n++] = '/';
        memcpy(d + n, path.ptr, cut);
        n += cut;
    }
    memcpy(d + n, url, ul);
    n += ul;
    d[n] = 0;
    if (!same_doc) {
        size_t pe = strcspn(d, "?#");
        size_t np = remove_dot_segments(d, pe);
        memmove(d + np, d + pe, n - pe);
        d[np + (n - pe)] = 0;
    }
    /* A path of the request's making ("/docs/..//evil.com/x", "//evil.com/") can resolve to
     * "//host…" or "/\host…", which a browser reads as another site: an open redirect.
     * "/." in front keeps it a path on this one. */
    if (d[0] == '/' && (d[1] == '/' || d[1] == '\\')) {
        d -= 2;
        d[0] = '/';
        d[1] = '.';
    }
    return d;
}

int sq_clear(sq_handler *h)
{
    if (h->finished || h->flushed) return -EALREADY;
    sq__http_resp_clear(h->req);
    h->out.len = 0;
    if (h->cls->set_default_headers) h->cls->set_default_headers(h);
    return 0;
}

int sq_redirect_status(sq_handler *h, const char *url, int status)
{
    if (h->finished || h->flushed) return -EALREADY;
    if (!url || !(status == 301 || status == 302 || status == 303 || status == 307 || status == 308))
        return -EINVAL;
    url = resolve_location(h, url);
    if (!url) return -ENOMEM;
    int rc = sq_http_set_header(h->req, "Location", url);
    if (rc < 0) return rc;
    rc = sq_http_set_status(h->req, status, NULL);
    if (rc < 0) return rc;
    h->out.len = 0;
    return sq_finish(h);
}

int sq_redirect(sq_handler *h, const char *url, bool permanent)
{
    return sq_redirect_status(h, url, permanent ? 301 : 302);
}

int sq_write_escaped(sq_handler *h, const char *s)
{
    int rc = 0;
    for (const char *p = s; *p && rc == 0;) {
        size_t n = strcspn(p, "<>&\"'");
        rc = sq_write_bytes(h, p, n);
        p += n;
        if (!*p || rc < 0) break;
        const char *ent = *p == '<'   ? "&lt;"
                          : *p == '>' ? "&gt;"
                          : *p == '&' ? "&amp;"
                          : *p == '"' ? "&quot;"
                                      : "&#39;";
        p++;
        rc = sq_write(h, ent);
    }
    return rc;
}

int sq_send_error(sq_handler *h, int status, const char *detail)
{
    if (h->finished) return -EALREADY;
    if (h->flushed) {
        sq_log(SQ_LOG_ERROR, "web: cannot send error %d: the response was already flushed", status);
        return sq_finish(h);
    }
    h->out.len = 0;
    if (sq_http_set_status(h->req, status, NULL) < 0) {
        status = 500;
        sq_http_set_status(h->req, status, NULL);
    }
    /* Headers for the discarded body must not describe the error page. */
    sq_http_clear_header(h->req, "Content-Type");
    sq_http_clear_header(h->req, "Content-Disposition");
    sq_http_clear_header(h->req, "Content-Range");
    sq_http_clear_header(h->req, "ETag");
    sq_http_clear_header(h->req, "Last-Modified");
    sq_http_clear_header(h->req, "Cache-Control"); /* nor be cached as it would have been */
    sq_http_clear_header(h->req, "Expires");
    const char *shown = h->app->settings.debug ? detail : NULL;
    if (h->cls->write_error) {
        h->cls->write_error(h, status, shown);
    } else {
        const char *reason = sq_http_reason(status);
        sq_http_set_header(h->req, "Content-Type", "text/html; charset=UTF-8");
        sq_writef(h, "<html><title>%d: %s</title><body>%d: %s", status, reason, status, reason);
        if (shown) {
            sq_write(h, "<pre>");
            sq_write_escaped(h, shown);
            sq_write(h, "</pre>");
        }
        sq_write(h, "</body></html>");
    }
    return sq_finish(h);
}

void sq_handler_fail(sq_handler *h, int status, const char *fmt, ...)
{
    if (status < 400 || status > 599) status = 500;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (fmt && vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    sq_log(SQ_LOG_ERROR, "web: %.*s %.*s failed (%d): %s", (int)h->req->method.len,
           h->req->method.ptr, (int)h->req->uri.len, h->req->uri.ptr, status,
           msg ? msg : "(no message)");
    if (h->fail_status) {
        free(msg); /* the first failure is the one reported */
        return;
    }
    h->fail_status = status;
    h->fail_msg = msg;
    if (h->method_done) handle_failure(h); /* failing from a detached callback */
}

void sq_handler_detach(sq_handler *h)
{
    h->detached = true;
}

/** @file squall/web.h
 * The web framework: applications, routes, handler classes (Tornado's
 * tornado.web).
 *
 *   static void hello(sq_handler *h) { sq_write(h, "Hello, world"); }
 *   static const sq_route routes[] = {   // pattern, class, name, init_arg
 *       { "/", &(sq_handler_class){ .get = hello }, NULL, NULL },
 *       { 0 },
 *   };
 *   sq_app *app = sq_app_new(routes, NULL);
 *   sq_app_listen(app, 8888, NULL);
 *   sq_loop_run(sq_loop_default());
 *
 * Every handler method runs on a pooled coroutine and may suspend; the request finishes
 * when the method returns (unless sq_handler_detach()).  Strings handed out by the
 * sq_get_* calls are NUL-terminated, decoded, and owned by the request: valid until it
 * finishes.  All calls belong to the loop thread.
 */
#ifndef SQUALL_WEB_H
#define SQUALL_WEB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squall/http.h"
#include "squall/httputil.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A web application: routes, settings and its HTTP server(s). */
typedef struct sq_app sq_app;
/** The handler of one request (Tornado's RequestHandler instance). */
typedef struct sq_handler sq_handler;
/** A handler method or hook; runs on the request's coroutine and may suspend. */
typedef void (*sq_handler_fn)(sq_handler *h);

/** A handler class: per-method functions (NULL: 405 with an Allow header listing the others;
 * HEAD falls back to GET with the body suppressed), hooks, and the size of the zeroed
 * per-request state sq_handler_state() returns. */
typedef struct sq_handler_class {
    /** the HTTP methods (delete_: DELETE); NULL: 405 */
    /** @{ */
    sq_handler_fn get, post, put, delete_, patch, head, options;
    /** @} */
    sq_handler_fn initialize;          /**< first, with sq_handler_init_arg() from the route */
    sq_handler_fn prepare;             /**< before the method; may finish the request itself */
    sq_handler_fn on_finish;           /**< after the response is finished (request still readable;
                                          for a detached request it runs inside sq_finish()) */
    sq_handler_fn on_connection_close; /**< the client left before the response was done */
    /** If set, the body is streamed to it piece by piece (Tornado's stream_request_body)
     * before the method runs, instead of being read whole. */
    void (*data_received)(sq_handler *h, const char *data, size_t len);
    /** Writes the error page for sq_send_error() (default: a small HTML page).  `detail` is
     * NULL unless the app's debug setting is on. */
    void (*write_error)(sq_handler *h, int status, const char *detail);
    /** bytes of zeroed per-request state: sq_handler_state() */
    size_t state_size;
    /** Who makes the request (Tornado's get_current_user): a user object of yours, or NULL
     *  for nobody.  Called at most once per request, by the first sq_current_user() (or by
     *  `authenticated`); the result is cached for the request. */
    void *(*get_current_user)(sq_handler *h);
    /** Tornado's `authenticated` decorator for every method: without a current user, GET and
     *  HEAD are redirected to settings.login_url with `?next=` and this request's URI, the
     *  others answered 403.  Checked after prepare (where the user may be looked up), before
     *  the method and before a streamed body (data_received) is taken in. */
    bool authenticated;
    /** Skip the XSRF check (settings.xsrf_cookies) for this class: an API authenticated by
     *  other means. */
    bool no_xsrf_check;
    /** Sets the headers every response of the class starts with (Tornado's
     *  set_default_headers): run before initialize, and again by sq_clear(). */
    sq_handler_fn set_default_headers;
} sq_handler_class;

/** A route: an anchored PCRE2 pattern matched against the path (not the query), its class,
 * an optional name for sq_reverse_url() and an argument for the class's initialize. */
typedef struct sq_route {
    /** anchored PCRE2 pattern; NULL ends the table */
    const char *pattern;
    /** the class serving it */
    const sq_handler_class *cls;
    /** for sq_reverse_url(); may be NULL */
    const char *name;
    /** for the class: sq_handler_init_arg() */
    void *init_arg;
} sq_route;

/** One signing key of several (sq_app_settings.cookie_secrets). */
typedef struct sq_cookie_secret {
    int version;        /**< the key version (>= 0) cookies signed with it carry */
    const char *secret; /**< the secret; NULL ends the table */
} sq_cookie_secret;

/** Application settings; zeroed: the defaults. */
typedef struct sq_app_settings {
    bool debug;                              /**< error pages show details */
    const char *cookie_secret;               /**< required for signed cookies */
    /** Versioned secrets (Tornado's cookie_secret dict with key_version): new signed cookies
     *  are signed with the secret of `cookie_key_version` and carry that version; a cookie
     *  is verified with the secret of the version it carries, so a secret can be rotated
     *  (add the new one, make it current, drop the old one a max age later) without logging
     *  everyone out.  A cookie of version 0 — what an app with cookie_secret alone writes,
     *  squall or Tornado — is verified with the key of version 0 if there is one (as
     *  Tornado's dict), else with cookie_secret; so keep cookie_secret a max age after
     *  adding cookie_secrets, or give its secret version 0.  Without cookie_secrets,
     *  cookie_secret verifies every cookie whatever version it names (as Tornado's str). */
    const sq_cookie_secret *cookie_secrets;
    int cookie_key_version; /**< the version of cookie_secrets new cookies are signed with */
    bool no_access_log;                      /**< the access log is on by default */
    sq_http_settings http;                   /**< server settings (limits, gzip, xheaders …) */
    sq_form_limits form;                     /**< argument and multipart limits */
    const sq_handler_class *default_handler; /**< for unmatched paths (default: 404 page) */
    /** Folder of the templates sq_render() finds by name (squall/template.h); with `debug`
     *  a changed file is compiled again. */
    const char *template_path;
    bool template_no_autoescape; /**< `{{ }}` prints as is (text templates) */
    /** No ETag on dynamic responses.  By default a finished 200 response to GET or HEAD that
     *  was not flushed in pieces and has no ETag of its own gets one (a hash of its body),
     *  and an If-None-Match naming it is answered 304 with no body (Tornado's compute_etag
     *  and check_etag_header). */
    bool no_etag;
    /** Where `authenticated` sends a GET or HEAD without a current user (with ?next=). */
    const char *login_url;
    /** XSRF protection (Tornado's xsrf_cookies): every POST, PUT, PATCH and DELETE must carry
     *  the token of the `_xsrf` cookie — in the form field `_xsrf` or the X-XSRFToken /
     *  X-CSRFToken header — or it is answered 403.  Pages put it in their forms with
     *  sq_xsrf_form_html() (templates: `{{ xsrf_form_html }}`).  The token is masked anew
     *  for each page (BREACH), in Tornado's version 2 format: a Tornado app and a squall app
     *  on one domain accept each other's cookie and tokens (Tornado's version 1 too).  The
     *  form field may also come in the query string, as in Tornado. */
    bool xsrf_cookies;
    /** Cache-Control max-age (seconds) of static files requested without a version (no
     *  `?v=`); 0: no Cache-Control.  Versioned URLs (sq_static_url()) get one year. */
    long static_max_age;
    /** The file a directory of the static route serves (e.g. "index.html"), after a 301 to the
     *  directory's URL with its trailing slash if the request lacked it; NULL: 403. */
    const char *static_default_filename;
} sq_app_settings;

/** Compile the routes (JIT) and build the app.  `routes` ends with an entry whose pattern
 * is NULL; it must outlive the app.  NULL with errno set (EINVAL for a bad pattern, which
 * is also logged with its offset). */
sq_app *sq_app_new(const sq_route *routes, const sq_app_settings *settings);
/** Add a route table for the hosts `host_pattern` matches (Tornado's add_handlers): an
 *  anchored, case-insensitive PCRE2 pattern matched against the request's host name (the
 *  Host header without its port), or NULL for every host.  Tables added later are tried
 *  before sq_app_new's routes (which serve every host), in the order they were added; a
 *  request whose host matches a table but none of its paths goes on to the next table.
 *  May be called while the app serves: requests that arrive afterwards see the routes.
 *  `routes` ends with a NULL pattern and must outlive the app.
 *  @return 0, -EINVAL (a bad host or path pattern, logged; a route without a class),
 *  -ENOMEM. */
int sq_app_add_handlers(sq_app *app, const char *host_pattern, const sq_route *routes);
/** Listen on host:port (host NULL: every address) with the current loop; host "unix:/path"
 * for a unix-domain socket (see sq_http_server_listen). */
int sq_app_listen(sq_app *app, int port, const char *host);
/** Serve already-bound listening sockets (sq_http_server_add_sockets) with the current loop.
 *  @return 0 or a negative errno, as sq_http_server_add_sockets(). */
int sq_app_add_sockets(sq_app *app, const int *fds, int n);
/** Serve HTTPS on host:port too, with the same routes (Tornado: a second HTTPServer with
 * ssl_options on the same Application): a second server with the app's HTTP settings and
 * `tls`, which it keeps a reference to.  (Setting settings.http.tls instead makes
 * sq_app_listen itself serve HTTPS.)  Call it again for more addresses, with the same
 * context (another one is -EINVAL: several certificates are one context's SNI callback). */
int sq_app_listen_tls(sq_app *app, int port, const char *host, sq_tls_context *tls);
/** The underlying HTTP server (port, shutdown …), NULL before sq_app_listen. */
sq_http_server *sq_app_server(sq_app *app);
/** The HTTPS server of sq_app_listen_tls, NULL before it. */
sq_http_server *sq_app_tls_server(sq_app *app);
/** Close the servers and free the app; requests in flight are dropped.  NULL is ignored. */
void sq_app_free(sq_app *app);
/** Build the path of the route named `name`, filling its groups with the n args given
 * (percent-encoded as Python's quote(): '/' is kept).  snprintf semantics; -ENOENT for an unknown
 * name, -EINVAL for a wrong number of args or a pattern that cannot be reversed (nested or
 * non-capturing groups, quantifiers or classes outside groups). */
ssize_t sq_reverse_url(const sq_app *app, const char *name, char *dst, size_t dstlen,
                       const char *const *args, size_t n);

/* --- the handler ---------------------------------------------------------------------------- */

/** The HTTP request underneath. */
sq_http_request *sq_handler_request(sq_handler *h);
/** The application. */
sq_app *sq_handler_app(sq_handler *h);
/** The zeroed per-request state of the class's state_size (NULL if 0). */
void *sq_handler_state(sq_handler *h);
/** The route's init_arg. */
void *sq_handler_init_arg(sq_handler *h);
/** Path groups, percent-decoded: the i-th capturing group (from 0; named groups count too)
 * and named groups by name.  NULL when absent or when the group did not participate.  A
 * group that decodes to a NUL byte (%00) is answered 400 before any method runs (nginx
 * refuses it too), so the string is always the whole group. */
const char *sq_path_arg(sq_handler *h, size_t i);
/** The named group `name`, percent-decoded; NULL when absent. */
const char *sq_path_kwarg(sq_handler *h, const char *name);

/** Query and body arguments (url-encoded or multipart; body values come after the query's),
 * last value wins; `def` if absent.  Uploaded files are not arguments (sq_get_file).  As in
 * Tornado, the control bytes 0x00-0x08 and 0x0e-0x1f of a value (a %00 above all) are
 * replaced by spaces, so the string is the whole value; unlike Tornado's default
 * (strip=True), leading and trailing whitespace is kept.  The same holds for every
 * sq_get_*argument* call below. */
const char *sq_get_argument(sq_handler *h, const char *name, const char *def);
/** Every value of `name`, up to `max` into `out`; returns how many there are. */
size_t sq_get_arguments(sq_handler *h, const char *name, const char **out, size_t max);
/** An argument from the query string only; `def` if absent. */
const char *sq_get_query_argument(sq_handler *h, const char *name, const char *def);
/** An argument from the body only; `def` if absent. */
const char *sq_get_body_argument(sq_handler *h, const char *name, const char *def);
/** An uploaded file (multipart), or NULL. */
const sq_arg *sq_get_file(sq_handler *h, const char *name);
/** Every value of query argument `name`, in order (Tornado's get_query_arguments): up to
 *  `max` stored in out.  @return how many there are (may exceed max). */
size_t sq_get_query_arguments(sq_handler *h, const char *name, const char **out, size_t max);
/** Every value of body argument `name` (form fields, urlencoded or multipart); as
 *  sq_get_query_arguments(). */
size_t sq_get_body_arguments(sq_handler *h, const char *name, const char **out, size_t max);
/** Argument `name` (query or body, the last value), which the request must have: without
 *  it the request is answered 400 "missing argument <name>" (Tornado's
 *  MissingArgumentError) and NULL is returned — the method should then return. */
const char *sq_get_required_argument(sq_handler *h, const char *name);
/** The body parsed as JSON (Tornado's json_decode(self.request.body)): a json_t * the caller
 *  owns (json_decref), or NULL after answering 400 "malformed JSON body: <what, where>". */
void *sq_json_body(sq_handler *h);
/** The request body (read whole on first use unless the class streams it). */
sq_str sq_get_body(sq_handler *h);

/** A request cookie's value; `def` if absent. */
const char *sq_get_cookie(sq_handler *h, const char *name, const char *def);
/** Add a Set-Cookie header.  0, or a negative errno (-EINVAL for a bad name or value, -ENOMEM). */
int sq_set_cookie(sq_handler *h, const char *name, const char *value,
                  const sq_cookie_options *opts);
/** Expire a cookie (Set-Cookie with Max-Age=0 and a past date). */
int sq_clear_cookie(sq_handler *h, const char *name, const sq_cookie_options *opts);
/** A cookie signed with the app's cookie_secret (or the cookie_secrets entry of the version
 *  it carries: the rule is under sq_app_settings.cookie_secrets), at most max_age_days old
 *  (<= 0: 31 days); a tampered, expired or unknown-key cookie reads as NULL.  Tornado's
 *  signed cookies (set_signed_cookie with the same secret) read too, and so do squall's of
 *  its former format until they expire. */
const char *sq_get_signed_cookie(sq_handler *h, const char *name, double max_age_days);
/** Set a cookie signed with the app's current key (cookie_secrets[cookie_key_version], else
 *  cookie_secret and version 0), in Tornado's format (sq_sign_cookie_value()), so that a
 *  Tornado app with the same secret reads it with get_signed_cookie; -EINVAL without one. */
int sq_set_signed_cookie(sq_handler *h, const char *name, const char *value,
                         const sq_cookie_options *opts);

/** Response.  Each returns 0 or a negative errno (-EINVAL for CR/LF in a header value …). */
int sq_write(sq_handler *h, const char *s);
/** Append `len` bytes to the response body. */
int sq_write_bytes(sq_handler *h, const void *data, size_t len);
/** Append printf-formatted text to the response body. */
int sq_writef(sq_handler *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Write `s` with < > & " ' replaced by HTML entities (Tornado's xhtml_escape). */
int sq_write_escaped(sq_handler *h, const char *s);
/** Serialize a jansson value (void * to keep jansson out of this header; pass a json_t *),
 * set Content-Type: application/json, and drop the reference (it steals it).  The bytes are
 * json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)'s but for "</", written "<\/" as Tornado's
 * json_encode does, so that JSON put in a `<script>` cannot end it.  0, or -EINVAL
 * (NULL, or a string jansson will not write: not UTF-8), -ENOMEM, -EALREADY. */
int sq_write_json(sq_handler *h, void *json);
/** Write JSON straight from a jansson json_pack() format and its arguments, without building
 *  a tree: sq_write_jsonf(h, "{s:s, s:i}", "message", "Hello", "n", 3).  The bytes are
 *  those of sq_write_json(h, json_pack(fmt, ...)), for the same formats: {} [] (',' ':' and
 *  blanks ignored), s s# s% s+ (concatenation), s? (NULL: null), s* (NULL: left out), n, b,
 *  i, I, f, o and O (a json_t *; o steals the reference), o? O? o* O*.  Where json_pack
 *  would not give that document, this refuses instead: a key given twice in one object
 *  (json_pack keeps the last value), a key holding a NUL byte (jansson 2.14 cuts it there),
 *  and formats nested more than 64 deep.  Sets Content-Type: application/json.  0, or
 *  -EINVAL (a format error, a NULL or non-UTF-8 string, a real that is not finite: logged
 *  with its offset in the format, nothing written), -ENOMEM, -EALREADY.  On an argument
 *  error every argument is still read and each o dropped, as json_pack does; a format error
 *  stops the reading there (the arguments after it cannot be matched to the format). */
int sq_write_jsonf(sq_handler *h, const char *fmt, ...);
/** The same JSON as sq_write_jsonf, as a NUL-terminated malloc'ed string (its length in
 *  *len if len is not NULL): for WebSocket messages, Redis, logs.  NULL with errno EINVAL
 *  or ENOMEM. */
char *sq_json_format(size_t *len, const char *fmt, ...);
/** sq_json_format with a va_list. */
char *sq_json_vformat(size_t *len, const char *fmt, va_list ap);

/** The URL of static file `path` with its version: "/static/style.css?v=<hash of the
 *  contents>" (through the route named "static", which must use sq_static_file_handler).
 *  The hash is computed once per file (again when it changed, with settings.debug); such
 *  URLs are served with a one-year Cache-Control, so a changed file gets a new URL.  Valid
 *  until the request ends; NULL (logged) without a "static" route or a readable file. */
const char *sq_static_url(sq_handler *h, const char *path);
/** The current user (see sq_handler_class.get_current_user), NULL for nobody. */
void *sq_current_user(sq_handler *h);
/** This request's XSRF token, masked (a different string each call, all valid), setting the
 *  `_xsrf` cookie if the client has none.  Valid until the request ends.  NULL on -ENOMEM. */
const char *sq_xsrf_token(sq_handler *h);
/** `<input type="hidden" name="_xsrf" value="…">` for a form (valid until the request
 *  ends); NULL on -ENOMEM. */
const char *sq_xsrf_form_html(sq_handler *h);

/** A loader of templates (squall/template.h). */
typedef struct sq_templates sq_templates;
/** Render template `name` (found under settings.template_path, compiled once and cached)
 *  with the context `ctx` (a json_t * object, or NULL; the reference is stolen, as by
 *  sq_write_json) and write it as the body, with Content-Type text/html unless one is set.
 *  A template that fails to compile or render answers 500 (the message is logged, and shown
 *  with settings.debug).
 *  @return 0, -ENOENT (no template_path, or no such template), -EINVAL (its error),
 *  -EALREADY (finished), -ENOMEM. */
int sq_render(sq_handler *h, const char *name, void *ctx);
/** sq_render() with the template given as text (compiled for this call; `extends` and
 *  `include` still come from template_path). */
int sq_render_string(sq_handler *h, const char *src, void *ctx);
/** The app's template loader, to register filters with sq_templates_add_filter(); NULL
 *  without settings.template_path.  Owned by the app. */
sq_templates *sq_app_templates(sq_app *app);
/** Send the headers and what was written so far; suspends while the client is slow
 * (backpressure). */
int sq_flush(sq_handler *h);
/** Finish the response (for a detached request); idempotent. */
int sq_finish(sq_handler *h);
/** Set the response status; `reason` NULL: the standard phrase. */
int sq_set_status(sq_handler *h, int code, const char *reason);
/** Replace a response header. */
int sq_set_header(sq_handler *h, const char *name, const char *value);
/** Append a response header (repeated names kept). */
int sq_add_header(sq_handler *h, const char *name, const char *value);
/** Remove a response header. */
int sq_clear_header(sq_handler *h, const char *name);
/** Start the response over (Tornado's clear): status 200, no headers but the class's
 *  set_default_headers, nothing written.  @return 0, or -EALREADY once flushed or finished. */
int sq_clear(sq_handler *h);
/** 302 (or 301 when permanent) with Location; finishes the request. */
int sq_redirect(sq_handler *h, const char *url, bool permanent);
/** A redirect with a status of your choice: 301, 302, 303 (see other: a GET after a POST),
 *  307 or 308 (the method and body are kept).  A relative `url` is resolved against the
 *  request's URI.  @return 0, -EINVAL (not a redirect status), -EALREADY, -ENOMEM. */
int sq_redirect_status(sq_handler *h, const char *url, int status);
/** Discard what was written and send an error page through the class's write_error.
 * `detail` is shown only in debug mode.  Headers that described the discarded body go
 * (Content-Type, Content-Disposition, Content-Range, ETag, Last-Modified, Cache-Control,
 * Expires); write_error may set its own. */
int sq_send_error(sq_handler *h, int status, const char *detail);
/** Mark the handler failed (the C form of raising an exception): when the method returns,
 * a 500 (or `status`) is sent unless something was already flushed. */
void sq_handler_fail(sq_handler *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** Keep the request open after the method returns; finish it later with sq_finish()
 * (also when the client left: that is what ends the request and runs on_finish). */
void sq_handler_detach(sq_handler *h);

/* --- static files ------------------------------------------------------------------------------
 */

/** A class serving files below the directory given as the route's init_arg, from the route's
 * first path group: ETag / Last-Modified with 304, single byte ranges (206, 416), content
 * types by extension, and no way out of the root (403/404).  Files over 1 MiB are read and
 * flushed in chunks (chunked encoding), never held whole. */
extern const sq_handler_class sq_static_file_handler;

/** Where sq_redirect_handler sends a route (its init_arg). */
typedef struct sq_redirect_target {
    /** The target URL (Tornado's RedirectHandler url): "{0}", "{1}" … are replaced by the
     *  route's path groups and "{name}" by its named groups (percent-encoded again, '/'
     *  kept); "{{" and "}}" are literal braces.  The request's query string is appended. */
    const char *url;
    /** 301 (0: the default, permanent), 302, 303, 307 or 308. */
    int status;
} sq_redirect_target;

/** A class redirecting GET and HEAD (Tornado's RedirectHandler): route init_arg is a
 *  `const sq_redirect_target *`, e.g. { "/old/(.*)", &sq_redirect_handler, NULL,
 *  &(sq_redirect_target){ "/new/{0}", 0 } }. */
extern const sq_handler_class sq_redirect_handler;

/** A plain HTTP handler a route hands its requests to (sq_fallback_handler's init_arg). */
typedef struct sq_fallback {
    sq_http_handler_fn fn; /**< called as the server would call it */
    void *arg;             /**< its argument */
} sq_fallback;

/** A class handing every request of its route, whatever the method, to a plain
 *  sq_http_handler_fn (Tornado's FallbackHandler): route init_arg is a
 *  `const sq_fallback *`.  The app's XSRF check (settings.xsrf_cookies) runs first for
 *  POST, PUT, PATCH and DELETE, as for every class; then `fn` owns the request exactly as a handler given to sq_http_server_new() would: it writes
 *  with sq_http_*, may read the body (already read whole for the standard methods), may
 *  detach; the server finishes the response when it returns. */
extern const sq_handler_class sq_fallback_handler;

#ifdef __cplusplus
}
#endif
#endif

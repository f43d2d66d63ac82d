/* HTTP client: a request's options as libcurl easy-handle settings, the transfer's data
 * callbacks, and libcurl's result codes as squall errors. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/client_internal.h"

/* A field of the request, else of the client's defaults, else 0. */
#define PICK(f) ((req && req->f) ? req->f : (defs && defs->f) ? defs->f : 0)

static const char *const known_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                            "PATCH", "DELETE", "OPTIONS", NULL};

static bool method_known(const char *m)
{
    for (size_t i = 0; known_methods[i]; i++)
        if (strcmp(m, known_methods[i]) == 0) return true;
    return false;
}

static bool method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static long ms(double s, double def)
{
    if (s == 0) s = def;
    if (s < 0) return 0; /* libcurl: no limit (connect: its own 300 s) */
    if (s > 1e6) s = 1e6;
    long v = (long)(s * 1000 + 0.5);
    return v > 0 ? v : 1;
}

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if ((setrc = curl_easy_setopt(e, opt, val)) != CURLE_OK) goto bad;                         \
    } while (0)

/* A request whose easy-handle options are the client's defaults alone: NULL, or one that sets
 * nothing but per-transfer fields (callbacks, no_raise_error).  Any other field, or padding
 * that is not zero, makes it "configured" and its handle is set up from scratch. */
static bool request_plain(const sq_fetch_request *req)
{
    if (!req) return true;
    sq_fetch_request r, zero;
    memcpy(&r, req, sizeof r);
    memset(&zero, 0, sizeof zero);
    r.streaming_callback = NULL;
    r.streaming_arg = NULL;
    r.header_callback = NULL;
    r.header_arg = NULL;
    r.no_raise_error = false;
    return memcmp(&r, &zero, sizeof r) == 0;
}

unsigned sq__xfer_config_key(const char *url, const sq_fetch_request *req,
                             const sq_fetch_request *defs)
{
    if (!url || !request_plain(req)) return SQ__EASY_RESET;
    /* Credentials: a handle keeps its authentication state (a digest nonce, the scheme
     * picked) from one fetch to the next unless reset. */
    if (defs && (defs->auth_username || defs->proxy_username)) return SQ__EASY_RESET;
    /* https may multiplex (HTTP/2): a stream resent after its connection died leaves that
     * connection open until its other streams are done, where xfer_complete cannot see it. */
    if (strncasecmp(url, "http:", 5) != 0) return SQ__EASY_RESET;
    return SQ__EASY_PLAIN;
}

/* A method libcurl sends as CURLOPT_CUSTOMREQUEST (PUT, PATCH, DELETE …). */
static bool custom_method(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "POST") != 0;
}

/* The options that follow from the request and the client's defaults (not from the
 * transfer object): what a handle keeps between plain fetches. */
static int easy_configure(CURL *e, const char *url, const sq_fetch_request *req,
                          const sq_fetch_request *defs, const char *method)
{
    CURLcode setrc = CURLE_OK;
    const void *body = req ? req->body : NULL;
    size_t body_len = req ? req->body_len : 0;
    sq_fetch_body_producer producer = req ? req->body_producer : NULL;

    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_WRITEFUNCTION, sq__xfer_on_write);
    SET(CURLOPT_HEADERFUNCTION, sq__xfer_on_header);
    /* HTTP/2 when an https server offers it through ALPN; cleartext stays HTTP/1.1. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Concurrent https fetches to one host wait for the first connection to learn whether
     * it multiplexes rather than each opening its own. */
    if (strncasecmp(url, "https:", 6) == 0) SET(CURLOPT_PIPEWAIT, 1L);

    /* Method and body. */
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (producer) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_READFUNCTION, sq__xfer_on_read);
        SET(CURLOPT_SEEKFUNCTION, sq__xfer_on_seek);
        /* Unknown length: HTTP/1.1 chunked. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, body_len ? (curl_off_t)body_len : (curl_off_t)-1);
    } else if (body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SET(CURLOPT_COPYPOSTFIELDS, body_len ? (const char *)body : "");
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_COPYPOSTFIELDS, "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
    if (custom_method(method)) {
        SET(CURLOPT_CUSTOMREQUEST, method);
        /* A PUT or PATCH (its body sent as libcurl's POST data) keeps its body through a 301
         * or 302, as Tornado does; libcurl's rule for POST would drop it under the method. */
        SET(CURLOPT_POSTREDIR, (long)(CURL_REDIR_POST_301 | CURL_REDIR_POST_302));
    }

    double ct = PICK(connect_timeout), rt = PICK(request_timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, ms(ct, SQ_FETCH_DEFAULT_CONNECT_TIMEOUT));
    SET(CURLOPT_TIMEOUT_MS, ms(rt, SQ_FETCH_DEFAULT_REQUEST_TIMEOUT));

    bool follow = !PICK(no_follow_redirects);
    int maxr = PICK(max_redirects);
    SET(CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)(maxr > 0 ? maxr : SQ_FETCH_DEFAULT_MAX_REDIRECTS));

    const char *ua = PICK(user_agent);
    SET(CURLOPT_USERAGENT, ua ? ua : SQ_FETCH_DEFAULT_USER_AGENT);
    if (!PICK(no_decompress)) SET(CURLOPT_ACCEPT_ENCODING, "gzip");

    const char *user = PICK(auth_username);
    if (user) {
        const char *pw = PICK(auth_password);
        SET(CURLOPT_USERNAME, user);
        SET(CURLOPT_PASSWORD, pw ? pw : "");
        SET(CURLOPT_HTTPAUTH,
            PICK(auth_mode) == SQ_FETCH_AUTH_DIGEST ? CURLAUTH_DIGEST : CURLAUTH_BASIC);
    }

    const char *proxy = PICK(proxy_host);
    /* "" also keeps libcurl from reading http_proxy & co. from the environment. */
    SET(CURLOPT_PROXY, proxy ? proxy : "");
    /* Without a proxy, no_proxy has nothing to exempt, and libcurl would otherwise read it
     * (no_proxy, then NO_PROXY) from the environment on every transfer; with one, the
     * environment's no_proxy applies as before. */
    SET(CURLOPT_NOPROXY, proxy ? (const char *)NULL : "");
    if (proxy) {
        int port = PICK(proxy_port);
        if (port) SET(CURLOPT_PROXYPORT, (long)port);
        const char *pu = PICK(proxy_username), *pp = PICK(proxy_password);
        if (pu) SET(CURLOPT_PROXYUSERNAME, pu);
        if (pp) SET(CURLOPT_PROXYPASSWORD, pp);
    }

    if (PICK(no_validate_cert)) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    const char *ca = PICK(ca_certs), *cert = PICK(client_cert), *key = PICK(client_key);
    if (ca) SET(CURLOPT_CAINFO, ca);
    if (cert) SET(CURLOPT_SSLCERT, cert);
    if (key) SET(CURLOPT_SSLKEY, key);
    return 0;
bad:
    /* libcurl copies string options (and COPYPOSTFIELDS): out of memory is not a bad URL. */
    return setrc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

int sq__xfer_setup(sq__xfer *x, const char *url, const sq_fetch_request *req,
                   const sq_fetch_request *defs, const sq_http_client_settings *settings,
                   bool configured)
{
    CURL *e = x->easy;
    CURLcode setrc = CURLE_OK;
    if (!url || !*url) return -EINVAL;
    if (!(x->url = strdup(url))) return -ENOMEM;

    const void *body = req ? req->body : NULL;
    sq_fetch_body_producer producer = req ? req->body_producer : NULL;
    bool has_body = body || producer;
    const char *method = PICK(method);
    if (!method) method = has_body ? "POST" : "GET";
    if (!PICK(allow_nonstandard_methods)) {
        /* Tornado's checks: a typo in a method or a body on GET is a bug, not a request. */
        if (!method_known(method) || method_has_body(method) != has_body) return -EINVAL;
    }

    x->raise_error = !PICK(no_raise_error);
    x->stop_at_303 = !PICK(no_follow_redirects) && custom_method(method);
    int maxr = PICK(max_redirects);
    x->max_redirects = maxr > 0 ? maxr : SQ_FETCH_DEFAULT_MAX_REDIRECTS;
    x->timeout_ms = ms(PICK(request_timeout), SQ_FETCH_DEFAULT_REQUEST_TIMEOUT);
    x->max_body = settings->max_body_size;
    if (req) {
        x->producer = req->body_producer;
        x->producer_arg = req->body_producer_arg;
        x->body_total = req->body_producer ? req->body_len : 0;
        x->rewind = req->body_rewind;
        x->streaming = req->streaming_callback;
        x->streaming_arg = req->streaming_arg;
        x->header_cb = req->header_callback;
        x->header_arg = req->header_arg;
    }
    /* Queue timeout: the client's, else Tornado's min(connect, request timeout). */
    double ct = PICK(connect_timeout), rt = PICK(request_timeout);
    double qt = settings->queue_timeout;
    if (qt == 0) {
        double c = ct ? ct : SQ_FETCH_DEFAULT_CONNECT_TIMEOUT;
        double r = rt ? rt : SQ_FETCH_DEFAULT_REQUEST_TIMEOUT;
        qt = c < 0 ? r : r < 0 ? c : (c < r ? c : r);
    }
    x->queue_timeout = qt;

    /* Headers: the caller's, and no "Expect: 100-continue" round trip for bodies.  The list
     * is the transfer's: set on every use of the handle (NULL included). */
    const char *const *hdrs = PICK(headers);
    for (size_t i = 0; hdrs && hdrs[i]; i++) {
        struct curl_slist *n = curl_slist_append(x->hdrs, hdrs[i]);
        if (!n) return -ENOMEM;
        x->hdrs = n;
    }
    if (has_body) {
        struct curl_slist *n = curl_slist_append(x->hdrs, "Expect:");
        if (!n) return -ENOMEM;
        x->hdrs = n;
    }

    /* What points into this transfer, on every use of the handle. */
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    if (producer) {
        SET(CURLOPT_READDATA, x);
        SET(CURLOPT_SEEKDATA, x);
    }
    return configured ? 0 : easy_configure(e, url, req, defs, method);
bad:
    return setrc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

/* --- data callbacks (run inside curl_multi_socket_action, on the loop thread) ------------- */

size_t sq__xfer_on_write(char *p, size_t size, size_t n, void *arg)
{
    sq__xfer *x = arg;
    size_t len = size * n;
    if (x->abort_err) return 0; /* anything but len makes libcurl fail the transfer */
    if (x->streaming) {
        int r = x->streaming(p, len, x->streaming_arg);
        if (r < 0) {
            x->abort_err = r;
            return 0;
        }
        return len;
    }
    if (len > x->max_body - x->body.len || x->body.len > x->max_body) {
        x->abort_err = -E2BIG;
        return 0;
    }
    if (sq__buf_append(&x->body, p, len) < 0) {
        x->abort_err = -ENOMEM;
        return 0;
    }
    return len;
}

size_t sq__xfer_on_header(char *p, size_t size, size_t n, void *arg)
{
    sq__xfer *x = arg;
    size_t len = size * n;
    if (x->abort_err) return 0;
    if (x->header_cb) x->header_cb(p, len, x->header_arg);
    /* A status line starts a new response (1xx, each redirect, a proxy's CONNECT): keep
     * only the latest one's headers. */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        x->head.len = 0;
        const char *sp = memchr(p, ' ', len);
        x->status_303 = sp && (size_t)(sp - p) + 4 <= len && memcmp(sp + 1, "303", 3) == 0;
    } else if (x->stop_at_303 && x->status_303 && (len == 2 || len == 1) &&
               (p[0] == '\r' || p[0] == '\n')) {
        x->see_other = true; /* the 303's headers are complete: stop before libcurl follows */
        return 0;
    }
    if (len > 256 * 1024 - x->head.len || sq__buf_append(&x->head, p, len) < 0) {
        x->abort_err = -E2BIG;
        return 0;
    }
    return len;
}

size_t sq__xfer_on_read(char *p, size_t size, size_t n, void *arg)
{
    sq__xfer *x = arg;
    if (x->abort_err) return CURL_READFUNC_ABORT;
    ssize_t r = x->producer(p, size * n, x->producer_arg);
    if (r == SQ_FETCH_PAUSE) {
        x->paused = true;
        return CURL_READFUNC_PAUSE;
    }
    if (r < 0) {
        x->abort_err = (int)r;
        return CURL_READFUNC_ABORT;
    }
    if (r == 0 && x->body_total && x->body_sent < x->body_total) {
        x->abort_err = -EPIPE; /* fewer bytes than the Content-Length sent */
        return CURL_READFUNC_ABORT;
    }
    if ((size_t)r > size * n || (x->body_total && x->body_sent + (size_t)r > x->body_total)) {
        /* more than the buffer holds (it overflowed it), or than the length declared */
        sq_log(SQ_LOG_ERROR,
               "http client: a body producer returned %zd bytes (room for %zu, "
               "%zu of %zu declared sent): fetch aborted",
               r, size * n, x->body_sent, x->body_total);
        x->abort_err = -EINVAL;
        return CURL_READFUNC_ABORT;
    }
    x->body_sent += (size_t)r;
    return (size_t)r;
}

int sq__xfer_on_seek(void *arg, curl_off_t offset, int origin)
{
    sq__xfer *x = arg;
    if (offset != 0 || origin != SEEK_SET || !x->rewind) return CURL_SEEKFUNC_CANTSEEK;
    int r = x->rewind(x->producer_arg);
    x->body_sent = 0;
    if (r < 0) {
        x->abort_err = r;
        return CURL_SEEKFUNC_FAIL;
    }
    return CURL_SEEKFUNC_OK;
}

/* --- a 303 after PUT, PATCH, DELETE … ------------------------------------------------------ */

/* The value of header `name` in the raw header lines of x (malloc'd), or NULL. */
static char *head_value(const sq__buf *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = head->ptr, *end = p + head->len; p && p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            return strndup(v, (size_t)(ve - v));
        }
        p = eol + 1;
    }
    return NULL;
}

/* scheme://host:port of a parsed URL (malloc'd), or NULL */
static char *origin_of(CURLU *u)
{
    char *scheme = NULL, *host = NULL, *port = NULL, *o = NULL;
    if (!curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) &&
        asprintf(&o, "%s://%s:%s", scheme, host, port) < 0)
        o = NULL;
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return o;
}

/* A header the GET after a 303 does not carry: what described the body, and credentials
 * when it goes to another origin (as libcurl does for its own redirects). */
static bool header_dropped(const char *line, bool other_origin)
{
    static const char *const body[] = {"Content-Type",      "Content-Length", "Content-Encoding",
                                       "Transfer-Encoding", "Expect",         NULL};
    static const char *const creds[] = {"Authorization", "Cookie", NULL};
    size_t n = strcspn(line, ":;");
    for (int k = 0; k < 2; k++)
        for (const char *const *h = k ? creds : body; *h && (k == 0 || other_origin); h++)
            if (strlen(*h) == n && strncasecmp(line, *h, n) == 0) return true;
    return false;
}

int sq__xfer_follow_303(sq__xfer *x)
{
    CURL *e = x->easy;
    CURLcode setrc = CURLE_OK;
    long legs = 0;
    curl_off_t took = 0;
    char *eff = NULL;
    curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &legs);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &took);
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
    char *loc = head_value(&x->head, "Location");
    if (!loc || !eff) {
        free(loc);
        return 1;
    }
    if (x->redirects + legs >= x->max_redirects) {
        free(loc);
        return SQ_EREDIRECTS;
    }
    x->earlier_us += took;
    int64_t left_ms = x->timeout_ms ? x->timeout_ms - x->earlier_us / 1000 : 0;
    if (x->timeout_ms && left_ms <= 0) {
        free(loc);
        return -ETIMEDOUT;
    }
    /* the Location, resolved against the URL it answered */
    int rc = -ENOMEM;
    char *next = NULL, *from = NULL, *to = NULL, *scheme = NULL;
    CURLU *u = curl_url();
    if (u && !curl_url_set(u, CURLUPART_URL, eff, 0) && (from = origin_of(u))) {
        if (curl_url_set(u, CURLUPART_URL, loc, CURLU_URLENCODE) ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
            (strcmp(scheme, "http") && strcmp(scheme, "https")) ||
            curl_url_get(u, CURLUPART_URL, &next, 0))
            rc = -EPROTO; /* not a URL squall may go to */
        else if ((to = origin_of(u)))
            rc = 0;
    }
    if (rc < 0) {
        sq_log(SQ_LOG_DEBUG, "fetch %s: a 303 to \"%s\": not followed (%s)", x->url, loc,
               strerror(-rc));
        goto out;
    }
    bool other_origin = strcmp(from, to) != 0;
    struct curl_slist *hdrs = NULL;
    for (struct curl_slist *h = x->hdrs; h; h = h->next) {
        if (header_dropped(h->data, other_origin)) continue;
        struct curl_slist *n = curl_slist_append(hdrs, h->data);
        if (!n) {
            curl_slist_free_all(hdrs);
            rc = -ENOMEM;
            goto out;
        }
        hdrs = n;
    }
    curl_slist_free_all(x->hdrs);
    x->hdrs = hdrs;
    rc = -ENOMEM;
    x->easy_key = SQ__EASY_RESET; /* configured for this fetch alone from now on */
    SET(CURLOPT_URL, next);
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    SET(CURLOPT_MAXREDIRS, (long)(x->max_redirects - x->redirects - legs - 1));
    if (x->timeout_ms) SET(CURLOPT_TIMEOUT_MS, (long)left_ms);
    if (other_origin) {
        SET(CURLOPT_USERNAME, (char *)NULL);
        SET(CURLOPT_PASSWORD, (char *)NULL);
    }
    x->redirects += legs + 1;
    x->producer = NULL;
    x->stop_at_303 = x->status_303 = x->see_other = false;
    x->head.len = x->body.len = 0;
    rc = 0;
    goto out;
bad:
    rc = setrc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
out:
    free(loc);
    free(from);
    free(to);
    curl_free(scheme);
    curl_free(next);
    curl_url_cleanup(u);
    return rc;
}

/* --- errors ----------------------------------------------------------------------------------- */

static int os_error(sq__xfer *x, int fallback)
{
    long oe = 0;
    curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oe);
    return oe > 0 && oe < 4096 ? -(int)oe : fallback;
}

static bool connected(sq__xfer *x)
{
    char *ip = NULL;
    return curl_easy_getinfo(x->easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip;
}

int sq__xfer_error(sq__xfer *x, CURLcode rc)
{
    if (x->abort_err) return x->abort_err;
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return SQ_ERESOLVE;
    case CURLE_COULDNT_CONNECT:
        return os_error(x, -ECONNREFUSED);
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return SQ_ETLS;
    case CURLE_TOO_MANY_REDIRECTS:
        return SQ_EREDIRECTS;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return SQ_ECLOSED;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        return os_error(x, -ECONNRESET);
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Also libcurl's answer to a reply that is not HTTP (taken for HTTP/0.9): once
         * connected it is the server's fault, not the URL's. */
        if (connected(x)) return -EPROTO;
        return -EINVAL;
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return -EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_FILESIZE_EXCEEDED:
        return -E2BIG;
    case CURLE_SEND_FAIL_REWIND: /* a streamed body to send again, and no body_rewind */
        return -ESPIPE;
    case CURLE_WEIRD_SERVER_REPLY: /* not HTTP, or a malformed status line or header */
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP3:
        return -EPROTO;
    case CURLE_HTTP2_STREAM: /* the server reset our stream */
        return -ECONNRESET;
    default:
        sq_log(SQ_LOG_DEBUG, "fetch %s: libcurl error %d: %s (%s)", x->url, (int)rc,
               curl_easy_strerror(rc), x->errbuf);
        return SQ_ECURL;
    }
}

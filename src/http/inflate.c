/* decompress_request: gzip request bodies inflated before the handler sees them (Tornado's
 * HTTPServer(decompress_request=True)).
 *
 * The whole-body read inflates into a buffer bounded by max_body_size: a gzip bomb (a few
 * KB that inflate to gigabytes) is stopped with 413 as soon as its output passes the limit,
 * so memory never exceeds what an uncompressed body could take.  The streaming read hands
 * the inflated body out in pieces of at most SQ__INFLATE_PIECE bytes, however much one
 * compressed piece expands to.  After inflating, the request's Content-Encoding header is
 * renamed X-Consumed-Content-Encoding and content_length is the inflated length, as
 * Tornado does, so that nothing downstream inflates it twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "http/http_internal.h"

#define SQ__INFLATE_PIECE (64u << 10)

struct sq__inflate {
    z_stream z;
    sq__buf out;      /* the whole inflated body, or the current streamed piece */
    const char *in;   /* streaming: compressed bytes of the last raw piece not yet inflated */
    size_t in_len;
    bool member_end;  /* the last gzip member ended (a new one may follow) */
    bool whole;       /* out holds the whole inflated body */
};

static bool is_gzip(sq_str v)
{
    return (v.len == 4 && !strncasecmp(v.ptr, "gzip", 4)) ||
           (v.len == 6 && !strncasecmp(v.ptr, "x-gzip", 6));
}

bool sq__inflate_wanted(sq__http_req *r)
{
    if (r->inflate) return true;
    sq_http_server *srv = r->pub.server;
    if (!srv || !srv->s.decompress_request || !r->has_body) return false;
    return is_gzip(sq_http_header_get(&r->pub, "Content-Encoding"));
}

void sq__inflate_release(sq__http_req *r)
{
    if (!r->inflate) return;
    inflateEnd(&r->inflate->z);
    sq__buf_free(&r->inflate->out);
    free(r->inflate);
    r->inflate = NULL;
}

static struct sq__inflate *start(sq__http_req *r)
{
    if (r->inflate) return r->inflate;
    struct sq__inflate *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (inflateInit2(&st->z, 15 + 16) != Z_OK) { /* gzip wrapper only */
        free(st);
        return NULL;
    }
    r->inflate = st;
    return st;
}

/* The body is no longer gzip: say so the way Tornado does. */
static void consumed(sq__http_req *r)
{
    for (size_t i = 0; i < r->pub.nheaders; i++) {
        sq_http_header *h = &r->headers[i];
        if (h->name_len == 16 && !strncasecmp(h->name, "Content-Encoding", 16)) {
            h->name = "X-Consumed-Content-Encoding";
            h->name_len = strlen(h->name);
        }
    }
}

/* Answer 413 (too large) or 400 (not valid gzip) unless the response has started. */
static ssize_t reject(sq__http_req *r, int err, const char *why)
{
    int code = err == -E2BIG ? 413 : 400;
    if (!(r->rflags & (RESP_HEAD_SENT | RESP_FINISHED))) {
        sq__http_resp_reset(r);
        r->status = code;
        sq_http_set_header(&r->pub, "Content-Type", "text/plain; charset=UTF-8");
        char msg[128];
        int n = snprintf(msg, sizeof msg, "%d %s: %s\n", code, sq_http_reason(code), why);
        sq_http_write(&r->pub, msg, (size_t)n);
    }
    sq_http_finish(&r->pub);
    return err;
}

/* Inflate st->z's input into st->out (from st->out.len) up to `limit` bytes of output in
 * all.  0: input used up (or the output reached limit, when `stop_at_limit`), -E2BIG past
 * the limit, -EINVAL for bytes that are not gzip. */
static int run(struct sq__inflate *st, size_t limit, bool stop_at_limit)
{
    while (st->z.avail_in) {
        if (st->member_end) { /* concatenated members (RFC 1952 2.2) */
            if (inflateReset(&st->z) != Z_OK) return -EINVAL;
            st->member_end = false;
        }
        if (stop_at_limit && st->out.len >= limit) return 0;
        size_t want = st->out.cap - st->out.len;
        if (!want) {
            size_t grow = st->out.cap ? st->out.cap : 16384;
            if (grow > limit + 1 - st->out.len) grow = limit + 1 - st->out.len;
            if (sq__buf_reserve(&st->out, grow) < 0) return -ENOMEM;
            want = st->out.cap - st->out.len;
        }
        if (want > limit + 1 - st->out.len) want = limit + 1 - st->out.len;
        if (want > UINT32_MAX) want = UINT32_MAX;
        st->z.next_out = (Bytef *)st->out.ptr + st->out.len;
        st->z.avail_out = (uInt)want;
        int zr = inflate(&st->z, Z_NO_FLUSH);
        st->out.len += want - st->z.avail_out;
        if (zr == Z_STREAM_END)
            st->member_end = true;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
        if (st->out.len > limit) return stop_at_limit ? 0 : -E2BIG;
    }
    return 0;
}

ssize_t sq__inflate_whole(sq__http_req *r, const char *raw, ssize_t len, const char **data)
{
    if (len < 0) return len;
    struct sq__inflate *st = r->inflate;
    if (st && st->whole) {
        *data = st->out.ptr ? st->out.ptr : "";
        return (ssize_t)st->out.len;
    }
    st = start(r);
    if (!st) return reject(r, -ENOMEM, "out of memory");
    /* (a server freed while the handler waited for the body: the default limit) */
    size_t max = r->pub.server ? r->pub.server->s.max_body_size : SQ_HTTP_DEFAULT_MAX_BODY_SIZE;
    st->z.next_in = (Bytef *)raw;
    st->z.avail_in = (uInt)len; /* max_body_size is below 4 GiB: the raw body fits */
    int e = (size_t)len > UINT32_MAX ? -E2BIG : run(st, max, false);
    if (e == 0 && !st->member_end) e = -EINVAL; /* the body stopped inside a member */
    if (e < 0) {
        char why[96];
        if (e == -E2BIG)
            snprintf(why, sizeof why, "the body inflates past %zu bytes", max);
        else
            snprintf(why, sizeof why, "the body is not valid gzip (%s)",
                     st->z.msg ? st->z.msg : "truncated");
        sq__inflate_free(r);
        return reject(r, e, why);
    }
    inflateEnd(&st->z); /* the window goes now; a second inflateEnd is harmless */
    st->whole = true;
    consumed(r);
    r->pub.content_length = (int64_t)st->out.len;
    *data = st->out.ptr ? st->out.ptr : "";
    return (ssize_t)st->out.len;
}

ssize_t sq__inflate_chunk(sq__http_req *r, ssize_t (*raw_chunk)(sq__http_req *, const char **),
                          const char **data)
{
    struct sq__inflate *st = start(r);
    *data = "";
    if (!st) return reject(r, -ENOMEM, "out of memory");
    if (!st->out.cap) consumed(r); /* the first piece */
    for (;;) {
        if (st->in_len) {
            st->out.len = 0;
            st->z.next_in = (Bytef *)st->in;
            st->z.avail_in = (uInt)st->in_len;
            int e = run(st, SQ__INFLATE_PIECE, true);
            size_t used = st->in_len - st->z.avail_in;
            st->in += used;
            st->in_len -= used;
            if (e < 0) {
                st->in_len = 0;
                return reject(r, e, e == -ENOMEM ? "out of memory" : "the body is not valid gzip");
            }
            if (st->out.len) {
                *data = st->out.ptr;
                return (ssize_t)st->out.len;
            }
            continue; /* a header or an empty member: no output yet */
        }
        const char *in;
        ssize_t n = raw_chunk(r, &in);
        if (n < 0) return n;
        if (n == 0) {
            if (!st->member_end)
                return reject(r, -EINVAL, "the body is not valid gzip (truncated)");
            return 0;
        }
        st->in = in;
        st->in_len = (size_t)n;
    }
}

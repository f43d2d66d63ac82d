/* permessage-deflate (RFC 7692): parsing and negotiating Sec-WebSocket-Extensions, and the
 * compressor for our messages (raw deflate, Z_SYNC_FLUSH, the 00 00 ff ff tail stripped).
 * The inflating side lives in frame.c, inside the message assembler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "ws/ws_internal.h"

/* --- the header grammar: 1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) ) ------- */

#define MAX_PARAMS 8
#define MAX_VALUE  16

typedef struct ext_param {
    const char *name;
    size_t name_len;
    char value[MAX_VALUE]; /* unquoted, NUL-terminated */
    bool has_value;
} ext_param;

typedef struct ext_elem {
    const char *name;
    size_t name_len;
    ext_param params[MAX_PARAMS];
    size_t nparams;
} ext_elem;

static bool is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(const char *s, size_t len, size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\t')) (*i)++;
}

static size_t token(const char *s, size_t len, size_t *i)
{
    size_t st = *i;
    while (*i < len && is_tchar((unsigned char)s[*i])) (*i)++;
    return *i - st;
}

/* Parse the next element from s[*i]: 1 with *e, 0 at the end, -1 on a syntax error.
 * Empty list elements (", ,") are skipped. */
static int next_elem(const char *s, size_t len, size_t *i, ext_elem *e)
{
    for (;;) {
        skip_ows(s, len, i);
        if (*i < len && s[*i] == ',') {
            (*i)++;
            continue;
        }
        break;
    }
    if (*i >= len) return 0;
    e->name = s + *i;
    e->name_len = token(s, len, i);
    if (!e->name_len) return -1;
    e->nparams = 0;
    for (;;) {
        skip_ows(s, len, i);
        if (*i >= len || s[*i] == ',') break;
        if (s[*i] != ';') return -1;
        (*i)++;
        skip_ows(s, len, i);
        if (e->nparams == MAX_PARAMS) return -1;
        ext_param *p = &e->params[e->nparams++];
        p->name = s + *i;
        p->name_len = token(s, len, i);
        p->has_value = false;
        p->value[0] = 0;
        if (!p->name_len) return -1;
        skip_ows(s, len, i);
        if (*i < len && s[*i] == '=') {
            (*i)++;
            skip_ows(s, len, i);
            p->has_value = true;
            size_t n = 0;
            if (*i < len && s[*i] == '"') {
                (*i)++;
                for (;;) {
                    if (*i >= len) return -1;
                    char c = s[(*i)++];
                    if (c == '"') break;
                    if (c == '\\') {
                        if (*i >= len) return -1;
                        c = s[(*i)++];
                    }
                    if (n + 1 >= MAX_VALUE) return -1;
                    p->value[n++] = c;
                }
                /* RFC 6455 9.1: a quoted value must still be a token */
                for (size_t k = 0; k < n; k++)
                    if (!is_tchar((unsigned char)p->value[k])) return -1;
            } else {
                size_t st = *i;
                n = token(s, len, i);
                if (n + 1 >= MAX_VALUE) return -1;
                memcpy(p->value, s + st, n);
            }
            if (!n) return -1;
            p->value[n] = 0;
        }
    }
    return 1;
}

static bool is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && !strncasecmp(s, lit, n);
}

/* A window-bits value: 8-15 written as plain digits (no sign, no leading zero). */
static int bits_value(const ext_param *p)
{
    const char *v = p->value;
    if (!p->has_value) return -1;
    if (v[0] == '8' || v[0] == '9') return v[1] ? -1 : v[0] - '0';
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && !v[2]) return 10 + v[1] - '0';
    return -1;
}

enum { P_SNC = 1, P_CNC = 2, P_SMWB = 4, P_CMWB = 8 };

/* Check the parameters of one permessage-deflate element.  `offer`: a client's offer (where
 * client_max_window_bits may come without a value).  0 or -1. */
static int read_params(const ext_elem *e, bool offer, sq__ws_pmd *out, unsigned *seen)
{
    *out = (sq__ws_pmd){.server_bits = 15, .client_bits = 15};
    *seen = 0;
    for (size_t k = 0; k < e->nparams; k++) {
        const ext_param *p = &e->params[k];
        unsigned flag;
        if (is(p->name, p->name_len, "server_no_context_takeover")) {
            flag = P_SNC;
            if (p->has_value) return -1;
            out->server_no_ctx = true;
        } else if (is(p->name, p->name_len, "client_no_context_takeover")) {
            flag = P_CNC;
            if (p->has_value) return -1;
            out->client_no_ctx = true;
        } else if (is(p->name, p->name_len, "server_max_window_bits")) {
            flag = P_SMWB;
            int b = bits_value(p);
            if (b < 0) return -1;
            out->server_bits = (uint8_t)b;
        } else if (is(p->name, p->name_len, "client_max_window_bits")) {
            flag = P_CMWB;
            if (p->has_value) {
                int b = bits_value(p);
                if (b < 0) return -1;
                out->client_bits = (uint8_t)b;
            } else if (!offer) {
                return -1;
            }
        } else {
            return -1; /* unknown parameter */
        }
        if (*seen & flag) return -1; /* duplicate */
        *seen |= flag;
    }
    return 0;
}

int sq__ws_pmd_accept(const char *hdr, size_t len, const sq_ws_settings *s, sq__ws_pmd *out,
                      char *resp, size_t resplen)
{
    size_t i = 0;
    ext_elem e;
    int r;
    while ((r = next_elem(hdr, len, &i, &e)) == 1) {
        if (!is(e.name, e.name_len, "permessage-deflate")) continue;
        sq__ws_pmd p;
        unsigned seen;
        if (read_params(&e, true, &p, &seen) < 0) continue; /* try the next offer */
        int mine =
            s && s->max_window_bits >= 8 && s->max_window_bits < 15 ? s->max_window_bits : 15;
        /* zlib has no 8-bit raw window: 9 (still 8, uncompressed, when the client asks) */
        if (mine == 8) mine = 9;
        if (mine < p.server_bits) p.server_bits = (uint8_t)mine;
        if (s && s->no_context_takeover) p.server_no_ctx = true;
        int n = snprintf(resp, resplen, "permessage-deflate%s%s",
                         p.server_no_ctx ? "; server_no_context_takeover" : "",
                         p.client_no_ctx ? "; client_no_context_takeover" : "");
        if (n < 0 || (size_t)n >= resplen) return -EINVAL;
        if (seen & P_SMWB) {
            int m = snprintf(resp + n, resplen - (size_t)n, "; server_max_window_bits=%d",
                             p.server_bits);
            if (m < 0 || (size_t)m >= resplen - (size_t)n) return -EINVAL;
        }
        *out = p;
        return 1;
    }
    return 0; /* no acceptable offer, or a malformed header: no compression */
}

int sq__ws_pmd_response(const char *hdr, size_t len, sq__ws_pmd *out)
{
    size_t i = 0;
    ext_elem e;
    int r, found = 0;
    while ((r = next_elem(hdr, len, &i, &e)) == 1) {
        /* only what we offered, once */
        if (found || !is(e.name, e.name_len, "permessage-deflate")) return -EPROTO;
        unsigned seen;
        if (read_params(&e, false, out, &seen) < 0) return -EPROTO;
        found = 1;
    }
    if (r < 0 || !found) return -EPROTO;
    return 0;
}

size_t sq__ws_pmd_offer(const sq_ws_settings *s, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "permessage-deflate; client_max_window_bits%s",
                     s && s->no_context_takeover ? "; client_no_context_takeover" : "");
    return n < 0 ? 0 : (size_t)n >= buflen ? buflen - 1 : (size_t)n;
}

/* --- the compressor -----------------------------------------------------------------------------
 */

void sq__ws_tx_free(sq__ws_tx *tx)
{
    if (!tx->z) return;
    deflateEnd(tx->z);
    free(tx->z);
    tx->z = NULL;
}

int sq__ws_tx_compress(sq__ws_tx *tx, const void *data, size_t len, sq__buf *out)
{
    if (len == 0) {
        /* an empty stored block (RFC 7692 7.2.3.6); zlib would emit nothing for a second
         * sync flush in a row, and the peer's tail would then open a block */
        if (tx->no_ctx) sq__ws_tx_free(tx);
        return sq__buf_append(out, "\x00", 1);
    }
    if (!tx->z) {
        z_stream *z = calloc(1, sizeof *z);
        if (!z) return -ENOMEM;
        int level = tx->level >= 1 && tx->level <= 9 ? tx->level : 6;
        int bits = tx->bits < 9 ? 9 : tx->bits > 15 ? 15 : tx->bits;
        if (deflateInit2(z, level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return -ENOMEM;
        }
        tx->z = z;
    }
    z_stream *z = tx->z;
    size_t start = out->len;
    z->next_in = (Bytef *)data;
    int rc = 0;
    size_t left = len;
    for (;;) {
        uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        z->next_in = (Bytef *)data + (len - left);
        z->avail_in = chunk;
        left -= chunk;
        int flush = left ? Z_NO_FLUSH : Z_SYNC_FLUSH;
        do {
            size_t want = deflateBound(z, z->avail_in) + 16;
            if (sq__buf_reserve(out, want) < 0) {
                rc = -ENOMEM;
                goto done;
            }
            size_t room = out->cap - out->len;
            if (room > (1u << 30)) room = 1u << 30;
            z->next_out = (Bytef *)out->ptr + out->len;
            z->avail_out = (uInt)room;
            int r = deflate(z, flush);
            out->len += room - z->avail_out;
            if (r != Z_OK && r != Z_BUF_ERROR) {
                rc = -EIO;
                goto done;
            }
        } while (z->avail_out == 0 || z->avail_in > 0);
        if (!left) break;
    }
    if (out->len - start >= 4 && !memcmp(out->ptr + out->len - 4, "\x00\x00\xff\xff", 4))
        out->len -= 4;
done:
    if (tx->no_ctx || rc < 0) sq__ws_tx_free(tx);
    return rc;
}

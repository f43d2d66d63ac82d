/* The chunked transfer coding, decoded in place (RFC 9112 §7.1).
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *
 * A byte-at-a-time state machine for the framing, memmove for the data, so any split of the
 * input gives the same output.  Bare LF is accepted at the end of the size line and of trailer
 * lines (as RFC 9112 §2.2 allows for lines), but the data must be followed by exactly CRLF:
 * with "5\r\nhell\r\n" a lenient reader would take "hell\r" as the data, and two parsers that
 * disagree about where a chunk ends are a request-smuggling vector.  The
 * size line is limited (extensions are skipped, not stored) and so is the trailer section;
 * trailer fields are checked with the same rules as header fields, then dropped.
 */
#include <string.h>

#include "squall/http_parser.h"

#define MAX_SIZE_DIGITS   16           /* 2^64 - 1; more is an overflow */
#define MAX_SIZE_LINE     4096         /* size line, extensions and CRLF included */
#define MAX_TRAILER_BYTES (64u * 1024) /* like the default header limit */

enum {
    ST_SIZE,     /* hex digits */
    ST_SIZE_WS,  /* BWS after the size: only ";" may follow */
    ST_EXT,      /* chunk extensions, skipped up to the end of the line */
    ST_SIZE_LF,  /* CR seen at the end of the size line */
    ST_DATA,     /* `remaining` bytes of chunk-data */
    ST_DATA_CR,  /* the CRLF after the data (strict) */
    ST_DATA_LF,  /* CR seen after the data */
    ST_TRAILER,  /* at the start of a trailer line (or of the final empty line) */
    ST_TR_NAME,  /* in a field name */
    ST_TR_VALUE, /* in a field value */
    ST_TR_LF,    /* CR seen at the end of a trailer line */
    ST_END_LF,   /* CR seen on the final empty line */
    ST_DONE,     /* everything after the body belongs to the next message */
    ST_ERROR,
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool is_tchar(uint8_t c)
{
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    if (c >= '0' && c <= '9') return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB (also what chunk extensions may contain) */
static bool is_value_char(uint8_t c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

void sq_http_chunked_init(sq_http_chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = ST_SIZE;
}

ssize_t sq_http_chunked_decode(sq_http_chunked *d, char *buf, size_t *len)
{
    size_t n = *len, r = 0, w = 0;
    unsigned st = d->state;

    if (st == ST_ERROR) goto fail;
    while (r < n && st != ST_DONE) {
        if (st == ST_DATA) {
            size_t k = n - r;
            if (k > d->remaining) k = (size_t)d->remaining;
            if (w != r) memmove(buf + w, buf + r, k);
            w += k;
            r += k;
            d->remaining -= k;
            if (d->remaining == 0) st = ST_DATA_CR;
            continue;
        }
        uint8_t c = (uint8_t)buf[r++];
        if (st <= ST_SIZE_LF && ++d->line_bytes > MAX_SIZE_LINE) goto fail;
        if (st >= ST_TRAILER && ++d->trailer_bytes > MAX_TRAILER_BYTES) goto fail;
        switch (st) {
        case ST_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (d->line_bytes > MAX_SIZE_DIGITS) goto fail;
                d->remaining = d->remaining << 4 | (unsigned)v;
                break;
            }
            if (d->line_bytes == 1) goto fail; /* no digit at all */
            if (c == ';')
                st = ST_EXT;
            else if (c == ' ' || c == '\t')
                st = ST_SIZE_WS;
            else if (c == '\r')
                st = ST_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else
                goto fail;
            break;
        }
        case ST_SIZE_WS:
            if (c == ';')
                st = ST_EXT;
            else if (c != ' ' && c != '\t')
                goto fail;
            break;
        case ST_EXT:
            if (c == '\r')
                st = ST_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else if (!is_value_char(c))
                goto fail;
            break;
        case ST_SIZE_LF:
            if (c != '\n') goto fail;
        size_line_done:
            d->line_bytes = 0;
            st = d->remaining ? ST_DATA : ST_TRAILER;
            break;
        case ST_DATA_CR:
            if (c != '\r') goto fail;
            st = ST_DATA_LF;
            break;
        case ST_DATA_LF:
            if (c != '\n') goto fail;
            st = ST_SIZE;
            break;
        case ST_TRAILER:
            if (c == '\r')
                st = ST_END_LF;
            else if (c == '\n')
                st = ST_DONE;
            else if (is_tchar(c))
                st = ST_TR_NAME; /* a leading SP/HTAB would be obs-fold: rejected */
            else
                goto fail;
            break;
        case ST_TR_NAME:
            if (c == ':')
                st = ST_TR_VALUE;
            else if (!is_tchar(c))
                goto fail;
            break;
        case ST_TR_VALUE:
            if (c == '\r')
                st = ST_TR_LF;
            else if (c == '\n')
                st = ST_TRAILER;
            else if (!is_value_char(c))
                goto fail;
            break;
        case ST_TR_LF:
            if (c != '\n') goto fail;
            st = ST_TRAILER;
            break;
        case ST_END_LF:
            if (c != '\n') goto fail;
            st = ST_DONE;
            break;
        default:
            goto fail;
        }
    }
    d->state = st;
    if (st != ST_DONE) {
        *len = w;
        return -2;
    }
    /* The bytes after the body move right behind it. */
    if (w != r) memmove(buf + w, buf + r, n - r);
    *len = w;
    return (ssize_t)(n - r);

fail:
    d->state = ST_ERROR;
    *len = w;
    return -1;
}

/* RFC 6455 frames: the incremental parser and message assembler (unmasking, fragments,
 * control frames, limits, permessage-deflate inflation with a bound on the inflated size,
 * UTF-8 validation across fragments), the frame encoder and the UTF-8 validator.
 *
 * The parser takes bytes as they come, in pieces of any size: the header is collected in
 * rx->hdr, payload bytes go straight into the message buffer (or through inflate into it),
 * so nothing of a frame is buffered twice and a declared length is never allocated before
 * its bytes arrive. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "ws/ws_internal.h"

/* --- UTF-8 ---------------------------------------------------------------------------------- */

/* state: 0 between characters; else (need << 16) | (lo << 8) | hi: continuation bytes still
 * needed and the range allowed for the next one (which excludes overlongs, surrogates and
 * code points above U+10FFFF). */
uint32_t sq__utf8_step(uint32_t state, const uint8_t *p, size_t n)
{
    if (state == SQ__UTF8_BAD) return state;
    size_t i = 0;
    while (i < n) {
        if (state == 0) {
            /* ASCII fast path, 8 bytes at a time */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i >= n) break;
            uint8_t b = p[i++];
            if (b < 0x80) continue;
            if (b >= 0xc2 && b <= 0xdf)
                state = (1u << 16) | (0x80u << 8) | 0xbfu;
            else if (b == 0xe0)
                state = (2u << 16) | (0xa0u << 8) | 0xbfu;
            else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
                state = (2u << 16) | (0x80u << 8) | 0xbfu;
            else if (b == 0xed)
                state = (2u << 16) | (0x80u << 8) | 0x9fu;
            else if (b == 0xf0)
                state = (3u << 16) | (0x90u << 8) | 0xbfu;
            else if (b >= 0xf1 && b <= 0xf3)
                state = (3u << 16) | (0x80u << 8) | 0xbfu;
            else if (b == 0xf4)
                state = (3u << 16) | (0x80u << 8) | 0x8fu;
            else
                return SQ__UTF8_BAD;
            continue;
        }
        uint8_t b = p[i++];
        uint32_t lo = (state >> 8) & 0xff, hi = state & 0xff, need = state >> 16;
        if (b < lo || b > hi) return SQ__UTF8_BAD;
        need--;
        state = need ? (need << 16) | (0x80u << 8) | 0xbfu : 0;
    }
    return state;
}

bool sq__utf8_valid(const void *p, size_t n)
{
    return sq__utf8_step(0, p, n) == SQ__UTF8_OK;
}

/* --- masking ---------------------------------------------------------------------------------- */

/* dst = src XOR the mask, starting at its byte 0 (dst may be src: unmasking in place); eight
 * bytes a step with the mask twice over. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4])
{
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = (uint64_t)m32 << 32 | m32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ mask[i & 3];
}

/* --- encoder ---------------------------------------------------------------------------------- */

int sq__ws_encode(sq__buf *out, unsigned opcode, bool fin, bool rsv1, const void *data, size_t len,
                  const uint8_t *mask)
{
    if (sq__buf_reserve(out, len + 14) < 0) return -ENOMEM;
    uint8_t *p = (uint8_t *)out->ptr + out->len;
    *p++ = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        *p++ = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        *p++ = m | 126;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    } else {
        *p++ = m | 127;
        for (int i = 7; i >= 0; i--) *p++ = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(p, mask, 4);
        p += 4;
        mask_copy(p, data, len, mask);
    } else if (len) {
        memcpy(p, data, len);
    }
    p += len;
    out->len = (size_t)((char *)p - out->ptr);
    return 0;
}

bool sq__ws_close_code_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003) return true;
    if (code >= 1007 && code <= 1014) return true; /* 1012-1014: registered with IANA */
    return code >= 3000 && code <= 4999;
}

/* --- parser --------------------------------------------------------------------------------------
 */

void sq__ws_rx_init(sq__ws_rx *rx, bool client, size_t max)
{
    memset(rx, 0, sizeof *rx);
    rx->client = client;
    rx->max = max ? max : SQ_WS_DEFAULT_MAX_MESSAGE_SIZE;
    /* "no limit" (SIZE_MAX): keep max + 1 and the compressed-size bound from wrapping */
    if (rx->max > SIZE_MAX / 4) rx->max = SIZE_MAX / 4;
    rx->inflate_bits = 15;
}

static void inflate_drop(sq__ws_rx *rx)
{
    if (!rx->z) return;
    inflateEnd(rx->z);
    free(rx->z);
    rx->z = NULL;
}

void sq__ws_rx_msg_done(sq__ws_rx *rx)
{
    sq__ws_pool_give(rx->pool, &rx->msg);
}

void sq__ws_rx_free(sq__ws_rx *rx)
{
    sq__ws_pool_give(rx->pool, &rx->msg);
    inflate_drop(rx);
}

static int fail(sq__ws_rx *rx, unsigned code)
{
    rx->error = (uint16_t)code;
    return SQ__WS_EV_ERROR;
}

/* Room in the message buffer for at least `want` more bytes, never past max + 1. */
static int msg_room(sq__ws_rx *rx, size_t want)
{
    sq__buf *b = &rx->msg;
    if (b->cap - b->len >= want) return 0;
    if (!b->ptr && want <= SQ__WS_POOL_BUF && rx->max + 1 >= SQ__WS_POOL_BUF &&
        sq__ws_pool_take(rx->pool, b))
        return 0;
    size_t cap = b->cap ? b->cap * 2 : SQ__WS_POOL_BUF;
    while (cap - b->len < want) cap *= 2;
    if (cap > rx->max + 1) cap = rx->max + 1;
    if (cap < b->len + want) cap = b->len + want;
    char *p = realloc(b->ptr, cap);
    if (!p) return -ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

/* Validate the UTF-8 of the bytes appended at [from, msg.len) of a text message. */
static bool text_ok(sq__ws_rx *rx, size_t from)
{
    if (rx->msg_binary) return true;
    rx->utf8 = sq__utf8_step(rx->utf8, (const uint8_t *)rx->msg.ptr + from, rx->msg.len - from);
    return rx->utf8 != SQ__UTF8_BAD;
}

/* The peer ended its deflate stream (BFINAL, allowed by RFC 7692 7.2.3.3): start a new one.
 * With context takeover the next data may still refer to what came before (the receiver
 * keeps its LZ77 window, 7.2.2), so the window is carried over into the new stream; zlib's
 * reset alone would forget it.  0 or -ENOMEM. */
static int stream_restart(sq__ws_rx *rx)
{
    z_stream *z = rx->z;
    if (rx->inflate_no_ctx) return inflateReset(z) == Z_OK ? 0 : -ENOMEM;
    uInt n = 0;
    Bytef *win = malloc(1u << 15); /* rare: not on the (maybe coroutine) stack */
    if (!win) return -ENOMEM;
    int r = inflateGetDictionary(z, win, &n);
    if (r == Z_OK) r = inflateReset(z);
    if (r == Z_OK && n) r = inflateSetDictionary(z, win, n);
    free(win);
    return r == Z_OK ? 0 : -ENOMEM;
}

/* Inflate `len` bytes into the message; the output never grows past max + 1 before the
 * size check, so a bomb costs at most max_message_size.  0 or a close code. */
static unsigned inflate_in(sq__ws_rx *rx, const uint8_t *data, size_t len, bool tail)
{
    if (!rx->z) {
        z_stream *z = calloc(1, sizeof *z);
        if (!z) return SQ_WS_CLOSE_INTERNAL_ERROR;
        /* Always the largest window: a peer that promised a smaller one cannot break us
         * (zlib compressors asked for 8 bits use 9), and zlib only catches distances past a
         * small window when they fall outside the current output buffer, which would make
         * the outcome depend on how the input was split. */
        if (inflateInit2(z, -15) != Z_OK) {
            free(z);
            return SQ_WS_CLOSE_INTERNAL_ERROR;
        }
        rx->z = z;
    }
    /* The message's data ended its stream on the last byte: the RFC wants a 0x00 after the
     * final block, which the tail completes into an empty stored block, but zlib's Z_FINISH
     * alone leaves it out; then the tail would be garbage at the start of the new stream. */
    bool ended = rx->inflate_ended;
    rx->inflate_ended = false;
    if (tail && ended) return 0;
    z_stream *z = rx->z;
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    for (;;) {
        if (rx->msg.len > rx->max) return SQ_WS_CLOSE_TOO_BIG;
        if (msg_room(rx, 4096 < rx->max + 1 - rx->msg.len ? 4096 : rx->max + 1 - rx->msg.len) < 0)
            return SQ_WS_CLOSE_INTERNAL_ERROR;
        size_t room = rx->msg.cap - rx->msg.len;
        if (room > rx->max + 1 - rx->msg.len) room = rx->max + 1 - rx->msg.len;
        if (room > (1u << 30)) room = 1u << 30;
        size_t from = rx->msg.len;
        z->next_out = (Bytef *)rx->msg.ptr + rx->msg.len;
        z->avail_out = (uInt)room;
        int r = inflate(z, Z_SYNC_FLUSH);
        rx->msg.len += room - z->avail_out;
        /* UTF-8 first: then the outcome does not depend on how the input was split */
        if (!text_ok(rx, from)) return SQ_WS_CLOSE_INVALID_DATA;
        if (rx->msg.len > rx->max) return SQ_WS_CLOSE_TOO_BIG;
        if (r == Z_STREAM_END) {
            /* a final block: what follows starts a new stream (the tail is dropped) */
            if (stream_restart(rx) < 0) return SQ_WS_CLOSE_INTERNAL_ERROR;
            rx->inflate_ended = z->avail_in == 0;
            if (tail || z->avail_in == 0) return 0;
            continue;
        }
        if (r == Z_BUF_ERROR || r == Z_OK) {
            if (z->avail_in == 0 && z->avail_out > 0) return 0;
            if (r == Z_BUF_ERROR && z->avail_out > 0) return 0;
            continue;
        }
        if (r == Z_MEM_ERROR) return SQ_WS_CLOSE_INTERNAL_ERROR;
        return SQ_WS_CLOSE_INVALID_DATA; /* Z_DATA_ERROR: corrupt compressed data */
    }
}

/* The header is complete: validate it.  0 or a close code. */
static unsigned header_done(sq__ws_rx *rx)
{
    const uint8_t *h = rx->hdr;
    uint64_t len = h[1] & 0x7f;
    size_t off = 2;
    if (len == 126) {
        len = ((uint64_t)h[2] << 8) | h[3];
        off = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
        off = 10;
        if (len >> 63) return SQ_WS_CLOSE_PROTOCOL_ERROR;
    }
    if (rx->masked) memcpy(rx->mask, h + off, 4);
    rx->mpos = 0;
    rx->left = len;
    if (rx->opcode >= 8) {
        rx->clen = 0;
        return 0;
    }
    if (rx->opcode != SQ__WS_OP_CONT) {
        rx->msg_op = rx->opcode;
        rx->msg_compressed = rx->rsv1;
        rx->msg_binary = rx->opcode == SQ__WS_OP_BINARY;
        rx->utf8 = 0;
        rx->zin = 0;
        rx->msg.len = 0;
    }
    if (rx->msg_compressed) {
        rx->zin += len;
        if (rx->zin > rx->max + rx->max / 8 + 4096) return SQ_WS_CLOSE_TOO_BIG;
    } else if (len > rx->max - rx->msg.len) {
        return SQ_WS_CLOSE_TOO_BIG; /* declared lengths are checked before any byte */
    }
    return 0;
}

/* The first two bytes: everything that can be checked before the length. */
static unsigned header_start(sq__ws_rx *rx)
{
    uint8_t b0 = rx->hdr[0], b1 = rx->hdr[1];
    rx->fin = b0 >> 7;
    rx->rsv1 = (b0 >> 6) & 1;
    rx->opcode = b0 & 0x0f;
    rx->masked = b1 >> 7;
    unsigned len7 = b1 & 0x7f;
    if (b0 & 0x30) return SQ_WS_CLOSE_PROTOCOL_ERROR; /* RSV2, RSV3: no extension uses them */
    if (rx->masked == rx->client) return SQ_WS_CLOSE_PROTOCOL_ERROR;
    switch (rx->opcode) {
    case SQ__WS_OP_CONT:
        if (!rx->msg_op || rx->rsv1) return SQ_WS_CLOSE_PROTOCOL_ERROR;
        break;
    case SQ__WS_OP_TEXT:
    case SQ__WS_OP_BINARY:
        if (rx->msg_op) return SQ_WS_CLOSE_PROTOCOL_ERROR; /* a new message inside one */
        if (rx->rsv1 && !rx->deflate) return SQ_WS_CLOSE_PROTOCOL_ERROR;
        break;
    case SQ__WS_OP_CLOSE:
    case SQ__WS_OP_PING:
    case SQ__WS_OP_PONG:
        if (rx->rsv1 || !rx->fin || len7 > 125) return SQ_WS_CLOSE_PROTOCOL_ERROR;
        break;
    default:
        return SQ_WS_CLOSE_PROTOCOL_ERROR;
    }
    rx->hneed = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (rx->masked ? 4 : 0));
    return 0;
}

static void unmask(sq__ws_rx *rx, uint8_t *p, size_t n)
{
    if (!rx->masked) return;
    size_t i = 0;
    uint8_t pos = rx->mpos;
    while (i < n && (pos & 3)) p[i++] ^= rx->mask[pos++ & 3];
    if (i < n) { /* the mask is at its byte 0 now */
        mask_copy(p + i, p + i, n - i, rx->mask);
        pos = (uint8_t)(n - i);
    }
    rx->mpos = pos & 3;
}

/* A whole control frame is in rx->ctrl. */
static int control_done(sq__ws_rx *rx)
{
    switch (rx->opcode) {
    case SQ__WS_OP_PING:
        return SQ__WS_EV_PING;
    case SQ__WS_OP_PONG:
        return SQ__WS_EV_PONG;
    default:
        break;
    }
    if (rx->clen == 0) {
        rx->close_code = SQ_WS_CLOSE_NO_STATUS;
        return SQ__WS_EV_CLOSE;
    }
    if (rx->clen == 1) return fail(rx, SQ_WS_CLOSE_PROTOCOL_ERROR);
    unsigned code = ((unsigned)rx->ctrl[0] << 8) | rx->ctrl[1];
    if (!sq__ws_close_code_valid(code)) return fail(rx, SQ_WS_CLOSE_PROTOCOL_ERROR);
    if (!sq__utf8_valid(rx->ctrl + 2, rx->clen - 2u)) return fail(rx, SQ_WS_CLOSE_PROTOCOL_ERROR);
    rx->close_code = (uint16_t)code;
    return SQ__WS_EV_CLOSE;
}

/* The last frame of a data message arrived whole. */
static int message_done(sq__ws_rx *rx)
{
    /* an empty payload is an empty message: no tail, which would start a stored block */
    if (rx->msg_compressed && rx->zin) {
        static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
        unsigned code = inflate_in(rx, tail, 4, true);
        if (code) return fail(rx, code);
        if (rx->inflate_no_ctx) inflate_drop(rx);
    }
    if (!rx->msg_binary && rx->utf8 != SQ__UTF8_OK) return fail(rx, SQ_WS_CLOSE_INVALID_DATA);
    rx->msg_op = 0;
    if (!rx->msg.ptr && msg_room(rx, 1) < 0) return fail(rx, SQ_WS_CLOSE_INTERNAL_ERROR);
    return SQ__WS_EV_MESSAGE;
}

int sq__ws_rx_feed(sq__ws_rx *rx, uint8_t *data, size_t len, size_t *used)
{
    size_t i = 0;
    int ev = SQ__WS_EV_NONE;
    if (rx->error) {
        *used = len;
        return SQ__WS_EV_ERROR;
    }
    while (i < len) {
        if (rx->hlen < 2 || rx->hlen < rx->hneed) {
            /* header bytes */
            rx->hdr[rx->hlen++] = data[i++];
            if (rx->hlen == 2) {
                unsigned code = header_start(rx);
                if (code) {
                    ev = fail(rx, code);
                    break;
                }
            }
            if (rx->hlen < 2 || rx->hlen < rx->hneed) continue;
            unsigned code = header_done(rx);
            if (code) {
                ev = fail(rx, code);
                break;
            }
        }
        /* payload: header complete (hlen == hneed) */
        size_t n = len - i;
        if (n > rx->left) n = (size_t)rx->left;
        uint8_t *p = data + i;
        unmask(rx, p, n);
        i += n;
        rx->left -= n;
        if (rx->opcode >= 8) {
            memcpy(rx->ctrl + rx->clen, p, n);
            rx->clen = (uint8_t)(rx->clen + n);
        } else if (n && rx->msg_compressed) {
            unsigned code = inflate_in(rx, p, n, false);
            if (code) {
                ev = fail(rx, code);
                break;
            }
        } else if (n) {
            if (msg_room(rx, n) < 0) {
                ev = fail(rx, SQ_WS_CLOSE_INTERNAL_ERROR);
                break;
            }
            size_t from = rx->msg.len;
            memcpy(rx->msg.ptr + from, p, n);
            rx->msg.len += n;
            if (!text_ok(rx, from)) {
                ev = fail(rx, SQ_WS_CLOSE_INVALID_DATA);
                break;
            }
        }
        if (rx->left) continue; /* wants more bytes */
        /* frame complete */
        rx->hlen = rx->hneed = 0;
        if (rx->opcode >= 8) {
            ev = control_done(rx);
            break;
        }
        if (rx->fin) {
            ev = message_done(rx);
            break;
        }
    }
    *used = ev == SQ__WS_EV_ERROR ? len : i;
    return ev;
}

/* libFuzzer target: the WebSocket frame parser and message assembler (unmasking,
 * fragments, control frames, limits, permessage-deflate inflation, UTF-8), as a server and
 * as a client.  Byte 0 picks the mode and the piece size, bytes 1-2 the message limit
 * (ff ff: SIZE_MAX).
 * Invariants: feeding the input whole or in pieces gives the same events (but for
 * 1007-vs-1009 on corrupt compressed data past the limit); a message never
 * exceeds the limit; a text message is valid UTF-8; a failed parser stays failed. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws_internal.h"

#define MAX_EVENTS 64

typedef struct rec {
    int ev;
    uint32_t hash;
    size_t len;
    unsigned code;
} rec;

static uint32_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

static size_t run(uint8_t mode, size_t max, const uint8_t *data, size_t len, size_t step, rec *out)
{
    sq__ws_rx rx;
    sq__ws_rx_init(&rx, mode & 1, max);
    rx.deflate = (mode & 2) != 0;
    rx.inflate_no_ctx = (mode & 4) != 0;
    rx.inflate_bits = (uint8_t)(8 + ((mode >> 6) & 3) * 2 + 1); /* 9, 11, 13, 15 */
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, data, len);
    size_t n = 0, off = 0;
    bool failed = false;
    while (off < len && n < MAX_EVENTS) {
        size_t chunk = step && len - off > step ? step : len - off;
        size_t c = 0;
        while (c < chunk && n < MAX_EVENTS) {
            size_t used = 0;
            int ev = sq__ws_rx_feed(&rx, buf + off + c, chunk - c, &used);
            assert(used <= chunk - c);
            c += used;
            if (failed) assert(ev == SQ__WS_EV_ERROR);
            if (ev == SQ__WS_EV_NONE) {
                assert(c == chunk);
                continue;
            }
            assert(used > 0 || ev == SQ__WS_EV_ERROR);
            rec *r = &out[n++];
            r->ev = ev;
            r->hash = 0;
            r->len = 0;
            r->code = 0;
            if (ev == SQ__WS_EV_MESSAGE) {
                assert(rx.msg.len <= rx.max && rx.max <= max);
                assert(rx.msg.ptr != NULL);
                if (!rx.msg_binary) assert(sq__utf8_valid(rx.msg.ptr, rx.msg.len));
                r->len = rx.msg.len;
                r->hash = fnv(rx.msg.ptr, rx.msg.len);
                r->code = rx.msg_binary;
                sq__ws_rx_msg_done(&rx);
            } else if (ev == SQ__WS_EV_ERROR) {
                assert(rx.error >= 1000 && rx.error <= 1011);
                r->code = rx.error;
                failed = true;
                c = chunk;
                off = len;
                break;
            } else {
                assert(rx.clen <= 125);
                r->len = rx.clen;
                r->hash = fnv(rx.ctrl, rx.clen);
                if (ev == SQ__WS_EV_CLOSE) {
                    r->code = rx.close_code;
                    assert(rx.close_code == SQ_WS_CLOSE_NO_STATUS ||
                           sq__ws_close_code_valid(rx.close_code));
                }
            }
        }
        if (off < len) off += chunk;
    }
    sq__ws_rx_free(&rx);
    free(buf);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint8_t mode = data[0];
    size_t max = ((size_t)data[1] << 8 | data[2]) + 1;
    if (max == 0x10000) max = SIZE_MAX; /* "no limit": the arithmetic near SIZE_MAX */
    data += 3;
    size -= 3;
    static const size_t steps[] = {1, 2, 3, 7};
    size_t step = steps[(mode >> 3) & 3];
    rec a[MAX_EVENTS], b[MAX_EVENTS];
    size_t na = run(mode, max, data, size, 0, a);
    size_t nb = run(mode, max, data, size, step, b);
    if (na < MAX_EVENTS && nb < MAX_EVENTS) {
        assert(na == nb);
        for (size_t i = 0; i < na; i++) {
            assert(a[i].ev == b[i].ev);
            assert(a[i].len == b[i].len);
            assert(a[i].hash == b[i].hash);
            /* corrupt compressed data past the limit may be seen before or after the
             * output crossed it, depending on how the input was split: both fail */
            bool either = a[i].ev == SQ__WS_EV_ERROR && (a[i].code == 1007 || a[i].code == 1009) &&
                          (b[i].code == 1007 || b[i].code == 1009);
            assert(a[i].code == b[i].code || either);
        }
    }
    return 0;
}

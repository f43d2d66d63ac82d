/* The WebSocket frame parser, message assembler, UTF-8 validator, encoder, handshake
 * helpers and permessage-deflate negotiation, driven directly (no sockets). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "testutil.h"
#include "../../src/ws/ws_internal.h"

typedef struct ev_rec {
    int ev;
    size_t len;
    char data[256];
    unsigned code;
} ev_rec;

/* Feed `in` to rx in pieces of `step` bytes (0: whole); collect up to max events. */
static size_t run(sq__ws_rx *rx, const uint8_t *in, size_t len, size_t step, ev_rec *out,
                  size_t max)
{
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, in, len);
    size_t off = 0, n = 0;
    while (off < len && n < max) {
        size_t chunk = step && len - off > step ? step : len - off;
        size_t c_off = 0;
        while (c_off < chunk && n < max) {
            size_t used = 0;
            int ev = sq__ws_rx_feed(rx, buf + off + c_off, chunk - c_off, &used);
            c_off += used;
            if (ev == SQ__WS_EV_NONE) continue;
            ev_rec *r = &out[n++];
            memset(r, 0, sizeof *r);
            r->ev = ev;
            if (ev == SQ__WS_EV_MESSAGE) {
                r->len = rx->msg.len;
                memcpy(r->data, rx->msg.ptr, r->len < sizeof r->data ? r->len : sizeof r->data);
                r->code = rx->msg_binary;
                sq__ws_rx_msg_done(rx);
            } else if (ev == SQ__WS_EV_ERROR) {
                r->code = rx->error;
                off = len;
                break;
            } else {
                r->len = rx->clen;
                memcpy(r->data, rx->ctrl, rx->clen);
                r->code = rx->close_code;
            }
        }
        if (off < len) off += chunk;
    }
    free(buf);
    return n;
}

/* --- UTF-8 ---------------------------------------------------------------------------------- */

static void test_utf8_table(void **st)
{
    static const struct {
        const char *s;
        bool ok;
    } t[] = {
        {"", true},
        {"hello", true},
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true}, /* κόσμε */
        {"\xf4\x8f\xbf\xbf", true},                             /* U+10FFFF */
        {"\xef\xbf\xbf", true},                                 /* U+FFFF */
        {"\xed\x9f\xbf", true},                                 /* U+D7FF */
        {"\xee\x80\x80", true},                                 /* U+E000 */
        {"\xc0\x80", false},                                    /* overlong NUL */
        {"\xc1\xbf", false},
        {"\xe0\x80\xaf", false},     /* overlong '/' */
        {"\xf0\x80\x80\xaf", false}, /* overlong */
        {"\xed\xa0\x80", false},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", false},     /* U+DFFF */
        {"\xf4\x90\x80\x80", false}, /* U+110000 */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\x80", false},
        {"\xe2\x82", false}, /* truncated */
        {"abcdefgh\xe2\x82\xac", true},
        {"abcdefghijklmnop\xce", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(sq__utf8_valid(t[i].s, strlen(t[i].s)), t[i].ok);
    /* split sequences: the state carries across calls */
    const uint8_t euro[] = {0xe2, 0x82, 0xac};
    uint32_t s = sq__utf8_step(0, euro, 1);
    assert_true(s != SQ__UTF8_OK && s != SQ__UTF8_BAD);
    s = sq__utf8_step(s, euro + 1, 1);
    assert_true(s != SQ__UTF8_OK && s != SQ__UTF8_BAD);
    assert_int_equal(sq__utf8_step(s, euro + 2, 1), SQ__UTF8_OK);
    const uint8_t sur[] = {0xed, 0xa0};
    s = sq__utf8_step(0, sur, 1);
    assert_int_equal(sq__utf8_step(s, sur + 1, 1), SQ__UTF8_BAD);
    (void)st;
}

/* --- handshake helpers ---------------------------------------------------------------------- */

static void test_accept_key(void **st)
{
    char out[29];
    sq__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(sq__ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
    assert_false(sq__ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
    assert_false(sq__ws_key_valid("dGhlIHNhbXBsZSBub25jZR==", 24)); /* non-zero pad bits */
    assert_false(sq__ws_key_valid("dGhlIHNhbXBsZSBub25j!Q==", 24));
    assert_false(sq__ws_key_valid("dGhlIHNhbXBsZSBub25jZQ", 22));
    char key[25];
    sq__ws_make_key(key);
    assert_int_equal(strlen(key), 24);
    assert_true(sq__ws_key_valid(key, 24));
    assert_true(sq__ws_has_token("keep-alive, Upgrade", 19, "upgrade"));
    assert_false(sq__ws_has_token("keep-alive, Upgrades", 20, "upgrade"));
    assert_true(sq__ws_has_token(" WebSocket ", 11, "websocket"));
    (void)st;
}

/* --- good frames ------------------------------------------------------------------------------ */

static void test_rfc_examples(void **st)
{
    sq__ws_rx rx;
    ev_rec ev[8];
    /* RFC 6455 5.7: a single-frame unmasked text message (client side parses it) */
    const uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    sq__ws_rx_init(&rx, true, 0);
    assert_int_equal(run(&rx, unmasked, sizeof unmasked, 0, ev, 8), 1);
    assert_int_equal(ev[0].ev, SQ__WS_EV_MESSAGE);
    assert_int_equal(ev[0].len, 5);
    assert_memory_equal(ev[0].data, "Hello", 5);
    sq__ws_rx_free(&rx);
    /* masked (server side parses it) */
    const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    for (size_t step = 0; step < 4; step++) {
        sq__ws_rx_init(&rx, false, 0);
        assert_int_equal(run(&rx, masked, sizeof masked, step, ev, 8), 1);
        assert_int_equal(ev[0].ev, SQ__WS_EV_MESSAGE);
        assert_memory_equal(ev[0].data, "Hello", 5);
        sq__ws_rx_free(&rx);
    }
    /* fragmented, with a ping between the fragments */
    const uint8_t frag[] = {0x01, 0x03, 'H', 'e', 'l', 0x89, 0x02, 'h', 'i', 0x80, 0x02, 'l', 'o'};
    sq__ws_rx_init(&rx, true, 0);
    assert_int_equal(run(&rx, frag, sizeof frag, 1, ev, 8), 2);
    assert_int_equal(ev[0].ev, SQ__WS_EV_PING);
    assert_int_equal(ev[0].len, 2);
    assert_memory_equal(ev[0].data, "hi", 2);
    assert_int_equal(ev[1].ev, SQ__WS_EV_MESSAGE);
    assert_int_equal(ev[1].len, 5);
    assert_memory_equal(ev[1].data, "Hello", 5);
    sq__ws_rx_free(&rx);
    /* masked pong, close with code and reason, empty close */
    const uint8_t ctl[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                           0x88, 0x85, 0,    0,    0,    0,    0x03, 0xe8, 'b',  'y',  'e'};
    sq__ws_rx_init(&rx, false, 0);
    assert_int_equal(run(&rx, ctl, sizeof ctl, 0, ev, 8), 2);
    assert_int_equal(ev[0].ev, SQ__WS_EV_PONG);
    assert_memory_equal(ev[0].data, "Hello", 5);
    assert_int_equal(ev[1].ev, SQ__WS_EV_CLOSE);
    assert_int_equal(ev[1].code, 1000);
    assert_memory_equal(ev[1].data + 2, "bye", 3);
    sq__ws_rx_free(&rx);
    const uint8_t close0[] = {0x88, 0x00};
    sq__ws_rx_init(&rx, true, 0);
    assert_int_equal(run(&rx, close0, 2, 0, ev, 8), 1);
    assert_int_equal(ev[0].ev, SQ__WS_EV_CLOSE);
    assert_int_equal(ev[0].code, SQ_WS_CLOSE_NO_STATUS);
    sq__ws_rx_free(&rx);
    (void)st;
}

static void test_lengths_and_encoder(void **st)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 200000};
    uint8_t key[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int masked = 0; masked < 2; masked++) {
            size_t n = sizes[i];
            char *data = malloc(n + 1);
            for (size_t k = 0; k < n; k++) data[k] = (char)('a' + k % 26);
            sq__buf out = {0};
            assert_int_equal(
                sq__ws_encode(&out, SQ__WS_OP_BINARY, true, false, data, n, masked ? key : NULL),
                0);
            size_t hl = 2 + (n < 126 ? 0 : n <= 65535 ? 2 : 8) + (masked ? 4 : 0);
            assert_int_equal(out.len, hl + n);
            assert_int_equal((uint8_t)out.ptr[0], 0x82);
            sq__ws_rx rx;
            sq__ws_rx_init(&rx, !masked, 0);
            size_t used = 0;
            int ev = sq__ws_rx_feed(&rx, (uint8_t *)out.ptr, out.len, &used);
            assert_int_equal(ev, SQ__WS_EV_MESSAGE);
            assert_int_equal(used, out.len);
            assert_int_equal(rx.msg.len, n);
            assert_true(rx.msg_binary);
            assert_memory_equal(rx.msg.ptr, data, n);
            sq__ws_rx_free(&rx);
            sq__buf_free(&out);
            free(data);
            (void)0;
        }
    }
    (void)st;
}

/* --- bad frames ----------------------------------------------------------------------------------
 */

static void test_bad_frames(void **st)
{
    static const struct {
        const char *name;
        bool client; /* parse as the client (frames must be unmasked) */
        bool deflate;
        size_t max;
        size_t len;
        uint8_t b[24];
        unsigned code;
    } t[] = {
        {"unmasked from a client", false, false, 0, 3, {0x81, 0x01, 'a'}, 1002},
        {"masked from a server", true, false, 0, 7, {0x81, 0x81, 0, 0, 0, 0, 'a'}, 1002},
        {"rsv1 without extension", true, false, 0, 3, {0xc1, 0x01, 'a'}, 1002},
        {"rsv2", true, true, 0, 3, {0xa1, 0x01, 'a'}, 1002},
        {"rsv3", true, false, 0, 3, {0x91, 0x01, 'a'}, 1002},
        {"opcode 3", true, false, 0, 2, {0x83, 0x00}, 1002},
        {"opcode 0xb", true, false, 0, 2, {0x8b, 0x00}, 1002},
        {"continuation first", true, false, 0, 3, {0x80, 0x01, 'a'}, 1002},
        {"text inside a message", true, false, 0, 6, {0x01, 0x01, 'a', 0x81, 0x01, 'b'}, 1002},
        {"ping 126", true, false, 0, 4, {0x89, 0x7e, 0x00, 0x7e}, 1002},
        {"fragmented ping", true, false, 0, 2, {0x09, 0x00}, 1002},
        {"rsv1 on a ping", true, true, 0, 2, {0xc9, 0x00}, 1002},
        {"rsv1 on a continuation", true, true, 0, 6, {0x41, 0x01, 0x00, 0xc0, 0x01, 0x00}, 1002},
        {"close length 1", true, false, 0, 3, {0x88, 0x01, 0x03}, 1002},
        {"close code 999", true, false, 0, 4, {0x88, 0x02, 0x03, 0xe7}, 1002},
        {"close code 1005", true, false, 0, 4, {0x88, 0x02, 0x03, 0xed}, 1002},
        {"close code 1006", true, false, 0, 4, {0x88, 0x02, 0x03, 0xee}, 1002},
        {"close code 1015", true, false, 0, 4, {0x88, 0x02, 0x03, 0xf7}, 1002},
        {"close code 2000", true, false, 0, 4, {0x88, 0x02, 0x07, 0xd0}, 1002},
        {"close code 5000", true, false, 0, 4, {0x88, 0x02, 0x13, 0x88}, 1002},
        {"close reason not UTF-8", true, false, 0, 5, {0x88, 0x03, 0x03, 0xe8, 0xff}, 1002},
        {"invalid UTF-8", true, false, 0, 3, {0x81, 0x01, 0xff}, 1007},
        {"surrogate split over fragments",
         true,
         false,
         0,
         6,
         {0x01, 0x01, 0xed, 0x80, 0x01, 0xa0},
         1007},
        {"truncated UTF-8 at the end", true, false, 0, 4, {0x81, 0x02, 0xe2, 0x82}, 1007},
        {"declared over max", true, false, 16, 2, {0x82, 0x11}, 1009},
        {"fragments over max",
         true,
         false,
         16,
         14,
         {0x02, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x80, 0x07},
         1009},
        {"64-bit length with the top bit",
         true,
         false,
         0,
         10,
         {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1},
         1002},
        {"huge declared length", true, false, 0, 10, {0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0}, 1009},
        {"bad deflate data", true, true, 0, 5, {0xc1, 0x03, 0xff, 0xff, 0xff}, 1007},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        for (size_t step = 0; step < 2; step++) {
            sq__ws_rx rx;
            sq__ws_rx_init(&rx, t[i].client, t[i].max);
            rx.deflate = t[i].deflate;
            ev_rec ev[4];
            size_t n = run(&rx, t[i].b, t[i].len, step, ev, 4);
            if (n == 0 || ev[n - 1].ev != SQ__WS_EV_ERROR || ev[n - 1].code != t[i].code)
                fail_msg("%s: got %zu events, last %d code %u", t[i].name, n, n ? ev[n - 1].ev : -1,
                         n ? ev[n - 1].code : 0);
            /* a failed parser stays failed */
            size_t used;
            uint8_t more[2] = {0x81, 0x00};
            assert_int_equal(sq__ws_rx_feed(&rx, more, 2, &used), SQ__WS_EV_ERROR);
            sq__ws_rx_free(&rx);
        }
    }
    (void)st;
}

/* --- permessage-deflate -------------------------------------------------------------------------
 */

static void test_rfc7692_examples(void **st)
{
    sq__ws_rx rx;
    ev_rec ev[4];
    static const struct {
        size_t len;
        uint8_t b[24];
    } t[] = {
        /* 7.2.3.1 */ {9, {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}},
        /* fragmented */ {11, {0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00}},
        /* 7.2.3.3, a stored block */
        {13, {0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}},
        /* 7.2.3.4, two blocks, the first BFINAL=0 */
        {14, {0xc1, 0x0c, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07}},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        sq__ws_rx_init(&rx, true, 0);
        rx.deflate = true;
        size_t n = run(&rx, t[i].b, t[i].len, i == 1 ? 1 : 0, ev, 4);
        assert_int_equal(n, 1);
        assert_int_equal(ev[0].ev, SQ__WS_EV_MESSAGE);
        assert_int_equal(ev[0].len, 5);
        assert_memory_equal(ev[0].data, "Hello", 5);
        sq__ws_rx_free(&rx);
    }
    /* 7.2.3.2: the same message twice with context takeover */
    const uint8_t two[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
                           0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
    sq__ws_rx_init(&rx, true, 0);
    rx.deflate = true;
    assert_int_equal(run(&rx, two, sizeof two, 0, ev, 4), 2);
    assert_memory_equal(ev[1].data, "Hello", 5);
    sq__ws_rx_free(&rx);
    /* our compressor gives the RFC's bytes, and then the context-takeover form */
    sq__ws_tx tx = {.bits = 15, .level = 0};
    sq__buf out = {0};
    assert_int_equal(sq__ws_tx_compress(&tx, "Hello", 5, &out), 0);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.ptr, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    out.len = 0;
    assert_int_equal(sq__ws_tx_compress(&tx, "Hello", 5, &out), 0);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.ptr, "\xf2\x00\x11\x00\x00", 5);
    sq__ws_tx_free(&tx);
    /* no_context_takeover: the same bytes each time, no stream kept */
    sq__ws_tx tx2 = {.bits = 15, .no_ctx = true};
    for (int k = 0; k < 2; k++) {
        out.len = 0;
        assert_int_equal(sq__ws_tx_compress(&tx2, "Hello", 5, &out), 0);
        assert_int_equal(out.len, 7);
        assert_null(tx2.z);
    }
    sq__buf_free(&out);
    (void)st;
}

/* A peer that ends its deflate stream in a message (BFINAL, e.g. zlib's Z_FINISH): the next
 * message starts a new stream, and with context takeover it may still refer back to what
 * the earlier messages held (RFC 7692 7.2.2: the receiver keeps its LZ77 window). */
static size_t deflate_final(const char *text, const char *dict, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    if (dict)
        assert_int_equal(deflateSetDictionary(&z, (const Bytef *)dict, (uInt)strlen(dict)), Z_OK);
    z.next_in = (Bytef *)text;
    z.avail_in = (uInt)strlen(text);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return n;
}

static void test_deflate_final_block(void **st)
{
    static const char *const msgs[] = {"Hello, hello, hello", "Hello, hello, hello again",
                                       "hello, hello"};
    uint8_t in[512];
    size_t len = 0;
    char seen[64] = "";
    for (size_t i = 0; i < 3; i++) {
        uint8_t z[128];
        /* each a stream of its own with BFINAL set, the later ones drawing on the earlier text;
         * the first two followed by the 0x00 the RFC asks for (the start of an empty stored
         * block, which the receiver's 00 00 ff ff completes), the last without it, as zlib's
         * Z_FINISH alone leaves it */
        size_t n = deflate_final(msgs[i], i ? seen : NULL, z, sizeof z - 1);
        if (i < 2) z[n++] = 0x00;
        strcat(seen, msgs[i]);
        assert_true(n < 126);
        in[len++] = 0xc1; /* FIN, RSV1, text */
        in[len++] = (uint8_t)n;
        memcpy(in + len, z, n);
        len += n;
    }
    /* the RFC's own example (7.2.3.3): BFINAL then an empty stored block's first byte */
    static const uint8_t rfc[] = {0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    memcpy(in + len, rfc, sizeof rfc);
    len += sizeof rfc;
    for (size_t step = 0; step <= 3; step++) {
        sq__ws_rx rx;
        ev_rec ev[8];
        sq__ws_rx_init(&rx, true, 0);
        rx.deflate = true;
        size_t n = run(&rx, in, len, step, ev, 8);
        for (size_t i = 0; i < n; i++)
            if (ev[i].ev != SQ__WS_EV_MESSAGE)
                fail_msg("step %zu: event %zu is %d (code %u)", step, i, ev[i].ev, ev[i].code);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < 3; i++) {
            assert_int_equal(ev[i].len, strlen(msgs[i]));
            assert_memory_equal(ev[i].data, msgs[i], ev[i].len);
        }
        assert_int_equal(ev[3].len, 5);
        assert_memory_equal(ev[3].data, "Hello", 5);
        sq__ws_rx_free(&rx);
    }
    (void)st;
}

static void test_deflate_bomb(void **st)
{
    /* 8 MiB of zeros compress to a few KiB; the limit is 64 KiB */
    size_t big = 8u << 20;
    char *zeros = calloc(1, big);
    sq__ws_tx tx = {.bits = 15, .level = 9};
    sq__buf z = {0};
    assert_int_equal(sq__ws_tx_compress(&tx, zeros, big, &z), 0);
    sq__ws_tx_free(&tx);
    free(zeros);
    assert_true(z.len < 64 * 1024);
    uint8_t key[4] = {9, 8, 7, 6};
    sq__buf frame = {0};
    assert_int_equal(sq__ws_encode(&frame, SQ__WS_OP_BINARY, true, true, z.ptr, z.len, key), 0);
    sq__ws_rx rx;
    sq__ws_rx_init(&rx, false, 64 * 1024);
    rx.deflate = true;
    size_t used;
    int ev = sq__ws_rx_feed(&rx, (uint8_t *)frame.ptr, frame.len, &used);
    assert_int_equal(ev, SQ__WS_EV_ERROR);
    assert_int_equal(rx.error, SQ_WS_CLOSE_TOO_BIG);
    assert_true(rx.msg.cap <= 64 * 1024 + 1); /* never inflated beyond the limit */
    sq__ws_rx_free(&rx);
    sq__buf_free(&frame);
    sq__buf_free(&z);
    (void)st;
}

static void test_negotiation(void **st)
{
    sq__ws_pmd p;
    char resp[256];
    sq_ws_settings s = {.compression = true};
#define ACCEPT(h) sq__ws_pmd_accept(h, strlen(h), &s, &p, resp, sizeof resp)
    assert_int_equal(ACCEPT("permessage-deflate"), 1);
    assert_string_equal(resp, "permessage-deflate");
    assert_int_equal(p.server_bits, 15);
    assert_int_equal(ACCEPT("permessage-deflate; client_max_window_bits"), 1);
    assert_string_equal(resp, "permessage-deflate");
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits=10"), 1);
    assert_string_equal(resp, "permessage-deflate; server_max_window_bits=10");
    assert_int_equal(p.server_bits, 10);
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits=\"11\""), 1);
    assert_int_equal(p.server_bits, 11);
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits=16, permessage-deflate;"
                            " client_no_context_takeover"),
                     1);
    assert_string_equal(resp, "permessage-deflate; client_no_context_takeover");
    assert_true(p.client_no_ctx);
    assert_int_equal(ACCEPT("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=9"),
                     1);
    assert_int_equal(p.client_bits, 9);
    assert_int_equal(ACCEPT("permessage-deflate; foo"), 0);
    assert_int_equal(ACCEPT("permessage-deflate; server_no_context_takeover; "
                            "server_no_context_takeover"),
                     0);
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits"), 0);
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits=08"), 0);
    assert_int_equal(ACCEPT("permessage-deflate; client_max_window_bits=7"), 0);
    assert_int_equal(ACCEPT("permessage-deflate; server_no_context_takeover=1"), 0);
    assert_int_equal(ACCEPT("x-other"), 0);
    assert_int_equal(ACCEPT("permessage-deflate; ;"), 0);
    /* 8-bit window for us: accepted, our messages then go uncompressed */
    assert_int_equal(ACCEPT("permessage-deflate; server_max_window_bits=8"), 1);
    assert_int_equal(p.server_bits, 8);
    /* max_window_bits 8 for us is zlib's 9, also when the client allows a window */
    sq_ws_settings s8 = {.compression = true, .max_window_bits = 8};
    const char *o12 = "permessage-deflate; server_max_window_bits=12";
    assert_int_equal(sq__ws_pmd_accept(o12, strlen(o12), &s8, &p, resp, sizeof resp), 1);
    assert_string_equal(resp, "permessage-deflate; server_max_window_bits=9");
    assert_int_equal(p.server_bits, 9);
    const char *o8 = "permessage-deflate; server_max_window_bits=8";
    assert_int_equal(sq__ws_pmd_accept(o8, strlen(o8), &s8, &p, resp, sizeof resp), 1);
    assert_int_equal(p.server_bits, 8);
    s.no_context_takeover = true;
    assert_int_equal(ACCEPT("permessage-deflate"), 1);
    assert_string_equal(resp, "permessage-deflate; server_no_context_takeover");
#undef ACCEPT
#define RESP(h) sq__ws_pmd_response(h, strlen(h), &p)
    assert_int_equal(RESP("permessage-deflate"), 0);
    assert_int_equal(RESP("permessage-deflate; server_no_context_takeover; "
                          "client_max_window_bits=10"),
                     0);
    assert_true(p.server_no_ctx);
    assert_int_equal(p.client_bits, 10);
    assert_int_equal(RESP("permessage-deflate; client_max_window_bits"), -EPROTO);
    assert_int_equal(RESP("permessage-deflate, permessage-deflate"), -EPROTO);
    assert_int_equal(RESP("x-foo"), -EPROTO);
    assert_int_equal(RESP("permessage-deflate; bar"), -EPROTO);
    assert_int_equal(RESP(""), -EPROTO);
#undef RESP
    char offer[128];
    sq_ws_settings cs = {0};
    sq__ws_pmd_offer(&cs, offer, sizeof offer);
    assert_string_equal(offer, "permessage-deflate; client_max_window_bits");
    cs.no_context_takeover = true;
    sq__ws_pmd_offer(&cs, offer, sizeof offer);
    assert_string_equal(offer, "permessage-deflate; client_max_window_bits; "
                               "client_no_context_takeover");
    (void)st;
}

/* --- review regressions ------------------------------------------------------------------------
 */

/* A ping between the fragments of a compressed message, fed in pieces of every size. */
static void test_ping_inside_compressed_fragments(void **st)
{
    static const uint8_t in[] = {0x41, 0x03, 0xf2, 0x48, 0xcd,       /* "Hel" (compressed) */
                                 0x89, 0x02, 'h',  'i',              /* ping */
                                 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00, /* "lo", the end */
                                 0x8a, 0x00};                        /* pong */
    for (size_t step = 0; step <= sizeof in; step++) {
        sq__ws_rx rx;
        sq__ws_rx_init(&rx, true, 0);
        rx.deflate = true;
        ev_rec ev[4];
        assert_int_equal(run(&rx, in, sizeof in, step, ev, 4), 3);
        assert_int_equal(ev[0].ev, SQ__WS_EV_PING);
        assert_memory_equal(ev[0].data, "hi", 2);
        assert_int_equal(ev[1].ev, SQ__WS_EV_MESSAGE);
        assert_int_equal(ev[1].len, 5);
        assert_memory_equal(ev[1].data, "Hello", 5);
        assert_int_equal(ev[2].ev, SQ__WS_EV_PONG);
        sq__ws_rx_free(&rx);
    }
    (void)st;
}

/* max_message_size SIZE_MAX ("no limit"): compressed and plain messages still pass. */
static void test_no_limit(void **st)
{
    sq__ws_rx rx;
    sq__ws_rx_init(&rx, true, SIZE_MAX);
    assert_true(rx.max >= (SIZE_MAX >> 3)); /* effectively unlimited, and max + 1 > max */
    assert_true(rx.max + 1 > rx.max && rx.max + rx.max / 8 + 4096 > rx.max);
    rx.deflate = true;
    size_t big = 300000;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + (i * 7919 % 26));
    sq__ws_tx tx = {.bits = 15, .level = 1};
    sq__buf z = {0}, frames = {0};
    assert_int_equal(sq__ws_tx_compress(&tx, data, big, &z), 0);
    sq__ws_tx_free(&tx);
    assert_int_equal(sq__ws_encode(&frames, SQ__WS_OP_TEXT, true, true, z.ptr, z.len, NULL), 0);
    assert_int_equal(sq__ws_encode(&frames, SQ__WS_OP_BINARY, true, false, data, big, NULL), 0);
    size_t off = 0;
    for (int k = 0; k < 2; k++) {
        size_t used;
        int ev = sq__ws_rx_feed(&rx, (uint8_t *)frames.ptr + off, frames.len - off, &used);
        off += used;
        assert_int_equal(ev, SQ__WS_EV_MESSAGE);
        assert_int_equal(rx.msg.len, big);
        assert_memory_equal(rx.msg.ptr, data, big);
        sq__ws_rx_msg_done(&rx);
    }
    assert_int_equal(off, frames.len);
    sq__ws_rx_free(&rx);
    sq__buf_free(&z);
    sq__buf_free(&frames);
    free(data);
    (void)st;
}

/* Whether a raw deflate stream inflates with a window of `bits`, 64 bytes of output at a
 * time (zlib only catches a distance past its window outside the current output). */
static bool inflates_within(const uint8_t *p, size_t n, int bits)
{
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, -bits), Z_OK);
    uint8_t out[64];
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    int r;
    do {
        z.next_out = out;
        z.avail_out = sizeof out;
        r = inflate(&z, Z_SYNC_FLUSH);
    } while (r == Z_OK && (z.avail_in || !z.avail_out));
    inflateEnd(&z);
    return r == Z_OK || r == Z_BUF_ERROR;
}

/* A client with max_window_bits 8 compresses with zlib's smallest window (9), not 15. */
static void test_client_window_8(void **st)
{
    sq_loop *loop = sq_loop_new(NULL);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sq_ws_settings cs = {.max_window_bits = 8};
    sq_ws *ws = sq__ws_new(loop, sv[0], NULL, &cs);
    assert_non_null(ws);
    sq__ws_pmd pmd = {.server_bits = 15, .client_bits = 15};
    assert_int_equal(sq__ws_set_deflate(ws, &pmd), 0);
    size_t big = 20000;
    char *m = malloc(big);
    uint32_t x = 7;
    for (size_t i = 0; i < 2000; i++) {
        x = x * 1103515245u + 12345u;
        m[i] = (char)('a' + (x >> 16) % 26);
    }
    for (size_t i = 2000; i < big; i++) m[i] = m[i % 2000]; /* repeats 2000 bytes back */
    assert_int_equal(sq_ws_send(ws, m, big, false), 0);
    uint8_t *f = malloc(big + 64);
    size_t got = 0;
    for (;;) { /* the frame: 0xc1, 126 + 16-bit length, the mask, the payload */
        ssize_t r = read(sv[1], f + got, big + 64 - got);
        assert_true(r > 0);
        got += (size_t)r;
        if (got >= 8 && got >= 8 + ((size_t)f[2] << 8 | f[3])) break;
    }
    assert_int_equal(f[0], 0xc1);
    assert_int_equal(f[1], 0x80 | 126);
    size_t n = (size_t)f[2] << 8 | f[3];
    uint8_t *pl = f + 8;
    for (size_t i = 0; i < n; i++) pl[i] ^= f[4 + (i & 3)];
    memcpy(pl + n, "\x00\x00\xff\xff", 4);
    assert_true(inflates_within(pl, n + 4, 15));
    assert_true(inflates_within(pl, n + 4, 9));
    sq_ws_free(ws);
    for (int i = 0; i < 3; i++) sq_loop_run_once(loop, false);
    close(sv[1]);
    free(f);
    free(m);
    sq_loop_free(loop);
    (void)st;
}

/* sq_ws_free on an open client connection: what was queued goes out, then a close frame with
 * 1000 (websocket.h: "Close (if open, with 1000) without waiting"), then the socket closes. */
static void test_free_sends_close(void **st)
{
    sq_loop *loop = sq_loop_new(NULL);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sq_ws *ws = sq__ws_new(loop, sv[0], NULL, NULL);
    assert_non_null(ws);
    assert_int_equal(sq_ws_send(ws, "hi", 2, false), 0);
    sq_ws_free(ws);
    for (int i = 0; i < 3; i++) sq_loop_run_once(loop, false);
    uint8_t f[64];
    size_t got = 0;
    ssize_t r;
    while ((r = read(sv[1], f + got, sizeof f - got)) > 0) got += (size_t)r;
    assert_int_equal(r, 0);       /* then EOF */
    assert_int_equal(got, 8 + 8); /* text "hi", then close 1000: each 2 + mask 4 + payload */
    assert_int_equal(f[0], 0x81);
    assert_int_equal(f[1], 0x82);
    assert_int_equal(f[8], 0x88);
    assert_int_equal(f[9], 0x82);
    assert_int_equal(f[14] ^ f[10], 0x03);
    assert_int_equal(f[15] ^ f[11], 0xe8);
    close(sv[1]);
    sq_loop_free(loop);
    (void)st;
}

/* A forked child does not repeat its parent's masks and keys. */
static void test_rand_after_fork(void **st)
{
    (void)sq__ws_rand(); /* seeded in the parent */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t r = sq__ws_rand();
        _exit(write(p[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    uint64_t mine = sq__ws_rand(), child = 0;
    assert_int_equal(read(p[0], &child, sizeof child), (ssize_t)sizeof child);
    int status;
    waitpid(pid, &status, 0);
    close(p[0]);
    close(p[1]);
    assert_true(mine != child);
    (void)st;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_lengths_and_encoder),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_rfc7692_examples),
        cmocka_unit_test(test_deflate_final_block),
        cmocka_unit_test(test_deflate_bomb),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_ping_inside_compressed_fragments),
        cmocka_unit_test(test_no_limit),
        cmocka_unit_test(test_rand_after_fork),
        cmocka_unit_test(test_client_window_8),
        cmocka_unit_test(test_free_sends_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

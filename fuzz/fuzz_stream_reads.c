/* libFuzzer target: the stream read buffer (read_until / read_bytes / read_until_close).
 *
 * Input layout: [dlen-1 (low 2 bits)] [delimiter: dlen bytes] [nops] [nops x (op, arg)]
 * [wire bytes].  The wire bytes are written into one end of a socketpair, which is then
 * shut down; the other end is a squall stream that a coroutine reads with the given ops.
 * Invariants checked: each read returns what its contract says, and everything returned,
 * concatenated, is exactly a prefix of the wire bytes (no byte lost, duplicated or moved
 * by the buffer's compaction and growth). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "squall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    sq_stream *s;
    const uint8_t *delim;
    size_t dlen;
    const uint8_t *ops;
    size_t nops;
    const uint8_t *wire;
    size_t wire_len;
    size_t consumed;
} fuzz_case;

static void check_prefix(fuzz_case *fc, const char *p, ssize_t n)
{
    if (n < 0) return;
    if ((size_t)n > fc->wire_len - fc->consumed || memcmp(p, fc->wire + fc->consumed, (size_t)n))
        abort(); /* the stream returned bytes that are not the next bytes on the wire */
    fc->consumed += (size_t)n;
}

static void *reader(void *arg)
{
    fuzz_case *fc = arg;
    const char *p;
    for (size_t i = 0; i < fc->nops; i++) {
        uint8_t op = fc->ops[2 * i], a = fc->ops[2 * i + 1];
        ssize_t n;
        switch (op % 4) {
        case 0: {
            size_t max = (size_t)a * 4 + fc->dlen;
            n = sq_stream_read_until(fc->s, fc->delim, fc->dlen, max, &p);
            if (n > 0) {
                if ((size_t)n < fc->dlen || memcmp(p + n - fc->dlen, fc->delim, fc->dlen)) abort();
                /* the first occurrence is the one that ends the result */
                if (memmem(p, (size_t)n, fc->delim, fc->dlen) != p + n - fc->dlen) abort();
                if ((size_t)n > max) abort();
            }
            break;
        }
        case 1:
            n = sq_stream_read_bytes(fc->s, (size_t)a + 1, false, &p);
            if (n >= 0 && n != a + 1) abort();
            break;
        case 2:
            n = sq_stream_read_bytes(fc->s, (size_t)a + 1, true, &p);
            if (n == 0 || n > a + 1) abort();
            break;
        default:
            n = sq_stream_read_until_close(fc->s, 0, &p);
            break;
        }
        check_prefix(fc, p, n);
        if (n < 0 && n != -EMSGSIZE) break;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sq_loop *loop;
    if (!loop) {
        sq_log_set_level(SQ_LOG_OFF);
        loop = sq_loop_new(NULL);
    }
    if (size < 3) return 0;
    fuzz_case fc = {0};
    fc.dlen = (data[0] & 3u) + 1;
    if (size < 2 + fc.dlen) return 0;
    fc.delim = data + 1;
    size_t pos = 1 + fc.dlen;
    fc.nops = data[pos++] % 16 + 1;
    if (size < pos + 2 * fc.nops) return 0;
    fc.ops = data + pos;
    pos += 2 * fc.nops;
    fc.wire = data + pos;
    fc.wire_len = size - pos;
    if (fc.wire_len > 65536) return 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) abort();
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (fc.wire_len && write(sv[0], fc.wire, fc.wire_len) != (ssize_t)fc.wire_len) abort();
    shutdown(sv[0], SHUT_WR);
    fc.s = sq_stream_new(loop, sv[1]);
    if (!fc.s) abort();
    sq_future *f = sq_spawn(loop, reader, &fc);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    sq_stream_free(fc.s);
    close(sv[0]);
    return 0;
}

/* /ws/prime: a WebSocket that says whether numbers are prime.
 *
 * The client sends a decimal number from 0 to 2^64-1 as a text message; the answer is one
 * JSON text message, {"n":"97","prime":true,"on":"loop"}.  Anything else gets
 * {"n":"…","error":"…"} and the connection stays open.  Small numbers are tested inline;
 * large ones on the executor (a thread pool), so however long a test takes, the loop keeps
 * serving every other connection meanwhile — "on" says which.  While one message is being
 * answered, the next one from the same client waits (squall reads no further frames from
 * a connection whose on_message is suspended), so one client holds at most one worker.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

/* Numbers above this go to the executor.  Deterministic Miller-Rabin is microseconds even
 * at 2^64, but the point of the demo is the pattern: work whose cost grows with the input
 * leaves the loop. */
#define PRIME_INLINE_MAX 1000000000000ull /* 10^12 */

_Static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "a number travels in a pointer");

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m)
{
    return (uint64_t)((unsigned __int128)a * b % m);
}

static uint64_t powmod(uint64_t b, uint64_t e, uint64_t m)
{
    uint64_t r = 1;
    b %= m;
    while (e) {
        if (e & 1) r = mulmod(r, b, m);
        b = mulmod(b, b, m);
        e >>= 1;
    }
    return r;
}

/* Deterministic for every 64-bit n: the first 12 primes as Miller-Rabin bases suffice. */
static bool is_prime(uint64_t n)
{
    static const uint64_t bases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
    if (n < 2) return false;
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        if (n == bases[i]) return true;
        if (n % bases[i] == 0) return false;
    }
    uint64_t d = n - 1;
    int s = 0;
    while (!(d & 1)) {
        d >>= 1;
        s++;
    }
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        uint64_t x = powmod(bases[i], d, n);
        if (x == 1 || x == n - 1) continue;
        bool composite = true;
        for (int r = 1; r < s; r++) {
            x = mulmod(x, x, n);
            if (x == n - 1) {
                composite = false;
                break;
            }
        }
        if (composite) return false;
    }
    return true;
}

/* Runs on a worker thread: touches nothing but its argument. */
static void *prime_job(void *arg)
{
    return (void *)(uintptr_t)is_prime((uint64_t)(uintptr_t)arg);
}

/* Decimal digits, optionally surrounded by blanks, at most 2^64-1.  0 or -EINVAL/-ERANGE. */
static int parse_u64(const char *data, size_t len, uint64_t *out)
{
    size_t i = 0, end = len;
    while (i < end && isspace((unsigned char)data[i])) i++;
    while (end > i && isspace((unsigned char)data[end - 1])) end--;
    if (i == end) return -EINVAL;
    uint64_t v = 0;
    for (; i < end; i++) {
        if (data[i] < '0' || data[i] > '9') return -EINVAL;
        unsigned d = (unsigned)(data[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The awaitable write: while the client is not reading, this handler waits here, and
 * with it the reading of further numbers (backpressure), instead of queueing answers
 * without bound. */
static void send_json(sq_ws *ws, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t len = 0;
    char *s = sq_json_vformat(&len, fmt, ap); /* json_pack's formats, no tree built */
    va_end(ap);
    if (s) sq_ws_write(ws, s, len, false);
    free(s);
}

static void prime_message(sq_ws *ws, const char *data, size_t len, bool binary)
{
    uint64_t n;
    int rc = binary ? -EINVAL : parse_u64(data, len, &n);
    if (rc < 0) {
        /* Echo (a bounded prefix of) what was sent; binary data is not valid JSON text. */
        const char *what = binary ? "" : data;
        size_t wlen = binary ? 0 : (len > 64 ? 64 : len);
        while (wlen > 0 && wlen < len && (what[wlen] & 0xC0) == 0x80) wlen--; /* whole chars */
        send_json(ws, "{s:s%, s:s}", "n", what, wlen, "error",
                  binary          ? "send numbers as text messages"
                  : rc == -ERANGE ? "too large: the limit is 18446744073709551615"
                                  : "not a number: send a decimal integer from 0 to "
                                    "18446744073709551615");
        return;
    }
    bool prime;
    const char *on = "loop";
    if (n <= PRIME_INLINE_MAX) {
        prime = is_prime(n);
    } else {
        void *v = NULL;
        int64_t st = sq_await(sq_run_in_executor(prime_job, (void *)(uintptr_t)n), &v);
        if (st < 0) {
            sq_ws_close(ws, SQ_WS_CLOSE_INTERNAL_ERROR, "executor unavailable");
            return;
        }
        prime = v != NULL;
        on = "executor";
    }
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    send_json(ws, "{s:s, s:b, s:s}", "n", num, "prime", prime, "on", on);
}

sq_ws_class demo_prime_ws = {
    .on_message = prime_message,
    .settings = {.max_message_size = 1024, .ping_interval = 30},
};

/* sq_stream_read_until_regex and sq_stream_read_into over socketpairs: matches split across
 * reads, max_bytes, the incremental (non-quadratic) search, read_into partial and full,
 * buffered bytes first, and nothing lost on a timeout or a close. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* Internal (src/stream/regex.h): the incremental search, checked directly below. */
int sq__regex_search(const sq_regex *re, void **md, const char *subj, size_t len, size_t *from,
                     size_t *end);
void sq__regex_md_free(void *md);

typedef struct pair {
    sq_stream *a, *b;
} pair;

static sq_loop *loop;
static pair p;

static int setup(void **state)
{
    loop = sq_loop_new(NULL);
    sq_loop_make_current(loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    p.a = sq_stream_new(loop, sv[0]);
    p.b = sq_stream_new(loop, sv[1]);
    return p.a && p.b ? 0 : -1;
}

static int teardown(void **state)
{
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
    return 0;
}

typedef struct drip {
    sq_stream *s;
    const char *data;
    size_t len, step;
    double pause;
} drip;

/* Write `data` in `step`-byte pieces with pauses: the reader sees many separate reads. */
static void *dripper(void *arg)
{
    drip *d = arg;
    for (size_t off = 0; off < d->len; off += d->step) {
        size_t n = d->len - off < d->step ? d->len - off : d->step;
        assert_int_equal(sq_stream_write(d->s, d->data + off, n), 0);
        sq_sleep(d->pause);
    }
    return NULL;
}

/* --- read_until_regex ------------------------------------------------------------------------ */

static void *split_coro(void *arg)
{
    int err;
    /* An HTTP-ish header end with either line ending, and a numbered record marker. */
    sq_regex *hdr_end = sq_regex_new("\r?\n\r?\n", &err);
    sq_regex *marker = sq_regex_new("<(?i)end-[0-9]+>", &err);
    assert_non_null(hdr_end);
    assert_non_null(marker);
    static const char msg[] = "Host: x\r\nA: b\r\n\r\nbody one <END-42>tail\n\nrest";
    drip d = {p.a, msg, sizeof msg - 1, 1, 0.001};
    sq_future *w = sq_spawn(loop, dripper, &d);
    const char *data;
    ssize_t n = sq_stream_read_until_regex(p.b, hdr_end, 0, &data);
    assert_int_equal(n, strlen("Host: x\r\nA: b\r\n\r\n"));
    assert_memory_equal(data, "Host: x\r\nA: b\r\n\r\n", (size_t)n);
    /* The match runs through its end; the marker arrives a byte at a time. */
    n = sq_stream_read_until_regex(p.b, marker, 0, &data);
    assert_int_equal(n, strlen("body one <END-42>"));
    assert_memory_equal(data, "body one <END-42>", (size_t)n);
    n = sq_stream_read_until_regex(p.b, hdr_end, 0, &data);
    assert_int_equal(n, 6);
    assert_memory_equal(data, "tail\n\n", 6);
    /* What follows a match stays buffered for the next read of any kind. */
    n = sq_stream_read_bytes(p.b, 4, false, &data);
    assert_int_equal(n, 4);
    assert_memory_equal(data, "rest", 4);
    sq_await(w, NULL);

    /* Data already buffered, several matches in it: the first one ends the read. */
    assert_int_equal(sq_stream_write(p.a, "a\n\nb\n\nc", 7), 0);
    sq_sleep(0.01);
    assert_int_equal(sq_stream_read_bytes(p.b, 1, true, &data), 1); /* buffer "a" … */
    n = sq_stream_read_until_regex(p.b, hdr_end, 0, &data);
    assert_int_equal(n, 2);
    n = sq_stream_read_until_regex(p.b, hdr_end, 0, &data);
    assert_int_equal(n, 3);
    assert_memory_equal(data, "b\n\n", 3);
    assert_int_equal(sq_stream_read_bytes(p.b, 1, false, &data), 1);

    /* A lookbehind sees bytes from an earlier read. */
    sq_regex *lb = sq_regex_new("(?<=X)Y", &err);
    assert_non_null(lb);
    static const char xy[] = "..XY";
    drip d2 = {p.a, xy, 4, 1, 0.005};
    w = sq_spawn(loop, dripper, &d2);
    n = sq_stream_read_until_regex(p.b, lb, 0, &data);
    assert_int_equal(n, 4);
    sq_await(w, NULL);

    /* The future form. */
    assert_int_equal(sq_stream_write(p.a, "k=v;", 4), 0);
    sq_regex *semi = sq_regex_new(";", NULL);
    void *v;
    assert_int_equal(sq_await(sq_stream_read_until_regex_future(p.b, semi, 0), &v), 4);
    assert_memory_equal(v, "k=v;", 4);
    assert_int_equal(sq_await(sq_stream_read_until_regex_future(p.b, NULL, 0), NULL), -EINVAL);

    sq_regex_free(semi);
    sq_regex_free(lb);
    sq_regex_free(hdr_end);
    sq_regex_free(marker);
    return NULL;
}

static void test_regex_split(void **state)
{
    sq_test_run_coro(loop, split_coro, NULL, 20);
}

static void *max_bytes_coro(void *arg)
{
    sq_regex *nl = sq_regex_new("\n", NULL);
    char junk[100];
    memset(junk, 'j', sizeof junk);
    assert_int_equal(sq_stream_write(p.a, junk, sizeof junk), 0);
    const char *data;
    /* No match within 50 bytes: the same error as read_until, and nothing is consumed. */
    assert_int_equal(sq_stream_read_until_regex(p.b, nl, 50, &data), -EMSGSIZE);
    assert_null(data);
    /* A match that ends past the limit is no better. */
    assert_int_equal(sq_stream_write(p.a, "\n", 1), 0);
    assert_int_equal(sq_stream_read_until_regex(p.b, nl, 50, &data), -EMSGSIZE);
    assert_false(sq_stream_closed(p.b));
    assert_int_equal(sq_stream_read_until_regex(p.b, nl, 101, &data), 101);
    assert_memory_equal(data, junk, 100);

    /* Dribbled with no match: the error comes once max_bytes have arrived. */
    static char more[300];
    memset(more, 'm', sizeof more);
    drip d = {p.a, more, sizeof more, 40, 0.002};
    sq_future *w = sq_spawn(loop, dripper, &d);
    assert_int_equal(sq_stream_read_until_regex(p.b, nl, 200, &data), -EMSGSIZE);
    sq_await(w, NULL);
    /* A closed stream without a match: SQ_ECLOSED. */
    sq_stream_close(p.a);
    assert_int_equal(sq_stream_read_until_regex(p.b, nl, 0, &data), SQ_ECLOSED);
    sq_regex_free(nl);
    return NULL;
}

static void test_regex_max_bytes(void **state)
{
    sq_test_run_coro(loop, max_bytes_coro, NULL, 20);
}

static void test_regex_bad_pattern(void **state)
{
    int err = 0;
    sq_log_set_level(SQ_LOG_OFF);
    assert_null(sq_regex_new("(unclosed", &err));
    sq_log_set_level(SQ_LOG_INFO);
    assert_int_equal(err, -EINVAL);
    assert_null(sq_regex_new(NULL, &err));
    assert_int_equal(err, -EINVAL);
    sq_regex_free(NULL);
}

/* The search resumes where a match may still begin, never from the start. */
static void test_regex_incremental(void **state)
{
    sq_regex *re = sq_regex_new("END\r\n", NULL);
    void *md = NULL;
    size_t from = 0, end = 0;
    const char *buf = "xxxxxxxxxxEN";
    /* A partial match at 10: every earlier start is settled. */
    assert_int_equal(sq__regex_search(re, &md, buf, 12, &from, &end), 0);
    assert_int_equal(from, 10);
    buf = "xxxxxxxxxxENyyyy";
    assert_int_equal(sq__regex_search(re, &md, buf, 16, &from, &end), 0);
    assert_int_equal(from, 16); /* nothing can start before the end any more */
    buf = "xxxxxxxxxxENyyyyEND\r\nzz";
    assert_int_equal(sq__regex_search(re, &md, buf, 23, &from, &end), 1);
    assert_int_equal(end, 21);
    sq__regex_md_free(md);
    sq_regex_free(re);
}

/* A long message arriving in many small writes is found, and quickly.  (Not a proof of
 * linearity: PCRE2's JIT rescans fast enough that a from-the-start search still passes this
 * bound; test_regex_incremental is what pins the resume offsets down.) */
static void *long_coro(void *arg)
{
    size_t len = 8u << 20;
    char *msg = malloc(len + 5);
    for (size_t i = 0; i < len; i++) msg[i] = (char)('a' + i % 23);
    memcpy(msg + len, "\r\n\r\n", 4);
    drip d = {p.a, msg, len + 4, 2048, 0};
    sq_future *w = sq_spawn(loop, dripper, &d);
    sq_regex *re = sq_regex_new("\r\n\r\n", NULL);
    double t0 = sq_test_now();
    const char *data;
    assert_int_equal(sq_stream_read_until_regex(p.b, re, 0, &data), (ssize_t)len + 4);
    double took = sq_test_now() - t0;
    assert_true(took < 15.0);
    assert_memory_equal(data, msg, 64);
    sq_await(w, NULL);
    sq_regex_free(re);
    free(msg);
    return NULL;
}

static void test_regex_long(void **state)
{
    sq_test_run_coro(loop, long_coro, NULL, 60);
}

/* --- read_into ------------------------------------------------------------------------------- */

static void *into_coro(void *arg)
{
    char buf[64];
    /* Full: 10 bytes, dribbled in 3-byte pieces. */
    drip d = {p.a, "0123456789", 10, 3, 0.002};
    sq_future *w = sq_spawn(loop, dripper, &d);
    memset(buf, 0, sizeof buf);
    assert_int_equal(sq_stream_read_into(p.b, buf, 10, false), 10);
    assert_memory_equal(buf, "0123456789", 10);
    sq_await(w, NULL);

    /* Partial: whatever is there, at least one byte, at most n. */
    assert_int_equal(sq_stream_write(p.a, "abc", 3), 0);
    ssize_t n = sq_stream_read_into(p.b, buf, sizeof buf, true);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(sq_stream_write(p.a, "defgh", 5), 0);
    assert_int_equal(sq_stream_read_into(p.b, buf, 2, true), 2);
    assert_memory_equal(buf, "de", 2);
    /* Buffered bytes come first ("fgh" are in the stream buffer now). */
    assert_int_equal(sq_stream_write(p.a, "ij", 2), 0);
    assert_int_equal(sq_stream_read_into(p.b, buf, 5, false), 5);
    assert_memory_equal(buf, "fghij", 5);
    /* n = 0 completes at once. */
    assert_int_equal(sq_stream_read_into(p.b, buf, 0, false), 0);

    /* The future form: the value is the caller's buffer. */
    assert_int_equal(sq_stream_write(p.a, "XYZ", 3), 0);
    void *v;
    assert_int_equal(sq_await(sq_stream_read_into_future(p.b, buf, 3, false), &v), 3);
    assert_ptr_equal(v, buf);
    assert_memory_equal(buf, "XYZ", 3);

    /* A timeout with half the bytes in: they go back to the stream, nothing is lost. */
    assert_int_equal(sq_stream_write(p.a, "half", 4), 0);
    sq_future *f = sq_with_timeout(sq_stream_read_into_future(p.b, buf, 8, false), 0.05);
    assert_int_equal(sq_await(f, NULL), -ETIMEDOUT);
    assert_int_equal(sq_stream_write(p.a, "more", 4), 0);
    assert_int_equal(sq_stream_read_into(p.b, buf, 8, false), 8);
    assert_memory_equal(buf, "halfmore", 8);

    /* The peer closes before n bytes: SQ_ECLOSED, and the bytes stay readable. */
    assert_int_equal(sq_stream_write(p.a, "tail", 4), 0);
    sq_sleep(0.01);
    sq_stream_close(p.a);
    assert_int_equal(sq_stream_read_into(p.b, buf, 10, false), SQ_ECLOSED);
    const char *data;
    assert_int_equal(sq_stream_read_bytes(p.b, 4, false, &data), 4);
    assert_memory_equal(data, "tail", 4);
    return NULL;
}

static void test_read_into(void **state)
{
    sq_test_run_coro(loop, into_coro, NULL, 20);
}

/* Larger than the socket buffer and than the stream's max buffer: read straight into buf. */
static void *into_big_coro(void *arg)
{
    size_t len = 4u << 20;
    char *src = malloc(len), *dst = malloc(len);
    for (size_t i = 0; i < len; i++) src[i] = (char)(i * 7 + i / 4096);
    sq_stream_set_high_water(p.a, 64 * 1024);
    drip d = {p.a, src, len, 256 * 1024, 0};
    sq_future *w = sq_spawn(loop, dripper, &d);
    assert_int_equal(sq_stream_read_into(p.b, dst, len, false), (ssize_t)len);
    assert_memory_equal(dst, src, len);
    sq_await(w, NULL);
    free(src);
    free(dst);
    return NULL;
}

static void test_read_into_big(void **state)
{
    sq_test_run_coro(loop, into_big_coro, NULL, 30);
}

static void test_outside_coroutine(void **state)
{
    char buf[4];
    sq_regex *re = sq_regex_new("x", NULL);
    sq_log_set_level(SQ_LOG_OFF);
    assert_int_equal(sq_stream_read_into(p.b, buf, 4, false), SQ_ENOTCORO);
    assert_int_equal(sq_stream_read_until_regex(p.b, re, 0, NULL), SQ_ENOTCORO);
    sq_log_set_level(SQ_LOG_INFO);
    sq_regex_free(re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_regex_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regex_max_bytes, setup, teardown),
        cmocka_unit_test(test_regex_bad_pattern),
        cmocka_unit_test(test_regex_incremental),
        cmocka_unit_test_setup_teardown(test_regex_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_into, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_into_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside_coroutine, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

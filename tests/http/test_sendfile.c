/* The HTTP/1.1 server, sq_http_sendfile: Content-Length bodies straight from a file
 * (with a buffered prefix), HEAD, keep-alive after them, a chunked piece after a flush,
 * a large file through a slow reader (the socket fills: the handler waits), and a file
 * shorter than promised (an error, and the connection closed rather than finished). */
#include "server_util.h"

#include <fcntl.h>

#define SMALL_SIZE 1000
#define BIG_SIZE   (8u << 20)

static char small_path[64], big_path[64];
static int short_rc, big_rc;
static int handled_short;

static char pattern(size_t i)
{
    return (char)('A' + i % 26 + (i / 26) % 3);
}

static void make_file(const char *path, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    char *d = malloc(size);
    for (size_t i = 0; i < size; i++) d[i] = pattern(i);
    assert_int_equal(write(fd, d, size), (ssize_t)size);
    free(d);
    close(fd);
}

static void sf_handler(sq_http_request *req, void *arg)
{
    bool big = req->path.len == 4 && !memcmp(req->path.ptr, "/big", 4);
    int fd = open(big ? big_path : small_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    if (req->path.len == 6 && !memcmp(req->path.ptr, "/small", 6)) {
        sq_http_set_header(req, "Content-Type", "application/octet-stream");
        sq_http_write(req, "pre:", 4);
        assert_int_equal(sq_http_sendfile(req, fd, 10, 100), 0);
        sq_http_write(req, "dropped", 7); /* the Content-Length body is complete */
    } else if (big) {
        big_rc = sq_http_sendfile(req, fd, 0, BIG_SIZE);
    } else if (req->path.len == 8 && !memcmp(req->path.ptr, "/chunked", 8)) {
        sq_http_write(req, "a", 1);
        assert_int_equal(sq_http_flush(req), 0);
        assert_int_equal(sq_http_sendfile(req, fd, 0, 100), 0);
        sq_http_write(req, "z", 1);
    } else if (req->path.len == 6 && !memcmp(req->path.ptr, "/short", 6)) {
        handled_short++;
        short_rc = sq_http_sendfile(req, fd, SMALL_SIZE - 100, 500);
    }
    /* the caller keeps the fd: it is still open and its offset unmoved */
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    assert_int_equal(close(fd), 0);
}

static bool slice_ok(const char *body, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (body[i] != pattern(off + i)) return false;
    return true;
}

static void sf_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    /* keep-alive: GET, HEAD, GET on one connection */
    CHECK(h, cl_sends(&c, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
                          "HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /small HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    for (int i = 0; i < 3; i++) {
        bool head = i == 1;
        CHECK(h, cl_response(&c, &r, head) == 0);
        CHECK(h, r.status == 200 && !r.chunked);
        CHECK(h, strcasestr(r.head, "\r\nContent-Length: 104\r\n") != NULL);
        CHECK(h, strcasestr(r.head, "Transfer-Encoding") == NULL);
        if (head) {
            CHECK(h, r.body_len == 0);
        } else {
            CHECK(h, r.body_len == 104 && !memcmp(r.body, "pre:", 4));
            CHECK(h, slice_ok(r.body + 4, 10, 100));
        }
        resp_free(&r);
    }
    /* after a flush: one more chunk */
    CHECK(h, cl_sends(&c, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.chunked && r.body_len == 102);
    CHECK(h, r.body[0] == 'a' && r.body[101] == 'z' && slice_ok(r.body + 1, 0, 100));
    resp_free(&r);
    /* a large file to a reader that starts late: the handler waits for the socket */
    CHECK(h, cl_sends(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(200000);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !r.chunked && r.body_len == BIG_SIZE);
    CHECK(h, strcasestr(r.head, "\r\nContent-Length: 8388608\r\n") != NULL);
    CHECK(h, r.body && slice_ok(r.body, 0, BIG_SIZE));
    resp_free(&r);
    /* still usable afterwards */
    CHECK(h, cl_sends(&c, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 104);
    resp_free(&r);
    /* a file shorter than promised: the head says 500 bytes, 100 come, then the close */
    CHECK(h, cl_sends(&c, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == -1);
    resp_free(&r);
    CHECK(h, cl_eof(&c));
    cl_close(&c);
    /* the same, read by hand */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    while (cl_fill(&c) > 0) {
    }
    char *end = c.len ? memmem(c.buf, c.len, "\r\n\r\n", 4) : NULL;
    CHECK(h, end != NULL);
    if (end) {
        CHECK(h, strcasestr(c.buf, "\r\nContent-Length: 500\r\n") != NULL);
        size_t got = c.len - (size_t)(end + 4 - c.buf);
        CHECK(h, got == 100 && slice_ok(end + 4, SMALL_SIZE - 100, 100));
    }
    cl_close(&c);
}

static void test_sendfile(void **state)
{
    snprintf(small_path, sizeof small_path, "/tmp/sq_sf_small.%d", (int)getpid());
    snprintf(big_path, sizeof big_path, "/tmp/sq_sf_big.%d", (int)getpid());
    make_file(small_path, SMALL_SIZE);
    make_file(big_path, BIG_SIZE);
    short_rc = big_rc = 1;
    handled_short = 0;
    run_with_client(NULL, sf_handler, NULL, sf_client, NULL, 60);
    unlink(small_path);
    unlink(big_path);
    assert_int_equal(big_rc, 0);
    assert_int_equal(handled_short, 2);
    assert_int_equal(short_rc, -EIO);
}

/* A client that goes away in the middle of a large body: an error, not a finished response */
static void gone_client(harness *h)
{
    cl c;
    memset(&c, 0, sizeof c);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int sz = 4096; /* a small window, before connect: the server's socket fills */
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(h, connect(c.fd, (struct sockaddr *)&a, sizeof a) == 0);
    c.cap = 1 << 16;
    c.buf = malloc(c.cap);
    CHECK(h, cl_sends(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_fill(&c) > 0);
    usleep(100000);
    cl_close(&c); /* unread data: RST */
    usleep(300000);
}

static void test_sendfile_client_gone(void **state)
{
    snprintf(big_path, sizeof big_path, "/tmp/sq_sf_big.%d", (int)getpid());
    make_file(big_path, BIG_SIZE);
    big_rc = 1;
    run_with_client(NULL, sf_handler, NULL, gone_client, NULL, 30);
    unlink(big_path);
    assert_true(big_rc < 0);
}

int main(void)
{
    (void)run_cmd;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_sendfile_client_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Request-head parse speed: a ~200-byte browser-like GET with 8 headers, parsed in a loop
 * (one shot, the way a request usually arrives), and the same head fed in 16-byte pieces.
 * Prints ns per request.  Usage: http_parse [--quick] */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "squall/http_parser.h"
#include "clock.h"

/* ~200 bytes, 8 header fields: what a browser sends for a small page. */
static const char small[] = "GET /index.html?page=2 HTTP/1.1\r\n"
                            "Host: www.example.com\r\n"
                            "User-Agent: Mozilla/5.0 Firefox/120.0\r\n"
                            "Accept: text/html,*/*\r\n"
                            "Accept-Language: en-US\r\n"
                            "Accept-Encoding: gzip\r\n"
                            "Cookie: sid=abc123\r\n"
                            "DNT: 1\r\n"
                            "Connection: keep-alive\r\n"
                            "\r\n";
/* A fuller one, like a real browser's image request. */
static const char big[] =
    "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
    "Host: www.kittyhell.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Firefox/120.0\r\n"
    "Accept: image/avif,image/webp,*/*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: http://www.kittyhell.com/\r\n"
    "Cookie: session=abc123\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static void run(const char *req, size_t len, long iters)
{
    sq_http_header headers[32];
    sq_http_request_head h;
    long sink = 0; /* consumed below so the parse cannot be optimised away */

    for (int round = 0; round < 2; round++) { /* the first round warms up */
        double t0 = now();
        for (long i = 0; i < iters; i++) {
            int r = sq_http_parse_request(req, len, 0, &h, headers, 32, NULL);
            sink += r + (long)h.nheaders;
        }
        double one_shot = (now() - t0) * 1e9 / (double)iters;

        long piece_iters = iters / 4;
        t0 = now();
        for (long i = 0; i < piece_iters; i++) {
            size_t prev = 0;
            int r = 0;
            for (size_t k = 16; r == 0; k += 16) {
                if (k > len) k = len;
                r = sq_http_parse_request(req, k, prev, &h, headers, 32, NULL);
                prev = k;
            }
            sink += r;
        }
        double pieces = (now() - t0) * 1e9 / (double)piece_iters;
        if (round == 1)
            printf("http_parse: %zu-byte GET, %zu headers: %.1f ns/request one-shot "
                   "(%.2f GB/s); %.1f ns/request in 16-byte pieces\n",
                   len, h.nheaders, one_shot, (double)len / one_shot, pieces);
    }
    if (sink == 42) puts("");
}

int main(int argc, char **argv)
{
    long iters = argc > 1 && strcmp(argv[1], "--quick") == 0 ? 200000 : 5000000;
    run(small, sizeof small - 1, iters);
    run(big, sizeof big - 1, iters);
    return 0;
}

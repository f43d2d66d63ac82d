/* libFuzzer target: the Sec-WebSocket-Extensions parser (permessage-deflate offers on the
 * server, the response on the client).  Byte 0 picks the server's settings.  Invariants:
 * an accepted offer yields a NUL-terminated response that the client-side parser accepts
 * with the same parameters; window bits stay within 8-15. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "ws/ws_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sq_ws_settings s = {.compression = true};
    s.no_context_takeover = data[0] & 1;
    s.max_window_bits = (data[0] >> 1) & 15; /* 0-15: 0 and < 8 mean the default */
    const char *hdr = (const char *)data + 1;
    size_t len = size - 1;
    sq__ws_pmd p, q;
    char resp[256];
    int r = sq__ws_pmd_accept(hdr, len, &s, &p, resp, sizeof resp);
    assert(r == 0 || r == 1);
    if (r == 1) {
        size_t rl = strlen(resp);
        assert(rl < sizeof resp);
        assert(p.server_bits >= 8 && p.server_bits <= 15);
        assert(p.client_bits >= 8 && p.client_bits <= 15);
        assert(sq__ws_pmd_response(resp, rl, &q) == 0);
        assert(q.server_no_ctx == p.server_no_ctx);
        assert(q.client_no_ctx == p.client_no_ctx);
        assert(q.server_bits == 15 || q.server_bits == p.server_bits);
    }
    if (sq__ws_pmd_response(hdr, len, &q) == 0) {
        assert(q.server_bits >= 8 && q.server_bits <= 15);
        assert(q.client_bits >= 8 && q.client_bits <= 15);
    }
    return 0;
}

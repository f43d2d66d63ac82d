/* Internals of the WebSocket layer: the frame parser and message assembler (frame.c), the
 * permessage-deflate negotiation and compressor (deflate.c), handshake helpers
 * (handshake.c) and the connection core shared by the server and the client (conn.c). */
#ifndef SQUALL_WS_INTERNAL_H
#define SQUALL_WS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../internal.h"
#include "../transport/transport.h"
#include "squall/websocket.h"

#define SQ__WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define SQ__WS_MAX_HANDSHAKE (64u * 1024) /* client: largest 101 response head accepted */

enum {
    SQ__WS_OP_CONT = 0x0,
    SQ__WS_OP_TEXT = 0x1,
    SQ__WS_OP_BINARY = 0x2,
    SQ__WS_OP_CLOSE = 0x8,
    SQ__WS_OP_PING = 0x9,
    SQ__WS_OP_PONG = 0xA,
};

/* --- UTF-8 (frame.c) -------------------------------------------------------------------- */

/* Incremental validator state: SQ__UTF8_OK between whole characters, SQ__UTF8_BAD once
 * invalid (sticky), anything else inside a character. */
#define SQ__UTF8_OK  0u
#define SQ__UTF8_BAD 0xffffffffu
uint32_t sq__utf8_step(uint32_t state, const uint8_t *p, size_t n);
/* Whole-string check. */
bool sq__utf8_valid(const void *p, size_t n);

/* --- permessage-deflate parameters (deflate.c) ------------------------------------------ */

typedef struct sq__ws_pmd {
    bool server_no_ctx, client_no_ctx;
    uint8_t server_bits, client_bits; /* 8-15; 15 when not negotiated lower */
} sq__ws_pmd;

/* Server: pick the first acceptable permessage-deflate offer in the extension header value
 * `hdr` (several offers, comma-separated).  Returns 1 with *out and the response value in
 * resp (NUL-terminated), 0 when no offer is acceptable (or none was made), -EINVAL when
 * resplen is too small. */
int sq__ws_pmd_accept(const char *hdr, size_t len, const sq_ws_settings *s, sq__ws_pmd *out,
                      char *resp, size_t resplen);
/* Client: check the server's extension response against our offer (client_max_window_bits
 * was offered, client_no_context_takeover when `no_ctx`).  0 with *out, or -EPROTO. */
int sq__ws_pmd_response(const char *hdr, size_t len, sq__ws_pmd *out);
/* The client's offer for `s` into buf (NUL-terminated); its length. */
size_t sq__ws_pmd_offer(const sq_ws_settings *s, char *buf, size_t buflen);

/* Our compressor (one direction). */
typedef struct sq__ws_tx {
    void *z;  /* z_stream *, allocated at the first message */
    int bits; /* 9-15; 0: never compress (the peer asked for an 8-bit window) */
    int level;
    bool no_ctx;
} sq__ws_tx;

/* Compress one message into out (appended, tail 00 00 ff ff stripped).  0 or -ENOMEM /
 * -EIO. */
int sq__ws_tx_compress(sq__ws_tx *tx, const void *data, size_t len, sq__buf *out);
void sq__ws_tx_free(sq__ws_tx *tx);

/* --- frame parser and message assembler (frame.c) ----------------------------------------- */

enum {
    SQ__WS_EV_NONE,    /* every byte consumed, nothing complete */
    SQ__WS_EV_MESSAGE, /* rx->msg holds a whole message (rx->msg_binary) */
    SQ__WS_EV_PING,    /* rx->ctrl / rx->clen */
    SQ__WS_EV_PONG,
    SQ__WS_EV_CLOSE, /* rx->close_code (1005 if none), reason rx->ctrl + 2, rx->clen - 2 */
    SQ__WS_EV_ERROR, /* rx->error: the close code to fail the connection with */
};

typedef struct sq__ws_rx {
    /* configuration */
    size_t max;   /* max_message_size */
    bool client;  /* we are the client: frames must be unmasked */
    bool deflate; /* permessage-deflate negotiated */
    bool inflate_no_ctx;
    uint8_t inflate_bits; /* the peer's negotiated window (inflate always uses 15) */
    bool inflate_ended;   /* the peer's deflate stream ended with the input fed so far */
    /* frame state */
    uint8_t hdr[14];
    uint8_t hlen, hneed;
    uint8_t opcode, fin, rsv1, masked;
    uint8_t mask[4];
    uint8_t mpos;
    uint8_t msg_op; /* opcode of the data message in progress, 0 if none */
    bool msg_compressed, msg_binary;
    uint8_t clen;
    uint16_t close_code;
    uint16_t error;
    uint32_t utf8;
    uint64_t left; /* payload bytes left in the current frame */
    uint64_t zin;  /* compressed bytes of the current message */
    sq__buf msg;   /* the message being assembled */
    void *z;       /* z_stream * for inflate, allocated at the first compressed message */
    uint8_t ctrl[125];
    struct sq__ws_pool *pool; /* where message buffers come from and go back (or NULL) */
} sq__ws_rx;

/* Buffers of SQ__WS_POOL_BUF bytes that connections take for a message or their output
 * and give back as soon as it is done (an idle connection keeps none), kept per loop so
 * that a stream of small messages costs no malloc/free each.  Freed with the loop. */
#define SQ__WS_POOL_BUF 1024
typedef struct sq__ws_pool sq__ws_pool;
/* The loop's pool (made on first use; NULL if out of memory: then malloc/free). */
sq__ws_pool *sq__ws_pool_for(sq_loop *loop);
/* Give the empty b a pooled buffer; false if none is pooled. */
bool sq__ws_pool_take(sq__ws_pool *p, sq__buf *b);
/* b's buffer goes back to the pool if it has the pooled size and there is room, else it is
 * freed; b is empty after. */
void sq__ws_pool_give(sq__ws_pool *p, sq__buf *b);

void sq__ws_rx_init(sq__ws_rx *rx, bool client, size_t max);
/* Consume bytes of `data` (unmasked in place) until an event: returns it, *used = bytes
 * consumed.  After SQ__WS_EV_ERROR the parser stays failed. */
int sq__ws_rx_feed(sq__ws_rx *rx, uint8_t *data, size_t len, size_t *used);
/* The message was handled: drop its buffer. */
void sq__ws_rx_msg_done(sq__ws_rx *rx);
void sq__ws_rx_free(sq__ws_rx *rx);

/* Append one frame.  mask: 4 bytes or NULL (server).  0 or -ENOMEM. */
int sq__ws_encode(sq__buf *out, unsigned opcode, bool fin, bool rsv1, const void *data, size_t len,
                  const uint8_t *mask);
/* Whether a close code may appear on the wire. */
bool sq__ws_close_code_valid(unsigned code);

/* --- handshake (handshake.c) ---------------------------------------------------------------- */

/* Sec-WebSocket-Accept for a key: 28 characters + NUL into out. */
void sq__ws_accept_key(const char *key, size_t len, char out[29]);
/* Whether a Sec-WebSocket-Key is 24 base64 characters decoding to 16 bytes. */
bool sq__ws_key_valid(const char *key, size_t len);
/* Whether the comma-separated list `v` holds `token` (case-insensitive). */
bool sq__ws_has_token(const char *v, size_t len, const char *token);
/* 16 random bytes (from the PRNG) base64-encoded: 24 characters + NUL. */
void sq__ws_make_key(char out[25]);
/* A fast per-thread PRNG seeded from getrandom(). */
uint64_t sq__ws_rand(void);

/* --- the connection core (conn.c) ------------------------------------------------------------ */

/* A new connection over a connected socket `fd` (owned from now on).  cls: server class or
 * NULL for a client; settings: resolved by the caller (must outlive the connection, or
 * NULL to use the copy inside the struct for clients).  NULL on -ENOMEM (fd not closed). */
sq_ws *sq__ws_new(sq_loop *loop, int fd, const sq_ws_class *cls, const sq_ws_settings *client_s);
/* Free a connection that was never started (no on_close), closing its fd if asked. */
void sq__ws_discard(sq_ws *ws, bool close_fd);
/* sizeof(struct sq_ws), for the memory tests. */
size_t sq__ws_sizeof(void);
/* Enable permessage-deflate with the negotiated parameters. */
int sq__ws_set_deflate(sq_ws *ws, const sq__ws_pmd *pmd);
/* Take ownership of the malloc'd subprotocol string. */
void sq__ws_set_subprotocol(sq_ws *ws, char *proto);
void sq__ws_set_remote_ip(sq_ws *ws, const char *ip);
/* Bytes received after the handshake head (copied). */
int sq__ws_set_initial(sq_ws *ws, const char *data, size_t len);
/* The connection's transport (TLS), NULL for a plain socket; freed with the connection. */
void sq__ws_set_transport(sq_ws *ws, sq__tp *tp);
/* Server: run open() on the calling (handshake) coroutine with the handler set, then
 * start driving the connection from the loop. */
void sq__ws_server_start(sq_ws *ws, sq_handler *h);
/* Client: start reading. */
void sq__ws_client_start(sq_ws *ws);

#endif

/* The demo app's parts: each feature's handler classes live in a file of their own in
 * examples/demo/ and are routed from examples/demo.c. */
#ifndef SQUALL_DEMO_H
#define SQUALL_DEMO_H

#include <squall.h>
#include <squall/websocket.h>

/* /gather: three concurrent sq_fetch calls of /async (examples/demo/gather.c). */
extern const sq_handler_class demo_gather_handler;
/* The HTTP client /gather uses (created on first use), and its release at exit. */
sq_http_client *demo_client(void);
void demo_client_free(void);

/* prime.c — /ws/prime: answers whether each number sent is prime (large ones on the
 * executor). */
extern sq_ws_class demo_prime_ws;

/* chat.c — one chat room over WebSockets and long polling: /ws/chat (demo_chat_ws), the
 * page /chat, GET /chat/poll?cursor=N[&timeout=S] and POST /chat/send (field "text"). */
extern sq_ws_class demo_chat_ws;
extern const sq_handler_class demo_chat_page, demo_chat_poll, demo_chat_send;
/* Share the room through the Redis at `url` (redis://, rediss://, unix://) instead of
 * keeping it in this process; call it in every process (after sq_fork_processes).  Starts
 * connecting in the background; -EINVAL for a bad URL. */
int demo_chat_use_redis(sq_loop *loop, const char *url);
/* Close the Redis connections and free the history (at exit). */
void demo_chat_shutdown(void);

#endif

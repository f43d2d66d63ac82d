/* A chat room, reachable two ways at once (Tornado's websocket and long-polling chat demos in
 * one):
 *
 *   /ws/chat     WebSocket: every text message is published to everyone; each published
 *                message arrives as JSON {"id":7,"ip":"127.0.0.1","text":"hi","time":…}.
 *                New connections first get the recent history, oldest first.
 *   /chat        an HTML page with inline JavaScript using /ws/chat.
 *   /chat/poll   GET ?cursor=N[&timeout=S]: waits — suspended, holding no thread — until a
 *                message with id > N exists or S seconds (default and maximum 30, minimum
 *                0.1) pass, then answers {"messages":[…],"cursor":M}; without a cursor it
 *                waits for the next new message.
 *   /chat/send   POST a form field or a JSON body "text": publishes to both kinds of
 *                listener and answers the message as JSON.
 *
 * The last CHAT_HISTORY messages are kept in a ring; text is at most CHAT_MAX_TEXT bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "demo.h"

#define CHAT_HISTORY      200
#define CHAT_MAX_TEXT     4096
#define CHAT_POLL_TIMEOUT 30.0
/* Bytes queued to one WebSocket beyond what its socket holds: a broadcast finding more
 * closes it as too slow, and the history replay waits while there is more. */
#define CHAT_SLOW_CLIENT (32u << 10)

typedef struct chat_msg {
    uint64_t id;
    json_t *obj; /* {"id","ip","text","time"} */
    char *json;  /* obj serialized once, sent as is to every WebSocket */
} chat_msg;

/* One connected WebSocket: its per-connection state, linked into the room. */
typedef struct chat_conn {
    struct chat_conn *prev, *next;
    sq_ws *ws;
} chat_conn;

static struct {
    chat_msg ring[CHAT_HISTORY];
    size_t count;          /* messages in the ring (the newest is ring[(last_id-1) % N]) */
    uint64_t last_id;      /* ids start at 1 */
    chat_conn *conns;      /* connected WebSockets */
    sq_condition *arrived; /* long-pollers wait here; notified on every message */
} chat;

static sq_condition *chat_condition(void)
{
    if (!chat.arrived) chat.arrived = sq_condition_new(sq_loop_current());
    return chat.arrived;
}

static const chat_msg *chat_at(uint64_t id)
{
    return &chat.ring[(id - 1) % CHAT_HISTORY];
}

/* The oldest id still in the ring (last_id + 1 when empty). */
static uint64_t chat_first_id(void)
{
    return chat.last_id - chat.count + 1;
}

static bool text_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* Store the message and hand it to every listener.  NULL when the text is not UTF-8 or
 * memory ran out; the returned message belongs to the ring. */
static const chat_msg *chat_publish(const char *ip, const char *text, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *obj =
        json_pack("{s:I, s:s, s:s%, s:f}", "id", (json_int_t)(chat.last_id + 1), "ip", ip ? ip : "",
                  "text", text, len, "time", (double)ts.tv_sec + ts.tv_nsec / 1e9);
    char *json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (!json) {
        json_decref(obj);
        return NULL;
    }
    chat.last_id++;
    chat_msg *m = &chat.ring[(chat.last_id - 1) % CHAT_HISTORY];
    if (chat.count == CHAT_HISTORY) {
        json_decref(m->obj);
        free(m->json);
    } else {
        chat.count++;
    }
    *m = (chat_msg){.id = chat.last_id, .obj = obj, .json = json};

    size_t jlen = strlen(json);
    for (chat_conn *c = chat.conns, *next; c; c = next) {
        next = c->next;
        /* A reader that does not keep up is dropped rather than buffered without bound:
         * sq_ws_send says 1 once more than high_water (CHAT_SLOW_CLIENT) is queued. */
        if (sq_ws_send(c->ws, json, jlen, false) == 1)
            sq_ws_close(c->ws, SQ_WS_CLOSE_POLICY, "too slow");
    }
    if (chat.arrived) sq_condition_notify_all(chat.arrived);
    return m;
}

/* --- /ws/chat ---------------------------------------------------------------------------- */

/* Replay the history, oldest first, then join the room.  The replay uses the awaitable
 * write: it goes at the pace the client reads, with at most CHAT_SLOW_CLIENT queued (the
 * same bound a broadcast applies), and a client that reads nothing is dropped by the write
 * timeout.  Messages published meanwhile are part of the replay (the loop reads last_id
 * afresh), so joining afterwards loses none and repeats none. */
static void chat_ws_open(sq_ws *ws)
{
    chat_conn *c = sq_ws_state(ws);
    for (uint64_t id = chat_first_id(); id <= chat.last_id && !sq_ws_closed(ws); id++) {
        if (id < chat_first_id()) id = chat_first_id(); /* the ring moved on while we waited */
        const chat_msg *m = chat_at(id);
        if (sq_ws_write(ws, m->json, strlen(m->json), false) < 0) break;
    }
    if (sq_ws_closed(ws)) return; /* on_close sees c->ws NULL: never joined */
    c->ws = ws;
    c->next = chat.conns;
    if (chat.conns) chat.conns->prev = c;
    chat.conns = c;
}

static void chat_ws_message(sq_ws *ws, const char *data, size_t len, bool binary)
{
    if (binary) {
        sq_ws_close(ws, SQ_WS_CLOSE_UNSUPPORTED, "text messages only");
        return;
    }
    if (text_blank(data, len)) return;
    chat_publish(sq_ws_remote_ip(ws), data, len);
}

static void chat_ws_close(sq_ws *ws)
{
    chat_conn *c = sq_ws_state(ws);
    if (!c->ws) return; /* closed before open ran */
    if (c->prev)
        c->prev->next = c->next;
    else
        chat.conns = c->next;
    if (c->next) c->next->prev = c->prev;
}

sq_ws_class demo_chat_ws = {
    .open = chat_ws_open,
    .on_message = chat_ws_message,
    .on_close = chat_ws_close,
    .state_size = sizeof(chat_conn),
    /* Chat text compresses well, and pings find peers that vanished without a FIN. */
    .settings = {.max_message_size = CHAT_MAX_TEXT,
                 .ping_interval = 30,
                 .compression = true,
                 .high_water = CHAT_SLOW_CLIENT},
};

/* --- /chat/poll and /chat/send ------------------------------------------------------------ */

typedef struct poll_state {
    bool gone; /* the client left while we were waiting */
} poll_state;

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9') return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static void write_error_json(sq_handler *h, int status, const char *msg)
{
    sq_set_status(h, status, NULL);
    sq_write_json(h, json_pack("{s:s}", "error", msg));
}

static void chat_poll_get(sq_handler *h)
{
    poll_state *st = sq_handler_state(h);
    uint64_t cursor = chat.last_id;
    const char *cs = sq_get_query_argument(h, "cursor", NULL);
    if (cs && !parse_u64(cs, &cursor)) {
        write_error_json(h, 400, "cursor must be a message id (a non-negative integer)");
        return;
    }
    /* A cursor from the future (a client that saw an earlier run of the demo): answer at
     * once with the whole history, so that it resynchronises instead of waiting forever
     * for ids it believes it has seen. */
    if (cursor > chat.last_id) cursor = 0;
    double timeout = strtod(sq_get_query_argument(h, "timeout", "30"), NULL);
    if (!(timeout >= 0.1)) timeout = isnan(timeout) ? CHAT_POLL_TIMEOUT : 0.1;
    if (timeout > CHAT_POLL_TIMEOUT) timeout = CHAT_POLL_TIMEOUT;

    sq_condition *cond = chat_condition();
    sq_loop *loop = sq_loop_current();
    sq_loop_update_time(loop);
    double deadline = sq_loop_time(loop) + timeout;
    while (chat.last_id <= cursor && !st->gone && cond) {
        double left = deadline - sq_loop_time(loop);
        if (left <= 0 || sq_condition_wait(cond, left) < 0) break;
        sq_loop_update_time(loop);
    }
    if (st->gone) return;

    json_t *msgs = json_array();
    uint64_t id = cursor + 1 > chat_first_id() ? cursor + 1 : chat_first_id();
    for (; msgs && id <= chat.last_id; id++) json_array_append(msgs, chat_at(id)->obj);
    uint64_t upto = chat.last_id > cursor ? chat.last_id : cursor;
    sq_set_header(h, "Cache-Control", "no-store");
    sq_write_json(h, json_pack("{s:o, s:I}", "messages", msgs, "cursor", (json_int_t)upto));
}

/* The client went away: wake the waiters so that this one stops (the others go back to
 * waiting for their remaining time). */
static void chat_poll_close(sq_handler *h)
{
    poll_state *st = sq_handler_state(h);
    st->gone = true;
    if (chat.arrived) sq_condition_notify_all(chat.arrived);
}

const sq_handler_class demo_chat_poll = {
    .get = chat_poll_get,
    .on_connection_close = chat_poll_close,
    .state_size = sizeof(poll_state),
};

static void chat_send_post(sq_handler *h)
{
    sq_http_request *req = sq_handler_request(h);
    sq_str ct = sq_http_header_get(req, "Content-Type");
    const char *text = NULL;
    size_t len = 0;
    json_t *body = NULL;
    if (ct.ptr && ct.len >= 16 && strncasecmp(ct.ptr, "application/json", 16) == 0) {
        sq_str b = sq_get_body(h);
        body = json_loadb(b.ptr ? b.ptr : "", b.len, 0, NULL);
        json_t *t = json_object_get(body, "text");
        if (json_is_string(t)) {
            text = json_string_value(t);
            len = json_string_length(t);
        }
    } else {
        text = sq_get_body_argument(h, "text", NULL);
        len = text ? strlen(text) : 0;
    }
    if (!text || text_blank(text, len)) {
        write_error_json(h, 400, "send a non-empty \"text\" (form field or JSON)");
    } else if (len > CHAT_MAX_TEXT) {
        write_error_json(h, 413, "text is longer than 4096 bytes");
    } else {
        const chat_msg *m = chat_publish(req->remote_ip, text, len);
        if (m)
            sq_write_json(h, json_incref(m->obj));
        else
            write_error_json(h, 400, "text must be UTF-8");
    }
    json_decref(body);
}

const sq_handler_class demo_chat_send = {.post = chat_send_post};

/* --- /chat ------------------------------------------------------------------------------- */

static const char chat_html[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>squall chat</title>"
    "<link rel=\"stylesheet\" href=\"/static/style.css\">"
    "<style>#messages{list-style:none;padding:0;max-height:60vh;overflow-y:auto}"
    "#messages .ip{color:#888;margin-right:.5em}#text{width:70%}</style></head><body>"
    "<h1>Chat</h1><p>Every message goes to everyone here, over the WebSocket /ws/chat "
    "(long-polling clients use /chat/poll and /chat/send). Status: "
    "<span id=\"status\">connecting</span></p>"
    "<ul id=\"messages\"></ul>"
    "<form id=\"form\"><input id=\"text\" autocomplete=\"off\" maxlength=\"4096\" autofocus>"
    " <button>Send</button></form>"
    "<script>\n"
    "const list = document.getElementById('messages');\n"
    "const status = document.getElementById('status');\n"
    "const input = document.getElementById('text');\n"
    "const seen = new Set();\n"
    "let ws;\n"
    "function show(m) {\n"
    "  if (seen.has(m.id)) return;\n"
    "  seen.add(m.id);\n"
    "  const li = document.createElement('li');\n"
    "  li.dataset.id = m.id;\n"
    "  const ip = document.createElement('span');\n"
    "  ip.className = 'ip';\n"
    "  ip.textContent = m.ip;\n"
    "  li.append(ip, document.createTextNode(m.text));\n"
    "  list.append(li);\n"
    "  list.scrollTop = list.scrollHeight;\n"
    "}\n"
    "function connect() {\n"
    "  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';\n"
    "  ws = new WebSocket(proto + '//' + location.host + '/ws/chat');\n"
    "  ws.onopen = () => { status.textContent = 'connected'; };\n"
    "  ws.onmessage = (e) => show(JSON.parse(e.data));\n"
    "  ws.onclose = (e) => {\n"
    "    status.textContent = 'disconnected (' + e.code + '), retrying';\n"
    "    setTimeout(connect, 2000);\n"
    "  };\n"
    "}\n"
    "document.getElementById('form').addEventListener('submit', (e) => {\n"
    "  e.preventDefault();\n"
    "  if (input.value.trim() && ws && ws.readyState === WebSocket.OPEN) {\n"
    "    ws.send(input.value);\n"
    "    input.value = '';\n"
    "  }\n"
    "});\n"
    "connect();\n"
    "</script></body></html>";

static void chat_page_get(sq_handler *h)
{
    sq_write_bytes(h, chat_html, sizeof chat_html - 1);
}

const sq_handler_class demo_chat_page = {.get = chat_page_get};

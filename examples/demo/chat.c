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
 * Where messages live — one small interface (chat_publish), two implementations:
 *
 *   in-process (the default)  ids come from a counter in this process, history is the ring
 *                below, and publishing hands the message straight to this process's
 *                listeners.  Each process of `--processes N` is a room of its own.
 *   Redis (demo_chat_use_redis, the demo's --redis URL)  one room for every process and
 *                host sharing that Redis.  Publishing runs one script on the server
 *                (CHAT_SCRIPT): the id from INCR, the message appended to a capped list (the
 *                history) and PUBLISHed.  Every process subscribes and fans what arrives out
 *                to its own WebSocket and long-poll clients, the sender's own process
 *                included, so ids, cursors and history are the same everywhere.  The ring
 *                is then this process's copy of the shared history, loaded with LRANGE at
 *                start and again after every reconnect (what was missed meanwhile).
 *                While Redis is unreachable a message still reaches the clients of the
 *                process it was sent to, marked {"id":null,"local":true,…} (it has no place
 *                in the shared history), and the sender is told: the WebSocket gets
 *                {"error":…} and POST /chat/send answers 503 with the error and the message.
 *                Nothing is queued for later.
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
#include <squall/redis.h>

#include "demo.h"

#define CHAT_HISTORY      200
#define CHAT_MAX_TEXT     4096
#define CHAT_POLL_TIMEOUT 30.0
/* Local-only messages (Redis unreachable) kept for long-pollers that are waiting. */
#define CHAT_LOCAL 64
/* Bytes queued to one WebSocket beyond what its socket holds: a broadcast finding more
 * closes it as too slow, and the history replay waits while there is more. */
#define CHAT_SLOW_CLIENT (32u << 10)

/* The Redis keys and channel (one room per Redis database). */
#define CHAT_KEY_ID      "squall:chat:id"
#define CHAT_KEY_HISTORY "squall:chat:history"
#define CHAT_CHANNEL     "squall:chat"
/* KEYS: id counter, history list, channel; ARGV: the message's JSON without its opening
 * brace and id, the history length.  Atomic on the server, so ids, history order and
 * publication order agree. */
#define CHAT_SCRIPT                                                                            \
    "local id = redis.call('INCR', KEYS[1]) "                                                  \
    "local msg = '{\"id\":' .. id .. ',' .. ARGV[1] "                                          \
    "redis.call('RPUSH', KEYS[2], msg) "                                                       \
    "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1) "                                    \
    "redis.call('PUBLISH', KEYS[3], msg) "                                                     \
    "return msg"

/* After a (re)connect: a Redis that lost the room (restarted without persistence) gets it
 * back from this process — the id counter never goes below what we have seen (ids must not
 * be reused: they are the cursors) and an empty history is refilled with our copy.  KEYS:
 * id counter, history; ARGV: our last id, then our messages oldest first. */
#define CHAT_RESEED_SCRIPT                                                                     \
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') "                                 \
    "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end "                 \
    "if #ARGV > 1 and redis.call('LLEN', KEYS[2]) == 0 then "                                  \
    "  for i = 2, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end "                         \
    "end "                                                                                     \
    "return cur"

typedef struct chat_msg {
    uint64_t id; /* 0: an empty slot */
    json_t *obj; /* {"id","ip","text","time"} */
    char *json;  /* obj serialized once, sent as is to every WebSocket */
} chat_msg;

/* One connected WebSocket: its per-connection state, linked into the room. */
typedef struct chat_conn {
    struct chat_conn *prev, *next;
    sq_ws *ws;
} chat_conn;

static struct {
    chat_msg ring[CHAT_HISTORY]; /* message id lives in ring[(id - 1) % CHAT_HISTORY] */
    uint64_t last_id;            /* the highest id kept (ids start at 1) */
    chat_conn *conns;            /* connected WebSockets */
    sq_condition *arrived;       /* long-pollers wait here; notified on every message */
    /* Redis mode */
    sq_loop *loop;
    char *redis_url;
    sq_redis *redis;     /* commands: the publishing script, LRANGE */
    sq_redis_sub *sub;   /* the room's channel */
    bool redis_closing;  /* demo_chat_shutdown ran */
    bool connecting;     /* the command client's first connect is under way */
    /* messages that reached this process only (Redis unreachable), for waiting pollers */
    struct {
        uint64_t seq;
        json_t *obj;
    } local[CHAT_LOCAL];
    uint64_t local_seq;
} chat;

static sq_condition *chat_condition(void)
{
    if (!chat.arrived) chat.arrived = sq_condition_new(sq_loop_current());
    return chat.arrived;
}

/* Message `id`, or NULL if this process does not hold it (too old, or missed). */
static const chat_msg *chat_at(uint64_t id)
{
    const chat_msg *m = &chat.ring[(id - 1) % CHAT_HISTORY];
    return id && m->id == id ? m : NULL;
}

/* The oldest id the ring can still hold. */
static uint64_t chat_first_id(void)
{
    return chat.last_id >= CHAT_HISTORY ? chat.last_id - CHAT_HISTORY + 1 : 1;
}

static bool text_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* Hand a serialized message to every WebSocket and wake the long-pollers. */
static void chat_fan_out(const char *json)
{
    size_t jlen = strlen(json);
    for (chat_conn *c = chat.conns, *next; c; c = next) {
        next = c->next;
        /* A reader that does not keep up is dropped rather than buffered without bound:
         * sq_ws_send says 1 once more than high_water (CHAT_SLOW_CLIENT) is queued. */
        if (sq_ws_send(c->ws, json, jlen, false) == 1)
            sq_ws_close(c->ws, SQ_WS_CLOSE_POLICY, "too slow");
    }
    if (chat.arrived) sq_condition_notify_all(chat.arrived);
}

/* Keep message `id` (taking obj and json) and fan it out, unless it is already here or
 * older than the ring reaches.  Returns the stored message, or NULL (then both were
 * freed). */
static const chat_msg *chat_store(uint64_t id, json_t *obj, char *json)
{
    if (!id || (chat.last_id >= CHAT_HISTORY && id < chat.last_id - CHAT_HISTORY + 1) ||
        chat_at(id)) {
        json_decref(obj);
        free(json);
        return NULL;
    }
    chat_msg *m = &chat.ring[(id - 1) % CHAT_HISTORY];
    json_decref(m->obj);
    free(m->json);
    *m = (chat_msg){.id = id, .obj = obj, .json = json};
    if (id > chat.last_id) chat.last_id = id;
    chat_fan_out(json);
    return m;
}

/* The message object ({"id":…,"ip","text","time"}; id null and "local" for local-only) or
 * NULL when the text is not UTF-8 or memory ran out. */
static json_t *chat_message_new(json_t *id, const char *ip, const char *text, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return json_pack("{s:o, s:s, s:s%, s:f}", "id", id, "ip", ip ? ip : "", "text", text, len,
                     "time", (double)ts.tv_sec + ts.tv_nsec / 1e9);
}

/* In-process: the next id, kept in the ring, handed to every listener.  The returned
 * message belongs to the ring. */
static const chat_msg *chat_publish_local(const char *ip, const char *text, size_t len)
{
    json_t *obj = chat_message_new(json_integer((json_int_t)(chat.last_id + 1)), ip, text, len);
    char *json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (!json) {
        json_decref(obj);
        return NULL;
    }
    return chat_store(chat.last_id + 1, obj, json);
}

/* Redis unreachable: the message goes to this process's clients only. */
static json_t *chat_publish_stranded(const char *ip, const char *text, size_t len)
{
    json_t *obj = chat_message_new(json_null(), ip, text, len);
    if (!obj || json_object_set_new(obj, "local", json_true()) < 0) {
        json_decref(obj);
        return NULL;
    }
    char *json = json_dumps(obj, JSON_COMPACT);
    if (!json) {
        json_decref(obj);
        return NULL;
    }
    size_t slot = chat.local_seq++ % CHAT_LOCAL;
    json_decref(chat.local[slot].obj);
    chat.local[slot].seq = chat.local_seq;
    chat.local[slot].obj = json_incref(obj);
    chat_fan_out(json);
    free(json);
    return obj;
}

/* A message as Redis holds it, parsed: its id (0 if malformed) and object. */
static uint64_t chat_parse(const char *data, size_t len, json_t **obj)
{
    *obj = json_loadb(data, len, 0, NULL);
    json_t *id = json_object_get(*obj, "id");
    if (!json_is_integer(id) || json_integer_value(id) <= 0) {
        json_decref(*obj);
        *obj = NULL;
        return 0;
    }
    return (uint64_t)json_integer_value(id);
}

/* Redis: run the script (on the calling coroutine).  Returns 0 with the message in *out
 * (a new reference), or a negative error with *out NULL: -EINVAL for text that is not UTF-8,
 * else the Redis client's error (-ENOTCONN while it is down …). */
static int chat_publish_redis(const char *ip, const char *text, size_t len, json_t **out)
{
    *out = NULL;
    json_t *rest = chat_message_new(json_null(), ip, text, len);
    if (!rest) return -EINVAL;
    json_object_del(rest, "id");
    char *rs = json_dumps(rest, JSON_COMPACT); /* {"ip":…,"text":…,"time":…} */
    json_decref(rest);
    if (!rs) return -ENOMEM;
    int err = -ENOTCONN;
    sq_redis_reply *rep = NULL;
    if (chat.redis)
        rep = sq_redis_cmd(chat.redis, &err, "EVAL %s 3 %s %s %s %s %d", CHAT_SCRIPT,
                           CHAT_KEY_ID, CHAT_KEY_HISTORY, CHAT_CHANNEL, rs + 1, CHAT_HISTORY);
    free(rs);
    if (!err && rep && rep->type == SQ_REDIS_REPLY_STRING) chat_parse(rep->str, rep->len, out);
    if (!err && !*out) err = -EPROTO;
    if (err == SQ_EREDIS && rep) sq_log(SQ_LOG_WARNING, "chat: redis: %s", rep->str);
    sq_redis_reply_free(rep);
    return err;
}

/* Publish from a coroutine, whichever the backend.  0 with the message in *out (a new
 * reference); or an error: -EINVAL (not UTF-8), -ENOMEM, or — Redis unreachable — the
 * Redis error with *out the message that reached this process only. */
static int chat_publish(const char *ip, const char *text, size_t len, json_t **out)
{
    *out = NULL;
    if (!chat.redis_url) {
        const chat_msg *m = chat_publish_local(ip, text, len);
        if (!m) return -EINVAL;
        *out = json_incref(m->obj);
        return 0;
    }
    int err = chat_publish_redis(ip, text, len, out);
    if (err == 0 || err == -EINVAL || err == -ENOMEM) return err;
    *out = chat_publish_stranded(ip, text, len);
    return err;
}

static char *chat_unavailable(int err)
{
    char *msg = NULL;
    if (asprintf(&msg, "the chat's Redis is unreachable (%s): the message reached this "
                       "process's clients only",
                 sq_strerror(err)) < 0)
        msg = NULL;
    return msg;
}

/* --- Redis: connections, the subscription, history ---------------------------------------- */

static void chat_on_message(sq_redis_sub *s, const char *channel, size_t channel_len,
                            const char *data, size_t len, void *arg)
{
    json_t *obj;
    uint64_t id = chat_parse(data, len, &obj);
    if (!id) {
        sq_log(SQ_LOG_WARNING, "chat: a malformed message on %s ignored", CHAT_CHANNEL);
        return;
    }
    char *json = strndup(data, len);
    if (!json) {
        json_decref(obj);
        return;
    }
    chat_store(id, obj, json);
}

/* Give a Redis that forgot the room (CHAT_RESEED_SCRIPT) what this process holds. */
static void chat_reseed(void)
{
    enum { FIXED = 6 };
    const char *argv[FIXED + CHAT_HISTORY];
    char last[24], nkeys[] = "2";
    snprintf(last, sizeof last, "%llu", (unsigned long long)chat.last_id);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = CHAT_RESEED_SCRIPT;
    argv[argc++] = nkeys;
    argv[argc++] = CHAT_KEY_ID;
    argv[argc++] = CHAT_KEY_HISTORY;
    argv[argc++] = last;
    for (uint64_t id = chat_first_id(); chat.last_id && id <= chat.last_id; id++) {
        const chat_msg *m = chat_at(id);
        if (m) argv[argc++] = m->json;
    }
    int err;
    sq_redis_reply *rep = sq_redis_cmd_argv(chat.redis, &err, argc, argv, NULL);
    if (!err && rep && rep->type == SQ_REDIS_REPLY_INTEGER &&
        (uint64_t)rep->integer < chat.last_id)
        sq_log(SQ_LOG_WARNING, "chat: redis had lost the room (id %lld < %llu): given back",
               rep->integer, (unsigned long long)chat.last_id);
    sq_redis_reply_free(rep);
}

/* Load the shared history (at start, and after a reconnect: what was published meanwhile).
 * Runs once the subscription is confirmed and once the command client is up — whichever
 * comes last finds both ready — so nothing falls between subscribing and loading. */
static void *chat_resync(void *arg)
{
    if (!chat.redis || !sq_redis_connected(chat.redis) || !chat.sub ||
        !sq_redis_sub_connected(chat.sub))
        return NULL;
    chat_reseed();
    int err;
    sq_redis_reply *rep =
        sq_redis_cmd(chat.redis, &err, "LRANGE %s %d -1", CHAT_KEY_HISTORY, -CHAT_HISTORY);
    if (!err && rep && rep->type == SQ_REDIS_REPLY_ARRAY) {
        size_t added = 0;
        for (size_t i = 0; i < rep->elements; i++) {
            json_t *obj;
            const sq_redis_reply *e = rep->element[i];
            uint64_t id = e->type == SQ_REDIS_REPLY_STRING ? chat_parse(e->str, e->len, &obj) : 0;
            char *json = id ? strndup(e->str, e->len) : NULL;
            if (json && chat_store(id, obj, json)) added++;
            else if (id && !json) json_decref(obj);
        }
        sq_log(SQ_LOG_INFO, "chat: history from redis: %zu messages, %zu new, last id %llu",
               (size_t)rep->elements, added, (unsigned long long)chat.last_id);
    } else if (err) {
        sq_log(SQ_LOG_WARNING, "chat: loading the history from redis failed: %s",
               sq_strerror(err));
    }
    sq_redis_reply_free(rep);
    return NULL;
}

static void *chat_connect_redis(void *arg);

static void chat_redis_state(sq_redis *r, bool up, void *arg)
{
    bool is_sub = chat.sub && r == sq_redis_sub_conn(chat.sub);
    sq_log(up ? SQ_LOG_INFO : SQ_LOG_WARNING, "chat: redis %s %s", is_sub ? "subscriber" : "client",
           up ? "connected" : "lost, reconnecting");
    if (up) sq_go(chat.loop, chat_resync, NULL);
}

/* The command client's first connection (later ones are the client's own reconnects):
 * retried every second until Redis answers, so the demo may start before Redis. */
static void *chat_connect_redis(void *arg)
{
    /* (no blocking commands here: a reply 10 s late means a frozen server) */
    sq_redis_options o = {.on_state = chat_redis_state, .socket_timeout = 10.0};
    for (unsigned tries = 0; !chat.redis_closing; tries++) {
        int err;
        sq_redis *r = sq_redis_connect(chat.redis_url, &o, &err);
        if (r) {
            if (chat.redis_closing) {
                sq_redis_free(r);
                break;
            }
            chat.redis = r;
            sq_go(chat.loop, chat_resync, NULL); /* the subscriber may have come up first */
            break;
        }
        if (tries == 0)
            sq_log(SQ_LOG_WARNING, "chat: redis %s: %s (retrying every second)",
                   chat.redis_url, sq_strerror(err));
        sq_sleep(1.0);
    }
    chat.connecting = false;
    return NULL;
}

int demo_chat_use_redis(sq_loop *loop, const char *url)
{
    /* A Redis that froze would otherwise leave the room deaf to the other processes for
     * good, the subscriber's connection being silent by design: PING after 5 s of silence
     * and reconnect if that gets no answer (the URL's ?health_check_interval= wins). */
    sq_redis_options o = {.on_state = chat_redis_state, .health_check_interval = 5.0};
    int err = 0;
    chat.loop = loop;
    chat.redis_url = strdup(url);
    if (!chat.redis_url) return -ENOMEM;
    chat.sub = sq_redis_sub_new(loop, url, &o, chat_on_message, NULL, &err);
    if (!chat.sub || (err = sq_redis_subscribe(chat.sub, CHAT_CHANNEL)) < 0) {
        sq_redis_sub_free(chat.sub);
        chat.sub = NULL;
        free(chat.redis_url);
        chat.redis_url = NULL;
        return err ? err : -ENOMEM;
    }
    chat.connecting = true;
    err = sq_go(loop, chat_connect_redis, NULL);
    return err < 0 ? err : 0;
}

void demo_chat_shutdown(void)
{
    chat.redis_closing = true;
    sq_redis_free(chat.redis);
    chat.redis = NULL;
    sq_redis_sub_free(chat.sub);
    chat.sub = NULL;
    for (size_t i = 0; i < CHAT_HISTORY; i++) {
        json_decref(chat.ring[i].obj);
        free(chat.ring[i].json);
        chat.ring[i] = (chat_msg){0};
    }
    for (size_t i = 0; i < CHAT_LOCAL; i++) {
        json_decref(chat.local[i].obj);
        chat.local[i].obj = NULL;
    }
    free(chat.redis_url); /* the connecting coroutine, if any, reads only redis_closing now */
    chat.redis_url = NULL;
    if (chat.arrived) sq_condition_free(chat.arrived);
    chat.arrived = NULL;
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
        if (m && sq_ws_write(ws, m->json, strlen(m->json), false) < 0) break;
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
    json_t *m;
    int err = chat_publish(sq_ws_remote_ip(ws), data, len, &m);
    json_decref(m);
    if (err == 0 || err == -EINVAL || err == -ENOMEM) return;
    /* Redis unreachable: tell the sender that the others did not get it */
    char *msg = chat_unavailable(err);
    json_t *e = json_pack("{s:s}", "error", msg ? msg : "the chat's Redis is unreachable");
    char *js = e ? json_dumps(e, JSON_COMPACT) : NULL;
    if (js) sq_ws_send(ws, js, strlen(js), false);
    free(js);
    json_decref(e);
    free(msg);
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
    sq_write_jsonf(h, "{s:s}", "error", msg);
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
    uint64_t local0 = chat.local_seq; /* local-only messages (Redis down) wake us too */
    while (chat.last_id <= cursor && chat.local_seq == local0 && !st->gone && cond) {
        double left = deadline - sq_loop_time(loop);
        if (left <= 0 || sq_condition_wait(cond, left) < 0) break;
        sq_loop_update_time(loop);
    }
    if (st->gone) return;

    json_t *msgs = json_array();
    uint64_t id = cursor + 1 > chat_first_id() ? cursor + 1 : chat_first_id();
    for (; msgs && id <= chat.last_id; id++) {
        const chat_msg *m = chat_at(id); /* NULL: a message this process missed */
        if (m) json_array_append(msgs, m->obj);
    }
    /* local-only messages sent while we waited (still in the small ring) */
    uint64_t from = chat.local_seq > CHAT_LOCAL ? chat.local_seq - CHAT_LOCAL : 0;
    for (uint64_t q = from > local0 ? from : local0; msgs && q < chat.local_seq; q++)
        json_array_append(msgs, chat.local[q % CHAT_LOCAL].obj);
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
        json_t *m;
        int err = chat_publish(req->remote_ip, text, len, &m);
        if (err == 0) {
            sq_write_json(h, m);
        } else if (err == -EINVAL || err == -ENOMEM || !m) {
            json_decref(m);
            write_error_json(h, err == -EINVAL ? 400 : 503,
                             err == -EINVAL ? "text must be UTF-8" : sq_strerror(err));
        } else { /* Redis unreachable: it reached this process's clients only */
            char *msg = chat_unavailable(err);
            sq_set_status(h, 503, NULL);
            sq_write_json(h, json_pack("{s:s, s:o}", "error", msg ? msg : sq_strerror(err),
                                       "message", m));
            free(msg);
        }
    }
    json_decref(body);
}

/* An API for scripts and long-polling clients, not a form: no XSRF token asked. */
const sq_handler_class demo_chat_send = {.post = chat_send_post, .no_xsrf_check = true};

/* --- /chat ------------------------------------------------------------------------------- */

static void chat_page_get(sq_handler *h)
{
    sq_render(h, "chat.html", NULL); /* examples/demo/templates/chat.html */
}

const sq_handler_class demo_chat_page = {.get = chat_page_get};

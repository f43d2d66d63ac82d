/* Internals of the HTTP client (squall/client.h), shared by the files in src/client. */
#ifndef SQUALL_CLIENT_INTERNAL_H
#define SQUALL_CLIENT_INTERNAL_H

#include <curl/curl.h>

#include "internal.h"

typedef struct sq__xfer sq__xfer;

/* One fetch, from sq_http_client_fetch() until its future is resolved. */
struct sq__xfer {
    sq_http_client *client;
    sq_future *fut; /* our reference */
    CURL *easy;
    unsigned easy_key; /* what easy is configured for (SQ__EASY_*) */
    struct curl_slist *hdrs;
    sq__xfer *prev, *next; /* in the client's active list or queue */
    sq__xfer *next_cancel; /* in the client's list of cancels deferred out of libcurl */
    enum { SQ__X_NEW, SQ__X_QUEUED, SQ__X_ACTIVE } state;
    bool cancel_pending;
    int abort_err; /* set by our callbacks: the error to report instead of libcurl's */
    /* A method libcurl would repeat on a 303's new URL (PUT, DELETE …): the transfer stops
     * at the end of the 303's headers (see_other) and is started again as a GET, as Tornado
     * does (sq__xfer_follow_303). */
    bool stop_at_303, status_303, see_other;
    int max_redirects;  /* redirects allowed in all */
    long redirects;     /* followed by us, in transfers before this one */
    long timeout_ms;    /* the request's timeout (0: none) */
    int64_t earlier_us; /* time spent in those transfers */
    sq_timer queue_timer;
    double queue_timeout; /* s; <= 0: none */
    uint64_t enqueued_ns, started_ns;
    uint64_t closes_at_start; /* the client's count of closed sockets when it started */
    char *url;
    size_t max_body;
    bool raise_error;
    sq_fetch_body_producer producer;
    size_t body_total, body_sent; /* a producer's declared length (0: unknown), bytes so far */
    void *producer_arg;
    int (*rewind)(void *arg);
    bool paused; /* the producer returned SQ_FETCH_PAUSE: until sq_fetch_resume */
    sq_fetch_streaming_cb streaming;
    void *streaming_arg;
    sq_fetch_header_cb header_cb;
    void *header_arg;
    sq__buf body;
    sq__buf head; /* raw header lines of the latest response */
    char errbuf[CURL_ERROR_SIZE];
};

/* Tests: replace the client's sq_io_start (NULL restores it), to make a registration fail. */
void sq__client_set_io_start(int (*fn)(sq_loop *, sq_io *, unsigned));

/* What a pooled easy handle is configured for.  RESET: nothing (curl_easy_reset); PLAIN: the
 * options of an http:// fetch that sets none of its own, with the client's defaults
 * (sq__xfer_config_key).  A PLAIN handle is reused as it is by the next PLAIN fetch. */
enum { SQ__EASY_RESET, SQ__EASY_PLAIN, SQ__EASY_KEYS };
unsigned sq__xfer_config_key(const char *url, const sq_fetch_request *req,
                             const sq_fetch_request *defaults);

/* Configure x->easy (already allocated) from the request and the client's defaults; with
 * `configured` (a handle of the request's key) only what points into x.  Returns 0, -EINVAL
 * (bad method/body combination, bad URL) or -ENOMEM. */
int sq__xfer_setup(sq__xfer *x, const char *url, const sq_fetch_request *req,
                   const sq_fetch_request *defaults, const sq_http_client_settings *settings,
                   bool configured);
/* After a 303 that stopped a transfer of another method than GET, HEAD or POST (see_other):
 * set x up to GET its Location.  0: set up, to be started again; 1: nothing to follow (no
 * Location): the 303 is the response; a negative error (SQ_EREDIRECTS, -ETIMEDOUT …). */
int sq__xfer_follow_303(sq__xfer *x);
/* The squall error for a finished transfer. */
int sq__xfer_error(sq__xfer *x, CURLcode rc);
/* libcurl callbacks installed by sq__xfer_setup. */
size_t sq__xfer_on_write(char *p, size_t size, size_t n, void *arg);
size_t sq__xfer_on_header(char *p, size_t size, size_t n, void *arg);
size_t sq__xfer_on_read(char *p, size_t size, size_t n, void *arg);
/* CURLOPT_SEEKFUNCTION: a rewind to the start through the request's body_rewind. */
int sq__xfer_on_seek(void *arg, curl_off_t offset, int origin);
/* Build the response of a finished transfer (takes x->body and x->head).  NULL on
 * -ENOMEM. */
sq_fetch_response *sq__response_build(sq__xfer *x);

#endif

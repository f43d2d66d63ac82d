/** @file squall/http_parser.h
 * The HTTP/1.1 request parser (RFC 9112) and chunked decoder.
 *
 * Zero-copy: every string is a slice (pointer + length) into the caller's buffer, valid as
 * long as that buffer is.  Incremental: call again with more bytes; `prev_len` lets the
 * parser skip what it has already scanned, so feeding a request byte by byte costs O(n).
 * Errors are returned as the negative HTTP status the server should answer with
 * (-400, -414, -431, -501, -505), after which the connection should be closed.
 */
#ifndef SQUALL_HTTP_PARSER_H
#define SQUALL_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Documented defaults (Tornado's for headers; nginx's order of magnitude for the line). */
#define SQ_HTTP_DEFAULT_MAX_REQUEST_LINE (8u * 1024u)  /**< 414 beyond */
#define SQ_HTTP_DEFAULT_MAX_HEADER_SIZE  (64u * 1024u) /**< 431 beyond: whole header section */
#define SQ_HTTP_DEFAULT_MAX_HEADERS      100           /**< 431 beyond */

/** A header field: name and value slices into the parsed buffer. */
typedef struct sq_http_header {
    /** field name as sent (compare case-insensitively) */
    const char *name;
    /** length of name */
    size_t name_len;
    const char *value; /**< leading and trailing spaces/tabs trimmed */
    /** length of value */
    size_t value_len;
} sq_http_header;

/** The form of a request-target (RFC 9112 section 3.2). */
typedef enum sq_http_target_form {
    SQ_HTTP_ORIGIN_FORM,    /**< /path?query */
    SQ_HTTP_ABSOLUTE_FORM,  /**< http://host/path (proxies; servers must accept it) */
    SQ_HTTP_AUTHORITY_FORM, /**< host:port, CONNECT only */
    SQ_HTTP_ASTERISK_FORM,  /**< *, OPTIONS only */
} sq_http_target_form;

/** Size limits of the parser; zero fields take the defaults. */
typedef struct sq_http_limits {
    size_t max_request_line; /**< 0: SQ_HTTP_DEFAULT_MAX_REQUEST_LINE */
    size_t max_header_size;  /**< 0: SQ_HTTP_DEFAULT_MAX_HEADER_SIZE (request line included) */
} sq_http_limits;

/** A parsed request head: slices into the caller's buffer, headers in the caller's array. */
typedef struct sq_http_request_head {
    /** the method token */
    const char *method;
    /** length of method */
    size_t method_len;
    const char *target; /**< the request-target as sent */
    /** length of target */
    size_t target_len;
    /** which form the target has */
    sq_http_target_form form;
    const char *path; /**< origin-form part of the target (for absolute-form: after the authority,
                         "/" when empty), without the query; "*" for asterisk-form, empty for
                         authority-form */
    /** length of path */
    size_t path_len;
    const char *query; /**< after '?', without it; NULL when there is no '?' */
    /** length of query */
    size_t query_len;
    const char *host; /**< absolute-form authority, else the Host header; may be NULL */
    /** length of host */
    size_t host_len;
    int version_minor;       /**< HTTP/1.minor: 0 or 1 */
    sq_http_header *headers; /**< caller's array, filled in order */
    /** in: the array's capacity; out: headers found */
    size_t nheaders;
    /* Derived from the headers, validated: */
    int64_t content_length; /**< -1 when absent */
    bool chunked;           /**< Transfer-Encoding ends in chunked */
    bool keep_alive;        /**< HTTP/1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool expect_continue;   /**< Expect: 100-continue */
    bool upgrade;           /**< Connection: upgrade together with an Upgrade header */
} sq_http_request_head;

/** Parse a request head from buf[0..len).  `headers` has room for `max_headers` entries.
 * Returns the length of the head (request line + headers + empty line) when complete,
 * 0 when more bytes are needed, or a negative HTTP status:
 *   -400 malformed (bad method token or header name, bare CR, NUL, obs-fold, whitespace
 *        before a colon, Content-Length with Transfer-Encoding, differing Content-Lengths,
 *        invalid Content-Length, missing Host in HTTP/1.1, a Host list …),
 *   -414 request line longer than the limit, -431 header section or header count too large,
 *   -501 a transfer coding other than chunked (or chunked not last), -505 not HTTP/1.x.
 * Bare LF line endings are accepted, and up to 8 empty lines before the request line are
 * skipped (RFC 9112 §2.2); the returned length includes them.  `prev_len` is how many bytes of
 * the same buffer a previous call already saw (0 the first time).  The answer depends only on
 * the bytes, never on how they were split between calls: 0 until the empty line ending the head
 * has arrived or a limit is certainly exceeded (even if earlier bytes are already invalid); the
 * limits outrank the other errors; 414 is certain after max_request_line + 2 bytes of request
 * line without its end, 431 after max_header_size + 1 bytes of head without its end (when both
 * apply, the one certain first).  The limits do not count the leading empty lines. */
int sq_http_parse_request(const char *buf, size_t len, size_t prev_len, sq_http_request_head *out,
                          sq_http_header *headers, size_t max_headers,
                          const sq_http_limits *limits);

/** Case-insensitive header lookup; returns the first match or NULL. */
const sq_http_header *sq_http_find_header(const sq_http_request_head *req, const char *name);

/** Incremental, in-place decoder of a chunked body. */
typedef struct sq_http_chunked {
    uint64_t remaining; /**< bytes left in the current chunk */
    /** decoder state (internal) */
    unsigned state;
    size_t trailer_bytes; /**< size of the trailer section so far (limited like headers) */
    size_t line_bytes;    /**< length of the chunk-size line so far (limited) */
} sq_http_chunked;

/** Prepare `d` for a new chunked body. */
void sq_http_chunked_init(sq_http_chunked *d);
/** Decode buf[0..*len) in place: the body bytes found are moved to the front of buf and
 * *len is set to their count.  Returns -2 while the body is incomplete (call again with the
 * next bytes), -1 on malformed input (answer 400), or, once the last chunk and its trailers
 * have been consumed, the number of bytes after the body that belong to the next request
 * (they have been moved to buf + *len).  Chunk extensions are ignored; trailer fields are
 * validated like header fields and dropped.  Each call consumes all the input it is given
 * (bytes of an incomplete size line are remembered in the decoder state). */
ssize_t sq_http_chunked_decode(sq_http_chunked *d, char *buf, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

/** @file squall/httputil.h
 * Parsers and formatters around HTTP (Tornado's tornado.httputil):
 * percent-decoding, query strings and url-encoded forms, multipart/form-data, cookies,
 * signed cookies and HTTP dates.
 *
 * Everything here reads untrusted bytes, so each parser has limits and a fuzz target.
 * Results are arrays of slices or of decoded copies as each function says; nothing keeps
 * a pointer to its input unless documented.  Errors are negative errno values:
 * -EINVAL malformed input, -E2BIG a limit exceeded, -ENOMEM.  A parser that fails leaves
 * its sq_args as it found it (whatever it had appended is removed again).
 */
#ifndef SQUALL_HTTPUTIL_H
#define SQUALL_HTTPUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- percent-encoding ------------------------------------------------------------------ */

/** Decode %XX escapes (and '+' as space when `plus_as_space`) from src[0..len) into dst,
 * which must hold len bytes (decoding never grows).  dst may equal src.  Returns the
 * decoded length, or -EINVAL for a malformed escape (a '%' not followed by two hex digits). */
ssize_t sq_url_unescape(char *dst, const char *src, size_t len, bool plus_as_space);
/** Encode for a query component: unreserved bytes stay, space becomes '+' when
 * `plus_for_space`, everything else %XX.  Writes at most dstlen bytes including a NUL;
 * returns the full length needed (excluding the NUL), like snprintf. */
size_t sq_url_escape(char *dst, size_t dstlen, const char *src, size_t len, bool plus_for_space);
/** `s` with & < > " ' replaced by entities (Tornado's xhtml_escape), malloc'd; NULL on
 *  -ENOMEM. */
char *sq_xhtml_escape(const char *s);
/** The reverse (Tornado's xhtml_unescape): the entities amp, lt, gt, quot and apos, and
 *  decimal and hexadecimal character references (written out as UTF-8) are decoded;
 *  anything else is kept as is.  malloc'd; NULL on -ENOMEM. */
char *sq_xhtml_unescape(const char *s);
/** `url` with query arguments appended (Tornado's url_concat): `args` holds name, value
 *  pairs and ends with NULL; each is percent-escaped; '?' or '&' as the URL needs.  malloc'd;
 *  NULL on -ENOMEM or an odd number of strings. */
char *sq_url_concat(const char *url, const char *const *args);

/* --- arguments: query strings and application/x-www-form-urlencoded bodies --------------- */

/** One name=value pair, decoded, NUL-terminated, owned by the sq_args it belongs to.
 * For multipart parts, filename is set when the part had a filename parameter (possibly
 * empty: a file input with no file chosen), content_type when it had a Content-Type. */
typedef struct sq_arg {
    /** NUL-terminated, decoded */
    char *name;
    /** length of name */
    size_t name_len;
    char *value; /**< the bytes (a file's contents for an uploaded file) */
    /** length of value (value is NUL-terminated too) */
    size_t value_len;
    char *filename;     /**< multipart files only */
    char *content_type; /**< multipart parts that declared one */
} sq_arg;

/** An ordered multimap of arguments (repeated names keep every value, in order). */
typedef struct sq_args {
    /** the arguments, in order */
    sq_arg *items;
    /** items used / allocated */
    /** @{ */
    size_t len, cap;
    /** @} */
} sq_args;

/** Limits for one parse call; a NULL pointer or a zero field means the default. */
typedef struct sq_form_limits {
    size_t max_args;        /**< pairs or parts; default 1,000 (-E2BIG beyond) */
    size_t max_part_size;   /**< multipart: bytes in one part; default 100 MiB */
    size_t max_header_size; /**< multipart: bytes of one part's headers; default 16 KiB */
} sq_form_limits;

/** Start an empty multimap (no allocation). */
void sq_args_init(sq_args *a);
/** Free every argument and the array; `a` is empty afterwards and may be reused. */
void sq_args_free(sq_args *a);
/** Append a copy of name and value.  Returns 0 or -ENOMEM. */
int sq_args_add(sq_args *a, const char *name, size_t name_len, const char *value, size_t value_len);
/** The last value for `name` (Tornado's get_argument), or NULL. */
const sq_arg *sq_args_get(const sq_args *a, const char *name);
/** Every value for `name`: fills out[0..max) and returns how many there are in total. */
size_t sq_args_get_all(const sq_args *a, const char *name, const sq_arg **out, size_t max);

/** Parse "a=1&b=2&a=3" (query string or url-encoded body) and append to `out`.  Pairs
 * without '=' get an empty value; empty pairs ("&&") are skipped; only '&' separates; '+'
 * is a space; a '%' not followed by two hex digits stays as it is (as Python's parse_qs
 * does).  Returns the number of pairs added, or -E2BIG (nothing added) when the input holds
 * more than limits->max_args pairs. */
int sq_parse_qs(const char *s, size_t len, sq_args *out, const sq_form_limits *limits);

/** Extract the boundary parameter from a multipart/form-data Content-Type value (quoted or
 * not).  Sets *boundary and *blen as a slice of `content_type`.  Returns 0, or -EINVAL
 * when the media type is not multipart/form-data or the boundary is missing, repeated or
 * not 1-70 RFC 2046 bchars. */
int sq_multipart_boundary(const char *content_type, size_t len, const char **boundary,
                          size_t *blen);
/** Parse a whole multipart/form-data body.  Each part with a Content-Disposition of
 * form-data and a non-empty name is appended (fields as values; files with filename and
 * content_type); other parts are skipped but count towards max_args.  A preamble before
 * the first boundary and an epilogue after the last are ignored; filename*=UTF-8''...
 * (RFC 5987) is preferred to filename.  Returns the number of parts added, -EINVAL when
 * malformed (missing boundary lines, no final boundary, bad part headers or
 * Content-Disposition, obs-fold), -E2BIG past a limit. */
int sq_parse_multipart(const char *body, size_t len, const char *boundary, size_t blen,
                       sq_args *out, const sq_form_limits *limits);

/* --- cookies ----------------------------------------------------------------------------- */

/** Parse a Cookie request header ("a=1; b=2") into `out` (values are not percent-decoded;
 * a value in double quotes is unquoted like Tornado's parse_cookie: the quotes go, a
 * backslash escapes the next character and a backslash before three octal digits (the first
 * 0-3) is that byte, so `a="x\"y\073"` is `x"y;`).
 * Lenient like browsers: pairs without '=' and invalid names are skipped, never an error.
 * Returns the number of cookies added, or -E2BIG past limits->max_args (-ENOMEM). */
int sq_parse_cookie_header(const char *s, size_t len, sq_args *out, const sq_form_limits *limits);

/** Attributes of a Set-Cookie header; zeroed: a session cookie for path "/". */
typedef struct sq_cookie_options {
    /** Domain attribute; NULL: none (this host only) */
    const char *domain;
    const char *path; /**< default "/" */
    time_t expires;   /**< absolute time; 0 = session cookie */
    long max_age;     /**< seconds; 0 = not sent (so {0} is a session cookie); < 0
                       * sends Max-Age=0 (delete now) */
    /** Secure: sent over HTTPS only */
    bool secure;
    /** HttpOnly: hidden from scripts */
    bool http_only;
    const char *same_site; /**< "Strict", "Lax", "None" or NULL */
} sq_cookie_options;

/** Format a Set-Cookie header value into dst (snprintf semantics: returns the length
 * needed).  Returns -EINVAL if name is not a token, or value/domain/path contain bytes not
 * allowed in a cookie (CTLs, ';', ',', whitespace, '"', '\\', non-ASCII) — nothing is
 * silently mangled — or same_site is not one of the three.  opts may be NULL; an empty
 * domain is not sent, an empty path is "/". */
ssize_t sq_format_set_cookie(char *dst, size_t dstlen, const char *name, const char *value,
                             const sq_cookie_options *opts);

/** Signed cookies, in Tornado's version 2 format (create_signed_value(secret, name, value,
 * version=2, key_version=…), byte for byte), so that a Tornado app with the same secret reads
 * them and squall reads Tornado's:
 *   `"2|" "N:key_version|" "N:timestamp|" "N:name|" "N:base64_value|" MAC`
 * where each N is the decimal length of the field after it, the timestamp is in decimal
 * seconds (now > 0), the value is standard padded base64 and the MAC is the lowercase hex
 * HMAC-SHA256(secret, everything before it).  name must be a token and secret non-empty.
 * sq_sign_cookie_value writes a NUL-terminated signed value with key version 0 (what Tornado
 * writes with a single secret); it returns its length, or the length needed, snprintf-style
 * (-EINVAL on bad arguments).
 * sq_verify_cookie_value checks the signature in constant time and the age (max_age_days;
 * <= 0 means 31) against `now` and writes the decoded value to dst (NUL-terminated).
 * Returns the value's length, or -EINVAL for a tampered/malformed value, -ETIMEDOUT when
 * expired (or dated in the future by more than a day), -E2BIG if dst is too small. */
ssize_t sq_sign_cookie_value(char *dst, size_t dstlen, const char *secret, const char *name,
                             const char *value, size_t value_len, time_t now);
/** sq_sign_cookie_value() with a key version (Tornado's key_version), written in the key
 *  version field, which the MAC covers, so that the verifier can pick the secret of that
 *  version with sq_cookie_value_key_version() — secrets rotate without invalidating the
 *  cookies signed before.  key_version < 0 writes 0, as sq_sign_cookie_value(). */
ssize_t sq_sign_cookie_value_kv(char *dst, size_t dstlen, const char *secret, int key_version,
                                const char *name, const char *value, size_t value_len, time_t now);
/** The key version a signed value names (not yet verified: pick the secret with it, then
 *  sq_verify_cookie_value()): the key version field of Tornado's format (0 when signed
 *  without one), the "k<version>|" prefix of squall's former format, or -1 for a value of
 *  the former format without a version, or a malformed one.  Which secret a version means is
 *  the caller's choice; sq_get_signed_cookie()'s rule is under sq_app_settings.cookie_secrets. */
int sq_cookie_value_key_version(const char *signed_value, size_t len);
/** Check a value made by sq_sign_cookie_value() (or _kv), or by Tornado's set_signed_cookie,
 * with the same secret and name, at most max_age_days old, and copy the original value into
 * dst (NUL-terminated).  Returns its length or the errors above.  Values in squall's former
 * format (["k<version>|"] base64url(value) "|" timestamp "|" hex HMAC-SHA256(secret, name "|"
 * all before it), written before squall wrote Tornado's) still verify until they expire. */
ssize_t sq_verify_cookie_value(char *dst, size_t dstlen, const char *secret, const char *name,
                               const char *signed_value, size_t len, double max_age_days,
                               time_t now);

/* --- dates ------------------------------------------------------------------------------- */

/** IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into dst (at least 30 bytes); times
 * outside the years 1-9999 are clamped into them. */
void sq_http_date(char dst[30], time_t t);
/** Parse an HTTP date (IMF-fixdate, and the obsolete RFC 850 and asctime forms; names and
 * "GMT" are matched case-insensitively, the weekday is not checked, RFC 850's two-digit
 * years 70-99 are 19xx and 00-69 20xx).  Returns 0 and sets *out, or -EINVAL. */
int sq_parse_http_date(const char *s, size_t len, time_t *out);

#ifdef __cplusplus
}
#endif
#endif

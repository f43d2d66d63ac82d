/* libFuzzer target: JSON string output (src/web/json.c) against jansson's.
 *
 * Input layout: [k] [bytes].  The bytes, split at k % (len + 1), are written as an object key
 * and a string value by sq_json_format("{s%:s%}") and as an array of two strings by
 * sq_json_format("[s%,s%]"); jansson builds the same values with json_stringn (which checks
 * UTF-8) and dumps them with JSON_COMPACT.  Both must refuse the same inputs (bad UTF-8; for
 * sq_json_format also a key holding a NUL) and write the same bytes otherwise (the escapes,
 * the UTF-8 copied as it is), but for "</", which squall writes "<\\/" (Tornado's
 * json_encode).  The value is also written from the json_t through sq_write_json's
 * serializer, which must agree too. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "squall/web.h"
#include "web/web_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

/* jansson's output as squall writes it: "</" as "<\\/"; a malloc'ed string, NULL for NULL. */
static char *dumps(json_t *j)
{
    char *w = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!w) return NULL;
    size_t n = strlen(w), k = 0;
    char *out = malloc(2 * n + 1);
    CHECK(out);
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '/' && i && w[i - 1] == '<') out[k++] = '\\';
        out[k++] = w[i];
    }
    out[k] = 0;
    free(w);
    return out;
}

static void same(char *got, size_t got_len, json_t *want)
{
    char *w = dumps(want);
    CHECK(!got == !w);
    if (w) {
        CHECK(strlen(w) == got_len && !memcmp(got, w, got_len));
        /* the tree serializer (sq_write_json's) agrees as well */
        sq__buf b = {0};
        CHECK(sq__json_dump(&b, want) == 0);
        CHECK(b.len == got_len && !memcmp(b.ptr, w, got_len));
        free(b.ptr);
    }
    free(w);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++) sq_log_set_level(SQ_LOG_OFF); /* refusals are logged */
    if (size < 1) return 0;
    size_t cut = data[0] % size; /* 0 .. size - 1 bytes of key */
    const char *s = (const char *)data + 1;
    size_t n = size - 1, kn = cut, vn = n - cut;
    const char *v = s + kn;

    size_t len = 0;
    char *got = sq_json_format(&len, "[s%,s%]", s, kn, v, vn);
    json_t *a = json_stringn(s, kn), *b = json_stringn(v, vn);
    json_t *want = a && b ? json_pack("[O,O]", a, b) : NULL;
    same(got, len, want);
    json_decref(want);

    got = sq_json_format(&len, "{s%:s%}", s, kn, v, vn);
    /* (a key holding a NUL is refused: jansson 2.14's json_pack would cut it there) */
    want = a && b && !memchr(s, 0, kn) ? json_object() : NULL;
    if (want) CHECK(json_object_setn(want, s, kn, b) == 0);
    same(got, len, want);
    json_decref(want);
    json_decref(a);
    json_decref(b);
    return 0;
}

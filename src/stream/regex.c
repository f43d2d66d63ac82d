/* Pre-compiled patterns for sq_stream_read_until_regex, on PCRE2.
 *
 * A stream read must find a match that ends anywhere in what is buffered, and the data
 * arrives a read at a time.  Rescanning the whole buffer after every read would make a long
 * message quadratic, so the search uses PCRE2's soft partial matching: a complete match wins
 * as soon as there is one (what Tornado's re.search on the buffer finds), and when there is
 * none PCRE2 says where the earliest partial match began — every earlier start position has
 * failed for good, so the next search starts there (the subject still begins at the start of
 * the buffer, so lookbehinds see what precedes).  With no partial match at all the next search
 * starts at the end.  Only a pattern that keeps a partial match open (`<.*>` after a `<`)
 * rescans that open tail on every read.
 */
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "internal.h"
#include "stream/regex.h"

struct sq_regex {
    pcre2_code *code;
};

sq_regex *sq_regex_new(const char *pattern, int *err)
{
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (!pattern) {
        *err = -EINVAL;
        return NULL;
    }
    sq_regex *re = malloc(sizeof *re);
    if (!re) {
        *err = -ENOMEM;
        return NULL;
    }
    int code;
    PCRE2_SIZE off;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        sq_log(SQ_LOG_ERROR, "sq_regex_new: bad pattern at offset %zu: %s", (size_t)off,
               (const char *)msg);
        free(re);
        *err = code == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EINVAL;
        return NULL;
    }
    /* Without JIT (not built in, or no executable memory) the interpreter does the work. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_SOFT);
    return re;
}

void sq_regex_free(sq_regex *re)
{
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

int sq__regex_search(const sq_regex *re, void **md, const char *subj, size_t len, size_t *from,
                     size_t *end)
{
    pcre2_match_data *m = *md;
    if (!m) {
        m = pcre2_match_data_create(1, NULL); /* only the whole match's offsets */
        if (!m) return -ENOMEM;
        *md = m;
    }
    if (*from > len) *from = len;
    int rc = pcre2_match(re->code, (PCRE2_SPTR)subj, len, *from,
                         PCRE2_PARTIAL_SOFT | PCRE2_NOTEMPTY, m, NULL);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m);
    if (rc >= 0) { /* 0: the ovector is too small for the groups; the match stands */
        *end = ov[1];
        return 1;
    }
    switch (rc) {
    case PCRE2_ERROR_PARTIAL:
        *from = ov[0];
        return 0;
    case PCRE2_ERROR_NOMATCH:
        *from = len;
        return 0;
    case PCRE2_ERROR_NOMEMORY:
    case PCRE2_ERROR_HEAPLIMIT:
        return -ENOMEM;
    default: /* the match, depth or JIT stack limit: a pattern too costly for this input */
        sq_log(SQ_LOG_DEBUG, "read_until_regex: pcre2_match failed (%d)", rc);
        return -E2BIG;
    }
}

void sq__regex_md_free(void *md)
{
    pcre2_match_data_free(md);
}

/* libFuzzer target: the template compiler and renderer (squall/template.h).
 *
 * The input is a template source.  It must compile or fail with a message naming the
 * template, a line and a column; when it compiles it is rendered against a fixed context
 * (strings with HTML in them, numbers, lists, objects), with and without autoescape: a render
 * either succeeds or fails with such a message, and with autoescape on no '<' of the
 * context's strings reaches the output unescaped unless the template marked it safe. */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squall/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static json_t *ctx;
static sq_templates *loaders[2];

static void init(void)
{
    ctx = json_pack("{s:s, s:i, s:f, s:[s,s,i], s:{s:s, s:[i,i]}, s:b, s:n}", "name", "<evil>",
                    "n", 7, "x", 1.5, "list", "a", "<b>", 3, "obj", "k", "v<", "l", 1, 2, "t", 1,
                    "none");
    loaders[0] = sq_templates_new(NULL, NULL);
    loaders[1] = sq_templates_new(NULL, &(sq_template_options){.no_autoescape = true});
}

static void check_message(const char *err)
{
    /* "fuzz.html:LINE:COL: message", or a message without position for whole-file errors */
    CHECK(err[0] != '\0');
    CHECK(strlen(err) < 512);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) init();
    if (size > 4096) return 0; /* deep nesting is bounded; long inputs only slow the search */
    for (int i = 0; i < 2; i++) {
        char err[512] = "";
        sq_template *tpl =
            sq_template_compile(loaders[i], "fuzz.html", (const char *)data, size, err, sizeof err);
        if (!tpl) {
            check_message(err);
            continue;
        }
        char *out = NULL;
        size_t len = 0;
        int rc = sq_template_render(tpl, ctx, &out, &len, err, sizeof err);
        if (rc < 0) {
            CHECK(out == NULL);
            check_message(err);
        } else {
            CHECK(out && strlen(out) <= len); /* NUL-terminated (a NUL may come from the source) */
            /* autoescape on, and neither a '<' in the source nor a way to mark text safe: a
             * '<' in the output can only be one of the context's, unescaped */
            if (i == 0 && !memchr(data, '<', size) && !memmem(data, size, "safe", 4) &&
                !memmem(data, size, "autoescape", 10))
                CHECK(!memchr(out, '<', len));
            free(out);
        }
        sq_template_free(tpl);
    }
    return 0;
}

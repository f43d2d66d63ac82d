/* squall/template.h: the language, errors with positions, the loader's cache and reloading.
 * `test_template render DIR NAME CONTEXT.json` renders one template to stdout: the Jinja2
 * comparison (template_jinja2.py) drives that. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char dir[64];

static void put_file(const char *name, const char *text)
{
    sq_test_write_file(dir, name, text, 0);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/squall-tpl-%d", (int)getpid());
    mkdir(dir, 0755);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Render `src` with the JSON context `ctx_json`; returns the text (static) or the error. */
static const char *render(sq_templates *t, const char *src, const char *ctx_json)
{
    static char result[8192];
    char err[256] = "";
    json_t *ctx = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
    sq_template *tpl = sq_template_compile(t, "t.html", src, strlen(src), err, sizeof err);
    if (!tpl) {
        json_decref(ctx);
        snprintf(result, sizeof result, "ERROR %s", err);
        return result;
    }
    char *out;
    size_t len;
    int rc = sq_template_render(tpl, ctx, &out, &len, err, sizeof err);
    if (rc < 0) {
        snprintf(result, sizeof result, "ERROR %s", err);
    } else {
        snprintf(result, sizeof result, "%s", out);
        assert_int_equal(strlen(out), len);
        free(out);
    }
    sq_template_free(tpl);
    json_decref(ctx);
    return result;
}

typedef struct tcase {
    const char *src, *want;
} tcase;

/* Every case of a table (the expected text is Jinja2 3.1's); all mismatches are listed. */
static void check_cases(sq_templates *t, const tcase *cases, size_t n, const char *ctx)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *got = render(t, cases[i].src, ctx);
        if (strcmp(got, cases[i].want)) {
            print_error("%s\n  got:  %s\n  want: %s\n", cases[i].src, got, cases[i].want);
            bad++;
        }
    }
    if (bad) fail_msg("%d of %zu cases differ", bad, n);
}

static void test_expressions(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    const char *ctx = "{\"name\":\"<Ann & 'Bob'>\",\"n\":7,\"x\":1.5,\"rows\":[{\"id\":1},{\"id\":2}],"
                      "\"user\":{\"name\":\"ann\",\"tags\":[\"a\",\"b\"]},\"empty\":[],\"t\":true}";
    struct {
        const char *src, *want;
    } cases[] = {
        {"Hello {{ name }}!", "Hello &lt;Ann &amp; &#39;Bob&#39;&gt;!"},
        {"{{ name | safe }}", "<Ann & 'Bob'>"},
        {"{{ user.name }} {{ user['name'] }} {{ rows[1].id }} {{ rows[-1]['id'] }}", "ann ann 2 2"},
        {"{{ missing }}|{{ missing.deeper }}|{{ user.nope }}", "||"},
        /* escapes in literals as Jinja2 (Python) reads them; an unknown one keeps its '\\' */
        {"{{ '\\d' }}|{{ 'C:\\\\dir' }}|{{ '\\x41\\x7e' }}|{{ '\\u00e9\\U0001F600' }}|"
         "{{ '\\101\\0' | length }}|{{ 'a\\\nb' }}|{{ \"\\\"q\\\" \\'s\\'\" }}|{{ 'tab\\there' }}",
         "\\d|C:\\dir|A~|\u00e9\U0001F600|2|ab|&#34;q&#34; &#39;s&#39;|tab\there"},
        {"{{ missing | length }}|{{ user.nope | count }}", "0|0"},
        {"{{ n + 1 }} {{ n - 10 }} {{ n * 2 }} {{ n / 2 }} {{ n // 2 }} {{ n % 4 }} {{ -n }}",
         "8 -3 14 3.5 3 3 -7"},
        {"{{ x }} {{ x * 2 }} {{ 0.1 + 0.2 }} {{ 10 / 5 }}", "1.5 3.0 0.30000000000000004 2.0"},
        /* Python's repr: positional below 1e16, exponent from there (Jinja2 3.1's output) */
        {"{{ 1e15 }} {{ -1.5e15 }} {{ 1234567890123456.8 }} {{ 1e16 }} {{ 12345678901234567e0 }} "
         "{{ 1e17 }} {{ 1e-5 }} {{ 1.5e-7 }} {{ 123456789012345.6 }} {{ 0.0001 }} {{ 5e-324 }}",
         "1000000000000000.0 -1500000000000000.0 1234567890123456.8 1e+16 1.2345678901234568e+16 "
         "1e+17 1e-05 1.5e-07 123456789012345.6 0.0001 5e-324"},
        {"{{ 'a' ~ n ~ 'b' }} {{ 'x' + 'y' }}", "a7b xy"},
        {"{{ n > 5 and n < 10 }} {{ not t }} {{ n == 7.0 }} {{ 'a' in 'cat' }} {{ 3 not in [1, 2] "
         "}}",
         "True False True True True"},
        {"{{ 'yes' if n > 5 else 'no' }} {{ missing or 'fallback' }} {{ none }}",
         "yes fallback None"},
        {"{{ name | upper }} {{ user.name | upper | lower }}",
         "&lt;ANN &amp; &#39;BOB&#39;&gt; ann"},
        {"{{ missing | default('d') }} {{ user.name | d('x') }} {{ '' | default('e', true) }}",
         "d ann e"},
        {"{{ user.tags | length }} {{ name | length }} {{ user.tags | join(', ') }}", "2 13 a, b"},
        {"{{ 'a b&c/d' | url }}", "a%20b%26c/d"},
        {"{{ user | json }}", "{\"name\": \"ann\", \"tags\": [\"a\", \"b\"]}"},
        {"{{ '<x>' | json }}", "\"\\u003cx\\u003e\""},
        {"{{ '<b>' | e | e }} {{ '  x ' | trim }} {{ rows | first }} {{ user.tags | last }}",
         "&lt;b&gt; x {&#39;id&#39;: 1} b"},
        {"{{ [1, 'two', none, true] }}", "[1, &#39;two&#39;, None, True]"},
        /* a unary minus binds tighter than a filter, as in Jinja2: (-x)|f, not -(x|f) */
        {"{{ -3|string|length }} {{ -1.5|string }} {{ -n|string }} {{ - x|string|length }} {{ "
         "-(n|string|length) }}",
         "2 -1.5 -7 4 -1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = render(t, cases[i].src, ctx);
        if (strcmp(got, cases[i].want)) fail_msg("%s\n  got:  %s\n  want: %s", cases[i].src, got, cases[i].want);
    }
    sq_templates_free(t);
}

static void test_tags(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    const char *ctx = "{\"rows\":[\"a\",\"b\",\"c\"],\"n\":2,\"obj\":{\"k\":1,\"j\":2},\"html\":\"<i>\"}";
    struct {
        const char *src, *want;
    } cases[] = {
        {"{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %}", "two"},
        {"{% if n > 5 %}big{% elif n > 9 %}huge{% endif %}.", "."},
        {"{% for r in rows %}{{ loop.index }}{{ r }}{% if not loop.last %},{% endif %}{% endfor %}", "1a,2b,3c"},
        {"{% for r in rows %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.length }} {% endfor %}",
         "03True3 12False3 21False3 "},
        {"{% for r in [] %}x{% else %}empty{% endfor %}", "empty"},
        {"{% for k, v in obj | items %}{{ k }}={{ v }};{% endfor %}", "k=1;j=2;"},
        {"{% for k in obj %}{{ k }}{% endfor %}", "kj"},
        {"{% for a in rows %}{% for b in rows %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}",
         "1231|1232|1233|"},
        {"{% set x = n * 10 %}{{ x }}{% for r in rows %}{% set y = r %}{% endfor %}{{ y }}", "20"},
        {"a {# a comment {{ not printed }} #} b", "a  b"},
        {"a  {%- if true -%}  b  {%- endif -%}  c", "abc"},
        {"<{{- ' x ' -}}>", "< x >"},
        {"line\n{% if true %}\nyes\n{% endif %}\nend\n", "line\n\nyes\n\nend"},
        {"{% raw %}{{ not a tag }} {% if %}{% endraw %}", "{{ not a tag }} {% if %}"},
        /* whitespace control on raw's own tags, as Jinja2 */
        {"{% raw -%}  x  {%- endraw %}|", "x|"},
        {"{% raw %}  x  {% endraw -%}  y", "  x  y"},
        {"a  {%- raw %} x {% endraw %}  b", "a x   b"},
        {"{{ html }}{% autoescape false %}{{ html }}{% endautoescape %}", "&lt;i&gt;<i>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = render(t, cases[i].src, ctx);
        if (strcmp(got, cases[i].want)) fail_msg("%s\n  got:  %s\n  want: %s", cases[i].src, got, cases[i].want);
    }
    sq_templates_free(t);
}

static void test_inheritance(void **state)
{
    put_file("base.html", "<title>{% block title %}Site{% endblock %}</title>"
                          "<main>{% block body %}nothing{% endblock %}</main>{% include 'foot.html' %}\n");
    put_file("foot.html", "<footer>{{ year }}</footer>\n");
    put_file("page.html", "{% extends \"base.html\" %}{% block title %}{{ title }} - {{ super() }}{% endblock %}"
                          "{% block body %}{% for i in items %}<p>{{ i }}</p>{% endfor %}{% endblock %}");
    put_file("sub.html", "{% extends 'page.html' %}{% block body %}[{{ super() }}]{% endblock %}");
    sq_templates *t = sq_templates_new(dir, NULL);
    char err[256] = "";
    json_t *ctx = json_pack("{s:s, s:[i,i], s:i}", "title", "Home & away", "items", 1, 2, "year", 2026);
    sq_template *tpl = sq_templates_get(t, "page.html", err, sizeof err);
    assert_non_null(tpl);
    assert_ptr_equal(sq_templates_get(t, "page.html", err, sizeof err), tpl); /* cached */
    char *out;
    size_t len;
    assert_int_equal(sq_template_render(tpl, ctx, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, "<title>Home &amp; away - Site</title><main><p>1</p><p>2</p></main>"
                             "<footer>2026</footer>");
    free(out);
    tpl = sq_templates_get(t, "sub.html", err, sizeof err);
    assert_non_null(tpl);
    assert_int_equal(sq_template_render(tpl, ctx, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, "<title>Home &amp; away - Site</title><main>[<p>1</p><p>2</p>]</main>"
                             "<footer>2026</footer>");
    free(out);
    json_decref(ctx);
    /* what an included template or a block sets is its own (Jinja2's scoping): it does not
     * change the includer's variables, nor outlive the block */
    put_file("setter.html", "{% set x = 'inner' %}[{{ x }}]");
    assert_string_equal(render(t,
                               "{% set x = 'outer' %}{% include 'setter.html' %}{{ x }}|"
                               "{% block b %}{% set y = 1 %}{{ y }}{% endblock %}[{{ y }}]",
                               "{}"),
                        "[inner]outer|1[]");
    sq_templates_free(t);
}

static void test_errors(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    struct {
        const char *src, *want;
    } cases[] = {
        {"ok\n  {{ name | uper }}", "ERROR t.html:2:13: unknown filter 'uper'"},
        {"{% if x %}never closed", "ERROR t.html:1:1: 'if' without 'endif'"},
        {"a\n{% endif %}", "ERROR t.html:2:4: 'endif' without its opening tag"},
        {"{% frobnicate %}", "ERROR t.html:1:4: unknown tag 'frobnicate'"},
        {"{{ 1 + }}", "ERROR t.html:1:8: an expression is missing"},
        {"{{ 'open }}", "ERROR t.html:1:1: unclosed '{{'"},
        {"x {{ a b }}", "ERROR t.html:1:8: unexpected 'b' at the end of the tag"},
        {"{% include 'nope.html' %}",
         "ERROR t.html:1:12: include: nope.html: No such file or directory"},
        {"{% include '../etc/passwd' %}",
         "ERROR t.html:1:12: include: ../etc/passwd: not a template name under the template path"},
        {"{% for x in %}{% endfor %}", "ERROR t.html:1:13: an expression is missing"},
        {"\n\n  {{ 'a' + 1 }}", "ERROR t.html:3:10: cannot add string and number"},
        {"{{ 1 // 0 }}", "ERROR t.html:1:6: division by zero"},
        {"{{ 'a\\x4' }}", "ERROR t.html:1:4: a \\x, \\u or \\U escape without all its hex digits"},
        {"{{ '\\ud800' }}", "ERROR t.html:1:4: an escape that is not a Unicode character"},
        /* Python reads \N{name} (Jinja2 prints the character or fails): never the text */
        {"{{ 'a\\N{BULLET}' }}",
         "ERROR t.html:1:4: a \\N{...} escape (Unicode character names are not supported)"},
        {"{{ 1 < 'a' }}", "ERROR t.html:1:6: cannot compare number and string"},
        {"{% for x in 5 %}{% endfor %}", "ERROR t.html:1:13: cannot loop over number"},
        {"{% block a %}{% endblock %}\n{% block a %}{% endblock %}",
         "ERROR t.html:2:1: block 'a' defined twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = render(t, cases[i].src, "{}");
        if (strcmp(got, cases[i].want)) fail_msg("%s\n  got:  %s\n  want: %s", cases[i].src, got, cases[i].want);
    }
    char err[256];
    assert_null(sq_templates_get(t, "missing.html", err, sizeof err));
    assert_string_equal(err, "missing.html: No such file or directory");
    put_file("bad.html", "one\ntwo {{ x | nofilter }}\n");
    assert_null(sq_templates_get(t, "bad.html", err, sizeof err));
    assert_string_equal(err, "bad.html:2:12: unknown filter 'nofilter'");
    put_file("eloop.html", "{% extends 'eloop.html' %}");
    assert_null(sq_templates_get(t, "eloop.html", err, sizeof err)); /* extends itself */
    if (!strstr(err, "nested too deep")) fail_msg("got: %s", err);
    /* an include of itself is a tree (Jinja2 allows it); without an end, an error at render */
    put_file("loop.html", "{{ 1 }}\n {% include 'loop.html' %}");
    sq_template *tpl = sq_templates_get(t, "loop.html", err, sizeof err);
    assert_non_null(tpl);
    char *out = NULL;
    assert_int_equal(sq_template_render(tpl, NULL, &out, NULL, err, sizeof err), -ELOOP);
    assert_null(out);
    assert_string_equal(err, "loop.html:2:2: include nested too deep");
    put_file("tree.html", "<ul>{% for c in items %}<li>{{ c.name }}{% if c.kids %}{% set items = "
                          "c.kids %}{% include 'tree.html' %}{% endif %}</li>{% endfor %}</ul>");
    json_t *ctx = json_loads("{\"items\": [{\"name\": \"a<\", \"kids\": [{\"name\": \"b\", "
                             "\"kids\": [{\"name\": \"c\"}]}, {\"name\": \"d\"}]}]}",
                             0, NULL);
    assert_non_null(tpl = sq_templates_get(t, "tree.html", err, sizeof err));
    assert_int_equal(sq_template_render(tpl, ctx, &out, NULL, err, sizeof err), 0);
    assert_string_equal(out,
                        "<ul><li>a&lt;<ul><li>b<ul><li>c</li></ul></li><li>d</li></ul></li></ul>");
    free(out);
    json_decref(ctx);
    sq_templates_free(t);
}

/* A long template compiles in time linear in its size (positions for messages are not
 * found by rescanning the source from its start for every node). */
static void test_long_template(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    enum { LINES = 40000 };
    struct {
        char *ptr;
        size_t len;
    } src = {malloc(2000000), 0};
    assert_non_null(src.ptr);
#define APPEND(s) (memcpy(src.ptr + src.len, (s), strlen(s)), src.len += strlen(s))
    for (int i = 0; i < LINES; i++) APPEND("<p>{{ n + 1 }}</p>\n");
    APPEND("{{ 1 + }}");
    char err[256] = "";
    double t0 = sq_test_now();
    assert_null(sq_template_compile(t, "big.html", src.ptr, src.len, err, sizeof err));
    double took = sq_test_now() - t0;
    assert_string_equal(err, "big.html:40001:8: an expression is missing");
    src.len -= 9;
    t0 = sq_test_now();
    sq_template *tpl = sq_template_compile(t, "big.html", src.ptr, src.len, err, sizeof err);
    took += sq_test_now() - t0;
    assert_non_null(tpl);
    sq_template_free(tpl);
    if (took > 5) fail_msg("compiling %d lines twice took %.1f s", LINES, took);
#undef APPEND
    free(src.ptr);
    sq_templates_free(t);
}

/* An expression too deep for the recursive parser, renderer and destructor is a compile
 * error, not a stack overflow (on a coroutine's stack, at that). */
static void test_deep_expressions(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    struct {
        char *ptr;
        size_t len;
    } src = {malloc(2000000), 0};
    assert_non_null(src.ptr);
    char err[256];
    sq_template *tpl;
#define APPEND(s) (memcpy(src.ptr + src.len, (s), strlen(s)), src.len += strlen(s))
    /* chains of operators, filters, attributes and items build trees as deep as they are
     * long: beyond the bound, an error at compile time */
    static const char *const links[] = {"|e", ".a", " + 1", "[0]", " ~ 'x'", " and n", " == 1"};
    for (size_t k = 0; k < sizeof links / sizeof links[0]; k++) {
        src.len = 0;
        APPEND("{{ n");
        for (int i = 0; i < 100000; i++) APPEND(links[k]);
        APPEND(" }}");
        err[0] = '\0';
        tpl = sq_template_compile(t, "deep.html", src.ptr, src.len, err, sizeof err);
        if (tpl) { /* (what used to happen: a stack overflow in here) */
            char *out;
            if (sq_template_render(tpl, NULL, &out, NULL, err, sizeof err) == 0) free(out);
            sq_template_free(tpl);
            fail_msg("%s chained: compiled", links[k]);
        }
        if (!strstr(err, "nested too deep")) fail_msg("%s chained: %s", links[k], err);
    }
#undef APPEND
    free(src.ptr);
    /* a long chain within the bound still works */
    const char *got =
        render(t,
               "{{ n + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 "
               "+ 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 }}",
               "{\"n\": 1}");
    assert_string_equal(got, "35");
    sq_templates_free(t);
}

static json_t *shout(json_t *v, json_t *const *args, size_t nargs, void *arg, bool *safe,
                     const char **err)
{
    if (!json_is_string(v)) {
        *err = "shout needs a string";
        return NULL;
    }
    size_t times = nargs && json_is_integer(args[0]) ? (size_t)json_integer_value(args[0]) : 1;
    char buf[256] = "";
    for (size_t i = 0; i < times && strlen(buf) + json_string_length(v) + 2 < sizeof buf; i++) {
        strcat(buf, json_string_value(v));
        strcat(buf, "!");
    }
    *safe = arg != NULL;
    return json_string(buf);
}

/* A filter that edits base.html and part.html while page.html, which extends the first and
 * includes the second, is rendered (as an editor saving them would) */
static json_t *edit_files(json_t *v, json_t *const *args, size_t nargs, void *arg, bool *safe,
                          const char **err)
{
    static int edits;
    edits++;
    sq_test_write_file(dir, "base.html", "<{% block b %}{% endblock %}>", 10 + edits);
    sq_test_write_file(dir, "part.html", "{% extends 'base.html' %}{% block b %}p{% endblock %}",
                       10 + edits);
    return json_incref(v);
}

static void test_c_filters_and_reload(void **state)
{
    sq_templates *t = sq_templates_new(dir, &(sq_template_options){.debug = true});
    assert_int_equal(sq_templates_add_filter(t, "shout", shout, NULL), 0);
    assert_string_equal(render(t, "{{ 'a<' | shout(2) }}", NULL), "a&lt;!a&lt;!");
    assert_string_equal(render(t, "{{ 3 | shout }}", NULL), "ERROR t.html:1:8: shout: shout needs a string");
    assert_int_equal(sq_templates_add_filter(t, "shout", shout, (void *)1), 0); /* replaced: safe output */
    assert_string_equal(render(t, "{{ 'a<' | shout }}", NULL), "a<!");
    /* debug: a changed file is compiled again */
    put_file("r.html", "first {{ v }}");
    char err[256];
    json_t *ctx = json_pack("{s:i}", "v", 1);
    sq_template *tpl = sq_templates_get(t, "r.html", err, sizeof err);
    char *out;
    size_t len;
    assert_int_equal(sq_template_render(tpl, ctx, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, "first 1");
    free(out);
    sq_test_write_file(dir, "r.html", "second {{ v }}", 5);
    tpl = sq_templates_get(t, "r.html", err, sizeof err);
    assert_int_equal(sq_template_render(tpl, ctx, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, "second 1");
    free(out);
    json_decref(ctx);
    /* debug: a template recompiled while it is rendered stays alive until the render is
     * over (the include recompiles part.html, and with it base.html, which page.html is
     * being rendered through) */
    assert_int_equal(sq_templates_add_filter(t, "edit", edit_files, NULL), 0);
    edit_files(NULL, NULL, 0, NULL, NULL, NULL);
    put_file("page.html", "{% extends 'base.html' %}{% block b %}{{ 'x'|edit }}{% include "
                          "'part.html' %}{% endblock %}");
    tpl = sq_templates_get(t, "page.html", err, sizeof err);
    assert_non_null(tpl);
    assert_int_equal(sq_template_render(tpl, NULL, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, "<x<p>>");
    free(out);
    sq_templates_free(t);
    /* no autoescape: text templates */
    t = sq_templates_new(dir, &(sq_template_options){.no_autoescape = true});
    assert_string_equal(render(t, "{{ '<b>' }} {{ '<b>' | e }}", NULL), "<b> &lt;b&gt;");
    sq_templates_free(t);
}

/* tojson as Jinja2's: Python's json.dumps (", " and ": ", sorted keys, ASCII with lowercase
 * \u escapes, floats as repr) made HTML-safe (< > & ' as \u escapes). */
static void test_tojson(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{{ '<\u00e9>\\u2028\\U0001F600\\x7f\\x01\\n\\t\"\\\\&\\'' | tojson }}",
         "\"\\u003c\\u00e9\\u003e\\u2028\\ud83d\\ude00\\u007f\\u0001\\n\\t\\\"\\\\\\u0026\\u0027"
         "\""},
        {"{{ [0.1, 1e16, 1.5e-7, 1e300, 3.0, -0.0, 12345678901234567890e0] | tojson }}",
         "[0.1, 1e+16, 1.5e-07, 1e+300, 3.0, -0.0, 1.2345678901234567e+19]"},
        {"{{ o | tojson }}", "{\"a\": [1, null, true], \"b\": \"x\", \"\\u00e9\": {}}"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0],
                "{\"o\": {\"b\": \"x\", \"\u00e9\": {}, \"a\": [1, null, true]}}");
    sq_templates_free(t);
}

/* |int as Jinja2's: Python's int() of a string (else int(float())), else the default. */
static void test_int_filter(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{{ '12abc'|int }}|{{ true|int }}|{{ false|int }}|{{ ' 12\\n'|int }}|{{ '1_000'|int }}|"
         "{{ '12.7'|int }}|{{ '-3'|int }}|{{ '+3'|int }}|{{ ''|int }}|{{ none|int }}|{{ '1e3'|int "
         "}}|"
         "{{ 'abc'|int(5) }}|{{ '0x1A'|int }}|{{ '1__0'|int }}|{{ '_1'|int }}|{{ '-2.5e1'|int }}|"
         "{{ 'nan'|int }}|{{ [1]|int }}|{{ 7.9|int }}",
         "0|1|0|12|1000|12|-3|3|0|0|1000|5|0|0|0|-25|0|0|7"},
        /* beyond 64 bits, the end of the range, as for a float (web/test_web_semantics) */
        {"{{ '99999999999999999999'|int }}|{{ '-1e30'|int }}",
         "9223372036854775807|-9223372036854775808"},
        /* an infinity is no integer: Python's int(float('inf')) raises OverflowError, which
         * do_int answers with the default */
        {"{{ 'inf'|int }}|{{ '-Infinity'|int(4) }}|{{ '1e400'|int(9) }}", "0|4|9"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], "{}");
    sq_templates_free(t);
}

/* |first and |last of a string: its first and last character (UTF-8, not a byte); of an
 * object, its first and last key. */
static void test_first_last(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{{ 'h\u00e9llo'|first }}|{{ 'h\u00e9ll\u00f6'|last }}|{{ ''|first }}|{{ "
         "'\U0001F600x'|first }}|"
         "{{ 'x\U0001F600'|last }}|{{ '<'|first }}|{{ o|first }}|{{ o|last }}|{{ l|first }}",
         "h|\u00f6||\U0001F600|\U0001F600|&lt;|k|j|"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0],
                "{\"o\": {\"k\": 1, \"j\": 2}, \"l\": []}");
    sq_templates_free(t);
}

/* Windows line endings: Jinja2's default Environment reads "\r\n" and "\r" as "\n"
 * (newline_sequence), then drops one final newline (keep_trailing_newline=False). */
static void test_line_endings(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\rd\r\n", "a\n\nb\n\nc\nd"},
        {"x\r\n\r\n", "x\n"},
        {"{{ 'p\r\nq' }}|{% raw %}r\r\ns{% endraw %}|{# c\r\n #}", "p\nq|r\ns|"},
        {"a\r\n\r\n{{ 1 + }}", "ERROR t.html:3:8: an expression is missing"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], "{}");
    sq_templates_free(t);
}

/* Numbers a literal or an operation cannot hold: an error saying where, not a wrong value. */
static void test_number_limits(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{{ 99999999999999999999 }}", "ERROR t.html:1:4: a number too large"},
        {"{{ 9223372036854775807 }}|{{ -9223372036854775807 - 1 }}",
         "9223372036854775807|-9223372036854775808"},
        {"{{ 1e400 }}", "ERROR t.html:1:4: a number too large"},
        /* longer than any fixed buffer: read whole, not cut */
        {"{{ 0.000000000000000000000000000000000000000000000000000000000000000000001 }}", "1e-69"},
        {"{{ 1_000_000.000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_5 }}",
         "1000000.0"},
        {"{{ 1__0 }}", "ERROR t.html:1:4: a '_' that is not between two digits"},
        {"{{ 1e300 * 1e10 }}", "ERROR t.html:1:10: a number too large (the result of '*')"},
        {"{{ -1e300 - 1e308 * 10 }}", "ERROR t.html:1:19: a number too large (the result of '*')"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], "{}");
    sq_templates_free(t);
}

/* Strings inside a printed list or object: Python's repr, as Jinja2 prints them. */
static void test_repr(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{{ ['a\\nb', \"it's\", 'a\\'b\"c', '\\t\\x01\\x7f\\\\\u00e9', '\\r'] }}",
         "[&#39;a\\nb&#39;, &#34;it&#39;s&#34;, &#39;a\\&#39;b&#34;c&#39;, "
         "&#39;\\t\\x01\\x7f\\\\\u00e9&#39;, "
         "&#39;\\r&#39;]"},
        {"{{ ['\\u2028 \\xa0 \\xad \u00e9 \U0001F600 \\U000e0001 \\U0010fffd \\ufeff'] }}",
         "[&#39;\\u2028 \\xa0 \\xad \u00e9 \U0001F600 \\U000e0001 \\U0010fffd \\ufeff&#39;]"},
        {"{{ d }}", "{&#39;k\\n&#39;: [&#39;\\x1b&#39;]}"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], "{\"d\": {\"k\\n\": [\"\\u001b\"]}}");
    sq_templates_free(t);
}

/* An elif chain is not nesting: any length compiles, and renders (and is freed) without
 * recursing once per elif. */
static void test_long_elif_chain(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    enum { N = 20000 };
    char *src = malloc((size_t)N * 40 + 64), *p = src;
    assert_non_null(src);
    p += sprintf(p, "{%% if n == 0 %%}0");
    for (int i = 1; i < N; i++) p += sprintf(p, "{%% elif n == %d %%}%d", i, i);
    p += sprintf(p, "{%% else %%}none{%% endif %%}");
    char want[16];
    for (int n = 0; n <= N; n += N / 4) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "{\"n\": %d}", n == N ? N - 1 : n);
        snprintf(want, sizeof want, "%d", n == N ? N - 1 : n);
        assert_string_equal(render(t, src, ctx), want);
    }
    assert_string_equal(render(t, src, "{\"n\": -1}"), "none");
    free(src);
    sq_templates_free(t);
}

/* raw's end tag: the name whole, then only "%}" (with a '-'): else an error, as in Jinja2 */
static void test_tag_errors(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    static const tcase cases[] = {
        {"{% raw %}x{% endraw", "ERROR t.html:1:11: unclosed '{%'"},
        {"{% raw %}x{% endraw x %}", "ERROR t.html:1:21: unexpected 'x' at the end of the tag"},
        {"{% raw %}x{% endrawx %}y{% endraw %}", "x{% endrawx %}y"},
        /* a malformed end tag is text when a proper one follows (Jinja2's raw regex) */
        {"{% raw %}x{% endraw x %}y{% endraw %}", "x{% endraw x %}y"},
        {"{% raw %}x{% endraw{% endraw %}", "x{% endraw"},
        {"{% raw %}x{%- endraw - %}y{%- endraw -%} z", "x{%- endraw - %}yz"},
        {"{% raw %}x{% endraw x %}y{% endraw",
         "ERROR t.html:1:21: unexpected 'x' at the end of the tag"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], "{}");
    sq_templates_free(t);
}

/* Jinja2's filters on numbers, text and lists (web/template_jinja2 compares their bytes with
 * Jinja2's): errors say where, and a result too long for memory is an error, not an abort. */
static void test_more_filters(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    const char *ctx = "{\"s\":\"ab\",\"l\":[3,1,2],\"o\":[{\"k\":\"b\"},{\"k\":\"A\"}]}";
    static const tcase cases[] = {
        {"{{ -2.5|abs|round(0, 'ceil') }} {{ s|title ~ l|sum }} {{ o|sort(false, false, 'k')|first "
         "}}",
         "3.0 Ab6 {&#39;k&#39;: &#39;A&#39;}"},
        {"{% for x in l|sort(true) %}{{ x }}{% endfor %} {{ l|reverse|join('-') }} {{ "
         "s|replace('a', '<') }}",
         "321 2-1-3 &lt;b"},
        {"line\n  {{ l|sum('k') }}", "ERROR t.html:2:8: sum: cannot add number and undefined"},
        {"{{ s|round }}", "ERROR t.html:1:6: round of string"},
        /* each link multiplies the length by 9: the 8th passes 64 MiB (119 MiB) */
        {"{{ s|replace('', 'abcdefgh')|replace('', 'abcdefgh')|replace('', 'abcdefgh')"
         "|replace('', 'abcdefgh')|replace('', 'abcdefgh')|replace('', 'abcdefgh')"
         "|replace('', 'abcdefgh')|replace('', 'abcdefgh')|length }}",
         "ERROR t.html:1:174: replace: a result longer than 64 MiB"},
        {"{{ s|center(100000000000) }}", "ERROR t.html:1:6: center: a width beyond 64 MiB"},
    };
    check_cases(t, cases, sizeof cases / sizeof cases[0], ctx);
    sq_templates_free(t);
}

/* A value nested as deep as a request's JSON body may be (jansson loads 2048 levels) printed
 * in a handler's coroutine: an error, not a stack overrun; as deep as real data goes, its
 * text.  (Jinja2 stops at Python's recursion limit.) */
typedef struct deep_case {
    sq_templates *t;
    const char *src, *ctx;
    const char *got;
} deep_case;

static void *render_task(void *arg)
{
    deep_case *c = arg;
    c->got = render(c->t, c->src, c->ctx);
    return NULL;
}

static void test_deep_values(void **state)
{
    sq_templates *t = sq_templates_new(dir, NULL);
    sq_loop *loop = sq_loop_new(NULL);
    assert_non_null(loop);
    /* x: 2047 lists inside one another; and 128 levels (64 objects holding a list) */
    char *deep = malloc(8 + 2 * 2047 + 2), *ok = malloc(8 + 64 * 10 + 2), *p = deep;
    assert_true(deep && ok);
    p += sprintf(p, "{\"x\": ");
    for (int i = 0; i < 2047; i++) *p++ = '[';
    for (int i = 0; i < 2047; i++) *p++ = ']';
    strcpy(p, "}");
    p = ok + sprintf(ok, "{\"x\": ");
    for (int i = 0; i < 64; i++) p += sprintf(p, "{\"k\": [");
    for (int i = 0; i < 64; i++) p += sprintf(p, "]}");
    strcpy(p, "}");
    static const char *const srcs[] = {
        "{{ x }}",       "{{ x|tojson }}", "{{ x|string }}",           "{{ [x]|join }}",
        "{{ 'a' ~ x }}", "{{ x|title }}",  "{{ x|replace('a', 'b') }}"};
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
        deep_case c = {t, srcs[i], deep, NULL};
        sq_test_run_coro(loop, render_task, &c, 30);
        if (!strstr(c.got, "ERROR t.html:1:") || !strstr(c.got, "a value nested deeper than 128"))
            fail_msg("%s: %.200s", srcs[i], c.got);
        c = (deep_case){t, srcs[i], ok, NULL};
        sq_test_run_coro(loop, render_task, &c, 30);
        if (!strncmp(c.got, "ERROR", 5)) fail_msg("%s (128 levels): %s", srcs[i], c.got);
    }
    free(deep);
    free(ok);
    sq_loop_free(loop);
    sq_templates_free(t);
}

static int render_mode(int argc, char **argv)
{
    if (argc != 5) return 2;
    sq_templates *t = sq_templates_new(argv[2], NULL);
    json_error_t je;
    json_t *ctx = json_load_file(argv[4], 0, &je);
    char err[512];
    sq_template *tpl = sq_templates_get(t, argv[3], err, sizeof err);
    int rc = 1;
    char *out;
    size_t len;
    if (!tpl || !ctx) {
        fprintf(stderr, "%s\n", tpl ? je.text : err);
        goto done;
    }
    if (sq_template_render(tpl, ctx, &out, &len, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err); /* (the Jinja2 comparison expects some errors) */
        goto done;
    }
    fwrite(out, 1, len, stdout);
    free(out);
    rc = 0;
done:
    json_decref(ctx);
    sq_templates_free(t);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "render")) return render_mode(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_inheritance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_c_filters_and_reload),
        cmocka_unit_test(test_long_template),
        cmocka_unit_test(test_deep_expressions),
        cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_int_filter),
        cmocka_unit_test(test_first_last),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_number_limits),
        cmocka_unit_test(test_repr),
        cmocka_unit_test(test_long_elif_chain),
        cmocka_unit_test(test_tag_errors),
        cmocka_unit_test(test_more_filters),
        cmocka_unit_test(test_deep_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

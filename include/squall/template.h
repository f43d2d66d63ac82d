/** @file squall/template.h
 * Templates for HTML and text (tornado.template's role, in Jinja2's syntax), rendered against
 * a jansson `json_t` context.
 *
 *     {% extends "base.html" %}
 *     {% block body %}
 *       <h1>{{ title | upper }}</h1>            {# escaped: autoescape is on #}
 *       {% for row in rows %}
 *         <tr class="{{ 'first' if loop.first else 'row' }}"><td>{{ loop.index }}</td>
 *             <td>{{ row.name }}</td><td>{{ row.tags | length }}</td></tr>
 *       {% else %}<tr><td>nothing</td></tr>{% endfor %}
 *       {{ trusted_html | safe }}
 *     {% endblock %}
 *
 * - `{{ expr }}` prints, HTML-escaped unless autoescape is off (per loader, or per template
 *   region with `{% autoescape false %}…{% endautoescape %}`); `| safe` marks trusted HTML.
 * - Expressions: literals ('text', "text" with Python's backslash escapes but `\\N{name}`,
 *   an error, 12, 1.5,
 *   true/false/none — also True/False/None; a number beyond a 64-bit integer or a double, as
 *   a literal or a result, is an error where Jinja2 has big integers and inf), names, `a.b`,
 *   `a[0]`, `a["key"]`, `a[i]`, `+ - * / // %` on numbers (`~` joins as strings),
 *   comparisons `== != < <= > >=`, `in`, `not in`, `and`, `or`, `not`, parentheses,
 *   `x if cond else y`; a unary minus binds tighter than a filter (`-3|abs` is 3, as
 *   in Jinja2).  An unknown name or
 *   missing key is undefined: it prints as "" and is false (Jinja2's default).  One
 *   expression nests at most 64 deep, each parenthesis, bracket, unary operator and each
 *   link of a chain (`a + b + c`, `x|f|g`, `a.b.c`) counted.
 * - Filters: `escape`/`e`, `safe`, `url`/`urlencode`, `json`/`tojson` (Jinja2's bytes: sorted keys,
 *   ASCII, `< > & '` as `\\u` escapes), `upper`, `lower`,
 *   `default(x)`/`d(x)`, `length`/`count`, `join(sep)`, `trim`, `first`, `last` (of a
 *   list, a string's characters, an object's keys), `string`,
 *   `int`/`int(default)` (Jinja2's: Python's int() of a string, else int(float()), else
 *   the default, 0, also for an infinity or NaN; beyond 64 bits, the end of the range),
 *   and C filters registered
 *   with sq_templates_add_filter().  Also Jinja2 3.1's (web/template_jinja2 compares
 *   their bytes), arguments in Jinja2's order:
 *   `float(default=0.0)`, `abs`, `round(precision=0, method='common'|'ceil'|'floor')`
 *   (an integer stays one with 'common', as Python's round(); ties to even),
 *   `replace(old, new, count)`, `capitalize`, `title`, `center(width=80)`,
 *   `truncate(length=255, killwords=false, end='...', leeway=5)` (in characters),
 *   `wordcount`, `reverse`, `list`, `sort(reverse=false, case_sensitive=false, attribute)`,
 *   `unique(case_sensitive=false, attribute)`, `min`/`max(case_sensitive=false, attribute)`,
 *   `sum(attribute, start=0)` (Python 3.11's: left to right).  An attribute is a key or
 *   a dotted path ("user.age", "0").  Where they differ from Jinja2:
 *   - arguments are positional only: no `name=value` (write `sort(false, false, 'age')`);
 *   - upper, lower, capitalize, title and case-insensitive comparisons change ASCII letters
 *     only ("été"|upper is "éTé"); wordcount takes non-ASCII characters for letters except
 *     common punctuation, symbols, spaces and combining accents (Python has all of Unicode);
 *   - reverse and unique give a list (Jinja2 an iterator, which prints as its repr);
 *   - sort, min and max order numbers and strings, not lists;
 *   - numbers beyond 64-bit integers or doubles (Python's big integers, inf and nan:
 *     "inf"|float) and a filter's text beyond 64 MiB are errors.
 * - Tags: `if`/`elif`/`else`/`endif`; `for x in list` (and `for k, v in object|items`) with
 *   `loop.index`, `loop.index0`, `loop.revindex`, `loop.first`, `loop.last`, `loop.length`
 *   and a `{% else %}` for an empty list; `set` (local to the loop body, block or included
 *   template it is in, as in Jinja2); `include "name"` (a template may include
 *   itself, under a condition: a tree, up to 32 deep); `extends "name"` with
 *   `block`/`endblock` (and `super()` inside a block); `raw`/`endraw`; comments `{# … #}`;
 *   whitespace control `{%-`, `-%}`, `{{-`, `-}}`; a newline right after a tag is kept, as in
 *   Jinja2's defaults, which squall's also follows in reading "\r\n" and "\r" as "\n" and
 *   dropping one newline at the end of the source.
 *
 * Templates are compiled once into a tree and cached by name in their loader; with `debug`
 * a changed file is compiled again.  Errors say where: "page.html:3:14: unknown filter
 * 'uper'", at compile time for syntax, names of filters and templates that do not exist.
 *
 * A loader and its templates belong to one thread at a time (the loop's, for an app): the
 * cache, and facts about the tree that the first render works out and keeps, are not locked.
 */
#ifndef SQUALL_TEMPLATE_H
#define SQUALL_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A loader: a folder of templates, their compiled cache, filters and settings (opaque). */
typedef struct sq_templates sq_templates;
/** One compiled template (opaque). */
typedef struct sq_template sq_template;

/** Loader settings; a zeroed struct (or NULL): autoescape on, no reloading. */
typedef struct sq_template_options {
    bool no_autoescape; /**< print `{{ }}` as is (for text templates) */
    bool debug;         /**< check each file's mtime at every lookup and recompile on change */
} sq_template_options;

/** A C filter: `value | name(args…)`.  Returns a new reference (NULL: undefined).  `value`
 *  may be NULL (undefined).  Set *safe to true when the result is HTML that must not be
 *  escaped again.  On an error return NULL and set *err (a static message). */
typedef json_t *(*sq_template_filter_fn)(json_t *value, json_t *const *args, size_t nargs,
                                        void *arg, bool *safe, const char **err);

/** A loader reading templates below `root` (names are relative paths; ".." and absolute
 *  names are refused).  `root` NULL: only sq_template_compile() (no files).
 *  @return the loader, or NULL on -ENOMEM. */
sq_templates *sq_templates_new(const char *root, const sq_template_options *opts);
/** Free the loader and every template it compiled (and holds in its cache). */
void sq_templates_free(sq_templates *t);
/** Register (or replace) filter `name`.  @return 0, -EINVAL, -ENOMEM. */
int sq_templates_add_filter(sq_templates *t, const char *name, sq_template_filter_fn fn, void *arg);

/** The compiled template `name`, from the cache or compiled now (with what it extends and
 *  includes).  Owned by the loader; with `debug`, valid until a later lookup of the same name
 *  finds its file changed (a render keeps what it uses alive).  NULL on an error, described in err
 * (errlen bytes): "name:line:col: message", or "name: No such file or directory". */
sq_template *sq_templates_get(sq_templates *t, const char *name, char *err, size_t errlen);
/** Compile `src` (len bytes) as a template called `name` (for messages; `extends` and
 *  `include` still load files through the loader).  Free it with sq_template_free().
 *  NULL on an error, described in err. */
sq_template *sq_template_compile(sq_templates *t, const char *name, const char *src, size_t len,
                                 char *err, size_t errlen);
/** Free a template from sq_template_compile() (not one from sq_templates_get()). */
void sq_template_free(sq_template *tpl);

/** Render with `ctx` (a JSON object, borrowed; NULL: empty).  *out gets the text (malloc'd,
 *  NUL-terminated; the caller frees it) and *len its length.
 *  @return 0, or -EINVAL with err describing a render-time error (a filter's, a bad
 *  operand: "page.html:7:12: cannot add string and number"; a list or object written as
 *  text or by tojson with lists and objects nested more than 128 deep, as Python stops at
 *  its recursion limit), -ELOOP (extends/include nested deeper than 32), -ENOMEM. */
int sq_template_render(sq_template *tpl, json_t *ctx, char **out, size_t *len, char *err,
                       size_t errlen);

#ifdef __cplusplus
}
#endif
#endif

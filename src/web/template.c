/* Templates (squall/template.h): a compiler from Jinja2-style source to a tree of nodes and
 * expressions, and a renderer walking that tree against a json_t context.
 *
 * Compiling: the source is cut into text, `{{ }}`, `{% %}` and `{# #}` pieces (whitespace
 * control applied there); each tag's inside is tokenized and parsed by recursive descent.
 * Rendering: a scope stack of names over the context, values as (json_t reference, safe
 * flag), output into one growing buffer. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "httputil_internal.h"
#include "internal.h"
#include "squall/template.h"

#define MAX_DEPTH 32 /* extends + include nesting */
#define MAX_EXPR_DEPTH 64 /* parentheses, brackets, unary operators inside one expression */
/* Lists and objects inside one another that a value may have to be printed (str, tojson):
 * the writers recurse on it, on a coroutine's stack (a request's JSON body nests up to 2048
 * deep, which overran the default 256 KiB); Python's own repr and json.dumps stop at its
 * recursion limit too */
#define MAX_VALUE_DEPTH 128

/* --- the tree ----------------------------------------------------------------------------- */

enum {
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_FILTER, E_NOT, E_NEG, E_AND, E_OR, E_CMP, E_IN, E_NOTIN,
    E_ARITH, E_CONCAT, E_COND, E_LIST, E_SUPER
};
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD };

typedef struct filter_def filter_def;

typedef struct expr {
    int kind, op, line, col;
    json_t *lit;
    char *name;
    struct expr *a, *b, *c;
    struct expr **args;
    size_t nargs;
    const filter_def *filter;
    signed char intish; /* int_of() may apply: -1 not known yet, 0 no, 1 yes (set on first use) */
    size_t namelen;     /* E_ATTR: strlen(name), for json_object_getn */
} expr;

enum { N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_INCLUDE, N_BLOCK, N_AUTOESC };

typedef struct node {
    int kind, line, col;
    char *text;
    size_t len;
    expr *e;
    char *name, *name2; /* for: the loop variables; set: the name; block: its name */
    struct node *body, *els, *next;
    bool flag; /* autoescape: on or off; block: whether its body autoescapes where it is written;
                * if: an elif (the only node of its if's els), walked in a loop, not recursion */
} node;

struct filter_def {
    char *name;
    sq_template_filter_fn fn;
    void *arg;
    struct filter_def *next;
};

typedef struct cache_entry {
    struct cache_entry *next;
    sq_template *tpl;
} cache_entry;

struct sq_templates {
    char *root;
    sq_template_options opts;
    filter_def *filters;
    cache_entry *cache;
    int renders;          /* renders under way (debug: a reload must not free what they use) */
    const char
        *compiling[MAX_DEPTH + 2]; /* names of the templates being compiled, outermost first */
    int ncompiling;
    cache_entry *retired; /* templates replaced while a render was under way */
};

struct sq_template {
    sq_templates *loader;
    char *name;
    node *root;
    char *parent; /* extends */
    node **blocks;
    size_t nblocks;
    bool cached; /* owned by the loader's cache */
    struct timespec mtime;
    size_t out_hint; /* the size of its last output: the next render reserves it at once */
};

static void expr_free(expr *e)
{
    if (!e) return;
    json_decref(e->lit);
    free(e->name);
    expr_free(e->a);
    expr_free(e->b);
    expr_free(e->c);
    for (size_t i = 0; i < e->nargs; i++) expr_free(e->args[i]);
    free(e->args);
    free(e);
}

static void nodes_free(node *n)
{
    while (n) {
        node *next = n->next;
        free(n->text);
        free(n->name);
        free(n->name2);
        expr_free(n->e);
        nodes_free(n->body);
        if (n->els && n->els->kind == N_IF && n->els->flag) { /* an elif chain: in this loop */
            n->els->next = next;
            next = n->els;
        } else {
            nodes_free(n->els);
        }
        free(n);
        n = next;
    }
}

/* --- compiling ------------------------------------------------------------------------------ */

typedef struct parser {
    sq_templates *loader;
    sq_template *tpl;
    const char *src, *end;
    const char *p;     /* in the tag being parsed */
    const char *tend;  /* end of the tag's inside */
    char *err;
    size_t errlen;
    bool failed;
    bool autoescape; /* at the point being parsed: a block's body keeps it (it is lexical) */
    int tdepth; /* templates compiled around this one (extends, include) */
    int edepth; /* expression nesting, bounded (the parser recurses) */
    /* the last position worked out: the next one is found from there (from the start of
     * the source every time, a long template took time quadratic in its length) */
    const char *pos_at;
    int pos_line, pos_col;
} parser;

static void pos_of(parser *ps, const char *at, int *line, int *col)
{
    if (!ps->pos_at) {
        ps->pos_at = ps->src;
        ps->pos_line = ps->pos_col = 1;
    }
    if (at > ps->end) at = ps->end;
    const char *q = ps->pos_at;
    int l = ps->pos_line, c = ps->pos_col;
    for (; q < at; q++) {
        if (*q == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    if (q > at) { /* back (a binary operator's node is made after its right side is parsed) */
        bool lines = false;
        for (; q > at; q--, c--)
            if (q[-1] == '\n') l--, lines = true;
        if (lines) { /* on an earlier line: its column from that line's start */
            const char *bol = at;
            while (bol > ps->src && bol[-1] != '\n') bol--;
            c = (int)(at - bol) + 1;
        }
    }
    ps->pos_at = at;
    ps->pos_line = *line = l;
    ps->pos_col = *col = c;
}

static void fail(parser *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(parser *ps, const char *at, const char *fmt, ...)
{
    if (ps->failed) return;
    ps->failed = true;
    int line, col;
    pos_of(ps, at, &line, &col);
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->err && ps->errlen) snprintf(ps->err, ps->errlen, "%s:%d:%d: %s", ps->tpl->name, line, col, msg);
}

/* tokens of a tag's inside */
enum { T_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct tok {
    int kind;
    const char *s; /* where it starts */
    size_t len;
} tok;

static void skip_ws(parser *ps)
{
    while (ps->p < ps->tend && isspace((unsigned char)*ps->p)) ps->p++;
}

static tok peek(parser *ps)
{
    skip_ws(ps);
    const char *p = ps->p;
    tok t = {T_END, p, 0};
    if (p >= ps->tend) return t;
    unsigned char c = (unsigned char)*p;
    if (isalpha(c) || c == '_') {
        const char *q = p;
        while (q < ps->tend && (isalnum((unsigned char)*q) || *q == '_')) q++;
        t = (tok){T_NAME, p, (size_t)(q - p)};
    } else if (isdigit(c)) {
        const char *q = p;
        bool fl = false;
        while (q < ps->tend && (isdigit((unsigned char)*q) || *q == '_')) q++;
        /* '_' between digits in every part, as Python and Jinja2 allow (checked when read) */
        if (q + 1 < ps->tend && *q == '.' && isdigit((unsigned char)q[1])) {
            fl = true;
            q++;
            while (q < ps->tend && (isdigit((unsigned char)*q) || *q == '_')) q++;
        }
        if (q < ps->tend && (*q == 'e' || *q == 'E')) {
            const char *r = q + 1;
            if (r < ps->tend && (*r == '+' || *r == '-')) r++;
            if (r < ps->tend && isdigit((unsigned char)*r)) {
                fl = true;
                q = r;
                while (q < ps->tend && (isdigit((unsigned char)*q) || *q == '_')) q++;
            }
        }
        t = (tok){fl ? T_FLOAT : T_INT, p, (size_t)(q - p)};
    } else if (c == '\'' || c == '"') {
        const char *q = p + 1;
        while (q < ps->tend && *q != (char)c) q += *q == '\\' && q + 1 < ps->tend ? 2 : 1;
        t = (tok){T_STR, p, (size_t)(q < ps->tend ? q + 1 - p : q - p)};
    } else {
        static const char *const two[] = {"==", "!=", "<=", ">=", "//", NULL};
        size_t n = 1;
        for (int i = 0; two[i]; i++)
            if (p + 1 < ps->tend && p[0] == two[i][0] && p[1] == two[i][1]) n = 2;
        t = (tok){T_OP, p, n};
    }
    return t;
}

static tok next(parser *ps)
{
    tok t = peek(ps);
    ps->p = t.s + t.len;
    return t;
}

static bool is(tok t, const char *s)
{
    return t.kind != T_END && t.kind != T_STR && strlen(s) == t.len && !memcmp(t.s, s, t.len);
}

static bool take(parser *ps, const char *s)
{
    if (!is(peek(ps), s)) return false;
    next(ps);
    return true;
}

static bool expect(parser *ps, const char *s)
{
    tok t = peek(ps);
    if (take(ps, s)) return true;
    fail(ps, t.s, "expected '%s', found %s%.*s%s", s, t.kind == T_END ? "the end of the tag" : "'",
         t.kind == T_END ? 0 : (int)t.len, t.s, t.kind == T_END ? "" : "'");
    return false;
}

static expr *mk(parser *ps, int kind, const char *at)
{
    expr *e = calloc(1, sizeof *e);
    if (!e) {
        fail(ps, at, "out of memory");
        return NULL;
    }
    e->kind = kind;
    e->intish = -1;
    pos_of(ps, at, &e->line, &e->col);
    return e;
}

/* s[0..n) without the '_' that Python allows between two digits of a number, NUL-ended in
 * *out (malloc'd).  -EINVAL for a '_' elsewhere (1__0, _1, 1_.5), -ENOMEM. */
static int strip_underscores(const char *s, size_t n, char **out)
{
    char *t = malloc(n + 1), *o = t;
    if (!t) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '_') {
            *o++ = s[i];
        } else if (!i || i + 1 == n || !isdigit((unsigned char)s[i - 1]) ||
                   !isdigit((unsigned char)s[i + 1])) {
            free(t);
            return -EINVAL;
        }
    }
    *o = '\0';
    *out = t;
    return 0;
}

/* A string literal's value.  Jinja2 reads escapes as Python does: \\ \' \" \a \b \f \n \r
 * \t \v, \ooo (octal), \xhh, \uhhhh, \Uhhhhhhhh, a backslash-newline joins the lines, and a
 * backslash before anything else stays ('C:\dir').  NULL with *why on a bad escape (and on
 * \N{name}, which needs Unicode's names). */
static json_t *str_literal(tok t, const char **why)
{
    static const char named[] = "\\'\"abfnrtv", value[] = "\\'\"\a\b\f\n\r\t\v";
    sq__buf b = {0};
    const char *s = t.s + 1, *end = t.s + t.len - 1;
    int rc = 0;
    *why = NULL;
    while (s < end && !rc && !*why) {
        if (*s != '\\' || s + 1 >= end) {
            rc = sq__buf_append(&b, s++, 1);
            continue;
        }
        char d = s[1];
        s += 2;
        const char *n = d ? strchr(named, d) : NULL;
        int digits = d == 'x' ? 2 : d == 'u' ? 4 : d == 'U' ? 8 : 0;
        unsigned long cp = 0;
        if (n) {
            rc = sq__buf_append(&b, &value[n - named], 1);
        } else if (d == '\n') {
            /* a backslash-newline continues the line: nothing */
        } else if (digits) {
            for (int i = 0; i < digits; i++, s++) {
                int h = s < end ? sq__hexval((unsigned char)*s) : -1;
                if (h < 0) {
                    *why = "a \\x, \\u or \\U escape without all its hex digits";
                    break;
                }
                cp = cp * 16 + (unsigned long)h;
            }
        } else if (d == 'N') {
            /* Python's \N{name}: Jinja2 writes the named character (or fails); without
             * Unicode's name table, an error rather than the escape's text */
            *why = "a \\N{...} escape (Unicode character names are not supported)";
        } else if (d >= '0' && d <= '7') {
            cp = (unsigned long)(d - '0');
            for (int i = 0; i < 2 && s < end && *s >= '0' && *s <= '7'; i++)
                cp = cp * 8 + (unsigned long)(*s++ - '0');
            digits = 1;
        } else {
            rc = sq__buf_append(&b, s - 2, 2);
        }
        if (digits && !*why) {
            if (cp == 0) {
                rc = sq__buf_append(&b, "", 1);
            } else if (!(rc = sq__buf_reserve(&b, 4))) { /* encoded in place */
                size_t k = sq__put_utf8(b.ptr + b.len, cp);
                b.len += k;
                if (!k) *why = "an escape that is not a Unicode character";
            }
        }
    }
    json_t *j = !rc && !*why ? json_stringn(b.ptr ? b.ptr : "", b.len) : NULL;
    sq__buf_free(&b);
    if (!j && !*why) *why = rc ? "out of memory" : "a string that is not UTF-8";
    return j;
}

static expr *parse_expr(parser *ps);
static const filter_def *find_filter(sq_templates *t, const char *name, size_t len);

/* One more level of expression nesting at `at`: false (and failed) beyond the bound.  Chains
 * (a + b + c, x|f|g, a.b.c) count too: they build trees as deep as they are long, and
 * rendering and freeing a tree recurse on its depth. */
static bool deeper(parser *ps, const char *at)
{
    if (++ps->edepth <= MAX_EXPR_DEPTH) return true;
    fail(ps, at, "an expression nested too deep");
    return false;
}

static expr *parse_primary(parser *ps)
{
    tok t = next(ps);
    expr *e = NULL;
    if (t.kind == T_STR) {
        if (t.len < 2 || t.s[t.len - 1] != t.s[0]) {
            fail(ps, t.s, "unterminated string");
            return NULL;
        }
        e = mk(ps, E_LIT, t.s);
        const char *why;
        if (e && !(e->lit = str_literal(t, &why))) fail(ps, t.s, "%s", why);
    } else if (t.kind == T_INT || t.kind == T_FLOAT) {
        char *num; /* the whole literal, however long: not cut to a buffer's size */
        int rc = strip_underscores(t.s, t.len, &num);
        if (rc < 0) {
            fail(ps, t.s, rc == -ENOMEM ? "out of memory" : "a '_' that is not between two digits");
            return NULL;
        }
        errno = 0;
        double d = t.kind == T_FLOAT ? strtod(num, NULL) : 0;
        long long i = t.kind == T_INT ? strtoll(num, NULL, 10) : 0;
        bool big = t.kind == T_INT ? errno == ERANGE : isinf(d); /* (an underflow reads as 0.0) */
        free(num);
        /* Jinja2 would print a big integer or inf; squall's numbers are jansson's, 64-bit
         * integers and finite doubles: an error here, not a clamped or vanished value */
        if (big) {
            fail(ps, t.s, "a number too large");
            return NULL;
        }
        e = mk(ps, E_LIT, t.s);
        if (e) e->lit = t.kind == T_INT ? json_integer(i) : json_real(d);
    } else if (t.kind == T_NAME) {
        if (is(t, "true") || is(t, "True")) {
            if ((e = mk(ps, E_LIT, t.s))) e->lit = json_true();
        } else if (is(t, "false") || is(t, "False")) {
            if ((e = mk(ps, E_LIT, t.s))) e->lit = json_false();
        } else if (is(t, "none") || is(t, "None")) {
            if ((e = mk(ps, E_LIT, t.s))) e->lit = json_null();
        } else if (is(t, "super") && is(peek(ps), "(")) {
            next(ps);
            if (expect(ps, ")")) e = mk(ps, E_SUPER, t.s);
        } else if ((e = mk(ps, E_NAME, t.s))) {
            e->name = strndup(t.s, t.len);
        }
    } else if (is(t, "(")) {
        e = parse_expr(ps);
        if (!expect(ps, ")")) {
            expr_free(e);
            return NULL;
        }
    } else if (is(t, "[")) {
        e = mk(ps, E_LIST, t.s);
        while (e && !ps->failed && !take(ps, "]")) {
            if (e->nargs && !expect(ps, ",")) break;
            if (take(ps, "]")) break;
            expr **a = realloc(e->args, (e->nargs + 1) * sizeof *a);
            if (!a) break;
            e->args = a;
            e->args[e->nargs++] = parse_expr(ps);
        }
    } else {
        fail(ps, t.s, t.kind == T_END ? "an expression is missing" : "unexpected '%.*s'", (int)t.len, t.s);
    }
    return e;
}

static expr *parse_postfix(parser *ps, expr *e)
{
    int depth = ps->edepth;
    while (e && !ps->failed) {
        tok t = peek(ps);
        if ((is(t, ".") || is(t, "[")) && !deeper(ps, t.s)) break;
        if (is(t, ".")) {
            next(ps);
            tok n = next(ps);
            if (n.kind != T_NAME && n.kind != T_INT) {
                fail(ps, n.s, "a name is expected after '.'");
                break;
            }
            expr *a = mk(ps, E_ATTR, t.s);
            if (!a) break;
            a->a = e;
            a->name = strndup(n.s, n.len);
            a->namelen = a->name ? strlen(a->name) : 0;
            if (e->kind == E_NAME && e->name && !strcmp(e->name, "loop") && a->name) {
                static const char *const fields[] = {"index", "index0", "first", "last",
                                                     "length", "revindex", "revindex0", NULL};
                for (int i = 0; fields[i]; i++)
                    if (!strcmp(a->name, fields[i])) a->op = i + 1; /* eval takes loop.* directly */
            }
            e = a;
        } else if (is(t, "[")) {
            next(ps);
            expr *a = mk(ps, E_INDEX, t.s);
            if (!a) break;
            a->a = e;
            a->b = parse_expr(ps);
            e = a;
            expect(ps, "]");
        } else {
            break;
        }
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_filters(parser *ps, expr *e)
{
    int depth = ps->edepth;
    while (e && !ps->failed && is(peek(ps), "|")) {
        if (!deeper(ps, next(ps).s)) break;
        tok n = next(ps);
        if (n.kind != T_NAME) {
            fail(ps, n.s, "a filter name is expected after '|'");
            break;
        }
        expr *f = mk(ps, E_FILTER, n.s);
        if (!f) break;
        f->a = e;
        f->name = strndup(n.s, n.len);
        f->filter = find_filter(ps->loader, n.s, n.len);
        e = f;
        if (!f->filter) {
            fail(ps, n.s, "unknown filter '%.*s'", (int)n.len, n.s);
            break;
        }
        if (take(ps, "(")) {
            while (!ps->failed && !take(ps, ")")) {
                if (f->nargs && !expect(ps, ",")) break;
                expr **a = realloc(f->args, (f->nargs + 1) * sizeof *a);
                if (!a) break;
                f->args = a;
                f->args[f->nargs++] = parse_expr(ps);
            }
        }
    }
    ps->edepth = depth;
    return e;
}

/* A unary minus binds tighter than filters, as in Jinja2's parser: `-3|abs` is (-3)|abs, and
 * the filters after `-x` apply to the negation, the innermost minus' operand taking none. */
static expr *parse_unary_nofilter(parser *ps)
{
    tok t = peek(ps);
    if (is(t, "-")) {
        next(ps);
        if (!deeper(ps, t.s)) {
            ps->edepth--;
            return NULL;
        }
        expr *e = mk(ps, E_NEG, t.s);
        if (e) e->a = parse_unary_nofilter(ps);
        ps->edepth--;
        return e;
    }
    return parse_postfix(ps, parse_primary(ps));
}

static expr *parse_unary(parser *ps)
{
    return parse_filters(ps, parse_unary_nofilter(ps));
}

static expr *binary(parser *ps, int kind, int op, const char *at, expr *a, expr *b)
{
    expr *e = mk(ps, kind, at);
    if (!e) {
        expr_free(a);
        expr_free(b);
        return NULL;
    }
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static expr *parse_mul(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_unary(ps);
    for (;;) {
        tok t = peek(ps);
        int op = is(t, "*") ? OP_MUL : is(t, "//") ? OP_FDIV : is(t, "/") ? OP_DIV : is(t, "%") ? OP_MOD : -1;
        if (op < 0 || ps->failed || !deeper(ps, t.s)) break;
        next(ps);
        e = binary(ps, E_ARITH, op, t.s, e, parse_unary(ps));
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_add(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_mul(ps);
    for (;;) {
        tok t = peek(ps);
        int op = is(t, "+") ? OP_ADD : is(t, "-") ? OP_SUB : -1;
        if (op < 0 || ps->failed || !deeper(ps, t.s)) break;
        next(ps);
        e = binary(ps, E_ARITH, op, t.s, e, parse_mul(ps));
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_concat(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_add(ps);
    while (!ps->failed && is(peek(ps), "~")) {
        tok t = next(ps);
        if (!deeper(ps, t.s)) break;
        e = binary(ps, E_CONCAT, 0, t.s, e, parse_add(ps));
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_cmp(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_concat(ps);
    for (;;) {
        tok t = peek(ps);
        int op = is(t, "==") ? OP_EQ : is(t, "!=") ? OP_NE : is(t, "<=") ? OP_LE : is(t, ">=") ? OP_GE
               : is(t, "<") ? OP_LT : is(t, ">") ? OP_GT : -1;
        if (ps->failed) break;
        if ((op >= 0 || is(t, "in") || is(t, "not")) && !deeper(ps, t.s)) break;
        if (op >= 0) {
            next(ps);
            e = binary(ps, E_CMP, op, t.s, e, parse_concat(ps));
        } else if (is(t, "in")) {
            next(ps);
            e = binary(ps, E_IN, 0, t.s, e, parse_concat(ps));
        } else if (is(t, "not")) {
            const char *save = ps->p;
            next(ps);
            if (!take(ps, "in")) {
                ps->p = save;
                break;
            }
            e = binary(ps, E_NOTIN, 0, t.s, e, parse_concat(ps));
        } else {
            break;
        }
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_not(parser *ps)
{
    tok t = peek(ps);
    if (is(t, "not")) {
        next(ps);
        if (!deeper(ps, t.s)) {
            ps->edepth--;
            return NULL;
        }
        expr *e = mk(ps, E_NOT, t.s);
        if (e) e->a = parse_not(ps);
        ps->edepth--;
        return e;
    }
    return parse_cmp(ps);
}

static expr *parse_and(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_not(ps);
    while (!ps->failed && is(peek(ps), "and")) {
        tok t = next(ps);
        if (!deeper(ps, t.s)) break;
        e = binary(ps, E_AND, 0, t.s, e, parse_not(ps));
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_or(parser *ps)
{
    int depth = ps->edepth;
    expr *e = parse_and(ps);
    while (!ps->failed && is(peek(ps), "or")) {
        tok t = next(ps);
        if (!deeper(ps, t.s)) break;
        e = binary(ps, E_OR, 0, t.s, e, parse_and(ps));
    }
    ps->edepth = depth;
    return e;
}

static expr *parse_expr_inner(parser *ps);

static expr *parse_expr(parser *ps)
{
    if (!deeper(ps, ps->p)) {
        ps->edepth--;
        return NULL;
    }
    expr *e = parse_expr_inner(ps);
    ps->edepth--;
    return e;
}

static expr *parse_expr_inner(parser *ps)
{
    expr *e = parse_or(ps);
    tok t = peek(ps);
    if (!ps->failed && is(t, "if")) {
        next(ps);
        expr *c = mk(ps, E_COND, t.s);
        if (!c) {
            expr_free(e);
            return NULL;
        }
        c->a = e;
        c->b = parse_or(ps);
        if (take(ps, "else")) c->c = parse_expr(ps);
        return c;
    }
    return e;
}

/* The whole inside of a tag must have been used. */
static void tag_done(parser *ps)
{
    tok t = peek(ps);
    if (t.kind != T_END) fail(ps, t.s, "unexpected '%.*s' at the end of the tag", (int)t.len, t.s);
}

/* --- tags and text ---------------------------------------------------------------------------- */

typedef struct piece {
    int kind; /* 0 text, 1 output, 2 tag, -1 end of source */
    const char *s, *e; /* text, or the tag's inside */
    const char *at;    /* where it starts */
} piece;

typedef struct lexer {
    const char *p, *end;
    bool strip_next; /* the previous tag ended with '-' */
} lexer;

static bool is_space_c(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next piece of source.  Comments are skipped; `{% raw %}` … `{% endraw %}` is text. */
static piece lex(parser *ps, lexer *lx)
{
    for (;;) {
        if (lx->p >= lx->end) return (piece){-1, lx->p, lx->p, lx->p};
        const char *start = lx->p;
        const char *q = start;
        while (q + 1 < lx->end && !(q[0] == '{' && (q[1] == '{' || q[1] == '%' || q[1] == '#'))) q++;
        if (q + 1 >= lx->end) q = lx->end;
        if (q > start) {
            const char *s = start, *e = q;
            if (lx->strip_next)
                while (s < e && is_space_c(*s)) s++;
            lx->strip_next = false;
            /* the next tag strips what comes before it with '{%-' */
            if (q + 2 < lx->end && q[2] == '-')
                while (e > s && is_space_c(e[-1])) e--;
            lx->p = q;
            if (e > s) return (piece){0, s, e, start};
            continue;
        }
        lx->strip_next = false;
        char kind = q[1];
        const char *in = q + 2;
        if (in < lx->end && *in == '-') in++;
        const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        const char *c = in;
        while (c + 1 < lx->end && !(c[0] == close[0] && c[1] == close[1])) {
            if (kind != '#' && (*c == '"' || *c == '\'')) { /* a string may hold the closer */
                char qch = *c++;
                while (c < lx->end && *c != qch) c += *c == '\\' ? 2 : 1;
                if (c < lx->end) c++;
                continue;
            }
            c++;
        }
        if (c + 1 >= lx->end) {
            fail(ps, q, "unclosed '%c%c'", '{', kind);
            return (piece){-1, lx->end, lx->end, q};
        }
        const char *ie = c;
        if (ie > in && ie[-1] == '-') {
            ie--;
            lx->strip_next = true;
        }
        lx->p = c + 2;
        if (kind == '#') continue;
        if (kind == '%') {
            /* raw: everything up to {% endraw %} is text */
            const char *w = in;
            while (w < ie && is_space_c(*w)) w++;
            const char *we = ie;
            while (we > w && is_space_c(we[-1])) we--;
            if (we - w == 3 && !strncmp(w, "raw", 3)) {
                /* `{% raw -%}` strips the start of the text; `{% endraw -%}` what follows */
                bool strip_start = lx->strip_next;
                const char *r = lx->p, *text = r;
                /* An "endraw" tag that does not close (nothing after it, or more than a '-'
                 * before its "%}") is text, as Jinja2's raw pattern reads on to the next
                 * one; if none follows, the first such tag is what is reported. */
                const char *bad = NULL, *bad_tag = NULL, *bad_end = NULL;
                while (r + 1 < lx->end) {
                    if (r[0] == '{' && r[1] == '%') {
                        const char *x = r + 2;
                        if (x < lx->end && *x == '-') x++;
                        while (x < lx->end && is_space_c(*x)) x++;
                        const char *y = x + 6; /* the name whole: not "endrawx" */
                        if (lx->end - x >= 6 && !strncmp(x, "endraw", 6) &&
                            (y == lx->end || !(isalnum((unsigned char)*y) || *y == '_'))) {
                            const char *te = r;
                            if (r[2] == '-')
                                while (te > text && is_space_c(te[-1])) te--;
                            /* then only spaces, a '-', and the "%}" that ends the tag */
                            while (y < lx->end && is_space_c(*y)) y++;
                            lx->strip_next = y < lx->end && *y == '-';
                            y += lx->strip_next;
                            if (y + 1 >= lx->end || y[0] != '%' || y[1] != '}') {
                                if (!bad) {
                                    const char *z = y;
                                    while (z < lx->end && !is_space_c(*z) && *z != '%' && *z != '-')
                                        z++;
                                    bad = y, bad_tag = r, bad_end = z;
                                }
                                r++;
                                continue;
                            }
                            lx->p = y + 2;
                            if (strip_start)
                                while (text < te && is_space_c(*text)) text++;
                            return (piece){0, text, te, q};
                        }
                    }
                    r++;
                }
                if (!bad)
                    fail(ps, q, "'raw' without 'endraw'");
                else if (bad + 1 >= lx->end || bad_end == bad)
                    fail(ps, bad_tag, "unclosed '{%%'");
                else
                    fail(ps, bad, "unexpected '%.*s' at the end of the tag", (int)(bad_end - bad),
                         bad);
                return (piece){-1, lx->end, lx->end, bad ? bad_tag : q};
            }
        }
        return (piece){kind == '{' ? 1 : 2, in, ie, q};
    }
}

static node *new_node(parser *ps, int kind, const char *at)
{
    node *n = calloc(1, sizeof *n);
    if (!n) {
        fail(ps, at, "out of memory");
        return NULL;
    }
    n->kind = kind;
    pos_of(ps, at, &n->line, &n->col);
    return n;
}

/* Parse nodes until one of the `stops` tags ("endif", "else" …; NULL-terminated) or the end.
 * Returns the list; *stop gets the tag name that ended it ("" at the end of the source). */
static node *parse_nodes(parser *ps, lexer *lx, const char *const *stops, char *stop, size_t stoplen,
                         int depth);

static const char *tag_name(parser *ps, piece pc, tok *t)
{
    ps->p = pc.s;
    ps->tend = pc.e;
    *t = next(ps);
    return t->kind == T_NAME ? t->s : NULL;
}

static bool tag_is(tok t, const char *s)
{
    return t.kind == T_NAME && strlen(s) == t.len && !memcmp(t.s, s, t.len);
}

/* Block n, whose tag starts at `at`, into the template's list: a second one of a name is an
 * error where it is. */
static void add_block(parser *ps, node *n, const char *at)
{
    sq_template *tpl = ps->tpl;
    for (size_t i = 0; i < tpl->nblocks; i++)
        if (!strcmp(tpl->blocks[i]->name, n->name)) {
            fail(ps, at, "block '%s' defined twice", n->name);
            return;
        }
    node **b = realloc(tpl->blocks, (tpl->nblocks + 1) * sizeof *b);
    if (!b) return;
    tpl->blocks = b;
    tpl->blocks[tpl->nblocks++] = n;
}

static sq_template *load(sq_templates *t, const char *name, char *err, size_t errlen, int depth);

/* A template this one includes or extends failed to compile: its own message, which names
 * its file, line and column, is the useful one; a missing file is told from here. */
static void fail_nested(parser *ps, const char *at, const char *what, const char *name, const char *e2)
{
    size_t n = strlen(name);
    if (!strncmp(e2, name, n) && e2[n] == ':' && isdigit((unsigned char)e2[n + 1])) {
        if (!ps->failed && ps->err && ps->errlen) snprintf(ps->err, ps->errlen, "%s", e2);
        ps->failed = true;
        return;
    }
    fail(ps, at, "%s: %s", what, e2);
}

static node *parse_tag(parser *ps, lexer *lx, piece pc, int depth)
{
    tok t;
    tag_name(ps, pc, &t);
    const char *at = pc.at;
    char stop[16];
    if (tag_is(t, "if")) {
        node *n = new_node(ps, N_IF, at), *cur = n;
        static const char *const stops[] = {"elif", "else", "endif", NULL};
        while (cur) {
            cur->e = parse_expr(ps);
            tag_done(ps);
            cur->body = parse_nodes(ps, lx, stops, stop, sizeof stop, depth + 1);
            if (ps->failed || strcmp(stop, "elif")) break;
            /* an elif is an if in the else branch, flagged: a chain of any length is one
             * level of nesting, and rendering and freeing walk it in a loop (Jinja2 has no
             * bound on it); parse_nodes left the tag's inside at its name */
            node *el = new_node(ps, N_IF, ps->p);
            next(ps);
            if (el) el->flag = true;
            cur = cur->els = el;
        }
        if (!ps->failed && !strcmp(stop, "else")) {
            static const char *const end[] = {"endif", NULL};
            cur->els = parse_nodes(ps, lx, end, stop, sizeof stop, depth + 1);
        }
        if (!ps->failed && strcmp(stop, "endif")) fail(ps, at, "'if' without 'endif'");
        return n;
    }
    if (tag_is(t, "for")) {
        node *n = new_node(ps, N_FOR, at);
        if (!n) return NULL;
        tok v = next(ps);
        if (v.kind != T_NAME) {
            fail(ps, v.s, "a loop variable is expected after 'for'");
            return n;
        }
        n->name = strndup(v.s, v.len);
        if (take(ps, ",")) {
            tok v2 = next(ps);
            if (v2.kind != T_NAME) fail(ps, v2.s, "a second loop variable is expected after ','");
            else n->name2 = strndup(v2.s, v2.len);
        }
        if (!expect(ps, "in")) return n;
        n->e = parse_expr(ps);
        tag_done(ps);
        static const char *const stops[] = {"else", "endfor", NULL};
        n->body = parse_nodes(ps, lx, stops, stop, sizeof stop, depth + 1);
        if (!ps->failed && !strcmp(stop, "else")) {
            static const char *const end[] = {"endfor", NULL};
            n->els = parse_nodes(ps, lx, end, stop, sizeof stop, depth + 1);
        }
        if (!ps->failed && strcmp(stop, "endfor")) fail(ps, at, "'for' without 'endfor'");
        return n;
    }
    if (tag_is(t, "set")) {
        node *n = new_node(ps, N_SET, at);
        if (!n) return NULL;
        tok v = next(ps);
        if (v.kind != T_NAME) {
            fail(ps, v.s, "a name is expected after 'set'");
            return n;
        }
        n->name = strndup(v.s, v.len);
        if (expect(ps, "=")) n->e = parse_expr(ps);
        tag_done(ps);
        return n;
    }
    if (tag_is(t, "include")) {
        node *n = new_node(ps, N_INCLUDE, at);
        if (!n) return NULL;
        tok s = next(ps);
        if (s.kind != T_STR) {
            fail(ps, s.s, "'include' takes a template name in quotes");
            return n;
        }
        const char *why;
        json_t *j = str_literal(s, &why);
        n->name = j ? strdup(json_string_value(j)) : NULL;
        json_decref(j);
        if (!j) fail(ps, s.s, "%s", why);
        tag_done(ps);
        /* compiled now, so that a missing template is a compile-time error; but not one being
         * compiled around this one: that include is recursive (a tree), found at render time */
        bool recursive = false;
        for (int i = 0; n->name && i < ps->loader->ncompiling; i++)
            recursive |= !strcmp(ps->loader->compiling[i], n->name);
        char e2[256] = "";
        if (n->name && ps->loader->root && !recursive &&
            !load(ps->loader, n->name, e2, sizeof e2, ps->tdepth + 1))
            fail_nested(ps, s.s, "include", n->name, e2);
        return n;
    }
    if (tag_is(t, "block")) {
        node *n = new_node(ps, N_BLOCK, at);
        if (!n) return NULL;
        tok v = next(ps);
        if (v.kind != T_NAME) {
            fail(ps, v.s, "a block name is expected");
            return n;
        }
        n->name = strndup(v.s, v.len);
        n->flag = ps->autoescape;
        tag_done(ps);
        static const char *const stops[] = {"endblock", NULL};
        n->body = parse_nodes(ps, lx, stops, stop, sizeof stop, depth + 1);
        if (!ps->failed && strcmp(stop, "endblock")) fail(ps, at, "'block' without 'endblock'");
        if (!ps->failed && n->name) add_block(ps, n, at);
        return n;
    }
    if (tag_is(t, "autoescape")) {
        node *n = new_node(ps, N_AUTOESC, at);
        if (!n) return NULL;
        tok v = next(ps);
        if (!tag_is(v, "true") && !tag_is(v, "false") && !tag_is(v, "True") && !tag_is(v, "False")) {
            fail(ps, v.s, "'autoescape' takes true or false");
            return n;
        }
        n->flag = v.s[0] == 't' || v.s[0] == 'T';
        tag_done(ps);
        static const char *const stops[] = {"endautoescape", NULL};
        bool outer = ps->autoescape;
        ps->autoescape = n->flag;
        n->body = parse_nodes(ps, lx, stops, stop, sizeof stop, depth + 1);
        ps->autoescape = outer;
        if (!ps->failed && strcmp(stop, "endautoescape"))
            fail(ps, at, "'autoescape' without 'endautoescape'");
        return n;
    }
    if (tag_is(t, "extends")) {
        tok s = next(ps);
        if (s.kind != T_STR) {
            fail(ps, s.s, "'extends' takes a template name in quotes");
            return NULL;
        }
        if (ps->tpl->parent) {
            fail(ps, at, "a second 'extends'");
            return NULL;
        }
        const char *why;
        json_t *j = str_literal(s, &why);
        ps->tpl->parent = j ? strdup(json_string_value(j)) : NULL;
        json_decref(j);
        if (!j) fail(ps, s.s, "%s", why);
        tag_done(ps);
        char e2[256] = "";
        if (ps->tpl->parent && !load(ps->loader, ps->tpl->parent, e2, sizeof e2, ps->tdepth + 1))
            fail_nested(ps, s.s, "extends", ps->tpl->parent, e2);
        return NULL;
    }
    if (t.kind == T_END) fail(ps, pc.at, "an empty tag");
    else fail(ps, t.s, "unknown tag '%.*s'", (int)t.len, t.s);
    return NULL;
}

static node *parse_nodes(parser *ps, lexer *lx, const char *const *stops, char *stop, size_t stoplen,
                         int depth)
{
    node *head = NULL, **tail = &head;
    stop[0] = '\0';
    if (depth > 200) {
        fail(ps, lx->p, "tags nested too deep");
        return NULL;
    }
    while (!ps->failed) {
        piece pc = lex(ps, lx);
        if (pc.kind < 0) break;
        node *n = NULL;
        if (pc.kind == 0) {
            n = new_node(ps, N_TEXT, pc.at);
            size_t tl = (size_t)(pc.e - pc.s);
            if (n && !(n->text = malloc(tl + 1))) fail(ps, pc.at, "out of memory");
            if (n && n->text) { /* memcpy, not strndup: the text may hold NUL bytes */
                memcpy(n->text, pc.s, tl);
                n->text[tl] = '\0';
                n->len = tl;
            }
        } else if (pc.kind == 1) {
            ps->p = pc.s;
            ps->tend = pc.e;
            n = new_node(ps, N_OUT, pc.at);
            if (n) n->e = parse_expr(ps);
            tag_done(ps);
        } else {
            tok t;
            tag_name(ps, pc, &t);
            bool stopped = false;
            for (int i = 0; stops && stops[i]; i++)
                if (tag_is(t, stops[i])) {
                    snprintf(stop, stoplen, "%s", stops[i]);
                    if (strcmp(stops[i], "elif") && strcmp(stops[i], "else")) tag_done(ps);
                    else if (!strcmp(stops[i], "else")) tag_done(ps);
                    stopped = true;
                }
            if (stopped) {
                if (!strcmp(stop, "elif")) { /* leave the tag's inside for the caller */
                    ps->p = t.s;
                    ps->tend = pc.e;
                }
                return head;
            }
            static const char *const ends[] = {"endif", "endfor", "endblock", "elif", "else",
                                               "endautoescape", "endraw", NULL};
            for (int i = 0; ends[i]; i++)
                if (tag_is(t, ends[i])) fail(ps, t.s, "'%s' without its opening tag", ends[i]);
            if (!ps->failed) n = parse_tag(ps, lx, pc, depth);
        }
        if (n) {
            *tail = n;
            tail = &n->next;
        }
    }
    return head;
}

static sq_template *compile(sq_templates *t, const char *name, const char *src, size_t len, char *err,
                            size_t errlen, int depth)
{
    if (depth > MAX_DEPTH) {
        if (err && errlen) snprintf(err, errlen, "%s: extends/include nested too deep (a loop?)", name);
        return NULL;
    }
    sq_template *tpl = calloc(1, sizeof *tpl);
    if (!tpl || !(tpl->name = strdup(name))) {
        free(tpl);
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tpl->loader = t;
    /* Jinja2 reads "\r\n" and a lone "\r" as "\n" everywhere (text, raw, string literals;
     * its default newline_sequence writes "\n"): a copy of the source with them turned */
    char *lf = NULL;
    if (memchr(src, '\r', len)) {
        if (!(lf = malloc(len ? len : 1))) {
            sq_template_free(tpl);
            if (err && errlen) snprintf(err, errlen, "out of memory");
            return NULL;
        }
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
            if (src[i] == '\r' && i + 1 < len && src[i + 1] == '\n') continue;
            lf[n++] = src[i] == '\r' ? '\n' : src[i];
        }
        src = lf;
        len = n;
    }
    /* Jinja2's default keep_trailing_newline=False: one final newline is dropped */
    if (len && src[len - 1] == '\n') len--;
    parser ps = {.loader = t,
                 .tpl = tpl,
                 .src = src,
                 .end = src + len,
                 .err = err,
                 .errlen = errlen,
                 .tdepth = depth,
                 .autoescape = !t->opts.no_autoescape};
    lexer lx = {.p = src, .end = src + len};
    char stop[16];
    t->compiling[t->ncompiling++] = tpl->name; /* depth <= MAX_DEPTH: room for it */
    tpl->root = parse_nodes(&ps, &lx, NULL, stop, sizeof stop, 0);
    t->ncompiling--;
    free(lf); /* (the nodes hold copies of their text) */
    if (ps.failed) {
        sq_template_free(tpl);
        return NULL;
    }
    return tpl;
}

/* --- the loader --------------------------------------------------------------------------- */

sq_templates *sq_templates_new(const char *root, const sq_template_options *opts)
{
    sq_templates *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (opts) t->opts = *opts;
    if (root && !(t->root = strdup(root))) {
        free(t);
        return NULL;
    }
    return t;
}

void sq_template_free(sq_template *tpl)
{
    if (!tpl) return;
    nodes_free(tpl->root);
    free(tpl->blocks);
    free(tpl->parent);
    free(tpl->name);
    free(tpl);
}

static void free_entries(cache_entry *c)
{
    for (cache_entry *n; c; c = n) {
        n = c->next;
        sq_template_free(c->tpl);
        free(c);
    }
}

void sq_templates_free(sq_templates *t)
{
    if (!t) return;
    free_entries(t->cache);
    free_entries(t->retired);
    for (filter_def *f = t->filters, *n; f; f = n) {
        n = f->next;
        free(f->name);
        free(f);
    }
    free(t->root);
    free(t);
}

int sq_templates_add_filter(sq_templates *t, const char *name, sq_template_filter_fn fn, void *arg)
{
    if (!t || !name || !*name || !fn) return -EINVAL;
    for (filter_def *f = t->filters; f; f = f->next)
        if (!strcmp(f->name, name)) {
            f->fn = fn;
            f->arg = arg;
            return 0;
        }
    filter_def *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        return -ENOMEM;
    }
    f->fn = fn;
    f->arg = arg;
    f->next = t->filters;
    t->filters = f;
    return 0;
}

static bool read_file(const char *path, char **out, size_t *len, struct timespec *mtime, int *e)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        *e = errno;
        return false;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        *e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        fclose(f);
        return false;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) {
        *e = ENOMEM;
        return false;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    *mtime = st.st_mtim;
    return true;
}

static sq_template *load(sq_templates *t, const char *name, char *err, size_t errlen, int depth)
{
    if (!t || !name) return NULL;
    for (cache_entry *c = t->cache; c; c = c->next) {
        if (strcmp(c->tpl->name, name)) continue;
        if (!t->opts.debug) return c->tpl;
        break;
    }
    if (!t->root || name[0] == '/' || strstr(name, "..")) {
        if (err && errlen) snprintf(err, errlen, "%s: not a template name under the template path", name);
        return NULL;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", t->root, name);
    char *src;
    size_t len;
    struct timespec mt;
    int e;
    if (!read_file(path, &src, &len, &mt, &e)) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", name, strerror(e));
        return NULL;
    }
    for (cache_entry *c = t->cache; c; c = c->next) /* debug: unchanged, keep it */
        if (!strcmp(c->tpl->name, name) && c->tpl->mtime.tv_sec == mt.tv_sec &&
            c->tpl->mtime.tv_nsec == mt.tv_nsec) {
            free(src);
            return c->tpl;
        }
    sq_template *tpl = compile(t, name, src, len, err, errlen, depth);
    free(src);
    if (!tpl) return NULL;
    tpl->mtime = mt;
    tpl->cached = true;
    for (cache_entry *c = t->cache; c; c = c->next)
        if (!strcmp(c->tpl->name, name)) { /* replaced (debug): the old one goes */
            if (t->renders) { /* a render may be walking it: freed when the last one ends */
                cache_entry *r = malloc(sizeof *r);
                if (!r) { /* no memory to keep it: keep using it instead */
                    sq_template_free(tpl);
                    return c->tpl;
                }
                *r = (cache_entry){.tpl = c->tpl, .next = t->retired};
                t->retired = r;
            } else {
                sq_template_free(c->tpl);
            }
            c->tpl = tpl;
            return tpl;
        }
    cache_entry *c = malloc(sizeof *c);
    if (!c) {
        sq_template_free(tpl);
        return NULL;
    }
    c->tpl = tpl;
    c->next = t->cache;
    t->cache = c;
    return tpl;
}

sq_template *sq_templates_get(sq_templates *t, const char *name, char *err, size_t errlen)
{
    return load(t, name, err, errlen, 0);
}

sq_template *sq_template_compile(sq_templates *t, const char *name, const char *src, size_t len,
                                 char *err, size_t errlen)
{
    if (!t || !src) return NULL;
    return compile(t, name ? name : "<string>", src, len, err, errlen, 0);
}

/* --- rendering ---------------------------------------------------------------------------- */

/* A value while an expression is evaluated.  Values of the context, of variables and of
 * literals are borrowed (alive for the whole render: nothing to count); only values made
 * here are owned.  jansson's reference counts are atomic, and a render touches thousands of
 * values: not counting the borrowed ones is much of the speed. */
typedef struct val {
    json_t *j; /* NULL: undefined */
    bool safe;
    bool owned; /* j is a reference of ours, dropped by vfree() */
} val;

typedef struct var {
    const char *name;
    json_t *j;
    bool owned; /* a reference (set), or borrowed from the list a for loop walks */
    bool safe;  /* set from a value marked safe ({% set x = h|safe %}): printed as it is */
} var;

typedef struct loop_state {
    size_t index, length;
} loop_state;

typedef struct rctx {
    sq__buf out;
    json_t *ctx;
    var *vars;
    size_t nvars, capvars;
    loop_state *loops[64];
    int nloops;
    int loop_vars; /* variables named "loop" in scope (they hide loop.*) */
    json_t *safe_globals; /* names printed unescaped when the context lacks them (xsrf_form_html) */
    bool autoescape;
    /* the block being rendered: its chain of templates (child first) and position */
    sq_template *chain[MAX_DEPTH + 1];
    int nchain;
    const char *block;
    int block_level;
    int depth;
    const sq_template *tpl; /* for messages */
    char *err;
    size_t errlen;
    int failed;
} rctx;

static void rfail(rctx *r, const expr *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void rfail(rctx *r, const expr *e, int code, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = code;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "%s:%d:%d: %s", r->tpl ? r->tpl->name : "?", e ? e->line : 0,
                 e ? e->col : 0, msg);
}

/* Room for n more bytes of output (geometric growth). */
static inline bool room(rctx *r, size_t n)
{
    if (r->out.cap - r->out.len >= n) return true;
    if (r->failed) return false;
    if (sq__buf_reserve(&r->out, n) < 0) {
        r->failed = -ENOMEM;
        return false;
    }
    return true;
}

static inline void out(rctx *r, const char *s, size_t n)
{
    if (!n || r->failed || !room(r, n)) return;
    char *o = r->out.ptr + r->out.len;
    /* most text between tags is short: fixed-size (overlapping) moves instead of a call */
    if (n >= 8 && n <= 16) {
        memcpy(o, s, 8);
        memcpy(o + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(o, s, 4);
        memcpy(o + n - 4, s + n - 4, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++) o[i] = s[i];
    } else {
        memcpy(o, s, n);
    }
    r->out.len += n;
}

/* What out_escaped writes for each byte, padded to 8 bytes, and how many of them count: the
 * byte itself, or its entity for & < > " '.  One 8-byte store per input byte and no branch
 * (names full of markup would otherwise mispredict at every special byte). */
static char html_out[256][8];
static unsigned char html_out_len[256];

static void html_tables_init(void)
{
    for (int c = 0; c < 256; c++) {
        html_out[c][0] = (char)c;
        html_out_len[c] = 1;
    }
    static const struct {
        char c;
        const char *ent;
    } ents[] = {{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {'"', "&#34;"}, {'\'', "&#39;"}};
    for (size_t k = 0; k < sizeof ents / sizeof ents[0]; k++) {
        unsigned char c = (unsigned char)ents[k].c;
        memcpy(html_out[c], ents[k].ent, strlen(ents[k].ent));
        html_out_len[c] = (unsigned char)strlen(ents[k].ent);
    }
}

static pthread_once_t html_once = PTHREAD_ONCE_INIT;

static void out_escaped(rctx *r, const char *s, size_t n)
{
    /* "&#39;" is the longest, and the last 8-byte store may reach 7 bytes past the end */
    if (!n || r->failed || !room(r, n * 5 + 8)) return;
    char *o = r->out.ptr + r->out.len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        memcpy(o, html_out[c], 8);
        o += html_out_len[c];
    }
    r->out.len = (size_t)(o - r->out.ptr);
}

/* Decimal digits of v at p (room for 21 bytes, the sign included); returns the end. */
static char *put_int(char *p, long long v)
{
    if (v < 0) *p++ = '-';
    return sq__put_u64(p, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
}

/* Python's str() of a value, appended to b, `depth` levels inside the value printed.  0,
 * -EINVAL nested deeper than MAX_VALUE_DEPTH, -ENOMEM. */
static int to_text_at(const json_t *j, sq__buf *b, int depth);

static int to_text(const json_t *j, sq__buf *b)
{
    return to_text_at(j, b, 0);
}

/* The code point at s (n > 0 bytes left) and its length in *k.  jansson's strings are valid
 * UTF-8 (json_stringn checks), so only the lead byte says how long a character is. */
static unsigned long utf8_at(const char *s, size_t n, size_t *k)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = u[0] < 0x80 ? 1 : u[0] < 0xe0 ? 2 : u[0] < 0xf0 ? 3 : 4;
    if (len > n) len = 1; /* (not from jansson: taken a byte at a time) */
    unsigned long cp = len == 1 ? u[0] : u[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) cp = cp << 6 | (u[i] & 0x3f);
    *k = len;
    return cp;
}

/* Whether Python's repr() shows code point cp as it is (str.isprintable): not the C0 and C1
 * controls, nor the categories Cf, Co, Zl, Zp and Zs other than ' ' (the ranges below, from
 * Python 3.11's unicodedata).  Unassigned code points (Cn), which Python escapes too, are
 * shown: telling them needs the whole Unicode table. */
static bool printable(unsigned long cp)
{
    static const unsigned long hidden[][2] = {
        {0xa0, 0xa0},       {0xad, 0xad},       {0x600, 0x605},       {0x61c, 0x61c},
        {0x6dd, 0x6dd},     {0x70f, 0x70f},     {0x890, 0x891},       {0x8e2, 0x8e2},
        {0x1680, 0x1680},   {0x180e, 0x180e},   {0x2000, 0x200f},     {0x2028, 0x202f},
        {0x205f, 0x2064},   {0x2066, 0x206f},   {0x3000, 0x3000},     {0xd800, 0xf8ff},
        {0xfeff, 0xfeff},   {0xfff9, 0xfffb},   {0x110bd, 0x110bd},   {0x110cd, 0x110cd},
        {0x13430, 0x13438}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},   {0xe0001, 0xe0001},
        {0xe0020, 0xe007f}, {0xf0000, 0xffffd}, {0x100000, 0x10fffd},
    };
    if (cp < 0x7f) return cp >= 0x20;
    if (cp < 0xa0) return false;
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0] && hidden[i][0] <= cp; i++)
        if (cp <= hidden[i][1]) return false;
    return true;
}

static int repr_text(const json_t *j, sq__buf *b, int depth)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        bool dq = memchr(s, '\'', n) && !memchr(s, '"', n);
        char q = dq ? '"' : '\'';
        if (sq__buf_append(b, &q, 1) < 0) return -ENOMEM;
        for (size_t i = 0, k; i < n; i += k) {
            unsigned long cp = utf8_at(s + i, n - i, &k);
            char esc[12];
            int el = 0;
            if (cp == (unsigned char)q || cp == '\\')
                el = snprintf(esc, sizeof esc, "\\%c", (char)cp);
            else if (cp == '\t' || cp == '\n' || cp == '\r')
                el = snprintf(esc, sizeof esc, "\\%c", cp == '\t' ? 't' : cp == '\n' ? 'n' : 'r');
            else if (!printable(cp)) /* Python's \xhh, \uhhhh, \Uhhhhhhhh */
                el = snprintf(esc, sizeof esc,
                              cp < 0x100     ? "\\x%02lx"
                              : cp < 0x10000 ? "\\u%04lx"
                                             : "\\U%08lx",
                              cp);
            if (sq__buf_append(b, el ? esc : s + i, el ? (size_t)el : k) < 0) return -ENOMEM;
        }
        return sq__buf_append(b, &q, 1);
    }
    return to_text_at(j, b, depth);
}

static int to_text_at(const json_t *j, sq__buf *b, int depth)
{
    char num[64];
    switch (json_typeof(j)) {
    case JSON_STRING: return sq__buf_append(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        char *e = put_int(num, (long long)json_integer_value(j));
        return sq__buf_append(b, num, (size_t)(e - num));
    }
    case JSON_REAL: {
        double d = json_real_value(j);
        int n = 0;
        double ad = fabs(d);
        if (ad >= 1e-4 && ad < 1e15) {
            /* A few decimals (prices, halves): the digits by hand.  d * 10^k is rounded, so a
             * whole m only proposes digits; they are d's repr if they read back as d: with at
             * most 15 significant digits, a decimal that reads back as d is what %.15g gives,
             * trailing zeros stripped, and nothing shorter reads back (see below). */
            double scale = 1;
            for (int k = 0; k <= 6; k++, scale *= 10) {
                double m = d * scale;
                if (fabs(m) >= 1e15) break;
                long long v = (long long)m; /* exact below 2^53: m is whole iff it converts back */
                if ((double)v != m) continue;
                long long ip = v / (long long)scale, fp = llabs(v % (long long)scale);
                char *q = num;
                if (d < 0 && ip == 0) *q++ = '-';
                q = put_int(q, ip);
                *q++ = '.';
                if (k == 0) {
                    *q++ = '0';
                } else {
                    for (int i = k - 1; i >= 0; i--, fp /= 10) q[i] = (char)('0' + fp % 10);
                    q += k;
                    while (q[-1] == '0' && q[-2] != '.') q--; /* 19.990 (19.99 * 1000) */
                }
                *q = 0;
                if (strtod(num, NULL) != d) break; /* 5.2018 for 5.2017999999999995 */
                return sq__buf_append(b, num, (size_t)(q - num));
            }
        }
        /* Python's repr: the shortest digits that read back.  With trailing zeros dropped,
         * 15 significant digits read back when anything shorter does; only 16 and 17
         * remain to try (subnormals, with fewer bits, from 1 up).  Then positional for exponents
         * from -4 to 15, else d.ddde+XX: %g would switch at its precision instead (1e+15,
         * 12345678901234568.0). */
        for (int p = ad < DBL_MIN ? 1 : 15;; p++) {
            snprintf(num, sizeof num, "%.*e", p - 1, d);
            if (p == 17 || strtod(num, NULL) == d) break;
        }
        const char *ex = strchr(num, 'e');
        if (!ex) return sq__buf_append(b, num, strlen(num)); /* inf, nan */
        int x = atoi(ex + 1);
        bool neg = num[0] == '-';
        char digits[24], txt[64], *o = txt;
        for (const char *q = num + neg; q < ex; q++)
            if (isdigit((unsigned char)*q)) digits[n++] = *q;
        while (n > 1 && digits[n - 1] == '0') n--;
        if (neg) *o++ = '-';
        if (x < -4 || x >= 16) {
            *o++ = digits[0];
            if (n > 1) *o++ = '.';
            for (int i = 1; i < n; i++) *o++ = digits[i];
            o += snprintf(o, 8, "e%c%02d", x < 0 ? '-' : '+', abs(x));
        } else if (x < 0) { /* 0.000ddd */
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -x - 1; i++) *o++ = '0';
            for (int i = 0; i < n; i++) *o++ = digits[i];
        } else { /* ddd.ddd, at least one digit after the point */
            for (int i = 0; i <= x; i++) *o++ = i < n ? digits[i] : '0';
            *o++ = '.';
            for (int i = x + 1; i < n; i++) *o++ = digits[i];
            if (n <= x + 1) *o++ = '0';
        }
        return sq__buf_append(b, txt, (size_t)(o - txt));
    }
    case JSON_TRUE: return sq__buf_append(b, "True", 4);
    case JSON_FALSE: return sq__buf_append(b, "False", 5);
    case JSON_NULL: return sq__buf_append(b, "None", 4);
    case JSON_ARRAY: {
        if (depth >= MAX_VALUE_DEPTH) return -EINVAL;
        if (sq__buf_append(b, "[", 1) < 0) return -ENOMEM;
        for (size_t i = 0; i < json_array_size(j); i++) {
            int rc = i ? sq__buf_append(b, ", ", 2) : 0;
            if (rc < 0 || (rc = repr_text(json_array_get(j, i), b, depth + 1)) < 0) return rc;
        }
        return sq__buf_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        if (depth >= MAX_VALUE_DEPTH) return -EINVAL;
        if (sq__buf_append(b, "{", 1) < 0) return -ENOMEM;
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach((json_t *)j, k, v) {
            json_t *ks = json_string(k);
            int rc = !first ? sq__buf_append(b, ", ", 2) : 0;
            if (rc >= 0 && !ks) rc = -ENOMEM;
            if (rc >= 0) rc = repr_text(ks, b, depth + 1);
            if (rc >= 0) rc = sq__buf_append(b, ": ", 2);
            if (rc >= 0) rc = repr_text(v, b, depth + 1);
            json_decref(ks);
            if (rc < 0) return rc;
            first = false;
        }
        return sq__buf_append(b, "}", 1);
    }
    }
    return 0;
}

/* to_text for the renderer: a value it cannot write fails the render, rather than
 * leaving its text cut short. */
static void text_of(rctx *r, const expr *e, const json_t *j, sq__buf *b)
{
    int rc = j ? to_text(j, b) : 0;
    if (rc == -EINVAL)
        rfail(r, e, rc, "a value nested deeper than %d", MAX_VALUE_DEPTH);
    else if (rc < 0 && !r->failed)
        r->failed = rc;
}

static inline bool truthy(const json_t *j)
{
    if (!j) return false;
    switch (json_typeof(j)) {
    case JSON_STRING: return json_string_length(j) > 0;
    case JSON_INTEGER: return json_integer_value(j) != 0;
    case JSON_REAL: return json_real_value(j) != 0;
    case JSON_TRUE: return true;
    case JSON_ARRAY: return json_array_size(j) > 0;
    case JSON_OBJECT: return json_object_size(j) > 0;
    default: return false;
    }
}

static val eval(rctx *r, const expr *e);

static val mkval(json_t *j);
static val borrow(json_t *j);
static void vfree(val v);

/* strcmp(a, b) == 0 for the short names of variables, without a call */
static inline bool streq(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static val lookup(rctx *r, const char *name)
{
    for (size_t i = r->nvars; i-- > 0;)
        if (r->vars[i].name == name || streq(r->vars[i].name, name)) {
            val v = borrow(r->vars[i].j);
            v.safe = r->vars[i].safe;
            return v;
        }
    if (r->nloops && !strcmp(name, "loop")) {
        loop_state *l = r->loops[r->nloops - 1];
        return mkval(json_pack("{s:I,s:I,s:I,s:I,s:b,s:b,s:I}", "index", (json_int_t)l->index + 1,
                         "index0", (json_int_t)l->index, "revindex", (json_int_t)(l->length - l->index),
                         "revindex0", (json_int_t)(l->length - l->index - 1), "first", l->index == 0,
                         "last", l->index + 1 == l->length, "length", (json_int_t)l->length));
    }
    return borrow(json_object_get(r->ctx, name));
}

/* c[key], borrowed from c */
static json_t *item(json_t *c, json_t *key)
{
    if (json_is_object(c) && json_is_string(key)) return json_object_get(c, json_string_value(key));
    if (json_is_array(c) && json_is_integer(key)) {
        json_int_t i = json_integer_value(key);
        if (i < 0) i += (json_int_t)json_array_size(c);
        return i >= 0 ? json_array_get(c, (size_t)i) : NULL;
    }
    return NULL;
}

/* A part of o (borrowed from it), as a value that outlives o's release. */
static val part_of(val o, json_t *part)
{
    if (!o.owned) return borrow(part);
    val v = mkval(json_incref(part));
    vfree(o);
    return v;
}

static bool is_num(const json_t *j)
{
    return json_is_integer(j) || json_is_real(j);
}

static const char *type_name(const json_t *j)
{
    if (!j) return "undefined";
    switch (json_typeof(j)) {
    case JSON_STRING: return "string";
    case JSON_INTEGER: case JSON_REAL: return "number";
    case JSON_ARRAY: return "list";
    case JSON_OBJECT: return "object";
    case JSON_NULL: return "none";
    default: return "boolean";
    }
}

/* Equality as Python has it: 1 == 1.0, "1" != 1, lists and objects by content. */
static bool equal(const json_t *a, const json_t *b)
{
    if (!a || !b) return a == b;
    if (is_num(a) && is_num(b)) return json_number_value(a) == json_number_value(b);
    if ((json_is_boolean(a) && is_num(b)) || (is_num(a) && json_is_boolean(b)))
        return (json_is_boolean(a) ? json_is_true(a) : json_number_value(a)) ==
               (json_is_boolean(b) ? json_is_true(b) : json_number_value(b));
    return json_equal((json_t *)a, (json_t *)b);
}

static val mkval(json_t *j)
{
    return (val){j, false, true};
}

static val borrow(json_t *j)
{
    return (val){j, false, false};
}

static void vfree(val v)
{
    if (v.owned) json_decref(v.j);
}

/* v's value as a reference the caller owns (NULL stays NULL). */
static json_t *vown(val v)
{
    return v.owned ? v.j : json_incref(v.j);
}

static void url_quote(sq__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || c == '/') {
            sq__buf_append(b, (char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sq__buf_append(b, e, 3);
        }
    }
}

/* s as a JSON string the way Jinja2's tojson writes it: Python's json.dumps (ASCII only,
 * lowercase \u escapes, a surrogate pair above U+FFFF), then < > & ' escaped too, so that
 * the text is safe in HTML and in a <script>. */
static int tojson_string(const char *s, size_t n, sq__buf *b)
{
    static const char hex[] = "0123456789abcdef";
    if (sq__buf_append(b, "\"", 1) < 0) return -ENOMEM;
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' &&
            c != '\'') {
            i++;
            continue;
        }
        if (sq__buf_append(b, s + run, i - run) < 0) return -ENOMEM;
        size_t k;
        unsigned long cp = utf8_at(s + i, n - i, &k);
        char esc[12];
        size_t el = 2;
        esc[0] = '\\';
        const char *named = cp && cp < 0x80 ? strchr("\"\\\b\f\n\r\t", (int)cp) : NULL;
        if (named) {
            esc[1] = "\"\\bfnrt"[named - "\"\\\b\f\n\r\t"];
        } else {
            unsigned long units[2] = {cp, 0};
            int nu = 1;
            if (cp > 0xffff) { /* UTF-16, as Python writes it */
                units[0] = 0xd800 + ((cp - 0x10000) >> 10);
                units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
                nu = 2;
            }
            el = 0;
            for (int u = 0; u < nu; u++) {
                esc[el++] = '\\';
                esc[el++] = 'u';
                for (int sh = 12; sh >= 0; sh -= 4) esc[el++] = hex[(units[u] >> sh) & 15];
            }
        }
        if (sq__buf_append(b, esc, el) < 0) return -ENOMEM;
        run = i += k;
    }
    if (sq__buf_append(b, s + run, n - run) < 0) return -ENOMEM;
    return sq__buf_append(b, "\"", 1);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Jinja2's tojson: json.dumps(sort_keys=True) (", " and ": " between items, floats as
 * Python's repr), HTML-safe.  Undefined is written as null.  -EINVAL nested deeper than
 * MAX_VALUE_DEPTH; -ENOMEM. */
static int tojson(const json_t *j, sq__buf *b, int depth)
{
    if ((json_is_array(j) || json_is_object(j)) && depth >= MAX_VALUE_DEPTH) return -EINVAL;
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_STRING:
        return tojson_string(json_string_value(j), json_string_length(j), b);
    case JSON_INTEGER:
    case JSON_REAL:
        return to_text(j, b); /* json.dumps writes float.__repr__ */
    case JSON_TRUE:
        return sq__buf_append(b, "true", 4);
    case JSON_FALSE:
        return sq__buf_append(b, "false", 5);
    case JSON_NULL:
        return sq__buf_append(b, "null", 4);
    case JSON_ARRAY: {
        if (sq__buf_append(b, "[", 1) < 0) return -ENOMEM;
        for (size_t i = 0; i < json_array_size(j); i++) {
            int rc = i ? sq__buf_append(b, ", ", 2) : 0;
            if (rc < 0 || (rc = tojson(json_array_get(j, i), b, depth + 1)) < 0) return rc;
        }
        return sq__buf_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        /* sorted as Python sorts str keys, by code point: UTF-8's byte order is the same */
        size_t n = json_object_size(j), i = 0;
        const char **keys = malloc((n ? n : 1) * sizeof *keys);
        if (!keys) return -ENOMEM;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) keys[i++] = k;
        qsort(keys, n, sizeof *keys, key_cmp);
        int rc = sq__buf_append(b, "{", 1);
        for (i = 0; i < n && rc >= 0; i++) {
            if (i) rc = sq__buf_append(b, ", ", 2);
            if (rc >= 0) rc = tojson_string(keys[i], strlen(keys[i]), b);
            if (rc >= 0) rc = sq__buf_append(b, ": ", 2);
            if (rc >= 0) rc = tojson(json_object_get(j, keys[i]), b, depth + 1);
        }
        free(keys);
        return rc < 0 ? rc : sq__buf_append(b, "}", 1);
    }
    }
    return 0;
}

/* Python's int() of a float: toward zero.  1, 0 for NaN and the infinities (int() raises
 * ValueError and OverflowError, and Jinja2's |int takes the default for both).  A finite
 * value beyond 64 bits (Python has big integers, squall's values are jansson's) stops at the
 * end of the range, as |int always has here (web/test_web_semantics): a C cast is undefined. */
static int int_of_double(double d, long long *v)
{
    if (!isfinite(d)) return 0;
    *v = d >= 0x1p63 ? LLONG_MAX : d < -0x1p63 ? LLONG_MIN : (long long)d; /* -2^63 fits */
    return 1;
}

/* s[0..n) as Python's int() and float() read it: spaces around dropped, then '_' between
 * digits (strip_underscores).  1 with *t (malloc'd), 0 for a misplaced '_', -ENOMEM. */
static int number_text(const char *s, size_t n, char **t)
{
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    int rc = strip_underscores(s, n, t);
    return rc < 0 ? (rc == -EINVAL ? 0 : rc) : 1;
}

/* Whether t (from number_text) is what Python's float() takes: a sign, digits with a point,
 * an exponent; or inf, infinity, nan.  No hex, unlike strtod. */
static bool float_syntax(const char *t)
{
    static const char digits[] = "0123456789";
    const char *p = t + (*t == '+' || *t == '-');
    size_t whole = strspn(p, digits), frac = 0;
    const char *q = p + whole;
    if (*q == '.') q++, frac = strspn(q, digits), q += frac;
    bool ok = whole + frac > 0;
    if (ok && (*q == 'e' || *q == 'E')) {
        q += 1 + (q[1] == '+' || q[1] == '-');
        size_t ex = strspn(q, digits);
        ok = ex > 0;
        q += ex;
    }
    return (ok && !*q) || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity") ||
           !strcasecmp(p, "nan");
}

/* Python's int(s), else int(float(s)) (Jinja2's |int of a string): spaces around, a sign,
 * digits with '_' between them; for float(), a point, an exponent, inf or nan.  1 with *v,
 * 0 for text that is not a number or is infinite or NaN, -ENOMEM.  Beyond 64 bits, the end
 * of the range (as for a float). */
static int int_of_text(const char *s, size_t n, long long *v)
{
    char *t;
    int rc = number_text(s, n, &t);
    if (rc <= 0) return rc;
    const char *p = t + (*t == '+' || *t == '-');
    size_t whole = strspn(p, "0123456789");
    /* int(), which strtoll stops at the end of the range; else float() */
    if (whole && !p[whole])
        *v = strtoll(t, NULL, 10);
    else
        rc = float_syntax(t) ? int_of_double(strtod(t, NULL), v) : 0;
    free(t);
    return rc;
}

/* Python's float(s) (Jinja2's |float of a string): 1 with *d, 0 for text that is not a
 * number, -ENOMEM. */
static int float_of_text(const char *s, size_t n, double *d)
{
    char *t;
    int rc = number_text(s, n, &t);
    if (rc <= 0) return rc;
    rc = float_syntax(t);
    if (rc) *d = strtod(t, NULL);
    free(t);
    return rc;
}

/* --- Jinja2's filters on numbers, text and lists ------------------------------------------- */

/* A filter's text result is at most this long: beyond it an error, not gigabytes (a chain of
 * `replace("", …)` multiplies the length at each link). */
#define MAX_FILTER_TEXT ((size_t)64 << 20)

/* j as a Python number, a bool being an int: 'i' with *i, 'f' with *d, 0 for anything else. */
static int py_number(const json_t *j, long long *i, double *d)
{
    if (json_is_integer(j)) return *i = (long long)json_integer_value(j), 'i';
    if (json_is_boolean(j)) return *i = json_is_true(j), 'i';
    if (json_is_real(j)) return *d = json_real_value(j), 'f';
    return 0;
}

/* A float result.  jansson's numbers hold no inf or nan, where Python's floats do. */
static val real_val(rctx *r, const expr *e, double d)
{
    json_t *j = isfinite(d) ? json_real(d) : NULL;
    if (!j && !r->failed) rfail(r, e, -EINVAL, "%s: a number too large (inf or nan)", e->name);
    return mkval(j);
}

/* Argument i as a Python int (a precision, a count, a width): dflt when not given; false (and
 * the render failed) for anything but an integer or a bool, which Python refuses too. */
static bool int_arg(rctx *r, const expr *e, json_t *const *args, size_t nargs, size_t i,
                    long long dflt, long long *v)
{
    double d;
    if (i >= nargs) return *v = dflt, true;
    if (py_number(args[i], v, &d) == 'i') return true;
    rfail(r, e, -EINVAL, "%s: argument %zu must be an integer, not %s", e->name, i + 1,
          type_name(args[i]));
    return false;
}

static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Python's str.isspace() of a code point: what \s matches in a str pattern. */
static bool py_space(unsigned long cp)
{
    return (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Whether \w matches cp in a str pattern (letters, digits and numbers of every script, '_').
 * Outside ASCII this knows the whitespace, the Latin-1 signs, combining accents, general
 * punctuation, arrows and shapes, CJK and fullwidth punctuation and emoji as not word
 * characters, and takes the rest as letters: the whole Unicode table is not here. */
static bool py_word(unsigned long cp)
{
    static const unsigned long other[][2] = {
        {0x80, 0xa9},       {0xab, 0xb1},     {0xb4, 0xb4},     {0xb6, 0xb8},     {0xbb, 0xbb},
        {0xbf, 0xbf},       {0xd7, 0xd7},     {0xf7, 0xf7},     {0x300, 0x36f},   {0x2000, 0x206f},
        {0x20a0, 0x20ff},   {0x2190, 0x245f}, {0x2500, 0x27bf}, {0x3000, 0x3004}, {0x3008, 0x3020},
        {0xfe30, 0xfe4f},   {0xff01, 0xff0f}, {0xff1a, 0xff20}, {0xff3b, 0xff40}, {0xff5b, 0xff65},
        {0x1f000, 0x1faff},
    };
    if (cp < 0x80) return isalnum((int)cp) || cp == '_';
    if (py_space(cp)) return false;
    for (size_t i = 0; i < sizeof other / sizeof other[0] && other[i][0] <= cp; i++)
        if (cp <= other[i][1]) return false;
    return true;
}

/* s as Jinja2's title (a word's first character upper, the rest lower; words begin after
 * whitespace and "-({[<") or capitalize (the first character upper, the rest lower), in place.
 * Cases are ASCII's, as upper and lower have them. */
static void recase(char *s, size_t n, bool title)
{
    bool start = true;
    for (size_t i = 0, k; i < n; i += k) {
        unsigned long cp = utf8_at(s + i, n - i, &k);
        if (k == 1) s[i] = start ? ascii_upper(s[i]) : ascii_lower(s[i]);
        start = title && (py_space(cp) || (cp && cp < 0x80 && strchr("-({[<", (int)cp)));
    }
}

/* Characters (code points) in s[0..n). */
static size_t utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* The byte offset of character `at` of s[0..n) (n past the end). */
static size_t utf8_offset(const char *s, size_t n, size_t at)
{
    size_t i = 0;
    for (size_t k; at && i < n; at--) utf8_at(s + i, n - i, &k), i += k;
    return i;
}

/* s escaped for HTML: Markup's escape() of a str. */
static json_t *escaped_string(const char *s, size_t n)
{
    rctx tmp = {.failed = 0};
    out_escaped(&tmp, s, n);
    json_t *j = json_stringn(tmp.out.ptr ? tmp.out.ptr : "", tmp.out.len);
    sq__buf_free(&tmp.out);
    return j;
}

/* The text of a filter's result, or a failed render beyond MAX_FILTER_TEXT or out of memory. */
static val text_val(rctx *r, const expr *e, sq__buf *b, bool safe)
{
    if (b->len > MAX_FILTER_TEXT) {
        rfail(r, e, -EINVAL, "%s: a result longer than %zu MiB", e->name, MAX_FILTER_TEXT >> 20);
        return mkval(NULL);
    }
    json_t *j = json_stringn(b->ptr ? b->ptr : "", b->len);
    if (!j) r->failed = -ENOMEM;
    return (val){j, safe, true};
}

/* Python's list(j) as a new array: a list's items, a string's characters, an object's keys;
 * undefined (Jinja2's Undefined iterates as empty), an empty list.  NULL (the render failed)
 * for what Python cannot iterate. */
static json_t *py_list(rctx *r, const expr *e, json_t *j)
{
    json_t *l;
    if (json_is_array(j)) {
        l = json_copy(j); /* shallow */
    } else if (j && !json_is_string(j) && !json_is_object(j)) {
        rfail(r, e, -EINVAL, "%s: %s is not iterable", e->name, type_name(j));
        return NULL;
    } else if ((l = json_array()) && json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        for (size_t i = 0, k; i < n; i += k) {
            utf8_at(s + i, n - i, &k);
            json_array_append_new(l, json_stringn(s + i, k));
        }
    } else if (l && j) {
        const char *k;
        json_t *x;
        json_object_foreach(j, k, x) json_array_append_new(l, json_string(k));
    }
    if (!l) r->failed = -ENOMEM;
    return l;
}

/* x's part named by Jinja2's attribute= argument (borrowed; NULL: undefined): "a.b.0" is
 * x["a"]["b"][0], an integer an index. */
static json_t *attr_of(json_t *x, const json_t *attr)
{
    if (json_is_integer(attr)) return item(x, (json_t *)attr);
    const char *p = json_string_value(attr), *end = p + json_string_length(attr);
    for (const char *dot; x; p = dot + 1) {
        dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        size_t len = (size_t)(dot - p);
        if (len && strspn(p, "0123456789") >= len) {
            long long i = strtoll(p, NULL, 10);
            x = json_is_array(x) ? json_array_get(x, (size_t)i) : NULL;
        } else {
            x = json_is_object(x) ? json_object_getn(x, p, len) : NULL;
        }
        if (dot == end) break;
    }
    return x;
}

/* An item and the key Jinja2's sort, unique, min and max order or tell it by. */
typedef struct keyed {
    json_t *item, *key; /* borrowed from the list; key a reference */
    size_t at;
} keyed;

/* The items of j (as py_list) with their keys: the part `attr` names (none: the item), and a
 * string lowercased unless case_sensitive (ASCII's cases).  NULL with the render failed, or
 * with *n 0 for no items; *list owns the items. */
static keyed *keyed_items(rctx *r, const expr *e, json_t *j, json_t *attr, bool cs, json_t **list,
                          size_t *n)
{
    *n = 0;
    if (attr && !json_is_null(attr) && !json_is_string(attr) && !json_is_integer(attr)) {
        rfail(r, e, -EINVAL, "%s: an attribute is a string or an integer, not %s", e->name,
              type_name(attr));
        return NULL;
    }
    if (json_is_null(attr)) attr = NULL;
    if (!(*list = py_list(r, e, j))) return NULL;
    size_t cnt = json_array_size(*list);
    keyed *k = calloc(cnt ? cnt : 1, sizeof *k);
    if (!k) {
        r->failed = -ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < cnt; i++) {
        json_t *x = json_array_get(*list, i), *key = attr ? attr_of(x, attr) : x;
        k[i] = (keyed){x, json_incref(key), i};
        size_t len = json_string_length(key);
        char *low = !cs && json_is_string(key) ? malloc(len + 1) : NULL;
        if (low) {
            for (size_t c = 0; c < len; c++) low[c] = ascii_lower(json_string_value(key)[c]);
            json_decref(k[i].key);
            k[i].key = json_stringn(low, len);
            free(low);
        }
    }
    *n = cnt;
    return k;
}

static void keyed_free(keyed *k, size_t n, json_t *list)
{
    for (size_t i = 0; k && i < n; i++) json_decref(k[i].key);
    free(k);
    json_decref(list);
}

/* Whether the keys can be ordered as Python orders them (numbers, bools among them, with
 * numbers; strings with strings); else the render fails as Python's '<' would.  sort's keys
 * may all be undefined (a missing attribute): Jinja2 compares them as lists, [U] == [U]. */
static bool orderable(rctx *r, const expr *e, const keyed *k, size_t n)
{
    size_t undefined = 0;
    for (size_t i = 0; i < n; i++) undefined += !k[i].key;
    if (e->name[0] == 's' && undefined == n) return true;
    for (size_t i = 0; i < n; i++) {
        long long iv;
        double d;
        bool num = py_number(k[i].key, &iv, &d), str = json_is_string(k[i].key);
        bool same = num ? py_number(k[0].key, &iv, &d) : str && json_is_string(k[0].key);
        if (n > 1 && (!same || (!num && !str))) {
            rfail(r, e, -EINVAL, "%s: cannot compare %s and %s", e->name, type_name(k[0].key),
                  type_name(k[i ? i : 1].key));
            return false;
        }
    }
    return true;
}

/* Python's order of two orderable keys: -1, 0, 1 (strings by code point: UTF-8's bytes). */
static int key_order(const json_t *a, const json_t *b)
{
    long long x = 0, y = 0;
    double dx = 0, dy = 0;
    if (!a || !b) return 0; /* undefined (equal) */
    int ka = py_number(a, &x, &dx), kb = py_number(b, &y, &dy);
    if (ka == 'i' && kb == 'i') return (x > y) - (x < y);
    if (ka) {
        if (ka == 'i') dx = (double)x;
        if (kb == 'i') dy = (double)y;
        return (dx > dy) - (dx < dy);
    }
    size_t la = json_string_length(a), lb = json_string_length(b);
    int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
    return c ? (c > 0) - (c < 0) : (la > lb) - (la < lb);
}

/* sorted()'s order: by key (reversed on request), equal keys as they came (stable). */
static int keyed_cmp(const void *pa, const void *pb, void *reverse)
{
    const keyed *a = pa, *b = pb;
    int c = key_order(a->key, b->key);
    if (*(const bool *)reverse) c = -c;
    return c ? c : (a->at > b->at) - (a->at < b->at);
}

/* sort(reverse, case_sensitive, attribute), unique(case_sensitive, attribute),
 * min/max(case_sensitive, attribute). */
static val order_filter(rctx *r, const expr *e, json_t *j, json_t *const *args, size_t nargs)
{
    const char *f = e->name;
    bool sort = f[0] == 's', uniq = f[0] == 'u';
    size_t a0 = sort; /* sort's first argument is reverse */
    bool reverse = sort && nargs && truthy(args[0]);
    bool cs = nargs > a0 && truthy(args[a0]);
    json_t *list = NULL;
    size_t n;
    keyed *k = keyed_items(r, e, j, nargs > a0 + 1 ? args[a0 + 1] : NULL, cs, &list, &n);
    val res = mkval(NULL);
    if (!k) {
        json_decref(list);
        return res;
    }
    if (uniq) {
        json_t *out = json_array();
        size_t kept = 0;
        for (size_t i = 0; out && i < n; i++) {
            if (json_is_array(k[i].key) || json_is_object(k[i].key)) {
                rfail(r, e, -EINVAL, "unique: unhashable %s", type_name(k[i].key));
                break;
            }
            size_t s = 0;
            while (s < kept && !equal(k[s].key, k[i].key)) s++;
            if (s < kept) continue;
            json_array_append(out, k[i].item);
            keyed t = k[kept]; /* the kept keys first */
            k[kept++] = k[i];
            k[i] = t;
        }
        if (r->failed) json_decref(out);
        res = mkval(r->failed ? NULL : out);
    } else if (orderable(r, e, k, n)) {
        if (sort) {
            qsort_r(k, n, sizeof *k, keyed_cmp, &reverse);
            json_t *out = json_array();
            for (size_t i = 0; out && i < n; i++) json_array_append(out, k[i].item);
            res = mkval(out);
        } else if (n) { /* min, max: the first of the least (greatest); none: undefined */
            size_t best = 0;
            for (size_t i = 1; i < n; i++)
                if (key_order(k[i].key, k[best].key) == (f[1] == 'i' ? -1 : 1)) best = i;
            res = mkval(json_incref(k[best].item));
        }
    }
    keyed_free(k, n, list);
    return res;
}

/* sum(attribute, start) as Python 3.11's sum(): integers exactly, and from the first float
 * on, floats added left to right (3.12 compensates their rounding). */
static val sum_filter(rctx *r, const expr *e, json_t *j, json_t *const *args, size_t nargs)
{
    long long is = 0, iv;
    double fs = 0, d;
    int kind = nargs > 1 ? py_number(args[1], &is, &fs) : 'i';
    if (!kind) {
        rfail(r, e, -EINVAL, "sum: cannot add number and %s", type_name(args[1]));
        return mkval(NULL);
    }
    json_t *list = NULL;
    size_t n;
    keyed *k = keyed_items(r, e, j, nargs ? args[0] : NULL, true, &list, &n);
    for (size_t i = 0; k && i < n && !r->failed; i++) {
        int ki = py_number(k[i].key, &iv, &d);
        if (!ki)
            rfail(r, e, -EINVAL, "sum: cannot add number and %s", type_name(k[i].key));
        else if (kind == 'f')
            fs += ki == 'i' ? (double)iv : d;
        else if (ki == 'f')
            fs = (double)is + d, kind = 'f';
        else if (__builtin_add_overflow(is, iv, &is))
            rfail(r, e, -EINVAL, "sum: a number too large");
    }
    keyed_free(k, n, list);
    if (r->failed) return mkval(NULL);
    return kind == 'f' ? real_val(r, e, fs) : mkval(json_integer(is));
}

/* Python's round(x, p) of a float: the decimal correctly rounded, ties to even (what
 * _Py_dg_dtoa gives), read back. */
static double round_common(double d, long long p)
{
    char buf[900];
    if (p > 323 || d == 0) return d; /* (Python's bounds: beyond them, x or 0.0 * x) */
    if (p < -308) return 0.0 * d;
    if (p >= 0) {
        snprintf(buf, sizeof buf, "%.*f", (int)p, d);
        return strtod(buf, NULL);
    }
    snprintf(buf, sizeof buf, "%.16e", d);
    long long keep = atoi(strchr(buf, 'e') + 1) + 1 + p; /* significant digits kept */
    if (keep > 0) {
        snprintf(buf, sizeof buf, "%.*e", (int)keep - 1, d);
        return strtod(buf, NULL);
    }
    if (keep < 0) return copysign(0.0, d); /* below half the unit */
    /* the unit's order: up beyond half of it, exactly half to even (0) */
    snprintf(buf, sizeof buf, "%.800e", fabs(d)); /* every digit a double has */
    bool up = buf[0] > '5' || (buf[0] == '5' && strspn(buf + 2, "0") < strcspn(buf + 2, "e"));
    snprintf(buf, sizeof buf, "1e%lld", -p);
    return up ? copysign(strtod(buf, NULL), d) : copysign(0.0, d);
}

/* round(precision=0, method='common'): Jinja2's, Python's round() for 'common' (an integer
 * stays one), math.ceil or math.floor of x * 10**p, over 10**p, for the others. */
static val round_filter(rctx *r, const expr *e, json_t *j, json_t *const *args, size_t nargs)
{
    const char *m = nargs < 2                 ? "common"
                    : json_is_string(args[1]) ? json_string_value(args[1])
                                              : "";
    long long p, iv;
    double d;
    if (strcmp(m, "common") && strcmp(m, "ceil") && strcmp(m, "floor")) {
        rfail(r, e, -EINVAL, "round: the method must be common, ceil or floor");
        return mkval(NULL);
    }
    if (!int_arg(r, e, args, nargs, 0, 0, &p)) return mkval(NULL);
    int kind = py_number(j, &iv, &d);
    if (!kind) {
        rfail(r, e, -EINVAL, "round of %s", type_name(j));
        return mkval(NULL);
    }
    if (m[1] != 'o') {
        double x = kind == 'i' ? (double)iv : d, scale = pow(10, (double)p);
        x *= scale;
        return real_val(r, e, (m[0] == 'c' ? ceil(x) : floor(x)) / scale);
    }
    if (kind == 'f') return real_val(r, e, round_common(d, p));
    if (p >= 0) return mkval(json_integer(iv));
    /* an int to a multiple of 10**-p, ties to even, as int.__round__ */
    unsigned long long mag = iv < 0 ? 0ULL - (unsigned long long)iv : (unsigned long long)iv, q = 0;
    if (p >= -19) {
        unsigned long long unit = 1;
        for (long long i = 0; i < -p; i++) unit *= 10;
        q = mag / unit;
        unsigned long long rem = mag % unit;
        q += rem > unit / 2 || (rem == unit / 2 && (q & 1));
        if (__builtin_mul_overflow(q, unit, &q) || q > (iv < 0 ? 1ULL << 63 : LLONG_MAX)) {
            rfail(r, e, -EINVAL, "round: a number too large");
            return mkval(NULL);
        }
    }
    return mkval(json_integer(iv < 0 ? (json_int_t)(0ULL - q) : (json_int_t)q));
}

/* replace(old, new, count): Jinja2's, Python's str.replace(); with autoescape and a safe
 * (Markup) value, old or new, the others are escaped first and the result is safe. */
static val replace_filter(rctx *r, const expr *e, val v, const val *argv, json_t *const *args,
                          size_t nargs)
{
    long long count = -1;
    if (nargs < 2) {
        rfail(r, e, -EINVAL, "replace: needs the old and the new text");
        return mkval(NULL);
    }
    if (nargs > 2 && !json_is_null(args[2]) && !int_arg(r, e, args, nargs, 2, -1, &count))
        return mkval(NULL);
    /* value, old, new: what is not safe is escaped when the result is (Markup.replace) */
    bool safe = r->autoescape && (v.safe || argv[0].safe || argv[1].safe);
    bool esc[3] = {safe && !v.safe, safe && !argv[0].safe, safe && !argv[1].safe};
    json_t *t[3] = {NULL, NULL, NULL};
    const json_t *src[3] = {v.j, argv[0].j, argv[1].j};
    for (int i = 0; i < 3; i++) {
        sq__buf b = {0};
        text_of(r, e, src[i], &b);
        t[i] = esc[i] ? escaped_string(b.ptr ? b.ptr : "", b.len)
                      : json_stringn(b.ptr ? b.ptr : "", b.len);
        sq__buf_free(&b);
    }
    val res = mkval(NULL);
    if (t[0] && t[1] && t[2] && !r->failed) {
        const char *s = json_string_value(t[0]), *old = json_string_value(t[1]),
                   *rep = json_string_value(t[2]);
        size_t n = json_string_length(t[0]), on = json_string_length(t[1]),
               rn = json_string_length(t[2]), i = 0, k;
        sq__buf b = {0};
        while (i <= n && b.len <= MAX_FILTER_TEXT) {
            const char *hit = !count ? NULL : on ? memmem(s + i, n - i, old, on) : s + i;
            if (!hit) break;
            sq__buf_append(&b, s + i, (size_t)(hit - s) - i);
            sq__buf_append(&b, rep, rn);
            count -= count > 0;
            i = (size_t)(hit - s) + on;
            if (!on && i < n) { /* "" matches before each character and at the end */
                utf8_at(s + i, n - i, &k);
                sq__buf_append(&b, s + i, k);
                i += k;
            } else if (!on) {
                i = n + 1;
            }
        }
        if (i < n) sq__buf_append(&b, s + i, n - i);
        res = text_val(r, e, &b, safe);
        sq__buf_free(&b);
    } else if (!r->failed) {
        r->failed = -ENOMEM;
    }
    for (int i = 0; i < 3; i++) json_decref(t[i]);
    return res;
}

/* truncate(length=255, killwords=False, end='...', leeway=5): Jinja2's, on characters. */
static val truncate_filter(rctx *r, const expr *e, val v, const val *argv, json_t *const *a,
                           size_t nargs)
{
    json_t *j = v.j;
    long long length, leeway;
    /* leeway=None is the policy's 5: as if not given */
    if (!int_arg(r, e, a, nargs, 0, 255, &length) ||
        !int_arg(r, e, a, nargs > 3 && json_is_null(a[3]) ? 3 : nargs, 3, 5, &leeway))
        return mkval(NULL);
    if (nargs > 2 && !json_is_string(a[2])) {
        rfail(r, e, -EINVAL, "truncate: the end is a string, not %s", type_name(a[2]));
        return mkval(NULL);
    }
    const char *end = nargs > 2 ? json_string_value(a[2]) : "...";
    size_t endn = nargs > 2 ? json_string_length(a[2]) : 3, endc = utf8_count(end, endn);
    if (length < (long long)endc || leeway < 0) {
        rfail(r, e, -EINVAL, "truncate: expected %s >= %lld, got %lld",
              leeway < 0 ? "leeway" : "length", leeway < 0 ? 0 : (long long)endc,
              leeway < 0 ? leeway : length);
        return mkval(NULL);
    }
    size_t have;                /* Python's len() */
    if (!j) return mkval(NULL); /* Undefined: len() 0, returned as it is */
    if (json_is_string(j))
        have = utf8_count(json_string_value(j), json_string_length(j));
    else if (json_is_array(j) || json_is_object(j))
        have = json_is_array(j) ? json_array_size(j) : json_object_size(j);
    else {
        rfail(r, e, -EINVAL, "truncate of %s", type_name(j));
        return mkval(NULL);
    }
    if ((long long)have <= length ||
        have - (unsigned long long)length <= (unsigned long long)leeway)
        return (val){json_incref(j), v.safe, true};
    if (!json_is_string(j)) { /* a slice of it + '...': Python's TypeError */
        rfail(r, e, -EINVAL, "truncate of a %s longer than the length", type_name(j));
        return mkval(NULL);
    }
    const char *s = json_string_value(j);
    size_t n = json_string_length(j), cut = utf8_offset(s, n, (size_t)length - endc);
    if (nargs < 2 || !truthy(a[1])) { /* rsplit(" ", 1)[0]: back to the last space */
        const char *sp = memrchr(s, ' ', cut);
        if (sp) cut = (size_t)(sp - s);
    }
    sq__buf b = {0};
    sq__buf_append(&b, s, cut);
    json_t *endj = v.safe && !(nargs > 2 && argv[2].safe) ? escaped_string(end, endn) : NULL;
    if (endj) /* Markup + str escapes the str */
        sq__buf_append(&b, json_string_value(endj), json_string_length(endj));
    else
        sq__buf_append(&b, end, endn);
    json_decref(endj);
    val res = text_val(r, e, &b, v.safe);
    sq__buf_free(&b);
    return res;
}

/* float(default=0.0), abs, title, capitalize, wordcount, center(width=80), reverse, list,
 * replace, truncate, round, sum and the ordering filters.  Undefined is NULL, a failure sets
 * r->failed (through rfail). */
static val more_filter(rctx *r, const expr *e, val v, const val *argv, json_t *const *args,
                       size_t nargs)
{
    const char *f = e->name;
    json_t *j = v.j;
    long long iv;
    double d;
    int kind = py_number(j, &iv, &d);
    sq__buf b = {0};
    val res = mkval(NULL);
    if (!strcmp(f, "float")) {
        if (!j) {
            rfail(r, e, -EINVAL, "float of undefined"); /* Undefined.__float__ raises */
            return res;
        }
        int rc = kind ? 1
                 : json_is_string(j)
                     ? float_of_text(json_string_value(j), json_string_length(j), &d)
                     : 0;
        if (rc < 0)
            r->failed = rc;
        else if (rc)
            res = real_val(r, e, kind == 'i' ? (double)iv : d);
        else
            res = nargs ? mkval(json_incref(args[0])) : mkval(json_real(0));
    } else if (!strcmp(f, "abs")) {
        if (!kind)
            rfail(r, e, -EINVAL, "abs of %s", type_name(j));
        else if (kind == 'i' && iv == LLONG_MIN) /* Python's is a big integer */
            rfail(r, e, -EINVAL, "abs: a number too large");
        else
            res = mkval(kind == 'i' ? json_integer(llabs(iv)) : json_real(fabs(d)));
    } else if (!strcmp(f, "round")) {
        res = round_filter(r, e, j, args, nargs);
    } else if (!strcmp(f, "replace")) {
        res = replace_filter(r, e, v, argv, args, nargs);
    } else if (!strcmp(f, "truncate")) {
        res = truncate_filter(r, e, v, argv, args, nargs);
    } else if (!strcmp(f, "title") || !strcmp(f, "capitalize") || !strcmp(f, "wordcount") ||
               !strcmp(f, "center")) {
        text_of(r, e, j, &b);
        if (f[0] == 'w') {
            size_t words = 0;
            bool in = false;
            for (size_t i = 0, k; i < b.len; i += k) {
                bool w = py_word(utf8_at(b.ptr + i, b.len - i, &k));
                words += w && !in;
                in = w;
            }
            res = mkval(json_integer((json_int_t)words));
        } else if (f[0] == 'c' && f[1] == 'e') { /* Python's str.center: the odd space left */
            long long width;
            size_t have = utf8_count(b.ptr ? b.ptr : "", b.len);
            if (!int_arg(r, e, args, nargs, 0, 80, &width)) {
            } else if (width > (long long)have && (unsigned long long)width > MAX_FILTER_TEXT) {
                rfail(r, e, -EINVAL, "center: a width beyond %zu MiB", MAX_FILTER_TEXT >> 20);
            } else {
                size_t marg = width > (long long)have ? (size_t)width - have : 0,
                       left = marg / 2 + (marg & (size_t)width & 1);
                sq__buf c = {0};
                if (sq__buf_reserve(&c, marg + b.len + 1) == 0) {
                    memset(c.ptr, ' ', marg + b.len);
                    if (b.len) memcpy(c.ptr + left, b.ptr, b.len);
                    c.len = marg + b.len;
                }
                res = text_val(r, e, &c, v.safe);
                sq__buf_free(&c);
            }
        } else { /* title returns a str (a join), capitalize keeps Markup */
            recase(b.ptr, b.len, f[0] == 't');
            res = text_val(r, e, &b, f[0] == 'c' && v.safe);
        }
    } else if (!strcmp(f, "reverse") && json_is_string(j)) { /* value[::-1] */
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        if (sq__buf_reserve(&b, n + 1) == 0) {
            for (size_t i = 0, k; i < n; i += k) {
                utf8_at(s + i, n - i, &k);
                memcpy(b.ptr + n - i - k, s + i, k);
            }
            b.len = n;
        }
        res = text_val(r, e, &b, v.safe);
    } else if (!strcmp(f, "reverse") || !strcmp(f, "list")) {
        json_t *l = py_list(r, e, j);
        for (size_t i = 0, n = json_array_size(l); f[0] == 'r' && i < n / 2; i++) {
            json_t *x = json_incref(json_array_get(l, i));
            json_array_set(l, i, json_array_get(l, n - 1 - i));
            json_array_set_new(l, n - 1 - i, x);
        }
        res = mkval(l);
    } else if (!strcmp(f, "sum")) {
        res = sum_filter(r, e, j, args, nargs);
    } else {
        res = order_filter(r, e, j, args, nargs);
    }
    sq__buf_free(&b);
    return res;
}

/* Built-in filters.  Return the new value (references), or set r->failed. */
static val builtin_filter(rctx *r, const expr *e, val v, const val *argv, json_t **args,
                          size_t nargs)
{
    const char *f = e->name;
    json_t *j = v.j;
    sq__buf b = {0};
    val res = {NULL, false, true};
    if (!strcmp(f, "safe")) {
        res = (val){json_incref(j), true, true};
    } else if (!strcmp(f, "escape") || !strcmp(f, "e")) {
        if (v.safe) return (val){json_incref(j), true, true};
        text_of(r, e, j, &b);
        if (j && !r->failed) {
            res = (val){escaped_string(b.ptr ? b.ptr : "", b.len), true, true};
        } else {
            res = (val){json_string(""), true, true};
        }
    } else if (!strcmp(f, "upper") || !strcmp(f, "lower")) {
        text_of(r, e, j, &b);
        for (size_t i = 0; i < b.len; i++)
            b.ptr[i] = f[0] == 'u' ? ascii_upper(b.ptr[i]) : ascii_lower(b.ptr[i]);
        res = (val){json_stringn(b.ptr ? b.ptr : "", b.len), v.safe, true};
    } else if (!strcmp(f, "trim")) {
        text_of(r, e, j, &b);
        size_t s = 0, n = b.len;
        while (s < n && isspace((unsigned char)b.ptr[s])) s++;
        while (n > s && isspace((unsigned char)b.ptr[n - 1])) n--;
        res = (val){json_stringn(b.ptr ? b.ptr + s : "", n - s), v.safe, true};
    } else if (!strcmp(f, "string")) {
        text_of(r, e, j, &b);
        res = (val){json_stringn(b.ptr ? b.ptr : "", b.len), v.safe, true};
    } else if (!strcmp(f, "default") || !strcmp(f, "d")) {
        bool use = !j || (nargs > 1 && json_is_true(args[1]) && !truthy(j));
        res = use ? mkval(json_incref(nargs ? args[0] : NULL)) : (val){json_incref(j), v.safe, true};
        if (use && !nargs) res = mkval(json_string(""));
    } else if (!strcmp(f, "length") || !strcmp(f, "count")) {
        size_t n = 0;
        if (json_is_string(j)) {
            n = utf8_count(json_string_value(j), json_string_length(j));
        } else if (json_is_array(j)) {
            n = json_array_size(j);
        } else if (json_is_object(j)) {
            n = json_object_size(j);
        } else if (j) { /* undefined: 0, as Jinja2's Undefined has */
            rfail(r, e, -EINVAL, "length of %s", type_name(j));
            return res;
        }
        res = mkval(json_integer((json_int_t)n));
    } else if (!strcmp(f, "url") || !strcmp(f, "urlencode")) {
        text_of(r, e, j, &b);
        sq__buf q = {0};
        url_quote(&q, b.ptr ? b.ptr : "", b.len);
        res = mkval(json_stringn(q.ptr ? q.ptr : "", q.len));
        sq__buf_free(&q);
    } else if (!strcmp(f, "json") || !strcmp(f, "tojson")) {
        int rc = tojson(j, &b, 0);
        if (rc == -EINVAL)
            rfail(r, e, rc, "%s: a value nested deeper than %d", f, MAX_VALUE_DEPTH);
        else if (rc < 0)
            r->failed = rc;
        res = (val){json_stringn(b.ptr ? b.ptr : "", b.len), true, true};
    } else if (!strcmp(f, "join")) {
        const char *sep = nargs && json_is_string(args[0]) ? json_string_value(args[0]) : "";
        for (size_t i = 0; json_is_array(j) && i < json_array_size(j); i++) {
            if (i) sq__buf_append(&b, sep, strlen(sep));
            text_of(r, e, json_array_get(j, i), &b);
        }
        res = mkval(json_stringn(b.ptr ? b.ptr : "", b.len));
    } else if (!strcmp(f, "first") || !strcmp(f, "last")) {
        bool first = f[0] == 'f';
        if (json_is_string(j) && json_string_length(j)) { /* a character, not a byte */
            const char *s = json_string_value(j);
            size_t n = json_string_length(j), at = 0, k;
            if (!first) /* back to the lead byte of the last character */
                for (at = n - 1; at && ((unsigned char)s[at] & 0xc0) == 0x80;) at--;
            utf8_at(s + at, n - at, &k);
            res = mkval(json_stringn(s + at, k));              /* a str: Markup iterates as str */
        } else if (json_is_object(j) && json_object_size(j)) { /* Python iterates a dict's keys */
            void *it = json_object_iter(j), *nx;
            while (!first && (nx = json_object_iter_next(j, it))) it = nx;
            res = mkval(json_string(json_object_iter_key(it)));
        } else {
            size_t n = json_array_size(j);
            res = mkval(n ? json_incref(json_array_get(j, first ? 0 : n - 1)) : NULL);
        }
    } else if (!strcmp(f, "int")) {
        /* Jinja2's do_int: int(value), else int(float(value)), else the default */
        long long x = 0;
        int rc = 0; /* 1: x is the value; 0: not a number; -ENOMEM */
        if (json_is_integer(j)) {
            x = json_integer_value(j), rc = 1;
        } else if (json_is_boolean(j)) {
            x = json_is_true(j), rc = 1;
        } else if (json_is_real(j)) {
            rc = int_of_double(json_real_value(j), &x);
        } else if (json_is_string(j)) {
            rc = int_of_text(json_string_value(j), json_string_length(j), &x);
        }
        if (rc < 0)
            r->failed = rc;
        else if (rc)
            res = mkval(json_integer(x));
        else
            res = mkval(nargs && args[0] ? json_incref(args[0]) : json_integer(0));
    } else if (!strcmp(f, "items")) {
        json_t *list = json_array();
        const char *k;
        json_t *x;
        if (json_is_object(j))
            json_object_foreach(j, k, x) json_array_append_new(list, json_pack("[s,O]", k, x));
        res = mkval(list);
    } else {
        res = more_filter(r, e, v, argv, args, nargs);
    }
    sq__buf_free(&b);
    return res;
}

static val call_filter(rctx *r, const expr *e)
{
    val v = eval(r, e->a);
    json_t *args[8] = {0};
    val argv[8];
    size_t n = e->nargs < 8 ? e->nargs : 8;
    for (size_t i = 0; i < n; i++) {
        argv[i] = eval(r, e->args[i]);
        args[i] = argv[i].j;
    }
    val res = {NULL, false, true};
    if (!r->failed) {
        if (e->filter->fn) {
            const char *msg = NULL;
            bool safe = false;
            res.j = e->filter->fn(v.j, args, n, e->filter->arg, &safe, &msg);
            res.safe = safe;
            if (msg) rfail(r, e, -EINVAL, "%s: %s", e->name, msg);
        } else {
            res = builtin_filter(r, e, v, argv, args, n);
        }
    }
    vfree(v);
    for (size_t i = 0; i < n; i++) vfree(argv[i]);
    return res;
}

static val arith(rctx *r, const expr *e, json_t *a, json_t *b)
{
    if (e->op == OP_ADD && json_is_string(a) && json_is_string(b)) {
        sq__buf s = {0};
        sq__buf_append(&s, json_string_value(a), json_string_length(a));
        sq__buf_append(&s, json_string_value(b), json_string_length(b));
        val v = mkval(json_stringn(s.ptr ? s.ptr : "", s.len));
        sq__buf_free(&s);
        return v;
    }
    if (e->op == OP_ADD && json_is_array(a) && json_is_array(b)) {
        json_t *l = json_copy(a);
        json_array_extend(l, b);
        return mkval(l);
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *const ops[] = {"", "", "", "", "", "", "add", "subtract", "multiply",
                                          "divide", "divide", "take the modulo of"};
        rfail(r, e, -EINVAL, "cannot %s %s and %s", ops[e->op], type_name(a), type_name(b));
        return mkval(NULL);
    }
    bool ints = json_is_integer(a) && json_is_integer(b);
    double x = json_number_value(a), y = json_number_value(b);
    if ((e->op == OP_DIV || e->op == OP_FDIV || e->op == OP_MOD) && y == 0) {
        rfail(r, e, -EINVAL, "division by zero");
        return mkval(NULL);
    }
    if (ints && e->op != OP_DIV) {
        long long i = json_integer_value(a), k = json_integer_value(b), z = 0;
        bool over = false;
        switch (e->op) {
        case OP_ADD: over = __builtin_add_overflow(i, k, &z); break;
        case OP_SUB: over = __builtin_sub_overflow(i, k, &z); break;
        case OP_MUL: over = __builtin_mul_overflow(i, k, &z); break;
        case OP_FDIV:
            over = i == LLONG_MIN && k == -1;
            if (!over) z = i / k - ((i % k != 0) && ((i < 0) != (k < 0)));
            break;
        case OP_MOD:
            z = k == -1 ? 0 : i % k;
            if (z && ((z < 0) != (k < 0))) z += k;
            break;
        }
        if (over) {
            rfail(r, e, -EINVAL, "integer overflow");
            return mkval(NULL);
        }
        return mkval(json_integer(z));
    }
    double z = 0;
    switch (e->op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV: z = x / y; break;
    case OP_FDIV: z = floor(x / y); break;
    case OP_MOD: z = fmod(x, y); if (z != 0 && ((z < 0) != (y < 0))) z += y; break;
    }
    if (!isfinite(z)) { /* Python's inf: a jansson real cannot hold it (it made no value) */
        static const char *const syms[] = {"", "", "", "", "", "", "+", "-", "*", "/", "//", "%"};
        rfail(r, e, -EINVAL, "a number too large (the result of '%s')", syms[e->op]);
        return mkval(NULL);
    }
    return mkval(json_real(z));
}

static val compare(rctx *r, const expr *e, json_t *a, json_t *b)
{
    bool res;
    if (e->op == OP_EQ || e->op == OP_NE) {
        res = equal(a, b) == (e->op == OP_EQ);
    } else {
        int c;
        if (is_num(a) && is_num(b)) {
            double x = json_number_value(a), y = json_number_value(b);
            c = x < y ? -1 : x > y;
        } else if (json_is_string(a) && json_is_string(b)) {
            c = strcmp(json_string_value(a), json_string_value(b));
        } else {
            rfail(r, e, -EINVAL, "cannot compare %s and %s", type_name(a), type_name(b));
            return mkval(NULL);
        }
        res = e->op == OP_LT ? c < 0 : e->op == OP_LE ? c <= 0 : e->op == OP_GT ? c > 0 : c >= 0;
    }
    return borrow(json_boolean(res));
}

static bool contains(rctx *r, const expr *e, json_t *needle, json_t *hay)
{
    if (json_is_string(hay) && json_is_string(needle))
        return memmem(json_string_value(hay), json_string_length(hay), json_string_value(needle),
                      json_string_length(needle)) != NULL;
    if (json_is_array(hay)) {
        for (size_t i = 0; i < json_array_size(hay); i++)
            if (equal(json_array_get(hay, i), needle)) return true;
        return false;
    }
    if (json_is_object(hay) && json_is_string(needle))
        return json_object_get(hay, json_string_value(needle)) != NULL;
    rfail(r, e, -EINVAL, "'in' needs a string, list or object, not %s", type_name(hay));
    return false;
}

static void render_nodes(rctx *r, const node *n);
static void render_block(rctx *r, const char *name, int level);

static bool int_cmp(int op, long long x, long long y)
{
    switch (op) {
    case OP_EQ: return x == y;
    case OP_NE: return x != y;
    case OP_LT: return x < y;
    case OP_LE: return x <= y;
    case OP_GT: return x > y;
    default: return x >= y;
    }
}

/* Integer arithmetic as arith() does it; false where that would fail or make a float. */
static bool int_arith(int op, long long i, long long k, long long *z)
{
    switch (op) {
    case OP_ADD: return !__builtin_add_overflow(i, k, z);
    case OP_SUB: return !__builtin_sub_overflow(i, k, z);
    case OP_MUL: return !__builtin_mul_overflow(i, k, z);
    case OP_FDIV:
        if (k == 0 || (i == LLONG_MIN && k == -1)) return false;
        *z = i / k - ((i % k != 0) && ((i < 0) != (k < 0)));
        return true;
    case OP_MOD:
        if (k == 0) return false;
        *z = k == -1 ? 0 : i % k;
        if (*z && ((*z < 0) != (k < 0))) *z += k;
        return true;
    default: return false; /* '/' makes a float */
    }
}

/* Whether int_of() can apply to e (its shape, not its values): worked out once per node. */
static bool intish(const expr *e)
{
    if (e->intish < 0) {
        bool yes = (e->kind == E_LIT && json_is_integer(e->lit)) ||
                   (e->kind == E_ATTR && e->op && e->op != 3 && e->op != 4) ||
                   (e->kind == E_ARITH && intish(e->a) && intish(e->b));
        ((expr *)e)->intish = yes; /* a cache in the tree: renders run on one thread */
    }
    return e->intish;
}

/* The value of e when it is an integer that needs no lookup by name (a literal, loop.index
 * and its kin, arithmetic of those): computed without making a json value. */
static bool int_of(rctx *r, const expr *e, long long *v)
{
    if (!intish(e)) return false;
    switch (e->kind) {
    case E_LIT:
        if (!json_is_integer(e->lit)) return false;
        *v = (long long)json_integer_value(e->lit);
        return true;
    case E_ATTR: {
        if (!e->op || !r->nloops || r->loop_vars || e->op == 3 || e->op == 4) return false;
        const loop_state *l = r->loops[r->nloops - 1];
        switch (e->op) {
        case 1: *v = (long long)l->index + 1; break;
        case 2: *v = (long long)l->index; break;
        case 5: *v = (long long)l->length; break;
        case 6: *v = (long long)(l->length - l->index); break;
        default: *v = (long long)(l->length - l->index - 1); break;
        }
        return true;
    }
    case E_ARITH: {
        long long x, y;
        return int_of(r, e->a, &x) && int_of(r, e->b, &y) && int_arith(e->op, x, y, v);
    }
    default: return false;
    }
}

/* The truth of e when it is loop.first / loop.last, an integer comparison, or `not` of
 * one: worked out without making a value.  False when e is of another shape. */
static bool bool_of(rctx *r, const expr *e, bool *t)
{
    switch (e->kind) {
    case E_NOT:
        if (!bool_of(r, e->a, t)) return false;
        *t = !*t;
        return true;
    case E_ATTR: {
        if ((e->op != 3 && e->op != 4) || !r->nloops || r->loop_vars) return false;
        const loop_state *l = r->loops[r->nloops - 1];
        *t = e->op == 3 ? l->index == 0 : l->index + 1 == l->length;
        return true;
    }
    case E_CMP: {
        long long x, y;
        if (!int_of(r, e->a, &x) || !int_of(r, e->b, &y)) return false;
        *t = int_cmp(e->op, x, y);
        return true;
    }
    default: return false;
    }
}

/* A name: a variable, the context's, or a safe global (xsrf_form_html). */
static val name_val(rctx *r, const expr *e)
{
    val v = lookup(r, e->name);
    if (!v.j && r->safe_globals) {
        json_t *j = json_object_get(r->safe_globals, e->name);
        if (j) return (val){j, true, false};
    }
    return v;
}

/* o.name (e an E_ATTR): a member of an object, or a numbered item of a list. */
static val member(val o, const expr *e)
{
    json_t *res = NULL;
    if (json_is_object(o.j))
        res = json_object_getn(o.j, e->name, e->namelen);
    else if (json_is_array(o.j) && isdigit((unsigned char)e->name[0]))
        res = json_array_get(o.j, (size_t)atol(e->name));
    return part_of(o, res);
}

static val eval(rctx *r, const expr *e)
{
    if (!e || r->failed) return mkval(NULL);
    /* name.attr and names, the commonest expressions, as plain branches (see render_nodes) */
    if (e->kind == E_ATTR && !e->op && e->a->kind == E_NAME) return member(name_val(r, e->a), e);
    if (e->kind == E_NAME) return name_val(r, e);
    switch (e->kind) {
    case E_LIT: return borrow(e->lit);
    case E_NAME: return name_val(r, e);
    case E_ATTR: {
        if (e->op && r->nloops && !r->loop_vars) { /* loop.* from the loop's state */
            const loop_state *l = r->loops[r->nloops - 1];
            switch (e->op) {
            case 1: return mkval(json_integer((json_int_t)l->index + 1));
            case 2: return mkval(json_integer((json_int_t)l->index));
            case 3: return borrow(json_boolean(l->index == 0)); /* (static: not counted) */
            case 4: return borrow(json_boolean(l->index + 1 == l->length));
            case 5: return mkval(json_integer((json_int_t)l->length));
            case 6: return mkval(json_integer((json_int_t)(l->length - l->index)));
            default: return mkval(json_integer((json_int_t)(l->length - l->index - 1)));
            }
        }
        return member(eval(r, e->a), e);
    }
    case E_INDEX: {
        val o = eval(r, e->a), k = eval(r, e->b);
        json_t *res = item(o.j, k.j);
        vfree(k);
        return part_of(o, res);
    }
    case E_FILTER: return call_filter(r, e);
    case E_NOT: {
        val a = eval(r, e->a);
        bool t = truthy(a.j);
        vfree(a);
        return borrow(json_boolean(!t));
    }
    case E_NEG: {
        val a = eval(r, e->a);
        val res = mkval(NULL);
        if (json_is_integer(a.j) && json_integer_value(a.j) != LLONG_MIN) res = mkval(json_integer(-json_integer_value(a.j)));
        else if (json_is_real(a.j)) res = mkval(json_real(-json_real_value(a.j)));
        else rfail(r, e, -EINVAL, "cannot negate %s", type_name(a.j));
        vfree(a);
        return res;
    }
    case E_AND: case E_OR: {
        val a = eval(r, e->a);
        if (truthy(a.j) == (e->kind == E_OR)) return a; /* Python returns the operand */
        vfree(a);
        return eval(r, e->b);
    }
    case E_CMP: case E_ARITH: case E_CONCAT: case E_IN: case E_NOTIN: {
        long long x, y;
        if ((e->kind == E_CMP || e->kind == E_ARITH) && int_of(r, e->a, &x) && int_of(r, e->b, &y)) {
            /* integers (loop.index % 2 == 1): no value made on the way */
            if (e->kind == E_CMP) return borrow(json_boolean(int_cmp(e->op, x, y)));
            long long z;
            if (int_arith(e->op, x, y, &z)) return mkval(json_integer(z));
        }
        val a = eval(r, e->a), b = eval(r, e->b);
        val res = mkval(NULL);
        if (!r->failed) {
            if (e->kind == E_CMP) {
                res = compare(r, e, a.j, b.j);
            } else if (e->kind == E_ARITH) {
                res = arith(r, e, a.j, b.j);
            } else if (e->kind == E_CONCAT) {
                sq__buf s = {0};
                text_of(r, e, a.j, &s);
                text_of(r, e, b.j, &s);
                res = mkval(json_stringn(s.ptr ? s.ptr : "", s.len));
                sq__buf_free(&s);
            } else {
                bool in = contains(r, e, a.j, b.j);
                res = borrow(json_boolean(in == (e->kind == E_IN)));
            }
        }
        vfree(a);
        vfree(b);
        return res;
    }
    case E_COND: {
        val c = eval(r, e->b);
        bool t = truthy(c.j);
        vfree(c);
        return t ? eval(r, e->a) : e->c ? eval(r, e->c) : mkval(NULL);
    }
    case E_LIST: {
        json_t *l = json_array();
        for (size_t i = 0; l && i < e->nargs; i++) {
            val v = eval(r, e->args[i]);
            json_array_append_new(l, v.j ? vown(v) : json_null());
        }
        return mkval(l);
    }
    case E_SUPER: {
        if (!r->block) {
            rfail(r, e, -EINVAL, "super() outside a block");
            return mkval(NULL);
        }
        size_t mark = r->out.len;
        render_block(r, r->block, r->block_level + 1);
        val v = {json_stringn(r->out.ptr + mark, r->out.len - mark), true, true};
        r->out.len = mark;
        return v;
    }
    }
    return mkval(NULL);
}

/* A variable; `owned`: j is a reference it takes (else borrowed for the variable's scope). */
static void push_var(rctx *r, const char *name, json_t *j, bool owned, bool safe)
{
    if (r->nvars == r->capvars) {
        size_t cap = r->capvars ? r->capvars * 2 : 16;
        var *v = realloc(r->vars, cap * sizeof *v);
        if (!v) {
            if (owned) json_decref(j);
            r->failed = -ENOMEM;
            return;
        }
        r->vars = v;
        r->capvars = cap;
    }
    r->vars[r->nvars++] = (var){name, j, owned, safe};
    if (name[0] == 'l' && !strcmp(name, "loop")) r->loop_vars++;
}

static void pop_vars(rctx *r, size_t to)
{
    while (r->nvars > to) {
        var *v = &r->vars[--r->nvars];
        if (v->name[0] == 'l' && !strcmp(v->name, "loop")) r->loop_vars--;
        if (v->owned) json_decref(v->j);
    }
}

static void print(rctx *r, const expr *e, val v)
{
    if (!v.j) return;
    if (json_is_string(v.j)) {
        if (r->autoescape && !v.safe)
            out_escaped(r, json_string_value(v.j), json_string_length(v.j));
        else
            out(r, json_string_value(v.j), json_string_length(v.j));
        return;
    }
    if (json_is_integer(v.j)) {
        if (room(r, 24))
            r->out.len = (size_t)(put_int(r->out.ptr + r->out.len, (long long)json_integer_value(v.j)) -
                                  r->out.ptr);
        return;
    }
    if (!json_is_array(v.j) && !json_is_object(v.j)) {
        /* numbers, True, False, None: nothing to escape, written in place */
        if (!r->failed) text_of(r, e, v.j, &r->out);
        return;
    }
    sq__buf b = {0};
    text_of(r, e, v.j, &b);
    if (r->autoescape && !v.safe)
        out_escaped(r, b.ptr ? b.ptr : "", b.len);
    else
        out(r, b.ptr ? b.ptr : "", b.len);
    sq__buf_free(&b);
}

static void render_template(rctx *r, sq_template *tpl);

/* Block `name` as the level-th template of the chain (child first) that defines it has it. */
static void render_block(rctx *r, const char *name, int level)
{
    for (int i = level; i < r->nchain; i++) {
        sq_template *t = r->chain[i];
        for (size_t k = 0; k < t->nblocks; k++) {
            if (strcmp(t->blocks[k]->name, name)) continue;
            const char *save_b = r->block;
            int save_l = r->block_level;
            const sq_template *save_t = r->tpl;
            r->block = name;
            r->block_level = i;
            r->tpl = t;
            /* Escaping is lexical, as in Jinja2: a block's body escapes as where it is
             * written, not as around the {% block %} tag of the parent rendering it. */
            bool save_esc = r->autoescape;
            r->autoescape = t->blocks[k]->flag;
            size_t mark = r->nvars; /* a `set` in a block is the block's own, as in Jinja2 */
            render_nodes(r, t->blocks[k]->body);
            pop_vars(r, mark);
            r->autoescape = save_esc;
            r->block = save_b;
            r->block_level = save_l;
            r->tpl = save_t;
            return;
        }
    }
}

static void render_nodes(rctx *r, const node *n)
{
    for (; n && !r->failed; n = n->next) {
        /* the two kinds that make up most of a page first, as plain branches: a switch's
         * one indirect jump mispredicts on the mix of kinds a row goes through */
        if (n->kind == N_TEXT) {
            out(r, n->text, n->len);
            continue;
        }
        if (n->kind == N_OUT) {
            long long i;
            if (intish(n->e) && int_of(r, n->e, &i)) { /* {{ loop.index }} */
                if (room(r, 24)) r->out.len = (size_t)(put_int(r->out.ptr + r->out.len, i) - r->out.ptr);
            } else {
                val v = eval(r, n->e);
                print(r, n->e, v);
                vfree(v);
            }
            continue;
        }
        switch (n->kind) {
        case N_TEXT: case N_OUT: break; /* (above) */
        case N_IF: {
            const node *c = n, *b;
            for (;;) { /* along an elif chain, in this loop */
                bool t;
                if (!bool_of(r, c->e, &t)) {
                    val v = eval(r, c->e);
                    t = truthy(v.j);
                    vfree(v);
                }
                b = t ? c->body : c->els;
                if (t || !b || b->kind != N_IF || !b->flag || r->failed) break;
                c = b;
            }
            if (b && b->kind == N_TEXT && !b->next) /* {% if … %}, {% endif %}: no call */
                out(r, b->text, b->len);
            else
                render_nodes(r, b);
            break;
        }
        case N_FOR: {
            val v = eval(r, n->e);
            if (json_is_object(v.j)) { /* over an object: its keys, in order */
                json_t *keys = json_array();
                const char *k;
                json_t *x;
                json_object_foreach(v.j, k, x) json_array_append_new(keys, json_string(k));
                vfree(v);
                v = mkval(keys);
            } else if (v.j && !json_is_array(v.j)) {
                rfail(r, n->e, -EINVAL, "cannot loop over %s", type_name(v.j));
                vfree(v);
                break;
            }
            json_t *list = v.j; /* alive until vfree(v): its items are borrowed meanwhile */
            size_t len = json_array_size(list);
            if (!len) {
                render_nodes(r, n->els);
                vfree(v);
                break;
            }
            if (r->nloops >= 64) {
                rfail(r, n->e, -EINVAL, "loops nested too deep");
                vfree(v);
                break;
            }
            loop_state ls = {0, len};
            r->loops[r->nloops++] = &ls;
            size_t mark = r->nvars;
            /* the loop's variables stay in their slots; each item replaces the last one's
             * (a `set` in the body pushes after them and is popped at the end of the item) */
            push_var(r, n->name, NULL, false, false);
            if (n->name2) push_var(r, n->name2, NULL, false, false);
            size_t body_mark = r->nvars;
            for (size_t i = 0; i < len && !r->failed; i++) {
                ls.index = i;
                json_t *it = json_array_get(list, i);
                if (n->name2) {
                    if (!json_is_array(it) || json_array_size(it) != 2) {
                        rfail(r, n->e, -EINVAL, "cannot unpack %s into two names", type_name(it));
                        break;
                    }
                    r->vars[mark].j = json_array_get(it, 0);
                    r->vars[mark + 1].j = json_array_get(it, 1);
                } else {
                    r->vars[mark].j = it;
                }
                render_nodes(r, n->body);
                if (r->nvars > body_mark) pop_vars(r, body_mark);
            }
            pop_vars(r, mark);
            r->nloops--;
            vfree(v);
            break;
        }
        case N_SET: {
            val v = eval(r, n->e);
            bool safe = v.safe;
            push_var(r, n->name, v.j ? vown(v) : json_null(), true, safe);
            break;
        }
        case N_INCLUDE: {
            char e2[256] = "";
            const expr at = {.line = n->line, .col = n->col}; /* where, for a message */
            sq_template *t = load(r->chain[0]->loader, n->name, e2, sizeof e2, 0);
            if (!t) {
                rfail(r, &at, -EINVAL, "include: %s", e2);
                break;
            }
            if (r->depth >= MAX_DEPTH) {
                rfail(r, &at, -ELOOP, "include nested too deep");
                break;
            }
            const sq_template *save_t = r->tpl;
            sq_template *save_chain[MAX_DEPTH + 1];
            int save_n = r->nchain;
            memcpy(save_chain, r->chain, sizeof save_chain);
            const char *save_b = r->block;
            bool save_esc = r->autoescape; /* the included template escapes as its own */
            r->autoescape = !t->loader->opts.no_autoescape;
            /* the included template sees the includer's variables, but what it sets stays
             * its own (Jinja2's scoping): they are dropped when it is done */
            size_t mark = r->nvars;
            r->depth++;
            render_template(r, t);
            r->depth--;
            pop_vars(r, mark);
            r->autoescape = save_esc;
            memcpy(r->chain, save_chain, sizeof save_chain);
            r->nchain = save_n;
            r->block = save_b;
            r->tpl = save_t;
            break;
        }
        case N_BLOCK: render_block(r, n->name, 0); break;
        case N_AUTOESC: {
            bool save = r->autoescape;
            r->autoescape = n->flag;
            render_nodes(r, n->body);
            r->autoescape = save;
            break;
        }
        }
    }
}

/* A template with its parents: the chain from it up to the root template, whose nodes are
 * rendered, each block taken from the nearest template of the chain that defines it. */
static void render_template(rctx *r, sq_template *tpl)
{
    r->nchain = 0;
    for (sq_template *t = tpl; t && !r->failed;) {
        if (r->nchain > MAX_DEPTH) {
            rfail(r, NULL, -ELOOP, "extends nested too deep");
            return;
        }
        r->chain[r->nchain++] = t;
        if (!t->parent) break;
        char e2[256] = "";
        sq_template *p = load(tpl->loader, t->parent, e2, sizeof e2, 0);
        if (!p) {
            rfail(r, NULL, -EINVAL, "extends: %s", e2);
            return;
        }
        t = p;
    }
    sq_template *root = r->chain[r->nchain - 1];
    r->tpl = root;
    r->block = NULL;
    render_nodes(r, root->root);
}

int sq_template_render(sq_template *tpl, json_t *ctx, char **outp, size_t *len, char *err,
                       size_t errlen)
{
    return sq__template_render_globals(tpl, ctx, NULL, outp, len, err, errlen);
}

int sq__template_render_globals(sq_template *tpl, json_t *ctx, json_t *safe_globals, char **outp,
                                size_t *len, char *err, size_t errlen)
{
    if (!tpl || !outp) return -EINVAL;
    pthread_once(&html_once, html_tables_init);
    rctx r = {.ctx = json_is_object(ctx) ? ctx : NULL, .autoescape = !tpl->loader->opts.no_autoescape,
              .tpl = tpl, .err = err, .errlen = errlen, .safe_globals = safe_globals};
    /* a page is usually about as long as it was last time: one allocation instead of a
     * dozen doublings, each copying what came before */
    if (tpl->out_hint && sq__buf_reserve(&r.out, tpl->out_hint + 1) < 0) r.failed = -ENOMEM;
    sq_templates *loader = tpl->loader;
    loader->renders++;
    render_template(&r, tpl);
    if (!r.failed) tpl->out_hint = r.out.len;
    if (!--loader->renders) {
        free_entries(loader->retired); /* tpl itself may be one of them: not used after this */
        loader->retired = NULL;
    }
    pop_vars(&r, 0);
    free(r.vars);
    if (!r.failed && sq__buf_append(&r.out, "", 1) < 0) r.failed = -ENOMEM;
    if (r.failed) {
        if (r.failed == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory");
        sq__buf_free(&r.out);
        *outp = NULL;
        if (len) *len = 0;
        return r.failed;
    }
    *outp = r.out.ptr;
    if (len) *len = r.out.len - 1;
    return 0;
}

static const char *const builtin_names[] = {
    "safe",       "escape", "e",        "upper",     "lower",     "trim",    "string", "default",
    "d",          "length", "count",    "url",       "urlencode", "json",    "tojson", "join",
    "first",      "last",   "int",      "items",     "float",     "abs",     "round",  "replace",
    "capitalize", "title",  "truncate", "wordcount", "center",    "reverse", "list",   "sum",
    "sort",       "unique", "min",      "max",       NULL};
static const filter_def builtins[] = {{.name = NULL}};

static const filter_def *find_filter(sq_templates *t, const char *name, size_t len)
{
    for (filter_def *f = t->filters; f; f = f->next)
        if (strlen(f->name) == len && !memcmp(f->name, name, len)) return f;
    for (int i = 0; builtin_names[i]; i++)
        if (strlen(builtin_names[i]) == len && !memcmp(builtin_names[i], name, len))
            return &builtins[0]; /* fn NULL: a built-in, found again by name when called */
    return NULL;
}

/* Typed options from the command line and config files (squall/options.h). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "squall/error.h"
#include "squall/options.h"

typedef struct opt {
    sq_option o;
    char *def;  /* the default, as --help shows it */
    bool set;   /* given on the command line or in a file */
    bool pending;                  /* set by the parse under way, to be applied when it succeeds */
    void (*apply)(struct opt *op); /* built-in options act once a parse succeeded */
} opt;

struct sq_options {
    const char *program, *description;
    opt *opts;
    size_t n, cap;
    char **strings; /* values of string options (owned) */
    size_t nstrings, capstrings;
    const char **args; /* positional arguments of the last parse */
    size_t nargs;
};

static const char *const log_levels[] = {"debug", "info", "warning", "error", "none", NULL};
static const char *const log_colors[] = {"auto", "on", "off", NULL};
static const char *const log_formats[] = {"text", "combined", "json", NULL};
static int opt_level = SQ_LOG_INFO, opt_color = SQ_LOG_COLOR_AUTO, opt_format = SQ_ACCESS_LOG_TEXT;

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Names compare with '-' and '_' alike. */
static bool name_eq(const char *a, const char *b, size_t blen)
{
    size_t i = 0;
    for (; i < blen && a[i]; i++) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y) return false;
    }
    return i == blen && !a[i];
}

static opt *find(const sq_options *o, const char *name, size_t len)
{
    for (size_t i = 0; i < o->n; i++)
        if (name_eq(o->opts[i].o.name, name, len)) return &o->opts[i];
    return NULL;
}

static char *format_value(const sq_option *op)
{
    char *s = NULL;
    int r = -1;
    switch (op->type) {
    case SQ_OPT_INT: r = asprintf(&s, "%d", *(int *)op->value); break;
    case SQ_OPT_DOUBLE: /* the shortest %g that reads back as the default (%g alone rounds) */
        for (int prec = 6; prec <= 17; prec++) {
            free(s);
            s = NULL;
            if ((r = asprintf(&s, "%.*g", prec, *(double *)op->value)) < 0) s = NULL;
            if (r < 0 || strtod(s, NULL) == *(double *)op->value) break;
        }
        break;
    case SQ_OPT_BOOL: r = asprintf(&s, "%s", *(bool *)op->value ? "true" : "false"); break;
    case SQ_OPT_STRING: {
        const char *v = *(const char **)op->value;
        r = asprintf(&s, "%s", v ? v : "");
        break;
    }
    case SQ_OPT_ENUM: r = asprintf(&s, "%s", op->choices[*(int *)op->value]); break;
    }
    return r < 0 ? NULL : s;
}

sq_options *sq_options_new(const char *program, const char *description)
{
    sq_options *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->program = program;
    o->description = description;
    return o;
}

void sq_options_free(sq_options *o)
{
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) free(o->opts[i].def);
    for (size_t i = 0; i < o->nstrings; i++) free(o->strings[i]);
    free(o->strings);
    free(o->opts);
    free(o->args);
    free(o);
}

static int add(sq_options *o, const sq_option *op, void (*apply)(opt *))
{
    if (!o || !op || !op->name || !*op->name || !op->value || strpbrk(op->name, "= \t"))
        return -EINVAL;
    if (op->type == SQ_OPT_ENUM) {
        int n = 0;
        while (op->choices && op->choices[n]) n++;
        int d = *(int *)op->value;
        if (!n || d < 0 || d >= n) return -EINVAL;
    } else if (op->type > SQ_OPT_ENUM) {
        return -EINVAL;
    }
    size_t nl = strlen(op->name);
    if (find(o, op->name, nl) || name_eq("help", op->name, nl) || name_eq("config", op->name, nl))
        return -EEXIST;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        opt *p = realloc(o->opts, cap * sizeof *p);
        if (!p) return -ENOMEM;
        o->opts = p;
        o->cap = cap;
    }
    char *def = format_value(op);
    if (!def) return -ENOMEM;
    o->opts[o->n++] = (opt){.o = *op, .def = def, .apply = apply};
    return 0;
}

int sq_options_add(sq_options *o, const sq_option *spec)
{
    return add(o, spec, NULL);
}

static void apply_level(opt *op)
{
    sq_log_set_level(opt_level); /* the enum's order is the levels' (none = SQ_LOG_OFF) */
}
static void apply_color(opt *op)
{
    sq_log_set_color(opt_color);
}
static void apply_format(opt *op)
{
    sq_log_set_access_format(opt_format);
}

int sq_options_add_logging(sq_options *o)
{
    opt_level = sq_log_get_level();
    if (opt_level < SQ_LOG_DEBUG || opt_level > SQ_LOG_OFF) opt_level = SQ_LOG_INFO;
    opt_color = sq_log_get_color();
    opt_format = sq_log_get_access_format();
    int rc = add(o,
                 &(sq_option){.name = "logging", .type = SQ_OPT_ENUM, .value = &opt_level,
                              .choices = log_levels, .group = "Logging",
                              .help = "log messages at this level and above"},
                 apply_level);
    if (!rc)
        rc = add(o,
                 &(sq_option){.name = "log-color", .type = SQ_OPT_ENUM, .value = &opt_color,
                              .choices = log_colors, .group = "Logging",
                              .help = "coloured log levels (auto: when stderr is a terminal)"},
                 apply_color);
    if (!rc)
        rc = add(o,
                 &(sq_option){.name = "log-format", .type = SQ_OPT_ENUM, .value = &opt_format,
                              .choices = log_formats, .group = "Logging",
                              .help = "access-log lines: text, combined (Apache/nginx) or "
                                      "json (one object per line)"},
                 apply_format);
    return rc;
}

static const char *type_name(const sq_option *op)
{
    switch (op->type) {
    case SQ_OPT_INT: return "integer";
    case SQ_OPT_DOUBLE: return "number";
    case SQ_OPT_BOOL: return "boolean";
    case SQ_OPT_STRING: return "string";
    default: return "choice";
    }
}

/* Write an enum's choices separated by `sep`, all of them however many; the width written. */
static int put_choices(FILE *f, const char *const *choices, const char *sep)
{
    int w = 0;
    for (int k = 0; choices[k]; k++) {
        int r = fprintf(f, "%s%s", k ? sep : "", choices[k]);
        if (r > 0) w += r;
    }
    return w;
}

static int keep_string(sq_options *o, const char *v, size_t len, const char **out)
{
    if (o->nstrings == o->capstrings) {
        size_t cap = o->capstrings ? o->capstrings * 2 : 8;
        char **p = realloc(o->strings, cap * sizeof *p);
        if (!p) return -ENOMEM;
        o->strings = p;
        o->capstrings = cap;
    }
    char *s = strndup(v, len);
    if (!s) return -ENOMEM;
    o->strings[o->nstrings++] = s;
    *out = s;
    return 0;
}

/* Set op from the text v[0..len); `where` prefixes error messages. */
static int set_value(sq_options *o, opt *op, const char *v, size_t len, const char *where,
                     char *err, size_t errlen)
{
    char buf[256];
    const sq_option *d = &op->o;
    if (d->type != SQ_OPT_STRING) {
        if (len >= sizeof buf) {
            seterr(err, errlen, "%s--%s: value too long", where, d->name);
            return -EINVAL;
        }
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    switch (d->type) {
    case SQ_OPT_INT: {
        char *end;
        errno = 0;
        long x = strtol(buf, &end, 10);
        if (!len || *end || errno || x < INT_MIN || x > INT_MAX) {
            seterr(err, errlen, "%s--%s: not an integer: '%s'", where, d->name, buf);
            return -EINVAL;
        }
        *(int *)d->value = (int)x;
        break;
    }
    case SQ_OPT_DOUBLE: {
        char *end;
        double x = strtod(buf, &end); /* (ERANGE for a tiny number too: it is still one) */
        if (!len || *end || !isfinite(x)) {
            seterr(err, errlen, "%s--%s: not a number: '%s'", where, d->name, buf);
            return -EINVAL;
        }
        *(double *)d->value = x;
        break;
    }
    case SQ_OPT_BOOL: {
        static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
        int r = -1;
        for (size_t i = 0; i < 4 && r < 0; i++) {
            if (!strcasecmp(buf, yes[i])) r = 1;
            if (!strcasecmp(buf, no[i])) r = 0;
        }
        if (r < 0) {
            seterr(err, errlen, "%s--%s: not a boolean (yes/no, true/false, on/off, 1/0): '%s'",
                   where, d->name, buf);
            return -EINVAL;
        }
        *(bool *)d->value = r;
        break;
    }
    case SQ_OPT_STRING: {
        const char *s;
        if (keep_string(o, v, len, &s) < 0) return -ENOMEM;
        *(const char **)d->value = s;
        break;
    }
    case SQ_OPT_ENUM: {
        int i = 0;
        for (; d->choices[i]; i++)
            if (!strcasecmp(buf, d->choices[i])) break;
        if (!d->choices[i]) {
            char *list = NULL;
            size_t n = 0;
            FILE *f = open_memstream(&list, &n);
            if (!f) return -ENOMEM;
            put_choices(f, d->choices, ", ");
            if (fclose(f) != 0) {
                free(list);
                return -ENOMEM;
            }
            seterr(err, errlen, "%s--%s: '%s' is not one of %s", where, d->name, buf, list);
            free(list);
            return -EINVAL;
        }
        *(int *)d->value = i;
        break;
    }
    }
    op->set = true;
    if (op->apply) op->pending = true;
    return 0;
}

/* The end of a parse: the built-in options it set act only if it all succeeded, so that a
 * bad value later on the line has no side effect (Tornado runs its parse callbacks last). */
static int settle(sq_options *o, int rc)
{
    for (size_t i = 0; i < o->n; i++) {
        opt *op = &o->opts[i];
        if (op->pending && rc == 0) op->apply(op);
        op->pending = false;
    }
    return rc;
}

static int add_arg(sq_options *o, const char *a, size_t *cap)
{
    if (o->nargs == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        const char **p = realloc(o->args, c * sizeof *p);
        if (!p) return -ENOMEM;
        o->args = p;
        *cap = c;
    }
    o->args[o->nargs++] = a;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int parse_file(sq_options *o, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        seterr(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    unsigned lineno = 0;
    char where[PATH_MAX + 32];
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        snprintf(where, sizeof where, "%s:%u: ", path, lineno);
        char *p = line, *end = line + len;
        while (p < end && is_space(*p)) p++;
        if (p == end || *p == '#') continue;
        char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            seterr(err, errlen, "%sexpected 'name = value'", where);
            rc = -EINVAL;
            break;
        }
        char *ne = eq;
        while (ne > p && is_space(ne[-1])) ne--;
        opt *op = find(o, p, (size_t)(ne - p));
        if (!op) {
            seterr(err, errlen, "%sunknown option '%.*s'", where, (int)(ne - p), p);
            rc = -EINVAL;
            break;
        }
        char *v = eq + 1;
        while (v < end && is_space(*v)) v++;
        char *ve;
        if (v < end && (*v == '"' || *v == '\'')) {
            char q = *v++;
            ve = memchr(v, q, (size_t)(end - v));
            if (!ve) {
                seterr(err, errlen, "%s--%s: unterminated quote", where, op->o.name);
                rc = -EINVAL;
                break;
            }
            char *rest = ve + 1;
            while (rest < end && is_space(*rest)) rest++;
            if (rest < end && *rest != '#') {
                seterr(err, errlen, "%s--%s: text after the quoted value", where, op->o.name);
                rc = -EINVAL;
                break;
            }
        } else {
            ve = v;
            while (ve < end && !(*ve == '#' && (ve == v || is_space(ve[-1])))) ve++;
            while (ve > v && is_space(ve[-1])) ve--;
        }
        rc = set_value(o, op, v, (size_t)(ve - v), where, err, errlen);
    }
    if (rc == 0 && ferror(f)) { /* getline's -1 is a read error too (a directory: EISDIR) */
        rc = errno ? -errno : -EIO;
        seterr(err, errlen, "%s: %s", path, strerror(-rc));
    }
    free(line);
    fclose(f);
    return rc;
}

int sq_options_parse_file(sq_options *o, const char *path, char *err, size_t errlen)
{
    if (!o || !path) return -EINVAL;
    return settle(o, parse_file(o, path, err, errlen));
}

/* `--name` (no '=') of an option whose value is the next argument, whatever it looks like */
static bool value_follows(sq_options *o, const char *a)
{
    if (a[0] != '-' || a[1] != '-' || !a[2] || strchr(a, '=')) return false;
    size_t n = strlen(a + 2);
    if (name_eq("config", a + 2, n)) return true;
    opt *op = find(o, a + 2, n);
    return op && op->o.type != SQ_OPT_BOOL;
}

static int parse_line(sq_options *o, int argc, char **argv, char *err, size_t errlen)
{
    free(o->args);
    o->args = NULL;
    o->nargs = 0;
    size_t cap = 0;
    /* --help anywhere wins; --config is read first, so that the line overrides it */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (value_follows(o, a)) i++; /* `--name -h`: -h is name's value */
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        const char *path = NULL;
        if (!strncmp(a, "--config=", 9))
            path = a + 9;
        else if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                seterr(err, errlen, "--config: a file name is needed");
                return -EINVAL;
            }
            path = argv[++i];
        } else if (value_follows(o, a)) {
            i++;
        }
        if (path) {
            int rc = parse_file(o, path, err, errlen);
            if (rc < 0) return rc;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                if (add_arg(o, argv[i], &cap) < 0) return -ENOMEM;
            break;
        }
        if (a[0] != '-' || a[1] != '-' || !a[2]) {
            if (add_arg(o, a, &cap) < 0) return -ENOMEM;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (name_eq("config", name, nlen)) {
            if (!eq) i++; /* read above */
            continue;
        }
        opt *op = find(o, name, nlen);
        if (!op && !eq && nlen > 3 && name_eq("no-", name, 3)) { /* or no_ */
            opt *neg = find(o, name + 3, nlen - 3);
            if (neg && neg->o.type == SQ_OPT_BOOL) {
                int rc = set_value(o, neg, "false", 5, "", err, errlen);
                if (rc < 0) return rc;
                continue;
            }
        }
        if (!op) {
            seterr(err, errlen, "unknown option '--%.*s'", (int)nlen, name);
            return -EINVAL;
        }
        const char *v;
        size_t vlen;
        if (eq) {
            v = eq + 1;
            vlen = strlen(v);
        } else if (op->o.type == SQ_OPT_BOOL) {
            v = "true";
            vlen = 4;
        } else if (i + 1 < argc) {
            v = argv[++i];
            vlen = strlen(v);
        } else {
            seterr(err, errlen, "--%s: a value is needed (%s)", op->o.name, type_name(&op->o));
            return -EINVAL;
        }
        int rc = set_value(o, op, v, vlen, "", err, errlen);
        if (rc < 0) return rc;
    }
    return 0;
}

int sq_options_parse(sq_options *o, int argc, char **argv, char *err, size_t errlen)
{
    if (!o || argc < 0 || (argc && !argv)) return -EINVAL;
    return settle(o, parse_line(o, argc, argv, err, errlen));
}

void sq_options_help(const sq_options *o, FILE *f)
{
    if (!o || !f) return;
    fprintf(f, "Usage: %s [OPTIONS]%s\n", o->program ? o->program : "program",
            " [ARGS]");
    if (o->description) fprintf(f, "\n%s\n", o->description);
    /* groups in the order they first appear */
    for (size_t g = 0; g < o->n; g++) {
        const char *group = o->opts[g].o.group ? o->opts[g].o.group : "Options";
        bool seen = false;
        for (size_t k = 0; k < g && !seen; k++)
            seen = !strcmp(o->opts[k].o.group ? o->opts[k].o.group : "Options", group);
        if (seen) continue;
        fprintf(f, "\n%s:\n", group);
        for (size_t i = g; i < o->n; i++) {
            const sq_option *d = &o->opts[i].o;
            if (strcmp(d->group ? d->group : "Options", group)) continue;
            /* the head straight to f, whole however long, then the help in its column */
            int w;
            if (d->type == SQ_OPT_BOOL)
                w = fprintf(f, "  --%s, --no-%s", d->name, d->name);
            else if (d->type == SQ_OPT_ENUM && !d->metavar)
                w = fprintf(f, "  --%s=", d->name) + put_choices(f, d->choices, "|");
            else
                w = fprintf(f, "  --%s=%s", d->name, d->metavar ? d->metavar : type_name(d));
            if (w > 2 + 32)
                fprintf(f, "\n  %-32s %s", "", d->help ? d->help : "");
            else
                fprintf(f, "%*s %s", 2 + 32 - w, "", d->help ? d->help : "");
            if (o->opts[i].def[0]) /* an empty string default says nothing */
                fprintf(f, " (default: %s)", o->opts[i].def);
            fputc('\n', f);
        }
    }
    fprintf(f, "\n  %-32s %s\n  %-32s %s\n", "--config=FILE",
            "read options from FILE (name = value lines) first", "--help, -h",
            "show this help and exit");
}

void sq_options_parse_or_exit(sq_options *o, int argc, char **argv)
{
    char err[512] = "";
    int rc = sq_options_parse(o, argc, argv, err, sizeof err);
    if (rc == 1) {
        sq_options_help(o, stdout);
        exit(0);
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n(--help lists the options)\n",
                o && o->program ? o->program : "error", err[0] ? err : sq_strerror(rc));
        exit(2);
    }
}

size_t sq_options_nargs(const sq_options *o)
{
    return o ? o->nargs : 0;
}

const char *sq_options_arg(const sq_options *o, size_t i)
{
    return o && i < o->nargs ? o->args[i] : NULL;
}

bool sq_options_is_set(const sq_options *o, const char *name)
{
    const opt *op = o && name ? find(o, name, strlen(name)) : NULL;
    return op && op->set;
}

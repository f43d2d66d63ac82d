/* squall/options.h: typed options from the command line and config files. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

typedef struct vals {
    int port;
    double ratio;
    bool debug, color;
    const char *name;
    int mode;
} vals;

static const char *const modes[] = {"fast", "safe", "slow", NULL};

static sq_options *make(vals *v)
{
    *v = (vals){.port = 8888, .ratio = 0.5, .color = true, .name = "anon", .mode = 1};
    sq_options *o = sq_options_new("prog", "A test program.");
    assert_non_null(o);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "port", .type = SQ_OPT_INT,
                                                    .value = &v->port, .help = "the port"}),
                     0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "ratio", .type = SQ_OPT_DOUBLE,
                                                    .value = &v->ratio, .help = "a ratio",
                                                    .group = "Tuning"}),
                     0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "debug", .type = SQ_OPT_BOOL,
                                                    .value = &v->debug, .help = "debug mode"}),
                     0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "color", .type = SQ_OPT_BOOL,
                                                    .value = &v->color, .help = "colours"}),
                     0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "user_name", .type = SQ_OPT_STRING,
                                                    .value = &v->name, .help = "who"}),
                     0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "mode", .type = SQ_OPT_ENUM,
                                                    .value = &v->mode, .choices = modes,
                                                    .help = "how", .group = "Tuning"}),
                     0);
    return o;
}

static int parse(sq_options *o, char *err, size_t errlen, ...)
{
    char *argv[32] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    return sq_options_parse(o, argc, argv, err, errlen);
}

static void test_command_line(void **state)
{
    vals v;
    sq_options *o = make(&v);
    char err[256] = "";
    assert_int_equal(parse(o, err, sizeof err, "--port=9000", "--ratio", "2.5", "--debug",
                           "--no-color", "--user-name=ann lee", "--mode", "SLOW", "file1",
                           "--", "--port=1", NULL),
                     0);
    assert_int_equal(v.port, 9000);
    assert_true(v.ratio == 2.5);
    assert_true(v.debug);
    assert_false(v.color);
    assert_string_equal(v.name, "ann lee");
    assert_int_equal(v.mode, 2);
    assert_int_equal(sq_options_nargs(o), 2);
    assert_string_equal(sq_options_arg(o, 0), "file1");
    assert_string_equal(sq_options_arg(o, 1), "--port=1"); /* after -- : positional */
    assert_null(sq_options_arg(o, 2));
    assert_true(sq_options_is_set(o, "port"));
    assert_true(sq_options_is_set(o, "user-name")); /* - and _ alike */
    /* booleans with values */
    assert_int_equal(parse(o, err, sizeof err, "--debug=no", "--color=ON", NULL), 0);
    assert_false(v.debug);
    assert_true(v.color);
    /* --no-flag with '_' too, as in every other name */
    assert_int_equal(parse(o, err, sizeof err, "--no_color", NULL), 0);
    assert_false(v.color);
    /* the value after `--name` is the value whatever it looks like: not --help, not the end
     * of the options (and the --config after it is read) */
    assert_int_equal(parse(o, err, sizeof err, "--user-name", "-h", NULL), 0);
    assert_string_equal(v.name, "-h");
    assert_int_equal(parse(o, err, sizeof err, "--user-name", "--", "--config=/nonexistent", NULL),
                     -ENOENT);
    assert_int_equal(parse(o, err, sizeof err, "--debug", "-h", NULL), 1); /* a flag: help */
    /* a number too small for a normal double is still a number (Python's float() too) */
    assert_int_equal(parse(o, err, sizeof err, "--ratio=1e-320", NULL), 0);
    assert_true(v.ratio > 0 && v.ratio < 1e-300);
    assert_int_equal(parse(o, err, sizeof err, "--ratio=1e999", NULL), -EINVAL);
    sq_options_free(o);
}

static void test_errors(void **state)
{
    vals v;
    sq_options *o = make(&v);
    char err[256];
    struct {
        const char *arg, *arg2, *msg;
    } cases[] = {
        {"--port=abc", NULL, "--port: not an integer: 'abc'"},
        {"--port=99999999999", NULL, "--port: not an integer: '99999999999'"},
        {"--port=", NULL, "--port: not an integer: ''"},
        {"--ratio=nan", NULL, "--ratio: not a number: 'nan'"},
        {"--ratio=1x", NULL, "--ratio: not a number: '1x'"},
        {"--debug=maybe", NULL, "--debug: not a boolean"},
        {"--mode=turbo", NULL, "--mode: 'turbo' is not one of fast, safe, slow"},
        {"--nope", NULL, "unknown option '--nope'"},
        {"--no-port", NULL, "unknown option '--no-port'"},
        {"--port", NULL, "--port: a value is needed"},
        {"--config", NULL, "--config: a file name is needed"},
        {"--config=/nonexistent/squall.conf", NULL, "/nonexistent/squall.conf: No such file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = parse(o, err, sizeof err, cases[i].arg, cases[i].arg2, NULL);
        assert_true(rc < 0);
        if (!strstr(err, cases[i].msg)) fail_msg("%s: got '%s'", cases[i].arg, err);
    }
    assert_int_equal(v.port, 8888); /* nothing bad was stored */
    assert_int_equal(parse(o, err, sizeof err, "--port=1", "--help", NULL), 1);
    assert_int_equal(parse(o, err, sizeof err, "-h", NULL), 1);
    /* declaration errors */
    int x = 0;
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "port", .type = SQ_OPT_INT, .value = &x}),
                     -EEXIST);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "help", .type = SQ_OPT_INT, .value = &x}),
                     -EEXIST);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "a=b", .type = SQ_OPT_INT, .value = &x}),
                     -EINVAL);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "e", .type = SQ_OPT_ENUM, .value = &x}),
                     -EINVAL);
    x = 7;
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "e", .type = SQ_OPT_ENUM, .value = &x,
                                                    .choices = modes}),
                     -EINVAL);
    sq_options_free(o);
}

static char *write_file(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/squall-options-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config_file(void **state)
{
    vals v;
    sq_options *o = make(&v);
    char err[256] = "", arg[128];
    const char *path = write_file("# a comment\n"
                                  "\n"
                                  "port = 7000\n"
                                  "  ratio=0.25   # trailing comment\n"
                                  "user-name = \"two words # not a comment\"\n"
                                  "mode = 'fast'\n"
                                  "debug = yes\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    /* the file is read first wherever --config stands: the line overrides it */
    assert_int_equal(parse(o, err, sizeof err, "--port=7100", arg, NULL), 0);
    unlink(path);
    assert_int_equal(v.port, 7100);
    assert_true(v.ratio == 0.25);
    assert_string_equal(v.name, "two words # not a comment");
    assert_int_equal(v.mode, 0);
    assert_true(v.debug);

    path = write_file("port = 1\nbogus = 2\n");
    assert_int_equal(sq_options_parse_file(o, path, err, sizeof err), -EINVAL);
    char want[128];
    snprintf(want, sizeof want, "%s:2: unknown option 'bogus'", path);
    assert_string_equal(err, want);
    unlink(path);
    path = write_file("port 5\n");
    assert_int_equal(sq_options_parse_file(o, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ":1: expected 'name = value'"));
    unlink(path);
    path = write_file("user_name = \"open\n");
    assert_int_equal(sq_options_parse_file(o, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "unterminated quote"));
    unlink(path);
    path = write_file("port = 12x\n");
    assert_int_equal(sq_options_parse_file(o, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ":1: --port: not an integer: '12x'"));
    unlink(path);
    /* a file that cannot be read (a directory) is an error, not an empty file */
    err[0] = '\0';
    assert_int_equal(sq_options_parse_file(o, "/tmp", err, sizeof err), -EISDIR);
    assert_string_equal(err, "/tmp: Is a directory");
    assert_int_equal(parse(o, err, sizeof err, "--config=/tmp", NULL), -EISDIR);
    sq_options_free(o);
}

static void test_help_and_logging(void **state)
{
    vals v;
    sq_options *o = make(&v);
    assert_int_equal(sq_options_add_logging(o), 0);
    double big = 1234567.5, tenth = 0.1; /* defaults shown as the numbers they are */
    assert_int_equal(
        sq_options_add(
            o,
            &(sq_option){.name = "big", .type = SQ_OPT_DOUBLE, .value = &big, .group = "Tuning"}),
        0);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "tenth",
                                                    .type = SQ_OPT_DOUBLE,
                                                    .value = &tenth,
                                                    .group = "Tuning"}),
                     0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sq_options_help(o, f);
    fclose(f);
    const char *want[] = {"Usage: prog [OPTIONS]",
                          "A test program.",
                          "Options:",
                          "Tuning:",
                          "Logging:",
                          "--port=integer",
                          "the port (default: 8888)",
                          "--debug, --no-debug",
                          "--mode=fast|safe|slow",
                          "(default: safe)",
                          "--user_name=string",
                          "(default: anon)",
                          "--logging=debug|info|warning|error|none",
                          "--log-format=text|combined|json",
                          "--config=FILE",
                          "--help",
                          "(default: 1234567.5)",
                          "(default: 0.1)",
                          "a ratio (default: 0.5)"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i])) fail_msg("help lacks '%s':\n%s", want[i], text);
    /* groups in order of first appearance: Options, Tuning, Logging */
    assert_true(strstr(text, "Options:") < strstr(text, "Tuning:"));
    assert_true(strstr(text, "Tuning:") < strstr(text, "Logging:"));
    free(text);

    int level = sq_log_get_level(), fmt = sq_log_get_access_format(), col = sq_log_get_color();
    char err[128];
    assert_int_equal(parse(o, err, sizeof err, "--logging=warning", "--log-format=json",
                           "--log-color=off", NULL),
                     0);
    assert_int_equal(sq_log_get_level(), SQ_LOG_WARNING);
    assert_int_equal(sq_log_get_access_format(), SQ_ACCESS_LOG_JSON);
    assert_int_equal(sq_log_get_color(), SQ_LOG_COLOR_OFF);
    assert_int_equal(parse(o, err, sizeof err, "--logging=none", NULL), 0);
    assert_int_equal(sq_log_get_level(), SQ_LOG_OFF);
    sq_log_set_level(level);
    sq_log_set_access_format(fmt);
    sq_log_set_color(col);
    sq_options_free(o);
}

/* A failed parse has no side effect on logging: the logging options act only once the whole
 * line (or file) parsed, as Tornado runs its parse callbacks at the end. */
static void test_logging_applied_after_parse(void **state)
{
    vals v;
    sq_options *o = make(&v);
    assert_int_equal(sq_options_add_logging(o), 0);
    int level = sq_log_get_level(), fmt = sq_log_get_access_format();
    sq_log_set_level(SQ_LOG_ERROR);
    char err[128];
    assert_int_equal(
        parse(o, err, sizeof err, "--logging=debug", "--log-format=json", "--port=abc", NULL),
        -EINVAL);
    assert_string_equal(err, "--port: not an integer: 'abc'");
    assert_int_equal(sq_log_get_level(), SQ_LOG_ERROR);
    assert_int_equal(sq_log_get_access_format(), fmt);
    /* the same for a config file that fails on a later line */
    char path[] = "/tmp/sq_opts_logXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "logging = debug\nport = abc\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(sq_options_parse_file(o, path, err, sizeof err), -EINVAL);
    assert_int_equal(sq_log_get_level(), SQ_LOG_ERROR);
    char cfg[64];
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    assert_int_equal(parse(o, err, sizeof err, cfg, NULL), -EINVAL);
    assert_int_equal(sq_log_get_level(), SQ_LOG_ERROR);
    unlink(path);
    /* a good line applies them, the config file's too */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    text = "logging = warning\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(parse(o, err, sizeof err, cfg, "--port=1", NULL), 0);
    assert_int_equal(sq_log_get_level(), SQ_LOG_WARNING);
    assert_int_equal(parse(o, err, sizeof err, cfg, "--logging=debug", NULL), 0);
    assert_int_equal(sq_log_get_level(), SQ_LOG_DEBUG);
    unlink(path);
    sq_log_set_level(level);
    sq_log_set_access_format(fmt);
    sq_options_free(o);
}

/* Every choice of an enum is listed, however long the list: in --help and in the error. */
static void test_long_enum_choices(void **state)
{
    static const char *const many[] = {"alpha-choice",   "bravo-choice",    "charlie-choice",
                                       "delta-choice",   "echo-choice",     "foxtrot-choice",
                                       "golf-choice",    "hotel-choice",    "india-choice",
                                       "juliett-choice", "kilo-choice",     "lima-choice",
                                       "mike-choice",    "november-choice", "oscar-choice",
                                       "papa-choice",    "quebec-choice",   "romeo-choice",
                                       "sierra-choice",  "tango-choice",    NULL};
    int which = 0;
    sq_options *o = sq_options_new("prog", NULL);
    assert_int_equal(sq_options_add(o, &(sq_option){.name = "which",
                                                    .type = SQ_OPT_ENUM,
                                                    .value = &which,
                                                    .choices = many,
                                                    .help = "pick one"}),
                     0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sq_options_help(o, f);
    fclose(f);
    char want[512] = "--which=";
    for (int k = 0; many[k]; k++) {
        if (k) strcat(want, "|");
        strcat(want, many[k]);
    }
    if (!strstr(text, want)) fail_msg("help lacks '%s':\n%s", want, text);
    assert_non_null(strstr(text, "pick one (default: alpha-choice)"));
    free(text);
    char err[1024];
    assert_int_equal(parse(o, err, sizeof err, "--which=zulu", NULL), -EINVAL);
    assert_non_null(strstr(err, "'zulu' is not one of alpha-choice, bravo-choice"));
    assert_non_null(strstr(err, "sierra-choice, tango-choice"));
    sq_options_free(o);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_line),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_help_and_logging),
        cmocka_unit_test(test_logging_applied_after_parse),
        cmocka_unit_test(test_long_enum_choices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

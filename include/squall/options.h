/** @file squall/options.h
 * Typed command-line and config-file options (Tornado's tornado.options).
 *
 *     static int port = 8888;
 *     static bool debug;
 *     sq_options *o = sq_options_new("myapp", "A squall application.");
 *     sq_options_add(o, &(sq_option){.name = "port", .type = SQ_OPT_INT, .value = &port,
 *                                    .help = "port to listen on"});
 *     sq_options_add(o, &(sq_option){.name = "debug", .type = SQ_OPT_BOOL, .value = &debug,
 *                                    .help = "debug mode"});
 *     sq_options_add_logging(o);
 *     sq_options_parse_or_exit(o, argc, argv);   // --help prints them all and exits
 *
 * Each option writes straight into the variable it names; the value the variable holds
 * when the option is added is its default (shown by --help).
 *
 * Command line: `--name=value`, `--name value`, `--flag` and `--no-flag` for booleans (also
 * `--flag=yes|no|true|false|on|off|1|0`), `-` and `_` alike in names, `--` ends the options;
 * every other argument is positional (sq_options_arg()).  `--config=PATH` (or `--config
 * PATH`) reads a config file first, wherever it stands on the line, so that the command line
 * overrides the file.  `--help` / `-h` prints the help.
 *
 * Config file: one `name = value` per line, names as on the command line without the dashes;
 * blank lines and lines starting with `#` are ignored; a value may be quoted with "…" or
 * '…' (then it keeps its spaces and may contain #), else it ends at a ` #` comment.
 *
 * Strings stay owned by the sq_options (or by argv): keep the object alive while you use
 * them.  Not thread-safe; parse once at start-up.
 */
#ifndef SQUALL_OPTIONS_H
#define SQUALL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The type of an option, and so of the variable its `value` points to. */
typedef enum sq_option_type {
    SQ_OPT_INT,    /**< int *: a decimal integer (strtol, the whole string, within int) */
    SQ_OPT_DOUBLE, /**< double *: a finite number */
    SQ_OPT_BOOL,   /**< bool *: --name / --no-name, or yes|no|true|false|on|off|1|0 */
    SQ_OPT_STRING, /**< const char **: any string (owned by the sq_options or by argv) */
    SQ_OPT_ENUM,   /**< int *: the index of one of `choices` */
} sq_option_type;

/** One option, as given to sq_options_add() (copied; the strings must outlive the set). */
typedef struct sq_option {
    const char *name;            /**< without dashes: "port", "https-port" */
    sq_option_type type;         /**< the type of *value */
    void *value;                 /**< where the parsed value goes; its content is the default */
    const char *help;            /**< one line for --help */
    const char *group;           /**< heading in --help; NULL: "Options" */
    const char *metavar;         /**< the value's name in --help; NULL: from the type */
    const char *const *choices;  /**< SQ_OPT_ENUM: the allowed words, NULL-terminated */
} sq_option;

/** A set of options (opaque). */
typedef struct sq_options sq_options;

/** A new, empty set; `program` and `description` head the --help text (either may be NULL).
 *  @return the set (free it with sq_options_free()), or NULL on -ENOMEM. */
sq_options *sq_options_new(const char *program, const char *description);
/** Free the set and the strings it holds (string options pointing into it dangle after). */
void sq_options_free(sq_options *o);
/** Declare an option.  The current content of *value becomes its default.
 *  @return 0; -EINVAL (no name, no value, a name with '=' or spaces, an enum without
 *  choices or whose default is not an index of them); -EEXIST (the name is taken, "help"
 *  and "config" included); -ENOMEM. */
int sq_options_add(sq_options *o, const sq_option *opt);
/** Declare squall's logging options, applied when the parse that sets them succeeds (a
 *  failed sq_options_parse() or sq_options_parse_file() changes no logging setting):
 *  `--logging=debug|info|warning|error|none` (sq_log_set_level; default info),
 *  `--log-color=auto|on|off` (coloured levels on stderr; auto: when it is a terminal) and
 *  `--log-format=text|combined|json` (the access-log line, sq_log_set_access_format).
 *  @return 0, or an error of sq_options_add(). */
int sq_options_add_logging(sq_options *o);

/** Parse a command line (argv[0] is the program and skipped).  On an error nothing more is
 *  parsed and `err` (if non-NULL, errlen bytes) gets a message naming the option, e.g.
 *  "--port: not an integer: 'abc'".
 *  @return 0; 1 when --help was given (nothing else is done: print sq_options_help());
 *  -EINVAL (an unknown option, a missing or bad value), -ENOENT / -EACCES (the --config file),
 *  -ENOMEM. */
int sq_options_parse(sq_options *o, int argc, char **argv, char *err, size_t errlen);
/** Read a config file (see the file comment).  Unknown names are errors, as on the command
 *  line; messages say "PATH:LINE: …".
 *  @return 0, -EINVAL, -ENOENT, -EACCES (or another open or read error: -EISDIR), -ENOMEM. */
int sq_options_parse_file(sq_options *o, const char *path, char *err, size_t errlen);
/** sq_options_parse() for main(): prints --help to stdout and exits 0, or prints the error
 *  and a hint to stderr and exits 2; returns only when the line was good. */
void sq_options_parse_or_exit(sq_options *o, int argc, char **argv);
/** Write the help: usage, description, then every option by group with its type (metavar),
 *  help and default. */
void sq_options_help(const sq_options *o, FILE *f);

/** Number of positional arguments seen by the last parse. */
size_t sq_options_nargs(const sq_options *o);
/** Positional argument i (NULL when i >= sq_options_nargs()). */
const char *sq_options_arg(const sq_options *o, size_t i);
/** True when option `name` was given (on the command line or in a file), not defaulted. */
bool sq_options_is_set(const sq_options *o, const char *name);

#ifdef __cplusplus
}
#endif
#endif

/** @file squall/process.h
 * Child processes on the loop (Tornado's tornado.process.Subprocess).
 *
 *     const char *argv[] = {"sh", "-c", "echo hi; exit 3", NULL};
 *     int err;
 *     sq_process *p = sq_process_spawn(NULL, argv, &(sq_process_options){
 *                                          .stdout_mode = SQ_PROC_PIPE}, &err);
 *     const char *out;
 *     ssize_t n = sq_stream_read_until_close(sq_process_stdout(p), 0, &out);  // "hi\n"
 *     int status = sq_process_wait(p, SQ_FOREVER);                             // 3
 *     sq_process_free(p);
 *
 * The exit is watched through a pidfd (Linux 5.3+) with an fd watcher, so waiting holds no
 * thread and needs no signal handler; where pidfds are missing the loop's SIGCHLD handler
 * (sq_signal_add) reaps its children instead — then the process must not install its own
 * SIGCHLD handler.  Pipes are the loop's sq_streams, read and written like sockets.
 * Every call belongs to the loop thread.
 */
#ifndef SQUALL_PROCESS_H
#define SQUALL_PROCESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "squall/future.h"
#include "squall/loop.h"
#include "squall/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What a child's stdin, stdout or stderr is connected to. */
enum {
    SQ_PROC_INHERIT = 0, /**< the parent's own (the default) */
    SQ_PROC_PIPE,        /**< a pipe, the parent's end an sq_stream (sq_process_stdin() …) */
    SQ_PROC_DEVNULL,     /**< /dev/null */
    SQ_PROC_STDOUT,      /**< stderr only: wherever stdout goes (2>&1) */
};

/** How to start a child.  A zeroed struct (or NULL): inherit the environment, the working
 *  directory and the three standard streams; no timeout. */
typedef struct sq_process_options {
    const char *const *env; /**< "NAME=value" strings, NULL-terminated; NULL: inherit */
    const char *cwd;        /**< working directory; NULL: the parent's */
    int stdin_mode;         /**< SQ_PROC_INHERIT, _PIPE or _DEVNULL */
    int stdout_mode;        /**< SQ_PROC_INHERIT, _PIPE or _DEVNULL */
    int stderr_mode;        /**< SQ_PROC_INHERIT, _PIPE, _DEVNULL or _STDOUT */
    /** > 0: seconds the child may run; then it gets SIGTERM, and SIGKILL kill_grace seconds
     *  later if it is still there. */
    double timeout;
    double kill_grace; /**< s between SIGTERM and SIGKILL; 0: 2 s */
} sq_process_options;

/** A child process (opaque). */
typedef struct sq_process sq_process;

/** Start argv[0] (searched in PATH when it has no '/') with the arguments argv (NULL-
 *  terminated).  Every descriptor of the parent other than the three chosen is closed in the
 *  child, close-on-exec or not (as Python's close_fds; with glibc 2.34 and later, else only
 *  the close-on-exec ones, which all of squall's are).  A program that cannot be run is reported
 *  here, not as an exit status.
 *  @return the process (free it with sq_process_free()), or NULL with *err (if non-NULL) set
 *  to the exec error (-ENOENT, -EACCES, -ENOEXEC …), the chdir error, -EINVAL (argv empty, a
 *  bad mode), -EMFILE or -ENOMEM. */
sq_process *sq_process_spawn(sq_loop *loop, const char *const *argv, const sq_process_options *opts,
                             int *err);
/** The child's process id. */
pid_t sq_process_pid(const sq_process *p);
/** The parent's end of the child's stdin pipe (SQ_PROC_PIPE), else NULL.  Owned by the
 *  process: write to it, sq_stream_close() it to send EOF, never free it. */
sq_stream *sq_process_stdin(sq_process *p);
/** The child's stdout pipe (SQ_PROC_PIPE), else NULL; owned by the process. */
sq_stream *sq_process_stdout(sq_process *p);
/** The child's stderr pipe (SQ_PROC_PIPE), else NULL; owned by the process. */
sq_stream *sq_process_stderr(sq_process *p);

/** A future resolved when the child has exited and been reaped: status = its exit code
 *  (0-255), or 128 + the signal that killed it (as shells report it; sq_process_signal()
 *  tells the two apart).  Borrowed: valid as long as the process; retain it to keep it.
 *  Never fails. */
sq_future *sq_process_exit_future(sq_process *p);
/** Coroutine: wait up to `timeout` seconds (negative: no limit) for the child to exit.
 *  @return the status as sq_process_exit_future() gives it, -ETIMEDOUT (the child still
 *  runs), -ECANCELED, or SQ_ENOTCORO outside a coroutine. */
int sq_process_wait(sq_process *p, double timeout);
/** True once the child has exited (and been reaped). */
bool sq_process_exited(const sq_process *p);
/** The signal that killed the child, 0 if it exited by itself or still runs. */
int sq_process_signal(const sq_process *p);
/** Send `sig` to the child (through its pidfd where there is one, so never to a recycled
 *  pid).  @return 0, -ESRCH once it has exited, -EINVAL for a bad signal. */
int sq_process_kill(sq_process *p, int sig);
/** Free the process and close its pipes.  A child still running is not killed (as in
 *  Tornado): it is detached, and the loop still reaps it when it exits, so it never stays a
 *  zombie.  Kill it first to stop it.  NULL is a no-op. */
void sq_process_free(sq_process *p);

#ifdef __cplusplus
}
#endif
#endif

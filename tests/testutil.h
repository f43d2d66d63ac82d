/* Helpers shared by squall's cmocka tests. */
#ifndef SQ_TESTUTIL_H
#define SQ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "squall.h"

/* Wall-clock monotonic seconds, for timing bounds. */
double sq_test_now(void);
/* Spawn fn(arg) on `loop` and run the loop until it returns; returns fn's result.
 * Fails the test if the loop does not finish within `limit` seconds.  A failed assertion
 * inside fn aborts only this test: squall abandons the coroutine cmocka's longjmp left. */
void *sq_test_run_coro(sq_loop *loop, sq_task_fn fn, void *arg, double limit);
/* Path of a file in the build tree ($SQ_BUILD_DIR/rel), in a static buffer. */
const char *sq_test_build_path(const char *rel);
/* Write `text` to dir/name (failing the test if it cannot); with ahead > 0 its mtime is set
 * that many seconds into the future, so that a reloader sees a change within one second. */
void sq_test_write_file(const char *dir, const char *name, const char *text, int ahead);
/* Open file descriptors of this process (entries of /proc/self/fd), -1 if unreadable. */
int sq_test_count_fds(void);
/* Resident set size of this process in bytes (from /proc/self/statm). */
size_t sq_test_rss(void);
/* Run this test binary again as a child, with `arg` as its one argument: its stderr (and its
 * stdout with `with_stdout`) is read into out (NUL-terminated); `no_leak_check` turns
 * LeakSanitizer off in the child.  Returns the child's waitpid status. */
int sq_test_run_self(const char *arg, bool with_stdout, bool no_leak_check, char *out,
                     size_t outlen);

#endif

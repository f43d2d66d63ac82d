/* sq_fork_processes: pre-forked workers with restarts, as Tornado's process.fork_processes. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* Fork a worker.  Returns 0 in the child (its signal mask restored to `old`), the pid in
 * the parent, -errno on failure. */
static pid_t start_worker(const sigset_t *old)
{
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) sigprocmask(SIG_SETMASK, old, NULL);
    return pid;
}

static void signal_all(const pid_t *pids, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], sig);
}

int sq_fork_processes(int n, int max_restarts)
{
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (!pids) return -ENOMEM;
    /* The supervisor keeps SIGINT, SIGTERM and SIGCHLD blocked and takes them with
     * sigwaitinfo: no handler, so no window between checking for a stop and waiting in which
     * one is lost, and a worker starts with the signal mask and dispositions the process had
     * (a SIGTERM arriving while it is forked is acted on by it; SIGINT ignored under nohup
     * stays so). */
    sigset_t supervised, old;
    sigemptyset(&supervised);
    sigaddset(&supervised, SIGINT);
    sigaddset(&supervised, SIGTERM);
    sigaddset(&supervised, SIGCHLD);
    sigprocmask(SIG_BLOCK, &supervised, &old);
    for (int i = 0; i < n; i++) {
        pid_t pid = start_worker(&old);
        if (pid == 0) {
            free(pids);
            return i;
        }
        if (pid < 0) {
            if (i == 0) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                free(pids);
                return (int)pid;
            }
            sq_log(SQ_LOG_ERROR, "fork_processes: fork failed: %s", sq_strerror((int)pid));
            signal_all(pids, i, SIGTERM);
            _exit(1);
        }
        pids[i] = pid;
    }
    int alive = n, restarts = 0, lost = 0, status = 0;
    bool stopping = false;
    for (;;) {
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int id = -1;
            for (int i = 0; i < n; i++)
                if (pids[i] == pid) id = i;
            if (id < 0) continue;
            pids[id] = 0;
            alive--;
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (clean || stopping) continue;
            if (WIFSIGNALED(status))
                sq_log(SQ_LOG_WARNING, "worker %d (pid %d) killed by signal %d", id, (int)pid,
                       WTERMSIG(status));
            else
                sq_log(SQ_LOG_WARNING, "worker %d (pid %d) exited with status %d", id, (int)pid,
                       WEXITSTATUS(status));
            if (++restarts > max_restarts) {
                sq_log(SQ_LOG_ERROR, "fork_processes: too many restarts (%d), giving up",
                       max_restarts);
                signal_all(pids, n, SIGTERM);
                while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
                }
                _exit(1);
            }
            pid_t again = start_worker(&old);
            if (again == 0) {
                free(pids);
                return id;
            }
            if (again < 0) {
                sq_log(SQ_LOG_ERROR, "fork_processes: worker %d not restarted: fork failed: %s", id,
                       sq_strerror((int)again));
                lost++;
                continue;
            }
            pids[id] = again;
            alive++;
        }
        if (alive == 0) break;
        int sig = sigwaitinfo(&supervised, NULL);
        if (sig == SIGINT || sig == SIGTERM) { /* each one forwarded: a second Ctrl-C too */
            stopping = true;
            signal_all(pids, n, sig);
        }
    }
    _exit(lost ? 1 : 0);
}

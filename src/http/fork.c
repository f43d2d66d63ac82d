/* sq_fork_processes: pre-forked workers with restarts, as Tornado's process.fork_processes. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

/* Fork worker `id`.  Returns 0 in the child, the pid in the parent, -errno on failure. */
static pid_t start_worker(void)
{
    /* SIGINT/SIGTERM stay blocked until the child has the default dispositions back: one
     * that arrives meanwhile is then acted on, not swallowed by the inherited on_stop. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t pid = fork();
    int e = errno;
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) return -e;
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
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (int i = 0; i < n; i++) {
        pid_t pid = start_worker();
        if (pid == 0) {
            free(pids);
            return i;
        }
        if (pid < 0) {
            if (i == 0) {
                free(pids);
                return (int)pid;
            }
            sq_log(SQ_LOG_ERROR, "fork_processes: fork failed: %s", sq_strerror((int)pid));
            signal_all(pids, i, SIGTERM);
            _exit(1);
        }
        pids[i] = pid;
    }
    int alive = n, restarts = 0, status = 0;
    bool forwarded = false;
    while (alive > 0) {
        if (stop_signal && !forwarded) {
            signal_all(pids, n, stop_signal);
            forwarded = true;
        }
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int id = -1;
        for (int i = 0; i < n; i++)
            if (pids[i] == pid) id = i;
        if (id < 0) continue;
        pids[id] = 0;
        alive--;
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (clean || stop_signal) continue;
        if (WIFSIGNALED(status))
            sq_log(SQ_LOG_WARNING, "worker %d (pid %d) killed by signal %d", id, (int)pid,
                   WTERMSIG(status));
        else
            sq_log(SQ_LOG_WARNING, "worker %d (pid %d) exited with status %d", id, (int)pid,
                   WEXITSTATUS(status));
        if (++restarts > max_restarts) {
            sq_log(SQ_LOG_ERROR, "fork_processes: too many restarts (%d), giving up", max_restarts);
            signal_all(pids, n, SIGTERM);
            while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
            }
            _exit(1);
        }
        pid_t again = start_worker();
        if (again == 0) {
            free(pids);
            return id;
        }
        if (again > 0) {
            pids[id] = again;
            alive++;
        }
    }
    _exit(0);
}

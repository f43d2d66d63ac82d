/* Signals delivered on the loop thread through a self-pipe: the handler only writes the
 * signal number to a non-blocking pipe, which works whatever threads the process has. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NSIG_MAX 65

/* The table is the process's, and loops on several threads add and remove signals: it
 * changes (with the sigaction that goes with it) and is read under table_lock.  The handler
 * itself takes no lock: it reads only write_fds, lock-free atomics (async-signal-safe). */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    sq_loop *loop;
    sq_signal_cb cb;
    void *arg;
    struct sigaction old;
} handlers[NSIG_MAX];
static atomic_int write_fds[NSIG_MAX];

static void on_signal(int signum)
{
    int saved = errno;
    int fd = signum > 0 && signum < NSIG_MAX
                 ? atomic_load_explicit(&write_fds[signum], memory_order_relaxed)
                 : 0;
    if (fd > 0) {
        unsigned char b = (unsigned char)signum;
        ssize_t r = write(fd, &b, 1);
        (void)r; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

static void sig_read_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    unsigned char buf[64];
    ssize_t n;
    while ((n = read(loop->sig_pipe[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            int s = buf[i];
            if (s >= NSIG_MAX) continue;
            pthread_mutex_lock(&table_lock);
            bool ours = handlers[s].loop == loop;
            sq_signal_cb cb = handlers[s].cb;
            void *arg = handlers[s].arg;
            pthread_mutex_unlock(&table_lock);
            if (ours && cb) cb(loop, s, arg); /* unlocked: it may add or remove signals */
        }
    }
}

static int ensure_pipe(sq_loop *loop)
{
    if (loop->sig_pipe[0] >= 0) return 0;
    if (pipe2(loop->sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
    sq_io_init(&loop->sig_io, loop->sig_pipe[0], sig_read_cb, loop);
    int r = sq_io_start(loop, &loop->sig_io, SQ_READ);
    if (r < 0) {
        close(loop->sig_pipe[0]);
        close(loop->sig_pipe[1]);
        loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
    }
    return r;
}

static int signal_add_locked(sq_loop *loop, int signum, sq_signal_cb cb, void *arg)
{
    if (handlers[signum].loop && handlers[signum].loop != loop) return -EBUSY;
    int r = ensure_pipe(loop);
    if (r < 0) return r;
    bool had = handlers[signum].loop != NULL;
    handlers[signum].loop = loop;
    handlers[signum].cb = cb;
    handlers[signum].arg = arg;
    atomic_store_explicit(&write_fds[signum], loop->sig_pipe[1], memory_order_relaxed);
    if (had) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signum, &sa, &handlers[signum].old) < 0) {
        handlers[signum].loop = NULL;
        atomic_store_explicit(&write_fds[signum], 0, memory_order_relaxed);
        return -errno;
    }
    return 0;
}

int sq_signal_add(sq_loop *loop, int signum, sq_signal_cb cb, void *arg)
{
    if (signum <= 0 || signum >= NSIG_MAX || signum == SIGKILL || signum == SIGSTOP) return -EINVAL;
    pthread_mutex_lock(&table_lock);
    int r = signal_add_locked(loop, signum, cb, arg);
    pthread_mutex_unlock(&table_lock);
    return r;
}

static void signal_remove_locked(int signum)
{
    sigaction(signum, &handlers[signum].old, NULL);
    atomic_store_explicit(&write_fds[signum], 0, memory_order_relaxed);
    handlers[signum].loop = NULL;
    handlers[signum].cb = NULL;
}

int sq_signal_remove(sq_loop *loop, int signum)
{
    if (signum <= 0 || signum >= NSIG_MAX) return -ENOENT;
    pthread_mutex_lock(&table_lock);
    bool ours = handlers[signum].loop == loop;
    if (ours) signal_remove_locked(signum);
    pthread_mutex_unlock(&table_lock);
    return ours ? 0 : -ENOENT;
}

void sq__signal_loop_closed(sq_loop *loop)
{
    pthread_mutex_lock(&table_lock);
    for (int s = 1; s < NSIG_MAX; s++)
        if (handlers[s].loop == loop) signal_remove_locked(s);
    pthread_mutex_unlock(&table_lock);
    if (loop->sig_pipe[0] >= 0) {
        sq_io_stop(loop, &loop->sig_io);
        close(loop->sig_pipe[0]);
        close(loop->sig_pipe[1]);
        loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
    }
}

static void stop_cb(sq_loop *loop, int signum, void *arg)
{
    sq_log(SQ_LOG_INFO, "received %s, stopping", strsignal(signum));
    sq_loop_stop(loop);
}

int sq_loop_stop_on_signals(sq_loop *loop)
{
    int r = sq_signal_add(loop, SIGINT, stop_cb, NULL);
    if (r == 0) r = sq_signal_add(loop, SIGTERM, stop_cb, NULL);
    return r;
}

void sq__ignore_sigpipe_once(void)
{
    static atomic_bool done;
    if (atomic_exchange(&done, true)) return;
    /* Only a default disposition is changed: an application's own handler stays. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
}

long sq_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    }
    return rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX : (long)rl.rlim_cur;
}

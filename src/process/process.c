/* Child processes (squall/process.h): posix_spawnp with the chosen standard streams, the exit
 * watched through a pidfd on the loop (a readable pidfd means the child exited), or — where
 * the kernel has no pidfd_open — through SIGCHLD and waitpid over this loop's children. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "squall/process.h"

extern char **environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct sq_process {
    sq_loop *loop;
    pid_t pid;
    int pidfd; /* -1: the SIGCHLD path */
    sq_io io;
    sq_stream *in, *out, *err;
    sq_future *exit; /* resolved once reaped */
    bool exited;
    bool detached; /* sq_process_free ran: free at exit */
    int signal;    /* what killed it */
    double grace;
    sq_timer timer; /* the timeout: SIGTERM, then SIGKILL */
    bool term_sent;
    struct sq_process *next; /* the SIGCHLD path's list */
};

/* --- the SIGCHLD path (no pidfd): one list of children, reaped by pid ------------------- */

static sq_process *sigchld_list;
static sq_loop *sigchld_loop;

/* Tests set this to exercise the SIGCHLD path on kernels that have pidfds. */
static bool force_sigchld(void)
{
    const char *e = getenv("SQUALL_PROCESS_NO_PIDFD");
    return e && *e == '1';
}

static void reaped(sq_process *p, int wstatus);

static void sigchld_scan(void)
{
    for (sq_process **pp = &sigchld_list; *pp;) {
        sq_process *p = *pp;
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            *pp = p->next;
            reaped(p, r == p->pid ? st : 0);
            continue;
        }
        pp = &p->next;
    }
}

static void on_sigchld(sq_loop *loop, int signum, void *arg)
{
    sigchld_scan();
}

static int sigchld_watch(sq_process *p)
{
    if (!sigchld_loop) {
        int e = sq_signal_add(p->loop, SIGCHLD, on_sigchld, NULL);
        if (e < 0) return e;
        sigchld_loop = p->loop;
    } else if (sigchld_loop != p->loop) {
        return -EBUSY; /* SIGCHLD goes to one loop per process */
    }
    p->next = sigchld_list;
    sigchld_list = p;
    sigchld_scan(); /* it may have exited before the handler saw it */
    return 0;
}

/* The last child on the SIGCHLD path is gone: give the signal back. */
static void sigchld_release(void)
{
    if (!sigchld_list && sigchld_loop) {
        sq_signal_remove(sigchld_loop, SIGCHLD);
        sigchld_loop = NULL;
    }
}

static void sigchld_forget(sq_process *p)
{
    for (sq_process **pp = &sigchld_list; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    sigchld_release();
}

/* --- exit ------------------------------------------------------------------------------------ */

static void loop_freed(void *arg);

static void destroy(sq_process *p)
{
    sq__loop_at_free_cancel(p->loop, loop_freed, p);
    sq_timer_stop(&p->timer);
    if (p->pidfd >= 0) {
        sq_io_stop(p->loop, &p->io);
        close(p->pidfd);
    } else if (!p->exited) {
        sigchld_forget(p);
    }
    sq_stream_free(p->in);
    sq_stream_free(p->out);
    sq_stream_free(p->err);
    if (p->exit && !sq_future_done(p->exit)) sq_future_cancel(p->exit); /* loop freed */
    sq_future_release(p->exit);
    free(p);
}

/* The loop goes away: a detached child's watch goes with it (the child itself is left to
 * run; it is reaped by whoever reaps this process's children from then on). */
static void loop_freed(void *arg)
{
    sq_process *p = arg;
    if (p->detached) destroy(p);
}

static void reaped(sq_process *p, int wstatus)
{
    p->exited = true;
    sq_timer_stop(&p->timer);
    if (p->pidfd >= 0) {
        sq_io_stop(p->loop, &p->io);
        close(p->pidfd);
        p->pidfd = -1;
    }
    int status = 0;
    if (WIFEXITED(wstatus)) {
        status = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        p->signal = WTERMSIG(wstatus);
        status = 128 + p->signal;
    }
    sigchld_release();
    /* Waiters of a freed (detached) process get the status too.  A callback of a process
     * not freed may free it (destroyed at once, it is reaped): p is not read after. */
    bool detached = p->detached;
    sq_future_resolve(p->exit, status, NULL);
    if (detached) destroy(p);
}

static void on_pidfd(sq_loop *loop, sq_io *io, unsigned events)
{
    sq_process *p = io->data;
    int st;
    pid_t r;
    do r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0) return; /* not yet (a spurious wake-up) */
    reaped(p, r == p->pid ? st : 0);
}

static void on_timer(sq_loop *loop, sq_timer *t)
{
    sq_process *p = t->data;
    if (p->exited) return;
    if (!p->term_sent) {
        p->term_sent = true;
        sq_process_kill(p, SIGTERM);
        sq_timer_start(&p->timer, p->grace, 0);
    } else {
        sq_process_kill(p, SIGKILL);
    }
}

/* --- spawning --------------------------------------------------------------------------------- */

/* posix_spawnp (clone with CLONE_VFORK in glibc: no copy of the parent's memory, and exec
 * errors come back as its return value): the three standard streams, the working directory,
 * a clean signal mask and SIGPIPE back to its default (squall ignores it in the parent). */
static int spawn(pid_t *pid, const char *const *argv, const sq_process_options *o, int fds[3])
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) return -e;
    e = posix_spawnattr_init(&at);
    if (e) {
        posix_spawn_file_actions_destroy(&fa);
        return -e;
    }
    for (int i = 0; i < 3 && !e; i++)
        if (fds[i] >= 0) e = posix_spawn_file_actions_adddup2(&fa, fds[i], i);
    if (!e && o->cwd) e = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    if (!e) e = posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* close_fds=True */
#endif
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    if (!e) e = posix_spawnattr_setsigmask(&at, &none);
    if (!e) e = posix_spawnattr_setsigdefault(&at, &def);
    if (!e) e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!e)
        e = posix_spawnp(pid, argv[0], &fa, &at, (char *const *)argv,
                         o->env ? (char *const *)o->env : environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return -e;
}

static bool mode_ok(int m, bool is_stderr)
{
    return m == SQ_PROC_INHERIT || m == SQ_PROC_PIPE || m == SQ_PROC_DEVNULL ||
           (is_stderr && m == SQ_PROC_STDOUT);
}

sq_process *sq_process_spawn(sq_loop *loop, const char *const *argv, const sq_process_options *opts,
                             int *err)
{
    sq_process_options o = opts ? *opts : (sq_process_options){0};
    int e = 0;
    if (!argv || !argv[0] || !*argv[0] || !mode_ok(o.stdin_mode, false) ||
        !mode_ok(o.stdout_mode, false) || !mode_ok(o.stderr_mode, true)) {
        if (err) *err = -EINVAL;
        return NULL;
    }
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_process *p = calloc(1, sizeof *p);
    if (!p) {
        if (err) *err = -ENOMEM;
        return NULL;
    }
    p->loop = loop;
    p->pidfd = -1;
    p->grace = o.kill_grace > 0 ? o.kill_grace : 2.0;
    sq_timer_init(loop, &p->timer, on_timer, p);
    /* the child's ends (cfd) and the parent's (pfd) of each standard stream */
    int cfd[3] = {-1, -1, -1}, pfd[3] = {-1, -1, -1}, devnull = -1;
    int modes[3] = {o.stdin_mode, o.stdout_mode, o.stderr_mode};
    for (int i = 0; i < 3 && !e; i++) {
        if (modes[i] == SQ_PROC_PIPE) {
            int pp[2];
            if (pipe2(pp, O_CLOEXEC) < 0) {
                e = -errno;
                break;
            }
            cfd[i] = i == 0 ? pp[0] : pp[1];
            pfd[i] = i == 0 ? pp[1] : pp[0];
            if (cfd[i] <= 2) { /* the parent runs with 0..2 closed: keep it off them */
                int d = fcntl(cfd[i], F_DUPFD_CLOEXEC, 3);
                if (d < 0) e = -errno;
                close(cfd[i]);
                cfd[i] = d;
                if (e) break;
            }
            fcntl(pfd[i], F_SETFL, fcntl(pfd[i], F_GETFL) | O_NONBLOCK);
        } else if (modes[i] == SQ_PROC_DEVNULL) {
            if (devnull < 0 && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) e = -errno;
            cfd[i] = devnull;
        }
    }
    if (!e && o.stderr_mode == SQ_PROC_STDOUT) cfd[2] = cfd[1] >= 0 ? cfd[1] : 1;
    p->exit = e ? NULL : sq_future_new(loop);
    if (!e && !p->exit) e = -ENOMEM;
    pid_t pid = -1;
    if (!e) e = spawn(&pid, argv, &o, cfd);
    for (int i = 0; i < 3; i++)
        if (cfd[i] > 2 && cfd[i] != devnull && !(i == 2 && cfd[2] == cfd[1])) close(cfd[i]);
    if (devnull >= 0) close(devnull);
    if (!e) {
        p->pid = pid;
        sq_stream **ends[3] = {&p->in, &p->out, &p->err};
        for (int i = 0; i < 3 && !e; i++) {
            if (pfd[i] < 0) continue;
            *ends[i] = sq_stream_new(loop, pfd[i]);
            if (!*ends[i]) e = -ENOMEM;
            else pfd[i] = -1;
        }
        if (e) { /* no pipes for the caller: the child still gets reaped */
            kill(pid, SIGKILL);
        }
        int fd = force_sigchld() ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd >= 0) {
            p->pidfd = fd;
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            sq_io_init(&p->io, fd, on_pidfd, p);
            int we = sq_io_start(loop, &p->io, SQ_READ);
            if (we < 0) {
                close(fd);
                p->pidfd = -1;
            }
        }
        if (p->pidfd < 0) {
            int we = sigchld_watch(p);
            if (we < 0) {
                /* nothing can watch it: reap it blocking rather than leave a zombie */
                kill(pid, SIGKILL);
                int st;
                while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
                }
                if (!e) e = we;
                p->exited = true;
            }
        }
        if (e) {
            p->detached = true;
            if (p->exited) destroy(p);
            p = NULL;
        } else if (o.timeout > 0) {
            sq_timer_start(&p->timer, o.timeout, 0);
        }
    }
    for (int i = 0; i < 3; i++)
        if (pfd[i] >= 0) close(pfd[i]);
    if (e && p) { /* it never ran (spawn failed): nothing to watch */
        sq_future_release(p->exit);
        free(p);
        p = NULL;
    }
    if (p) sq__loop_at_free(loop, loop_freed, p);
    if (err) *err = e;
    return p;
}

pid_t sq_process_pid(const sq_process *p)
{
    return p ? p->pid : -1;
}
sq_stream *sq_process_stdin(sq_process *p)
{
    return p ? p->in : NULL;
}
sq_stream *sq_process_stdout(sq_process *p)
{
    return p ? p->out : NULL;
}
sq_stream *sq_process_stderr(sq_process *p)
{
    return p ? p->err : NULL;
}
sq_future *sq_process_exit_future(sq_process *p)
{
    return p ? p->exit : NULL;
}
bool sq_process_exited(const sq_process *p)
{
    return p && p->exited;
}
int sq_process_signal(const sq_process *p)
{
    return p ? p->signal : 0;
}

int sq_process_wait(sq_process *p, double timeout)
{
    if (!p) return -EINVAL;
    if (!sq_coro_self()) {
        sq_log(SQ_LOG_ERROR, "sq_process_wait: called outside a coroutine");
        return SQ_ENOTCORO;
    }
    if (p->exited && sq_future_done(p->exit)) return (int)sq_future_status(p->exit);
    /* a future of our own chained to the exit: a timeout cancels it, not the exit future */
    sq_future *mine = sq_future_new(p->loop);
    if (!mine || sq_future_chain(p->exit, mine) < 0) {
        sq_future_release(mine);
        return -ENOMEM;
    }
    if (timeout >= 0) mine = sq_with_timeout(mine, timeout);
    if (!mine) return -ENOMEM;
    return (int)sq_await(mine, NULL);
}

int sq_process_kill(sq_process *p, int sig)
{
    if (!p) return -EINVAL;
    if (p->exited) return -ESRCH;
    int r = p->pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0)
                          : kill(p->pid, sig);
    return r < 0 ? -errno : 0;
}

void sq_process_free(sq_process *p)
{
    if (!p) return;
    if (p->exited) {
        destroy(p);
        return;
    }
    /* still running: close the pipes now, keep watching to reap it, then free */
    sq_stream_free(p->in);
    sq_stream_free(p->out);
    sq_stream_free(p->err);
    p->in = p->out = p->err = NULL;
    sq_timer_stop(&p->timer);
    p->detached = true;
}

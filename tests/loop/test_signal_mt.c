/* sq_signal_add / sq_signal_remove from loops on several threads at once: one handler per
 * signal per process (a second loop gets -EBUSY), the table stays consistent, and the
 * disposition is restored when the last owner lets go.  Run under TSan with -L threads. */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define THREADS 4
#define ROUNDS  2000

static pthread_barrier_t start, round_done;
static atomic_int owners; /* threads holding SIGUSR1 this round */
static atomic_int too_many, delivered;

static void on_usr(sq_loop *loop, int signum, void *arg)
{
    atomic_fetch_add(&delivered, 1);
}

static void *contend(void *arg)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_non_null(loop);
    int own = SIGRTMIN + (int)(intptr_t)arg; /* a signal of its own, added and removed */
    for (int i = 0; i < ROUNDS; i++) {
        pthread_barrier_wait(&start);
        int r = sq_signal_add(loop, SIGUSR1, on_usr, NULL);
        if (r == 0 && atomic_fetch_add(&owners, 1) > 0) atomic_fetch_add(&too_many, 1);
        if (r != 0 && r != -EBUSY) atomic_fetch_add(&too_many, 1);
        assert_int_equal(sq_signal_add(loop, own, on_usr, NULL), 0);
        sq_loop_run_once(loop, false); /* reads the table for its pipe */
        assert_int_equal(sq_signal_remove(loop, own), 0);
        pthread_barrier_wait(&round_done);
        if (r == 0) {
            atomic_fetch_sub(&owners, 1);
            assert_int_equal(sq_signal_remove(loop, SIGUSR1), 0);
        }
    }
    sq_loop_free(loop);
    return NULL;
}

static void test_signal_table_threads(void **state)
{
    struct sigaction before, after;
    assert_int_equal(sigaction(SIGUSR1, NULL, &before), 0);
    pthread_barrier_init(&start, NULL, THREADS);
    pthread_barrier_init(&round_done, NULL, THREADS);
    pthread_t th[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, contend, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&round_done);
    assert_int_equal(atomic_load(&too_many), 0); /* never two owners of SIGUSR1 */
    assert_int_equal(sigaction(SIGUSR1, NULL, &after), 0);
    assert_true(after.sa_handler == before.sa_handler); /* restored: the default again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_table_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

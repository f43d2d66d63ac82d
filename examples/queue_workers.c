/* queue_workers — Tornado's queue example: one producer, three consumers, a bounded queue.
 *
 *   queue_workers [N]    (N items, default 20)
 *
 * The producer waits whenever the queue (maxsize 2) is full; each consumer takes an item,
 * works on it for a moment without blocking the others, and marks it done.  main() waits for
 * the queue to be joined, i.e. for every item to have been processed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <squall.h>

#define WORKERS 3

static sq_queue *q;
static int n_items = 20;

static void *producer(void *arg)
{
    for (intptr_t i = 0; i < n_items; i++) {
        if (sq_queue_put(q, (void *)i, SQ_FOREVER) < 0) return NULL;
        printf("produced item %ld\n", (long)i);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (;;) {
        void *item;
        if (sq_queue_get(q, &item, SQ_FOREVER) < 0) return NULL; /* queue freed: stop */
        printf("worker %d consumed item %ld\n", k, (long)(intptr_t)item);
        sq_sleep(0.01);
        sq_queue_task_done(q);
    }
}

static void *run(void *arg)
{
    sq_loop *loop = sq_loop_current();
    sq_future *workers[WORKERS];
    for (intptr_t k = 0; k < WORKERS; k++) workers[k] = sq_spawn(loop, consumer, (void *)k);
    sq_future *prod = sq_spawn(loop, producer, NULL);
    sq_await(prod, NULL);
    int r = sq_queue_join(q, SQ_FOREVER);
    printf("all %d items done\n", n_items);
    fflush(stdout);
    /* The consumers are parked in get(); freeing the queue wakes them with -ECANCELED. */
    sq_queue_free(q);
    q = NULL;
    sq_gather(workers, WORKERS, NULL, NULL);
    return (void *)(intptr_t)r;
}

int main(int argc, char **argv)
{
    if (argc > 1) n_items = atoi(argv[1]);
    if (n_items < 0) n_items = 0;
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) return 1;
    q = sq_queue_new(loop, 2);
    if (!q) return 1;
    sq_future *main_task = sq_spawn(loop, run, NULL);
    sq_loop_run_until(loop, main_task);
    int status = sq_future_done(main_task) && sq_future_value(main_task) == NULL ? 0 : 1;
    sq_future_release(main_task);
    sq_loop_free(loop);
    return status;
}

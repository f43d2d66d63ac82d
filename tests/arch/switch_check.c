/* Portable check of the coroutine switch: run natively, with the ucontext fallback, and
 * (make check-aarch64) under qemu-aarch64 with the aarch64 assembly. */
#include <stdio.h>
#include <string.h>

#include <squall.h>

int main(void);
static int order[64], n;
static void *w(void *arg)
{
    int id = (int)(intptr_t)arg;
    double d = 0.5 * id; /* keep a callee-saved FP value live across switches */
    for (int i = 0; i < 3; i++) {
        order[n++] = id;
        sq_yield();
        d += 1.0;
    }
    sq_sleep(0.01 * id);
    return (void *)(intptr_t)(id * 100 + (int)d);
}
static void *main_coro(void *arg)
{
    sq_future *fs[4];
    void *v[4];
    for (int i = 0; i < 4; i++) fs[i] = sq_spawn(NULL, w, (void *)(intptr_t)i);
    int r = sq_gather(fs, 4, v, NULL);
    for (int i = 0; i < 4; i++)
        if ((intptr_t)v[i] != i * 100 + (int)(0.5 * i + 3.0)) r = -1;
    *(int *)arg = r;
    for (int i = 0; i < 4; i++) printf("result %d = %ld\n", i, (long)(intptr_t)v[i]);
    printf("gather %d, order:", r);
    for (int i = 0; i < n; i++) printf(" %d", order[i]);
    printf("\n");
    return NULL;
}
int main(void)
{
    sq_loop *loop = sq_loop_new(NULL);
    int r = -1;
    sq_future *f = sq_spawn(loop, main_coro, &r);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    sq_loop_free(loop);
    if (r != 0) return 1;
    /* Expected: round-robin order and d = 0.5 * id + 3 truncated, per coroutine. */
    static const int want[12] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    if (n != 12 || memcmp(order, want, sizeof want) != 0) return 1;
    printf("ok\n");
    return 0;
}

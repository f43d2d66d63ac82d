/* template_render: CPU time per render of tests/web/templates/table.html (1,000 rows: id, an
 * escaped name, a price, a list of three tags; about 185 KB of HTML), for
 * bench/template_compare.sh.
 *
 *   template_render TEMPLATE_DIR [RENDERS]
 * prints "renders N cpu_us_per_render X bytes B". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>
#include <squall.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: template_render TEMPLATE_DIR [RENDERS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 500;
    json_t *rows = json_array();
    for (int i = 1; i <= 1000; i++) {
        char name[64], tag[16];
        snprintf(name, sizeof name, "item <%d> & \"co\" 'x'", i);
        snprintf(tag, sizeof tag, "t%d", i % 7);
        json_array_append_new(rows, json_pack("{s:i, s:s, s:f, s:[s,s,s]}", "id", i, "name", name,
                                              "price", i * 3 + 0.5, "tags", "red", "green & blue", tag));
    }
    json_t *ctx = json_pack("{s:s, s:o, s:{s:s, s:i}}", "title", "Prices & <stock>", "rows", rows,
                            "site", "name", "squall", "year", 2026);
    sq_templates *t = sq_templates_new(argv[1], NULL);
    char err[256];
    sq_template *tpl = sq_templates_get(t, "table.html", err, sizeof err);
    if (!tpl) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t bytes = 0;
    for (int i = 0; i < 20; i++) { /* warm-up */
        char *out;
        if (sq_template_render(tpl, ctx, &out, &bytes, err, sizeof err) < 0) return 1;
        free(out);
    }
    /* the best of 5 batches (timeit's way; bench/template_py.py does the same): this
     * machine's neighbours make single runs vary by a third */
    int per = n / 5 > 0 ? n / 5 : 1;
    double us = 0;
    for (int b = 0; b < 5; b++) {
        double t0 = cpu_now();
        for (int i = 0; i < per; i++) {
            char *out;
            if (sq_template_render(tpl, ctx, &out, &bytes, err, sizeof err) < 0) return 1;
            free(out);
        }
        double batch = (cpu_now() - t0) / per * 1e6;
        if (b == 0 || batch < us) us = batch;
    }
    printf("renders %d cpu_us_per_render %.1f bytes %zu\n", n, us, bytes);
    json_decref(ctx);
    sq_templates_free(t);
    return 0;
}

/* The growable byte buffer shared by the HTTP server and the web layer. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int sq__buf_grow(sq__buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    if (extra > SIZE_MAX / 2 - b->len) return -ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) cap *= 2;
    char *p = realloc(b->ptr, cap);
    if (!p) return -ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

void sq__buf_free(sq__buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

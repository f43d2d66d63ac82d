/* Internal: the PCRE2 search behind sq_stream_read_until_regex (src/stream/regex.c). */
#ifndef SQUALL_STREAM_REGEX_H
#define SQUALL_STREAM_REGEX_H

#include <stddef.h>

#include "squall/stream.h"

/* Search subj[0..len) for the first non-empty match starting at *from or later.  Returns 1 and
 * sets *end (the offset just past the match); 0 if there is none yet, moving *from to the
 * earliest offset where a match may still begin once more bytes arrive (so the next search
 * does not rescan what is settled); or a negative error.  *md is the caller's match data,
 * created on first use and freed with sq__regex_md_free(). */
int sq__regex_search(const sq_regex *re, void **md, const char *subj, size_t len, size_t *from,
                     size_t *end);
void sq__regex_md_free(void *md);

#endif

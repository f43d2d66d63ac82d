/* The static file handler (Tornado's StaticFileHandler): files below the route's init_arg
 * directory, from the route's first path group.
 *
 * Safety: the decoded relative path may not be absolute, hold a NUL or a ".." component;
 * it is opened beneath the root in one step (openat2 RESOLVE_BENEATH: symlinks that stay
 * inside are followed, any resolution that would leave the root fails), else 403.  Validators: ETag
 * ("size-mtime" in hex) and Last-Modified, answered with 304 for If-None-Match / If-Modified-Since.
 * One byte range per request (206 / 416). Bodies of 16 KiB and more go out with sendfile(2)
 * (sq_http_sendfile), smaller ones through the response buffer.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "squall/error.h"
#include "squall/web.h"
#include "web/web_internal.h"

#define STATIC_SENDFILE_MIN (16u << 10) /* from this size on, bodies go out with sendfile(2) */

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {"html", "text/html; charset=UTF-8"},
    {"htm", "text/html; charset=UTF-8"},
    {"css", "text/css; charset=UTF-8"},
    {"js", "text/javascript; charset=UTF-8"},
    {"mjs", "text/javascript; charset=UTF-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=UTF-8"},
    {"md", "text/markdown; charset=UTF-8"},
    {"csv", "text/csv; charset=UTF-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"map", "application/json"},
};

static const char *content_type(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot && dot[1])
        for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
            if (strcasecmp(dot + 1, mime_types[i].ext) == 0) return mime_types[i].type;
    return "application/octet-stream";
}

/* A relative path that stays below its root on its own: no leading '/', no ".." part. */
static bool safe_relative(const char *rel, size_t len)
{
    if (strlen(rel) != len) return false; /* a NUL decoded from %00 */
    if (rel[0] == '/') return false;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n;
        if (*p == '/') p++;
    }
    return true;
}

static bool etag_listed(sq_str list, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = list.ptr, *end = list.ptr + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *s = p;
        while (p < end && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if (e - s == 1 && *s == '*') return true;
        if (e - s >= 2 && s[0] == 'W' && s[1] == '/') s += 2; /* weak comparison */
        if ((size_t)(e - s) == elen && memcmp(s, etag, elen) == 0) return true;
    }
    return false;
}

int sq__if_none_match(const sq_http_request *req, const char *etag)
{
    int r = -1;
    for (size_t i = 0; i < req->nheaders && r < 1; i++) {
        const sq_http_header *hd = &req->headers[i];
        if (hd->name_len != 13 || strncasecmp(hd->name, "If-None-Match", 13)) continue;
        r = etag_listed((sq_str){hd->value, hd->value_len}, etag);
    }
    return r;
}

/* A range position: 1*DIGIT, saturated at UINT64_MAX rather than refused.  Past any file
 * size either way, a huge one keeps its meaning (RFC 9110 14.1.2: a last-pos or suffix at
 * or past the length is the end, a first-pos there is unsatisfiable) where refusing it
 * would drop the Range header and send the whole file as a 200. */
static bool parse_u64(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (p >= end || *p < '0' || *p > '9') return false;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *pp = p;
    *out = v;
    return true;
}

/* One range of "bytes=…".  1: satisfiable ([*start, *end] set), 0: ignore the header
 * (malformed, or several ranges), -1: unsatisfiable (416). */
static int parse_range(sq_str v, uint64_t size, uint64_t *start, uint64_t *end)
{
    const char *p = v.ptr, *e = v.ptr + v.len;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e - p < 6 || strncasecmp(p, "bytes=", 6) != 0) return 0;
    p += 6;
    while (p < e && *p == ' ') p++;
    for (const char *q = p; q < e; q++)
        if (*q == ',') return 0;
    uint64_t a, b;
    if (p < e && *p == '-') {
        p++;
        if (!parse_u64(&p, e, &b) || p != e) return 0;
        if (b == 0 || size == 0) return -1;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 1;
    }
    if (!parse_u64(&p, e, &a) || p >= e || *p != '-') return 0;
    p++;
    if (p == e) {
        b = UINT64_MAX;
    } else {
        if (!parse_u64(&p, e, &b) || p != e) return 0;
        if (b < a) return 0;
    }
    if (a >= size) return -1;
    *start = a;
    *end = b >= size ? size - 1 : b;
    return 1;
}

/* Open `rel` for reading beneath the directory `root`, atomically: openat2 with
 * RESOLVE_BENEATH refuses any resolution that leaves the root (a ".." or an absolute
 * symlink, one swapped in mid-request included), where checking a realpath() first and then
 * opening would race.  Without openat2 (kernels before 5.6), each component is opened with
 * O_NOFOLLOW beneath the one before: symlinks are refused altogether.  Returns the fd, or -1
 * with *err (EXDEV or ELOOP: it would leave the root). */
static int open_beneath(const char *root, const char *rel, int *err)
{
    int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        *err = errno;
        return -1;
    }
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM)) { /* no openat2 (or a seccomp filter) */
        /* the component walk */
        char part[NAME_MAX + 1];
        const char *p = rel;
        int cur = dfd;
        fd = -1;
        errno = ENOENT;
        while (*p) {
            size_t n = strcspn(p, "/");
            if (n == 0 || n > NAME_MAX) {
                errno = n ? ENAMETOOLONG : ENOENT;
                break;
            }
            memcpy(part, p, n);
            part[n] = 0;
            p += n;
            while (*p == '/') p++;
            bool last = !*p;
            int next = openat(cur, part,
                              last ? O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK
                                   : O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (cur != dfd) close(cur);
            cur = dfd;
            if (next < 0) break;
            if (last) {
                fd = next;
                break;
            }
            cur = next;
        }
        if (cur != dfd) close(cur);
    }
    *err = fd < 0 ? errno : 0;
    close(dfd);
    return fd;
}

static void static_get(sq_handler *h)
{
    sq_http_request *req = sq_handler_request(h);
    const char *root = sq_handler_init_arg(h);
    if (!root) {
        sq_handler_fail(h, 500, "static: the route has no root directory (init_arg)");
        return;
    }
    const char *rel = sq_path_arg(h, 0);
    size_t rel_len = sq__path_arg_len(h, 0);
    if (!rel) rel = "", rel_len = 0;
    if (!safe_relative(rel, rel_len)) {
        sq_send_error(h, 403, "path outside the static root");
        return;
    }
    const char *real_root = sq__app_static_root(sq_handler_app(h), root);
    if (!real_root) {
        sq_log(SQ_LOG_ERROR, "static: root %s: %s", root, strerror(errno));
        sq_send_error(h, 404, NULL);
        return;
    }
    int open_err = 0;
    int fd = rel_len ? open_beneath(real_root, rel, &open_err) : (open_err = EISDIR, -1);
    struct stat st;
    const char *deflt = sq__app_settings(sq_handler_app(h))->static_default_filename;
    if (deflt && *deflt && (open_err == EISDIR || (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)))) {
        /* a directory: its default file (index.html), opened beneath the root the same way */
        if (fd >= 0) close(fd);
        sq_str path = req->path;
        if (!path.len || path.ptr[path.len - 1] != '/') {
            /* as Tornado and nginx do: to the directory's own URL, so its relative links
             * work.  Relative ("./sub/"), so sq_redirect's guard against "//host" applies. */
            size_t seg = path.len;
            while (seg > 0 && path.ptr[seg - 1] != '/') seg--;
            sq_str q = req->query;
            size_t n = 2 + (path.len - seg) + 2 + q.len + 1;
            char *to = sq__handler_alloc(h, n);
            if (!to) {
                sq_handler_fail(h, 500, "static: out of memory");
                return;
            }
            snprintf(to, n, "./%.*s/%s%.*s", (int)(path.len - seg), path.ptr + seg,
                     q.len ? "?" : "", (int)q.len, q.ptr ? q.ptr : "");
            sq_redirect(h, to, true);
            return;
        }
        size_t dl = strlen(deflt);
        char *idx = sq__handler_alloc(h, rel_len + dl + 2);
        if (!idx) {
            sq_handler_fail(h, 500, "static: out of memory");
            return;
        }
        size_t k = rel_len;
        memcpy(idx, rel, rel_len);
        if (k && idx[k - 1] != '/') idx[k++] = '/';
        memcpy(idx + k, deflt, dl + 1);
        rel = idx;
        rel_len = k + dl;
        open_err = 0;
        fd = safe_relative(rel, rel_len) ? open_beneath(real_root, rel, &open_err) : (open_err = EXDEV, -1);
    }
    bool inside = fd >= 0 || (open_err != EXDEV && open_err != ELOOP);
    bool missing = open_err == ENOENT || open_err == ENOTDIR || open_err == ENAMETOOLONG;
    if (!inside || fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        /* outside the root, a directory, a device …: forbidden; vanished: not found */
        int status = inside && fd < 0 && missing ? 404 : 403;
        if (fd >= 0) close(fd);
        sq_send_error(h, status, "not a file below the static root");
        return;
    }

    char etag[64], lm[30];
    snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
             (uint64_t)st.st_mtime);
    sq_http_date(lm, st.st_mtime);
    sq_set_header(h, "ETag", etag);
    sq_set_header(h, "Last-Modified", lm);
    sq_set_header(h, "Accept-Ranges", "bytes");
    /* a versioned URL (sq_static_url) changes with the file: cache it for a year */
    long max_age = sq__app_settings(sq_handler_app(h))->static_max_age;
    if (sq_get_query_argument(h, "v", NULL)) max_age = 365L * 24 * 3600;
    if (max_age > 0) {
        char cc[48];
        snprintf(cc, sizeof cc, "max-age=%ld, public", max_age);
        sq_set_header(h, "Cache-Control", cc);
    }

    bool not_modified = false;
    int inm = sq__if_none_match(req, etag);
    if (inm >= 0) {
        not_modified = inm;
    } else {
        sq_str ims = sq_http_header_get(req, "If-Modified-Since");
        time_t t;
        if (ims.ptr && sq_parse_http_date(ims.ptr, ims.len, &t) == 0 && st.st_mtime <= t)
            not_modified = true;
    }
    if (not_modified) {
        close(fd);
        sq_set_status(h, 304, NULL);
        return;
    }

    uint64_t size = (uint64_t)st.st_size, start = 0, end = size ? size - 1 : 0;
    bool partial = false;
    sq_str range = sq_http_header_get(req, "Range");
    sq_str if_range = sq_http_header_get(req, "If-Range");
    if (range.ptr && if_range.ptr) {
        /* Only a validator that still matches allows the partial answer. */
        time_t t;
        bool ok = (if_range.len == strlen(etag) && memcmp(if_range.ptr, etag, if_range.len) == 0) ||
                  (sq_parse_http_date(if_range.ptr, if_range.len, &t) == 0 && t == st.st_mtime);
        if (!ok) range.ptr = NULL;
    }
    if (range.ptr) {
        int r = parse_range(range, size, &start, &end);
        if (r < 0) {
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
            close(fd);
            sq_set_status(h, 416, NULL);
            sq_set_header(h, "Content-Range", cr);
            sq_set_header(h, "Content-Type", "text/plain; charset=UTF-8");
            return;
        }
        if (r > 0) {
            char cr[96];
            snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end, size);
            sq_set_status(h, 206, NULL);
            sq_set_header(h, "Content-Range", cr);
            partial = true;
        }
    }
    sq_set_header(h, "Content-Type", content_type(rel)); /* by extension (of the default file too) */
    uint64_t len = size ? end - start + 1 : 0;
    (void)partial;

    if (sq__handler_is_head(h)) {
        char cl[32];
        snprintf(cl, sizeof cl, "%" PRIu64, len);
        sq_set_header(h, "Content-Length", cl);
        close(fd);
        return;
    }
    if (len >= STATIC_SENDFILE_MIN) {
        /* Straight from the page cache to the socket: sendfile(2), Content-Length: len.
         * An error then can only cut the response short (the server closes the
         * connection). */
        int rc = sq_http_sendfile(req, fd, (off_t)start, (size_t)len);
        if (rc < 0 && rc != SQ_ECLOSED)
            sq_log(SQ_LOG_WARNING, "static: sending a file: %s", sq_strerror(rc));
        close(fd);
        return;
    }
    /* A small range is read whole before anything is written, so a read error still gets
     * a clean 500. */
    size_t bufsz = (size_t)len;
    char *buf = bufsz ? malloc(bufsz) : NULL;
    if (bufsz && !buf) {
        close(fd);
        sq_handler_fail(h, 500, "static: out of memory");
        return;
    }
    uint64_t off = start, left = len;
    size_t have = 0; /* bytes in buf */
    while (left > 0) {
        ssize_t n = pread(fd, buf + have, (size_t)left, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            sq_handler_fail(h, 500, "static: reading a file: %s",
                            n < 0 ? strerror(errno) : "file shrank");
            have = 0;
            break;
        }
        have += (size_t)n;
        off += (uint64_t)n;
        left -= (uint64_t)n;
    }
    if (have) sq_http_write(req, buf, have);
    free(buf);
    close(fd);
}

const sq_handler_class sq_static_file_handler = {
    .get = static_get,
};

/* HTTP dates (RFC 7231 section 7.1.1.1): IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in.
 * Pure arithmetic on the proleptic Gregorian calendar: no locale, no timezone, no gmtime. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "httputil_internal.h"

static const char days3[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const days_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm). */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, long long *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

#define MIN_DATE (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_DATE 253402300799LL   /* 9999-12-31T23:59:59Z */

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void sq_http_date(char dst[30], time_t t)
{
    long long s = (long long)t;
    if (s < MIN_DATE) s = MIN_DATE; /* a four-digit year always fits */
    if (s > MAX_DATE) s = MAX_DATE;
    long long days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
    long long sec = s - days * 86400;
    long long y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int wday = (int)(((days + 4) % 7 + 7) % 7);
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    memcpy(dst, days3[wday], 3);
    memcpy(dst + 3, ", ", 2);
    put2(dst + 5, d);
    dst[7] = ' ';
    memcpy(dst + 8, months[m - 1], 3);
    dst[11] = ' ';
    put2(dst + 12, (int)(y / 100));
    put2(dst + 14, (int)(y % 100));
    dst[16] = ' ';
    put2(dst + 17, (int)(sec / 3600));
    dst[19] = ':';
    put2(dst + 20, (int)(sec / 60 % 60));
    dst[22] = ':';
    put2(dst + 23, (int)(sec % 60));
    memcpy(dst + 25, " GMT", 5); /* with the NUL */
}

/* --- parsing -------------------------------------------------------------------------------- */

typedef struct cur {
    const char *s;
    size_t len, i;
    bool ok;
} cur;

/* Case-insensitive like the names (only " GMT" has letters): Python's parsedate, which
 * Tornado reads If-Modified-Since with, takes "gmt" too. */
static void lit(cur *c, const char *l)
{
    size_t n = strlen(l);
    if (c->ok && c->len - c->i >= n && strncasecmp(c->s + c->i, l, n) == 0)
        c->i += n;
    else
        c->ok = false;
}

/* Exactly n digits. */
static int digits(cur *c, size_t n)
{
    int v = 0;
    if (!c->ok || c->len - c->i < n) {
        c->ok = false;
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        char ch = c->s[c->i + k];
        if (ch < '0' || ch > '9') {
            c->ok = false;
            return 0;
        }
        v = v * 10 + (ch - '0');
    }
    c->i += n;
    return v;
}

static int month(cur *c)
{
    if (c->ok && c->len - c->i >= 3)
        for (int m = 0; m < 12; m++)
            if (strncasecmp(c->s + c->i, months[m], 3) == 0) {
                c->i += 3;
                return m + 1;
            }
    c->ok = false;
    return 0;
}

static void time_of_day(cur *c, int *h, int *mi, int *s)
{
    *h = digits(c, 2);
    lit(c, ":");
    *mi = digits(c, 2);
    lit(c, ":");
    *s = digits(c, 2);
}

static bool leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int sq_parse_http_date(const char *s, size_t len, time_t *out)
{
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    cur c = {s, len, 0, true};
    int y = 0, m = 0, d = 0, h = 0, mi = 0, sec = 0;
    int wday = -1;
    for (int k = 0; k < 7 && wday < 0; k++)
        if (len >= 3 && strncasecmp(s, days3[k], 3) == 0) wday = k;
    if (wday < 0) return -EINVAL;
    if (len > 3 && s[3] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        c.i = 4;
        lit(&c, " ");
        d = digits(&c, 2);
        lit(&c, " ");
        m = month(&c);
        lit(&c, " ");
        y = digits(&c, 4);
        lit(&c, " ");
        time_of_day(&c, &h, &mi, &sec);
        lit(&c, " GMT");
    } else if (len > 3 && s[3] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        c.i = 4;
        m = month(&c);
        lit(&c, " ");
        if (c.ok && c.i < len && s[c.i] == ' ') {
            c.i++;
            d = digits(&c, 1);
        } else {
            d = digits(&c, 2);
        }
        lit(&c, " ");
        time_of_day(&c, &h, &mi, &sec);
        lit(&c, " ");
        y = digits(&c, 4);
    } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        size_t n = strlen(days_long[wday]);
        if (len < n || strncasecmp(s, days_long[wday], n) != 0) return -EINVAL;
        c.i = n;
        lit(&c, ", ");
        d = digits(&c, 2);
        lit(&c, "-");
        m = month(&c);
        lit(&c, "-");
        y = digits(&c, 2);
        lit(&c, " ");
        time_of_day(&c, &h, &mi, &sec);
        lit(&c, " GMT");
        y += y < 70 ? 2000 : 1900; /* like most parsers (RFC 7231's rolling window needs now) */
    }
    if (!c.ok || c.i != len) return -EINVAL;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = mdays[m - 1] + (m == 2 && leap(y));
    if (y < 1 || d < 1 || d > dim || h > 23 || mi > 59 || sec > 60) return -EINVAL;
    long long t = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + sec;
    *out = (time_t)t;
    return 0;
}

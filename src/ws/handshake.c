/* Handshake helpers: Sec-WebSocket-Accept (SHA-1 + base64 through OpenSSL's EVP), key
 * checks, token lists, and the PRNG behind client keys and masks. */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

#include "ws/ws_internal.h"

void sq__ws_accept_key(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    out[0] = 0;
    if (!ctx) return;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 && EVP_DigestUpdate(ctx, key, len) == 1 &&
        EVP_DigestUpdate(ctx, SQ__WS_GUID, sizeof SQ__WS_GUID - 1) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20)
        EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters + NUL */
    EVP_MD_CTX_free(ctx);
}

static bool b64char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool sq__ws_key_valid(const char *key, size_t len)
{
    /* 16 bytes are 22 base64 characters and "==" */
    if (len != 24 || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < 22; i++)
        if (!b64char(key[i])) return false;
    /* the last character carries 2 bits of data and 4 zero bits */
    const char *last = "AQgw";
    return strchr(last, key[21]) != NULL;
}

bool sq__ws_has_token(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t st = i;
        while (i < len && v[i] != ',') i++;
        size_t e = i;
        while (e > st && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - st == tl && !strncasecmp(v + st, tok, tl)) return true;
    }
    return false;
}

/* xoshiro256** seeded from getrandom(): masks need to be unpredictable to the page script
 * that chooses the payload, not to the world, and must be cheap per frame. */
static __thread uint64_t rng[4];
static __thread bool rng_seeded;
static pthread_once_t rng_once = PTHREAD_ONCE_INIT;

/* A forked child must not repeat its parent's keys and masks: reseed after fork (the
 * forking thread is the child's only thread). */
static void rng_after_fork(void)
{
    rng_seeded = false;
}

static void rng_register(void)
{
    pthread_atfork(NULL, NULL, rng_after_fork);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sq__ws_rand(void)
{
    if (!rng_seeded) {
        pthread_once(&rng_once, rng_register);
        ssize_t n = getrandom(rng, sizeof rng, 0);
        if (n != (ssize_t)sizeof rng) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            rng[0] ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull;
            rng[1] ^= (uint64_t)ts.tv_sec + (uint64_t)(uintptr_t)&ts;
        }
        if (!(rng[0] | rng[1] | rng[2] | rng[3])) rng[0] = 0x9e3779b97f4a7c15ull;
        rng_seeded = true;
    }
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

void sq__ws_make_key(char out[25])
{
    uint64_t r[2] = {sq__ws_rand(), sq__ws_rand()};
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)r, 16);
}

/* The demo's self-signed TLS certificate: loaded from DIR/demo-cert.pem and DIR/demo-key.pem
 * when both are there, generated with libcrypto (no openssl command) when they are not.
 * See tls_cert.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <squall.h>

#include "tls_cert.h"

#define CERT_FILE  "demo-cert.pem"
#define KEY_FILE   "demo-key.pem"
#define VALID_DAYS 365
#define SHA256_LEN 32

_Static_assert(SHA256_LEN * 3 <= DEMO_TLS_FINGERPRINT_LEN, "fingerprint buffer too small");

/* Log `what` (about `path`) with OpenSSL's most recent error, then empty OpenSSL's queue. */
static void log_openssl(const char *what, const char *path)
{
    char reason[256] = "no details from OpenSSL";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, reason, sizeof reason);
    sq_log(SQ_LOG_ERROR, "demo TLS certificate: %s %s: %s", what, path, reason);
    ERR_clear_error();
}

/* Log `what` (about `path`) with errno's description; return -errno. */
static int log_errno(const char *what, const char *path)
{
    int err = errno ? errno : EIO;
    sq_log(SQ_LOG_ERROR, "demo TLS certificate: %s %s: %s", what, path, strerror(err));
    return -err;
}

/* A PEM password callback that declines: an encrypted key fails instead of prompting. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return -1;
}

/* 1 if `path` exists, 0 if it does not, a negative errno (logged) if it cannot be told. */
static int file_exists(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    if (errno == ENOENT) return 0;
    return log_errno("cannot look at", path);
}

/* The SHA-256 of the certificate's DER as "AB:CD:…". */
static int fingerprint_of(const X509 *cert, const char *path, char out[DEMO_TLS_FINGERPRINT_LEN])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!X509_digest(cert, EVP_sha256(), md, &len) || len != SHA256_LEN) {
        log_openssl("cannot compute the SHA-256 fingerprint of", path);
        return -EIO;
    }
    char *p = out;
    for (unsigned int i = 0; i < len; i++) {
        if (i) *p++ = ':';
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 15];
    }
    *p = '\0';
    return 0;
}

/* Read the existing pair, check that the key is the certificate's, fingerprint it. */
static int load_pair(const char *cert_path, const char *key_path,
                     char fingerprint[DEMO_TLS_FINGERPRINT_LEN])
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int rc;

    FILE *f = fopen(cert_path, "re");
    if (!f) return log_errno("cannot open", cert_path);
    cert = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!cert) {
        log_openssl("no PEM certificate in", cert_path);
        return -EINVAL;
    }

    f = fopen(key_path, "re");
    if (!f) {
        rc = log_errno("cannot open", key_path);
        goto out;
    }
    key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!key) {
        log_openssl("no unencrypted PEM private key in", key_path);
        rc = -EINVAL;
        goto out;
    }

    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        sq_log(SQ_LOG_ERROR,
               "demo TLS certificate: the key in %s does not belong to the certificate in %s; "
               "delete both files to have a new pair generated",
               key_path, cert_path);
        rc = -EINVAL;
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        sq_log(SQ_LOG_WARNING,
               "demo TLS certificate: %s has expired; delete it and %s to have a new pair "
               "generated",
               cert_path, key_path);
    rc = fingerprint_of(cert, cert_path, fingerprint);
out:
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (!ext) return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed v3 certificate for localhost over `key`, or NULL (OpenSSL's error queued). */
static X509 *make_cert(EVP_PKEY *key)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *serial = BN_new();
    X509V3_CTX ctx;

    /* Serial: exactly 128 random bits (top bit set, so positive and never zero). */
    int ok = cert && name && serial && X509_set_version(cert, X509_VERSION_3) &&
             BN_rand(serial, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), 0) &&
             X509_time_adj_ex(X509_getm_notAfter(cert), VALID_DAYS, 0, NULL) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                        (const unsigned char *)"localhost", -1, -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_set_pubkey(cert, key);
    if (ok) {
        memset(&ctx, 0, sizeof ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        X509V3_set_ctx_nodb(&ctx);
        /* No keyUsage: without keyCertSign it would stop OpenSSL from seeing the certificate
         * as self-signed, and then trusting it explicitly (verify -CAfile it) would fail. */
        ok = add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(cert, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") &&
             add_ext(cert, &ctx, NID_ext_key_usage, "serverAuth") &&
             add_ext(cert, &ctx, NID_subject_key_identifier, "hash") &&
             X509_sign(cert, key, EVP_sha256()) > 0;
    }
    BN_free(serial);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int emit_cert(FILE *f, const void *obj)
{
    return PEM_write_X509(f, obj);
}

static int emit_key(FILE *f, const void *obj)
{
    return PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL); /* PKCS#8, unencrypted */
}

/* Write `path` through `emit` into PATH.tmp (created with `mode`), then rename it over `path`,
 * so a reader never sees half a file. */
static int write_file(const char *path, mode_t mode, int (*emit)(FILE *, const void *),
                      const void *obj)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        sq_log(SQ_LOG_ERROR, "demo TLS certificate: path too long: %s.tmp", path);
        return -ENAMETOOLONG;
    }
    if (unlink(tmp) != 0 && errno != ENOENT) return log_errno("cannot remove", tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return log_errno("cannot create", tmp);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int rc = log_errno("cannot open", tmp);
        close(fd);
        unlink(tmp);
        return rc;
    }
    int rc = 0;
    if (!emit(f, obj)) {
        log_openssl("cannot write PEM to", tmp);
        rc = -EIO;
    }
    errno = 0;
    if (fclose(f) != 0 && rc == 0) rc = log_errno("cannot write", tmp);
    if (rc == 0 && rename(tmp, path) != 0) rc = log_errno("cannot rename to", path);
    if (rc != 0) unlink(tmp);
    return rc;
}

static int generate_pair(const char *dir, const char *cert_path, const char *key_path,
                         char fingerprint[DEMO_TLS_FINGERPRINT_LEN])
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return log_errno("cannot create the directory", dir);

    int rc;
    X509 *cert = NULL;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!key) {
        log_openssl("cannot generate an ECDSA P-256 key for", key_path);
        return -EIO;
    }
    cert = make_cert(key);
    if (!cert) {
        log_openssl("cannot make the self-signed certificate", cert_path);
        rc = -EIO;
        goto out;
    }
    rc = fingerprint_of(cert, cert_path, fingerprint);
    if (rc == 0) rc = write_file(key_path, 0600, emit_key, key);
    if (rc == 0) rc = write_file(cert_path, 0644, emit_cert, cert);
    if (rc == 0)
        sq_log(SQ_LOG_INFO,
               "demo TLS certificate: generated a self-signed certificate for localhost in %s "
               "(SHA-256 fingerprint %s)",
               cert_path, fingerprint);
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* Put DIR/NAME into `out`. */
static int join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        sq_log(SQ_LOG_ERROR, "demo TLS certificate: %s/%s does not fit in %zu bytes", dir, name,
               cap);
        return -ENAMETOOLONG;
    }
    return 0;
}

int demo_tls_cert_ensure(const char *dir, char *cert_path, size_t cert_cap, char *key_path,
                         size_t key_cap, char fingerprint[DEMO_TLS_FINGERPRINT_LEN])
{
    if (!dir || !*dir || !cert_path || !key_path || !fingerprint) {
        sq_log(SQ_LOG_ERROR, "demo TLS certificate: missing directory or output buffer");
        return -EINVAL;
    }
    fingerprint[0] = '\0';
    int rc = join(cert_path, cert_cap, dir, CERT_FILE);
    if (rc == 0) rc = join(key_path, key_cap, dir, KEY_FILE);
    if (rc != 0) return rc;

    /* Several demos starting at once (tests in parallel) must agree on one pair: the check
     * and the generation happen under a lock file in the folder. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return log_errno("cannot create", dir);
    char lock_path[PATH_MAX];
    rc = join(lock_path, sizeof lock_path, dir, ".lock");
    if (rc != 0) return rc;
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0) return log_errno("cannot open", lock_path);
    while (flock(lock, LOCK_EX) != 0 && errno == EINTR) {
    }
    int have_cert = file_exists(cert_path);
    int have_key = have_cert < 0 ? 0 : file_exists(key_path);
    if (have_cert < 0 || have_key < 0)
        rc = have_cert < 0 ? have_cert : have_key;
    else if (have_cert && have_key)
        rc = load_pair(cert_path, key_path, fingerprint);
    else {
        if (have_cert || have_key)
            sq_log(SQ_LOG_WARNING, "demo TLS certificate: %s without %s; generating a new pair",
                   have_cert ? cert_path : key_path, have_cert ? key_path : cert_path);
        rc = generate_pair(dir, cert_path, key_path, fingerprint);
    }
    close(lock); /* releases the lock */
    return rc;
}

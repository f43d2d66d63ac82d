/* The demo's self-signed TLS certificate (examples/demo/tls_cert.c). */
#ifndef SQUALL_DEMO_TLS_CERT_H
#define SQUALL_DEMO_TLS_CERT_H

#include <stddef.h>

/* Length of a SHA-256 fingerprint as "AB:CD:…" (32 bytes, 95 characters) plus its NUL. */
#define DEMO_TLS_FINGERPRINT_LEN 96

/* Make sure `dir` holds demo-cert.pem and demo-key.pem, and say where they are.
 *
 * When both files exist they are loaded (and checked to belong together); otherwise `dir` is
 * created if missing (one level, mode 0700) and a new pair is generated: an ECDSA P-256 key
 * (demo-key.pem, PKCS#8, mode 0600) and a self-signed X.509 v3 certificate for CN=localhost,
 * SAN DNS:localhost, IP:127.0.0.1, IP:::1, valid one year from now, random 128-bit serial,
 * CA:FALSE, signed with SHA-256 (demo-cert.pem).  Existing files are replaced atomically.
 *
 * On success returns 0 and fills `cert_path` and `key_path` with the two paths and
 * `fingerprint` with the certificate's SHA-256 fingerprint in the form
 * `openssl x509 -fingerprint -sha256` prints (uppercase hex pairs joined by colons).
 * On failure logs why (sq_log at SQ_LOG_ERROR) and returns a negative errno: -EINVAL for
 * bad arguments or unusable files, -ENAMETOOLONG when a path does not fit its buffer, the
 * system's error for a file or directory that cannot be read or written, -EIO when OpenSSL
 * fails. */
int demo_tls_cert_ensure(const char *dir, char *cert_path, size_t cert_cap, char *key_path,
                         size_t key_cap, char fingerprint[DEMO_TLS_FINGERPRINT_LEN]);

#endif

/* Start nginx (unprivileged, foreground) on a free loopback port for the client tests. */
#ifndef SQ_TESTS_NGINX_UTIL_H
#define SQ_TESTS_NGINX_UTIL_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NGINX_BIN "/usr/sbin/nginx"

typedef struct ngx_server {
    pid_t pid;
    int port;
    int tls_port; /* 0 unless a self-signed certificate could be made (openssl CLI) */
    char dir[256];
    char cert[300]; /* <dir>/cert.pem: the certificate, for ca_certs */
} ngx_server;

/* A loopback port that was free a moment ago (bound to 0, then closed). */
static inline int ngx_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static inline bool ngx_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static inline void ngx_write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

/* Start nginx with `locations` (nginx.conf text inside the server block) serving files from
 * <dir>/html, on a plain port and — when the openssl command can make a self-signed
 * certificate for 127.0.0.1 — on a TLS port offering HTTP/2 too.  Returns false (nothing
 * started) when nginx is missing or does not come up. */
static inline bool ngx_start(ngx_server *s, const char *locations)
{
    memset(s, 0, sizeof *s);
    if (access(NGINX_BIN, X_OK) != 0) return false;
    snprintf(s->dir, sizeof s->dir, "/tmp/sq-nginx-XXXXXX");
    if (!mkdtemp(s->dir)) return false;
    chmod(s->dir, 0755); /* nginx's workers may run as another user when we are root */
    char path[512];
    snprintf(path, sizeof path, "%s/html", s->dir);
    mkdir(path, 0755);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem "
             "-out %s/cert.pem >/dev/null 2>&1",
             s->dir, s->dir);
    bool tls = system(cmd) == 0;
    snprintf(s->cert, sizeof s->cert, "%s/cert.pem", s->dir);
    char tls_conf[1024] = "";
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = ngx_free_port();
        s->tls_port = tls ? ngx_free_port() : 0;
        if (tls)
            snprintf(tls_conf, sizeof tls_conf,
                     "    listen 127.0.0.1:%d ssl http2;\n"
                     "    ssl_certificate %s/cert.pem; ssl_certificate_key %s/key.pem;\n",
                     s->tls_port, s->dir, s->dir);
        snprintf(path, sizeof path, "%s/nginx.conf", s->dir);
        FILE *f = fopen(path, "w");
        if (!f) return false;
        fprintf(f,
                "worker_processes 1;\n"
                "events { worker_connections 1024; }\n"
                "http {\n"
                "  access_log off;\n"
                "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
                "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
                "  default_type text/plain;\n"
                "  keepalive_requests 10000;\n"
                "  server {\n"
                "    listen 127.0.0.1:%d;\n"
                "%s"
                "    root %s/html;\n"
                "%s\n"
                "  }\n"
                "}\n",
                s->dir, s->dir, s->dir, s->dir, s->dir, s->port, tls_conf, s->dir, locations);
        fclose(f);
        char globals[512];
        snprintf(globals, sizeof globals, "daemon off; pid %s/nginx.pid; error_log stderr;",
                 s->dir);
        pid_t pid = fork();
        if (pid == 0) {
            execl(NGINX_BIN, "nginx", "-p", s->dir, "-c", path, "-g", globals, (char *)NULL);
            _exit(127);
        }
        if (pid < 0) return false;
        s->pid = pid;
        for (int i = 0; i < 100; i++) { /* up to 5 s */
            if (ngx_port_open(s->port) && (!tls || ngx_port_open(s->tls_port))) return true;
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) break; /* died: port taken? retry */
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
    }
    return false;
}

static inline void ngx_stop(ngx_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int st;
        for (int i = 0; i < 100 && waitpid(s->pid, &st, WNOHANG) == 0; i++) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, WNOHANG);
        s->pid = 0;
    }
    if (s->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) { /* best effort */
        }
        s->dir[0] = '\0';
    }
}

#endif

/* Probes: exec (`corral-oci exec`, its own process group), http and tcp (non-blocking
 * sockets in the pod's network namespace, driven by the loop's poll()), https (a helper
 * program: there is no TLS in here). One attempt at a time per probe. */
#include "monitor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const probe_names[PROBE_KINDS] = {"liveness", "readiness", "startup"};
static const char *const probe_titles[PROBE_KINDS] = {"Liveness", "Readiness", "Startup"};

void probes_stop(struct ctr *c)
{
    for (int k = 0; k < PROBE_KINDS; k++) {
        struct probe *p = c->probes[k];
        if (!p)
            continue;
        if (p->pid > 0 && !p->orphan) {
            kill(-p->pid, SIGKILL);
            p->orphan = true;
        }
        if (p->fd >= 0)
            close(p->fd);
        if (p->out >= 0)
            close(p->out);
        p->fd = p->out = -1;
        free(p->req);
        p->req = NULL;
        p->successes = p->failures = 0;
    }
}

static void probe_result(struct ctr *c, int k, bool ok, const char *why)
{
    struct probe *p = c->probes[k];
    M.changes++;
    if (ok) {
        p->successes++;
        p->failures = 0;
    } else {
        p->failures++;
        p->successes = 0;
        warn("%s probe of %s failed (%ld in a row): %s", probe_names[k], c->name, p->failures,
             why);
    }
    if (c->step != ST_UP || c->kill_stage || c->exited)
        return;
    bool was_ready = c->ready;
    switch (k) {
    case PROBE_STARTUP:
        if (ok && p->successes >= p->success_threshold && !c->startup_done) {
            c->startup_done = true;
            int64_t now = now_ms();
            for (int j = 0; j < PROBE_KINDS; j++)
                if (c->probes[j] && j != PROBE_STARTUP)
                    c->probes[j]->next_at = c->probes[j]->next_at > now ? c->probes[j]->next_at
                                                                        : now;
            c->ready = !c->probes[PROBE_READINESS];
        }
        /* fall through */
    case PROBE_LIVENESS:
        if (!ok && p->failures >= p->failure_threshold) {
            snprintf(c->why_killed, sizeof c->why_killed, "%s probe failed: %s",
                     probe_titles[k], why);
            terminate(c, now_ms() + M.grace);
        }
        break;
    case PROBE_READINESS:
        if (ok && p->successes >= p->success_threshold)
            c->ready = true;
        if (!ok && p->failures >= p->failure_threshold)
            c->ready = false;
        break;
    }
    if (c->ready != was_ready)
        write_status(c);
}

void probe_exec_done(struct ctr *c, int k, int st)
{
    struct probe *p = c->probes[k];
    bool orphan = p->orphan;
    p->pid = 0;
    p->orphan = false;
    /* An https attempt said what it saw in one line on its stdout (it has exited: what it
     * wrote is in the pipe). */
    char line[128] = "";
    if (p->out >= 0) {
        ssize_t n = orphan ? -1 : read(p->out, line, sizeof line - 1);
        line[n > 0 ? n : 0] = 0;
        line[strcspn(line, "\n")] = 0;
        close(p->out);
        p->out = -1;
    }
    if (orphan)
        return;
    const char *what = p->how == HOW_EXEC ? "exec" : "https probe";
    char why[sizeof line + 64];
    if (line[0])
        snprintf(why, sizeof why, "%s", line);
    else if (WIFEXITED(st))
        snprintf(why, sizeof why, "%s exited %d", what, WEXITSTATUS(st));
    else
        snprintf(why, sizeof why, "%s killed by signal %d", what, WTERMSIG(st));
    probe_result(c, k, WIFEXITED(st) && WEXITSTATUS(st) == 0, why);
}

/* `<https_probe_arg...> HOST PORT PATH [HEADER...]` in the pod's network namespace, its
 * own process group (a timeout kills it like an exec probe), stdout to a pipe. There is no
 * TLS in here: the kubelet's https probe (GET, certificate not verified) is that program. */
static pid_t probe_https(struct probe *p)
{
    size_t n = M.https_probe_arg.n;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    char **argv = xcalloc(n + 3 + p->headers.n + 1, sizeof *argv);
    memcpy(argv, M.https_probe_arg.v, n * sizeof *argv);
    argv[n] = p->host;
    argv[n + 1] = port;
    argv[n + 2] = p->path;
    memcpy(argv + n + 3, p->headers.v, p->headers.n * sizeof *argv);
    int fds[2];
    pid_t pid = -1;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        warn("pipe for an https probe: %s", strerror(errno));
    } else {
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        pid = spawn(argv, M.devnull, fds[1], STDERR_FILENO, SPAWN_GROUP | SPAWN_POD_NET);
        close(fds[1]);
        if (pid > 0)
            p->out = fds[0];
        else
            close(fds[0]);
    }
    free(argv);
    return pid;
}

static void net_done(struct ctr *c, int k, bool ok, const char *why)
{
    struct probe *p = c->probes[k];
    close(p->fd);
    p->fd = -1;
    free(p->req);
    p->req = NULL;
    probe_result(c, k, ok, why);
}

/* Hosts are IP addresses (Python resolves names); "localhost" is 127.0.0.1. */
static int probe_addr(struct probe *p, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *host = strcmp(p->host, "localhost") ? p->host : "127.0.0.1";
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p->port);
        *len = sizeof *in4;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p->port);
        *len = sizeof *in6;
        return AF_INET6;
    }
    return -1;
}

static void probe_start(struct ctr *c, int k, int64_t now)
{
    struct probe *p = c->probes[k];
    M.changes++;
    p->deadline = now + p->timeout;
    if (p->how == HOW_HTTP && p->https) {
        p->pid = probe_https(p);
        if (p->pid < 0) {
            p->pid = 0;
            probe_result(c, k, false, "fork failed");
        }
        return;
    }
    if (p->how == HOW_EXEC) {
        size_t n = p->exec.n;
        const char **args = xcalloc(n + 2, sizeof *args);
        args[0] = "exec";
        args[1] = c->id;
        memcpy(args + 2, p->exec.v, n * sizeof *args);
        /* Its own process group, so a timeout kills what it started too. */
        p->pid = runtime(args, n + 2, M.devnull, M.devnull, M.devnull, SPAWN_GROUP);
        free(args);
        if (p->pid < 0) {
            p->pid = 0;
            probe_result(c, k, false, "fork failed");
        }
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    int af = probe_addr(p, &ss, &len);
    if (af < 0) {
        probe_result(c, k, false, "host is not an IP address");
        return;
    }
    p->fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        probe_result(c, k, false, strerror(errno));
        return;
    }
    p->phase = NET_CONNECT;
    p->resp_len = 0;
    if (connect(p->fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
        net_done(c, k, false, strerror(errno));
}

void probe_net_event(struct ctr *c, int k)
{
    struct probe *p = c->probes[k];
    if (p->phase == NET_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            net_done(c, k, false, strerror(err));
            return;
        }
        if (p->how == HOW_TCP) {
            net_done(c, k, true, "connected");
            return;
        }
        char hostport[80];
        snprintf(hostport, sizeof hostport, strchr(p->host, ':') ? "[%s]:%d" : "%s:%d",
                 p->host, p->port);
        size_t cap = strlen(p->path) + strlen(hostport) + 128;
        for (size_t i = 0; i < p->headers.n; i++)
            cap += strlen(p->headers.v[i]) + 2;
        p->req = xcalloc(1, cap);
        int n = snprintf(p->req, cap,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kube-probe/corral\r\n"
                         "Accept: */*\r\nConnection: close\r\n",
                         p->path, hostport);
        for (size_t i = 0; i < p->headers.n; i++)
            n += snprintf(p->req + n, cap - (size_t)n, "%s\r\n", p->headers.v[i]);
        n += snprintf(p->req + n, cap - (size_t)n, "\r\n");
        p->req_len = (size_t)n;
        p->req_off = 0;
        p->phase = NET_SEND;
    }
    if (p->phase == NET_SEND) {
        ssize_t n = send(p->fd, p->req + p->req_off, p->req_len - p->req_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
            net_done(c, k, false, strerror(errno));
            return;
        }
        if (n > 0)
            p->req_off += (size_t)n;
        if (p->req_off == p->req_len)
            p->phase = NET_RECV;
        return;
    }
    /* "HTTP/1.1 200 OK": the status code is all we need. */
    ssize_t n = recv(p->fd, p->resp + p->resp_len, sizeof p->resp - 1 - p->resp_len, 0);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0) {
        net_done(c, k, false, strerror(errno));
        return;
    }
    p->resp_len += (size_t)n;
    p->resp[p->resp_len] = 0;
    if (n > 0 && p->resp_len < 12 && !strchr(p->resp, '\n'))
        return;
    char why[64], *sp = strchr(p->resp, ' ');
    int code = sp ? (int)strtol(sp + 1, NULL, 10) : 0;
    if (strncmp(p->resp, "HTTP/", 5) || code < 100 || code > 999) {
        net_done(c, k, false, "no HTTP status line in the response");
        return;
    }
    snprintf(why, sizeof why, "HTTP status %d", code);
    net_done(c, k, code >= 200 && code < 400, why);
}

/* Start the probes of a running container that are due, fail those that timed out;
 * returns `next` lowered to their next deadline. */
int64_t probes_due(struct ctr *c, int64_t now, int64_t next)
{
    for (int k = 0; k < PROBE_KINDS; k++) {
        struct probe *p = c->probes[k];
        if (!p || (k != PROBE_STARTUP && !c->startup_done) ||
            (k == PROBE_STARTUP && c->startup_done))
            continue;
        if (p->pid > 0 && p->orphan)
            continue; /* killed after a timeout: SIGCHLD will tell */
        if (p->fd >= 0 || p->pid > 0) {
            if (now < p->deadline) {
                next = min64(next, p->deadline);
                continue;
            }
            if (p->pid > 0) {
                kill(-p->pid, SIGKILL);
                p->orphan = true;
                probe_result(c, k, false, "timed out");
            } else {
                net_done(c, k, false, "timed out");
            }
        } else if (now >= p->next_at) {
            p->next_at = now + p->period;
            probe_start(c, k, now);
            if (p->fd >= 0 || p->pid > 0)
                next = min64(next, p->deadline);
        }
        if (c->kill_stage) /* a failure began the kill: terminate() stopped every probe */
            break;
        next = min64(next, p->next_at);
    }
    return next;
}

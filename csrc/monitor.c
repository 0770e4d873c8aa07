/* corral-monitor: the per-pod monitor. docs/pods.md is its contract: read that first.
 *
 * One small single-threaded process per pod, driven by one poll() loop:
 *   start-up  lock the pod directory, detach (fork, setsid, fork), unshare the pod's net, ipc
 *             and uts namespaces (the monitor holds them by living in them), become the
 *             subreaper, handshake with Python over the inherited pipe pair;
 *   run       every OCI runtime command and exec probe is a child process the loop reaps
 *             (SIGCHLD through a signalfd), so nothing blocks the loop. Being the subreaper,
 *             the monitor inherits each container process when `corral-oci create` exits and
 *             gets its exit status from waitpid(), the way conmon does. stdout/stderr pipes
 *             are read into CRI log files; probes, backoff and kill grace periods are
 *             deadlines that set the poll() timeout;
 *   end       delete the containers from the runtime, run finish_arg, exit (which releases
 *             the lock).
 *
 * The loop is level-triggered: after any event, advance() looks at every container and does
 * whatever is due, so no handler needs to know what the others did.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -Werror -static -o corral-monitor monitor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (16 * 1024) /* a longer log line is cut into P entries */
#define MSG_MAX 256
#define NEVER INT64_MAX

/* ------------------------------------------------------------------ model */

struct strv {
    char **v; /* NULL-terminated */
    size_t n;
};

enum probe_kind { PROBE_LIVENESS, PROBE_READINESS, PROBE_STARTUP, PROBE_KINDS };
static const char *const probe_names[PROBE_KINDS] = {"liveness", "readiness", "startup"};
static const char *const probe_titles[PROBE_KINDS] = {"Liveness", "Readiness", "Startup"};

enum probe_how { HOW_NONE, HOW_EXEC, HOW_HTTP, HOW_TCP };
enum net_phase { NET_CONNECT, NET_SEND, NET_RECV };

struct probe {
    enum probe_how how;
    struct strv exec;
    bool https;
    char *host, *path;
    int port;
    struct strv headers;
    int64_t initial_delay, period, timeout; /* ms */
    long success_threshold, failure_threshold;

    /* one attempt at a time */
    int64_t next_at, deadline;
    pid_t pid;    /* exec or https attempt (a child process) */
    bool orphan;  /* its result was already given (timeout): only reap it */
    int out;      /* https attempt: read end of its stdout, the one-line result */
    int fd;       /* http/tcp attempt */
    enum net_phase phase;
    char *req;
    size_t req_len, req_off;
    char resp[32];
    size_t resp_len;
    long successes, failures; /* in a row */
};

/* A container's life is a sequence of steps; a job is the command of that step: the
 * runtime's, or prestart_arg (which gives a restarted container a fresh rootfs). */
enum step { ST_IDLE, ST_DELETE, ST_PRESTART, ST_CREATE, ST_START, ST_UP, ST_BACKOFF, ST_DONE };

struct stream {
    const char *name; /* "stdout" or "stderr" */
    int fd, wfd;      /* our read end; the write end, kept until `start` has exited */
    char *buf;        /* pending partial line (len bytes), NULL when there is none */
    size_t len;
};

struct run_record { /* what status files say about one run */
    const char *reason;
    char message[MSG_MAX];
    int exit_code, signal;
    char started_at[40], finished_at[40];
};

struct ctr {
    char *name, *id, *bundle, *oom_file;
    struct strv prestart_arg; /* run before every create but the first */
    bool prestart_first;      /* ... and before the first too (subPath mounts) */
    bool init;
    struct probe *probes[PROBE_KINDS];
    int line; /* of its `container` line, for errors */

    enum step step;
    pid_t job;             /* runtime command of the current step */
    pid_t pid;             /* the container process, once `create` wrote its pid file */
    bool created;          /* the runtime knows it: delete before creating it again */
    bool exited;           /* pid was reaped, status in wstatus */
    int wstatus;
    bool start_failed;     /* `start` failed: we killed the process ourselves */
    bool abandon;          /* stopped between create and start: not a run of its own */
    bool succeeded;        /* an init container that exited 0 */
    int kill_stage;        /* 0 none, 1 TERM sent, 2 KILL sent */
    int64_t kill_at;       /* when to send KILL after TERM */
    int64_t restart_at;    /* end of the backoff */
    int64_t started_mono;
    int restart_count, backoff_k;
    long oom_base;
    bool startup_done, ready;
    char why_killed[MSG_MAX];
    char lasterr[MSG_MAX]; /* last `corral-oci:` line on stderr while creating/starting,
                              or prestart_arg's last stderr line */
    bool created_once;     /* a create was begun: the next one needs prestart_arg first */

    const char *state; /* waiting, running, terminated */
    struct run_record cur, last;
    bool has_last;

    struct stream out, err;
    int logdir, log_fd;
    int64_t log_size;
};

static struct {
    /* monitor.conf */
    struct strv runtime_arg, finish_arg, https_probe_arg;
    char *runtime_root, *hostname;
    enum { POLICY_ALWAYS, POLICY_ON_FAILURE, POLICY_NEVER } policy;
    int64_t grace, backoff_initial, backoff_max, backoff_reset; /* ms */
    int64_t log_max_bytes, monitor_log_max;
    long log_max_files;
    struct ctr *ctrs;
    size_t nctrs;

    /* process */
    bool host_network, share_pid;
    bool log_ours;                   /* stderr is our monitor.log: it may be rotated */
    const char *dir;
    int dirfd, statusfd, devnull, sigfd;
    int sync_w, sync_r;              /* -1 once the handshake is over */
    int host_ns[3];                  /* net, ipc, uts we were started in: for our children */
    pid_t reaper;                    /* pid 1 of the pod's pid namespace (--share-pid) */
    pid_t unknown[16];               /* reaped before we knew them: a create's container */
    int unknown_status[16];
    unsigned unknown_next;
    pid_t misc[32];                  /* kill jobs still running */
    bool stopping, apps_started, init_failed, finishing;
    unsigned changes;                /* bumped by every state change: see loop() */
    int64_t stop_deadline;
    const char *phase;
    char pod_message[MSG_MAX];
    char started_at[40];
} M = {
    .dirfd = -1, .statusfd = -1, .devnull = -1, .sigfd = -1, .sync_w = -1, .sync_r = -1,
    .host_ns = {-1, -1, -1},
    .monitor_log_max = 1 << 20,
};

/* ------------------------------------------------------------------ helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 with nanoseconds, UTC: the CRI log and status time format. (Not strftime, nor
 * stdio or strtod below: each would pull more of glibc into the static binary's RSS.) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation" /* gmtime_r's fields are in range */
static void rfc3339(char out[40])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}
#pragma GCC diagnostic pop

/* "12", "0.5", "1.25": seconds to milliseconds; -1 if it is not such a number. */
static int64_t parse_seconds(const char *s)
{
    int64_t ms = 0, scale = 1000;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (ms > INT64_MAX / 100)
            return -1;
        ms = ms * 10 + (*p - '0') * 1000;
    }
    if (p == s && *p != '.')
        return -1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ms += (scale /= 10) * (*p - '0');
    while (*p == '\n' || *p == ' ')
        p++;
    return *p ? -1 : ms;
}

/* Up to len-1 bytes of a small file, NUL-terminated; -errno on failure. */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t len)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = 0;
    return n;
}

/* monitor.log stays below monitor_log_max_bytes: before a line would take it past that, it
 * becomes monitor.log.1 (replacing the one before) and a new one is started. Its size is
 * the file's, so what children wrote to it counts too. */
static void monitor_log_room(size_t len)
{
    struct stat st;
    if (!M.log_ours || fstat(STDERR_FILENO, &st) < 0 || st.st_size == 0 ||
        st.st_size + (int64_t)len <= M.monitor_log_max)
        return;
    if (renameat(M.dirfd, "monitor.log", M.dirfd, "monitor.log.1") < 0)
        return;
    int fd = openat(M.dirfd, "monitor.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static void vlog(const char *fmt, va_list ap, char *copy, size_t copy_len)
{
    char stamp[40], msg[1024], line[1200];
    rfc3339(stamp);
    vsnprintf(msg, sizeof msg, fmt, ap);
    int n = snprintf(line, sizeof line, "%s corral-monitor[%d]: %s\n", stamp, getpid(), msg);
    if (n >= (int)sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    monitor_log_room((size_t)n);
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* a failed write to our own log has nowhere to be reported */
    if (copy)
        snprintf(copy, copy_len, "%s", msg);
}

__attribute__((format(printf, 1, 2))) static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, NULL, 0);
    va_end(ap);
}

static void write_pod_status(const char *phase, const char *finished_at);

static void cleanup_reaper(void)
{
    if (M.reaper > 0) {
        kill(M.reaper, SIGKILL);
        waitpid(M.reaper, NULL, 0);
        M.reaper = 0;
    }
}

/* A fatal start-up error: logged, told to Python as `error <text>` while the handshake pipe
 * is open, then exit 1. Only used before any container runs. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, msg, sizeof msg);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    if (M.sync_w >= 0)
        dprintf(M.sync_w, "error %s\n", msg);
    if (M.statusfd >= 0) {
        char fin[40];
        rfc3339(fin);
        snprintf(M.pod_message, sizeof M.pod_message, "%.*s", MSG_MAX - 1, msg);
        write_pod_status("Failed", fin);
    }
    cleanup_reaper();
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("out of memory");
    return p;
}

static void strv_add(struct strv *sv, const char *s)
{
    char **v = realloc(sv->v, (sv->n + 2) * sizeof *v);
    if (!v)
        die("out of memory");
    v[sv->n++] = xstrdup(s);
    v[sv->n] = NULL;
    sv->v = v;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Write `text` to dirfd/name atomically: temp file, fsync, rename. */
static int write_atomic(int dirfd, const char *name, const char *text, size_t len)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = 0;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    close(fd);
    if (ret == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        ret = -errno;
    if (ret < 0)
        unlinkat(dirfd, tmp, 0);
    return ret;
}

/* ------------------------------------------------------------------ monitor.conf */

static int conf_line;

__attribute__((format(printf, 1, 2), noreturn)) static void conf_die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die("monitor.conf line %d: %s", conf_line, msg);
}

static long conf_long(const char *key, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        conf_die("%s: want an integer in %ld..%ld, not '%s'", key, min, max, v);
    return n;
}

/* `_s` values are seconds; a fraction is allowed (tests use 0.1). */
static int64_t conf_seconds(const char *key, const char *v)
{
    int64_t ms = parse_seconds(v);
    if (ms < 0 || strchr(v, '\n'))
        conf_die("%s: want a number of seconds, not '%s'", key, v);
    return ms;
}

static void conf_abs_path(const char *key, const char *v)
{
    if (v[0] != '/')
        conf_die("%s: want an absolute path, not '%s'", key, v);
}

/* Undo the `\\`, `\n`, `\t` escapes in place. */
static void conf_unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        switch (*++r) {
        case '\\': *w++ = '\\'; break;
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        default: conf_die("bad escape '\\%c'", *r ? *r : ' ');
        }
    }
    *w = 0;
}

static struct probe *new_probe(void)
{
    struct probe *p = xcalloc(1, sizeof *p);
    p->period = 10000;
    p->timeout = 1000;
    p->success_threshold = 1;
    p->failure_threshold = 3;
    p->fd = p->out = -1;
    return p;
}

static void conf_probe_key(struct probe *p, const char *key, char *v)
{
    if (!strcmp(key, "probe_exec")) {
        if (p->how != HOW_NONE && p->how != HOW_EXEC)
            conf_die("a probe has one handler: exec, http or tcp");
        p->how = HOW_EXEC;
        strv_add(&p->exec, v);
    } else if (!strcmp(key, "probe_http") || !strcmp(key, "probe_tcp")) {
        bool http = key[6] == 'h';
        /* Space-separated fields; the last (the path) is the rest of the line. */
        char *f[4] = {0}, *s = v;
        int want = http ? 4 : 2, n = 0;
        while (n < want && s) {
            f[n++] = s;
            if (n < want && (s = strchr(s, ' ')))
                *s++ = 0;
        }
        if (n < want - (http ? 1 : 0) || p->how != HOW_NONE)
            conf_die(http ? "want 'probe_http <scheme> <host> <port> <path>', once per probe"
                          : "want 'probe_tcp <host> <port>', once per probe");
        int i = 0;
        if (http) {
            if (!strcasecmp(f[0], "https"))
                p->https = true;
            else if (strcasecmp(f[0], "http"))
                conf_die("probe_http: scheme must be http or https, not '%s'", f[0]);
            i = 1;
        }
        p->how = http ? HOW_HTTP : HOW_TCP;
        p->host = xstrdup(f[i]);
        p->port = (int)conf_long(key, f[i + 1], 1, 65535);
        p->path = xstrdup(http && f[3] && *f[3] ? f[3] : "/");
        if (strpbrk(p->path, "\r\n \t"))
            conf_die("probe_http: the path must not hold white space");
    } else if (!strcmp(key, "probe_http_header")) {
        if (!strchr(v, ':') || strpbrk(v, "\r\n"))
            conf_die("probe_http_header: want one line '<name>: <value>'");
        strv_add(&p->headers, v);
    } else if (!strcmp(key, "probe_initial_delay_s")) {
        p->initial_delay = conf_seconds(key, v);
    } else if (!strcmp(key, "probe_period_s")) {
        p->period = conf_seconds(key, v);
        if (p->period == 0)
            conf_die("probe_period_s must be above 0");
    } else if (!strcmp(key, "probe_timeout_s")) {
        p->timeout = conf_seconds(key, v);
        if (p->timeout == 0)
            conf_die("probe_timeout_s must be above 0");
    } else if (!strcmp(key, "probe_success_threshold")) {
        p->success_threshold = conf_long(key, v, 1, INT_MAX);
    } else if (!strcmp(key, "probe_failure_threshold")) {
        p->failure_threshold = conf_long(key, v, 1, INT_MAX);
    } else {
        conf_die("unknown key '%s'", key);
    }
}

static void conf_parse(char *text)
{
    struct ctr *c = NULL;
    struct probe *p = NULL;
    size_t cap = 0;
    char *next;

    for (char *line = text; line; line = next) {
        conf_line++;
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (!*line || *line == '#')
            continue;
        char *v = strchr(line, ' ');
        if (!v)
            conf_die("'%s' has no value (want 'key value')", line);
        *v++ = 0;
        const char *key = line;
        conf_unescape(v);

        if (!strcmp(key, "runtime_arg")) {
            strv_add(&M.runtime_arg, v);
        } else if (!strcmp(key, "finish_arg")) {
            strv_add(&M.finish_arg, v);
        } else if (!strcmp(key, "https_probe_arg")) {
            strv_add(&M.https_probe_arg, v);
        } else if (!strcmp(key, "runtime_root")) {
            conf_abs_path(key, v);
            M.runtime_root = xstrdup(v);
        } else if (!strcmp(key, "hostname")) {
            M.hostname = xstrdup(v);
        } else if (!strcmp(key, "restart_policy")) {
            if (!strcmp(v, "Always"))
                M.policy = POLICY_ALWAYS;
            else if (!strcmp(v, "OnFailure"))
                M.policy = POLICY_ON_FAILURE;
            else if (!strcmp(v, "Never"))
                M.policy = POLICY_NEVER;
            else
                conf_die("restart_policy: want Always, OnFailure or Never, not '%s'", v);
        } else if (!strcmp(key, "grace_s")) {
            M.grace = conf_seconds(key, v);
        } else if (!strcmp(key, "log_max_bytes")) {
            M.log_max_bytes = conf_long(key, v, 1, LONG_MAX);
        } else if (!strcmp(key, "monitor_log_max_bytes")) {
            M.monitor_log_max = conf_long(key, v, 1, LONG_MAX);
        } else if (!strcmp(key, "log_max_files")) {
            M.log_max_files = conf_long(key, v, 0, 1000);
        } else if (!strcmp(key, "backoff_initial_ms")) {
            M.backoff_initial = conf_long(key, v, 0, LONG_MAX / 4);
        } else if (!strcmp(key, "backoff_max_ms")) {
            M.backoff_max = conf_long(key, v, 0, LONG_MAX / 4);
        } else if (!strcmp(key, "backoff_reset_ms")) {
            M.backoff_reset = conf_long(key, v, 0, LONG_MAX / 4);
        } else if (!strcmp(key, "container")) {
            if (!*v || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..") || v[0] == '.')
                conf_die("container: '%s' is not a valid name", v);
            for (size_t i = 0; i < M.nctrs; i++)
                if (!strcmp(M.ctrs[i].name, v))
                    conf_die("container '%s' appears twice", v);
            if (M.nctrs == cap) {
                cap = cap ? cap * 2 : 4;
                struct ctr *n = realloc(M.ctrs, cap * sizeof *n);
                if (!n)
                    die("out of memory");
                M.ctrs = n;
            }
            c = &M.ctrs[M.nctrs++];
            memset(c, 0, sizeof *c);
            c->name = xstrdup(v);
            c->line = conf_line;
            p = NULL;
        } else if (!c) {
            conf_die("unknown key '%s' (or a container key before any 'container' line)", key);
        } else if (!strcmp(key, "kind")) {
            if (strcmp(v, "init") && strcmp(v, "app"))
                conf_die("kind: want init or app, not '%s'", v);
            c->init = v[0] == 'i';
        } else if (!strcmp(key, "id")) {
            c->id = xstrdup(v);
        } else if (!strcmp(key, "bundle")) {
            conf_abs_path(key, v);
            c->bundle = xstrdup(v);
        } else if (!strcmp(key, "prestart_arg")) {
            strv_add(&c->prestart_arg, v);
        } else if (!strcmp(key, "prestart_first")) {
            if (strcmp(v, "true") && strcmp(v, "false"))
                conf_die("prestart_first: want true or false, not '%s'", v);
            c->prestart_first = v[0] == 't';
        } else if (!strcmp(key, "oom_file")) {
            conf_abs_path(key, v);
            c->oom_file = xstrdup(v);
        } else if (!strcmp(key, "probe")) {
            int k = 0;
            while (k < PROBE_KINDS && strcmp(v, probe_names[k]))
                k++;
            if (k == PROBE_KINDS)
                conf_die("probe: want liveness, readiness or startup, not '%s'", v);
            if (c->probes[k])
                conf_die("container '%s' has two %s probes", c->name, v);
            p = c->probes[k] = new_probe();
        } else if (!strncmp(key, "probe_", 6)) {
            if (!p)
                conf_die("%s before any 'probe' line", key);
            conf_probe_key(p, key, v);
        } else {
            conf_die("unknown key '%s'", key);
        }
    }

    conf_line = 0;
    if (!M.runtime_arg.n)
        die("monitor.conf: no runtime_arg");
    if (!M.runtime_root)
        die("monitor.conf: no runtime_root");
    for (size_t i = 0; i < M.nctrs; i++) {
        c = &M.ctrs[i];
        conf_line = c->line;
        if (!c->id || !c->bundle)
            conf_die("container '%s' needs an id and a bundle", c->name);
        for (int k = 0; k < PROBE_KINDS; k++) {
            if (c->probes[k] && c->probes[k]->how == HOW_NONE)
                conf_die("the %s probe of '%s' has no handler", probe_names[k], c->name);
            if (c->probes[k] && c->probes[k]->https && !M.https_probe_arg.n)
                conf_die("the %s probe of '%s' is https: that needs https_probe_arg",
                         probe_names[k], c->name);
        }
    }
}

static void conf_load(void)
{
    int fd = openat(M.dirfd, "monitor.conf", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open %s/monitor.conf: %s", M.dir, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("stat %s/monitor.conf: %s", M.dir, strerror(errno));
    char *text = xcalloc(1, (size_t)st.st_size + 1);
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, text + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read %s/monitor.conf: %s", M.dir, strerror(errno));
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    M.policy = POLICY_ALWAYS;
    M.grace = 30000;
    M.log_max_bytes = 10 << 20;
    M.log_max_files = 5;
    M.backoff_initial = 10000;
    M.backoff_max = 300000;
    M.backoff_reset = 600000;
    conf_parse(text);
    free(text);
}

/* ------------------------------------------------------------------ status files */

static void put(char **w, char *end, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char **w, char *end, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*w, (size_t)(end - *w), fmt, ap);
    va_end(ap);
    if (n > 0)
        *w += n < end - *w ? n : end - *w - 1;
}

/* Messages are one line. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
}

static void write_status(struct ctr *c)
{
    char buf[2048], *w = buf, *end = buf + sizeof buf;
    struct run_record *r = &c->cur;
    bool terminated = !strcmp(c->state, "terminated");

    one_line(r->message);
    put(&w, end, "state=%s\n", c->state);
    if (r->reason)
        put(&w, end, "reason=%s\n", r->reason);
    if (r->message[0])
        put(&w, end, "message=%s\n", r->message);
    if (terminated)
        put(&w, end, "exit_code=%d\n", r->exit_code);
    if (terminated && r->signal)
        put(&w, end, "signal=%d\n", r->signal);
    put(&w, end, "restart_count=%d\n", c->restart_count);
    if (!strcmp(c->state, "running"))
        put(&w, end, "pid=%d\n", c->pid);
    if (r->started_at[0])
        put(&w, end, "started_at=%s\n", r->started_at);
    if (terminated && r->finished_at[0])
        put(&w, end, "finished_at=%s\n", r->finished_at);
    put(&w, end, "ready=%s\n", c->ready ? "true" : "false");
    if (c->has_last) {
        struct run_record *l = &c->last;
        put(&w, end, "last_reason=%s\nlast_exit_code=%d\n", l->reason, l->exit_code);
        if (l->signal)
            put(&w, end, "last_signal=%d\n", l->signal);
        if (l->message[0])
            put(&w, end, "last_message=%s\n", l->message);
        if (l->started_at[0])
            put(&w, end, "last_started_at=%s\n", l->started_at);
        put(&w, end, "last_finished_at=%s\n", l->finished_at);
    }
    int ret = write_atomic(M.statusfd, c->name, buf, (size_t)(w - buf));
    if (ret < 0)
        warn("write %s/status/%s: %s", M.dir, c->name, strerror(-ret));
}

static void set_state(struct ctr *c, const char *state, const char *reason, const char *msg)
{
    c->state = state;
    c->cur.reason = reason;
    snprintf(c->cur.message, sizeof c->cur.message, "%s", msg ? msg : "");
    write_status(c);
}

static void write_pod_status(const char *phase, const char *finished_at)
{
    char buf[1024], *w = buf, *end = buf + sizeof buf;
    M.phase = phase;
    one_line(M.pod_message);
    put(&w, end, "phase=%s\nmonitor_pid=%d\n", phase, getpid());
    if (M.started_at[0])
        put(&w, end, "started_at=%s\n", M.started_at);
    if (finished_at)
        put(&w, end, "finished_at=%s\n", finished_at);
    if (M.pod_message[0])
        put(&w, end, "message=%s\n", M.pod_message);
    /* Beside status/, not in it: any container name is free for status/<name>. */
    int ret = write_atomic(M.dirfd, "pod.status", buf, (size_t)(w - buf));
    if (ret < 0)
        warn("write %s/pod.status: %s", M.dir, strerror(-ret));
}

/* ------------------------------------------------------------------ children */

enum { SPAWN_GROUP = 1, SPAWN_POD_NET = 2 };

/* Every child runs in the namespaces the monitor was started in, not the pod's: finish_arg
 * tears down the host side of the pod network, and the runtime joins the pod's namespaces
 * by path from its bundle anyway. The exception is SPAWN_POD_NET (https probes): it stays
 * in the pod's network namespace, where the monitor's own http and tcp probes connect from.
 * SPAWN_GROUP gives the child a process group of its own. The signal mask and dispositions
 * are reset for it. */
static pid_t spawn(char *const argv[], int in, int out, int err, int flags)
{
    bool own_group = flags & SPAWN_GROUP;
    pid_t pid = fork();
    if (pid != 0) {
        if (pid < 0)
            warn("fork for %s: %s", argv[0], strerror(errno));
        else if (own_group)
            setpgid(pid, pid); /* here too: a kill(-pid) may come before the child's own */
        return pid;
    }
    sigset_t none;
    sigemptyset(&none);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    static const int types[3] = {CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS};
    for (int i = (flags & SPAWN_POD_NET) ? 1 : 0; i < 3; i++)
        if (M.host_ns[i] >= 0 && setns(M.host_ns[i], types[i]) < 0) {
            dprintf(err, "corral-monitor: setns(host namespace) for %s: %s\n", argv[0],
                    strerror(errno));
            _exit(127);
        }
    if (own_group)
        setpgid(0, 0);
    /* dup2 clears close-on-exec on the copies; fds already at 1 and 2 have none. */
    if ((in != 0 && dup2(in, 0) < 0) || (out != 1 && dup2(out, 1) < 0) ||
        (err != 2 && dup2(err, 2) < 0))
        _exit(127);
    execvp(argv[0], argv);
    dprintf(2, "corral-monitor: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* `<runtime_arg...> --root R <args...>` */
static pid_t runtime(const char *const args[], size_t nargs, int out, int err, bool own_group)
{
    size_t n = M.runtime_arg.n;
    char **argv = xcalloc(n + 2 + nargs + 1, sizeof *argv);
    memcpy(argv, M.runtime_arg.v, n * sizeof *argv);
    argv[n] = "--root";
    argv[n + 1] = M.runtime_root;
    memcpy(argv + n + 2, args, nargs * sizeof *argv);
    pid_t pid = spawn(argv, M.devnull, out, err, own_group ? SPAWN_GROUP : 0);
    free(argv);
    return pid;
}

static void runtime_kill(struct ctr *c, const char *sig)
{
    const char *args[] = {"kill", c->id, sig};
    pid_t pid = runtime(args, 3, M.devnull, STDERR_FILENO, false);
    for (size_t i = 0; pid > 0 && i < sizeof M.misc / sizeof M.misc[0]; i++)
        if (M.misc[i] == 0) {
            M.misc[i] = pid;
            break;
        }
}

static bool misc_running(void)
{
    for (size_t i = 0; i < sizeof M.misc / sizeof M.misc[0]; i++)
        if (M.misc[i])
            return true;
    return false;
}

static void pid_file(struct ctr *c, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.pid", M.runtime_root, c->id);
}

/* ------------------------------------------------------------------ logs */

static void log_open(struct ctr *c)
{
    char name[32];
    if (c->logdir < 0) {
        mkdirat(M.dirfd, "logs", 0755);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "logs/%s", c->name);
        mkdirat(M.dirfd, path, 0755);
        c->logdir = openat(M.dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->logdir < 0) {
            warn("open %s/%s: %s", M.dir, path, strerror(errno));
            return;
        }
    }
    snprintf(name, sizeof name, "%d.log", c->restart_count);
    c->log_fd = openat(c->logdir, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (c->log_fd < 0) {
        warn("open %s/logs/%s/%s: %s", M.dir, c->name, name, strerror(errno));
        return;
    }
    struct stat st;
    c->log_size = fstat(c->log_fd, &st) == 0 ? st.st_size : 0;
}

/* N.log -> N.log.1 -> N.log.2 ...; rename() replaces the oldest kept one. */
static void log_rotate(struct ctr *c)
{
    char from[48], to[48];
    close(c->log_fd);
    c->log_fd = -1;
    if (M.log_max_files == 0) {
        snprintf(from, sizeof from, "%d.log", c->restart_count);
        unlinkat(c->logdir, from, 0);
    }
    for (long i = M.log_max_files; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%d.log", c->restart_count);
        else
            snprintf(from, sizeof from, "%d.log.%ld", c->restart_count, i - 1);
        snprintf(to, sizeof to, "%d.log.%ld", c->restart_count, i);
        if (renameat(c->logdir, from, c->logdir, to) < 0 && errno != ENOENT)
            warn("rotate %s/logs/%s/%s: %s", M.dir, c->name, from, strerror(errno));
    }
    log_open(c);
}

static void log_entry(struct ctr *c, struct stream *s, bool partial, const char *text, size_t len)
{
    if (s == &c->err && (c->step == ST_CREATE || c->step == ST_START) &&
        len > 11 && !memcmp(text, "corral-oci:", 11))
        snprintf(c->lasterr, sizeof c->lasterr, "%.*s", (int)len, text);
    else if (s == &c->err && c->step == ST_PRESTART && len > 0)
        snprintf(c->lasterr, sizeof c->lasterr, "%.*s", (int)len, text);
    if (c->log_fd < 0)
        return;
    char hdr[64];
    rfc3339(hdr);
    size_t n = strlen(hdr);
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, " %s %c ", s->name, partial ? 'P' : 'F');
    int64_t total = (int64_t)(n + len + 1);
    if (c->log_size > 0 && c->log_size + total > M.log_max_bytes) {
        log_rotate(c);
        if (c->log_fd < 0)
            return;
    }
    struct iovec iov[3] = {{hdr, n}, {(void *)text, len}, {"\n", 1}};
    if (writev(c->log_fd, iov, 3) < 0)
        warn("write %s/logs/%s: %s", M.dir, c->name, strerror(errno));
    c->log_size += total;
}

/* All streams read through one buffer; a stream keeps only its pending partial line (in a
 * buffer of its own size), so idle containers cost no memory. */
static char scratch[LINE_MAX_BYTES];

/* Emit the complete lines among the `len` bytes in scratch; a full buffer or the end of the
 * stream emits the rest as a partial line, else the rest is kept for the next read. */
static void stream_lines(struct ctr *c, struct stream *s, size_t len, bool eof)
{
    size_t start = 0;
    char *nl;
    while ((nl = memchr(scratch + start, '\n', len - start))) {
        log_entry(c, s, false, scratch + start, (size_t)(nl - (scratch + start)));
        start = (size_t)(nl - scratch) + 1;
    }
    if (start < len && (eof || len - start == LINE_MAX_BYTES)) {
        log_entry(c, s, true, scratch + start, len - start);
        start = len;
    }
    s->len = len - start;
    if (s->len == 0) {
        free(s->buf);
        s->buf = NULL;
        return;
    }
    char *keep = realloc(s->buf, s->len);
    if (!keep)
        die("out of memory");
    memcpy(keep, scratch + start, s->len);
    s->buf = keep;
}

static void stream_close(struct ctr *c, struct stream *s)
{
    if (s->fd >= 0) {
        if (s->len) {
            memcpy(scratch, s->buf, s->len);
            stream_lines(c, s, s->len, true);
        }
        close(s->fd);
        s->fd = -1;
    }
    if (s->wfd >= 0)
        close(s->wfd);
    s->wfd = -1;
    free(s->buf);
    s->buf = NULL;
    s->len = 0;
}

/* Read what the pipe holds now (up to 1 MiB, so a chatty container cannot starve the
 * others: poll() comes back for the rest); at EOF flush and close. */
static void stream_read(struct ctr *c, struct stream *s)
{
    for (int i = 0; i < 64 && s->fd >= 0; i++) {
        if (s->len)
            memcpy(scratch, s->buf, s->len);
        ssize_t n = read(s->fd, scratch + s->len, LINE_MAX_BYTES - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (n < 0)
                warn("read %s of %s: %s", s->name, c->name, strerror(errno));
            stream_close(c, s);
            return;
        }
        stream_lines(c, s, s->len + (size_t)n, false);
    }
}

static int stream_open(struct stream *s)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* Only our end is non-blocking: the container's stdout stays an ordinary pipe. */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    s->fd = p[0];
    s->wfd = p[1];
    return 0;
}

/* ------------------------------------------------------------------ container steps */

static void probe_exec_done(struct ctr *c, int k, int st);
static void job_done(struct ctr *c, int st);

/* Run a step's command (the runtime's, or `argv` when args is NULL); a failed fork is a
 * failed command. */
static void start_job(struct ctr *c, enum step step, const char *const args[], size_t n,
                      int out, int err)
{
    M.changes++;
    c->step = step;
    c->job = args ? runtime(args, n, out, err, false)
                  : spawn(c->prestart_arg.v, M.devnull, out, err, 0);
    if (c->job < 0) {
        c->job = 0;
        job_done(c, 127 << 8);
    }
}

/* The "oom_kill N" line of memory.oom_control (v1) or memory.events (v2); 0 if none. */
static long read_oom(struct ctr *c)
{
    char buf[1024];
    if (!c->oom_file || read_small(AT_FDCWD, c->oom_file, buf, sizeof buf) < 0)
        return 0;
    for (char *line = buf; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, "oom_kill ", 9))
            return strtol(line + 9, NULL, 10);
    return 0;
}

static void probes_stop(struct ctr *c)
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

static void launch_create(struct ctr *c)
{
    char pidf[PATH_MAX];
    pid_file(c, pidf, sizeof pidf);
    unlink(pidf);
    c->lasterr[0] = 0;
    c->exited = c->start_failed = c->abandon = false;
    c->kill_stage = 0;
    c->why_killed[0] = 0;
    memset(&c->cur, 0, sizeof c->cur);
    log_open(c);
    int ret = stream_open(&c->out);
    if (ret == 0)
        ret = stream_open(&c->err);
    if (ret < 0)
        die("pipe for %s: %s", c->name, strerror(-ret));
    set_state(c, "waiting", "ContainerCreating", NULL);
    /* A restart is a new container, as in Kubernetes: prestart_arg gives it a fresh rootfs
     * first (with prestart_first, it also runs before the first create: it mounts subPaths
     * after the init containers ran). Its output goes to the container's pipes, like the
     * runtime's. */
    bool again = c->created_once;
    c->created_once = true;
    if ((again || c->prestart_first) && c->prestart_arg.n) {
        start_job(c, ST_PRESTART, NULL, 0, c->out.wfd, c->err.wfd);
        return;
    }
    const char *args[] = {"create", "--bundle", c->bundle, "--pid-file", pidf, c->id};
    start_job(c, ST_CREATE, args, 6, c->out.wfd, c->err.wfd);
}

/* Start (or restart) a container: delete what the runtime still has of it first. */
static void launch(struct ctr *c)
{
    if (c->created) {
        const char *args[] = {"delete", "--force", c->id};
        start_job(c, ST_DELETE, args, 3, M.devnull, STDERR_FILENO);
        return;
    }
    launch_create(c);
}

/* A run ended (or never began): record it, then decide whether it runs again. */
static void run_done(struct ctr *c, const char *reason, int code, int sig, const char *msg)
{
    M.changes++;
    stream_read(c, &c->out);
    stream_read(c, &c->err);
    stream_close(c, &c->out);
    stream_close(c, &c->err);
    if (c->log_fd >= 0)
        close(c->log_fd);
    c->log_fd = -1;
    probes_stop(c);
    c->ready = false;
    c->pid = 0;

    if (c->abandon) { /* stopped before it was started: it never ran */
        c->step = ST_DONE;
        set_state(c, "waiting", c->cur.reason ? c->cur.reason : "ContainerCreating", NULL);
        return;
    }
    c->cur.reason = reason;
    c->cur.exit_code = code;
    c->cur.signal = sig;
    snprintf(c->cur.message, sizeof c->cur.message, "%s", msg ? msg : "");
    rfc3339(c->cur.finished_at);
    c->state = "terminated";
    c->succeeded = code == 0;
    write_status(c);
    warn("container %s exited: %s, exit code %d", c->name, reason, code);

    bool again = !M.stopping && !M.finishing;
    if (c->init)
        again = again && code != 0 && M.policy != POLICY_NEVER;
    else if (M.policy == POLICY_ON_FAILURE)
        again = again && code != 0;
    else if (M.policy == POLICY_NEVER)
        again = false;
    if (!again) {
        c->step = ST_DONE;
        if (c->init && code != 0)
            M.init_failed = true;
        return;
    }
    /* Kubelet backoff: initial * 2^(k-1) up to max; a long enough run starts over. */
    int64_t now = now_ms();
    if (c->started_mono && now - c->started_mono >= M.backoff_reset)
        c->backoff_k = 0;
    c->backoff_k++;
    int64_t delay = M.backoff_initial;
    for (int i = 1; i < c->backoff_k && delay < M.backoff_max; i++)
        delay *= 2;
    delay = min64(delay, M.backoff_max);
    c->restart_at = now + delay;
    c->step = ST_BACKOFF;
    c->last = c->cur;
    c->has_last = true;
    char msg2[MSG_MAX];
    snprintf(msg2, sizeof msg2, "back-off %lld ms restarting container %s",
             (long long)delay, c->name);
    warn("container %s: %s", c->name, msg2);
    memset(&c->cur, 0, sizeof c->cur);
    set_state(c, "waiting", "CrashLoopBackOff", msg2);
}

/* Both the process and the step's job are over: what kind of end was it? */
static void process_gone(struct ctr *c)
{
    int st = c->wstatus, code, sig = 0;
    if (WIFSIGNALED(st)) {
        sig = WTERMSIG(st);
        code = 128 + sig;
    } else {
        code = WEXITSTATUS(st);
    }
    if (c->start_failed) {
        run_done(c, "StartError", 128, 0, c->lasterr[0] ? c->lasterr : "start failed");
        return;
    }
    const char *reason = code == 0 ? "Completed" : "Error";
    if (c->oom_file && read_oom(c) > c->oom_base)
        reason = "OOMKilled";
    run_done(c, reason, code, sig, c->why_killed);
}

static void job_done(struct ctr *c, int st)
{
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    M.changes++;
    c->job = 0;
    /* Read the runtime's error line (if any) while we still know it came from the runtime. */
    stream_read(c, &c->out);
    stream_read(c, &c->err);
    switch (c->step) {
    case ST_DELETE:
        if (!ok)
            warn("delete %s (%s) failed: status %d", c->name, c->id, st);
        c->created = false;
        if (M.finishing || M.stopping) {
            c->step = ST_DONE;
            return;
        }
        launch_create(c);
        return;
    case ST_PRESTART: {
        if (!ok) {
            char msg[MSG_MAX];
            if (c->lasterr[0])
                snprintf(msg, sizeof msg, "%s", c->lasterr);
            else
                snprintf(msg, sizeof msg, "prestart %s failed: status %d", c->prestart_arg.v[0],
                         st);
            run_done(c, "StartError", 128, 0, msg);
            return;
        }
        if (M.stopping) { /* nothing was created: the run never began */
            c->abandon = true;
            run_done(c, NULL, 0, 0, NULL);
            return;
        }
        char pidf[PATH_MAX];
        pid_file(c, pidf, sizeof pidf);
        c->lasterr[0] = 0;
        const char *args[] = {"create", "--bundle", c->bundle, "--pid-file", pidf, c->id};
        start_job(c, ST_CREATE, args, 6, c->out.wfd, c->err.wfd);
        return;
    }
    case ST_CREATE: {
        char pidf[PATH_MAX], buf[32] = "";
        pid_file(c, pidf, sizeof pidf);
        if (!ok || read_small(AT_FDCWD, pidf, buf, sizeof buf) < 0)
            buf[0] = 0;
        unlink(pidf);
        c->pid = (pid_t)strtol(buf, NULL, 10);
        c->created = ok; /* even without a pid: delete whatever it left */
        if (!ok || c->pid <= 0) {
            char msg[MSG_MAX];
            snprintf(msg, sizeof msg, "%s", c->lasterr[0] ? c->lasterr : "create failed");
            c->pid = 0;
            run_done(c, "StartError", 128, 0, msg);
            return;
        }
        c->oom_base = read_oom(c);
        /* The process may have died and been reaped before we knew its pid. */
        for (size_t i = 0; i < sizeof M.unknown / sizeof M.unknown[0]; i++)
            if (M.unknown[i] == c->pid) {
                M.unknown[i] = 0;
                c->exited = true;
                c->wstatus = M.unknown_status[i];
            }
        if (M.stopping) {
            /* It waits on its exec fifo and never ran user code: no grace needed. */
            c->abandon = true;
            if (!c->exited)
                kill(c->pid, SIGKILL);
            c->step = ST_UP;
            if (c->exited)
                process_gone(c);
            return;
        }
        const char *args[] = {"start", c->id};
        start_job(c, ST_START, args, 2, c->out.wfd, c->err.wfd);
        return;
    }
    case ST_START:
        /* Nobody else writes into the container's pipes now: keep only its copies, so
         * we see EOF when it closes them. */
        close(c->out.wfd);
        close(c->err.wfd);
        c->out.wfd = c->err.wfd = -1;
        c->step = ST_UP;
        if (!ok) {
            c->start_failed = true;
            if (!c->exited)
                kill(c->pid, SIGKILL);
        } else {
            c->started_mono = now_ms();
            rfc3339(c->cur.started_at);
            c->startup_done = !c->probes[PROBE_STARTUP];
            c->ready = c->startup_done && !c->probes[PROBE_READINESS];
            for (int k = 0; k < PROBE_KINDS; k++)
                if (c->probes[k]) {
                    c->probes[k]->next_at = c->started_mono + c->probes[k]->initial_delay;
                    c->probes[k]->successes = c->probes[k]->failures = 0;
                }
            if (!c->exited)
                set_state(c, "running", NULL, NULL);
        }
        if (c->exited)
            process_gone(c);
        return;
    default:
        warn("job of %s ended in step %d", c->name, c->step);
    }
}

/* TERM now, KILL at `deadline` (now when the grace is 0). A container being killed is not
 * ready and gets no more probes. */
static void terminate(struct ctr *c, int64_t deadline)
{
    if (c->kill_stage == 0) {
        M.changes++;
        c->kill_stage = 1;
        c->kill_at = deadline;
        runtime_kill(c, "TERM");
        probes_stop(c);
        if (c->ready) {
            c->ready = false;
            write_status(c);
        }
    } else if (c->kill_stage == 1 && deadline < c->kill_at) {
        M.changes++;
        c->kill_at = deadline;
    }
}

static void begin_stop(void);

static void on_child(pid_t pid, int st)
{
    if (pid == M.reaper) {
        M.reaper = 0;
        warn("the pod's pid 1 (%d) died (status %d): stopping the pod", pid, st);
        begin_stop();
        return;
    }
    for (size_t i = 0; i < M.nctrs; i++) {
        struct ctr *c = &M.ctrs[i];
        if (pid == c->job) {
            job_done(c, st);
            return;
        }
        if (pid == c->pid && !c->exited) {
            c->exited = true;
            c->wstatus = st;
            if (c->step == ST_UP)
                process_gone(c);
            return; /* else the `start` job is not over yet: it finishes the run */
        }
        for (int k = 0; k < PROBE_KINDS; k++) {
            struct probe *p = c->probes[k];
            if (p && pid == p->pid) {
                probe_exec_done(c, k, st);
                return;
            }
        }
    }
    for (size_t i = 0; i < sizeof M.misc / sizeof M.misc[0]; i++)
        if (M.misc[i] == pid) {
            M.misc[i] = 0;
            return;
        }
    /* A container process whose pid file we have not read yet (or a stray orphan). */
    M.unknown[M.unknown_next] = pid;
    M.unknown_status[M.unknown_next] = st;
    M.unknown_next = (M.unknown_next + 1) % (sizeof M.unknown / sizeof M.unknown[0]);
}

/* ------------------------------------------------------------------ probes */

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

static void probe_exec_done(struct ctr *c, int k, int st)
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
        p->pid = runtime(args, n + 2, M.devnull, M.devnull, true);
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

static void probe_net_event(struct ctr *c, int k)
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

/* ------------------------------------------------------------------ the loop */

static bool ctr_busy(const struct ctr *c)
{
    return c->step != ST_IDLE && c->step != ST_DONE;
}

/* Start what is due; returns the next deadline. */
static int64_t timers(int64_t now)
{
    int64_t next = NEVER;
    for (size_t i = 0; i < M.nctrs; i++) {
        struct ctr *c = &M.ctrs[i];
        if (c->step == ST_BACKOFF) {
            if (now >= c->restart_at) {
                c->restart_count++;
                launch(c);
            } else {
                next = min64(next, c->restart_at);
            }
        }
        if (c->step != ST_UP || c->exited)
            continue;
        if (c->kill_stage == 1) {
            if (now >= c->kill_at) {
                c->kill_stage = 2;
                runtime_kill(c, "KILL");
                /* Also directly: a wedged runtime must not keep the pod alive. */
                kill(c->pid, SIGKILL);
            } else {
                next = min64(next, c->kill_at);
            }
        }
        if (c->kill_stage || c->start_failed || c->abandon)
            continue;
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
            if (c->kill_stage)
                break;
            next = min64(next, p->next_at);
        }
    }
    return next;
}

static void begin_stop(void)
{
    if (M.stopping)
        return;
    M.stopping = true;
    M.changes++;
    int64_t grace = M.grace;
    char buf[32];
    if (read_small(M.dirfd, "stop-grace", buf, sizeof buf) >= 0) {
        int64_t ms = parse_seconds(buf);
        if (ms >= 0)
            grace = ms;
        else
            warn("ignoring %s/stop-grace: not a number of seconds", M.dir);
    }
    warn("stopping the pod, grace %lld ms", (long long)grace);
    M.stop_deadline = now_ms() + grace;
    for (size_t i = 0; i < M.nctrs; i++) {
        struct ctr *c = &M.ctrs[i];
        if (c->step == ST_BACKOFF || c->step == ST_IDLE)
            c->step = ST_DONE;
        else if (c->step == ST_UP && !c->exited && !c->start_failed && !c->abandon)
            terminate(c, M.stop_deadline);
    }
}

static const char *pod_phase(void)
{
    if (M.init_failed)
        return "Failed";
    if (!M.apps_started)
        return M.finishing ? "Failed" : "Pending";
    if (!M.finishing)
        return "Running";
    for (size_t i = 0; i < M.nctrs; i++)
        if (!M.ctrs[i].init && (!M.ctrs[i].succeeded || M.ctrs[i].state[0] != 't'))
            return "Failed";
    return "Succeeded";
}

/* Level-triggered: look at everything, do what is due. Returns true when the pod is over. */
static bool advance(void)
{
    if (M.stopping) {
        /* Containers that became killable since the stop began (a start that finished)
         * get the same deadline. */
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            if (c->step == ST_UP && !c->exited && !c->start_failed && !c->abandon)
                terminate(c, M.stop_deadline);
        }
    } else if (!M.finishing) {
        bool inits_done = true;
        for (size_t i = 0; i < M.nctrs && !M.init_failed; i++) {
            struct ctr *c = &M.ctrs[i];
            if (!c->init || c->succeeded)
                continue;
            inits_done = false;
            if (c->step == ST_IDLE)
                launch(c);
            break;
        }
        if (inits_done && !M.init_failed && !M.apps_started) {
            M.apps_started = true;
            for (size_t i = 0; i < M.nctrs; i++)
                if (!M.ctrs[i].init)
                    launch(&M.ctrs[i]);
        }
    }
    for (size_t i = 0; i < M.nctrs; i++)
        if (ctr_busy(&M.ctrs[i]))
            return false;
    if (misc_running())
        return false;
    if (!M.finishing) {
        /* Everything has ended: delete the containers from the runtime, in parallel. */
        M.finishing = true;
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            if (c->created)
                launch(c);
        }
        return advance();
    }
    return true;
}

static void loop(void)
{
    size_t cap = 1 + M.nctrs * (2 + PROBE_KINDS);
    struct pollfd *pfd = xcalloc(cap, sizeof *pfd);
    struct {
        struct ctr *c;
        struct stream *s;
        int k;
    } *what = xcalloc(cap, sizeof *what);

    for (;;) {
        /* Until nothing changes: a step can make another due (a probe failure starts a
         * kill with a deadline, a failed fork ends a run), and the poll timeout must see
         * every deadline. */
        int64_t now, next;
        unsigned before;
        bool over;
        do {
            before = M.changes;
            over = advance();
            now = now_ms();
            next = timers(now);
        } while (!over && M.changes != before);
        if (over)
            break;
        const char *phase = pod_phase();
        if (phase != M.phase)
            write_pod_status(phase, NULL);
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = M.sigfd, .events = POLLIN};
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            struct stream *ss[2] = {&c->out, &c->err};
            for (int j = 0; j < 2; j++)
                if (ss[j]->fd >= 0) {
                    what[n].c = c;
                    what[n].s = ss[j];
                    pfd[n++] = (struct pollfd){.fd = ss[j]->fd, .events = POLLIN};
                }
            for (int k = 0; k < PROBE_KINDS; k++) {
                struct probe *p = c->probes[k];
                if (p && p->fd >= 0) {
                    what[n].c = c;
                    what[n].s = NULL;
                    what[n].k = k;
                    pfd[n++] = (struct pollfd){
                        .fd = p->fd, .events = p->phase == NET_RECV ? POLLIN : POLLOUT};
                }
            }
        }
        int timeout = -1;
        if (next != NEVER)
            timeout = next <= now ? 0 : (int)min64(next - now, INT_MAX);
        if (poll(pfd, n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        for (size_t i = 1; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (what[i].s)
                stream_read(what[i].c, what[i].s);
            else if (what[i].c->probes[what[i].k]->fd == pfd[i].fd)
                probe_net_event(what[i].c, what[i].k);
        }
        if (pfd[0].revents) {
            struct signalfd_siginfo si;
            while (read(M.sigfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                    begin_stop();
            }
            pid_t pid;
            int st;
            while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
                on_child(pid, st);
        }
    }
    free(pfd);
    free(what);
}

/* ------------------------------------------------------------------ start-up */

/* pid 1 of the pod's pid namespace (--share-pid): it only reaps. */
static void reaper_main(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_DUMPABLE, 0); /* the pod's containers see it: keep them off its memory */
    prctl(PR_SET_NAME, "corral-pod-init");
    syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        siginfo_t si;
        sigwaitinfo(&set, &si);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}

static int open_ns(const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    return fd;
}

/* A new network namespace has only lo, and it is down: probes and the containers talk over
 * 127.0.0.1, so bring it up as CNI's loopback plugin would. */
static void loopback_up(void)
{
    struct ifreq ifr = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket for lo: %s", strerror(errno));
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        die("ioctl(lo, SIOCGIFFLAGS): %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        die("ioctl(lo, SIOCSIFFLAGS): %s", strerror(errno));
    close(fd);
}

static void detach_and_unshare(void)
{
    /* Fork, setsid, fork: the monitor is nobody's child and no session leader, so it never
     * gets a controlling terminal. The lock (an flock on the open directory) is shared with
     * the forks and stays held by the survivor. */
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0) {
        int st;
        waitpid(pid, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
    }
    if (setsid() < 0)
        die("setsid: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0)
        _exit(0);

    int flags = CLONE_NEWIPC;
    M.host_ns[1] = open_ns("ipc");
    if (!M.host_network) {
        flags |= CLONE_NEWNET | CLONE_NEWUTS;
        M.host_ns[0] = open_ns("net");
        M.host_ns[2] = open_ns("uts");
    }
    if (unshare(flags) < 0)
        die("unshare(%s): %s", M.host_network ? "ipc" : "net, ipc, uts", strerror(errno));
    if (!M.host_network)
        loopback_up();

    /* Orphans of the containers (and the container processes themselves, once `create`
     * exits) are reparented to us. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));

    if (M.share_pid) {
        /* unshare(CLONE_NEWPID) only moves our future children: the first becomes pid 1 of
         * the new namespace. Then we go back, so the runtime and probes we fork stay in
         * ours (a pid namespace whose pid 1 died refuses new members). */
        int own = open_ns("pid");
        if (unshare(CLONE_NEWPID) < 0)
            die("unshare(pid): %s", strerror(errno));
        M.reaper = fork();
        if (M.reaper < 0)
            die("fork pod pid 1: %s", strerror(errno));
        if (M.reaper == 0)
            reaper_main();
        if (setns(own, CLONE_NEWPID) < 0)
            die("setns(back to our pid namespace): %s", strerror(errno));
        close(own);
    }
}

static void write_pidfile(void)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", getpid());
    int ret = write_atomic(M.dirfd, "monitor.pid", buf, (size_t)n);
    if (ret < 0)
        die("write %s/monitor.pid: %s", M.dir, strerror(-ret));
}

/* Wait for `go`. Returns only on go; EOF, junk or a stop signal end the monitor. */
static void handshake(void)
{
    dprintf(M.sync_w, "ready %d %d\n", getpid(), M.reaper > 0 ? M.reaper : 0);
    char buf[64];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = M.sync_r, .events = POLLIN},
                                {.fd = M.sigfd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            if (read(M.sigfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD)
                die("stopped by signal %d before go", si.ssi_signo);
            if (M.reaper > 0 && waitpid(M.reaper, NULL, WNOHANG) == M.reaper) {
                M.reaper = 0;
                die("the pod's pid 1 died before go");
            }
        }
        if (!pfd[0].revents)
            continue;
        ssize_t n = read(M.sync_r, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("the sync pipe closed before go");
        len += (size_t)n;
        buf[len] = 0;
        if (!strcmp(buf, "go\n"))
            return;
        if (strchr(buf, '\n') || len == sizeof buf - 1)
            die("sync pipe: want 'go', got '%.*s'", (int)strcspn(buf, "\n"), buf);
    }
}

static void usage(void)
{
    dprintf(2, "usage: corral-monitor [--host-network] [--share-pid] POD_DIR SYNC_FD\n");
    exit(2);
}

/* The monitor's fork is pid 1 of a pod's shared pid namespace, next to the pod's containers:
 * run from a sealed memfd copy of ourselves (as runc does with its own binary), so that no
 * container can get at the host's corral-monitor through /proc/<pid>/exe (CVE-2019-5736). */
static void run_sealed_copy(char **argv)
{
    extern char **environ;
    unsigned int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        die("open /proc/self/exe: %s", strerror(errno));
    int have = fcntl(self, F_GET_SEALS);
    if (have >= 0 && ((unsigned int)have & seals) == seals) {
        close(self); /* already the sealed copy */
        return;
    }
    struct stat st;
    if (fstat(self, &st) < 0)
        die("stat /proc/self/exe: %s", strerror(errno));
    int fd = memfd_create("corral-monitor", MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x10U /* EXEC */);
    if (fd < 0 && errno == EINVAL) /* before Linux 6.3 */
        fd = memfd_create("corral-monitor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        die("memfd_create: %s", strerror(errno));
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n = sendfile(fd, self, NULL, (size_t)(st.st_size - done));
        if (n <= 0)
            die("copy /proc/self/exe to a memfd: %s", n < 0 ? strerror(errno) : "short");
        done += n;
    }
    close(self);
    if (fcntl(fd, F_ADD_SEALS, seals | F_SEAL_FUTURE_WRITE) < 0)
        die("seal the memfd copy: %s", strerror(errno));
    fexecve(fd, argv, environ);
    die("exec the sealed copy: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    int i = 1;
    run_sealed_copy(argv);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--host-network"))
            M.host_network = true;
        else if (!strcmp(argv[i], "--share-pid"))
            M.share_pid = true;
        else
            usage();
    }
    if (argc - i != 2)
        usage();
    M.dir = argv[i];
    char *end;
    long fd = strtol(argv[i + 1], &end, 10);
    if (*end || end == argv[i + 1] || fd < 3 || fd > INT_MAX - 1)
        usage();
    if (fcntl((int)fd, F_GETFD) < 0 || fcntl((int)fd + 1, F_GETFD) < 0) {
        dprintf(2, "corral-monitor: sync fds %ld and %ld must be open\n", fd, fd + 1);
        return 1;
    }
    M.sync_w = (int)fd;
    M.sync_r = (int)fd + 1;
    signal(SIGPIPE, SIG_IGN); /* a closed sync pipe or probe socket is an error, not death */

    M.dirfd = open(M.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (M.dirfd < 0)
        die("open %s: %s", M.dir, strerror(errno));
    /* flock on the directory itself follows it through renames (run/ -> exited/). */
    if (flock(M.dirfd, LOCK_EX | LOCK_NB) < 0)
        die("lock %s: %s", M.dir,
            errno == EWOULDBLOCK ? "held by another process" : strerror(errno));
    M.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int logfd = openat(M.dirfd, "monitor.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (M.devnull < 0 || logfd < 0)
        die("open %s: %s", M.devnull < 0 ? "/dev/null" : "monitor.log", strerror(errno));
    /* From here our stdout and stderr (and our children's, unless they get pipes) are
     * monitor.log. */
    if (dup2(M.devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
        die("dup2 stdio: %s", strerror(errno));
    close(logfd);
    M.log_ours = true;
    if (chdir("/") < 0)
        die("chdir /: %s", strerror(errno));

    /* Signals arrive on a signalfd; they must be blocked before anything can send them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);

    detach_and_unshare();
    M.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (M.sigfd < 0)
        die("signalfd: %s", strerror(errno));
    mkdirat(M.dirfd, "status", 0755);
    M.statusfd = openat(M.dirfd, "status", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (M.statusfd < 0)
        die("open %s/status: %s", M.dir, strerror(errno));
    write_pidfile();
    write_pod_status("Pending", NULL);
    warn("ready in %s", M.dir);
    handshake();

    /* An invalid monitor.conf is still reported on the sync pipe: Python may read it until
     * EOF to learn that the pod started. */
    conf_load();
    close(M.sync_w);
    close(M.sync_r);
    M.sync_w = M.sync_r = -1;
    if (M.hostname && !M.host_network && sethostname(M.hostname, strlen(M.hostname)) < 0)
        warn("sethostname(%s): %s", M.hostname, strerror(errno));
    rfc3339(M.started_at);
    for (size_t j = 0; j < M.nctrs; j++) {
        struct ctr *c = &M.ctrs[j];
        c->out = (struct stream){.name = "stdout", .fd = -1, .wfd = -1};
        c->err = (struct stream){.name = "stderr", .fd = -1, .wfd = -1};
        c->logdir = c->log_fd = -1;
        set_state(c, "waiting", "PodInitializing", NULL);
    }

    loop();

    /* Everything is over and deleted: final statuses, then finish_arg while we still hold
     * the lock, so nobody tears the pod down twice. */
    cleanup_reaper();
    char fin[40];
    rfc3339(fin);
    write_pod_status(pod_phase(), fin);
    if (M.finish_arg.n) {
        pid_t pid = spawn(M.finish_arg.v, M.devnull, STDOUT_FILENO, STDERR_FILENO, 0);
        int st = 0;
        while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (pid > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            warn("finish_arg %s: status %d", M.finish_arg.v[0], st);
    }
    warn("exiting: pod %s", M.phase);
    return 0;
}

/* monitor.conf: read once, after `go`; any error is fatal and names the line. The format
 * is docs/pods.md's.
 *
 * ephemeral.conf: containers added to the running pod (Kubernetes' ephemeral containers),
 * in monitor.conf's container sections, appended by Python, which then sends SIGHUP. It is
 * read again whole at each SIGHUP (and after monitor.conf): a container not known yet is
 * added, one already known is left as it is. An error there is not fatal: the file is
 * ignored until the next SIGHUP, and the pod runs on. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int conf_line;
static const char *conf_file = "monitor.conf";
static size_t ctrs_cap;      /* of M.ctrs */
static jmp_buf *conf_soft;   /* ephemeral.conf: an error comes back here, it does not die */

__attribute__((format(printf, 1, 2), noreturn)) static void conf_die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (conf_soft) {
        warn("%s line %d: %s (ignored until the next SIGHUP)", conf_file, conf_line, msg);
        longjmp(*conf_soft, 1);
    }
    die("%s line %d: %s", conf_file, conf_line, msg);
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

static bool conf_bool(const char *key, const char *v)
{
    if (strcmp(v, "true") && strcmp(v, "false"))
        conf_die("%s: want true or false, not '%s'", key, v);
    return v[0] == 't';
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

/* A key of the pod's, not of a container's. */
static bool pod_key(const char *key)
{
    static const char *const keys[] = {
        "runtime_arg", "finish_arg", "https_probe_arg", "runtime_root", "net_gate",
        "finish_deletes", "hostname", "restart_policy", "restart_max", "grace_s",
        "log_max_bytes", "monitor_log_max_bytes", "log_max_files", "backoff_initial_ms",
        "backoff_max_ms", "backoff_reset_ms"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i]))
            return true;
    return false;
}

/* `extra`: ephemeral.conf, container sections only; a section of a container M.ctrs has
 * (below `known`) is skipped. */
static void conf_parse(char *text, bool extra, size_t known)
{
    struct ctr *c = NULL;
    struct probe *p = NULL;
    bool skip = false;
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

        if (skip && strcmp(key, "container"))
            continue;
        if (extra && (pod_key(key) || (!c && strcmp(key, "container"))))
            conf_die("'%s': only container sections are added", key);
        if (!strcmp(key, "runtime_arg")) {
            strv_add(&M.runtime_arg, v);
        } else if (!strcmp(key, "finish_arg")) {
            strv_add(&M.finish_arg, v);
        } else if (!strcmp(key, "https_probe_arg")) {
            strv_add(&M.https_probe_arg, v);
        } else if (!strcmp(key, "runtime_root")) {
            conf_abs_path(key, v);
            M.runtime_root = xstrdup(v);
        } else if (!strcmp(key, "net_gate")) {
            M.net_gate = conf_bool(key, v);
        } else if (!strcmp(key, "finish_deletes")) {
            M.finish_deletes = conf_bool(key, v);
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
        } else if (!strcmp(key, "restart_max")) {
            M.restart_max = conf_long(key, v, 0, INT_MAX);
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
            skip = false;
            for (size_t i = 0; i < M.nctrs; i++)
                if (!strcmp(M.ctrs[i].name, v)) {
                    if (!extra || i >= known)
                        conf_die("container '%s' appears twice", v);
                    skip = true; /* added by an earlier read */
                }
            c = NULL;
            p = NULL;
            if (skip)
                continue;
            if (M.nctrs == ctrs_cap) {
                size_t cap = ctrs_cap ? ctrs_cap * 2 : 4;
                struct ctr *n = realloc(M.ctrs, cap * sizeof *n);
                if (!n)
                    die("out of memory");
                M.ctrs = n;
                ctrs_cap = cap;
            }
            c = &M.ctrs[M.nctrs++];
            memset(c, 0, sizeof *c);
            c->name = xstrdup(v);
            c->line = conf_line;
            c->stop_signal = SIGTERM;
            c->ephemeral = extra;
        } else if (!c) {
            conf_die("unknown key '%s' (or a container key before any 'container' line)", key);
        } else if (!strcmp(key, "kind")) {
            if (extra ? strcmp(v, "ephemeral") : strcmp(v, "init") && strcmp(v, "app"))
                conf_die("kind: want %s, not '%s'", extra ? "ephemeral" : "init or app", v);
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
        } else if (!strcmp(key, "terminal")) {
            c->terminal = conf_bool(key, v);
        } else if (!strcmp(key, "stdin")) {
            c->stdin_open = conf_bool(key, v);
        } else if (!strcmp(key, "stdin_once")) {
            c->stdin_once = conf_bool(key, v);
        } else if (!strcmp(key, "attach")) {
            c->attach = conf_bool(key, v);
        } else if (!strcmp(key, "stop_signal")) {
            c->stop_signal = (int)conf_long(key, v, 1, SIGRTMAX);
        } else if (!strcmp(key, "oom_file")) {
            conf_abs_path(key, v);
            c->oom_file = xstrdup(v);
        } else if (!strcmp(key, "probe")) {
            if (c->ephemeral)
                conf_die("an ephemeral container has no probes");
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
    if (extra) {
        for (size_t i = known; i < M.nctrs; i++) {
            conf_line = M.ctrs[i].line;
            if (!M.ctrs[i].id || !M.ctrs[i].bundle)
                conf_die("container '%s' needs an id and a bundle", M.ctrs[i].name);
        }
        return;
    }
    if (!M.runtime_arg.n)
        die("monitor.conf: no runtime_arg");
    if (!M.runtime_root)
        die("monitor.conf: no runtime_root");
    if (M.finish_deletes && !M.finish_arg.n)
        die("monitor.conf: finish_deletes without a finish_arg to do it");
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

/* The whole of `name` in the pod directory, NUL-terminated; NULL (errno set) when it
 * cannot be read. */
static char *read_conf(const char *name)
{
    int fd = openat(M.dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    char *text = xcalloc(1, (size_t)st.st_size + 1);
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, text + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(text);
            errno = e;
            return NULL;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    return text;
}

void conf_ephemeral(void)
{
    char *text = read_conf("ephemeral.conf");
    if (!text) {
        if (errno != ENOENT)
            warn("read %s/ephemeral.conf: %s", M.dir, strerror(errno));
        return;
    }
    size_t known = M.nctrs;
    jmp_buf back;
    conf_file = "ephemeral.conf";
    conf_line = 0;
    if (setjmp(back) == 0) {
        conf_soft = &back;
        conf_parse(text, true, known);
        for (size_t i = known; i < M.nctrs; i++) {
            ctr_init(&M.ctrs[i]);
            warn("ephemeral container %s added", M.ctrs[i].name);
            M.changes++;
        }
    } else {
        M.nctrs = known; /* what the bad read added (their strings are not worth freeing) */
    }
    conf_soft = NULL;
    conf_file = "monitor.conf";
    free(text);
}

void conf_load(void)
{
    char *text = read_conf("monitor.conf");
    if (!text)
        die("read %s/monitor.conf: %s", M.dir, strerror(errno));
    M.policy = POLICY_ALWAYS;
    M.grace = 30000;
    M.log_max_bytes = 10 << 20;
    M.log_max_files = 5;
    M.backoff_initial = 10000;
    M.backoff_max = 300000;
    M.backoff_reset = 600000;
    conf_parse(text, false, 0);
    free(text);
}

/* Helpers of the whole monitor: clocks and time stamps, the monitor's own log (monitor.log,
 * capped), fatal start-up errors, memory, small and atomically written files. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 with nanoseconds, UTC: the CRI log and status time format. (Not strftime, nor
 * stdio or strtod below: each would pull more of glibc into the static binary's RSS.) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation" /* gmtime_r's fields are in range */
void rfc3339(char out[40])
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
int64_t parse_seconds(const char *s)
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
ssize_t read_small(int dirfd, const char *path, char *buf, size_t len)
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

__attribute__((format(printf, 1, 2))) void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, NULL, 0);
    va_end(ap);
}

/* A fatal start-up error: logged, told to Python as `error <text>` while the handshake pipe
 * is open, then exit 1. Only used before any container runs. */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...)
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

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("out of memory");
    return p;
}

void strv_add(struct strv *sv, const char *s)
{
    char **v = realloc(sv->v, (sv->n + 2) * sizeof *v);
    if (!v)
        die("out of memory");
    v[sv->n++] = xstrdup(s);
    v[sv->n] = NULL;
    sv->v = v;
}

/* Write `text` to dirfd/name atomically: temp file, fsync (when `durable`), rename. A reader,
 * and our own death at any point, see the old content or the new; only a machine crash may
 * lose a write that is not durable. */
int write_atomic(int dirfd, const char *name, const char *text, size_t len, bool durable)
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
    if (ret == 0 && durable && fsync(fd) < 0)
        ret = -errno;
    close(fd);
    if (ret == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        ret = -errno;
    if (ret < 0)
        unlinkat(dirfd, tmp, 0);
    return ret;
}

/* One of our own namespaces, opened to go back to or to hand to children. */
int open_ns(const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    return fd;
}

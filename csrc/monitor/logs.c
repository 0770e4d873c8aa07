/* Container logs: the container's stdout and stderr pipes (or, for a terminal container,
 * its pty master, logged as stdout with the terminal's \r\n as conmon does), read into CRI
 * log files (logs/<name>/<restart>.log, `<time> <stream> <P|F> <text>` lines), rotated by
 * size. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

void log_open(struct ctr *c)
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
    if (s == &c->err && c->step == ST_RUN &&
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

void stream_close(struct ctr *c, struct stream *s)
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
void stream_read(struct ctr *c, struct stream *s)
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
            /* EIO from a pty master: every slave fd is closed, its end of file. */
            if (n < 0 && errno != EIO)
                warn("read %s of %s: %s", s->name, c->name, strerror(errno));
            stream_close(c, s);
            return;
        }
        attach_output(c, s, scratch + s->len, (size_t)n);
        stream_lines(c, s, s->len + (size_t)n, false);
    }
}

int stream_open(struct stream *s)
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

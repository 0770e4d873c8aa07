/* Status files: status/<container> and pod.status, each rewritten whole and atomically at
 * every change, so a reader never sees half of one. */
#include "monitor.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

void write_status(struct ctr *c)
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
    /* Only an end is worth the disk's wait: what a running container does dies with the
     * machine, a finished one's exit code is what its pod (a Job's) is judged by. */
    int ret = write_atomic(M.statusfd, c->name, buf, (size_t)(w - buf), terminated);
    if (ret < 0)
        warn("write %s/status/%s: %s", M.dir, c->name, strerror(-ret));
}

void set_state(struct ctr *c, const char *state, const char *reason, const char *msg)
{
    c->state = state;
    c->cur.reason = reason;
    snprintf(c->cur.message, sizeof c->cur.message, "%s", msg ? msg : "");
    write_status(c);
}

void write_pod_status(const char *phase, const char *finished_at)
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
    int ret = write_atomic(M.dirfd, "pod.status", buf, (size_t)(w - buf), finished_at != NULL);
    if (ret < 0)
        warn("write %s/pod.status: %s", M.dir, strerror(-ret));
}

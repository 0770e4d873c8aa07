/* The event loop: one poll() over the signalfd, the containers' pipes and the probes'
 * sockets, with the nearest deadline (backoff, kill grace, probe) as its timeout; SIGCHLD
 * reaps every child and hands it to whoever started it. */
#include "monitor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

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
                kill(c->pid, SIGKILL);
            } else {
                next = min64(next, c->kill_at);
            }
        }
        if (c->kill_stage)
            continue;
        next = probes_due(c, now, next);
    }
    return next;
}

/* The end of the start gate's wait: `ok` opens it. Without (the pipe closed, or junk), the
 * pod network will never be there: the gated runs are cancelled and the pod stops. */
static void net_done(bool ok, const char *why);

static void begin_stop(void)
{
    if (M.stopping)
        return;
    M.stopping = true;
    M.changes++;
    if (M.sync_r >= 0) /* before the network: no container may start now */
        net_done(false, "the pod is stopping");
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
        else if (c->step == ST_UP && !c->exited)
            terminate(c, M.stop_deadline);
    }
}

static void net_done(bool ok, const char *why)
{
    close(M.sync_r);
    M.sync_r = -1;
    gate_open(ok);
    if (!ok) {
        warn("no pod network (%s): the containers' starts are cancelled", why);
        begin_stop();
    }
}

/* With the start gate: `net\n` on sync_r once Python has set up the pod network. */
static void net_line(void)
{
    ssize_t n = read(M.sync_r, M.net_buf + M.net_len, sizeof M.net_buf - 1 - M.net_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0) {
        M.net_len += (size_t)n;
        M.net_buf[M.net_len] = 0;
        if (!strchr(M.net_buf, '\n') && M.net_len < sizeof M.net_buf - 1)
            return; /* the rest of the line is on its way */
        net_done(!strcmp(M.net_buf, "net\n"), "sync pipe: want 'net'");
        return;
    }
    net_done(false, n < 0 ? strerror(errno) : "the sync pipe closed before 'net'");
}

/* A child was reaped: hand its status to whoever started it. */
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
    /* A container process whose pid file we have not read yet (or a stray orphan). */
    M.unknown[M.unknown_next] = pid;
    M.unknown_status[M.unknown_next] = st;
    M.unknown_next = (M.unknown_next + 1) % (sizeof M.unknown / sizeof M.unknown[0]);
}

const char *pod_phase(void)
{
    if (M.init_failed)
        return "Failed";
    if (!M.apps_started)
        return M.finishing ? "Failed" : "Pending";
    if (!M.finishing)
        return "Running";
    for (size_t i = 0; i < M.nctrs; i++)
        if (!M.ctrs[i].init && !M.ctrs[i].ephemeral &&
            (!M.ctrs[i].succeeded || M.ctrs[i].state[0] != 't'))
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
            if (c->step == ST_UP && !c->exited)
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
                if (!M.ctrs[i].init && !M.ctrs[i].ephemeral)
                    launch(&M.ctrs[i]);
        }
        /* Ephemeral containers start once added, even while the init containers run (as
         * the kubelet starts them), and run once. */
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            if (c->ephemeral && c->step == ST_IDLE && !c->created_once)
                launch(c);
        }
    }
    bool ephemeral_busy = false;
    for (size_t i = 0; i < M.nctrs; i++) {
        if (!ctr_busy(&M.ctrs[i]))
            continue;
        if (!M.ctrs[i].ephemeral)
            return false;
        ephemeral_busy = true;
    }
    if (ephemeral_busy) {
        /* The pod's own containers are over: what is left of its debuggers is stopped, as
         * the kubelet stops the containers of a pod that has ended. */
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            if (c->ephemeral && c->step == ST_UP && !c->exited)
                terminate(c, now_ms() + M.grace);
            else if (c->ephemeral && c->step == ST_BACKOFF)
                c->step = ST_DONE;
        }
        return false;
    }
    /* Python may still be setting up the pod network: the teardown waits for its answer. */
    if (M.sync_r >= 0)
        return false;
    if (!M.finishing) {
        /* Everything has ended: delete the containers from the runtime, in parallel, unless
         * finish_arg does (one process for the pod instead of one runtime per container). */
        M.finishing = true;
        for (size_t i = 0; i < M.nctrs && !M.finish_deletes; i++) {
            struct ctr *c = &M.ctrs[i];
            if (c->created)
                launch(c);
        }
        return advance();
    }
    return true;
}

void loop(void)
{
    /* signals, sync_r; per container: 3 streams, its probes, the attach socket, its
     * clients, its stdin */
    size_t cap = 0;
    struct pollfd *pfd = NULL;
    enum { W_STREAM, W_PROBE, W_LISTEN, W_CONN, W_STDIN, W_SYNC };
    struct watched {
        struct ctr *c;
        struct stream *s;
        int k, kind;
    } *what = NULL;

    for (;;) {
        size_t need = 2 + M.nctrs * (3 + PROBE_KINDS + 2 + ATTACH_MAX);
        if (need > cap) { /* at start, and when ephemeral.conf added containers */
            free(pfd);
            free(what);
            pfd = xcalloc(need, sizeof *pfd);
            what = xcalloc(need, sizeof *what);
            cap = need;
        }
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
        if (M.sync_r >= 0) {
            what[n].kind = W_SYNC;
            pfd[n++] = (struct pollfd){.fd = M.sync_r, .events = POLLIN};
        }
        for (size_t i = 0; i < M.nctrs; i++) {
            struct ctr *c = &M.ctrs[i];
            struct stream *ss[3] = {&c->out, &c->err, &c->tty};
            for (int j = 0; j < 3; j++)
                if (ss[j]->fd >= 0) {
                    what[n].c = c;
                    what[n].s = ss[j];
                    what[n].kind = W_STREAM;
                    pfd[n++] = (struct pollfd){.fd = ss[j]->fd, .events = POLLIN};
                }
            for (int k = 0; k < PROBE_KINDS; k++) {
                struct probe *p = c->probes[k];
                if (p && p->fd >= 0) {
                    what[n].c = c;
                    what[n].s = NULL;
                    what[n].k = k;
                    what[n].kind = W_PROBE;
                    pfd[n++] = (struct pollfd){
                        .fd = p->fd, .events = p->phase == NET_RECV ? POLLIN : POLLOUT};
                }
            }
            if (c->listen >= 0) {
                what[n].c = c;
                what[n].kind = W_LISTEN;
                pfd[n++] = (struct pollfd){.fd = c->listen, .events = POLLIN};
            }
            /* Input the container has not taken yet: its clients wait (hang-ups show). */
            for (int k = 0; k < ATTACH_MAX; k++)
                if (c->conns[k].fd >= 0) {
                    what[n].c = c;
                    what[n].k = k;
                    what[n].kind = W_CONN;
                    pfd[n++] = (struct pollfd){.fd = c->conns[k].fd,
                                               .events = c->in_len ? 0 : POLLIN};
                }
            if (c->in_len && attach_stdin_fd(c) >= 0) {
                what[n].c = c;
                what[n].kind = W_STDIN;
                pfd[n++] = (struct pollfd){.fd = attach_stdin_fd(c), .events = POLLOUT};
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
            struct ctr *c = what[i].c;
            switch (what[i].kind) {
            case W_STREAM:
                stream_read(c, what[i].s);
                break;
            case W_PROBE:
                if (c->probes[what[i].k]->fd == pfd[i].fd)
                    probe_net_event(c, what[i].k);
                break;
            case W_LISTEN:
                attach_accept(c);
                break;
            case W_CONN: /* still the client polled for: an earlier event may have closed it */
                if (c->conns[what[i].k].fd == pfd[i].fd)
                    attach_input(c, &c->conns[what[i].k]);
                break;
            case W_STDIN:
                if (attach_stdin_fd(c) == pfd[i].fd)
                    attach_flush(c);
                break;
            case W_SYNC:
                if (M.sync_r == pfd[i].fd)
                    net_line();
                break;
            }
        }
        if (pfd[0].revents) {
            struct signalfd_siginfo si;
            while (read(M.sigfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                    begin_stop();
                else if (si.ssi_signo == SIGHUP && !M.stopping && !M.finishing)
                    conf_ephemeral();
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

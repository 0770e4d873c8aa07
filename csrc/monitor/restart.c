/* The end of a run: why it ended (exit code, signal, OOM kill, a failed start), what the
 * status files say about it, and whether the restart policy runs it again, after the
 * kubelet's backoff. */
#include "monitor.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A run ended (or never began): record it, then decide whether it runs again. */
void run_done(struct ctr *c, const char *reason, int code, int sig, const char *msg)
{
    M.changes++;
    stream_read(c, &c->out);
    stream_read(c, &c->err);
    stream_read(c, &c->tty);
    stream_close(c, &c->out);
    stream_close(c, &c->err);
    stream_close(c, &c->tty);
    attach_run_over(c);
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
    if (c->ephemeral) /* never restarted, as Kubernetes' */
        again = false;
    else if (c->init)
        again = again && code != 0 && M.policy != POLICY_NEVER;
    else if (M.policy == POLICY_ON_FAILURE)
        again = again && code != 0;
    else if (M.policy == POLICY_NEVER)
        again = false;
    if (M.restart_max > 0 && c->restart_count >= M.restart_max)
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
void process_gone(struct ctr *c)
{
    int st = c->wstatus, code, sig = 0;
    if (WIFSIGNALED(st)) {
        sig = WTERMSIG(st);
        code = 128 + sig;
    } else {
        code = WEXITSTATUS(st);
    }
    const char *reason = code == 0 ? "Completed" : "Error";
    if (c->oom_file && read_oom(c) > c->oom_base)
        reason = "OOMKilled";
    run_done(c, reason, code, sig, c->why_killed);
}

/* The monitor's children, and the OCI runtime steps of a container: delete what the runtime
 * still has of it, prestart_arg, run (create and start in one runtime process, as
 * `runc run --detach`: nothing has to happen between them), then kill (TERM, KILL after the
 * grace). Every step is a child process that the loop reaps; job_done() takes the next step. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every child runs in the namespaces the monitor was started in, not the pod's: finish_arg
 * tears down the host side of the pod network, and the runtime joins the pod's namespaces
 * by path from its bundle anyway. The exception is SPAWN_POD_NET (https probes): it stays
 * in the pod's network namespace, where the monitor's own http and tcp probes connect from.
 * SPAWN_GROUP gives the child a process group of its own; SPAWN_GATE gives it the start
 * gate as fd GATE_FD. The signal mask and dispositions are reset for it. */
pid_t spawn(char *const argv[], int in, int out, int err, int flags)
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
    /* After stdio: whatever sat at GATE_FD has its copy at 0, 1 or 2 by now. dup2 onto
     * itself would leave close-on-exec set. */
    if ((flags & SPAWN_GATE) && M.gate_r >= 0 &&
        (M.gate_r == GATE_FD ? fcntl(GATE_FD, F_SETFD, 0) : dup2(M.gate_r, GATE_FD)) < 0)
        _exit(127);
    execvp(argv[0], argv);
    dprintf(2, "corral-monitor: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* `<runtime_arg...> --root R <args...>` */
pid_t runtime(const char *const args[], size_t nargs, int in, int out, int err, int flags)
{
    size_t n = M.runtime_arg.n;
    char **argv = xcalloc(n + 2 + nargs + 1, sizeof *argv);
    memcpy(argv, M.runtime_arg.v, n * sizeof *argv);
    argv[n] = "--root";
    argv[n + 1] = M.runtime_root;
    memcpy(argv + n + 2, args, nargs * sizeof *argv);
    pid_t pid = spawn(argv, in, out, err, flags);
    free(argv);
    return pid;
}

static void pid_file(struct ctr *c, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.pid", M.runtime_root, c->id);
}

/* Run a step's command (the runtime's, or `argv` when args is NULL); a failed fork is a
 * failed command. Only `run` gets the container's stdin (the process inherits it), and
 * the start gate while it is closed. */
static void start_job(struct ctr *c, enum step step, const char *const args[], size_t n,
                      int out, int err)
{
    M.changes++;
    c->step = step;
    int in = step == ST_RUN && c->in_r >= 0 ? c->in_r : M.devnull;
    int flags = step == ST_RUN && M.gate_w >= 0 ? SPAWN_GATE : 0;
    c->job = args ? runtime(args, n, in, out, err, flags)
                  : spawn(c->prestart_arg.v, M.devnull, out, err, 0);
    if (c->job > 0 && flags)
        M.gated++;
    if (c->job < 0) {
        c->job = 0;
        job_done(c, 127 << 8);
    }
}

/* The "oom_kill N" line of memory.oom_control (v1) or memory.events (v2); 0 if none. */
long read_oom(struct ctr *c)
{
    char buf[1024];
    if (!c->oom_file || read_small(AT_FDCWD, c->oom_file, buf, sizeof buf) < 0)
        return 0;
    for (char *line = buf; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, "oom_kill ", 9))
            return strtol(line + 9, NULL, 10);
    return 0;
}

/* A terminal container's console socket, as conmon's: `run --console-socket` connects
 * to it, and the container process sends its pty master over the connection (SCM_RIGHTS)
 * before the runtime exits. The path goes through our open directory fd, as the directory's
 * own path may not fit in sun_path. It exists only while a run job runs. */
static void console_path(struct ctr *c, char *path, size_t len)
{
    snprintf(path, len, "/proc/%d/fd/%d/console-%zu.sock", (int)getpid(), M.dirfd,
             (size_t)(c - M.ctrs));
}

static void console_close(struct ctr *c)
{
    char path[PATH_MAX];
    if (c->console < 0)
        return;
    close(c->console);
    c->console = -1;
    console_path(c, path, sizeof path);
    unlink(path);
}

static int console_listen(struct ctr *c, char *path, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    console_path(c, path, len);
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    c->console = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->console < 0)
        return -errno;
    if (bind(c->console, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(c->console, 1) < 0) {
        int ret = -errno;
        console_close(c);
        return ret;
    }
    return 0;
}

/* After a successful run: the pty master it sent becomes the container's stdout stream. */
static int console_receive(struct ctr *c)
{
    char byte[64], cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {byte, sizeof byte};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf};
    int conn = accept4(c->console, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int ret = conn < 0 ? -errno : 0;
    if (ret == 0 && recvmsg(conn, &msg, MSG_CMSG_CLOEXEC) < 0)
        ret = -errno;
    if (conn >= 0)
        close(conn);
    if (ret < 0)
        return ret;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(int)))
        return -EPROTO;
    memcpy(&c->tty.fd, CMSG_DATA(cm), sizeof(int));
    fcntl(c->tty.fd, F_SETFL, O_NONBLOCK);
    return 0;
}

/* `run --detach`: the runtime creates the container, starts it and exits, leaving us (the
 * subreaper) the container process; with a console socket for a terminal container; while
 * the start gate is closed, created, it waits there before start. The OOM count is taken
 * before: the run's own OOM kills must count. */
static void start_run(struct ctr *c)
{
    char pidf[PATH_MAX], sock[PATH_MAX], gate[16];
    pid_file(c, pidf, sizeof pidf);
    c->lasterr[0] = 0;
    c->oom_base = read_oom(c);
    const char *args[11] = {"run", "--detach", "--bundle", c->bundle, "--pid-file", pidf};
    size_t n = 6;
    if (c->terminal) {
        int ret = console_listen(c, sock, sizeof sock);
        if (ret < 0) {
            snprintf(c->lasterr, sizeof c->lasterr, "console socket %s: %s", sock,
                     strerror(-ret));
            run_done(c, "StartError", 128, 0, c->lasterr);
            return;
        }
        args[n++] = "--console-socket";
        args[n++] = sock;
    }
    if (M.gate_w >= 0) {
        snprintf(gate, sizeof gate, "%d", GATE_FD);
        args[n++] = "--start-gate";
        args[n++] = gate;
    }
    args[n++] = c->id;
    start_job(c, ST_RUN, args, n, c->out.wfd, c->err.wfd);
}

/* The start gate: a pipe whose read end every `run` gets while the pod network is being set
 * up (after `go`). Our end does not block: opening the gate never waits for a reader. */
void gate_make(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        die("pipe for the start gate: %s", strerror(errno));
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(M.sync_r, F_SETFD, FD_CLOEXEC) < 0)
        die("fcntl for the start gate: %s", strerror(errno));
    M.gate_r = fds[0];
    M.gate_w = fds[1];
}

/* Open the gate (`ok`: one `g` for each run given it, read by whichever waits) or cancel
 * it (EOF: every waiting run deletes its container and fails); later runs get no gate. */
void gate_open(bool ok)
{
    if (M.gate_w < 0)
        return;
    if (ok && M.gated) {
        char g[4096];
        size_t n = M.gated < sizeof g ? M.gated : sizeof g;
        memset(g, 'g', n);
        if (write(M.gate_w, g, n) != (ssize_t)n)
            warn("start gate: %s", strerror(errno));
    }
    close(M.gate_w);
    close(M.gate_r);
    M.gate_w = M.gate_r = -1;
}

static void launch_run(struct ctr *c)
{
    char pidf[PATH_MAX];
    pid_file(c, pidf, sizeof pidf);
    unlink(pidf);
    c->lasterr[0] = 0;
    c->exited = c->abandon = false;
    c->kill_stage = 0;
    c->why_killed[0] = 0;
    memset(&c->cur, 0, sizeof c->cur);
    log_open(c);
    int ret = stream_open(&c->out);
    if (ret == 0)
        ret = stream_open(&c->err);
    if (ret == 0)
        ret = attach_stdin_pipe(c);
    if (ret < 0)
        die("pipe for %s: %s", c->name, strerror(-ret));
    set_state(c, "waiting", "ContainerCreating", NULL);
    /* A restart is a new container, as in Kubernetes: prestart_arg gives it a fresh rootfs
     * first (with prestart_first, it also runs before the first run: it mounts subPaths
     * after the init containers ran). Its output goes to the container's pipes, like the
     * runtime's. */
    bool again = c->created_once;
    c->created_once = true;
    if ((again || c->prestart_first) && c->prestart_arg.n) {
        start_job(c, ST_PRESTART, NULL, 0, c->out.wfd, c->err.wfd);
        return;
    }
    start_run(c);
}

/* Start (or restart) a container: delete what the runtime still has of it first. */
void launch(struct ctr *c)
{
    if (c->created) {
        const char *args[] = {"delete", "--force", c->id};
        start_job(c, ST_DELETE, args, 3, M.devnull, STDERR_FILENO);
        return;
    }
    launch_run(c);
}

void job_done(struct ctr *c, int st)
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
        launch_run(c);
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
        start_run(c);
        return;
    }
    case ST_RUN: {
        char pidf[PATH_MAX], buf[32] = "";
        pid_file(c, pidf, sizeof pidf);
        if (!ok || read_small(AT_FDCWD, pidf, buf, sizeof buf) < 0)
            buf[0] = 0;
        unlink(pidf);
        attach_created(c);
        c->pid = (pid_t)strtol(buf, NULL, 10);
        c->created = ok; /* a failed run deletes what it made, as runc's */
        int ret = 0;
        if (c->terminal && ok && c->pid > 0 && (ret = console_receive(c)) < 0)
            snprintf(c->lasterr, sizeof c->lasterr, "receive pty master of %s: %s", c->name,
                     strerror(-ret));
        console_close(c);
        /* Nobody else writes into the container's pipes now: keep only its copies, so we
         * see EOF when it closes them. */
        close(c->out.wfd);
        close(c->err.wfd);
        c->out.wfd = c->err.wfd = -1;
        if (!ok || c->pid <= 0 || ret < 0) {
            char msg[MSG_MAX];
            snprintf(msg, sizeof msg, "%s", c->lasterr[0] ? c->lasterr : "run failed");
            if (ok && c->pid > 0)
                kill(c->pid, SIGKILL); /* running, but without its pty: not a run of ours */
            c->pid = 0;
            run_done(c, "StartError", 128, 0, msg);
            return;
        }
        /* The process may have died and been reaped before we knew its pid. */
        for (size_t i = 0; i < sizeof M.unknown / sizeof M.unknown[0]; i++)
            if (M.unknown[i] == c->pid) {
                M.unknown[i] = 0;
                c->exited = true;
                c->wstatus = M.unknown_status[i];
            }
        c->step = ST_UP;
        c->started_mono = now_ms();
        rfc3339(c->cur.started_at);
        c->startup_done = !c->probes[PROBE_STARTUP];
        c->ready = c->startup_done && !c->probes[PROBE_READINESS];
        for (int k = 0; k < PROBE_KINDS; k++)
            if (c->probes[k]) {
                c->probes[k]->next_at = c->started_mono + c->probes[k]->initial_delay;
                c->probes[k]->successes = c->probes[k]->failures = 0;
            }
        if (c->exited) {
            process_gone(c);
            return;
        }
        set_state(c, "running", NULL, NULL);
        /* A stop that came while the runtime ran it: it runs user code now, so it gets the
         * stop signal and the rest of the grace like any running container. */
        if (M.stopping)
            terminate(c, M.stop_deadline);
        return;
    }
    default:
        warn("job of %s ended in step %d", c->name, c->step);
    }
}

/* The stop signal (TERM unless monitor.conf says) now, KILL at `deadline` (now when the grace is 0). A container being killed is not
 * ready and gets no more probes. */
void terminate(struct ctr *c, int64_t deadline)
{
    if (c->kill_stage == 0) {
        M.changes++;
        c->kill_stage = 1;
        c->kill_at = deadline;
        /* Directly, as `kill ID SIG` would signal the container's init: it is our child
         * (we are the subreaper it was handed to) and not reaped yet, so the pid is still
         * its own. One runtime process less per container and stage of a stop. */
        if (c->pid > 0 && !c->exited)
            kill(c->pid, c->stop_signal);
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

/* corral-monitor: the per-pod monitor. docs/pods.md is its contract: read that first.
 *
 * One small single-threaded process per pod, driven by one poll() loop:
 *   start-up  lock the pod directory, detach (fork, setsid, fork), unshare the pod's net, ipc
 *             and uts namespaces (the monitor holds them by living in them), become the
 *             subreaper, handshake with Python over the inherited pipe pair (this file);
 *   run       every OCI runtime command and exec probe is a child process the loop reaps
 *             (SIGCHLD through a signalfd), so nothing blocks the loop. Being the subreaper,
 *             the monitor inherits each container process when `corral-oci run -d` exits and
 *             gets its exit status from waitpid(), the way conmon does. stdout/stderr pipes
 *             are read into CRI log files; probes, backoff and kill grace periods are
 *             deadlines that set the poll() timeout;
 *   end       delete the containers from the runtime, run finish_arg, exit (which releases
 *             the lock).
 *
 * The loop is level-triggered: after any event, advance() looks at every container and does
 * whatever is due, so no handler needs to know what the others did.
 *
 * One file per job: main.c (start-up, the sealed re-exec), conf.c (monitor.conf), loop.c
 * (the event loop, child reaping), runtime.c (children, the OCI runtime steps), restart.c
 * (end of a run, restart policy, backoff), logs.c (CRI log files), probes.c, status.c
 * (status files), reaper.c (the pod's pid 1), util.c; monitor.h holds the shared state.
 *
 * Build (as setup.py does, in this directory):
 *   cc -std=c11 -O2 -Wall -Wextra -Werror -flto -static -o corral-monitor *.c
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct monitor M = {
    .dirfd = -1, .statusfd = -1, .devnull = -1, .sigfd = -1, .sync_w = -1, .sync_r = -1,
    .gate_r = -1, .gate_w = -1,
    .host_ns = {-1, -1, -1},
    .monitor_log_max = 1 << 20,
};

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

    /* Orphans of the containers (and the container processes themselves, once `run -d`
     * exits) are reparented to us. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));

    if (M.share_pid)
        reaper_start();
}

static void write_pidfile(void)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", getpid());
    int ret = write_atomic(M.dirfd, "monitor.pid", buf, (size_t)n, false); /* dies with us */
    if (ret < 0)
        die("write %s/monitor.pid: %s", M.dir, strerror(-ret));
}

/* Wait for `go`. Returns only on go; EOF, junk or a stop signal end the monitor. One byte
 * at a time: what follows `go` on the pipe (`net`, with the start gate) is not ours. */
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
            if (read(M.sigfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD &&
                si.ssi_signo != SIGHUP) /* (ephemeral.conf is read after go anyway) */
                die("stopped by signal %d before go", si.ssi_signo);
            if (M.reaper > 0 && waitpid(M.reaper, NULL, WNOHANG) == M.reaper) {
                M.reaper = 0;
                die("the pod's pid 1 died before go");
            }
        }
        if (!pfd[0].revents)
            continue;
        ssize_t n = read(M.sync_r, buf + len, 1);
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

void ctr_init(struct ctr *c)
{
    c->out = (struct stream){.name = "stdout", .fd = -1, .wfd = -1};
    c->err = (struct stream){.name = "stderr", .fd = -1, .wfd = -1};
    c->tty = (struct stream){.name = "stdout", .fd = -1, .wfd = -1};
    c->logdir = c->log_fd = c->console = -1;
    attach_init(c);
    set_state(c, "waiting", c->ephemeral ? "ContainerCreating" : "PodInitializing", NULL);
}

static void usage(void)
{
    dprintf(2, "usage: corral-monitor [--host-network] [--share-pid] POD_DIR SYNC_FD\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i = 1;
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
    /* Nothing of the starter but stdio and the sync pair: whatever else it left open (an fd
     * without close-on-exec) is closed before anything is opened here. */
    if (fd > 3)
        syscall(SYS_close_range, 3U, (unsigned int)fd - 1, 0U);
    syscall(SYS_close_range, (unsigned int)fd + 2, ~0U, 0U);
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
    sigaddset(&set, SIGHUP); /* ephemeral.conf has grown: loop.c reads it */
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
    if (M.net_gate) {
        gate_make(); /* sync_r stays open: `net` comes on it */
    } else {
        close(M.sync_r);
        M.sync_r = -1;
    }
    close(M.sync_w);
    M.sync_w = -1;
    if (M.hostname && !M.host_network && sethostname(M.hostname, strlen(M.hostname)) < 0)
        warn("sethostname(%s): %s", M.hostname, strerror(errno));
    rfc3339(M.started_at);
    for (size_t j = 0; j < M.nctrs; j++)
        ctr_init(&M.ctrs[j]);
    conf_ephemeral(); /* a monitor started again for a pod that had some: none today */

    loop();
    attach_cleanup();

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

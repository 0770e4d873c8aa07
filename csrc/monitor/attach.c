/* A container's stdin and its attach socket (conmon's attach socket, our framing).
 *
 * `stdin true` keeps the container's stdin open for the whole run: a pipe whose read end
 * `run` hands to the container (and the monitor closes once `run` has exited) and
 * whose write end the monitor keeps, or, for a terminal container, the pty master the
 * monitor already holds. `attach true` makes a SOCK_SEQPACKET socket attach/<name> in the
 * pod directory; while the container runs, up to ATTACH_MAX clients connect to it. Every
 * message is one channel byte, then data (the channels are Kubernetes' remote command
 * ones):
 *   client -> monitor  5          this client attaches stdin (the first message, if any);
 *                                 the answer is 5 (taken) or 3 (refused)
 *                      0 <bytes>  stdin
 *                      4 <u16 width, u16 height, native order>  terminal size
 *                      255        the end of this client's stdin
 *   monitor -> client  1 <bytes>  stdout (a terminal's output too), 2 <bytes> stderr,
 *                      3 <text>   why the attach is refused; then the monitor hangs up.
 * The end of the run hangs up every client. `stdin_once`: the end of the first client that
 * attached stdin (its 255 or its hang-up) closes the container's stdin for the rest of the
 * run (a terminal gets its end-of-file character, ^D, as Kubernetes' runtimes do). Output
 * goes to the clients as it is read, and to the log files as ever; a client that cannot
 * take it at once is hung up on rather than let it block the monitor. Input the container
 * does not read yet waits in a buffer, and its clients are not read meanwhile. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

enum { CH_STDIN = 0, CH_STDOUT = 1, CH_STDERR = 2, CH_ERROR = 3, CH_RESIZE = 4,
       CH_ATTACH_STDIN = 5, CH_CLOSE = 255 };

static void sock_name(struct ctr *c, char *path, size_t len)
{
    snprintf(path, len, "attach/%s", c->name);
}

void attach_init(struct ctr *c)
{
    c->listen = c->in_r = c->in_w = -1;
    for (int i = 0; i < ATTACH_MAX; i++)
        c->conns[i].fd = -1;
    if (!c->attach)
        return;
    /* Bound through our open directory, as console sockets are: the pod directory's own
     * path may not fit in sun_path. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char name[PATH_MAX];
    sock_name(c, name, sizeof name);
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/%d/fd/%d/%s", (int)getpid(),
                     M.dirfd, name);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
        warn("attach socket of %s: the name is too long", c->name);
        return;
    }
    mkdirat(M.dirfd, "attach", 0700);
    unlinkat(M.dirfd, name, 0);
    c->listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->listen < 0 || bind(c->listen, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        fchmodat(M.dirfd, name, 0600, 0) < 0 || listen(c->listen, ATTACH_MAX) < 0) {
        warn("attach socket %s/%s: %s", M.dir, name, strerror(errno));
        if (c->listen >= 0)
            close(c->listen);
        c->listen = -1;
    }
}

/* Before each run: a fresh stdin pipe for the new run (a restart reopens stdin). */
int attach_stdin_pipe(struct ctr *c)
{
    c->in_closed = c->in_eof = false;
    if (!c->stdin_open || c->terminal)
        return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    fcntl(p[1], F_SETFL, O_NONBLOCK); /* ours only: the container reads an ordinary pipe */
    c->in_r = p[0];
    c->in_w = p[1];
    return 0;
}

/* `run` has exited: the container process has its copy of the read end. */
void attach_created(struct ctr *c)
{
    if (c->in_r >= 0)
        close(c->in_r);
    c->in_r = -1;
}

int attach_stdin_fd(const struct ctr *c)
{
    if (!c->stdin_open)
        return -1;
    return c->terminal ? c->tty.fd : c->in_w;
}

/* Write what is buffered; then, when asked, the end of stdin. */
void attach_flush(struct ctr *c)
{
    int fd = attach_stdin_fd(c);
    while (c->in_len && fd >= 0) {
        ssize_t n = write(fd, c->in_buf, c->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return; /* the loop polls fd for POLLOUT */
        if (n < 0) {
            /* EPIPE: the container closed its stdin; what it did not read is dropped. */
            warn("write stdin of %s: %s", c->name, strerror(errno));
            c->in_len = 0;
            break;
        }
        memmove(c->in_buf, c->in_buf + n, c->in_len - (size_t)n);
        c->in_len -= (size_t)n;
    }
    if (c->in_len == 0) {
        free(c->in_buf);
        c->in_buf = NULL;
    }
    if (c->in_eof && c->in_len == 0 && c->in_w >= 0) {
        close(c->in_w);
        c->in_w = -1;
    }
}

static void stdin_append(struct ctr *c, const char *data, size_t len)
{
    char *b = realloc(c->in_buf, c->in_len + len);
    if (!b)
        die("out of memory");
    memcpy(b + c->in_len, data, len);
    c->in_buf = b;
    c->in_len += len;
    attach_flush(c);
}

/* stdinOnce: the first attach is over. */
static void stdin_end(struct ctr *c)
{
    if (c->in_closed)
        return;
    c->in_closed = true;
    warn("container %s: stdin closed after its first attach (stdinOnce)", c->name);
    if (c->terminal) {
        struct termios t;
        char eof = 4; /* ^D, unless the terminal says otherwise */
        if (c->tty.fd >= 0 && tcgetattr(c->tty.fd, &t) == 0 && t.c_cc[VEOF])
            eof = (char)t.c_cc[VEOF];
        stdin_append(c, &eof, 1);
        return;
    }
    c->in_eof = true;
    attach_flush(c);
}

static void conn_close(struct ctr *c, struct conn *conn, bool stdin_ends)
{
    close(conn->fd);
    conn->fd = -1;
    if (stdin_ends && conn->input && c->stdin_once)
        stdin_end(c);
    conn->input = false;
}

static void refuse(int fd, const char *fmt, const char *name)
{
    char msg[MSG_MAX];
    msg[0] = CH_ERROR;
    int n = snprintf(msg + 1, sizeof msg - 1, fmt, name);
    if (n > 0)
        send(fd, msg, 1 + (size_t)min64(n, (int64_t)sizeof msg - 2), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void attach_accept(struct ctr *c)
{
    int fd = accept4(c->listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct conn *free_conn = NULL;
    for (int i = 0; i < ATTACH_MAX && !free_conn; i++)
        if (c->conns[i].fd < 0)
            free_conn = &c->conns[i];
    if (c->step != ST_UP || c->exited || c->kill_stage)
        refuse(fd, "container %s is not running", c->name);
    else if (!free_conn)
        refuse(fd, "container %s has too many attached clients", c->name);
    else {
        int sndbuf = 1 << 20; /* the kernel caps it at wmem_max */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        *free_conn = (struct conn){.fd = fd, .input = false};
        return;
    }
    close(fd);
}

void attach_input(struct ctr *c, struct conn *conn)
{
    static char buf[1 + LINE_MAX_BYTES];
    ssize_t n = recv(conn->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c, conn, true);
        return;
    }
    const char *data = buf + 1;
    size_t len = (size_t)n - 1;
    switch ((unsigned char)buf[0]) {
    case CH_ATTACH_STDIN:
        if (!c->stdin_open) {
            refuse(conn->fd, "container %s does not keep stdin open: its spec does not set "
                             "stdin: true", c->name);
            conn_close(c, conn, false);
        } else if (c->in_closed) {
            refuse(conn->fd, "the stdin of container %s was closed after its first attach "
                             "(stdinOnce)", c->name);
            conn_close(c, conn, false);
        } else {
            conn->input = true;
            char ok = CH_ATTACH_STDIN; /* the client waits for this answer */
            send(conn->fd, &ok, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        return;
    case CH_STDIN:
        if (conn->input && !c->in_closed && len)
            stdin_append(c, data, len);
        return;
    case CH_RESIZE: {
        uint16_t size[2];
        if (!c->terminal || c->tty.fd < 0 || len != sizeof size)
            return;
        memcpy(size, data, sizeof size);
        struct winsize ws = {.ws_col = size[0], .ws_row = size[1]};
        if (ioctl(c->tty.fd, TIOCSWINSZ, &ws) < 0)
            warn("resize the terminal of %s: %s", c->name, strerror(errno));
        return;
    }
    case CH_CLOSE:
        if (conn->input && c->stdin_once)
            stdin_end(c);
        return;
    default:
        return;
    }
}

void attach_output(struct ctr *c, struct stream *s, const char *data, size_t len)
{
    unsigned char ch = s == &c->err ? CH_STDERR : CH_STDOUT;
    struct iovec iov[2] = {{&ch, 1}, {(void *)data, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    for (int i = 0; i < ATTACH_MAX; i++) {
        struct conn *conn = &c->conns[i];
        if (conn->fd < 0)
            continue;
        if (sendmsg(conn->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            warn("attach client of %s: %s: hung up on", c->name,
                 errno == EAGAIN ? "it does not keep up with the output" : strerror(errno));
            conn_close(c, conn, true);
        }
    }
}

/* The run is over (or never began): its clients and its stdin go. */
void attach_run_over(struct ctr *c)
{
    for (int i = 0; i < ATTACH_MAX; i++)
        if (c->conns[i].fd >= 0)
            conn_close(c, &c->conns[i], false);
    attach_created(c);
    if (c->in_w >= 0)
        close(c->in_w);
    c->in_w = -1;
    free(c->in_buf);
    c->in_buf = NULL;
    c->in_len = 0;
}

/* The monitor's end: the sockets go with it. */
void attach_cleanup(void)
{
    bool any = false;
    char name[PATH_MAX];
    for (size_t i = 0; i < M.nctrs; i++) {
        struct ctr *c = &M.ctrs[i];
        attach_run_over(c);
        if (c->listen < 0)
            continue;
        close(c->listen);
        c->listen = -1;
        sock_name(c, name, sizeof name);
        unlinkat(M.dirfd, name, 0);
        any = true;
    }
    if (any)
        unlinkat(M.dirfd, "attach", AT_REMOVEDIR);
}

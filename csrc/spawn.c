/* Corral spawn path: clone, namespaces, mounts, pivot_root, credentials, exec.
 *
 * Three processes take part, like runc's nsexec:
 *   parent  (the Python runtime) builds the plan, writes id maps, places pids in cgroups;
 *   stage 1 (forked) joins namespaces by fd, unshares the user namespace (the parent then
 *           writes its maps), waits for GO (cgroups joined), clones stage 2 with
 *           CLONE_PARENT so the container process is the parent's child, reports its pid,
 *           and exits;
 *   stage 2 (the container process) executes the plan in order, reports READY, waits for
 *           `start` on a fifo and execs.
 * Any failure in a child is reported as {step, errno} on the sync socket, then _exit(1).
 * Nothing here allocates, so it is safe after fork() in a threaded process.
 */
#define _GNU_SOURCE
#include "corral.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Step texts are cut to fit the report buffer on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Where a child reports failure: the step text and errno of the first error. */
struct child {
    const struct corral_plan *plan;
    int sync;
    pid_t runtime;            /* the process that called corral_spawn: both stages' parent */
    char step[512];
};

static int fail(struct child *c, int err, const char *fmt, const char *arg)
{
    snprintf(c->step, sizeof c->step, fmt, arg ? arg : "");
    return -err;
}

/* ------------------------------------------------------------------ sync socket */

int corral_sync_recv(int fd, struct corral_msg *msg)
{
    ssize_t n;
    /* ECONNRESET: the peer exited with a message of ours unread (a GO sent while it was
     * failing), and the kernel reports that once, before the messages the peer queued for
     * us (its ERROR). The next recv returns them, then end of file. */
    do {
        n = recv(fd, msg, sizeof *msg, 0);
    } while (n < 0 && (errno == EINTR || errno == ECONNRESET));
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EPIPE;
    if ((size_t)n != sizeof *msg)
        return -EPROTO;
    msg->step[sizeof msg->step - 1] = '\0';
    return 0;
}

static int send_msg(int fd, int type, int pid, int err, const char *step)
{
    struct corral_msg msg;
    ssize_t n;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    msg.pid = pid;
    msg.err = err;
    if (step)
        snprintf(msg.step, sizeof msg.step, "%s", step);
    do {
        n = send(fd, &msg, sizeof msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int corral_sync_send(int fd, int type)
{
    return send_msg(fd, type, 0, 0, NULL);
}

static int wait_go(struct child *c)
{
    struct corral_msg msg;
    int ret = corral_sync_recv(c->sync, &msg);
    if (ret < 0)
        return fail(c, -ret, "sync: wait for parent", NULL);
    if (msg.type != CORRAL_MSG_GO)
        return fail(c, EPROTO, "sync: unexpected message from parent", NULL);
    return 0;
}

_Noreturn static void child_die(struct child *c, int ret)
{
    send_msg(c->sync, CORRAL_MSG_ERROR, 0, -ret, c->step);
    _exit(1);
}

/* ------------------------------------------------------------------ paths inside the rootfs */

/* Resolve `path` inside `rootfd` and return an fd opened with `flags` | O_CLOEXEC, or -errno. */
static int corral_open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how;
    long fd;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    /* RESOLVE_IN_ROOT: "..", absolute symlinks and absolute paths stay inside rootfd, so a
     * symlink planted in the rootfs (or swapped in during setup) cannot lead to the host. */
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    do {
        fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return fd < 0 ? -errno : (int)fd;
}

/* Create `path` (and missing parents) inside the root, as a directory or, for the last
 * component when as_file, an empty file. Every component is resolved in the root. */
static int mkdir_in_root_depth(int rootfd, const char *path, int as_file, int depth);

/* The component buf (a dangling symlink, as the kernel sees it inside the root) is replaced
 * by its target and the rest of the path is created there, still inside the root. */
static int mkdir_through_symlink(int rootfd, char *buf, char *base, int dirfd, const char *rest,
                                 int as_file, int depth)
{
    char link[PATH_MAX], next[PATH_MAX];
    ssize_t len = readlinkat(dirfd, base, link, sizeof link - 1);
    int n;

    if (len < 0)
        return -errno;
    link[len] = '\0';
    if (link[0] == '/')
        n = snprintf(next, sizeof next, "%s%s%s", link, rest ? "/" : "", rest ? rest : "");
    else {
        const char *parent = "";
        if (base > buf) {
            base[-1] = '\0'; /* buf is now the parent directory */
            parent = buf;
        }
        n = snprintf(next, sizeof next, "%s/%s%s%s", parent, link, rest ? "/" : "",
                     rest ? rest : "");
    }
    if (n >= (int)sizeof next)
        return -ENAMETOOLONG;
    return mkdir_in_root_depth(rootfd, next, as_file, depth + 1);
}

static int mkdir_in_root(int rootfd, const char *path, int as_file)
{
    return mkdir_in_root_depth(rootfd, path, as_file, 0);
}

static int mkdir_in_root_depth(int rootfd, const char *path, int as_file, int depth)
{
    char buf[PATH_MAX];
    char *p;
    int fd, ret;

    if (depth > 40)
        return -ELOOP;
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    p = buf;
    while (*p == '/')
        p++;
    while (*p) {
        char *slash = strchr(p, '/');
        int last;
        if (slash)
            *slash = '\0';
        last = !slash || slash[1] == '\0';
        fd = corral_open_in_root(rootfd, buf, O_PATH);
        if (fd >= 0) {
            close(fd);
        } else if (fd == -ENOENT) {
            /* The parent resolved a moment ago; create the component inside it. */
            char *base = strrchr(buf, '/');
            int dirfd;
            if (base) {
                *base = '\0';
                dirfd = corral_open_in_root(rootfd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
                *base = '/';
                base++;
            } else {
                dirfd = corral_open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
                base = buf;
            }
            if (dirfd < 0)
                return dirfd;
            if (last && as_file) {
                int f = openat(dirfd, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                               0644);
                ret = f < 0 ? -errno : 0;
                if (f >= 0)
                    close(f);
            } else {
                ret = mkdirat(dirfd, base, 0755) < 0 ? -errno : 0;
            }
            if (ret == -EEXIST) {
                struct stat st;
                if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
                    /* It resolved to nothing, so it is a dangling symlink: follow it. */
                    ret = mkdir_through_symlink(rootfd, buf, base, dirfd,
                                                slash ? slash + 1 : NULL, as_file, depth);
                    close(dirfd);
                    return ret;
                }
            }
            close(dirfd);
            if (ret < 0 && ret != -EEXIST)
                return ret;
        } else {
            return fd;
        }
        if (!slash)
            break;
        *slash = '/';
        p = slash + 1;
    }
    return 0;
}

static void fd_path(char *buf, size_t len, int fd)
{
    snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* Mount flags that a bind remount must keep: the kernel refuses to clear flags that are
 * locked on the source mount (as in a user namespace). */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* ------------------------------------------------------------------ plan operations */

/* tmpcopyup: copy the tree under src (the directory a tmpfs now hides) into dst, keeping
 * modes, owners and symlinks. Only directories, regular files and symlinks are copied. Both
 * fds are consumed. */
static int copy_tree(int src, int dst, int depth)
{
    DIR *d;
    struct dirent *e;
    int ret = 0;

    if (depth > 64) {
        close(src);
        close(dst);
        return -ELOOP;
    }
    d = fdopendir(src);
    if (!d) {
        ret = -errno;
        close(src);
        close(dst);
        return ret;
    }
    while (ret == 0 && (errno = 0, e = readdir(d)) != NULL) {
        struct stat st;
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            ret = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int s2, d2;
            if (mkdirat(dst, n, st.st_mode & 07777) < 0 && errno != EEXIST) {
                ret = -errno;
                break;
            }
            s2 = openat(src, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            d2 = openat(dst, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s2 < 0 || d2 < 0) {
                ret = -errno;
                if (s2 >= 0)
                    close(s2);
                if (d2 >= 0)
                    close(d2);
                break;
            }
            ret = copy_tree(s2, d2, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            char buf[65536];
            ssize_t r;
            int in = openat(src, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            int out = in < 0 ? -1
                             : openat(dst, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                      st.st_mode & 07777);
            if (in < 0 || out < 0) {
                ret = -errno;
                if (in >= 0)
                    close(in);
                break;
            }
            while ((r = read(in, buf, sizeof buf)) > 0) {
                if (write(out, buf, (size_t)r) != r) {
                    ret = -EIO;
                    break;
                }
            }
            if (r < 0)
                ret = -errno;
            close(in);
            close(out);
        } else if (S_ISLNK(st.st_mode)) {
            char link[PATH_MAX];
            ssize_t len = readlinkat(src, n, link, sizeof link - 1);
            if (len < 0) {
                ret = -errno;
                break;
            }
            link[len] = '\0';
            if (symlinkat(link, dst, n) < 0) {
                ret = -errno;
                break;
            }
        } else {
            continue;
        }
        if (ret == 0 && fchownat(dst, n, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
            ret = -errno;
        if (ret == 0 && S_ISDIR(st.st_mode) && fchmodat(dst, n, st.st_mode & 07777, 0) < 0)
            ret = -errno;
    }
    if (ret == 0 && errno != 0 && e == NULL)
        ret = -errno;
    closedir(d);
    close(dst);
    return ret;
}

static int do_mount(struct child *c, int rootfd, const struct corral_op *op)
{
    char target[64];
    int fd, ret, i, under = -1;

    if (op->mkdest) {
        ret = mkdir_in_root(rootfd, op->dest, op->dest_is_file);
        if (ret < 0)
            return fail(c, -ret, "mkdir(%s)", op->dest);
    }
    fd = corral_open_in_root(rootfd, op->dest, O_PATH);
    if (fd < 0)
        return fail(c, -fd, "open mount destination(%s)", op->dest);
    fd_path(target, sizeof target, fd);
    if (op->copy_up) {
        /* Keep a handle on what the tmpfs is about to hide. */
        under = corral_open_in_root(rootfd, op->dest, O_RDONLY | O_DIRECTORY);
        if (under < 0) {
            close(fd);
            return fail(c, -under, "open for tmpcopyup(%s)", op->dest);
        }
    }
    if (op->flags & MS_REMOUNT)
        ret = mount(NULL, target, NULL, op->flags, op->data);
    else
        ret = mount(op->source, target, op->fstype,
                    op->copy_up ? op->flags & ~(unsigned long)MS_RDONLY : op->flags, op->data);
    ret = ret < 0 ? -errno : 0;
    close(fd);
    if (ret < 0) {
        if (under >= 0)
            close(under);
        return fail(c, -ret, "mount(%s)", op->dest);
    }
    if (op->copy_up) {
        int top = corral_open_in_root(rootfd, op->dest, O_RDONLY | O_DIRECTORY);
        if (top < 0) {
            close(under);
            return fail(c, -top, "open tmpfs(%s)", op->dest);
        }
        ret = copy_tree(under, top, 0);
        if (ret < 0)
            return fail(c, -ret, "tmpcopyup(%s)", op->dest);
        if (op->flags & MS_RDONLY) {
            fd = corral_open_in_root(rootfd, op->dest, O_PATH);
            if (fd < 0)
                return fail(c, -fd, "open mount destination(%s)", op->dest);
            fd_path(target, sizeof target, fd);
            ret = mount(NULL, target, NULL, MS_REMOUNT | op->flags, op->data) < 0 ? -errno : 0;
            close(fd);
            if (ret < 0)
                return fail(c, -ret, "remount read-only(%s)", op->dest);
        }
    }

    if (!op->remount_ro && !op->remount_flags && !op->propagation[0])
        return 0;
    /* Reopen: the old fd names the directory under the new mount, not the mount itself. */
    fd = corral_open_in_root(rootfd, op->dest, O_PATH);
    if (fd < 0)
        return fail(c, -fd, "open mount destination(%s)", op->dest);
    fd_path(target, sizeof target, fd);
    if (op->remount_ro || op->remount_flags) {
        /* A bind mount takes none of its flags from the mount call: only a remount sets them. */
        unsigned long fl = MS_REMOUNT | MS_BIND | op->remount_flags;
        if (op->remount_ro)
            fl |= MS_RDONLY;
        ret = mount(NULL, target, NULL, fl, NULL);
        if (ret < 0 && errno == EPERM)
            ret = mount(NULL, target, NULL, fl | locked_flags(target), NULL);
        if (ret < 0) {
            ret = -errno;
            close(fd);
            return fail(c, -ret, op->remount_ro ? "remount read-only(%s)" : "remount(%s)",
                        op->dest);
        }
    }
    for (i = 0; i < 4 && op->propagation[i]; i++) {
        if (mount(NULL, target, NULL, op->propagation[i], NULL) < 0) {
            ret = -errno;
            close(fd);
            return fail(c, -ret, "set mount propagation(%s)", op->dest);
        }
    }
    close(fd);
    return 0;
}

static int do_mknod(struct child *c, int rootfd, const struct corral_op *op)
{
    char buf[PATH_MAX];
    char target[64];
    char *base;
    int dirfd, fd, ret;

    /* The parent directory must exist inside the root; create it like a mount point. */
    if (snprintf(buf, sizeof buf, "%s", op->dest) >= (int)sizeof buf)
        return fail(c, ENAMETOOLONG, "mknod(%s)", op->dest);
    base = strrchr(buf, '/');
    if (!base || base[1] == '\0')
        return fail(c, EINVAL, "mknod(%s)", op->dest);
    *base++ = '\0';
    ret = mkdir_in_root(rootfd, buf[0] ? buf : "/", 0);
    if (ret < 0)
        return fail(c, -ret, "mkdir(%s)", buf);
    dirfd = corral_open_in_root(rootfd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
    if (dirfd < 0)
        return fail(c, -dirfd, "open(%s)", buf);
    if (unlinkat(dirfd, base, 0) < 0 && errno != ENOENT) {
        ret = -errno;
        close(dirfd);
        return fail(c, -ret, "unlink(%s)", op->dest);
    }
    if (mknodat(dirfd, base, op->mode, (dev_t)op->dev) == 0) {
        /* mknod honours the umask; the node must have exactly the mode asked for. */
        if (fchmodat(dirfd, base, op->mode & 07777, 0) < 0) {
            ret = -errno;
            close(dirfd);
            return fail(c, -ret, "chmod(%s)", op->dest);
        }
        if (op->uid >= 0 || op->gid >= 0) {
            if (fchownat(dirfd, base, (uid_t)op->uid, (gid_t)op->gid, AT_SYMLINK_NOFOLLOW) < 0) {
                ret = -errno;
                close(dirfd);
                return fail(c, -ret, "chown(%s)", op->dest);
            }
        }
        close(dirfd);
        return 0;
    }
    if (errno != EPERM || !op->source) {
        ret = -errno;
        close(dirfd);
        return fail(c, -ret, "mknod(%s)", op->dest);
    }
    /* No CAP_MKNOD (a user namespace): bind the host's node instead, as runc does. */
    fd = openat(dirfd, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        ret = -errno;
        close(dirfd);
        return fail(c, -ret, "create(%s)", op->dest);
    }
    close(fd);
    fd = openat(dirfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(dirfd);
    if (fd < 0)
        return fail(c, errno, "open(%s)", op->dest);
    fd_path(target, sizeof target, fd);
    ret = mount(op->source, target, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
    close(fd);
    if (ret < 0)
        return fail(c, -ret, "bind device(%s)", op->dest);
    return 0;
}

static int do_symlink(struct child *c, int rootfd, const struct corral_op *op)
{
    char buf[PATH_MAX];
    char *base;
    int dirfd, ret;

    if (snprintf(buf, sizeof buf, "%s", op->dest) >= (int)sizeof buf)
        return fail(c, ENAMETOOLONG, "symlink(%s)", op->dest);
    base = strrchr(buf, '/');
    if (!base || base[1] == '\0')
        return fail(c, EINVAL, "symlink(%s)", op->dest);
    *base++ = '\0';
    dirfd = corral_open_in_root(rootfd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
    if (dirfd < 0)
        return fail(c, -dirfd, "open(%s)", buf[0] ? buf : "/");
    ret = symlinkat(op->source, dirfd, base) < 0 ? -errno : 0;
    close(dirfd);
    if (ret < 0 && ret != -EEXIST)
        return fail(c, -ret, "symlink(%s)", op->dest);
    return 0;
}

static int do_mask(struct child *c, int rootfd, const struct corral_op *op)
{
    struct stat st;
    char target[64];
    int fd, ret;

    fd = corral_open_in_root(rootfd, op->dest, O_PATH);
    if (fd == -ENOENT)
        return 0; /* nothing to hide */
    if (fd < 0)
        return fail(c, -fd, "open masked path(%s)", op->dest);
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        close(fd);
        return fail(c, -ret, "stat masked path(%s)", op->dest);
    }
    fd_path(target, sizeof target, fd);
    if (S_ISDIR(st.st_mode))
        ret = mount("tmpfs", target, "tmpfs", MS_RDONLY, NULL);
    else
        ret = mount("/dev/null", target, NULL, MS_BIND, NULL);
    ret = ret < 0 ? -errno : 0;
    close(fd);
    if (ret < 0)
        return fail(c, -ret, "mask(%s)", op->dest);
    return 0;
}

static int do_readonly(struct child *c, int rootfd, const struct corral_op *op)
{
    char target[64];
    int fd, ret;

    fd = corral_open_in_root(rootfd, op->dest, O_PATH);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fail(c, -fd, "open readonly path(%s)", op->dest);
    fd_path(target, sizeof target, fd);
    ret = mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0 ? -errno : 0;
    close(fd);
    if (ret < 0)
        return fail(c, -ret, "bind readonly path(%s)", op->dest);
    fd = corral_open_in_root(rootfd, op->dest, O_PATH);
    if (fd < 0)
        return fail(c, -fd, "open readonly path(%s)", op->dest);
    fd_path(target, sizeof target, fd);
    /* Read-only, and otherwise the flags the path had (runc's readonlyPath): a read-only
     * /usr or /bin must still run its programs. */
    ret = mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(target),
                NULL) < 0 ? -errno : 0;
    close(fd);
    if (ret < 0)
        return fail(c, -ret, "remount read-only(%s)", op->dest);
    return 0;
}

static int run_ops(struct child *c, int rootfd, int after_pivot)
{
    const struct corral_plan *p = c->plan;
    int i, ret = 0;
    for (i = 0; i < p->n_ops; i++) {
        const struct corral_op *op = &p->ops[i];
        if (op->after_pivot != after_pivot)
            continue;
        switch (op->kind) {
        case CORRAL_OP_MOUNT:
            ret = do_mount(c, rootfd, op);
            break;
        case CORRAL_OP_MKNOD:
            ret = do_mknod(c, rootfd, op);
            break;
        case CORRAL_OP_SYMLINK:
            ret = do_symlink(c, rootfd, op);
            break;
        case CORRAL_OP_MASK:
            ret = do_mask(c, rootfd, op);
            break;
        case CORRAL_OP_READONLY:
            ret = do_readonly(c, rootfd, op);
            break;
        default:
            return fail(c, EINVAL, "unknown plan operation%s", NULL);
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* ------------------------------------------------------------------ root filesystem */

/* pivot_root the way crun and runc do: with the new root as cwd, pivot_root(".", ".")
 * stacks the old root on top of the new one; detaching "." then drops the old root. */
static int do_pivot(struct child *c, const char *rootfs)
{
    int newroot, oldroot, ret;

    oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0)
        return fail(c, errno, "open(%s)", "/");
    newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (newroot < 0) {
        ret = -errno;
        close(oldroot);
        return fail(c, -ret, "open(%s)", rootfs);
    }
    ret = fchdir(newroot) < 0 ? -errno : 0;
    close(newroot);
    if (ret < 0) {
        close(oldroot);
        return fail(c, -ret, "chdir(%s)", rootfs);
    }
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        ret = -errno;
        close(oldroot);
        return fail(c, -ret, "pivot_root(%s)", rootfs);
    }
    /* "." still names the new root's mount, now under the old one: step onto the old root,
     * or the rslave below would hit the container's mounts (and undo their shared
     * propagation) instead of the old root's. */
    ret = fchdir(oldroot) < 0 ? -errno : 0;
    close(oldroot);
    if (ret < 0)
        return fail(c, -ret, "chdir(old root)%s", NULL);
    /* Keep unmount events of the old root from propagating back to the host. */
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return fail(c, errno, "make old root rslave%s", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        return fail(c, errno, "unmount old root%s", NULL);
    if (chdir("/") < 0)
        return fail(c, errno, "chdir(/)%s", NULL);
    return 0;
}

static int do_chroot(struct child *c, const char *rootfs)
{
    if (chdir(rootfs) < 0)
        return fail(c, errno, "chdir(%s)", rootfs);
    if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
        return fail(c, errno, "move mount(%s)", rootfs);
    if (chroot(".") < 0)
        return fail(c, errno, "chroot(%s)", rootfs);
    if (chdir("/") < 0)
        return fail(c, errno, "chdir(/)%s", NULL);
    return 0;
}

/* createRuntime hooks see the mounts; createContainer hooks run in this mount namespace,
 * where host paths still resolve until pivot_root (or chroot). */
static int hooks_sync(struct child *c)
{
    if (!c->plan->hooks_sync)
        return 0;
    if (send_msg(c->sync, CORRAL_MSG_HOOKS, 0, 0, NULL) < 0)
        return fail(c, EPIPE, "sync: hooks%s", NULL);
    return wait_go(c);
}

static int setup_rootfs(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int rootfd, ret;

    if (p->chroot_only) {
        /* The caller's mount namespace: anything mounted here would be the host's, so the
         * plan mounts nothing (Python refused what would) and chroot changes this process
         * alone. */
        ret = hooks_sync(c);
        if (ret < 0)
            return ret;
        if (chroot(p->rootfs) < 0)
            return fail(c, errno, "chroot(%s)", p->rootfs);
        if (chdir("/") < 0)
            return fail(c, errno, "chdir(/)%s", NULL);
        return 0;
    }
    if (mount(NULL, "/", NULL, p->root_propagation ? p->root_propagation : MS_SLAVE | MS_REC,
              NULL) < 0)
        return fail(c, errno, "set propagation of /%s", NULL);
    /* A shared parent would pass the rootfs bind (and what is mounted under it) back to the
     * host, and pivot_root refuses one. */
    if (p->rootfs_parent && mount(NULL, p->rootfs_parent, NULL, MS_PRIVATE, NULL) < 0)
        return fail(c, errno, "make rootfs parent mount private(%s)", p->rootfs_parent);
    /* pivot_root needs the new root to be a mount point. */
    if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return fail(c, errno, "bind rootfs(%s)", p->rootfs);
    rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return fail(c, errno, "open rootfs(%s)", p->rootfs);
    ret = run_ops(c, rootfd, 0);
    close(rootfd);
    if (ret < 0)
        return ret;
    ret = hooks_sync(c);
    if (ret < 0)
        return ret;

    ret = p->no_pivot ? do_chroot(c, p->rootfs) : do_pivot(c, p->rootfs);
    if (ret < 0)
        return ret;

    rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return fail(c, errno, "open(/)%s", NULL);
    ret = run_ops(c, rootfd, 1);
    /* Like runc, create a missing cwd while the root may still be written; when that is
     * impossible the chdir later fails and names the directory. */
    if (ret == 0 && p->cwd && p->cwd[0] == '/')
        (void)mkdir_in_root(rootfd, p->cwd, 0);
    close(rootfd);
    if (ret < 0)
        return ret;

    if (p->readonly_root) {
        unsigned long fl = MS_REMOUNT | MS_BIND | MS_RDONLY;
        if (mount(NULL, "/", NULL, fl, NULL) < 0 &&
            (errno != EPERM || mount(NULL, "/", NULL, fl | locked_flags("/"), NULL) < 0))
            return fail(c, errno, "remount / read-only%s", NULL);
    }
    if (p->rootfs_propagation && mount(NULL, "/", NULL, p->rootfs_propagation, NULL) < 0)
        return fail(c, errno, "set rootfs propagation%s", NULL);
    return 0;
}

/* ------------------------------------------------------------------ process settings */

static int write_file(const char *path, const char *value)
{
    int fd, ret = 0;
    size_t len = strlen(value);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, value, len) != (ssize_t)len)
        ret = -errno;
    close(fd);
    return ret;
}

static int bring_lo_up(struct child *c)
{
    struct ifreq ifr;
    int s, ret = 0;
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return fail(c, errno, "socket(lo)%s", NULL);
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        ret = fail(c, errno, "get flags(lo)%s", NULL);
    } else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            ret = fail(c, errno, "bring up(lo)%s", NULL);
    }
    close(s);
    return ret;
}

static int apply_capabilities(struct child *c)
{
    const struct corral_plan *p = c->plan;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int i;

    memset(data, 0, sizeof data);
    data[0].effective = (uint32_t)p->cap_effective;
    data[1].effective = (uint32_t)(p->cap_effective >> 32);
    data[0].permitted = (uint32_t)p->cap_permitted;
    data[1].permitted = (uint32_t)(p->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)p->cap_inheritable;
    data[1].inheritable = (uint32_t)(p->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return fail(c, errno, "capset%s", NULL);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return fail(c, errno, "clear ambient capabilities%s", NULL);
    for (i = 0; i <= p->cap_last && i < 64; i++) {
        if (!(p->cap_ambient & (1ULL << i)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0) < 0)
            return fail(c, errno, "raise ambient capability%s", NULL);
    }
    return 0;
}

static int drop_bounding(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int i;
    for (i = 0; i <= p->cap_last && i < 64; i++) {
        if (p->cap_bounding & (1ULL << i))
            continue;
        if (prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 && errno != EINVAL)
            return fail(c, errno, "drop bounding capability%s", NULL);
    }
    return 0;
}

/* seccomp(2) with the program the parent compiled. The kernel wants no_new_privs, or
 * CAP_SYS_ADMIN in the process's user namespace, at this point. Returns 0 or -errno. */
static int load_seccomp(const struct corral_plan *p)
{
    struct sock_fprog prog;
    prog.len = (unsigned short)(p->seccomp_len / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)p->seccomp_prog;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog) < 0)
        return -errno;
    return 0;
}

static int set_user(struct child *c)
{
    const struct corral_plan *p = c->plan;
    if (p->set_groups && setgroups((size_t)p->n_groups, (const gid_t *)p->groups) < 0)
        return fail(c, errno, "setgroups%s", NULL);
    if (setresgid(p->gid, p->gid, p->gid) < 0)
        return fail(c, errno, "setgid%s", NULL);
    if (setresuid(p->uid, p->uid, p->uid) < 0)
        return fail(c, errno, "setuid%s", NULL);
    return 0;
}

static const char *env_get(const char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

/* One /etc/passwd line (name:passwd:uid:gid:gecos:dir:shell): "HOME=dir" into out if its
 * uid is uid. */
static int passwd_line_home(char *line, unsigned int uid, char *out, size_t outlen)
{
    char *f[7], *s = line, *end;
    unsigned long v;
    int n = 0;

    f[n++] = s;
    while (n < 7 && (s = strchr(s, ':')) != NULL) {
        *s++ = '\0';
        f[n++] = s;
    }
    if (n < 6 || !*f[2])
        return 0;
    errno = 0;
    v = strtoul(f[2], &end, 10);
    if (*end || errno || v != uid)
        return 0;
    snprintf(out, outlen, "HOME=%s", f[5]);
    return 1;
}

/* HOME from the container's /etc/passwd, as runc sets it: read in the container's mount
 * namespace and root, before setuid (the file may be unreadable to the user). The first
 * entry for the uid wins; without one, the default the parent put in envp stays. */
static void lookup_home(const struct corral_plan *p)
{
    static char home[PATH_MAX + 8];
    char buf[4096], *line, *nl;
    size_t len = 0, total = 0;
    int fd, eof = 0, skip = 0;
    struct stat st;

    if (p->home_slot < 0)
        return;
    /* The container owns the file: no fifo, device or endless file may hold us here. */
    fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return;
    }
    while (!eof && total < (16u << 20)) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = 1;
            n = 0;
            if (len > 0)
                buf[len++] = '\n'; /* a last line without a newline */
        }
        len += (size_t)n;
        total += (size_t)n;
        line = buf;
        while ((nl = memchr(line, '\n', len - (size_t)(line - buf))) != NULL) {
            *nl = '\0';
            if (!skip && passwd_line_home(line, p->uid, home, sizeof home)) {
                /* envp is this process's own copy of the parent's array */
                ((const char **)p->envp)[p->home_slot] = home;
                close(fd);
                return;
            }
            skip = 0;
            line = nl + 1;
        }
        len -= (size_t)(line - buf);
        memmove(buf, line, len);
        if (len == sizeof buf - 1) { /* a line longer than the buffer: not a user's */
            len = 0;
            skip = 1;
        }
    }
    close(fd);
}

static int is_executable_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EACCES;
    if (access(path, X_OK) < 0)
        return -errno;
    return 0;
}

/* Look argv[0] up in the container's PATH, as execvp would, but before `start` so that a
 * missing command fails at create with the words podman maps to exit 127. */
static int find_executable(struct child *c, char *out, size_t outlen)
{
    const char *cmd = c->plan->argv[0];
    const char *path, *dir;
    int ret, saw_eacces = 0;

    if (!cmd || !*cmd)
        return fail(c, ENOENT, "exec: empty command%s", NULL);
    if (strchr(cmd, '/')) {
        snprintf(out, outlen, "%s", cmd);
        ret = is_executable_file(out);
        if (ret < 0)
            return fail(c, -ret, "exec(%s)", cmd);
        return 0;
    }
    path = env_get(c->plan->envp, "PATH");
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    dir = path;
    for (;;) {
        const char *end = strchr(dir, ':');
        size_t len = end ? (size_t)(end - dir) : strlen(dir);
        if ((size_t)snprintf(out, outlen, "%.*s/%s", (int)len, len ? dir : ".", cmd) < outlen) {
            ret = is_executable_file(out);
            if (ret == 0)
                return 0;
            if (ret == -EACCES)
                saw_eacces = 1;
        }
        if (!end)
            break;
        dir = end + 1;
    }
    if (saw_eacces)
        return fail(c, EACCES, "exec(%s)", cmd);
    snprintf(c->step, sizeof c->step, "exec: \"%s\": executable file not found in $PATH", cmd);
    return -ENOENT;
}

static int check_cwd(struct child *c)
{
    char buf[PATH_MAX];
    if (chdir(c->plan->cwd) < 0)
        return fail(c, errno, "chdir(%s)", c->plan->cwd);
    /* A cwd reached through a leaked host fd shows up as "(unreachable)/..." or fails:
     * refuse it (the class of CVE-2024-21626). */
    if (!getcwd(buf, sizeof buf))
        return fail(c, errno, "getcwd(%s)", c->plan->cwd);
    if (buf[0] != '/')
        return fail(c, EPERM, "cwd(%s) is outside the container", c->plan->cwd);
    return 0;
}

/* While it waits for `start`, the process is the init of its pid namespace, which the kernel
 * spares every signal it has no handler for (SIGKILL aside). runc's init is a Go program that
 * handles them all and exits, so `kill ID TERM` stops a created container: do the same. */
static void die_on_signal(int sig)
{
    signal(sig, SIG_DFL);
    raise(sig); /* ends a process that is not a pid namespace init */
    _exit(128 + sig);
}

static void die_on_signals(void)
{
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2,
                               SIGALRM, SIGTERM, SIGXCPU, SIGVTALRM, SIGPROF, SIGPWR};
    struct sigaction sa;
    size_t i;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = die_on_signal;
    sigfillset(&sa.sa_mask);
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

static void reset_signals(void)
{
    sigset_t all;
    int s;
    /* The Python parent ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored. */
    for (s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/* ------------------------------------------------------------------ terminal */

static int send_fd(int sock, int fd, const char *name)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {(void *)name, strlen(name)};
    struct msghdr msg;
    struct cmsghdr *cm;

    memset(cbuf, 0, sizeof cbuf);
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* A pty from the container's own devpts: the master goes to whoever listens on the console
 * socket, the slave becomes the controlling terminal, stdio and /dev/console. Runs after
 * pivot_root so /dev/ptmx is the container's. */
static int setup_console(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int master, slave, unlock = 0, ret, fd;
    char path[64];

    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return fail(c, errno, "open(%s)", "/dev/ptmx");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
        ret = fail(c, errno, "unlockpt(%s)", "/dev/ptmx");
        close(master);
        return ret;
    }
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        ret = fail(c, errno, "open pty peer%s", NULL);
        close(master);
        return ret;
    }
    if (p->console_rows || p->console_cols) {
        struct winsize ws = {p->console_rows, p->console_cols, 0, 0};
        (void)ioctl(slave, TIOCSWINSZ, &ws);
    }
    /* The process owns its terminal, as after a login. */
    (void)fchown(slave, p->uid, p->gid);

    /* /dev/console: a bind of the pty over a placeholder file, only when creating the
     * container's root (not for exec). O_PATH never opens a device that is already there. */
    fd = -1;
    if (p->rootfs && !p->chroot_only) {
        fd = open("/dev/console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            fd = open("/dev/console", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd >= 0) {
        close(fd);
        snprintf(path, sizeof path, "/proc/self/fd/%d", slave);
        if (mount(path, "/dev/console", NULL, MS_BIND, NULL) < 0) {
            ret = fail(c, errno, "bind mount pty on(%s)", "/dev/console");
            goto out;
        }
    }

    ret = send_fd(p->console_fd, master, "/dev/ptmx");
    if (ret < 0) {
        ret = fail(c, -ret, "send pty master to console socket%s", NULL);
        goto out;
    }
    close(master);
    master = -1;
    close(p->console_fd);

    if (setsid() < 0) {
        ret = fail(c, errno, "setsid%s", NULL);
        goto out;
    }
    if (ioctl(slave, TIOCSCTTY, 0) < 0) {
        ret = fail(c, errno, "ioctl(TIOCSCTTY)%s", NULL);
        goto out;
    }
    for (fd = 0; fd < 3; fd++) {
        if (dup2(slave, fd) < 0) {
            ret = fail(c, errno, "dup2(pty)%s", NULL);
            goto out;
        }
    }
    ret = 0;
out:
    if (master >= 0)
        close(master);
    if (slave > 2)
        close(slave);
    return ret;
}

/* ------------------------------------------------------------------ the container process */

/* Close every fd the runtime's process had open but the ones the plan names: stdio, the
 * preserved fds, the sync socket, the state directory, the console socket, corral-exec. A
 * lock the runtime holds on the state directory must not live on in an init it forked. */
static int close_inherited(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int keep[4] = {c->sync, p->start_dirfd, p->console_fd, p->exec_fd};
    unsigned int from = 3U + (unsigned int)p->preserve_fds;
    int i, j;

    for (i = 1; i < 4; i++) /* sort: no qsort after fork, it may allocate */
        for (j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (i = 0; i < 4; i++) {
        if (keep[i] < 0 || (unsigned int)keep[i] < from)
            continue;
        if ((unsigned int)keep[i] > from && syscall(SYS_close_range, from, keep[i] - 1, 0) < 0)
            return fail(c, errno, "close inherited fds%s", NULL);
        from = (unsigned int)keep[i] + 1;
    }
    if (syscall(SYS_close_range, from, ~0U, 0) < 0)
        return fail(c, errno, "close inherited fds%s", NULL);
    return 0;
}

static int container_setup(struct child *c, char *exe, size_t exelen)
{
    const struct corral_plan *p = c->plan;
    int i, ret;
    char buf[32];

    /* A session of its own, as runc: conmon's --timeout kills the container's process group,
     * which must not be the runtime's caller. With a terminal, setup_console does it. */
    if (p->new_session && p->console_fd < 0 && setsid() < 0)
        return fail(c, errno, "setsid%s", NULL);
    if (p->new_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
        return fail(c, errno, "unshare(cgroup namespace)%s", NULL);
    if (p->session_keyring) {
        /* Keys the runtime's session holds stay out of the container. Kernels without
         * keyrings (ENOSYS) or that forbid it in this namespace (EACCES) are left as is. */
        long key = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, p->session_keyring);
        if (key < 0 && errno != ENOSYS && errno != EACCES && errno != EPERM)
            return fail(c, errno, "join session keyring(%s)", p->session_keyring);
        if (key >= 0)
            /* possessor: all; user: view, read, link, set attributes (as runc) */
            (void)syscall(SYS_keyctl, KEYCTL_SETPERM, key, 0x3f1b0000);
    }
    for (i = 0; i < p->n_sysctls; i++) {
        ret = write_file(p->sysctls[i].path, p->sysctls[i].value);
        if (ret < 0)
            return fail(c, -ret, "write sysctl(%s)", p->sysctls[i].path);
    }
    if (p->set_oom_score_adj) {
        snprintf(buf, sizeof buf, "%d", p->oom_score_adj);
        ret = write_file("/proc/self/oom_score_adj", buf);
        if (ret < 0)
            return fail(c, -ret, "write oom_score_adj%s", NULL);
    }
    if (p->clone_flags & CLONE_NEWNET && p->lo_up) {
        ret = bring_lo_up(c);
        if (ret < 0)
            return ret;
    }
    if (p->rootfs) {
        ret = setup_rootfs(c);
        if (ret < 0)
            return ret;
    }
    if (p->console_fd >= 0) {
        ret = setup_console(c);
        if (ret < 0)
            return ret;
    }
    if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
        return fail(c, errno, "sethostname(%s)", p->hostname);
    if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
        return fail(c, errno, "setdomainname(%s)", p->domainname);
    for (i = 0; i < p->n_rlimits; i++) {
        struct rlimit rl = {(rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard};
        if (setrlimit(p->rlimits[i].resource, &rl) < 0)
            return fail(c, errno, "setrlimit%s", NULL);
    }
    /* The working directory and HOME before the filter, which may deny getcwd or open (as
     * crun does). The chdir is made as root, as runc's first attempt is; the directory stays
     * the cwd through setuid. */
    ret = check_cwd(c);
    if (ret < 0)
        return ret;
    lookup_home(p);
    /* Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: load the filter now, while the
     * process is still privileged (runc does the same), so every step from here on, and the
     * wait for `start`, runs under it. With no_new_privs it is the last step before execve. */
    if (p->seccomp_prog && !p->no_new_privs) {
        ret = load_seccomp(p);
        if (ret < 0)
            return fail(c, -ret, "seccomp: load filter%s", NULL);
    }
    /* Order as runc: bounding set while still privileged, keep caps across setuid, then
     * set the final effective/permitted/inheritable/ambient sets. */
    if (p->set_caps) {
        ret = drop_bounding(c);
        if (ret < 0)
            return ret;
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            return fail(c, errno, "prctl(PR_SET_KEEPCAPS)%s", NULL);
    }
    ret = set_user(c);
    if (ret < 0)
        return ret;
    if (p->set_caps) {
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
            return fail(c, errno, "prctl(PR_SET_KEEPCAPS)%s", NULL);
        ret = apply_capabilities(c);
        if (ret < 0)
            return ret;
    }
    ret = find_executable(c, exe, exelen);
    if (ret < 0)
        return ret;
    if (p->umask >= 0)
        umask((mode_t)p->umask);
    return 0;
}

/* Exec corral-exec from the sealed memfd (it then execs argv[1]); returns only on failure,
 * with errno set. Through /proc/self/fd with execve when the container has its procfs, as
 * a seccomp profile that lets the program run must allow execve, not always execveat;
 * execveat(AT_EMPTY_PATH) needs no /proc. */
static void exec_helper(const struct corral_plan *p, const char *const *argv,
                        const char *const *envp)
{
    char path[64];
    if (p->exec_via_proc) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", p->exec_fd);
        execve(path, (char *const *)argv, (char *const *)envp);
        if (errno != ENOENT && errno != ENOTDIR)
            return;
    }
    syscall(SYS_execveat, p->exec_fd, "", (char *const *)argv, (char *const *)envp,
            AT_EMPTY_PATH);
}

static int wait_for_start(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int fd;
    if (p->start_dirfd < 0)
        return 0;
    /* Blocks until `start` opens the fifo for reading. */
    do {
        fd = openat(p->start_dirfd, p->start_fifo, O_WRONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    if (write(fd, "0", 1) != 1) {
        int err = errno;
        close(fd);
        return -err;
    }
    close(fd);
    return 0;
}

/* startContainer hooks: in the container, after `start`, before the user's process. The
 * state JSON the parent left in the state directory goes to each hook's stdin. */
static int run_start_hooks(const struct corral_plan *p)
{
    char state[65536];
    ssize_t len = 0;
    int i, fd;

    fd = openat(p->start_dirfd, p->start_state, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        len = read(fd, state, sizeof state);
        close(fd);
        if (len < 0)
            len = 0;
    }
    for (i = 0; i < p->n_start_hooks; i++) {
        const struct corral_hook *h = &p->start_hooks[i];
        int in[2], status, waited = 0;
        pid_t pid;

        if (pipe2(in, O_CLOEXEC) < 0)
            return -errno;
        pid = fork();
        if (pid < 0) {
            int err = errno;
            close(in[0]);
            close(in[1]);
            return -err;
        }
        if (pid == 0) {
            dup2(in[0], 0);
            reset_signals();
            exec_helper(p, h->argv, h->envp);
            dprintf(2, "corral: startContainer hook %s: %s\n", h->path, strerror(errno));
            _exit(127);
        }
        close(in[0]);
        if (len > 0 && write(in[1], state, (size_t)len) < 0 && errno != EPIPE) {
            /* the hook need not read its stdin */
        }
        close(in[1]);
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid)
                break;
            if (r < 0 && errno != EINTR)
                return -errno;
            if (h->timeout > 0 && waited >= h->timeout * 1000) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                dprintf(2, "corral: startContainer hook %s: timed out after %ds\n", h->path,
                        h->timeout);
                return -ETIMEDOUT;
            }
            usleep(1000);
            waited++;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            dprintf(2, "corral: startContainer hook %s failed (status %d)\n", h->path, status);
            return -ECANCELED;
        }
    }
    return 0;
}

_Noreturn static void container_main(struct child *c)
{
    const struct corral_plan *p = c->plan;
    char exe[PATH_MAX];
    int ret;

    /* Until execve, this process is a copy of the runtime: keep others in the container
     * from opening it through /proc (the class of CVE-2019-5736). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ret = close_inherited(c);
    if (ret < 0)
        child_die(c, ret);
    ret = container_setup(c, exe, sizeof exe);
    if (ret < 0)
        child_die(c, ret);

    /* Still under the parent-death signal: a runtime killed before it recorded us takes us
     * along. Its GO says the state is committed; from then on it may exit. */
    if (send_msg(c->sync, CORRAL_MSG_READY, 0, 0, NULL) < 0)
        _exit(1);
    if (wait_go(c) < 0)
        _exit(1);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    close(c->sync);

    die_on_signals(); /* until reset_signals(), just before execve */
    ret = wait_for_start(c);
    if (ret < 0) {
        dprintf(2, "corral: wait for start: %s\n", strerror(-ret));
        _exit(127);
    }
    if (p->n_start_hooks > 0 && run_start_hooks(p) < 0)
        _exit(127);
    if (p->start_dirfd >= 0)
        close(p->start_dirfd);
    reset_signals();
    /* Only stdio and the preserved fds survive exec (before the filter, which may deny
     * close_range). */
    syscall(SYS_close_range, 3 + p->preserve_fds, ~0U, CLOSE_RANGE_CLOEXEC);
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        dprintf(2, "corral: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
        _exit(127);
    }
    /* As few syscalls as possible run under the filter: only execve. The parent checked the
     * program's size and the flags against this kernel, so this fails only for lack of
     * memory; the sync socket is closed by now, so stderr is the report. */
    if (p->seccomp_prog && p->no_new_privs) {
        int err = load_seccomp(p);
        if (err < 0) {
            dprintf(2, "corral: seccomp: load filter: %s\n", strerror(-err));
            _exit(127);
        }
    }
    p->exec_argv[1] = exe;
    exec_helper(p, p->exec_argv, p->envp);
    dprintf(2, "corral: exec %s (through corral-exec): %s\n", exe, strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

/* ------------------------------------------------------------------ stage 1 */

_Noreturn static void stage1(struct child *c)
{
    const struct corral_plan *p = c->plan;
    int i, ret, joined_user = 0;
    long pid;

    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* The parent may have died before PDEATHSIG was armed. */
    if (getppid() != c->runtime)
        _exit(1);

    for (i = 0; i < p->n_join; i++) {
        if (p->join_types[i] == CLONE_NEWUSER)
            joined_user = 1;
        if (setns(p->join_fds[i], p->join_types[i]) < 0)
            child_die(c, fail(c, errno, "setns(%s)", p->join_names[i]));
    }
    if (p->new_userns) {
        if (unshare(CLONE_NEWUSER) < 0)
            child_die(c, fail(c, errno, "unshare(user namespace)%s", NULL));
        if (send_msg(c->sync, CORRAL_MSG_USERNS, 0, 0, NULL) < 0)
            _exit(1);
    }
    ret = wait_go(c);
    if (ret < 0)
        child_die(c, ret);
    if (p->new_userns || joined_user) {
        /* Become root of the (possibly new) user namespace before creating the others. */
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
            child_die(c, fail(c, errno, "become root in user namespace%s", NULL));
    }
    if (p->new_timens && unshare(CLONE_NEWTIME) < 0)
        child_die(c, fail(c, errno, "unshare(time namespace)%s", NULL));

    /* CLONE_PARENT: the container process is the runtime's child, so `run` can wait for it. */
    pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | p->clone_flags | SIGCHLD), NULL, NULL,
                  NULL, NULL);
    if (pid < 0)
        child_die(c, fail(c, errno, "clone(container process)%s", NULL));
    if (pid == 0) {
        /* CLONE_PARENT: our parent is the runtime, which may be gone before this is armed.
         * In a new pid namespace getppid() says 0 either way: a hung-up sync socket tells. */
        struct pollfd hup = {c->sync, POLLRDHUP, 0};
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (poll(&hup, 1, 0) != 0)
            _exit(1);
        container_main(c);
    }
    send_msg(c->sync, CORRAL_MSG_PID, (int)pid, 0, NULL);
    _exit(0);
}

int corral_spawn(const struct corral_plan *plan, int *pid, int *sync_fd, char *err_step,
                 int err_step_len)
{
    int sv[2];
    pid_t child;
    struct child c;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err_step, (size_t)err_step_len, "socketpair(sync)");
        return -errno;
    }
    child = fork();
    if (child < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        snprintf(err_step, (size_t)err_step_len, "fork(stage 1)");
        return -err;
    }
    if (child == 0) {
        close(sv[0]);
        memset(&c, 0, sizeof c);
        c.plan = plan;
        c.sync = sv[1];
        c.runtime = getppid();
        stage1(&c);
    }
    close(sv[1]);
    *pid = child;
    *sync_fd = sv[0];
    return 0;
}

/* Corral's C core: only what must run between clone() and execve().
 *
 * Python builds a fully decided plan (struct corral_plan) and drives the parent side of a
 * small sync protocol; the code here forks, enters namespaces, executes the plan in order
 * and execs. Everything between the cffi markers is also read by csrc/build_ffi.py as the
 * cffi cdef, so it must stay plain C declarations (no macros, no includes).
 */
#ifndef CORRAL_H
#define CORRAL_H

#include <stdint.h>

/* cffi:begin */

/* Operations on the container's filesystem, executed in order before pivot_root
 * (paths are inside the rootfs) or after it (after_pivot = 1, paths inside the new root). */
enum corral_op_kind {
    CORRAL_OP_MOUNT = 1,   /* mount(source, dest, fstype, flags, data), then remount/propagation */
    CORRAL_OP_MKNOD = 2,   /* device node at dest; falls back to a bind of source when denied */
    CORRAL_OP_SYMLINK = 3, /* symlink at dest pointing to source (skipped when dest exists) */
    CORRAL_OP_MASK = 4,    /* maskedPaths entry: /dev/null over a file, read-only tmpfs over a dir */
    CORRAL_OP_READONLY = 5 /* readonlyPaths entry: bind onto itself, then remount read-only */
};

struct corral_op {
    int kind;
    int after_pivot;          /* 1: run after pivot_root, with dest relative to the new root */
    const char *source;       /* host path, fs source name, or symlink target */
    const char *dest;         /* absolute path inside the container */
    const char *fstype;
    unsigned long flags;      /* MS_* flags for the mount call (MS_BIND|MS_REC for rbind) */
    const char *data;
    int remount_ro;           /* bind mounts: remount read-only after mounting */
    unsigned long remount_flags; /* bind mounts: MS_* flags (nosuid, nodev, ...) to set by a
                                  * remount, read-only or not; 0 and !remount_ro: none */
    unsigned long propagation[4]; /* MS_PRIVATE|MS_REC etc., applied in order; 0 ends */
    int dest_is_file;         /* create the destination as an empty file, not a directory */
    int mkdest;               /* create the destination (and parents) when missing */
    unsigned int mode;        /* mknod: S_IFCHR|0666 etc. */
    uint64_t dev;             /* mknod: makedev(major, minor) */
    int64_t uid;              /* mknod: owner, -1 keeps (a uid_t is 32 bits: all of them fit) */
    int64_t gid;
    int copy_up;              /* tmpcopyup: copy what was under dest into the new tmpfs */
};

struct corral_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/* An OCI startContainer hook, run by the container process after `start`, before exec. */
struct corral_hook {
    const char *path;
    const char *const *argv;  /* corral-exec's argv: {"corral-exec", path, argv..., NULL} */
    const char *const *envp;  /* NULL-terminated */
    int timeout;              /* seconds; 0: none */
};

struct corral_sysctl {
    const char *path;         /* /proc/sys/net/ipv4/ip_forward */
    const char *value;
};

struct corral_plan {
    /* namespaces */
    int clone_flags;          /* CLONE_NEW{NS,UTS,IPC,NET,PID} for the container process */
    int new_userns;           /* unshare a user namespace; the parent writes the id maps */
    int new_cgroupns;         /* unshare a cgroup namespace after cgroup placement */
    int new_timens;
    const int *join_fds;      /* namespace fds to setns() into, user namespace first */
    const int *join_types;    /* CLONE_NEW* of each fd */
    const char *const *join_names; /* "<type> <path>" of each fd, for error reports */
    int n_join;

    /* filesystem */
    const char *rootfs;       /* absolute host path of the root filesystem */
    int no_pivot;             /* MS_MOVE + chroot instead of pivot_root */
    int chroot_only;          /* no mount namespace of its own: mount nothing, only chroot */
    int readonly_root;
    unsigned long root_propagation;  /* applied to / before anything else (MS_SLAVE|MS_REC) */
    unsigned long rootfs_propagation; /* applied to the new / after pivot; 0 for none */
    const char *rootfs_parent; /* made private before the rootfs bind (it is shared); NULL: none */
    const struct corral_op *ops;
    int n_ops;

    /* identity and environment */
    const char *hostname;     /* NULL: leave as is */
    const char *domainname;
    int lo_up;                /* bring up lo in a new network namespace */
    const struct corral_sysctl *sysctls;
    int n_sysctls;
    const struct corral_rlimit *rlimits;
    int n_rlimits;
    int oom_score_adj;
    int set_oom_score_adj;
    int umask;                /* -1: leave as is */
    unsigned int uid;
    unsigned int gid;
    const unsigned int *groups;
    int n_groups;
    int set_groups;           /* call setgroups() with groups (possibly none) */
    int set_caps;             /* apply the capability sets below */
    int cap_last;             /* /proc/sys/kernel/cap_last_cap */
    uint64_t cap_bounding;
    uint64_t cap_effective;
    uint64_t cap_permitted;
    uint64_t cap_inheritable;
    uint64_t cap_ambient;
    int no_new_privs;
    /* seccomp(SECCOMP_SET_MODE_FILTER, seccomp_flags) with this program (struct sock_filter[],
     * seccomp_len bytes, compiled by the parent); NULL: no filter */
    const void *seccomp_prog;
    unsigned int seccomp_len;
    unsigned int seccomp_flags;

    /* the process */
    int new_session;          /* setsid() without a terminal too (with one it always happens) */
    const char *cwd;
    const char *const *argv;  /* NULL-terminated */
    const char *const *envp;  /* NULL-terminated */
    /* The container's program and its startContainer hooks are exec'd through corral-exec
     * (csrc/exec.c) from this sealed memfd, never straight from this copy of the runtime:
     * /proc/self/exe must not name a host binary when the kernel resolves an interpreter. */
    int exec_fd;
    int exec_via_proc;        /* execve("/proc/self/fd/<exec_fd>"), execveat when that is ENOENT */
    const char **exec_argv;   /* {"corral-exec", NULL (the resolved path goes here), argv..., NULL} */
    int home_slot;            /* envp[home_slot] is a default HOME=: replaced by the home of
                               * uid in the container's /etc/passwd if it has one; -1: none */
    int preserve_fds;         /* fds 3 .. 3+preserve_fds-1 stay open across exec */
    int start_dirfd;          /* wait for `start` on start_fifo in this dir; -1: exec at once */
    const char *start_fifo;

    /* hooks: stop after the mounts, before pivot_root, until the parent has run the
     * prestart/createRuntime/createContainer hooks (CORRAL_MSG_HOOKS, then GO) */
    int hooks_sync;
    const struct corral_hook *start_hooks;
    int n_start_hooks;
    const char *start_state;  /* file in start_dirfd holding the state for the hooks' stdin */

    /* a new session keyring with this name (runc's default); NULL: keep the caller's */
    const char *session_keyring;

    /* terminal: a unix socket to send the pty master to (SCM_RIGHTS); -1: no terminal */
    int console_fd;
    unsigned short console_rows;
    unsigned short console_cols;
};

/* Sync messages between the parent (Python) and the child stages. */
enum corral_msg_type {
    CORRAL_MSG_USERNS = 1,    /* child: a user namespace was unshared, write my id maps */
    CORRAL_MSG_GO = 2,        /* parent: maps written and cgroups joined, go on */
    CORRAL_MSG_PID = 3,       /* stage 1: pid = the container process, as the parent sees it */
    CORRAL_MSG_READY = 4,     /* container process: set up, waiting for start (or exec) */
    CORRAL_MSG_ERROR = 5,     /* any stage: err = errno, step = what failed */
    CORRAL_MSG_HOOKS = 6      /* container process: mounts done, run the hooks, then GO */
};

struct corral_msg {
    int type;
    int pid;
    int err;
    char step[512];
};

/* Fork the stage-1 child that will set up and clone the container process. On success
 * returns 0, *pid is the stage-1 pid and *sync_fd the parent's end of the sync socket
 * (close-on-exec). Returns -errno on failure with err_step filled. */
int corral_spawn(const struct corral_plan *plan, int *pid, int *sync_fd,
                 char *err_step, int err_step_len);

/* Receive one message (blocks). Returns 0, or -errno; -EPIPE when the peer closed. */
int corral_sync_recv(int fd, struct corral_msg *msg);

/* Send a message of `type`. Returns 0 or -errno. */
int corral_sync_send(int fd, int type);

/* cffi:end */

#endif

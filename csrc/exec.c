/* corral-exec: the last program the runtime runs before the container's own.
 *
 * The process that sets a container up is a fork of the runtime, so until its final execve
 * /proc/self/exe names the host's Python. If the container's program is a script whose
 * interpreter is `#!/proc/self/exe`, the kernel resolves that link while the old image is
 * still in place and would load the host's Python (and with it the container's own
 * ld.so, which can keep an fd on the host binary: the CVE-2019-5736 class). So the set-up
 * process first execs this helper from a sealed memfd copy the runtime made, and the helper
 * execs the real program: at that moment /proc/self/exe is the sealed copy, which nobody
 * can write, and the helper is static, so no loader of the container's runs while it is.
 *
 * argv: {"corral-exec", path, argv[0] of the program, ..., NULL}; the environment is passed
 * through. Run as {"corral-pod-init", NULL} it is pid 1 of a pod's shared pid namespace
 * instead (csrc/monitor/reaper.c): it only reaps, and the pod's containers, which see it,
 * find a sealed copy behind its /proc/1/exe. No libc (csrc/nolibc.h): two raw syscalls, so the copy is a few kilobytes.
 */
#include "nolibc.h"

#include <linux/errno.h>

#define MARK "corral-exec"
#define POD_INIT "corral-pod-init"

/* The few constants it needs, as the kernel defines them on x86_64 and aarch64 alike. */
#define SIG_BLOCK_ 0
#define SIGCHLD_ 17
#define WNOHANG_ 1
#define PR_SET_DUMPABLE_ 4
#define PR_SET_NAME_ 15

static void say(const char *s)
{
    nolibc_write(2, s);
}

static const char *errname(long err)
{
    switch (err) {
    case ENOENT: return "No such file or directory";
    case EACCES: return "Permission denied";
    case EPERM: return "Operation not permitted";
    case ENOEXEC: return "Exec format error";
    case ENOMEM: return "Cannot allocate memory";
    case E2BIG: return "Argument list too long";
    case ETXTBSY: return "Text file busy";
    case ELOOP: return "Too many levels of symbolic links";
    case ENOTDIR: return "Not a directory";
    case EISDIR: return "Is a directory";
    case EINVAL: return "Invalid argument";
    case ENAMETOOLONG: return "File name too long";
    case EIO: return "Input/output error";
    case ELIBBAD: return "Accessing a corrupted shared library";
    case ENOSYS: return "Function not implemented";
    default: return "exec failed";
    }
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* pid 1 of a pod: reap every child that ends, forever. The monitor armed the parent-death
 * signal (kept across exec) and keeps SIGKILL for the end. */
__attribute__((noreturn)) static void pod_init(void)
{
    unsigned long set = 1UL << (SIGCHLD_ - 1);
    nolibc_sys4(__NR_prctl, PR_SET_DUMPABLE_, 0, 0, 0);
    nolibc_sys4(__NR_prctl, PR_SET_NAME_, (long)POD_INIT, 0, 0);
    nolibc_sys4(__NR_rt_sigprocmask, SIG_BLOCK_, (long)&set, 0, sizeof set);
    for (;;) {
        nolibc_sys4(__NR_rt_sigtimedwait, (long)&set, 0, 0, sizeof set);
        while (nolibc_sys4(__NR_wait4, -1, 0, WNOHANG_, 0) > 0)
            ;
    }
}

__attribute__((noreturn, used)) void nolibc_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    long err;

    if (argc == 1 && same(argv[0], POD_INIT))
        pod_init();
    /* Run any other way (as a script's interpreter, say) it refuses: it is no general tool. */
    if (argc < 3 || !same(argv[0], MARK)) {
        say("corral-exec: internal helper of the corral runtime, not to be run directly\n");
        nolibc_exit(127);
    }
    err = -nolibc_sys4(__NR_execve, (long)argv[1], (long)(argv + 2), (long)envp, 0);
    say("corral: exec ");
    say(argv[1]);
    say(": ");
    say(errname(err));
    say("\n");
    nolibc_exit(err == ENOENT ? 127 : 126);
}

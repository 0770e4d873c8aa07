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
 * through. No libc (csrc/nolibc.h): two raw syscalls, so the copy is a few kilobytes.
 */
#include "nolibc.h"

#include <linux/errno.h>

#define MARK "corral-exec"

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

__attribute__((noreturn, used)) void nolibc_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    long err;

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

/* exe-report: a stand-in for the dynamic loader of an attacker's image (CVE-2019-5736 class).
 *
 * Planted at the path of ld.so, it runs whenever the kernel loads a dynamic program for the
 * container, before that program: it opens /proc/self/exe with O_PATH, as the exploit does to
 * keep a handle on the binary, and reports what the handle is: `exe-report link=<target>
 * dev=<n> ino=<n>` on stdout and, when the directory exists, appended to /report/exe. It
 * never writes to the file it opened. No libc (csrc/nolibc.h), position-independent: it is
 * loaded next to whatever program the kernel started.
 */
#include "nolibc.h"

#include <asm/stat.h>
#include <linux/fcntl.h>

#ifndef O_PATH
#define O_PATH 010000000
#endif

static char *put(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_num(char *p, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

__attribute__((noreturn, used)) void nolibc_main(long *sp)
{
    char line[4200], link[4096], fdpath[32] = "/proc/self/fd/";
    struct stat st;
    char *p;
    long fd, n, out;

    (void)sp;
    fd = nolibc_sys4(__NR_openat, AT_FDCWD, (long)"/proc/self/exe", O_PATH | O_CLOEXEC, 0);
    if (fd < 0) {
        nolibc_write(1, "exe-report open-failed\n");
        nolibc_exit(0);
    }
    p = put_num(fdpath + 14, (unsigned long)fd);
    *p = 0;
    n = nolibc_sys4(__NR_readlinkat, AT_FDCWD, (long)fdpath, (long)link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    if (nolibc_sys4(__NR_fstat, fd, (long)&st, 0, 0) < 0)
        st.st_dev = st.st_ino = 0;
    p = put(line, "exe-report link=");
    p = put(p, link);
    p = put(p, " dev=");
    p = put_num(p, (unsigned long)st.st_dev);
    p = put(p, " ino=");
    p = put_num(p, (unsigned long)st.st_ino);
    p = put(p, "\n");
    *p = 0;
    nolibc_write(1, line);
    out = nolibc_sys4(__NR_openat, AT_FDCWD, (long)"/report/exe",
                      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out >= 0)
        nolibc_write((int)out, line);
    /* The real program cannot go on without a real loader: stop here. */
    nolibc_exit(0);
}

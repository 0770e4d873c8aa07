/* --share-pid: pid 1 of the pod's pid namespace, a child of the monitor that only reaps. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sched.h>
#include <signal.h>
#include <linux/close_range.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A sealed memfd copy of corral-exec (csrc/exec.c), which lies next to this monitor. */
static int sealed_helper(void)
{
    unsigned int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    char self[PATH_MAX], path[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof path, "%s/corral-exec", self);
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        die("open %s (the pod's pid 1): %s", path, strerror(errno));
    struct stat st;
    if (fstat(src, &st) < 0)
        die("stat %s: %s", path, strerror(errno));
    int fd = memfd_create("corral-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x10U /* EXEC */);
    if (fd < 0 && errno == EINVAL) /* before Linux 6.3 */
        fd = memfd_create("corral-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        die("memfd_create: %s", strerror(errno));
    for (off_t done = 0; done < st.st_size;) {
        ssize_t k = sendfile(fd, src, NULL, (size_t)(st.st_size - done));
        if (k <= 0)
            die("copy %s to a memfd: %s", path, k < 0 ? strerror(errno) : "short");
        done += k;
    }
    close(src);
    if (fcntl(fd, F_ADD_SEALS, seals | F_SEAL_FUTURE_WRITE) < 0)
        die("seal the memfd copy of %s: %s", path, strerror(errno));
    return fd;
}

/* pid 1 of the pod's pid namespace (--share-pid) only reaps, and the pod's containers see
 * it: it is not a fork of this monitor (its /proc/1/exe would name the host's binary, the
 * CVE-2019-5736 class) but corral-exec in its pod-init mode, exec'd from a sealed memfd
 * copy: ten kilobytes, no libc, nothing of the host to reach. */
static void reaper_main(int helper)
{
    char *argv[] = {"corral-pod-init", NULL};
    char *envp[] = {NULL};
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* kept across the exec */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    fexecve(helper, argv, envp);
    dprintf(2, "corral-monitor: exec the pod's pid 1 (corral-exec): %s\n", strerror(errno));
    _exit(127);
}

/* Fork the pod's pid 1 into a new pid namespace, and stay in ours. */
void reaper_start(void)
{
    /* unshare(CLONE_NEWPID) only moves our future children: the first becomes pid 1 of
     * the new namespace. Then we go back, so the runtime and probes we fork stay in
     * ours (a pid namespace whose pid 1 died refuses new members). */
    int own = open_ns("pid");
    int helper = sealed_helper();
    if (unshare(CLONE_NEWPID) < 0)
        die("unshare(pid): %s", strerror(errno));
    M.reaper = fork();
    if (M.reaper < 0)
        die("fork pod pid 1: %s", strerror(errno));
    if (M.reaper == 0)
        reaper_main(helper);
    close(helper);
    if (setns(own, CLONE_NEWPID) < 0)
        die("setns(back to our pid namespace): %s", strerror(errno));
    close(own);
}

void cleanup_reaper(void)
{
    if (M.reaper > 0) {
        kill(M.reaper, SIGKILL);
        waitpid(M.reaper, NULL, 0);
        M.reaper = 0;
    }
}

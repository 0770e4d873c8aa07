/* --share-pid: pid 1 of the pod's pid namespace, a child of the monitor that only reaps. */
#include "monitor.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* pid 1 of the pod's pid namespace (--share-pid): it only reaps. */
static void reaper_main(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_DUMPABLE, 0); /* the pod's containers see it: keep them off its memory */
    prctl(PR_SET_NAME, "corral-pod-init");
    syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        siginfo_t si;
        sigwaitinfo(&set, &si);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}

/* Fork the pod's pid 1 into a new pid namespace, and stay in ours. */
void reaper_start(void)
{
    /* unshare(CLONE_NEWPID) only moves our future children: the first becomes pid 1 of
     * the new namespace. Then we go back, so the runtime and probes we fork stay in
     * ours (a pid namespace whose pid 1 died refuses new members). */
    int own = open_ns("pid");
    if (unshare(CLONE_NEWPID) < 0)
        die("unshare(pid): %s", strerror(errno));
    M.reaper = fork();
    if (M.reaper < 0)
        die("fork pod pid 1: %s", strerror(errno));
    if (M.reaper == 0)
        reaper_main();
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

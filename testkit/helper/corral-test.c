/*
 * corral-test: a static multi-call helper that integration tests run inside a
 * container to ask it about itself (after crun's tests/init.c).
 *
 *   corral-test SUBCOMMAND [ARGS...]
 *
 * Results go to stdout as plain text, one value per line unless a subcommand
 * says otherwise. Exit 0 on success; on failure a one-line message goes to
 * stderr and the exit status is 1 (2 for a usage error).
 *
 * Build: gcc -std=c11 -O2 -Wall -Wextra -Werror -static -o corral-test corral-test.c
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *cmd = "corral-test";

/* ------------------------------------------------------------------ errors */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die_errno(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void vreport(int errnum, const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "corral-test: %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	if (errnum)
		fprintf(stderr, ": %s", strerror(errnum));
	fputc('\n', stderr);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(0, fmt, ap);
	va_end(ap);
	exit(1);
}

static void die_errno(const char *fmt, ...)
{
	int errnum = errno;
	va_list ap;

	va_start(ap, fmt);
	vreport(errnum, fmt, ap);
	va_end(ap);
	exit(1);
}

/* "EAGAIN" for EAGAIN; a number for an errno glibc has no name for. */
static const char *errno_name(int errnum)
{
	static char buf[16];
	const char *name = strerrorname_np(errnum);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "E%d", errnum);
	return buf;
}

static long parse_long(const char *s, long min, long max, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s '%s' (want an integer in %ld..%ld)", what, s, min, max);
	return v;
}

/* ----------------------------------------------------------------- helpers */

static void copy_fd_to_stdout(int fd, const char *path)
{
	char buf[8192];
	ssize_t n;

	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die_errno("read %s", path);
		}
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			die_errno("write stdout");
	}
}

static void cat_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die_errno("open %s", path);
	copy_fd_to_stdout(fd, path);
	close(fd);
}

static FILE *open_stream(const char *path)
{
	FILE *f = fopen(path, "re");

	if (!f)
		die_errno("open %s", path);
	return f;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Sleep the whole interval even if a signal handler interrupts it. */
static void sleep_seconds(double seconds)
{
	struct timespec ts = {
		.tv_sec = (time_t)seconds,
		.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --------------------------------------------------------- identity, procfs */

static int cmd_hostname(char **argv)
{
	char name[HOST_NAME_MAX + 1];

	(void)argv;
	if (gethostname(name, sizeof(name)) < 0)
		die_errno("gethostname");
	name[HOST_NAME_MAX] = '\0';
	printf("%s\n", name);
	return 0;
}

static int cmd_pid(char **argv)
{
	(void)argv;
	printf("%d\n", (int)getpid());
	return 0;
}

static int cmd_ppid(char **argv)
{
	(void)argv;
	printf("%d\n", (int)getppid());
	return 0;
}

static int cmd_ids(char **argv)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	gid_t *groups;
	int n;

	(void)argv;
	if (getresuid(&ruid, &euid, &suid) < 0)
		die_errno("getresuid");
	if (getresgid(&rgid, &egid, &sgid) < 0)
		die_errno("getresgid");
	n = getgroups(0, NULL);
	if (n < 0)
		die_errno("getgroups");
	groups = calloc((size_t)n + 1, sizeof(*groups));
	if (!groups)
		die("out of memory");
	n = getgroups(n, groups);
	if (n < 0)
		die_errno("getgroups");

	printf("uid=%u gid=%u euid=%u egid=%u groups=", (unsigned)ruid, (unsigned)rgid,
	       (unsigned)euid, (unsigned)egid);
	for (int i = 0; i < n; i++)
		printf("%s%u", i ? "," : "", (unsigned)groups[i]);
	putchar('\n');
	free(groups);
	return 0;
}

static int cmd_caps(char **argv)
{
	static const char *const keys[] = { "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:" };
	FILE *f = open_stream("/proc/self/status");
	char *line = NULL;
	size_t cap = 0;

	(void)argv;
	while (getline(&line, &cap, f) >= 0) {
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			if (strncmp(line, keys[i], strlen(keys[i])) == 0)
				fputs(line, stdout);
		}
	}
	free(line);
	fclose(f);
	return 0;
}

static int cmd_cwd(char **argv)
{
	char buf[PATH_MAX];

	(void)argv;
	if (!getcwd(buf, sizeof(buf)))
		die_errno("getcwd");
	printf("%s\n", buf);
	return 0;
}

static int cmd_env(char **argv)
{
	const char *v = getenv(argv[0]);

	if (!v)
		die("%s is not set", argv[0]);
	printf("%s\n", v);
	return 0;
}

static int cmd_environ(char **argv)
{
	(void)argv;
	for (char **e = environ; *e; e++)
		printf("%s\n", *e);
	return 0;
}

static int cmd_cat(char **argv)
{
	cat_path(argv[0]);
	return 0;
}

/* Names in DIR without "." and "..", sorted bytewise. */
static int cmd_ls(char **argv)
{
	DIR *d = opendir(argv[0]);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d)
		die_errno("opendir %s", argv[0]);
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				die("out of memory");
		}
		names[n] = strdup(de->d_name);
		if (!names[n++])
			die("out of memory");
	}
	if (errno)
		die_errno("readdir %s", argv[0]);
	closedir(d);

	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		printf("%s\n", names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo: undo it. */
static void unescape_octal(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

static int cmd_mounts(char **argv)
{
	FILE *f = open_stream("/proc/self/mountinfo");
	char *line = NULL;
	size_t cap = 0;

	(void)argv;
	while (getline(&line, &cap, f) >= 0) {
		/* id parent major:minor root mount-point ... */
		char *save = NULL, *field = strtok_r(line, " \n", &save);

		for (int i = 1; field && i < 5; i++)
			field = strtok_r(NULL, " \n", &save);
		if (!field)
			die("malformed mountinfo line");
		unescape_octal(field);
		printf("%s\n", field);
	}
	free(line);
	fclose(f);
	return 0;
}

static int cmd_cgroup(char **argv)
{
	(void)argv;
	cat_path("/proc/self/cgroup");
	return 0;
}

static int cmd_sysctl(char **argv)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "/proc/sys/%s", argv[0]);

	if (n < 0 || (size_t)n >= sizeof(path))
		die("sysctl name too long");
	for (char *p = path + strlen("/proc/sys/"); *p; p++) {
		if (*p == '.')
			*p = '/';
	}
	cat_path(path);
	return 0;
}

static int cmd_nnp(char **argv)
{
	int v = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);

	(void)argv;
	if (v < 0)
		die_errno("prctl(PR_GET_NO_NEW_PRIVS)");
	printf("%d\n", v);
	return 0;
}

/* Open fds in numeric order, without the one opendir() itself holds. */
static int cmd_fds(char **argv)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int *fds = NULL;
	size_t n = 0, cap = 0;
	int self;

	(void)argv;
	if (!d)
		die_errno("opendir /proc/self/fd");
	self = dirfd(d);
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		int fd = atoi(de->d_name);
		if (fd == self)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			fds = realloc(fds, cap * sizeof(*fds));
			if (!fds)
				die("out of memory");
		}
		fds[n++] = fd;
	}
	closedir(d);

	if (n)
		qsort(fds, n, sizeof(*fds), cmp_int);
	for (size_t i = 0; i < n; i++)
		printf("%d\n", fds[i]);
	free(fds);
	return 0;
}

static int cmd_umask(char **argv)
{
	mode_t old = umask(0);

	(void)argv;
	umask(old);
	printf("%04o\n", (unsigned)old);
	return 0;
}

static const struct {
	const char *name;
	int resource;
} rlimits[] = {
	{ "AS", RLIMIT_AS },
	{ "CORE", RLIMIT_CORE },
	{ "CPU", RLIMIT_CPU },
	{ "DATA", RLIMIT_DATA },
	{ "FSIZE", RLIMIT_FSIZE },
	{ "LOCKS", RLIMIT_LOCKS },
	{ "MEMLOCK", RLIMIT_MEMLOCK },
	{ "MSGQUEUE", RLIMIT_MSGQUEUE },
	{ "NICE", RLIMIT_NICE },
	{ "NOFILE", RLIMIT_NOFILE },
	{ "NPROC", RLIMIT_NPROC },
	{ "RSS", RLIMIT_RSS },
	{ "RTPRIO", RLIMIT_RTPRIO },
	{ "RTTIME", RLIMIT_RTTIME },
	{ "SIGPENDING", RLIMIT_SIGPENDING },
	{ "STACK", RLIMIT_STACK },
};

static void print_rlim(rlim_t v, char sep)
{
	if (v == RLIM_INFINITY)
		printf("unlimited%c", sep);
	else
		printf("%llu%c", (unsigned long long)v, sep);
}

/* "rlimit NOFILE" or "rlimit RLIMIT_NOFILE" prints "SOFT HARD". */
static int cmd_rlimit(char **argv)
{
	const char *name = argv[0];
	struct rlimit rl;

	if (strncmp(name, "RLIMIT_", 7) == 0)
		name += 7;
	for (size_t i = 0; i < sizeof(rlimits) / sizeof(rlimits[0]); i++) {
		if (strcasecmp(name, rlimits[i].name) != 0)
			continue;
		if (getrlimit(rlimits[i].resource, &rl) < 0)
			die_errno("getrlimit %s", rlimits[i].name);
		print_rlim(rl.rlim_cur, ' ');
		print_rlim(rl.rlim_max, '\n');
		return 0;
	}
	die("unknown rlimit '%s'", argv[0]);
}

static int cmd_ttyname(char **argv)
{
	const char *name = ttyname(0);

	(void)argv;
	printf("%s\n", name ? name : "not a tty");
	return 0;
}

/* ------------------------------------------------------------ files, paths */

/* Print the errno name on stdout for the test, the message on stderr, exit 1. */
static void die_errno_named(const char *step, const char *path)
{
	int errnum = errno;

	printf("%s\n", errno_name(errnum));
	errno = errnum;
	die_errno("%s %s", step, path);
}

static int cmd_write(char **argv)
{
	const char *text = argv[1];
	size_t len = strlen(text);
	int fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		die_errno_named("open", argv[0]);
	while (len > 0) {
		ssize_t n = write(fd, text, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die_errno_named("write", argv[0]);
		}
		text += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0)
		die_errno_named("close", argv[0]);
	return 0;
}

/* A probe: the answer is on stdout ("ok" or an errno name), so exit 0 either way. */
static int cmd_open_rw(char **argv)
{
	int fd = open(argv[0], O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		printf("%s\n", errno_name(errno));
		return 0;
	}
	close(fd);
	printf("ok\n");
	return 0;
}

static char file_type(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return 'f';
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	case S_IFIFO: return 'p';
	case S_IFSOCK: return 's';
	default: return '?';
	}
}

/* lstat, so a symlink reports type=l. mode is "0" plus 4 octal digits: 00755, 01777. */
static int cmd_stat(char **argv)
{
	struct stat st;

	if (lstat(argv[0], &st) < 0)
		die_errno("lstat %s", argv[0]);
	printf("mode=0%04o uid=%u gid=%u type=%c\n", (unsigned)(st.st_mode & 07777),
	       (unsigned)st.st_uid, (unsigned)st.st_gid, file_type(st.st_mode));
	return 0;
}

static int cmd_readlink(char **argv)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(argv[0], buf, sizeof(buf) - 1);

	if (n < 0)
		die_errno("readlink %s", argv[0]);
	buf[n] = '\0';
	printf("%s\n", buf);
	return 0;
}

/* --------------------------------------------------------------- network */

static int cmd_netdevs(char **argv)
{
	struct if_nameindex *ifs = if_nameindex();

	(void)argv;
	if (!ifs)
		die_errno("if_nameindex");
	for (struct if_nameindex *i = ifs; i->if_index; i++)
		printf("%s\n", i->if_name);
	if_freenameindex(ifs);
	return 0;
}

static int cmd_ifup(char **argv)
{
	struct ifreq ifr;
	int fd;

	if (strlen(argv[0]) >= IFNAMSIZ)
		die("interface name too long");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, argv[0]);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		die_errno("SIOCGIFFLAGS %s", argv[0]);
	close(fd);
	printf("%s\n", (ifr.ifr_flags & IFF_UP) ? "up" : "down");
	return 0;
}

/* ------------------------------------------------------ processes, signals */

static int cmd_sleep(char **argv)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(argv[0], &end);
	if (errno || end == argv[0] || *end || s < 0 || s > 1e9)
		die("bad seconds '%s'", argv[0]);
	sleep_seconds(s);
	return 0;
}

static int cmd_exit(char **argv)
{
	return (int)parse_long(argv[0], 0, 255, "exit code");
}

/*
 * The kernel drops default-action signals that a namespace's PID 1 sends to
 * itself, so as PID 1 this reports failure instead of hanging.
 */
static int cmd_kill_self(char **argv)
{
	int sig = (int)parse_long(argv[0], 1, SIGRTMAX, "signal");
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, sig);
	signal(sig, SIG_DFL);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	fflush(stdout);
	if (kill(getpid(), sig) < 0)
		die_errno("kill(%d)", sig);
	/* A pending unblocked signal is delivered before kill() returns. */
	die("still alive after signal %d (pid %d)", sig, (int)getpid());
}

/*
 * Touch every page so the memory is really charged to the cgroup; progress
 * lines let a test see how far it got before the OOM killer struck.
 */
static int cmd_alloc(char **argv)
{
	long mib = parse_long(argv[0], 0, 1L << 20, "MiB");
	long page = sysconf(_SC_PAGESIZE);
	const size_t chunk = 1024 * 1024;
	volatile char *mem;

	if (page <= 0)
		page = 4096;
	mem = malloc(mib ? (size_t)mib * chunk : 1);
	if (!mem)
		die_errno("malloc %ld MiB", mib);
	for (long i = 0; i < mib; i++) {
		for (size_t off = 0; off < chunk; off += (size_t)page)
			mem[(size_t)i * chunk + off] = 1;
		printf("allocated %ld\n", i + 1);
		fflush(stdout);
	}
	sleep_seconds(1);
	printf("done\n");
	free((void *)mem);
	return 0;
}

/*
 * Children stop at the first failed fork (normally EAGAIN from pids.max or
 * RLIMIT_NPROC), then are all killed and reaped so no process leaks.
 */
static int cmd_forkbomb(char **argv)
{
	long n = parse_long(argv[0], 0, 1L << 20, "count");
	pid_t *pids = calloc((size_t)n + 1, sizeof(*pids));
	long forked = 0;
	int fail = 0;

	if (!pids)
		die("out of memory");
	fflush(stdout);
	while (forked < n) {
		pid_t pid = fork();

		if (pid < 0) {
			fail = errno;
			break;
		}
		if (pid == 0) {
			for (;;)
				pause();
		}
		pids[forked++] = pid;
	}
	for (long i = 0; i < forked; i++)
		kill(pids[i], SIGKILL);
	for (long i = 0; i < forked; i++) {
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(pids);

	printf("forked %ld\n", forked);
	if (fail)
		printf("fail %s\n", errno_name(fail));
	return 0;
}

static void note_signal(int sig)
{
	(void)sig;
}

/*
 * Handlers matter when running as PID 1: the kernel discards signals whose
 * disposition is SIG_DFL for a namespace's init. The signals stay blocked and
 * are taken with sigwaitinfo(), so the handler never actually runs. "ready"
 * is printed once they are in place, so a test knows when to send.
 */
static int cmd_sigwait(char **argv)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct sigaction sa;
	sigset_t set;
	int sig;

	(void)argv;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = note_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaddset(&set, sigs[i]);
		if (sigaction(sigs[i], &sa, NULL) < 0)
			die_errno("sigaction(%d)", sigs[i]);
	}
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die_errno("sigprocmask");
	printf("ready\n");
	fflush(stdout);
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig < 0 && errno == EINTR);
	if (sig < 0)
		die_errno("sigwaitinfo");
	printf("%d\n", sig);
	return 0;
}

/* ------------------------------------------------------------------ seccomp */

/*
 * Make one harmless syscall and print "ok" or the errno name. Arguments are
 * chosen so that, unfiltered, the result is known: the ones marked with an
 * errno fail that way on purpose without touching anything, so any other
 * answer (EPERM, ENOSYS, ...) came from a seccomp filter.
 */
static long probe_syscall(const char *name, int *known)
{
	static char buf[PATH_MAX];
	struct utsname uts;

	*known = 1;
	if (!strcmp(name, "getpid"))
		return syscall(SYS_getpid);
	if (!strcmp(name, "getppid"))
		return syscall(SYS_getppid);
	if (!strcmp(name, "gettid"))
		return syscall(SYS_gettid);
	if (!strcmp(name, "getuid"))
		return syscall(SYS_getuid);
	if (!strcmp(name, "getgid"))
		return syscall(SYS_getgid);
	if (!strcmp(name, "uname"))
		return syscall(SYS_uname, &uts);
	if (!strcmp(name, "getcwd"))
		return syscall(SYS_getcwd, buf, sizeof(buf));
	if (!strcmp(name, "sched_yield"))
		return syscall(SYS_sched_yield);
	if (!strcmp(name, "personality")) /* 0xffffffff only queries */
		return syscall(SYS_personality, 0xffffffffUL);
	if (!strcmp(name, "unshare")) /* no flags: a no-op */
		return syscall(SYS_unshare, 0);
	if (!strcmp(name, "setns")) /* EBADF */
		return syscall(SYS_setns, -1, 0);
	if (!strcmp(name, "mkdirat")) /* EEXIST */
		return syscall(SYS_mkdirat, AT_FDCWD, "/", 0755);
	if (!strcmp(name, "unlinkat")) /* ENOENT */
		return syscall(SYS_unlinkat, AT_FDCWD, "/.corral-test-missing", 0);
	if (!strcmp(name, "fchmodat")) /* ENOENT */
		return syscall(SYS_fchmodat, AT_FDCWD, "/.corral-test-missing", 0644);
	if (!strcmp(name, "fchownat")) /* ENOENT */
		return syscall(SYS_fchownat, AT_FDCWD, "/.corral-test-missing", 0, 0, 0);
	if (!strcmp(name, "kill")) /* signal 0 only checks */
		return syscall(SYS_kill, getpid(), 0);
	if (!strcmp(name, "chdir")) /* to "." */
		return syscall(SYS_chdir, ".");
	if (!strcmp(name, "sync"))
		return syscall(SYS_sync);
	*known = 0;
	return -1;
}

static int cmd_seccomp_probe(char **argv)
{
	int known;
	long ret;

	errno = 0;
	ret = probe_syscall(argv[0], &known);
	if (!known)
		die("no probe for syscall '%s'", argv[0]);
	if (ret < 0)
		printf("%s\n", errno_name(errno));
	else
		printf("ok\n");
	return 0;
}

/* ------------------------------------------------------------------- main */

static const struct command {
	const char *name;
	int nargs;
	const char *args;
	int (*fn)(char **argv);
} commands[] = {
	{ "hostname", 0, "", cmd_hostname },
	{ "pid", 0, "", cmd_pid },
	{ "ppid", 0, "", cmd_ppid },
	{ "ids", 0, "", cmd_ids },
	{ "caps", 0, "", cmd_caps },
	{ "cwd", 0, "", cmd_cwd },
	{ "env", 1, "NAME", cmd_env },
	{ "environ", 0, "", cmd_environ },
	{ "cat", 1, "FILE", cmd_cat },
	{ "ls", 1, "DIR", cmd_ls },
	{ "mounts", 0, "", cmd_mounts },
	{ "netdevs", 0, "", cmd_netdevs },
	{ "ifup", 1, "NAME", cmd_ifup },
	{ "umask", 0, "", cmd_umask },
	{ "rlimit", 1, "NAME", cmd_rlimit },
	{ "nnp", 0, "", cmd_nnp },
	{ "fds", 0, "", cmd_fds },
	{ "sleep", 1, "SECONDS", cmd_sleep },
	{ "exit", 1, "CODE", cmd_exit },
	{ "kill-self", 1, "SIGNUM", cmd_kill_self },
	{ "alloc", 1, "MIB", cmd_alloc },
	{ "forkbomb", 1, "N", cmd_forkbomb },
	{ "write", 2, "FILE TEXT", cmd_write },
	{ "stat", 1, "PATH", cmd_stat },
	{ "ttyname", 0, "", cmd_ttyname },
	{ "sigwait", 0, "", cmd_sigwait },
	{ "cgroup", 0, "", cmd_cgroup },
	{ "seccomp-probe", 1, "SYSCALL", cmd_seccomp_probe },
	{ "sysctl", 1, "NAME", cmd_sysctl },
	{ "open-rw", 1, "PATH", cmd_open_rw },
	{ "readlink", 1, "PATH", cmd_readlink },
};

static int usage(FILE *out, int status)
{
	fprintf(out, "usage: corral-test SUBCOMMAND [ARGS...]\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %s%s%s\n", commands[i].name, *commands[i].args ? " " : "",
			commands[i].args);
	return status;
}

int main(int argc, char **argv)
{
	int ret;

	if (argc < 2)
		return usage(stderr, 2);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help"))
		return usage(stdout, 0);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		cmd = commands[i].name;
		if (argc - 2 != commands[i].nargs) {
			fprintf(stderr, "usage: corral-test %s %s\n", cmd, commands[i].args);
			return 2;
		}
		ret = commands[i].fn(argv + 2);
		/* Catch output lost to a full disk or a closed pipe. */
		if (fflush(stdout) != 0 || ferror(stdout))
			die_errno("write stdout");
		return ret;
	}
	fprintf(stderr, "corral-test: unknown subcommand '%s'\n", argv[1]);
	return usage(stderr, 2);
}

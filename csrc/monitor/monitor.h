/* corral-monitor's private header: the model (containers, probes, streams), the one state
 * struct M that every file of the monitor shares, and what each file offers the others.
 * Every .c of the monitor includes this first (it defines _GNU_SOURCE). */
#ifndef CORRAL_MONITOR_H
#define CORRAL_MONITOR_H

#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LINE_MAX_BYTES (16 * 1024) /* a longer log line is cut into P entries */
#define MSG_MAX 256
#define NEVER INT64_MAX
#define ATTACH_MAX 4 /* attach clients of a container at once */

/* ------------------------------------------------------------------ model */

struct strv {
    char **v; /* NULL-terminated */
    size_t n;
};

enum probe_kind { PROBE_LIVENESS, PROBE_READINESS, PROBE_STARTUP, PROBE_KINDS };
extern const char *const probe_names[PROBE_KINDS]; /* "liveness", ...: as monitor.conf says */

enum probe_how { HOW_NONE, HOW_EXEC, HOW_HTTP, HOW_TCP };
enum net_phase { NET_CONNECT, NET_SEND, NET_RECV };

struct probe {
    enum probe_how how;
    struct strv exec;
    bool https;
    char *host, *path;
    int port;
    struct strv headers;
    int64_t initial_delay, period, timeout; /* ms */
    long success_threshold, failure_threshold;

    /* one attempt at a time */
    int64_t next_at, deadline;
    pid_t pid;    /* exec or https attempt (a child process) */
    bool orphan;  /* its result was already given (timeout): only reap it */
    int out;      /* https attempt: read end of its stdout, the one-line result */
    int fd;       /* http/tcp attempt */
    enum net_phase phase;
    char *req;
    size_t req_len, req_off;
    char resp[32];
    size_t resp_len;
    long successes, failures; /* in a row */
};

/* A container's life is a sequence of steps; a job is the command of that step: the
 * runtime's (delete, run), or prestart_arg (which gives a restarted container a fresh
 * rootfs). */
enum step { ST_IDLE, ST_DELETE, ST_PRESTART, ST_RUN, ST_UP, ST_BACKOFF, ST_DONE };

struct stream {
    const char *name; /* "stdout" or "stderr" */
    int fd, wfd;      /* our read end; the write end, kept until `start` has exited */
    char *buf;        /* pending partial line (len bytes), NULL when there is none */
    size_t len;
};

struct run_record { /* what status files say about one run */
    const char *reason;
    char message[MSG_MAX];
    int exit_code, signal;
    char started_at[40], finished_at[40];
};

struct ctr {
    char *name, *id, *bundle, *oom_file;
    int stop_signal;   /* the signal a stop sends first (default SIGTERM) */
    struct strv prestart_arg; /* run before every run but the first */
    bool prestart_first;      /* ... and before the first too (subPath mounts) */
    bool init;
    bool ephemeral;           /* kind ephemeral (ephemeral.conf): never restarted, no probes */
    bool terminal;            /* process.terminal: run gets a console socket */
    struct probe *probes[PROBE_KINDS];
    int line; /* of its `container` line, for errors */

    enum step step;
    pid_t job;             /* runtime command of the current step */
    pid_t pid;             /* the container process, once `run` wrote its pid file */
    bool created;          /* the runtime knows it: delete before creating it again */
    bool exited;           /* pid was reaped, status in wstatus */
    int wstatus;
    bool abandon;          /* stopped before it ran (after prestart): not a run of its own */
    bool succeeded;        /* an init container that exited 0 */
    int kill_stage;        /* 0 none, 1 TERM sent, 2 KILL sent */
    int64_t kill_at;       /* when to send KILL after TERM */
    int64_t restart_at;    /* end of the backoff */
    int64_t started_mono;
    int restart_count, backoff_k;
    long oom_base;
    bool startup_done, ready;
    char why_killed[MSG_MAX];
    char lasterr[MSG_MAX]; /* last `corral-oci:` line on stderr while running it,
                              or prestart_arg's last stderr line */
    bool created_once;     /* a run was begun: the next one needs prestart_arg first */

    const char *state; /* waiting, running, terminated */
    struct run_record cur, last;
    bool has_last;

    struct stream out, err;
    struct stream tty;  /* "stdout" too: the pty master of a terminal container */
    int console;        /* terminal: the listening console socket, -1 until made */
    int logdir, log_fd;
    int64_t log_size;

    /* attach (attach.c): stdin kept open for clients of the container's attach socket */
    bool attach;            /* conf: an attach socket attach/<name> */
    bool stdin_open;        /* conf: stdin (Kubernetes' stdin: true) */
    bool stdin_once;        /* conf: stdinOnce: closed when the first attach ends */
    int listen;             /* the attach socket, -1 without one */
    int in_r, in_w;         /* a pipe container's stdin: in_r only until `run` exits */
    bool in_closed;         /* stdinOnce: this run's stdin was closed */
    bool in_eof;            /* close (pipe) or send EOF (tty) once in_buf is written */
    char *in_buf;           /* input the container has not read yet */
    size_t in_len;
    struct conn {
        int fd;             /* -1: free */
        bool input;         /* it attached stdin */
    } conns[ATTACH_MAX];
};

enum restart_policy { POLICY_ALWAYS, POLICY_ON_FAILURE, POLICY_NEVER };

struct monitor {
    /* monitor.conf */
    struct strv runtime_arg, finish_arg, https_probe_arg;
    char *runtime_root, *hostname;
    enum restart_policy policy;
    long restart_max; /* restarts of a container at most; 0: no limit */
    int64_t grace, backoff_initial, backoff_max, backoff_reset; /* ms */
    int64_t log_max_bytes, monitor_log_max;
    long log_max_files;
    struct ctr *ctrs;
    size_t nctrs;

    /* process */
    bool host_network, share_pid;
    bool log_ours;                   /* stderr is our monitor.log: it may be rotated */
    const char *dir;
    int dirfd, statusfd, devnull, sigfd;
    int sync_w, sync_r;              /* -1 once the handshake is over (sync_r: see gate) */
    /* The start gate (docs/pods.md, "Start-up handshake"): with `net_gate true`, Python
     * sets the pod network up after `go` and then writes `net` on sync_r; until then each
     * `run` gets the read end (`--start-gate`) and waits there, created, before start. */
    bool net_gate;                   /* monitor.conf */
    bool finish_deletes;             /* monitor.conf: finish_arg deletes the containers */
    int gate_r, gate_w;              /* -1 once the gate is open (or cancelled) */
    unsigned gated;                  /* runs given the gate: a `g` each when it opens */
    char net_buf[16];                /* what came on sync_r after `go` */
    size_t net_len;
    int host_ns[3];                  /* net, ipc, uts we were started in: for our children */
    pid_t reaper;                    /* pid 1 of the pod's pid namespace (--share-pid) */
    pid_t unknown[16];               /* reaped before we knew them: a run's container */
    int unknown_status[16];
    unsigned unknown_next;
    bool stopping, apps_started, init_failed, finishing;
    unsigned changes;                /* bumped by every state change: see loop() */
    int64_t stop_deadline;
    const char *phase;
    char pod_message[MSG_MAX];
    char started_at[40];
};

/* The monitor's one state (main.c): a single-threaded process per pod. */
extern struct monitor M;

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* util.c: clocks, the monitor's own log, fatal errors, memory, small files */
int64_t now_ms(void);
void rfc3339(char out[40]);
int64_t parse_seconds(const char *s);
ssize_t read_small(int dirfd, const char *path, char *buf, size_t len);
int write_atomic(int dirfd, const char *name, const char *text, size_t len, bool durable);
int open_ns(const char *name);
__attribute__((format(printf, 1, 2))) void warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
void strv_add(struct strv *sv, const char *s);

/* conf.c: monitor.conf, and ephemeral.conf (containers added to the running pod) */
void conf_load(void);
void conf_ephemeral(void);

/* main.c: a container's descriptors and first status, once it is in M.ctrs */
void ctr_init(struct ctr *c);

/* status.c: status/<container> and pod.status */
void write_status(struct ctr *c);
void set_state(struct ctr *c, const char *state, const char *reason, const char *msg);
void write_pod_status(const char *phase, const char *finished_at);

/* runtime.c: children, and the OCI runtime steps of a container */
enum { SPAWN_GROUP = 1, SPAWN_POD_NET = 2, SPAWN_GATE = 4 };
#define GATE_FD 3 /* where a gated `run` finds the start gate */
pid_t spawn(char *const argv[], int in, int out, int err, int flags);
pid_t runtime(const char *const args[], size_t nargs, int in, int out, int err, int flags);
void gate_make(void);
void gate_open(bool ok);
long read_oom(struct ctr *c);
void launch(struct ctr *c);
void job_done(struct ctr *c, int st);
void terminate(struct ctr *c, int64_t deadline);

/* restart.c: the end of a run, restart policy and backoff */
void run_done(struct ctr *c, const char *reason, int code, int sig, const char *msg);
void process_gone(struct ctr *c);

/* logs.c: CRI log files and the container's stdout/stderr pipes */
void log_open(struct ctr *c);
int stream_open(struct stream *s);
void stream_read(struct ctr *c, struct stream *s);
void stream_close(struct ctr *c, struct stream *s);

/* probes.c: exec, http, tcp and https probes */
int64_t probes_due(struct ctr *c, int64_t now, int64_t next);
void probe_exec_done(struct ctr *c, int k, int st);
void probe_net_event(struct ctr *c, int k);
void probes_stop(struct ctr *c);

/* attach.c: a container's stdin and its attach socket */
void attach_init(struct ctr *c);
int attach_stdin_pipe(struct ctr *c);
void attach_created(struct ctr *c);
void attach_accept(struct ctr *c);
void attach_input(struct ctr *c, struct conn *conn);
void attach_output(struct ctr *c, struct stream *s, const char *data, size_t len);
int attach_stdin_fd(const struct ctr *c);
void attach_flush(struct ctr *c);
void attach_run_over(struct ctr *c);
void attach_cleanup(void);

/* loop.c: the event loop and child reaping */
const char *pod_phase(void);
void loop(void);

/* reaper.c: pid 1 of the pod's shared pid namespace */
void reaper_start(void);
void cleanup_reaper(void);

#endif

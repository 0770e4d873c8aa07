"""cffi build script (out-of-line API mode) for runtime._seccomp: libseccomp, for the parent.

The parent compiles linux.seccomp into a BPF program with libseccomp and hands the bytes to
the spawn plan; the container process only calls seccomp(2). A module of its own, so that
only specs with a seccomp section load libseccomp. Every constant comes from seccomp.h or
linux/seccomp.h at build time (nothing architecture-specific is written down here). Imports
nothing from the corral package.
"""

from cffi import FFI

CDEF = """
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;

enum scmp_compare {
    SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT,
    SCMP_CMP_MASKED_EQ, ...
};

struct scmp_arg_cmp {
    unsigned int arg;
    enum scmp_compare op;
    scmp_datum_t datum_a;
    scmp_datum_t datum_b;
    ...;
};

struct scmp_version {
    unsigned int major;
    unsigned int minor;
    unsigned int micro;
};

#define SCMP_ACT_KILL_PROCESS ...
#define SCMP_ACT_KILL_THREAD ...
#define SCMP_ACT_TRAP ...
#define SCMP_ACT_LOG ...
#define SCMP_ACT_ALLOW ...
#define __NR_SCMP_ERROR ...

#define SECCOMP_FILTER_FLAG_TSYNC ...
#define SECCOMP_FILTER_FLAG_LOG ...
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW ...
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ...

const struct scmp_version *seccomp_version(void);
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);

uint32_t corral_act_errno(uint32_t err);
uint32_t corral_act_trace(uint32_t msg);
int corral_filter_flags_supported(unsigned int flags);
"""

SOURCE = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall() */
#endif
#include <errno.h>
#include <stddef.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Older kernel headers lack the newer flags; the values are the kernel's ABI. */
#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

/* SCMP_ACT_ERRNO and SCMP_ACT_TRACE are function-like macros. */
static uint32_t corral_act_errno(uint32_t err) { return SCMP_ACT_ERRNO(err); }
static uint32_t corral_act_trace(uint32_t msg) { return SCMP_ACT_TRACE(msg); }

/* Whether this kernel takes `flags` for SECCOMP_SET_MODE_FILTER: it checks the flags before
 * it reads the program, so a NULL program fails with EFAULT when they are known and EINVAL
 * when not (the probe libseccomp uses too). Returns 1, 0, or -errno. */
static int corral_filter_flags_supported(unsigned int flags)
{
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, NULL) == 0)
        return 1; /* cannot happen with NULL */
    if (errno == EFAULT)
        return 1;
    if (errno == EINVAL)
        return 0;
    return -errno;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "runtime._seccomp",
    SOURCE,
    libraries=["seccomp"],
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

/* The little a program without libc needs: an entry point that hands main its initial stack
 * (argc, argv..., NULL, envp..., NULL) and raw system calls, for x86_64 and aarch64. Used by
 * corral-exec (csrc/exec.c) and by test programs that must run without any loader.
 *
 * The program defines `__attribute__((noreturn, used)) void nolibc_main(long *sp)`.
 */
#ifndef CORRAL_NOLIBC_H
#define CORRAL_NOLIBC_H

#include <asm/unistd.h>

#if defined(__x86_64__)
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call nolibc_main\n"
        "  hlt\n");

static inline long nolibc_sys4(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  and sp, x0, #-16\n"
        "  bl nolibc_main\n"
        "  brk #0\n");

static inline long nolibc_sys4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "nolibc.h: no syscall glue for this architecture (x86_64 and aarch64 only)"
#endif

static inline unsigned long nolibc_strlen(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

static inline void nolibc_write(int fd, const char *s)
{
    nolibc_sys4(__NR_write, fd, (long)s, (long)nolibc_strlen(s), 0);
}

__attribute__((noreturn)) static inline void nolibc_exit(int code)
{
    for (;;)
        nolibc_sys4(__NR_exit, code, 0, 0, 0);
}

#endif

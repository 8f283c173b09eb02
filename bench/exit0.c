/*  exit0: a program that only exits 0, the cheapest command there is.

    Linked static with no C library (-nostdlib -static): no dynamic loader,
    no libc start-up, two pages mapped. Its fork + exec + exit costs the
    kernel about a quarter of what `true` does on the benchmark's VM
    (its page tables are what a fork costs there). So `make bench` runs
    the exec rows with it as well as with `true`: on a host where fork is
    cheap (docs/performance.md: an Intel host's was 15x cheaper than this
    kind's AMD one) every command costs about what exit0 costs here, and
    what ztask adds to each then sets the ratio to the spawn loop.

    x86-64 and AArch64 only: elsewhere it is not built, and the rows that
    use it are skipped.
*/

void _start(void);

void _start(void)
{
#if defined(__x86_64__)
    __asm__ volatile("mov $60, %eax\n\t"    /* exit(0) */
                     "xor %edi, %edi\n\t"
                     "syscall");
#elif defined(__aarch64__)
    __asm__ volatile("mov x8, #93\n\t"      /* exit(0) */
                     "mov x0, #0\n\t"
                     "svc #0");
#else
#error "exit0: x86-64 and AArch64 only"
#endif
    for (;;) {
    }
}

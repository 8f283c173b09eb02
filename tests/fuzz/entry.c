/*  libFuzzer entry point, compiled once per target with
    -DFUZZ_TARGET=<name> (see the fuzz section of the Makefile): calls
    fuzz_check_<name> and aborts when a property breaks, so libFuzzer saves
    the input like any crash. Memory errors, leaks and undefined behaviour
    are reported by the sanitizers the target is built with. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=<target name>"
#endif

#define S_CAT2(a, b) a##b
#define S_CAT(a, b) S_CAT2(a, b)
#define S_STR2(a) #a
#define S_STR(a) S_STR2(a)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[1024] = "";
    if (S_CAT(fuzz_check_, FUZZ_TARGET)(data, size, why, sizeof why) == FUZZ_BROKEN) {
        fprintf(stderr, "==ztask-fuzz== %s: property broken: %s\n", S_STR(FUZZ_TARGET), why);
        abort();
    }
    return 0;
}

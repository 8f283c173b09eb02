/*  The target table and the helpers every check uses. */
#include "fuzz.h"

#include "../../common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const fuzz_target_t fuzz_targets[] = {
    { "req", fuzz_check_req },     { "reply", fuzz_check_reply },
    { "pipe", fuzz_check_pipe },   { "report", fuzz_check_report },
    { "spec", fuzz_check_spec },   { "result", fuzz_check_result },
    { "range", fuzz_check_range }, { "jsonl", fuzz_check_jsonl },
    { "each", fuzz_check_each },   { "keys", fuzz_check_keys },
    { "config", fuzz_check_config }, { "util", fuzz_check_util },
};
const int fuzz_ntargets = (int) (sizeof fuzz_targets / sizeof *fuzz_targets);

fuzz_verdict_t fuzz_broken(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return FUZZ_BROKEN;
}

int fuzz_one_line(const char *msg)
{
    if (!msg || !*msg)
        return 0;
    size_t n = strlen(msg);
    if (!utf8_valid(msg, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) msg[i] < 0x20 || msg[i] == 0x7f)
            return 0;
    return 1;
}

int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
    int fd = memfd_create("ztask-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t) w;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

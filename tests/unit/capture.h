/*  capture: what a stream (STDOUT_FILENO, STDERR_FILENO) receives between
    s_capture_start and s_capture_end, through a temp file: a CLI's
    message, a module's log lines (common/log.c writes to fd 2).

    Test-only; static functions for the one file of tests that includes
    it. Threads: the test's own; whatever another thread writes to the
    stream meanwhile is captured too. Include it after ../ztest.h
    (ck_assert).
*/
#ifndef ZTASK_TESTS_CAPTURE_H
#define ZTASK_TESTS_CAPTURE_H

#include "../../common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int stream, fd, saved;
    char path[40];
} capture_t;

static void s_capture_start(capture_t *c, int stream)
{
    fflush(stream == STDOUT_FILENO ? stdout : stderr);
    c->stream = stream;
    snprintf(c->path, sizeof c->path, "/tmp/ztask-capture-XXXXXX");
    c->fd = mkstemp(c->path);
    ck_assert_int_ge(c->fd, 0);
    c->saved = dup(stream);
    dup2(c->fd, stream);
}

/* The captured text, all of it (caller frees); the stream is restored. */
static char *s_capture_end(capture_t *c)
{
    fflush(c->stream == STDOUT_FILENO ? stdout : stderr);
    dup2(c->saved, c->stream);
    close(c->saved);
    struct stat st;
    ck_assert_int_eq(fstat(c->fd, &st), 0);
    char *buf = xcalloc(1, (size_t) st.st_size + 1);
    ck_assert_int_eq(pread(c->fd, buf, (size_t) st.st_size, 0), st.st_size);
    close(c->fd);
    unlink(c->path);
    return buf;
}

/* How many lines of text contain needle (inline: not every includer
   counts). */
static inline int s_capture_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t) (end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        n += hit && hit < line + len;
        line += len + (end != NULL);
    }
    return n;
}

#endif

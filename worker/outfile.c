/*  outfile: a command's streams written to files (see outfile.h). */
#include "outfile.h"

#include "../common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const s_names[2] = {"stdout", "stderr"};

/* strerror for any thread (the GNU strerror_r). */
static const char *s_why(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len);
}

/* Makes every missing directory above path's last component (0755). */
static int s_make_parents(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char *dir = xstrndup(path, (size_t) (slash - path));
    int rc = mkdir_parents(dir, 0755);
    int saved = errno;
    free(dir);
    errno = saved;
    return rc;
}

/* The file's path: the pattern filled in, under cwd when relative. */
static char *s_path(const char *pattern, const proto_spec_t *spec, int64_t job, int64_t task,
                    int attempt)
{
    proto_err_t perr;
    char *rel = proto_spec_path(pattern, job, spec->index, task, attempt, &perr);
    if (!rel)   /* the decoder checked the pattern: only a hand-made spec */
        return NULL;
    if (rel[0] == '/' || !spec->cwd)
        return rel;
    char *full = xasprintf("%s/%s", spec->cwd, rel);
    free(rel);
    return full;
}

int outfiles_open(outfiles_t *self, const proto_spec_t *spec, int64_t job, int64_t task,
                  int attempt, char *err, size_t errlen)
{
    memset(self, 0, sizeof *self);
    self->fd[0] = self->fd[1] = -1;
    const char *patterns[2] = {spec->stdout_file, spec->stderr_file};
    for (int i = 0; i < 2; i++) {
        if (!patterns[i])
            continue;
        self->path[i] = s_path(patterns[i], spec, job, task, attempt);
        if (!self->path[i]) {
            snprintf(err, errlen, "cannot write %s: bad file pattern '%s'", s_names[i],
                     patterns[i]);
            goto fail;
        }
        if (i == 1 && self->path[0] && strcmp(self->path[0], self->path[1]) == 0) {
            self->fd[1] = self->fd[0];
            self->shared = true;
            continue;
        }
        if (s_make_parents(self->path[i]) != 0
            || (self->fd[i] = open(self->path[i],
                                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0666))
                   < 0) {
            char eb[128];
            snprintf(err, errlen, "cannot write %s to '%s': %s", s_names[i], self->path[i],
                     s_why(errno, eb, sizeof eb));
            goto fail;
        }
    }
    return 0;
fail:
    outfiles_close(self, NULL, 0);
    return -1;
}

void outfiles_write(outfiles_t *self, int stream, const char *data, size_t n)
{
    int i = stream == 2 ? 1 : 0;
    int fd = self->fd[i];
    while (fd >= 0 && n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* Stop writing this file; the task fails at its end. */
            self->error[i] = w < 0 ? errno : EIO;
            if (self->shared)
                self->error[!i] = self->error[i];
            return;
        }
        data += w;
        n -= (size_t) w;
    }
}

int outfiles_close(outfiles_t *self, char *err, size_t errlen)
{
    for (int i = 0; i < 2; i++) {
        if (self->fd[i] >= 0 && !(i == 1 && self->shared) && close(self->fd[i]) != 0
            && !self->error[i])
            self->error[i] = errno;
        self->fd[i] = -1;
    }
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (self->error[i]) {
            char eb[128];
            if (err)
                snprintf(err, errlen, "writing %s to '%s': %s", s_names[i],
                         self->path[i] ? self->path[i] : "", s_why(self->error[i], eb, sizeof eb));
            rc = -1;
        }
    free(self->path[0]);
    free(self->path[1]);
    self->path[0] = self->path[1] = NULL;
    return rc;
}

/*  exec_child: see exec_child.h. Why fork and execve rather than
    posix_spawn is explained at the top of exec.c. */
#include "exec_child.h"

#include "../common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- env */

/* True when two "KEY=VALUE" (or bare "KEY") strings have the same key. */
static bool s_same_key(const char *a, const char *b)
{
    while (*a && *a != '=' && *a == *b) {
        a++;
        b++;
    }
    return (*a == '=' || *a == '\0') && (*b == '=' || *b == '\0');
}

/* The worker's own ZTASK_* variables (ZTASK_CURVE_SECRET names its key
   file, ZTASK_CONFIG its config) never reach a task; nor do the ones it
   may have inherited from a task that started it. */
static bool s_is_ztask_var(const char *entry)
{
    return strncmp(entry, "ZTASK_", 6) == 0;
}

/* Replaces the entry with entry's key, or appends it. */
static void s_env_set(char **envp, size_t *n, char *entry)
{
    for (size_t i = 0; i < *n; i++)
        if (s_same_key(envp[i], entry)) {
            envp[i] = entry;
            return;
        }
    envp[(*n)++] = entry;
}

/* "KEY=" followed by v (malloc'd); printf made four of these a good
   part of what the pool thread spent on a command before its fork. */
static char *s_env_int(const char *key_eq, int64_t v)
{
    char tmp[I64_TEXT_MAX];
    const char *digits = i64_text(tmp, v);
    size_t klen = strlen(key_eq), dlen = (size_t) (tmp + sizeof tmp - 1 - digits);
    char *s = xmalloc(klen + dlen + 1);
    memcpy(s, key_eq, klen);
    memcpy(s + klen, digits, dlen + 1);
    return s;
}

/* The worker's environment minus its ZTASK_* variables, plus the run-as
   user's HOME, USER and LOGNAME, plus the spec's env, plus this task's
   ZTASK_* variables.
   Reading environ is safe only because the worker never changes its
   environment once threads run (exec.h says so). */
static void s_build_env(exec_launch_t *L, const exec_req_t *req)
{
    const proto_spec_t *spec = req->spec;
    size_t nenv = 0;
    while (environ && environ[nenv])
        nenv++;
    size_t envc = spec->env ? (size_t) (spec->envc > 0 ? spec->envc : 0) : 0;
    L->envp = xcalloc(nenv + 3 + envc + 4 + 1 + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!s_is_ztask_var(environ[i]))
            L->envp[n++] = environ[i];
    if (req->policy && req->policy->run_as)
        for (int i = 0; i < 3; i++)
            s_env_set(L->envp, &n, req->policy->env[i]);
    /* One CPU unless the master gave it more (the session puts that in
       the spec's env, which comes next). */
    L->envp[n++] = (char *) "ZTASK_CPUS=1";
    for (size_t i = 0; i < envc && spec->env[i]; i++)
        if (strchr(spec->env[i], '=') && spec->env[i][0] != '=')
            s_env_set(L->envp, &n, spec->env[i]);
    L->owned[0] = s_env_int("ZTASK_TASK_ID=", req->task_id);
    L->owned[1] = s_env_int("ZTASK_JOB_ID=", req->job_id);
    L->owned[2] = s_env_int("ZTASK_ATTEMPT=", req->attempt);
    if (spec->index >= 0)
        L->owned[3] = s_env_int("ZTASK_TASK_INDEX=", spec->index);
    for (int i = 0; i < 4; i++)
        if (L->owned[i])
            s_env_set(L->envp, &n, L->owned[i]);
    L->envp[n] = NULL;
}

/* --------------------------------------------------------------- argv */

/* execvp's search, done before fork: the candidates are the PATH entries
   of the task's environment (so a spec env PATH applies, as with
   `env PATH=.. cmd`), or glibc's default when it has none. */
static void s_build_paths(exec_launch_t *L, const char *file)
{
    if (strchr(file, '/')) {
        L->paths = xcalloc(2, sizeof(char *));
        L->paths[0] = xstrdup(file);
        return;
    }
    const char *path = "/bin:/usr/bin";
    for (char **e = L->envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    size_t parts = 1;
    for (const char *p = path; *p; p++)
        parts += *p == ':';
    L->paths = xcalloc(parts + 1, sizeof(char *));
    if (!*file)
        return;                   /* "" is never found: ENOENT */
    size_t n = 0, flen = strlen(file);
    const char *p = path;
    for (;;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t) (end - p);
        /* "DIR/file" by hand: a PATH of a dozen entries made printf a
           good part of what a command cost this thread before its fork.
           An empty entry means the cwd: the file alone. */
        char *c = xmalloc(dlen + 1 + flen + 1);
        memcpy(c, p, dlen);
        size_t at = dlen;
        if (dlen)
            c[at++] = '/';
        memcpy(c + at, file, flen + 1);
        L->paths[n++] = c;
        if (!*end)
            break;
        p = end + 1;
    }
}

void exec_launch_init(exec_launch_t *L, const exec_req_t *req)
{
    const proto_spec_t *spec = req->spec;
    memset(L, 0, sizeof *L);
    s_build_env(L, req);
    L->cwd = spec->cwd;
    L->reset = req->reset;
    L->slot = req->slot;
    L->policy = req->policy;
    if (spec->shell) {
        L->shell = true;
        L->sh_argv[0] = "sh";
        L->sh_argv[1] = "-c";
        L->sh_argv[2] = spec->shell;
        L->sh_argv[3] = NULL;
        L->argv = L->sh_argv;
        L->display = "/bin/sh";
    } else {
        int argc = 0;
        while (spec->argv[argc])
            argc++;
        L->argv = spec->argv;
        L->display = spec->argv[0];
        s_build_paths(L, spec->argv[0]);
        L->script_argv = xcalloc((size_t) argc + 2, sizeof(char *));
        L->script_argv[0] = "/bin/sh";
        for (int i = 1; i < argc; i++)
            L->script_argv[i + 1] = spec->argv[i];
    }
    if (req->kit) {
        L->max_fd = exec_kit_max_fd(req->kit);
    } else {
        long open_max = sysconf(_SC_OPEN_MAX);
        L->max_fd = open_max > 0 && open_max < INT_MAX ? (int) open_max : 65536;
    }
}

void exec_launch_fini(exec_launch_t *L)
{
    free(L->envp);
    for (int i = 0; i < 4; i++)
        free(L->owned[i]);
    if (L->paths)
        for (char **p = L->paths; *p; p++)
            free(*p);
    free(L->paths);
    free(L->script_argv);
}

/* -------------------------------------------------------------- child */

static void s_child_fail(exec_launch_t *L, int report_fd, int stage, int err)
    __attribute__((noreturn));
static void s_child_fail(exec_launch_t *L, int report_fd, int stage, int err)
{
    exec_child_report_t r = {stage, err};
    if (report_fd < 0) {
        L->report = r;            /* the parent's memory: read after we are gone */
    } else {
        ssize_t n = write(report_fd, &r, sizeof r);
        (void) n;
    }
    _exit(127);
}

void exec_child(exec_launch_t *L, int fd_in, int fd_out, int fd_err, int fd_report)
{
    /* Own group, so a timeout can signal every descendant at once, and
       recorded for the reaper while we still hold the worker's copy of
       its pipe (see exec_child.h). */
    if (setpgid(0, 0) < 0)
        s_child_fail(L, fd_report, EXEC_STAGE_SETUP, errno);
    if (L->slot)
        atomic_store_explicit(&L->slot->pgid, (int32_t) getpid(), memory_order_release);

    /* The parent blocked every signal around fork, so no handler of the
       worker can run here; restore defaults before unblocking (ignored
       signals like the worker's SIGPIPE would survive exec otherwise).
       Only the ones the worker changed, when it says which. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && (!L->reset || sigismember(L->reset, sig) == 1))
            sigaction(sig, &dfl, NULL);   /* fails harmlessly for libc-internal signals */

    /* Move any source fd out of 0..2 first, in case the worker runs with
       one of its standard descriptors closed and pipe2 handed it out. */
    int *fds[4] = {&fd_in, &fd_out, &fd_err, &fd_report};
    for (int i = 0; i < 4; i++)
        if (*fds[i] >= 0 && *fds[i] < 3) {
            int moved = fcntl(*fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                s_child_fail(L, fd_report, EXEC_STAGE_SETUP, errno);
            *fds[i] = moved;
        }
    if (dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 || dup2(fd_err, 2) < 0)
        s_child_fail(L, fd_report, EXEC_STAGE_SETUP, errno);

    /* The report pipe, if any, goes to fd 3 (still close-on-exec);
       everything above is closed, so the task inherits nothing but 0, 1
       and 2. */
    int keep = 3;
    if (fd_report >= 0) {
        if (fd_report != 3) {
            if (dup2(fd_report, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
                s_child_fail(L, fd_report, EXEC_STAGE_SETUP, errno);
            fd_report = 3;
        }
        keep = 4;
    }
    if (close_range((unsigned) keep, ~0U, 0) < 0)
        for (int fd = keep; fd < L->max_fd; fd++)
            close(fd);

    /* Limits first (lowering needs no privilege), then who we are: the
       cwd and the program are then reached with the task user's rights. */
    bool stage_user;
    if (policy_apply_in_child(L->policy, &stage_user) < 0)
        s_child_fail(L, fd_report, stage_user ? EXEC_STAGE_USER : EXEC_STAGE_RLIMIT, errno);

    if (L->cwd && chdir(L->cwd) < 0)
        s_child_fail(L, fd_report, EXEC_STAGE_CHDIR, errno);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (L->shell) {
        execve("/bin/sh", L->argv, L->envp);
        s_child_fail(L, fd_report, EXEC_STAGE_EXEC, errno);
    }
    /* execvp's rules: remember EACCES, skip entries that do not exist or
       are not directories, stop at any other error; a file the kernel
       cannot run (ENOEXEC) is handed to /bin/sh as a script. */
    bool eacces = false;
    int err = ENOENT;
    for (char **p = L->paths; *p; p++) {
        execve(*p, L->argv, L->envp);
        err = errno;
        if (err == ENOEXEC) {
            L->script_argv[1] = *p;
            execve("/bin/sh", L->script_argv, L->envp);
            s_child_fail(L, fd_report, EXEC_STAGE_EXEC, ENOEXEC);
        }
        if (err == EACCES)
            eacces = true;
        else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV &&
                 err != ETIMEDOUT)
            break;
    }
    s_child_fail(L, fd_report, EXEC_STAGE_EXEC, eacces ? EACCES : err);
}

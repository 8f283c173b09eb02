/*  policy: see policy.h. */
#include "policy.h"

#include "../common/util.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { LIM_COUNT, LIM_BYTES, LIM_SECONDS };

static const struct {
    const char *name;
    int resource;
    int kind;
} s_limits[] = {
    {"as", RLIMIT_AS, LIM_BYTES},         {"core", RLIMIT_CORE, LIM_BYTES},
    {"cpu", RLIMIT_CPU, LIM_SECONDS},     {"data", RLIMIT_DATA, LIM_BYTES},
    {"fsize", RLIMIT_FSIZE, LIM_BYTES},   {"memlock", RLIMIT_MEMLOCK, LIM_BYTES},
    {"nofile", RLIMIT_NOFILE, LIM_COUNT}, {"nproc", RLIMIT_NPROC, LIM_COUNT},
    {"stack", RLIMIT_STACK, LIM_BYTES},
};
#define NLIMITS (sizeof s_limits / sizeof s_limits[0])
_Static_assert(NLIMITS <= POLICY_MAX_RLIMITS, "one slot per limit");

exec_policy_t *policy_new(void)
{
    return xcalloc(1, sizeof(exec_policy_t));
}

void policy_destroy(exec_policy_t **p)
{
    if (!p || !*p)
        return;
    exec_policy_t *self = *p;
    free(self->groups);
    free(self->user);
    for (int i = 0; i < 3; i++)
        free(self->env[i]);
    free(self);
    *p = NULL;
}

/* The identity change exactly as the child makes it: raw system calls,
   so that only the calling process changes (glibc's wrappers would
   broadcast to every thread of the worker through signals). Then every
   capability goes: a worker that is not root but was given CAP_SETUID
   and friends (ambient, by its unit) keeps them across a change between
   two non-zero uids, and ambient ones would survive the exec too -- the
   task could then become the worker's user again. */
static int s_switch(const exec_policy_t *self)
{
    if (syscall(SYS_setgroups, (size_t) self->ngroups, self->groups) < 0)
        return -1;
    if (syscall(SYS_setresgid, self->gid, self->gid, self->gid) < 0)
        return -1;
    if (syscall(SYS_setresuid, self->uid, self->uid, self->uid) < 0)
        return -1;
    if (self->uid == 0)
        return 0;   /* --run-as root: root's capabilities are the point */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {{0, 0, 0}};
    return syscall(SYS_capset, &hdr, none) < 0 ? -1 : 0;
}

int policy_fs_enter(const exec_policy_t *self, policy_fs_t *saved)
{
    memset(saved, 0, sizeof *saved);
    if (!self || !self->run_as)
        return 0;
    saved->uid = (uid_t) syscall(SYS_setfsuid, (uid_t) -1);   /* -1: only asks */
    saved->gid = (gid_t) syscall(SYS_setfsgid, (gid_t) -1);
    int n = getgroups(0, NULL);
    if (n < 0)
        return -1;
    saved->groups = xcalloc((size_t) n + 1, sizeof(gid_t));
    if ((saved->ngroups = getgroups(n, saved->groups)) < 0
        || syscall(SYS_setgroups, (size_t) self->ngroups, self->groups) < 0) {
        int e = errno;
        free(saved->groups);
        saved->groups = NULL;
        errno = e;
        return -1;
    }
    saved->changed = true;
    syscall(SYS_setfsgid, self->gid);
    syscall(SYS_setfsuid, self->uid);
    /* setfsuid/setfsgid say nothing on failure: read them back. */
    if ((uid_t) syscall(SYS_setfsuid, (uid_t) -1) != self->uid
        || (gid_t) syscall(SYS_setfsgid, (gid_t) -1) != self->gid) {
        policy_fs_leave(saved);
        errno = EPERM;
        return -1;
    }
    return 0;
}

void policy_fs_leave(policy_fs_t *saved)
{
    if (!saved->changed)
        return;
    syscall(SYS_setfsuid, saved->uid);
    syscall(SYS_setfsgid, saved->gid);
    long rc = syscall(SYS_setgroups, (size_t) saved->ngroups, saved->groups);
    assert(rc == 0 && (uid_t) syscall(SYS_setfsuid, (uid_t) -1) == saved->uid);
    (void) rc;
    free(saved->groups);
    memset(saved, 0, sizeof *saved);
}

/* Tries the change in a throwaway child, so a worker that lacks the
   privilege says so at start instead of failing every task. Called
   before any thread exists. 0, or an errno. */
static int s_probe_switch(const exec_policy_t *self)
{
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(s_switch(self) == 0 ? 0 : (errno & 0x7f));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return errno;
    return WIFEXITED(status) ? WEXITSTATUS(status) : EPERM;
}

int policy_run_as(exec_policy_t *self, const char *user, char *err, size_t errlen)
{
    struct passwd pw, *found = NULL;
    char buf[16384];
    int rc = getpwnam_r(user, &pw, buf, sizeof buf, &found);
    int64_t num;
    if (!found && parse_int64(user, 0, INT32_MAX, &num) == 0)
        rc = getpwuid_r((uid_t) num, &pw, buf, sizeof buf, &found);
    if (!found) {
        snprintf(err, errlen, "--run-as: no user '%s'%s%s", user, rc ? ": " : "",
                 rc ? strerror(rc) : "");
        return -1;
    }
    int ngroups = 64;
    gid_t *groups = xcalloc((size_t) ngroups, sizeof *groups);
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &ngroups) < 0) {
        groups = xrealloc(groups, (size_t) ngroups * sizeof *groups);
        if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &ngroups) < 0)
            ngroups = 0;
    }
    free(self->groups);
    free(self->user);
    for (int i = 0; i < 3; i++)
        free(self->env[i]);
    self->run_as = true;
    self->uid = pw.pw_uid;
    self->gid = pw.pw_gid;
    self->groups = groups;
    self->ngroups = ngroups;
    self->user = xstrdup(user);
    self->env[0] = xasprintf("HOME=%s", pw.pw_dir ? pw.pw_dir : "/");
    self->env[1] = xasprintf("USER=%s", pw.pw_name);
    self->env[2] = xasprintf("LOGNAME=%s", pw.pw_name);
    int e = s_probe_switch(self);
    if (e) {
        snprintf(err, errlen,
                 "--run-as %s: this worker may not run tasks as another user (%s): run it "
                 "as root, or give it CAP_SETUID, CAP_SETGID and CAP_KILL (docs/worker.md)",
                 user, strerror(e));
        return -1;
    }
    return 0;
}

static int s_parse_limit(const char *name, size_t nlen, const char *value, char *err,
                         size_t errlen, policy_rlimit_t *out)
{
    size_t i = 0;
    while (i < NLIMITS && (strlen(s_limits[i].name) != nlen ||
                           strncmp(s_limits[i].name, name, nlen) != 0))
        i++;
    if (i == NLIMITS) {
        snprintf(err, errlen,
                 "--task-rlimit: unknown limit '%.*s' (as, core, cpu, data, fsize, memlock, "
                 "nofile, nproc, stack)",
                 (int) (nlen > 32 ? 32 : nlen), name);
        return -1;
    }
    int64_t v = 0;
    bool ok = strcmp(value, "0") == 0 ||   /* parse_bytes wants >= 1 */
              (s_limits[i].kind == LIM_BYTES ? parse_bytes(value, &v) == 0
                                             : parse_int64(value, 0, INT64_MAX, &v) == 0);
    if (strcmp(value, "unlimited") == 0) {
        out->lim.rlim_cur = out->lim.rlim_max = RLIM_INFINITY;
    } else if (!ok) {
        snprintf(err, errlen, "--task-rlimit: %s: expected %s or 'unlimited', got '%s'",
                 s_limits[i].name,
                 s_limits[i].kind == LIM_BYTES     ? "a size (4096, 64K, 2M, 1G)"
                 : s_limits[i].kind == LIM_SECONDS ? "seconds"
                                                   : "a number",
                 value);
        return -1;
    } else {
        out->lim.rlim_cur = out->lim.rlim_max = (rlim_t) v;
    }
    out->resource = s_limits[i].resource;
    return 0;
}

int policy_add_rlimits(exec_policy_t *self, const char *list, char *err, size_t errlen)
{
    char *copy = xstrdup(list), *cursor = copy;
    int added = 0, rc = 0;
    for (char *tok; rc == 0 && (tok = list_next(&cursor));) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1]) {
            snprintf(err, errlen, "--task-rlimit: expected NAME=VALUE, got '%.64s'", tok);
            rc = -1;
            break;
        }
        policy_rlimit_t lim;
        if (s_parse_limit(tok, (size_t) (eq - tok), eq + 1, err, errlen, &lim) != 0) {
            rc = -1;
            break;
        }
        int at = 0;
        while (at < self->nrlimits && self->rlimits[at].resource != lim.resource)
            at++;
        assert(at < POLICY_MAX_RLIMITS);   /* one slot per known name at most */
        self->rlimits[at] = lim;
        if (at == self->nrlimits)
            self->nrlimits++;
        added++;
    }
    free(copy);
    if (rc == 0 && !added) {
        snprintf(err, errlen, "--task-rlimit: expected NAME=VALUE[,NAME=VALUE...], got '%s'",
                 list);
        rc = -1;
    }
    return rc;
}

uid_t policy_task_uid(const exec_policy_t *self)
{
    return self && self->run_as ? self->uid : geteuid();
}

bool policy_task_can_read(const exec_policy_t *self, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    uid_t uid = policy_task_uid(self);
    if (uid == 0)
        return true;
    if (st.st_uid == uid)
        return (st.st_mode & S_IRUSR) != 0;
    bool in_group = false;
    if (self && self->run_as) {
        in_group = st.st_gid == self->gid;
        for (int i = 0; i < self->ngroups && !in_group; i++)
            in_group = self->groups[i] == st.st_gid;
    } else {
        in_group = st.st_gid == getegid();
        gid_t groups[256];
        int n = getgroups(256, groups);
        for (int i = 0; i < n && !in_group; i++)
            in_group = groups[i] == st.st_gid;
    }
    if (in_group)
        return (st.st_mode & S_IRGRP) != 0;
    return (st.st_mode & S_IROTH) != 0;
}

const char *policy_rlimits_text(const exec_policy_t *self)
{
    static char text[512];
    size_t at = 0;
    text[0] = '\0';
    for (int i = 0; self && i < self->nrlimits; i++) {
        const char *name = "?";
        for (size_t k = 0; k < NLIMITS; k++)
            if (s_limits[k].resource == self->rlimits[i].resource)
                name = s_limits[k].name;
        int n;
        if (self->rlimits[i].lim.rlim_cur == RLIM_INFINITY)
            n = snprintf(text + at, sizeof text - at, "%s%s=unlimited", i ? "," : "", name);
        else
            n = snprintf(text + at, sizeof text - at, "%s%s=%llu", i ? "," : "", name,
                         (unsigned long long) self->rlimits[i].lim.rlim_cur);
        if (n < 0 || (size_t) n >= sizeof text - at)
            break;
        at += (size_t) n;
    }
    return text;
}

int policy_apply_in_child(const exec_policy_t *self, bool *stage_user)
{
    *stage_user = false;
    if (!self)
        return 0;
    for (int i = 0; i < self->nrlimits; i++)
        if (setrlimit((__rlimit_resource_t) self->rlimits[i].resource, &self->rlimits[i].lim) < 0)
            return -1;
    if (!self->run_as)
        return 0;
    *stage_user = true;
    return s_switch(self);
}

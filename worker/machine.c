/*  machine: what this worker has to offer tasks (see machine.h). */
#include "machine.h"

#include "../common/util.h"

#include <ctype.h>
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int machine_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    return cpu_count();
}

static int64_t s_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t) pages * size : 0;
}

static int s_cmp_id(const void *a, const void *b)
{
    const char *x = *(char *const *) a, *y = *(char *const *) b;
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* "GPU 0: NVIDIA A100 (UUID: ...)" lines of `nvidia-smi -L`. */
static int s_from_nvidia_smi(char **ids, int max)
{
    FILE *p = popen("nvidia-smi -L 2>/dev/null", "r");
    if (!p)
        return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        int idx;
        if (n < max && sscanf(line, "GPU %d:", &idx) == 1 && idx >= 0)
            ids[n++] = xasprintf("%d", idx);
    }
    pclose(p);
    return n;
}

/* /dev/nvidia0, /dev/nvidia1, ... (not nvidiactl, nvidia-uvm). */
static int s_from_dev(char **ids, int max)
{
    DIR *d = opendir("/dev");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        const char *rest = e->d_name + 6;
        if (strncmp(e->d_name, "nvidia", 6) != 0 || !*rest)
            continue;
        bool digits = true;
        for (const char *c = rest; *c; c++)
            digits &= isdigit((unsigned char) *c) != 0;
        if (digits)
            ids[n++] = xstrdup(rest);
    }
    closedir(d);
    qsort(ids, (size_t) n, sizeof *ids, s_cmp_id);
    return n;
}

int machine_gpus(char **ids, int max)
{
    const char *fake = getenv("ZTASK_GPU_DEVICES");
    if (fake) {
        char *copy = xstrdup(fake), *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(copy, ",", &save); tok && n < max;
             tok = strtok_r(NULL, ",", &save))
            if (*tok)
                ids[n++] = xstrdup(tok);
        free(copy);
        return n;
    }
    /* nvidia-smi only where the driver is: no fork on an ordinary host. */
    if (access("/dev/nvidiactl", F_OK) != 0)
        return s_from_dev(ids, max);
    int n = s_from_nvidia_smi(ids, max);
    return n > 0 ? n : s_from_dev(ids, max);
}

void machine_clear(machine_t *m)
{
    for (int i = 0; i < m->ngpus; i++)
        free(m->gpu_ids[i]);
    memset(m, 0, sizeof *m);
}

static bool s_has(const res_set_t *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->name[i], name) == 0)
            return true;
    return false;
}

int machine_resources(machine_t *m, const char *text, int threads, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    /* "gpus=auto" is not an amount: take it out before res_parse. */
    char *copy = xstrdup(text ? text : ""), *rest = xcalloc(1, strlen(copy) + 1);
    char *save = NULL;
    int64_t want_gpus = -1;   /* -1 = auto */
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "gpus=auto") == 0)
            continue;
        if (*rest)
            strcat(rest, ",");
        strcat(rest, tok);
    }
    int rc = res_parse(rest, &m->res, err, errlen);
    free(copy);
    free(rest);
    if (rc != 0)
        return -1;
    for (int i = 0; i < m->res.n; i++)
        if (strcmp(m->res.name[i], "gpus") == 0) {
            if (m->res.amount[i] % RES_GPU_UNIT) {
                snprintf(err, errlen, "gpus= declares whole devices (a task may ask a share)");
                return -1;
            }
            want_gpus = m->res.amount[i] / RES_GPU_UNIT;
        }
    if (want_gpus > MACHINE_MAX_GPUS) {
        snprintf(err, errlen, "gpus=%lld: at most %d devices", (long long) want_gpus,
                 MACHINE_MAX_GPUS);
        return -1;
    }
    m->ngpus = machine_gpus(m->gpu_ids, MACHINE_MAX_GPUS);
    if (want_gpus >= 0) {
        while (m->ngpus > want_gpus)
            free(m->gpu_ids[--m->ngpus]);
        for (int i = m->ngpus; i < want_gpus; i++)
            m->gpu_ids[m->ngpus++] = xasprintf("%d", i);
    }
    int cpus = machine_cpus();
    if (!s_has(&m->res, "cpus") && res_set(&m->res, "cpus", cpus > threads ? cpus : threads))
        goto full;
    if (!s_has(&m->res, "mem") && s_memory() > 0 && res_set(&m->res, "mem", s_memory()) != 0)
        goto full;
    if (res_set(&m->res, "gpus", (int64_t) m->ngpus * RES_GPU_UNIT) != 0)
        goto full;
    return 0;
full:
    snprintf(err, errlen, "more than %d resources", RES_MAX);
    machine_clear(m);
    return -1;
}

/*  machine: what this worker has to offer tasks (--resources), with the
    defaults read from the machine: the CPUs it may run on
    (sched_getaffinity), its physical memory, its GPUs.

    GPUs: ZTASK_GPU_DEVICES (a comma-separated list of device ids, "" for
    none) when set, for tests and for a worker limited to some devices;
    else NVIDIA devices, from `nvidia-smi -L` when it runs (its "GPU N:"
    lines), else from /dev/nvidiaN; none otherwise. Tasks given a GPU get
    its id in CUDA_VISIBLE_DEVICES and ZTASK_GPUS.

    Threads: call before the worker's threads start (it may run
    nvidia-smi and reads the environment).
*/
#ifndef ZTASK_WORKER_MACHINE_H
#define ZTASK_WORKER_MACHINE_H

#include "../common/resset.h"

#include <stdbool.h>
#include <stddef.h>

#define MACHINE_MAX_GPUS 64

typedef struct {
    res_set_t res;                    /* what it declares (cpus, mem, gpus, ...) */
    char *gpu_ids[MACHINE_MAX_GPUS];  /* its GPU devices, owned */
    int ngpus;
} machine_t;

/* Fills m from a --resources text ("cpus=16,mem=64G,gpus=auto,licence=2";
   NULL or "" = all defaults): cpus defaults to the CPUs this process may
   run on, or threads when that is more (a worker told to run more tasks
   than CPUs keeps doing so); mem to the physical memory; gpus (or
   gpus=auto) to the devices found, gpus=N to the first N of them (ids
   0..N-1 when fewer are found), gpus=0 to none. Returns 0, or -1 with
   why in err. */
int machine_resources(machine_t *m, const char *text, int threads, char *err, size_t errlen);

/* The GPU device ids found (see the top of this file) into ids (owned by
   the caller, at most max); returns how many. */
int machine_gpus(char **ids, int max);

/* The number of CPUs this process may run on. */
int machine_cpus(void);

void machine_clear(machine_t *m);

#endif

/*  resset: named resource amounts ("cpus=4,mem=16G,gpus=0.5,licence=2"),
    as a worker declares them (--resources) and a task asks for them
    (submit --cpus/--mem/--gpus/--resource, a spec's "resources"). The
    one parser and printer of that text, shared by the CLI, the worker,
    the master and proto/ (which checks a spec's names and amounts with
    it). Placement (what fits where) is the master's: master/resources.h.

    Amounts are integers: "cpus" counts CPUs, "mem" bytes, "gpus"
    thousandths of a GPU (RES_GPU_UNIT; 0.5 GPU = 500), any other name
    whole units.

    Threads: any; no shared state.
*/
#ifndef ZTASK_RESSET_H
#define ZTASK_RESSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RES_MAX 16            /* resources one request or worker names */
#define RES_NAME_MAX 32       /* bytes of a resource name */
#define RES_GPU_UNIT 1000     /* one GPU, in the unit of "gpus" amounts */

/* Named amounts: a request, or what a worker declared. Names sorted. */
typedef struct {
    int n;
    char name[RES_MAX][RES_NAME_MAX + 1];
    int64_t amount[RES_MAX];
} res_set_t;

/* Parses "cpus=4,mem=16G,gpus=0.5,licence=2" (sizes take K/M/G/T
   suffixes for mem; gpus takes up to 3 decimals, a fraction only below
   1). Names: letters, digits, '_' and '-', starting with a letter.
   Returns 0, or -1 with why in err. "" is an empty set. */
int res_parse(const char *text, res_set_t *out, char *err, size_t errlen);

/* The canonical text of a set ("cpus=4,gpus=0.5,mem=17179869184"), sorted
   by name, amounts as res_parse reads them; "" when empty. */
void res_format(const res_set_t *set, char *buf, size_t len);

/* Sets name to amount (adds it, or replaces its amount). -1 when the set
   is full or the name is not a resource name. */
int res_set(res_set_t *set, const char *name, int64_t amount);
/* The amount of name, or 0 when the set does not name it. */
int64_t res_get(const res_set_t *set, const char *name);

/* Whether name is a resource name: 1..RES_NAME_MAX bytes of letters,
   digits, '_' and '-', starting with a letter. */
bool res_name_ok(const char *name);

/* Reads the amount of resource name from text ("4", "16G" for mem,
   "0.5" for gpus); 0 or -1 with why in err. */
int res_amount_parse(const char *name, const char *text, int64_t *amount, char *err,
                     size_t errlen);

/* The amount as res_amount_parse reads it ("0.5" for 500 gpus). */
void res_amount_format(const char *name, int64_t amount, char *buf, size_t len);

#endif

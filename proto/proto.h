/*  proto: the ztask wire format, and the only code that reads or writes it.

    Every message is one ZeroMQ frame holding one JSON object with "v":1 and
    "type". There are three channels, each with its own decoder that accepts
    only that channel's types:

      API     client/worker DEALER -> master ROUTER    requests, answered by a reply
      PIPE    master PUSH -> one worker's PULL          tasks and control for that worker
      REPORT  worker PUSH -> master PULL                heartbeats, starts, output, results

    docs/protocol.md describes every message and field; this header is its
    C face. Decoders validate everything (types, ranges, sizes, UTF-8,
    unknown fields are ignored, unknown types are errors) and turn a frame
    into a typed struct; encoders turn structs back into a frame.

    Ownership: every *_decode and *_new returns a struct the caller owns and
    frees with the matching *_destroy(&p) (which nulls p and accepts NULL).
    Encoders return a malloc'd NUL-terminated string the caller free()s.
    Strings inside structs belong to the struct.

    Errors: decoders return NULL and fill err (a proto_err_t) with a stable
    code (see PROTO_E_*) and a one-line message fit for a user.

    Threads: any; no shared state.
*/
#ifndef ZTASK_PROTO_H
#define ZTASK_PROTO_H

#include "../common/resset.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1

/* Size limits (bytes), enforced by ZMQ_MAXMSGSIZE on the receiving socket
   and re-checked by the decoders. A task result can carry 1 MiB of stdout
   and 1 MiB of stderr, which JSON escaping can grow up to 6x. */
#define PROTO_MAX_API_MSG    (32 * 1024 * 1024)
#define PROTO_MAX_PIPE_MSG   (32 * 1024 * 1024)
/* What one task adds to a "tasks" message besides its spec (id, attempt,
   job and the punctuation: at most 96 bytes), and the envelope's share
   (with its "seq": 56 bytes at most). */
#define PROTO_PIPE_TASK_OVERHEAD 96
#define PROTO_PIPE_ENVELOPE 64
/* The largest spec (encoded JSON) a worker can ever receive: alone in a
   "tasks" message. The master refuses a bigger one at submit. */
#define PROTO_MAX_TASK_SPEC \
    (PROTO_MAX_PIPE_MSG - PROTO_PIPE_ENVELOPE - PROTO_PIPE_TASK_OVERHEAD)
#define PROTO_MAX_REPORT_MSG (32 * 1024 * 1024)
#define PROTO_MAX_SUBMIT_BATCH 10000   /* task specs in one submit message */
#define PROTO_MAX_WAIT_MS 60000        /* a status request's longest wait */
#define PROTO_MAX_NAME 256             /* worker/task/fn names, labels */
#define PROTO_MAX_INDEXES 100000       /* indexes one request names (retry) */
#define PROTO_MAX_ENDED 1024           /* a hello's "ended" refs, as a worker sends them */
#define PROTO_MAX_RECALL 1024          /* refs in a "recall" or a "recalled" message */
/* The longest hold a hello reply may ask (hold_ms): one hour. */
#define PROTO_MAX_HOLD_MS 3600000

/* The highest attempt number (1 = a task's first send). Every resend is
   the next number, recalls included, which charge no retry: numbers are
   never reused or wrapped, and a task sent this many times fails instead
   of going out again (master/tasks.c). Input outside 1..this is refused. */
#define PROTO_MAX_ATTEMPT INT32_MAX
/* A "tasks" message's "seq" and a heartbeat's "seen" (docs/protocol.md
   10.1): 1..2^53 - 1, the largest integer a double holds exactly. */
#define PROTO_MAX_SEQ 9007199254740991LL
#define PROTO_MAX_GPUS_TEXT 4096       /* a task's "gpus" (device ids, comma-separated) */
/* A claim token: the master gives one with each task it sends (with
   CURVE), and the worker hands it back, unread, wherever it claims that
   attempt after a master restart: its hello's "running" and "ended" refs
   and the attempt's result. On the wire it is opaque: 1..PROTO_CLAIM_MAX
   printable ASCII characters other than space, '"' and '\\'
   (proto_claim_valid), so that a master may change its format without
   older workers refusing its tasks. Only the master that made a token
   knows its format and checks it (master/claim.h: today 32 lowercase hex
   digits, a 128-bit MAC). */
#define PROTO_CLAIM_MAX 128
#define PROTO_MAX_KEY 64               /* a submit's idempotency key */
#define PROTO_MAX_TIMEOUT (30.0 * 24 * 3600) /* longest task timeout (s): 30 days */
#define PROTO_MAX_OUTPUT_CAP (64 * 1024 * 1024)
#define PROTO_DEFAULT_OUTPUT_CAP (1024 * 1024)
/* Replies are paged by bytes as well as by count: a results page stops
   once it holds this much (its first record always goes in), and a logs
   reply carries at most a quarter of it per stream (JSON escaping may
   grow a chunk 6x). A reply that would still not fit in what a client
   accepts (PROTO_MAX_API_MSG) is replaced by a too_big error saying so. */
#define PROTO_REPLY_PAGE_BYTES (8 * 1024 * 1024)

/* Stable error codes carried in {"ok":false,"error":{"code":..}}. */
#define PROTO_E_PARSE      "bad_json"      /* not JSON, or not an object */
#define PROTO_E_VERSION    "bad_version"   /* "v" missing or not 1 */
#define PROTO_E_TYPE       "unknown_type"  /* "type" missing or not for this channel */
#define PROTO_E_FIELD      "bad_field"     /* a field is missing, of the wrong type or out of range */
#define PROTO_E_TOO_BIG    "too_big"       /* message or batch over its limit */
#define PROTO_E_NOT_FOUND  "not_found"     /* no such job/task/worker */
#define PROTO_E_STATE      "bad_state"     /* e.g. submit to a closed job */
#define PROTO_E_STORAGE    "storage"       /* the master could not commit (disk full...) */
#define PROTO_E_INTERNAL   "internal"
#define PROTO_E_AUTH       "auth"          /* not allowed for this peer */
#define PROTO_E_QUOTA      "quota"         /* over the client's quota: nothing was accepted */
#define PROTO_E_BUSY       "busy"          /* not run: too many replies unread; send it again */

typedef struct {
    char code[32];
    char message[256];
} proto_err_t;

/* Fills err (when not NULL) with code and a printf-style message. */
void proto_err_set(proto_err_t *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------
   Task spec: what one task is. Submitted by clients, stored by the master
   as its normalized JSON text, forwarded to workers inside "tasks".

   JSON: exactly one of "argv" (array of strings, non-empty), "shell"
   (string, run by /bin/sh -c), "fn" (string); optional "args" (any JSON,
   fn only), "stdin" (string), "env" (object of string values), "cwd"
   (string), "timeout" (seconds, number >= 0, 0 = none), "retries"
   (0..100), "priority" (int32), "name" (string), "index" (int64 >= 0),
   "require" (array of label strings), "output_cap" (bytes per stream,
   1..PROTO_MAX_OUTPUT_CAP), "time_request" (seconds it expects to run,
   0..PROTO_MAX_TIMEOUT), "stdout_file" / "stderr_file" (commands only: a
   path pattern, see proto_spec_path, where the worker writes the whole
   stream), "capture" (false: the master keeps none of the output; the
   files have it), "resources" (object: resource name -> amount, what the
   task needs of a worker; common/resset.h). Unknown fields are an error in
   a spec (a typo must not silently drop a user's setting).
   ------------------------------------------------------------------------ */
typedef enum { PROTO_KIND_EXEC = 1, PROTO_KIND_FN = 2 } proto_kind_t;

typedef struct {
    proto_kind_t kind;
    char **argv;          /* exec, argv form: argc strings + NULL; else NULL */
    int argc;
    char *shell;          /* exec, shell form; else NULL */
    char *fn;             /* fn name; else NULL */
    char *args_json;      /* fn args as compact JSON text, NULL when absent */
    char *stdin_data;     /* NULL when absent */
    size_t stdin_len;
    char **env;           /* envc "KEY=VALUE" strings + NULL; NULL when absent */
    int envc;
    char *cwd;            /* NULL when absent */
    double timeout;       /* seconds; 0 = none */
    int retries;          /* extra attempts after a failure */
    int32_t priority;     /* higher runs first */
    char *name;           /* NULL when absent */
    int64_t index;        /* array index, -1 when absent */
    char **require;       /* nrequire labels; NULL when none */
    int nrequire;
    int64_t output_cap;   /* bytes per stream */
    res_set_t *resources; /* what it needs (cpus, mem, gpus, ...); NULL = nothing
                             named (one CPU) */
    double time_request;  /* seconds it expects to run, 0 = not said: a worker
                             with an end (--ends-at) is sent it only when it
                             can finish PROTO_END_MARGIN_S before that end */
    char *stdout_file;    /* path pattern (proto_spec_path), NULL = none */
    char *stderr_file;
    bool no_capture;      /* "capture": false: only the files get the output */
} proto_spec_t;

/* A worker with an end drains this long before it (session.h). */
#define PROTO_END_MARGIN_S 10

/* The longest stdout_file/stderr_file pattern, in bytes. */
#define PROTO_MAX_PATH 4096

/* The path of an output file: pattern with %{job}, %{index} (the task's
   index; its id when it has none), %{task} and %{attempt} replaced (any
   other '%' is itself). NULL, with err set, for an unknown %{...}. Caller
   frees. */
char *proto_spec_path(const char *pattern, int64_t job, int64_t index, int64_t task, int attempt,
                      proto_err_t *err);

/* A spec with the protocol's defaults, the one place they are written:
   index -1 (none), output_cap PROTO_DEFAULT_OUTPUT_CAP, everything else
   0/NULL (no timeout, no retries, priority 0). kind is as given, or 0 for
   a decoder that sets it once it has read "argv", "shell" or "fn"; the
   caller fills in the command or function. Caller owns
   (proto_spec_destroy). */
proto_spec_t *proto_spec_new(proto_kind_t kind);
/* Parses a spec from JSON text (one JSONL line, say). */
proto_spec_t *proto_spec_decode(const char *json, size_t len, proto_err_t *err);
/* Normalized compact JSON text of a spec (the form the master stores). */
char *proto_spec_encode(const proto_spec_t *spec);
/* Deep copy. */
proto_spec_t *proto_spec_dup(const proto_spec_t *spec);
void proto_spec_destroy(proto_spec_t **p);

/* ------------------------------------------------------------------------
   Results: how one attempt of a task ended, reported by a worker.
   ------------------------------------------------------------------------ */
typedef enum {
    PROTO_ST_QUEUED = 0,
    PROTO_ST_ASSIGNED,   /* on a worker's pipe, not started yet */
    PROTO_ST_RUNNING,
    PROTO_ST_DONE,       /* exit 0 / fn returned a result */
    PROTO_ST_FAILED,     /* non-zero exit, signal, timeout, fn error, refused... */
    PROTO_ST_CANCELLED,
    PROTO_ST_DEP_FAILED  /* never ran: a job it depends on did not end as it needed */
} proto_state_t;

/* A dependency of a new job on an earlier one (submit "after",
   "after_any", "after_each"): its tasks wait until the parent job has
   finished with every task done (OK), finished however it ended (ANY),
   or, for EACH, until the parent's task of the same index is done. */
typedef enum { PROTO_DEP_OK = 1, PROTO_DEP_ANY, PROTO_DEP_EACH } proto_dep_kind_t;

typedef struct {
    int64_t job;
    proto_dep_kind_t kind;
} proto_dep_t;

/* Dependencies one submit may name (all kinds together). */
#define PROTO_MAX_DEPS 64

/* "ok", "any", "each" (NULL outside the enum). */
const char *proto_dep_kind_name(proto_dep_kind_t kind);

const char *proto_state_name(proto_state_t st);          /* "queued", ... */
int proto_state_parse(const char *name, proto_state_t *st);

typedef struct {
    int64_t task;
    int attempt;
    proto_state_t status;     /* DONE or FAILED (CANCELLED when killed by a cancel) */
    bool has_exit_code;
    int exit_code;
    int signal;               /* terminating signal, 0 = none */
    bool timed_out;
    char *stdout_data;        /* valid UTF-8, may be NULL */
    char *stderr_data;
    bool stdout_truncated;
    bool stderr_truncated;
    char *result_json;        /* fn result as compact JSON text, or NULL */
    char *error;              /* one-line error, or NULL */
    double started;           /* wall seconds */
    double finished;
    /* The attempt's claim token as its "tasks" entry gave it ("" = none):
       on the wire only (worker to master), never stored: the fast path
       leaves it out of text, and the master clears it before it encodes a
       result to store. */
    char claim[PROTO_CLAIM_MAX + 1];
    /* The object's JSON text as it arrived, when the decoder's fast path
       read it (else NULL): valid, and what the master stores, so a result
       is not encoded again. Encoders ignore it. */
    char *text;
    /* Worker side: a command's captured bytes as they came (any bytes,
       not NUL-terminated), owned, in place of stdout_data / stderr_data
       (which are then NULL). The encoder writes each as the string
       stdout_data would have been (repaired to UTF-8, escaped), or, when
       raw_b64 and that is shorter, as "stdout_b64" / "stderr_b64": the
       base64 of the raw bytes, which the reader repairs to the same
       string. So JSON escaping (\u0001 is 6 bytes for 1) never makes a
       result more than 4/3 of its output, plus its other members
       (docs/worker.md, "Output capture"). */
    char *stdout_raw, *stderr_raw;
    size_t stdout_raw_len, stderr_raw_len;
    bool raw_b64;             /* the master reads the _b64 members (hello reply) */
    /* Encoding may discard the raw bytes as it goes (their pages go back
       to the kernel; the buffers must only be freed after): for a
       result encoded once, just before it is destroyed. */
    bool raw_release;
    /* Decoder: an output was dropped because the report carrying it held
       more output than the master takes from one report (the result is
       then failed or cancelled with an error that says so;
       docs/protocol.md, "Base64 output"). */
    bool output_dropped;
} proto_result_t;

/* A zeroed result with status FAILED (an unfilled result never reads as
   a success). */
proto_result_t *proto_result_new(void);
/* Empties res for an attempt of task: frees its strings (text included),
   sets every member to its zero value, then task and attempt, and status
   FAILED (as proto_result_new: an unfilled result never reads as a
   success). */
void proto_result_reset(proto_result_t *res, int64_t task, int attempt);
/* Replaces res's error with the text of fmt, made what "error" is: one
   line of valid UTF-8 (newlines and tabs become spaces, invalid bytes
   U+FFFD). The status is left as it is. */
void proto_result_error(proto_result_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void proto_result_verror(proto_result_t *res, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Ends res as status (FAILED or CANCELLED) with that error: a result
   value it held is dropped. */
void proto_result_fail(proto_result_t *res, proto_state_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Encodes one result as a compact JSON object (the master stores this text).
   With raw output, in one allocation of the final size. */
char *proto_result_encode(const proto_result_t *res);
/* The same, after headroom bytes left for the caller (the text starts at
   the returned pointer + headroom, NUL-terminated, *len bytes; len may be
   NULL): a worker's pool thread writes its mailbox frame's header there,
   so the result is handed over rather than copied. *stored (may be NULL):
   its length with plain strings, as the master stores it (base64 output
   is shorter on the wire: up to 4.5 x as stored), what a worker joins
   results by. Free the pointer. */
char *proto_result_encode_at(const proto_result_t *res, size_t headroom, size_t *len,
                             size_t *stored);
/* For a result with raw output: when it would be over max bytes as JSON
   with plain strings (what the master stores), cuts each raw stream to
   the longest prefix whose repaired text is at most keep bytes and ends
   on a character, marking it truncated, as a worker always cut results
   too big to report. True when it cut. */
bool proto_result_cut_raw(proto_result_t *res, size_t max, size_t keep);
/* True for a claim token as the protocol bounds it (len bytes at s):
   1..PROTO_CLAIM_MAX bytes, each printable ASCII other than space, '"'
   and '\\'. Says nothing of whether a master made it (claim_valid). */
bool proto_claim_valid(const char *s, size_t len);
/* Parses a result object (as stored, or one element of a results report). */
proto_result_t *proto_result_decode(const char *json, size_t len, proto_err_t *err);
void proto_result_destroy(proto_result_t **p);
/* The words that best say why r's task did not succeed, as `ztask
   results` and the dashboard show them: for a command that exited
   non-zero, its stderr (its error would only repeat the exit status),
   else the error, else stderr, else stdout; the first of those with a
   line that is not blank (text_first_line gives that line). Borrowed
   from r; NULL when none. */
const char *proto_result_reason(const proto_result_t *r);

/* ------------------------------------------------------------------------
   Worker allocation queues (`ztask alloc`, docs/deploy.md): while tasks
   wait that the live workers cannot take, the master submits jobs to a
   cluster engine (Slurm's sbatch) that start workers pointed back at it.
   A queue record is what `alloc add` sends, what `alloc list` shows and
   what the store keeps (one JSON text per queue).
   ------------------------------------------------------------------------ */
typedef enum {
    PROTO_ALLOC_QUEUED = 1,   /* submitted; the engine has not started it yet */
    PROTO_ALLOC_RUNNING,      /* started (its workers may not have registered yet) */
    PROTO_ALLOC_ENDED         /* finished, cancelled or gone from the engine */
} proto_alloc_state_t;

typedef struct {
    char *id;                 /* the engine's job id ("1234") */
    proto_alloc_state_t state;
    double submitted, started, ended;   /* wall seconds, 0 = not yet */
    bool had_worker;          /* a worker of it registered at least once */
    int workers;              /* its workers alive now (replies only) */
} proto_allocation_t;

typedef enum {
    PROTO_ALLOC_OP_ADD = 1, PROTO_ALLOC_OP_LIST, PROTO_ALLOC_OP_PAUSE, PROTO_ALLOC_OP_RESUME,
    PROTO_ALLOC_OP_REMOVE
} proto_alloc_op_t;

#define PROTO_MAX_ALLOC_ARGS 64        /* engine arguments of one queue */
#define PROTO_MAX_ALLOC_ARG 4096       /* bytes of one of them */
#define PROTO_MAX_ALLOCATIONS 1000     /* allocations a queue remembers */
#define PROTO_MAX_IDLE_S (20 * 86400)  /* a worker's --idle-timeout (its ms fit an int) */

typedef struct {
    int64_t id;               /* > 0, chosen by the master */
    char *name;               /* NULL = none */
    char *engine;             /* "slurm" (the only one today) */
    int max_workers;          /* workers of this queue at once, queued ones included */
    int workers_per_alloc;    /* workers one allocation starts */
    int backlog;              /* allocations waiting in the engine at once */
    int time_limit_s;         /* each allocation's wall-time limit */
    int idle_timeout_s;       /* a worker with nothing to do leaves after this */
    char **args;              /* the engine's own arguments (sbatch's), nargs */
    int nargs;
    char **worker_args;       /* extra ztask-worker arguments, nworker_args */
    int nworker_args;
    bool paused;
    /* Kept by the master: */
    int64_t submitted;        /* allocations submitted so far */
    int64_t failures;         /* failed submissions and allocations that died at once */
    int failing;              /* failures in a row (the backoff grows with it) */
    char *last_error;         /* NULL = none */
    double retry_at;          /* wall seconds: backing off until then, 0 = not */
    proto_allocation_t *allocs;   /* its allocations, oldest first */
    int nallocs;
} proto_alloc_t;

/* "queued", "running", "ended"; NULL outside the enum. */
const char *proto_alloc_state_name(proto_alloc_state_t s);
/* "add", "list", ...; NULL outside the enum. */
const char *proto_alloc_op_name(proto_alloc_op_t op);
/* One queue as a compact JSON object (the store's text, the CLI's --json
   line); and back. Decoding checks the ranges docs/protocol.md gives. */
char *proto_alloc_encode(const proto_alloc_t *q);
proto_alloc_t *proto_alloc_decode(const char *json, size_t len, proto_err_t *err);
/* Frees what the record points to (not the record); *_destroy frees both. */
void proto_alloc_clear(proto_alloc_t *q);
void proto_alloc_destroy(proto_alloc_t **p);

/* ------------------------------------------------------------------------
   API channel (DEALER -> master ROUTER). Every request gets one reply.
   ------------------------------------------------------------------------ */
typedef enum {
    PROTO_REQ_SUBMIT = 1, /* job (0 = new), name, tasks[], more */
    PROTO_REQ_STATUS,     /* job (0 = all jobs summary), wait_ms */
    PROTO_REQ_JOBS,
    PROTO_REQ_RESULTS,    /* job, after (task id cursor, 0 = from start), limit, failed_only */
    PROTO_REQ_LOGS,       /* task, out_offset, err_offset */
    PROTO_REQ_CANCEL,     /* job, task (0 = whole job) */
    PROTO_REQ_WORKERS,
    PROTO_REQ_DRAIN,      /* worker */
    PROTO_REQ_STATS,
    PROTO_REQ_FORGET,     /* job */
    PROTO_REQ_HELLO,      /* worker registration */
    PROTO_REQ_ALLOC,      /* alloc_op, alloc (queue id), queue (add): worker allocation queues */
    PROTO_REQ_RETRY,      /* job, failed, cancelled, indexes: finished tasks run again */
    PROTO_REQ_HOLD,       /* job, or job + index, or task: queued tasks wait */
    PROTO_REQ_RELEASE,    /* the same: held tasks may run again */
    PROTO_REQ_PRIORITY,   /* job, priority: of its unfinished tasks */
    PROTO_REQ_LIMIT,      /* job, max_running: its tasks running at once */
    PROTO_REQ_SHOW,       /* job: its record with its definition */
    PROTO_REQ_TASKS,      /* "running": job (0 = any), worker, all: the tasks on workers now */
    PROTO_REQ_WAITING     /* job (0 = any), all: the queued tasks, each with why it waits */
} proto_req_type_t;
/* The highest request type (for code that walks them all). */
#define PROTO_REQ_LAST PROTO_REQ_WAITING
/* The most task records a "tasks" reply carries. */
#define PROTO_MAX_TASKS_LISTED 10000
/* The largest job definition (submit's "definition", JSON text). */
#define PROTO_MAX_DEFINITION (64 * 1024)
/* The highest --max-running. */
#define PROTO_MAX_RUNNING_LIMIT 1000000

typedef struct {
    int64_t task;
    int attempt;
    char *gpus;   /* a hello's "running" only: the GPU ids the task was given
                     (its "tasks" entry's "gpus", "0,2"), so a restarted master
                     counts those devices taken; NULL = none, or a worker older
                     than this. Owned by the struct holding the array. */
    char claim[PROTO_CLAIM_MAX + 1];   /* a hello's "running" and "ended" only: the
                     attempt's claim token as its "tasks" entry gave it ("" = none:
                     no CURVE, or a worker older than this) */
} proto_task_ref_t;

/* Frees an array of refs and their gpus; accepts NULL. */
void proto_refs_free(proto_task_ref_t *v, int n);

typedef struct {
    proto_req_type_t type;
    int64_t job;
    int64_t task;            /* global task id (cancel, logs); 0 = by job+index */
    int64_t index;           /* cancel/logs by job and index; -1 = not given */
    int64_t after;           /* results: return tasks with id > after */
    int wait_ms;             /* status of one job, or a submit that closes its job
                                (more false): answer once the job has finished, or
                                after this many ms (0..PROTO_MAX_WAIT_MS, 0 = now) */
    int limit;               /* results: at most this many (1..10000, default 1000) */
    bool failed_only;
    int64_t out_offset, err_offset;  /* logs: bytes already seen */
    bool all;                /* status/jobs: every client's jobs (admins), not only ours */
    char *worker;            /* drain: worker id */
    char *name;              /* submit: job name (optional) */
    bool more;               /* submit: more batches follow for this job */
    proto_dep_t *deps;       /* submit, a new job only: what its tasks wait for */
    int ndeps;
    bool with_dependants;    /* cancel of a job: cancel the jobs that wait for it too */
    char *key;               /* submit: idempotency key (optional, proto_key_valid): a
                                resent request with the same key is answered as the
                                first copy was, and adds nothing */
    proto_spec_t **tasks;    /* submit: ntasks specs */
    int ntasks;
    /* hello */
    char *host;
    int pid;
    int threads;
    char **labels;
    int nlabels;
    proto_task_ref_t *running;   /* tasks this worker is still running */
    int nrunning;
    proto_task_ref_t *ended;     /* tasks it ran to the end lately, their results
                                    sent but maybe not yet arrived (a master
                                    restart); at most PROTO_MAX_ENDED */
    int nended;
    bool no_exec;            /* worker refuses exec tasks */
    bool recall;             /* hello: the worker answers "recall" pipe messages
                                (false: an older worker, never sent one) */
    bool resend;             /* hello: the worker keeps the results of its "ended"
                                attempts and sends them again when the reply's
                                "resend" names them (false: an older worker) */
    res_set_t *resources;    /* hello: what the worker has (NULL = not said) */
    char **gpu_ids;          /* hello: its GPU devices (ngpu_ids of them) */
    int ngpu_ids;
    char **functions;        /* hello: the fn names it runs (nfunctions); none = not said
                                (an older worker: taken to run any) */
    int nfunctions;
    /* retry: which finished tasks of job run again (neither flag = both) */
    bool retry_failed, retry_cancelled;
    int64_t *indexes;        /* only these indexes (nindexes of them); NULL = every one */
    int nindexes;
    int32_t priority;        /* priority */
    int max_running;         /* limit; submit (a new job): 0 = no limit */
    char *definition;        /* submit (a new job): what it was submitted as, a JSON
                                object as compact text (at most PROTO_MAX_DEFINITION) */
    char *slurm_job;         /* hello: the Slurm job the worker runs in, NULL = none */
    double ends_at;          /* hello: wall seconds the worker leaves at, 0 = no end */
    /* alloc */
    proto_alloc_op_t alloc_op;
    int64_t alloc;           /* pause/resume/remove: the queue's id */
    bool force;              /* remove: cancel (scancel) its queued and running
                                allocations; without it a queue that has any is
                                not removed */
    proto_alloc_t *queue;    /* add: the queue to make (its id is the master's choice) */
} proto_req_t;

proto_req_t *proto_req_decode(const char *buf, size_t len, proto_err_t *err);
/* True for an idempotency key the protocol takes: 1..PROTO_MAX_KEY bytes
   of A-Z a-z 0-9 . _ : - (it goes into log lines and the store as is). */
bool proto_key_valid(const char *key);
/* "submit", "status", ... (NULL for a value outside the enum). */
const char *proto_req_type_name(proto_req_type_t t);
char *proto_req_encode(const proto_req_t *req);
/* Defaults: index -1, limit 1000, everything else 0/NULL/false. */
proto_req_t *proto_req_new(proto_req_type_t type);
void proto_req_destroy(proto_req_t **p);

/* ------------------------------------------------------------------------
   Replies. One reply object per request: {"v":1,"type":"reply","ok":true,
   ...} or {"v":1,"type":"reply","ok":false,"error":{"code","message"}}.
   The record types below appear inside replies and are also what the CLI
   prints with --json, one object per line.
   ------------------------------------------------------------------------ */
typedef struct {
    int64_t id;
    char *name;                 /* may be NULL */
    bool closed;                /* all batches received */
    int64_t total, queued, running, done, failed, cancelled;
    int64_t dep_failed;         /* tasks that never ran: a job they depend on did not succeed */
    bool waiting;               /* tasks of it wait for the jobs it depends on */
    double created;             /* wall seconds */
    double finished;            /* 0 while not finished */
    char *owner;                /* who submitted it (a client's CURVE key), NULL = nobody */
    char *owner_name;           /* the name the master lists that key under, NULL = none */
    bool held;                  /* ztask hold JOB: its queued tasks wait */
    int max_running;            /* at most this many tasks running, 0 = no limit */
    /* show only (NULL elsewhere), JSON text: */
    char *definition;           /* what it was submitted as (submit's "definition") */
    char *first_spec;           /* the spec of its first task */
} proto_job_t;

/* What a queued task waits for ("waiting" records), in the order a
   reason wins when several hold: a user's hold, the jobs its job depends
   on, its job's --max-running, a master restart's rejoin window, the
   commit of its requeue, a retry backoff, a kind of worker no live one
   is, a free slot (it is ready). The numbers are not that order: later
   ones were added at the end. */
typedef enum {
    PROTO_WAIT_NONE = 0,      /* not a waiting record */
    PROTO_WAIT_HELD,          /* "held" */
    PROTO_WAIT_DEPS,          /* "deps" */
    PROTO_WAIT_CAPPED,        /* "capped" */
    PROTO_WAIT_RETRY,         /* "retry" */
    PROTO_WAIT_NO_WORKER,     /* "no_worker" */
    PROTO_WAIT_READY,         /* "ready" */
    PROTO_WAIT_REJOIN,        /* "rejoin" */
    PROTO_WAIT_COMMIT,        /* "commit" */
    /* Decoded only: a wait a newer master names that this build does not
       know (its name in proto_task_info_t.wait_other). A master never
       sends it. New waits are added above it. */
    PROTO_WAIT_OTHER
} proto_wait_t;
/* "held", ...; NULL for NONE, OTHER or outside the enum. */
const char *proto_wait_name(proto_wait_t w);
/* 0, or -1 for a name that is none of them. */
int proto_wait_parse(const char *name, proto_wait_t *w);
/* The longest wait name a decoder keeps as PROTO_WAIT_OTHER. */
#define PROTO_MAX_WAIT_NAME 32

/* What a class key ("exec", "fn=NAME:gpu,ssd;cpus=2~3600": master/sched.h)
   asks of a worker, in words, into buf (cut to fit, made one printable
   line): "a worker that runs commands, labelled gpu,ssd with cpus=2". One
   copy for the master's words and the CLI's. */
void proto_need_words(char *buf, size_t size, const char *key);

typedef struct {
    int64_t task;               /* global task id */
    int64_t job;
    int64_t index;
    char *name;                 /* may be NULL */
    proto_state_t status;
    int attempts;
    char *worker;               /* last worker, may be NULL */
    proto_result_t *result;     /* NULL while not finished */
    bool held;                  /* queued and held (ztask hold) */
    double started;             /* without a result: when the current attempt was sent
                                   or started (wall seconds), 0 = not on a worker */
    /* "waiting" records only (wait NONE elsewhere): */
    proto_wait_t wait;          /* what it waits for */
    /* wait OTHER: the name as it came (1 to PROTO_MAX_WAIT_NAME of a-z,
       0-9, _, a letter first), written back so; owned. Else NULL. */
    char *wait_other;
    char *reason;               /* the same in words, with what to do; owned */
    int32_t priority;
    int64_t ahead;              /* ready: ready tasks ahead of it in run order */
} proto_task_info_t;

typedef struct {
    char *id;
    char *host;
    int pid;
    int threads;
    char **labels;
    int nlabels;
    bool alive;
    bool draining;
    bool left;                  /* gone because it said bye; !alive && !left: dead */
    int running;
    int64_t done, failed;
    double last_heartbeat;      /* wall seconds; 0 (null on the wire): none yet */
    double gone;                /* wall seconds it died or left; 0 (null) while alive */
    res_set_t *resources;       /* what it declared, NULL = nothing said */
    res_set_t *used;            /* of that, in use now (NULL with resources) */
    char *slurm_job;            /* the Slurm job it runs in, NULL = none */
    double ends_at;             /* wall seconds it leaves at, 0 = no end */
} proto_worker_info_t;

typedef struct {
    int64_t jobs, tasks_queued, tasks_running, tasks_done, tasks_failed;
    int64_t tasks_dep_failed;   /* never run: a job they depend on did not succeed */
    int64_t workers_alive, threads_total, duplicates;
    int64_t results_per_s_1m;   /* recent rate, results per second */
    double uptime;              /* seconds */
    char *db_path;
    /* Needs ("exec", "fn:gpu", "exec:gpu,ssd": a class key) of tasks ready
       to run that no live worker can take now: they wait for one. */
    char **unrunnable;
    int nunrunnable;
} proto_stats_t;

typedef struct {
    bool ok;
    proto_err_t error;          /* when !ok */
    /* submit */
    int64_t job;
    int64_t accepted;           /* tasks accepted by this request */
    int64_t total;              /* tasks in the job so far */
    char **no_worker;           /* needs (class keys, as stats' unrunnable) of this batch's
                                   tasks that no live worker can take now; NULL = none */
    int nno_worker;
    /* status/jobs: njobs records */
    proto_job_t *jobs;
    int njobs;
    /* results */
    proto_task_info_t *tasks;
    int ntasks;
    int64_t next_after;         /* cursor for the next page, -1 when done */
    bool truncated;             /* waiting: more wait than the tasks listed */
    /* logs */
    proto_state_t task_state;
    char *out_chunk, *err_chunk;   /* new output since the offsets */
    char *task_error;              /* a finished task's one-line error, or NULL */
    int64_t out_offset, err_offset; /* offsets after these chunks */
    /* cancel/forget */
    int64_t count;
    /* workers */
    proto_worker_info_t *workers;
    int nworkers;
    /* stats */
    proto_stats_t stats;
    /* hello */
    char *worker_id;
    int task_port;
    int report_port;
    int heartbeat_ms;
    /* hello: this master reads base64 output (stdout_b64, stderr_b64 in
       results, data_b64 in output reports); a worker sends them only
       then. Absent from an older master's reply: false. */
    bool report_b64;
    int liveness;               /* missed heartbeats before a peer is dead */
    /* hello: attempts of the hello's "running" and "ended" that this
       master holds for the worker and has no result of (lost with a
       master that died before it committed them): the worker sends the
       kept ones again and names the others in a LOST report. At most
       PROTO_MAX_ENDED; absent (an older master, or all arrived): none. */
    proto_task_ref_t *resend;
    int nresend;
    /* hello: ms this master, just restarted, still holds back the tasks
       it found queued (its rejoin window: the workers of the old master
       claim theirs first; tasks submitted or taken back since go out
       meanwhile). The worker does not count them as idle time, or a
       short --idle-timeout would make it leave with work waiting for it.
       0 to PROTO_MAX_HOLD_MS; absent (an older master, no window): 0. */
    int hold_ms;
    /* alloc: the queues (add: the new one; list: all) */
    proto_alloc_t *allocs;
    int nallocs;
} proto_reply_t;

/* Defaults: next_after -1, everything else 0/NULL/false. */
proto_reply_t *proto_reply_new(bool ok);
/* A failed reply with code and message. */
proto_reply_t *proto_reply_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Encodes the fields relevant to req_type. */
char *proto_reply_encode(const proto_reply_t *rep, proto_req_type_t req_type);
proto_reply_t *proto_reply_decode(const char *buf, size_t len, proto_req_type_t req_type,
                                  proto_err_t *err);
void proto_reply_destroy(proto_reply_t **p);

/* Single records as one compact JSON line each (the CLI's --json output). */
char *proto_job_encode(const proto_job_t *job);
char *proto_task_info_encode(const proto_task_info_t *info);
char *proto_worker_info_encode(const proto_worker_info_t *w);
char *proto_stats_encode(const proto_stats_t *s);

/* The derived job state shown as "state" in job records: "open" (more
   batches may come), "waiting" (for the jobs it depends on, nothing
   started or finished yet), "queued" (nothing started or finished yet),
   "running", then when every task is finished "failed" (any failed),
   "dep_failed" (any not run for a dependency, none failed), "cancelled"
   (any cancelled, none failed or dep_failed) or "done". Static string. */
const char *proto_job_state_name(const proto_job_t *job);

/* Frees what the record points to (not the record itself). */
void proto_job_clear(proto_job_t *job);
void proto_task_info_clear(proto_task_info_t *info);
void proto_worker_info_clear(proto_worker_info_t *w);
void proto_stats_clear(proto_stats_t *s);

/* ------------------------------------------------------------------------
   PIPE channel (master PUSH -> worker PULL).
   ------------------------------------------------------------------------ */
typedef enum {
    PROTO_PIPE_TASKS = 1, /* tasks[] */
    PROTO_PIPE_ABORT,     /* task, attempt: kill it / do not start it */
    PROTO_PIPE_DRAIN,     /* finish running tasks, take no new ones, say bye */
    PROTO_PIPE_PING,      /* the master is alive (sent every heartbeat interval) */
    PROTO_PIPE_RECALL     /* refs[]: give these attempts back if they have not started */
} proto_pipe_type_t;

typedef struct {
    int64_t id;        /* global task id */
    int attempt;       /* 1 for the first run */
    int64_t job;
    proto_spec_t *spec;
    int cpus;          /* CPUs it was given (0 = not said: one) */
    char *gpus;        /* GPU device ids it was given ("0,2"), NULL = none */
    char claim[PROTO_CLAIM_MAX + 1];   /* its claim token ("" = none: a master
                          without CURVE, or older than this): the worker gives it
                          back when it claims this attempt (PROTO_CLAIM_MAX) */
    bool claim_refused;  /* its "claim" was not a token (not a string, or out
                          of proto_claim_valid's bound): claim is "", and the
                          worker refuses this task alone, not the message */
} proto_task_t;

typedef struct {
    proto_pipe_type_t type;
    proto_task_t *tasks;   /* PROTO_PIPE_TASKS: ntasks entries */
    int ntasks;
    int64_t task;          /* ABORT */
    int attempt;           /* ABORT */
    proto_task_ref_t *refs;   /* RECALL: nrefs (1..PROTO_MAX_RECALL) task/attempt pairs */
    int nrefs;
    /* TASKS: the master's number for this message, 1..2^53 - 1,
       growing with every "tasks" message it sends (any worker's); 0 =
       absent (an older master). The worker echoes the last one it read
       in its heartbeats ("seen"), which is how the master knows a
       heartbeat was made after this message arrived (docs/protocol.md
       10.1, "Heartbeats compared"). */
    int64_t seq;
} proto_pipe_t;

proto_pipe_t *proto_pipe_new(proto_pipe_type_t type);
proto_pipe_t *proto_pipe_decode(const char *buf, size_t len, proto_err_t *err);
char *proto_pipe_encode(const proto_pipe_t *msg);
void proto_pipe_destroy(proto_pipe_t **p);

/* Encodes a "tasks" message straight from stored spec texts, without
   parsing them (the master's hot path: specs are already validated when
   stored). specs[i] is the normalized JSON text of task ids[i]. */
char *proto_pipe_encode_tasks_raw(int n, const int64_t *ids, const int *attempts,
                                  const int64_t *jobs, const char *const *specs);
/* A "tasks" message as the master sends it (proto_pipe_encode_tasks_out):
   n tasks, each array n long, all borrowed. grants and claims may be NULL
   (none at all). */
typedef struct {
    int n;
    const int64_t *ids;
    const int *attempts;
    const int64_t *jobs;
    const char *const *specs;    /* each task's normalized spec JSON */
    /* grants[i] NULL, or the members "cpus":N and "gpus":"0,1" as JSON
       text to add to task i's object. */
    const char *const *grants;
    /* claims[i] NULL or "", or task i's claim token (proto_claim_valid,
       so nothing in it needs escaping). */
    const char *const *claims;
    int64_t seq;                 /* the message's number (proto_pipe_t.seq), 0 = none */
} proto_tasks_out_t;

/* The same as proto_pipe_encode_tasks_raw with what each task was given,
   its claim token and the message's seq. The caller frees the text. */
char *proto_pipe_encode_tasks_out(const proto_tasks_out_t *m);

/* ------------------------------------------------------------------------
   REPORT channel (worker PUSH -> master PULL). Every report names its
   worker id (from the hello reply).
   ------------------------------------------------------------------------ */
typedef enum {
    PROTO_REP_HEARTBEAT = 1, /* running[]: tasks running or waiting on the worker */
    PROTO_REP_STARTED,       /* started[]: task refs with their start times */
    PROTO_REP_OUTPUT,        /* task, attempt, stream, data: live output */
    PROTO_REP_RESULTS,       /* results[] */
    PROTO_REP_BYE,           /* the worker is leaving cleanly */
    PROTO_REP_RECALLED,      /* recalled[]: attempts taken off its queue, never to start */
    PROTO_REP_LOST           /* lost[]: attempts a hello reply's resend named that the worker
                                neither holds nor keeps a result of (docs/protocol.md 10.3) */
} proto_report_type_t;

typedef struct {
    proto_report_type_t type;
    char *worker;
    proto_task_ref_t *running;   /* HEARTBEAT */
    int nrunning;
    /* HEARTBEAT: the seq of the last "tasks" message the worker had read
       when it made this heartbeat, 1..2^53 - 1, and every attempt
       it had read and does not list in running has had its result (or
       its "recalled") sent before this heartbeat, on this socket; 0 =
       absent (an older worker, no "tasks" read since its hello, or
       reports still waiting to go): no comparison (docs/protocol.md
       10.1, "Heartbeats compared"). */
    int64_t seen;
    proto_task_ref_t *started;   /* STARTED */
    double *started_at;          /* STARTED: wall seconds, nstarted entries */
    int nstarted;
    int64_t task;                /* OUTPUT */
    int attempt;                 /* OUTPUT */
    int stream;                  /* OUTPUT: 1 = stdout, 2 = stderr */
    char *data;                  /* OUTPUT: valid UTF-8 */
    /* OUTPUT, worker side, instead of data: raw bytes, written as "data"
       (repaired, escaped) or, with raw_b64 when shorter, as "data_b64"
       (base64; the reader repairs it to the same text). Borrowed, not
       freed by proto_report_destroy: the caller keeps them until the
       encode (the runner's piece of a read, not copied once more on its
       way out); never set by a decode. */
    const char *data_raw;
    size_t data_raw_len;
    bool raw_b64;
    proto_result_t **results;    /* RESULTS: nresults */
    int nresults;
    proto_task_ref_t *recalled;  /* RECALLED: 0..PROTO_MAX_RECALL refs */
    int nrecalled;
    proto_task_ref_t *lost;      /* LOST: 0..PROTO_MAX_ENDED refs */
    int nlost;
} proto_report_t;

proto_report_t *proto_report_new(proto_report_type_t type, const char *worker);
proto_report_t *proto_report_decode(const char *buf, size_t len, proto_err_t *err);
char *proto_report_encode(const proto_report_t *msg);
void proto_report_destroy(proto_report_t **p);

/* Encodes a "results" report from results already encoded with
   proto_result_encode (the worker's hot path: each pool thread encodes its
   own result, the session thread only joins them). */
char *proto_report_encode_results_raw(const char *worker, int n, const char *const *results);
/* The same for one result, made in the result's own buffer (taken: *result
   is nulled and must not be freed): a result of megabytes is not copied
   into its report. */
char *proto_report_wrap_result(const char *worker, char **result);

#endif

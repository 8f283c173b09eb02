/*  chaos_plugin: task functions for the fault-storm scenarios (tests/chaos).

    record  {"file":PATH, "ms":N, "crash_index":K, "late_crash_index":L,
             "late_crash_ms":M, "long_from":F, "long_ms":G, "ends":B}
        Appends one line "TASK ATTEMPT PID JOB INDEX\n" to PATH, then sleeps
        N milliseconds (0 by default, polling cancelled()), and returns
        [INDEX, ATTEMPT, PID]. The line is written first, so every attempt
        that started is on record even when its worker is killed a moment
        later: that is what lets the checker count extra executions. When
        INDEX equals crash_index the function aborts the whole worker right
        after writing its line (a poison task that kills its worker before
        the worker can even report that it started); when INDEX equals
        late_crash_index it aborts after M ms (default 500: a poison task
        the master has seen start). Indexes from long_from on sleep G to
        15G/8 ms instead of N (G + G*(INDEX % 8)/8): a job whose tasks turn
        long part way, and unevenly, so that workers fall idle at different
        times while others still hold long tasks queued (scn_recall.sh).
        With "ends": true it also appends "end TASK ATTEMPT PID JOB INDEX"
        when it returns its result (not when cancelled): with kill marks
        the scenario writes between the lines ("kill LABEL"), the checker
        tells which extra executions repeat work that had ended before a
        master crash (scn_master_kill.sh).

    The line is one write(2) on an O_APPEND descriptor, far below PIPE_BUF,
    so lines from concurrent threads and processes never interleave, and a
    SIGKILL cannot leave half a line behind. The descriptor is opened per
    call: nothing here is global, as the plugin rules ask.
*/
#include "ztask_plugin.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often a sleeping call looks at cancelled(). */
#define SLICE_MS 20

static char *s_err(const char *msg)
{
    return strdup(msg);
}

static void s_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int s_record(const ztask_call_t *call, char **result, char **error)
{
    cJSON *args = cJSON_Parse(call->args_json ? call->args_json : "null");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(args, "file");
    if (!cJSON_IsString(file) || !file->valuestring[0]) {
        cJSON_Delete(args);
        *error = s_err("record: args need {\"file\": PATH}");
        return 1;
    }
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(args, "ms");
    const cJSON *crash = cJSON_GetObjectItemCaseSensitive(args, "crash_index");
    const cJSON *late = cJSON_GetObjectItemCaseSensitive(args, "late_crash_index");
    const cJSON *late_ms = cJSON_GetObjectItemCaseSensitive(args, "late_crash_ms");
    const cJSON *long_from = cJSON_GetObjectItemCaseSensitive(args, "long_from");
    const cJSON *long_ms = cJSON_GetObjectItemCaseSensitive(args, "long_ms");
    bool ends = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "ends"));
    long sleep_ms = cJSON_IsNumber(ms) && ms->valuedouble > 0 ? (long) ms->valuedouble : 0;
    if (cJSON_IsNumber(long_from) && call->index >= (int64_t) long_from->valuedouble
        && cJSON_IsNumber(long_ms) && long_ms->valuedouble > 0) {
        long g = (long) long_ms->valuedouble;
        sleep_ms = g + g * (long) (call->index % 8) / 8;
    }
    bool poison = cJSON_IsNumber(crash) && (int64_t) crash->valuedouble == call->index;
    long crash_after = -1;
    if (cJSON_IsNumber(late) && (int64_t) late->valuedouble == call->index)
        crash_after = cJSON_IsNumber(late_ms) && late_ms->valuedouble >= 0
                          ? (long) late_ms->valuedouble
                          : 500;

    char line[160];
    int n = snprintf(line, sizeof line, "%" PRId64 " %d %ld %" PRId64 " %" PRId64 "\n",
                     call->task_id, call->attempt, (long) getpid(), call->job_id, call->index);
    int fd = open(file->valuestring, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    cJSON_Delete(args);
    if (fd < 0) {
        *error = s_err("record: cannot open the record file");
        return 1;
    }
    ssize_t w = write(fd, line, (size_t) n);
    if (w != n) {
        close(fd);
        *error = s_err("record: short write to the record file");
        return 1;
    }
    if (poison)
        abort();
    if (crash_after >= 0) {
        s_nap_ms(crash_after);
        abort();
    }
    for (long left = sleep_ms; left > 0 && !call->cancelled(call); left -= SLICE_MS)
        s_nap_ms(left < SLICE_MS ? left : SLICE_MS);
    /* The end goes on record before the result leaves: an end line
       before a kill mark is work done before that kill. */
    if (ends && !call->cancelled(call)) {
        char end[170];
        int m = snprintf(end, sizeof end, "end %s", line);
        if (write(fd, end, (size_t) m) != m) {
            close(fd);
            *error = s_err("record: short write to the record file");
            return 1;
        }
    }
    close(fd);
    if (asprintf(result, "[%" PRId64 ",%d,%ld]", call->index, call->attempt, (long) getpid()) < 0) {
        *result = NULL;
        *error = s_err("record: out of memory");
        return 1;
    }
    return 0;
}

static const ztask_fn_entry_t s_table[] = {{"record", s_record}, {NULL, NULL}};

const ztask_fn_entry_t *ztask_plugin_functions(int *abi)
{
    *abi = ZTASK_PLUGIN_ABI;
    return s_table;
}

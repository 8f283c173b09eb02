/*  progress: what `ztask wait` shows while a job runs, as pure functions
    of the job's counters (so they are tested without a terminal or a
    master), plus a small rate estimator.

      bar      [=========>          ] 523/1000  failed 2  312/s  ETA 0:02
      line     job 7: 523/1000 done, 2 failed, 312 tasks/s
      summary  job 7: 1000 tasks, 998 done, 2 failed (3.2 s)

    "523/1000" counts finished tasks (done, failed or cancelled). A "+"
    after the total means the job is still being submitted (not closed), so
    the total will grow.

    Threads: any; a progress_rate_t belongs to one thread.
*/
#ifndef ZTASK_CLI_PROGRESS_H
#define ZTASK_CLI_PROGRESS_H

#include "../proto/proto.h"

#include <stddef.h>
#include <stdint.h>

/* The rate is measured over the last few seconds, not since the start:
   a job that waited for workers, or slowed down, shows what it does now,
   and the ETA follows. */
#define PROGRESS_RATE_WINDOW_MS 5000

typedef struct progress_rate progress_rate_t;

progress_rate_t *progress_rate_new(void);
void progress_rate_destroy(progress_rate_t **p);
/* Records that `finished` tasks were finished at now_ms (monotonic). */
void progress_rate_add(progress_rate_t *self, int64_t now_ms, int64_t finished);
/* Tasks per second over the window; 0 until two samples are apart. */
double progress_rate_get(const progress_rate_t *self);

/* Tasks finished in any way: done + failed + cancelled. */
int64_t progress_finished(const proto_job_t *job);

/* The bar, at most width - 1 columns (so the terminal never wraps; the
   bar itself is dropped below a usable width). Returns the length. */
size_t progress_bar(char *buf, size_t size, const proto_job_t *job, double rate, int width);
/* The plain line for logs and pipes. */
size_t progress_line(char *buf, size_t size, const proto_job_t *job, double rate);
/* The final line; seconds < 0 leaves the duration out. */
size_t progress_summary(char *buf, size_t size, const proto_job_t *job, double seconds);

/* "3.2 s", "2m 05s", "3h 07m". */
void progress_duration(char *buf, size_t size, double seconds);
/* "0:02", "12:40", "3:07:00" (ETA style). */
void progress_clock(char *buf, size_t size, double seconds);

#endif

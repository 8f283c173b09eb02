#include "progress.h"

#include "../common/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enough for the window at the 100 ms poll floor, with room to spare. */
#define RATE_SAMPLES 128

struct progress_rate {
    int64_t t[RATE_SAMPLES];
    int64_t n[RATE_SAMPLES];
    int head;     /* next slot to write */
    int count;
};

progress_rate_t *progress_rate_new(void)
{
    return xcalloc(1, sizeof(progress_rate_t));
}

void progress_rate_destroy(progress_rate_t **p)
{
    if (!p || !*p)
        return;
    free(*p);
    *p = NULL;
}

void progress_rate_add(progress_rate_t *self, int64_t now_ms, int64_t finished)
{
    self->t[self->head] = now_ms;
    self->n[self->head] = finished;
    self->head = (self->head + 1) % RATE_SAMPLES;
    if (self->count < RATE_SAMPLES)
        self->count++;
}

double progress_rate_get(const progress_rate_t *self)
{
    if (self->count < 2)
        return 0;
    int last = (self->head + RATE_SAMPLES - 1) % RATE_SAMPLES;
    /* The oldest sample still inside the window (but never the last). */
    int oldest = last;
    for (int k = 1; k < self->count; k++) {
        int i = (last + RATE_SAMPLES - k) % RATE_SAMPLES;
        if (self->t[last] - self->t[i] > PROGRESS_RATE_WINDOW_MS)
            break;
        oldest = i;
    }
    if (oldest == last) /* the previous sample is older than the window */
        oldest = (last + RATE_SAMPLES - 1) % RATE_SAMPLES;
    int64_t dt = self->t[last] - self->t[oldest];
    int64_t dn = self->n[last] - self->n[oldest];
    if (dt <= 0 || dn < 0)
        return 0;
    return (double) dn * 1000.0 / (double) dt;
}

int64_t progress_finished(const proto_job_t *job)
{
    return job->done + job->failed + job->cancelled + job->dep_failed;
}

void progress_duration(char *buf, size_t size, double s)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, size, "%.1f s", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm %02ds", (int) (s / 60), (int) fmod(s, 60));
    else
        snprintf(buf, size, "%dh %02dm", (int) (s / 3600), (int) fmod(s / 60, 60));
}

void progress_clock(char *buf, size_t size, double s)
{
    if (s < 0)
        s = 0;
    if (s > 359999) /* 99:59:59 */
        s = 359999;
    long t = (long) ceil(s);
    if (t < 3600)
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static void s_rate(char *buf, size_t size, double rate)
{
    if (rate <= 0)
        snprintf(buf, size, "0");
    else if (rate < 10)
        snprintf(buf, size, "%.1f", rate);
    else
        snprintf(buf, size, "%.0f", rate);
}

/* Appends printf output at *len, never past size - 1. */
static void s_append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *len += (size_t) n;
    if (*len >= size)
        *len = size - 1;
}

/* Narrowest bar worth drawing, and the widest that still reads well. */
#define BAR_MIN 10
#define BAR_MAX 40

size_t progress_bar(char *buf, size_t size, const proto_job_t *job, double rate, int width)
{
    if (size == 0)
        return 0;
    int64_t fin = progress_finished(job);
    char tail[160];
    size_t tl = 0;
    char r[32];
    s_rate(r, sizeof r, rate);
    s_append(tail, sizeof tail, &tl, "%lld/%lld%s  failed %lld", (long long) fin,
             (long long) job->total, job->closed ? "" : "+", (long long) job->failed);
    if (job->cancelled > 0)
        s_append(tail, sizeof tail, &tl, "  cancelled %lld", (long long) job->cancelled);
    if (job->dep_failed > 0)
        s_append(tail, sizeof tail, &tl, "  dep_failed %lld", (long long) job->dep_failed);
    s_append(tail, sizeof tail, &tl, "  %s/s", r);
    if (job->closed && rate > 0 && fin < job->total) {
        char eta[32];
        progress_clock(eta, sizeof eta, (double) (job->total - fin) / rate);
        s_append(tail, sizeof tail, &tl, "  ETA %s", eta);
    }

    int cols = width - 1;          /* never write the last column: no wrap */
    if (cols < 1)
        cols = 1;
    size_t max = (size_t) cols < size - 1 ? (size_t) cols : size - 1;
    size_t len = 0;
    int barw = cols - (int) tl - 3; /* "[" "] " */
    if (barw > BAR_MAX)
        barw = BAR_MAX;
    if (barw >= BAR_MIN && (size_t) barw + 3 + tl <= max) {
        double frac = job->total > 0 ? (double) fin / (double) job->total : 0;
        if (frac > 1)
            frac = 1;
        int filled = (int) (frac * barw);
        buf[len++] = '[';
        for (int i = 0; i < barw; i++) {
            if (i < filled - 1 || (i == filled - 1 && filled == barw))
                buf[len++] = '=';
            else if (i == filled - 1)
                buf[len++] = '>';
            else
                buf[len++] = ' ';
        }
        buf[len++] = ']';
        buf[len++] = ' ';
    }
    size_t copy = tl < max - len ? tl : max - len;
    memcpy(buf + len, tail, copy);
    len += copy;
    buf[len] = '\0';
    return len;
}

size_t progress_line(char *buf, size_t size, const proto_job_t *job, double rate)
{
    if (size == 0)
        return 0;
    char r[32];
    s_rate(r, sizeof r, rate);
    size_t len = 0;
    buf[0] = '\0';
    s_append(buf, size, &len, "job %lld: %lld/%lld%s done, %lld failed", (long long) job->id,
             (long long) progress_finished(job), (long long) job->total, job->closed ? "" : "+",
             (long long) job->failed);
    if (job->cancelled > 0)
        s_append(buf, size, &len, ", %lld cancelled", (long long) job->cancelled);
    if (job->dep_failed > 0)
        s_append(buf, size, &len, ", %lld dep_failed", (long long) job->dep_failed);
    s_append(buf, size, &len, ", %s tasks/s", r);
    return len;
}

size_t progress_summary(char *buf, size_t size, const proto_job_t *job, double seconds)
{
    if (size == 0)
        return 0;
    size_t len = 0;
    buf[0] = '\0';
    s_append(buf, size, &len, "job %lld: %lld task%s, %lld done, %lld failed", (long long) job->id,
             (long long) job->total, job->total == 1 ? "" : "s", (long long) job->done,
             (long long) job->failed);
    if (job->cancelled > 0)
        s_append(buf, size, &len, ", %lld cancelled", (long long) job->cancelled);
    if (job->dep_failed > 0)
        s_append(buf, size, &len, ", %lld dep_failed", (long long) job->dep_failed);
    if (seconds >= 0) {
        char d[32];
        progress_duration(d, sizeof d, seconds);
        s_append(buf, size, &len, " (%s)", d);
    }
    return len;
}

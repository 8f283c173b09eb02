/*  log: one line per event to stderr, levelled, with key=value fields.

    Line format:  2026-11-29T10:00:00.123Z INFO ztask-master[123] event=... key=value
    When the calling thread has a context set (log_set_task: "task=12
    attempt=1" while a worker thread runs a task), it is appended.

    Threads: any thread may log; a line is written with one write(2) so lines
    from different threads never interleave. log_init is called once from
    main() before any thread starts. The ident and level are the module's
    only process-wide state (set once, read-only afterwards).
*/
#ifndef ZTASK_LOG_H
#define ZTASK_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR } log_level_t;

/* Sets the program identity ("ztask-master") and the lowest level printed. */
void log_init(const char *ident, log_level_t level);

/* Parses "debug", "info", "warn", "error"; returns -1 on anything else. */
int log_level_parse(const char *text, log_level_t *level);

/* Sets this thread's context: lines it writes end with "task=N attempt=M"
   until log_clear_context. Kept as numbers and printed only when a line
   is written (a worker sets it for every task, and formatting it each time
   cost more than running a no-op task). */
void log_set_task(int64_t task, int attempt);
void log_clear_context(void);

/* Copies text into buf (of size n) fit to stand inside key="...": double
   quotes become single quotes and control characters spaces, so a peer's
   error message cannot break the line's key=value fields. Returns buf. */
const char *log_quote(char *buf, size_t n, const char *text);

/* Any string a peer chose (a worker's name, host and labels, a job's
   name, a function name, a path from a spec...) as one key=value value:
   bare when it is plain ([A-Za-z0-9] and ._-:/@+#,), else in double
   quotes with \" \\ \n \r \t and \xHH for every other control byte
   (and for every byte of text that is not valid UTF-8), so that a name
   with a newline, a space or a quote cannot forge a line or a field.
   Too long for buf: cut, ending in "...". NULL prints as "". Returns buf.
   Use it through LOG_V, whose buffer lives until the end of the
   enclosing block: log_warn("event=x worker=%s", LOG_V(w->id)). */
const char *log_value(char *buf, size_t n, const char *text);
#define LOG_VALUE_MAX 400
#define LOG_V(text) log_value((char[LOG_VALUE_MAX]){0}, LOG_VALUE_MAX, (text))

/* Writes one line: fmt should read as key=value fields, starting with
   event=. Peer-chosen strings go through LOG_V (or log_quote inside
   key="..."); as a last guard, any control byte that still reaches the
   line becomes a space, so nothing can start a line of its own. */
void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A rate limit for a line that a peer can cause at will (a malformed
   message, a refused key): a hostile peer's million frames must not become
   a million lines and fill the disk. At most LOG_LIMIT_PER_S lines a
   second get through; the rest are counted, and the next line let through
   says how many were held back before it (its suppressed=N field). One
   per kind of line, owned by the thread that logs it. */
#define LOG_LIMIT_PER_S 10
typedef struct {
    int64_t second;   /* the monotonic second being counted */
    int count;        /* lines let through in it */
    int64_t held;     /* held back since the last line let through */
} log_limit_t;

/* True when the caller may write its line now (now_ms: monotonic); then
   *held is how many were held back before it. */
bool log_limit(log_limit_t *lim, int64_t now_ms, int64_t *held);

#define log_debug(...) log_write(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LVL_ERROR, __VA_ARGS__)

#endif

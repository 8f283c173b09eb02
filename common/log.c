#include "log.h"

#include "util.h"

#include <assert.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once by log_init before threads start; read-only afterwards. */
static char s_ident[64] = "ztask";
static log_level_t s_level = LOG_LVL_INFO;

/* The task (or other unit of work) the calling thread is busy with. */
static _Thread_local int64_t t_task;      /* 0 = none */
static _Thread_local int t_attempt;

static const char *const s_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *ident, log_level_t level)
{
    snprintf(s_ident, sizeof s_ident, "%s", ident ? ident : "ztask");
    s_level = level;
}

int log_level_parse(const char *text, log_level_t *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (text && strcmp(text, names[i]) == 0) {
            *level = (log_level_t) i;
            return 0;
        }
    return -1;
}

void log_set_task(int64_t task, int attempt)
{
    t_task = task;
    t_attempt = attempt;
}

void log_clear_context(void)
{
    t_task = 0;
}

const char *log_quote(char *buf, size_t n, const char *text)
{
    size_t i = 0;
    for (; text && text[i] && i + 1 < n; i++) {
        unsigned char c = (unsigned char) text[i];
        buf[i] = c == '"' ? '\'' : c < 0x20 || c == 0x7f ? ' ' : (char) c;
    }
    if (n)
        buf[i < n ? i : n - 1] = '\0';
    return buf;
}

static bool s_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || strchr("._-:/@+#,", c) != NULL;
}

const char *log_value(char *buf, size_t n, const char *text)
{
    assert(n >= 8);
    if (!text)
        text = "";
    size_t len = strlen(text);
    bool plain = len > 0;
    for (size_t i = 0; plain && i < len; i++)
        plain = s_plain((unsigned char) text[i]);
    if (plain && len < n) {
        memcpy(buf, text, len + 1);
        return buf;
    }
    bool utf8 = utf8_valid(text, len);
    size_t o = 0;
    buf[o++] = '"';
    /* Room for the widest escape (4), the closing quote, "..." and NUL. */
    for (size_t i = 0; i < len; i++) {
        if (o + 4 + 1 + 3 + 1 > n) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char) text[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (esc) {
            memcpy(buf + o, esc, 2);
            o += 2;
        } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
            o += (size_t) snprintf(buf + o, 5, "\\x%02x", c);
        } else {
            buf[o++] = (char) c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_write(log_level_t level, const char *fmt, ...)
{
    if (level < s_level)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int) strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t) n, ".%03ldZ %s %s[%d] ",
                  ts.tv_nsec / 1000000, s_names[level], s_ident, (int) getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t) n, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : n + m;
    if (n > (int) sizeof line - 2)
        n = (int) sizeof line - 2;
    if (t_task && n < (int) sizeof line - 2) {
        int k = snprintf(line + n, sizeof line - (size_t) n, " task=%lld attempt=%d",
                         (long long) t_task, t_attempt);
        n = k < 0 ? n : n + k;
        if (n > (int) sizeof line - 2)
            n = (int) sizeof line - 2;
    }
    for (int i = 0; i < n; i++)
        if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    line[n++] = '\n';
    /* One write per line so concurrent threads do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t) n);
    (void) w;
}

bool log_limit(log_limit_t *lim, int64_t now_ms, int64_t *held)
{
    int64_t second = now_ms / 1000;
    if (second != lim->second) {
        lim->second = second;
        lim->count = 0;
    }
    if (lim->count >= LOG_LIMIT_PER_S) {
        lim->held++;
        return false;
    }
    lim->count++;
    *held = lim->held;
    lim->held = 0;
    return true;
}

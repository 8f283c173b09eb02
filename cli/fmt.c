#include "fmt.h"

#include "../common/util.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

int fmt_term_width(int fd)
{
    if (!isatty(fd))
        return 0;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0)
        return 80;
    return ws.ws_col;
}

/* Copies s[0..len) into buf, control characters as spaces, at most
   max_cols characters (code points); "..." when cut. */
static void s_printable(char *buf, size_t size, const char *s, size_t len, int max_cols)
{
    if (size == 0)
        return;
    if (max_cols < 4)
        max_cols = 4;
    /* First count characters to know whether we must cut. */
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char) s[i] & 0xC0) != 0x80)
            chars++;
    bool cut = chars > (size_t) max_cols;
    size_t keep = cut ? (size_t) max_cols - 3 : chars;
    size_t o = 0;
    size_t seen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if ((c & 0xC0) != 0x80) {
            if (seen == keep)
                break;
            seen++;
        }
        if (o + 1 >= size)
            break;
        buf[o++] = (c < 0x20 || c == 0x7F) ? ' ' : (char) c;
    }
    /* Never end inside a multi-byte character (when buf ran out). */
    while (o > 0 && ((unsigned char) buf[o - 1] & 0xC0) == 0x80) {
        size_t j = o - 1;
        while (j > 0 && ((unsigned char) buf[j] & 0xC0) == 0x80)
            j--;
        unsigned char lead = (unsigned char) buf[j];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (o - j >= need)
            break;
        o = j;
    }
    if (cut && o + 3 < size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
}

void fmt_write_escaped(FILE *f, const char *text)
{
    const unsigned char *p = (const unsigned char *) (text ? text : "");
    const unsigned char *run = p;   /* start of bytes not yet written */
    for (; *p; p++) {
        bool c0 = (*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7F;
        bool c1 = *p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F;
        if (!c0 && !c1)
            continue;
        fwrite(run, 1, (size_t) (p - run), f);
        if (c0) {
            fprintf(f, "\\x%02x", *p);
        } else {
            fprintf(f, "\\u%04x", p[1]);
            p++;
        }
        run = p + 1;
    }
    fwrite(run, 1, (size_t) (p - run), f);
}

void fmt_first_line(char *buf, size_t size, const char *text, int max_cols)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    size_t len;
    const char *line = text_first_line(text, &len);
    if (line)
        s_printable(buf, size, line, len, max_cols);
}

void fmt_cell(char *buf, size_t size, const char *text, int max_cols)
{
    if (size == 0)
        return;
    if (!text) {
        snprintf(buf, size, "-");
        return;
    }
    s_printable(buf, size, text, strlen(text), max_cols);
}

void fmt_duration(char *buf, size_t size, double s)
{
    if (s < 0)
        s = 0;
    if (s < 10)
        snprintf(buf, size, "%.1fs", s);
    else if (s < 60)
        snprintf(buf, size, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm", (int) (s / 60));
    else if (s < 86400)
        snprintf(buf, size, "%dh", (int) (s / 3600));
    else
        snprintf(buf, size, "%dd", (int) (s / 86400));
}

void fmt_ago(char *buf, size_t size, double s)
{
    char d[32];
    fmt_duration(d, sizeof d, s);
    snprintf(buf, size, "%s ago", d);
}

void fmt_need(char *buf, size_t size, const char *key)
{
    char text[1200];
    proto_need_words(text, sizeof text, key);
    fmt_cell(buf, size, text, 200);
}

void fmt_bytes(char *buf, size_t size, int64_t bytes)
{
    static const char units[] = "KMGTP";
    double v = (double) bytes;
    int u = -1;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, size, "%lld", (long long) bytes);
    else if (v < 10 && v != (double) (int64_t) v)
        snprintf(buf, size, "%.1f%c", v, units[u]);
    else
        snprintf(buf, size, "%.0f%c", v, units[u]);
}

void fmt_time(char *buf, size_t size, double wall)
{
    if (size == 0)
        return;
    time_t t = (time_t) wall;
    struct tm tm;
    if (wall <= 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, size, "-");
}

void fmt_shell_word(char *buf, size_t size, const char *word)
{
    size_t used = strlen(buf);
    if (used + 4 >= size)
        return;
    char clean[4096];
    s_printable(clean, sizeof clean, word, strlen(word), (int) sizeof clean / 4);
    bool safe = *clean != '\0';
    for (const char *p = clean; *p && safe; p++)
        safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+%@", *p)
               != NULL;
    char *out = buf + used;
    size_t room = size - used;
    int n;
    if (safe) {
        n = snprintf(out, room, "%s%s", used ? " " : "", clean);
    } else {
        /* '...' with each ' as '\'' */
        char quoted[4096 * 4 + 3];
        size_t q = 0;
        quoted[q++] = '\'';
        for (const char *p = clean; *p && q + 6 < sizeof quoted; p++) {
            if (*p == '\'') {
                memcpy(quoted + q, "'\\''", 4);
                q += 4;
            } else {
                quoted[q++] = *p;
            }
        }
        quoted[q++] = '\'';
        quoted[q] = '\0';
        n = snprintf(out, room, "%s%s", used ? " " : "", quoted);
    }
    if (n < 0 || (size_t) n >= room)
        memcpy(buf + size - 4, "...", 4);
}

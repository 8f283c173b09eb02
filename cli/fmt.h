/*  fmt: small text helpers for the CLI's human output (tables, ages,
    terminal width). Pure functions except fmt_term_width.

    Task output is untrusted: before it is printed in a table, control
    characters (escape sequences, "\r", tabs) become spaces so a task
    cannot redraw the user's terminal, and it is cut at whole UTF-8
    characters.

    Threads: any.
*/
#ifndef ZTASK_CLI_FMT_H
#define ZTASK_CLI_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Columns of the terminal on fd, or 0 when fd is not a terminal. */
int fmt_term_width(int fd);

/* The first non-blank line of text, made printable and cut to at most
   max_cols characters (ending in "..." when cut), into buf. "" for NULL. */
void fmt_first_line(char *buf, size_t size, const char *text, int max_cols);

/* A field for a table column: made printable, cut to max_cols characters. */
void fmt_cell(char *buf, size_t size, const char *text, int max_cols);

/* A duration: "0.4s", "12s", "5m", "3h", "2d" (negative reads as 0). */
void fmt_duration(char *buf, size_t size, double seconds);
/* Writes text to f with what could drive a terminal made visible: every
   C0 control but "\n" and "\t" (ESC, "\r", backspace, BEL...) and DEL
   as "\xHH", the C1 controls (U+0080..U+009F: some terminals obey U+009B
   as ESC [) as "\u00HH". Everything else, valid UTF-8 included, is
   written as it is. For `ztask logs` (task output is untrusted). */
void fmt_write_escaped(FILE *f, const char *text);

/* "0.4s ago", "12s ago", "5m ago", "3h ago", "2d ago" (a negative age,
   from clocks that disagree a little, reads as 0). */
void fmt_ago(char *buf, size_t size, double seconds);

/* What a task class needs of a worker, in words, from the master's class
   key ("exec", "fn:gpu", "exec:gpu,ssd"): "a worker that runs commands",
   "a worker labelled gpu", "a worker that runs commands, labelled gpu,ssd".
   Made printable. */
void fmt_need(char *buf, size_t size, const char *key);

/* A size as people read it: "512", "64K", "1.5G" (powers of 1024, one
   decimal below 10). */
void fmt_bytes(char *buf, size_t size, int64_t bytes);

/* Wall seconds as "2026-12-07 01:23:45 UTC"; "-" for 0. */
void fmt_time(char *buf, size_t size, double wall);

/* Appends word to buf (NUL-terminated, size bytes in all) as a POSIX
   shell would need it to read it back: as is when it holds only safe
   characters, else in single quotes ('it'\''s'). Made printable.
   Cut (ending in "...") when buf is full. */
void fmt_shell_word(char *buf, size_t size, const char *word);

#endif

/*  util: small helpers every program shares: checked allocation, strict
    number parsing, UTF-8 repair, host:port parsing.

    Allocation: x* functions abort the process on out-of-memory, as Redis
    does; a task system that cannot allocate a few bytes cannot keep its
    promises anyway, and pretending otherwise spreads untested error paths.
    Threads: any (no shared state).
*/
#ifndef ZTASK_UTIL_H
#define ZTASK_UTIL_H

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

/* Defined in ASan and TSan builds, which start children with fork: they
   keep per-thread state that a child sharing our memory (vfork, clone
   with CLONE_VM) would change under us (worker/exec.c, master/alloc.c). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ZT_SANITIZED 1
#endif
#endif

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);                 /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* v in decimal without printf (it is on hot paths: ids in every result,
   a command's ZTASK_* variables), written at the end of buf and
   NUL-terminated; returns where the text starts in buf. */
#define I64_TEXT_MAX 21           /* "-9223372036854775808" and its NUL */
char *i64_text(char buf[I64_TEXT_MAX], int64_t v);

/* A growing text buffer: data is NUL-terminated (or NULL while empty),
   owned by the strbuf; free it with free(sb.data). */
typedef struct {
    char *data;
    size_t len, cap;
} strbuf_t;
/* Appends formatted text. */
void strbuf_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes of data. */
void strbuf_append(strbuf_t *sb, const char *data, size_t n);

/* Whole-string decimal parse with range check; 0 on success, -1 otherwise. */
int parse_int64(const char *text, int64_t min, int64_t max, int64_t *out);
/* Whole-string number parse (accepts "1.5"); 0 on success, -1 otherwise. */
int parse_double(const char *text, double *out);
/* A size: bytes >= 1 with an optional K, M or G suffix (powers of 1024):
   "4096", "64K", "2m", "1G". 0 on success, -1 otherwise (*out untouched). */
int parse_bytes(const char *text, int64_t *out);

/* A duration: seconds >= 0 with an optional s, m, h or d suffix ("90",
   "1.5", "5m", "1h", "2d"), at most max seconds. 0 on success, -1
   otherwise (*out untouched). */
int parse_duration(const char *text, double max, double *out);

/* The next item of a comma-separated list ("gpu, ssd", "a,,b"), split in
   place: *cursor starts at a writable copy of the text and moves past
   each item; the item is returned NUL-terminated, without the blanks
   (spaces, tabs) around it. Empty and blank items are skipped; NULL at
   the end. */
char *list_next(char **cursor);

/* The first line of text that is not blank (spaces, tabs, CRs): a
   pointer into text and its length (without the newline); NULL (and *len
   0) when text is NULL or every line is blank. */
const char *text_first_line(const char *text, size_t *len);

/* Returns a newly allocated, NUL-terminated copy of data[0..len) that is
   valid UTF-8: every invalid sequence (and every NUL byte, which JSON
   strings in cJSON cannot carry) becomes U+FFFD. *outlen gets its length
   (may be NULL). Caller frees. */
char *utf8_sanitize(const char *data, size_t len, size_t *outlen);
/* The same in data's own buffer (malloc'd, len bytes; taken: do not use
   or free it after), reallocated to the repaired text's exact size
   (len + 2 per invalid byte, + 1): no second buffer of up to 3 x len. */
char *utf8_sanitize_take(char *data, size_t len, size_t *outlen);
/* Length of the valid UTF-8 character at p (left >= 1 bytes there), 0
   when p[0] starts no valid character (or is NUL): the unit utf8_sanitize
   replaces by U+FFFD is then that one byte. */
size_t utf8_seq_len(const unsigned char *p, size_t left);

/* Gives the whole pages inside p[0..n) back to the kernel
   (MADV_DONTNEED): they read as zeros afterwards. For a big malloc'd
   buffer that is being consumed and will be freed next, so its resident
   size shrinks as it is read rather than all at once at the free (only
   pages strictly inside it: malloc's own bookkeeping is outside).
   Best effort: errors are ignored. */
void mem_release(const void *p, size_t n);

/* True when data[0..len) is valid UTF-8 with no NUL byte. */
bool utf8_valid(const char *data, size_t len);

/* s with '%' and each character of special written as %XX (two upper-case
   hex digits), so that a name can sit inside a key that uses those
   characters as separators; pct_decode undoes it for the first n bytes
   of s (a '%' not followed by two hex digits is kept). Caller frees. */
char *pct_encode(const char *s, const char *special);
/* strcmp of two char * array elements: for qsort and bsearch. */
int strp_cmp(const void *a, const void *b);
char *pct_decode(const char *s, size_t n);

/* Splits "HOST", "HOST:PORT" or "[V6]:PORT" into host (caller frees) and
   port (left unchanged when absent); "ipc:///DIR" is a host of its own
   (zmqx.h), port unchanged. Returns -1 on a malformed address. */
int hostport_parse(const char *text, char **host, int *port);

/* True for a literal loopback address: 127.x.x.x, ::1 or [::1]
   ("localhost" is for the caller to read as 127.0.0.1). */
bool addr_is_loopback(const char *addr);

/* Number of online CPUs, at least 1. */
int cpu_count(void);

/* The next value of a xorshift64 generator whose state is *state (the
   caller's, seeded non-zero: jitter_seed), for jitter only: not for
   secrets, not shared between threads. */
uint64_t jitter_next(uint64_t *state);
/* A non-zero seed for it, different per process and per call site (salt:
   the owner's address, say), so that processes started together do not
   draw the same pauses. */
uint64_t jitter_seed(const void *salt);

/* True when a program name reads as a shell command line rather than a
   program ("echo 1 | wc -c" given as one word: blanks or shell operators),
   for the hints that point at --shell (the CLI at submit, the worker when
   such a program is not found). */
bool looks_like_shell_line(const char *program);

/* mkdir -p: creates path and any missing parents. Parents get 0755 (less
   the umask); path itself, when created, gets mode exactly (a chmod
   after the mkdir, so the umask cannot widen or narrow it). An existing
   directory is left as it is. 0, or -1 with errno (ENOTDIR when a
   component is not a directory). */
int mkdir_parents(const char *path, mode_t mode);

#endif

#include "cli.h"

#include "../common/util.h"
#include "client.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The process's one global: set by the signal handler, read by loops. */
static volatile sig_atomic_t s_interrupted;

/* The client's interrupt callback. */
static bool s_client_interrupted(void *arg)
{
    (void) arg;
    return s_interrupted != 0;
}

/* The process's client, made on first use; NULL after printing why. */
static client_t *s_client(cli_t *cli, int *rc)
{
    if (!cli->client) {
        cli->client = client_new(cli->host, cli->port, cli->timeout_ms);
        if (!cli->client) {
            fprintf(stderr, "ztask: cannot start ZeroMQ: %s\n", strerror(errno));
            *rc = CLI_EXIT_UNREACHABLE;
            return NULL;
        }
        client_set_interrupt(cli->client, s_client_interrupted, NULL);
        if (cli->curve
            && client_set_curve(cli->client, cli->server_key, cli->public_key, cli->secret_key)
                   != 0) {
            fprintf(stderr, "ztask: authentication failed: the CURVE keys are not valid\n");
            *rc = CLI_EXIT_AUTH;
            return NULL;
        }
    }
    return cli->client;
}

/* Prints a failed call's error and stores its exit code. */
static void s_call_failed(const client_err_t *err, int *rc)
{
    if (err->kind == CLIENT_ERR_INTERRUPTED)
        fprintf(stderr, "\nztask: interrupted\n");
    else
        fprintf(stderr, "ztask: %s\n", err->message);
    *rc = cli_exit_for_client_error(err->kind);
}

proto_reply_t *cli_call(cli_t *cli, const proto_req_t *req, bool retry_safe, int *rc)
{
    return cli_call_until(cli, req, retry_safe, 0, NULL, rc, NULL, 0);
}

proto_reply_t *cli_call_until(cli_t *cli, const proto_req_t *req, bool retry_safe,
                              int64_t until, const char *code, int *rc, char *message,
                              size_t msglen)
{
    if (!s_client(cli, rc))
        return NULL;
    client_err_t err;
    proto_reply_t *rep = client_call_until(cli->client, req, retry_safe, until, &err);
    if (rep)
        return rep;
    if (code && err.kind == CLIENT_ERR_REFUSED && strcmp(err.code, code) == 0) {
        snprintf(message, msglen, "%s", err.message);
        *rc = CLI_EXIT_OK;
        return NULL;
    }
    if (err.kind == CLIENT_ERR_DEADLINE) {
        *rc = CLI_EXIT_TIMEOUT;
        return NULL;
    }
    s_call_failed(&err, rc);
    return NULL;
}

proto_reply_t *cli_call_keyed(cli_t *cli, const proto_req_t *req, int resends, int *rc)
{
    assert(req->key);
    if (!s_client(cli, rc))
        return NULL;
    client_err_t err;
    for (int attempt = 0;; attempt++) {
        /* Not retry_safe: client_call would resend silently inside the
           timeout; each copy is said here instead. */
        proto_reply_t *rep = client_call(cli->client, req, false, &err);
        if (rep)
            return rep;
        /* Only a reply lost after the request may have been taken in is
           worth sending again: the first failure must be a timeout of a
           connected socket; after it, a master still down is expected. */
        bool lost = err.kind == CLIENT_ERR_TIMEOUT
                    || (attempt > 0 && err.kind == CLIENT_ERR_UNREACHABLE);
        if (!lost || attempt == resends)
            break;
        fprintf(stderr,
                "ztask: no reply to %s %s within %g s; sending it again (%d of %d; the master "
                "answers a copy it already took as the first and adds nothing)\n",
                proto_req_type_name(req->type), req->key, cli->timeout_ms / 1000.0,
                attempt + 1, resends);
    }
    s_call_failed(&err, rc);
    return NULL;
}

int cli_exit_for_client_error(client_err_kind_t kind)
{
    switch (kind) {
    case CLIENT_OK:
        return CLI_EXIT_OK;
    case CLIENT_ERR_REQUEST:
        return CLI_EXIT_USAGE;
    case CLIENT_ERR_UNREACHABLE:
    case CLIENT_ERR_TIMEOUT:
        return CLI_EXIT_UNREACHABLE;
    case CLIENT_ERR_AUTH:
        return CLI_EXIT_AUTH;
    case CLIENT_ERR_REFUSED:
    case CLIENT_ERR_BAD_REPLY:
        return CLI_EXIT_REFUSED;
    case CLIENT_ERR_INTERRUPTED:
        return CLI_EXIT_INTERRUPTED;
    case CLIENT_ERR_DEADLINE:
        return CLI_EXIT_TIMEOUT;
    }
    return CLI_EXIT_REFUSED;
}

int cli_exit_for_job(const proto_job_t *job)
{
    return job->failed > 0 || job->cancelled > 0 || job->dep_failed > 0 ? CLI_EXIT_TASKS_FAILED
                                                                        : CLI_EXIT_OK;
}

int cli_exit_for_error_code(const char *code)
{
    return code && strcmp(code, PROTO_E_AUTH) == 0 ? CLI_EXIT_AUTH : CLI_EXIT_REFUSED;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "ztask %s: %s; see 'ztask %s --help'\n", cmd, msg, cmd);
    else
        fprintf(stderr, "ztask: %s; see 'ztask --help'\n", msg);
    return CLI_EXIT_USAGE;
}

/* The option as the user wrote it, without any "=value". */
static void s_option_text(char *buf, size_t size, const char *arg)
{
    size_t n = strcspn(arg, "=");
    snprintf(buf, size, "%.*s", (int) n, arg);
}

size_t cli_distance(const char *a, const char *b)
{
    /* Levenshtein with transpositions (optimal string alignment: "wiat"
       is one edit from "wait"), over three rows; longer words are cut. */
    enum { MAX = 64 };
    size_t la = strnlen(a, MAX), lb = strnlen(b, MAX);
    size_t rows[3][MAX + 1];
    size_t *older = rows[0], *prev = rows[1], *row = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]
                && older[j - 2] + 1 < best)
                best = older[j - 2] + 1;
            row[j] = best;
        }
        size_t *t = older;
        older = prev;
        prev = row;
        row = t;
    }
    return prev[lb];
}

bool cli_close_enough(const char *word, const char *name)
{
    size_t d = cli_distance(word, name);
    size_t len = strlen(word);
    return d > 0 && d <= (len < 6 ? 1 : len < 12 ? 2 : 3);
}

/* "did you mean ..." for an unknown long option text ("--name"): every
   option it begins (ztask takes no abbreviations: `--output` is not
   `--output-cap`, `--w` could be several), else the closest one by
   spelling; "" when nothing is near. */
static void s_option_hint(const struct option *longopts, const char *text, char *buf,
                          size_t size)
{
    const char *name = text + 2;
    size_t len = strlen(name), used = 0;
    char list[400] = "";
    int n = 0;
    for (const struct option *o = longopts; o->name && len > 0; o++)
        if (strncmp(o->name, name, len) == 0 && used < sizeof list)
            used += (size_t) snprintf(list + used, sizeof list - used, "%s--%s", n++ ? " or " : "",
                                      o->name);
    buf[0] = '\0';
    if (n > 0) {
        snprintf(buf, size, " (options are not abbreviated: did you mean %s?)", list);
        return;
    }
    const struct option *best = NULL;
    for (const struct option *o = longopts; o->name; o++)
        if (cli_close_enough(name, o->name)
            && (!best || cli_distance(name, o->name) < cli_distance(name, best->name)))
            best = o;
    if (best)
        snprintf(buf, size, " (did you mean --%s?)", best->name);
}

/* The argv word that named the long option getopt_long just returned:
   "--name=value" or "--name" is argv[optind - 1], unless the value came
   as the next word. NULL when it cannot be told. */
static const char *s_long_word(int argc, char **argv, const struct option *o)
{
    if (optind < 1 || optind > argc)
        return NULL;
    const char *last = argv[optind - 1];
    size_t n = strcspn(last, "=");
    bool names = strncmp(last, "--", 2) == 0 && n > 2 && strncmp(o->name, last + 2, n - 2) == 0;
    if (names && (o->has_arg != required_argument || last[n] == '='))
        return last;
    if (o->has_arg == required_argument && optind >= 2)
        return argv[optind - 2];
    return NULL;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    /* Without the leading ':' getopt reports a missing value as '?' and
       the message below would call it unknown. */
    assert(shortopts[0] == ':' || (shortopts[0] == '+' && shortopts[1] == ':'));
    opterr = 0;
    int longindex = -1;
    int c = getopt_long(argc, argv, shortopts, longopts, &longindex);
    char opt[128], hint[512];
    if (c != '?' && c != ':') {
        /* getopt_long takes any unique prefix: refuse it, so that
           `--output out-{}.txt` is never read as --output-cap. */
        const char *word = longindex >= 0 ? s_long_word(argc, argv, &longopts[longindex]) : NULL;
        if (!word || strncmp(word, "--", 2) != 0)
            return c;
        s_option_text(opt, sizeof opt, word);
        if (strcmp(opt + 2, longopts[longindex].name) == 0)
            return c;
        s_option_hint(longopts, opt, hint, sizeof hint);
        cli_usage_error(cmd, "unknown option '%s'%s", opt, hint);
        return '?';
    }
    /* For a long option optopt is 0 (unknown or ambiguous) or the
       option's val (missing value); argv[optind - 1] is then the option
       itself. For a short one inside a cluster ("-xq") argv[optind - 1]
       may be another word, so name it by its letter. */
    const char *prev = optind > 0 && optind - 1 < argc ? argv[optind - 1] : "";
    hint[0] = '\0';
    if (strncmp(prev, "--", 2) == 0) {
        s_option_text(opt, sizeof opt, prev);
        if (c == '?')
            s_option_hint(longopts, opt, hint, sizeof hint);
    } else {
        snprintf(opt, sizeof opt, "-%c", optopt ? optopt : '?');
    }
    if (c == '?')
        cli_usage_error(cmd, "unknown option '%s'%s", opt, hint);
    else
        cli_usage_error(cmd, "option '%s' needs a value", opt);
    return '?';
}

int cli_parse_job(const char *text, int64_t *job)
{
    return parse_int64(text, 1, INT64_MAX, job);
}

int cli_parse_task_ref(const char *text, int64_t *job, int64_t *index, int64_t *task)
{
    const char *dot = strchr(text, '.');
    if (!dot) {
        if (parse_int64(text, 1, INT64_MAX, task) != 0)
            return -1;
        *job = 0;
        *index = -1;
        return 0;
    }
    char *j = xstrndup(text, (size_t) (dot - text));
    int rc = parse_int64(j, 1, INT64_MAX, job);
    free(j);
    if (rc != 0 || parse_int64(dot + 1, 0, INT64_MAX, index) != 0)
        return -1;
    *task = 0;
    return 0;
}

int cli_parse_seconds(const char *text, double *out)
{
    double v;
    if (parse_double(text, &v) != 0 || v < 0 || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

static void s_on_signal(int sig)
{
    (void) sig;
    s_interrupted = 1;
}

void cli_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked poll or sleep must return */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool cli_interrupted(void)
{
    return s_interrupted != 0;
}

int cli_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
        if (errno != EINTR || s_interrupted)
            break;
    }
    return s_interrupted ? -1 : 0;
}

/*  Commands that change state: ztask cancel, drain, forget (on the
    master; each request is sent once, resent only after a "busy" answer,
    which means it was not run: client.h), and keygen (local files only). */
#include "../common/keys.h"
#include "../common/util.h"
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct option s_help_only[] = {
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/* Parses [--help] and exactly one operand into *operand. Returns -1 to go
   on, or an exit code. */
static int s_one_operand(const char *cmd, const char *usage, const char *what, int argc,
                         char **argv, const char **operand)
{
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_help_only)) != -1) {
        if (c != 'h')
            return CLI_EXIT_USAGE;
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (argc - optind != 1)
        return cli_usage_error(cmd, "give exactly one %s", what);
    *operand = argv[optind];
    return -1;
}

/* ---------------------------------------------------------------- cancel */

static const char s_cancel_usage[] =
    "usage: ztask cancel JOB [--with-dependants] | JOB.INDEX | --task ID\n"
    "\n"
    "Cancels every unfinished task of JOB, or one task (JOB.INDEX, or a global task\n"
    "id with --task). Queued tasks never start; running ones are killed. Prints\n"
    "\"cancelled N tasks\".\n"
    "\n"
    "Jobs that wait for JOB (submit --after) do not run: their tasks end dep_failed\n"
    "when JOB ends (--after-any ones run: JOB has ended). With --with-dependants they\n"
    "are cancelled too, and the jobs that wait for them, and so on.\n"
    "\n"
    "Options:\n"
    "  --with-dependants   also cancel every job that depends on JOB, directly or not\n"
    "\n"
    "Examples:\n"
    "  ztask cancel 7\n"
    "  ztask cancel 7 --with-dependants\n"
    "  ztask cancel 7.42\n"
    "  ztask cancel --task 12345\n";

static const struct option s_cancel_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "task", required_argument, NULL, 't' },
    { "with-dependants", no_argument, NULL, 'w' },
    { NULL, 0, NULL, 0 }
};

int cmd_cancel(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "cancel";
    const char *task_text = NULL;
    bool dependants = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_cancel_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_cancel_usage, stdout);
            return CLI_EXIT_OK;
        case 't':
            task_text = optarg;
            break;
        case 'w':
            dependants = true;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    proto_req_t *req = proto_req_new(PROTO_REQ_CANCEL);
    req->index = -1;
    req->with_dependants = dependants;
    int operands = argc - optind;
    if (task_text) {
        if (operands != 0) {
            proto_req_destroy(&req);
            return cli_usage_error(cmd, "give --task ID or a job, not both");
        }
        if (parse_int64(task_text, 1, INT64_MAX, &req->task) != 0) {
            proto_req_destroy(&req);
            return cli_usage_error(cmd, "--task wants a task id, got '%s'", task_text);
        }
    } else {
        if (operands != 1) {
            proto_req_destroy(&req);
            return cli_usage_error(cmd, "give exactly one JOB or JOB.INDEX");
        }
        const char *t = argv[optind];
        int64_t task = 0;
        int bad = strchr(t, '.') ? cli_parse_task_ref(t, &req->job, &req->index, &task)
                                 : cli_parse_job(t, &req->job);
        if (bad != 0) {
            proto_req_destroy(&req);
            return cli_usage_error(cmd, "'%s' is not JOB or JOB.INDEX", t);
        }
    }
    if (dependants && (req->task > 0 || req->index >= 0)) {
        proto_req_destroy(&req);
        return cli_usage_error(cmd, "--with-dependants goes with a whole JOB, not one task");
    }
    int rc = CLI_EXIT_OK;
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    printf("cancelled %lld task%s\n", (long long) rep->count, rep->count == 1 ? "" : "s");
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ----------------------------------------------------------------- drain */

static const char s_drain_usage[] =
    "usage: ztask drain WORKER\n"
    "\n"
    "Tells a worker to finish the tasks it has, take no new ones, and leave.\n"
    "WORKER is an id from 'ztask workers'.\n"
    "\n"
    "Example:\n"
    "  ztask drain w3\n";

int cmd_drain(cli_t *cli, int argc, char **argv)
{
    const char *worker = NULL;
    int rc = s_one_operand("drain", s_drain_usage, "worker id", argc, argv, &worker);
    if (rc >= 0)
        return rc;
    if (!*worker || strlen(worker) > PROTO_MAX_NAME || !utf8_valid(worker, strlen(worker)))
        return cli_usage_error("drain", "'%s' is not a worker id", worker);
    proto_req_t *req = proto_req_new(PROTO_REQ_DRAIN);
    req->worker = xstrdup(worker);
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    printf("worker %s is draining\n", worker);
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- forget */

static const char s_forget_usage[] =
    "usage: ztask forget JOB\n"
    "\n"
    "Deletes a finished job and all its results from the master. A job that is\n"
    "still running is refused (cancel it first).\n"
    "\n"
    "Example:\n"
    "  ztask forget 7\n";

int cmd_forget(cli_t *cli, int argc, char **argv)
{
    const char *text = NULL;
    int rc = s_one_operand("forget", s_forget_usage, "job id", argc, argv, &text);
    if (rc >= 0)
        return rc;
    proto_req_t *req = proto_req_new(PROTO_REQ_FORGET);
    if (cli_parse_job(text, &req->job) != 0) {
        proto_req_destroy(&req);
        return cli_usage_error("forget", "'%s' is not a job id", text);
    }
    int64_t job = req->job;
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    printf("job %lld forgotten\n", (long long) job);
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- keygen */

static const char s_keygen_usage[] =
    "usage: ztask keygen NAME [--dir DIR]\n"
    "\n"
    "Creates a CURVE key pair for authenticated, encrypted connections to a master\n"
    "run with --curve-secret: DIR/NAME.key (the secret key, mode 0600: keep it on\n"
    "this host) and DIR/NAME.pub (the public key: copy it to the master's --clients\n"
    "or --workers directory). DIR defaults to the current directory. Never\n"
    "overwrites: refuses when either file exists. Prints the two paths and the\n"
    "public key.\n"
    "\n"
    "Options:\n"
    "  --dir DIR   where to write the files; created (mode 0700, parents 0755)\n"
    "              when missing\n"
    "\n"
    "Examples:\n"
    "  ztask keygen master --dir /etc/ztask            (on the master host)\n"
    "  ztask keygen ana --dir ~/.config/ztask          (a user of the CLI)\n"
    "  ztask keygen $(hostname) --dir /etc/ztask       (a worker host)\n"
    "See docs/security.md.\n";

static const struct option s_keygen_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "dir", required_argument, NULL, 'd' },
    { NULL, 0, NULL, 0 }
};

int cmd_keygen(cli_t *cli, int argc, char **argv)
{
    (void) cli;
    const char *cmd = "keygen";
    const char *dir = ".";
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_keygen_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_keygen_usage, stdout);
            return CLI_EXIT_OK;
        case 'd':
            if (!*optarg)
                return cli_usage_error(cmd, "--dir needs a directory");
            dir = optarg;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(cmd, "give exactly one key name");
    const char *name = argv[optind];
    keypair_t kp;
    char err[600];
    if (mkdir_parents(dir, 0700) != 0) {
        fprintf(stderr, "ztask keygen: cannot create directory %s: %s\n", dir, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    if (keys_generate(dir, name, &kp, err, sizeof err) != 0) {
        fprintf(stderr, "ztask keygen: %s\n", err);
        explicit_bzero(&kp, sizeof kp);
        return CLI_EXIT_USAGE;
    }
    printf("secret key: %s/%s.key (keep it private)\n"
           "public key: %s/%s.pub\n"
           "%s\n",
           dir, name, dir, name, kp.pub);
    explicit_bzero(&kp, sizeof kp);
    return CLI_EXIT_OK;
}

/*  e2e hostile, the network part: what an outsider, a listed client or a
    listed worker can make the master do with its sockets and its log,
    through the real programs and raw ZeroMQ/TCP peers (docs/security.md,
    "Threat model"). The barrage of malformed messages is test_hostile.c;
    this suite holds the limits: the --bind address, key file modes,
    memory and descriptors before authentication, reply sizes,
    registrations per key, peer text in the log. */
#include "harness.h"

#include "../../common/keys.h"
#include "../../common/util.h"
#include "../../proto/proto.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

/* libzmq is not built with TSan: its internal threads are suppressed, as
   in the unit suites that open sockets. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

/* "BIN/name" (caller frees). */
static char *s_bin(const char *name)
{
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s/%s", h_bin_dir(), name), 0);
    return out;
}

/* ---------------------------------------------------------------- --bind */

/* libzmq reads "127.0.0.1:19999;0.0.0.0" as a source address and listens
   on 0.0.0.0: a prefix check took it for loopback, and the master listened
   on every address without keys and without event=insecure. */
START_TIMED_TEST(a_bind_that_is_not_one_address_is_refused, 60)
{
    h_cluster_t *c = h_cluster_new("a_bind_that_is_not_one_address_is_refused");
    char *master = s_bin("ztask-master");
    const char *bad[] = { "127.0.0.1:19999;0.0.0.0", "127.0.0.1;0.0.0.0", "127.0.0.1.nip.io",
                          "127.0.0.1 ", "tcp://127.0.0.1", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = { master, "--db", ":memory:", "--port", "0", "--bind", (char *) bad[i],
                         NULL };
        h_run_t *r = h_run(argv, NULL, 5000);
        ck_assert_msg(r->rc == 1 && strstr(r->err, "--bind wants one IP address")
                          && !strstr(r->err, "event=listening"),
                      "--bind '%s' was not refused: %s", bad[i], h_run_desc(r));
        h_run_free(&r);
    }
    /* Loopback literals still start without keys; a non-loopback one
       still needs keys or --insecure. */
    char *argv[] = { master, "--db", ":memory:", "--port", "0", "--bind", "0.0.0.0", NULL };
    h_run_t *r = h_run(argv, NULL, 5000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "without authentication"), "%s", h_run_desc(r));
    h_run_free(&r);
    h_master_start(c, 0, "--bind", "127.0.0.2", NULL);
    free(master);
    h_cluster_destroy(&c);
}
END_TEST

/* ------------------------------------------------------- key file modes */

/* "DIR/NAME.key" made by `ztask keygen` (caller frees). */
static char *s_keygen(h_cluster_t *c, const char *name)
{
    char *bin = s_bin("ztask");
    char *argv[] = { bin, "keygen", (char *) name, "--dir", (char *) h_dir(c), NULL };
    h_run_t *r = h_run(argv, NULL, 10000);
    ck_assert_msg(r->rc == 0, "keygen %s: %s", name, h_run_desc(r));
    h_run_free(&r);
    free(bin);
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s/%s.key", h_dir(c), name), 0);
    return out;
}

/* Expects argv to exit with rc, saying to chmod path. */
static void s_expect_chmod(char *const argv[], int rc, const char *path)
{
    h_run_t *r = h_run(argv, NULL, 10000);
    char want[512];
    snprintf(want, sizeof want, "run: chmod 0600 %s", path);
    ck_assert_msg(r->rc == rc && strstr(r->err, "refusing key file") && strstr(r->err, want)
                      && !strstr(r->err, "event=listening") && !strstr(r->err, "event=registered"),
                  "%s with its key mode 0666: %s", argv[0], h_run_desc(r));
    h_run_free(&r);
}

/* ssh refuses an identity file others can read; ztask took a 0666 secret
   key silently. The master, a worker and the CLI each refuse it with the
   chmod to run; the service setup's 0640 still works. */
START_TIMED_TEST(a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run, 60)
{
    h_cluster_t *c = h_cluster_new("a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run");
    char *mkey = s_keygen(c, "master"), *wkey = s_keygen(c, "w1"), *ckey = s_keygen(c, "cli");
    char *mpub = h_path(c, "master.pub"), *wpub = h_path(c, "w1.pub"), *cpub = h_path(c, "cli.pub");
    char *master = s_bin("ztask-master"), *worker = s_bin("ztask-worker"), *cli = s_bin("ztask");

    ck_assert_int_eq(chmod(mkey, 0666), 0);
    char *margv[] = { master, "--db", ":memory:", "--port", "0", "--curve-secret", mkey,
                      "--clients", cpub, "--workers", wpub, NULL };
    s_expect_chmod(margv, 1, mkey);
    ck_assert_int_eq(chmod(mkey, 0640), 0);
    h_master_start(c, 0, "--curve-secret", mkey, "--clients", cpub, "--workers", wpub, NULL);

    ck_assert_int_eq(chmod(wkey, 0666), 0);
    char *wargv[] = { worker, "--master", (char *) h_master_addr(c), "--curve-secret", wkey,
                      "--master-key", mpub, "--threads", "1", NULL };
    s_expect_chmod(wargv, 1, wkey);
    ck_assert_int_eq(chmod(ckey, 0644), 0);
    char *cargv[] = { cli, "--master", (char *) h_master_addr(c), "--curve-secret", ckey,
                      "--master-key", mpub, "stats", NULL };
    s_expect_chmod(cargv, 2, ckey);
    ck_assert_int_eq(chmod(ckey, 0600), 0);
    h_run_t *r = h_run(cargv, NULL, 20000);
    ck_assert_msg(r->rc == 0, "stats with a 0600 key: %s", h_run_desc(r));
    h_run_free(&r);

    free(mkey), free(wkey), free(ckey), free(mpub), free(wpub), free(cpub);
    free(master), free(worker), free(cli);
    h_cluster_destroy(&c);
}
END_TEST

/* ------------------------------------------- before authentication */

/* A CURVE master with a listed client "cli" and worker "w1". */
typedef struct {
    h_cluster_t *c;
    char *mkey, *mpub, *ckey, *cpub, *wpub;
} curve_t;

static void s_curve_master(curve_t *k, const char *test)
{
    k->c = h_cluster_new(test);
    k->mkey = s_keygen(k->c, "master");
    k->ckey = s_keygen(k->c, "cli");
    free(s_keygen(k->c, "w1"));
    k->mpub = h_path(k->c, "master.pub");
    k->cpub = h_path(k->c, "cli.pub");
    k->wpub = h_path(k->c, "w1.pub");
    h_master_start(k->c, 0, "--curve-secret", k->mkey, "--clients", k->cpub, "--workers",
                   k->wpub, NULL);
}

static void s_curve_free(curve_t *k)
{
    h_cluster_destroy(&k->c);
    free(k->mkey), free(k->mpub), free(k->ckey), free(k->cpub), free(k->wpub);
}

/* `ztask stats` as the listed client: true when it answered. */
static bool s_listed_client_answered(curve_t *k, const char **why)
{
    h_run_t *r = h_cli(k->c, "--curve-secret", k->ckey, "--master-key", k->mpub, "stats",
                       "--json", NULL);
    bool ok = r->rc == 0 && strstr(r->out, "\"tasks_queued\"");
    static char desc[1024];
    snprintf(desc, sizeof desc, "%s", h_run_desc(r));
    *why = desc;
    h_run_free(&r);
    return ok;
}

/* Copies of needle in pid's memory (every mapping /proc/PID/maps lists
   up to 1 GiB, read through /proc/PID/mem); *ro: copies in mappings not
   writable. -1 when the memory cannot be read at all. */
static int s_copies_in_memory(pid_t pid, const char *needle, int *ro)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int) pid);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof path, "/proc/%d/mem", (int) pid);
    int mem = open(path, O_RDONLY);
    if (!maps || mem < 0) {
        if (maps)
            fclose(maps);
        if (mem >= 0)
            close(mem);
        return -1;
    }
    size_t nlen = strlen(needle), chunk = 1 << 20;
    char *buf = malloc(chunk + nlen);
    ck_assert_ptr_nonnull(buf);
    int found = 0, readable = 0;
    *ro = 0;
    char line[512];
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || hi - lo > (1ul << 30))
            continue;
        /* Overlapping reads: a copy across two chunks is counted once. */
        for (unsigned long at = lo; at < hi; at += chunk) {
            size_t want = hi - at < chunk + nlen ? hi - at : chunk + nlen;
            ssize_t n = pread(mem, buf, want, (off_t) at);
            if (n <= 0)
                break;
            readable = 1;
            size_t limit = (size_t) n < chunk + 1 ? (size_t) n : chunk + 1;
            for (char *p = buf; (p = memmem(p, (size_t) n - (size_t) (p - buf), needle, nlen))
                                && (size_t) (p - buf) < limit;
                 p++) {
                found++;
                if (perms[1] != 'w')
                    (*ro)++;
            }
        }
    }
    free(buf);
    fclose(maps);
    close(mem);
    return readable ? found : -1;
}

/* The master kept its CURVE secret key in its own struct, the registry
   kept another copy (xstrdup), the key file's text stayed in freed stdio
   and getline buffers, and libzmq got the Z85 text for every socket: none
   was ever wiped. Now the text is in one place, read-only locked memory
   (keys_secret_new), libzmq gets the 32 bytes, and every other copy is
   wiped: with a worker registered (a pipe socket made with the key), the
   master's memory holds the text exactly once, in a page it cannot write. */
START_TIMED_TEST(the_masters_secret_key_text_is_in_its_memory_once_read_only, 60)
{
    curve_t k = { 0 };
    s_curve_master(&k, "the_masters_secret_key_text_is_in_its_memory_once_read_only");
    char *wkey = h_path(k.c, "w1.key");
    h_worker_start(k.c, "w1", 1, "--curve-secret", wkey, "--master-key", k.mpub, NULL);
    ck_assert(h_proc_wait_log(h_master(k.c), "event=worker_registered", 1, 10000));
    keypair_t kp;
    char err[600];
    ck_assert_msg(keys_load_secret(k.mkey, &kp, err, sizeof err) == 0, "%s", err);
    int ro = 0;
    int n = s_copies_in_memory(h_proc_pid(h_master(k.c)), kp.sec, &ro);
    if (n < 0) {
        printf("SKIP: the_masters_secret_key_text_is_in_its_memory_once_read_only: cannot read "
               "the master's memory (ptrace restrictions)\n");
    } else {
        ck_assert_msg(n == 1 && ro == 1,
                      "the master's secret key text is in its memory %d times (%d read-only)",
                      n, ro);
    }
    free(wkey);
    s_curve_free(&k);
}
END_TEST

/* utime + stime of pid, in clock ticks (-1 when unreadable). */
static int64_t s_cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    char *text = h_read_file(path);
    if (!text)
        return -1;
    /* After "(comm)": state is field 3; utime and stime are 14 and 15. */
    const char *p = strrchr(text, ')');
    long long ut = -1, st = -1;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st);
    free(text);
    return ut < 0 ? -1 : ut + st;
}

/* A raw TCP connection to 127.0.0.1:port, non-blocking. */
static int s_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *) &a, sizeof a);
    ck_assert_msg(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    return fd;
}

/* A DEALER that never reads, spoken by hand over TCP (ZMTP 3.0, NULL
   mechanism): it sends its greeting, READY and each of the n requests
   (under 256 bytes), and never reads a byte, with a small receive
   buffer. A libzmq DEALER would read replies into its own memory
   whatever its RCVHWM (a whole message at a time, and one more for its
   queue), so how much stays in the master would depend on timing. */
static int s_deaf_dealer(int port, const char *req, int n)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *) &a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    unsigned char out[64 + 30 + 16 * 258] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0 };
    memcpy(out + 12, "NULL", 4);
    /* The greeting, then the master's (libzmq dropped a peer whose READY
       came in the greeting's packet), then the rest. */
    ck_assert_int_eq(write(fd, out, 64), 64);
    struct timeval tv = { .tv_sec = h_ms(10000) / 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char theirs[64];
    for (size_t got = 0; got < sizeof theirs;) {
        ssize_t k = read(fd, theirs + got, sizeof theirs - got);
        ck_assert_msg(k > 0, "the master's greeting: %s", k == 0 ? "closed" : strerror(errno));
        got += (size_t) k;
    }
    size_t len = 0;
    /* READY: a short command of 28 bytes, with Socket-Type DEALER. */
    static const unsigned char ready[] = "\x04\x1c\x05READY\x0b" "Socket-Type\0\0\0\x06" "DEALER";
    memcpy(out + len, ready, sizeof ready - 1);
    len += sizeof ready - 1;
    size_t rlen = strlen(req);
    ck_assert(rlen < 256 && n <= 16);
    for (int i = 0; i < n; i++) {
        out[len++] = 0;   /* a short frame, the last of its message */
        out[len++] = (unsigned char) rlen;
        memcpy(out + len, req, rlen);
        len += rlen;
    }
    ck_assert_int_eq(write(fd, out, len), (ssize_t) len);
    return fd;
}

#define STORM_PEERS 24
#define STORM_FRAME (30 * 1000 * 1000)

/* 24 peers with no key, each sending a ZMTP greeting (mechanism CURVE)
   and then, in place of its HELLO, a 30 MB frame it never finishes:
   libzmq read each into memory, and the master grew by 720 MB, silently,
   and kept it. Now each is shed once it has sent 64 KiB before its
   handshake (event=connection_shed reason=frame_before_handshake). The
   stated bound: the master's peak stays under 256 MiB and it is back
   under 64 MiB with the storm's connections still open; a listed client
   gets answers during and after. */
START_TIMED_TEST(a_storm_of_big_frames_before_the_handshake_leaves_the_master_small, 180)
{
    curve_t k;
    s_curve_master(&k, "a_storm_of_big_frames_before_the_handshake_leaves_the_master_small");
    pid_t master = h_proc_pid(h_master(k.c));
    long base = h_vm_kib(master, "VmRSS");
    unsigned char greeting[64] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0 };
    memcpy(greeting + 12, "CURVE", 5);
    unsigned char header[9] = { 0x02 };   /* a long frame: 8-byte size, big-endian */
    for (int i = 0; i < 8; i++)
        header[1 + i] = (unsigned char) ((uint64_t) STORM_FRAME >> (8 * (7 - i)));
    static char junk[256 * 1024];
    memset(junk, 'x', sizeof junk);

    int fds[STORM_PEERS];
    size_t sent[STORM_PEERS];
    bool done[STORM_PEERS];
    for (int i = 0; i < STORM_PEERS; i++) {
        fds[i] = s_tcp(h_api_port(k.c));
        sent[i] = 0;
        done[i] = false;
    }
    /* Round robin until every peer has sent all but the frame's last byte
       or was cut off; the master must never read a whole frame. */
    size_t total = sizeof greeting + sizeof header + STORM_FRAME - 1;
    int64_t deadline = h_now_ms() + h_ms(120000);
    int left = STORM_PEERS;
    while (left > 0 && h_now_ms() < deadline) {
        struct pollfd pf[STORM_PEERS];
        for (int i = 0; i < STORM_PEERS; i++)
            pf[i] = (struct pollfd){ .fd = done[i] ? -1 : fds[i], .events = POLLOUT | POLLRDHUP };
        poll(pf, STORM_PEERS, 100);
        for (int i = 0; i < STORM_PEERS; i++) {
            if (done[i] || !(pf[i].revents & (POLLOUT | POLLERR | POLLHUP | POLLRDHUP)))
                continue;
            if (pf[i].revents & (POLLERR | POLLHUP | POLLRDHUP)) {
                done[i] = true;   /* the master hung up */
                left--;
                continue;
            }
            const void *buf = junk;
            size_t n = sizeof junk;
            if (sent[i] < sizeof greeting)
                buf = greeting + sent[i], n = sizeof greeting - sent[i];
            else if (sent[i] < sizeof greeting + sizeof header)
                buf = header + (sent[i] - sizeof greeting),
                n = sizeof greeting + sizeof header - sent[i];
            if (n > total - sent[i])
                n = total - sent[i];
            ssize_t w = send(fds[i], buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent[i] += (size_t) w;
            if ((w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || sent[i] == total) {
                done[i] = true;
                left--;
            }
        }
    }
    ck_assert_msg(left == 0, "the storm did not finish: %d peers still sending", left);
    const char *why = "";
    ck_assert_msg(s_listed_client_answered(&k, &why), "listed client during the storm: %s", why);
    long rss = h_vm_kib(master, "VmRSS"), peak = h_vm_kib(master, "VmHWM");
    fprintf(stderr, "storm of %d x %d MB frames: master RSS %ld KiB before, %ld KiB after, "
                    "peak %ld KiB\n", STORM_PEERS, STORM_FRAME / 1000000, base, rss, peak);
    ck_assert_msg(peak < 256 * 1024 && rss < 64 * 1024,
                  "master RSS %ld KiB (peak %ld KiB; %ld KiB before) after %d peers each sent "
                  "%d MB before their handshake",
                  rss, peak, base, STORM_PEERS, STORM_FRAME / 1000000);
    ck_assert(h_proc_count_log(h_master(k.c), "reason=frame_before_handshake") > 0);
    for (int i = 0; i < STORM_PEERS; i++)
        close(fds[i]);
    ck_assert_msg(s_listed_client_answered(&k, &why), "listed client after the storm: %s", why);
    s_curve_free(&k);
}
END_TEST

#define IDLE_LIMIT 256
#define IDLE_PEERS 600

/* Keeps IDLE_PEERS idle TCP connections to port open, reopening each one
   the master closes, until killed (a child process: the parent runs the
   CLI meanwhile). */
static pid_t s_idle_storm(int port)
{
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid > 0) {
        /* Once every connection is open (or the child is gone). */
        close(ready[1]);
        char b;
        ck_assert_msg(read(ready[0], &b, 1) == 1, "the storm did not start");
        close(ready[0]);
        return pid;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ready[0]);
    static int fds[IDLE_PEERS];
    for (int i = 0; i < IDLE_PEERS; i++)
        fds[i] = s_tcp(port);
    if (write(ready[1], "x", 1) != 1)
        _exit(1);
    close(ready[1]);
    for (int round = 0; round < 100000; round++) {
        struct pollfd pf[IDLE_PEERS];
        for (int i = 0; i < IDLE_PEERS; i++)
            pf[i] = (struct pollfd){ .fd = fds[i], .events = POLLRDHUP };
        if (poll(pf, IDLE_PEERS, 100) < 0)
            _exit(1);
        for (int i = 0; i < IDLE_PEERS; i++)
            if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                close(fds[i]);
                fds[i] = s_tcp(port);
            }
    }
    _exit(0);
}

/* 600 idle TCP connections, reopened as the master closes them, against
   a master allowed 256 descriptors: libzmq took one descriptor for each
   until accept failed, and listed clients could not get through for as
   long as the storm lasted, with nothing in the log. Now unauthenticated
   connections are shed (at most 64 per socket wait for their handshake,
   and all go when descriptors run within 128 of the limit), the
   shortage is logged, and the listed client gets its answers. */
START_TIMED_TEST(a_storm_of_idle_connections_leaves_descriptors_for_listed_clients, 180)
{
    curve_t k;
    s_curve_master(&k, "a_storm_of_idle_connections_leaves_descriptors_for_listed_clients");
    pid_t master = h_proc_pid(h_master(k.c));
    struct rlimit rl = { IDLE_LIMIT, IDLE_LIMIT };
    ck_assert_int_eq(prlimit(master, RLIMIT_NOFILE, &rl, NULL), 0);
    struct rlimit mine;
    getrlimit(RLIMIT_NOFILE, &mine);
    if (mine.rlim_cur < IDLE_PEERS + 64 && mine.rlim_max >= IDLE_PEERS + 64) {
        mine.rlim_cur = mine.rlim_max;
        setrlimit(RLIMIT_NOFILE, &mine);
    }
    pid_t storm = s_idle_storm(h_api_port(k.c));
    for (int i = 0; i < 3; i++) {
        const char *why = "";
        ck_assert_msg(s_listed_client_answered(&k, &why), "listed client, try %d: %s", i, why);
    }
    ck_assert(h_proc_wait_log(h_master(k.c), "event=connection_shed", 1, 30000));
    ck_assert(h_proc_wait_log(h_master(k.c), "event=descriptors_short", 1, 30000));
    kill(storm, SIGKILL);
    waitpid(storm, NULL, 0);
    s_curve_free(&k);
}
END_TEST

/* ------------------------------------------------- workers per key */

/* One worker key registered 50 fake workers and took every --task-ports
   port. Now a key holds at most --max-workers-per-key live workers (3
   here): the fourth is refused (code quota, said in both logs), keeps
   retrying, and gets in once one of the three has stopped. */
START_TIMED_TEST(one_worker_key_registers_at_most_its_share_of_workers, 120)
{
    curve_t k = { 0 };
    k.c = h_cluster_new("one_worker_key_registers_at_most_its_share_of_workers");
    k.mkey = s_keygen(k.c, "master");
    k.ckey = s_keygen(k.c, "cli");
    char *wkey = s_keygen(k.c, "w1");
    k.mpub = h_path(k.c, "master.pub");
    k.cpub = h_path(k.c, "cli.pub");
    k.wpub = h_path(k.c, "w1.pub");
    h_master_start(k.c, 0, "--curve-secret", k.mkey, "--clients", k.cpub, "--workers", k.wpub,
                   "--max-workers-per-key", "3", NULL);
    h_proc_t *w[3];
    const char *names[] = { "a", "b", "c" };
    for (int i = 0; i < 3; i++)
        w[i] = h_worker_start(k.c, names[i], 1, "--curve-secret", wkey, "--master-key", k.mpub,
                              NULL);
    h_proc_t *extra = h_worker_spawn(k.c, "d", 1, "--curve-secret", wkey, "--master-key",
                                     k.mpub, NULL);
    ck_assert(h_proc_wait_log(h_master(k.c), "event=hello_refused name=d", 1, 20000));
    ck_assert(h_proc_count_log(h_master(k.c), "code=quota") >= 1);
    ck_assert(h_proc_wait_log(extra, "--max-workers-per-key", 1, 20000));
    ck_assert_int_eq(h_proc_count_log(extra, "event=registered"), 0);
    h_proc_stop(w[0], 20000);
    ck_assert(h_proc_wait_log(extra, "event=registered", 1, 60000));
    free(wkey);
    s_curve_free(&k);
}
END_TEST

/* ------------------------------------------------- peer text in the log */

#define FORGED "\n2026-01-01T00:00:00.000Z ERROR ztask-master[1] event=forged"

/* A worker named "evil\n<a whole log line>" forged an ERROR line in the
   master's log. Every peer-chosen string (name, host, labels, a
   report's worker) is now one escaped value: the master's log has no
   line of the forger's making, and the name is there, quoted. */
START_TIMED_TEST(a_worker_name_with_a_newline_cannot_forge_a_log_line, 60)
{
    h_cluster_t *c = h_cluster_new("a_worker_name_with_a_newline_cannot_forge_a_log_line");
    h_master_start(c, 0, NULL);
    void *ctx = zmq_ctx_new();
    void *api = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, timeout = h_ms(10000);
    zmq_setsockopt(api, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(api, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(api, ep), 0);
    char *labels[] = { "gpu" FORGED, NULL };
    proto_req_t *q = proto_req_new(PROTO_REQ_HELLO);
    q->name = xstrdup("evil" FORGED);
    q->host = xstrdup("host\" event=forged" FORGED);
    q->pid = 4242;
    q->threads = 1;
    q->labels = xcalloc(2, sizeof(char *));
    q->labels[0] = xstrdup(labels[0]);
    q->nlabels = 1;
    char *text = proto_req_encode(q);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(zmq_send(api, text, strlen(text), 0), (int) strlen(text));
    char reply[4096];
    int n = zmq_recv(api, reply, sizeof reply - 1, 0);
    ck_assert_msg(n > 0, "no reply to the hello");
    reply[n] = '\0';
    ck_assert_msg(strstr(reply, "\"ok\":true"), "hello refused: %s", reply);
    h_proc_t *m = h_master(c);
    ck_assert(h_proc_wait_log(m, "event=worker_registered", 1, 10000));
    /* A report naming that worker, from no pipe at all. */
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    zmq_setsockopt(push, ZMQ_LINGER, &timeout, sizeof timeout);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_report_port(c));
    ck_assert_int_eq(zmq_connect(push, ep), 0);
    proto_report_t *rep = proto_report_new(PROTO_REP_RESULTS, "evil\nFORGED event=forged");
    rep->results = xcalloc(1, sizeof *rep->results);
    proto_result_t *res = rep->results[rep->nresults++] = proto_result_new();
    res->task = 999;
    res->attempt = 1;
    res->status = PROTO_ST_DONE;
    res->started = res->finished = 1;
    char *result = proto_report_encode(rep);
    ck_assert_ptr_nonnull(result);
    ck_assert_int_ge(zmq_send(push, result, strlen(result), 0), 0);
    free(result);
    proto_report_destroy(&rep);
    ck_assert(h_proc_wait_log(m, "task=999", 1, 10000));

    h_proc_stop(m, 10000);
    char *log = h_read_file(h_proc_log(m));
    ck_assert_ptr_nonnull(log);
    for (const char *line = log; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t) (eol - line) : strlen(line);
        ck_assert_msg(strncmp(line, "2026-01-01T00:00:00.000Z", 24) != 0
                          && strncmp(line, "FORGED", 6) != 0,
                      "a forged line in the master's log: %.*s", (int) len, line);
        line = eol ? eol + 1 : NULL;
    }
    ck_assert_msg(strstr(log, "worker=\"evil\\n2026-01-01T00:00:00.000Z ERROR ztask-master[1] "
                              "event=forged\" host=\"host\\\" event=forged\\n"),
                  "the name and host are not quoted in: %s", log);
    free(log);
    free(text);
    proto_req_destroy(&q);
    zmq_close(api);
    zmq_close(push);
    zmq_ctx_term(ctx);
    h_cluster_destroy(&c);
}
END_TEST

/* ------------------------------------------------------- big replies */

#define BIG_OUTPUT 20000000

/* A job of two tasks, each printing 20 MB, done (caller destroys c).
   Under the sanitizers, reading 20 MB results holds the master's loop
   long enough for a loaded machine to make a status request's 10 s run
   out (make tsan, load 8): the allowance for big bytes stretches the
   request timeout with the liveness. */
static int64_t s_big_job(h_cluster_t *c)
{
    char liveness[16], lease[16];
    h_slow_bytes_allowance(liveness, lease, sizeof liveness);
    h_master_start(c, 0, "--liveness", liveness, "--lease", lease, NULL);
    h_worker_start(c, "w1", 2, NULL);
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--output-cap", "24M", "--", "sh", "-c",
                           "head -c 20000000 /dev/zero | tr '\\0' x", NULL);
    ck_assert_int_eq(h_wait(c, job, 120000), 0);
    return job;
}

/* `results` of a job with two 20 MB outputs was one 40 MB reply, over the
   32 MiB a client accepts: libzmq dropped it and the CLI said "cannot
   reach the master". Replies are paged by bytes now (8 MiB a page, its
   first record always in it); the CLI follows the pages and gets both
   outputs whole, and `logs` reads one in chunks. */
START_TIMED_TEST(two_20_mb_outputs_come_back_whole_in_pages, 240)
{
    h_cluster_t *c = h_cluster_new("two_20_mb_outputs_come_back_whole_in_pages");
    int64_t job = s_big_job(c);
    cJSON *results = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(results, 2);
    for (int i = 0; i < 2; i++) {
        const char *out = h_jstr(by[i], "stdout");
        ck_assert_msg(out && strlen(out) == BIG_OUTPUT, "task %d: stdout of %zu bytes", i,
                      out ? strlen(out) : 0);
        ck_assert(!h_jtrue(by[i], "stdout_truncated"));
    }
    free(by);
    cJSON_Delete(results);
    char ref[48];
    snprintf(ref, sizeof ref, "%lld.1", (long long) job);
    h_run_t *r = h_cli(c, "logs", ref, NULL);
    ck_assert_msg(r->rc == 0 && r->out_len == BIG_OUTPUT, "logs %s: %zu bytes, %s", ref,
                  r->out_len, h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* The peak RSS of the master (KiB, at least base) while it works through
   what it was sent: sampled until it has logged `after` (NULL: no need)
   and then used no CPU for half a second (it is then idle: every
   request was answered or refused), or for limit_ms (scaled). */
static long s_peak_rss_until_idle(h_proc_t *master_proc, const char *after, long base,
                                  int limit_ms)
{
    pid_t master = h_proc_pid(master_proc);
    long peak = base;
    int64_t cpu = -1, still_since = h_now_ms(), deadline = h_now_ms() + h_ms(limit_ms);
    while ((h_now_ms() - still_since < 500 || (after && !h_proc_count_log(master_proc, after)))
           && h_now_ms() < deadline) {
        h_nap(20);
        long kib = h_vm_kib(master, "VmRSS");
        peak = kib > peak ? kib : peak;
        int64_t now_cpu = s_cpu_ticks(master);
        if (now_cpu != cpu) {
            cpu = now_cpu;
            still_since = h_now_ms();
        }
    }
    return peak;
}

/* A client that asks for results and never reads the replies: 25
   requests for 20 MB outputs grew the master by 1 GB, and the memory
   stayed. Now at most 8 replies wait per connection (and pages are 8 MiB
   but for a single bigger record), so the master grows by 320 MiB at
   most, and gives the memory back once that client is gone. */
START_TIMED_TEST(a_client_that_never_reads_replies_cannot_grow_the_master, 240)
{
    h_cluster_t *c = h_cluster_new("a_client_that_never_reads_replies_cannot_grow_the_master");
    int64_t job = s_big_job(c);
    pid_t master = h_proc_pid(h_master(c));
    long base = h_vm_kib(master, "VmRSS");
    void *ctx = zmq_ctx_new();
    void *api = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, one = 1, small = 4096;
    zmq_setsockopt(api, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(api, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(api, ZMQ_RCVBUF, &small, sizeof small);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(api, ep), 0);
    char req[128];
    int n = snprintf(req, sizeof req, "{\"v\":1,\"type\":\"results\",\"job\":%lld}",
                     (long long) job);
    for (int i = 0; i < 25; i++)
        ck_assert_int_eq(zmq_send(api, req, (size_t) n, 0), n);
    /* The master's RSS while it answers all 25. */
    long peak = s_peak_rss_until_idle(h_master(c), NULL, base, 120000);
    h_run_t *r = h_cli(c, "stats", NULL);
    ck_assert_msg(r->rc == 0, "stats while a client does not read: %s", h_run_desc(r));
    h_run_free(&r);
    fprintf(stderr, "non-reading client: master RSS %ld KiB before, peak %ld KiB\n", base, peak);
    ck_assert_msg(peak > base + 15 * 1024, "the master never answered (peak %ld KiB)", peak);
    /* ThreadSanitizer's shadow memory (slowdown 5 in the harness) multiplies
       what every allocation costs the process: its figures are not the
       master's. Release and ASan builds check the bound. */
    if (h_slowdown() < 5)
        ck_assert_msg(peak < base + 320 * 1024, "master grew from %ld to %ld KiB", base, peak);
    zmq_close(api);
    zmq_ctx_term(ctx);
    /* ASan keeps freed memory in its quarantine (256 MiB) on purpose:
       only a build without sanitizers can show it given back. */
    long now = 0;
    if (h_slowdown() == 1)
        ck_assert_msg(H_POLL((now = h_vm_kib(master, "VmRSS")) < base + 64 * 1024, 10000),
                      "memory not given back: %ld KiB (%ld before)", now, base);
    h_cluster_destroy(&c);
}
END_TEST

/* A DEALER that sends 200 requests before it reads a reply (any client
   that pipelines), and bounds what its libzmq buffers (RCVHWM 4, a small
   TCP buffer): the master's queue for it filled while it was still
   sending, and the master dropped every reply past 8 (event=
   reply_dropped): the client waited for replies that never came. Now
   every request is answered, in the order sent: replies that libzmq
   cannot take yet wait in the master, and so do the requests behind
   them (conns.h, docs/protocol.md "Pipelining"). */
START_TIMED_TEST(a_client_that_pipelines_200_requests_gets_every_reply_in_order, 120)
{
    h_cluster_t *c = h_cluster_new("a_client_that_pipelines_200_requests_gets_every_reply_in_order");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w1", 2, NULL);
    /* Results of 128 KB: 200 of them are more than TCP holds. */
    int64_t job = h_submit(c, NULL, "--array", "0-3", "--", "sh", "-c",
                           "head -c 32000 /dev/zero | tr '\\0' x", NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    void *ctx = zmq_ctx_new();
    void *api = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, four = 4, small = 4096, timeout = h_ms(20000);
    zmq_setsockopt(api, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(api, ZMQ_RCVHWM, &four, sizeof four);
    zmq_setsockopt(api, ZMQ_RCVBUF, &small, sizeof small);
    zmq_setsockopt(api, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(api, ep), 0);
    /* results, status and stats of the job, and a status of a job that
       does not exist, named by the request's number: its reply says
       which request it answers. */
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char req[128];
        int n = i % 4 == 0   ? snprintf(req, sizeof req, "{\"v\":1,\"type\":\"status\",\"job\":%lld}",
                                        (long long) job)
                : i % 4 == 1 ? snprintf(req, sizeof req, "{\"v\":1,\"type\":\"stats\"}")
                : i % 4 == 2 ? snprintf(req, sizeof req, "{\"v\":1,\"type\":\"results\",\"job\":%lld}",
                                        (long long) job)
                             : snprintf(req, sizeof req, "{\"v\":1,\"type\":\"status\",\"job\":%d}",
                                        1000000 + i);
        ck_assert_int_eq(zmq_send(api, req, (size_t) n, 0), n);
    }
    for (int i = 0; i < N; i++) {
        static char reply[256 * 1024];
        int got = zmq_recv(api, reply, sizeof reply - 1, 0);
        ck_assert_msg(got > 0, "reply %d of %d never came (%s)", i, N, zmq_strerror(zmq_errno()));
        reply[got < (int) sizeof reply - 1 ? got : (int) sizeof reply - 1] = '\0';
        char want[64];
        snprintf(want, sizeof want, "no job %d ", 1000000 + i);
        ck_assert_msg(i % 4 == 3 ? strstr(reply, want) != NULL
                                 : strstr(reply, "\"ok\":true") != NULL,
                      "reply %d is not the answer to request %d: %.300s", i, i, reply);
    }
    zmq_close(api);
    zmq_ctx_term(ctx);
    h_cluster_destroy(&c);
}
END_TEST

/* Many connections that ask for results and never read: each held its
   own 8 replies, so 64 of them asking for 20 MB outputs made the master
   hold gigabytes. The bound is in total now: replies not yet read take
   at most the reply budget together, plus one reply and 64 KiB per
   connection; parked requests take at most 32 MiB (conns.h,
   docs/protocol.md "Pipelining"). Past it requests are refused ("busy"),
   but a client that has nothing unread still gets small answers.
   The master's budget is 8 MiB here (ZTASK_TEST_REPLY_BUDGET_MIB: the
   same code as the 128 MiB default) and the replies 2 MB: 64
   connections asking 4 times would make it hold 512 MB without the
   bound. With 20 MB replies, 128 MiB and libzmq clients (which read
   replies into their own memory, so how much the master held depended
   on timing) the test took 10 minutes under TSan. */
START_TIMED_TEST(many_connections_that_never_read_cannot_grow_the_master_past_its_total_bound, 120)
{
    h_cluster_t *c = h_cluster_new(
        "many_connections_that_never_read_cannot_grow_the_master_past_its_total_bound");
    setenv("ZTASK_TEST_REPLY_BUDGET_MIB", "8", 1);
    h_master_start(c, 0, NULL);
    unsetenv("ZTASK_TEST_REPLY_BUDGET_MIB");
    h_worker_start(c, "w1", 2, NULL);
    /* Two outputs of 1 MB: one results page of 2 MB. */
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--output-cap", "2M", "--", "sh", "-c",
                           "head -c 1000000 /dev/zero | tr '\\0' x", NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    pid_t master = h_proc_pid(h_master(c));
    long base = h_vm_kib(master, "VmRSS");
    enum { CONNS = 64, EACH = 4 };
    int fds[CONNS];
    char req[128];
    snprintf(req, sizeof req, "{\"v\":1,\"type\":\"results\",\"job\":%lld}", (long long) job);
    for (int i = 0; i < CONNS; i++)
        fds[i] = s_deaf_dealer(h_api_port(c), req, EACH);
    /* Until the bound is reached (the first "busy"), and the rest
       refused: a CPU that looks idle a moment is not enough under load
       or TSan. */
    long peak = s_peak_rss_until_idle(h_master(c), "event=api_busy", base, 30000);
    fprintf(stderr, "%d connections that never read: master RSS %ld KiB before, peak %ld KiB\n",
            CONNS, base, peak);
    /* 8 MiB of replies + one of 2 MB + what building one takes (+11 MiB
       measured; +490 MiB without the total bound: every reply held). TSan's shadow memory
       is not the master's (see the test above); ASan holds freed blocks
       in a 256 MiB quarantine. */
    long allowance = 40 * 1024 + (h_slowdown() > 1 ? 256 * 1024 : 0);
    if (h_slowdown() < 5)
        ck_assert_msg(peak < base + allowance, "master grew from %ld to %ld KiB", base, peak);
    ck_assert_msg(h_proc_count_log(h_master(c), "event=api_busy") > 0,
                  "no request was refused: the bound was never reached (peak %ld KiB)", peak);
    /* A client with nothing unread is still answered. */
    char secs[16];
    snprintf(secs, sizeof secs, "%d", h_ms(30000) / 1000);
    h_run_t *r = h_cliv(c, (const char *[]){"--request-timeout", secs, "stats", NULL}, h_ms(40000));
    ck_assert_msg(r->rc == 0, "stats while %d clients do not read: %s", CONNS, h_run_desc(r));
    h_run_free(&r);
    /* But not results, bulk by design: "busy", a refusal (exit 4) once
       the CLI has asked again until its timeout (5 s here: nothing the
       master holds is given back while the connections stay). */
    char id[32], busy_secs[16];
    snprintf(id, sizeof id, "%lld", (long long) job);
    snprintf(busy_secs, sizeof busy_secs, "%d", h_ms(5000) / 1000);
    r = h_cliv(c, (const char *[]){"--request-timeout", busy_secs, "results", id, NULL},
               h_ms(40000));
    ck_assert_msg(r->rc == 4 && strstr(r->err, "(busy)") && strstr(r->err, "send it again"),
                  "results while %d clients do not read: %s", CONNS, h_run_desc(r));
    h_run_free(&r);
    ck_assert_msg(H_POLL(h_proc_count_log(h_master(c), "event=api_busy reason=\"replies not read, "
                                          "all clients; a query with a big answer\" type=results") > 0,
                         10000),
                  "the refused results was not logged (%s)", h_proc_log(h_master(c)));
    /* With time to spare, the CLI asks again until the master has room:
       refused twice more (it asks again on its own), then answered once
       the hoarders are gone. */
    static const char refused[] = "event=api_busy reason=\"replies not read, all clients; a "
                                  "query with a big answer\" type=results";
    int before = h_proc_count_log(h_master(c), refused);
    h_proc_t *cli = h_cli_start(c, "--request-timeout", secs, "results", id, NULL);
    ck_assert_msg(h_proc_wait_log(h_master(c), refused, before + 2, 20000),
                  "the CLI did not ask again after 'busy' (%s)", h_proc_log(cli));
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    ck_assert_int_eq(h_proc_wait_exit(cli, 40000), 0);
    ck_assert_int_eq(h_proc_count_log(cli, " done "), 2);
    long now = 0;
    if (h_slowdown() == 1)
        ck_assert_msg(H_POLL((now = h_vm_kib(master, "VmRSS")) < base + 32 * 1024, 10000),
                      "memory not given back: %ld KiB (%ld before)", now, base);
    h_cluster_destroy(&c);
}
END_TEST

/* 80 bad submits of 30 MB each, sent as fast as the master takes them:
   libzmq queued every one the master had not read yet (up to 100,000 a
   connection), and the master peaked at 2.27 GB. Now at most 8 wait per
   connection (then libzmq stops reading it, and TCP holds the sender
   back): the master grows by 512 MiB at most, answers each submit with a
   clear refusal, and keeps answering others meanwhile.
   Under ASan 40 submits: the master takes seconds to parse each, and is
   then so much slower than the sender that nearly all of them would wait
   in libzmq without the bound: 1.2 GB against the 768 MiB allowed there
   (ASan: +1.24 GB with API_HWM at 100,000, +610 MiB with 8).
   Under TSan the memory is not checked: its shadow memory is not the
   master's (as in the two tests above), and each 30 MB parse took ~5 s,
   40 of them 4-5 of make tsan's minutes for a path the master's one
   thread runs. What TSan can see is the same with 16 submits of 3 MB
   (the bound counts messages, not bytes: 8 wait in the master, the rest
   in TCP and the sender's queue): every one answered with the refusal. */
START_TIMED_TEST(a_flood_of_big_bad_submits_waits_in_the_senders_queue_not_the_masters, 300)
{
    const bool tsan = h_slowdown() >= 5;
    const int submits = tsan ? 16 : h_slowdown() > 1 ? 40 : 80;
    h_cluster_t *c = h_cluster_new("a_flood_of_big_bad_submits_waits_in_the_senders_queue_not_the_masters");
    h_master_start(c, 0, NULL);
    pid_t master = h_proc_pid(h_master(c));
    long base = h_vm_kib(master, "VmRSS");
    size_t big = (tsan ? 3 : 30) * 1000 * 1000;
    const char *head = "{\"v\":1,\"type\":\"submit\",\"job\":0,\"tasks\":[{\"argv\":[\"true\"],"
                       "\"stdin\":\"";
    const char *tail = "\",\"timeout\":-1}]}";
    char *msg = xmalloc(strlen(head) + big + strlen(tail) + 1);
    size_t n = 0;
    memcpy(msg, head, strlen(head));
    n += strlen(head);
    memset(msg + n, 'x', big);
    n += big;
    memcpy(msg + n, tail, strlen(tail));
    n += strlen(tail);
    void *ctx = zmq_ctx_new();
    void *api = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, two = 2, timeout = h_ms(60000);
    zmq_setsockopt(api, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(api, ZMQ_SNDHWM, &two, sizeof two);
    zmq_setsockopt(api, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(api, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(api, ep), 0);
    long peak = base;
    for (int i = 0; i < submits; i++) {
        ck_assert_msg(zmq_send(api, msg, n, 0) == (int) n, "send %d: %s", i,
                      zmq_strerror(zmq_errno()));
        long kib = h_vm_kib(master, "VmRSS");
        peak = kib > peak ? kib : peak;
    }
    /* Every submit is answered, each with the refusal. */
    for (int i = 0; i < submits; i++) {
        char reply[1024];
        int got = zmq_recv(api, reply, sizeof reply - 1, 0);
        ck_assert_msg(got > 0, "no reply to bad submit %d", i);
        reply[got < (int) sizeof reply - 1 ? got : (int) sizeof reply - 1] = '\0';
        ck_assert_msg(strstr(reply, "\"ok\":false") && strstr(reply, "timeout"),
                      "bad submit %d: %s", i, reply);
        long kib = h_vm_kib(master, "VmRSS");
        peak = kib > peak ? kib : peak;
    }
    fprintf(stderr, "%d bad %zu MB submits: master RSS %ld KiB before, peak %ld KiB\n", submits,
            big / 1000000, base, peak);
    /* ASan holds freed blocks in a 256 MiB quarantine before reusing them. */
    long allowance = 512 * 1024 + (h_slowdown() > 1 ? 256 * 1024 : 0);
    if (!tsan)
        ck_assert_msg(peak < base + allowance, "master grew from %ld to %ld KiB", base, peak);
    free(msg);
    zmq_close(api);
    zmq_ctx_term(ctx);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_hostile_net", h_slowdown()));
}

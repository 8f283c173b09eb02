/*  chaos-storm: hostile input against every socket of a master or a worker,
    with legal requests interleaved that must each get the right answer.

      chaos-storm master --api HOST:PORT --report PORT --pid PID --job J
                         --job-tasks K --record FILE --jobs-out FILE
                         [--count N] [--seed S] [--hellos H] [--unending-mb M]
                         [--no-raw-pipe]

        Storms the master's API ROUTER (as DEALER clients) and its REPORT
        PULL (as a PUSH). Job J (K tasks, no worker yet) must stay exactly
        as it is: after every window of garbage a legal request (status,
        results, logs, stats, jobs, workers, or now and then a one-task
        submit whose job id is written to --jobs-out as "JOB 1") gets a
        correct reply. First it registers a fake worker (hello) and drains
        it at once, so its task pipe (a PUSH on its own port) exists but
        gets no task; a stranger PULL connects to it and may receive pings
        only. After each window one short raw TCP connection (garbage below
        ZeroMQ: storm_raw) goes to the API, report and pipe port in turn,
        and every 4 windows a peer of a socket type the port refuses; with
        M > 0 each port also gets a message that never ends (M MiB of
        frames all saying "more"), held to the end of the storm.
        --no-raw-pipe sends raw TCP to the API and report ports only
        (sanitizer builds: the pipe has no frame limit, and libzmq's
        attempt to allocate the 2^62 bytes some garbage claims aborts
        them). Then H
        valid hellos under distinct names (a registration flood; the fake
        workers never connect) and a few frames over the 32 MiB limit on
        fresh sockets. Prints the master's VmRSS / VmHWM and open
        descriptors before, after a warm-up, and at the end.

      chaos-storm worker [--count N] [--seed S] [--hellos H] -- WORKER COMMAND...

        Acts as a fake master: binds a ROUTER (API), a PUSH (task pipe) and
        a PULL (reports) on 127.0.0.1, starts the worker command ("{API}"
        in it becomes 127.0.0.1:PORT), and answers H of its hellos with a
        bad reply (garbage, malformed, one over the limit), each behind 100
        multipart messages of garbage and followed by a short-lived good
        registration; the worker must back off after each, and register on
        the good reply that ends the hello storm. Then it pushes garbage
        down the pipe with legal "square" tasks interleaved whose results
        must come back right. Ends with frames over the limit, one last
        legal task, and a SIGTERM that must make the worker exit 0. Prints
        the worker's VmRSS / VmHWM before, after the warm-up, and at the
        end of each storm.

    Garbage: random bytes, truncations and byte mutations of legal messages
    of every type of the channel, a fixed list of tricky texts (bad
    versions, wrong types, \u0000, invalid and overlong UTF-8, lone
    surrogates, 2^53+1, 1e400, deep nesting, duplicate keys, out-of-range
    fields), multipart messages, and large ones (a 2 MiB name, a submit of
    10,001 specs).

    Exit: 0 when the daemon stayed up, every legal request was answered
    right and every API garbage frame got a failed reply (or, for the few
    mutations that came out legal, an ok one); 1 otherwise; 2 on usage.
    Memory growth is reported, and judged by the calling script.
*/
#include "storm.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "master"))
        return storm_master_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "worker"))
        return storm_worker_main(argc - 1, argv + 1);
    fprintf(stderr, "usage: chaos-storm master --api HOST:PORT --report PORT --pid PID --job J\n"
                    "                          --job-tasks K --record FILE --jobs-out FILE\n"
                    "                          [--count N] [--seed S] [--hellos H] [--unending-mb M]\n"
                    "                          [--no-raw-pipe]\n"
                    "       chaos-storm worker [--count N] [--seed S] [--hellos H] -- WORKER "
                    "COMMAND...\n");
    return 2;
}

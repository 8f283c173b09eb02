/*  Unit tests for worker/mailbox: pool threads' frames to the session. */
#include "../../worker/mailbox.h"

#include "../ztest.h"
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool s_readable(const mailbox_t *mb, int timeout_ms)
{
    struct pollfd p = {.fd = mailbox_fd(mb), .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

START_TEST(a_frame_put_is_taken_once_with_its_bytes_and_wakes_the_reader_once)
{
    mailbox_t *mb = mailbox_new();
    ck_assert_ptr_nonnull(mb);
    ck_assert(!s_readable(mb, 0));
    ck_assert_ptr_null(mailbox_take(mb));
    int head = 7;
    mailbox_put(mb, &head, sizeof head, "abc", 3);
    mailbox_put(mb, &head, sizeof head, NULL, 0);
    ck_assert(s_readable(mb, 0));
    mailbox_frame_t *f = mailbox_take(mb);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->size, sizeof head + 3);
    ck_assert_mem_eq(f->data, &head, sizeof head);
    ck_assert_mem_eq(f->data + sizeof head, "abc", 3);
    mailbox_frame_t *g = f->next;
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->size, sizeof head);
    ck_assert_ptr_null(g->next);
    free(f);
    free(g);
    /* Taken: nothing waits and nothing wakes the reader. */
    ck_assert(!s_readable(mb, 0));
    ck_assert_ptr_null(mailbox_take(mb));
    /* Frames left at destroy are freed with it (ASan's leak check). */
    mailbox_put(mb, &head, sizeof head, "x", 1);
    mailbox_destroy(&mb);
    ck_assert_ptr_null(mb);
    mailbox_destroy(&mb);
}
END_TEST

/* ---- many writers, one reader that sleeps on the descriptor ---- */

#define WRITERS 4
#define PER_WRITER 20000

typedef struct {
    mailbox_t *mb;
    int writer;
} writer_arg_t;

static void *s_writer(void *arg)
{
    writer_arg_t *w = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        int32_t msg[2] = {w->writer, i};
        mailbox_put(w->mb, msg, sizeof msg, NULL, 0);
    }
    return NULL;
}

START_TEST(frames_from_many_threads_all_arrive_in_each_writers_order_to_a_reader_that_sleeps)
{
    mailbox_t *mb = mailbox_new();
    ck_assert_ptr_nonnull(mb);
    pthread_t th[WRITERS];
    writer_arg_t args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (writer_arg_t){mb, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, s_writer, &args[i]), 0);
    }
    int next[WRITERS] = {0};
    long got = 0;
    /* The reader only takes when the descriptor says so: a frame whose
       wakeup were lost would leave it waiting here until the bound. */
    for (int turns = 0; got < (long) WRITERS * PER_WRITER && turns < 10000000; turns++) {
        if (!s_readable(mb, 10000))
            break;
        for (mailbox_frame_t *f = mailbox_take(mb), *next_f; f; f = next_f) {
            next_f = f->next;
            int32_t msg[2];
            ck_assert_uint_eq(f->size, sizeof msg);
            memcpy(msg, f->data, sizeof msg);
            ck_assert_int_eq(msg[1], next[msg[0]]);
            next[msg[0]]++;
            got++;
            free(f);
        }
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(got, (long) WRITERS * PER_WRITER);
    mailbox_destroy(&mb);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "mailbox", .tcase = "core", .timeout_s = 60 });
}

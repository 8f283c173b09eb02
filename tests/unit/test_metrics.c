/* metrics: counters and histograms as the Prometheus text format wants
   them, label escaping, the throughput series; and strbuf (common/util). */
#include "../../master/metrics.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

START_TEST(counts_render_as_prometheus_text)
{
    metrics_t *m = metrics_new(0);
    metrics_submitted(m, 5);
    metrics_finished(m, M_OUT_DONE, 1000);
    metrics_finished(m, M_OUT_TIMEOUT, 1000);
    metrics_run_time(m, M_KIND_FN, 0.003);
    metrics_run_time(m, M_KIND_FN, 2.0);
    metrics_api_request(m, "status", "ok");
    metrics_api_request(m, "status", "ok");
    metrics_api_request(m, "results", "not_found");
    strbuf_t out = {0};
    metrics_render(m, &out);
    ck_assert_ptr_nonnull(strstr(out.data, "# TYPE ztask_tasks_submitted_total counter\n"
                                           "ztask_tasks_submitted_total 5\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_tasks_finished_total{outcome=\"timeout\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_tasks_finished_total{outcome=\"failed\"} 0\n"));
    /* Buckets are cumulative, +Inf holds them all, sum and count follow. */
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_bucket{kind=\"fn\",le=\"0.001\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_bucket{kind=\"fn\",le=\"0.005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_bucket{kind=\"fn\",le=\"1\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_bucket{kind=\"fn\",le=\"5\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_bucket{kind=\"fn\",le=\"+Inf\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_sum{kind=\"fn\"} 2.003\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_task_run_seconds_count{kind=\"fn\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_api_requests_total{type=\"status\",outcome=\"ok\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "ztask_api_requests_total{type=\"results\",outcome=\"not_found\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "process_start_time_seconds "));
    free(out.data);
    metrics_destroy(&m);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(label_values_are_escaped)
{
    strbuf_t out = {0};
    metrics_label(&out, "a\"b\\c\nd");
    ck_assert_str_eq(out.data, "a\\\"b\\\\c\\nd");
    free(out.data);
}
END_TEST

START_TEST(the_series_keeps_the_last_seconds_and_forgets_older_ones)
{
    metrics_t *m = metrics_new(0);
    metrics_finished(m, M_OUT_DONE, 10000);
    metrics_finished(m, M_OUT_DONE, 10500);
    metrics_finished(m, M_OUT_FAILED, 12000);
    int64_t done[3], failed[3];
    ck_assert_int_eq(metrics_series(m, 12100, 3, done, failed), 3);
    ck_assert_int_eq(done[0], 2);   /* second 10 */
    ck_assert_int_eq(done[1], 0);
    ck_assert_int_eq(failed[2], 1); /* second 12, the current one */
    /* A full lap later, the slot of second 10 reads 0, not its old count. */
    int64_t later = 10000 + METRICS_SERIES_SECONDS * 1000;
    ck_assert_int_eq(metrics_series(m, later, 1, done, failed), 1);
    ck_assert_int_eq(done[0], 0);
    metrics_destroy(&m);
}
END_TEST

START_TEST(a_strbuf_grows_past_its_first_allocation)
{
    strbuf_t sb = {0};
    for (int i = 0; i < 1000; i++)
        strbuf_printf(&sb, "%04d,", i);
    ck_assert_uint_eq(sb.len, 5000);
    ck_assert_int_eq(strncmp(sb.data + 4995, "0999,", 5), 0);
    ck_assert_uint_eq(strlen(sb.data), sb.len);
    free(sb.data);
    ck_assert(addr_is_loopback("127.0.0.1"));
    ck_assert(addr_is_loopback("::1"));
    ck_assert(!addr_is_loopback("0.0.0.0"));
    ck_assert(!addr_is_loopback("10.1.2.3"));
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "metrics", .tcase = "metrics" });
}

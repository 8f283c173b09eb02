/* tests/fuzz: every seed input (tests/fuzz/corpus/<target>/) and every
   input that once broke a parser (tests/fuzz/regress/<target>/) replayed
   through the same checks the libFuzzer targets run (tests/fuzz/fuzz.h),
   without libFuzzer, so the plain, asan and valgrind test runs keep
   proving them on any compiler. */
#include "../fuzz/fuzz.h"

#include "../ztest.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    int files, accepted, rejected;
} tally_t;

/* tests/run.sh exports the repository root; fall back to the cwd. */
static void s_dir(char *out, size_t outlen, const char *kind, const char *target)
{
    const char *root = getenv("ZTASK_SRC_DIR");
    snprintf(out, outlen, "%s/tests/fuzz/%s%s%s", root && *root ? root : ".", kind,
             target ? "/" : "", target ? target : "");
}

/* Reads a whole file into an exactly sized buffer (so reading past the
   end is caught by asan/valgrind, as under libFuzzer). */
static uint8_t *s_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    uint8_t *data = malloc(n > 0 ? (size_t) n : 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    *size = (size_t) n;
    return data;
}

static void s_replay(const fuzz_target_t *t, const char *kind, tally_t *tally)
{
    char dir[4096];
    s_dir(dir, sizeof dir, kind, t->name);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (de->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        size_t size;
        uint8_t *data = s_slurp(path, &size);
        char why[1024] = "";
        fuzz_verdict_t v = t->check(data, size, why, sizeof why);
        free(data);
        ck_assert_msg(v != FUZZ_BROKEN, "%s: %s", path, why);
        tally->files++;
        if (v == FUZZ_ACCEPTED)
            tally->accepted++;
        else
            tally->rejected++;
    }
    closedir(d);
}

START_TEST(a_check_accepts_a_good_frame_and_refuses_a_bad_one)
{
    char why[512] = "";
    const char *good = "{\"v\":1,\"type\":\"status\",\"job\":3}";
    const char *bad = "{\"v\":2,\"type\":\"status\"}";
    ck_assert_int_eq(fuzz_check_req((const uint8_t *) good, strlen(good), why, sizeof why),
                     FUZZ_ACCEPTED);
    ck_assert_int_eq(fuzz_check_req((const uint8_t *) bad, strlen(bad), why, sizeof why),
                     FUZZ_REJECTED);
    ck_assert_int_eq(fuzz_check_range((const uint8_t *) "1-3,7", 5, why, sizeof why),
                     FUZZ_ACCEPTED);
    ck_assert_int_eq(fuzz_check_range((const uint8_t *) "3-1", 3, why, sizeof why),
                     FUZZ_REJECTED);
}
END_TEST

START_TEST(a_refusal_message_must_be_one_line_of_utf8)
{
    ck_assert(fuzz_one_line("field \"x\" must be a string"));
    ck_assert(!fuzz_one_line(""));
    ck_assert(!fuzz_one_line("two\nlines"));
    ck_assert(!fuzz_one_line("bad \xC3 byte"));
    char why[64];
    ck_assert_int_eq(fuzz_broken(why, sizeof why, "n=%d", 7), FUZZ_BROKEN);
    ck_assert_str_eq(why, "n=7");
}
END_TEST

/* Loop test: _i is the target index. */
START_LOOP_TEST(every_seed_and_saved_crash_keeps_its_properties, 0, fuzz_ntargets)
{
    const fuzz_target_t *t = &fuzz_targets[_i];
    tally_t seeds = { 0, 0, 0 }, regress = { 0, 0, 0 };
    s_replay(t, "corpus", &seeds);
    s_replay(t, "regress", &regress);
    /* A corpus the parser refuses entirely would prove nothing about the
       paths behind a successful decode. */
    ck_assert_msg(seeds.files >= 3, "target %s: only %d seed files", t->name, seeds.files);
    ck_assert_msg(seeds.accepted >= 1, "target %s: no seed is accepted", t->name);
}
END_TEST

/* tests/fuzz/known/<target>/ holds inputs that reproduce bugs found but
   not fixed yet (docs/fuzzing.md, "Open findings"). They must still fail:
   when one passes, the bug is fixed and the input belongs in regress/. */
START_TEST(known_open_findings_still_reproduce)
{
    for (int i = 0; i < fuzz_ntargets; i++) {
        char dir[4096];
        s_dir(dir, sizeof dir, "known", fuzz_targets[i].name);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            struct stat st;
            if (de->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            size_t size;
            uint8_t *data = s_slurp(path, &size);
            char why[1024] = "";
            fuzz_verdict_t v = fuzz_targets[i].check(data, size, why, sizeof why);
            free(data);
            ck_assert_msg(v == FUZZ_BROKEN,
                          "%s no longer breaks a property: fixed? then git mv it to "
                          "tests/fuzz/regress/%s/ and update docs/fuzzing.md",
                          path, fuzz_targets[i].name);
        }
        closedir(d);
    }
}
END_TEST

START_TEST(every_corpus_directory_names_a_target)
{
    const char *kinds[] = { "corpus", "regress", "known" };
    for (int k = 0; k < 3; k++) {
        char dir[4096];
        s_dir(dir, sizeof dir, kinds[k], NULL);
        DIR *d = opendir(dir);
        if (!d) {
            ck_assert_msg(k > 0, "no %s directory", dir);
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            int found = 0;
            for (int i = 0; i < fuzz_ntargets; i++)
                found = found || strcmp(de->d_name, fuzz_targets[i].name) == 0;
            ck_assert_msg(found, "%s/%s is not a fuzz target (inputs there are never run)", dir,
                          de->d_name);
        }
        closedir(d);
    }
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "fuzz_regress", .tcase = "replay", .timeout_s = 60 });
}

/* bitstackd.conf (daemon/conf): a valid file read into specs, and every kind of mistake
 * refused with an error that names its line; then bs_conf_load on real files. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "daemon/conf.h"

#define MAXM 4

/* Parses text, expecting an error that says "line L:" and holds `what`. */
static void expect_error(const char *text, int max, int line, const char *what)
{
    bs_served_spec specs[MAXM];
    int n = -1;
    bs_err e = {{0}};
    char want[32];
    snprintf(want, sizeof want, "line %d:", line);
    int rc = bs_conf_parse(text, "/etc/bitstack", specs, max, &n, &e);
    CHECKF(rc != 0, "accepted: %s", text);
    CHECKF(rc == 0 || (strstr(e.msg, want) == e.msg && strstr(e.msg, what)),
           "'%s' should start with '%s' and say '%s' (text: %s)", e.msg, want, what, text);
}

static void test_valid(void)
{
    const char *text = "# models for the laptop\r\n"
                       "\r\n"
                       "   ; a second kind of comment\n"
                       "[model chat]\r\n"
                       "store = chat.bstk\r\n"
                       "weight\t=\t2.5 \r\n"
                       "min = 2bpw\r\n"
                       "max = 80%\r\n"
                       "\n"
                       "  [ model   code-7B_q:v1+x/y ]  \n"
                       "store=/var/lib/bitstack/code.bstk\n"
                       "max = 1.5M";   /* no newline at the end */
    bs_served_spec s[MAXM];
    int n = -1;
    bs_err e = {{0}};
    REQUIRE(bs_conf_parse(text, "/etc/bitstack", s, MAXM, &n, &e) == 0);
    REQUIRE(n == 2);
    CHECK(!strcmp(s[0].name, "chat"));
    CHECK(!strcmp(s[0].path, "/etc/bitstack/chat.bstk"));
    CHECK(s[0].weight == 2.5);
    CHECK(s[0].has_min && s[0].min.kind == BS_BUDGET_BPW && s[0].min.value == 2.0);
    CHECK(s[0].has_max && s[0].max.kind == BS_BUDGET_PERCENT && s[0].max.value == 80.0);
    CHECK(s[0].from_config);
    CHECKF(!strcmp(s[1].name, "code-7B_q:v1+x/y"), "name '%s'", s[1].name);
    CHECK(!strcmp(s[1].path, "/var/lib/bitstack/code.bstk"));
    CHECK(s[1].weight == 1.0);
    CHECK(!s[1].has_min);
    CHECK(s[1].has_max && s[1].max.kind == BS_BUDGET_BYTES && s[1].max.bytes == 1572864);
    CHECK(s[1].from_config);

    /* no directory: relative paths stay as written; a value may hold '=' */
    const char *rel = "[model a]\nstore = stores/a=1.bstk\nmin = min\nmax = max\n";
    REQUIRE(bs_conf_parse(rel, NULL, s, MAXM, &n, &e) == 0 && n == 1);
    CHECK(!strcmp(s[0].path, "stores/a=1.bstk"));
    CHECK(s[0].min.kind == BS_BUDGET_MIN && s[0].max.kind == BS_BUDGET_MAX);
    REQUIRE(bs_conf_parse(rel, "", s, MAXM, &n, &e) == 0 && n == 1);
    CHECK(!strcmp(s[0].path, "stores/a=1.bstk"));

    /* the most models allowed, exactly */
    REQUIRE(bs_conf_parse("[model a]\nstore=a\n[model b]\nstore=b\n", "d", s, 2, &n, &e) == 0 && n == 2);
    CHECK(!strcmp(s[1].path, "d/b"));

    /* nothing but comments: no models, no error */
    REQUIRE(bs_conf_parse("# nothing yet\n\n", "d", s, MAXM, &n, &e) == 0);
    CHECK(n == 0);
    REQUIRE(bs_conf_parse("", "d", s, MAXM, &n, &e) == 0);
    CHECK(n == 0);
}

static void test_errors(void)
{
    expect_error("# top\nstore = a.bstk\n", MAXM, 2, "outside any [model NAME] section");
    expect_error("[model a]\nstore = a.bstk\npath = b\n", MAXM, 3, "unknown key 'path'");
    expect_error("[model a]\nStore = a.bstk\n", MAXM, 2, "unknown key 'Store'");
    expect_error("\n\n[server]\n", MAXM, 3, "unknown section [server]");
    expect_error("[modelx a]\nstore = a\n", MAXM, 1, "unknown section");
    expect_error("[model]\nstore = a\n", MAXM, 1, "unknown section");
    expect_error("[model a\nstore = a\n", MAXM, 1, "expected [model NAME]");
    expect_error("[model a] extra\nstore = a\n", MAXM, 1, "expected [model NAME]");
    expect_error("[model a]\nstore a.bstk\n", MAXM, 2, "expected key = value");
    expect_error("[model a b]\nstore = a\n", MAXM, 1, "model name 'a b'");
    expect_error("[model caf\xc3\xa9]\nstore = a\n", MAXM, 1, "model name");
    expect_error("[model a;b]\nstore = a\n", MAXM, 1, "model name");

    char name[200];
    memset(name, 'n', 64);
    name[64] = '\0';
    char text[400];
    snprintf(text, sizeof text, "[model ok]\nstore = a\n[model %s]\nstore = b\n", name);
    expect_error(text, MAXM, 3, "model name");
    name[63] = '\0';   /* 63: the longest allowed */
    snprintf(text, sizeof text, "[model %s]\nstore = b\n", name);
    bs_served_spec s[MAXM];
    int n;
    bs_err e = {{0}};
    CHECKF(bs_conf_parse(text, NULL, s, MAXM, &n, &e) == 0 && n == 1 && strlen(s[0].name) == 63, "%s", e.msg);

    expect_error("[model a]\nstore = a\n\n[model b]\nstore = b\n[model a]\nstore = c\n", MAXM, 6, "model a is listed twice");
    /* a section without a store: named at its own line, whether another section or the end follows */
    expect_error("[model a]\nweight = 2\n[model b]\nstore = b\n", MAXM, 1, "model a has no store");
    expect_error("[model a]\nstore = a\n# b\n[model b]\nweight = 2\n", MAXM, 4, "model b has no store");
    /* an empty store value is no store, not the config's directory */
    {
        bs_served_spec s[MAXM];
        int n;
        bs_err e = {{0}};
        int rc = bs_conf_parse("[model a]\nstore = \n", "/etc/bitstack", s, MAXM, &n, &e);
        CHECKF(rc != 0, "an empty store was taken as '%s'", n > 0 ? s[0].path : "");
        CHECKF(rc == 0 || ((!strncmp(e.msg, "line 1:", 7) || !strncmp(e.msg, "line 2:", 7)) && strstr(e.msg, "store")),
               "'%s'", e.msg);
    }

    const char *bad_weights[] = {"0", "-1", "abc", "2x", "", "1e7", "nan", "inf", "1 2"};
    for (size_t i = 0; i < sizeof bad_weights / sizeof *bad_weights; i++) {
        snprintf(text, sizeof text, "[model a]\nstore = a\nweight = %s\n", bad_weights[i]);
        expect_error(text, MAXM, 3, "weight: expected a number in (0, 1e6]");
    }
    snprintf(text, sizeof text, "[model a]\nstore = a\nweight = 1e6\n");
    CHECK(bs_conf_parse(text, NULL, s, MAXM, &n, &e) == 0 && s[0].weight == 1e6);

    expect_error("[model a]\nstore = a\nmin = 5Q\n", MAXM, 3, "min: ");
    expect_error("[model a]\nstore = a\nmax = 120%\n", MAXM, 3, "max: ");
    expect_error("[model a]\nstore = a\nmax = -1\n", MAXM, 3, "max: ");
    expect_error("[model a]\nstore = a\nmin = \n", MAXM, 3, "min: ");

    expect_error("[model a]\nstore=a\n[model b]\nstore=b\n[model c]\nstore=c\n", 2, 5, "at most 2 models");

    /* a store path longer than PATH_MAX once the directory is put in front */
    static char longtext[PATH_MAX + 64];
    int w = snprintf(longtext, sizeof longtext, "[model a]\nstore = ");
    memset(longtext + w, 'p', PATH_MAX - 8);
    snprintf(longtext + w + PATH_MAX - 8, sizeof longtext - (size_t)w - PATH_MAX + 8, "\n");
    expect_error(longtext, MAXM, 2, "store: the path is too long");

    /* the line counts go on through CRLF lines and comments */
    expect_error("# one\r\n\r\n[model a]\r\nstore = a\r\nbogus = 1\r\n", MAXM, 5, "unknown key 'bogus'");
}

static int write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t w = fwrite(text, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static void test_load(void)
{
    char dir[] = "/tmp/bs-conf-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[PATH_MAX], want[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/bitstackd.conf", dir);
    const char *text = "[model chat]\nstore = chat.bstk\nweight = 3\n\n[model tiny]\nstore = /srv/tiny.bstk\nmin = 180K\n";
    REQUIRE(write_file(path, text, strlen(text)) == 0);
    bs_served_spec s[MAXM];
    int n = -1;
    bs_err e = {{0}};
    CHECKF(bs_conf_load(path, s, MAXM, &n, &e) == 0, "%s", e.msg);
    REQUIRE(n == 2);
    snprintf(want, sizeof want, "%s/chat.bstk", dir);
    CHECKF(!strcmp(s[0].path, want), "%s vs %s", s[0].path, want);
    CHECK(s[0].weight == 3);
    CHECK(!strcmp(s[1].name, "tiny") && !strcmp(s[1].path, "/srv/tiny.bstk"));
    CHECK(s[1].has_min && s[1].min.kind == BS_BUDGET_BYTES && s[1].min.bytes == 180 * 1024);

    /* an error in a file: the file and then the line */
    const char *bad = "[model chat]\nstore = chat.bstk\nwieght = 3\n";
    REQUIRE(write_file(path, bad, strlen(bad)) == 0);
    CHECK(bs_conf_load(path, s, MAXM, &n, &e) != 0);
    snprintf(want, sizeof want, "%s: line 3: unknown key 'wieght'", path);
    CHECKF(strstr(e.msg, want) == e.msg, "'%s'", e.msg);

    /* a file of only a bare relative name: stores are found beside "." */
    char cwd[PATH_MAX];
    REQUIRE(getcwd(cwd, sizeof cwd));
    REQUIRE(chdir(dir) == 0);
    REQUIRE(write_file("bitstackd.conf", text, strlen(text)) == 0);
    CHECKF(bs_conf_load("bitstackd.conf", s, MAXM, &n, &e) == 0, "%s", e.msg);
    CHECK(n == 2 && !strcmp(s[0].path, "./chat.bstk"));
    REQUIRE(chdir(cwd) == 0);

    /* more than 1 MiB is refused rather than read */
    size_t big = (1u << 20) + 100;
    char *huge = malloc(big);
    REQUIRE(huge);
    memset(huge, '#', big);
    huge[big - 1] = '\n';
    REQUIRE(write_file(path, huge, big) == 0);
    free(huge);
    CHECK(bs_conf_load(path, s, MAXM, &n, &e) != 0);
    CHECKF(strstr(e.msg, "larger than 1 MiB") != NULL, "'%s'", e.msg);

    /* a missing file: its path and why */
    REQUIRE(unlink(path) == 0);
    CHECK(bs_conf_load(path, s, MAXM, &n, &e) != 0);
    snprintf(want, sizeof want, "%s: %s", path, strerror(ENOENT));
    CHECKF(!strcmp(e.msg, want), "'%s' vs '%s'", e.msg, want);

    /* a directory is not a config file */
    CHECK(bs_conf_load(dir, s, MAXM, &n, &e) != 0);
    REQUIRE(rmdir(dir) == 0);
}

static void test_name_ok(void)
{
    CHECK(bs_conf_name_ok("a"));
    CHECK(bs_conf_name_ok("llama-3.1:8b+q4/x_y"));
    CHECK(!bs_conf_name_ok(""));
    CHECK(!bs_conf_name_ok("a b"));
    CHECK(!bs_conf_name_ok("a\"b"));
    CHECK(!bs_conf_name_ok("a]"));
}

int main(void)
{
    test_valid();
    test_errors();
    test_load();
    test_name_ok();
    TEST_MAIN_END();
}

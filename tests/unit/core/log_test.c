/* log_test.c - core/util/log.c: gw_json_escape (quotes, backslash, controls, invalid UTF-8, cut at a whole
 * escape) and the lines written to stderr in text and JSON form (log.format), a filter's included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void esc(const char *in, size_t n, size_t cap, const char *want)
{
    char out[512];
    size_t k = gw_json_escape(out, cap, in, n);
    assert_true(k <= cap);
    out[k] = '\0';
    assert_string_equal(out, want);
}

static void test_escape(void **state)
{
    (void)state;
    esc("plain /path?x=1", 15, 100, "plain /path?x=1");
    esc("a\"b\\c", 5, 100, "a\\\"b\\\\c");
    esc("l1\nl2\r\t", 7, 100, "l1\\nl2\\r\\t");
    esc("\x01\x1f\x7f", 3, 100, "\\u0001\\u001f\\u007f");
    esc("nul\0x", 5, 100, "nul\\u0000x");
    esc("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, 100, "caf\xc3\xa9 \xf0\x9f\x98\x80"); /* valid UTF-8 kept */
    esc("\xff\xc3\x28\xc0\xaf", 5, 100, "\\ufffd\\ufffd(\\ufffd\\ufffd");         /* invalid, overlong */
    esc("\xed\xa0\x80", 3, 100, "\\ufffd\\ufffd\\ufffd");                         /* a surrogate */
    esc("x\xe2\x82", 3, 100, "x\\ufffd\\ufffd");                                  /* cut short */
    /* the cap cuts before an escape or a character that does not fit whole */
    esc("ab\"c", 4, 3, "ab");
    esc("a\x01", 2, 6, "a");
    esc("a\xc3\xa9", 3, 2, "a");
    esc("abc", 3, 0, "");
}

/* Runs fn with stderr sent to a temporary file; returns what was written (static buffer). */
static const char *captured(void (*fn)(void))
{
    static char buf[8192];
    char path[] = "/tmp/log_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void match(const char *text, const char *pattern)
{
    regex_t rx;
    assert_int_equal(regcomp(&rx, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&rx, text, 0, NULL, 0);
    regfree(&rx);
    if (rc != 0) fail_msg("'%s' does not match /%s/", text, pattern);
}

#define TIME "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

static void write_some(void)
{
    gw_log_write(GW_LOG_WARN, "target %s: \"%s\"", "http://u", "a\nb");
    gw_log_filter(GW_LOG_ERROR, "apikey", "rid-1", "store \"down\"\n");
    gw_log_filter(GW_LOG_INFO, "cors", NULL, "ready");
}

static void test_text_lines(void **state)
{
    (void)state;
    gw_log_set_format(GW_LOG_TEXT);
    const char *out = captured(write_some);
    match(out, "^" TIME " \\[warn\\] target http://u: \"a\nb\"\n" TIME
               " \\[error\\] \\[filter:apikey\\] store \"down\"\n \\(request rid-1\\)\n" TIME
               " \\[info\\] \\[filter:cors\\] ready\n$");
}

static void test_json_lines(void **state)
{
    (void)state;
    gw_log_set_format(GW_LOG_JSON);
    const char *out = captured(write_some);
    gw_log_set_format(GW_LOG_TEXT);
    match(out,
          "^\\{\"time\":\"" TIME "\",\"level\":\"warn\",\"msg\":\"target http://u: \\\\\"a\\\\nb\\\\\"\"\\}\n"
          "\\{\"time\":\"" TIME "\",\"level\":\"error\",\"filter\":\"apikey\",\"msg\":\"store \\\\\"down"
          "\\\\\"\\\\n\",\"request_id\":\"rid-1\"\\}\n"
          "\\{\"time\":\"" TIME "\",\"level\":\"info\",\"filter\":\"cors\",\"msg\":\"ready\"\\}\n$");
}

static void write_long(void)
{
    char msg[5000];
    memset(msg, '"', sizeof msg - 1); /* each one doubles when escaped */
    msg[sizeof msg - 1] = '\0';
    gw_log_filter(GW_LOG_WARN, "f", "rid-2", msg);
}

static void test_json_long_message_stays_one_line(void **state)
{
    (void)state;
    gw_log_set_format(GW_LOG_JSON);
    const char *out = captured(write_long);
    gw_log_set_format(GW_LOG_TEXT);
    size_t n = strlen(out);
    assert_true(n > 1000);
    assert_int_equal(out[n - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + n - 1);
    match(out, "^\\{\"time\":\"" TIME "\",\"level\":\"warn\",\"filter\":\"f\",\"msg\":\"(\\\\\")+\","
               "\"request_id\":\"rid-2\"\\}\n$");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_text_lines),
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_json_long_message_stays_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

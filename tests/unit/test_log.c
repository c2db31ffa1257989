/* Log lines in every encoder and time encoding the zap flags select, and
 * the parsing of those flags' values. */
#include "is_err.h"
#include "is_log.h"
#include "testing.h"

static const char *line(int level, const char *msg, const char *fields, long nsec) {
    static char out[512];
    struct timespec ts = { 1795428000, nsec }; /* 2026-11-23T10:00:00Z */
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_log_format(&b, &ts, level, msg, fields), IS_OK);
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    is_buf_free(&b);
    return out;
}

static void test_json_default(void) {
    CHECK_STR(line(IS_LOG_INFO, "started \"x\"", "\"n\":1", 123456789),
              "{\"ts\":\"2026-11-23T10:00:00.123Z\",\"level\":\"info\",\"msg\":\"started \\\"x\\\"\",\"n\":1}\n");
    CHECK_STR(line(IS_LOG_ERROR, "m", NULL, 0),
              "{\"ts\":\"2026-11-23T10:00:00.000Z\",\"level\":\"error\",\"msg\":\"m\"}\n");
}

static void test_time_encodings(void) {
    is_log_set_time_encoding(is_log_parse_time_encoding("rfc3339"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 500000000), "{\"ts\":\"2026-11-23T10:00:00Z\",\"level\":\"info\",\"msg\":\"m\"}\n");
    is_log_set_time_encoding(is_log_parse_time_encoding("rfc3339nano"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 500000000), "{\"ts\":\"2026-11-23T10:00:00.5Z\",\"level\":\"info\",\"msg\":\"m\"}\n");
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 0), "{\"ts\":\"2026-11-23T10:00:00Z\",\"level\":\"info\",\"msg\":\"m\"}\n");
    is_log_set_time_encoding(is_log_parse_time_encoding("epoch"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 250000000), "{\"ts\":1795428000.250000,\"level\":\"info\",\"msg\":\"m\"}\n");
    is_log_set_time_encoding(is_log_parse_time_encoding("millis"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 250000500), "{\"ts\":1795428000250.000500,\"level\":\"info\",\"msg\":\"m\"}\n");
    is_log_set_time_encoding(is_log_parse_time_encoding("nano"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 7), "{\"ts\":1795428000000000007,\"level\":\"info\",\"msg\":\"m\"}\n");
    is_log_set_time_encoding(is_log_parse_time_encoding("iso8601"));
    CHECK_STR(line(IS_LOG_INFO, "m", NULL, 0), "{\"ts\":\"2026-11-23T10:00:00.000Z\",\"level\":\"info\",\"msg\":\"m\"}\n");
    CHECK_INT(is_log_parse_time_encoding("unix"), -1);
}

static void test_console(void) {
    CHECK_INT(is_log_parse_format("console"), IS_LOG_CONSOLE);
    CHECK_INT(is_log_parse_format("json"), IS_LOG_JSON);
    CHECK_INT(is_log_parse_format("text"), -1);
    is_log_set_format(IS_LOG_CONSOLE);
    CHECK_STR(line(IS_LOG_WARN, "slow", "\"ms\":12", 0), "2026-11-23T10:00:00.000Z\tWARN\tslow\t{\"ms\":12}\n");
    CHECK_STR(line(IS_LOG_DEBUG, "tick", NULL, 0), "2026-11-23T10:00:00.000Z\tDEBUG\ttick\n");
    is_log_set_format(IS_LOG_JSON);
}

static void test_levels(void) {
    CHECK_INT(is_log_parse_level("warn"), IS_LOG_WARN);
    CHECK_INT(is_log_parse_level("panic"), -1);
    CHECK_INT(is_log_parse_zap_level("debug"), IS_LOG_DEBUG);
    CHECK_INT(is_log_parse_zap_level("info"), IS_LOG_INFO);
    CHECK_INT(is_log_parse_zap_level("error"), IS_LOG_ERROR);
    CHECK_INT(is_log_parse_zap_level("panic"), IS_LOG_ERROR);
    CHECK_INT(is_log_parse_zap_level("3"), IS_LOG_DEBUG);
    CHECK_INT(is_log_parse_zap_level("0"), -1);
    CHECK_INT(is_log_parse_zap_level("-2"), -1);
    CHECK_INT(is_log_parse_zap_level("2x"), -1);
    CHECK_INT(is_log_parse_zap_level(""), -1);
    CHECK_INT(is_log_parse_stacktrace_level("info"), IS_LOG_INFO);
    CHECK_INT(is_log_parse_stacktrace_level("panic"), IS_LOG_ERROR);
    CHECK_INT(is_log_parse_stacktrace_level("debug"), -1);
}

int main(void) {
    RUN(test_json_default);
    RUN(test_time_encodings);
    RUN(test_console);
    RUN(test_levels);
    TESTING_DONE();
}

/* The client's command line: flags of both commands, Go durations, the
 * timeout rule, the request body, and out-of-memory on each path. */
#include <stdarg.h>

#include "is_alloc.h"
#include "is_client.h"
#include "is_err.h"
#include "is_json.h"
#include "testing.h"

static char errbuf[512];

/* Parses a NULL-terminated list of arguments (argv[0] first). */
static int parse(is_client_opts_t *o, is_client_mode_t mode, ...) {
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, mode);
    for (char *a; argc < 63 && (a = va_arg(ap, char *)); ) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return is_client_parse(o, mode, argc, argv, errbuf, sizeof errbuf);
}

/* Parses, expects IS_EINVAL and want in the message, frees. */
static void bad(is_client_mode_t mode, const char *want, ...) {
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, want);
    for (char *a; argc < 63 && (a = va_arg(ap, char *)); ) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    is_client_opts_t o;
    CHECK_INT(is_client_parse(&o, mode, argc, argv, errbuf, sizeof errbuf), IS_EINVAL);
    if (!strstr(errbuf, want)) {
        CHECK(!"message");
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", errbuf, want);
    }
    is_client_opts_free(&o);
}

static void test_mode(void) {
    CHECK_INT(is_client_mode_for("/usr/bin/wait-for-internal-request"), IS_CLIENT_WAIT);
    CHECK_INT(is_client_mode_for("wait-for-internal-request"), IS_CLIENT_WAIT);
    CHECK_INT(is_client_mode_for("/usr/bin/internal-request"), IS_CLIENT_CREATE);
    CHECK_INT(is_client_mode_for("./wait-for-internal-request.sh"), IS_CLIENT_CREATE);
    CHECK_INT(is_client_mode_for(NULL), IS_CLIENT_CREATE);
}

static void test_durations(void) {
    double ms;
    CHECK_INT(is_client_duration_ms("1h0m0s", &ms), IS_OK);
    CHECK(ms == 3600e3);
    CHECK_INT(is_client_duration_ms("0h55m0s", &ms), IS_OK);
    CHECK(ms == 55 * 60e3);
    CHECK_INT(is_client_duration_ms("90m", &ms), IS_OK);
    CHECK(ms == 90 * 60e3);
    CHECK_INT(is_client_duration_ms("1.5h", &ms), IS_OK);
    CHECK(ms == 5400e3);
    CHECK_INT(is_client_duration_ms("1m30s500ms", &ms), IS_OK);
    CHECK(ms == 90500);
    CHECK_INT(is_client_duration_ms(".5s", &ms), IS_OK);
    CHECK(ms == 500);
    CHECK_INT(is_client_duration_ms("0", &ms), IS_OK);
    CHECK(ms == 0);
    CHECK_INT(is_client_duration_ms("2000us", &ms), IS_OK);
    CHECK(ms == 2);
    const char *bad_ones[] = { "", "1", "h", "1x", "1h-5m", "-1h", "1.h.", ".s", "1h ", " 1h", "5 m", "00" };
    for (size_t i = 0; i < sizeof bad_ones / sizeof bad_ones[0]; i++) {
        if (is_client_duration_ms(bad_ones[i], &ms) == IS_OK) {
            CHECK(!"accepted");
            fprintf(stderr, "  \"%s\" was accepted\n", bad_ones[i]);
        }
    }
}

static void test_create_defaults(void) {
    is_client_opts_t o;
    CHECK_INT(parse(&o, IS_CLIENT_CREATE, "internal-request", "--pipeline", "sign",
                    "-p", "taskGitUrl=https://g/x.git", "-p", "taskGitRevision=main",
                    "-p", "snapshot={\"a\":\"b=c\"}", NULL), IS_OK);
    CHECK_STR(o.pipeline, "sign");
    CHECK_INT(o.sync, 1);
    CHECK_INT(o.timeout_s, 3600);
    CHECK_STR(o.pipeline_timeout, "1h0m0s");
    CHECK_STR(o.task_timeout, "0h55m0s");
    CHECK_STR(o.finally_timeout, "0h5m0s");
    CHECK_INT(o.nparams, 3);
    /* Split at the first '=' only. */
    CHECK_STR(o.params[2].key, "snapshot");
    CHECK_STR(o.params[2].value, "{\"a\":\"b=c\"}");
    CHECK(o.namespace == NULL);
    is_client_opts_free(&o);
}

static void test_create_flags(void) {
    is_client_opts_t o;
    CHECK_INT(parse(&o, IS_CLIENT_CREATE, "internal-request", "--resolver", "cluster",
                    "--resolver-param", "name=sign", "--resolver-param", "kind=pipeline",
                    "-l", "team=release", "-l", "empty=", "--namespace", "tenant-a",
                    "--service-account", "signer", "--pipeline-timeout", "2h", "--task-timeout", "1h",
                    "--finally-timeout=1h", "-s", "false", "-t", "30", "--results-file", "/r.json",
                    "--results-dir", "/tekton/results", "--delete-on-timeout", "--kubeconfig", "/k", NULL),
             IS_OK);
    CHECK_STR(o.resolver, "cluster");
    CHECK_INT(o.nresolver_params, 2);
    CHECK_STR(o.resolver_params[1].key, "kind");
    CHECK_INT(o.nlabels, 2);
    CHECK_STR(o.labels[1].key, "empty");
    CHECK_STR(o.labels[1].value, "");
    CHECK_STR(o.namespace, "tenant-a");
    CHECK_STR(o.service_account, "signer");
    CHECK_STR(o.finally_timeout, "1h");
    CHECK_INT(o.sync, 0);
    CHECK_INT(o.timeout_s, 30);
    CHECK_STR(o.results_file, "/r.json");
    CHECK_STR(o.results_dir, "/tekton/results");
    CHECK_INT(o.delete_on_timeout, 1);
    CHECK_STR(o.kubeconfig, "/k");
    is_client_opts_free(&o);

    /* -h is not an error; it asks for the usage text. */
    CHECK_INT(parse(&o, IS_CLIENT_CREATE, "internal-request", "-h", NULL), IS_EAGAIN);
    is_client_opts_free(&o);
    CHECK_INT(parse(&o, IS_CLIENT_WAIT, "wait-for-internal-request", "--help", NULL), IS_EAGAIN);
    is_client_opts_free(&o);
    CHECK(strstr(is_client_usage(IS_CLIENT_CREATE), "--pipeline-timeout") != NULL);
    CHECK(strstr(is_client_usage(IS_CLIENT_WAIT), "-n NAME") != NULL);
}

static void test_create_errors(void) {
    const is_client_mode_t C = IS_CLIENT_CREATE;
    bad(C, "unknown option --bogus", "internal-request", "--bogus", NULL);
    bad(C, "unknown option -n", "internal-request", "-n", "x", NULL);
    bad(C, "unknown option -x", "internal-request", "-x", NULL);
    bad(C, "-p needs a value", "internal-request", "-p", NULL);
    bad(C, "--pipeline needs a value", "internal-request", "--pipeline", NULL);
    bad(C, "-p \"novalue\": want key=value", "internal-request", "--pipeline", "x", "-p", "novalue", NULL);
    bad(C, "-p \"=v\": want key=value", "internal-request", "--pipeline", "x", "-p", "=v", NULL);
    bad(C, "-l \"team\": want key=value", "internal-request", "--pipeline", "x", "-l", "team", NULL);
    bad(C, "-p \"a\" given twice", "internal-request", "--resolver", "c", "-p", "a=1", "-p", "a=2", NULL);
    bad(C, "-s \"yes\": want true or false", "internal-request", "-s", "yes", NULL);
    bad(C, "-t \"0\": want a positive number of seconds", "internal-request", "-t", "0", NULL);
    bad(C, "-t \"10s\": want a positive number of seconds", "internal-request", "-t", "10s", NULL);
    bad(C, "unexpected argument \"extra\"", "internal-request", "--resolver", "c", "extra", NULL);
    bad(C, "--pipeline NAME or --resolver R is required", "internal-request", NULL);
    bad(C, "--pipeline needs -p taskGitUrl=URL and -p taskGitRevision=REV", "internal-request",
        "--pipeline", "x", "-p", "taskGitUrl=u", NULL);
    bad(C, "--resolver-param needs --resolver", "internal-request", "--pipeline", "x",
        "--resolver-param", "a=b", NULL);
    bad(C, "--pipeline-timeout \"1 hour\" is not a duration", "internal-request", "--resolver", "c",
        "--pipeline-timeout", "1 hour", NULL);
    bad(C, "--finally-timeout \"5\" is not a duration", "internal-request", "--resolver", "c",
        "--finally-timeout", "5", NULL);
    bad(C, "--task-timeout 0h56m0s plus --finally-timeout 0h5m0s exceed --pipeline-timeout 1h0m0s",
        "internal-request", "--resolver", "c", "--task-timeout", "0h56m0s", NULL);

    /* Equal is allowed, and a pipeline timeout of 0 means none. */
    is_client_opts_t o;
    CHECK_INT(parse(&o, C, "internal-request", "--resolver", "c", "--task-timeout", "55m",
                    "--finally-timeout", "5m", NULL), IS_OK);
    is_client_opts_free(&o);
    CHECK_INT(parse(&o, C, "internal-request", "--resolver", "c", "--pipeline-timeout", "0",
                    "--task-timeout", "5h", NULL), IS_OK);
    is_client_opts_free(&o);
}

static void test_wait_flags(void) {
    const is_client_mode_t W = IS_CLIENT_WAIT;
    is_client_opts_t o;
    CHECK_INT(parse(&o, W, "wait-for-internal-request", "-n", "sign-abc", NULL), IS_OK);
    CHECK_STR(o.name, "sign-abc");
    CHECK_INT(o.timeout_s, 600);
    is_client_opts_free(&o);
    CHECK_INT(parse(&o, W, "wait-for-internal-request", "-l", "a=1", "-l", "b=2", "-t", "5",
                    "--delete-on-timeout", NULL), IS_OK);
    CHECK_INT(o.nlabels, 2);
    CHECK_INT(o.timeout_s, 5);
    is_client_opts_free(&o);
    bad(W, "give -n NAME or -l key=value (see -h)", "wait-for-internal-request", NULL);
    bad(W, "give -n NAME or -l key=value, not both", "wait-for-internal-request", "-n", "x", "-l", "a=b", NULL);
    bad(W, "unknown option --pipeline", "wait-for-internal-request", "--pipeline", "x", "-n", "y", NULL);
    bad(W, "unknown option -p", "wait-for-internal-request", "-p", "a=b", NULL);
    bad(W, "-t \"abc\"", "wait-for-internal-request", "-n", "x", "-t", "abc", NULL);
}

static void test_request_git(void) {
    is_client_opts_t o;
    CHECK_INT(parse(&o, IS_CLIENT_CREATE, "internal-request", "--pipeline", "sign",
                    "-p", "taskGitUrl=https://g/x.git", "-p", "taskGitRevision=main", "-p", "q=\"x\"",
                    "-l", "team=release", "--service-account", "signer", NULL), IS_OK);
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_client_request_json(&o, "tenant-a", &b), IS_OK);
    CHECK_STR(b.data,
              "{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"kind\":\"InternalRequest\","
              "\"metadata\":{\"generateName\":\"sign-\",\"namespace\":\"tenant-a\",\"labels\":{\"team\":\"release\"}},"
              "\"spec\":{\"pipeline\":{\"pipelineRef\":{\"resolver\":\"git\",\"params\":["
              "{\"name\":\"url\",\"value\":\"https://g/x.git\"},{\"name\":\"revision\",\"value\":\"main\"},"
              "{\"name\":\"pathInRepo\",\"value\":\"pipelines/internal/sign/sign.yaml\"}]}},"
              "\"params\":{\"taskGitUrl\":\"https://g/x.git\",\"taskGitRevision\":\"main\",\"q\":\"\\\"x\\\"\"},"
              "\"timeouts\":{\"pipeline\":\"1h0m0s\",\"tasks\":\"0h55m0s\",\"finally\":\"0h5m0s\"},"
              "\"serviceAccount\":\"signer\"}}");
    is_json_t d;
    CHECK_INT(is_json_parse(&d, b.data, b.len, NULL), IS_OK);
    is_json_free(&d);

    /* Every allocation on the way may fail, and fails cleanly. */
    for (long n = 1; n < 40; n++) {
        is_buf_reset(&b);
        is_alloc_fail_after(n);
        int rc = is_client_request_json(&o, "tenant-a", &b);
        is_alloc_fail_after(0);
        CHECK(rc == IS_OK || rc == IS_ENOMEM);
    }
    is_buf_free(&b);
    is_client_opts_free(&o);
}

static void test_request_generic(void) {
    is_client_opts_t o;
    CHECK_INT(parse(&o, IS_CLIENT_CREATE, "internal-request", "--resolver", "cluster",
                    "--resolver-param", "name=sign-release", "--resolver-param", "kind=pipeline", NULL), IS_OK);
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_client_request_json(&o, "ns", &b), IS_OK);
    CHECK_STR(b.data,
              "{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"kind\":\"InternalRequest\","
              "\"metadata\":{\"generateName\":\"sign-release-\",\"namespace\":\"ns\"},"
              "\"spec\":{\"pipeline\":{\"pipelineRef\":{\"resolver\":\"cluster\",\"params\":["
              "{\"name\":\"name\",\"value\":\"sign-release\"},{\"name\":\"kind\",\"value\":\"pipeline\"}]}},"
              "\"params\":{},"
              "\"timeouts\":{\"pipeline\":\"1h0m0s\",\"tasks\":\"0h55m0s\",\"finally\":\"0h5m0s\"}}}");
    is_buf_free(&b);
    is_client_opts_free(&o);
}

static void test_parse_oom(void) {
    for (long n = 1; n < 8; n++) {
        is_client_opts_t o;
        is_alloc_fail_after(n);
        int rc = parse(&o, IS_CLIENT_CREATE, "internal-request", "--resolver", "c", "-p", "a=1",
                       "-l", "b=2", "--resolver-param", "c=3", NULL);
        is_alloc_fail_after(0);
        CHECK(rc == IS_OK || (rc == IS_EINVAL && strstr(errbuf, "out of memory")));
        is_client_opts_free(&o);
    }
    CHECK_INT(is_alloc_used(), 0);
}

int main(void) {
    RUN(test_mode);
    RUN(test_durations);
    RUN(test_create_defaults);
    RUN(test_create_flags);
    RUN(test_create_errors);
    RUN(test_wait_flags);
    RUN(test_request_git);
    RUN(test_request_generic);
    RUN(test_parse_oom);
    TESTING_DONE();
}

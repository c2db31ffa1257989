/* Kubeconfig loading: file and inline credentials, context selection, every
 * error message shape, in-cluster settings, token rotation and OOM paths. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_kubeconfig.h"
#include "testing.h"

static char fixture_dir[4096];

static const char *fixture_path(const char *name) {
    static char path[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    return path;
}

static int blob_equals_fixture(const is_blob_t *b, const char *name) {
    size_t len;
    char rel[128];
    snprintf(rel, sizeof rel, "kubeconfig/%s", name);
    char *want = testing_fixture(rel, &len);
    int same = b->data && b->len == len && memcmp(b->data, want, len) == 0;
    free(want);
    return same;
}

static int contains(const char *haystack, const char *needle) {
    int found = strstr(haystack, needle) != NULL;
    if (!found) fprintf(stderr, "   \"%s\" does not contain \"%s\"\n", haystack, needle);
    return found;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static void test_file_references_and_current_context(void) {
    is_kubeconfig_t kc;
    char err[512];
    size_t before = is_alloc_used();
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("files.yaml"), NULL, err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "dev");
    CHECK_STR(kc.server, "https://127.0.0.1:6443");
    CHECK_STR(kc.tls_server_name, "kubernetes.default.svc");
    CHECK_STR(kc.namespace, "team-a");
    CHECK_INT(kc.insecure_skip_tls_verify, 0);
    CHECK(blob_equals_fixture(&kc.ca, "ca.crt"));
    CHECK(blob_equals_fixture(&kc.client_cert, "client.crt"));
    CHECK(blob_equals_fixture(&kc.client_key, "client.key"));
    CHECK(kc.token == NULL);
    CHECK(kc.token_file == NULL);
    is_kubeconfig_free(&kc);
    CHECK_INT(is_alloc_used(), before);
}

static void test_token_file_reference(void) {
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("files.yaml"), "robot", err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "robot");
    CHECK_STR(kc.token, "file-token-0123456789");
    CHECK(kc.token_file && contains(kc.token_file, "kubeconfig/token"));
    CHECK_INT(kc.token_size__, 22);
    CHECK(kc.token_mtime__ > 0);
    CHECK(kc.namespace == NULL);
    CHECK(kc.client_cert.data == NULL && kc.client_key.data == NULL);
    is_kubeconfig_free(&kc);
}

static void test_inline_data_and_token(void) {
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("data.yaml"), NULL, err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "remote");
    CHECK_STR(kc.server, "https://remote.example.com:443");
    CHECK(blob_equals_fixture(&kc.ca, "ca.crt"));
    CHECK_STR(kc.token, "sha256~remote-token-value");
    CHECK(kc.token_file == NULL);
    CHECK_STR(kc.namespace, "tenant-ns");
    CHECK(kc.tls_server_name == NULL);
    CHECK_INT(kc.insecure_skip_tls_verify, 0);
    is_kubeconfig_free(&kc);
}

static void test_explicit_context_with_wrapped_data(void) {
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("data.yaml"), "lab-cert", err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "lab-cert");
    CHECK_STR(kc.server, "https://[fd00::10]:6443");
    CHECK_INT(kc.insecure_skip_tls_verify, 1);
    CHECK(kc.ca.data == NULL && kc.ca.len == 0);
    CHECK(blob_equals_fixture(&kc.client_cert, "client.crt"));
    CHECK(blob_equals_fixture(&kc.client_key, "client.key"));
    CHECK(kc.token == NULL);
    CHECK(kc.namespace == NULL); /* "namespace: ~" is null */
    is_kubeconfig_free(&kc);
}

static void test_parse_from_text(void) {
    /* The remote kubeconfig comes from a Secret: relative references use
     * the base_dir given, not the process's working directory. */
    const char *yaml =
        "current-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://k:1///', certificate-authority: ca.crt}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: ns}}]\n";
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_parse(&kc, yaml, strlen(yaml), fixture_dir, NULL, err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://k:1");
    CHECK_STR(kc.token, "abc");
    CHECK_STR(kc.namespace, "ns");
    CHECK(blob_equals_fixture(&kc.ca, "ca.crt"));
    is_kubeconfig_free(&kc);

    /* A context without a user is anonymous, not an error. */
    const char *anon =
        "contexts: [{name: a, context: {cluster: k}}]\n"
        "clusters: [{name: k, cluster: {server: https://k}}]\n";
    CHECK_INT(is_kubeconfig_parse(&kc, anon, strlen(anon), NULL, "a", err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://k");
    CHECK(kc.token == NULL && kc.client_cert.data == NULL);
    is_kubeconfig_free(&kc);
}

#define PROC_CA_YAML \
    "contexts: [{name: c, context: {cluster: k}}]\n" \
    "clusters: [{name: k, cluster: {server: x, certificate-authority: /proc/version}}]\n"

/* /proc files stat as empty, so the whole file must come from reading to
 * EOF rather than from the size stat reports. */
static void test_file_without_stat_size(void) {
    FILE *f = fopen("/proc/version", "rb");
    char want[4096];
    size_t want_len = f ? fread(want, 1, sizeof want, f) : 0;
    if (f) fclose(f);
    CHECK(want_len > 0);
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_parse(&kc, PROC_CA_YAML, strlen(PROC_CA_YAML), NULL, "c", err, sizeof err), IS_OK);
    CHECK_INT(kc.ca.len, want_len);
    CHECK(kc.ca.data && memcmp(kc.ca.data, want, want_len) == 0);
    is_kubeconfig_free(&kc);
}

static void test_malformed_yaml(void) {
    is_kubeconfig_t kc;
    char err[512];
    const char *path = fixture_path("malformed.yaml");
    char want[4400];
    snprintf(want, sizeof want,
             "kubeconfig %s: line 5 column 20: mapping values are not allowed in this context",
             path);
    CHECK_INT(is_kubeconfig_load(&kc, path, NULL, err, sizeof err), IS_EPARSE);
    CHECK_STR(err, want);
    is_kubeconfig_free(&kc);

    const char *tabs = "clusters:\n\t- name: x\n";
    CHECK_INT(is_kubeconfig_parse(&kc, tabs, strlen(tabs), NULL, NULL, err, sizeof err), IS_EPARSE);
    CHECK(contains(err, "kubeconfig: line 2 column 1: "));
    is_kubeconfig_free(&kc);
}

static void test_missing_file(void) {
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_load(&kc, "/nonexistent/kubeconfig", NULL, err, sizeof err), IS_EIO);
    CHECK_STR(err, "kubeconfig /nonexistent/kubeconfig: cannot read: No such file or directory");
    is_kubeconfig_free(&kc);
}

/* Runs one inline kubeconfig that must fail with code and a message
 * containing text. */
static void expect_failure(const char *yaml, const char *context, int code, const char *text) {
    is_kubeconfig_t kc;
    char err[512] = "";
    size_t before = is_alloc_used();
    int rc = is_kubeconfig_parse(&kc, yaml, strlen(yaml), fixture_dir, context, err, sizeof err);
    CHECK_INT(rc, code);
    CHECK(contains(err, text));
    CHECK(strncmp(err, "kubeconfig: ", 12) == 0);
    is_kubeconfig_free(&kc);
    CHECK_INT(is_alloc_used(), before);
}

#define GOOD_CLUSTER "clusters: [{name: k, cluster: {server: https://k}}]\n"
#define GOOD_CONTEXT "contexts: [{name: c, context: {cluster: k, user: u}}]\n"

static void test_lookup_errors(void) {
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {}}]\n", NULL,
                   IS_ENOTFOUND, "kubeconfig: no current-context and no context given");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {}}]\n", "x",
                   IS_ENOTFOUND, "kubeconfig: context \"x\" not found");
    expect_failure("current-context: gone\n" GOOD_CLUSTER GOOD_CONTEXT, NULL,
                   IS_ENOTFOUND, "kubeconfig: context \"gone\" not found");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT, "c", IS_ENOTFOUND, "kubeconfig: user \"u\" not found");
    expect_failure(GOOD_CONTEXT "users: [{name: u}]\n", "c", IS_ENOTFOUND,
                   "kubeconfig: cluster \"k\" not found");
    expect_failure("clusters: [{name: k, cluster: {certificate-authority-data: QUFB}}]\n"
                   GOOD_CONTEXT, "c", IS_EPARSE, "kubeconfig: cluster \"k\" has no server");
    expect_failure("clusters: [{name: k, cluster: {server: /}}]\n" GOOD_CONTEXT, "c",
                   IS_EPARSE, "kubeconfig: cluster \"k\" has no server");
    expect_failure(GOOD_CLUSTER "contexts: [{name: c, context: {user: u}}]\n", "c",
                   IS_EPARSE, "kubeconfig: context \"c\" has no cluster");
}

static void test_shape_errors(void) {
    expect_failure("- a\n- b\n", "c", IS_EPARSE, "kubeconfig: top level: expected a mapping");
    expect_failure("clusters: {k: 1}\n" GOOD_CONTEXT, "c", IS_EPARSE,
                   "kubeconfig: clusters: expected a list");
    expect_failure(GOOD_CLUSTER "contexts: [x]\n", "c", IS_EPARSE,
                   "kubeconfig: contexts[0]: expected a mapping");
    expect_failure(GOOD_CLUSTER "contexts: [{name: c, context: [1]}]\n", "c", IS_EPARSE,
                   "kubeconfig: contexts[0].context: expected a mapping");
    expect_failure("clusters: [{name: k, cluster: {server: [a]}}]\n" GOOD_CONTEXT, "c",
                   IS_EPARSE, "kubeconfig: clusters[0].cluster.server: expected a string");
    expect_failure("clusters: [{name: k, cluster: {server: x, insecure-skip-tls-verify: maybe}}]\n"
                   GOOD_CONTEXT, "c", IS_EPARSE,
                   "kubeconfig: clusters[0].cluster.insecure-skip-tls-verify: expected true or false");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT "users: [{name: v}, {name: [u]}]\n", "c",
                   IS_EPARSE, "kubeconfig: users[1].name: expected a string");
}

static void test_bad_base64(void) {
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {client-certificate-data: 'QUJD$', client-key-data: QUJD}}]\n",
                   "c", IS_EPARSE, "kubeconfig: users[0].user.client-certificate-data: invalid base64");
    expect_failure("clusters: [{name: z}, {name: k, cluster: {server: x, certificate-authority-data: QQ=A}}]\n"
                   GOOD_CONTEXT, "c", IS_EPARSE,
                   "kubeconfig: clusters[1].cluster.certificate-authority-data: invalid base64");
    /* One lone symbol cannot encode a byte. */
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {client-certificate-data: QUJD, client-key-data: QUJDR}}]\n",
                   "c", IS_EPARSE, "kubeconfig: users[0].user.client-key-data: invalid base64");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {client-certificate-data: QUJD, client-key-data: QQ===}}]\n",
                   "c", IS_EPARSE, "kubeconfig: users[0].user.client-key-data: invalid base64");
}

static void test_base64_forms(void) {
    /* Unpadded and padded forms with whitespace decode to the same bytes. */
    const char *forms[] = {"QUJDRA==", "QUJDRA", "QU JD\\nRA =="};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char yaml[512];
        is_kubeconfig_t kc;
        char err[256];
        snprintf(yaml, sizeof yaml,
                 "contexts: [{name: c, context: {cluster: k}}]\n"
                 "clusters: [{name: k, cluster: {server: x, certificate-authority-data: \"%s\"}}]\n",
                 forms[i]);
        CHECK_INT(is_kubeconfig_parse(&kc, yaml, strlen(yaml), NULL, "c", err, sizeof err), IS_OK);
        CHECK_INT(kc.ca.len, 4);
        CHECK(kc.ca.data && memcmp(kc.ca.data, "ABCD", 4) == 0);
        is_kubeconfig_free(&kc);
    }
}

static void test_unsupported_users(void) {
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n", "c", IS_EPARSE,
                   "uses auth-provider, which is not supported");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {username: a, password: b}}]\n", "c", IS_EPARSE,
                   "uses username, which is not supported");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {client-certificate: client.crt}}]\n", "c", IS_EPARSE,
                   "users[0].user: user \"u\" has a client certificate but no client key");
}

static void test_exec_plugin_config(void) {
    is_kubeconfig_t kc;
    char err[512];
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("exec.yaml"), NULL, err, sizeof err), IS_OK);
    const is_kubeconfig_exec_t *e = &kc.exec;
    CHECK_STR(e->api_version, "client.authentication.k8s.io/v1");
    char want[4200];
    snprintf(want, sizeof want, "%s/./plugins/cred.sh", fixture_dir);
    CHECK_STR(e->command, want);
    CHECK_STR(e->argv[0], want);
    CHECK_STR(e->argv[1], "--cluster");
    CHECK_STR(e->argv[2], "k");
    CHECK(e->argv[3] == NULL);
    CHECK_STR(e->env[0], "CRED_TOKEN=from-env");
    CHECK_STR(e->env[1], "EMPTY=");
    CHECK(e->env[2] == NULL);
    CHECK_INT(e->interactive_mode, IS_EXEC_NEVER);
    CHECK_INT(e->provide_cluster_info, 1);
    CHECK_STR(e->install_hint, "install cred.sh from the fixtures");
    CHECK_STR(kc.proxy_url, "socks5://127.0.0.1:1080");
    CHECK(kc.token == NULL);
    is_kubeconfig_free(&kc);

    /* v1beta1 defaults to IfAvailable; a bare command stays a PATH lookup. */
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("exec.yaml"), "beta", err, sizeof err), IS_OK);
    CHECK_STR(kc.exec.command, "sh");
    CHECK_STR(kc.exec.argv[0], "sh");
    CHECK(kc.exec.argv[1] == NULL);
    CHECK(kc.exec.env && kc.exec.env[0] == NULL);
    CHECK_INT(kc.exec.interactive_mode, IS_EXEC_IF_AVAILABLE);
    CHECK_INT(kc.exec.provide_cluster_info, 0);
    is_kubeconfig_free(&kc);

#define EXEC_USER(body) GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {exec: " body "}}]\n"
    expect_failure(EXEC_USER("{command: aws, apiVersion: x}"), "c", IS_EPARSE,
                   "kubeconfig: users[0].user.exec.apiVersion: \"x\" is not supported");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1alpha1}"), "c",
                   IS_EPARSE, "is not supported (client.authentication.k8s.io/v1 or v1beta1)");
    expect_failure(EXEC_USER("{command: aws}"), "c", IS_EPARSE, "users[0].user.exec.apiVersion: missing");
    expect_failure(EXEC_USER("{apiVersion: client.authentication.k8s.io/v1beta1}"), "c", IS_EPARSE,
                   "users[0].user.exec.command: missing");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1}"), "c", IS_EPARSE,
                   "users[0].user.exec.interactiveMode: required for client.authentication.k8s.io/v1");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Sometimes}"),
                   "c", IS_EPARSE, "interactiveMode: \"Sometimes\" is not Never, IfAvailable or Always");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, args: x}"), "c",
                   IS_EPARSE, "users[0].user.exec.args: expected a list");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, args: [a, [b]]}"),
                   "c", IS_EPARSE, "users[0].user.exec.args[1]: expected a string");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, env: [x]}"), "c",
                   IS_EPARSE, "users[0].user.exec.env[0]: expected a mapping");
    expect_failure(EXEC_USER("{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, env: [{value: v}]}"),
                   "c", IS_EPARSE, "users[0].user.exec.env[0].name: expected a variable name");
    expect_failure(EXEC_USER("[aws]"), "c", IS_EPARSE, "users[0].user.exec: expected a mapping");
#undef EXEC_USER
}

static void merged_path(char *out, size_t n, const char *const *names) {
    out[0] = 0;
    for (const char *const *p = names; *p; p++) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", p == names ? "" : ":", (*p)[0] ? fixture_path(*p) : "");
    }
}

static void test_kubeconfig_list(void) {
    is_kubeconfig_t kc;
    char err[1024], list[8192];
    /* An empty entry, a missing file and a repeat are skipped. */
    const char *names[] = { "merge/zero.yaml", "", "merge/absent.yaml", "merge/first.yaml",
                            "merge/sub/second.yaml", "merge/first.yaml", NULL };
    merged_path(list, sizeof list, names);
    size_t before = is_alloc_used();
    CHECK_INT(is_kubeconfig_load_list(&kc, list, NULL, err, sizeof err), IS_OK);
    /* current-context from the first file that sets one (first.yaml), and
     * its context over second.yaml's of the same name. */
    CHECK_STR(kc.context, "shared");
    CHECK_STR(kc.namespace, "first-ns");
    CHECK_STR(kc.server, "https://first.example:6443");
    CHECK_STR(kc.proxy_url, "http://proxy.first.example:3128");
    CHECK(blob_equals_fixture(&kc.ca, "ca.crt"));
    CHECK_STR(kc.token, "first-token");
    is_kubeconfig_free(&kc);

    /* A context only the second file names: its user from there, with the
     * token file next to second.yaml; its cluster from first.yaml, which
     * named "shared" first. */
    CHECK_INT(is_kubeconfig_load_list(&kc, list, "second-only", err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://first.example:6443");
    CHECK_STR(kc.token, "second-token");
    CHECK(contains(kc.token_file, "merge/sub/token"));
    is_kubeconfig_free(&kc);

    CHECK_INT(is_kubeconfig_load_list(&kc, list, "zero", err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://zero.example:6443");
    CHECK(kc.token == NULL);
    is_kubeconfig_free(&kc);
    CHECK_INT(is_alloc_used(), before);

    /* The reverse order: second.yaml's choices win now. */
    const char *reversed[] = { "merge/sub/second.yaml", "merge/first.yaml", NULL };
    merged_path(list, sizeof list, reversed);
    CHECK_INT(is_kubeconfig_load_list(&kc, list, NULL, err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "second-only");
    CHECK_STR(kc.server, "https://second.example:6443");
    CHECK(kc.proxy_url == NULL);
    is_kubeconfig_free(&kc);
    CHECK_INT(is_kubeconfig_load_list(&kc, list, "shared", err, sizeof err), IS_ENOTFOUND);
    CHECK(contains(err, "cluster \"other\" not found"));
    CHECK(contains(err, list));
    is_kubeconfig_free(&kc);

    /* A single file behaves as is_kubeconfig_load; none existing is an error. */
    CHECK_INT(is_kubeconfig_load_list(&kc, fixture_path("files.yaml"), NULL, err, sizeof err), IS_OK);
    CHECK_STR(kc.context, "dev");
    is_kubeconfig_free(&kc);
    CHECK_INT(is_kubeconfig_load_list(&kc, "/nonexistent/a:/nonexistent/b", NULL, err, sizeof err), IS_EIO);
    CHECK_STR(err, "kubeconfig /nonexistent/a:/nonexistent/b: none of the files exists");
    is_kubeconfig_free(&kc);
    /* A broken file is reported by its own name. */
    const char *broken[] = { "merge/first.yaml", "malformed.yaml", NULL };
    merged_path(list, sizeof list, broken);
    CHECK_INT(is_kubeconfig_load_list(&kc, list, NULL, err, sizeof err), IS_EPARSE);
    char want[4200];
    snprintf(want, sizeof want, "kubeconfig %s: line 5", fixture_path("malformed.yaml"));
    CHECK(contains(err, want));
    is_kubeconfig_free(&kc);
    CHECK_INT(is_alloc_used(), before);
}

static void test_unreadable_references(void) {
    is_kubeconfig_t kc;
    char err[1024];
    CHECK_INT(is_kubeconfig_load(&kc, fixture_path("files.yaml"), "no-ca", err, sizeof err), IS_EIO);
    CHECK(contains(err, "clusters[1].cluster.certificate-authority: cannot read "));
    CHECK(contains(err, "kubeconfig/does-not-exist/ca.crt: No such file or directory"));
    CHECK(contains(err, fixture_path("files.yaml")));
    is_kubeconfig_free(&kc);

    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {client-certificate: client.crt, client-key: nope.key}}]\n",
                   "c", IS_EIO, "users[0].user.client-key: cannot read ");
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT
                   "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n", "c", IS_EIO,
                   "kubeconfig: users[0].user.tokenFile: cannot read /nonexistent/token: "
                   "No such file or directory");
    /* A directory is not a credential file. */
    expect_failure(GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {tokenFile: .}}]\n",
                   "c", IS_EIO, "Is a directory");
}

static char *make_temp_dir(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/is-kubeconfig-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    return dir;
}

static void remove_temp_dir(const char *dir) {
    const char *names[] = {"token", "ca.crt", "namespace"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_in_cluster(void) {
    char *dir = make_temp_dir();
    char path[256], err[512];
    is_kubeconfig_t kc;
    size_t ca_len;
    char *ca = testing_fixture("kubeconfig/ca.crt", &ca_len);

    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_ENOTFOUND);
    CHECK_STR(err, "not running in a cluster: KUBERNETES_SERVICE_HOST is not set");
    is_kubeconfig_free(&kc);

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_EIO);
    CHECK(contains(err, "/token: No such file or directory"));
    is_kubeconfig_free(&kc);

    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, "sa-token-1\n");
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_EIO);
    CHECK(contains(err, "/ca.crt: No such file or directory"));
    is_kubeconfig_free(&kc);

    snprintf(path, sizeof path, "%s/ca.crt", dir);
    write_file(path, ca);
    /* No namespace file: allowed, the namespace stays unset. */
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://10.96.0.1:443");
    CHECK_STR(kc.token, "sa-token-1");
    CHECK(kc.token_file && contains(kc.token_file, "/token"));
    CHECK(kc.namespace == NULL);
    CHECK(kc.context == NULL);
    CHECK(blob_equals_fixture(&kc.ca, "ca.crt"));
    is_kubeconfig_free(&kc);

    snprintf(path, sizeof path, "%s/namespace", dir);
    write_file(path, "controller-ns\n");
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_OK);
    CHECK_STR(kc.server, "https://[fd00:10:96::1]:6443");
    CHECK_STR(kc.namespace, "controller-ns");
    is_kubeconfig_free(&kc);

    unsetenv("KUBERNETES_SERVICE_PORT");
    CHECK_INT(is_kubeconfig_in_cluster(&kc, dir, err, sizeof err), IS_ENOTFOUND);
    CHECK_STR(err, "not running in a cluster: KUBERNETES_SERVICE_PORT is not set");
    is_kubeconfig_free(&kc);

    unsetenv("KUBERNETES_SERVICE_HOST");
    free(ca);
    remove_temp_dir(dir);
}

static void set_mtime(const char *path, time_t sec) {
    struct timespec times[2] = {{sec, 0}, {sec, 0}};
    if (utimensat(AT_FDCWD, path, times, 0) != 0) {
        perror("utimensat");
        exit(2);
    }
}

static void test_token_refresh(void) {
    char *dir = make_temp_dir();
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, "token-one\n");
    set_mtime(path, 1000000);

    const char *yaml = GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {token: inline, tokenFile: token}}]\n";
    is_kubeconfig_t kc;
    CHECK_INT(is_kubeconfig_parse(&kc, yaml, strlen(yaml), dir, "c", err, sizeof err), IS_OK);
    CHECK_STR(kc.token, "token-one"); /* the file wins over the inline token */
    CHECK_INT(kc.token_mtime__, 1000000LL * 1000000000LL);
    CHECK_INT(kc.token_size__, 10);

    int changed = -1;
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 0);
    CHECK_STR(kc.token, "token-one");

    /* Rotation to a token of another length. */
    write_file(path, "token-number-two\n");
    set_mtime(path, 1000000);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 1);
    CHECK_STR(kc.token, "token-number-two");
    CHECK_INT(kc.token_size__, 17);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 0);

    /* Same length: only the mtime tells it apart. */
    write_file(path, "token-number-six\n");
    set_mtime(path, 1000000);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 0);
    CHECK_STR(kc.token, "token-number-two");
    set_mtime(path, 1000060);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 1);
    CHECK_STR(kc.token, "token-number-six");
    CHECK_INT(kc.token_mtime__, 1000060LL * 1000000000LL);

    /* A touch with the same content is re-read but is no new token. */
    set_mtime(path, 1000120);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 0);
    CHECK_INT(kc.token_mtime__, 1000120LL * 1000000000LL);

    /* A vanished file is an error that keeps the last good token. */
    unlink(path);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_EIO);
    CHECK_INT(changed, 0);
    CHECK_STR(kc.token, "token-number-six");

    /* Under memory pressure the refresh fails cleanly and can be retried. */
    write_file(path, "token-number-ten\n");
    is_alloc_fail_after(1);
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_ENOMEM);
    is_alloc_fail_after(0);
    CHECK_STR(kc.token, "token-number-six");
    CHECK_INT(is_kubeconfig_refresh_token(&kc, &changed), IS_OK);
    CHECK_INT(changed, 1);
    CHECK_STR(kc.token, "token-number-ten");
    is_kubeconfig_free(&kc);

    /* Without a token file there is nothing to refresh. */
    is_kubeconfig_t plain;
    const char *inline_only = GOOD_CLUSTER GOOD_CONTEXT "users: [{name: u, user: {token: t}}]\n";
    CHECK_INT(is_kubeconfig_parse(&plain, inline_only, strlen(inline_only), dir, "c", err, sizeof err), IS_OK);
    changed = -1;
    CHECK_INT(is_kubeconfig_refresh_token(&plain, &changed), IS_OK);
    CHECK_INT(changed, 0);
    CHECK_STR(plain.token, "t");
    is_kubeconfig_free(&plain);

    remove_temp_dir(dir);
}

/* Makes the n-th allocation fail for n = 1, 2, ... until the call succeeds:
 * each failure must be IS_ENOMEM with nothing leaked. */
typedef int (*load_fn)(is_kubeconfig_t *kc, char *err, size_t errlen);

static void check_oom_paths(const char *what, load_fn fn) {
    size_t before = is_alloc_used();
    int failures = 0;
    for (long n = 1; n < 10000; n++) {
        is_kubeconfig_t kc;
        char err[512] = "";
        is_alloc_fail_after(n);
        int rc = fn(&kc, err, sizeof err);
        is_alloc_fail_after(0);
        is_kubeconfig_free(&kc);
        CHECK_INT(is_alloc_used(), before);
        if (rc == IS_OK) break;
        failures++;
        if (rc != IS_ENOMEM) {
            fprintf(stderr, "   %s: allocation %ld: rc %d: %s\n", what, n, rc, err);
            CHECK_INT(rc, IS_ENOMEM);
            break;
        }
        CHECK(contains(err, "out of memory"));
    }
    /* Every load allocates several times; zero means the hook never fired. */
    CHECK(failures >= 5);
}

static int load_files(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_load(kc, fixture_path("files.yaml"), NULL, err, errlen);
}

static int load_token_file(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_load(kc, fixture_path("files.yaml"), "robot", err, errlen);
}

static int load_data(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_load(kc, fixture_path("data.yaml"), "lab-cert", err, errlen);
}

static int load_proc_file(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_parse(kc, PROC_CA_YAML, strlen(PROC_CA_YAML), NULL, "c", err, errlen);
}

static int load_exec_user(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_load(kc, fixture_path("exec.yaml"), NULL, err, errlen);
}

static int load_list(is_kubeconfig_t *kc, char *err, size_t errlen) {
    char list[8192];
    const char *names[] = { "merge/zero.yaml", "merge/first.yaml", "merge/sub/second.yaml", NULL };
    merged_path(list, sizeof list, names);
    return is_kubeconfig_load_list(kc, list, "second-only", err, errlen);
}

static const char *oom_sa_dir;

static int load_in_cluster(is_kubeconfig_t *kc, char *err, size_t errlen) {
    return is_kubeconfig_in_cluster(kc, oom_sa_dir, err, errlen);
}

static void test_out_of_memory(void) {
    check_oom_paths("files", load_files);
    check_oom_paths("token file", load_token_file);
    check_oom_paths("data", load_data);
    check_oom_paths("growing read", load_proc_file);
    check_oom_paths("exec plugin", load_exec_user);
    check_oom_paths("KUBECONFIG list", load_list);

    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, "t\n");
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    write_file(path, "not really a cert\n");
    snprintf(path, sizeof path, "%s/namespace", dir);
    write_file(path, "ns\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    oom_sa_dir = dir;
    check_oom_paths("in-cluster", load_in_cluster);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    remove_temp_dir(dir);
}

int main(void) {
    const char *fixtures = getenv("IS_FIXTURES");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/kubeconfig", fixtures ? fixtures : "tests/fixtures");
    RUN(test_file_references_and_current_context);
    RUN(test_token_file_reference);
    RUN(test_inline_data_and_token);
    RUN(test_explicit_context_with_wrapped_data);
    RUN(test_parse_from_text);
    RUN(test_file_without_stat_size);
    RUN(test_malformed_yaml);
    RUN(test_missing_file);
    RUN(test_lookup_errors);
    RUN(test_shape_errors);
    RUN(test_bad_base64);
    RUN(test_base64_forms);
    RUN(test_unsupported_users);
    RUN(test_exec_plugin_config);
    RUN(test_kubeconfig_list);
    RUN(test_unreadable_references);
    RUN(test_in_cluster);
    RUN(test_token_refresh);
    RUN(test_out_of_memory);
    TESTING_DONE();
}

/* JSON tokenizer: grammar tables, token layout, lookups, decoding, limits,
 * large input and OOM paths. */
#include <limits.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"
#include "testing.h"

static int parse_str(is_json_t *doc, const char *s, size_t *err_off) {
    return is_json_parse(doc, s, strlen(s), err_off);
}

static void test_valid_table(void) {
    static const char *valid[] = {
        "0", "-0", "1", "-1", "123456789", "0.5", "-0.5", "1e5", "1E+5", "1e-5",
        "1.25e10", "0e0", "-0.0e-0", "\"\"", "\"abc\"", "true", "false", "null",
        "[]", "{}", "[1,2,3]", " \t\r\n[ 1 , 2 ] \n", "{\"a\":1}",
        "{\"a\":{\"b\":[true,false,null,{}]}}", "[[[]]]", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]",
        "\"\\u0041\\u00e9\\uD83D\\uDE00\"", "\"\\uD800\"", /* lone surrogate: grammatical */
        "\"\xc3\xa9\xe2\x82\xac\"", "\"\x7f\"", "{\"\":\"\"}", "[0,-1,2.5e3]",
        "{\"a\":1,\"a\":2}",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        is_json_t doc;
        int rc = parse_str(&doc, valid[i], NULL);
        if (rc != IS_OK)
            fprintf(stderr, "  should be valid: %s\n", valid[i]);
        CHECK_INT(rc, IS_OK);
        CHECK(doc.ntoks >= 1);
        is_json_free(&doc);
    }
}

static void test_invalid_table(void) {
    static const struct { const char *text; size_t off; } invalid[] = {
        { "", 0 }, { "   ", 3 }, { "[", 1 }, { "]", 0 }, { "{", 1 }, { "}", 0 },
        { "[1,]", 3 }, { "[,1]", 1 }, { "{\"a\":1,}", 7 }, { "{\"a\"}", 4 },
        { "{\"a\" 1}", 5 }, { "{a:1}", 1 }, { "{1:1}", 1 }, { "{\"a\":}", 5 },
        { "[1 2]", 3 }, { "[1}", 2 }, { "{\"a\":1]", 6 }, { "01", 1 }, { "-", 1 },
        { "-a", 1 }, { "1.", 2 }, { ".5", 0 }, { "1.e5", 2 }, { "1e", 2 },
        { "1e+", 3 }, { "+1", 0 }, { "0x10", 1 }, { "NaN", 0 }, { "Infinity", 0 },
        { "tru", 0 }, { "truex", 4 }, { "nul", 0 }, { "True", 0 }, { "\"abc", 4 },
        { "\"a\nb\"", 2 }, { "\"a\tb\"", 2 }, { "\"\\x\"", 2 }, { "\"\\u12\"", 5 },
        { "\"\\u12G4\"", 5 }, { "\"\\", 2 }, { "\"\\u00", 5 }, { "'a'", 0 },
        { "[1] [2]", 4 }, { "{} x", 3 }, { "1 2", 2 }, { "[1]]", 3 },
        { "\xef\xbb\xbf{}", 0 }, /* a BOM is not JSON text */
        { "[\"a\",]", 5 }, { "{\"a\":1 \"b\":2}", 7 }, { "[-]", 2 }, { "[1,\n", 4 },
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        is_json_t doc;
        size_t off = 9999;
        int rc = parse_str(&doc, invalid[i].text, &off);
        if (rc != IS_EPARSE || off != invalid[i].off)
            fprintf(stderr, "  case %zu: '%s' rc=%d off=%zu\n", i, invalid[i].text, rc, off);
        CHECK_INT(rc, IS_EPARSE);
        CHECK_INT(off, invalid[i].off);
        is_json_free(&doc);
    }
    /* A raw NUL is neither whitespace nor allowed inside a string. */
    is_json_t doc;
    size_t off;
    CHECK_INT(is_json_parse(&doc, "[1]\0", 4, &off), IS_EPARSE);
    CHECK_INT(off, 3);
    is_json_free(&doc);
    CHECK_INT(is_json_parse(&doc, "\"a\0\"", 4, &off), IS_EPARSE);
    CHECK_INT(off, 2);
    is_json_free(&doc);
    /* Length, not NUL, ends the text. */
    CHECK_INT(is_json_parse(&doc, "[1]garbage", 3, NULL), IS_OK);
    is_json_free(&doc);
}

static void test_token_layout(void) {
    const char *s = "{\"a\":[1,{\"x\":null}],\"b\":\"s\",\"c\":{}}";
    is_json_t doc;
    CHECK_INT(parse_str(&doc, s, NULL), IS_OK);
    /* 0 obj, 1 "a", 2 arr, 3 1, 4 obj, 5 "x", 6 null, 7 "b", 8 "s", 9 "c", 10 obj */
    CHECK_INT(doc.ntoks, 11);
    CHECK_INT(doc.toks[0].type, IS_JSON_OBJECT);
    CHECK_INT(doc.toks[0].size, 3);
    CHECK_INT(doc.toks[0].next, 11);
    CHECK_INT(doc.toks[0].start, 0);
    CHECK_INT(doc.toks[0].end, strlen(s));
    CHECK_INT(doc.toks[1].type, IS_JSON_STRING);
    CHECK_INT(doc.toks[1].next, 2);
    CHECK_INT(doc.toks[2].type, IS_JSON_ARRAY);
    CHECK_INT(doc.toks[2].size, 2);
    CHECK_INT(doc.toks[2].next, 7);
    CHECK_INT(doc.toks[3].type, IS_JSON_NUMBER);
    CHECK_INT(doc.toks[4].type, IS_JSON_OBJECT);
    CHECK_INT(doc.toks[4].size, 1);
    CHECK_INT(doc.toks[4].next, 7);
    CHECK_INT(doc.toks[6].type, IS_JSON_NULL);
    CHECK_INT(doc.toks[8].type, IS_JSON_STRING);
    CHECK_INT(doc.toks[8].start, strchr(s, 's') - s);
    CHECK_INT(doc.toks[8].end, doc.toks[8].start + 1);
    CHECK_INT(doc.toks[10].type, IS_JSON_OBJECT);
    CHECK_INT(doc.toks[10].size, 0);
    CHECK_INT(doc.toks[10].next, 11);
    is_json_free(&doc);
}

static void test_lookups(void) {
    const char *s =
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"InternalRequest\","
        "\"metadata\":{\"name\":\"req-1\",\"namespace\":\"dev\",\"labels\":{\"a.b/c\":\"1\"},"
        "\"resourceVersion\":\"42\",\"generation\":7},"
        "\"spec\":{\"params\":[{\"name\":\"x\"}],\"request\":\"p\"},"
        "\"na\\u006De\":\"escaped key\"}}";
    is_json_t doc;
    CHECK_INT(parse_str(&doc, s, NULL), IS_OK);
    char *str = NULL;
    int t = is_json_get(&doc, 0, "type");
    CHECK(t > 0);
    CHECK_INT(is_json_strdup(&doc, t, &str), IS_OK);
    CHECK_STR(str, "ADDED");
    is_free(str);
    t = is_json_path(&doc, 0, "object.metadata.name");
    CHECK_INT(is_json_strdup(&doc, t, &str), IS_OK);
    CHECK_STR(str, "req-1");
    is_free(str);
    /* Later keys are found after skipping nested values via next. */
    t = is_json_path(&doc, 0, "object.spec.request");
    CHECK_INT(is_json_strdup(&doc, t, &str), IS_OK);
    CHECK_STR(str, "p");
    is_free(str);
    long long gen = 0;
    CHECK_INT(is_json_int(&doc, is_json_path(&doc, 0, "object.metadata.generation"), &gen), IS_OK);
    CHECK_INT(gen, 7);
    /* Keys are compared after decoding. */
    t = is_json_path(&doc, 0, "object.name");
    CHECK_INT(is_json_strdup(&doc, t, &str), IS_OK);
    CHECK_STR(str, "escaped key");
    is_free(str);
    int obj = is_json_get(&doc, 0, "object");
    CHECK_INT(is_json_get(&doc, obj, "kind"), obj + 2);
    CHECK_INT(is_json_get(&doc, 0, "missing"), -1);
    CHECK_INT(is_json_get(&doc, 0, "typ"), -1);
    CHECK_INT(is_json_get(&doc, 0, "types"), -1);
    CHECK_INT(is_json_path(&doc, 0, "object.metadata.missing"), -1);
    CHECK_INT(is_json_path(&doc, 0, "type.x"), -1);         /* not an object */
    CHECK_INT(is_json_path(&doc, 0, "object.spec.params.name"), -1); /* array */
    CHECK_INT(is_json_get(&doc, -1, "type"), -1);
    CHECK_INT(is_json_get(&doc, doc.ntoks, "type"), -1);
    /* A value is never mistaken for a key. */
    CHECK_INT(is_json_get(&doc, 0, "ADDED"), -1);
    int labels = is_json_path(&doc, 0, "object.metadata.labels");
    CHECK(is_json_get(&doc, labels, "a.b/c") > 0);
    is_json_free(&doc);
}

static void test_strdup_escapes(void) {
    static const struct { const char *json, *want; } cases[] = {
        { "\"plain\"", "plain" },
        { "\"\"", "" },
        { "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t" },
        { "\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac" },
        { "\"\\uD83D\\uDE00!\"", "\xf0\x9f\x98\x80!" },          /* U+1F600 */
        { "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf" },             /* U+10FFFF */
        { "\"\\uD800x\"", "\xef\xbf\xbdx" },                      /* lone high */
        { "\"\\uDC00\"", "\xef\xbf\xbd" },                        /* lone low */
        { "\"\\uD800\\u0041\"", "\xef\xbf\xbd" "A" },             /* high + non-low */
        { "\"\\uD800\\n\"", "\xef\xbf\xbd\n" },
        { "\"\\uD800\"", "\xef\xbf\xbd" },                        /* at the end */
        { "\"\xc3\xa9 raw\"", "\xc3\xa9 raw" },
        { "\"\\u007f\\u0080\\u07FF\\u0800\\uFFFF\"",
          "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        is_json_t doc;
        CHECK_INT(parse_str(&doc, cases[i].json, NULL), IS_OK);
        char *out = NULL;
        CHECK_INT(is_json_strdup(&doc, 0, &out), IS_OK);
        CHECK_STR(out, cases[i].want);
        is_free(out);
        is_json_free(&doc);
    }
    is_json_t doc;
    CHECK_INT(parse_str(&doc, "[\"a\\u0000b\",1]", NULL), IS_OK);
    char *out = (char *)1;
    CHECK_INT(is_json_strdup(&doc, 1, &out), IS_EINVAL);
    CHECK(out == NULL);
    CHECK_INT(is_json_strdup(&doc, 2, &out), IS_EINVAL);  /* a number */
    CHECK_INT(is_json_strdup(&doc, 0, &out), IS_EINVAL);  /* an array */
    CHECK_INT(is_json_strdup(&doc, 9, &out), IS_EINVAL);  /* out of range */
    is_json_free(&doc);
}

static void test_int(void) {
    static const struct { const char *json; int rc; long long want; } cases[] = {
        { "0", IS_OK, 0 }, { "-0", IS_OK, 0 }, { "42", IS_OK, 42 }, { "-17", IS_OK, -17 },
        { "9223372036854775807", IS_OK, LLONG_MAX },
        { "-9223372036854775808", IS_OK, LLONG_MIN },
        { "9223372036854775808", IS_ELIMIT, 0 },
        { "-9223372036854775809", IS_ELIMIT, 0 },
        { "99999999999999999999999", IS_ELIMIT, 0 },
        { "1.0", IS_EINVAL, 0 }, { "1e3", IS_EINVAL, 0 }, { "\"5\"", IS_EINVAL, 0 },
        { "true", IS_EINVAL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        is_json_t doc;
        CHECK_INT(parse_str(&doc, cases[i].json, NULL), IS_OK);
        long long v = 12345;
        CHECK_INT(is_json_int(&doc, 0, &v), cases[i].rc);
        if (cases[i].rc == IS_OK)
            CHECK(v == cases[i].want);
        else
            CHECK(v == 12345);
        is_json_free(&doc);
    }
}

static void test_raw(void) {
    const char *s = " {\"o\": {\"k\": [1, 2]}, \"s\": \"a\\\"b\", \"n\": -1.5e3, \"t\": true} ";
    is_json_t doc;
    CHECK_INT(parse_str(&doc, s, NULL), IS_OK);
    size_t len;
    const char *raw = is_json_raw(&doc, 0, &len);
    CHECK(raw == s + 1);
    CHECK_INT(len, strlen(s) - 2);
    raw = is_json_raw(&doc, is_json_get(&doc, 0, "o"), &len);
    CHECK(len == 13 && memcmp(raw, "{\"k\": [1, 2]}", len) == 0);
    raw = is_json_raw(&doc, is_json_path(&doc, 0, "o.k"), &len);
    CHECK(len == 6 && memcmp(raw, "[1, 2]", len) == 0);
    raw = is_json_raw(&doc, is_json_get(&doc, 0, "s"), &len);
    CHECK(len == 6 && memcmp(raw, "\"a\\\"b\"", len) == 0);
    raw = is_json_raw(&doc, is_json_get(&doc, 0, "n"), &len);
    CHECK(len == 6 && memcmp(raw, "-1.5e3", len) == 0);
    raw = is_json_raw(&doc, is_json_get(&doc, 0, "t"), &len);
    CHECK(len == 4 && memcmp(raw, "true", len) == 0);
    CHECK(is_json_raw(&doc, -1, &len) == NULL);
    CHECK_INT(len, 0);
    CHECK(is_json_raw(&doc, doc.ntoks, &len) == NULL);
    is_json_free(&doc);
}

static char *nested(int depth, char open, char close) {
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, open, (size_t)depth);
    memset(s + depth, close, (size_t)depth);
    s[depth * 2] = 0;
    return s;
}

static void test_depth_limit(void) {
    is_json_t doc;
    size_t off;
    char *ok = nested(512, '[', ']');
    CHECK_INT(parse_str(&doc, ok, NULL), IS_OK);
    CHECK_INT(doc.ntoks, 512);
    CHECK_INT(doc.toks[0].next, 512);
    CHECK_INT(doc.toks[511].size, 0);
    CHECK_INT(doc.toks[510].size, 1);
    is_json_free(&doc);
    free(ok);
    char *deep = nested(513, '[', ']');
    CHECK_INT(parse_str(&doc, deep, &off), IS_ELIMIT);
    CHECK_INT(off, 512);
    is_json_free(&doc);
    free(deep);
    /* A hostile nesting depth must not touch the C stack. */
    char *hostile = nested(1000000, '[', ']');
    CHECK_INT(parse_str(&doc, hostile, &off), IS_ELIMIT);
    is_json_free(&doc);
    free(hostile);
    /* Objects count toward the same limit. */
    size_t n = 600;
    char *objs = malloc(n * 6 + 2);
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(objs + p, "{\"a\":", 5);
        p += 5;
    }
    objs[p++] = '1';
    memset(objs + p, '}', n);
    objs[p + n] = 0;
    CHECK_INT(parse_str(&doc, objs, &off), IS_ELIMIT);
    is_json_free(&doc);
    free(objs);
}

static void test_large_document(void) {
    enum { BIG = 2 * 1024 * 1024 };
    char *s = malloc(BIG + 256);
    size_t p = (size_t)sprintf(s, "{\"metadata\":{\"name\":\"big\"},\"data\":\"");
    size_t str_start = p;
    for (size_t i = 0; i < BIG; i++)
        s[p++] = (char)('a' + i % 26);
    /* Escapes near the end must still decode. */
    p += (size_t)sprintf(s + p, "\\n\\u00e9\",\"after\":[1,2,3]}");
    is_json_t doc;
    CHECK_INT(is_json_parse(&doc, s, p, NULL), IS_OK);
    int data = is_json_get(&doc, 0, "data");
    CHECK(data > 0);
    CHECK_INT(doc.toks[data].start, str_start);
    CHECK_INT(doc.toks[data].end - doc.toks[data].start, BIG + 8);
    char *out = NULL;
    CHECK_INT(is_json_strdup(&doc, data, &out), IS_OK);
    CHECK(out && strlen(out) == BIG + 3);
    CHECK(out && out[BIG - 1] == (char)('a' + (BIG - 1) % 26));
    CHECK(out && strcmp(out + BIG, "\n\xc3\xa9") == 0);
    is_free(out);
    int after = is_json_get(&doc, 0, "after");
    CHECK_INT(doc.toks[after].size, 3);
    is_json_free(&doc);
    free(s);

    /* Many tokens: forces the token array through many reallocations. */
    enum { N = 200000 };
    char *arr = malloc(N * 2 + 2);
    arr[0] = '[';
    for (int i = 0; i < N; i++) {
        arr[1 + i * 2] = (char)('0' + i % 10);
        arr[2 + i * 2] = ',';
    }
    arr[N * 2] = ']';
    CHECK_INT(is_json_parse(&doc, arr, N * 2 + 1, NULL), IS_OK);
    CHECK_INT(doc.ntoks, N + 1);
    CHECK_INT(doc.toks[0].size, N);
    long long v = -1;
    CHECK_INT(is_json_int(&doc, N, &v), IS_OK);
    CHECK_INT(v, (N - 1) % 10);
    is_json_free(&doc);
    free(arr);
}

/* Fails each allocation in turn until parsing succeeds: every failure is
 * IS_ENOMEM, is_json_free cleans up, and nothing leaks. */
static void test_oom(void) {
    size_t base = is_alloc_used();
    char *text = malloc(64 * 1024);
    size_t p = 0;
    text[p++] = '[';
    for (int i = 0; i < 2000; i++)
        p += (size_t)sprintf(text + p, "%s{\"k\":\"v\\u00e9\"}", i ? "," : "");
    text[p++] = ']';
    int failures = 0;
    for (long fail = 1;; fail++) {
        is_json_t doc;
        is_alloc_fail_after(fail);
        int rc = is_json_parse(&doc, text, p, NULL);
        is_alloc_fail_after(0);
        if (rc == IS_OK) {
            CHECK_INT(doc.ntoks, 1 + 2000 * 3);
            is_json_free(&doc);
            break;
        }
        CHECK_INT(rc, IS_ENOMEM);
        failures++;
        is_json_free(&doc);
        CHECK_INT(is_alloc_used(), base);
    }
    CHECK(failures > 5);  /* the token array grew several times */

    is_json_t doc;
    CHECK_INT(is_json_parse(&doc, text, p, NULL), IS_OK);
    char *out = NULL;
    is_alloc_fail_after(1);
    CHECK_INT(is_json_strdup(&doc, 3, &out), IS_ENOMEM);
    CHECK(out == NULL);
    is_alloc_fail_after(0);
    CHECK_INT(is_json_strdup(&doc, 3, &out), IS_OK);
    CHECK_STR(out, "v\xc3\xa9");
    is_free(out);
    is_json_free(&doc);
    free(text);
    CHECK_INT(is_alloc_used(), base);
}

/* What is left of s once the member at path is cut, or NULL. */
static char *without(const char *s, const char *path) {
    is_json_t doc;
    static char out[512];
    size_t a, b;
    char *res = NULL;
    if (parse_str(&doc, s, NULL) == IS_OK && is_json_member_span(&doc, 0, path, &a, &b) == IS_OK) {
        snprintf(out, sizeof out, "%.*s%s", (int)a, s, s + b);
        res = out;
    }
    is_json_free(&doc);
    return res;
}

static void test_member_span(void) {
    const char *s = "{\"metadata\": {\"name\": \"a\", \"managedFields\": [{\"x\": 1}], \"uid\": \"u\"}, \"spec\": {}}";
    CHECK_STR(without(s, "metadata.managedFields"), "{\"metadata\": {\"name\": \"a\", \"uid\": \"u\"}, \"spec\": {}}");
    CHECK_STR(without(s, "metadata.name"), "{\"metadata\": {\"managedFields\": [{\"x\": 1}], \"uid\": \"u\"}, \"spec\": {}}");
    CHECK_STR(without(s, "metadata.uid"), "{\"metadata\": {\"name\": \"a\", \"managedFields\": [{\"x\": 1}]}, \"spec\": {}}");
    CHECK_STR(without(s, "spec"), "{\"metadata\": {\"name\": \"a\", \"managedFields\": [{\"x\": 1}], \"uid\": \"u\"}}");
    CHECK_STR(without("{\"m\":{\"only\":\"x\"}}", "m.only"), "{\"m\":{}}");
    CHECK_STR(without("{\"a\":\"s\",\"b\":true}", "b"), "{\"a\":\"s\"}");
    CHECK(without(s, "metadata.absent") == NULL);
    CHECK(without(s, "absent.managedFields") == NULL);
    CHECK(without(s, "metadata.name.deeper") == NULL);
    /* Every cut leaves valid JSON. */
    is_json_t doc;
    CHECK_INT(parse_str(&doc, without(s, "metadata.managedFields"), NULL), IS_OK);
    is_json_free(&doc);
}

int main(void) {
    RUN(test_valid_table);
    RUN(test_invalid_table);
    RUN(test_token_layout);
    RUN(test_lookups);
    RUN(test_strdup_escapes);
    RUN(test_int);
    RUN(test_raw);
    RUN(test_member_span);
    RUN(test_depth_limit);
    RUN(test_large_document);
    RUN(test_oom);
    TESTING_DONE();
}

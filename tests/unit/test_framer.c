/* Watch stream framing: every way of chunking a stream must yield the same
 * lines; limits, aborts and OOM behave. */
#include "is_alloc.h"
#include "is_err.h"
#include "is_framer.h"
#include "is_json.h"
#include "testing.h"

/* Lines received, joined with "\n" (lines never contain one). Plain malloc
 * so the allocator's failure hook does not touch the harness. */
typedef struct {
    char *text;
    size_t len, cap;
    int count;
    int stop_at;   /* return stop_rc on this line (1-based); 0 = never */
    int stop_rc;
} collector_t;

static void collector_init(collector_t *c) {
    memset(c, 0, sizeof *c);
}

static int collect(const char *line, size_t len, void *data) {
    collector_t *c = data;
    if (c->len + len + 1 > c->cap) {
        c->cap = (c->len + len + 1) * 2;
        c->text = realloc(c->text, c->cap);
    }
    if (c->count > 0)
        c->text[c->len++] = '\n';
    memcpy(c->text + c->len, line, len);
    c->len += len;
    c->count++;
    return c->count == c->stop_at ? c->stop_rc : 0;
}

static int same_lines(const collector_t *a, const collector_t *b) {
    return a->count == b->count && a->len == b->len &&
           (a->len == 0 || memcmp(a->text, b->text, a->len) == 0);
}

/* The expected lines, split by the simplest possible means. */
static void expected_lines(collector_t *c, const char *s, size_t len) {
    collector_init(c);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\n')
            continue;
        size_t end = i;
        if (end > start && s[end - 1] == '\r')
            end--;
        if (end > start)
            collect(s + start, end - start, c);
        start = i + 1;
    }
}

/* Feeds s in chunks cut at the given offsets (ascending). */
static int feed_cuts(is_framer_t *f, const char *s, size_t len, const size_t *cuts,
                     size_t ncuts, collector_t *c) {
    size_t prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        int rc = is_framer_feed(f, s + prev, next - prev, collect, c);
        if (rc != IS_OK)
            return rc;
        prev = next;
    }
    return IS_OK;
}

static int feed_chunked(is_framer_t *f, const char *s, size_t len, size_t chunk,
                        collector_t *c) {
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = is_framer_feed(f, s + off, n, collect, c);
        if (rc != IS_OK)
            return rc;
    }
    return IS_OK;
}

/* Every single split point, and byte by byte, give the same lines. */
static void check_all_splits(const char *s, size_t len, size_t max_line) {
    collector_t want, got;
    expected_lines(&want, s, len);
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        is_framer_t f;
        is_framer_init(&f, max_line);
        collector_init(&got);
        if (feed_cuts(&f, s, len, &cut, 1, &got) != IS_OK || !same_lines(&got, &want))
            bad++;
        CHECK_INT(f.pending.len, 0);
        is_framer_free(&f);
        free(got.text);
    }
    CHECK_INT(bad, 0);
    is_framer_t f;
    is_framer_init(&f, max_line);
    collector_init(&got);
    CHECK_INT(feed_chunked(&f, s, len, 1, &got), IS_OK);
    CHECK(same_lines(&got, &want));
    is_framer_free(&f);
    free(got.text);
    free(want.text);
}

static void test_fixture_stream(void) {
    size_t len;
    char *s = testing_fixture("watch/events.jsonl", &len);
    collector_t want;
    expected_lines(&want, s, len);
    CHECK_INT(want.count, 5);
    /* Each line is one whole, valid watch event. */
    static const char *types[] = { "ADDED", "MODIFIED", "BOOKMARK", "DELETED", "ERROR" };
    const char *line = want.text;
    for (int i = 0; i < want.count; i++) {
        const char *end = memchr(line, '\n', want.len - (size_t)(line - want.text));
        size_t n = end ? (size_t)(end - line) : want.len - (size_t)(line - want.text);
        is_json_t doc;
        CHECK_INT(is_json_parse(&doc, line, n, NULL), IS_OK);
        char *type = NULL;
        CHECK_INT(is_json_strdup(&doc, is_json_get(&doc, 0, "type"), &type), IS_OK);
        CHECK_STR(type, types[i]);
        is_free(type);
        is_json_free(&doc);
        line += n + 1;
    }
    free(want.text);
    check_all_splits(s, len, 0);
    check_all_splits(s, len, 4096);
    free(s);
}

static void test_crlf_and_blank_lines(void) {
    size_t len;
    char *s = testing_fixture("watch/events.jsonl", &len);
    /* Rewrite with "\r\n" endings and blank lines between the events. */
    char *crlf = malloc(len * 2 + 16);
    size_t n = 0;
    memcpy(crlf, "\r\n\n", 3);
    n = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            memcpy(crlf + n, "\r\n\r\n\n", 5);
            n += 5;
        } else {
            crlf[n++] = s[i];
        }
    }
    is_framer_t f;
    is_framer_init(&f, 0);
    collector_t plain, got;
    expected_lines(&plain, s, len);
    collector_init(&got);
    CHECK_INT(is_framer_feed(&f, crlf, n, collect, &got), IS_OK);
    CHECK(same_lines(&got, &plain));  /* no "\r" survives, no empty line */
    is_framer_free(&f);
    free(got.text);
    free(plain.text);
    check_all_splits(crlf, n, 0);
    free(crlf);
    free(s);

    /* Only one "\r" is stripped; a "\r" elsewhere is data. */
    const char *odd = "a\rb\r\r\nc\r\n\r\n";
    is_framer_init(&f, 0);
    collector_init(&got);
    CHECK_INT(is_framer_feed(&f, odd, strlen(odd), collect, &got), IS_OK);
    CHECK_INT(got.count, 2);
    CHECK(got.len == 6 && memcmp(got.text, "a\rb\r\nc", 6) == 0);
    is_framer_free(&f);
    free(got.text);
}

/* A > 1.5 MiB event with multi-byte characters between small ones. */
static char *big_stream(size_t *len, size_t *big_start, size_t *big_len) {
    static const char *pieces[] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "bc" };
    size_t cap = 2 * 1024 * 1024;
    char *s = malloc(cap);
    size_t n = (size_t)sprintf(s, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"small\"}}}\n");
    *big_start = n;
    n += (size_t)sprintf(s + n, "{\"type\":\"MODIFIED\",\"object\":{\"data\":\"");
    for (int i = 0; n < 1600 * 1024; i++) {
        size_t k = strlen(pieces[i % 5]);
        memcpy(s + n, pieces[i % 5], k);
        n += k;
    }
    n += (size_t)sprintf(s + n, "\"}}");
    *big_len = n - *big_start;
    n += (size_t)sprintf(s + n, "\r\n{\"type\":\"DELETED\",\"object\":{}}\n");
    *len = n;
    return s;
}

static void test_big_event(void) {
    size_t len, big_start, big_len;
    char *s = big_stream(&len, &big_start, &big_len);
    CHECK(big_len > 1536 * 1024);
    collector_t want, got;
    expected_lines(&want, s, len);
    CHECK_INT(want.count, 3);

    /* Two-chunk splits at many points, including every byte of several
     * multi-byte characters and both sides of each newline. */
    size_t cuts[256];
    size_t ncuts = 0;
    for (size_t p = 1; p < len; p += 16411)
        cuts[ncuts++] = p;
    for (size_t p = big_start + 200000; p < big_start + 200040; p++)
        cuts[ncuts++] = p;
    for (size_t p = big_start - 2; p <= big_start + 2; p++)
        cuts[ncuts++] = p;
    for (size_t p = big_start + big_len - 2; p <= big_start + big_len + 3; p++)
        cuts[ncuts++] = p;
    int bad = 0, split_utf8 = 0;
    for (size_t i = 0; i < ncuts; i++) {
        if (((unsigned char)s[cuts[i]] & 0xC0) == 0x80)
            split_utf8++;
        is_framer_t f;
        is_framer_init(&f, 2 * 1024 * 1024);
        collector_init(&got);
        if (feed_cuts(&f, s, len, &cuts[i], 1, &got) != IS_OK || !same_lines(&got, &want))
            bad++;
        is_framer_free(&f);
        free(got.text);
    }
    CHECK_INT(bad, 0);
    CHECK(split_utf8 > 20);

    /* All of those cuts at once, then fixed chunk sizes; byte by byte also
     * proves the cost is linear (a rescan per chunk would not finish). */
    for (size_t i = 1; i < ncuts; i++)  /* insertion sort: few, nearly sorted */
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j]; cuts[j] = cuts[j - 1]; cuts[j - 1] = t;
        }
    is_framer_t f;
    is_framer_init(&f, 0);
    collector_init(&got);
    CHECK_INT(feed_cuts(&f, s, len, cuts, ncuts, &got), IS_OK);
    CHECK(same_lines(&got, &want));
    free(got.text);
    static const size_t chunks[] = { 1, 3, 7, 1000, 4096, 16384, 65536, 1 << 20 };
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        collector_init(&got);
        CHECK_INT(feed_chunked(&f, s, len, chunks[i], &got), IS_OK);
        CHECK(same_lines(&got, &want));
        free(got.text);
    }
    is_framer_free(&f);
    free(want.text);
    free(s);
}

static void test_line_cap(void) {
    is_framer_t f;
    collector_t got;
    char line[300];
    memset(line, 'x', sizeof line);

    /* Exactly at the cap is fine, with or without "\r". */
    is_framer_init(&f, 100);
    collector_init(&got);
    line[100] = '\n';
    CHECK_INT(is_framer_feed(&f, line, 101, collect, &got), IS_OK);
    line[100] = '\r';
    line[101] = '\n';
    CHECK_INT(feed_chunked(&f, line, 102, 10, &got), IS_OK);
    CHECK_INT(got.count, 2);
    CHECK_INT(got.len, 201);
    free(got.text);

    /* One over, whole in a chunk. */
    collector_init(&got);
    line[100] = 'x';
    line[101] = '\n';
    CHECK_INT(is_framer_feed(&f, line, 102, collect, &got), IS_ELIMIT);
    CHECK_INT(got.count, 0);
    CHECK_INT(f.pending.len, 0);
    /* One over, split. */
    CHECK_INT(is_framer_feed(&f, line, 50, collect, &got), IS_OK);
    CHECK_INT(is_framer_feed(&f, line + 50, 52, collect, &got), IS_ELIMIT);
    CHECK_INT(got.count, 0);
    /* Over the cap with no newline yet: refused before it is buffered. */
    CHECK_INT(is_framer_feed(&f, line, 90, collect, &got), IS_OK);
    CHECK_INT(is_framer_feed(&f, line, 90, collect, &got), IS_ELIMIT);
    CHECK_INT(f.pending.len, 0);
    /* After the error the framer works again. */
    CHECK_INT(is_framer_feed(&f, "ok\n", 3, collect, &got), IS_OK);
    CHECK_INT(got.count, 1);
    CHECK(got.len == 2 && memcmp(got.text, "ok", 2) == 0);
    free(got.text);
    is_framer_free(&f);
}

static void test_callback_abort(void) {
    size_t len;
    char *s = testing_fixture("watch/events.jsonl", &len);
    for (size_t chunk = 1; chunk <= len; chunk = chunk * 3 + 1) {
        is_framer_t f;
        is_framer_init(&f, 0);
        collector_t got;
        collector_init(&got);
        got.stop_at = 2;
        got.stop_rc = 42;
        CHECK_INT(feed_chunked(&f, s, len, chunk, &got), 42);
        CHECK_INT(got.count, 2);
        CHECK_INT(f.pending.len, 0);
        is_framer_free(&f);
        free(got.text);
    }
    /* A negative status from the callback comes back unchanged too. */
    is_framer_t f;
    is_framer_init(&f, 0);
    collector_t got;
    collector_init(&got);
    got.stop_at = 1;
    got.stop_rc = IS_ELUA;
    CHECK_INT(is_framer_feed(&f, s, len, collect, &got), IS_ELUA);
    CHECK_INT(got.count, 1);
    is_framer_free(&f);
    free(got.text);
    free(s);
}

static void test_reset(void) {
    is_framer_t f;
    is_framer_init(&f, 0);
    collector_t got;
    collector_init(&got);
    CHECK_INT(is_framer_feed(&f, "{\"partial", 9, collect, &got), IS_OK);
    CHECK_INT(f.pending.len, 9);
    is_framer_reset(&f);
    CHECK_INT(f.pending.len, 0);
    CHECK_INT(is_framer_feed(&f, "{}\n", 3, collect, &got), IS_OK);
    CHECK_INT(got.count, 1);
    CHECK(got.len == 2 && memcmp(got.text, "{}", 2) == 0);
    CHECK_INT(is_framer_feed(&f, NULL, 0, collect, &got), IS_OK);
    is_framer_free(&f);
    free(got.text);
}

static void test_oom(void) {
    size_t base = is_alloc_used();
    is_framer_t f;
    is_framer_init(&f, 0);
    collector_t got;
    collector_init(&got);
    /* Whole lines inside one chunk are passed through without copying. */
    is_alloc_fail_after(1);
    CHECK_INT(is_framer_feed(&f, "a\nb\n", 4, collect, &got), IS_OK);
    CHECK_INT(got.count, 2);
    /* A partial line must be buffered. */
    CHECK_INT(is_framer_feed(&f, "c\nparti", 7, collect, &got), IS_ENOMEM);
    CHECK_INT(got.count, 3);
    CHECK_INT(f.pending.len, 0);
    is_alloc_fail_after(0);
    CHECK_INT(is_framer_feed(&f, "parti", 5, collect, &got), IS_OK);
    /* Growing the buffer for a long continuation fails cleanly too. */
    char more[5000];
    memset(more, 'y', sizeof more);
    is_alloc_fail_after(1);
    CHECK_INT(is_framer_feed(&f, more, sizeof more, collect, &got), IS_ENOMEM);
    CHECK_INT(f.pending.len, 0);
    is_alloc_fail_after(0);
    CHECK_INT(is_framer_feed(&f, "al\n", 3, collect, &got), IS_OK);
    CHECK_INT(got.count, 4);
    CHECK(got.len == 8 && memcmp(got.text, "a\nb\nc\nal", 8) == 0);
    is_framer_free(&f);
    free(got.text);
    CHECK_INT(is_alloc_used(), base);
}

int main(void) {
    RUN(test_fixture_stream);
    RUN(test_crlf_and_blank_lines);
    RUN(test_big_event);
    RUN(test_line_cap);
    RUN(test_callback_abort);
    RUN(test_reset);
    RUN(test_oom);
    TESTING_DONE();
}

/* Growable buffer: content, NUL termination, encoders and OOM safety. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_buf.h"
#include "is_err.h"
#include "testing.h"

static void test_append_and_nul(void) {
    is_buf_t b;
    is_buf_init(&b);
    CHECK(b.data == NULL);
    CHECK_INT(is_buf_append(&b, "abc", 3), IS_OK);
    CHECK_INT(b.len, 3);
    CHECK_STR(b.data, "abc");
    CHECK_INT(is_buf_appends(&b, "def"), IS_OK);
    CHECK_STR(b.data, "abcdef");
    CHECK_INT(is_buf_append(&b, "", 0), IS_OK);
    CHECK_INT(b.len, 6);
    /* Growth across many reallocations keeps every byte. */
    for (int i = 0; i < 10000; i++)
        CHECK_INT(is_buf_append(&b, "0123456789", 10), IS_OK);
    CHECK_INT(b.len, 100006);
    CHECK(b.cap > b.len);
    CHECK_INT(b.data[b.len], '\0');
    CHECK(memcmp(b.data + 6 + 9990, "0123456789", 10) == 0);
    size_t cap = b.cap;
    is_buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK_INT(b.cap, cap);
    CHECK_STR(b.data, "");
    is_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
}

static void test_printf(void) {
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_buf_printf(&b, "%d-%s", 42, "x"), IS_OK);
    CHECK_STR(b.data, "42-x");
    /* Longer than the spare room: must grow and retry. */
    char big[3000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_INT(is_buf_printf(&b, "[%s]", big), IS_OK);
    CHECK_INT(b.len, 4 + 2 + 2999);
    CHECK_INT(b.data[4], '[');
    CHECK_INT(b.data[b.len - 1], ']');
    CHECK_INT(b.data[b.len], '\0');
    CHECK_INT(is_buf_printf(&b, "%s", ""), IS_OK);
    CHECK_INT(b.len, 4 + 2 + 2999);
    is_buf_free(&b);
}

static void test_urlenc(void) {
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_buf_append_urlenc(&b, "a-Z_0.9~"), IS_OK);
    CHECK_STR(b.data, "a-Z_0.9~");
    is_buf_reset(&b);
    CHECK_INT(is_buf_append_urlenc(&b, "app=x,tier in (a b)/é&?"), IS_OK);
    CHECK_STR(b.data, "app%3Dx%2Ctier%20in%20%28a%20b%29%2F%C3%A9%26%3F");
    is_buf_free(&b);
}

static void test_jsonstr(void) {
    is_buf_t b;
    is_buf_init(&b);
    const char in[] = "q\"b\\n\n\r\t\b\f\x01\x1f\x7f é";
    CHECK_INT(is_buf_append_jsonstr(&b, in, sizeof in - 1), IS_OK);
    CHECK_STR(b.data, "\"q\\\"b\\\\n\\n\\r\\t\\b\\f\\u0001\\u001F\x7f é\"");
    is_buf_reset(&b);
    /* Length-delimited: an embedded NUL is escaped, not a terminator. */
    CHECK_INT(is_buf_append_jsonstr(&b, "a\0b", 3), IS_OK);
    CHECK_STR(b.data, "\"a\\u0000b\"");
    is_buf_reset(&b);
    CHECK_INT(is_buf_append_jsonstr(&b, "", 0), IS_OK);
    CHECK_STR(b.data, "\"\"");
    is_buf_free(&b);
}

static void test_consume_and_steal(void) {
    is_buf_t b;
    is_buf_init(&b);
    is_buf_appends(&b, "hello world");
    is_buf_consume(&b, 6);
    CHECK_STR(b.data, "world");
    CHECK_INT(b.len, 5);
    is_buf_consume(&b, 100);
    CHECK_INT(b.len, 0);
    CHECK_STR(b.data, "");
    is_buf_appends(&b, "mine");
    size_t len = 99;
    char *s = is_buf_steal(&b, &len);
    CHECK_STR(s, "mine");
    CHECK_INT(len, 4);
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    CHECK_INT(b.cap, 0);
    is_free(s);
    /* An untouched buffer still yields a real empty string. */
    s = is_buf_steal(&b, &len);
    CHECK(s != NULL);
    CHECK_STR(s, "");
    CHECK_INT(len, 0);
    is_free(s);
}

/* Every fallible call returns IS_ENOMEM and leaves the content intact. */
static void test_oom(void) {
    size_t base = is_alloc_used();
    is_buf_t b;
    is_buf_init(&b);
    is_alloc_fail_after(1);
    CHECK_INT(is_buf_appends(&b, "x"), IS_ENOMEM);
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    CHECK_INT(is_buf_printf(&b, "%d", 1), IS_ENOMEM);
    CHECK(b.data == NULL);
    is_alloc_fail_after(0);

    CHECK_INT(is_buf_appends(&b, "keep"), IS_OK);
    char big[500];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    is_alloc_fail_after(1);
    CHECK_INT(is_buf_appends(&b, big), IS_ENOMEM);
    CHECK_STR(b.data, "keep");
    CHECK_INT(is_buf_printf(&b, "%s", big), IS_ENOMEM);
    CHECK_STR(b.data, "keep");
    CHECK_INT(b.len, 4);
    CHECK_INT(is_buf_append_urlenc(&b, big), IS_ENOMEM);
    CHECK_STR(b.data, "keep");
    CHECK_INT(is_buf_append_jsonstr(&b, big, strlen(big)), IS_ENOMEM);
    CHECK_STR(b.data, "keep");
    CHECK_INT(is_buf_reserve(&b, 1000), IS_ENOMEM);
    CHECK_INT(is_buf_reserve(&b, (size_t)-1), IS_ENOMEM);
    /* Appends that fit the existing capacity need no allocation. */
    CHECK_INT(is_buf_appends(&b, "!"), IS_OK);
    CHECK_STR(b.data, "keep!");
    is_alloc_fail_after(0);

    is_buf_t empty;
    is_buf_init(&empty);
    is_alloc_fail_after(1);
    size_t len = 7;
    CHECK(is_buf_steal(&empty, &len) == NULL);
    CHECK_INT(len, 0);
    is_alloc_fail_after(0);

    is_buf_free(&b);
    CHECK_INT(is_alloc_used(), base);
}

static void test_append_file(void) {
    char path[] = "/tmp/test_buf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    /* Larger than one read chunk, so the loop is exercised. */
    static char text[20000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    CHECK_INT((int)write(fd, text, sizeof text), (int)sizeof text);
    close(fd);

    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_buf_appends(&b, "<"), IS_OK);
    CHECK_INT(is_buf_append_file(&b, path, sizeof text), IS_OK);
    CHECK_INT(b.len, sizeof text + 1);
    CHECK(memcmp(b.data + 1, text, sizeof text) == 0);
    CHECK_INT(b.data[b.len], 0);

    /* Over the cap, unreadable, out of memory: the buffer stays as it was. */
    CHECK_INT(is_buf_append_file(&b, path, sizeof text - 1), IS_ELIMIT);
    CHECK_INT(b.len, sizeof text + 1);
    is_buf_reset(&b);
    CHECK_INT(is_buf_append_file(&b, "/nonexistent/file", 100), IS_EIO);
    CHECK_INT(errno, ENOENT);
    CHECK_INT(is_buf_append_file(&b, "/tmp", 100), IS_EIO);
    CHECK_INT(b.len, 0);
    is_buf_free(&b);
    is_alloc_fail_after(2);
    CHECK_INT(is_buf_append_file(&b, path, sizeof text), IS_ENOMEM);
    is_alloc_fail_after(0);
    CHECK_INT(b.len, 0);
    is_buf_free(&b);
    unlink(path);
}

int main(void) {
    RUN(test_append_and_nul);
    RUN(test_append_file);
    RUN(test_printf);
    RUN(test_urlenc);
    RUN(test_jsonstr);
    RUN(test_consume_and_steal);
    RUN(test_oom);
    TESTING_DONE();
}

/* The counting allocator: exact accounting and the failure hook. */
#include <stdint.h>

#include "is_alloc.h"
#include "testing.h"

static void test_counts_exact_sizes(void) {
    size_t base = is_alloc_used();
    char *a = is_malloc(100);
    CHECK(a != NULL);
    CHECK_INT(is_alloc_used() - base, 100);
    char *b = is_calloc(3, 7);
    CHECK(b != NULL);
    CHECK_INT(is_alloc_used() - base, 121);
    for (int i = 0; i < 21; i++)
        CHECK_INT(b[i], 0);
    memset(a, 'x', 100);
    a = is_realloc(a, 5000);
    CHECK(a != NULL);
    CHECK_INT(a[99], 'x');
    CHECK_INT(is_alloc_used() - base, 5021);
    a = is_realloc(a, 10);
    CHECK_INT(a[9], 'x');
    CHECK_INT(is_alloc_used() - base, 31);
    is_free(a);
    is_free(b);
    CHECK_INT(is_alloc_used(), base);
}

static void test_alignment(void) {
    for (size_t n = 1; n < 64; n++) {
        void *p = is_malloc(n);
        CHECK(((uintptr_t)p % _Alignof(max_align_t)) == 0);
        is_free(p);
    }
}

static void test_free_null_and_realloc_edges(void) {
    size_t base = is_alloc_used();
    is_free(NULL);
    CHECK_INT(is_alloc_used(), base);
    void *p = is_realloc(NULL, 32);  /* behaves as malloc */
    CHECK(p != NULL);
    CHECK_INT(is_alloc_used() - base, 32);
    CHECK(is_realloc(p, 0) == NULL); /* behaves as free */
    CHECK_INT(is_alloc_used(), base);
}

static void test_overflow_is_refused(void) {
    size_t base = is_alloc_used();
    CHECK(is_malloc(SIZE_MAX) == NULL);
    CHECK(is_calloc(SIZE_MAX / 2, 3) == NULL);
    void *p = is_malloc(8);
    CHECK(is_realloc(p, SIZE_MAX - 4) == NULL);
    is_free(p);  /* still valid after the refused realloc */
    CHECK_INT(is_alloc_used(), base);
}

static void test_strdup(void) {
    size_t base = is_alloc_used();
    char *s = is_strdup("hello");
    CHECK_STR(s, "hello");
    CHECK_INT(is_alloc_used() - base, 6);
    char *t = is_strndup("abcdef", 3);
    CHECK_STR(t, "abc");
    char *u = is_strndup("a\0b", 3);
    CHECK(u && memcmp(u, "a\0b\0", 4) == 0);
    is_free(s);
    is_free(t);
    is_free(u);
    CHECK_INT(is_alloc_used(), base);
}

static void test_fail_after(void) {
    size_t base = is_alloc_used();
    is_alloc_fail_after(3);
    void *a = is_malloc(1);
    void *b = is_calloc(1, 1);
    void *c = is_malloc(1);     /* the third fails */
    void *d = is_strdup("x");   /* and every later one */
    CHECK(a != NULL);
    CHECK(b != NULL);
    CHECK(c == NULL);
    CHECK(d == NULL);
    void *r = is_realloc(a, 100);
    CHECK(r == NULL);
    is_free(b);
    is_free(is_realloc(a, 0));  /* freeing never fails */
    CHECK_INT(is_alloc_used(), base);
    is_alloc_fail_after(0);
    void *e = is_malloc(1);
    CHECK(e != NULL);
    is_free(e);

    is_alloc_fail_after(1);
    CHECK(is_malloc(1) == NULL);
    is_alloc_fail_after(0);
    CHECK_INT(is_alloc_used(), base);
}

int main(void) {
    RUN(test_counts_exact_sizes);
    RUN(test_alignment);
    RUN(test_free_null_and_realloc_edges);
    RUN(test_overflow_is_refused);
    RUN(test_strdup);
    RUN(test_fail_after);
    TESTING_DONE();
}

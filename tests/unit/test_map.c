/* String map: lookups, replacement, deletion with tombstones, iteration,
 * growth, and OOM safety. */
#include <stdint.h>
#include <stdio.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_map.h"
#include "testing.h"

/* Distinct non-NULL values without allocating. */
static char values[20000];
#define VAL(i) ((void *)&values[i])

static void key_of(char *out, size_t n, int i) {
    snprintf(out, n, "ns-%d/obj-%d", i % 17, i);
}

static void test_basic(void) {
    is_map_t m;
    is_map_init(&m);
    CHECK(is_map_get(&m, "a") == NULL);
    CHECK(!is_map_has(&m, "a"));
    CHECK(is_map_del(&m, "a") == NULL);
    void *old = VAL(9);
    CHECK_INT(is_map_set(&m, "a", VAL(1), &old), IS_OK);
    CHECK(old == NULL);
    CHECK(is_map_get(&m, "a") == VAL(1));
    CHECK(is_map_has(&m, "a"));
    CHECK_INT(is_map_set(&m, "a", VAL(2), &old), IS_OK);
    CHECK(old == VAL(1));
    CHECK_INT(m.len, 1);
    CHECK(is_map_get(&m, "a") == VAL(2));
    /* A NULL value is still a present key. */
    CHECK_INT(is_map_set(&m, "", NULL, NULL), IS_OK);
    CHECK(is_map_has(&m, ""));
    CHECK_INT(m.len, 2);
    /* Keys are copied. */
    char key[8] = "tmp";
    CHECK_INT(is_map_set(&m, key, VAL(3), NULL), IS_OK);
    key[0] = 'X';
    CHECK(is_map_get(&m, "tmp") == VAL(3));
    CHECK(is_map_del(&m, "a") == VAL(2));
    CHECK(!is_map_has(&m, "a"));
    CHECK_INT(m.len, 2);
    is_map_free(&m, NULL);
    CHECK_INT(m.len, 0);
    CHECK(m.slots == NULL);
}

static void test_hash(void) {
    /* Published FNV-1a 64 test vectors. */
    CHECK(is_map_hash("") == 0xcbf29ce484222325ULL);
    CHECK(is_map_hash("a") == 0xaf63dc4c8601ec8cULL);
    CHECK(is_map_hash("foobar") == 0x85944171f73967e8ULL);
}

static void test_many_keys_and_deletes(void) {
    enum { N = 20000 };
    size_t base = is_alloc_used();
    is_map_t m;
    is_map_init(&m);
    char key[64];
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof key, i);
        CHECK_INT(is_map_set(&m, key, VAL(i), NULL), IS_OK);
    }
    CHECK_INT(m.len, N);
    CHECK((m.cap & (m.cap - 1)) == 0);
    CHECK(m.used * 10 <= m.cap * 7);
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof key, i);
        if (is_map_get(&m, key) != VAL(i)) {
            CHECK(!"lookup after insert");
            break;
        }
    }
    /* Delete the odd keys; the even ones must stay reachable across the
     * tombstones left in their probe chains. */
    for (int i = 1; i < N; i += 2) {
        key_of(key, sizeof key, i);
        CHECK(is_map_del(&m, key) == VAL(i));
    }
    CHECK_INT(m.len, N / 2);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof key, i);
        void *want = (i % 2) ? NULL : VAL(i);
        if (is_map_get(&m, key) != want || is_map_has(&m, key) != (i % 2 == 0))
            bad++;
    }
    CHECK_INT(bad, 0);
    /* Iteration sees each live entry exactly once. */
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    size_t iter = 0, count = 0;
    const char *k;
    void *v;
    while (is_map_next(&m, &iter, &k, &v)) {
        int idx = (int)((char *)v - values);
        CHECK(idx >= 0 && idx < N && idx % 2 == 0);
        key_of(key, sizeof key, idx);
        CHECK_STR(k, key);
        seen[idx]++;
        count++;
    }
    CHECK_INT(count, N / 2);
    for (int i = 0; i < N; i += 2)
        if (seen[i] != 1)
            bad++;
    CHECK_INT(bad, 0);
    /* Reinsert the deleted keys over the tombstones: nothing duplicated. */
    size_t cap_before = m.cap;
    for (int i = 1; i < N; i += 2) {
        key_of(key, sizeof key, i);
        void *old = VAL(0);
        CHECK_INT(is_map_set(&m, key, VAL(i), &old), IS_OK);
        CHECK(old == NULL);
    }
    CHECK_INT(m.len, N);
    CHECK_INT(m.cap, cap_before);
    for (int i = 0; i < N; i++) {
        key_of(key, sizeof key, i);
        if (is_map_get(&m, key) != VAL(i))
            bad++;
    }
    CHECK_INT(bad, 0);
    is_map_free(&m, NULL);
    CHECK_INT(is_alloc_used(), base);
}

/* Churn with a small live set: tombstones must not fill the table (every
 * probe would then loop) nor make it grow without bound. */
static void test_churn_bounded(void) {
    is_map_t m;
    is_map_init(&m);
    char key[64];
    for (int i = 0; i < 100000; i++) {
        key_of(key, sizeof key, i);
        CHECK_INT(is_map_set(&m, key, VAL(i % 100), NULL), IS_OK);
        if (i >= 5) {
            key_of(key, sizeof key, i - 5);
            CHECK(is_map_del(&m, key) == VAL((i - 5) % 100));
        }
    }
    CHECK_INT(m.len, 5);
    CHECK(m.cap <= 64);
    CHECK(m.used < m.cap);
    is_map_free(&m, NULL);
}

static void test_delete_while_iterating(void) {
    is_map_t m;
    is_map_init(&m);
    char key[64];
    for (int i = 0; i < 500; i++) {
        key_of(key, sizeof key, i);
        is_map_set(&m, key, VAL(i), NULL);
    }
    size_t iter = 0, visited = 0;
    const char *k;
    void *v;
    while (is_map_next(&m, &iter, &k, &v)) {
        visited++;
        int idx = (int)((char *)v - values);
        if (idx % 3 == 0)
            CHECK(is_map_del(&m, k) == v);
    }
    CHECK_INT(visited, 500);
    CHECK_INT(m.len, 500 - 167);
    for (int i = 0; i < 500; i++) {
        key_of(key, sizeof key, i);
        CHECK_INT(is_map_has(&m, key), i % 3 != 0);
    }
    is_map_free(&m, NULL);
}

static int freed_count;
static void count_free(void *p) {
    freed_count++;
    is_free(p);
}

static void test_free_values(void) {
    size_t base = is_alloc_used();
    is_map_t m;
    is_map_init(&m);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        is_map_set(&m, key, is_strdup(key), NULL);
    }
    is_free(is_map_del(&m, "k7"));
    freed_count = 0;
    is_map_free(&m, count_free);
    CHECK_INT(freed_count, 49);
    CHECK_INT(is_alloc_used(), base);
}

/* Fails each allocation of a growing workload in turn: every failure must
 * be IS_ENOMEM with the map still holding exactly what it held before. */
static void test_oom(void) {
    size_t base = is_alloc_used();
    char key[64];
    for (long fail = 1; fail < 40; fail++) {
        is_map_t m;
        is_map_init(&m);
        int inserted = 0, got_enomem = 0;
        is_alloc_fail_after(fail);
        for (int i = 0; i < 40; i++) {
            key_of(key, sizeof key, i);
            int rc = is_map_set(&m, key, VAL(i), NULL);
            if (rc == IS_ENOMEM) {
                got_enomem = 1;
                CHECK(!is_map_has(&m, key));
                break;
            }
            CHECK_INT(rc, IS_OK);
            inserted++;
        }
        is_alloc_fail_after(0);
        CHECK(got_enomem);
        CHECK_INT(m.len, inserted);
        for (int i = 0; i < inserted; i++) {
            key_of(key, sizeof key, i);
            CHECK(is_map_get(&m, key) == VAL(i));
        }
        /* Still usable afterwards. */
        CHECK_INT(is_map_set(&m, "after", VAL(1), NULL), IS_OK);
        CHECK(is_map_get(&m, "after") == VAL(1));
        /* Replacing an existing key needs no memory. */
        is_alloc_fail_after(1);
        CHECK_INT(is_map_set(&m, "after", VAL(2), NULL), IS_OK);
        CHECK(is_map_del(&m, "after") == VAL(2));
        is_alloc_fail_after(0);
        is_map_free(&m, NULL);
    }
    CHECK_INT(is_alloc_used(), base);
}

int main(void) {
    RUN(test_basic);
    RUN(test_hash);
    RUN(test_many_keys_and_deletes);
    RUN(test_churn_bounded);
    RUN(test_delete_while_iterating);
    RUN(test_free_values);
    RUN(test_oom);
    TESTING_DONE();
}

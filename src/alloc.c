/* The counting allocator.
 *
 * Each block carries a small header with its size, so is_free and
 * is_realloc can keep is_alloc_used() exact without asking libc (which has
 * no portable way to tell a block's size). The header is as large as
 * max_align_t so the caller's pointer keeps malloc's alignment guarantee. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"

typedef union alloc_header_u {
    size_t size;
    max_align_t align__;
} alloc_header_t;

#define HEADER_SIZE sizeof(alloc_header_t)

/* Atomics cost nothing measurable here and keep the counter right should a
 * library ever call back into us from a worker thread. */
static atomic_size_t alloc_used;
static atomic_long alloc_countdown;  /* > 0: allocations left before failing */
static atomic_int alloc_failing;

/* Decides whether this allocation is the one a test asked to fail. */
static int alloc_should_fail(void) {
    if (atomic_load(&alloc_failing))
        return 1;
    long left = atomic_load(&alloc_countdown);
    if (left > 0 && atomic_fetch_sub(&alloc_countdown, 1) == 1) {
        atomic_store(&alloc_failing, 1);
        return 1;
    }
    return 0;
}

void is_alloc_fail_after(long n) {
    atomic_store(&alloc_failing, 0);
    atomic_store(&alloc_countdown, n > 0 ? n : 0);
}

size_t is_alloc_used(void) {
    return atomic_load(&alloc_used);
}

void *is_malloc(size_t size) {
    if (size > SIZE_MAX - HEADER_SIZE || alloc_should_fail())
        return NULL;
    alloc_header_t *h = malloc(HEADER_SIZE + size);
    if (!h)
        return NULL;
    h->size = size;
    atomic_fetch_add(&alloc_used, size);
    return h + 1;
}

void *is_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = is_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void is_free(void *ptr) {
    if (!ptr)
        return;
    alloc_header_t *h = (alloc_header_t *)ptr - 1;
    atomic_fetch_sub(&alloc_used, h->size);
    free(h);
}

void *is_realloc(void *ptr, size_t size) {
    if (!ptr)
        return is_malloc(size);
    if (size == 0) {
        is_free(ptr);
        return NULL;
    }
    if (size > SIZE_MAX - HEADER_SIZE || alloc_should_fail())
        return NULL;
    alloc_header_t *h = (alloc_header_t *)ptr - 1;
    size_t old = h->size;
    alloc_header_t *nh = realloc(h, HEADER_SIZE + size);
    if (!nh)
        return NULL;  /* the old block is untouched, as with realloc */
    nh->size = size;
    atomic_fetch_sub(&alloc_used, old);
    atomic_fetch_add(&alloc_used, size);
    return nh + 1;
}

char *is_strndup(const char *s, size_t len) {
    if (len == SIZE_MAX)
        return NULL;
    char *p = is_malloc(len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *is_strdup(const char *s) {
    return is_strndup(s, strlen(s));
}

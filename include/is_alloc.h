/* The single allocator.
 *
 * All host memory, including every Lua state's, goes through these functions
 * so that one counter knows what the process holds (exported as a metric and
 * used for the Lua memory cap), and so tests can make the N-th allocation fail
 * to prove that every out-of-memory path returns IS_ENOMEM cleanly. */
#ifndef IS_ALLOC_H
#define IS_ALLOC_H

#include <stddef.h>

void *is_malloc(size_t size);
void *is_calloc(size_t n, size_t size);
void *is_realloc(void *ptr, size_t size);
void is_free(void *ptr);
/* Duplicates a NUL-terminated string; NULL on allocation failure. */
char *is_strdup(const char *s);
/* Duplicates len bytes and appends a NUL; NULL on allocation failure. */
char *is_strndup(const char *s, size_t len);

/* Bytes currently allocated through this allocator. */
size_t is_alloc_used(void);

/* Test hook: the n-th allocation from now (1 = the next) fails, and so does
 * every later one until reset with n = 0. */
void is_alloc_fail_after(long n);

#endif

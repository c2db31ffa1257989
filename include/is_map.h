/* String-keyed hash map (open addressing, linear probing). Keys are copied;
 * values are opaque pointers owned by the caller. */
#ifndef IS_MAP_H
#define IS_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct is_map_slot_s {
    char *key;        /* NULL = empty; IS_MAP_TOMB__ = deleted */
    uint64_t hash;
    void *value;
} is_map_slot_t;

typedef struct is_map_s {
    is_map_slot_t *slots;
    size_t cap;   /* power of two, 0 before first insert */
    size_t len;   /* live entries */
    size_t used;  /* live + tombstones */
} is_map_t;

void is_map_init(is_map_t *m);
/* Frees keys and slots; calls free_value on each value when not NULL. */
void is_map_free(is_map_t *m, void (*free_value)(void *));
/* Inserts or replaces. *old receives the replaced value (NULL if new). */
int is_map_set(is_map_t *m, const char *key, void *value, void **old);
void *is_map_get(const is_map_t *m, const char *key);
int is_map_has(const is_map_t *m, const char *key);
/* Removes key and returns its value (NULL if absent). */
void *is_map_del(is_map_t *m, const char *key);
/* Iterates: start with *iter = 0; returns 0 when done. The map must not be
 * modified during iteration except through is_map_del of the current key. */
int is_map_next(const is_map_t *m, size_t *iter, const char **key, void **value);
uint64_t is_map_hash(const char *s);

#endif

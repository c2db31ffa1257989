/* String-keyed hash map: open addressing with linear probing.
 *
 * Deleted slots become tombstones so probe chains stay intact; the table is
 * rebuilt when live entries plus tombstones pass 70% of the slots, which
 * also sweeps the tombstones out. Each slot caches its key's hash so probing
 * and rebuilding rarely touch the key strings. */
#include <stdint.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_map.h"

/* A unique address marks a deleted slot; it is never a real key. */
static char map_tombstone__;
#define IS_MAP_TOMB__ (&map_tombstone__)

#define MAP_MIN_CAP 8

static int slot_live(const is_map_slot_t *s) {
    return s->key != NULL && s->key != IS_MAP_TOMB__;
}

/* FNV-1a, 64-bit: short keys (namespace/name) hash fast and spread well
 * enough for linear probing once the hash is masked to the table size. */
uint64_t is_map_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

void is_map_init(is_map_t *m) {
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
    m->used = 0;
}

void is_map_free(is_map_t *m, void (*free_value)(void *)) {
    for (size_t i = 0; i < m->cap; i++) {
        is_map_slot_t *s = &m->slots[i];
        if (!slot_live(s))
            continue;
        if (free_value)
            free_value(s->value);
        is_free(s->key);
    }
    is_free(m->slots);
    is_map_init(m);
}

/* Slot holding key, or -1. */
static long map_find(const is_map_t *m, const char *key, uint64_t hash) {
    if (m->cap == 0)
        return -1;
    size_t mask = m->cap - 1;
    /* The load limit guarantees an empty slot, so this loop ends. */
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const is_map_slot_t *s = &m->slots[i];
        if (s->key == NULL)
            return -1;
        if (s->key != IS_MAP_TOMB__ && s->hash == hash && strcmp(s->key, key) == 0)
            return (long)i;
    }
}

/* Rebuilds the table with room for one more entry at no more than 50% load,
 * dropping tombstones. Never shrinks, so a map that was large stays cheap to
 * refill. On failure the old table is kept. */
static int map_rebuild(is_map_t *m) {
    size_t need = m->len + 1;
    size_t cap = m->cap > MAP_MIN_CAP ? m->cap : MAP_MIN_CAP;
    while (need > cap / 2) {
        if (cap > SIZE_MAX / 2 / sizeof(is_map_slot_t))
            return IS_ENOMEM;
        cap *= 2;
    }
    is_map_slot_t *slots = is_calloc(cap, sizeof *slots);
    if (!slots)
        return IS_ENOMEM;
    size_t mask = cap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        is_map_slot_t *s = &m->slots[i];
        if (!slot_live(s))
            continue;
        size_t j = s->hash & mask;
        while (slots[j].key)
            j = (j + 1) & mask;
        slots[j] = *s;
    }
    is_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->len;
    return IS_OK;
}

int is_map_set(is_map_t *m, const char *key, void *value, void **old) {
    uint64_t hash = is_map_hash(key);
    long found = map_find(m, key, hash);
    if (found >= 0) {
        if (old)
            *old = m->slots[found].value;
        m->slots[found].value = value;
        return IS_OK;
    }
    /* used + 1 > 0.7 * cap, in integers. */
    if ((m->used + 1) * 10 > m->cap * 7) {
        int rc = map_rebuild(m);
        if (rc != IS_OK)
            return rc;
    }
    char *copy = is_strdup(key);
    if (!copy)
        return IS_ENOMEM;
    /* Reuse the first tombstone on the probe path: the key is known to be
     * absent, so nothing after it can match. */
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    while (slot_live(&m->slots[i]))
        i = (i + 1) & mask;
    if (m->slots[i].key == NULL)
        m->used++;
    m->slots[i].key = copy;
    m->slots[i].hash = hash;
    m->slots[i].value = value;
    m->len++;
    if (old)
        *old = NULL;
    return IS_OK;
}

void *is_map_get(const is_map_t *m, const char *key) {
    long i = map_find(m, key, is_map_hash(key));
    return i >= 0 ? m->slots[i].value : NULL;
}

int is_map_has(const is_map_t *m, const char *key) {
    return map_find(m, key, is_map_hash(key)) >= 0;
}

void *is_map_del(is_map_t *m, const char *key) {
    long found = map_find(m, key, is_map_hash(key));
    if (found < 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = (size_t)found;
    void *value = m->slots[i].value;
    is_free(m->slots[i].key);
    m->slots[i].key = IS_MAP_TOMB__;
    m->slots[i].value = NULL;
    m->len--;
    /* A tombstone right before an empty slot ends every probe chain anyway,
     * so it and the tombstones before it can become empty again. Entries do
     * not move, which keeps deletion during iteration safe. */
    if (m->slots[(i + 1) & mask].key == NULL) {
        while (m->slots[i].key == IS_MAP_TOMB__) {
            m->slots[i].key = NULL;
            m->used--;
            i = (i - 1) & mask;
        }
    }
    return value;
}

int is_map_next(const is_map_t *m, size_t *iter, const char **key, void **value) {
    for (size_t i = *iter; i < m->cap; i++) {
        if (slot_live(&m->slots[i])) {
            if (key)
                *key = m->slots[i].key;
            if (value)
                *value = m->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}

#include "imap.h"

#include "util.h"

#include <assert.h>
#include <stdlib.h>

#define EMPTY INT64_MIN

typedef struct {
    int64_t key;
    void *value;
} slot_t;

struct imap {
    slot_t *slots;
    size_t cap;   /* power of two */
    size_t size;
};

static size_t s_hash(int64_t key, size_t mask)
{
    uint64_t x = (uint64_t) key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t) x & mask;
}

static void s_alloc(imap_t *self, size_t cap)
{
    self->slots = xmalloc(cap * sizeof(slot_t));
    for (size_t i = 0; i < cap; i++)
        self->slots[i].key = EMPTY;
    self->cap = cap;
}

imap_t *imap_new(void)
{
    imap_t *self = xcalloc(1, sizeof *self);
    s_alloc(self, 64);
    return self;
}

void imap_destroy(imap_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->slots);
    free(*p);
    *p = NULL;
}

static void s_resize(imap_t *self, size_t cap)
{
    slot_t *old = self->slots;
    size_t oldcap = self->cap;
    s_alloc(self, cap);
    size_t mask = self->cap - 1;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key == EMPTY)
            continue;
        size_t j = s_hash(old[i].key, mask);
        while (self->slots[j].key != EMPTY)
            j = (j + 1) & mask;
        self->slots[j] = old[i];
    }
    free(old);
}

void imap_put(imap_t *self, int64_t key, void *value)
{
    assert(key != EMPTY && value != NULL);
    /* Keep the load factor under 0.7 so probe runs stay short. */
    if ((self->size + 1) * 10 > self->cap * 7)
        s_resize(self, self->cap * 2);
    size_t mask = self->cap - 1;
    size_t j = s_hash(key, mask);
    while (self->slots[j].key != EMPTY && self->slots[j].key != key)
        j = (j + 1) & mask;
    if (self->slots[j].key == EMPTY)
        self->size++;
    self->slots[j].key = key;
    self->slots[j].value = value;
}

void *imap_get(const imap_t *self, int64_t key)
{
    size_t mask = self->cap - 1;
    size_t j = s_hash(key, mask);
    while (self->slots[j].key != EMPTY) {
        if (self->slots[j].key == key)
            return self->slots[j].value;
        j = (j + 1) & mask;
    }
    return NULL;
}

void *imap_remove(imap_t *self, int64_t key)
{
    /* EMPTY would "find" the first free slot and corrupt the count. */
    assert(key != EMPTY);
    size_t mask = self->cap - 1;
    size_t j = s_hash(key, mask);
    while (self->slots[j].key != key) {
        if (self->slots[j].key == EMPTY)
            return NULL;
        j = (j + 1) & mask;
    }
    void *value = self->slots[j].value;
    /* Backward-shift deletion: move later entries of the run into the hole
       when their home slot allows it, so lookups never need tombstones. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; self->slots[k].key != EMPTY; k = (k + 1) & mask) {
        size_t home = s_hash(self->slots[k].key, mask);
        size_t dist_k = (k - home) & mask;
        size_t dist_hole = (hole - home) & mask;
        if (dist_hole < dist_k) {
            self->slots[hole] = self->slots[k];
            hole = k;
        }
    }
    self->slots[hole].key = EMPTY;
    self->size--;
    /* Give memory back once a big job has drained (hysteresis: grow at 70%,
       shrink under 12.5%). */
    if (self->cap > 1024 && self->size * 8 < self->cap)
        s_resize(self, self->cap / 2);
    return value;
}

size_t imap_size(const imap_t *self)
{
    return self->size;
}

void *imap_next(const imap_t *self, size_t *pos, int64_t *key)
{
    while (*pos < self->cap) {
        slot_t *s = &self->slots[(*pos)++];
        if (s->key != EMPTY) {
            if (key)
                *key = s->key;
            return s->value;
        }
    }
    return NULL;
}

/*  idem: remembered submit keys (see idem.h). An imap from a 64-bit hash
    of owner and key to a chain of entries (the full strings are compared:
    a client cannot reach another's entry by crafting a collision), and a
    list in the order they were taken in, which is what idem_prune walks. */
#include "idem.h"

#include "../common/imap.h"
#include "../common/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    idem_entry_t entry;
    char *owner, *key;
    int64_t hash;
    double created;
    struct node *chain;              /* next with the same hash */
    struct node *prev, *next;        /* in the order taken in */
} node_t;

struct idem {
    imap_t *map;                     /* hash -> first node_t of its chain */
    node_t *head, *tail;
    size_t n;
};

idem_t *idem_new(void)
{
    idem_t *self = xcalloc(1, sizeof *self);
    self->map = imap_new();
    return self;
}

static void s_node_free(node_t *n)
{
    free(n->owner);
    free(n->key);
    free(n);
}

void idem_destroy(idem_t **p)
{
    if (!p || !*p)
        return;
    idem_t *self = *p;
    for (node_t *n = self->head, *next; n; n = next) {
        next = n->next;
        s_node_free(n);
    }
    imap_destroy(&self->map);
    free(self);
    *p = NULL;
}

/* FNV-1a over owner, a NUL, and key; never INT64_MIN (imap's empty mark). */
static int64_t s_hash(const char *owner, const char *key)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *s = owner;; s++) {
        h = (h ^ (unsigned char) *s) * 1099511628211ull;
        if (!*s)
            break;
    }
    for (const char *s = key; *s; s++)
        h = (h ^ (unsigned char) *s) * 1099511628211ull;
    int64_t v = (int64_t) (h >> 1);
    return v;
}

static node_t *s_find(const idem_t *self, const char *owner, const char *key, int64_t hash)
{
    for (node_t *n = imap_get(self->map, hash); n; n = n->chain)
        if (strcmp(n->key, key) == 0 && strcmp(n->owner, owner) == 0)
            return n;
    return NULL;
}

idem_entry_t *idem_get(idem_t *self, const char *owner, const char *key)
{
    node_t *n = s_find(self, owner, key, s_hash(owner, key));
    return n ? &n->entry : NULL;
}

void idem_put(idem_t *self, const char *owner, const char *key, const idem_entry_t *entry,
              double created)
{
    int64_t hash = s_hash(owner, key);
    assert(!s_find(self, owner, key, hash));
    node_t *n = xcalloc(1, sizeof *n);
    n->entry = *entry;
    n->owner = xstrdup(owner);
    n->key = xstrdup(key);
    n->hash = hash;
    n->created = created;
    n->chain = imap_get(self->map, hash);
    imap_put(self->map, hash, n);
    n->prev = self->tail;
    if (self->tail)
        self->tail->next = n;
    else
        self->head = n;
    self->tail = n;
    self->n++;
}

/* Unlinks n from its chain and the list, and frees it. */
static void s_drop(idem_t *self, node_t *n)
{
    node_t *first = imap_get(self->map, n->hash);
    if (first == n) {
        if (n->chain)
            imap_put(self->map, n->hash, n->chain);
        else
            imap_remove(self->map, n->hash);
    } else {
        node_t *c = first;
        while (c->chain != n)
            c = c->chain;
        c->chain = n->chain;
    }
    if (n->prev)
        n->prev->next = n->next;
    else
        self->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        self->tail = n->prev;
    self->n--;
    s_node_free(n);
}

void idem_remove(idem_t *self, const char *owner, const char *key)
{
    node_t *n = s_find(self, owner, key, s_hash(owner, key));
    if (n)
        s_drop(self, n);
}

size_t idem_prune(idem_t *self, double cutoff)
{
    size_t dropped = 0;
    node_t *n = self->head;
    /* Taken in order, so the old ones lead (a wall clock set back may
       leave a few for the next prune). */
    while (n && n->created < cutoff) {
        node_t *next = n->next;
        if (n->entry.committed) {
            s_drop(self, n);
            dropped++;
        }
        n = next;
    }
    return dropped;
}

double idem_trim(idem_t *self, size_t max)
{
    double cut = 0;
    node_t *n = self->head;
    while (n && self->n > max) {
        node_t *next = n->next;
        if (n->entry.committed) {
            if (n->created > cut)
                cut = n->created;
            s_drop(self, n);
        }
        n = next;
    }
    return cut;
}

size_t idem_size(const idem_t *self)
{
    return self->n;
}

static int s_load_row(const store_key_row_t *row, void *arg)
{
    idem_t *self = arg;
    /* One row per owner and key (the table's primary key). */
    if (!idem_get(self, row->owner, row->key))
        idem_put(self, row->owner, row->key,
                 &(idem_entry_t){.job = row->job, .accepted = row->accepted, .committed = true},
                 row->created);
    return 0;
}

int idem_load(idem_t *self, store_t *store, double now_wall)
{
    return store_submit_keys_each(store, now_wall - IDEM_TTL_S, s_load_row, self);
}

/* bd_internal.h (internal to the buddy allocator): the accessors of its metadata (one 16-bit
 * entry per granule, laid out as buddy.h describes) that buddy.c (the operations) and
 * buddy_check.c (the reads: statistics, walk, check) share. Free-list links are read through
 * lnk, which respects sanitizer poisoning. */
#ifndef MEMLAB_BD_INTERNAL_H
#define MEMLAB_BD_INTERNAL_H

#include "buddy.h"
#include "mlsan.h"

#define ENTRY_FREE(b, o) ((uint16_t)(BD_START | ((o) - (b)->gran_order) << 8))
#define ENTRY_PARKED(b, o) ((uint16_t)(ENTRY_FREE(b, o) | BD_PARKED))
#define ENTRY_USED(b, o) ((uint16_t)(ENTRY_FREE(b, o) | BD_USED))   /* slack bits still to add */

static inline size_t bsize(unsigned o) { return (size_t)1 << o; }
static inline size_t gidx(const ml_buddy *b, size_t off) { return off >> b->gran_order; }
static inline unsigned e_order(const ml_buddy *b, uint16_t e) { return b->gran_order + ((e >> 8) & 63u); }
/* Entries a block of order o spans beyond its first, that can hold slack: at most 3. */
static inline size_t extra_entries(const ml_buddy *b, unsigned o)
{
    size_t span = (size_t)1 << (o - b->gran_order);
    return span - 1 < 3 ? span - 1 : 3;
}

/* Bytes in parked blocks (the cache's, every order). */
static inline size_t parked_bytes(const ml_buddy *b)
{
    size_t n = 0;
    for (unsigned o = 0; o <= BD_CACHE_MAX_ORDER; o++) n += (size_t)b->cache_n[o] << o;
    return n;
}

/* How many blocks are parked. */
static inline size_t parked_count(const ml_buddy *b)
{
    size_t n = 0;
    for (unsigned o = 0; o <= BD_CACHE_MAX_ORDER; o++) n += b->cache_n[o];
    return n;
}

/* Granted bytes: the arena - listed free - parked (the blocks tile it). */
static inline size_t granted(const ml_buddy *b)
{
    return bsize(b->cur_order) - b->st.free_bytes - parked_bytes(b);
}

/* The slack of the used block at entry i, order o (slack_set's inverse), read without a loop or
 * a branch on the order (random orders would mispredict it): all three extra entries are read
 * (meta has room past its last entry, see bd_init) and masked off where the block has none. */
static inline size_t slack_read(const ml_buddy *b, size_t i, unsigned o)
{
    const uint16_t *m = b->meta + i;
    size_t span = o - b->gran_order;
    size_t has1 = -(size_t)(span > 0), has2 = -(size_t)(span > 1);
    return (size_t)(m[0] & 0xFFu) | ((size_t)m[1] << 8 & has1)
         | (((size_t)m[2] << 23 | (size_t)m[3] << 38) & has2);
}

/* Free-list links live in the free blocks, poisoned at rest. */
static inline bd_node *lnk(const ml_buddy *b, const bd_node *f, int prev)
{
    const void *at = prev ? (const void *)&f->prev : (const void *)&f->next;
    ml_san_open(b->vg, at, sizeof(void *));
    bd_node *v = prev ? f->prev : f->next;
    ml_san_poison(b->vg, at, sizeof(void *));
    return v;
}

#endif

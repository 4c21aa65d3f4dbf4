/* buddy_check.c: everything that reads the buddy allocator without changing it: statistics, the
 * walk over its blocks, its bounds, and the invariant check. None of this is on the allocation
 * path; the walk and the check are O(blocks). */
#include "bd_internal.h"

#include <stdio.h>

void bd_stats(const ml_buddy *b, ml_stats *out)
{
    *out = b->st;
    uint64_t orders = b->nonempty;
    for (unsigned o = 0; o <= BD_CACHE_MAX_ORDER; o++)
        if (b->cache_n[o]) orders |= (uint64_t)1 << o;
    out->largest_free = orders ? bsize(63u - (unsigned)__builtin_clzll(orders)) : 0;
    if (b->base) {
        out->live_blocks = (size_t)(b->st.allocs - b->st.frees);
        out->free_bytes += parked_bytes(b);
        out->free_blocks += parked_count(b);
        out->granted_bytes = granted(b);
    }
    out->overhead_bytes = b->base ? 2 * (bsize(b->cur_order) >> b->gran_order) : 0;
    out->source_calls = b->src ? b->src->syscalls : b->st.source_calls;
    ml_stats_finish(out);
}

int bd_walk(const ml_buddy *b, ml_walk_fn fn, void *ud)
{
    if (!b->base) return 0;
    for (size_t off = 0; off < bsize(b->cur_order);) {
        uint16_t e = b->meta[gidx(b, off)];
        unsigned o = e_order(b, e);
        int r = fn(ud, b->base + off, bsize(o), (e & BD_USED) ? 1 : (e & BD_PARKED) ? 3 : 0);
        if (r) return r;
        off += bsize(o);
    }
    return 0;
}

void bd_bounds(const ml_buddy *b, const void **base, size_t *size, size_t *max)
{
    *base = b->base;
    *size = b->base ? bsize(b->cur_order) : 0;
    *max = bsize(b->max_order);
}

#define BAD(...) do { ML_WHY(why, whylen, __VA_ARGS__); return ML_ECORRUPT; } while (0)

ml_status bd_check(const ml_buddy *b, char *why, size_t whylen)
{
    if (!b->base) BAD("allocator not initialised");
    size_t arena = bsize(b->cur_order), used = 0, freen = 0, freeb = 0, grant = 0, live = 0, parkedn = 0;
    for (size_t off = 0; off < arena;) {
        size_t i = gidx(b, off);
        uint16_t e = b->meta[i];
        unsigned o = e_order(b, e);
        if (!(e & BD_START)) BAD("offset %zu: no block starts here (entry %#x)", off, e);
        if (o < b->min_order || o > b->cur_order || off & (bsize(o) - 1))
            BAD("block at offset %zu: order %u impossible here", off, o);
        size_t span = (size_t)1 << (o - b->gran_order), first = (e & BD_USED) ? 1 + extra_entries(b, o) : 1;
        for (size_t k = 1; k < span; k++)
            if (b->meta[i + k] & (k < first ? BD_START : 0xFFFFu))
                BAD("block at offset %zu: stray entry %#x at granule %zu", off, b->meta[i + k], k);
        if (e & BD_USED) {
            size_t slack = slack_read(b, i, o);
            if (slack > bsize(o) || (o > b->min_order && bsize(o) - slack <= bsize(o - 1)))
                BAD("used block at offset %zu (order %u): slack %zu", off, o, slack);
            used++;
            grant += bsize(o);
            live += bsize(o) - slack;
        } else if (e & BD_PARKED) {
            if ((e & 0xFFu) != BD_PARKED || o > BD_CACHE_MAX_ORDER)
                BAD("parked block at offset %zu (order %u): entry %#x", off, o, e);
            unsigned hits = 0;
            for (unsigned j = 0; j < b->cache_n[o]; j++) hits += b->cache[o][j] == b->base + off;
            if (hits != 1) BAD("parked block at offset %zu (order %u) is on its cache %u times", off, o, hits);
            parkedn++;
            freen++;
            freeb += bsize(o);
        } else {
            if (e & 0xFFu) BAD("free block at offset %zu has slack bits", off);
            if (o < b->cur_order && b->meta[gidx(b, off ^ bsize(o))] == e)
                BAD("free buddies of order %u at offsets %zu and %zu not merged", o, off, off ^ bsize(o));
            const bd_node *f = (const bd_node *)(const void *)(b->base + off), *p = lnk(b, f, 1);
            if (p ? lnk(b, p, 0) != f : b->heads[o] != f)
                BAD("free block at offset %zu (order %u) is not on its list", off, o);
            freen++;
            freeb += bsize(o);
        }
        off += bsize(o);
    }
    if (b->cur_order < b->max_order && b->meta[gidx(b, arena)])
        BAD("entry past the arena's end is %#x", b->meta[gidx(b, arena)]);
    size_t ln = 0, limit = arena >> b->min_order;
    for (unsigned o = 0; o < BD_ORDERS; o++) {
        if (!!(b->nonempty >> o & 1) != (b->heads[o] != NULL)) BAD("nonempty bit %u disagrees with its list", o);
        const bd_node *prev = NULL;
        for (const bd_node *f = b->heads[o]; f; prev = f, f = lnk(b, f, 0)) {
            size_t off = (size_t)((const char *)f - b->base);
            if ((const char *)f < b->base || off >= arena || off & (bsize(o) - 1)
                || b->meta[gidx(b, off)] != ENTRY_FREE(b, o) || lnk(b, f, 1) != prev || ++ln > limit)
                BAD("list %u: node at offset %zu is not a free block of that order", o, off);
        }
    }
    if (ln + parkedn != freen) BAD("lists hold %zu blocks, the arena %zu (%zu parked)", ln, freen, parkedn);
    size_t incache = 0;
    for (unsigned o = 0; o <= BD_CACHE_MAX_ORDER; o++) {
        if (b->cache_n[o] > b->cache_depth) BAD("cache %u holds %u > depth %u", o, b->cache_n[o], b->cache_depth);
        for (unsigned j = 0; j < b->cache_n[o]; j++) {
            const char *c = b->cache[o][j];
            size_t off = (size_t)(c - b->base);
            if (c < b->base || off >= arena || b->meta[gidx(b, off)] != ENTRY_PARKED(b, o)
                || b->cache_i[o][j] != gidx(b, off))
                BAD("cache %u entry %u (offset %zu) is not a parked block of that order", o, j, off);
        }
        incache += b->cache_n[o];
    }
    if (incache != parkedn) BAD("caches hold %zu blocks, the arena %zu parked", incache, parkedn);
    if (b->arena_size != arena || b->gran_mask != bsize(b->gran_order) - 1 || b->min_size != bsize(b->min_order))
        BAD("cached sizes (arena %zu, granule mask %zu, min %zu) disagree with the orders", b->arena_size,
            b->gran_mask, b->min_size);
    ml_stats st;
    bd_stats(b, &st);
    if (used != st.live_blocks || live != st.live_bytes || grant != st.granted_bytes)
        BAD("walk: %zu blocks %zu live %zu granted; stats: %zu %zu %zu", used, live, grant,
            st.live_blocks, st.live_bytes, st.granted_bytes);
    if (freen != st.free_blocks || freeb != st.free_bytes || freen - parkedn != b->st.free_blocks)
        BAD("walk: %zu free blocks / %zu bytes; stats %zu / %zu", freen, freeb, st.free_blocks, st.free_bytes);
    if (b->src->committed != arena) BAD("arena %zu bytes, page source %zu", arena, b->src->committed);
    if (st.granted_bytes + st.overhead_bytes + st.free_bytes != st.footprint)
        BAD("granted %zu + overhead %zu + free %zu != footprint %zu", st.granted_bytes,
            st.overhead_bytes, st.free_bytes, st.footprint);
    return ML_OK;
}

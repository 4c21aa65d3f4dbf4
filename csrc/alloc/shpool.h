/* shpool.h: a pool of fixed-size slots that lives entirely inside memory the caller supplies,
 * so that several processes sharing that memory (a MAP_SHARED mapping inherited over fork, a
 * System V segment, a POSIX shared memory object or a file mapped by each) allocate from it
 * together. Unlike pool.h's pool, it keeps nothing of its own outside that memory but the
 * geometry (shp_info), read once and checked when the memory is formatted or attached.
 *
 * Layout, from the memory's first byte: a 128-byte header (magic, version, block, stride, count,
 * where the slots start, the free stack's head, two counters); a link per slot (uint32: 1 + the
 * index of the next free slot, 0 at the end); a state byte per slot (0 free, 1 used); the slots,
 * from the first multiple of 64 after those, `stride` bytes each (block rounded up to 16).
 *
 * Concurrency: lock-free. The free slots form a stack (Treiber's): the head word holds 1 + the
 * top slot's index in its low 32 bits and a tag, bumped by every push and pop, in its high 32
 * bits, so that a pop that read a link which another process changed since fails its
 * compare-and-swap instead of installing it (the ABA problem). A slot's state byte changes by
 * compare-and-swap too: a double free, from any process, finds it already 0. No lock is held at
 * any time, so a process killed in the middle of a call blocks no one; it can at worst leave one
 * slot on no list (shp_check counts such slots as lost).
 *
 * Robustness: any process that can write the memory can write garbage into the header, the links
 * or the states. Nothing read from the shared memory after attach is used as an address without
 * being checked against the geometry kept in shp_info: a bad link or head is reported as
 * ML_ECORRUPT, never followed. Every slot address is base + slots + i * stride with i < count.
 * The caller must still make sure the memory stays mapped and writable during each call (memlab
 * runs each under its fault guard).
 *
 * C11 with GCC's or Clang's __atomic builtins (and POSIX's clock_gettime and getpid for a
 * format's identity); no allocation, no globals. */
#ifndef MEMLAB_SHPOOL_H
#define MEMLAB_SHPOOL_H

#include "mlalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHP_MAGIC 0x4c4f4f5048534c4dull /* "MLSHPOOL" read as a little-endian word */
#define SHP_VERSION 1u
#define SHP_HEADER 128u
#define SHP_MAX_COUNT 0xFFFFFFFEu  /* 1 + index fits a 32-bit link */
#define SHP_MAX_BLOCK ((size_t)1 << 32)

/* The geometry of a formatted pool, kept by each user of it (not re-read from the memory). */
typedef struct shp_info {
    size_t block;   /* the object size asked at format */
    size_t stride;  /* block rounded up to ML_ALIGN */
    size_t count;   /* slots */
    size_t slots;   /* offset of slot 0 from the memory's start (a multiple of 64) */
    size_t size;    /* bytes the pool spans: slots + count * stride */
    uint64_t format; /* the format identity in the header when attached (another format changes it) */
} shp_info;

/* A snapshot of the counters and of the states (exact when no other process is inside a call). */
typedef struct shp_stats {
    size_t used, free, lost;   /* slots used, on the free stack, on no list (see shp_check) */
    uint64_t allocs, frees;    /* successful calls since format, all processes together */
} shp_stats;

/* The bytes a pool of count slots of block bytes needs (0 when count or block is out of range). */
size_t shp_size_for(size_t block, size_t count);
/* The most slots of block bytes that len bytes hold (0 when not even one). */
size_t shp_count_for(size_t block, size_t len);
/* Lays out a new pool over [mem, mem + len): count slots of block bytes (count 0: as many as
 * fit). ML_EINVAL when block or count is out of range or mem is not 16-byte aligned, ML_ENOMEM
 * when len is too small. Every slot is free; slot 0 is handed out first. */
ml_status shp_format(void *mem, size_t len, size_t block, size_t count, shp_info *out);
/* Reads the header of a pool formatted over memory of which [mem, mem + len) is visible, and
 * checks it (magic, version, geometry consistent and within len): ML_OK and *out, or
 * ML_EINVAL (no pool there: wrong magic or version) or ML_ECORRUPT (a header whose geometry does
 * not hold), why saying what. */
ml_status shp_attach(const void *mem, size_t len, shp_info *out, char *why, size_t whylen);
/* Pops a free slot and marks it used: ML_OK and its offset from mem in *off, ML_ENOMEM when
 * none is free, ML_ECORRUPT (why says what) when the stack or a state is broken, or when the
 * memory was formatted again since *in was read (alloc and free compare the header first). */
ml_status shp_alloc(void *mem, const shp_info *in, size_t *off, char *why, size_t whylen);
/* The slot index of offset off: ML_OK, or ML_EFOREIGN (outside the slots) or ML_EINTERIOR (not
 * at a slot's start). */
ml_status shp_index(const shp_info *in, size_t off, size_t *idx);
/* Marks the slot at off free and pushes it: ML_OK, ML_EFOREIGN, ML_EINTERIOR, ML_EDOUBLE (the
 * slot is free already), ML_ECORRUPT (its state byte holds neither 0 nor 1, or the memory was
 * formatted again; why says which). */
ml_status shp_free(void *mem, const shp_info *in, size_t off, char *why, size_t whylen);
/* ML_OK when the header is still the one *in was read from (the magic, the format's identity,
 * block and count); else ML_ECORRUPT, why saying what changed (formatted again: attach again). */
ml_status shp_same(const void *mem, const shp_info *in, char *why, size_t whylen);
/* The state byte of the slot at index i: 0 free, 1 used, anything else a corrupted byte; -1 when
 * i is not a slot's index. */
int shp_state(const void *mem, const shp_info *in, size_t i);
void shp_stats_get(const void *mem, const shp_info *in, shp_stats *out);
/* Calls fn(ud, slot address, stride, used) for every slot in address order (used 0 or 1, as
 * its state byte says); a non-zero return stops the walk and is returned. */
int shp_walk(const void *mem, const shp_info *in, ml_walk_fn fn, void *ud);
/* Validates the header against *in (the same format), the free stack (every link in range, no cycle, every slot
 * on it free) and the states (each 0 or 1): ML_OK or ML_ECORRUPT with why. Slots that are free
 * but on no list are counted in *lost (a process stopped inside a call) and are not an error.
 * Exact only while no other process is inside a call: the walk is not atomic, and
 * a slot popped or pushed meanwhile may read as broken or lost. */
ml_status shp_check(const void *mem, const shp_info *in, size_t *lost, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif

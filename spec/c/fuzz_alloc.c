/* fuzz_alloc.c: a libFuzzer target over the operation language of alloc_ops.h. The allocator is
 * chosen by MEMLAB_FUZZ_TARGET (freelist, buddy or pool); the input's first byte picks its
 * configuration (policy, page source, quick cache, thresholds, block sizes); every following 8
 * bytes are one operation, each followed by the allocator's check(). A violation prints why and
 * aborts, which libFuzzer reports as a crash with the input that caused it. */
#include "alloc_ops.h"

#include <stdlib.h>

static engine E;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_alloc: %s\n", what);
    abort();
}

static void drive(const alloc_ops *o, void *a, const uint8_t *data, size_t size)
{
    engine_init(&E, o, a, 64);
    for (size_t i = 0; i + 8 <= size; i += 8) {
        uint64_t r;
        memcpy(&r, data + i, 8);
        if (!engine_step(&E, r) || !engine_check(&E)) fail(E.why);
    }
    if (!engine_drain(&E)) fail(E.why);
}

static int target(void)
{
    static int t = -1;
    if (t < 0) {
        const char *v = getenv("MEMLAB_FUZZ_TARGET");
        t = !v || !strcmp(v, "freelist") ? 0 : !strcmp(v, "buddy") ? 1 : 2;
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ml_pagesrc src;
    if (size < 1) return 0;
    unsigned cfg = data[0];
    data++;
    size--;
    if (target() == 0) {
        static ml_freelist a;
        fl_config c = { (fl_policy)(cfg & 3), 64u << 10, (cfg & 32) ? 128u << 10 : 0,
                        (cfg & 16) ? 32u << 10 : 0, (cfg & 8) ? -1 : (int)(cfg >> 6) };
        int err = (cfg & 4) ? ml_src_init_sbrk(&src, 4u << 20) : ml_src_init_mmap(&src, 4u << 20, 0);
        if (err || fl_init(&a, &src, &c) != ML_OK)
            fail(ml_sys_single_threaded() ? "freelist init" : "freelist init (the fuzzer made a "
                 "thread: an sbrk source is refused then; run it with -rss_limit_mb=0)");
        alloc_ops o = fl_ops;
        o.max_size = 1u << 20;
        drive(&o, &a, data, size);
        fl_destroy(&a);
    } else if (target() == 1) {
        static ml_buddy b;
        bd_config c = { (size_t)16 << (cfg & 3), (size_t)4096 << ((cfg >> 2) & 7) };
        if (ml_src_init_mmap(&src, 1u << 20, 1u << 20) || bd_init(&b, &src, &c) != ML_OK) fail("buddy init");
        drive(&bd_ops, &b, data, size);
        bd_destroy(&b);
    } else {
        static ml_pool p;
        pool_config c = { 1 + (cfg & 63) * 8, 16, (int)(cfg >> 7), 100 };
        alloc_ops o = pool_ops;
        o.fixed = c.block;
        if (ml_src_init_mmap(&src, 1u << 20, 0) || pool_init(&p, &src, &c) != ML_OK) fail("pool init");
        drive(&o, &p, data, size);
        pool_destroy(&p);
    }
    if (ml_src_destroy(&src)) fail("page source destroy");
    return 0;
}

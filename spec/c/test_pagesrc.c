/* test_pagesrc.c: the page sources (csrc/alloc/pagesrc.c): the mmap arena and the real break. */
#include <stdio.h>
#include "pagesrc.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>

static void t_mmap_source(void)
{
    ml_pagesrc s;
    size_t pg = ml_sys_pagesize();
    void *a, *b;
    CHECK(ml_src_init_mmap(&s, 1u << 20, 1u << 20) == 0);
    CHECK(s.base && is_aligned(s.base, 1u << 20) && s.committed == 0 && s.reserved == 1u << 20);
    CHECK(ml_src_grow(&s, pg, &a) == 0 && a == s.base);
    memset(a, 1, pg);
    CHECK(ml_src_grow(&s, 2 * pg, &b) == 0 && b == (char *)a + pg && s.committed == 3 * pg);
    CHECK(ml_src_grow(&s, 100, &b) == EINVAL);
    CHECK(ml_src_grow(&s, 1u << 20, &b) == ENOMEM && s.last_err == ENOMEM);
    CHECK(ml_src_shrink(&s, 2 * pg) == 0 && s.committed == pg && s.top == (char *)a + pg);
    CHECK(ml_src_grow(&s, pg, &b) == 0 && ((char *)b)[0] == 0);      /* decommitted reads zero */
    /* the reservation's mmap and an munmap per side of slack (none before it when the mmap came
     * back aligned), then grow 2, shrink 2 (mprotect, madvise), grow 1 */
    CHECK(s.peak == 3 * pg && s.syscalls >= 7 && s.syscalls <= 8);
    CHECK(ml_src_map(&s, pg, 0, &b) == 0 && s.mapped == pg);
    /* a charged mapping the machine could never back is refused now (ENOMEM; valgrind refuses it
     * its own way), not later by the OOM killer; an uncharged one costs nothing until touched */
    void *huge;
    FILE *oc = fopen("/proc/sys/vm/overcommit_memory", "r");
    int mode = 1;
    if (oc && fscanf(oc, "%d", &mode) != 1) mode = 1;
    if (oc) fclose(oc);
    if (mode != 1) /* 1: the kernel grants everything, and only the OOM killer says no */
        CHECK(ml_src_map(&s, (size_t)1 << 46, 1, &huge) != 0 && s.mapped == pg);
    else
        printf("# vm.overcommit_memory=1: the refusal of a huge charged mapping is not checked\n");
    CHECK(ml_src_map(&s, (size_t)1 << 30, 0, &huge) == 0 && ml_src_unmap(&s, huge, (size_t)1 << 30) == 0);
    CHECK(ml_src_remap(&s, b, pg, 4 * pg, &b) == 0 && s.mapped == 4 * pg);
    CHECK(ml_src_unmap(&s, b, 4 * pg) == 0 && s.mapped == 0);
    CHECK(ml_src_destroy(&s) == 0 && ml_src_destroy(&s) == 0 && s.kind == ML_SRC_NONE);
}

static void t_sbrk_source(void)
{
    ml_pagesrc s;
    size_t pg = ml_sys_pagesize();
    void *old, *brk0 = ml_sys_break();
    CHECK(ml_src_init_sbrk(&s, 16 * pg) == 0 && s.base == NULL && s.syscalls == 0);
    CHECK(ml_src_grow(&s, pg, &old) == 0 && is_aligned(s.base, pg) && ml_sys_break() == s.top);
    CHECK((char *)old >= (char *)brk0 && (char *)old < (char *)brk0 + pg);
    memset(old, 2, pg);
    CHECK(ml_src_grow(&s, 16 * pg, &old) == ENOMEM);
    CHECK(ml_src_grow(&s, 2 * pg, &old) == 0 && ml_sys_break() == s.top && s.committed == 3 * pg);
    CHECK(ml_src_shrink(&s, pg) == 0 && ml_sys_break() == s.top);
    CHECK(ml_src_destroy(&s) == 0 && ml_sys_break() == brk0);
}

/* Someone else moves the break: the source neither grows nor shrinks until the break is its own. */
static void t_sbrk_refuses_foreign_break(void)
{
    ml_pagesrc s;
    size_t pg = ml_sys_pagesize();
    void *old, *theirs;
    CHECK(ml_src_init_sbrk(&s, 16 * pg) == 0 && ml_src_grow(&s, 2 * pg, &old) == 0);
    CHECK(ml_sys_sbrk((intptr_t)pg, &theirs) == 0 && theirs == s.top);
    CHECK(ml_src_shrink(&s, pg) == EBUSY && s.last_err == EBUSY && s.committed == 2 * pg);
    CHECK(ml_src_grow(&s, pg, &old) == EBUSY && s.committed == 2 * pg);
    CHECK(ml_src_destroy(&s) == EBUSY && s.kind == ML_SRC_SBRK);
    CHECK(ml_sys_sbrk(-(intptr_t)pg, &theirs) == 0);
    CHECK(ml_src_shrink(&s, pg) == 0 && ml_sys_break() == s.top);
    CHECK(ml_src_destroy(&s) == 0 && s.committed == 0);
}

static void t_strings(void)
{
    for (int st = ML_OK; st <= ML_ECORRUPT; st++)
        CHECK(strcmp(ml_strstatus((ml_status)st), "unknown status") != 0);   /* each has its text */
    CHECK(strcmp(ml_strstatus(ML_EDOUBLE), "double free") == 0);
    ml_pagesrc s = { 0 };
    CHECK(ml_src_init_sbrk(&s, 0) == EINVAL && ml_src_init_mmap(&s, 4096, 3) == EINVAL);
    CHECK(strcmp(ml_src_kindname(&s), "mmap") == 0);
}

/* A large zeroing drops whole pages (one madvise, counted) and writes the edges; a small one
 * only writes. */
static void t_zero_counts(void)
{
    size_t len = 2 * ML_ZERO_DROP;
    unsigned char *p;
    uint64_t calls = 0;
    CHECK(ml_sys_map(len, 0, (void **)&p) == 0);
    memset(p, 7, len);
    ml_zero(0, p + 1, len - 2, &calls);
    CHECK(calls == 1 && p[0] == 7 && p[1] == 0 && p[len / 2] == 0 && p[len - 2] == 0 && p[len - 1] == 7);
    memset(p, 7, 100);
    ml_zero(0, p, 100, &calls);
    CHECK(calls == 1 && p[0] == 0 && p[99] == 0);
    CHECK(ml_sys_unmap(p, len) == 0);
}

static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;

static void *parked(void *arg)
{
    pthread_mutex_lock(&park_mu); /* held by the test until it is done */
    pthread_mutex_unlock(&park_mu);
    return arg;
}

/* glibc's malloc moves the break too, under its own lock: once the process has a second thread
 * an sbrk source neither grows nor shrinks (the process stays "multi-threaded": run last). */
static void t_sbrk_refused_with_threads(void)
{
    ml_pagesrc s;
    size_t pg = ml_sys_pagesize();
    void *old;
    pthread_t t;
    CHECK(ml_sys_single_threaded());
    /* room in malloc's top first: pthread_create mallocs, and a heap that had to grow then would
     * move the break this test reads (it did once, after an earlier test's failure printed) */
    free(malloc(64 << 10));
    CHECK(ml_src_init_sbrk(&s, 16 * pg) == 0 && ml_src_grow(&s, 2 * pg, &old) == 0);
    pthread_mutex_lock(&park_mu);
    int made = pthread_create(&t, NULL, parked, NULL) == 0;
    int single = ml_sys_single_threaded();
    int grow = ml_src_grow(&s, pg, &old), shrink = ml_src_shrink(&s, pg);
    void *brk = ml_sys_break();
    pthread_mutex_unlock(&park_mu);
    if (made) pthread_join(t, NULL);
    CHECK(made && !single);
    CHECK(grow == EBUSY && shrink == EBUSY && s.committed == 2 * pg && brk == s.top);
    CHECK(ml_src_destroy(&s) == EBUSY); /* the pages stay taken: the break is not moved */
}

/* A break not on a page boundary: the source takes the few pad bytes that page-align its base,
 * and emptying it gives them back too, so the break returns exactly where it was. */
static void t_sbrk_pad_given_back(void)
{
    ml_pagesrc s;
    size_t pg = ml_sys_pagesize();
    void *old, *brk0 = ml_sys_break();
    CHECK(ml_sys_sbrk(100, &old) == 0 && old == brk0);             /* off a page boundary */
    char *brk1 = ml_sys_break();
    CHECK(!is_aligned(brk1, pg));
    CHECK(ml_src_init_sbrk(&s, 4 * pg) == 0 && ml_src_grow(&s, 2 * pg, &old) == 0);
    CHECK(is_aligned(s.base, pg) && s.pad == (size_t)(s.base - brk1) && s.pad > 0);
    CHECK(ml_src_shrink(&s, 2 * pg) == 0 && s.committed == 0 && s.base == NULL);
    CHECKF(ml_sys_break() == brk1, "the break is %td bytes above where the source found it",
           (char *)ml_sys_break() - brk1);
    CHECK(ml_src_destroy(&s) == 0);
    CHECK(ml_sys_sbrk(-100, &old) == 0 && ml_sys_break() == brk0);
}

int main(void)
{
    tap_init("test_pagesrc");
    TAP_RUN(t_mmap_source, "pagesrc: mmap arena commits, decommits, maps, counts its calls");
    TAP_RUN(t_sbrk_source, "pagesrc: sbrk source grows and gives back the real break");
    TAP_RUN(t_sbrk_refuses_foreign_break, "pagesrc: sbrk source refuses a break it no longer owns");
    TAP_RUN(t_strings, "pagesrc: status strings, invalid arguments");
    TAP_RUN(t_zero_counts, "pagesrc: a large zeroing drops pages in one counted madvise");
    TAP_RUN(t_sbrk_pad_given_back,
            "pagesrc: an sbrk source emptied gives back its pad, the break where it was");
    TAP_RUN(t_sbrk_refused_with_threads, "pagesrc: sbrk source neither grows nor shrinks once a second thread exists");
    return tap_done();
}

/* test_poison.c: the allocators' blocks are fenced for the memory checkers. Built with
 * AddressSanitizer, a child process writes one byte past a block's requested size (inside the
 * block's slack, where nothing but the fence can notice) and must die with ASan's report; another
 * reads a freed block. Under valgrind, the same writes must raise memcheck's error count. In a
 * plain build, outside valgrind, the cases are skipped. Children report through a pipe and leave
 * with _exit. */
#include "buddy.h"
#include "freelist.h"
#include "mlsan.h"
#include "pool.h"
#include "testutil.h"

#include <sys/wait.h>
#include <unistd.h>

static ml_pagesrc src;
static ml_freelist F;
static ml_buddy B;
static ml_pool P;

enum { BAD_WRITE, BAD_READ_FREED };

/* In a child: do the bad access on block p (n bytes requested) and report what the checker saw.
 * Returns 1 when the checker caught it. */
static int caught(unsigned char *p, size_t n, int what, ml_status (*release)(void *), void *relarg)
{
    int fds[2];
    if (pipe(fds)) return 0;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);                     /* ASan reports on stderr: into the pipe */
        unsigned before = 0;
#if ML_VALGRIND
        before = VALGRIND_COUNT_ERRORS;
#endif
        if (what == BAD_READ_FREED) {
            release(relarg);
            volatile unsigned char v = ((volatile unsigned char *)p)[0];
            (void)v;
        } else {
            ((volatile unsigned char *)p)[n] = 1;
        }
#if ML_VALGRIND
        if (VALGRIND_COUNT_ERRORS > before) (void)!write(fds[1], "VALGRIND-CAUGHT", 15);
#endif
        (void)before;
        _exit(0);
    }
    close(fds[1]);
    char buf[8192];
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (ML_ASAN) return !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(buf, "AddressSanitizer");
    return strstr(buf, "VALGRIND-CAUGHT") != NULL;
}

static ml_status fl_release(void *p) { return fl_free(&F, p); }
static ml_status bd_release(void *p) { return bd_free(&B, p); }
static ml_status pool_release(void *p) { return pool_free(&P, p); }

static void t_freelist(void)
{
    CHECK(ml_src_init_mmap(&src, 1u << 20, 0) == 0 && fl_init(&F, &src, NULL) == ML_OK);
    unsigned char *p = fl_alloc(&F, 20), *q = fl_alloc(&F, 2000);   /* 24 usable, 20 requested */
    CHECK(p && q);
    memset(p, 1, 20);
    CHECK(caught(p, 20, BAD_WRITE, fl_release, p));
    CHECK(caught(q, 2000, BAD_WRITE, fl_release, q));
    CHECK(caught(q, 2000, BAD_READ_FREED, fl_release, q));
    CHECK_INVARIANTS(fl_check, &F);
    fl_destroy(&F);
    ml_src_destroy(&src);
}

static void t_buddy(void)
{
    CHECK(ml_src_init_mmap(&src, 1u << 20, 0) == 0 && bd_init(&B, &src, NULL) == ML_OK);
    unsigned char *p = bd_alloc(&B, 40);                              /* a 64-byte block */
    CHECK(p != NULL);
    CHECK(caught(p, 40, BAD_WRITE, bd_release, p));
    CHECK(caught(p, 40, BAD_READ_FREED, bd_release, p));
    bd_destroy(&B);
    ml_src_destroy(&src);
}

static void t_pool(void)
{
    pool_config c = { 20, 10, 0, 0 };
    CHECK(ml_src_init_mmap(&src, 1u << 20, 0) == 0 && pool_init(&P, &src, &c) == ML_OK);
    unsigned char *p = pool_alloc(&P, 20);                            /* 20 of a 32-byte stride */
    CHECK(p != NULL);
    CHECK(caught(p, 20, BAD_WRITE, pool_release, p));
    CHECK(caught(p, 20, BAD_READ_FREED, pool_release, p));
    pool_destroy(&P);
    ml_src_destroy(&src);
}

int main(void)
{
    tap_init("test_poison");
    if (!ML_ASAN && !ml_san_valgrind()) {
        tap_skip("freelist: a byte past the request is reported", "not built with ASan, not under valgrind");
        tap_skip("buddy: a byte past the request is reported", "not built with ASan, not under valgrind");
        tap_skip("pool: a byte past the request is reported", "not built with ASan, not under valgrind");
        return tap_done();
    }
    TAP_RUN(t_freelist, "freelist: a byte past the request, a freed block: reported by the checker");
    TAP_RUN(t_buddy, "buddy: a byte past the request, a freed block: reported by the checker");
    TAP_RUN(t_pool, "pool: a byte past the request, a freed block: reported by the checker");
    return tap_done();
}

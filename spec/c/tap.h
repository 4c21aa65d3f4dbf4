/* tap.h: the smallest TAP producer the C tests need. A test case is a void function that uses
 * CHECK (stop the case on failure, recording the condition and line) and EXPECT_STATUS; run it
 * with TAP_RUN(fn, "name"). tap_done() prints the plan and gives the exit status. */
#ifndef MEMLAB_TAP_H
#define MEMLAB_TAP_H

#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failures, tap_case_failed;
static char tap_why[512];
static char tap_stdout_buf[1 << 14];

/* stdout gets a static buffer so that printing never calls malloc (the sbrk tests watch the
 * break), line-buffered so that a crash loses nothing already reported. */
static inline void tap_init(const char *file)
{
    setvbuf(stdout, tap_stdout_buf, _IOLBF, sizeof tap_stdout_buf);
    printf("# %s\n", file);
}

static inline void tap_fail(const char *file, int line, const char *what)
{
    if (!tap_case_failed) snprintf(tap_why, sizeof tap_why, "%s:%d: %s", file, line, what);
    tap_case_failed = 1;
}

#define CHECK(cond) \
    do { if (!(cond)) { tap_fail(__FILE__, __LINE__, #cond); return; } } while (0)
/* A check with a formatted explanation (e.g. a check() message). */
#define CHECKF(cond, ...) \
    do { if (!(cond)) { char m_[400]; snprintf(m_, sizeof m_, __VA_ARGS__); \
                        tap_fail(__FILE__, __LINE__, m_); return; } } while (0)

static inline void tap_run(void (*fn)(void), const char *name)
{
    tap_case_failed = 0;
    fn();
    tap_n++;
    if (tap_case_failed) {
        tap_failures++;
        printf("not ok %d - %s\n# %s\n", tap_n, name, tap_why);
    } else {
        printf("ok %d - %s\n", tap_n, name);
    }
    fflush(stdout);
}
#define TAP_RUN(fn, name) tap_run(fn, name)

static inline void tap_skip(const char *name, const char *reason)
{
    printf("ok %d - %s # SKIP %s\n", ++tap_n, name, reason);
}

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failures ? 1 : 0;
}

#endif

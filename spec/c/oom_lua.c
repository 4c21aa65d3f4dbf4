/* oom_lua.c: memory-error injection for memlab from Lua. The README's claim under test: nothing
 * leaks when Lua runs out of memory inside a call (objects that hold a system resource are made
 * before the resource is taken), and the state goes on working.
 *
 * A Lua state whose allocator can be armed to refuse every growing allocation from the Nth on
 * (once Lua's emergency collection has failed to help, the refusal becomes LUA_ERRMEM) runs each
 * snippet of the table below for N = 1, 2, ... until one run ends without a refusal. Every run
 * gets a fresh state (luaL_openlibs, package.path/cpath at the checkout, require "memlab" and the
 * snippet's setup unarmed), the snippet armed inside lua_pcall, then:
 *   - the call's error, if any, must be a memory error (LUA_ERRMEM, or a message saying "not
 *     enough memory": memlab's Lua code re-raises what a pcall of its own caught);
 *   - the snippet's "after" code, if any, runs unarmed (what the script would do next: move the
 *     mapping the call placed another inside, kill the child it forked);
 *   - a full collection must only give back: no descriptor and no mapping more than before the
 *     call (or than after the "after" code): what the call took belongs to something the
 *     collector reaches;
 *   - a "still works" chunk runs unarmed (a collection, M.maps, a malloc and free, and an object
 *     of each type, used once, left to lua_close's finalizers);
 *   - after lua_close, the process is as it was before the state was made: the same descriptors,
 *     the same /proc/self/maps (the [stack] line's start aside: the stack grows as it likes), the
 *     same C heap bytes in use (mallinfo2 uordblks + hblkhd, exactly; under ASan its count of
 *     allocated bytes), no System V segment of this process still attached (each is then
 *     removed: removing a segment is the script's job, as in C), and the POSIX shm object
 *     present exactly when the snippet's own flag says it created and did not unlink it.
 * A child of M.fork made while armed refuses from its first allocation (memlab's side of a fork
 * in the child must allocate nothing); one that comes back into this program leaves at once.
 * Each snippet runs in a forked child of this program, so a crash or a hang (alarm) is a failed
 * test, not the end of the run. One TAP line per snippet, with its number of injection points;
 * the first line checks that the checks see a leak.
 *
 * Making the heap and the maps checks exact: the process re-executes itself with glibc's tcache
 * off (a block parked in a tcache counts as in use for mallinfo2), and mallopt keeps the Lua
 * state's blocks on the brk heap, never trimmed, grown ahead (so the break moves only when memlab
 * moves it, and [heap]'s end is a check of M.sbrk and the sbrk allocators). What a process keeps
 * for good (the module loaded, the fault guard, memlab's table of break regions) is made by two
 * unarmed states first, and each snippet runs twice unarmed before the injection. Under ASan,
 * whose allocator maps and keeps memory of its own (quarantine, size classes), only the named
 * mappings are compared (files, memfd, System V, [heap]); the anonymous ones are the native
 * run's.
 *
 * Usage: oom_lua <checkout> <build dir holding memlab/core.so> [snippet name part]
 * MEMLAB_OOM_TIMEOUT: seconds per snippet (default 120); MEMLAB_OOM_NOTES: failed points
 * described per snippet (default 6). */
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "oom_snippets.h"

#if defined(__SANITIZE_ADDRESS__)
#define OOM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OOM_ASAN 1
#endif
#endif
#ifndef OOM_ASAN
#define OOM_ASAN 0
#endif

#if OOM_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* ---- the allocator ---- */

/* Armed, it refuses every growing allocation from the fail_at-th on (counted from arming): Lua
 * retries a refused one after an emergency collection, so a single refusal would only test the
 * collector. Shrinking never fails (Lua's contract). */
static struct {
    int armed;
    unsigned long count, fail_at, refused;
} inj;

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (inj.armed && (ptr == NULL || nsize > osize) && ++inj.count >= inj.fail_at) {
        inj.refused++;
        return NULL;
    }
    return realloc(ptr, nsize);
}

static void arm(unsigned long n)
{
    inj.count = inj.refused = 0;
    inj.fail_at = n;
    inj.armed = 1;
}

/* A child of M.fork made while armed refuses from its very first allocation: memlab's side of
 * the fork in the child must allocate nothing (a memory error there would send the child back
 * into the parent's code). Its exit status tells the parent's snippet how it went. */
static void armed_child(void)
{
    if (inj.armed) inj.fail_at = inj.count + 1;
}

/* ---- what a child reports (shared with the parent) ---- */

typedef struct Report {
    unsigned long point;     /* the point being run: where a crash happened */
    unsigned long points;    /* injection points tried */
    unsigned long nomem;     /* of which the call ended in a memory error */
    unsigned long caught;    /* of which the call ended normally (the error was caught inside) */
    unsigned long failures;  /* points with a failed check */
    int done;
    size_t len;
    char text[8192];         /* "# " lines */
} Report;

static Report *rep;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (rep->len + 2 >= sizeof rep->text) return;
    char *at = rep->text + rep->len;
    size_t room = sizeof rep->text - rep->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    rep->len += (size_t)n < room ? (size_t)n : room - 1;
    if (rep->len + 1 < sizeof rep->text) rep->text[rep->len++] = '\n';
    rep->text[rep->len] = '\0';
}

static void clear_notes(void)
{
    rep->len = 0;
    rep->text[0] = '\0';
    rep->failures = 0;
}

/* One failed check at the current point: counted once per point, noted for the first few
 * (MEMLAB_OOM_NOTES of them, default 6). */
static int point_failed;
static unsigned long max_notes = 6;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (!point_failed) rep->failures++;
    point_failed = 1;
    if (rep->failures > max_notes) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note("#   N=%lu: %s", rep->point, msg);
}

/* ---- the process's resources ---- */

#define MAX_FD 4096
#define MAPS_MAX (1 << 19)

typedef struct Res {
    unsigned char fd[MAX_FD / 8];
    size_t heap;
    size_t mapslen;
    char maps[MAPS_MAX]; /* the kept lines of /proc/self/maps, normalised */
} Res;

static Res res_base, res_pre, res_post, res_after;

static size_t heap_bytes(void)
{
#if OOM_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* The open descriptors, read with getdents64 into a static buffer (opendir would malloc). */
static void take_fds(Res *r)
{
    memset(r->fd, 0, sizeof r->fd);
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    static char buf[16384];
    ssize_t n;
    while ((n = getdents64(dfd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            const struct dirent64 *d = (const struct dirent64 *)(const void *)(buf + off);
            char *end;
            long fd = strtol(d->d_name, &end, 10);
            if (*end == '\0' && end != d->d_name && fd >= 0 && fd < MAX_FD && fd != dfd)
                r->fd[fd / 8] |= (unsigned char)(1u << (fd % 8));
            off += d->d_reclen;
        }
    }
    close(dfd);
}

/* Whether a maps line (without its newline) is compared: under ASan only named mappings. */
static int maps_keep(const char *line, size_t len)
{
    if (!OOM_ASAN) return 1;
    const char *path = memchr(line, '/', len);
    if (!path) path = memchr(line, '[', len);
    return path && strncmp(path, "[anon:", 6) != 0;
}

/* /proc/self/maps, kept lines only, [stack]'s start address cut (the stack grows on demand). */
static void take_maps(Res *r)
{
    static char raw[MAPS_MAX];
    size_t n = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t k;
        while (n < sizeof raw - 1 && (k = read(fd, raw + n, sizeof raw - 1 - n)) > 0) n += (size_t)k;
        close(fd);
    }
    raw[n] = '\0';
    r->mapslen = 0;
    for (char *line = raw; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (maps_keep(line, len) && r->mapslen + len + 2 < sizeof r->maps) {
            const char *from = line;
            if (len > 7 && memcmp(line + len - 7, "[stack]", 7) == 0) from = strchr(line, '-');
            size_t k = len - (size_t)(from - line);
            memcpy(r->maps + r->mapslen, from, k);
            r->mapslen += k;
            r->maps[r->mapslen++] = '\n';
        }
        line += len + (nl != NULL);
    }
    r->maps[r->mapslen] = '\0';
}

static void take(Res *r)
{
    take_fds(r);
    take_maps(r);
    r->heap = heap_bytes();
}

/* Whether the text holds line (len bytes, followed by its newline). */
static int has_line(const char *text, const char *line, size_t len)
{
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t k = nl ? (size_t)(nl - p) : strlen(p);
        if (k == len && memcmp(p, line, len) == 0) return 1;
        p += k + (nl != NULL);
    }
    return 0;
}

/* Fails for every mapping in `now` that `before` lacks ("left") and, when both ways, every one
 * `before` had that is gone. Returns the number found. */
static int diff_maps(const Res *before, const Res *now, const char *when, int both)
{
    if (before->mapslen == now->mapslen && memcmp(before->maps, now->maps, now->mapslen) == 0)
        return 0;
    int found = 0;
    for (int pass = 0; pass < (both ? 2 : 1); pass++) {
        const Res *a = pass ? before : now, *b = pass ? now : before;
        for (const char *p = a->maps; *p;) {
            const char *nl = strchr(p, '\n');
            size_t k = (size_t)(nl - p);
            if (!has_line(b->maps, p, k)) {
                fail("%s: mapping %s: %.*s", when, pass ? "gone" : "left", (int)k, p);
                found++;
            }
            p = nl + 1;
        }
    }
    return found;
}

/* Fails for every descriptor open in `now` and not in `before` (and, when both, the reverse). */
static void diff_fds(const Res *before, const Res *now, const char *when, int both)
{
    for (int fd = 0; fd < MAX_FD; fd++) {
        int was = (before->fd[fd / 8] >> (fd % 8)) & 1, is = (now->fd[fd / 8] >> (fd % 8)) & 1;
        if (is && !was) {
            char link[64], target[256];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, target, sizeof target - 1);
            target[n > 0 ? n : 0] = '\0';
            fail("%s: descriptor %d left open (%s)", when, fd, target);
        } else if (both && was && !is) {
            fail("%s: descriptor %d was closed", when, fd);
        }
    }
}

/* System V segments this process created: any still attached fails (the maps check sees the
 * attachment too, naming it); each is removed (the script's job, as in C). */
static void sysv_sweep(const char *when)
{
    static char text[1 << 16];
    int fd = open("/proc/sysvipc/shm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_t n = 0;
    ssize_t k;
    while (n < sizeof text - 1 && (k = read(fd, text + n, sizeof text - 1 - n)) > 0) n += (size_t)k;
    close(fd);
    text[n] = '\0';
    const char *line = strchr(text, '\n'); /* past the header */
    while (line && *++line) {
        unsigned long key, size, nattch;
        unsigned perms;
        int id, cpid, lpid;
        if (sscanf(line, "%lu %d %o %lu %d %d %lu", &key, &id, &perms, &size, &cpid, &lpid,
                   &nattch) == 7 && cpid == getpid()) {
            if (nattch) fail("%s: System V segment %d still attached %lu times", when, id, nattch);
            shmctl(id, IPC_RMID, NULL);
        }
        line = strchr(line, '\n');
    }
}

/* ---- running a state ---- */

static const char *g_top, *g_build;
static pid_t g_self; /* the process running the snippet (not a child of M.fork) */
static pid_t g_small; /* a small process whose maps the snippets read (SMALLPID) */

static char g_tmp[256], g_shmname[64]; /* TMP (a file to map) and SHMNAME */

/* The names of process pid's file and shm object (each child has its own). */
static void set_names(pid_t pid)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/memlab-oom-%d.bin", (int)pid);
    snprintf(g_shmname, sizeof g_shmname, "/memlab-oom-%d", (int)pid);
}

/* A child of M.fork that came back here (its snippet raised) leaves at once, saying so. */
static void forked_child_returns(lua_State *L, int status, const char *where)
{
    if (getpid() == g_self) return;
    const char *msg = status == LUA_OK ? "(no error)" : lua_tostring(L, -1);
    note("#   N=%lu: a child of M.fork raised in %s: %s", rep->point, where,
         msg ? msg : "(not a string)");
    _exit(99);
}

static int on_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    note("#   N=%lu: panic: %s", rep->point, msg ? msg : "(not a string)");
    abort();
}

/* Warnings (an error in a finalizer is one) are noted, whole: the leak checks judge their
 * effect. */
static int warn_notes;
static char warn_text[256];
static size_t warn_len;

static void on_warn(void *ud, const char *msg, int tocont)
{
    (void)ud;
    size_t n = strlen(msg);
    if (warn_len + n >= sizeof warn_text) n = sizeof warn_text - 1 - warn_len;
    memcpy(warn_text + warn_len, msg, n);
    warn_len += n;
    warn_text[warn_len] = '\0';
    if (tocont) return;
    if (warn_notes < 4 && warn_text[0] != '@') {
        warn_notes++;
        note("#   N=%lu: warning: %s", rep->point, warn_text);
    }
    warn_len = 0;
}

/* run_chunk's message handler: the message and where it came from. */
static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Runs code unarmed; NULL or the error with its traceback (in a static buffer). */
static const char *run_chunk(lua_State *L, const char *code, const char *name)
{
    static char err[1024];
    lua_pushcfunction(L, traceback);
    int loaded = luaL_loadbuffer(L, code, strlen(code), name) == LUA_OK;
    int st = loaded ? lua_pcall(L, 0, 0, -2) : LUA_ERRSYNTAX, ok = st == LUA_OK;
    forked_child_returns(L, st, name);
    lua_remove(L, ok ? -1 : -2);
    if (ok) return NULL;
    const char *msg = lua_tostring(L, -1);
    snprintf(err, sizeof err, "%s%s", loaded ? "" : "(loading it) ",
             msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
    return err;
}

static void set_string(lua_State *L, const char *table, const char *field, const char *v)
{
    if (table) {
        lua_getglobal(L, table);
        lua_pushstring(L, v);
        lua_setfield(L, -2, field);
        lua_pop(L, 1);
    } else {
        lua_pushstring(L, v);
        lua_setglobal(L, field);
    }
}

/* A fresh state with the checkout's paths, TMP, SHMNAME and SMALLPID, memlab required (unless
 * the snippet requires it itself) and the snippet's setup run; NULL after noting why. */
static lua_State *open_state(const Snippet *sn)
{
    lua_State *L = lua_newstate(oom_alloc, NULL);
    if (!L) {
        fail("lua_newstate failed");
        return NULL;
    }
    lua_atpanic(L, on_panic);
    lua_setwarnf(L, on_warn, NULL);
    luaL_openlibs(L);
    char path[1024];
    snprintf(path, sizeof path, "%s/lua/?.lua;%s/lua/?/init.lua", g_top, g_top);
    set_string(L, "package", "path", path);
    snprintf(path, sizeof path, "%s/?.so", g_build);
    set_string(L, "package", "cpath", path);
    set_string(L, NULL, "TMP", g_tmp);
    set_string(L, NULL, "SHMNAME", g_shmname);
    lua_pushinteger(L, g_small);
    lua_setglobal(L, "SMALLPID");
    const char *err = run_chunk(L, (sn->flags & NO_REQUIRE) ? first_box : prelude, "=prelude");
    if (!err && sn->setup) err = run_chunk(L, sn->setup, "=setup");
    if (err) {
        fail("set-up failed unarmed: %s", err);
        lua_close(L);
        return NULL;
    }
    return L;
}

/* Whether the POSIX shm object of the snippets exists. */
static int shm_exists(void)
{
    char p[128];
    struct stat st;
    snprintf(p, sizeof p, "/dev/shm%s", g_shmname);
    return stat(p, &st) == 0;
}

/* One run, armed at point n (0: unarmed). Returns 1 when an allocation was refused, 0 when the
 * call ran to its end untouched, -1 when the snippet cannot run at all. */
static int run_point(const Snippet *sn, unsigned long n)
{
    point_failed = 0;
    warn_notes = 0;
    rep->point = n;
    take(&res_base);
    lua_State *L = open_state(sn);
    if (!L) return -1;
    if (luaL_loadbuffer(L, sn->body, strlen(sn->body), "=snippet") != LUA_OK) {
        fail("does not compile: %s", lua_tostring(L, -1));
        lua_close(L);
        return -1;
    }
    take(&res_pre);
    if (n) arm(n);
    int st = lua_pcall(L, 0, 0, 0);
    forked_child_returns(L, st, "the snippet");
    inj.armed = 0;
    int refused = inj.refused > 0;
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!refused) {
            fail("fails without a refused allocation: %s", msg ? msg : "(not a string)");
        } else if (st != LUA_ERRMEM && !(msg && strstr(msg, "not enough memory"))) {
            fail("the error is not a memory error (status %d): %s", st, msg ? msg : "(not a string)");
        }
        lua_pop(L, 1);
    }
    if (refused) {
        if (st == LUA_OK) rep->caught++;
        else rep->nomem++;
    }
    /* the code after the call changes what the process holds: a collection after it must then
     * only give back */
    const char *err = sn->after ? run_chunk(L, sn->after, "=after") : NULL;
    if (err) fail("the code after the call failed: %s", err);
    if (sn->after) take(&res_pre);
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCCOLLECT);
    take(&res_post);
    diff_fds(&res_pre, &res_post, "after the call and a full collection", 0);
    diff_maps(&res_pre, &res_post, "after the call and a full collection", 0);
    err = run_chunk(L, still_works, "=still_works");
    if (err) fail("the state no longer works: %s", err);
    lua_getglobal(L, "SHM_LIVE");
    int shm_live = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_close(L);
    sysv_sweep("after lua_close");
    if (shm_exists() != shm_live)
        fail("after lua_close: the shm object %s %s, but the snippet's flag says %s", g_shmname,
             shm_live ? "is gone" : "exists", shm_live ? "created" : "not created or unlinked");
    shm_unlink(g_shmname);
    while (waitpid(-1, NULL, WNOHANG) > 0) {} /* children of M.fork the snippet did not wait for */
    take(&res_after);
    diff_fds(&res_base, &res_after, "after lua_close", 1);
    diff_maps(&res_base, &res_after, "after lua_close", 1);
    if (res_after.heap != res_base.heap)
        fail("after lua_close: the C heap holds %ld bytes more than before the state", 
             (long)(res_after.heap - res_base.heap));
    return refused;
}

/* A file to map, 8 KiB. */
static int make_tmp(void)
{
    int fd = open(g_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 8192) != 0) return -1;
    return close(fd);
}

/* The child's work for one snippet: an unarmed run, then N = 1, 2, ... */
static void run_snippet(const Snippet *sn)
{
    if (make_tmp() != 0) {
        fail("cannot create %s: %s", g_tmp, strerror(errno));
        return;
    }
    /* twice unarmed: the first may grow what the process keeps for good (the table of memlab's
     * break regions), the second must leave nothing */
    run_point(sn, 0);
    clear_notes();
    run_point(sn, 0); /* unarmed, every way it can fail goes through fail() */
    if (point_failed) {
        note("#   (the unarmed run failed: no injection tried)");
        unlink(g_tmp);
        return;
    }
    for (unsigned long n = 1;; n++) {
        int r = run_point(sn, n);
        if (r <= 0) break; /* 0: ran to its end, every allocation point was tried */
        rep->points++;
    }
    unlink(g_tmp);
}

/* ---- the checks check ---- */

/* Leaves a 24-byte block, a descriptor and a mapping behind and expects each check to see it.
 * The mapping is of a memfd: named in /proc/self/maps, so that it is compared under ASan too
 * (maps_keep). */
static void *volatile canary_block;
static int checks_see_leaks(void)
{
    rep->point = 0;
    rep->failures = 0;
    point_failed = 0;
    take(&res_base);
    canary_block = malloc(24);
    int fd = memfd_create("memlab-oom-canary", MFD_CLOEXEC);
    void *m = fd >= 0 && ftruncate(fd, 4096) == 0
                  ? mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    take(&res_after);
    int heap = res_after.heap != res_base.heap;
    diff_fds(&res_base, &res_after, "canary", 1);
    int fds = rep->failures > 0;
    int maps = m != MAP_FAILED && diff_maps(&res_base, &res_after, "canary", 1) > 0;
    free(canary_block);
    if (m != MAP_FAILED) munmap(m, 4096);
    if (fd >= 0) close(fd);
    rep->failures = 0;
    point_failed = 0;
    take(&res_after);
    diff_fds(&res_base, &res_after, "canary", 1);
    diff_maps(&res_base, &res_after, "canary", 1);
    int clean = res_after.heap == res_base.heap && rep->failures == 0;
    clear_notes();
    return heap && fds && maps && clean;
}

/* ---- the parent ---- */

/* Re-executes with glibc's tcache off, once: a block parked in a tcache counts as in use. */
static void reexec_without_tcache(char **argv)
{
    if (getenv("MEMLAB_OOM_REEXEC")) return;
    setenv("MEMLAB_OOM_REEXEC", "1", 1);
    setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
    execv("/proc/self/exe", argv);
    perror("oom_lua: re-exec");
}

/* The brk heap: never trimmed, grown 16 MiB ahead, blocks below 32 MiB never mapped; then grown
 * once, so that the states' blocks fit without moving the break. */
static void *volatile settle_block; /* volatile: free(malloc(n)) would be optimised away */
static void settle_heap(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 16 << 20);
    settle_block = malloc((size_t)24 << 20);
    free(settle_block);
}

/* A sleep of the parent's, dying with it, once it runs sleep; this process when there is no
 * sleep to run. */
static pid_t start_small(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sleep", "sleep", "3600", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return getpid();
    char link[64], exe[256];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    for (int i = 0; i < 2000; i++) {
        ssize_t n = readlink(link, exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        if (strstr(exe, "sleep")) return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid) break; /* no sleep to run */
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return getpid();
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <checkout> <build dir> [snippet name part]\n", argv[0]);
        return 2;
    }
    reexec_without_tcache(argv);
    tap_init("oom_lua.c: memory-error injection for memlab from Lua");
    settle_heap();
    g_top = argv[1];
    g_build = argv[2];
    const char *only = argc > 3 ? argv[3] : NULL;
    const char *t = getenv("MEMLAB_OOM_TIMEOUT");
    unsigned timeout = t && *t ? (unsigned)strtoul(t, NULL, 10) : 120;
    const char *mn = getenv("MEMLAB_OOM_NOTES");
    if (mn && *mn) max_notes = strtoul(mn, NULL, 10);
    rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rep == MAP_FAILED) return perror("mmap"), 1;

    /* Two states in the parent first: the module loaded (and pinned), the guard installed and
     * memlab's table of break regions made (it keeps it for good), before any child takes its
     * baseline; the fork handler too. */
    memset(rep, 0, sizeof *rep);
    static const Snippet warm = {"warm-up", NULL, "local _, b = M.sbrk(64) b:free()\n", NULL, 0};
    g_self = getpid();
    g_small = start_small();
    pthread_atfork(NULL, NULL, armed_child);
    set_names(getpid());
    make_tmp();
    run_point(&warm, 0); /* loads the module: leaves mappings and blocks, as it should */
    memset(rep, 0, sizeof *rep);
    run_point(&warm, 0); /* the same again must leave nothing */
    unlink(g_tmp);
    if (rep->failures) {
        printf("Bail out! the warm-up state failed:\n%s", rep->text);
        return 1;
    }

    memset(rep, 0, sizeof *rep);
    int seen = checks_see_leaks();
    tap_failures += !seen;
    printf("%s %d - the checks see a 24-byte block, a descriptor and a mapping left behind\n",
           seen ? "ok" : "not ok", ++tap_n);

    unsigned long total = 0;
    double start = now();
    for (size_t i = 0; i < NSNIPPETS; i++) {
        const Snippet *sn = &snippets[i];
        if (only && !strstr(sn->name, only)) continue;
        memset(rep, 0, sizeof *rep);
        double t0 = now();
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return perror("fork"), 1;
        if (pid == 0) {
            alarm(timeout);
            g_self = getpid();
            set_names(getpid());
            run_snippet(sn);
            rep->done = 1;
            _exit(0);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        set_names(pid); /* what the child may have left */
        unlink(g_tmp);
        shm_unlink(g_shmname);
        total += rep->points;
        tap_n++;
        int ok = rep->done && rep->failures == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok) tap_failures++;
        printf("%s %d - %s: %lu injection points (%lu memory errors, %lu caught inside), %.1f s\n",
               ok ? "ok" : "not ok", tap_n, sn->name, rep->points, rep->nomem, rep->caught,
               now() - t0);
        if (WIFSIGNALED(status))
            printf("#   killed by signal %d (%s) at N=%lu\n", WTERMSIG(status),
                   WTERMSIG(status) == SIGALRM ? "timed out" : strsignal(WTERMSIG(status)),
                   rep->point);
        if (rep->failures) printf("#   %lu points failed a check; the first:\n", rep->failures);
        fputs(rep->text, stdout);
        fflush(stdout);
    }
    printf("# %lu injection points in %.1f s\n", total, now() - start);
    if (g_small != getpid()) {
        kill(g_small, SIGKILL);
        waitpid(g_small, NULL, 0);
    }
    return tap_done();
}

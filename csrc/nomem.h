/* nomem.h: why the system refused memory. ENOMEM says only "Cannot allocate memory", and glibc's
 * malloc says nothing else whatever refused it; these name the limit that likely did, read from
 * getrlimit, /proc/self/status, /proc/meminfo and /proc/sys/vm, and say how to see it. */
#ifndef MEMLAB_NOMEM_H
#define MEMLAB_NOMEM_H

#include <stddef.h>
#include <stdint.h>

#include "memlab.h"

/* What a refused request of len more bytes counts against, besides the address space (always):
 * NOMEM_DATA, RLIMIT_DATA (the heap, the break, private writable mappings); NOMEM_COMMIT, the
 * kernel's overcommit policy (private writable and shared anonymous memory); NOMEM_STRICT, only
 * its strict mode (the same with MAP_NORESERVE); NOMEM_MAPS, vm.max_map_count (a call that
 * makes a new kernel mapping); NOMEM_SPLIT, the same for a call that may split one kernel
 * mapping in three (mprotect of part of it). */
enum { NOMEM_DATA = 1, NOMEM_COMMIT = 2, NOMEM_STRICT = 4, NOMEM_MAPS = 8, NOMEM_SPLIT = 16 };

/* The error triple of a request for len more bytes refused with err: "what: strerror (why)",
 * why as nomem_why says it; the bare triple when it has nothing to say. */
int nomem_error(lua_State *L, const char *what, int err, size_t len, unsigned counts);

/* The bytes of address space below the line mmap places mappings under (47 bits on x86-64 and
 * 48 on arm64, with 4-level page tables or without a hint above the line). */
#if SIZE_MAX <= 0xffffffffu
#define USER_SPACE SIZE_MAX /* (no such check) */
#elif defined(__aarch64__)
#define USER_SPACE ((size_t)1 << 48)
#else
#define USER_SPACE ((size_t)1 << 47)
#endif

/* Why a request of len more bytes was refused with err, pushed; NULL (nothing pushed) when no
 * limit explains it. EAGAIN (from a mapping call: a locked mapping): RLIMIT_MEMLOCK, as
 * lock_error says it. ENOMEM: the limit it would pass: the address space, RLIMIT_MEMLOCK under
 * M.mlockall(M.MCL_FUTURE) (found by a one-page probe mapping: the kernel brings it in at once
 * when new mappings are locked, or refuses it with EAGAIN past the limit), RLIMIT_AS,
 * RLIMIT_DATA, strict overcommit, a request above RAM and swap together under the heuristic one,
 * vm.max_map_count. */
const char *nomem_why(lua_State *L, int err, size_t len, unsigned counts);

/* nomem_why's overcommit check alone (counts NOMEM_COMMIT or NOMEM_STRICT), for memory charged
 * without being mapped: a System V segment, which shmget charges before any shmat. */
const char *nomem_commit_why(lua_State *L, size_t len, unsigned counts);

/* Whether /proc/self/status says no page of the process is locked (VmLck: 0 kB); 0 when it
 * cannot tell. */
int nomem_none_locked(void);

/* The same for moving the program break from brk up to target, refused with err: it names first
 * a mapping lying in the way (the break grows only into free address space), then the limits. */
int nomem_break_error(lua_State *L, const char *what, int err, uintptr_t brk, uintptr_t target);

/* Why a mapping of len bytes in huge pages of `huge` bytes was refused with ENOMEM, pushed: too
 * few of them reserved (the kernel's hugetlb pool); NULL (nothing pushed) when not that. */
const char *huge_why(lua_State *L, size_t len, size_t huge);

/* The error of a refused lock of len more bytes (mlock, or a mapping locked by MAP_LOCKED or
 * mlockall(MCL_FUTURE)), naming RLIMIT_MEMLOCK when the limit is the likely reason. */
int lock_error(lua_State *L, const char *what, int err, size_t len);
/* lock_error, with `other` as the reason (pushed by the caller) when no limit explains it. */
int lock_error_or(lua_State *L, const char *what, int err, size_t len, const char *other);

#endif

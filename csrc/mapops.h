/* mapops.h: what mapops.c (b:protect, b:sync, b:lock, b:resident, b:mapinfo and the C-shaped
 * forms) shares with advise.c (b:advise). Private to those two files. */
#ifndef MEMLAB_MAPOPS_H
#define MEMLAB_MAPOPS_H

#include <sys/mman.h>

#include "mapping.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif

/* A range of a mapping's pages, as get_range makes it: [off, off+len) lies in o's memory, and
 * [first, first+npages) are the whole pages that cover it (npages 0 when len is 0). */
typedef struct Range {
  Owner *o;
  size_t off, len;      /* the range as the caller gave it, off relative to the owner */
  size_t first, npages; /* whole pages covered, relative to the owner */
} Range;

/* The range args (ioff, ilen) of the mapping buffer at 1, rounded out to whole pages for the
 * kernel. Raises on a dead or non-mapping buffer, out-of-range or (when `aligned`, as the kernel
 * requires) a start that is not page aligned in the owner's memory. */
void get_range(lua_State *L, int ioff, int ilen, int aligned, const char *fname, Range *r);
/* The address of the range's first whole page. */
unsigned char *page_addr(const Range *r);
/* A change refused as a whole because an armed snapshot could not save its pages first: the
 * kernel refused to unprotect one ("mprotect: ..."), or no descriptor was left to open
 * /proc/self/pagemap with ("/proc/self/pagemap: ..."). */
int snap_refusal(lua_State *L, int err, const char *what);

/* b:advise(advice [, off, len]) -> b | nil, msg, errno (advise.c), and the advice argument's
 * check, which M.madvise's C shape makes too. */
int mapops_advise(lua_State *L);
lua_Integer check_advice(lua_State *L, int idx);

#endif

/* protmap.c: the protection memlab set on each page of a mapping, as runs of pages (see
 * memlab.h). A mapping of any size with one protection is one run; each b:protect of a part adds
 * at most two, edited in place. Lookups are binary searches, so they are safe to make from the
 * fault handler (nothing here allocates except protmap_init and protmap_reserve, called from
 * normal context only). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memlab.h"

int protmap_init(ProtMap *pm, size_t npages, unsigned prot) {
  pm->runs = (ProtRun *)malloc(sizeof(ProtRun));
  if (!pm->runs) return ENOMEM;
  pm->nruns = pm->cap = 1;
  pm->npages = npages;
  pm->runs[0].first = 0;
  pm->runs[0].prot = (uint8_t)prot;
  return 0;
}

void protmap_free(ProtMap *pm) {
  free(pm->runs);
  pm->runs = NULL;
  pm->nruns = pm->npages = pm->cap = 0;
}

/* Index of the run holding page (page < npages). */
static size_t run_of(const ProtMap *pm, size_t page) {
  size_t lo = 0, hi = pm->nruns;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (pm->runs[mid].first <= page)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

static size_t run_end(const ProtMap *pm, size_t r) {
  return r + 1 < pm->nruns ? pm->runs[r + 1].first : pm->npages;
}

unsigned protmap_get(const ProtMap *pm, size_t page) { return pm->runs[run_of(pm, page)].prot; }

size_t protmap_runend(const ProtMap *pm, size_t page) { return run_end(pm, run_of(pm, page)); }

int protmap_all(const ProtMap *pm, size_t first, size_t n, unsigned bit, size_t *bad) {
  for (size_t r = run_of(pm, first); r < pm->nruns && pm->runs[r].first < first + n; r++)
    if (!(pm->runs[r].prot & bit)) {
      *bad = pm->runs[r].first > first ? pm->runs[r].first : first;
      return 0;
    }
  return 1;
}

int protmap_uniform(const ProtMap *pm, size_t first, size_t n, unsigned *prot) {
  size_t r = run_of(pm, first);
  *prot = pm->runs[r].prot;
  return n == 0 || run_end(pm, r) >= first + n;
}

/* Makes room for one change (protmap_apply adds at most two runs), growing the array by half
 * its length at least, so that a script protecting page after page pays for the copies once in a
 * while, not at every call (a fresh array per call made protecting every other page quadratic:
 * 20 000 of them took 3.4 s, most of it in page faults of the new arrays). 0, or ENOMEM with the
 * map unchanged. */
int protmap_reserve(ProtMap *pm) {
  if (pm->nruns + 2 <= pm->cap) return 0;
  size_t cap = pm->nruns + 2 + pm->nruns / 2;
  if (cap > SIZE_MAX / sizeof(ProtRun)) return ENOMEM;
  ProtRun *runs = (ProtRun *)realloc(pm->runs, cap * sizeof(ProtRun));
  if (!runs) return ENOMEM;
  pm->runs = runs;
  pm->cap = cap;
  return 0;
}

/* Sets pages [first, first+n) to prot in place, after protmap_reserve (cannot fail). The runs
 * from the one before first's to end's (the run holding the page after the range) are rebuilt in
 * a window of at most four (the run before, first's run cut at first, the new run, end's run from
 * end), equal neighbours merged there, and the runs after the window moved to follow it (end's
 * run and the next one differ already): the runs stay sorted, non-empty, with no two neighbours
 * of equal protection, as everywhere else. */
void protmap_apply(ProtMap *pm, size_t first, size_t n, unsigned prot) {
  if (n == 0) return;
  size_t end = first + n;
  size_t a = run_of(pm, first);
  size_t b = end < pm->npages ? run_of(pm, end) : pm->nruns - 1;
  size_t lo = a > 0 ? a - 1 : a;
  ProtRun w[4];
  size_t k = 0;
  if (lo < a) w[k++] = pm->runs[lo];
  if (pm->runs[a].first < first) w[k++] = pm->runs[a];
  w[k].first = first;
  w[k++].prot = (uint8_t)prot;
  if (end < pm->npages) {
    w[k].first = end;
    w[k++].prot = pm->runs[b].prot;
  }
  size_t m = 0; /* merge equal neighbours */
  for (size_t i = 0; i < k; i++)
    if (m == 0 || w[m - 1].prot != w[i].prot) w[m++] = w[i];
  size_t tail = pm->nruns - (b + 1); /* the runs after the window */
  memmove(pm->runs + lo + m, pm->runs + b + 1, tail * sizeof(ProtRun));
  memcpy(pm->runs + lo, w, m * sizeof(ProtRun));
  pm->nruns = lo + m + tail;
}

/* Sets pages [first, first+n) to prot where no system call stands between: reserve and apply at
 * once. Out of memory the map is left as it was (the caller has nothing better to offer). */
void protmap_set(ProtMap *pm, size_t first, size_t n, unsigned prot) {
  if (protmap_reserve(pm) == 0) protmap_apply(pm, first, n, prot);
}

/* Grows (new pages take the last page's protection, as mremap gives them) or shrinks. */
void protmap_resize(ProtMap *pm, size_t npages) {
  while (pm->nruns > 1 && pm->runs[pm->nruns - 1].first >= npages) pm->nruns--;
  pm->npages = npages;
}

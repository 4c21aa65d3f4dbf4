/* protmap.c: the protection memlab set on each page of a mapping, as runs of pages (see
 * memlab.h). A mapping of any size with one protection is one run; each b:protect of a part adds
 * at most two. Lookups are binary searches, so they are safe to make from the fault handler
 * (nothing here allocates except protmap_init and protmap_prepare, called from normal context
 * only). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memlab.h"

int protmap_init(ProtMap *pm, size_t npages, unsigned prot) {
  pm->runs = (ProtRun *)malloc(sizeof(ProtRun));
  if (!pm->runs) return ENOMEM;
  pm->nruns = 1;
  pm->npages = npages;
  pm->runs[0].first = 0;
  pm->runs[0].prot = (uint8_t)prot;
  return 0;
}

void protmap_free(ProtMap *pm) {
  free(pm->runs);
  pm->runs = NULL;
  pm->nruns = pm->npages = 0;
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

/* Builds (without installing) the runs with pages [first, first+n) set to prot, keeping runs
 * sorted, non-empty and with no two neighbours of equal protection. Returns the new array (its
 * length in *nruns), or NULL when out of memory; the map itself is unchanged either way. */
ProtRun *protmap_prepare(const ProtMap *pm, size_t first, size_t n, unsigned prot,
                         size_t *nruns) {
  size_t end = first + n;
  ProtRun *out = (ProtRun *)malloc((pm->nruns + 2) * sizeof(ProtRun));
  if (!out) return NULL;
  size_t k = 0;
  for (size_t r = 0; r < pm->nruns && pm->runs[r].first < first; r++) out[k++] = pm->runs[r];
  out[k].first = first;
  out[k++].prot = (uint8_t)prot;
  if (end < pm->npages) {
    size_t r = run_of(pm, end);
    out[k].first = end;
    out[k++].prot = pm->runs[r].prot;
    for (r++; r < pm->nruns; r++) out[k++] = pm->runs[r];
  }
  size_t m = 0; /* merge equal neighbours */
  for (size_t i = 0; i < k; i++)
    if (m == 0 || out[m - 1].prot != out[i].prot) out[m++] = out[i];
  *nruns = m;
  return out;
}

/* Installs runs made by protmap_prepare (cannot fail). */
void protmap_install(ProtMap *pm, ProtRun *runs, size_t nruns) {
  free(pm->runs);
  pm->runs = runs;
  pm->nruns = nruns;
}

/* Sets pages [first, first+n) to prot where no system call stands between: prepare and install
 * at once. Out of memory the map is left as it was (the caller has nothing better to offer). */
void protmap_set(ProtMap *pm, size_t first, size_t n, unsigned prot) {
  size_t nruns;
  ProtRun *runs = protmap_prepare(pm, first, n, prot, &nruns);
  if (runs) protmap_install(pm, runs, nruns);
}

/* Grows (new pages take the last page's protection, as mremap gives them) or shrinks. */
void protmap_resize(ProtMap *pm, size_t npages) {
  while (pm->nruns > 1 && pm->runs[pm->nruns - 1].first >= npages) pm->nruns--;
  pm->npages = npages;
}

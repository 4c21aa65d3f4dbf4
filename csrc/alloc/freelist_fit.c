/* freelist_fit.c: the address-ordered free list behind the first, next and best fit policies,
 * and the policy names. These policies are here to be compared and shown, not to be fast: a
 * search is O(free blocks), and so is inserting a block that merged with no free neighbour
 * (a block that did merge takes its neighbour's place in O(1), see list_move). */
#include "fl_internal.h"

#include <string.h>

/* Insert b (not listed) before the first listed block above it. */
void lin_insert(ml_freelist *a, fl_block *b)
{
    fl_block *p = NULL, *n = a->lin_head;
    while (n && n < b) {
        p = n;
        n = lnk_next(a, n);
    }
    lnk_set_next(a, b, n);
    lnk_set_prev(a, b, p);
    if (n) lnk_set_prev(a, n, b);
    if (p) lnk_set_next(a, p, b);
    else a->lin_head = b;
}

/* Unlink b; the rover moves on to b's successor (NULL: wrap to the head). */
void lin_remove(ml_freelist *a, fl_block *b)
{
    fl_block *n = lnk_next(a, b), *p = lnk_prev(a, b);
    if (n) lnk_set_prev(a, n, p);
    if (p) lnk_set_next(a, p, n);
    else a->lin_head = n;
    if (a->rover == b) a->rover = n;
}

/* nb takes old's place; precondition: no listed block lies between them in address order. */
void lin_move(ml_freelist *a, fl_block *old, fl_block *nb)
{
    fl_block *n = lnk_next(a, old), *p = lnk_prev(a, old);
    lnk_set_next(a, nb, n);
    lnk_set_prev(a, nb, p);
    if (n) lnk_set_prev(a, n, nb);
    if (p) lnk_set_next(a, p, nb);
    else a->lin_head = nb;
    if (a->rover == old) a->rover = nb;
}

/* First fit: the lowest-addressed block that fits. */
static fl_block *find_first(const ml_freelist *a, fl_block *from, const fl_block *stop, size_t size)
{
    for (fl_block *b = from; b != stop; b = lnk_next(a, b))
        if (h_size(hdr_get(a, b)) >= size) return b;
    return NULL;
}

/* The search of each policy. Next fit resumes at the rover and wraps around once; the rover is
 * left on the block found, so the next search starts there. Best fit takes the smallest block
 * that fits, the lowest-addressed one among equals, and stops early on an exact fit. */
fl_block *lin_find(ml_freelist *a, size_t size)
{
    switch (a->policy) {
    case FL_FIRST:
        return find_first(a, a->lin_head, NULL, size);
    case FL_NEXT: {
        fl_block *start = a->rover ? a->rover : a->lin_head;
        fl_block *b = find_first(a, start, NULL, size);
        if (!b && start != a->lin_head) b = find_first(a, a->lin_head, start, size);
        if (b) a->rover = b;
        return b;
    }
    case FL_BEST: {
        fl_block *best = NULL;
        size_t bestsz = SIZE_MAX;
        for (fl_block *b = a->lin_head; b; b = lnk_next(a, b)) {
            size_t s = h_size(hdr_get(a, b));
            if (s >= size && s < bestsz) {
                best = b;
                bestsz = s;
                if (s == size) break;
            }
        }
        return best;
    }
    case FL_SEGREGATED:
        break;
    }
    return NULL;
}

const char *fl_policy_name(fl_policy p)
{
    switch (p) {
    case FL_SEGREGATED: return "segregated";
    case FL_FIRST: return "first";
    case FL_NEXT: return "next";
    case FL_BEST: return "best";
    }
    return "?";
}

int fl_policy_parse(const char *name, fl_policy *out)
{
    static const fl_policy all[] = { FL_SEGREGATED, FL_FIRST, FL_NEXT, FL_BEST };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, fl_policy_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

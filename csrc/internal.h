/* internal.h - helpers shared by the loops; not part of the contract. */
#ifndef PPS_INTERNAL_H
#define PPS_INTERNAL_H

#include <stdint.h>
#include "pps.h"

/* Relaxed stores are enough: each counter has one writer, and a reader only needs a
 * value that was true at some recent moment, not ordering between counters. */
#define PUBLISH(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)
#define STOPPED(shm, role) __atomic_load_n(&(shm)->stop[(role)], __ATOMIC_RELAXED)

static inline int hist_index(uint64_t v)
{
    const int sub = 1 << PPS_HIST_SUB_BITS;
    if (v < (uint64_t)(2 * sub))
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - PPS_HIST_SUB_BITS;
    return (shift + 1) * sub + (int)(v >> shift) - sub;
}

/* A polite spin: tells the core we are waiting, so an SMT sibling gets the pipeline. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int valid_slot(const struct pps_shm *shm, uint32_t slot)
{
    return shm && shm->magic == PPS_SHM_MAGIC && slot < shm->nslots;
}

#endif

/* common.c - clock, histogram buckets and the shared segment layout. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "pps.h"
#include "internal.h"

/* Two workers never share a cache line, and each histogram starts on one. */
_Static_assert(sizeof(struct pps_stats) % 64 == 0, "pps_stats must be whole cache lines");
_Static_assert(offsetof(struct pps_stats, hist) % 64 == 0, "hist must start a cache line");
_Static_assert(offsetof(struct pps_stats, stack_hist) % 64 == 0, "stack_hist alignment");
_Static_assert(offsetof(struct pps_stats, app_hist) % 64 == 0, "app_hist alignment");

uint64_t pps_now_ns(int clock_id)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int pps_hist_index(uint64_t v)
{
    return hist_index(v);
}

uint64_t pps_hist_low(int index)
{
    const int sub = 1 << PPS_HIST_SUB_BITS;
    if (index < 2 * sub)
        return (uint64_t)index;
    int shift = index / sub - 1;
    return (uint64_t)(sub + index % sub) << shift;
}

uint64_t pps_shm_bytes(uint32_t nslots)
{
    return sizeof(struct pps_shm) + (uint64_t)nslots * sizeof(struct pps_stats);
}

int pps_shm_init(struct pps_shm *shm, uint32_t nslots)
{
    if (!shm || nslots == 0) {
        errno = EINVAL;
        return -1;
    }
    memset(shm, 0, pps_shm_bytes(nslots));
    shm->magic = PPS_SHM_MAGIC;
    shm->version = PPS_SHM_VERSION;
    shm->nslots = nslots;
    shm->slot_bytes = sizeof(struct pps_stats);
    return 0;
}

int pps_die_with_parent(void)
{
    return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}

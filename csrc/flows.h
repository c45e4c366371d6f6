/* flows.h - the receiver's per-flow sequence tracking: a bounded table of the flows this
 * run can have, and a reorder window per flow. Not part of the contract.
 *
 * Only the two checks every packet pays are inline here (the flow of the previous packet,
 * the next number of the run in order); everything else is in flows.c, off the hot path. */
#ifndef PPS_FLOWS_H
#define PPS_FLOWS_H

#include <stdint.h>
#include "pps.h"

/* Reorder window: the last WINDOW sequence numbers of a flow, one bit each, indexed
 * by seq mod WINDOW. It tells a late packet (bit clear) from a duplicate (bit set). */
#define WINDOW 1024
#define WINDOW_WORDS (WINDOW / 64)

struct flow {
    uint64_t key;          /* flow id + 1; 0 marks an empty slot */
    uint64_t next;         /* highest seq + 1 */
    uint64_t lost;         /* numbers below next not (yet) received: this flow's own, so
                            * a straggler or a replay here can only ever repay it */
    uint64_t received, unique, reordered, duplicate, late;
    uint64_t window[WINDOW_WORDS];
};
_Static_assert(sizeof(struct flow) == 192, "a flow entry is three cache lines");

struct flow_table {
    struct flow *slots;    /* open addressing, capacity a power of two, never grows */
    uint32_t mask;
    uint32_t used;
    uint32_t max;          /* most entries: a flood of new ids cannot grow memory */
    uint32_t run_key;
    uint32_t n_senders, flows_per_sender;
    struct flow *last;     /* the flow of the previous packet (find_flow) */
    uint64_t last_wire;    /* its id as on the wire; above 2^32 - 1 when there is none */
    int miss;              /* why the last lookup gave no entry (enum flow_miss) */
};

enum flow_miss {
    MISS_FULL,             /* an id of this run, but the table is full */
    MISS_FOREIGN,          /* not an id this run can have */
    MISS_JUMP,             /* a new flow whose first seq is a jump: no entry for it */
};

/* The loop's sequence counters, kept in registers and published once per syscall. */
struct seq_tally {
    uint64_t lost, reordered, duplicate, late, jumps;
    /* Sequence numbers [run_from, run_to) of run_flow, next in order, not yet in its
     * entry: a packet that continues the run costs one compare. Flushed (seq_flush)
     * before any other use of a flow entry and at the end of every batch. */
    struct flow *run_flow;
    uint64_t run_from, run_to;
};

int flow_table_init(struct flow_table *ft, const struct pps_recv_params *p);
void flow_table_free(struct flow_table *ft);
int flow_table_results(const struct flow_table *ft, struct pps_flow_result *out, uint32_t cap);

/* NULL when there is no entry (ft->miss says why); seq is looked at only for a new one. */
struct flow *lookup_flow(struct flow_table *ft, uint32_t wire, uint64_t seq);
/* 1: tracked; 0: a seq no honest sender sends (counted in t->jumps, flow unchanged). */
int track_slow(struct flow *f, uint64_t seq, struct seq_tally *t);
void seq_flush(struct seq_tally *t);

/* Most flows arrive in runs (a batch from one sender socket): skip the hash on repeats. */
static inline struct flow *find_flow(struct flow_table *ft, uint32_t wire, uint64_t seq)
{
    return wire == ft->last_wire ? ft->last : lookup_flow(ft, wire, seq);
}

static inline int track(struct flow *f, uint64_t seq, struct seq_tally *t)
{
    if (__builtin_expect(f == t->run_flow && seq == t->run_to, 1)) {
        t->run_to++;
        return 1;
    }
    return track_slow(f, seq, t);
}

/* Counters that stop at 2^64 - 1 instead of wrapping, and then stay there. */
static inline void sat_add(uint64_t *x, uint64_t v)
{
    if (__builtin_add_overflow(*x, v, x))
        *x = UINT64_MAX;
}

static inline void sat_dec(uint64_t *x)
{
    if (*x && *x != UINT64_MAX)
        (*x)--;
}

#endif

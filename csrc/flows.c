/* flows.c - the receiver's flow table and sequence tracking off the hot path: which ids
 * are this run's, gaps, stragglers, repeats, and numbers no honest sender sends. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "pps.h"
#include "flows.h"

/* murmur3's 32-bit finalizer and its inverse: a fixed bijection that spreads every bit of
 * its input over all of its output. */
static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t unmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7ed1b41du; /* inverse of 0xc2b2ae35 mod 2^32 */
    h ^= h >> 13;
    h ^= h >> 26;
    h *= 0xa5cb9243u; /* inverse of 0x85ebca6b mod 2^32 */
    h ^= h >> 16;
    return h;
}

/* XOR with the key between mix and unmix: a permutation per key, its own inverse, the
 * identity for key 0, and (unlike a plain XOR) one where keys a bit apart decode each
 * other's ids to unrelated numbers, not to a neighbouring flow of the same run. */
uint32_t pps_wire_flow(uint32_t run_key, uint32_t flow)
{
    return unmix32(mix32(flow) ^ run_key);
}

int flow_table_init(struct flow_table *ft, const struct pps_recv_params *p)
{
    uint32_t cap = 2;
    while (cap < 2 * p->max_flows) /* load factor <= 1/2 keeps probes short */
        cap <<= 1;
    /* Mapped, not allocated: page-aligned, so every entry is three whole cache lines, and
     * zeroed lazily, so a big bound costs only the entries used. */
    void *slots = mmap(NULL, (size_t)cap * sizeof(struct flow), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        errno = ENOMEM;
        return -1;
    }
    *ft = (struct flow_table){
        .slots = slots, .mask = cap - 1, .max = p->max_flows, .run_key = p->run_key,
        .n_senders = p->n_senders, .flows_per_sender = p->flows_per_sender,
        .last_wire = UINT64_MAX,
    };
    return 0;
}

void flow_table_free(struct flow_table *ft)
{
    if (ft->slots)
        munmap(ft->slots, (size_t)(ft->mask + 1) * sizeof(struct flow));
    ft->slots = NULL;
}

static int is_ours(const struct flow_table *ft, uint32_t id)
{
    return (id >> 16) < ft->n_senders && (id & 0xffffu) < ft->flows_per_sender;
}

/* A first sequence number no honest flow starts with (a new flow's next is 0). */
static int is_jump_from(uint64_t next, uint64_t seq)
{
    return seq >= PPS_SEQ_LIMIT || (seq > next && seq - next > PPS_SEQ_JUMP_MAX);
}

struct flow *lookup_flow(struct flow_table *ft, uint32_t wire, uint64_t seq)
{
    const uint32_t id = pps_wire_flow(ft->run_key, wire);
    if (!is_ours(ft, id)) { /* another run's, or a forger's: never an entry */
        ft->miss = MISS_FOREIGN;
        return NULL;
    }
    const uint64_t key = (uint64_t)id + 1;
    uint32_t i = (uint32_t)(key * 0x9E3779B97F4A7C15ull >> 32) & ft->mask;
    for (;;) {
        struct flow *f = &ft->slots[i];
        if (f->key == key)
            break;
        if (f->key == 0) {
            if (is_jump_from(0, seq)) {
                ft->miss = MISS_JUMP;
                return NULL;
            }
            if (ft->used >= ft->max) {
                ft->miss = MISS_FULL;
                return NULL;
            }
            f->key = key;
            ft->used++;
            break;
        }
        i = (i + 1) & ft->mask;
    }
    ft->last = &ft->slots[i];
    ft->last_wire = wire;
    return ft->last;
}

int flow_table_results(const struct flow_table *ft, struct pps_flow_result *out, uint32_t cap)
{
    uint32_t n = 0;
    for (uint32_t i = 0; ft->slots && i <= ft->mask && n < cap; i++) {
        const struct flow *f = &ft->slots[i];
        if (!f->key)
            continue;
        out[n++] = (struct pps_flow_result){f->key - 1, f->received, f->unique, f->next,
                                            f->reordered, f->duplicate, f->late};
    }
    return (int)n;
}

static int window_test_set(struct flow *f, uint64_t seq)
{
    uint64_t bit = 1ull << (seq % 64);
    uint64_t *word = &f->window[(seq % WINDOW) / 64];
    int was = (*word & bit) != 0;
    *word |= bit;
    return was;
}

/* Set (or clear) the slots of [from, to) a word at a time: a burst of drops skips
 * hundreds of numbers and a run in order covers thousands, and a bit at a time cost more
 * than the packet did. A range of WINDOW or more covers every slot. */
static void window_fill(struct flow *f, uint64_t from, uint64_t to, int set)
{
    if (to - from >= WINDOW) {
        memset(f->window, set ? 0xff : 0, sizeof(f->window));
        return;
    }
    while (from < to) {
        uint32_t bit = from % 64;
        uint64_t n = 64 - bit;
        if (n > to - from)
            n = to - from;
        uint64_t mask = (n == 64 ? ~0ull : (1ull << n) - 1) << bit;
        uint64_t *word = &f->window[(from % WINDOW) / 64];
        *word = set ? *word | mask : *word & ~mask;
        from += n;
    }
}

/* The pending run in order into its flow's entry. Setting the run's slots is the whole
 * window update: each held a number WINDOW older, long settled. */
void seq_flush(struct seq_tally *t)
{
    struct flow *f = t->run_flow;
    if (!f)
        return;
    uint64_t n = t->run_to - t->run_from;
    window_fill(f, t->run_from, t->run_to, 1);
    f->next = t->run_to;
    f->received += n;
    f->unique += n;
    t->run_flow = NULL;
}

/* A number ahead of next: the ones skipped are lost, until they come. */
static int track_gap(struct flow *f, uint64_t seq, struct seq_tally *t)
{
    if (is_jump_from(f->next, seq)) {
        t->jumps++;
        return 0;
    }
    uint64_t gap = seq - f->next;
    /* Slots of the skipped numbers now belong to them, not to numbers WINDOW older. */
    window_fill(f, f->next, seq, 0);
    window_test_set(f, seq);
    f->lost += gap; /* at most 2^32 a packet, below 2^63 in all: no wrap */
    sat_add(&t->lost, gap);
    f->next = seq + 1;
    f->received++;
    f->unique++;
    return 1;
}

/* A number this flow came back to: a straggler repays its own flow's loss, a repeat is a
 * duplicate. */
static void track_behind(struct flow *f, uint64_t seq, struct seq_tally *t)
{
    f->received++;
    int straggler;
    if (f->next - seq > WINDOW)
        /* Too old for the window to tell. A flow that misses nothing has no straggler to
         * come: a repeat (or a replay). Else a late arrival is far more likely. */
        straggler = f->lost > 0;
    else
        straggler = !window_test_set(f, seq);
    if (!straggler) {
        f->duplicate++;
        t->duplicate++;
        return;
    }
    if (f->next - seq > WINDOW) {
        f->late++;
        t->late++;
    }
    f->reordered++;
    f->unique++;
    t->reordered++;
    if (f->lost) { /* always, inside the window: a clear slot is a counted gap */
        f->lost--;
        sat_dec(&t->lost);
    }
}

int track_slow(struct flow *f, uint64_t seq, struct seq_tally *t)
{
    seq_flush(t);
    if (seq == f->next) {
        t->run_flow = f;
        t->run_from = seq;
        t->run_to = seq + 1;
        return 1;
    }
    if (seq > f->next)
        return track_gap(f, seq, t);
    track_behind(f, seq, t);
    return 1;
}

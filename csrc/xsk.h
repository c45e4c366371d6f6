/* xsk.h - the AF_XDP socket's insides: its four rings and its UMEM frame pools. Shared by
 * xsk.c (open, close, statistics), xsk_send.c and xsk_recv.c; not part of the contract.
 *
 * A ring is a power-of-two array in memory the kernel shares with us, with a producer and
 * a consumer index that only ever grow (mod 2^32). We produce into the fill and TX rings
 * and consume from the RX and completion rings. Each side keeps a cached copy of the other
 * side's index and reads the shared one only when the cache says the ring is full (or
 * empty): one shared-line read per batch, not per packet. */
#ifndef PPS_XSK_H
#define PPS_XSK_H

#include <stddef.h>
#include <stdint.h>
#include <linux/if_xdp.h>

#include "pps.h"

struct xsk_ring {
    uint32_t *producer;
    uint32_t *consumer;
    uint32_t *flags;       /* XDP_RING_NEED_WAKEUP lives here; NULL before Linux 5.4 */
    void *descs;           /* struct xdp_desc[] (RX, TX) or uint64_t[] (fill, completion) */
    uint32_t size, mask;
    uint32_t cached_prod;  /* producer rings: ours; consumer rings: the kernel's, as last read */
    uint32_t cached_cons;  /* consumer rings: ours; producer rings: the kernel's, as last read */
    void *map;             /* the mmap of the ring, for munmap */
    size_t map_len;
};

/* A stack of free UMEM frame addresses. */
struct frame_pool {
    uint64_t *addr;
    uint32_t n, cap;
};

struct pps_xsk {
    int fd;
    int zerocopy;          /* bind took XDP_ZEROCOPY */
    int need_wakeup;       /* bind took XDP_USE_NEED_WAKEUP */
    int ifindex;
    uint32_t queue_id;
    uint8_t *umem;
    size_t umem_len;
    uint32_t frames, frame_size;
    struct xsk_ring rx, tx, fill, comp;   /* rx/tx: size 0 when the socket has none */
    /* Frames [0, rx_frames) belong to receiving, the rest to sending: the two never share
     * a frame, so a frame we wrote a template into only ever holds what we wrote. */
    uint32_t rx_frames;
    struct frame_pool rx_free;  /* RX frames neither in the fill ring nor in the RX ring */
    struct frame_pool tx_free;  /* TX frames not handed to the kernel */
    uint32_t tx_outstanding;    /* TX frames handed over and not yet completed */
};

/* Producer side (fill, TX): room for up to `want` entries; returns how many. */
static inline uint32_t ring_prod_room(struct xsk_ring *r, uint32_t want)
{
    uint32_t room = r->size - (r->cached_prod - r->cached_cons);
    if (room < want) {
        r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
        room = r->size - (r->cached_prod - r->cached_cons);
    }
    return room < want ? room : want;
}

/* Producer side: publish the n entries written at cached_prod .. cached_prod + n - 1. */
static inline void ring_prod_submit(struct xsk_ring *r, uint32_t n)
{
    r->cached_prod += n;
    __atomic_store_n(r->producer, r->cached_prod, __ATOMIC_RELEASE);
}

/* Consumer side (RX, completion): entries ready, up to `want`. */
static inline uint32_t ring_cons_ready(struct xsk_ring *r, uint32_t want)
{
    uint32_t ready = r->cached_prod - r->cached_cons;
    if (ready < want) {
        r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
        ready = r->cached_prod - r->cached_cons;
    }
    return ready < want ? ready : want;
}

/* Consumer side: give the n entries read at cached_cons .. back to the kernel. */
static inline void ring_cons_release(struct xsk_ring *r, uint32_t n)
{
    r->cached_cons += n;
    __atomic_store_n(r->consumer, r->cached_cons, __ATOMIC_RELEASE);
}

static inline struct xdp_desc *ring_desc(struct xsk_ring *r, uint32_t idx)
{
    return &((struct xdp_desc *)r->descs)[idx & r->mask];
}

static inline uint64_t *ring_addr(struct xsk_ring *r, uint32_t idx)
{
    return &((uint64_t *)r->descs)[idx & r->mask];
}

/* The kernel asks to be kicked (sendto for TX, a read or poll for fill). A ring without
 * the flag (before 5.4, or bound without XDP_USE_NEED_WAKEUP) always needs it. */
static inline int ring_needs_wakeup(const struct xsk_ring *r)
{
    return !r->flags || (__atomic_load_n(r->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP);
}

/* Completed TX frames back into the free pool; returns how many. */
static inline uint32_t xsk_reclaim(struct pps_xsk *x)
{
    uint32_t n = ring_cons_ready(&x->comp, x->comp.size);
    uint32_t idx = x->comp.cached_cons;
    for (uint32_t i = 0; i < n; i++)
        x->tx_free.addr[x->tx_free.n++] = *ring_addr(&x->comp, idx + i);
    if (n)
        ring_cons_release(&x->comp, n);
    x->tx_outstanding -= n;
    return n;
}

/* Free RX frames into the fill ring, as many as it has room for; returns how many. */
static inline uint32_t xsk_refill(struct pps_xsk *x)
{
    uint32_t n = ring_prod_room(&x->fill, x->rx_free.n);
    uint32_t idx = x->fill.cached_prod;
    for (uint32_t i = 0; i < n; i++)
        *ring_addr(&x->fill, idx + i) = x->rx_free.addr[--x->rx_free.n];
    if (n)
        ring_prod_submit(&x->fill, n);
    return n;
}

#endif

/* xsk_recv.c - the AF_XDP receiver: frames from the RX ring, parsed down to the UDP
 * payload, counted by the same code as the recvmmsg receiver (rx_account.h), and given
 * straight back to the kernel through the fill ring. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/if_xdp.h>

#include "pps.h"
#include "internal.h"
#include "flows.h"
#include "xsk.h"

struct pps_xsk_receiver {
    /* What rx_account.h reads (RX_RECEIVER). */
    struct pps_recv_params p;
    struct flow_table flows;
    uint64_t stale_before;
    struct pps_xsk *x;
    uint64_t *taken;       /* this pass's frames, back to the fill ring after it */
};

#define RX_RECEIVER struct pps_xsk_receiver
#include "rx_account.h"

/* A receiver that sleeps in poll(2) wakes at least this often to look at the stop word
 * and the deadline and to publish its heartbeat. */
#define POLL_MS 100
/* A spinning receiver with nothing to read publishes its heartbeat this often. */
#define IDLE_PUBLISH_NS 1000000ull
#define PREFETCH_AHEAD 8

struct pps_xsk_receiver *pps_xsk_recv_new(const struct pps_recv_params *p, struct pps_xsk *x)
{
    if (!p || !x || !x->rx.size || p->batch < 1 || p->batch > 1024 || p->max_flows < 1 ||
        p->max_flows > PPS_MAX_FLOWS || p->n_senders > PPS_MAX_SENDERS ||
        p->flows_per_sender > PPS_MAX_FLOWS_PER_SENDER || p->timestamps) {
        errno = EINVAL;
        return NULL;
    }
    struct pps_xsk_receiver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->p = *p;
    r->p.gro = 0;
    r->x = x;
    if (p->run_start_ns > PPS_STAMP_SLACK_NS)
        r->stale_before = p->run_start_ns - PPS_STAMP_SLACK_NS;
    r->taken = calloc(p->batch, sizeof(*r->taken));
    if (!r->taken || (p->track && flow_table_init(&r->flows, p) != 0)) {
        pps_xsk_recv_free(r);
        errno = ENOMEM;
        return NULL;
    }
    return r;
}

void pps_xsk_recv_free(struct pps_xsk_receiver *r)
{
    if (!r)
        return;
    free(r->taken);
    flow_table_free(&r->flows);
    free(r);
}

int pps_xsk_recv_flows(const struct pps_xsk_receiver *r, struct pps_flow_result *out,
                       uint32_t cap)
{
    if (!r || (!out && cap)) {
        errno = EINVAL;
        return -1;
    }
    return flow_table_results(&r->flows, out, cap);
}

/* The UDP payload of an Ethernet frame carrying IPv4/UDP (no VLAN), bounded by both the IP
 * and the UDP length (a short frame may be padded); NULL for anything else. */
static inline const char *udp_payload(const uint8_t *f, uint32_t len, uint32_t *plen)
{
    if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00)
        return NULL;
    const uint8_t *ip = f + 14;
    const uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17)
        return NULL;
    if (((ip[6] & 0x3f) | ip[7]) != 0) /* a fragment (MF or an offset): no whole datagram */
        return NULL;
    const uint32_t tot = (uint32_t)ip[2] << 8 | ip[3];
    if (tot < ihl + 8 || 14 + tot > len)
        return NULL;
    const uint8_t *udp = ip + ihl;
    const uint32_t ulen = (uint32_t)udp[4] << 8 | udp[5];
    if (ulen < 8 || ulen > tot - ihl)
        return NULL;
    *plen = ulen - 8;
    return (const char *)udp + 8;
}

/* The lines of a frame the accounting reads: the wire header, bytes 42..65 of the frame
 * (the kernel wrote them, most likely on another CPU). */
static inline void prefetch_frame(const struct pps_xsk *x, uint32_t ring_idx)
{
    const uint64_t addr = ((const struct xdp_desc *)x->rx.descs)[ring_idx & x->rx.mask].addr;
    if (addr + 128 <= x->umem_len) {
        __builtin_prefetch(x->umem + addr + 42);
        __builtin_prefetch(x->umem + addr + 42 + PPS_WIRE_BYTES - 1);
    }
}

/* Wake the driver to refill from the fill ring, if it asked (zero-copy with need_wakeup;
 * in copy mode the kernel takes frames from the fill ring as packets come). */
static inline void wake_fill(struct pps_xsk *x, uint64_t *syscalls)
{
    if (x->zerocopy && ring_needs_wakeup(&x->fill)) {
        (void)recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        (*syscalls)++;
    }
}

int pps_xsk_recv_loop(struct pps_xsk_receiver *r, struct pps_shm *shm, uint32_t slot)
{
    if (!r || !valid_slot(shm, slot) || r->x->fd < 0) {
        errno = EINVAL;
        return -1;
    }
    const struct pps_recv_params *p = &r->p;
    struct pps_xsk *x = r->x;
    struct pps_stats *st = &shm->slots[slot];
    struct tally t = {0};
    uint64_t frames = 0, bytes = 0, syscalls = 0, idle = 0, errors = 0;
    const uint64_t frame_mask = ~(uint64_t)(x->frame_size - 1);
    uint64_t spin_until = 0; /* poll mode: spin, don't sleep, until then (clock_id time) */
    uint64_t now = pps_now_ns(p->clock_id), published = 0;
    int fatal = 0;

    xsk_refill(x);
    PUBLISH(st->state, PPS_STATE_RUNNING);
    while (!STOPPED(shm, PPS_ROLE_RECEIVER)) {
        uint32_t n = ring_cons_ready(&x->rx, p->batch);
        if (n == 0) {
            idle++;
            if (p->busy_poll || now < spin_until) {
                wake_fill(x, &syscalls);
                cpu_relax();
                now = pps_now_ns(p->clock_id);
                if (now - published < IDLE_PUBLISH_NS)
                    goto check_deadline;
            } else {
                struct pollfd pfd = {.fd = x->fd, .events = POLLIN};
                int k = poll(&pfd, 1, POLL_MS);
                syscalls++;
                if (k < 0 && errno != EINTR) {
                    errors++;
                    PUBLISH(st->last_errno, (uint64_t)errno);
                    if (errno == EBADF || errno == EFAULT || errno == EINVAL)
                        fatal = errno;
                } else if (k > 0 && (pfd.revents & POLLNVAL)) {
                    errors++;
                    fatal = EBADF;
                    PUBLISH(st->last_errno, (uint64_t)fatal);
                }
                now = pps_now_ns(p->clock_id);
            }
        } else {
            now = pps_now_ns(p->clock_id);
            if (p->spin_ns)
                spin_until = now + p->spin_ns;
            const uint32_t idx = x->rx.cached_cons;
            for (uint32_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
                prefetch_frame(x, idx + i);
            if (r->flows.last)
                __builtin_prefetch(r->flows.last, 1);
            for (uint32_t i = 0; i < n; i++) {
                if (i + PREFETCH_AHEAD < n)
                    prefetch_frame(x, idx + i + PREFETCH_AHEAD);
                const struct xdp_desc *d = ring_desc(&x->rx, idx + i);
                const uint64_t addr = d->addr;
                const uint32_t len = d->len;
                r->taken[i] = addr & frame_mask;
                frames++;
                uint32_t plen = 0;
                const char *data = NULL;
                if (addr < x->umem_len && len <= x->umem_len - addr)
                    data = udp_payload(x->umem + addr, len, &plen);
                if (__builtin_expect(!data, 0)) { /* not IPv4/UDP: not this run's */
                    t.packets++;
                    t.foreign++;
                    continue;
                }
                bytes += plen;
                segment(r, st, data, plen, now, 0, &t);
            }
            ring_cons_release(&x->rx, n);
            for (uint32_t i = 0; i < n; i++)
                x->rx_free.addr[x->rx_free.n++] = r->taken[i];
            xsk_refill(x);
            wake_fill(x, &syscalls);
        }
        seq_flush(&t.seq);
        flush_one_way(r, st, &t, now); /* the run's receive time is this pass's */
        publish(st, &t, r->flows.used, frames, bytes, syscalls, idle, errors, now, 0);
        published = now;
        if (fatal)
            break;
    check_deadline:
        if (p->deadline_ns &&
            (p->clock_id == CLOCK_MONOTONIC ? now : pps_now_ns(CLOCK_MONOTONIC)) >= p->deadline_ns)
            break;
    }
    seq_flush(&t.seq);
    flush_one_way(r, st, &t, now);
    publish(st, &t, r->flows.used, frames, bytes, syscalls, idle, errors, now, 0);
    PUBLISH(st->state, fatal ? PPS_STATE_FAILED : PPS_STATE_DONE);
    if (fatal) {
        errno = fatal;
        return -1;
    }
    return 0;
}

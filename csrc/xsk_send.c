/* xsk_send.c - the AF_XDP sender: whole Ethernet/IPv4/UDP frames into UMEM, handed to the
 * kernel through the TX ring, frames taken back from the completion ring.
 *
 * Each flow's first 64 bytes (Ethernet, IPv4 with its checksum, UDP, the wire header's
 * magic and flow id, zeros) are built once. A packet then costs one 64-byte copy, the
 * seq and tx_ns stores and a UDP checksum updated from the flow's precomputed sum of
 * everything else: the ones' complement sum does not care where a 16-bit word sits, so
 * seq and tx_ns add in as two 32-bit halves each. Measured against summing the whole
 * UDP datagram per packet (template copy and stores included, one core of the dev VM):
 * 11-15 ns a packet for the update at any payload, against 30-50 ns (24-64 bytes) and
 * 260 ns (1472 bytes) for a whole sum read 8 bytes at a time. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/if_xdp.h>

#include "pps.h"
#include "internal.h"
#include "pacer.h"
#include "xsk.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9 /* 6.17+: descriptors one copy-mode sendto may send */
#endif

#define ETH_HDR 14
#define IP_HDR 20
#define UDP_HDR 8
#define FRAME_HDR (ETH_HDR + IP_HDR + UDP_HDR)             /* 42 */
#define UDP_CSUM_OFF (ETH_HDR + IP_HDR + 6)                 /* 40 */
#define SEQ_OFF (FRAME_HDR + 8)                             /* 50: struct pps_wire.seq */
#define TX_OFF (FRAME_HDR + 16)                             /* 58: struct pps_wire.tx_ns */
#define TPL_BYTES 64
/* A copy-mode kick sends at most 32 descriptors unless XDP_MAX_TX_SKB_BUDGET says more. */
#define KERNEL_TX_BATCH 32
/* How long the loop waits at its end for the kernel to complete what it was given. */
#define DRAIN_NS 1000000000ull

struct tx_flow {
    uint8_t hdr[TPL_BYTES]; /* the frame's first 64 bytes, seq and tx_ns zero */
    uint64_t sum;           /* ones' complement sum of all the UDP checksum covers but
                             * seq and tx_ns, as 16-bit words loaded in host order */
} __attribute__((aligned(64)));

/* Sum of a buffer as 16-bit words in host order (RFC 1071: the result, stored in host
 * order, is right in network order too); an odd last byte is padded with a zero. */
static uint64_t csum_add(uint64_t sum, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    for (; len >= 2; b += 2, len -= 2) {
        uint16_t w;
        memcpy(&w, b, 2);
        sum += w;
    }
    if (len) {
        uint16_t w = 0;
        memcpy(&w, b, 1);
        sum += w;
    }
    return sum;
}

/* Fold a 64-bit sum of 16- and 32-bit pieces to 16 bits and complement it. */
static inline uint16_t csum_fold(uint64_t s)
{
    s = (s & 0xffffffffull) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static inline uint64_t halves(uint64_t v)
{
    return (v & 0xffffffffull) + (v >> 32);
}

static void build_flow(struct tx_flow *f, const struct pps_xsk_send_params *p, uint32_t i)
{
    uint8_t *h = f->hdr;
    memset(f, 0, sizeof(*f));
    /* Ethernet */
    memcpy(h, p->dst_mac, 6);
    memcpy(h + 6, p->src_mac, 6);
    h[12] = 0x08;
    h[13] = 0x00;
    /* IPv4: no options, DF, id 0 (a DF packet's id is not used), TTL, UDP. */
    uint8_t *ip = h + ETH_HDR;
    const uint16_t tot_len = htobe16((uint16_t)(IP_HDR + UDP_HDR + p->payload));
    const uint16_t frag = htobe16(0x4000);
    ip[0] = 0x45;
    memcpy(ip + 2, &tot_len, 2);
    memcpy(ip + 6, &frag, 2);
    ip[8] = p->ttl ? p->ttl : 64;
    ip[9] = 17;
    memcpy(ip + 12, &p->src_ip, 4);
    memcpy(ip + 16, &p->dst_ip, 4);
    const uint16_t ip_csum = csum_fold(csum_add(0, ip, IP_HDR));
    memcpy(ip + 10, &ip_csum, 2);
    /* UDP */
    uint8_t *udp = ip + IP_HDR;
    const uint16_t sport = htobe16(p->src_ports[i]), dport = htobe16(p->dst_port);
    const uint16_t ulen = htobe16((uint16_t)(UDP_HDR + p->payload));
    memcpy(udp, &sport, 2);
    memcpy(udp + 2, &dport, 2);
    memcpy(udp + 4, &ulen, 2);
    /* The wire header's fixed part; the payload after it is zeros (adds nothing). */
    if (!p->raw) {
        const uint32_t magic = htole32(PPS_MAGIC);
        const uint32_t flow = htole32(pps_wire_flow(p->run_key, p->flow_base + i));
        memcpy(h + FRAME_HDR, &magic, 4);
        memcpy(h + FRAME_HDR + 4, &flow, 4);
    }
    /* Pseudo-header: addresses, zero, protocol, UDP length. */
    uint8_t pseudo[12] = {0};
    memcpy(pseudo, &p->src_ip, 4);
    memcpy(pseudo + 4, &p->dst_ip, 4);
    pseudo[9] = 17;
    memcpy(pseudo + 10, &ulen, 2);
    uint64_t sum = csum_add(0, pseudo, sizeof(pseudo));
    sum = csum_add(sum, udp, UDP_HDR);
    if (!p->raw)
        sum = csum_add(sum, h + FRAME_HDR, 8);
    f->sum = sum;
    if (p->raw) { /* nothing changes per packet: the checksum is the template's */
        uint16_t c = csum_fold(sum);
        if (!c)
            c = 0xffff; /* 0 would mean "no checksum" */
        memcpy(h + UDP_CSUM_OFF, &c, 2);
    }
}

/* Counters for one loop, kept in registers and published once per pass. */
struct tally {
    uint64_t packets, completed, bytes, syscalls;
    uint64_t eagain, enobufs, errors, sleeps;
};

static void publish(struct pps_stats *st, const struct tally *t, uint64_t now)
{
    PUBLISH(st->packets, t->packets);
    PUBLISH(st->datagrams, t->completed);
    PUBLISH(st->bytes, t->bytes);
    PUBLISH(st->syscalls, t->syscalls);
    PUBLISH(st->eagain, t->eagain);
    PUBLISH(st->enobufs, t->enobufs);
    PUBLISH(st->errors, t->errors);
    PUBLISH(st->pace_sleeps, t->sleeps);
    PUBLISH(st->heartbeat_ns, now);
}

/* Errors no retry can cure: the socket is gone, unbound, or not an XSK. */
static int is_fatal(int err)
{
    return err == EBADF || err == ENOTSOCK || err == ENXIO || err == ENODEV ||
           err == EOPNOTSUPP || err == EFAULT || err == EINVAL;
}

/* Tell the kernel the TX ring has frames. In copy mode this sendto is the transmit: it
 * sends up to the kernel's budget of descriptors and answers EAGAIN if more are left.
 * Returns the errno that ends the loop, or 0. */
static int kick(struct pps_xsk *x, struct pps_stats *st, struct tally *t)
{
    t->syscalls++;
    if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
        return 0;
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK)
        t->eagain++;
    else if (err == EBUSY || err == ENOBUFS) /* the device dropped one (NET_XMIT_DROP) */
        t->enobufs++;
    else if (err != EINTR) {
        t->errors++;
        PUBLISH(st->last_errno, (uint64_t)err);
        if (is_fatal(err))
            return err;
    }
    return 0;
}

int pps_xsk_send_loop(const struct pps_xsk_send_params *p, struct pps_shm *shm, uint32_t slot,
                      uint64_t *flow_seq)
{
    struct pps_xsk *x = p ? p->xsk : NULL;
    if (!p || !x || !x->tx.size || x->fd < 0 || !flow_seq || !p->src_ports ||
        p->nflows == 0 || p->batch == 0 || p->batch > 1024 || p->batch > x->tx.size ||
        p->payload > 0xffff - IP_HDR - UDP_HDR ||
        (uint64_t)FRAME_HDR + p->payload > x->frame_size ||
        (!p->raw && p->payload < PPS_WIRE_BYTES) || !valid_slot(shm, slot)) {
        errno = EINVAL;
        return -1;
    }
    struct tx_flow *flows = NULL;
    if (posix_memalign((void **)&flows, 64, (size_t)p->nflows * sizeof(*flows)) != 0) {
        errno = ENOMEM;
        return -1;
    }
    for (uint32_t i = 0; i < p->nflows; i++)
        build_flow(&flows[i], p, i);
    /* Frames keep what an earlier loop wrote past the template (a tx_ns in bytes 64-65):
     * clear the header and wire header of every free frame, so a raw payload is zeros. */
    for (uint32_t i = 0; i < x->tx_free.n; i++)
        memset(x->umem + x->tx_free.addr[i], 0, FRAME_HDR + PPS_WIRE_BYTES);
    if (p->batch > KERNEL_TX_BATCH) { /* one kick may then send a whole batch (6.17+) */
        unsigned int budget = p->batch;
        (void)setsockopt(x->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget));
    }

    struct pps_stats *st = &shm->slots[slot];
    struct tally t = {0};
    const uint32_t frame_len = FRAME_HDR + p->payload;
    const int paced = p->rate_pps > 0;
    struct pacer pc = {0};
    if (paced)
        pacer_init(&pc, p->rate_pps, p->burst, p->batch, pps_now_ns(CLOCK_MONOTONIC));

    PUBLISH(st->state, PPS_STATE_RUNNING);
    uint32_t flow = 0;
    int fatal = 0;
    uint64_t now = pps_now_ns(CLOCK_MONOTONIC);
    while (!STOPPED(shm, PPS_ROLE_SENDER)) {
        uint32_t count = p->batch;
        now = pps_now_ns(CLOCK_MONOTONIC);
        if (p->deadline_ns && now >= p->deadline_ns)
            break;
        if (p->max_packets) {
            if (t.packets >= p->max_packets)
                break;
            if (p->max_packets - t.packets < count)
                count = (uint32_t)(p->max_packets - t.packets);
        }
        if (paced) {
            uint64_t at = pacer_due(&pc, now, count);
            if (at > now) {
                if (pace_wait_until(at, &t.sleeps, shm, st))
                    break;
                now = pps_now_ns(CLOCK_MONOTONIC);
            }
        }
        /* Every pass: the completion ring must not fill up, or the kernel stops sending. */
        t.completed += xsk_reclaim(x);
        uint32_t n = count < x->tx_free.n ? count : x->tx_free.n;
        n = ring_prod_room(&x->tx, n);
        if (n == 0) {
            /* Every frame is with the kernel: it must send some before any comes back.
             * In copy mode only a kick sends; in zero-copy the driver does, unless it
             * asked for a kick. */
            if (ring_needs_wakeup(&x->tx))
                fatal = kick(x, st, &t);
            else
                cpu_relax();
            publish(st, &t, now);
            if (fatal)
                break;
            continue;
        }
        const uint64_t tx_ns = p->clock_id == CLOCK_MONOTONIC ? now : pps_now_ns(p->clock_id);
        const uint64_t tx_le = htole64(tx_ns);
        const uint64_t tx_sum = halves(tx_le);
        const uint32_t idx = x->tx.cached_prod;
        for (uint32_t j = 0; j < n; j++) {
            const uint64_t addr = x->tx_free.addr[--x->tx_free.n];
            uint8_t *fr = x->umem + addr;
            const struct tx_flow *f = &flows[flow];
            memcpy(fr, f->hdr, TPL_BYTES);
            if (!p->raw) {
                const uint64_t seq_le = htole64(flow_seq[flow]++);
                memcpy(fr + SEQ_OFF, &seq_le, 8);
                memcpy(fr + TX_OFF, &tx_le, 8);
                uint16_t c = csum_fold(f->sum + halves(seq_le) + tx_sum);
                if (!c)
                    c = 0xffff;
                memcpy(fr + UDP_CSUM_OFF, &c, 2);
            }
            struct xdp_desc *d = ring_desc(&x->tx, idx + j);
            d->addr = addr;
            d->len = frame_len;
            d->options = 0;
            if (++flow == p->nflows)
                flow = 0;
        }
        ring_prod_submit(&x->tx, n);
        x->tx_outstanding += n;
        t.packets += n;
        t.bytes += (uint64_t)n * p->payload;
        if (paced)
            pacer_sent(&pc, now, n);
        if (ring_needs_wakeup(&x->tx))
            fatal = kick(x, st, &t);
        publish(st, &t, now);
        if (fatal)
            break;
    }
    /* Let the kernel finish what it was given, so the counts are final and the frames
     * ours again for the next loop. */
    const uint64_t give_up = now + DRAIN_NS;
    while (!fatal && x->tx_outstanding) {
        uint32_t back = xsk_reclaim(x);
        t.completed += back;
        if (!back) {
            if (ring_needs_wakeup(&x->tx))
                fatal = kick(x, st, &t);
            else
                cpu_relax();
        }
        if (pps_now_ns(CLOCK_MONOTONIC) >= give_up)
            break;
    }
    publish(st, &t, pps_now_ns(CLOCK_MONOTONIC));
    PUBLISH(st->state, fatal ? PPS_STATE_FAILED : PPS_STATE_DONE);
    free(flows);
    if (fatal) {
        errno = fatal;
        return -1;
    }
    return 0;
}

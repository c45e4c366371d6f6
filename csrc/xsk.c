/* xsk.c - an AF_XDP socket with its own UMEM, made with raw syscalls (no libbpf, no
 * libxdp): socket, setsockopt for the UMEM and the four rings, mmap of each ring, bind.
 *
 * The kernel's rules this follows (net/xdp/xsk.c, xsk_buff_pool.c):
 *   - bind needs a UMEM and both of its rings (fill and completion), whatever the socket
 *     does, and at least one of RX and TX (else EINVAL);
 *   - one socket per device queue (EBUSY), released asynchronously after close: a socket
 *     opened on the same queue right after one closed can see EBUSY for a moment;
 *   - XDP_ZEROCOPY on a driver without AF_XDP zero-copy (veth among them) is EOPNOTSUPP;
 *     XDP_COPY works on every device;
 *   - XDP_USE_NEED_WAKEUP (5.4+) makes the kernel say when it must be kicked; in copy
 *     mode TX always must be (sendto runs the transmit), so the flag only spares kicks
 *     in zero-copy mode and on the fill ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_xdp.h>

#include "pps.h"
#include "xsk.h"

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_OPTIONS
#define XDP_OPTIONS 8
#endif
#ifndef XDP_OPTIONS_ZEROCOPY
#define XDP_OPTIONS_ZEROCOPY (1 << 0)
#endif

#define DEFAULT_FRAMES 4096
#define DEFAULT_FRAME_SIZE 2048
#define DEFAULT_RING 2048
/* The rings a socket must have but does not use (the fill ring of a sender, the completion
 * ring of a receiver): the kernel wants them, nothing goes through them. */
#define IDLE_RING 64
/* How long open waits for a queue still held by a socket being released (see above). */
#define BUSY_WAIT_NS 1000000000ull

static int is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

static void ring_unmap(struct xsk_ring *r)
{
    if (r->map)
        munmap(r->map, r->map_len);
    memset(r, 0, sizeof(*r));
}

/* mmap one ring at its page offset and point our struct into it. */
static int ring_map(int fd, struct xsk_ring *r, const struct xdp_ring_offset *off,
                    int has_flags, uint32_t size, size_t desc_bytes, off_t pgoff)
{
    size_t len = off->desc + (size_t)size * desc_bytes;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (map == MAP_FAILED)
        return -1;
    r->map = map;
    r->map_len = len;
    r->producer = (uint32_t *)((char *)map + off->producer);
    r->consumer = (uint32_t *)((char *)map + off->consumer);
    r->flags = has_flags ? (uint32_t *)((char *)map + off->flags) : NULL;
    r->descs = (char *)map + off->desc;
    r->size = size;
    r->mask = size - 1;
    /* Start from where the kernel is (0 on a new socket). */
    r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
    r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
    return 0;
}

static int set_int(int fd, int opt, uint32_t value)
{
    int v = (int)value;
    return setsockopt(fd, SOL_XDP, opt, &v, sizeof(v));
}

/* The rings' offsets. A kernel before 5.4 returns the shorter struct without flags. */
static int mmap_offsets(int fd, struct xdp_mmap_offsets *off, int *has_flags)
{
    socklen_t len = sizeof(*off);
    memset(off, 0, sizeof(*off));
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, off, &len) < 0)
        return -1;
    if (len == sizeof(*off)) {
        *has_flags = 1;
        return 0;
    }
    /* v1: four rings of {producer, consumer, desc}, no flags. */
    struct { uint64_t producer, consumer, desc; } v1[4];
    if (len != sizeof(v1)) {
        errno = EPROTO;
        return -1;
    }
    memcpy(v1, off, sizeof(v1));
    struct xdp_ring_offset *rings[4] = {&off->rx, &off->tx, &off->fr, &off->cr};
    for (int i = 0; i < 4; i++)
        *rings[i] = (struct xdp_ring_offset){v1[i].producer, v1[i].consumer, v1[i].desc, 0};
    *has_flags = 0;
    return 0;
}

/* Everything but the UMEM's memory: rings, socket. The memory is kept for a retry. */
static void xsk_teardown(struct pps_xsk *x)
{
    ring_unmap(&x->rx);
    ring_unmap(&x->tx);
    ring_unmap(&x->fill);
    ring_unmap(&x->comp);
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
}

/* One try at a bound socket with these bind flags. On failure errno is bind's (or the
 * step's that failed) and x is torn down to its UMEM memory. */
static int xsk_try(struct pps_xsk *x, const struct pps_xsk_params *p, uint32_t rx_size,
                   uint32_t tx_size, uint16_t flags, int *flags_known)
{
    x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (x->fd < 0)
        return -1;
    struct xdp_umem_reg mr;
    memset(&mr, 0, sizeof(mr)); /* the kernel refuses garbage in fields it knows */
    mr.addr = (uint64_t)(uintptr_t)x->umem;
    mr.len = x->umem_len;
    mr.chunk_size = x->frame_size;
    mr.headroom = 0;
    struct xdp_mmap_offsets off;
    int has_flags = 0;
    uint32_t fill_size = p->rx ? rx_size : IDLE_RING;
    uint32_t comp_size = p->tx ? tx_size : IDLE_RING;
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) < 0 ||
        set_int(x->fd, XDP_UMEM_FILL_RING, fill_size) < 0 ||
        set_int(x->fd, XDP_UMEM_COMPLETION_RING, comp_size) < 0 ||
        (p->rx && set_int(x->fd, XDP_RX_RING, rx_size) < 0) ||
        (p->tx && set_int(x->fd, XDP_TX_RING, tx_size) < 0) ||
        mmap_offsets(x->fd, &off, &has_flags) < 0)
        goto fail;
    *flags_known = has_flags;
    if ((flags & XDP_USE_NEED_WAKEUP) && !has_flags) {
        errno = EINVAL; /* no flags word to read the request from: as old kernels say */
        goto fail;
    }
    if (ring_map(x->fd, &x->fill, &off.fr, has_flags, fill_size, sizeof(uint64_t),
                 (off_t)XDP_UMEM_PGOFF_FILL_RING) < 0 ||
        ring_map(x->fd, &x->comp, &off.cr, has_flags, comp_size, sizeof(uint64_t),
                 (off_t)XDP_UMEM_PGOFF_COMPLETION_RING) < 0 ||
        (p->rx && ring_map(x->fd, &x->rx, &off.rx, has_flags, rx_size, sizeof(struct xdp_desc),
                           (off_t)XDP_PGOFF_RX_RING) < 0) ||
        (p->tx && ring_map(x->fd, &x->tx, &off.tx, has_flags, tx_size, sizeof(struct xdp_desc),
                           (off_t)XDP_PGOFF_TX_RING) < 0))
        goto fail;
    struct sockaddr_xdp sxdp = {
        .sxdp_family = AF_XDP,
        .sxdp_flags = flags,
        .sxdp_ifindex = (uint32_t)p->ifindex,
        .sxdp_queue_id = p->queue_id,
    };
    if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)) < 0)
        goto fail;
    return 0;
fail:;
    int err = errno;
    xsk_teardown(x);
    errno = err;
    return -1;
}

/* Bind with one copy mode, with XDP_USE_NEED_WAKEUP if the kernel takes it. EBUSY (the
 * queue still held by a socket being released) is waited out for up to BUSY_WAIT_NS. */
static int xsk_bind_mode(struct pps_xsk *x, const struct pps_xsk_params *p, uint32_t rx_size,
                         uint32_t tx_size, uint16_t mode_flag)
{
    uint64_t give_up = pps_now_ns(CLOCK_MONOTONIC) + BUSY_WAIT_NS;
    for (;;) {
        int flags_known = 1;
        if (xsk_try(x, p, rx_size, tx_size, mode_flag | XDP_USE_NEED_WAKEUP, &flags_known) == 0) {
            x->need_wakeup = 1;
            return 0;
        }
        if (errno == EINVAL) { /* a kernel without need_wakeup: once more without it */
            if (xsk_try(x, p, rx_size, tx_size, mode_flag, &flags_known) == 0) {
                x->need_wakeup = 0;
                return 0;
            }
        }
        if (errno != EBUSY || pps_now_ns(CLOCK_MONOTONIC) >= give_up)
            return -1;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

static int pool_init(struct frame_pool *fp, uint32_t first, uint32_t count, uint32_t frame_size)
{
    fp->addr = calloc(count ? count : 1, sizeof(uint64_t));
    if (!fp->addr)
        return -1;
    fp->cap = count;
    /* Pushed in reverse so the first frames are taken first. */
    for (uint32_t i = 0; i < count; i++)
        fp->addr[i] = (uint64_t)(first + count - 1 - i) * frame_size;
    fp->n = count;
    return 0;
}

struct pps_xsk *pps_xsk_open(const struct pps_xsk_params *p)
{
    if (!p || p->ifindex <= 0 || (!p->rx && !p->tx) || p->mode > PPS_XSK_AUTO) {
        errno = EINVAL;
        return NULL;
    }
    uint32_t frames = p->frames ? p->frames : DEFAULT_FRAMES;
    uint32_t frame_size = p->frame_size ? p->frame_size : DEFAULT_FRAME_SIZE;
    uint32_t rx_size = p->rx_size ? p->rx_size : DEFAULT_RING;
    uint32_t tx_size = p->tx_size ? p->tx_size : DEFAULT_RING;
    long page = sysconf(_SC_PAGESIZE);
    /* Aligned mode: a chunk is a power of two from 2048 to a page. */
    if (!is_pow2(frame_size) || frame_size < 2048 || (long)frame_size > page ||
        !is_pow2(rx_size) || !is_pow2(tx_size) || frames < (p->rx && p->tx ? 2u : 1u) ||
        (uint64_t)frames * frame_size > (1ull << 40)) {
        errno = EINVAL;
        return NULL;
    }
    struct pps_xsk *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->fd = -1;
    x->ifindex = p->ifindex;
    x->queue_id = p->queue_id;
    x->frames = frames;
    x->frame_size = frame_size;
    x->umem_len = (size_t)frames * frame_size;
    x->umem = mmap(NULL, x->umem_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->umem == MAP_FAILED) {
        x->umem = NULL;
        free(x);
        errno = ENOMEM;
        return NULL;
    }
    x->rx_frames = p->rx ? (p->tx ? frames / 2 : frames) : 0;
    if (pool_init(&x->rx_free, 0, x->rx_frames, frame_size) < 0 ||
        pool_init(&x->tx_free, x->rx_frames, frames - x->rx_frames, frame_size) < 0) {
        pps_xsk_close(x);
        errno = ENOMEM;
        return NULL;
    }

    int r = -1;
    if (p->mode == PPS_XSK_ZEROCOPY || p->mode == PPS_XSK_AUTO) {
        r = xsk_bind_mode(x, p, rx_size, tx_size, XDP_ZEROCOPY);
        if (r == 0)
            x->zerocopy = 1;
        else if (p->mode == PPS_XSK_ZEROCOPY || (errno != EOPNOTSUPP && errno != EINVAL))
            goto fail;
    }
    if (r != 0) {
        r = xsk_bind_mode(x, p, rx_size, tx_size, XDP_COPY);
        if (r != 0)
            goto fail;
        x->zerocopy = 0;
    }
    /* What the socket says it is, where the kernel can tell (5.3+). */
    struct xdp_options opts = {0};
    socklen_t len = sizeof(opts);
    if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opts, &len) == 0)
        x->zerocopy = (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0;

    if (p->rx)
        xsk_refill(x); /* the kernel can receive from now on */
    return x;
fail:;
    int err = errno;
    pps_xsk_close(x);
    errno = err;
    return NULL;
}

int pps_xsk_fd(const struct pps_xsk *x)
{
    if (!x) {
        errno = EINVAL;
        return -1;
    }
    return x->fd;
}

int pps_xsk_zerocopy(const struct pps_xsk *x)
{
    if (!x) {
        errno = EINVAL;
        return -1;
    }
    return x->zerocopy;
}

int pps_xsk_need_wakeup(const struct pps_xsk *x)
{
    if (!x) {
        errno = EINVAL;
        return -1;
    }
    return x->need_wakeup;
}

int pps_xsk_statistics(const struct pps_xsk *x, struct pps_xsk_stats *out)
{
    if (!x || !out || x->fd < 0) {
        errno = EINVAL;
        return -1;
    }
    struct xdp_statistics s;
    memset(&s, 0, sizeof(s));
    socklen_t len = sizeof(s);
    if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &s, &len) < 0)
        return -1;
    /* A kernel before 5.9 fills only the first three (and then folds rx_ring_full into
     * rx_dropped); the rest stay 0 and `fields` says so. */
    *out = (struct pps_xsk_stats){
        .rx_dropped = s.rx_dropped,
        .rx_invalid_descs = s.rx_invalid_descs,
        .tx_invalid_descs = s.tx_invalid_descs,
        .rx_ring_full = s.rx_ring_full,
        .rx_fill_ring_empty_descs = s.rx_fill_ring_empty_descs,
        .tx_ring_empty_descs = s.tx_ring_empty_descs,
        .fields = (uint32_t)(len / sizeof(uint64_t)),
    };
    return (int)out->fields;
}

void pps_xsk_close(struct pps_xsk *x)
{
    if (!x)
        return;
    xsk_teardown(x);
    if (x->umem)
        munmap(x->umem, x->umem_len);
    free(x->rx_free.addr);
    free(x->tx_free.addr);
    free(x);
}

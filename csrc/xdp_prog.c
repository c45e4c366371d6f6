/* xdp_prog.c - the XDP program that steers our UDP port into AF_XDP sockets, written as
 * raw eBPF instructions (no clang, no BTF, no libbpf), with its XSKMAP and a BPF link.
 *
 * The program, for a frame on rx queue q:
 *     Ethernet type IPv4, protocol UDP, not a fragment, IHL >= 5, UDP header in bounds,
 *     destination port == ours   ->  bpf_redirect_map(xskmap, q, XDP_PASS)
 *     anything else              ->  XDP_PASS
 * The low bits of bpf_redirect_map's flags are the action when the map has no socket at
 * q (5.6+), so a queue without an XSK passes its packets to the stack.
 *
 * It is attached with BPF_LINK_CREATE (5.9+), not the netlink XDP attach: a link's program
 * is detached when the last fd of the link is closed, which a SIGKILL does too, so a dead
 * worker never leaves a program on a device. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/if_link.h>

#include "pps.h"

#ifndef XDP_PASS
#define XDP_PASS 2
#endif

#define MAX_INSNS 40

static long sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* Registers */
enum { R0, R1, R2, R3, R4, R5, R6 };

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    struct bpf_insn i;
    memset(&i, 0, sizeof(i));
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

#define MOV_REG(d, s) insn(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_IMM(d, v) insn(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, v)
#define ALU_IMM(op, d, v) insn(BPF_ALU64 | (op) | BPF_K, d, 0, 0, v)
#define ALU_REG(op, d, s) insn(BPF_ALU64 | (op) | BPF_X, d, s, 0, 0)
#define LDX(size, d, s, off) insn(BPF_LDX | (size) | BPF_MEM, d, s, off, 0)
#define JMP_IMM(op, d, v) insn(BPF_JMP | (op) | BPF_K, d, 0, 0, v)   /* to PASS */
#define JMP_REG(op, d, s) insn(BPF_JMP | (op) | BPF_X, d, s, 0, 0)   /* to PASS */
#define CALL(fn) insn(BPF_JMP | BPF_CALL, 0, 0, 0, fn)
#define EXIT() insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

struct prog {
    struct bpf_insn i[MAX_INSNS];
    int n;
    int to_pass[MAX_INSNS]; /* jumps whose target is the PASS label */
    int njumps;
};

static void emit(struct prog *p, struct bpf_insn i)
{
    p->i[p->n++] = i;
}

static void emit_to_pass(struct prog *p, struct bpf_insn i)
{
    p->to_pass[p->njumps++] = p->n;
    emit(p, i);
}

/* struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index */
#define MD_DATA 0
#define MD_DATA_END 4
#define MD_RX_QUEUE 16

static void build(struct prog *p, int map_fd, uint16_t port)
{
    p->n = p->njumps = 0;
    emit(p, MOV_REG(R6, R1));                           /* r6 = ctx */
    emit(p, LDX(BPF_W, R2, R1, MD_DATA));               /* r2 = data */
    emit(p, LDX(BPF_W, R3, R1, MD_DATA_END));           /* r3 = data_end */
    emit(p, MOV_REG(R4, R2));
    emit(p, ALU_IMM(BPF_ADD, R4, 14 + 20));             /* Ethernet + minimal IPv4 */
    emit_to_pass(p, JMP_REG(BPF_JGT, R4, R3));
    emit(p, LDX(BPF_H, R5, R2, 12));                    /* ethertype, as on the wire */
    emit_to_pass(p, JMP_IMM(BPF_JNE, R5, htons(0x0800)));
    emit(p, LDX(BPF_B, R5, R2, 14 + 9));                /* protocol */
    emit_to_pass(p, JMP_IMM(BPF_JNE, R5, 17));
    emit(p, LDX(BPF_H, R5, R2, 14 + 6));                /* flags + fragment offset */
    emit(p, ALU_IMM(BPF_AND, R5, htons(0x3fff)));       /* MF or an offset: a fragment */
    emit_to_pass(p, JMP_IMM(BPF_JNE, R5, 0));
    emit(p, LDX(BPF_B, R5, R2, 14));                    /* version and IHL */
    emit(p, ALU_IMM(BPF_AND, R5, 0x0f));
    emit(p, ALU_IMM(BPF_LSH, R5, 2));                   /* header bytes, 0..60 */
    emit_to_pass(p, JMP_IMM(BPF_JLT, R5, 20));
    emit(p, ALU_REG(BPF_ADD, R2, R5));                  /* r2 = data + IHL * 4 */
    emit(p, MOV_REG(R4, R2));
    emit(p, ALU_IMM(BPF_ADD, R4, 14 + 8));              /* Ethernet + UDP past it */
    emit_to_pass(p, JMP_REG(BPF_JGT, R4, R3));
    emit(p, LDX(BPF_H, R5, R2, 14 + 2));                /* UDP destination port */
    emit_to_pass(p, JMP_IMM(BPF_JNE, R5, htons(port)));
    /* r1 = the map (a 16-byte load whose source register says "map fd") */
    emit(p, insn(BPF_LD | BPF_DW | BPF_IMM, R1, BPF_PSEUDO_MAP_FD, 0, map_fd));
    emit(p, insn(0, 0, 0, 0, 0));
    emit(p, LDX(BPF_W, R2, R6, MD_RX_QUEUE));           /* key: the rx queue */
    emit(p, MOV_IMM(R3, XDP_PASS));                     /* no socket there: pass */
    emit(p, CALL(BPF_FUNC_redirect_map));
    emit(p, EXIT());
    const int pass = p->n;                              /* PASS: */
    emit(p, MOV_IMM(R0, XDP_PASS));
    emit(p, EXIT());
    for (int j = 0; j < p->njumps; j++)
        p->i[p->to_pass[j]].off = (int16_t)(pass - p->to_pass[j] - 1);
}

static void say(struct pps_xdp_handle *h, const char *fmt, ...)
{
    if (!h->log || !h->log_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->log, h->log_size, fmt, ap);
    va_end(ap);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void pps_xdp_detach(struct pps_xdp_handle *h)
{
    if (!h)
        return;
    close_fd(&h->link_fd); /* the last fd of the link: the program comes off the device */
    close_fd(&h->prog_fd);
    close_fd(&h->map_fd);
}

int pps_xdp_attach(int ifindex, uint16_t udp_port, uint32_t queues, int skb_mode,
                   struct pps_xdp_handle *out)
{
    if (!out)
        return errno = EINVAL, -1;
    out->map_fd = out->prog_fd = out->link_fd = -1;
    if (out->log && out->log_size)
        out->log[0] = '\0';
    if (ifindex <= 0 || queues == 0 || udp_port == 0) {
        say(out, "pps_xdp_attach: ifindex, queues and port must be positive");
        return errno = EINVAL, -1;
    }
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = sizeof(uint32_t);
    a.value_size = sizeof(uint32_t);
    a.max_entries = queues;
    strncpy(a.map_name, "pps_xsks", sizeof(a.map_name) - 1);
    out->map_fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
    if (out->map_fd < 0) {
        int err = errno;
        say(out, "BPF_MAP_CREATE (XSKMAP of %u): %s", queues, strerror(err));
        out->map_fd = -1;
        return errno = err, -1;
    }

    struct prog prog;
    struct prog *p = &prog;
    build(p, out->map_fd, udp_port);
    static const char license[] = "GPL"; /* bpf_redirect_map is GPL-only */
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.insn_cnt = (uint32_t)p->n;
    a.insns = (uint64_t)(uintptr_t)p->i;
    a.license = (uint64_t)(uintptr_t)license;
    a.expected_attach_type = BPF_XDP;
    strncpy(a.prog_name, "pps_xsk_redir", sizeof(a.prog_name) - 1);
    out->prog_fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
    if (out->prog_fd < 0) {
        int err = errno;
        out->prog_fd = -1;
        if (out->log && out->log_size >= 128) { /* again, for the verifier's words */
            a.log_level = 1;
            a.log_buf = (uint64_t)(uintptr_t)out->log;
            a.log_size = out->log_size;
            int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
            if (fd >= 0)
                close(fd);
            if (!out->log[0])
                say(out, "BPF_PROG_LOAD: %s", strerror(err));
        } else {
            say(out, "BPF_PROG_LOAD: %s", strerror(err));
        }
        pps_xdp_detach(out);
        return errno = err, -1;
    }

    memset(&a, 0, sizeof(a));
    a.link_create.prog_fd = (uint32_t)out->prog_fd;
    a.link_create.target_ifindex = (uint32_t)ifindex;
    a.link_create.attach_type = BPF_XDP;
    a.link_create.flags = skb_mode ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    out->link_fd = (int)sys_bpf(BPF_LINK_CREATE, &a);
    if (out->link_fd < 0) {
        int err = errno;
        out->link_fd = -1;
        say(out, "BPF_LINK_CREATE (XDP, %s mode, ifindex %d): %s%s",
            skb_mode ? "generic" : "native", ifindex, strerror(err),
            err == EBUSY || err == EEXIST ? " (a program is already attached)" :
            err == EOPNOTSUPP ? " (no native XDP in this driver: try generic)" : "");
        pps_xdp_detach(out);
        return errno = err, -1;
    }
    return 0;
}

int pps_xskmap_set(int map_fd, uint32_t queue, int xsk_fd)
{
    if (map_fd < 0 || xsk_fd < 0)
        return errno = EINVAL, -1;
    uint32_t key = queue, value = (uint32_t)xsk_fd;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)map_fd;
    a.key = (uint64_t)(uintptr_t)&key;
    a.value = (uint64_t)(uintptr_t)&value;
    a.flags = BPF_ANY;
    return sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0 ? -1 : 0;
}

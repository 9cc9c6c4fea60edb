/* The C side of rampart-ffi: the DPDK headers bindgen reads, plus exported
 * wrappers for DPDK's static-inline fast-path functions, which bindgen cannot
 * link against. Keep this file small: only what Rust cannot reach directly. */
#ifndef RAMPART_SHIM_H
#define RAMPART_SHIM_H

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_version.h>

uint16_t rampart_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t rampart_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
void rampart_pktmbuf_free(struct rte_mbuf *m);
void rampart_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n);
struct rte_mbuf *rampart_pktmbuf_alloc(struct rte_mempool *mp);
struct rte_mbuf *rampart_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp);
void rampart_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v);
/* Start of packet data and its length in the first segment. */
void *rampart_mbuf_data(const struct rte_mbuf *m);
uint16_t rampart_mbuf_data_len(const struct rte_mbuf *m);
uint32_t rampart_mbuf_pkt_len(const struct rte_mbuf *m);
/* Copies a chained mbuf's segments into its first (0), or fails (-1) when they do not fit. */
int rampart_pktmbuf_linearize(struct rte_mbuf *m);
/* Appends len bytes to a fresh mbuf; NULL when it has no room. */
char *rampart_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rampart_errno(void);
unsigned int rampart_lcore_id(void);

#endif

/* Exported wrappers for DPDK's static-inline functions; see shim.h. */
#include "shim.h"

uint16_t rampart_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_rx_burst(port, queue, pkts, n); }

uint16_t rampart_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_tx_burst(port, queue, pkts, n); }

void rampart_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void rampart_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n)
{ rte_pktmbuf_free_bulk(pkts, n); }

struct rte_mbuf *rampart_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

struct rte_mbuf *rampart_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp)
{ return rte_pktmbuf_clone(m, mp); }

void rampart_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v) { rte_mbuf_refcnt_update(m, v); }

void *rampart_mbuf_data(const struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

uint16_t rampart_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }

uint32_t rampart_mbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }

int rampart_pktmbuf_linearize(struct rte_mbuf *m) { return rte_pktmbuf_linearize(m); }

char *rampart_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }

int rampart_errno(void) { return rte_errno; }

unsigned int rampart_lcore_id(void) { return rte_lcore_id(); }

//! Build script of the root package, `rampart-ffi`: finds DPDK 22.11 with
//! pkg-config, compiles the C shim for DPDK's static-inline fast-path
//! functions, and generates Rust bindings with bindgen (allowlisted, so the
//! bindings hold only what Rampart calls).

use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=ffi/shim/shim.h");
    println!("cargo:rerun-if-changed=ffi/shim/shim.c");

    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!(
                "DPDK 22.11 not found through pkg-config ({e}).\n\
                 Install it with `make deps` (Debian: apt-get install dpdk-dev libdpdk-dev)."
            )
        });

    // pkg-config's cflags carry `-include rte_config.h` and `-march`, which
    // both the shim and bindgen need to see the same struct layouts.
    let mut cflags: Vec<String> = Vec::new();
    if let Ok(out) = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "-include" {
                if let Some(f) = words.next() {
                    cflags.push("-include".into());
                    cflags.push(f.into());
                }
            } else if w.starts_with("-I") || w.starts_with("-march") || w.starts_with("-D") {
                cflags.push(w.into());
            }
        }
    }

    let mut build = cc::Build::new();
    build.file("ffi/shim/shim.c").opt_level(3).warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    for p in &dpdk.include_paths {
        build.include(p);
    }
    build.compile("rampart_shim");

    // The PMDs (vhost, virtio, ring, pcap, tap) are plugins EAL loads at run
    // time from Debian's driver directory; the core libraries are linked here.
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib={lib}");
    }

    let bindings = bindgen::Builder::default()
        .header("ffi/shim/shim.h")
        .clang_args(cflags.iter())
        .allowlist_function("rampart_.*")
        .allowlist_function("rte_eal_init|rte_eal_cleanup|rte_eal_mp_wait_lcore|rte_eal_remote_launch|rte_eal_wait_lcore")
        .allowlist_function("rte_lcore_count|rte_get_next_lcore|rte_get_main_lcore|rte_socket_id|rte_lcore_to_socket_id")
        .allowlist_function("rte_get_tsc_hz|rte_strerror|rte_version")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_free|rte_mempool_avail_count|rte_mempool_in_use_count")
        .allowlist_function("rte_eth_dev_configure|rte_eth_rx_queue_setup|rte_eth_tx_queue_setup|rte_eth_dev_start|rte_eth_dev_stop|rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_info_get|rte_eth_dev_get_port_by_name|rte_eth_dev_get_name_by_port|rte_eth_dev_count_avail|rte_eth_dev_is_valid_port")
        .allowlist_function("rte_eth_macaddr_get|rte_eth_promiscuous_enable|rte_eth_link_get_nowait|rte_eth_stats_get|rte_eth_dev_socket_id")
        .allowlist_function("rte_dev_probe|rte_dev_remove|rte_eal_hotplug_remove|rte_eth_dev_info_get|rte_eth_dev_set_mtu")
        // Rx interrupts (the idle worker's wait for a guest's kick).
        .allowlist_function("rte_eth_dev_rx_intr_enable|rte_eth_dev_rx_intr_disable|rte_eth_dev_rx_intr_ctl_q_get_fd")
        .allowlist_type("rte_mbuf|rte_mempool|rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_eth_link|rte_ether_addr|rte_eth_rxconf|rte_eth_txconf")
        .allowlist_var("RTE_MAX_ETHPORTS|RTE_MAX_LCORE|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_PKTMBUF_HEADROOM|RTE_ETHER_ADDR_LEN")
        // Offload flags: which checksums a received frame left to the device.
        .allowlist_var("RTE_MBUF_F_TX_L4_MASK|RTE_MBUF_F_TX_OFFLOAD_MASK|RTE_MBUF_F_RX_L4_CKSUM_MASK|RTE_MBUF_F_RX_L4_CKSUM_NONE|RTE_MBUF_F_INDIRECT|RTE_MBUF_F_EXTERNAL")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen could not read DPDK's headers (install clang and libclang-dev: `make deps`)");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("write bindings");
}

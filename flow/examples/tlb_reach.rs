//! How far this machine's TLB reaches: a pointer chase over lines that each sit in their own
//! 4 KiB page, spread over a given number of 2 MB regions, with or without transparent huge
//! pages (`MADV_HUGEPAGE`, as the flow table asks for), from the hugetlbfs pool (as DPDK's
//! memory is; needs HUGE + 1 free 2 MB hugepages) or in 4 KiB pages. Prints the time per
//! access.
//!
//! `cargo run --release -p rampart-flow --example tlb_reach -- HUGE LINES_PER_HUGE thp|hugetlb|small`
//!
//! With 2 MB translations, `128 16 thp` (2,048 lines, 128 KiB of data, 128 huge pages) costs
//! about what `4 512 thp` does (the same lines in 4 huge pages); where the hypervisor maps
//! guest huge pages with 4 KiB translations it costs several times more (README,
//! performance section). Run it pinned to an idle core (`taskset -c 1`).

use std::time::Instant;

const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tlb_reach HUGE LINES_PER_HUGE thp|hugetlb|small";
    let (Some(huge), Some(per), Some(mode)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (huge, per): (usize, usize) = (huge.parse().expect(usage), per.parse().expect(usage));
    assert!(huge > 0 && (1..=HUGE / PAGE).contains(&per), "1..=512 lines per 2 MB region");
    let (thp, hugetlb) = match mode.as_str() {
        "thp" => (true, false),
        "hugetlb" => (false, true),
        "small" => (false, false),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let span = huge * HUGE;
    // On success mmap returns a fresh private anonymous mapping of `span + HUGE` bytes,
    // zero-filled and aliased by nothing else (failure exits before any use). `aligned` is
    // at most `HUGE - 1` bytes past its start, so the `span` bytes from it (the madvise
    // region and the slice) lie inside; they are page-aligned, so aligned for `usize`.
    // SAFETY: the slice covers zeroed bytes of a mapping never unmapped and reached only
    // through it, and every zero word is a valid `usize`.
    let base = unsafe {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if hugetlb { libc::MAP_HUGETLB } else { 0 };
        let p = libc::mmap(std::ptr::null_mut(), span + HUGE, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0);
        if p == libc::MAP_FAILED {
            eprintln!("mmap of {} MB failed: {}", (span + HUGE) >> 20, std::io::Error::last_os_error());
            std::process::exit(1);
        }
        let aligned = (p as usize).next_multiple_of(HUGE);
        if !hugetlb {
            libc::madvise(aligned as *mut libc::c_void, span, if thp { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE });
        }
        std::slice::from_raw_parts_mut(aligned as *mut usize, span / 8)
    };
    // First touch in address order, as the flow table is built (each 2 MB region faulted
    // in whole when THP gives it a huge page).
    for i in (0..base.len()).step_by(PAGE / 8) {
        base[i] = 0;
    }
    // Line k: region k / per, page (k % per) spread evenly in it and rotated by a
    // per-region amount (so pages of different regions do not all share the low address
    // bits that pick a TLB set), at a line offset that varies with k (nor a cache set).
    let n = huge * per;
    let pages = HUGE / PAGE;
    let word = |k: usize| {
        let (region, j) = (k / per, k % per);
        let page = (j * (pages / per) + region * 37) % pages;
        (region * HUGE + page * PAGE + (k * 64) % PAGE) / 8
    };
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, x as usize % (i + 1));
    }
    for i in 0..n {
        base[word(order[i])] = word(order[(i + 1) % n]);
    }
    let mut at = word(order[0]);
    for _ in 0..4 * n {
        at = base[at];
    }
    let steps = 20_000_000;
    let started = Instant::now();
    for _ in 0..steps {
        at = base[at];
    }
    let ns = started.elapsed().as_nanos() as f64 / steps as f64;
    println!("{huge} x 2 MB regions, {per} lines each ({n} lines), {mode}: {ns:.1} ns per access (end {at})");
}

//! The supervisor's tick (every 10 ms, for as long as `rampartctl run` runs) must cost
//! the same at 10,000 rules as at 10: its work follows what changed (events in the
//! rings), never the size of the policy. Issue 15: it once rebuilt every rule id on
//! every tick, and the idle control process used a fifth of a core at 10,000 rules.
//!
//! Speed goes in the bench (`cargo bench -p rampart-control`); this test counts work
//! instead, so it cannot flake: the heap allocations (calls and bytes) the tick makes on
//! this thread, with the same events to drain at both sizes.

mod fixture;

use fixture::Fixture;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the allocations made by each thread.
struct Counting;

thread_local! {
    /// (allocations, bytes) made by this thread. `const`-initialised and without a
    /// destructor, so reaching it from the allocator never allocates.
    static ALLOCATED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    // `try_with`: a thread being torn down has no counter any more, and is not measured.
    let _ = ALLOCATED.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes as u64));
    });
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's
// contract; counting only touches a thread-local Cell and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: ptr and layout come from this allocator (i.e. System), as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for realloc.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TICKS: u64 = 50;

/// (allocations, bytes) per tick over [`TICKS`] ticks, each with the same events to drain.
fn tick_cost(rules: usize) -> (u64, u64) {
    let f = Fixture::new("tick-cost", rules);
    f.push_events();
    f.tick(); // warm-up: first-use buffers (the log's) are not the steady state
    let before = ALLOCATED.with(Cell::get);
    for _ in 0..TICKS {
        f.push_events();
        f.tick();
    }
    let after = ALLOCATED.with(Cell::get);
    ((after.0 - before.0) / TICKS, (after.1 - before.1) / TICKS)
}

#[test]
fn a_tick_at_10000_rules_costs_no_more_than_twice_a_tick_at_10() {
    let (small_allocs, small_bytes) = tick_cost(10);
    let (large_allocs, large_bytes) = tick_cost(10_000);
    eprintln!("per tick: 10 rules: {small_allocs} allocations, {small_bytes} bytes; 10,000 rules: {large_allocs} allocations, {large_bytes} bytes");
    // The events make the small tick do real work, so "twice" has something to be twice of.
    assert!(small_allocs > 0, "the tick drained no events: the fixture measures nothing");
    assert!(
        large_allocs <= 2 * small_allocs && large_bytes <= 2 * small_bytes,
        "a tick at 10,000 rules costs {large_allocs} allocations ({large_bytes} bytes), more than twice a tick at 10 rules \
         ({small_allocs} allocations, {small_bytes} bytes): something in the tick follows the rule count"
    );
}

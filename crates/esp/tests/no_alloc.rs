//! The data path allocates nothing per packet: seal and open run under a
//! counting global allocator (armed per thread) and must not touch it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use dodvpn_esp::*;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn seal_and_open_do_not_allocate() {
    // The counter itself works.
    ARMED.with(|a| a.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    std::hint::black_box(Box::new([0u8; 64]));
    assert!(ALLOCS.load(Ordering::Relaxed) > before);
    ARMED.with(|a| a.set(false));

    for aead in Aead::ALL {
        for esn in [false, true] {
            let km = vec![7u8; aead.keymat_len()];
            let mut out = OutboundSa::new(9, aead, &km, esn).unwrap();
            let mut inb = InboundSa::new(9, aead, &km, esn).unwrap();
            let mut buf = vec![0x45u8; HEADROOM + 1400 + TAILROOM];
            let mut junk = vec![0u8; 100];
            ARMED.with(|a| a.set(true));
            let before = ALLOCS.load(Ordering::Relaxed);
            for i in 0..2000 {
                let n = out.seal(1400, &mut buf, NH_IPV4).unwrap();
                let (r, _) = inb.open(&mut buf[..n]).unwrap();
                assert_eq!(r.len(), 1400);
                // Error paths too.
                let _ = inb.open(&mut buf[..n]); // replay
                junk[0] = i as u8;
                let _ = inb.open(&mut junk); // wrong SPI
            }
            let after = ALLOCS.load(Ordering::Relaxed);
            ARMED.with(|a| a.set(false));
            assert_eq!(after - before, 0, "{aead:?} esn={esn}");
        }
    }
}

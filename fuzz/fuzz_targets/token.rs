//! Arbitrary bytes as a bearer token through the whole stack: never a panic, never a
//! 2xx (nothing here is signed), never anything but 400, 401 or 403.
#![no_main]

#[path = "stack.rs"]
mod stack;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut header = b"Bearer ".to_vec();
    header.extend_from_slice(data);
    if let Some(status) = stack::status(&header) {
        assert!(matches!(status, 400 | 401), "status {status}");
    }
});

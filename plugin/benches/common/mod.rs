//! Shared by the benchmarks: realistic log text.

/// An access-log-like line of about `len` bytes with pseudo-random ids (deterministic per
/// `n`), so compression sees realistic entropy rather than repeated characters.
pub fn log_line(n: usize, len: usize) -> String {
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut line = format!(
        "10.0.{}.{} - - [22/Nov/2026:09:{:02}:{:02} +0000] \"GET /api/v1/orders/{} HTTP/1.1\" {} {} trace={:016x}",
        next() % 256,
        next() % 256,
        next() % 60,
        next() % 60,
        next() % 1_000_000,
        [200, 200, 200, 201, 404, 500][(next() % 6) as usize],
        next() % 50_000,
        next()
    );
    while line.len() < len {
        line.push_str(&format!(" k{}={:x}", next() % 50, next() % 0xFFFF_FFFF));
    }
    line.truncate(len.max(20));
    line
}

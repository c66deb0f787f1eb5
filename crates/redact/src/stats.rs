//! The byte pass: what gates the personal-data rules (digit shapes, an `@`) and whether a line
//! needs escaping (controls, bytes ≥ 0x80).
//!
//! Every line pays for this pass, so no byte is looked at alone. On x86-64, SSE2 (always there)
//! compares 16 bytes at a time and gives bitmasks of digits and of ' ', '-', '.', and the flags,
//! in one pass (through `safe_arch`: this crate has no `unsafe`). Elsewhere the flags come from a
//! loop the compiler turns into vector compares, digits from a bitmask built 8 bytes at a time in
//! a register (SWAR), and the separators are read where a digit group ends. Digit shapes are
//! then tested on bitmasks, every group at once, and only the rare line with a long run of digit
//! groups is stepped through group by group.

use crate::rules::Shape;

/// What the byte pass learned about a haystack.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Bit `Shape as u8` set when that digit shape occurs.
    pub(crate) shapes: u8,
    pub(crate) at: bool,
    /// ASCII controls (other than tab) or DEL.
    pub(crate) ctrl: bool,
    /// Bytes ≥ 0x80: UTF-8 must be validated and checked for dangerous code points.
    pub(crate) high: bool,
}

/// The byte pass over `hay`.
pub(crate) fn stats(hay: &[u8]) -> Stats {
    // On x86-64 the flags come from the vectors the digit masks are made of; elsewhere from a
    // loop of their own.
    let (shapes, flags) = shapes(hay);
    #[cfg(not(target_arch = "x86_64"))]
    let flags = {
        let _ = flags;
        self::flags(hay)
    };
    let (ctrl, high, at) = flags;
    Stats {
        shapes,
        at,
        ctrl,
        high,
    }
}

/// Controls (not tab), DEL; bytes ≥ 0x80; `@`. Written so that it compiles to vector compares.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
fn flags(hay: &[u8]) -> (bool, bool, bool) {
    let (mut c, mut h, mut a) = (0u8, 0u8, 0u8);
    for &b in hay {
        c |= u8::from((b < 0x20 && b != b'\t') || b == 0x7f);
        h |= b;
        a |= u8::from(b == b'@');
    }
    (c != 0, h & 0x80 != 0, a != 0)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit `i` set when byte `i` of the 8 bytes in `w` (little endian) is an ASCII digit.
#[inline(always)]
fn digit_bits(w: u64) -> u64 {
    // Digits become 0..=9; a byte is < 10 when adding 0x76 to its low 7 bits leaves the high
    // bit clear and its own high bit is clear (no carry crosses bytes).
    let t = w ^ (0x30 * LO);
    let d = !((t & !HI).wrapping_add(0x76 * LO) | t) & HI;
    // Gather the eight high bits into one byte.
    (d >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit `i` set when `block[i]` is an ASCII digit.
///
/// On x86-64, SSE2 is always there: 16 bytes at a time, a compare and a `pmovmskb`, a third of
/// the instructions of the SWAR version ([`digit_mask_swar`], elsewhere); the byte pass ran a
/// tenth faster. `safe_arch` wraps the intrinsics, so this crate stays without `unsafe`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn digit_mask(block: &[u8; 64]) -> u64 {
    use safe_arch::m128i;
    let mut d = 0u64;
    for (k, c) in block.chunks_exact(16).enumerate() {
        d |= u64::from(digits16(m128i::from(
            <[u8; 16]>::try_from(c).expect("16 bytes"),
        ))) << (16 * k);
    }
    d
}

/// Bit `i` set when byte `i` of `v` is an ASCII digit.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn digits16(v: safe_arch::m128i) -> u16 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, min_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i, sub_i8_m128i,
    };
    // Digits become 0..=9, everything else 10..=255 (wrapping); `min(t, 9) == t` is `t <= 9`.
    let t = sub_i8_m128i(v, set_splat_i8_m128i(b'0' as i8));
    let is_digit = cmp_eq_mask_i8_m128i(min_u8_m128i(t, set_splat_i8_m128i(9)), t);
    move_mask_i8_m128i(is_digit) as u16
}

/// The flags of [`flags`], gathered over blocks as vectors (a byte's lane is all ones when it
/// is such a byte), tested once at the end.
#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct FlagLanes {
    ctrl: safe_arch::m128i,
    high: safe_arch::m128i,
    at: safe_arch::m128i,
}

#[cfg(target_arch = "x86_64")]
impl FlagLanes {
    /// Adds the bytes of `v`, and returns its digits.
    #[inline(always)]
    fn add(&mut self, v: safe_arch::m128i) -> u16 {
        use safe_arch::{bitandnot_m128i, cmp_eq_mask_i8_m128i, min_u8_m128i, set_splat_i8_m128i};
        let splat = |b: u8| set_splat_i8_m128i(b as i8);
        // `min(v, 0x1f) == v` is `v < 0x20`; the tab is allowed, DEL is not.
        let low = cmp_eq_mask_i8_m128i(min_u8_m128i(v, splat(0x1f)), v);
        let tab = cmp_eq_mask_i8_m128i(v, splat(b'\t'));
        self.ctrl |= bitandnot_m128i(tab, low) | cmp_eq_mask_i8_m128i(v, splat(0x7f));
        self.high |= v;
        self.at |= cmp_eq_mask_i8_m128i(v, splat(b'@'));
        digits16(v)
    }

    fn get(&self) -> (bool, bool, bool) {
        use safe_arch::move_mask_i8_m128i;
        (
            move_mask_i8_m128i(self.ctrl) != 0,
            move_mask_i8_m128i(self.high) != 0,
            move_mask_i8_m128i(self.at) != 0,
        )
    }
}

/// Bit `i` set when `block[i]` is an ASCII digit.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn digit_mask(block: &[u8; 64]) -> u64 {
    digit_mask_swar(block)
}

/// [`digit_mask`] in a register, 8 bytes at a time (SWAR).
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[inline(always)]
fn digit_mask_swar(block: &[u8; 64]) -> u64 {
    // Shifted in one word at a time: written as `|= bits << 8k`, the loop is vectorised with
    // 64-bit multiplies that SSE2 lacks, and runs a third slower.
    let mut d = 0u64;
    for w in block.chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        d = (d >> 8) | (digit_bits(w) << 56);
    }
    d
}

/// The digit shapes in `hay`, bit-parallel over 64-byte blocks.
///
/// Phone (`ddd<sep>dddd`) and SSN (`ddd-dd-dddd`) shapes are exact patterns of digit runs and
/// single separators, so they are tested on bitmasks at every group end at once. Card and IBAN
/// shapes depend on a whole run of groups; the masks only tell whether such a run can exist
/// (13+ bytes of digits and single spaces or dashes, 10+ of digits and single spaces), which is
/// rare, and then the exact group-by-group step ([`shapes_stepped`]) decides.
///
/// Also returns the flags (controls, high bytes, `@`) where the blocks give them (x86-64), else
/// `(false, false, false)`.
fn shapes(hay: &[u8]) -> (u8, (bool, bool, bool)) {
    let mut m = Masks::default();
    let mut blocks = hay.chunks_exact(64);
    for b in &mut blocks {
        m.block(b.try_into().expect("64 bytes"), 0);
    }
    // After the last byte comes padding, neither a digit nor a separator: a group that ends the
    // line is seen to end. A line that fills its last block gets a block of padding; a longer
    // line's tail is read as its last 64 bytes, those already seen shifted out (a copy into a
    // padded block was a tenth of the byte pass).
    // The padding byte is no flag either. The bytes of the last block that were seen already
    // are the line's: their flags count again, no harm.
    let tail = blocks.remainder().len();
    if hay.len() >= 64 {
        let last = &hay[hay.len() - 64..];
        match tail {
            0 => m.block(&[PAD; 64], 0),
            _ => m.block(last.try_into().expect("64 bytes"), 64 - tail as u32),
        }
    } else if !hay.is_empty() {
        let mut b = [PAD; 64];
        b[..tail].copy_from_slice(hay);
        m.block(&b, 0);
    }
    #[cfg(target_arch = "x86_64")]
    let flags = m.flags.get();
    #[cfg(not(target_arch = "x86_64"))]
    let flags = (false, false, false);
    if m.long_run {
        return (shapes_stepped(hay), flags);
    }
    let mut shapes = m.shapes;
    // E.164: `+` then a country code, which never starts with 0 (`+0000` is a UTC offset).
    if memchr::memchr_iter(b'+', hay).any(|i| matches!(hay.get(i + 1), Some(b'1'..=b'9'))) {
        shapes |= 1 << Shape::Phone as u8;
    }
    (shapes, flags)
}

/// What fills a block after the end of a line: no digit, no separator, no flag.
const PAD: u8 = b'x';

/// The bitmasks of the previous block (what a shift brings into the next one), and the result.
#[derive(Default)]
struct Masks {
    digits: u64,
    /// Single separators (one byte between two groups) that are ' ', '-', '.'.
    space: u64,
    dash: u64,
    dot: u64,
    /// Runs of digits and joining separators: ≥ 2, 4, 8 bytes long (ending at the bit);
    /// `sd` with spaces and dashes, `sp` with spaces only.
    sd: [u64; 3],
    sp: [u64; 3],
    shapes: u8,
    /// A run that may hold a card number or an IBAN.
    long_run: bool,
    #[cfg(target_arch = "x86_64")]
    flags: FlagLanes,
}

impl Masks {
    /// The masks of `block`'s digits and of its ' ', '-' and '.' bytes, and its flags into
    /// `self.flags`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn bytes(&mut self, block: &[u8; 64]) -> [u64; 4] {
        use safe_arch::{cmp_eq_mask_i8_m128i, move_mask_i8_m128i, set_splat_i8_m128i};
        let mask =
            |v, b: u8| move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8)));
        let mut m = [0u64; 4];
        for (k, c) in block.chunks_exact(16).enumerate() {
            let v = safe_arch::m128i::from(<[u8; 16]>::try_from(c).expect("16 bytes"));
            let at = 16 * k;
            m[0] |= u64::from(self.flags.add(v)) << at;
            m[1] |= u64::from(mask(v, b' ') as u16) << at;
            m[2] |= u64::from(mask(v, b'-') as u16) << at;
            m[3] |= u64::from(mask(v, b'.') as u16) << at;
        }
        m
    }

    /// The digit mask of `block`.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn bytes(&mut self, block: &[u8; 64]) -> u64 {
        digit_mask(block)
    }

    /// The single separators at `joins` (bit `i` is `block[i + skip]`) that are ' ', '-', '.'.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn separators(bytes: &[u64; 4], _: &[u8; 64], skip: u32, joins: u64) -> (u64, u64, u64) {
        (
            joins & (bytes[1] >> skip),
            joins & (bytes[2] >> skip),
            joins & (bytes[3] >> skip),
        )
    }

    /// The single separators at `joins` (bit `i` is `block[i + skip]`) that are ' ', '-', '.':
    /// only their bytes are looked at.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn separators(_: &u64, block: &[u8; 64], skip: u32, joins: u64) -> (u64, u64, u64) {
        let (mut space, mut dash, mut dot) = (0u64, 0u64, 0u64);
        let mut a = joins;
        while a != 0 {
            let i = a.trailing_zeros();
            let bit = 1u64 << i;
            let c = block[(i + skip) as usize];
            space |= if c == b' ' { bit } else { 0 };
            dash |= if c == b'-' { bit } else { 0 };
            dot |= if c == b'.' { bit } else { 0 };
            a &= a - 1;
        }
        (space, dash, dot)
    }

    /// The next block: `block[skip..]`, then `skip` bytes of padding.
    #[inline(always)]
    fn block(&mut self, block: &[u8; 64], skip: u32) {
        let bytes = self.bytes(block);
        #[cfg(target_arch = "x86_64")]
        let d = bytes[0] >> skip;
        #[cfg(not(target_arch = "x86_64"))]
        let d = bytes >> skip;
        // `x` shifted towards higher bytes by `k`, the previous block's `px` filling in: bit `i`
        // tells about byte `i - k`.
        let sh = |x: u64, px: u64, k: u32| (x << k) | (px >> (64 - k));
        let pd = self.digits;
        let back = |k: u32| sh(d, pd, k);
        // The first non-digit after each group.
        let after = !d & back(1);
        // Single separators: a digit before and after (the next block's first byte is not known
        // here, so a separator that ends the block counts).
        let joins = after & ((d >> 1) | 1 << 63) & (!0 >> skip);
        let (space, dash, dot) = Self::separators(&bytes, block, skip, joins);
        let (d1, d2, d3, d4) = (back(1), back(2), back(3), back(4));
        let (d6, d7, d8, d9) = (back(6), back(7), back(8), back(9));
        // 4 digits end before the bit; the separator required before them makes them exactly 4.
        let four = after & d1 & d2 & d3 & d4;
        let sep3 = space | dash | dot;
        let psep3 = self.space | self.dash | self.dot;
        if four & sh(sep3, psep3, 5) & d6 & d7 & d8 & !d9 != 0 {
            self.shapes |= 1 << Shape::Phone as u8;
        }
        let (d10, d11, d12) = (back(10), back(11), back(12));
        let pdash = self.dash;
        if four & sh(dash, pdash, 5) & d6 & d7 & sh(dash, pdash, 8) & d9 & d10 & d11 & !d12 != 0 {
            self.shapes |= 1 << Shape::Ssn as u8;
        }
        let runs = |j: u64, prev_j: u64, p: &mut [u64; 3]| -> (u64, u64) {
            let r2 = j & sh(j, prev_j, 1);
            let r4 = r2 & sh(r2, p[0], 2);
            let r8 = r4 & sh(r4, p[1], 4);
            let r10 = r8 & sh(r8, p[2], 2);
            let r13 = r8 & sh(r8, p[2], 5);
            *p = [r2, r4, r8];
            (r10, r13)
        };
        let (_, sd13) = runs(d | space | dash, pd | self.space | self.dash, &mut self.sd);
        let (sp10, _) = runs(d | space, pd | self.space, &mut self.sp);
        self.long_run |= sd13 | sp10 != 0;
        self.digits = d;
        self.space = space;
        self.dash = dash;
        self.dot = dot;
    }
}

/// The digit shapes in `hay`, group by group: digit groups are found through a bitmask, 64
/// bytes at a time, then each is stepped through where it ends.
fn shapes_stepped(hay: &[u8]) -> u8 {
    let mut groups = Groups::new(hay);
    // Start of a digit group that runs to the end of the previous block.
    let mut open: Option<usize> = None;
    let mut visit = |base: usize, block: &[u8; 64]| {
        let mut digits = digit_mask(block);
        if let Some(s) = open {
            let run = (!digits).trailing_zeros();
            if run == 64 {
                return;
            }
            groups.end(s, base + run as usize);
            open = None;
            digits &= !0u64 << run;
        }
        while digits != 0 {
            let s = digits.trailing_zeros();
            let run = (!(digits >> s)).trailing_zeros();
            if s + run == 64 {
                open = Some(base + s as usize);
                return;
            }
            groups.end(base + s as usize, base + (s + run) as usize);
            digits &= !0u64 << (s + run);
        }
    };
    let mut blocks = hay.chunks_exact(64);
    let mut base = 0;
    for b in &mut blocks {
        visit(base, b.try_into().expect("64 bytes"));
        base += 64;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Padding is a space: no digit.
        let mut b = [b' '; 64];
        b[..tail.len()].copy_from_slice(tail);
        visit(base, &b);
    }
    if let Some(s) = open {
        groups.end(s, hay.len());
    }
    groups.shapes
}

/// Digit groups, in order, and the structure of the run of groups joined by single separators
/// that the current one belongs to.
struct Groups<'h> {
    hay: &'h [u8],
    shapes: u8,
    /// Previous group in the run (its length), 0 if none; and the one before.
    prev_g: u32,
    prev_prev_g: u32,
    /// Digits joined by single ' ' or '-'.
    run_sd: u32,
    /// Digits joined by single ' '.
    run_sp: u32,
    /// Index after the last group (`usize::MAX - 1` before the first).
    last_end: usize,
    last_sep: u8,
    /// Index of the first digit of the run.
    run_start: usize,
}

impl<'h> Groups<'h> {
    fn new(hay: &'h [u8]) -> Self {
        Self {
            hay,
            shapes: 0,
            prev_g: 0,
            prev_prev_g: 0,
            run_sd: 0,
            run_sp: 0,
            last_end: usize::MAX - 1,
            last_sep: 0,
            run_start: 0,
        }
    }

    /// The digits `hay[start..end]` are a group (non-digits on both sides).
    #[inline(always)]
    fn end(&mut self, start: usize, end: usize) {
        let hay = self.hay;
        let g = (end - start) as u32;
        let joined = self.last_end != usize::MAX - 1 && start == self.last_end + 1;
        let sep = if joined { hay[self.last_end] } else { 0 };
        if !joined {
            self.prev_g = 0;
            self.prev_prev_g = 0;
            self.run_sd = 0;
            self.run_sp = 0;
            self.run_start = start;
        }
        self.run_sd = if matches!(sep, b' ' | b'-') {
            self.run_sd + g
        } else {
            g
        };
        self.run_sp = if sep == b' ' { self.run_sp + g } else { g };
        // E.164: `+` then a country code, which never starts with 0 (`+0000` is a UTC offset).
        if start > 0 && hay[start - 1] == b'+' && hay[start] != b'0' {
            self.shapes |= 1 << Shape::Phone as u8;
        }
        if g == 4 && self.prev_g == 3 && matches!(sep, b' ' | b'-' | b'.') {
            self.shapes |= 1 << Shape::Phone as u8;
        }
        if g == 4
            && self.prev_g == 2
            && self.prev_prev_g == 3
            && sep == b'-'
            && self.last_sep == b'-'
        {
            self.shapes |= 1 << Shape::Ssn as u8;
        }
        // Card numbers start with 2–6 (Mastercard 2-series, Amex/JCB/Diners, Visa, MC, Discover).
        if self.run_sd >= 13 && matches!(hay[self.run_start], b'2'..=b'6') {
            self.shapes |= 1 << Shape::Card as u8;
        }
        // An IBAN's digits follow its letters: `DE89…`, `GB29 NWBK 6016…`, `NL91ABNA0417…`.
        if self.run_sp >= 10 {
            let before = self.run_start.checked_sub(1).map(|i| hay[i]);
            let before2 = self.run_start.checked_sub(2).map(|i| hay[i]);
            if before.is_some_and(|b| b.is_ascii_uppercase())
                || (before == Some(b' ') && before2.is_some_and(|b| b.is_ascii_uppercase()))
            {
                self.shapes |= 1 << Shape::Iban as u8;
            }
        }
        self.prev_prev_g = self.prev_g;
        self.prev_g = g;
        self.last_sep = sep;
        self.last_end = end;
    }
}

#[cfg(test)]
mod tests {
    use super::{stats, Groups, Stats};
    use proptest::prelude::*;

    /// The byte-at-a-time pass this module replaced: the reference.
    fn reference(hay: &[u8]) -> Stats {
        let mut g = Groups::new(hay);
        let mut st = Stats::default();
        let mut i = 0;
        while i < hay.len() {
            let b = hay[i];
            if b.is_ascii_digit() {
                let s = i;
                while i < hay.len() && hay[i].is_ascii_digit() {
                    i += 1;
                }
                g.end(s, i);
                continue;
            }
            st.at |= b == b'@';
            st.ctrl |= (b < 0x20 && b != b'\t') || b == 0x7f;
            st.high |= b >= 0x80;
            i += 1;
        }
        st.shapes = g.shapes;
        st
    }

    #[test]
    fn shapes() {
        let shape = |s: &str| stats(s.as_bytes()).shapes;
        assert_eq!(shape("call 555-123-4567 now"), 1);
        assert_eq!(shape("call +44 20 7946 0958"), 1);
        assert_eq!(shape("ts +0000 x"), 0);
        assert_eq!(shape("ssn 078-05-1120"), 2);
        assert_eq!(shape("card 4111 1111 1111 1111"), 4);
        assert_eq!(shape("iban DE89 3704 0044 0532 0130 00"), 8);
        assert_eq!(shape("2026-11-25T16:01:02.123Z level=info"), 0);
    }

    #[test]
    fn groups_across_blocks() {
        for at in 50..80 {
            let mut s = "x".repeat(at);
            s.push_str("4111 1111 1111 1111");
            s.push_str(&"y".repeat(30));
            assert_eq!(stats(s.as_bytes()), reference(s.as_bytes()), "{at}");
            assert_eq!(stats(s.as_bytes()).shapes, 4, "{at}");
        }
        let long = "1".repeat(200);
        assert_eq!(stats(long.as_bytes()), reference(long.as_bytes()));
        // Shapes that end the line, for every length of the last block.
        for end in ["7", "555-0142", "078-05-1120", "4111 1111 1111 1111"] {
            for n in 0..200 {
                let s = format!("{}{end}", "x ".repeat(n / 2));
                assert_eq!(stats(s.as_bytes()), reference(s.as_bytes()), "{s}");
            }
        }
    }

    #[test]
    fn flags_at_every_offset() {
        // Lines around the 16- and 64-byte boundaries of the vector pass, one byte of interest
        // at each offset among bytes that set no flag.
        for len in [1usize, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129, 200] {
            for at in 0..len {
                for b in [
                    0u8, 8, b'\t', b'\n', 0x1f, b' ', b'@', b'x', 0x7e, 0x7f, 0x80, 0xff,
                ] {
                    let mut l = vec![b'a'; len];
                    l[at] = b;
                    assert_eq!(stats(&l), reference(&l), "{b:#x} at {at} of {len}");
                    assert_eq!(super::flags(&l), {
                        let r = reference(&l);
                        (r.ctrl, r.high, r.at)
                    });
                }
            }
        }
    }

    #[test]
    fn digit_masks_agree() {
        // Every byte value at every position of a block, next to digits and non-digits.
        for b in 0..=255u8 {
            for at in 0..64 {
                let mut block = [b'7'; 64];
                for (i, x) in block.iter_mut().enumerate() {
                    if i % 3 == 0 {
                        *x = b'/';
                    }
                }
                block[at] = b;
                let want = block
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (i, c)| m | u64::from(c.is_ascii_digit()) << i);
                assert_eq!(super::digit_mask(&block), want, "{b:#x} at {at}");
                assert_eq!(super::digit_mask_swar(&block), want, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn digit_bits_exact() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b'x', b, b'x', b'x', b'x', b'x', b'x', b]);
            let want = if b.is_ascii_digit() { 0b1000_0010 } else { 0 };
            assert_eq!(super::digit_bits(w), want, "{b:#x}");
        }
    }

    /// Digit groups of 1–5 digits (a few long ones) joined by one or two separators: the shapes
    /// (phone, SSN, card, IBAN) and near misses are frequent, at many offsets of a block.
    fn grouped() -> impl Strategy<Value = Vec<u8>> {
        grouped_in(10, 70)
    }

    /// [`grouped`], with up to `groups` groups after up to `pad` bytes of filler.
    fn grouped_in(groups: usize, pad: usize) -> impl Strategy<Value = Vec<u8>> {
        let group = prop_oneof![
            8 => proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'2'), Just(b'4'), Just(b'7')], 1..6),
            1 => proptest::collection::vec(prop_oneof![Just(b'1'), Just(b'5'), Just(b'9')], 6..20),
            // Whole shapes, which neighbouring groups may lengthen into near misses.
            2 => proptest::sample::select(vec![
                "078-05-1120", "555-0142", "555.0142", "4111-1111-1111-1", "3704 0044 05",
                "4111 1111 1111 1111",
            ]).prop_map(|s| s.as_bytes().to_vec()),
        ];
        let sep = prop_oneof![
            4 => Just(&b" "[..]),
            4 => Just(&b"-"[..]),
            6 => proptest::sample::select(vec![
                &b"."[..], b"+", b"E", b"a", b":", b" D", b"  ", b"--", b"DE", b"+0",
            ]),
        ];
        // Few groups, so that one shape does not hide another; after a filler that moves them
        // across the first block boundary.
        (proptest::collection::vec((group, sep), 0..groups), 0..pad).prop_map(|(v, pad)| {
            let mut out = vec![b'x'; pad];
            for (g, s) in v {
                out.extend_from_slice(&g);
                out.extend_from_slice(s);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn grouped_same_as_reference(v in grouped()) {
            prop_assert_eq!(super::shapes(&v).0, reference(&v).shapes);
            prop_assert_eq!(super::shapes_stepped(&v), reference(&v).shapes);
        }

        /// Long chains of groups deep in the line: the masks see a long run blocks after the
        /// line starts, and the groups are stepped from where its chain begins.
        #[test]
        fn deep_chains_same_as_reference(v in grouped_in(30, 260)) {
            prop_assert_eq!(super::shapes(&v).0, reference(&v).shapes);
        }

        /// Chains longer than a block, of groups joined by single bytes of any kind.
        #[test]
        fn chains_longer_than_a_block(
            v in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["4111", "1111", "2", "07", "3704", "44", "9"]),
                    proptest::sample::select(vec![" ", "-", ".", ":", "a", "D", "  "]),
                ),
                0..60,
            ),
            pad in 0usize..200,
        ) {
            let mut l = vec![b'x'; pad];
            for (g, s) in v {
                l.extend_from_slice(g.as_bytes());
                l.extend_from_slice(s.as_bytes());
            }
            prop_assert_eq!(super::shapes(&l).0, reference(&l).shapes);
        }
    }

    proptest! {
        #[test]
        fn same_as_reference(v in proptest::collection::vec(
            prop_oneof![
                Just(b'0'), Just(b'4'), Just(b'9'), Just(b' '), Just(b'-'), Just(b'.'),
                Just(b'+'), Just(b'@'), Just(b'D'), Just(b'E'), Just(b'a'), Just(b'\t'),
                Just(b'\n'), Just(0x7f), Just(0xc3), Just(b'/'), Just(b'(')
            ],
            0..300,
        )) {
            prop_assert_eq!(stats(&v), reference(&v));
        }
    }
}

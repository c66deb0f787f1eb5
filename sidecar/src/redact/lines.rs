//! Splitting byte streams into lines with a bound on memory.
//!
//! A line longer than `max` bytes is kept up to `max` (cut back to the last whitespace in its
//! final KiB, so that a token is not cut in half) and the rest is counted and dropped until the
//! next newline; the output line then ends with `[TRUNCATED:<n> bytes]`. Binary input is just
//! bytes: lines are cut at `\n` only, and the engine escapes what is not printable UTF-8.

/// One input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line, without its newline (and without a trailing `\r`).
    pub bytes: Vec<u8>,
    /// Bytes dropped from the end of an over-long line.
    pub dropped: u64,
}

/// Splits chunks into [`Line`]s.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// Set while the rest of an over-long line is being dropped.
    dropping: Option<u64>,
}

impl LineSplitter {
    /// A splitter keeping at most `max` bytes of a line.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max.max(16),
            dropping: None,
        }
    }

    /// Feed a chunk; complete lines are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Line>) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(p) => {
                    self.take(&chunk[..p]);
                    self.emit(out);
                    chunk = &chunk[p + 1..];
                }
                None => {
                    self.take(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// End of stream: a last line without a newline is still a line.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.buf.is_empty() || self.dropping.is_some() {
            self.emit(out);
        }
    }

    fn take(&mut self, part: &[u8]) {
        if let Some(d) = self.dropping.as_mut() {
            *d += part.len() as u64;
            return;
        }
        let room = self.max - self.buf.len();
        if part.len() <= room {
            self.buf.extend_from_slice(part);
            return;
        }
        self.buf.extend_from_slice(&part[..room]);
        // Cut back to a whitespace in the last KiB so a secret is not split into a visible half.
        let tail_start = self.buf.len().saturating_sub(1024);
        let cut = self.buf[tail_start..]
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
            .map_or(self.buf.len(), |p| tail_start + p);
        let dropped = (self.buf.len() - cut) as u64 + (part.len() - room) as u64;
        self.buf.truncate(cut);
        self.dropping = Some(dropped);
    }

    fn emit(&mut self, out: &mut Vec<Line>) {
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let dropped = self.dropping.take().unwrap_or(0);
        out.push(Line { bytes, dropped });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_keeps_the_last_line() {
        let mut s = LineSplitter::new(1024);
        let mut out = Vec::new();
        s.push(b"ab", &mut out);
        s.push(b"c\r\nde\n", &mut out);
        s.push(b"f", &mut out);
        s.finish(&mut out);
        let v: Vec<_> = out.iter().map(|l| l.bytes.as_slice()).collect();
        assert_eq!(v, [&b"abc"[..], b"de", b"f"]);
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut s = LineSplitter::new(64);
        let mut out = Vec::new();
        let mut long = b"start ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        long.push(b'\n');
        for c in long.chunks(100) {
            s.push(c, &mut out);
        }
        s.push(b"next\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, b"start");
        assert_eq!(out[0].dropped, 10_001);
        assert_eq!(out[1].bytes, b"next");
    }
}

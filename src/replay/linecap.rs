//! Reading that never lets one line of an input grow past a cap, so that a hostile line of
//! gigabytes costs replay a bounded buffer, not its memory.
//!
//! JSONL reads each line with [`read_line_capped`]. CSV, whose parser reads blocks, reads
//! through [`LineCap`], which passes lines through unchanged up to `cap` bytes (not counting the `\n`). Of a
//! longer line it passes the first `cap` bytes and then the line's `\n`, discards the rest
//! while reading it, and records the line's number (1-based, counting `\n`s) in a shared
//! [`Truncated`] list, in increasing order, for the row reader to refuse it as `oversized`.
//! Line numbers and everything after the long line are as in the original input.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// Numbers of the lines that were cut, oldest first; the row reader pops them as it passes.
#[derive(Clone, Default)]
pub struct Truncated(Rc<RefCell<VecDeque<u64>>>);

impl Truncated {
    /// True when a line of the record starting at line `start` was cut, the next record
    /// starting at `next_start` (the last record may end without a line break); forgets them.
    pub fn take_record(&self, start: u64, next_start: u64) -> bool {
        self.take_before(next_start.max(start + 1))
    }

    /// True when any line before `end` was cut; forgets them.
    fn take_before(&self, end: u64) -> bool {
        let mut cut = self.0.borrow_mut();
        let mut any = false;
        while cut.front().is_some_and(|&l| l < end) {
            cut.pop_front();
            any = true;
        }
        any
    }

    fn push(&self, line: u64) {
        self.0.borrow_mut().push_back(line);
    }
}

pub struct LineCap<R> {
    inner: R,
    cap: usize,
    /// Bytes of the current line passed so far (never more than `cap`).
    in_line: usize,
    /// `\n`s passed so far: the current line is `lines_done + 1`.
    lines_done: u64,
    /// What the last `fill_buf` exposed, and whether it ends with the line's `\n`.
    visible: usize,
    ends_line: bool,
    truncated: Truncated,
}

impl<R: BufRead> LineCap<R> {
    pub fn new(inner: R, cap: usize, truncated: Truncated) -> Self {
        LineCap {
            inner,
            cap,
            in_line: 0,
            lines_done: 0,
            visible: 0,
            ends_line: false,
            truncated,
        }
    }

    /// Drops the rest of an over-long line, up to (not including) its `\n`.
    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.inner.consume(i);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.inner.consume(n);
                }
            }
        }
    }
}

impl<R: BufRead> BufRead for LineCap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            let buf = self.inner.fill_buf()?;
            let room = self.cap - self.in_line;
            // The line's `\n` always passes, even with no room left.
            let window = &buf[..buf.len().min(room + 1)];
            let (visible, ends_line) = match memchr::memchr(b'\n', window) {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), false),
            };
            if visible == 0 && !buf.is_empty() {
                // Over the cap: record it, and drop bytes until the `\n` comes to the front.
                self.truncated.push(self.lines_done + 1);
                self.skip_rest_of_line()?;
                if self.inner.fill_buf()?.is_empty() {
                    // The input ended inside the long line.
                    self.in_line = 0;
                    self.visible = 0;
                    return Ok(&[]);
                }
                continue;
            }
            self.visible = visible;
            self.ends_line = ends_line;
            break;
        }
        let buf = self.inner.fill_buf()?;
        Ok(&buf[..self.visible.min(buf.len())])
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        if amt > 0 && amt == self.visible && self.ends_line {
            self.lines_done += 1;
            self.in_line = 0;
        } else {
            self.in_line += amt;
        }
        self.visible = self.visible.saturating_sub(amt);
    }
}

impl<R: BufRead> Read for LineCap<R> {
    /// Fills `out` with as many lines as fit (the CSV parser reads in large blocks).
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            let buf = self.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&buf[..n]);
            self.consume(n);
            filled += n;
        }
        Ok(filled)
    }
}

/// Appends the next line of `reader` to `out` without its `\n`, keeping at most `cap` bytes and
/// dropping the rest unread into memory. `None` at the end of the input; otherwise whether the
/// line was cut. What JSONL reading uses in place of `read_until`.
pub fn read_line_capped(
    reader: &mut dyn BufRead,
    out: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<bool>> {
    let (mut kept, mut any, mut cut) = (0usize, false, false);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (len, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let body = if done { len - 1 } else { len };
        let take = body.min(cap - kept);
        cut |= take < body;
        out.extend_from_slice(&buf[..take]);
        kept += take;
        reader.consume(len);
        if done {
            return Ok(Some(cut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(input: &[u8], cap: usize, chunk: usize) -> (Vec<u8>, Vec<u64>) {
        let truncated = Truncated::default();
        let inner = io::BufReader::with_capacity(chunk, input);
        let mut r = LineCap::new(inner, cap, truncated.clone());
        let mut out = Vec::new();
        // Small reads, to cross every boundary.
        let mut piece = [0u8; 3];
        loop {
            let n = r.read(&mut piece).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
        }
        let cut: Vec<u64> = truncated.0.borrow().iter().copied().collect();
        (out, cut)
    }

    #[test]
    fn short_lines_pass_unchanged() {
        for chunk in [1, 2, 5, 64] {
            let input = b"ab\ncdef\n\nxyz";
            assert_eq!(through(input, 4, chunk), (input.to_vec(), vec![]));
        }
    }

    #[test]
    fn a_long_line_is_cut_to_the_cap_and_numbered() {
        for chunk in [1, 2, 5, 64] {
            let input = b"ok\n0123456789\nfine\n";
            let (out, cut) = through(input, 4, chunk);
            assert_eq!(out, b"ok\n0123\nfine\n", "chunk {chunk}");
            assert_eq!(cut, vec![2]);
        }
    }

    #[test]
    fn a_line_of_exactly_the_cap_passes_and_a_final_long_line_is_cut() {
        for chunk in [1, 3, 64] {
            let (out, cut) = through(b"0123\n0123456789", 4, chunk);
            assert_eq!(out, b"0123\n0123", "chunk {chunk}");
            assert_eq!(cut, vec![2]);
        }
    }

    #[test]
    fn reading_a_line_keeps_at_most_the_cap() {
        for chunk in [1, 2, 5, 64] {
            let mut r = io::BufReader::with_capacity(chunk, &b"ab\n0123456789\n0123\nxyz"[..]);
            let mut lines = Vec::new();
            loop {
                let mut out = Vec::new();
                match read_line_capped(&mut r, &mut out, 4).unwrap() {
                    None => break,
                    Some(cut) => lines.push((out, cut)),
                }
            }
            let want: Vec<(Vec<u8>, bool)> = vec![
                (b"ab".to_vec(), false),
                (b"0123".to_vec(), true),
                (b"0123".to_vec(), false),
                (b"xyz".to_vec(), false),
            ];
            assert_eq!(lines, want, "chunk {chunk}");
        }
    }

    #[test]
    fn taking_forgets_lines_in_order() {
        let t = Truncated::default();
        t.push(2);
        t.push(5);
        assert!(!t.take_before(2));
        assert!(t.take_before(3));
        assert!(!t.take_before(5));
        assert!(t.take_before(9));
        assert!(!t.take_before(9));
        t.push(12);
        assert!(t.take_record(12, 12), "a last record without a line break");
    }
}

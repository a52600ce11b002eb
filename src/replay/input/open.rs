//! Opening inputs: plain or gzip'd (by content), and telling JSONL from CSV and its delimiter.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

/// Row format of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv { delimiter: u8 },
}

/// Counts bytes read from the underlying file (compressed bytes for gzip), for progress.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// An opened input: a decompressed byte stream and a counter of raw bytes consumed.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
    pub bytes_read: Rc<Cell<u64>>,
    pub size: u64,
}

fn wrap(name: String, raw: Box<dyn Read>, size: u64) -> io::Result<Input> {
    let bytes_read = Rc::new(Cell::new(0));
    let mut buffered = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: raw,
            read: bytes_read.clone(),
        },
    );
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        name,
        reader,
        bytes_read,
        size,
    })
}

/// Opens a file, decompressing it when its content is gzip.
pub fn open(path: &Path) -> io::Result<Input> {
    let file = File::open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    wrap(name, Box::new(file), size)
}

/// Opens bytes held in memory (the bundled sample).
pub fn open_bytes(name: &str, bytes: &'static [u8]) -> io::Result<Input> {
    wrap(name.to_string(), Box::new(bytes), bytes.len() as u64)
}

/// Opens any reader (tests and fuzzing), decompressing it when its content is gzip.
pub fn open_reader(name: &str, reader: Box<dyn Read>, size: u64) -> io::Result<Input> {
    wrap(name.to_string(), reader, size)
}

/// JSONL when the first non-blank byte opens an object; CSV otherwise, with the delimiter that
/// occurs most often (outside quotes) in the first line.
pub fn detect(reader: &mut dyn BufRead) -> io::Result<Format> {
    let head = reader.fill_buf()?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Ok(Format::Jsonl);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    Ok(Format::Csv {
        delimiter: detect_delimiter(line),
    })
}

pub fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 4];
    let candidates = [b',', b'|', b';', b'\t'];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = candidates.iter().position(|&c| c == b) {
                counts[i] += 1;
            }
        }
    }
    let best = (0..4)
        .max_by_key(|&i| (counts[i], usize::MAX - i))
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

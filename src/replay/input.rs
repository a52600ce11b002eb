//! Input files for replay: plain or gzip'd (by content), JSONL or CSV (by content, or as told),
//! read row by row into events or rejects. A bad row never stops the file.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use swipeguard_detectors::{RejectReason, Transaction};

use super::convert::{Mapper, FIELDS};
use super::linecap::{read_line_capped, LineCap, Truncated};
use super::mapping::{MappingError, MappingFile};
use crate::codec::{decode_event, DecodeLimits, Rejected};

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

/// One row read: its line number and the event or why it was refused.
pub type RowResult = (u64, Result<Transaction, Rejected>);

/// Reads rows of one input.
pub enum Rows {
    Jsonl {
        input: Input,
        line: u64,
        buf: Vec<u8>,
        limits: DecodeLimits,
        mapped: Option<(Mapper, Vec<String>)>,
        /// Bytes of a line kept at most: one over the message limit, enough to be refused as
        /// `oversized` and shown in the rejects file.
        cap: usize,
    },
    Csv {
        input_name: String,
        reader: csv::Reader<Box<dyn BufRead>>,
        bytes_read: Rc<Cell<u64>>,
        record: csv::ByteRecord,
        mapper: Mapper,
        limits: DecodeLimits,
        raw: Vec<u8>,
        delimiter: u8,
        truncated: Truncated,
    },
}

impl Rows {
    /// Prepares to read `input` as `format`, binding `mapping` to the file's header.
    pub fn new(
        input: Input,
        format: Format,
        mapping: Option<&MappingFile>,
        limits: DecodeLimits,
    ) -> Result<Rows, MappingError> {
        // No line is held past the message limit: the part kept is one byte over, enough to be
        // refused as `oversized` and shown in the rejects file.
        let cap = limits.max_bytes.saturating_add(1);
        match format {
            Format::Jsonl => {
                let mapped = match mapping {
                    None => None,
                    Some(m) => {
                        // JSON keys play the part of columns: any key the mapping names, plus the §2 names.
                        let mut header: Vec<String> =
                            m.columns().into_iter().map(String::from).collect();
                        header.extend(FIELDS.iter().map(|(n, _)| n.to_string()));
                        header.dedup();
                        Some((
                            Mapper::compile(m, &header, &input.name, limits.clone())?,
                            header,
                        ))
                    }
                };
                Ok(Rows::Jsonl {
                    input,
                    line: 0,
                    buf: Vec::with_capacity(512),
                    limits,
                    mapped,
                    cap,
                })
            }
            Format::Csv { delimiter } => {
                let has_header = mapping.is_none_or(|m| m.source.header);
                let name = input.name.clone();
                let bytes_read = input.bytes_read.clone();
                let truncated = Truncated::default();
                let capped: Box<dyn BufRead> =
                    Box::new(LineCap::new(input.reader, cap, truncated.clone()));
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .has_headers(has_header)
                    .flexible(true)
                    .from_reader(capped);
                let header: Vec<String> = if has_header {
                    reader
                        .headers()
                        .map_err(|e| {
                            MappingError::Invalid(format!("{name}: cannot read the header: {e}"))
                        })?
                        .iter()
                        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                        .collect()
                } else {
                    (1..=256).map(|i| i.to_string()).collect()
                };
                let empty = MappingFile::default();
                let mapper =
                    Mapper::compile(mapping.unwrap_or(&empty), &header, &name, limits.clone())?;
                Ok(Rows::Csv {
                    input_name: name,
                    reader,
                    bytes_read,
                    record: csv::ByteRecord::new(),
                    mapper,
                    limits,
                    raw: Vec::new(),
                    delimiter,
                    truncated,
                })
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Rows::Jsonl { input, .. } => &input.name,
            Rows::Csv { input_name, .. } => input_name,
        }
    }

    /// The bytes of the row last returned, for the rejects file.
    pub fn raw(&self) -> &[u8] {
        match self {
            Rows::Jsonl { buf, .. } => buf,
            Rows::Csv { raw, .. } => raw,
        }
    }

    /// True for plain §2 JSONL, whose rows decode apart from reading: see [`Rows::next_line`].
    pub fn decodes_apart(&self) -> bool {
        matches!(self, Rows::Jsonl { mapped: None, .. })
    }

    /// For plain JSONL only (see [`Rows::decodes_apart`]): appends the next non-blank line,
    /// undecoded and without its line ending, to `out`, and returns its line number and where it
    /// is in `out`; `None` at the end of the input. Its decoding, `decode_event(line, limits)`, is
    /// exactly what [`Rows::next_row`] would have done.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> io::Result<Option<(u64, Range<usize>)>> {
        let Rows::Jsonl {
            input,
            line,
            mapped: None,
            cap,
            ..
        } = self
        else {
            return Err(io::Error::other("next_line is for plain JSONL"));
        };
        let start = out.len();
        loop {
            // Read straight into the caller's buffer: one copy per line, not two.
            let Some(cut) = read_line_capped(&mut *input.reader, out, *cap)? else {
                out.truncate(start);
                return Ok(None);
            };
            *line += 1;
            if cut {
                // Kept one byte over the limit, so decoding refuses it as `oversized`.
                return Ok(Some((*line, start..out.len())));
            }
            while out.len() > start && matches!(out.last(), Some(b'\n' | b'\r')) {
                out.pop();
            }
            if out[start..].iter().all(u8::is_ascii_whitespace) {
                out.truncate(start);
                continue;
            }
            return Ok(Some((*line, start..out.len())));
        }
    }

    /// The next row, or `None` at the end of the input.
    pub fn next_row(&mut self) -> io::Result<Option<RowResult>> {
        match self {
            Rows::Jsonl {
                input,
                line,
                buf,
                limits,
                mapped,
                cap,
            } => loop {
                buf.clear();
                let Some(cut) = read_line_capped(&mut *input.reader, buf, *cap)? else {
                    return Ok(None);
                };
                *line += 1;
                if cut {
                    return Ok(Some((
                        *line,
                        Err(Rejected::new(RejectReason::Oversized, "message")),
                    )));
                }
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let result = match mapped {
                    None => decode_event(buf, limits),
                    Some((mapper, header)) => mapped_json(buf, mapper, header, *line, limits),
                };
                return Ok(Some((*line, result)));
            },
            Rows::Csv {
                reader,
                record,
                mapper,
                limits,
                raw,
                delimiter,
                truncated,
                ..
            } => match reader.read_byte_record(record) {
                Ok(false) => Ok(None),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    raw.clear();
                    for (i, field) in record.iter().enumerate() {
                        if i > 0 {
                            raw.push(*delimiter);
                        }
                        raw.extend_from_slice(field);
                    }
                    // A line of the record cut by the reader, or a record over the limit.
                    let cut = truncated.take_record(line, reader.position().line());
                    if cut || raw.len() > limits.max_bytes {
                        return Ok(Some((
                            line,
                            Err(Rejected::new(RejectReason::Oversized, "row")),
                        )));
                    }
                    let cells: Result<Vec<&str>, _> =
                        record.iter().map(std::str::from_utf8).collect();
                    let result = match cells {
                        Err(_) => Err(Rejected::new(RejectReason::NotUtf8, "row")),
                        Ok(cells) => mapper.convert(&cells, line),
                    };
                    Ok(Some((line, result)))
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    raw.clear();
                    if let csv::ErrorKind::Io(io) = e.kind() {
                        return Err(io::Error::new(io.kind(), io.to_string()));
                    }
                    let rejected = if truncated.take_record(line, reader.position().line()) {
                        Rejected::new(RejectReason::Oversized, "row")
                    } else {
                        Rejected::new(RejectReason::MalformedRow, e.to_string())
                    };
                    Ok(Some((line, Err(rejected))))
                }
            },
        }
    }

    /// Raw bytes of the file consumed so far and the file's size, for progress.
    pub fn progress(&self) -> u64 {
        match self {
            Rows::Jsonl { input, .. } => input.bytes_read.get(),
            Rows::Csv { bytes_read, .. } => bytes_read.get(),
        }
    }
}

/// A JSON line read through a mapping: the object's top-level values become the cells.
fn mapped_json(
    bytes: &[u8],
    mapper: &Mapper,
    header: &[String],
    line: u64,
    limits: &DecodeLimits,
) -> Result<Transaction, Rejected> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejected::new(RejectReason::Oversized, "message"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Rejected::new(
            if e.is_data() {
                RejectReason::WrongType
            } else {
                RejectReason::NotJson
            },
            "message",
        )
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| Rejected::new(RejectReason::NotObject, "message"))?;
    let cells: Vec<String> = header
        .iter()
        .map(|h| match object.get(h) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        })
        .collect();
    let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
    mapper.convert(&refs, line)
}

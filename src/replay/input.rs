//! Input files for replay: plain or gzip'd (by content), JSONL or CSV (by content, or as told),
//! read row by row into events or rejects. A bad row never stops the file. With a mapping's
//! `group_by`, consecutive rows of one settlement come out as one event ([`super::group`]); a
//! row that cannot be read into cells at all (oversized, not JSON) belongs to no group and is
//! refused on its own.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, BufRead};
use std::ops::Range;
use std::rc::Rc;

use swipeguard_detectors::{RejectReason, Transaction};

use super::convert::unknown::Unknowns;
use super::convert::{Mapper, FIELDS};
use super::group::{Folded, Grouping};
use super::linecap::{read_line_capped, LineCap, Truncated};
use super::mapping::{MappingError, MappingFile};
use crate::codec::{decode_event, DecodeLimits, Rejected};

mod open;
pub use open::{detect, detect_delimiter, open, open_bytes, open_reader, Format, Input};

/// One row read: its line number and the event or why it was refused.
pub type RowResult = (u64, Result<Transaction, Rejected>);

/// Reads rows of one input.
pub struct Rows {
    source: Source,
    /// Present when the mapping groups rows.
    grouping: Option<Grouping>,
    /// Vocabulary values that became `other` because nothing knew them, for the summary's hint.
    unknown: Unknowns,
}

/// What reading one row gave: a result, or a row handed to the grouping.
// Matched as soon as it is made: boxing the event would cost an allocation per row for nothing.
#[allow(clippy::large_enum_variant)]
enum Step {
    Row(RowResult),
    Folded,
    End,
}

enum Source {
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
                        // Not the item members: a JSON line's items are an array, never keys of it.
                        header.extend(
                            FIELDS
                                .iter()
                                .map(|(n, _)| n.to_string())
                                .filter(|n| !n.starts_with("items.")),
                        );
                        header.dedup();
                        Some((
                            Mapper::compile(m, &header, &input.name, limits.clone())?,
                            header,
                        ))
                    }
                };
                let grouping = Grouping::new(mapped.as_ref().map(|(m, _)| m), &limits);
                Ok(Rows {
                    source: Source::Jsonl {
                        input,
                        line: 0,
                        buf: Vec::with_capacity(512),
                        limits,
                        mapped,
                        cap,
                    },
                    grouping,
                    unknown: Unknowns::default(),
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
                let grouping = Grouping::new(Some(&mapper), &limits);
                Ok(Rows {
                    source: Source::Csv {
                        input_name: name,
                        reader,
                        bytes_read,
                        record: csv::ByteRecord::new(),
                        mapper,
                        limits,
                        raw: Vec::new(),
                        delimiter,
                        truncated,
                    },
                    grouping,
                    unknown: Unknowns::default(),
                })
            }
        }
    }

    pub fn name(&self) -> &str {
        match &self.source {
            Source::Jsonl { input, .. } => &input.name,
            Source::Csv { input_name, .. } => input_name,
        }
    }

    /// The bytes of the row last returned, for the rejects file (with grouping, of the refused
    /// row last returned).
    pub fn raw(&self) -> &[u8] {
        if let Some(g) = &self.grouping {
            return &g.raw;
        }
        match &self.source {
            Source::Jsonl { buf, .. } => buf,
            Source::Csv { raw, .. } => raw,
        }
    }

    /// Rows read since the last call that came out inside an earlier row's event (with
    /// grouping): with the rows returned, the rows read.
    pub fn take_folded(&mut self) -> u64 {
        self.grouping
            .as_mut()
            .map_or(0, |g| g.grouper.take_folded())
    }

    /// What the rows converted so far held that their mapping did not know (nothing for plain
    /// §2 JSONL, which the codec reads); see [`super::convert::unknown`].
    pub fn take_unknown(&mut self) -> Unknowns {
        std::mem::take(&mut self.unknown)
    }

    /// True for plain §2 JSONL, whose rows decode apart from reading: see [`Rows::next_line`].
    pub fn decodes_apart(&self) -> bool {
        matches!(self.source, Source::Jsonl { mapped: None, .. })
    }

    /// For plain JSONL only (see [`Rows::decodes_apart`]): appends the next non-blank line,
    /// undecoded and without its line ending, to `out`, and returns its line number and where it
    /// is in `out`; `None` at the end of the input. Its decoding, `decode_event(line, limits)`, is
    /// exactly what [`Rows::next_row`] would have done.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> io::Result<Option<(u64, Range<usize>)>> {
        let Source::Jsonl {
            input,
            line,
            mapped: None,
            cap,
            ..
        } = &mut self.source
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

    /// The next row (with grouping, the next event or refused row), or `None` at the end of the
    /// input.
    pub fn next_row(&mut self) -> io::Result<Option<RowResult>> {
        let Some(g) = &mut self.grouping else {
            loop {
                match self.source.next(None, &mut self.unknown)? {
                    Step::Row(row) => return Ok(Some(row)),
                    Step::End => return Ok(None),
                    Step::Folded => {}
                }
            }
        };
        loop {
            match g.ready.pop_front() {
                Some(Folded::Event { line, event }) => return Ok(Some((line, Ok(*event)))),
                Some(Folded::Reject {
                    line,
                    rejected,
                    raw,
                }) => {
                    g.raw = raw;
                    return Ok(Some((line, Err(rejected))));
                }
                None if g.ended => return Ok(None),
                None => match self.source.next(Some(g), &mut self.unknown)? {
                    Step::Row((line, Ok(event))) => return Ok(Some((line, Ok(event)))),
                    Step::Row((line, Err(rejected))) => {
                        let raw = match &self.source {
                            Source::Jsonl { buf, .. } => buf,
                            Source::Csv { raw, .. } => raw,
                        };
                        g.alone(line, raw, rejected);
                    }
                    Step::Folded => {}
                    Step::End => {
                        g.grouper.finish(&mut g.ready);
                        g.ended = true;
                    }
                },
            }
        }
    }

    /// Raw bytes of the file consumed so far and the file's size, for progress.
    pub fn progress(&self) -> u64 {
        match &self.source {
            Source::Jsonl { input, .. } => input.bytes_read.get(),
            Source::Csv { bytes_read, .. } => bytes_read.get(),
        }
    }
}

impl Source {
    /// Reads one row: converted, or with `grouping` handed to it (rows refused before they
    /// have cells come back as [`Step::Row`] either way). Converted rows are tallied in
    /// `unknown`.
    fn next(
        &mut self,
        grouping: Option<&mut Grouping>,
        unknown: &mut Unknowns,
    ) -> io::Result<Step> {
        match self {
            Source::Jsonl {
                input,
                line,
                buf,
                limits,
                mapped,
                cap,
            } => loop {
                buf.clear();
                let Some(cut) = read_line_capped(&mut *input.reader, buf, *cap)? else {
                    return Ok(Step::End);
                };
                *line += 1;
                if cut {
                    return Ok(Step::Row((
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
                let Some((mapper, header)) = mapped else {
                    return Ok(Step::Row((*line, decode_event(buf, limits))));
                };
                let cells = match mapped_json(buf, header, limits) {
                    Ok(cells) => cells,
                    Err(rejected) => return Ok(Step::Row((*line, Err(rejected)))),
                };
                let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
                return Ok(match grouping {
                    None => Step::Row((*line, mapper.convert_tallied(&cells, *line, unknown))),
                    Some(g) => {
                        g.fold(mapper, &cells, *line, buf, unknown);
                        Step::Folded
                    }
                });
            },
            Source::Csv {
                reader,
                record,
                mapper,
                limits,
                raw,
                delimiter,
                truncated,
                ..
            } => match reader.read_byte_record(record) {
                Ok(false) => Ok(Step::End),
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
                        return Ok(Step::Row((
                            line,
                            Err(Rejected::new(RejectReason::Oversized, "row")),
                        )));
                    }
                    let cells: Result<Vec<&str>, _> =
                        record.iter().map(std::str::from_utf8).collect();
                    let not_utf8 = || Rejected::new(RejectReason::NotUtf8, "row");
                    Ok(match (cells, grouping) {
                        (Err(_), None) => Step::Row((line, Err(not_utf8()))),
                        (Ok(cells), None) => {
                            Step::Row((line, mapper.convert_tallied(&cells, line, unknown)))
                        }
                        (Ok(cells), Some(g)) => {
                            g.fold(mapper, &cells, line, raw, unknown);
                            Step::Folded
                        }
                        (Err(_), Some(g)) => {
                            // Its key is most likely readable: the row still spoils its group.
                            let lossy: Vec<Cow<'_, str>> =
                                record.iter().map(String::from_utf8_lossy).collect();
                            g.refuse(mapper.group_key(&lossy), line, raw, not_utf8());
                            Step::Folded
                        }
                    })
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
                    Ok(Step::Row((line, Err(rejected))))
                }
            },
        }
    }
}

/// A JSON line read through a mapping: the object's top-level values become the cells.
fn mapped_json(
    bytes: &[u8],
    header: &[String],
    limits: &DecodeLimits,
) -> Result<Vec<String>, Rejected> {
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
    let cells = header
        .iter()
        .map(|h| match object.get(h) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        })
        .collect();
    Ok(cells)
}

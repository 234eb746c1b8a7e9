//! Reading message heads and chunked framing as hyper does: a head that
//! arrives whole is read at once by hyper's own parser, any other byte by byte.

use std::mem::MaybeUninit;

/// The most header lines hyper reads in one head (its default limit).
pub(super) const MOST_HEADERS: usize = 100;

/// The request method, as far as response framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// Not read yet.
    Unknown,
    Head,
    Connect,
    Other,
}

impl Method {
    pub(super) fn of(token: &[u8]) -> Method {
        match token {
            b"HEAD" => Method::Head,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Method::Unknown => "-",
            Method::Head => "HEAD",
            Method::Connect => "CONNECT",
            Method::Other => "other",
        }
    }
}

/// Which header of a head a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    ContentLength,
    TransferEncoding,
    Other,
}

/// A Content-Length read as hyper reads every line of it: comma-separated
/// decimal numbers, all equal.
#[derive(Debug, Default)]
pub(super) struct LengthField {
    pub(super) value: Option<u64>,
    pub(super) invalid: bool,
    // The number being read on the current line.
    pub(super) current: u64,
    pub(super) digits: bool,
    pub(super) after_digits: bool,
}

impl LengthField {
    pub(super) fn byte(&mut self, b: u8) {
        match b {
            b'0'..=b'9' if !self.after_digits => {
                self.digits = true;
                match self
                    .current
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                {
                    Some(n) => self.current = n,
                    None => self.invalid = true,
                }
            }
            b' ' | b'\t' => {
                if self.digits {
                    self.after_digits = true;
                }
            }
            b',' => self.element(),
            _ => self.invalid = true,
        }
    }

    pub(super) fn element(&mut self) {
        if !self.digits {
            self.invalid = true;
        }
        match self.value {
            Some(value) if value != self.current => self.invalid = true,
            _ => self.value = Some(self.current),
        }
        self.current = 0;
        self.digits = false;
        self.after_digits = false;
    }
}

/// The last coding of a Transfer-Encoding line, as hyper reads it: the line's
/// text after its last comma, trimmed, compared with "chunked".
#[derive(Debug, Default)]
pub(super) struct CodingField {
    pub(super) token: [u8; 7],
    pub(super) len: usize,
    // The last element is longer than "chunked", or has space inside.
    pub(super) other: bool,
    pub(super) space_after: bool,
    pub(super) not_text: bool,
}

impl CodingField {
    pub(super) fn byte(&mut self, b: u8) {
        match b {
            b',' => {
                self.len = 0;
                self.other = false;
                self.space_after = false;
            }
            b' ' | b'\t' => self.space_after = self.len > 0 || self.other,
            _ => {
                if !(0x20..0x7f).contains(&b) {
                    self.not_text = true;
                }
                if self.space_after || self.len == self.token.len() {
                    self.other = true;
                } else {
                    self.token[self.len] = b;
                    self.len += 1;
                }
            }
        }
    }

    pub(super) fn is_chunked(&self) -> bool {
        !self.not_text && !self.other && self.token[..self.len].eq_ignore_ascii_case(b"chunked")
    }
}

/// What a finished head says about the message's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadInfo {
    /// The response status (0 for a request).
    pub(super) status: u16,
    /// The request method (`Unknown` for a response).
    pub(super) method: Method,
    pub(super) http10: bool,
    pub(super) has_coding: bool,
    pub(super) chunked: bool,
    pub(super) length: Option<u64>,
    pub(super) bad_length: bool,
}

/// A head being read, byte by byte, keeping no more than it needs.
#[derive(Debug)]
pub(super) struct Head {
    // Still on the first line (the request or status line); empty lines
    // before it are skipped, as httparse does.
    pub(super) first_line: bool,
    pub(super) start: [u8; 16],
    pub(super) start_len: usize,
    // Where in the current header line: reading its name, or its value.
    pub(super) in_value: bool,
    pub(super) line_empty: bool,
    pub(super) cr: bool,
    pub(super) name: [u8; 17],
    pub(super) name_len: usize,
    pub(super) field: Field,
    pub(super) length: LengthField,
    pub(super) coding: CodingField,
    pub(super) has_coding: bool,
    pub(super) chunked: bool,
}

impl Head {
    pub(super) fn new() -> Head {
        Head {
            first_line: true,
            start: [0; 16],
            start_len: 0,
            in_value: false,
            line_empty: true,
            cr: false,
            name: [0; 17],
            name_len: 0,
            field: Field::Other,
            length: LengthField::default(),
            coding: CodingField::default(),
            has_coding: false,
            chunked: false,
        }
    }

    /// Whether nothing but empty lines has been read yet, so the next byte
    /// may be where the head starts.
    pub(super) fn untouched(&self) -> bool {
        self.first_line && self.start_len == 0 && !self.cr
    }

    /// Whether every byte up to the next CR or LF leaves this head as it is:
    /// the value of a header that does not frame the body, or the first
    /// line past the part that is kept.
    pub(super) fn skips_to_line_end(&self) -> bool {
        !self.cr
            && ((self.in_value && self.field == Field::Other)
                || (self.first_line && self.start_len == self.start.len()))
    }

    /// At the start of a header line, reads its name at once when the
    /// colon is in `bytes`: how many bytes it took (0: read byte by byte).
    pub(super) fn name_at_once(&mut self, bytes: &[u8]) -> Result<usize, ()> {
        if self.first_line || self.in_value || !self.line_empty || self.cr || self.name_len > 0 {
            return Ok(0);
        }
        let Some(at) = memchr::memchr3(b':', b'\r', b'\n', bytes) else {
            return Ok(0);
        };
        if bytes[at] != b':' {
            return Ok(0);
        }
        let name = &bytes[..at];
        // An empty name, or space or tab in it (a folded line among them):
        // httparse refuses them all.
        if name.is_empty() || name.iter().any(|&b| b == b' ' || b == b'\t') {
            return Err(());
        }
        self.line_empty = false;
        self.in_value = true;
        self.field = if name.eq_ignore_ascii_case(b"content-length") {
            Field::ContentLength
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            Field::TransferEncoding
        } else {
            Field::Other
        };
        Ok(at + 1)
    }

    /// Reads one byte: `Err` when hyper would refuse the head.
    pub(super) fn byte(&mut self, b: u8, role: Role) -> Result<Option<HeadInfo>, ()> {
        if self.cr && b != b'\n' {
            return Err(());
        }
        match b {
            b'\r' => {
                self.cr = true;
                Ok(None)
            }
            b'\n' => {
                self.cr = false;
                self.end_of_line(role)
            }
            _ if self.first_line => {
                self.line_empty = false;
                if self.start_len < self.start.len() {
                    self.start[self.start_len] = b;
                    self.start_len += 1;
                }
                Ok(None)
            }
            _ if self.in_value => {
                match self.field {
                    Field::ContentLength => self.length.byte(b),
                    Field::TransferEncoding => self.coding.byte(b),
                    Field::Other => {}
                }
                Ok(None)
            }
            b':' if !self.line_empty => {
                self.in_value = true;
                let name = &self.name[..self.name_len];
                self.field = if name.eq_ignore_ascii_case(b"content-length") {
                    Field::ContentLength
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    Field::TransferEncoding
                } else {
                    Field::Other
                };
                Ok(None)
            }
            // A folded line, or space before the colon: httparse refuses both.
            b' ' | b'\t' | b':' => Err(()),
            _ => {
                self.line_empty = false;
                if self.name_len < self.name.len() {
                    self.name[self.name_len] = b;
                    self.name_len += 1;
                } else {
                    // Longer than any name looked for.
                    self.name[0] = b'\0';
                }
                Ok(None)
            }
        }
    }

    pub(super) fn end_of_line(&mut self, role: Role) -> Result<Option<HeadInfo>, ()> {
        if self.first_line {
            if !self.line_empty {
                self.first_line = false;
                self.line_empty = true;
            }
            return Ok(None);
        }
        if self.line_empty {
            return self.finish(role).map(Some);
        }
        if !self.in_value {
            return Err(());
        }
        match self.field {
            Field::ContentLength => self.length.element(),
            Field::TransferEncoding => {
                self.has_coding = true;
                self.chunked = self.coding.is_chunked();
                self.coding = CodingField::default();
            }
            Field::Other => {}
        }
        self.in_value = false;
        self.line_empty = true;
        self.name_len = 0;
        self.field = Field::Other;
        Ok(None)
    }

    pub(super) fn finish(&self, role: Role) -> Result<HeadInfo, ()> {
        let start = &self.start[..self.start_len];
        let (status, method, http10) = match role {
            Role::Response => {
                // "HTTP/1.x NNN", then a reason phrase or nothing.
                let ok = start.len() >= 12
                    && start.starts_with(b"HTTP/1.")
                    && matches!(start[7], b'0' | b'1')
                    && start[8] == b' '
                    && start[9..12].iter().all(u8::is_ascii_digit)
                    && start.get(12).is_none_or(|&b| b == b' ');
                if !ok {
                    return Err(());
                }
                let status = start[9..12]
                    .iter()
                    .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
                (status, Method::Unknown, start[7] == b'0')
            }
            Role::Request => {
                let token = start.split(|&b| b == b' ').next().unwrap_or_default();
                (0, Method::of(token), false)
            }
        };
        Ok(HeadInfo {
            status,
            method,
            http10,
            has_coding: self.has_coding,
            chunked: self.chunked,
            length: self.length.value,
            bad_length: self.length.invalid,
        })
    }
}

/// Reads a head that `bytes` holds whole, from its first byte, with the
/// parser and settings hyper's client reads it with: the head's length and
/// what it says. `None` when the head is not whole yet or the parser
/// refuses it: the byte-by-byte reader then takes it.
pub(super) fn whole_head(bytes: &[u8], role: Role) -> Option<(usize, HeadInfo)> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MOST_HEADERS];
    let parser = httparse::ParserConfig::default();
    let (used, status, method, http10, headers) = match role {
        Role::Response => {
            let mut response = httparse::Response::new(&mut []);
            let httparse::Status::Complete(used) = parser
                .parse_response_with_uninit_headers(&mut response, bytes, &mut slots)
                .ok()?
            else {
                return None;
            };
            let status = response.code?;
            let http10 = response.version? == 0;
            (used, status, Method::Unknown, http10, response.headers)
        }
        Role::Request => {
            let mut request = httparse::Request::new(&mut []);
            let httparse::Status::Complete(used) = parser
                .parse_request_with_uninit_headers(&mut request, bytes, &mut slots)
                .ok()?
            else {
                return None;
            };
            let method = Method::of(request.method?.as_bytes());
            (used, 0, method, false, request.headers)
        }
    };
    let mut length = LengthField::default();
    let mut has_coding = false;
    let mut chunked = false;
    for header in headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            header.value.iter().for_each(|&b| length.byte(b));
            length.element();
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let mut coding = CodingField::default();
            header.value.iter().for_each(|&b| coding.byte(b));
            has_coding = true;
            chunked = coding.is_chunked();
        }
    }
    let info = HeadInfo {
        status,
        method,
        http10,
        has_coding,
        chunked,
        length: length.value,
        bad_length: length.invalid,
    };
    Some((used, info))
}

/// A chunked body, in hyper's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Start,
    Size(u64),
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

impl Chunk {
    /// The state after `b`; `Ok(None)` at the end of the body.
    pub(super) fn byte(self, b: u8) -> Result<Option<Chunk>, ()> {
        let hex = |size: u64| {
            let digit = (b as char).to_digit(16).ok_or(())?;
            size.checked_mul(16)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or(())
        };
        Ok(Some(match (self, b) {
            (Chunk::Start, _) => Chunk::Size(hex(0)?),
            (Chunk::Size(size), b'\t' | b' ') => Chunk::SizeSpace(size),
            (Chunk::Size(size) | Chunk::SizeSpace(size), b';') => Chunk::Extension(size),
            (Chunk::Size(size) | Chunk::SizeSpace(size) | Chunk::Extension(size), b'\r') => {
                Chunk::SizeLf(size)
            }
            (Chunk::Size(size), _) => Chunk::Size(hex(size)?),
            (Chunk::SizeSpace(size), b'\t' | b' ') => Chunk::SizeSpace(size),
            (Chunk::Extension(_), b'\n') => return Err(()),
            (Chunk::Extension(size), _) => Chunk::Extension(size),
            (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
            (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
            (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndLf, b'\n') => return Ok(None),
            _ => return Err(()),
        }))
    }
}

/// Which side of the exchange a head belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Sent by us.
    Request,
    /// Sent by the CMS.
    Response,
}

//! Tag names as the scanner keeps them: ASCII-lowercased, at most a few
//! bytes, and sorted into the few kinds that change how the bytes after a
//! tag are read.

/// Longest name the scanner tells apart (SVG's `feComponentTransfer`, for
/// the end tags of foreign content); longer names
/// are only ever "other".
const NAME_CAP: usize = 20;

/// A tag name being read, lowercased as the tokenizer lowercases it.
#[derive(Clone, Copy, Default)]
pub(super) struct Name {
    bytes: [u8; NAME_CAP],
    len: u8,
    // More bytes than `NAME_CAP`: no name of interest.
    long: bool,
}

impl Name {
    /// A name starting with `byte`.
    pub(super) fn starting(byte: u8) -> Name {
        let mut name = Name::default();
        name.push(byte);
        name
    }

    /// Appends a byte, lowercased (the tokenizer lowercases ASCII only).
    #[inline]
    pub(super) fn push(&mut self, byte: u8) {
        match self.bytes.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = byte.to_ascii_lowercase();
                self.len += 1;
            }
            None => self.long = true,
        }
    }

    /// The lowercased name, or `None` when it is too long to be of interest.
    pub(super) fn get(&self) -> Option<&[u8]> {
        (!self.long).then(|| &self.bytes[..usize::from(self.len)])
    }

    /// `bytes` as a complete name, lowercased.
    pub(super) fn of_raw(bytes: &[u8]) -> Name {
        let mut name = Name::default();
        for &byte in bytes {
            name.push(byte);
        }
        name
    }

    /// Whether more bytes could still make this a tag the scanner captures,
    /// so its first bytes must be kept when a chunk ends inside the name.
    pub(super) fn may_become(&self, names: &[&[u8]]) -> bool {
        self.get()
            .is_some_and(|so_far| names.iter().any(|name| name.starts_with(so_far)))
    }
}

/// What a tag name means to the scanner: which tags it rewrites or reads,
/// and which change how the following bytes are tokenized.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Iframe,
    Meta,
    Font,
    AnnotationXml,
    Svg,
    Math,
    // SVG's HTML integration points (`title` is also RCDATA in HTML).
    ForeignObject,
    Desc,
    Title,
    // MathML's text integration points.
    Mi,
    Mo,
    Mn,
    Ms,
    Mtext,
    Textarea,
    Plaintext,
    Script,
    Style,
    Xmp,
    Noembed,
    Noframes,
    Noscript,
    P,
    Br,
    Select,
    // The other tags that break out of foreign content (`meta`, `p`, `br` too).
    Breakout,
    Other,
}

impl Kind {
    /// The kind of a lowercased tag name.
    #[inline]
    pub(super) fn of(name: Option<&[u8]>) -> Kind {
        let Some(name) = name else {
            return Kind::Other;
        };
        match name {
            b"iframe" => Kind::Iframe,
            b"meta" => Kind::Meta,
            b"font" => Kind::Font,
            b"annotation-xml" => Kind::AnnotationXml,
            b"svg" => Kind::Svg,
            b"math" => Kind::Math,
            b"foreignobject" => Kind::ForeignObject,
            b"desc" => Kind::Desc,
            b"title" => Kind::Title,
            b"mi" => Kind::Mi,
            b"mo" => Kind::Mo,
            b"mn" => Kind::Mn,
            b"ms" => Kind::Ms,
            b"mtext" => Kind::Mtext,
            b"textarea" => Kind::Textarea,
            b"plaintext" => Kind::Plaintext,
            b"script" => Kind::Script,
            b"style" => Kind::Style,
            b"xmp" => Kind::Xmp,
            b"noembed" => Kind::Noembed,
            b"noframes" => Kind::Noframes,
            b"noscript" => Kind::Noscript,
            b"p" => Kind::P,
            b"br" => Kind::Br,
            b"select" => Kind::Select,
            b"b" | b"big" | b"blockquote" | b"body" | b"center" | b"code" | b"dd" | b"div"
            | b"dl" | b"dt" | b"em" | b"embed" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6"
            | b"head" | b"hr" | b"i" | b"img" | b"li" | b"listing" | b"menu" | b"nobr" | b"ol"
            | b"pre" | b"ruby" | b"s" | b"small" | b"span" | b"strong" | b"strike" | b"sub"
            | b"sup" | b"table" | b"tt" | b"u" | b"ul" | b"var" => Kind::Breakout,
            _ => Kind::Other,
        }
    }

    /// The kind of a tag name as written (any case).
    #[inline]
    pub(super) fn of_raw(name: &[u8]) -> Kind {
        let mut lower = [0u8; NAME_CAP];
        match lower.get_mut(..name.len()) {
            Some(lower) => {
                for (l, b) in lower.iter_mut().zip(name) {
                    *l = b.to_ascii_lowercase();
                }
                Kind::of(Some(lower))
            }
            None => Kind::Other,
        }
    }

    /// Whether this start tag matters in HTML content: it switches the
    /// tokenizer to a text state, opens SVG or MathML, or opens a `select`.
    pub(super) fn matters_in_html(self) -> bool {
        matches!(
            self,
            Kind::Svg
                | Kind::Select
                | Kind::Math
                | Kind::Iframe
                | Kind::Title
                | Kind::Textarea
                | Kind::Plaintext
                | Kind::Script
                | Kind::Style
                | Kind::Xmp
                | Kind::Noembed
                | Kind::Noframes
                | Kind::Noscript
        )
    }

    /// Whether this start tag in foreign content closes it (HTML §13.2.6.5).
    pub(super) fn breaks_out(self) -> bool {
        matches!(self, Kind::Breakout | Kind::Meta | Kind::P | Kind::Br)
    }
}

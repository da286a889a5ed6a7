//! Checks of a parsed control config that serde cannot make, each reported with the line and
//! column of the offending value and its field path (`vrf[1].rd`), found in the source text
//! through `toml_edit`'s spans. A file with any of these errors is refused whole: nothing of it
//! is applied.

use std::collections::HashMap;

use carrier_dataplane::tables::Tables;
use toml_edit::{ImDocument, Item};

use super::{ConfigError, ControlConfig};

/// A step of a field path: a key or an array index.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    /// A key of a table.
    Key(&'a str),
    /// An element of an array or array of tables.
    Index(usize),
}

/// The source text of a config, to place errors.
#[derive(Debug)]
pub struct Source<'a> {
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
}

impl<'a> Source<'a> {
    /// Index `text` (which parsed already).
    pub fn new(text: &'a str) -> Self {
        Source { text, doc: ImDocument::parse(text).ok() }
    }

    /// The error for the value at `path`.
    pub fn error(&self, path: &[Step<'_>], message: impl Into<String>) -> ConfigError {
        let field = path
            .iter()
            .map(|s| match s {
                Step::Key(k) => format!(".{k}"),
                Step::Index(i) => format!("[{i}]"),
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string();
        let (line, column) = self.walk(path).1.map_or((0, 0), |at| self.line_column(at));
        ConfigError::At { line, column, field, message: message.into() }
    }

    /// The node at `path`, and the start of the nearest spanned node on the way.
    fn walk(&self, path: &[Step<'_>]) -> (Option<Node<'_>>, Option<usize>) {
        let Some(doc) = self.doc.as_ref() else { return (None, None) };
        let mut node = Node::Table(doc.as_table());
        let mut at = None;
        for step in path {
            match node.get(*step) {
                Some(n) => {
                    at = n.start().or(at);
                    node = n;
                }
                None => return (None, at),
            }
        }
        (Some(node), at)
    }

    /// 1-based line and column of a byte offset.
    fn line_column(&self, at: usize) -> (usize, usize) {
        let before = &self.text[..at.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// The string at `path`, as written.
    fn raw_str(&self, path: &[Step<'_>]) -> Option<String> {
        match self.walk(path).0? {
            Node::Item(i) => i.as_str().map(ToString::to_string),
            Node::Value(v) => v.as_str().map(ToString::to_string),
            Node::Table(_) => None,
        }
    }
}

/// A place in a parsed document.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Table(&'d toml_edit::Table),
    Value(&'d toml_edit::Value),
}

impl<'d> Node<'d> {
    fn get(self, step: Step<'_>) -> Option<Node<'d>> {
        match (self, step) {
            (Node::Item(Item::Table(t)), s) => Node::Table(t).get(s),
            (Node::Item(Item::Value(v)), s) => Node::Value(v).get(s),
            (Node::Item(Item::ArrayOfTables(a)), Step::Index(i)) => a.get(i).map(Node::Table),
            (Node::Table(t), Step::Key(k)) => t.get(k).map(Node::Item),
            (Node::Value(v), Step::Key(k)) => v.as_inline_table()?.get(k).map(Node::Value),
            (Node::Value(v), Step::Index(i)) => v.as_array()?.get(i).map(Node::Value),
            _ => None,
        }
    }

    fn start(self) -> Option<usize> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
        .map(|r| r.start)
    }
}

/// The checks that need only the file.
pub fn check(c: &ControlConfig, src: &Source<'_>) -> Result<(), ConfigError> {
    use Step::{Index, Key};
    for (i, n) in c.neighbors.iter().enumerate() {
        if let Err(e) = n.families() {
            return Err(src.error(&[Key("neighbor"), Index(i), Key("families")], e.to_string()));
        }
        if n.password.as_ref().is_some_and(|p| p.is_empty() || p.len() > crate::sys::MD5_MAX_KEY) {
            return Err(src.error(&[Key("neighbor"), Index(i), Key("password")], format!("1 to {} bytes", crate::sys::MD5_MAX_KEY)));
        }
        if n.ttl_security == Some(0) {
            return Err(src.error(&[Key("neighbor"), Index(i), Key("ttl_security")], "counts hops, from 1"));
        }
        if let Some(j) = c.neighbors[..i].iter().position(|m| m.address == n.address) {
            return Err(src.error(&[Key("neighbor"), Index(i), Key("address")], format!("neighbor {} is defined twice (also neighbor[{j}])", n.address)));
        }
    }
    let mut rds: HashMap<String, String> = HashMap::new();
    for (i, v) in c.vrfs.iter().enumerate() {
        if let Some(j) = c.vrfs[..i].iter().position(|w| w.name == v.name) {
            return Err(src.error(&[Key("vrf"), Index(i), Key("name")], format!("VRF {:?} is defined twice (also vrf[{j}])", v.name)));
        }
        if let Some(rd) = v.rd {
            if let Some(other) = rds.insert(rd.to_string(), format!("vrf {:?}", v.name)) {
                return Err(src.error(&[Key("vrf"), Index(i), Key("rd")], format!("route distinguisher {rd} is already used by {other}")));
            }
        } else if !v.export.is_empty() {
            return Err(src.error(&[Key("vrf"), Index(i), Key("export")], format!("VRF {:?} exports routes but has no rd", v.name)));
        }
        for (k, s) in v.statics.iter().enumerate() {
            let path = [Key("vrf"), Index(i), Key("static"), Index(k), Key("prefix")];
            if let Some(raw) = src.raw_str(&path) {
                if raw != s.prefix.to_string() {
                    return Err(src.error(&path, format!("{raw} is not on its mask (host bits set; {} was meant?)", s.prefix)));
                }
            }
        }
    }
    for (i, e) in c.evpn.iter().enumerate() {
        if let Some(j) = c.evpn[..i].iter().position(|f| f.bridge == e.bridge) {
            return Err(src.error(&[Key("evpn"), Index(i), Key("bridge")], format!("EVPN instance for {:?} is defined twice (also evpn[{j}])", e.bridge)));
        }
        if let Some(other) = rds.insert(e.rd.to_string(), format!("evpn {:?}", e.bridge)) {
            return Err(src.error(&[Key("evpn"), Index(i), Key("rd")], format!("route distinguisher {} is already used by {other}", e.rd)));
        }
    }
    let l = &c.labels;
    if l.first < 16 || l.last > carrier_common::Label::MAX || l.first > l.last {
        return Err(src.error(&[Key("labels"), Key("first")], format!("the range {}..={} must lie within 16..={}", l.first, l.last, carrier_common::Label::MAX)));
    }
    if c.api.token.as_ref().is_some_and(|t| t.len() < 8) {
        return Err(src.error(&[Key("api"), Key("token")], "at least 8 characters"));
    }
    if c.api.poll_ms < 100 {
        return Err(src.error(&[Key("api"), Key("poll_ms")], "at least 100"));
    }
    Ok(())
}

/// The checks against the dataplane's tables: every VRF and bridge named exists there, and
/// the label range does not overlap the dataplane config's own labels.
pub fn check_against(c: &ControlConfig, src: &Source<'_>, tables: &Tables) -> Result<(), ConfigError> {
    use Step::{Index, Key};
    for (i, v) in c.vrfs.iter().enumerate() {
        if tables.vrf_by_name(&v.name).is_none() {
            return Err(src.error(&[Key("vrf"), Index(i), Key("name")], format!("VRF {:?} is not defined in the dataplane config", v.name)));
        }
    }
    for (i, e) in c.evpn.iter().enumerate() {
        if !tables.bridges.iter().any(|b| b.name == e.bridge) {
            return Err(src.error(&[Key("evpn"), Index(i), Key("bridge")], format!("bridge {:?} is not defined in the dataplane config", e.bridge)));
        }
    }
    let range = c.labels.first..=c.labels.last;
    if let Some(l) = tables.ilm.keys().map(|l| l.value()).filter(|l| range.contains(l)).min() {
        return Err(src.error(&[Key("labels"), Key("first")], format!("the range {}..={} overlaps label {l} of the dataplane config", c.labels.first, c.labels.last)));
    }
    Ok(())
}

//! The FIF container: tags, the tag directory and the block tree.
//!
//! A FIF file is a sequence of tags, each a 16-byte big-endian header (kind, type, size, next)
//! followed by `size` bytes. Blocks are delimited by BLOCK_START/BLOCK_END tags. Files usually
//! carry a directory (pointed to by the second tag); when it is missing or broken we scan the
//! tags, as MNE's `fiff_open` does. Everything here checks sizes against the file length so a
//! lying header gives an error, never an out-of-bounds read or a huge allocation.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::formats::io;

pub const FORMAT: &str = "FIF";

/// Tag kinds, block kinds and data types we use (values from MNE's `constants.py`).
pub mod k {
    pub const FILE_ID: i32 = 100;
    pub const DIR_POINTER: i32 = 101;
    pub const DIR: i32 = 102;
    pub const BLOCK_ID: i32 = 103;
    pub const BLOCK_START: i32 = 104;
    pub const BLOCK_END: i32 = 105;
    pub const NOP: i32 = 108;
    pub const PARENT_FILE_ID: i32 = 109;
    pub const PARENT_BLOCK_ID: i32 = 110;
    pub const REF_ROLE: i32 = 115;
    pub const REF_FILE_ID: i32 = 116;
    pub const REF_FILE_NUM: i32 = 117;
    pub const REF_FILE_NAME: i32 = 118;
    pub const NCHAN: i32 = 200;
    pub const SFREQ: i32 = 201;
    pub const CH_INFO: i32 = 203;
    pub const MEAS_DATE: i32 = 204;
    pub const COMMENT: i32 = 206;
    pub const FIRST_SAMPLE: i32 = 208;
    pub const LOWPASS: i32 = 219;
    pub const HIGHPASS: i32 = 223;
    pub const NAME: i32 = 233;
    pub const LINE_FREQ: i32 = 235;
    pub const CH_DACQ_NAME: i32 = 258;
    pub const DATA_BUFFER: i32 = 300;
    pub const DATA_SKIP: i32 = 301;
    pub const PROJ_ITEM_KIND: i32 = 3411;
    pub const PROJ_ITEM_NVEC: i32 = 3414;
    pub const PROJ_ITEM_VECTORS: i32 = 3415;
    pub const PROJ_ITEM_CH_NAME_LIST: i32 = 3417;
    pub const MNE_CH_NAME_LIST: i32 = 3507;
    pub const MNE_PROJ_ITEM_ACTIVE: i32 = 3560;
    pub const MNE_BASELINE_MIN: i32 = 3568;
    pub const MNE_BASELINE_MAX: i32 = 3569;
    pub const MNE_CTF_COMP_KIND: i32 = 3580;

    pub const B_MEAS: i32 = 100;
    pub const B_MEAS_INFO: i32 = 101;
    pub const B_RAW_DATA: i32 = 102;
    pub const B_CONTINUOUS_DATA: i32 = 112;
    pub const B_CH_INFO: i32 = 113;
    pub const B_REF: i32 = 118;
    pub const B_IAS_RAW_DATA: i32 = 119;
    pub const B_PROJ: i32 = 313;
    pub const B_PROJ_ITEM: i32 = 314;
    pub const B_MNE_BAD_CHANNELS: i32 = 359;
    pub const B_MNE_CTF_COMP_DATA: i32 = 371;
    pub const B_MNE_ANNOTATIONS: i32 = 3810;

    pub const T_SHORT: i32 = 2;
    pub const T_INT: i32 = 3;
    pub const T_FLOAT: i32 = 4;
    pub const T_DOUBLE: i32 = 5;
    pub const T_STRING: i32 = 10;
    pub const T_DAU_PACK16: i32 = 16;
    pub const T_CH_INFO_STRUCT: i32 = 30;
    pub const T_ID_STRUCT: i32 = 31;
    pub const T_DIR_ENTRY_STRUCT: i32 = 32;
    pub const T_MATRIX: i32 = 0x4000_0000;

    pub const ROLE_NEXT_FILE: i32 = 2;
}

/// Where the bytes come from: a file read with positioned reads, or memory (a `.fif.gz`
/// decompressed once; MNE does the same for gzipped files).
#[derive(Clone)]
pub enum Source {
    File(Arc<File>),
    Memory(Arc<Vec<u8>>),
}

impl Source {
    /// Opens `path`; `.gz` files are inflated into memory.
    pub fn open(path: &Path) -> Result<Source> {
        let file = io::open_file(path)?;
        let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        if !gz {
            return Ok(Source::File(Arc::new(file)));
        }
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::format(path, FORMAT, format!("gzip stream is broken: {e}")))?;
        Ok(Source::Memory(Arc::new(bytes)))
    }

    pub fn len(&self, path: &Path) -> Result<u64> {
        match self {
            Source::File(f) => io::file_len(f, path),
            Source::Memory(m) => Ok(m.len() as u64),
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
        match self {
            Source::File(f) => io::read_exact_at(f, path, FORMAT, buf, offset),
            Source::Memory(m) => {
                let start = usize::try_from(offset).ok().filter(|&s| s <= m.len());
                match start.and_then(|s| m.get(s..s + buf.len())) {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(Error::format(
                        path,
                        FORMAT,
                        format!("file is truncated: {} bytes expected at offset {offset}", buf.len()),
                    )),
                }
            }
        }
    }
}

/// One directory entry: a tag's header and where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub kind: i32,
    pub typ: i32,
    pub size: i32,
    pub pos: u64,
}

/// A block of the tree: its kind, the tags directly inside it, and its sub-blocks.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub block: i32,
    pub entries: Vec<DirEntry>,
    pub children: Vec<Node>,
}

impl Node {
    /// All blocks of `kind` at any depth (MNE's `dir_tree_find`), this one included.
    pub fn find(&self, kind: i32) -> Vec<&Node> {
        let mut out = Vec::new();
        self.collect(kind, &mut out);
        out
    }
    fn collect<'a>(&'a self, kind: i32, out: &mut Vec<&'a Node>) {
        if self.block == kind {
            out.push(self);
        }
        for c in &self.children {
            c.collect(kind, out);
        }
    }
    /// The first tag of `kind` directly in this block.
    pub fn entry(&self, kind: i32) -> Option<&DirEntry> {
        self.entries.iter().find(|e| e.kind == kind)
    }
}

/// An opened FIF file: its source, directory and block tree.
pub struct FifFile {
    pub path: PathBuf,
    pub source: Source,
    pub len: u64,
    pub tree: Node,
}

const HEADER: u64 = 16;

impl FifFile {
    pub fn open(path: &Path) -> Result<FifFile> {
        let source = Source::open(path)?;
        let len = source.len(path)?;
        if len == 0 {
            return Err(Error::format(path, FORMAT, "file is empty"));
        }
        let mut f = FifFile { path: path.to_path_buf(), source, len, tree: Node::default() };
        let first = f.read_header(0)?;
        if first.kind != k::FILE_ID || first.typ != k::T_ID_STRUCT || first.size != 20 {
            return Err(Error::format(
                path,
                FORMAT,
                format!(
                    "not a FIF file: it must start with a file id tag (kind 100, type 31, size 20), \
                     found kind {} type {} size {}",
                    first.kind, first.typ, first.size
                ),
            ));
        }
        let directory = f.read_directory()?;
        f.tree = build_tree(&f, &directory)?;
        Ok(f)
    }

    pub fn format_error(&self, what: impl Into<String>) -> Error {
        Error::format(&self.path, FORMAT, what)
    }

    /// Reads the tag header at `pos` and checks that its data lies inside the file.
    pub fn read_header(&self, pos: u64) -> Result<DirEntry> {
        let mut h = [0u8; 16];
        if pos + HEADER > self.len {
            return Err(self.format_error(format!("tag header at byte {pos} runs past the end of the file ({} bytes)", self.len)));
        }
        self.source.read_at(&self.path, &mut h, pos)?;
        let kind = be_i32(&h[0..4]);
        let typ = be_i32(&h[4..8]);
        let size = be_i32(&h[8..12]);
        let entry = DirEntry { kind, typ, size, pos };
        self.check_entry(&entry)?;
        Ok(entry)
    }

    fn check_entry(&self, e: &DirEntry) -> Result<()> {
        if e.size < 0 || e.pos + HEADER + e.size as u64 > self.len {
            return Err(self.format_error(format!(
                "tag (kind {}) at byte {} claims {} data bytes, past the end of the file ({} bytes)",
                e.kind, e.pos, e.size, self.len
            )));
        }
        Ok(())
    }

    /// The tag directory: from the directory tag when the file has a valid one, otherwise by
    /// scanning every tag from the start (files written without a directory, or truncated).
    fn read_directory(&self) -> Result<Vec<DirEntry>> {
        let ptr = self.read_header(HEADER + 20)?;
        if ptr.kind != k::DIR_POINTER {
            return Err(self.format_error(format!("second tag must be a directory pointer (kind 101), found kind {}", ptr.kind)));
        }
        let dirpos = self.read_i32_tag(&ptr)?;
        if dirpos > 0 {
            if let Ok(dir) = self.read_directory_tag(dirpos as u64) {
                return Ok(dir);
            }
            tracing::warn!("{}: directory at byte {dirpos} is unreadable; scanning the tags instead", self.path.display());
        }
        self.scan_directory()
    }

    fn read_directory_tag(&self, pos: u64) -> Result<Vec<DirEntry>> {
        let tag = self.read_header(pos)?;
        if tag.kind != k::DIR || tag.size % 16 != 0 {
            return Err(self.format_error(format!("no valid directory tag at byte {pos}")));
        }
        let bytes = self.read_data(&tag)?;
        let entries: Vec<DirEntry> = bytes
            .chunks_exact(16)
            .map(|c| DirEntry { kind: be_i32(&c[0..4]), typ: be_i32(&c[4..8]), size: be_i32(&c[8..12]), pos: be_i32(&c[12..16]) as u32 as u64 })
            // Writers pad the directory with (-1, -1, -1, -1) slots; MNE skips them too.
            .filter(|e| !(e.kind == -1 && e.size == -1))
            .collect();
        for e in &entries {
            self.check_entry(e)?;
        }
        Ok(entries)
    }

    fn scan_directory(&self) -> Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        let mut visited = std::collections::HashSet::new();
        let mut pos = 0u64;
        while pos < self.len {
            if !visited.insert(pos) {
                return Err(self.format_error(format!("tag chain loops back to byte {pos}")));
            }
            let mut h = [0u8; 16];
            if pos + HEADER > self.len {
                return Err(self.format_error(format!("file is truncated: partial tag header at byte {pos}")));
            }
            self.source.read_at(&self.path, &mut h, pos)?;
            let e = DirEntry { kind: be_i32(&h[0..4]), typ: be_i32(&h[4..8]), size: be_i32(&h[8..12]), pos };
            self.check_entry(&e)?;
            entries.push(e);
            let next = be_i32(&h[12..16]);
            pos = match next {
                0 => pos + HEADER + e.size as u64,
                -1 => break,
                n if n > 0 => n as u64,
                n => return Err(self.format_error(format!("tag at byte {pos} has an invalid next-tag pointer {n}"))),
            };
        }
        Ok(entries)
    }

    /// A tag's data bytes.
    pub fn read_data(&self, e: &DirEntry) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; e.size as usize];
        self.source.read_at(&self.path, &mut buf, e.pos + HEADER)?;
        Ok(buf)
    }

    fn expect_type(&self, e: &DirEntry, types: &[i32], what: &str) -> Result<()> {
        if types.contains(&e.typ) {
            Ok(())
        } else {
            Err(self.format_error(format!("tag {} ({what}) at byte {} has data type {}, expected {:?}", e.kind, e.pos, e.typ, types)))
        }
    }

    pub fn read_i32s(&self, e: &DirEntry) -> Result<Vec<i32>> {
        self.expect_type(e, &[k::T_INT], "integers")?;
        Ok(self.read_data(e)?.chunks_exact(4).map(be_i32).collect())
    }

    pub fn read_i32_tag(&self, e: &DirEntry) -> Result<i32> {
        self.read_i32s(e)?
            .first()
            .copied()
            .ok_or_else(|| self.format_error(format!("tag {} at byte {} holds no integer", e.kind, e.pos)))
    }

    /// A float or double scalar, as f64.
    pub fn read_f64_tag(&self, e: &DirEntry) -> Result<f64> {
        self.expect_type(e, &[k::T_FLOAT, k::T_DOUBLE], "a number")?;
        let d = self.read_data(e)?;
        match (e.typ, d.len()) {
            (k::T_FLOAT, n) if n >= 4 => Ok(f32::from_bits(be_u32(&d[0..4])) as f64),
            (k::T_DOUBLE, n) if n >= 8 => Ok(f64::from_bits(be_u64(&d[0..8]))),
            _ => Err(self.format_error(format!("tag {} at byte {} is too short for a number", e.kind, e.pos))),
        }
    }

    /// Float or double arrays as f64.
    pub fn read_f64s(&self, e: &DirEntry) -> Result<Vec<f64>> {
        self.expect_type(e, &[k::T_FLOAT, k::T_DOUBLE], "numbers")?;
        let d = self.read_data(e)?;
        Ok(match e.typ {
            k::T_FLOAT => d.chunks_exact(4).map(|c| f32::from_bits(be_u32(c)) as f64).collect(),
            _ => d.chunks_exact(8).map(|c| f64::from_bits(be_u64(c))).collect(),
        })
    }

    /// A string tag. Invalid UTF-8 is an error that names the tag (MNE would raise too).
    pub fn read_string(&self, e: &DirEntry) -> Result<String> {
        self.expect_type(e, &[k::T_STRING], "text")?;
        let d = self.read_data(e)?;
        let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
        String::from_utf8(d[..end].to_vec())
            .map_err(|_| self.format_error(format!("text tag {} at byte {} is not valid UTF-8", e.kind, e.pos)))
    }

    /// A dense float matrix (`FIFFT_MATRIX | FIFFT_FLOAT/DOUBLE`): rows of f64.
    pub fn read_matrix(&self, e: &DirEntry) -> Result<Vec<Vec<f64>>> {
        let base = e.typ & !k::T_MATRIX;
        if e.typ & k::T_MATRIX == 0 || !(base == k::T_FLOAT || base == k::T_DOUBLE) {
            return Err(self.format_error(format!("tag {} at byte {} is not a dense float matrix (type {:#x})", e.kind, e.pos, e.typ)));
        }
        let d = self.read_data(e)?;
        let bad = || self.format_error(format!("matrix tag {} at byte {} has inconsistent dimensions", e.kind, e.pos));
        if d.len() < 12 {
            return Err(bad());
        }
        let ndim = be_i32(&d[d.len() - 4..]);
        if ndim != 2 {
            return Err(bad());
        }
        // Dimensions are stored last, in reverse order: [ncol, nrow, ndim].
        let ncol = be_i32(&d[d.len() - 12..d.len() - 8]);
        let nrow = be_i32(&d[d.len() - 8..d.len() - 4]);
        let width = if base == k::T_FLOAT { 4 } else { 8 };
        // Checked: two lying i32 dimensions times 8 bytes overflow usize (found by fuzzing:
        // a panic with overflow checks on, a wrapped product that may pass this test without).
        let bytes = (nrow as usize).checked_mul(ncol as usize).and_then(|n| n.checked_mul(width));
        if nrow < 0 || ncol < 0 || bytes != Some(d.len() - 12) {
            return Err(bad());
        }
        let values: Vec<f64> = if base == k::T_FLOAT {
            d[..d.len() - 12].chunks_exact(4).map(|c| f32::from_bits(be_u32(c)) as f64).collect()
        } else {
            d[..d.len() - 12].chunks_exact(8).map(|c| f64::from_bits(be_u64(c))).collect()
        };
        Ok(values.chunks(ncol.max(1) as usize).take(nrow as usize).map(|r| r.to_vec()).collect())
    }
}

/// Builds the block tree from the flat directory; unbalanced blocks are a format error.
fn build_tree(f: &FifFile, dir: &[DirEntry]) -> Result<Node> {
    let path = &f.path;
    let mut stack = vec![Node { block: 999, ..Node::default() }];
    for e in dir {
        match e.kind {
            k::BLOCK_START => stack.push(Node { block: f.read_i32_tag(e)?, ..Node::default() }),
            k::BLOCK_END => {
                if stack.len() < 2 {
                    return Err(Error::format(path, FORMAT, format!("block end at byte {} without a block start", e.pos)));
                }
                let node = stack.pop().expect("checked above");
                stack.last_mut().expect("checked above").children.push(node);
            }
            _ => stack.last_mut().expect("root stays").entries.push(*e),
        }
    }
    // A file cut short leaves open blocks; close them so what was read stays usable
    // (MNE tolerates this too), the data readers check their own sizes.
    while stack.len() > 1 {
        let node = stack.pop().expect("len > 1");
        stack.last_mut().expect("len > 0").children.push(node);
    }
    Ok(stack.pop().expect("root"))
}

pub fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

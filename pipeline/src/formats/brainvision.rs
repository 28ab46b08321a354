//! BrainVision reader (`.vhdr` header + binary `.eeg` data + `.vmrk` markers) that reproduces
//! MNE-Python's `read_raw_brainvision` with default arguments (`mne/io/brainvision/brainvision.py`),
//! streaming only the bytes of the requested samples through positioned reads.
//!
//! What we reproduce: the header's `Codepage` (UTF-8 by default, `ANSI` = cp1252, Latin-1 when
//! decoding fails), its INI grammar (Python `configparser`: case-insensitive keys, `=`/`:`,
//! `#`/`;` comments, continuation lines), INT_16 / INT_32 / IEEE_FLOAT_32 samples, MULTIPLEXED
//! and VECTORIZED orientation, value = stored · resolution · unit scale (µV/uV 1e-6, mV 1e-3,
//! nV 1e-9, …), channel kinds (EOG for HEOGL/HEOGR/VEOGb, misc for non-voltage units or zero
//! coordinates, stim for `STI 014`, else EEG), the filter settings of the `[Comment]` block,
//! marker descriptions `"<type>/<description>"` with the first `New Segment` marker giving the
//! measurement date, and `set_annotations`' sort/crop/µs rounding.
//!
//! Stricter than MNE (it warns, we refuse with an error naming the file): a first line that is
//! not a BrainVision version line, a data file whose size is not a whole number of samples ×
//! channels, ASCII data (MNE reads it; we do not, yet).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::formats::edf::mne_set_annotations;
use crate::formats::io::{file_len, open_file, read_exact_at};
use crate::recording::{unit_code, Annotation, ChannelInfo, ChannelKind, MeasDate, ReadSamples, RecordingInfo, Sample, Unit};

const FMT: &str = "BrainVision";
const FIFFV_EEG_CH: i32 = 2;
const FIFFV_STIM_CH: i32 = 3;
const FIFFV_EOG_CH: i32 = 202;
const FIFFV_MISC_CH: i32 = 502;
const FIFFV_COIL_EEG: i32 = 1;
/// MNE's default `eog` argument.
const DEFAULT_EOG: [&str; 3] = ["HEOGL", "HEOGR", "VEOGb"];
/// MNE's `HEAD_SIZE_DEFAULT` (m): idealized coordinates (radius 1) are scaled to it.
const HEAD_SIZE_DEFAULT: f64 = 0.095;
const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryFormat {
    Int16,
    Int32,
    Float32,
}

impl BinaryFormat {
    fn bytes(self) -> usize {
        match self {
            BinaryFormat::Int16 => 2,
            _ => 4,
        }
    }
    #[inline]
    fn decode(self, b: &[u8]) -> f64 {
        match self {
            BinaryFormat::Int16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            BinaryFormat::Int32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            BinaryFormat::Float32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Orientation {
    /// Sample-major: ch1 pt1, ch2 pt1, …
    Multiplexed,
    /// Channel-major: all of ch1, then all of ch2, …
    Vectorized,
}

/// A streaming BrainVision reader; see the module docs.
pub struct BrainVisionReader {
    file: File,
    data_path: PathBuf,
    info: RecordingInfo,
    format: BinaryFormat,
    orientation: Orientation,
    /// `range · cal` per channel, the factor MNE multiplies stored values by.
    factors: Vec<f64>,
}

/// One parsed INI section: name and `(lower-cased key, value)` in file order.
type Section = (String, Vec<(String, String)>);

impl BrainVisionReader {
    /// Opens a `.vhdr` header and the data and marker files it names (relative to it).
    pub fn open(path: &Path) -> Result<BrainVisionReader> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.is_empty() {
            return Err(Error::format(path, FMT, "header file is empty"));
        }
        let (first, rest) = split_first_line(&bytes);
        check_version(path, first, "Header")?;
        let text = decode_codepage(path, rest)?;
        let (params, comment) = match text.find("[Comment]") {
            Some(i) => (&text[..i], &text[i + "[Comment]".len()..]),
            None => (&text[..], ""),
        };
        let sections = parse_ini(path, params)?;
        let common = section(&sections, "Common Infos").or_else(|| section(&sections, "Common infos"));
        let common = common.ok_or_else(|| Error::format(path, FMT, "header has no [Common Infos] section"))?;
        let get = |key: &str| get_key(common, key);
        let need = |key: &str| get(key).ok_or_else(|| Error::format(path, FMT, format!("[Common Infos] has no {key}")));

        let orientation = match need("DataOrientation")? {
            "MULTIPLEXED" => Orientation::Multiplexed,
            "VECTORIZED" => Orientation::Vectorized,
            other => return Err(Error::unsupported(path, FMT, format!("DataOrientation {other:?}"))),
        };
        let format = match need("DataFormat")? {
            "BINARY" => {
                let binary = section(&sections, "Binary Infos")
                    .and_then(|s| get_key(s, "BinaryFormat"))
                    .ok_or_else(|| Error::format(path, FMT, "[Binary Infos] has no BinaryFormat"))?;
                match binary {
                    "INT_16" => BinaryFormat::Int16,
                    "INT_32" => BinaryFormat::Int32,
                    "IEEE_FLOAT_32" => BinaryFormat::Float32,
                    other => return Err(Error::unsupported(path, FMT, format!("BinaryFormat {other:?}"))),
                }
            }
            other => return Err(Error::unsupported(path, FMT, format!("DataFormat {other:?} (only BINARY is read)"))),
        };
        let interval: f64 = parse_num(path, "SamplingInterval", need("SamplingInterval")?)?;
        if !(interval.is_finite() && interval > 0.0) {
            return Err(Error::format(path, FMT, format!("SamplingInterval {interval} is not positive")));
        }
        let sfreq = 1e6 / interval;
        let nchan: i64 = parse_num(path, "NumberOfChannels", need("NumberOfChannels")?)?;
        if nchan <= 0 {
            return Err(Error::format(path, FMT, format!("NumberOfChannels is {nchan}")));
        }
        let nchan = nchan as usize;
        let dir = path.parent().unwrap_or(Path::new(""));
        let data_path = dir.join(need("DataFile")?);
        let marker_path = marker_path(path, dir, get("MarkerFile"));

        let mut chans = channel_infos(path, &sections, nchan)?;
        apply_coordinates(path, &sections, &mut chans)?;
        let channels = build_channels(&chans);
        let factors = chans.iter().map(|c| c.range * c.cal).collect();

        let file = open_file(&data_path)?;
        let size = file_len(&file, &data_path)?;
        let frame = (format.bytes() * nchan) as u64;
        if size % frame != 0 {
            return Err(Error::format(
                &data_path,
                FMT,
                format!("{size} bytes are not a whole number of samples of {nchan} channels × {} bytes", format.bytes()),
            ));
        }
        let n_samples = (size / frame) as usize;
        let (highpass, lowpass) = filter_settings(comment, &chans, sfreq).unwrap_or((0.0, sfreq / 2.0));

        let mut info = RecordingInfo {
            path: path.to_path_buf(),
            format: "brainvision",
            sfreq,
            n_samples,
            first_samp: 0,
            meas_date: None,
            channels,
            bads: Vec::new(),
            annotations: Vec::new(),
            projs: Vec::new(),
            comp_grade: 0,
            highpass: Some(highpass),
            lowpass: Some(lowpass),
            line_freq: None,
            discontinuous: false,
            chpi: None,
        };
        if let Some(mrk) = marker_path {
            let (meas, annotations) = read_markers(&mrk, sfreq, n_samples)?;
            info.meas_date = meas;
            info.annotations = annotations;
        }
        Ok(BrainVisionReader { file, data_path, info, format, orientation, factors })
    }

    /// Reads `bytes` at `offset` of the data file in chunks of whole `unit`-byte pieces.
    fn read_span(&self, offset: u64, total: usize, unit: usize, mut f: impl FnMut(usize, &[u8])) -> Result<()> {
        let per = (READ_CHUNK_BYTES / unit).max(1) * unit;
        let mut buf = Vec::new();
        let mut done = 0;
        while done < total {
            let n = per.min(total - done);
            buf.resize(n, 0);
            read_exact_at(&self.file, &self.data_path, FMT, &mut buf, offset + done as u64)?;
            f(done / unit, &buf);
            done += n;
        }
        Ok(())
    }

    fn read_rows(&self, picks: &[usize], start: usize, stop: usize, mut put: impl FnMut(usize, usize, f64)) -> Result<()> {
        let len = stop - start;
        if len == 0 || picks.is_empty() {
            return Ok(());
        }
        let bps = self.format.bytes();
        let nch = self.info.n_channels();
        match self.orientation {
            Orientation::Multiplexed => {
                let frame = nch * bps;
                self.read_span((start * frame) as u64, len * frame, frame, |t0, buf| {
                    for (dt, sample) in buf.chunks_exact(frame).enumerate() {
                        for (row, &ch) in picks.iter().enumerate() {
                            let v = self.format.decode(&sample[ch * bps..]) * self.factors[ch];
                            put(row, t0 + dt, v);
                        }
                    }
                })
            }
            Orientation::Vectorized => {
                for (row, &ch) in picks.iter().enumerate() {
                    let offset = ((ch * self.info.n_samples + start) * bps) as u64;
                    self.read_span(offset, len * bps, bps, |t0, buf| {
                        for (dt, b) in buf.chunks_exact(bps).enumerate() {
                            put(row, t0 + dt, self.format.decode(b) * self.factors[ch]);
                        }
                    })?;
                }
                Ok(())
            }
        }
    }
}

impl ReadSamples for BrainVisionReader {
    fn recording(&self) -> &RecordingInfo {
        &self.info
    }
    fn read_samples<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.info.check_request(picks, start, stop, out.len())?;
        let len = stop - start;
        self.read_rows(picks, start, stop, |row, t, v| out[row * len + t] = T::from_f64(v))
    }
    fn holds_stored_samples(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------
// Text: version line, code page, INI grammar
// ---------------------------------------------------------------------------------------

fn split_first_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// MNE's `_check_bv_version`: `Brain ?Vision( Core| V-Amp)? Data( Exchange)? <Kind> File,?
/// Version [12].0` anywhere in the (ASCII) first line. MNE only warns; we refuse.
fn check_version(path: &Path, line: &[u8], kind: &str) -> Result<()> {
    let line: String = line.iter().filter(|b| b.is_ascii()).map(|&b| char::from(b)).collect();
    let line = line.trim();
    let ok = (0..line.len()).any(|i| version_at(&line[i..], kind));
    if ok {
        Ok(())
    } else {
        Err(Error::format(
            path,
            FMT,
            format!("first line {line:?} is not a BrainVision {} version line (Version 1.0 or 2.0)", kind.to_lowercase()),
        ))
    }
}

fn version_at(s: &str, kind: &str) -> bool {
    let mut s = match s.strip_prefix("Brain") {
        Some(r) => r,
        None => return false,
    };
    s = s.strip_prefix(' ').unwrap_or(s);
    let Some(r) = s.strip_prefix("Vision") else { return false };
    s = r;
    s = s.strip_prefix(" Core").or_else(|| s.strip_prefix(" V-Amp")).unwrap_or(s);
    let Some(r) = s.strip_prefix(" Data") else { return false };
    s = r;
    s = s.strip_prefix(" Exchange").unwrap_or(s);
    let Some(r) = s.strip_prefix(&format!(" {kind} File")) else { return false };
    s = r;
    s = s.strip_prefix(',').unwrap_or(s);
    let Some(r) = s.strip_prefix(" Version ") else { return false };
    r.starts_with("1.0") || r.starts_with("2.0")
}

/// MNE's decoding: the `Codepage=` value (case-sensitive key, searched in the ASCII view),
/// UTF-8 by default, `ANSI` as cp1252; bytes that do not decode fall back to Latin-1.
fn decode_codepage(path: &Path, bytes: &[u8]) -> Result<String> {
    let ascii: String = bytes.iter().filter(|b| b.is_ascii()).map(|&b| char::from(b)).collect();
    let mut codepage = "utf-8".to_string();
    if let Some(i) = ascii.find("Codepage=") {
        let rest = &ascii[i + "Codepage=".len()..];
        let value = rest.split('\n').next().unwrap_or("").trim();
        if !value.is_empty() {
            codepage = value.to_string();
        }
    }
    if codepage == "ANSI" {
        codepage = "cp1252".into();
    }
    let label = match codepage.to_lowercase().as_str() {
        "cp1252" | "windows-1252" => "windows-1252".to_string(),
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" => return Ok(crate::formats::edf::latin1(bytes)),
        other => other.to_string(),
    };
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())
        .ok_or_else(|| Error::unsupported(path, FMT, format!("Codepage {codepage:?}")))?;
    match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Ok(text.into_owned()),
        None => Ok(crate::formats::edf::latin1(bytes)),
    }
}

/// Python's `str.splitlines()` line boundaries.
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let is_break = matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if is_break {
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = iter.peek() {
                    iter.next();
                    next = j + 1;
                }
            }
            start = next;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The subset of Python's `configparser` (strict, no interpolation) BrainVision headers use.
fn parse_ini(path: &Path, text: &str) -> Result<Vec<Section>> {
    let mut sections: Vec<Section> = Vec::new();
    let mut indent_level = 0usize;
    let mut has_option = false;
    for (lineno, line) in text.split('\n').enumerate() {
        let stripped = line.trim();
        let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
        if stripped.is_empty() || is_comment {
            if !(stripped.is_empty() && !is_comment && has_option) {
                indent_level = usize::MAX;
            } else if let Some((_, opts)) = sections.last_mut() {
                if let Some(last) = opts.last_mut() {
                    last.1.push('\n'); // a blank line inside a multi-line value
                }
            }
            continue;
        }
        let cur_indent = line.len() - line.trim_start().len();
        if has_option && cur_indent > indent_level {
            if let Some(last) = sections.last_mut().and_then(|s| s.1.last_mut()) {
                last.1.push('\n');
                last.1.push_str(stripped);
            }
            continue;
        }
        indent_level = cur_indent;
        let bad = |what: String| Error::format(path, FMT, format!("header line {}: {what}", lineno + 2));
        if let (true, Some(end)) = (stripped.starts_with('['), stripped.rfind(']')) {
            let name = stripped[1..end].to_string();
            if end > 1 {
                if sections.iter().any(|(n, _)| *n == name) {
                    return Err(bad(format!("section [{name}] appears twice")));
                }
                sections.push((name, Vec::new()));
                has_option = false;
                continue;
            }
        }
        let Some((_, opts)) = sections.last_mut() else {
            return Err(bad(format!("{stripped:?} comes before any [section]")));
        };
        let Some(pos) = stripped.find(['=', ':']) else {
            return Err(bad(format!("{stripped:?} is neither a [section] nor a key=value line")));
        };
        let key = stripped[..pos].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(bad(format!("{stripped:?} has an empty key")));
        }
        if opts.iter().any(|(k, _)| *k == key) {
            return Err(bad(format!("key {key:?} appears twice in its section")));
        }
        opts.push((key, stripped[pos + 1..].trim().to_string()));
        has_option = true;
    }
    // configparser drops the trailing blank lines of multi-line values.
    for (_, opts) in &mut sections {
        for (_, v) in opts.iter_mut() {
            let trimmed = v.trim_end_matches('\n').len();
            v.truncate(trimmed);
        }
    }
    Ok(sections)
}

fn section<'a>(sections: &'a [Section], name: &str) -> Option<&'a [(String, String)]> {
    sections.iter().find(|(n, _)| n == name).map(|(_, o)| o.as_slice())
}

fn get_key<'a>(opts: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let key = key.to_lowercase();
    opts.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

fn parse_num<T: std::str::FromStr>(path: &Path, what: &str, s: &str) -> Result<T> {
    s.trim().parse::<T>().map_err(|_| Error::format(path, FMT, format!("{what} {s:?} is not a number")))
}

/// MNE's marker file resolution: the header's MarkerFile, else the `.vmrk` beside the header
/// when the named one is missing, else no markers.
fn marker_path(hdr: &Path, dir: &Path, name: Option<&str>) -> Option<PathBuf> {
    let name = name.filter(|n| !n.is_empty())?;
    let named = dir.join(name);
    if named.is_file() {
        return Some(named);
    }
    let sibling = hdr.with_extension("vmrk");
    sibling.is_file().then_some(sibling)
}

// ---------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------

/// What `[Channel Infos]` (and `[Coordinates]`) say about one channel.
#[derive(Clone, Debug)]
struct BvChannel {
    key: String,
    name: String,
    cal: f64,
    range: f64,
    /// Set for non-voltage units: MNE makes these misc with this unit.
    misc_unit: Option<i32>,
    pos: Option<[f64; 3]>,
    zero_pos: bool,
}

/// MNE's `_unit_dict`: unit → scale to SI.
fn unit_scale(unit: &str) -> f64 {
    match unit {
        "V" => 1.0,
        "µV" | "uV" | "µS" | "uS" => 1e-6,
        "mV" => 1e-3,
        "nV" => 1e-9,
        _ => 1.0,
    }
}

fn channel_infos(path: &Path, sections: &[Section], nchan: usize) -> Result<Vec<BvChannel>> {
    let infos = section(sections, "Channel Infos").ok_or_else(|| Error::format(path, FMT, "header has no [Channel Infos] section"))?;
    let mut chans: Vec<Option<BvChannel>> = vec![None; nchan];
    for (key, value) in infos {
        let digits: String = key.strip_prefix("ch").unwrap_or("").chars().take_while(|c| c.is_ascii_digit()).collect();
        let n: usize = digits
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| Error::format(path, FMT, format!("[Channel Infos] key {key:?} is not Ch<number>")))?;
        if n > nchan {
            continue; // MNE drops entries past NumberOfChannels
        }
        let mut props: Vec<String> = value.split(',').map(str::to_string).collect();
        if props.len() < 4 {
            props.push("µV".into()); // older files have no unit: µV by the spec
        } else if props[3].is_empty() {
            props[3] = "µV".into();
        }
        if props.len() < 4 {
            return Err(Error::format(path, FMT, format!("[Channel Infos] {key}={value:?} needs name,ref,resolution")));
        }
        let name = props[0].replace("\\1", ",");
        let unit = props[3].replace('\u{c2}', "");
        let cal = if props[2].is_empty() {
            if unit.is_empty() { 1e-6 } else { 1.0 }
        } else {
            parse_num(path, &format!("resolution of {key}"), &props[2])?
        };
        let misc_unit = (!["V", "mV", "µV", "uV", "nV"].contains(&unit.as_str()))
            .then_some(if unit == "C" { unit_code::CEL } else { unit_code::NONE });
        chans[n - 1] = Some(BvChannel { key: key.clone(), name, cal, range: unit_scale(&unit), misc_unit, pos: None, zero_pos: false });
    }
    chans
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.ok_or_else(|| Error::format(path, FMT, format!("[Channel Infos] has no entry Ch{}", i + 1))))
        .collect()
}

/// `[Coordinates]`: radius, theta, phi (degrees, mm; radius 1 = idealized head) → positions in
/// metres as MNE's montage; channels at the origin become misc, as MNE warns.
fn apply_coordinates(path: &Path, sections: &[Section], chans: &mut [BvChannel]) -> Result<()> {
    let Some(coords) = section(sections, "Coordinates") else { return Ok(()) };
    for (key, value) in coords {
        let ch = chans
            .iter_mut()
            .find(|c| c.key == *key)
            .ok_or_else(|| Error::format(path, FMT, format!("[Coordinates] names unknown channel {key:?}")))?;
        let parts: Vec<&str> = value.split(',').collect();
        if parts.len() != 3 {
            return Err(Error::format(path, FMT, format!("[Coordinates] {key}={value:?} needs radius,theta,phi")));
        }
        let mut rad: f64 = parse_num(path, "coordinate", parts[0])?;
        let theta: f64 = parse_num(path, "coordinate", parts[1])?;
        let phi: f64 = parse_num(path, "coordinate", parts[2])?;
        if rad == 1.0 {
            rad *= HEAD_SIZE_DEFAULT * 1000.0;
        }
        let (pol, az) = (theta.to_radians(), phi.to_radians());
        let pos = [rad * az.cos() * pol.sin(), rad * az.sin() * pol.sin(), rad * pol.cos()];
        ch.zero_pos = pos.iter().all(|&v| v == 0.0);
        ch.pos = Some([pos[0] / 1e3, pos[1] / 1e3, pos[2] / 1e3]);
    }
    Ok(())
}

/// MNE's kind rules, in its order: EOG by name, misc (non-voltage unit or zero position),
/// `STI 014` stim, else EEG.
fn build_channels(chans: &[BvChannel]) -> Vec<ChannelInfo> {
    chans
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut ch = if DEFAULT_EOG.contains(&c.name.as_str()) {
                ChannelInfo::new(c.name.clone(), ChannelKind::Eog, FIFFV_EOG_CH, Unit::V)
            } else if c.misc_unit.is_some() || c.zero_pos {
                ChannelInfo::new(c.name.clone(), ChannelKind::Misc, FIFFV_MISC_CH, Unit(c.misc_unit.unwrap_or(unit_code::NONE)))
            } else if c.name == "STI 014" {
                ChannelInfo::new(c.name.clone(), ChannelKind::Stim, FIFFV_STIM_CH, Unit::NONE)
            } else {
                let mut e = ChannelInfo::new(c.name.clone(), ChannelKind::Eeg, FIFFV_EEG_CH, Unit::V);
                e.coil_type = FIFFV_COIL_EEG;
                e
            };
            ch.cal = c.cal;
            ch.range = c.range;
            ch.logno = i as i32 + 1;
            ch.scanno = i as i32 + 1;
            ch.loc = [f64::NAN; 12];
            if let (Some(p), ChannelKind::Eeg) = (c.pos, ch.kind) {
                ch.loc[..3].copy_from_slice(&p);
                ch.loc[3..6].fill(0.0);
            }
            ch
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Filter settings from the [Comment] block (MNE's `_get_hdr_info`, second half)
// ---------------------------------------------------------------------------------------

/// Python's `re.split(r"\s+", s)` (empty first/last items kept).
fn split_ws(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_ws = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if !in_ws {
                out.push(&s[start..i]);
                in_ws = true;
            }
        } else if in_ws {
            start = i;
            in_ws = false;
        }
    }
    out.push(if in_ws { "" } else { &s[start..] });
    out
}

/// Python's `re.split(r"\s\s+", s)`.
fn split_ws2(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() && i + 1 < chars.len() && chars[i + 1].is_whitespace() {
            out.push(std::mem::take(&mut cur));
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
        } else {
            cur.push(chars[i]);
            i += 1;
        }
    }
    out.push(cur);
    out
}

/// `re.match(r"#\s+<word>", line)`.
fn starts_hash_ws(line: &str, word: &str) -> bool {
    line.strip_prefix('#').is_some_and(|r| {
        let t = r.trim_start();
        t.len() < r.len() && t.starts_with(word)
    })
}

/// MNE's highpass/lowpass from the amplifier (or software filter) table; None where MNE would
/// fail (then the caller keeps MNE's defaults 0 and Nyquist).
fn filter_settings(comment: &str, chans: &[BvChannel], sfreq: f64) -> Option<(f64, f64)> {
    let all = split_lines(comment);
    let mut settings: &[&str] = &all;
    let (mut hp_col, mut lp_col) = (4usize, 5usize);
    let mut idx: Option<usize> = None;
    if let Some(c) = settings.iter().position(|l| *l == "Channels") {
        settings = &settings[c + 1..];
        idx = settings.iter().position(|l| starts_hash_ws(l, "Name"));
    }
    let idx_amp = idx;
    let mut has_name = true;
    if let Some(s) = settings.iter().position(|l| *l == "S o f t w a r e  F i l t e r s") {
        if let Some(k) = settings[s + 1..].iter().position(|l| starts_hash_ws(l, "Low Cutoff")) {
            idx = Some(s + 1 + k);
            hp_col = 1;
            lp_col = 2;
            has_name = false;
        } else {
            idx = idx_amp;
        }
    }
    let idx = idx.filter(|&i| i > 0)?; // MNE tests `if idx:`, so 0 means none
    let header = split_ws2(settings[idx]);
    let hp_s = header.get(hp_col)?.contains("[s]");
    let lp_s = header.get(lp_col)?.contains("[s]");
    let shift = usize::from(settings[idx].contains("Resolution / Unit"));
    let mut highpass = Vec::new();
    let mut lowpass = Vec::new();
    for (i, ch) in chans.iter().enumerate().map(|(i, c)| (i + 1, &c.name)) {
        let amp = settings.get(idx_amp? + i)?;
        if !amp.contains(ch.as_str()) {
            return None;
        }
        let real_shift = if has_name { shift + split_ws(ch).len() - 1 } else { shift };
        let line = split_ws(settings.get(idx + i)?);
        highpass.push(line.get(hp_col + real_shift)?.to_string());
        lowpass.push(line.get(lp_col + real_shift)?.to_string());
    }
    let mut hp = 0.0;
    let mut lp = sfreq / 2.0;
    let same = |v: &[String]| v.iter().all(|x| *x == v[0]);
    let num = |s: &str| s.parse::<f64>().ok();
    let tau_to_hz = |t: f64| 1.0 / (2.0 * std::f64::consts::PI * t);
    if !highpass.is_empty() {
        if same(&highpass) {
            match highpass[0].as_str() {
                "NaN" | "Off" => {}
                "DC" => hp = 0.0,
                v => {
                    hp = num(v)?;
                    if hp_s {
                        hp = tau_to_hz(hp);
                    }
                }
            }
        } else {
            let disabled = |s: &str| matches!(s, "NaN" | "Off" | "DC");
            let vals: Option<Vec<f64>> = highpass
                .iter()
                .map(|s| if disabled(s) { Some(if hp_s { f64::INFINITY } else { 0.0 }) } else { num(s) })
                .collect();
            let vals = vals?;
            hp = if hp_s { tau_to_hz(vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max)) } else { vals.iter().cloned().fold(f64::INFINITY, f64::min) };
        }
    }
    if !lowpass.is_empty() {
        if same(&lowpass) {
            match lowpass[0].as_str() {
                "NaN" | "Off" | "0" => {}
                v => {
                    lp = num(v)?;
                    if lp_s {
                        lp = tau_to_hz(lp);
                    }
                }
            }
        } else {
            let disabled = |s: &str| matches!(s, "NaN" | "Off" | "0");
            let vals: Option<Vec<f64>> = lowpass
                .iter()
                .map(|s| if disabled(s) { Some(if lp_s { 0.0 } else { f64::INFINITY }) } else { num(s) })
                .collect();
            let vals = vals?;
            if lp_s {
                let m = vals.iter().cloned().fold(f64::INFINITY, f64::min);
                // Python raises ZeroDivisionError on 1/(2π·0.0): Nyquist when all are disabled.
                lp = if m == 0.0 { if same(&lowpass) { sfreq / 2.0 } else { m } } else { tau_to_hz(m) };
            } else {
                let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                lp = if m.is_infinite() { sfreq / 2.0 } else { m };
            }
        }
    }
    Some((hp, lp))
}

// ---------------------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------------------

/// One `Mk<n>=type,description,position,size[,channel[,date]]` line.
struct Marker {
    kind: String,
    description: String,
    onset: i64,
    duration: i64,
}

/// Reads the `.vmrk`: the measurement date (first `New Segment` with a 20-digit date) and the
/// annotations as MNE's `read_raw_brainvision` sets them.
fn read_markers(path: &Path, sfreq: f64, n_samples: usize) -> Result<(Option<MeasDate>, Vec<Annotation>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::format(path, FMT, "marker file is empty"));
    }
    let (first, _) = split_first_line(&bytes);
    check_version(path, first, "Marker")?;
    let text = decode_codepage(path, &bytes)?;
    let meas_date = text.lines().find_map(new_segment_date).flatten();
    let (markers, date_str) = parse_markers(path, &text)?;
    let orig_time = date_str.as_deref().and_then(parse_bv_date);
    let mut markers = markers.as_slice();
    if markers.first().is_some_and(|m| m.kind == "New Segment") {
        markers = &markers[1..];
    }
    // Onsets are relative to orig_time; set_annotations moves them onto meas_date.
    let shift = match (meas_date, orig_time) {
        (Some(m), Some(o)) => ((m.secs - o.secs) * 1_000_000 + (m.usecs - o.usecs)) as f64 / 1e6,
        _ => 0.0,
    };
    let list = markers
        .iter()
        .map(|m| Annotation {
            onset: m.onset as f64 / sfreq - shift,
            duration: m.duration as f64 / sfreq,
            description: format!("{}/{}", m.kind, m.description),
        })
        .collect();
    Ok((meas_date, mne_set_annotations(list, n_samples, sfreq)))
}

/// The header's regex `^Mk\d+=New Segment,.*,\d+,\d+,-?\d+,(\d{20})$` on one stripped line:
/// `Some(date)` when it matches (the date may still be None, e.g. all zeros).
fn new_segment_date(line: &str) -> Option<Option<MeasDate>> {
    let line = line.trim();
    let rest = line.strip_prefix("Mk")?;
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].strip_prefix("=New Segment,")?;
    let parts: Vec<&str> = rest.rsplitn(5, ',').collect();
    if parts.len() != 5 {
        return None;
    }
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let chan = parts[1].strip_prefix('-').unwrap_or(parts[1]);
    if parts[0].len() != 20 || !all_digits(parts[0]) || !all_digits(chan) || !all_digits(parts[2]) || !all_digits(parts[3]) {
        return None;
    }
    Some(parse_bv_date(parts[0]))
}

/// MNE's `_str_to_meas_date`: `%Y%m%d%H%M%S%f` (20 digits), None for "", "0" or all zeros.
fn parse_bv_date(s: &str) -> Option<MeasDate> {
    let s = s.trim();
    if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) || s.bytes().all(|b| b == b'0') {
        return None;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().ok();
    let (y, mo, d, h, mi, se, us) = (n(0, 4)?, n(4, 6)?, n(6, 8)?, n(8, 10)?, n(10, 12)?, n(12, 14)?, n(14, 20)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[(mo - 1) as usize] || h > 23 || mi > 59 || se > 59 || y < 1 {
        return None;
    }
    let secs = crate::formats::edf::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    Some(MeasDate { secs, usecs: us })
}

/// MNE's `_read_mrk`: every `Mk<n>=…` line after `[Marker Infos]` (case-insensitive), and the
/// date string of the first 5-field `New Segment` marker.
fn parse_markers(path: &Path, text: &str) -> Result<(Vec<Marker>, Option<String>)> {
    // ASCII lower-casing keeps byte offsets, so `at` indexes `text` too.
    let ascii_lower = text.to_ascii_lowercase();
    let Some(at) = ascii_lower.find("[marker infos]") else { return Ok((Vec::new(), None)) };
    let body = &text[at + "[marker infos]".len()..];
    let mut markers = Vec::new();
    let mut date_str = None;
    for line in body.split('\n') {
        let Some(rest) = line.strip_prefix("Mk") else { continue };
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let Some(info) = (digits > 0).then(|| rest[digits..].strip_prefix('=')).flatten() else { continue };
        let fields: Vec<&str> = info.split(',').collect();
        if fields.len() < 4 {
            return Err(Error::format(path, FMT, format!("marker {line:?} has fewer than 4 fields")));
        }
        let kind = fields[0].replace("\\1", ",");
        let description = fields[1].replace("\\1", ",");
        if date_str.as_deref().is_none_or(str::is_empty) && fields.len() == 5 && kind == "New Segment" {
            date_str = Some(fields[4].to_string());
        }
        let onset: i64 = fields[2]
            .trim()
            .parse()
            .map_err(|_| Error::format(path, FMT, format!("marker {line:?}: position {:?} is not an integer", fields[2])))?;
        let d = fields[3];
        let duration = if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) { d.parse().unwrap_or(0) } else { 0 };
        markers.push(Marker { kind, description, onset: onset - 1, duration });
    }
    Ok((markers, date_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RawReader;

    const VMRK: &str = "Brain Vision Data Exchange Marker File, Version 1.0\r\n\r\n[Marker Infos]\r\n\
Mk1=New Segment,,1,1,0,20240229235959000001\r\n\
Mk2=Stimulus,S  1,3,1,0\r\n\
Mk3=Comment,caf\u{e9} \\1 ok,2,0,0\r\n\
Mk4=Stimulus,late,99,1,0\r\n";

    fn header(binary: &str, orientation: &str, channels: &str) -> String {
        format!(
            "Brain Vision Data Exchange Header File Version 1.0\r\n; comment\r\n\r\n[Common Infos]\r\n\
             Codepage=Latin-1\r\nDataFile=x.eeg\r\nMarkerFile=x.vmrk\r\nDataFormat=BINARY\r\n\
             DataOrientation={orientation}\r\nNumberOfChannels=2\r\nSamplingInterval=2000\r\n\r\n\
             [Binary Infos]\r\nBinaryFormat={binary}\r\n\r\n[Channel Infos]\r\n{channels}"
        )
    }

    fn latin1_bytes(s: &str) -> Vec<u8> {
        s.chars().map(|c| c as u32 as u8).collect()
    }

    /// Writes x.vhdr (Latin-1), x.vmrk and x.eeg; returns the header path.
    fn write_set(dir: &tempfile::TempDir, vhdr: &str, eeg: &[u8]) -> PathBuf {
        std::fs::write(dir.path().join("x.vmrk"), latin1_bytes(VMRK)).unwrap();
        std::fs::write(dir.path().join("x.eeg"), eeg).unwrap();
        let p = dir.path().join("x.vhdr");
        std::fs::write(&p, latin1_bytes(vhdr)).unwrap();
        p
    }

    const CHANNELS: &str = "Ch1=Fp1,,0.5,\u{b5}V\r\nCh2=EMG\\1x,,2,mV\r\n";

    #[test]
    fn int16_multiplexed_latin1_markers() {
        let dir = tempfile::tempdir().unwrap();
        let samples: [[i16; 2]; 4] = [[1, -2], [3, 4], [-5, 6], [7, 8]];
        let eeg: Vec<u8> = samples.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        let p = write_set(&dir, &header("INT_16", "MULTIPLEXED", CHANNELS), &eeg);
        let r = BrainVisionReader::open(&p).unwrap();
        let info = r.info();
        assert_eq!((info.sfreq, info.n_samples), (500.0, 4));
        assert_eq!(info.ch_names(), ["Fp1", "EMG,x"]);
        let d = r.read_f64(&[0, 1], 0, 4).unwrap();
        assert_eq!(d[[0, 2]], -5.0 * (1e-6 * 0.5));
        assert_eq!(d[[1, 0]], -2.0 * (1e-3 * 2.0));
        assert_eq!(r.read_f64(&[1], 2, 4).unwrap().row(0).to_vec(), vec![6.0 * 2e-3, 8.0 * 2e-3]);
        // 2024-02-29 23:59:59.000001 UTC
        assert_eq!(info.meas_date, Some(MeasDate { secs: 1_709_251_199, usecs: 1 }));
        let a = &info.annotations;
        let got: Vec<(f64, f64, &str)> = a.iter().map(|a| (a.onset, a.duration, a.description.as_str())).collect();
        // Sorted by onset; the one past the end is dropped, "\1" is a comma.
        assert_eq!(got, vec![(0.002, 0.0, "Comment/caf\u{e9} , ok"), (0.004, 0.002, "Stimulus/S  1")]);
    }

    #[test]
    fn vectorized_int32_and_float32() {
        for (binary, bytes) in [
            ("INT_32", [1i32, 2, 3, -4, -5, 6].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
            ("IEEE_FLOAT_32", [1f32, 2., 3., -4., -5., 6.].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = write_set(&dir, &header(binary, "VECTORIZED", CHANNELS), &bytes);
            let r = BrainVisionReader::open(&p).unwrap();
            assert_eq!(r.info().n_samples, 3);
            let d = r.read_f64(&[1, 0], 1, 3).unwrap();
            assert_eq!(d.row(0).to_vec(), vec![-5.0 * 2e-3, 6.0 * 2e-3], "{binary}");
            assert_eq!(d.row(1).to_vec(), vec![2.0 * 0.5e-6, 3.0 * 0.5e-6], "{binary}");
        }
    }

    #[test]
    fn kinds_units_and_filters_like_mne() {
        let dir = tempfile::tempdir().unwrap();
        let chans = "Ch1=HEOGL,,1,\u{b5}V\r\nCh2=Temp,,1,C\r\n";
        let comment = "[Comment]\r\n\r\nChannels\r\n--------\r\n\
            #     Name      Phys. Chn.    Resolution / Unit   Low Cutoff [s]   High Cutoff [Hz]   Notch [Hz]\r\n\
            1     HEOGL       1                1 \u{b5}V             10              250              Off\r\n\
            2     Temp        2                1 C               10              250              Off\r\n";
        let p = write_set(&dir, &format!("{}{comment}", header("INT_16", "MULTIPLEXED", chans)), &[0; 8]);
        let r = BrainVisionReader::open(&p).unwrap();
        let c = &r.info().channels;
        assert_eq!((c[0].kind, c[0].unit), (ChannelKind::Eog, Unit::V));
        assert_eq!((c[1].kind, c[1].unit), (ChannelKind::Misc, Unit(unit_code::CEL)));
        let hp = r.info().highpass.unwrap();
        assert!((hp - 1.0 / (2.0 * std::f64::consts::PI * 10.0)).abs() < 1e-15);
        assert_eq!(r.info().lowpass, Some(250.0));
    }

    fn open_err(p: &Path) -> String {
        match BrainVisionReader::open(p) {
            Ok(_) => panic!("{} opened but should fail", p.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_sets_are_errors_naming_the_file() {
        let ok = header("INT_16", "MULTIPLEXED", CHANNELS);
        let cases: Vec<(String, &[u8], &str, &str)> = vec![
            (String::new(), &[0; 8], "x.vhdr", "empty"),
            (ok.replace("Version 1.0", "Version 9.0"), &[0; 8], "x.vhdr", "version line"),
            (ok.replace("INT_16", "INT_24"), &[0; 8], "x.vhdr", "BinaryFormat"),
            (ok.replace("MULTIPLEXED", "SIDEWAYS"), &[0; 8], "x.vhdr", "DataOrientation"),
            (ok.clone(), &[0; 7], "x.eeg", "not a whole number"),
            (ok.replace("NumberOfChannels=2", "NumberOfChannels=3"), &[0; 12], "x.vhdr", "no entry Ch3"),
            (ok.replace("NumberOfChannels=2", "NumberOfChannels=two"), &[0; 8], "x.vhdr", "NumberOfChannels"),
            (ok.replace("[Common Infos]", "[Common Infos]\r\ngarbage line"), &[0; 8], "x.vhdr", "key=value"),
            (ok.replace("Ch2=", "Ch1="), &[0; 8], "x.vhdr", "appears twice"),
            (ok.replace("SamplingInterval=2000", "SamplingInterval=0"), &[0; 8], "x.vhdr", "SamplingInterval"),
        ];
        for (vhdr, eeg, names, hint) in cases {
            let dir = tempfile::tempdir().unwrap();
            let p = write_set(&dir, &vhdr, eeg);
            let msg = open_err(&p);
            assert!(msg.contains(names) && msg.contains(hint), "{hint}: {msg}");
        }
        // A missing data file is named in the error.
        let dir = tempfile::tempdir().unwrap();
        let p = write_set(&dir, &ok, &[0; 8]);
        std::fs::remove_file(dir.path().join("x.eeg")).unwrap();
        let msg = open_err(&p);
        assert!(msg.contains(&dir.path().join("x.eeg").display().to_string()), "{msg}");
    }

    #[test]
    fn utf8_codepage_falls_back_to_latin1_like_mne() {
        let dir = tempfile::tempdir().unwrap();
        let vhdr = header("INT_16", "MULTIPLEXED", "Ch1=F\u{f6},,1,\u{b5}V\r\nCh2=B,,1,\u{b5}V\r\n").replace("Latin-1", "UTF-8");
        // Written as Latin-1 though it claims UTF-8: MNE decodes it as Latin-1.
        let p = write_set(&dir, &vhdr, &[0; 4]);
        let r = BrainVisionReader::open(&p).unwrap();
        assert_eq!(r.info().ch_names(), ["F\u{f6}", "B"]);
        assert_eq!(r.info().channels[0].range, 1e-6);
    }
}

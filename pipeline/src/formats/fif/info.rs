//! FIF measurement info (`FIFFB_MEAS_INFO`) into our [`RecordingInfo`] pieces: channels,
//! sampling rate, date, filters, bads, SSP projectors, compensation grade, annotations.
//! Field by field this follows MNE's `read_meas_info`, so `info` equals what MNE reports.

use crate::error::Result;
use crate::recording::{Annotation, ChannelInfo, ChannelKind, ChpiInfo, MeasDate, Projector, Unit};

use super::tag::{be_i32, be_u32, k, FifFile, Node};

/// FIFF channel kinds (`FIFFV_*_CH`).
pub mod ch {
    pub const MEG: i32 = 1;
    pub const EEG: i32 = 2;
    pub const STIM: i32 = 3;
    pub const BIO: i32 = 102;
    pub const EOG: i32 = 202;
    pub const REF_MEG: i32 = 301;
    pub const EMG: i32 = 302;
    pub const ECG: i32 = 402;
    pub const MISC: i32 = 502;
    pub const RESP: i32 = 602;
    pub const SEEG: i32 = 802;
    pub const DBS: i32 = 803;
    pub const SYST: i32 = 900;
    pub const ECOG: i32 = 902;
    pub const IAS: i32 = 910;
    pub const EXCI: i32 = 920;
    pub const DIPOLE_WAVE: i32 = 1000;
    pub const GOODNESS_FIT: i32 = 1001;
    pub const TEMPERATURE: i32 = 1200;
    pub const GALVANIC: i32 = 1300;
}

/// MNE's `channel_type`: the FIFF kind, refined by unit for MEG (T → mag, T/m → grad).
pub fn channel_kind(fiff_kind: i32, unit: Unit) -> ChannelKind {
    use ChannelKind as C;
    match fiff_kind {
        ch::MEG => match unit {
            Unit::T_M => C::Grad,
            Unit::T => C::Mag,
            _ => C::Other,
        },
        ch::REF_MEG => C::RefMeg,
        ch::EEG => C::Eeg,
        ch::STIM => C::Stim,
        ch::EOG => C::Eog,
        ch::EMG => C::Emg,
        ch::ECG => C::Ecg,
        ch::RESP => C::Resp,
        ch::MISC => C::Misc,
        ch::EXCI => C::Exci,
        ch::IAS => C::Ias,
        ch::SYST => C::Syst,
        ch::SEEG => C::Seeg,
        ch::DBS => C::Dbs,
        ch::BIO => C::Bio,
        700..=709 => C::Chpi,
        ch::DIPOLE_WAVE => C::Dipole,
        ch::GOODNESS_FIT => C::Gof,
        ch::ECOG => C::Ecog,
        ch::TEMPERATURE => C::Temperature,
        ch::GALVANIC => C::Gsr,
        _ => C::Other,
    }
}

/// The FIFF kind and unit MNE gives a channel of `kind` (for writers of non-FIF sources).
pub fn fiff_kind_of(kind: ChannelKind) -> i32 {
    use ChannelKind as C;
    match kind {
        C::Mag | C::Grad => ch::MEG,
        C::RefMeg => ch::REF_MEG,
        C::Eeg => ch::EEG,
        C::Stim => ch::STIM,
        C::Eog => ch::EOG,
        C::Emg => ch::EMG,
        C::Ecg => ch::ECG,
        C::Resp => ch::RESP,
        C::Misc | C::Other => ch::MISC,
        C::Exci => ch::EXCI,
        C::Ias => ch::IAS,
        C::Syst => ch::SYST,
        C::Seeg => ch::SEEG,
        C::Dbs => ch::DBS,
        C::Bio => ch::BIO,
        C::Chpi => 707,
        C::Dipole => ch::DIPOLE_WAVE,
        C::Gof => ch::GOODNESS_FIT,
        C::Ecog => ch::ECOG,
        C::Temperature => ch::TEMPERATURE,
        C::Gsr => ch::GALVANIC,
    }
}

/// Everything the reader needs from the measurement info.
pub struct MeasInfo {
    pub sfreq: f64,
    pub channels: Vec<ChannelInfo>,
    pub meas_date: Option<MeasDate>,
    pub bads: Vec<String>,
    pub projs: Vec<Projector>,
    pub comp_grade: i32,
    pub highpass: Option<f64>,
    pub lowpass: Option<f64>,
    pub line_freq: Option<f64>,
    pub chpi: Option<ChpiInfo>,
}

pub fn read_meas_info(f: &FifFile) -> Result<MeasInfo> {
    let meas = f.tree.find(k::B_MEAS);
    let meas = meas.first().ok_or_else(|| f.format_error("no measurement block (FIFFB_MEAS)"))?;
    let infos = meas.find(k::B_MEAS_INFO);
    let node = infos.first().ok_or_else(|| f.format_error("no measurement info block (FIFFB_MEAS_INFO)"))?;

    let mut nchan = None;
    let mut sfreq = None;
    let mut channels = Vec::new();
    let mut meas_date = None;
    let (mut highpass, mut lowpass, mut line_freq) = (None, None, None);
    for e in &node.entries {
        match e.kind {
            k::NCHAN => nchan = Some(f.read_i32_tag(e)?),
            k::SFREQ => sfreq = Some(f.read_f64_tag(e)?),
            k::CH_INFO => channels.push(read_ch_info(f, e)?),
            k::LOWPASS => lowpass = Some(f.read_f64_tag(e)?),
            k::HIGHPASS => highpass = Some(f.read_f64_tag(e)?),
            k::LINE_FREQ => line_freq = Some(f.read_f64_tag(e)?),
            k::MEAS_DATE => {
                let v = f.read_i32s(e)?;
                if let Some(&secs) = v.first() {
                    meas_date = Some(MeasDate { secs: secs as i64, usecs: v.get(1).copied().unwrap_or(0) as i64 });
                }
            }
            _ => {}
        }
    }
    let nchan = nchan.ok_or_else(|| f.format_error("measurement info has no channel count (FIFF_NCHAN)"))?;
    let sfreq = sfreq.ok_or_else(|| f.format_error("measurement info has no sampling rate (FIFF_SFREQ)"))?;
    if !(sfreq.is_finite() && sfreq > 0.0) {
        return Err(f.format_error(format!("sampling rate {sfreq} is not a positive number")));
    }
    if nchan < 0 || channels.len() != nchan as usize {
        return Err(f.format_error(format!(
            "measurement info says {nchan} channels but holds {} channel definitions",
            channels.len()
        )));
    }
    let renames = apply_extended_ch_info(f, node, &mut channels)?;
    let bads = read_bads(f, node, &channels, &renames)?;
    let projs = read_projs(f, node, &renames)?;
    let comp_grade = current_comp_grade(f, &channels)?;
    let chpi = read_chpi(f, node)?;
    Ok(MeasInfo { sfreq, channels, meas_date, bads, projs, comp_grade, highpass, lowpass, line_freq, chpi })
}

/// One `FIFFT_CH_INFO_STRUCT` (96 bytes): scanno, logno, kind, range, cal, coil_type, loc[12],
/// unit, unit_mul, name[16].
fn read_ch_info(f: &FifFile, e: &super::tag::DirEntry) -> Result<ChannelInfo> {
    let d = f.read_data(e)?;
    if e.typ != k::T_CH_INFO_STRUCT || d.len() < 96 {
        return Err(f.format_error(format!("channel definition at byte {} is not a 96-byte channel info struct", e.pos)));
    }
    let f32_at = |o: usize| f32::from_bits(be_u32(&d[o..o + 4])) as f64;
    let mut loc = [0.0; 12];
    for (i, l) in loc.iter_mut().enumerate() {
        *l = f32_at(24 + 4 * i);
    }
    let name_bytes = &d[80..96];
    let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(16);
    let name = String::from_utf8(name_bytes[..end].to_vec())
        .map_err(|_| f.format_error(format!("channel name at byte {} is not valid UTF-8", e.pos + 16 + 80)))?;
    let fiff_kind = be_i32(&d[8..12]);
    let unit = Unit(be_i32(&d[72..76]));
    Ok(ChannelInfo {
        name,
        kind: channel_kind(fiff_kind, unit),
        fiff_kind,
        coil_type: be_i32(&d[20..24]),
        unit,
        unit_mul: be_i32(&d[76..80]),
        cal: f32_at(16),
        range: f32_at(12),
        loc,
        logno: be_i32(&d[4..8]),
        scanno: be_i32(&d[0..4]),
    })
}

/// FIFF blocks and tags of the cHPI set-up.
pub mod hpi {
    pub const B_HPI_MEAS: i32 = 108;
    pub const B_HPI_COIL: i32 = 110;
    pub const B_HPI_SUBSYSTEM: i32 = 121;
    pub const HPI_NCOIL: i32 = 216;
    pub const HPI_COIL_FREQ: i32 = 236;
    pub const HPI_COIL_NO: i32 = 245;
    pub const EVENT_CHANNEL: i32 = 602;
    pub const EVENT_BITS: i32 = 603;
}

/// The cHPI coils and their frequencies, as MNE's `read_meas_info` reads `hpi_meas` and
/// `hpi_subsystem` and `get_chpi_info` uses them: `None` when there is no `FIFFB_HPI_MEAS`
/// or its first coil has no frequency (MNE: "No appropriate cHPI information found"); the
/// coils of the last block otherwise, sorted by coil number.
fn read_chpi(f: &FifFile, node: &Node) -> Result<Option<ChpiInfo>> {
    let meas = node.find(hpi::B_HPI_MEAS);
    let coils_of = |m: &Node| -> Result<Vec<(Option<i32>, Option<f64>)>> {
        m.find(hpi::B_HPI_COIL)
            .into_iter()
            .map(|c| {
                let number = c.entry(hpi::HPI_COIL_NO).map(|e| f.read_i32_tag(e)).transpose()?;
                let freq = c.entry(hpi::HPI_COIL_FREQ).map(|e| f.read_f64_tag(e)).transpose()?;
                Ok((number, freq))
            })
            .collect()
    };
    let Some(&first) = meas.first() else { return Ok(None) };
    if !matches!(coils_of(first)?.first(), Some((_, Some(_)))) {
        return Ok(None);
    }
    let last = *meas.last().expect("not empty");
    let mut coils = Vec::new();
    for (i, c) in coils_of(last)?.into_iter().enumerate() {
        match c {
            (Some(n), Some(fr)) => coils.push((n, fr)),
            _ => return Err(f.format_error(format!("cHPI coil {} of the last HPI measurement block has no number or no frequency", i + 1))),
        }
    }
    coils.sort_by_key(|&(n, _)| n);
    let (mut event_bits, mut event_channel) = (None, None);
    let subs = node.find(hpi::B_HPI_SUBSYSTEM);
    if subs.len() == 1 {
        let s = subs[0];
        if let Some(e) = s.entry(hpi::EVENT_CHANNEL) {
            event_channel = Some(f.read_string(e)?);
        }
        let bits = s
            .find(hpi::B_HPI_COIL)
            .into_iter()
            .map(|c| c.entry(hpi::EVENT_BITS).map(|e| f.read_i32_tag(e)).transpose())
            .collect::<Result<Vec<_>>>()?;
        event_bits = Some(bits);
    }
    Ok(Some(ChpiInfo { coils, event_bits, event_channel }))
}

/// Long channel names live in `FIFFB_CH_INFO` blocks (one per channel, in order) as
/// `FIFF_CH_DACQ_NAME`; returns the (short → long) renames to apply to bads and projectors.
fn apply_extended_ch_info(f: &FifFile, node: &Node, channels: &mut [ChannelInfo]) -> Result<Vec<(String, String)>> {
    let blocks = node.find(k::B_CH_INFO);
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    if blocks.len() != channels.len() {
        return Err(f.format_error(format!(
            "{} extended channel info blocks for {} channels",
            blocks.len(),
            channels.len()
        )));
    }
    let mut renames = Vec::new();
    for (block, ch) in blocks.iter().zip(channels.iter_mut()) {
        if let Some(e) = block.entry(k::CH_DACQ_NAME) {
            let long = f.read_string(e)?;
            renames.push((std::mem::replace(&mut ch.name, long.clone()), long));
        }
    }
    Ok(renames)
}

fn rename(name: String, renames: &[(String, String)]) -> String {
    renames.iter().find(|(short, _)| *short == name).map(|(_, long)| long.clone()).unwrap_or(name)
}

/// MNE's colon-separated name lists, with `{COLON}` standing for a colon inside a name.
pub fn split_name_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(':').map(|v| v.replace("{COLON}", ":")).collect()
}

/// Bad channels (`FIFFB_MNE_BAD_CHANNELS`), keeping only names that exist (MNE's `clean_bads`).
fn read_bads(f: &FifFile, node: &Node, channels: &[ChannelInfo], renames: &[(String, String)]) -> Result<Vec<String>> {
    let mut bads = Vec::new();
    for block in node.find(k::B_MNE_BAD_CHANNELS) {
        if let Some(e) = block.entry(k::MNE_CH_NAME_LIST) {
            bads = split_name_list(&f.read_string(e)?);
        }
    }
    Ok(bads
        .into_iter()
        .map(|b| rename(b, renames))
        .filter(|b| channels.iter().any(|c| &c.name == b))
        .collect())
}

/// SSP projectors (`FIFFB_PROJ` / `FIFFB_PROJ_ITEM`), as MNE's `_read_proj`.
fn read_projs(f: &FifFile, node: &Node, renames: &[(String, String)]) -> Result<Vec<Projector>> {
    let mut projs = Vec::new();
    let Some(proj_block) = node.find(k::B_PROJ).into_iter().next() else {
        return Ok(projs);
    };
    for item in proj_block.find(k::B_PROJ_ITEM) {
        let missing = |what: &str| f.format_error(format!("projection item {} has no {what}", projs.len()));
        let desc = match item.entry(k::COMMENT).or_else(|| item.entry(k::NAME)) {
            Some(e) => f.read_string(e)?,
            None => return Err(missing("description")),
        };
        let kind = f.read_i32_tag(item.entry(k::PROJ_ITEM_KIND).ok_or_else(|| missing("kind"))?)?;
        let nvec = f.read_i32_tag(item.entry(k::PROJ_ITEM_NVEC).ok_or_else(|| missing("vector count"))?)?;
        let names = split_name_list(&f.read_string(item.entry(k::PROJ_ITEM_CH_NAME_LIST).ok_or_else(|| missing("channel list"))?)?);
        let mut vectors = f.read_matrix(item.entry(k::PROJ_ITEM_VECTORS).ok_or_else(|| missing("vectors"))?)?;
        let active = match item.entry(k::MNE_PROJ_ITEM_ACTIVE) {
            Some(e) => f.read_i32_tag(e)? != 0,
            None => false,
        };
        // Some writers store the matrix transposed (channels × vectors); MNE flips it back.
        if vectors.len() == names.len() && vectors.first().map_or(0, |r| r.len()) == nvec as usize && nvec as usize != names.len() {
            vectors = transpose(&vectors);
        }
        if vectors.iter().any(|r| r.len() != names.len()) || vectors.len() != nvec.max(0) as usize {
            return Err(f.format_error(format!(
                "projection item {desc:?}: {} channel names do not match its {}-row data matrix",
                names.len(),
                vectors.len()
            )));
        }
        let ch_names = names.into_iter().map(|n| rename(n, renames)).collect();
        projs.push(Projector { desc, kind, active, ch_names, vectors });
    }
    Ok(projs)
}

fn transpose(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let cols = m.first().map_or(0, |r| r.len());
    (0..cols).map(|c| m.iter().map(|r| r[c]).collect()).collect()
}

/// The CTF compensation grade, stored in the upper 16 bits of every MEG channel's coil type
/// (MNE's `get_current_comp`); channels that disagree make the file inconsistent.
fn current_comp_grade(f: &FifFile, channels: &[ChannelInfo]) -> Result<i32> {
    let mut grade = None;
    for c in channels.iter().filter(|c| c.fiff_kind == ch::MEG) {
        let g = c.coil_type >> 16;
        match grade {
            None => grade = Some(g),
            Some(first) if first != g => {
                return Err(f.format_error(format!("compensation grade differs between MEG channels ({first} and {g} on {})", c.name)))
            }
            _ => {}
        }
    }
    Ok(grade.unwrap_or(0))
}

/// Annotations (`FIFFB_MNE_ANNOTATIONS`): onsets are stored in seconds from the measurement
/// start; we return them relative to the first sample of the data, as our model defines.
pub fn read_annotations(f: &FifFile, first_samp: i64, sfreq: f64) -> Result<Vec<Annotation>> {
    let Some(node) = f.tree.find(k::B_MNE_ANNOTATIONS).into_iter().next() else {
        return Ok(Vec::new());
    };
    let mut onset = Vec::new();
    let mut end = Vec::new();
    let mut desc = Vec::new();
    for e in &node.entries {
        match e.kind {
            k::MNE_BASELINE_MIN => onset = f.read_f64s(e)?,
            k::MNE_BASELINE_MAX => end = f.read_f64s(e)?,
            k::COMMENT => desc = split_name_list(&f.read_string(e)?),
            _ => {}
        }
    }
    if onset.len() != end.len() || onset.len() != desc.len() {
        return Err(f.format_error(format!(
            "annotations block holds {} onsets, {} ends and {} descriptions",
            onset.len(),
            end.len(),
            desc.len()
        )));
    }
    let t0 = first_samp as f64 / sfreq;
    Ok(onset
        .iter()
        .zip(&end)
        .zip(desc)
        .map(|((&o, &e), d)| Annotation { onset: o - t0, duration: e - o, description: d })
        .collect())
}

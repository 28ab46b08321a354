//! The in-memory model of a recording that every reader produces (design.md, "Data
//! conventions"): per-channel metadata in MNE's vocabulary, and a [`RawReader`] that streams
//! any channel subset and sample range in SI units (V, T, T/m) without loading the whole file.

use std::path::PathBuf;

use ndarray::Array2;
use serde::Serialize;

use crate::error::{Error, Result};

/// What a channel measures, named as MNE's `channel_type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Eeg,
    Eog,
    Ecg,
    Emg,
    Mag,
    Grad,
    RefMeg,
    Stim,
    Misc,
    Resp,
    Chpi,
    Syst,
    Ias,
    Exci,
    Bio,
    Seeg,
    Ecog,
    Dbs,
    Gsr,
    Temperature,
    Dipole,
    Gof,
    Other,
}

impl ChannelKind {
    /// MNE's name for this kind (`mne.io.pick.channel_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Eeg => "eeg",
            ChannelKind::Eog => "eog",
            ChannelKind::Ecg => "ecg",
            ChannelKind::Emg => "emg",
            ChannelKind::Mag => "mag",
            ChannelKind::Grad => "grad",
            ChannelKind::RefMeg => "ref_meg",
            ChannelKind::Stim => "stim",
            ChannelKind::Misc => "misc",
            ChannelKind::Resp => "resp",
            ChannelKind::Chpi => "chpi",
            ChannelKind::Syst => "syst",
            ChannelKind::Ias => "ias",
            ChannelKind::Exci => "exci",
            ChannelKind::Bio => "bio",
            ChannelKind::Seeg => "seeg",
            ChannelKind::Ecog => "ecog",
            ChannelKind::Dbs => "dbs",
            ChannelKind::Gsr => "gsr",
            ChannelKind::Temperature => "temperature",
            ChannelKind::Dipole => "dipole",
            ChannelKind::Gof => "gof",
            ChannelKind::Other => "other",
        }
    }

    /// Parses MNE's name (as in BIDS `channels.tsv` lower-cased, or `--picks eeg`).
    pub fn from_mne_name(name: &str) -> Option<Self> {
        use ChannelKind::*;
        let all = [
            Eeg, Eog, Ecg, Emg, Mag, Grad, RefMeg, Stim, Misc, Resp, Chpi, Syst, Ias, Exci, Bio,
            Seeg, Ecog, Dbs, Gsr, Temperature, Dipole, Gof, Other,
        ];
        all.into_iter().find(|k| k.as_str() == name)
    }

    pub fn is_meg(self) -> bool {
        matches!(self, ChannelKind::Mag | ChannelKind::Grad)
    }

    /// MNE's data channels (`_DATA_CH_TYPES_SPLIT`): what `raw.filter` and `raw.resample`
    /// touch by default. EOG, ECG, stim, misc and reference MEG are not data.
    pub fn is_data(self) -> bool {
        matches!(self, ChannelKind::Mag | ChannelKind::Grad | ChannelKind::Eeg | ChannelKind::Seeg | ChannelKind::Ecog | ChannelKind::Dbs)
    }
}

/// FIFF codes of the units we meet (`FIFF.FIFF_UNIT_*`); the code is what MNE stores.
pub mod unit_code {
    pub const NONE: i32 = -1;
    pub const UNITLESS: i32 = 0;
    pub const M: i32 = 1;
    pub const SEC: i32 = 3;
    pub const A: i32 = 4;
    pub const K: i32 = 5;
    pub const HZ: i32 = 101;
    pub const V: i32 = 107;
    /// Siemens (electrodermal activity).
    pub const S: i32 = 110;
    pub const T: i32 = 112;
    pub const CEL: i32 = 114;
    pub const T_M: i32 = 201;
    pub const AM: i32 = 202;
}

/// A channel's physical unit, kept as its FIFF code so nothing is lost in translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Unit(pub i32);

impl Unit {
    pub const V: Unit = Unit(unit_code::V);
    pub const T: Unit = Unit(unit_code::T);
    pub const T_M: Unit = Unit(unit_code::T_M);
    pub const NONE: Unit = Unit(unit_code::NONE);

    /// The SI symbol, as MNE prints it (`NA` for none).
    pub fn symbol(self) -> String {
        match self.0 {
            unit_code::NONE => "NA".into(),
            unit_code::UNITLESS => "unitless".into(),
            unit_code::M => "m".into(),
            unit_code::SEC => "s".into(),
            unit_code::S => "S".into(),
            unit_code::A => "A".into(),
            unit_code::K => "K".into(),
            unit_code::HZ => "Hz".into(),
            unit_code::V => "V".into(),
            unit_code::T => "T".into(),
            unit_code::CEL => "C".into(),
            unit_code::T_M => "T/m".into(),
            unit_code::AM => "Am".into(),
            other => format!("fiff-unit-{other}"),
        }
    }
}

/// One channel's metadata. `cal` is the factor from the stored integer (or float) to SI units;
/// for FIF it is `range * cal`, as MNE multiplies them.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelInfo {
    pub name: String,
    pub kind: ChannelKind,
    /// The FIFF channel kind code (`FIFFV_*_CH`), as MNE's `info['chs'][i]['kind']` holds it.
    pub fiff_kind: i32,
    pub coil_type: i32,
    pub unit: Unit,
    pub unit_mul: i32,
    /// The file's calibration (FIF `cal`; for other formats the physical scale), see `range`.
    pub cal: f64,
    /// The file's range factor (FIF `range`; 1 for other formats).
    pub range: f64,
    /// Sensor location and orientation as MNE's `loc` (12 values, metres, device coords for MEG).
    pub loc: [f64; 12],
    pub logno: i32,
    pub scanno: i32,
}

impl ChannelInfo {
    /// A channel with neutral metadata, for readers of formats that carry little of it.
    pub fn new(name: impl Into<String>, kind: ChannelKind, fiff_kind: i32, unit: Unit) -> Self {
        ChannelInfo {
            name: name.into(),
            kind,
            fiff_kind,
            coil_type: 0,
            unit,
            unit_mul: 0,
            cal: 1.0,
            range: 1.0,
            loc: [0.0; 12],
            logno: 0,
            scanno: 0,
        }
    }
}

/// Measurement date as seconds + microseconds since the Unix epoch (UTC), as FIF stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MeasDate {
    pub secs: i64,
    pub usecs: i64,
}

impl MeasDate {
    /// UTC date and time as `YYYY-MM-DDTHH:MM:SS.ffffff` (no zone suffix; BIDS `acq_time`
    /// style). Civil-from-days by Howard Hinnant's algorithm: one function is not worth a
    /// date crate.
    pub fn iso_utc(&self) -> String {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}", rem / 3600, rem % 3600 / 60, rem % 60, self.usecs)
    }
}

/// A labelled stretch of time. `onset` is in seconds from the first sample the reader returns
/// (sample 0 of `0..n_samples`), not from `first_samp` and not from the measurement date.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Annotation {
    pub onset: f64,
    pub duration: f64,
    pub description: String,
}

/// An SSP projector as MNE stores it (`info['projs']`).
#[derive(Clone, Debug, Serialize)]
pub struct Projector {
    pub desc: String,
    pub kind: i32,
    pub active: bool,
    pub ch_names: Vec<String>,
    /// `nvec` rows, one value per name in `ch_names`.
    pub vectors: Vec<Vec<f64>>,
}

/// Everything about a recording but its samples.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingInfo {
    pub path: PathBuf,
    pub format: &'static str,
    pub sfreq: f64,
    pub n_samples: usize,
    /// Index of the first sample since the acquisition started (MNE's `first_samp`).
    pub first_samp: i64,
    pub meas_date: Option<MeasDate>,
    pub channels: Vec<ChannelInfo>,
    pub bads: Vec<String>,
    pub annotations: Vec<Annotation>,
    pub projs: Vec<Projector>,
    /// CTF/KIT software gradient compensation grade in effect (0 = none).
    pub comp_grade: i32,
    pub highpass: Option<f64>,
    pub lowpass: Option<f64>,
    pub line_freq: Option<f64>,
    /// EDF+D: the records are not contiguous in time (gaps are flagged, samples still abut).
    pub discontinuous: bool,
    /// Continuous head-position indicator coils (FIF `hpi_meas` + `hpi_subsystem`), where the
    /// file has their frequencies: what MNE's `get_chpi_info` reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chpi: Option<ChpiInfo>,
}

/// The cHPI set-up of a FIF recording, as stored: the coils of the last `FIFFB_HPI_MEAS`
/// block sorted by coil number (MNE's `info['hpi_meas'][-1]['hpi_coils']`) and, where the
/// file has a `FIFFB_HPI_SUBSYSTEM`, each subsystem coil's first event bit (a coil whose
/// bit is 0 is not driven) and the event channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChpiInfo {
    /// (coil number, excitation frequency in Hz), ascending coil number.
    pub coils: Vec<(i32, f64)>,
    /// `event_bits[0]` of each coil of the HPI subsystem, in file order; `None` entries are
    /// coils without event bits. `None`: no subsystem block.
    pub event_bits: Option<Vec<Option<i32>>>,
    pub event_channel: Option<String>,
}

impl ChpiInfo {
    /// The frequencies of the coils that may be active, as MNE's `get_chpi_info`: with a
    /// subsystem, each measured coil's event bit (by coil number) must be non-zero.
    pub fn active_freqs(&self) -> std::result::Result<Vec<f64>, String> {
        let Some(bits) = &self.event_bits else {
            return Ok(self.coils.iter().map(|&(_, f)| f).collect());
        };
        let mut out = Vec::new();
        for &(number, f) in &self.coils {
            let bit = usize::try_from(number - 1).ok().and_then(|i| bits.get(i).copied());
            match bit {
                Some(Some(0)) => {}
                Some(Some(_)) => out.push(f),
                _ => return Err(format!("cHPI coil {number} has no event bits in the HPI subsystem block ({} coils)", bits.len())),
            }
        }
        Ok(out)
    }
}

impl RecordingInfo {
    /// A recording of `channels` at `sfreq` with `n_samples` samples from sample 0, and
    /// nothing else (no bads, annotations, projectors, filter settings or date); set the
    /// other fields with struct update syntax (`RecordingInfo { bads, ..RecordingInfo::new(…) }`).
    /// For in-memory recordings ([`InMemory`]) and tests; the readers fill every field.
    pub fn new(path: impl Into<PathBuf>, format: &'static str, sfreq: f64, n_samples: usize, channels: Vec<ChannelInfo>) -> RecordingInfo {
        RecordingInfo {
            path: path.into(),
            format,
            sfreq,
            n_samples,
            first_samp: 0,
            meas_date: None,
            channels,
            bads: vec![],
            annotations: vec![],
            projs: vec![],
            comp_grade: 0,
            highpass: None,
            lowpass: None,
            line_freq: None,
            discontinuous: false,
            chpi: None,
        }
    }

    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }
    pub fn ch_names(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.name.as_str()).collect()
    }
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c.name == name)
    }
    pub fn duration(&self) -> f64 {
        self.n_samples as f64 / self.sfreq
    }

    /// Checks a read request against the recording and names the file when it is wrong.
    pub fn check_request(&self, picks: &[usize], start: usize, stop: usize, out_len: usize) -> Result<()> {
        if start > stop || stop > self.n_samples {
            return Err(Error::request(
                &self.path,
                format!("sample range {start}..{stop} is outside 0..{}", self.n_samples),
            ));
        }
        if let Some(&bad) = picks.iter().find(|&&p| p >= self.channels.len()) {
            return Err(Error::request(
                &self.path,
                format!("channel index {bad} is outside 0..{}", self.channels.len()),
            ));
        }
        if out_len != picks.len() * (stop - start) {
            return Err(Error::request(
                &self.path,
                format!("output buffer holds {out_len} values, the request needs {}", picks.len() * (stop - start)),
            ));
        }
        Ok(())
    }

    /// MNE-style channel selection (`picks`): the indices of the channels `picks` selects, in
    /// file order. Each item is a channel name or an MNE type (`eeg`, `mag`, `grad`, `stim`,
    /// ...); `meg` means mag + grad, `data` means MEG + EEG. An empty list selects every
    /// channel. An item matching nothing is an error (named after the `--picks` flag that the
    /// commands pass these from).
    pub fn resolve_picks(&self, picks: &[String]) -> Result<Vec<usize>> {
        if picks.is_empty() {
            return Ok((0..self.n_channels()).collect());
        }
        let mut keep = vec![false; self.n_channels()];
        for item in picks {
            let item = item.trim();
            let mut matched = false;
            for (i, ch) in self.channels.iter().enumerate() {
                let hit = ch.name == item
                    || ch.kind.as_str() == item
                    || (item == "meg" && ch.kind.is_meg())
                    || (item == "data" && (ch.kind.is_meg() || ch.kind == ChannelKind::Eeg));
                if hit {
                    keep[i] = true;
                    matched = true;
                }
            }
            if !matched {
                return Err(Error::request(&self.path, format!("--picks {item:?} matches no channel name or type")));
            }
        }
        Ok(keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect())
    }

    /// MNE's `raw.crop(tmin, tmax)` sample range: `round(tmin*sfreq) ..= round(tmax*sfreq)`,
    /// returned as `start..stop`; `None` ends mean the first / last sample.
    pub fn crop_range(&self, tmin: Option<f64>, tmax: Option<f64>) -> Result<(usize, usize)> {
        let last = self.n_samples.saturating_sub(1) as f64 / self.sfreq;
        let tmin = tmin.unwrap_or(0.0);
        let tmax = tmax.unwrap_or(last);
        if !(tmin >= 0.0 && tmax >= tmin && tmax <= last + 0.5 / self.sfreq) {
            return Err(Error::request(
                &self.path,
                format!("--tmin {tmin} / --tmax {tmax} must satisfy 0 <= tmin <= tmax <= {last:.6} s"),
            ));
        }
        let start = (tmin * self.sfreq).round() as usize;
        let stop = ((tmax * self.sfreq).round() as usize + 1).min(self.n_samples);
        Ok((start, stop))
    }
}

/// A floating-point sample type the readers can write: f32 for memory, f64 for exactness.
pub trait Sample: Copy + Default + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
}
impl Sample for f32 {
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Sample for f64 {
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// A recording opened for streaming reads. Reads take `&self` so one opened file can serve
/// several threads; each call reads only the bytes that hold the requested samples.
pub trait RawReader: Send + Sync {
    fn info(&self) -> &RecordingInfo;

    /// Writes channels `picks` × samples `start..stop` in SI units, row-major
    /// (`out[i * (stop - start) + t]`), computing in f64 like MNE.
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()>;

    /// The same, rounding each value to f32 at the end (half the memory). By default the f64
    /// read, narrowed: what readers that compute their samples in f64 (cHPI and Maxwell
    /// filtering, stored copies of them) do; readers of stored samples decode straight to f32.
    fn read_into_f32(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f32]) -> Result<()> {
        let mut v = vec![0.0; out.len()];
        self.read_into_f64(picks, start, stop, &mut v)?;
        for (o, x) in out.iter_mut().zip(v) {
            *o = x as f32;
        }
        Ok(())
    }

    /// Reads into a new `picks.len() × (stop - start)` f64 array.
    fn read_f64(&self, picks: &[usize], start: usize, stop: usize) -> Result<Array2<f64>> {
        let mut out = Array2::zeros((picks.len(), stop.saturating_sub(start)));
        self.read_into_f64(picks, start, stop, out.as_slice_mut().expect("standard layout"))?;
        Ok(out)
    }

    /// Reads into a new `picks.len() × (stop - start)` f32 array.
    fn read_f32(&self, picks: &[usize], start: usize, stop: usize) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((picks.len(), stop.saturating_sub(start)));
        self.read_into_f32(picks, start, stop, out.as_slice_mut().expect("standard layout"))?;
        Ok(out)
    }

    /// True for Elekta MaxShield (Internal Active Shielding) data: distorted until
    /// Maxwell-filtered, which is why MNE refuses it unless told `allow_maxshield`. Only FIF
    /// can hold it.
    fn maxshield(&self) -> bool {
        false
    }

    /// All channels, in file order.
    fn all_picks(&self) -> Vec<usize> {
        (0..self.info().n_channels()).collect()
    }

    /// True when reading the same samples again costs a read of stored values (a file, or
    /// memory), not a computation. The cleaning chain then reads such a recording once per
    /// block of channels instead of transposing it into a scratch file ([`crate::clean`]):
    /// a few more reads from the page cache instead of writing the whole recording once.
    /// Readers that compute their samples (Maxwell filtering, projectors, synthetic
    /// recordings) keep the default, so they are computed once; wrappers forward it.
    fn rereads_are_cheap(&self) -> bool {
        false
    }
}

/// The one read path of the readers that compute both precisions with one generic routine
/// (FIF, EDF/BDF, BrainVision, [`InMemory`], the fixtures' recordings): they implement this,
/// and [`RawReader`] follows, its f64 and f32 reads being that routine for each type.
pub trait ReadSamples: Send + Sync {
    /// The recording's description ([`RawReader::info`]).
    fn recording(&self) -> &RecordingInfo;

    /// Channels `picks` × samples `start..stop` into `out` ([`RawReader::read_into_f64`] /
    /// [`RawReader::read_into_f32`]).
    fn read_samples<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()>;

    /// [`RawReader::maxshield`].
    fn is_maxshield(&self) -> bool {
        false
    }

    /// [`RawReader::rereads_are_cheap`]: true for readers of stored samples.
    fn holds_stored_samples(&self) -> bool {
        false
    }
}

impl<R: ReadSamples> RawReader for R {
    fn info(&self) -> &RecordingInfo {
        self.recording()
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        self.read_samples(picks, start, stop, out)
    }
    fn read_into_f32(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f32]) -> Result<()> {
        self.read_samples(picks, start, stop, out)
    }
    fn maxshield(&self) -> bool {
        self.is_maxshield()
    }
    fn rereads_are_cheap(&self) -> bool {
        self.holds_stored_samples()
    }
}

/// A recording held in memory (channels × samples, SI units): the output of processing
/// stages, and a source for the FIF writer.
pub struct InMemory {
    pub info: RecordingInfo,
    pub data: Array2<f64>,
}

impl InMemory {
    /// Wraps `data`; its shape must be `channels × info.n_samples`.
    pub fn new(info: RecordingInfo, data: Array2<f64>) -> Result<Self> {
        if data.nrows() != info.n_channels() || data.ncols() != info.n_samples {
            return Err(Error::request(
                &info.path,
                format!("data is {}×{}, info describes {}×{}", data.nrows(), data.ncols(), info.n_channels(), info.n_samples),
            ));
        }
        Ok(InMemory { info, data })
    }

    fn fill<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.info.check_request(picks, start, stop, out.len())?;
        let n = stop - start;
        for (row, &c) in picks.iter().enumerate() {
            for (o, v) in out[row * n..(row + 1) * n].iter_mut().zip(self.data.row(c).iter().skip(start)) {
                *o = T::from_f64(*v);
            }
        }
        Ok(())
    }
}

impl ReadSamples for InMemory {
    fn recording(&self) -> &RecordingInfo {
        &self.info
    }
    fn read_samples<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.fill(picks, start, stop, out)
    }
    fn holds_stored_samples(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kinds: &[ChannelKind]) -> RecordingInfo {
        RecordingInfo::new("test.fif", "test", 100.0, 1000, kinds.iter().enumerate().map(|(i, &k)| ChannelInfo::new(format!("CH{i}"), k, 0, Unit::V)).collect())
    }

    #[test]
    fn picks_select_names_and_types_in_file_order() {
        let i = info(&[ChannelKind::Stim, ChannelKind::Grad, ChannelKind::Eeg, ChannelKind::Mag, ChannelKind::Eog]);
        let picks = |p: &[&str]| i.resolve_picks(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(picks(&[]).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(picks(&["meg"]).unwrap(), vec![1, 3]);
        assert_eq!(picks(&["data"]).unwrap(), vec![1, 2, 3]);
        assert_eq!(picks(&["CH4", " eeg"]).unwrap(), vec![2, 4]);
        let e = picks(&["nope"]).unwrap_err().to_string();
        assert_eq!(e, "test.fif: --picks \"nope\" matches no channel name or type");
    }

    #[test]
    fn crop_range_is_mne_s() {
        let i = info(&[ChannelKind::Eeg]);
        assert_eq!(i.crop_range(None, None).unwrap(), (0, 1000));
        assert_eq!(i.crop_range(Some(1.0), Some(2.0)).unwrap(), (100, 201));
        assert!(i.crop_range(Some(2.0), Some(1.0)).is_err());
        assert!(i.crop_range(None, Some(10.5)).is_err());
    }
}

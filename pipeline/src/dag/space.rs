//! The free-space check before a pipeline run: the preprocess stage's scratch copies (each run
//! transposed channel-major: f32 where every sample is an f32 times its calibration, as in a
//! float32 or int16 FIF, else f64; the estimate is the f64 size, channels × samples × 8 bytes,
//! ~2× a float32 FIF, since the f32 copy is removed before an f64 fallback is made) and the
//! outputs, held against what `statvfs` says is free where they go (or
//! `BF_FREE_SPACE_BYTES`, the download's testing aid: [`crate::source::available_space`]).
//!
//! Estimates, per preprocess target to run: the scratch copy (none for a run read as it is
//! stored, FIF/EDF/BrainVision without Maxwell filtering: cleaning reads it again per block
//! of channels instead; otherwise exact, from the run's header; plus, where filter_chpi may
//! run before Maxwell filtering, the stored cHPI-filtered MEG, MEG channels × samples × 8;
//! removed when the run is done, so only the largest `concurrent` of them are on disk at once)
//! and its cleaned FIF (channels × samples at the new rate × 4 bytes), plus what the later
//! stages write from it (token files and shards: half as much again; f32 continuous shards:
//! twice as much again). The margin is the download's: 1 % and at least 64 MiB. When the
//! scratch folder and the outputs are on one file system, their sum is checked there.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Plan, Project, Stage};
use crate::error::{Error, Result};
use crate::source::{available_space, both, human_bytes, nearest_existing, space_margin};

/// What a run will need on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceNeed {
    /// Where the scratch copies go.
    pub scratch_dir: PathBuf,
    /// Peak bytes of scratch copies on disk at once.
    pub scratch: u64,
    /// Preprocess targets to run (what the figures cover).
    pub runs: usize,
    /// Where the outputs go (the derivatives folder).
    pub outputs_dir: PathBuf,
    /// Bytes of new outputs.
    pub outputs: u64,
}

/// The disk space `plan` needs when `concurrent` runs are preprocessed at once.
pub fn space_need(project: &Project, plan: &Plan, concurrent: usize) -> SpaceNeed {
    let sfreq_new = project.config.preprocess.sfreq;
    let later = if project.config.shards.kind == "continuous" { 3.0 } else { 1.5 };
    let mut scratch: Vec<u64> = Vec::new();
    let mut outputs = 0u64;
    for (node, status) in plan.nodes.iter().zip(&plan.status) {
        if node.stage != Stage::Preprocess || !status.needs_build() {
            continue;
        }
        let run = &project.runs[node.run.expect("per-run")];
        // A .fif.gz is inflated whole to be opened: guess from its size instead.
        let gz = run.file.extension().is_some_and(|e| e == "gz");
        let opened = if gz { None } else { crate::formats::open(&run.file).ok() };
        let (s, o) = match opened {
            Some(r) => {
                let info = r.info();
                let n_new = if sfreq_new > 0.0 { (info.n_samples as f64 * sfreq_new / info.sfreq).ceil() as u64 } else { info.n_samples as u64 };
                let nch = info.channels.len() as u64;
                // A file read as it is stored is read again per block of channels, with no
                // scratch copy (clean::Transpose); a Maxwell-filtered run is transposed.
                let transposed = run.maxwell.is_some() || !r.rereads_are_cheap();
                // The cHPI-filtered MEG, stored once for find_bad_channels_maxwell, the tSSS
                // corrections and the filter (clean::stored), on disk during the transpose too.
                let cfg = &project.config;
                let chpi_stored = run.maxwell.is_some() && super::stages::chpi_may_apply(cfg, run) && super::stages::chpi_output_stored(cfg);
                let meg = info.channels.iter().filter(|c| c.kind.is_meg()).count() as u64;
                let stored = if chpi_stored { meg * info.n_samples as u64 * 8 } else { 0 };
                (if transposed { nch * info.n_samples as u64 * 8 } else { 0 } + stored, nch * n_new * 4)
            }
            // Unopened (compressed, or unreadable: the stage will say why): guess from the
            // file's size, float32 samples (compressed ones: at least 2:1).
            None => {
                let size = std::fs::metadata(&run.file).map(|m| m.len()).unwrap_or(0) * if gz { 2 } else { 1 };
                (size * 2, size)
            }
        };
        scratch.push(s);
        outputs += (o as f64 * later) as u64;
    }
    let runs = scratch.len();
    scratch.sort_unstable_by(|a, b| b.cmp(a));
    let peak = scratch.iter().take(concurrent.max(1)).sum();
    SpaceNeed {
        scratch_dir: project.scratch.clone().unwrap_or_else(|| project.derivatives()),
        scratch: peak,
        runs,
        outputs_dir: project.derivatives(),
        outputs,
    }
}

fn device(p: &Path) -> Option<u64> {
    std::fs::metadata(nearest_existing(p)).ok().map(|m| m.dev())
}

impl SpaceNeed {
    /// `Ok` when each file system has room; else the error names the folder and the figures.
    pub fn require(&self) -> Result<()> {
        if self.runs == 0 {
            return Ok(());
        }
        let same = device(&self.scratch_dir).is_some() && device(&self.scratch_dir) == device(&self.outputs_dir);
        let checks: Vec<(&Path, u64, String)> = if same {
            vec![(
                &self.outputs_dir,
                self.scratch + self.outputs,
                format!("scratch copies {} + outputs ~{}", human_bytes(self.scratch), human_bytes(self.outputs)),
            )]
        } else {
            vec![
                (&self.scratch_dir, self.scratch, format!("scratch copies {}", human_bytes(self.scratch))),
                (&self.outputs_dir, self.outputs, format!("outputs ~{}", human_bytes(self.outputs))),
            ]
        };
        for (dir, bytes, what) in checks {
            let margin = space_margin(bytes);
            let (available, at, overridden) = available_space(dir)?;
            if available < bytes + margin {
                let source = if overridden { format!("{} (BF_FREE_SPACE_BYTES)", at.display()) } else { at.display().to_string() };
                return Err(Error::request(
                    dir,
                    format!(
                        "not enough free disk space to preprocess {} run(s): {} needed ({what} + {} margin), {} available on {source}; nothing was started. \
                         Free some space, put the scratch copies on another disk (--scratch DIR), or run fewer at once (--jobs)",
                        self.runs,
                        both(bytes + margin),
                        human_bytes(margin),
                        both(available),
                    ),
                ));
            }
        }
        Ok(())
    }
}

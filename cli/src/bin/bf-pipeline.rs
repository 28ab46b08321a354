//! `bf-pipeline`: Brainformer's data pipeline from raw BIDS recordings to training shards.
//! This file only parses arguments and dispatches; each command lives in `cli/src/commands`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use brainformer_cli::commands;

/// Raw EEG/MEG recordings → filtered, resampled, tokenized Parquet shards.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Print only warnings and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a recording's measurement info (channels, sfreq, samples, dates, bads, events).
    ///
    /// Reads FIF (.fif, .fif.gz, split files follow), EDF/EDF+/BDF and BrainVision (.vhdr).
    Info {
        /// The recording to describe.
        file: PathBuf,
        /// Print JSON instead of a human summary.
        #[arg(long)]
        json: bool,
    },
    // --- Maxwell (issue 14): bf_pipeline::maxwell, cli/src/commands/maxwell.rs ---
    /// Maxwell-filter (SSS) a Neuromag FIF recording as MNE's `maxwell_filter`; write .npy or .fif.
    Maxwell {
        /// The raw FIF recording (MaxShield data accepted).
        input: PathBuf,
        /// Output path: `.npy` (float64, channels × samples) or `.fif` (float32).
        out: PathBuf,
        /// Expansion origin: `auto` or X,Y,Z in metres in the coordinate frame.
        #[arg(long, default_value = "auto", allow_hyphen_values = true)]
        origin: String,
        /// Coordinate frame of the origin and the reconstruction: head or meg.
        #[arg(long, default_value = "head")]
        coord_frame: String,
        #[arg(long, default_value_t = 8)]
        int_order: usize,
        #[arg(long, default_value_t = 3)]
        ext_order: usize,
        /// `in` (MNE's default: information-based selection of internal moments) or `none`.
        #[arg(long, default_value = "in")]
        regularize: String,
        /// `error` (MNE's default: refuse a basis with condition ≥ 1000) or `ignore`.
        #[arg(long, default_value = "error")]
        bad_condition: String,
        /// Fine calibration file (Elekta `sss_cal.dat`, 1-D or 3-D).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Cross-talk matrix file (Elekta `ct_sparse.fif`).
        #[arg(long)]
        cross_talk: Option<PathBuf>,
        /// tSSS window in seconds (none: plain SSS).
        #[arg(long)]
        st_duration: Option<f64>,
        /// tSSS subspace correlation limit.
        #[arg(long, default_value_t = 0.98)]
        st_correlation: f64,
        /// tSSS in back-to-back windows (MNE's `st_overlap=False`, MaxFilter's buffers) instead
        /// of MNE's default: windows overlapping by half, Hann-weighted (st_duration × sfreq even).
        #[arg(long)]
        no_st_overlap: bool,
        /// Print the origin, kept moments and condition number as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Find flat and noisy MEG channels as MNE's `find_bad_channels_maxwell`.
    FindBadsMaxwell {
        /// The raw FIF recording (MaxShield data accepted).
        input: PathBuf,
        /// Expansion origin: `auto` or X,Y,Z in metres in the coordinate frame.
        #[arg(long, default_value = "auto", allow_hyphen_values = true)]
        origin: String,
        /// Coordinate frame: head (MNE's default) or meg (empty-room recordings).
        #[arg(long, default_value = "head")]
        coord_frame: String,
        /// `in` (MNE's default) or `none`.
        #[arg(long, default_value = "in")]
        regularize: String,
        /// Fine calibration file (Elekta `sss_cal.dat`).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Cross-talk matrix file (Elekta `ct_sparse.fif`).
        #[arg(long)]
        cross_talk: Option<PathBuf>,
        /// z-score limit for noisy channels.
        #[arg(long, default_value_t = 7.0)]
        limit: f64,
        /// Low-pass cutoff in Hz applied before scoring, or `none`.
        #[arg(long, default_value = "40")]
        h_freq: String,
        /// Chunk length in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Chunks a channel must be bad in to be reported.
        #[arg(long, default_value_t = 5)]
        min_count: usize,
        /// Print the lists and MNE's per-chunk scores as JSON.
        #[arg(long)]
        json: bool,
    },
    // --- end Maxwell ---
    /// Convert a recording to a NumPy .npy (float64, channels × samples, SI units) or to FIF.
    ///
    /// The output format follows OUT's extension. Channels stay in file order.
    Convert {
        /// The recording to read.
        file: PathBuf,
        /// Output path: `.npy` or `.fif`.
        out: PathBuf,
        /// Channels to keep: comma-separated names and/or MNE types (eeg, meg, mag, grad,
        /// stim, eog, ecg, misc, ...). Default: all channels.
        #[arg(long, value_delimiter = ',')]
        picks: Vec<String>,
        /// Start time in seconds from the first sample (as MNE's `raw.crop(tmin=...)`).
        #[arg(long)]
        tmin: Option<f64>,
        /// End time in seconds, included (as MNE's `raw.crop(tmax=...)`).
        #[arg(long)]
        tmax: Option<f64>,
        /// Apply the recording's SSP projectors (as MNE's `raw.apply_proj()`).
        #[arg(long)]
        proj: bool,
        /// FIF output only: sample format of the data buffers.
        #[arg(long, default_value = "float32", value_parser = ["float32", "int16"])]
        fif_format: String,
    },
    /// Build everything from the raw runs to tokenized Parquet shards (a make-like DAG).
    ///
    /// Stages: preprocess (read with channels.tsv types and bads; band-pass, notch, resample;
    /// bad channels found and EEG bads interpolated; cleaned FIF + JSON sidecar under
    /// derivatives/brainformer/) → segment (windows, dropping those touching BAD stretches) →
    /// split (held-out subjects) → fit-tokenizer (training split only) → tokenize → shards
    /// (derivatives/brainformer/shards/: data/{split}-NNNNN-of-NNNNN.parquet + README.md).
    /// A target is rebuilt only when its inputs' content, its parameters or its code changed;
    /// an interrupted run leaves whole files and the next run carries on. Parameters come
    /// from brainformer.toml (written by ingest); see `bf-pipeline config`.
    ///
    /// One process at a time writes derivatives/brainformer (a lock; the --shard tasks of a
    /// job array share it): another one waits, saying for whom, or refuses with --no-wait.
    /// SIGTERM, SIGINT or SIGUSR1 let the targets in progress finish, start no other, and exit
    /// with status 75; the same command then continues. A split left without subjects is
    /// refused (--allow-empty-split: a warning). Exit status 0: built; 1: error; 75: stopped.
    Tokenize {
        #[command(flatten)]
        args: commands::dag::DagArgs,
    },
    /// Run the pipeline up to the cleaned continuous data only (see `tokenize`).
    Preprocess {
        #[command(flatten)]
        args: commands::dag::DagArgs,
    },
    /// Run the pipeline up to the windows only (see `tokenize`).
    Segment {
        #[command(flatten)]
        args: commands::dag::DagArgs,
    },
    /// Show every target of the pipeline, whether it would run, and why (runs nothing).
    Plan {
        #[command(flatten)]
        args: commands::dag::DagArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the pipeline's DAG in Graphviz DOT (targets that would run are filled).
    Graph {
        #[command(flatten)]
        args: commands::dag::DagArgs,
    },
    /// Print the effective configuration: brainformer.toml with command-line overrides.
    Config {
        #[command(flatten)]
        args: commands::dag::DagArgs,
    },
    /// Write an sbatch script that runs the pipeline on SLURM: per-run stages as a job array
    /// (`--shard I/N`), then the stages over all runs as a job that depends on it.
    ///
    /// `bash SCRIPT` submits both (the script is their batch script; any path works) or exits
    /// non-zero saying what sbatch refused. Jobs ask for SIGTERM --stop-before seconds ahead of
    /// their time limit, stop at a target boundary and requeue themselves.
    Slurm {
        #[command(flatten)]
        args: commands::dag::DagArgs,
        #[command(flatten)]
        slurm: commands::dag::SlurmArgs,
    },
    /// Remove the pipeline's derivatives (derivatives/brainformer/, except ingest's manifest).
    Clean {
        #[command(flatten)]
        args: commands::dag::DagArgs,
        /// Really remove (without it, only list what would go).
        #[arg(long)]
        yes: bool,
    },
    /// Fetch (OpenNeuro id) or index (local path) a BIDS dataset and check every run.
    ///
    /// `bf-pipeline ingest ds000117` downloads from OpenNeuro's public S3 bucket (anonymous,
    /// parallel, resumable, verified); `bf-pipeline ingest path/to/bids` indexes in place.
    /// Writes DIR/derivatives/brainformer/manifest.parquet (one row per run) and the project
    /// file brainformer.toml here, so `bf-pipeline tokenize` needs no arguments next.
    Ingest {
        /// OpenNeuro dataset id (ds000117) or a local BIDS directory.
        source: String,
        /// Download destination (default: ./<dataset id>).
        #[arg(long)]
        dest: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        choice: commands::ingest::RunChoice,
        /// Project file to write.
        #[arg(long, default_value = "brainformer.toml")]
        project: PathBuf,
    },
    /// Download (part of) an OpenNeuro dataset without indexing it (see `ingest`).
    ///
    /// Anonymous requests to OpenNeuro's public S3 bucket: listing with pagination, parallel
    /// GETs, resumable `.part` files (Range requests), size and MD5 checks, atomic renames.
    /// The plan (per subject folder: files, bytes present, bytes to download) and the free
    /// space at --dest are checked before the first byte; --dry-run prints the plan and stops.
    /// Exit status 0: all arrived; 1: some failed (rerun to resume); 2: nothing could be done.
    Download {
        /// OpenNeuro dataset id, e.g. ds000117.
        dataset: String,
        /// Destination directory (created if needed).
        #[arg(long)]
        dest: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Bucket name (default: openneuro.org).
        #[arg(long)]
        bucket: Option<String>,
        /// Retries after a transient failure (per object and listing page).
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Push the shards folder (or, with --model, a checkpoint) to a Hugging Face Hub repository.
    ///
    /// Dataset (default): the shards folder (README.md dataset card + data/*.parquet) goes to
    /// the dataset repository REPO_ID. --model CKPT_DIR: config.json, model.safetensors and a
    /// model card README.md with bf-eval's metrics (CKPT_DIR/metrics.json, or --metrics) go to
    /// the model repository REPO_ID. As huggingface_hub's upload_folder: the repository is
    /// created if missing; large files go through LFS (multipart, parts in parallel); files
    /// already on the Hub with the same content are skipped; everything lands in one commit,
    /// sent last, so an interrupted upload commits nothing and the same command run again
    /// sends only what is missing. 429, 5xx and network errors are retried with backoff.
    ///
    /// Environment, as huggingface_hub: HF_TOKEN is the access token (needs write access);
    /// without it the token file written by `hf auth login` is read: $HF_HOME/token, HF_HOME
    /// defaulting to ~/.cache/huggingface (HF_TOKEN_PATH overrides the file). The token is
    /// never printed. HF_ENDPOINT is the Hub's address (default https://huggingface.co; set it
    /// for a mirror or a local stand-in). BF_HUB_BACKOFF_MS: first retry delay (default 1000).
    #[command(verbatim_doc_comment)]
    Upload {
        /// The repository: NAMESPACE/NAME (e.g. your-user/ds000117-shards).
        repo_id: String,
        /// The folder to push as a dataset. Default: the shards folder of the project
        /// (brainformer.toml here), else ./derivatives/brainformer/shards.
        #[arg(long)]
        shards: Option<PathBuf>,
        /// Push this checkpoint directory (config.json + model.safetensors) to a model
        /// repository instead of the shards.
        #[arg(long, value_name = "CKPT_DIR")]
        model: Option<PathBuf>,
        /// bf-eval's metrics (JSON) for the model card (default: CKPT_DIR/metrics.json if present).
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
        /// Branch to commit to (it must exist).
        #[arg(long, default_value = "main")]
        revision: String,
        /// Create the repository private (when it does not exist yet).
        #[arg(long)]
        private: bool,
        /// Commit title (default: "Upload N files with brainformer").
        #[arg(long)]
        commit_message: Option<String>,
        /// Project file whose shards folder is the default.
        #[arg(long, default_value = "brainformer.toml")]
        project: PathBuf,
        /// Parallel uploads (files and multipart parts).
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// Retries of each request after a 429, a 5xx or a network error (backoff doubling
        /// from BF_HUB_BACKOFF_MS, at most 30 s, or the Hub's Retry-After).
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Time a full read into memory and random windows of FILE (JSON; used by `make bench`).
    BenchRead {
        file: PathBuf,
        /// How many random windows to time.
        #[arg(long, default_value_t = 20)]
        windows: usize,
        /// Window length in seconds.
        #[arg(long, default_value_t = 10.0)]
        window_seconds: f64,
        /// Seed for the window positions.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Filter a recording like MNE: `raw.filter(l_freq, h_freq)` then `raw.notch_filter(notch)`.
    ///
    /// Zero-phase FIR (MNE's defaults: firwin, Hamming, automatic transition bands and length),
    /// overlap-add FFT with reflect_limited padding, on the data channels (MEG and EEG, bads
    /// included); other channels pass through. OUT: .npy (float64, all channels, file order)
    /// or .fif.
    Filter {
        /// The recording to filter.
        input: PathBuf,
        /// Output path: `.npy` or `.fif`.
        out: PathBuf,
        /// High-pass edge in Hz (MNE's l_freq).
        #[arg(long, allow_negative_numbers = true)]
        l_freq: Option<f64>,
        /// Low-pass edge in Hz (MNE's h_freq).
        #[arg(long, allow_negative_numbers = true)]
        h_freq: Option<f64>,
        /// Notch frequencies in Hz, comma-separated (e.g. 50,100,150).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        notch: Vec<f64>,
        /// Transition bandwidth at l_freq in Hz (default: MNE's 'auto').
        #[arg(long)]
        l_trans_bandwidth: Option<f64>,
        /// Transition bandwidth at h_freq in Hz (default: MNE's 'auto').
        #[arg(long)]
        h_trans_bandwidth: Option<f64>,
    },
    /// Preprocess one recording in bounded memory: band-pass, notch, resample (as MNE does).
    ///
    /// Equivalent to MNE's `raw.filter(l_freq, h_freq).notch_filter(notch).resample(sfreq)`
    /// on the data channels (MEG, EEG; bads included; all channels are resampled). The
    /// recording is transposed once into a scratch file beside OUT, then channels are
    /// processed in parallel. Defaults: 0.1–100 Hz, notch 50,100,150 Hz, 250 Hz. The DAG
    /// (`bf-pipeline preprocess`/`tokenize`) runs the same chain on every run of a dataset.
    PreprocessFile {
        /// The recording to clean.
        input: PathBuf,
        /// Output path: `.npy` or `.fif`.
        out: PathBuf,
        /// High-pass edge in Hz (MNE's l_freq).
        #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
        l_freq: f64,
        /// Low-pass edge in Hz (MNE's h_freq).
        #[arg(long, default_value_t = 100.0, allow_negative_numbers = true)]
        h_freq: f64,
        /// Notch frequencies in Hz, comma-separated (empty string: no notch).
        #[arg(long, value_delimiter = ',', default_value = "50,100,150", allow_negative_numbers = true)]
        notch: Vec<f64>,
        /// New sampling rate in Hz.
        #[arg(long, default_value_t = 250.0, allow_negative_numbers = true)]
        sfreq: f64,
        /// Run MNE's three passes one after the other (band-pass, notch, resample) instead of
        /// the default single-FFT path.
        ///
        /// By default band-pass × notch × resample run as one FFT per channel, about 3×
        /// faster. It equals MNE except for the Gibbs ringing of MNE's own padding jump, which
        /// reaches the data at about 1e-5 of a channel's RMS on recordings of minutes (see
        /// pipeline/src/dsp/spectral.rs). Short recordings always take the exact path.
        #[arg(long)]
        exact: bool,
    },
    /// Resample a recording like MNE's `raw.resample(sfreq, method=...)` (FFT by default).
    ///
    /// Every channel is resampled; stim channels keep their events (first non-zero value per
    /// window, as MNE, whatever the method). OUT: .npy (float64, channels × samples) or .fif.
    Resample {
        /// The recording to resample.
        input: PathBuf,
        /// Output path: `.npy` or `.fif`.
        out: PathBuf,
        /// New sampling rate in Hz.
        #[arg(long, default_value_t = 250.0, allow_negative_numbers = true)]
        sfreq: f64,
        /// Resampling method, MNE's `method`: fft or polyphase.
        ///
        /// fft (MNE's default): the whole signal is padded (reflect_limited, to a power of two),
        /// its spectrum cut (or zero-extended) at the new Nyquist and transformed back: a
        /// brick-wall low-pass.
        ///
        /// polyphase (MNE's method='polyphase', i.e. scipy's resample_poly): a Kaiser-windowed
        /// (beta 5) sinc FIR low-pass applied at integer up/down rates (the ratio of the new to
        /// the old length, in lowest terms), reflect padding. It is local (about 10 input samples
        /// either side per rate step) with a gentler roll-off; when the lengths share few factors
        /// the filter is huge, and beyond 2^26 taps it is refused (use fft or crop).
        #[arg(long, default_value = "fft", value_parser = ["fft", "polyphase"])]
        method: String,
    },
    /// Repair bad EEG channels by spherical-spline interpolation, as MNE's
    /// `raw.interpolate_bads(reset_bads=True, origin=...)` does for EEG.
    ///
    /// The bad EEG channels (the recording's own bads, plus --bads) are replaced by Perrin's
    /// spherical splines fitted to the good EEG channels (MNE's stiffness 4, 50 Legendre terms,
    /// 1e-5 regularisation, pinv). Positions come from the channel locations (a montage must
    /// have been set). Afterwards the interpolated channels leave the bads list; bads of other
    /// kinds (MEG, EOG, ...) are not touched and stay marked. OUT: .npy (float64, all channels,
    /// file order) or .fif (float32).
    InterpolateBads {
        /// The recording to repair.
        input: PathBuf,
        /// Output path: `.npy` or `.fif`.
        out: PathBuf,
        /// Channels to mark bad in addition to the recording's own bads (comma-separated).
        #[arg(long, value_delimiter = ',')]
        bads: Vec<String>,
        /// Sphere origin X,Y,Z in metres, head frame (MNE's `origin`). Default: MNE's 'auto'
        /// least-squares sphere fit, done on the EEG electrode positions (MNE fits the
        /// digitised head shape when there is one: pass the origin to match it exactly).
        #[arg(long, value_delimiter = ',', num_args = 1, allow_hyphen_values = true)]
        origin: Option<Vec<f64>>,
    },
    /// Detect flat and noisy data channels (EEG, mag, grad separately) and print them.
    ///
    /// Flat: standard deviation below an absolute limit (EEG 1e-15 V, mag 1e-17 T, grad
    /// 1e-15 T/m) or below --flat-rel × the kind's median. Noisy: robust z-score (median,
    /// 1.4826·MAD) of ln(variance) above --z-thresh, or of the high-frequency ratio (std of
    /// the signal minus its moving average over ~1/--hf-freq seconds, over the total std)
    /// above --hf-z-thresh; defaults as pyprep's deviation and HF-noise criteria. The last
    /// line lists the names, ready for `interpolate-bads --bads`.
    FindBads {
        /// The recording to examine.
        input: PathBuf,
        /// Print JSON (names, reasons, z-scores, parameters) instead of a table.
        #[arg(long)]
        json: bool,
        /// Robust z-score of ln(variance) above which a channel is noisy.
        #[arg(long, default_value_t = 5.0)]
        z_thresh: f64,
        /// Robust z-score of the high-frequency ratio above which a channel is noisy.
        #[arg(long, default_value_t = 5.0)]
        hf_z_thresh: f64,
        /// Frequency in Hz above which power counts as high-frequency noise (skipped when
        /// the sampling rate is not above twice this).
        #[arg(long, default_value_t = 50.0)]
        hf_freq: f64,
        /// Flat when the standard deviation is below this fraction of the kind's median.
        #[arg(long, default_value_t = 1e-3)]
        flat_rel: f64,
    },
    /// Cut a recording into fixed windows or event-locked epochs, as MNE does; OUT: .npy
    /// (float64, kept segments × channels × samples, channels in file order unless --picks).
    ///
    /// Default: windows as `mne.make_fixed_length_epochs(raw, duration=window/sfreq,
    /// overlap=(window-stride)/sfreq, reject_by_annotation=True)`. With --events (stim channel,
    /// as `mne.find_events(raw)`) or --events-tsv (BIDS events.tsv): `mne.Epochs(raw, events,
    /// tmin, tmax, baseline, reject_by_annotation=True)`. Segments overlapping a BAD*
    /// annotation, or running off the data, are dropped as MNE drops them; in addition a
    /// segment in which a good MEG/EEG channel is flat or clipped is dropped (see
    /// bf_pipeline::segment for the thresholds). Prints what was dropped and why.
    Epochs {
        /// The recording to segment.
        input: PathBuf,
        /// Output path (.npy).
        out: PathBuf,
        /// Window length in samples (fixed windows; default 256).
        #[arg(long)]
        window: Option<usize>,
        /// Step between window starts in samples (default: the window).
        #[arg(long)]
        stride: Option<usize>,
        /// Epochs around the events of the stim channel (MNE's find_events defaults).
        #[arg(long)]
        events: bool,
        /// Epochs around the events of a BIDS events.tsv (id: integer `value`, else the rank
        /// of `trial_type`).
        #[arg(long)]
        events_tsv: Option<PathBuf>,
        /// Stim channel(s) for --events (default: STI101, STI 014, else every stim channel).
        #[arg(long, value_delimiter = ',')]
        stim_channel: Vec<String>,
        /// Epoch start relative to the event, seconds.
        #[arg(long, default_value_t = -0.2, allow_negative_numbers = true)]
        tmin: f64,
        /// Epoch end (included), seconds.
        #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
        tmax: f64,
        /// Baseline interval A,B in seconds (None: the epoch's start / end), or `none`.
        #[arg(long, default_value = "None,0", allow_hyphen_values = true)]
        baseline: String,
        /// Keep only events with these ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        event_id: Vec<i64>,
        /// Channels to write: names and/or MNE types, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        picks: Vec<String>,
        /// Apply the recording's SSP projectors first (MNE's Epochs proj=True).
        #[arg(long)]
        proj: bool,
        /// Find flat / clipped stretches on the input's good MEG/EEG channels and add them as
        /// BAD_flat / BAD_clipped annotations before segmenting (meant for raw data).
        #[arg(long)]
        mark_flat_clipped: bool,
        /// Do not drop segments in which a good MEG/EEG channel is flat or clipped.
        #[arg(long)]
        no_reject_flat_clipped: bool,
        /// Flat segment: peak-to-peak below this fraction of the channel's median.
        #[arg(long, default_value_t = 1e-3)]
        flat_rel: f64,
        /// Flat stretch: at least this many seconds of one repeated value.
        #[arg(long, default_value_t = 0.05)]
        flat_min_duration: f64,
        /// Clipped stretch: at least this many seconds at the channel's maximum or minimum.
        #[arg(long, default_value_t = 0.01)]
        clip_min_duration: f64,
        /// Print a JSON summary (every candidate with its drop reason) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the taps of MNE's zero-phase FIR filter as JSON (`mne.filter.create_filter` with
    /// method='fir', fir_window='hamming', fir_design='firwin'; or, with --notch, the kernel
    /// `mne.filter.notch_filter` applies).
    ///
    /// --l-freq alone: high-pass; --h-freq alone: low-pass; l < h: band-pass; l > h: band-stop.
    FilterDesign {
        /// Sampling frequency in Hz.
        #[arg(long)]
        sfreq: f64,
        /// High-pass edge in Hz.
        #[arg(long, allow_negative_numbers = true)]
        l_freq: Option<f64>,
        /// Low-pass edge in Hz.
        #[arg(long, allow_negative_numbers = true)]
        h_freq: Option<f64>,
        /// Transition bandwidth at l_freq in Hz (default: MNE's 'auto').
        #[arg(long, allow_negative_numbers = true)]
        l_trans_bandwidth: Option<f64>,
        /// Transition bandwidth at h_freq in Hz (default: MNE's 'auto').
        #[arg(long, allow_negative_numbers = true)]
        h_trans_bandwidth: Option<f64>,
        /// Filter length in samples (default: MNE's 'auto'; an even length is made odd).
        #[arg(long)]
        filter_length: Option<usize>,
        /// Notch frequencies in Hz (comma-separated), as mne.filter.notch_filter's `freqs`.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        notch: Vec<f64>,
    },
}

/// What to fetch and from where (shared by `ingest` and `download`).
#[derive(clap::Args, Debug)]
struct RemoteArgs {
    /// Only these subjects (comma-separated labels: 01,02).
    #[arg(long, value_delimiter = ',')]
    subjects: Vec<String>,
    /// Only keys matching these globs (relative to the dataset; repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Only these BIDS datatypes (meg, eeg, anat; comma-separated).
    #[arg(long = "datatype", value_delimiter = ',')]
    datatypes: Vec<String>,
    /// S3-compatible endpoint instead of OpenNeuro's (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "BF_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Print the download plan and stop, writing nothing: files, bytes already present
    /// (complete files, .part files to resume) and still to download per subject folder, and
    /// the free space at the destination. Without it the same plan is checked first: when the
    /// free space is below the bytes still to download + 1 % (at least 64 MiB), nothing is
    /// written. Testing aid: BF_FREE_SPACE_BYTES=N replaces the measured free space.
    #[arg(long)]
    dry_run: bool,
}

fn main() {
    let cli = Cli::parse();
    brainformer_cli::init_logging(cli.quiet);
    if let Command::Download { dataset, dest, remote, bucket, retries, json } = cli.command {
        let RemoteArgs { subjects, include, datatypes, s3_endpoint, jobs, dry_run } = remote;
        let selection = bf_pipeline::source::Selection { subjects, include, datatypes };
        let args = commands::download::DownloadArgs { dataset, dest, s3_endpoint, bucket, selection, jobs, retries, json, quiet: cli.quiet, dry_run };
        std::process::exit(commands::download::run(args));
    }
    brainformer_cli::exit_on_error(run(cli.command, cli.quiet));
}

fn run(command: Command, quiet: bool) -> Result<()> {
    match command {
        Command::Tokenize { args } => commands::dag::run(&args, bf_pipeline::dag::Stage::Shards, quiet),
        Command::Preprocess { args } => commands::dag::run(&args, bf_pipeline::dag::Stage::Preprocess, quiet),
        Command::Segment { args } => commands::dag::run(&args, bf_pipeline::dag::Stage::Segment, quiet),
        Command::Plan { args, json } => commands::dag::plan(&args, json),
        Command::Graph { args } => commands::dag::graph(&args),
        Command::Config { args } => commands::dag::config(&args),
        Command::Clean { args, yes } => commands::dag::clean(&args, yes),
        Command::Slurm { args, slurm } => commands::dag::slurm(&args, &slurm),
        Command::Ingest { source, dest, remote, choice, project } => {
            let RemoteArgs { subjects, include, datatypes, s3_endpoint, jobs, dry_run } = remote;
            commands::ingest::run(commands::ingest::IngestArgs { source, dest, subjects, include, datatypes, s3_endpoint, jobs, dry_run, choice, project, quiet })
        }
        // --- Maxwell (issue 14) ---
        Command::Maxwell { input, out, origin, coord_frame, int_order, ext_order, regularize, bad_condition, calibration, cross_talk, st_duration, st_correlation, no_st_overlap, json } => {
            commands::maxwell::run(&input, &out, &commands::maxwell::MaxwellArgs { origin, coord_frame, int_order, ext_order, regularize, bad_condition, calibration, cross_talk, st_duration, st_correlation, st_overlap: !no_st_overlap, json })
        }
        Command::FindBadsMaxwell { input, origin, coord_frame, regularize, calibration, cross_talk, limit, h_freq, duration, min_count, json } => {
            commands::find_bads_maxwell::run(&input, &commands::find_bads_maxwell::FindBadsArgs { origin, coord_frame, regularize, calibration, cross_talk, limit, h_freq, duration, min_count, json })
        }
        // --- end Maxwell ---
        Command::Info { file, json } => commands::info::run(&file, json),
        Command::Convert { file, out, picks, tmin, tmax, proj, fif_format } => {
            commands::convert::run(&file, &out, &picks, tmin, tmax, proj, &fif_format)
        }
        Command::Filter { input, out, l_freq, h_freq, notch, l_trans_bandwidth, h_trans_bandwidth } => {
            let opts = bf_pipeline::dsp::fir::FirOptions { l_trans_bandwidth, h_trans_bandwidth, filter_length: None };
            commands::filter::run(&input, &out, &commands::filter::FilterArgs { l_freq, h_freq, notch, opts })
        }
        Command::PreprocessFile { input, out, l_freq, h_freq, notch, sfreq, exact } => {
            let params = bf_pipeline::clean::CleanParams { l_freq: Some(l_freq), h_freq: Some(h_freq), notch, sfreq: Some(sfreq), exact, ..Default::default() };
            commands::preprocess_file::run(&input, &out, &params, quiet)
        }
        Command::Resample { input, out, sfreq, method } => commands::resample::run(&input, &out, sfreq, method.parse().map_err(anyhow::Error::msg)?),
        Command::InterpolateBads { input, out, bads, origin } => {
            let origin = match origin {
                None => None,
                Some(v) if v.len() == 3 => Some([v[0], v[1], v[2]]),
                Some(v) => anyhow::bail!("--origin takes three numbers X,Y,Z in metres, got {}", v.len()),
            };
            commands::bads::interpolate(&input, &out, &bads, origin)
        }
        Command::FindBads { input, json, z_thresh, hf_z_thresh, hf_freq, flat_rel } => {
            let params = bf_pipeline::bads::BadsParams { z_thresh, hf_z_thresh, hf_freq, flat_rel, ..Default::default() };
            commands::bads::find(&input, &params, json)
        }
        Command::Download { .. } => unreachable!("handled in main for its exit codes"),
        Command::Upload { repo_id, shards, model, metrics, revision, private, commit_message, project, jobs, retries, json } => {
            commands::upload::run(commands::upload::UploadArgs { repo_id, shards, model, metrics, revision, private, commit_message, project, jobs, retries, json, quiet })
        }
        Command::BenchRead { file, windows, window_seconds, seed } => {
            commands::bench_read::run(&file, windows, window_seconds, seed)
        }
        Command::Epochs {
            input, out, window, stride, events, events_tsv, stim_channel, tmin, tmax, baseline, event_id, picks, proj,
            mark_flat_clipped, no_reject_flat_clipped, flat_rel, flat_min_duration, clip_min_duration, json,
        } => {
            let flat = bf_pipeline::segment::FlatClipParams { flat_min_duration, clip_min_duration, flat_rel, ..Default::default() };
            commands::epochs::run(&commands::epochs::EpochsArgs {
                input, out, window, stride, events, events_tsv, stim_channel, tmin, tmax, baseline, event_id, picks, proj,
                mark_flat_clipped, reject_flat_clipped: !no_reject_flat_clipped, flat, json,
            })
        }
        Command::FilterDesign { sfreq, l_freq, h_freq, l_trans_bandwidth, h_trans_bandwidth, filter_length, notch } => {
            commands::filter_design::run(commands::filter_design::FilterDesignArgs { sfreq, l_freq, h_freq, l_trans_bandwidth, h_trans_bandwidth, filter_length, notch })
        }
    }
}

//! Cross-talk compensation (`cross_talk=` of MNE's `maxwell_filter`): Elekta's
//! `ct_sparse.fif` holds a sparse "decoupler" matrix over the MEG channels
//! (`FIFFB_CHANNEL_DECOUPLER` block: `FIFF_DECOUPLER_MATRIX` + channel name list). MNE
//! multiplies the good channels' data by its good × good part before the SSS fit
//! (`_read_ctc` + `_read_cross_talk` + `ctc.dot(data)` in `_run_maxwell_filter`).

use std::path::Path;

use nalgebra::DMatrix;

use super::finecal::clean_names;
use crate::formats::fif::info::split_name_list;
use crate::formats::fif::tag::{be_i32, be_u32, FifFile};
use crate::{Error, Result};

const FIFFB_CHANNEL_DECOUPLER: i32 = 501;
const FIFF_DECOUPLER_MATRIX: i32 = 800;
const FIFF_PROJ_ITEM_CH_NAME_LIST: i32 = 3417;
const FIFFTS_MC_CCS: i32 = 0x0010_0000;
const FIFFTS_MC_RCS: i32 = 0x0020_0000;
const FIFFT_FLOAT: i32 = 4;

/// The decoupler as stored (rows and columns in `ch_names` order), dense.
#[derive(Clone, Debug)]
pub struct CrossTalk {
    pub ch_names: Vec<String>,
    pub decoupler: DMatrix<f64>,
}

pub fn read_cross_talk(path: &Path) -> Result<CrossTalk> {
    let f = FifFile::open(path)?;
    let bad = |what: &str| Error::format(path, "FIF cross-talk", what.to_string());
    let blocks = f.tree.find(FIFFB_CHANNEL_DECOUPLER);
    let node = blocks.first().ok_or_else(|| bad("no channel decoupler block (FIFFB_CHANNEL_DECOUPLER)"))?;
    let me = node.entry(FIFF_DECOUPLER_MATRIX).ok_or_else(|| bad("no decoupler matrix"))?;
    let ne = node.entry(FIFF_PROJ_ITEM_CH_NAME_LIST).ok_or_else(|| bad("no channel name list"))?;
    let ch_names = split_name_list(&f.read_string(ne)?);
    let d = f.read_data(me)?;
    let coding = me.typ & 0x00FF_0000;
    let base = me.typ & 0xFFFF;
    if base != FIFFT_FLOAT || !(coding == FIFFTS_MC_CCS || coding == FIFFTS_MC_RCS) || d.len() < 16 {
        return Err(bad(&format!("decoupler matrix has type {:#x}, expected a sparse float matrix", me.typ)));
    }
    // Trailer: nnz, nrow, ncol, ndim (= 2).
    let t = d.len();
    let ndim = be_i32(&d[t - 4..]);
    if ndim != 2 {
        return Err(bad("decoupler matrix is not 2-D"));
    }
    let nnz = be_i32(&d[t - 16..t - 12]) as usize;
    let nrow = be_i32(&d[t - 12..t - 8]) as usize;
    let ncol = be_i32(&d[t - 8..t - 4]) as usize;
    let nptr = if coding == FIFFTS_MC_CCS { ncol + 1 } else { nrow + 1 };
    if 4 * (2 * nnz + nptr) + 16 > t || nrow != ch_names.len() || ncol != ch_names.len() {
        return Err(bad(&format!("decoupler matrix {nrow}×{ncol} with {nnz} entries does not fit its tag or its {} names", ch_names.len())));
    }
    let vals: Vec<f64> = (0..nnz).map(|i| f32::from_bits(be_u32(&d[4 * i..4 * i + 4])) as f64).collect();
    let idx: Vec<i32> = (0..nnz).map(|i| be_i32(&d[4 * (nnz + i)..4 * (nnz + i) + 4])).collect();
    let ptr: Vec<i32> = (0..nptr).map(|i| be_i32(&d[4 * (2 * nnz + i)..4 * (2 * nnz + i) + 4])).collect();
    if ptr.iter().any(|&p| p < 0 || p as usize > nnz) || ptr.windows(2).any(|w| w[0] > w[1]) {
        // MNE also repairs an old MNE-C byte-order bug here; we refuse such files.
        return Err(bad("decoupler matrix pointers are invalid"));
    }
    let mut m = DMatrix::<f64>::zeros(nrow, ncol);
    for outer in 0..nptr - 1 {
        for k in ptr[outer] as usize..ptr[outer + 1] as usize {
            let inner = idx[k];
            let lim = if coding == FIFFTS_MC_CCS { nrow } else { ncol };
            if inner < 0 || inner as usize >= lim {
                return Err(bad("decoupler matrix index out of range"));
            }
            let (r, c) = if coding == FIFFTS_MC_CCS { (inner as usize, outer) } else { (outer, inner as usize) };
            m[(r, c)] += vals[k];
        }
    }
    Ok(CrossTalk { ch_names, decoupler: m })
}

/// The decoupler restricted to `meg_names` (rows and columns in that order), MNE's
/// `_read_cross_talk`: names are matched as they are, or both sides cleaned of spaces when
/// the first MEG name is not in the file (old vs new Neuromag naming).
pub fn cross_talk_for(path: &Path, ct: &CrossTalk, meg_names: &[String]) -> Result<DMatrix<f64>> {
    let (ctc_names, names) = if ct.ch_names.contains(&meg_names[0]) {
        (ct.ch_names.clone(), meg_names.to_vec())
    } else {
        (clean_names(&ct.ch_names), clean_names(meg_names))
    };
    let mut picks = Vec::with_capacity(names.len());
    for n in &names {
        let i = ctc_names
            .iter()
            .position(|c| c == n)
            .ok_or_else(|| Error::request(path, format!("MEG channel {n} is missing from the cross-talk matrix")))?;
        picks.push(i);
    }
    Ok(DMatrix::from_fn(picks.len(), picks.len(), |i, j| ct.decoupler[(picks[i], picks[j])]))
}

//! BIDS file names: `key-value` entities joined by `_`, then a suffix and an extension
//! (`sub-01_ses-meg_task-facerecognition_run-01_meg.fif`).

use std::path::Path;

/// A parsed BIDS file name. Entities keep their order in the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidsName {
    pub entities: Vec<(String, String)>,
    pub suffix: String,
    /// With the leading dot, possibly double (`.fif.gz`, `.tsv`).
    pub extension: String,
}

impl BidsName {
    /// Parses a file name; `None` when it is not `entities_suffix.ext` with at least `sub`
    /// or (for top-level sidecars) one entity.
    pub fn parse(file_name: &str) -> Option<BidsName> {
        let dot = file_name.find('.')?;
        let (stem, extension) = file_name.split_at(dot);
        let mut parts: Vec<&str> = stem.split('_').collect();
        let suffix = parts.pop()?;
        if suffix.is_empty() || suffix.contains('-') {
            return None;
        }
        let mut entities = Vec::with_capacity(parts.len());
        for p in parts {
            let (k, v) = p.split_once('-')?;
            if k.is_empty() || v.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            entities.push((k.to_string(), v.to_string()));
        }
        Some(BidsName { entities, suffix: suffix.to_string(), extension: extension.to_string() })
    }

    pub fn from_path(path: &Path) -> Option<BidsName> {
        BidsName::parse(path.file_name()?.to_str()?)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entities.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True when every entity of `self` appears in `other` with the same value: the BIDS
    /// inheritance rule for a sidecar (`self`) applying to a data file (`other`).
    pub fn applies_to(&self, other: &BidsName) -> bool {
        self.entities.iter().all(|(k, v)| other.get(k) == Some(v.as_str()))
    }

    /// The entities that identify one run across data types (all but `split`).
    pub fn run_key(&self) -> Vec<(String, String)> {
        self.entities.iter().filter(|(k, _)| k != "split").cloned().collect()
    }

    /// The name with another suffix and extension (`…_meg.fif` → `…_channels.tsv`), without
    /// `split` (sidecars describe the whole recording).
    pub fn with_suffix(&self, suffix: &str, extension: &str) -> String {
        let mut s: Vec<String> = self.entities.iter().filter(|(k, _)| k != "split").map(|(k, v)| format!("{k}-{v}")).collect();
        s.push(suffix.to_string());
        format!("{}{extension}", s.join("_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ds000117_names() {
        let n = BidsName::parse("sub-01_ses-meg_task-facerecognition_run-01_meg.fif").unwrap();
        assert_eq!(n.get("sub"), Some("01"));
        assert_eq!(n.get("run"), Some("01"));
        assert_eq!(n.suffix, "meg");
        assert_eq!(n.extension, ".fif");
        assert_eq!(n.with_suffix("channels", ".tsv"), "sub-01_ses-meg_task-facerecognition_run-01_channels.tsv");
    }

    #[test]
    fn top_level_sidecars_apply_by_subset() {
        let side = BidsName::parse("task-facerecognition_meg.json").unwrap();
        let run = BidsName::parse("sub-02_ses-meg_task-facerecognition_run-03_meg.fif").unwrap();
        assert!(side.applies_to(&run));
        let other = BidsName::parse("task-rest_meg.json").unwrap();
        assert!(!other.applies_to(&run));
    }

    #[test]
    fn rejects_non_bids_names() {
        assert!(BidsName::parse("README").is_none());
        assert!(BidsName::parse("sub-01_ses_meg.fif").is_none());
        assert!(BidsName::parse("sub-01_task-a_meg-x.fif").is_none());
    }

    #[test]
    fn split_files_share_a_run_key() {
        let a = BidsName::parse("sub-01_task-a_split-01_meg.fif").unwrap();
        let b = BidsName::parse("sub-01_task-a_split-02_meg.fif").unwrap();
        assert_eq!(a.run_key(), b.run_key());
        assert_eq!(a.with_suffix("channels", ".tsv"), "sub-01_task-a_channels.tsv");
    }
}

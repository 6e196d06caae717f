//! Linear probing on frozen features (spec §2.1). For now: eval-mode feature extraction.

pub mod features;

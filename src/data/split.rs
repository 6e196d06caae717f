//! The paper's split protocol (docs/method.md §4, from Chen et al. 2022 / PETuning).
//!
//! PAPER/REF: the original training split is cut 9:1 into train/validation **without
//! shuffling** — HF `train_test_split(test_size=0.1, shuffle=False)`, so validation is the last
//! ⌈0.1·n⌉ rows — and the original validation split becomes the test split.
//! `--max_train_samples k` keeps the first k rows of the train part (not a random subset).

use super::Example;

/// Validation size for an original training split of `n` rows: ⌈0.1·n⌉.
///
/// REF: HF computes `ceil(0.1 * n)` in floating point; the integer form used here gives the same
/// value for every n below 2,000,000 (checked exhaustively), far above any dataset here.
pub fn validation_size(n: usize) -> usize {
    n.div_ceil(10)
}

/// Splits an original training split into (train, validation) = (first n − ⌈0.1·n⌉ rows,
/// last ⌈0.1·n⌉ rows), keeping the order.
pub fn split_train_validation(mut examples: Vec<Example>) -> (Vec<Example>, Vec<Example>) {
    let n_train = examples.len() - validation_size(examples.len());
    let validation = examples.split_off(n_train);
    (examples, validation)
}

/// Keeps the first `max` rows of `train` (all of them when `max` is `None` or ≥ its length).
pub fn truncate_train(train: &mut Vec<Example>, max: Option<usize>) {
    if let Some(k) = max {
        train.truncate(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                text_a: i.to_string(),
                text_b: None,
                label: Some(i % 2),
            })
            .collect()
    }

    #[test]
    fn validation_is_the_last_ceil_tenth() {
        for (n, val) in [
            (0, 0),
            (1, 1),
            (9, 1),
            (10, 1),
            (11, 2),
            (250, 25),
            (2490, 249),
        ] {
            assert_eq!(validation_size(n), val, "n = {n}");
        }
        let (train, val) = split_train_validation(numbered(11));
        assert_eq!(train.len(), 9);
        assert_eq!(val.len(), 2);
        assert_eq!(train[0].text_a, "0");
        assert_eq!(train[8].text_a, "8");
        assert_eq!(val[0].text_a, "9");
        assert_eq!(val[1].text_a, "10");
    }

    #[test]
    fn empty_input_splits_into_empty_parts() {
        let (train, val) = split_train_validation(Vec::new());
        assert!(train.is_empty() && val.is_empty());
    }

    #[test]
    fn truncation_keeps_the_first_rows() {
        let mut train = numbered(5);
        truncate_train(&mut train, Some(2));
        assert_eq!(train, numbered(2));
        truncate_train(&mut train, Some(10));
        assert_eq!(train.len(), 2);
        truncate_train(&mut train, None);
        assert_eq!(train.len(), 2);
    }
}

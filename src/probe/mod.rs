//! Linear probing on frozen features (docs/method.md §2.1): eval-mode feature extraction, L2 multinomial
//! logistic regression solved by L-BFGS, and `LogisticRegressionCV`-style cross-validation.

pub mod cv;
pub mod features;
pub mod logreg;

//! Seeded, grouped, stratified train/validation/test splits: every row of a group (e.g. a
//! source report) lands in one split, and each stratum (e.g. a label) is divided in the
//! configured proportions.
//!
//! References: grouped and stratified splitting as described for scikit-learn's
//! `StratifiedGroupKFold`,
//! <https://scikit-learn.org/stable/modules/cross_validation.html#stratifiedgroupkfold>;
//! the Fisher-Yates shuffle (Knuth, *TAOCP* vol. 2, 3.4.2, Algorithm P); bounded random
//! integers by D. Lemire, "Fast Random Integer Generation in an Interval" (2019),
//! <https://arxiv.org/abs/1805.10941>.
//!
//! The shuffle and the bounded integers are implemented here, on top of a ChaCha8 stream whose
//! 32-byte seed is built explicitly, so assignments do not change with `rand`'s internals.

use std::cmp::Reverse;
use std::fmt;
use std::str::FromStr;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use xxhash_rust::xxh3::xxh3_128;

/// Largest allowed distance of the fractions' sum from 1.
pub const FRACTION_SUM_TOLERANCE: f64 = 1e-6;

/// Domain tag mixed into each stratum's ChaCha8 seed.
const SHUFFLE_TAG: &[u8; 8] = b"ctisplit";

/// Errors of split assignment and parsing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// `groups` and `strata` must have one entry per row.
    #[error(
        "groups and strata differ in length: {groups} groups vs {strata} strata; \
         pass one group and one stratum per row"
    )]
    LengthMismatch {
        /// Length of `groups`.
        groups: usize,
        /// Length of `strata`.
        strata: usize,
    },
    /// The split fractions are unusable; every problem found is listed.
    #[error("invalid split config: {}", .problems.join("; "))]
    InvalidConfig {
        /// One message per problem.
        problems: Vec<String>,
    },
    /// A split name other than `train`, `validation` or `test`.
    #[error("unknown split {name:?}; expected \"train\", \"validation\" or \"test\"")]
    UnknownSplit {
        /// The name that was given.
        name: String,
    },
}

/// One of the three dataset splits. Ordered train < validation < test, which is also the
/// tie-break order of the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Rows the model is trained on.
    Train,
    /// Rows for model selection and early stopping.
    Validation,
    /// Held-out rows for the final evaluation.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The split's name: `"train"`, `"validation"` or `"test"` (also its file stem).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = SplitError;

    /// Parses the exact names produced by [`Split::as_str`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Split::ALL
            .into_iter()
            .find(|split| split.as_str() == name)
            .ok_or_else(|| SplitError::UnknownSplit {
                name: name.to_owned(),
            })
    }
}

/// Target fractions of the three splits and the shuffle seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitConfig {
    /// Fraction of each stratum's rows aimed at train.
    pub train: f64,
    /// Fraction of each stratum's rows aimed at validation.
    pub validation: f64,
    /// Fraction of each stratum's rows aimed at test.
    pub test: f64,
    /// Seed of the per-stratum shuffles.
    pub seed: u64,
}

impl Default for SplitConfig {
    /// 80 / 10 / 10 with seed 0.
    fn default() -> Self {
        Self {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
            seed: 0,
        }
    }
}

impl SplitConfig {
    /// The configured fraction of `split`.
    pub fn fraction(&self, split: Split) -> f64 {
        match split {
            Split::Train => self.train,
            Split::Validation => self.validation,
            Split::Test => self.test,
        }
    }

    /// Checks that every fraction is finite and non-negative and that they sum to 1 within
    /// [`FRACTION_SUM_TOLERANCE`], reporting all problems at once.
    ///
    /// # Errors
    /// [`SplitError::InvalidConfig`] listing each bad fraction and a bad sum.
    pub fn validate(&self) -> Result<(), SplitError> {
        let mut problems = Vec::new();
        for split in Split::ALL {
            let fraction = self.fraction(split);
            if !(fraction.is_finite() && fraction >= 0.0) {
                problems.push(format!(
                    "{split} fraction must be finite and >= 0 (got {fraction})"
                ));
            }
        }
        let sum = self.train + self.validation + self.test;
        if problems.is_empty() && (sum - 1.0).abs() > FRACTION_SUM_TOLERANCE {
            problems.push(format!(
                "fractions must sum to 1 (train {} + validation {} + test {} = {sum})",
                self.train, self.validation, self.test
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SplitError::InvalidConfig { problems })
        }
    }
}

/// Assigns every row a split, keeping groups whole and strata proportional.
///
/// `groups[i]` is row `i`'s group (e.g. its source report id): all rows of a group go to the
/// same split, so no report contributes to two splits. `strata[i]` is the row's stratification
/// key (e.g. its label, or `""` when not stratifying). A group's stratum is the most frequent
/// key among its rows, ties going to the smallest key; its other rows count toward it.
///
/// Within each stratum:
/// 1. the groups, sorted by key, are shuffled with ChaCha8 seeded from `config.seed` and the
///    stratum key, so adding or removing a stratum does not reshuffle the others;
/// 2. in that order, each group goes to the split with the largest row deficit (target
///    `fraction * stratum rows` minus rows assigned so far), among splits with a positive
///    fraction; ties go to the earlier split (train, validation, test);
/// 3. if the stratum has at least as many groups as there are positive fractions, a positive
///    split left empty takes the smallest group (the later one in shuffled order on ties) of
///    the split holding the most groups (the earlier split on ties).
///
/// Consequences: a split with fraction 0 gets no rows; a stratum with one group goes to the
/// split with the largest fraction (train for the usual configs); a stratum with fewer groups
/// than positive fractions may leave some splits without it. Proportions are met up to about
/// one group's size per stratum, so small strata with large groups deviate most.
///
/// The result depends only on the set of (group, stratum) rows and the config, not on row
/// order: groups and strata are sorted by key before shuffling.
///
/// # Errors
/// [`SplitError::InvalidConfig`] when [`SplitConfig::validate`] fails;
/// [`SplitError::LengthMismatch`] when `groups` and `strata` differ in length.
pub fn assign(
    groups: &[&str],
    strata: &[&str],
    config: &SplitConfig,
) -> Result<Vec<Split>, SplitError> {
    config.validate()?;
    if groups.len() != strata.len() {
        return Err(SplitError::LengthMismatch {
            groups: groups.len(),
            strata: strata.len(),
        });
    }
    let (group_of_row, infos) = collect_groups(groups, strata);
    let split_of_group = assign_groups(&infos, config);
    Ok(group_of_row
        .into_iter()
        .map(|group| split_of_group[group])
        .collect())
}

/// A group, its stratum and its row count.
#[derive(Debug, PartialEq)]
struct GroupInfo<'a> {
    key: &'a str,
    stratum: &'a str,
    rows: usize,
}

/// Group id of every row, and the groups sorted by key.
fn collect_groups<'a>(groups: &[&'a str], strata: &[&'a str]) -> (Vec<usize>, Vec<GroupInfo<'a>>) {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_unstable_by_key(|&row| (groups[row], strata[row]));
    let mut group_of_row = vec![0; groups.len()];
    let mut infos = Vec::new();
    for rows in order.chunk_by(|&a, &b| groups[a] == groups[b]) {
        let id = infos.len();
        let mut stratum = ("", 0);
        // Keys come in ascending order, so a strict `>` keeps the smallest key on ties.
        for run in rows.chunk_by(|&a, &b| strata[a] == strata[b]) {
            if run.len() > stratum.1 {
                stratum = (strata[run[0]], run.len());
            }
            run.iter().for_each(|&row| group_of_row[row] = id);
        }
        infos.push(GroupInfo {
            key: groups[rows[0]],
            stratum: stratum.0,
            rows: rows.len(),
        });
    }
    (group_of_row, infos)
}

/// Split of every group (indexed like `infos`, which is sorted by key).
fn assign_groups(infos: &[GroupInfo<'_>], config: &SplitConfig) -> Vec<Split> {
    let mut by_stratum: Vec<usize> = (0..infos.len()).collect();
    // Stable: within a stratum, groups stay sorted by key.
    by_stratum.sort_by_key(|&group| infos[group].stratum);
    let mut out = vec![Split::Train; infos.len()];
    for members in by_stratum.chunk_by(|&a, &b| infos[a].stratum == infos[b].stratum) {
        let mut members = members.to_vec();
        let mut rng = stratum_rng(config.seed, infos[members[0]].stratum);
        shuffle(&mut members, &mut rng);
        let sizes: Vec<usize> = members.iter().map(|&group| infos[group].rows).collect();
        for (group, split) in members.into_iter().zip(split_stratum(&sizes, config)) {
            out[group] = split;
        }
    }
    out
}

/// Splits one stratum's groups, given in shuffled order by their row counts.
fn split_stratum(sizes: &[usize], config: &SplitConfig) -> Vec<Split> {
    let total = sizes.iter().sum::<usize>() as f64;
    let targets = Split::ALL.map(|split| config.fraction(split) * total);
    let mut filled = [0_usize; 3];
    let mut out: Vec<Split> = sizes
        .iter()
        .map(|&size| {
            let split = largest_deficit(&targets, &filled, config);
            filled[split.index()] += size;
            split
        })
        .collect();
    fill_empty_splits(&mut out, sizes, config);
    out
}

/// The positive-fraction split furthest below its target; ties go to the earlier split.
fn largest_deficit(targets: &[f64; 3], filled: &[usize; 3], config: &SplitConfig) -> Split {
    let mut best: Option<(Split, f64)> = None;
    for split in Split::ALL
        .into_iter()
        .filter(|&split| config.fraction(split) > 0.0)
    {
        let deficit = targets[split.index()] - filled[split.index()] as f64;
        if best.is_none_or(|(_, most)| deficit > most) {
            best = Some((split, deficit));
        }
    }
    // Validated fractions sum to 1, so some fraction is positive.
    best.map_or(Split::Train, |(split, _)| split)
}

/// Rule 3 of [`assign`]: gives every positive split a group when there are enough groups.
fn fill_empty_splits(out: &mut [Split], sizes: &[usize], config: &SplitConfig) {
    let positive: Vec<Split> = Split::ALL
        .into_iter()
        .filter(|&split| config.fraction(split) > 0.0)
        .collect();
    if out.len() < positive.len() {
        return;
    }
    for &empty in &positive {
        let count = |split: Split| out.iter().filter(|&&s| s == split).count();
        if count(empty) > 0 {
            continue;
        }
        // Pigeonhole: with at least as many groups as positive splits and one of them empty,
        // the fullest split holds two or more groups, so it stays non-empty.
        let Some(donor) = positive
            .iter()
            .copied()
            .max_by_key(|&split| (count(split), Reverse(split)))
        else {
            return;
        };
        let smallest = (0..out.len())
            .filter(|&group| out[group] == donor)
            .min_by_key(|&group| (sizes[group], Reverse(group)));
        if let Some(group) = smallest {
            out[group] = empty;
        }
    }
}

/// ChaCha8 seeded with `seed` (8 bytes, little endian), XXH3-128 of the stratum key (16 bytes,
/// little endian) and a domain tag (8 bytes).
fn stratum_rng(seed: u64, stratum: &str) -> ChaCha8Rng {
    let mut bytes = [0_u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..24].copy_from_slice(&xxh3_128(stratum.as_bytes()).to_le_bytes());
    bytes[24..].copy_from_slice(SHUFFLE_TAG);
    ChaCha8Rng::from_seed(bytes)
}

/// Fisher-Yates shuffle.
fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    for last in (1..items.len()).rev() {
        let pick = below(rng, last as u64 + 1) as usize;
        items.swap(last, pick);
    }
}

/// A uniform integer in `0..bound` (`bound > 0`) by Lemire's multiply-and-reject method.
fn below(rng: &mut impl RngCore, bound: u64) -> u64 {
    let reject_below = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if product as u64 >= reject_below {
            return (product >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Seeded random rows: `(group, stratum)` pairs. Each group has a home stratum that most of
    /// its rows carry; some rows carry a random other stratum.
    fn random_rows(rows: usize, groups: u64, strata: u64, seed: u64) -> Vec<(String, String)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows)
            .map(|_| {
                let group = rng.next_u64() % groups;
                let stratum = if rng.next_u64() % 10 == 0 {
                    rng.next_u64() % strata
                } else {
                    group % strata
                };
                (format!("report-{group}"), format!("T{stratum:04}"))
            })
            .collect()
    }

    fn assign_rows(rows: &[(String, String)], config: &SplitConfig) -> Vec<Split> {
        let groups: Vec<&str> = rows.iter().map(|(g, _)| g.as_str()).collect();
        let strata: Vec<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
        assign(&groups, &strata, config).expect("valid input")
    }

    /// Split of every group; panics if a group spans two splits.
    fn split_of_groups(rows: &[(String, String)], splits: &[Split]) -> HashMap<String, Split> {
        let mut seen = HashMap::new();
        for ((group, _), &split) in rows.iter().zip(splits) {
            let first = *seen.entry(group.clone()).or_insert(split);
            assert_eq!(first, split, "group {group} is in {first} and {split}");
        }
        seen
    }

    #[test]
    fn split_names_round_trip() {
        for split in Split::ALL {
            assert_eq!(split.as_str().parse::<Split>(), Ok(split));
            assert_eq!(split.to_string(), split.as_str());
        }
        assert_eq!(Split::Validation.as_str(), "validation");
        let error = "valid".parse::<Split>().expect_err("not a split name");
        assert!(error.to_string().contains("unknown split \"valid\""));
        assert!(Split::Train < Split::Validation && Split::Validation < Split::Test);
    }

    #[test]
    fn bad_fractions_are_rejected() {
        assert_eq!(SplitConfig::default().validate(), Ok(()));
        let config = |train, validation, test| SplitConfig {
            train,
            validation,
            test,
            seed: 0,
        };
        assert!(config(1.0, 0.0, 0.0).validate().is_ok());
        assert!(config(0.7, 0.2, 0.1 + 5e-7).validate().is_ok());
        assert!(config(0.8, 0.1, 0.2).validate().is_err());
        assert!(config(1.2, -0.1, -0.1).validate().is_err());
        assert!(config(f64::NAN, 0.5, 0.5).validate().is_err());
        assert!(config(f64::INFINITY, 0.0, 0.0).validate().is_err());
        let Err(SplitError::InvalidConfig { problems }) = config(1.2, -0.1, -0.1).validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let error = assign(&["a"], &["x"], &config(0.5, 0.5, 0.5)).expect_err("sum is 1.5");
        assert!(error.to_string().contains("sum to 1"), "{error}");
    }

    #[test]
    fn length_mismatch_names_both_lengths() {
        let error = assign(&["a", "b", "c"], &["x"], &SplitConfig::default()).expect_err("lengths");
        assert_eq!(
            error,
            SplitError::LengthMismatch {
                groups: 3,
                strata: 1
            }
        );
        assert!(error.to_string().contains("3 groups vs 1 strata"));
        assert_eq!(assign(&[], &[], &SplitConfig::default()), Ok(vec![]));
    }

    #[test]
    fn group_stratum_is_most_frequent_key_with_smallest_on_ties() {
        let (rows, infos) =
            collect_groups(&["g2", "g1", "g2", "g1", "g1"], &["b", "z", "a", "z", "y"]);
        assert_eq!(rows, [1, 0, 1, 0, 0]);
        assert_eq!(
            infos[0],
            GroupInfo {
                key: "g1",
                stratum: "z",
                rows: 3
            }
        );
        assert_eq!(
            infos[1],
            GroupInfo {
                key: "g2",
                stratum: "a",
                rows: 2
            }
        );
    }

    #[test]
    fn groups_never_cross_splits_and_strata_are_proportional() {
        let rows = random_rows(10_000, 500, 20, 42);
        let splits = assign_rows(&rows, &SplitConfig::default());
        let by_group = split_of_groups(&rows, &splits);
        assert_eq!(by_group.len(), 500);

        // Rows per split within each group's home stratum (group id modulo 20).
        let mut counts: HashMap<u64, [usize; 3]> = HashMap::new();
        for ((group, _), split) in rows.iter().zip(&splits) {
            let id: u64 = group["report-".len()..].parse().expect("numeric id");
            counts.entry(id % 20).or_default()[split.index()] += 1;
        }
        for (stratum, count) in counts {
            let total: usize = count.iter().sum();
            assert!(
                count.iter().all(|&c| c > 0),
                "stratum {stratum} misses a split: {count:?}"
            );
            let train = count[0] as f64 / total as f64;
            assert!((train - 0.8).abs() < 0.06, "stratum {stratum}: {count:?}");
        }
        let train = splits.iter().filter(|&&s| s == Split::Train).count() as f64 / 10_000.0;
        assert!((train - 0.8).abs() < 0.02, "overall train fraction {train}");
    }

    #[test]
    fn large_strata_meet_their_fractions() {
        // Two strata of 400 groups with 1 to 8 rows each.
        let mut rows = Vec::new();
        for group in 0..800 {
            for _ in 0..=(group * 7 % 8) {
                rows.push((format!("g{group}"), format!("s{}", group % 2)));
            }
        }
        let config = SplitConfig {
            train: 0.7,
            validation: 0.2,
            test: 0.1,
            seed: 9,
        };
        let splits = assign_rows(&rows, &config);
        split_of_groups(&rows, &splits);
        for stratum in ["s0", "s1"] {
            let in_stratum: Vec<Split> = rows
                .iter()
                .zip(&splits)
                .filter(|((_, s), _)| s == stratum)
                .map(|(_, &split)| split)
                .collect();
            for split in Split::ALL {
                let share = in_stratum.iter().filter(|&&s| s == split).count() as f64
                    / in_stratum.len() as f64;
                let error = (share - config.fraction(split)).abs();
                assert!(error < 0.01, "{stratum} {split}: {share}");
            }
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let rows = random_rows(2_000, 200, 5, 1);
        let config = SplitConfig::default();
        let first = assign_rows(&rows, &config);
        assert_eq!(first, assign_rows(&rows, &config));
        let reseeded = assign_rows(&rows, &SplitConfig { seed: 1, ..config });
        assert_ne!(first, reseeded);
    }

    #[test]
    fn row_order_does_not_matter() {
        let rows = random_rows(3_000, 300, 7, 2);
        let config = SplitConfig::default();
        let splits = assign_rows(&rows, &config);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        shuffle(&mut order, &mut ChaCha8Rng::seed_from_u64(77));
        let permuted: Vec<(String, String)> = order.iter().map(|&i| rows[i].clone()).collect();
        let permuted_splits = assign_rows(&permuted, &config);
        for (position, &row) in order.iter().enumerate() {
            assert_eq!(permuted_splits[position], splits[row]);
        }
    }

    #[test]
    fn adding_a_stratum_keeps_the_others() {
        let rows = random_rows(2_000, 200, 4, 3);
        let config = SplitConfig::default();
        let before = split_of_groups(&rows, &assign_rows(&rows, &config));
        let mut more = rows.clone();
        more.extend((0..300).map(|i| (format!("new-{}", i % 40), "T9999".to_owned())));
        let after = split_of_groups(&more, &assign_rows(&more, &config));
        for (group, split) in before {
            assert_eq!(after[&group], split, "{group}");
        }
    }

    #[test]
    fn zero_fractions_get_nothing() {
        let rows = random_rows(2_000, 200, 5, 4);
        let no_validation = SplitConfig {
            train: 0.9,
            validation: 0.0,
            test: 0.1,
            seed: 0,
        };
        let splits = assign_rows(&rows, &no_validation);
        assert!(!splits.contains(&Split::Validation));
        assert!(splits.contains(&Split::Test));
        let only_train = SplitConfig {
            train: 1.0,
            validation: 0.0,
            test: 0.0,
            seed: 0,
        };
        assert!(
            assign_rows(&rows, &only_train)
                .iter()
                .all(|&s| s == Split::Train)
        );
    }

    #[test]
    fn small_strata_rules() {
        let config = SplitConfig::default();
        // One group: the largest fraction, train.
        assert_eq!(
            assign(&["r1", "r1"], &["a", "a"], &config),
            Ok(vec![Split::Train; 2])
        );
        // With train at 0, a single group goes to the largest remaining fraction.
        let no_train = SplitConfig {
            train: 0.0,
            validation: 0.3,
            test: 0.7,
            seed: 0,
        };
        assert_eq!(assign(&["r1"], &["a"], &no_train), Ok(vec![Split::Test]));
        // Three groups and three positive fractions: one group each.
        let mut splits = assign(&["r1", "r2", "r3"], &["a"; 3], &config).expect("valid");
        splits.sort();
        assert_eq!(splits, Split::ALL);
        // Greedy alone would put these 10 equal groups all in train at 98 / 1 / 1.
        let groups: Vec<String> = (0..10).map(|g| format!("r{g}")).collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let skewed = SplitConfig {
            train: 0.98,
            validation: 0.01,
            test: 0.01,
            seed: 5,
        };
        let splits = assign(&groups, &["a"; 10], &skewed).expect("valid");
        assert_eq!(splits.iter().filter(|&&s| s == Split::Train).count(), 8);
    }

    #[test]
    fn bounded_integers_are_uniform_and_in_range() {
        let mut rng = stratum_rng(0, "");
        let mut counts = [0_usize; 6];
        for _ in 0..60_000 {
            counts[below(&mut rng, 6) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(below(&mut rng, 1), 0);
    }
}

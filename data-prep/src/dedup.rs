//! Exact and near-duplicate detection for text rows: MinHash signatures over word shingles,
//! with locality-sensitive hashing (LSH) banding to find candidate pairs.
//!
//! References: A. Broder, "On the resemblance and containment of documents" (1997),
//! <https://doi.org/10.1109/SEQUEN.1997.666900>; J. Leskovec, A. Rajaraman and J. Ullman,
//! *Mining of Massive Datasets*, chapter 3 "Finding Similar Items", <http://www.mmds.org/>.
//!
//! [`near_duplicates`] runs in four stages:
//! 1. (parallel) normalise every text, hash it for exact matching and compute its signature;
//! 2. group exact duplicates by sorting their hashes;
//! 3. (parallel, one task per band) sort band hashes, so that texts sharing a band form a bucket;
//! 4. (sequential, in index order) compare each text with the kept texts of its buckets.
//!
//! Stages 1 and 3 write results by position and stages 2 and 3 sort on total keys, so the output
//! does not depend on the number of rayon threads. Nothing depends on `RandomState`: hashes are
//! XXH3 (seed 0) and permutation parameters come from a ChaCha8 stream with a fixed seed layout.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

/// How many kept texts one LSH bucket remembers. Later kept texts sharing the bucket are still
/// compared with these, but are not stored in it; they stay findable through their other bands.
/// This bounds the work per text when many distinct texts share one band (templated sentences).
pub const MAX_KEPT_PER_BUCKET: usize = 32;

/// An index no text has: marks a signature that was not loaded, and bounds the text count.
const NO_RUN: u32 = u32::MAX;

/// Domain tag mixed into the ChaCha8 seed of the permutation parameters.
const PERMUTATION_TAG: &[u8; 8] = b"minhash1";

/// Errors of near-duplicate detection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DedupError {
    /// The MinHash configuration is unusable; every problem found is listed.
    #[error("invalid minhash config: {}", .problems.join("; "))]
    InvalidConfig {
        /// One message per bad field.
        problems: Vec<String>,
    },
    /// The signature spill file could not be written or read back.
    #[error("near-duplicate spill file {path}: {message}")]
    Spill {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// More texts than 32-bit row indices can address.
    #[error(
        "too many texts for near-duplicate detection: {count} (at most {max}); split the input"
    )]
    TooManyTexts {
        /// Number of texts passed.
        count: usize,
        /// Largest supported number of texts.
        max: usize,
    },
}

/// Normalises text for de-duplication: lowercase, every run of whitespace collapsed to one
/// space, leading and trailing whitespace removed.
///
/// This is the normalisation named in `datasets/SOURCES.md` (lowercasing plus collapsing
/// whitespace), i.e. Python's `" ".join(text.lower().split())`: whitespace is Unicode
/// `White_Space` plus the separators U+001C..U+001F, which Python's `str.split` also splits on.
/// Results can differ from Python only where the two use different Unicode versions.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

/// Stable 64-bit key of `normalize(text)`: XXH3-64 with seed 0 over its UTF-8 bytes, the same on
/// every machine and run. Texts with equal keys are treated as exact duplicates; two different
/// normalised texts collide with probability about 2^-64 per pair.
pub fn exact_key(text: &str) -> u64 {
    xxh3_64(normalize(text).as_bytes())
}

/// MinHash and LSH banding parameters of [`near_duplicates`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinHashConfig {
    /// Signature length: number of hash permutations.
    pub num_perm: usize,
    /// Number of LSH bands; must divide `num_perm`. Each band has `num_perm / bands` rows.
    pub bands: usize,
    /// Words per shingle. Texts with fewer words form a single shingle of all their words.
    pub shingle_words: usize,
    /// Smallest estimated Jaccard similarity, in (0, 1], at which two texts are near duplicates.
    pub threshold: f64,
    /// Seed of the hash permutations; signatures are comparable only under the same seed.
    pub seed: u64,
}

impl Default for MinHashConfig {
    /// 128 permutations in 16 bands of 8 rows, word bigrams, threshold 0.8, seed 0.
    ///
    /// - Bigrams: CTI rows are sentences of 10 to 60 words. Substituting one interior word of an
    ///   `n`-word text changes `k` of its `k`-word shingles, so the true Jaccard similarity is
    ///   `(n - 2k + 1) / (n + 1)`. For 30 words that is 0.87 with bigrams but 0.81 with 3-grams
    ///   and 0.68 with 5-grams, so only bigrams keep a one-word edit clearly above 0.8, while
    ///   still telling apart sentences that only reorder the same words.
    /// - 128 permutations give a standard error of the estimate of at most 0.044, and 0.035 at a
    ///   similarity of 0.8.
    /// - 16 bands of 8 rows put the S-curve threshold `(1/16)^(1/8)` at 0.71, a little below
    ///   the threshold to favour recall: a pair is a candidate with probability
    ///   `1 - (1 - s^8)^16`, which is 0.95 at s = 0.8, 0.994 at 0.85 and 0.06 at 0.5. Candidates
    ///   are then confirmed against the threshold on their full signatures.
    fn default() -> Self {
        Self {
            num_perm: 128,
            bands: 16,
            shingle_words: 2,
            threshold: 0.8,
            seed: 0,
        }
    }
}

impl MinHashConfig {
    /// Checks every field and reports all problems at once.
    ///
    /// # Errors
    /// [`DedupError::InvalidConfig`] when `num_perm`, `bands` or `shingle_words` is zero, when
    /// `bands` does not divide `num_perm`, or when `threshold` is not in (0, 1].
    pub fn validate(&self) -> Result<(), DedupError> {
        let mut problems = Vec::new();
        if self.num_perm == 0 {
            problems.push("num_perm must be at least 1 (got 0)".to_owned());
        }
        if self.bands == 0 {
            problems.push("bands must be at least 1 (got 0)".to_owned());
        } else if !self.num_perm.is_multiple_of(self.bands) {
            problems.push(format!(
                "bands ({}) must divide num_perm ({}); pick a divisor of num_perm",
                self.bands, self.num_perm
            ));
        }
        if self.shingle_words == 0 {
            problems.push("shingle_words must be at least 1 (got 0)".to_owned());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            problems.push(format!(
                "threshold must be in (0, 1] (got {})",
                self.threshold
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DedupError::InvalidConfig { problems })
        }
    }

    /// Rows (signature positions) per band: `num_perm / bands`, or 0 when `bands` is 0.
    pub fn rows_per_band(&self) -> usize {
        self.num_perm.checked_div(self.bands).unwrap_or(0)
    }

    /// Probability that two texts of true Jaccard similarity `similarity` share at least one
    /// band and so become a candidate pair: `1 - (1 - s^r)^b`.
    pub fn candidate_probability(&self, similarity: f64) -> f64 {
        let rows = i32::try_from(self.rows_per_band()).unwrap_or(i32::MAX);
        let bands = i32::try_from(self.bands).unwrap_or(i32::MAX);
        1.0 - (1.0 - similarity.powi(rows)).powi(bands)
    }
}

/// Computes MinHash signatures: one XXH3 hash per shingle, then `num_perm` universal hash
/// functions `h(x) = ((a * x + b) mod 2^64) >> 32` (Dietzfelbinger's multiply-add-shift, strongly
/// universal for the 32-bit key `x` taken from the shingle hash), keeping each function's minimum.
#[derive(Debug, Clone)]
pub struct MinHasher {
    /// Multipliers `a`, one per permutation.
    mul: Vec<u64>,
    /// Offsets `b`, one per permutation.
    add: Vec<u64>,
    shingle_words: usize,
}

impl MinHasher {
    /// Draws the permutation parameters from ChaCha8 seeded with `config.seed`. Parameters are
    /// drawn in order, so the first `k` permutations are the same for every `num_perm >= k`.
    ///
    /// # Errors
    /// [`DedupError::InvalidConfig`] when [`MinHashConfig::validate`] fails.
    pub fn new(config: &MinHashConfig) -> Result<Self, DedupError> {
        config.validate()?;
        let mut seed = [0_u8; 32];
        seed[..8].copy_from_slice(&config.seed.to_le_bytes());
        seed[24..].copy_from_slice(PERMUTATION_TAG);
        let mut rng = ChaCha8Rng::from_seed(seed);
        let (mut mul, mut add) = (Vec::new(), Vec::new());
        for _ in 0..config.num_perm {
            mul.push(rng.next_u64());
            add.push(rng.next_u64());
        }
        Ok(Self {
            mul,
            add,
            shingle_words: config.shingle_words,
        })
    }

    /// Signature length (`num_perm`).
    pub fn num_perm(&self) -> usize {
        self.mul.len()
    }

    /// MinHash signature of `normalize(text)`; every value is below 2^32. A text without words
    /// has no shingles, and its signature is all `u32::MAX`.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let mut sig = vec![u32::MAX; self.num_perm()];
        let mut scratch = Scratch::default();
        normalize_into(text, &mut scratch.text);
        self.fill(&mut scratch, &mut sig);
        sig.into_iter().map(u64::from).collect()
    }

    /// Lowers `sig` (initially all `u32::MAX`) to the signature of the normalised text in
    /// `scratch.text`. Returns whether the text had any shingle.
    fn fill(&self, scratch: &mut Scratch, sig: &mut [u32]) -> bool {
        let Scratch { text, words } = scratch;
        words.clear();
        // The text is normalised: words are separated by exactly one space.
        let mut offset = 0;
        for word in text.split(' ') {
            if !word.is_empty() {
                words.push((offset, offset + word.len()));
            }
            offset += word.len() + 1;
        }
        if words.is_empty() {
            return false;
        }
        let span = self.shingle_words.min(words.len());
        for window in words.windows(span) {
            let (first, last) = (window[0].0, window[span - 1].1);
            // Low 32 bits of XXH3 as the key of the multiply-add-shift family.
            let key = u64::from(xxh3_64(&text.as_bytes()[first..last]) as u32);
            for ((slot, &a), &b) in sig.iter_mut().zip(&self.mul).zip(&self.add) {
                let value = (a.wrapping_mul(key).wrapping_add(b) >> 32) as u32;
                *slot = (*slot).min(value);
            }
        }
        true
    }
}

/// Estimated Jaccard similarity of the sets behind two signatures: the fraction of positions
/// where they agree. Signatures of different lengths are compared over their common prefix
/// (valid for [`MinHasher`]s with the same seed); an empty comparison gives 0.
pub fn jaccard_estimate(a: &[u64], b: &[u64]) -> f64 {
    let len = a.len().min(b.len());
    if len == 0 {
        return 0.0;
    }
    let agree = a.iter().zip(b).filter(|(x, y)| x == y).count();
    agree as f64 / len as f64
}

/// Finds exact and near duplicates, processing texts greedily in index order.
///
/// For each text `i` the result is `Some(j)`, `j < i`, when text `i` duplicates the earlier
/// *kept* text `j`, and `None` when text `i` is kept. A text is kept when it matches no earlier
/// kept text; duplicates never represent anything, so each duplicate points straight at a kept
/// text and chains do not form (a text similar only to a duplicate is kept).
///
/// - Texts whose [`normalize`]d forms are equal are always duplicates, of the kept text that the
///   first of them is (or points to).
/// - Otherwise candidates are the kept texts sharing an LSH band with text `i` (at most
///   [`MAX_KEPT_PER_BUCKET`] per bucket). A candidate matches when [`jaccard_estimate`] of the
///   two signatures is at least `config.threshold`; among matches the highest estimate wins,
///   then the smallest index.
/// - Texts without words are kept unless they are exact duplicates of an earlier empty text.
///
/// The result is deterministic for given texts and config, whatever rayon's thread count.
/// This holds every signature in memory; [`NearDuplicateFinder`] takes texts in batches and
/// can keep signatures on disk.
///
/// # Errors
/// [`DedupError::InvalidConfig`] for a bad config; [`DedupError::TooManyTexts`] for 2^32 - 1
/// texts or more.
pub fn near_duplicates(
    texts: &[&str],
    config: &MinHashConfig,
) -> Result<Vec<Option<usize>>, DedupError> {
    let mut finder = NearDuplicateFinder::new(config, None)?;
    finder.add(texts)?;
    finder.finish()
}

/// [`near_duplicates`] for texts that arrive in batches: [`NearDuplicateFinder::add`] them in
/// order and [`NearDuplicateFinder::finish`] gives the same answer as one call over all of
/// them.
///
/// Each text keeps 9 bytes in memory (its exact key and whether it has words). Its band
/// hashes (`8 * bands` bytes) and full signature (`4 * num_perm` bytes) go to spill files
/// when a spill path is given, else to memory. `finish` builds one band's buckets at a time
/// (about 30 bytes per text while it does) and reads back only the signatures of texts
/// that share a bucket with another text.
pub struct NearDuplicateFinder {
    hasher: MinHasher,
    config: MinHashConfig,
    /// [`exact_key`] of every text.
    exact: Vec<u64>,
    /// Whether the text has at least one word.
    has_words: Vec<bool>,
    /// Per band: every text's band hash, 8 bytes each.
    band_hashes: Vec<Records>,
    /// Every text's signature, `4 * num_perm` bytes each.
    signatures: Records,
}

/// Fixed-size records appended in order and read back once, in memory or through a file.
enum Records {
    Memory(Vec<u8>),
    File {
        path: std::path::PathBuf,
        writer: std::io::BufWriter<std::fs::File>,
    },
}

impl Records {
    fn new(path: Option<std::path::PathBuf>, buffer: usize) -> Result<Self, DedupError> {
        Ok(match path {
            None => Records::Memory(Vec::new()),
            Some(path) => {
                let file = std::fs::File::create(&path).map_err(|e| spill_error(&path, &e))?;
                Records::File {
                    path,
                    writer: std::io::BufWriter::with_capacity(buffer, file),
                }
            }
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), DedupError> {
        use std::io::Write;
        match self {
            Records::Memory(all) => all.extend_from_slice(bytes),
            Records::File { path, writer } => {
                writer.write_all(bytes).map_err(|e| spill_error(path, &e))?;
            }
        }
        Ok(())
    }

    /// Calls `each(index, record)` for the `count` records of `size` bytes, in order, and
    /// frees them (a spill file is removed).
    fn replay(
        self,
        size: usize,
        count: usize,
        mut each: impl FnMut(usize, &[u8]),
    ) -> Result<(), DedupError> {
        match self {
            Records::Memory(all) => {
                all.chunks_exact(size)
                    .take(count)
                    .enumerate()
                    .for_each(|(i, r)| each(i, r));
                Ok(())
            }
            Records::File { path, writer } => {
                use std::io::Read;
                let result = writer
                    .into_inner()
                    .map_err(|e| std::io::Error::other(e.error().to_string()))
                    .and_then(|file| {
                        drop(file);
                        let file = std::fs::File::open(&path)?;
                        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
                        let mut record = vec![0_u8; size];
                        for index in 0..count {
                            reader.read_exact(&mut record)?;
                            each(index, &record);
                        }
                        Ok(())
                    });
                let _ = std::fs::remove_file(&path);
                result.map_err(|e| spill_error(&path, &e))
            }
        }
    }
}

impl NearDuplicateFinder {
    /// A finder for `config`. With `spill`, signatures are written to that file and band
    /// hashes to `<spill>.band<k>` files (created or truncated, and removed by
    /// [`finish`](Self::finish)) instead of being kept in memory.
    ///
    /// # Errors
    /// [`DedupError::InvalidConfig`] for a bad config; [`DedupError::Spill`] when a spill
    /// file cannot be created.
    pub fn new(
        config: &MinHashConfig,
        spill: Option<&std::path::Path>,
    ) -> Result<Self, DedupError> {
        let hasher = MinHasher::new(config)?;
        let signatures = Records::new(spill.map(std::path::Path::to_path_buf), 1 << 20)?;
        let band_hashes = (0..config.bands)
            .map(|band| {
                let path = spill.map(|p| {
                    let mut name = p.as_os_str().to_owned();
                    name.push(format!(".band{band}"));
                    std::path::PathBuf::from(name)
                });
                Records::new(path, 1 << 16)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            hasher,
            config: *config,
            exact: Vec::new(),
            has_words: Vec::new(),
            band_hashes,
            signatures,
        })
    }

    /// Texts added so far.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// Whether no text was added.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Sketches the next texts (on every core) and records them after those already added.
    ///
    /// # Errors
    /// [`DedupError::TooManyTexts`] past 2^32 - 2 texts; [`DedupError::Spill`] when a spill
    /// file cannot be written.
    pub fn add(&mut self, texts: &[&str]) -> Result<(), DedupError> {
        let max = NO_RUN as usize - 1;
        if self.len() + texts.len() > max {
            return Err(DedupError::TooManyTexts {
                count: self.len() + texts.len(),
                max,
            });
        }
        let (num_perm, bands) = (self.hasher.num_perm(), self.config.bands);
        let rows = self.config.rows_per_band();
        let mut exact = vec![0_u64; texts.len()];
        let mut has_words = vec![false; texts.len()];
        let mut sigs = vec![u32::MAX; texts.len() * num_perm];
        let mut band_hashes = vec![0_u64; texts.len() * bands];
        let hasher = &self.hasher;
        sigs.par_chunks_mut(num_perm)
            .zip(band_hashes.par_chunks_mut(bands))
            .zip(exact.par_iter_mut())
            .zip(has_words.par_iter_mut())
            .zip(texts.par_iter())
            .for_each_init(
                || (Scratch::default(), Vec::new()),
                |(scratch, bytes), ((((sig, band_hash), key), words), text)| {
                    normalize_into(text, &mut scratch.text);
                    *key = xxh3_64(scratch.text.as_bytes());
                    *words = hasher.fill(scratch, sig);
                    for (band, slot) in band_hash.iter_mut().enumerate() {
                        bytes.clear();
                        for value in &sig[band * rows..(band + 1) * rows] {
                            bytes.extend_from_slice(&value.to_le_bytes());
                        }
                        *slot = xxh3_64(bytes);
                    }
                },
            );
        self.exact.extend_from_slice(&exact);
        self.has_words.extend_from_slice(&has_words);
        for (band, records) in self.band_hashes.iter_mut().enumerate() {
            let bytes: Vec<u8> = band_hashes
                .iter()
                .skip(band)
                .step_by(bands)
                .flat_map(|h| h.to_le_bytes())
                .collect();
            records.append(&bytes)?;
        }
        let bytes: Vec<u8> = sigs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.signatures.append(&bytes)
    }

    /// The duplicates among every text added, as [`near_duplicates`] defines them.
    ///
    /// # Errors
    /// [`DedupError::Spill`] when a spill file cannot be read back.
    pub fn finish(self) -> Result<Vec<Option<usize>>, DedupError> {
        let Self {
            hasher,
            config,
            exact,
            has_words,
            band_hashes,
            signatures,
        } = self;
        let count = exact.len();
        let first_of = first_occurrences(&exact);
        drop(exact);
        let mut bands = Vec::with_capacity(config.bands);
        let mut needed = vec![false; count];
        for records in band_hashes {
            let mut hashes = Vec::with_capacity(count);
            records.replay(8, count, |_, r| {
                let mut b = [0_u8; 8];
                b.copy_from_slice(r);
                hashes.push(u64::from_le_bytes(b));
            })?;
            let band = BandIndex::build(&hashes, &first_of, &has_words);
            for &index in band.run_of.keys() {
                needed[index as usize] = true;
            }
            bands.push(band);
        }
        drop(has_words);
        let sigs = Signatures::load(signatures, &needed, hasher.num_perm())?;
        Ok(greedy_clusters(
            &sigs,
            &first_of,
            &needed,
            &mut bands,
            config.threshold,
        ))
    }
}

fn spill_error(path: &std::path::Path, e: &std::io::Error) -> DedupError {
    DedupError::Spill {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The signatures [`greedy_clusters`] compares: those of texts that share a bucket.
struct Signatures {
    /// Per text: its row in `data`, or [`NO_RUN`] when not loaded.
    row_of: Vec<u32>,
    data: Vec<u32>,
    num_perm: usize,
}

impl Signatures {
    fn load(records: Records, needed: &[bool], num_perm: usize) -> Result<Self, DedupError> {
        let mut row_of = vec![NO_RUN; needed.len()];
        let mut data = Vec::new();
        let mut rows = 0_u32;
        records.replay(4 * num_perm, needed.len(), |index, bytes| {
            if needed[index] {
                row_of[index] = rows;
                rows += 1;
                data.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
        })?;
        Ok(Self {
            row_of,
            data,
            num_perm,
        })
    }

    fn get(&self, index: usize) -> &[u32] {
        let row = self.row_of[index] as usize;
        &self.data[row * self.num_perm..(row + 1) * self.num_perm]
    }
}

/// Reusable buffers of one worker: the normalised text and its word byte ranges.
#[derive(Default)]
struct Scratch {
    text: String,
    words: Vec<(usize, usize)>,
}

/// Lowercases `text` into `out` (cleared first), collapsing whitespace runs to one space and
/// dropping leading and trailing whitespace.
fn normalize_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        let mut pending_space = false;
        for byte in text.bytes() {
            if byte.is_ascii_whitespace() || byte == 0x0b || (0x1c..=0x1f).contains(&byte) {
                pending_space = !out.is_empty();
            } else {
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(char::from(byte.to_ascii_lowercase()));
            }
        }
        return;
    }
    // `str::to_lowercase` handles context-dependent mappings such as a word-final sigma.
    for word in text
        .to_lowercase()
        .split(is_separator)
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Whitespace as Python's `str.split()` sees it.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// For every text, the index of the first text with the same exact key.
fn first_occurrences(exact: &[u64]) -> Vec<u32> {
    // `near_duplicates` checked that every index fits in u32.
    let mut keyed: Vec<(u64, u32)> = exact.iter().zip(0_u32..).map(|(&k, i)| (k, i)).collect();
    keyed.par_sort_unstable();
    let mut first = vec![0_u32; exact.len()];
    for run in keyed.chunk_by(|x, y| x.0 == y.0) {
        for &(_, index) in run {
            first[index as usize] = run[0].1;
        }
    }
    first
}

/// The buckets of one band. Buckets are runs of equal band hashes among the texts that take
/// part in LSH (first occurrences with words); only buckets with two or more texts are stored.
struct BandIndex {
    /// Texts in a bucket, with their bucket.
    run_of: std::collections::HashMap<u32, u32>,
    /// Per bucket plus one: offset of its slots in `kept`.
    slot_start: Vec<u32>,
    /// Per bucket: slots in use.
    kept_len: Vec<u32>,
    /// Kept members of every bucket, in index order.
    kept: Vec<u32>,
}

impl BandIndex {
    /// Buckets of one band, given every text's hash for it.
    fn build(hashes: &[u64], first_of: &[u32], has_words: &[bool]) -> Self {
        let mut keyed: Vec<(u64, u32)> = first_of
            .iter()
            .zip(0_u32..)
            .filter(|&(&first, i)| first == i && has_words[i as usize])
            .map(|(_, i)| (hashes[i as usize], i))
            .collect();
        keyed.par_sort_unstable();

        let mut run_of = std::collections::HashMap::new();
        let mut slot_start = vec![0_u32];
        let mut slots = 0_u32;
        for run in keyed
            .chunk_by(|x, y| x.0 == y.0)
            .filter(|run| run.len() > 1)
        {
            let id = (slot_start.len() - 1) as u32;
            for &(_, index) in run {
                run_of.insert(index, id);
            }
            slots += run.len().min(MAX_KEPT_PER_BUCKET) as u32;
            slot_start.push(slots);
        }
        let runs = slot_start.len() - 1;
        Self {
            run_of,
            slot_start,
            kept_len: vec![0; runs],
            kept: vec![0; slots as usize],
        }
    }

    /// Kept texts stored in the bucket of text `index` (empty when it has none).
    fn kept_members(&self, index: usize) -> &[u32] {
        match self.run_of.get(&(index as u32)) {
            None => &[],
            Some(&run) => {
                let start = self.slot_start[run as usize] as usize;
                &self.kept[start..start + self.kept_len[run as usize] as usize]
            }
        }
    }

    /// Records text `index` as kept in its bucket, if the bucket has a free slot.
    fn add_kept(&mut self, index: usize) {
        let Some(&run) = self.run_of.get(&(index as u32)) else {
            return;
        };
        let run = run as usize;
        let start = self.slot_start[run] as usize;
        let capacity = self.slot_start[run + 1] as usize - start;
        let len = self.kept_len[run] as usize;
        if len < capacity {
            self.kept[start + len] = index as u32;
            self.kept_len[run] += 1;
        }
    }
}

/// Stage 4: the greedy, index-ordered pass described on [`near_duplicates`].
fn greedy_clusters(
    sigs: &Signatures,
    first_of: &[u32],
    in_a_bucket: &[bool],
    bands: &mut [BandIndex],
    threshold: f64,
) -> Vec<Option<usize>> {
    let mut out: Vec<Option<usize>> = vec![None; first_of.len()];
    let mut candidates: Vec<u32> = Vec::new();
    let num_perm = sigs.num_perm as f64;
    for index in 0..first_of.len() {
        let first = first_of[index] as usize;
        if first != index {
            out[index] = Some(out[first].unwrap_or(first));
            continue;
        }
        if !in_a_bucket[index] {
            continue; // kept, and no later text can find it
        }
        candidates.clear();
        for band in bands.iter() {
            candidates.extend_from_slice(band.kept_members(index));
        }
        if candidates.is_empty() {
            bands.iter_mut().for_each(|band| band.add_kept(index));
            continue;
        }
        candidates.sort_unstable();
        candidates.dedup();

        let sig = sigs.get(index);
        let mut best: Option<(usize, u32)> = None;
        for &other in &candidates {
            let agree = sig
                .iter()
                .zip(sigs.get(other as usize))
                .filter(|(x, y)| x == y);
            let agree = agree.count();
            if agree as f64 / num_perm >= threshold && best.is_none_or(|(most, _)| agree > most) {
                best = Some((agree, other));
            }
        }
        match best {
            Some((_, other)) => out[index] = Some(other as usize),
            None => bands.iter_mut().for_each(|band| band.add_kept(index)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random sentences of `words` words from a vocabulary of `vocab`.
    fn sentences(count: usize, words: usize, vocab: u64, seed: u64) -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let ws: Vec<String> = (0..words)
                    .map(|_| format!("w{}", rng.next_u64() % vocab))
                    .collect();
                ws.join(" ")
            })
            .collect()
    }

    fn replace_word(text: &str, position: usize, with: &str) -> String {
        let mut words: Vec<&str> = text.split(' ').collect();
        words[position] = with;
        words.join(" ")
    }

    fn run(texts: &[String], config: &MinHashConfig) -> Vec<Option<usize>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        near_duplicates(&refs, config).expect("valid config")
    }

    #[test]
    fn batches_with_a_spill_file_give_the_one_call_answer() {
        // Near duplicates across batch boundaries, exact repeats, and an empty text.
        let mut texts = sentences(300, 30, 400, 7);
        for i in (0..300).step_by(3) {
            texts.push(replace_word(&texts[i], 4 + i % 20, "changed"));
        }
        texts.push(texts[10].to_uppercase());
        texts.push(String::new());
        let expected = run(&texts, &MinHashConfig::default());
        assert!(expected.iter().filter(|d| d.is_some()).count() > 80);
        let dir = tempfile::tempdir().expect("tmp");
        let spill = dir.path().join("sigs.bin");
        let mut finder =
            NearDuplicateFinder::new(&MinHashConfig::default(), Some(&spill)).expect("new");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for batch in refs.chunks(37) {
            finder.add(batch).expect("add");
        }
        assert_eq!(finder.len(), texts.len());
        assert!(spill.exists(), "signatures go to the spill file");
        assert_eq!(finder.finish().expect("finish"), expected);
        assert!(!spill.exists(), "the spill file is removed");
    }

    #[test]
    fn an_unwritable_spill_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let spill = dir.path().join("missing").join("sigs.bin");
        let err = NearDuplicateFinder::new(&MinHashConfig::default(), Some(&spill))
            .err()
            .expect("no folder");
        assert!(err.to_string().contains("sigs.bin"), "{err}");
    }

    #[test]
    fn normalize_lowercases_and_collapses_whitespace() {
        assert_eq!(normalize("  Hello\t\tWORLD \r\n x  "), "hello world x");
        assert_eq!(
            normalize("APT29\u{a0}uses\u{3000}\u{2003}PowerShell"),
            "apt29 uses powershell"
        );
        assert_eq!(normalize("a\u{1f}b\u{0b}c\u{0c}d"), "a b c d");
        assert_eq!(normalize("ΟΔΟΣ  Straße"), "οδος straße");
        assert_eq!(normalize(" \n\t "), "");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn exact_key_is_stable_and_normalised() {
        assert_eq!(exact_key("Hello   World"), exact_key("hello world"));
        assert_ne!(exact_key("hello world"), exact_key("hello worlds"));
        // Pinned: a change here changes every stored dedup key.
        assert_eq!(exact_key(" Hello\tWorld "), xxh3_64(b"hello world"));
        assert_eq!(exact_key("hello world"), 0xd447_b1ea_40e6_988b);
    }

    #[test]
    fn signatures_are_pinned() {
        // Pinned: a change here means signatures are no longer comparable across versions.
        let sig = MinHasher::new(&MinHashConfig::default())
            .expect("valid")
            .signature("a b c");
        assert_eq!(sig.len(), 128);
        assert_eq!(&sig[..3], &[2_065_020_761, 2_111_833_217, 2_305_304_384]);
    }

    #[test]
    fn identical_and_case_or_whitespace_variants_are_duplicates() {
        let texts = [
            "The actor used spearphishing attachments to gain initial access.",
            "the actor used   SPEARPHISHING attachments to gain initial access.",
            "The actor used spearphishing attachments to gain initial access.",
            "\tThe ACTOR used spearphishing\nattachments to gain initial access. ",
        ];
        let found = near_duplicates(&texts, &MinHashConfig::default()).expect("valid");
        assert_eq!(found, [None, Some(0), Some(0), Some(0)]);
    }

    #[test]
    fn one_changed_word_in_thirty_is_a_near_duplicate() {
        let base = sentences(1, 30, 100_000, 7).remove(0);
        let edited = replace_word(&base, 14, "replaced");
        let other = sentences(1, 30, 100_000, 8).remove(0);
        let found = run(&[base, edited, other], &MinHashConfig::default());
        assert_eq!(found, [None, Some(0), None]);
    }

    #[test]
    fn unrelated_sentences_are_not_duplicates() {
        let texts = [
            "APT29 used PowerShell to download a second-stage payload from a compromised site.",
            "The ransomware encrypts files with AES and appends the extension .locked to them.",
            "Scheduled tasks were created for persistence under the SYSTEM account.",
            "apt29",
            "apt28",
        ];
        let found = near_duplicates(&texts, &MinHashConfig::default()).expect("valid");
        assert_eq!(found, [None; 5]);
    }

    #[test]
    fn short_and_empty_texts() {
        let texts = ["", "  ", "APT29", "apt29 ", "apt29 apt29", "T1059"];
        let found = near_duplicates(&texts, &MinHashConfig::default()).expect("valid");
        assert_eq!(found, [None, Some(0), None, Some(2), None, None]);
        assert_eq!(near_duplicates(&[], &MinHashConfig::default()), Ok(vec![]));
    }

    #[test]
    fn duplicates_are_not_representatives() {
        // Word sets 0..100, 15..115 and 30..130 with single-word shingles: J(a, b) = J(b, c) =
        // 0.74 and J(a, c) = 0.54, so c is kept even though it resembles the duplicate b.
        let words = |range: std::ops::Range<u32>| {
            range.map(|w| format!("t{w}")).collect::<Vec<_>>().join(" ")
        };
        let (a, b, c) = (words(0..100), words(15..115), words(30..130));
        let config = MinHashConfig {
            num_perm: 256,
            bands: 64,
            shingle_words: 1,
            threshold: 0.64,
            seed: 3,
        };
        let found = run(&[a, b.clone(), c, b], &config);
        assert_eq!(found, [None, Some(0), None, Some(0)]);
    }

    #[test]
    fn finds_most_one_word_edits_in_a_corpus() {
        let base = sentences(2000, 30, 20_000, 11);
        let mut texts = base.clone();
        for (i, text) in base.iter().enumerate().take(1000) {
            texts.push(replace_word(text, 3 + i % 24, "edited"));
        }
        let found = run(&texts, &MinHashConfig::default());
        assert!(
            found[..2000].iter().all(Option::is_none),
            "no false positives among bases"
        );
        let hits = (0..1000).filter(|&i| found[2000 + i] == Some(i)).count();
        assert!(hits >= 970, "found {hits} of 1000 edits");
        assert!(
            found[2000..]
                .iter()
                .all(|f| f.is_none() || f.is_some_and(|j| j < 1000))
        );
    }

    #[test]
    fn deterministic_across_runs_and_thread_counts() {
        let mut texts = sentences(3000, 30, 300, 5);
        let edits: Vec<String> = texts
            .iter()
            .take(500)
            .map(|t| replace_word(t, 10, "changed"))
            .collect();
        texts.extend(edits);
        texts.extend(texts[..100].to_vec());
        let config = MinHashConfig::default();
        let in_pool = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| run(&texts, &config))
        };
        let first = run(&texts, &config);
        assert_eq!(first, run(&texts, &config));
        assert_eq!(first, in_pool(1));
        assert_eq!(first, in_pool(2));
        assert!(first.iter().filter(|f| f.is_some()).count() >= 590);
    }

    #[test]
    fn config_validation_lists_every_problem() {
        assert_eq!(MinHashConfig::default().validate(), Ok(()));
        let bad = MinHashConfig {
            num_perm: 0,
            bands: 0,
            shingle_words: 0,
            threshold: 0.0,
            seed: 1,
        };
        let Err(DedupError::InvalidConfig { problems }) = bad.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");

        let config = |num_perm, bands, threshold| MinHashConfig {
            num_perm,
            bands,
            threshold,
            ..MinHashConfig::default()
        };
        let message = config(128, 3, 0.8)
            .validate()
            .expect_err("3 does not divide 128");
        assert!(
            message
                .to_string()
                .contains("bands (3) must divide num_perm (128)")
        );
        assert!(config(128, 16, 1.5).validate().is_err());
        assert!(config(128, 16, f64::NAN).validate().is_err());
        assert!(config(128, 16, -0.1).validate().is_err());
        assert!(config(128, 16, 1.0).validate().is_ok());
        assert!(near_duplicates(&["a"], &config(10, 4, 0.8)).is_err());
        assert!(MinHasher::new(&config(10, 4, 0.8)).is_err());
    }

    #[test]
    fn default_banding_favours_recall_at_the_threshold() {
        let config = MinHashConfig::default();
        assert_eq!(config.rows_per_band(), 8);
        assert!(config.candidate_probability(0.8) > 0.94);
        assert!(config.candidate_probability(0.5) < 0.07);
    }

    #[test]
    fn estimate_is_accurate_for_known_jaccard() {
        // 120-word sets overlapping in 80 words: J = 80 / 160 = 0.5.
        let words = |range: std::ops::Range<u32>| {
            range
                .map(|w| format!("tok{w}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (a, b) = (words(0..120), words(40..160));
        let mut total = 0.0;
        for seed in 0..20 {
            let config = MinHashConfig {
                num_perm: 256,
                bands: 32,
                shingle_words: 1,
                threshold: 0.8,
                seed,
            };
            let hasher = MinHasher::new(&config).expect("valid");
            let estimate = jaccard_estimate(&hasher.signature(&a), &hasher.signature(&b));
            assert!((estimate - 0.5).abs() < 0.1, "seed {seed}: {estimate}");
            total += estimate;
        }
        assert!((total / 20.0 - 0.5).abs() < 0.03, "mean {}", total / 20.0);
    }

    #[test]
    fn jaccard_estimate_edge_cases() {
        assert_eq!(jaccard_estimate(&[], &[]), 0.0);
        assert_eq!(jaccard_estimate(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
        assert_eq!(jaccard_estimate(&[1, 2], &[1, 2, 3]), 1.0);
        let hasher = MinHasher::new(&MinHashConfig::default()).expect("valid");
        let sig = hasher.signature("Some Text here");
        assert_eq!(
            jaccard_estimate(&sig, &hasher.signature("some text   HERE")),
            1.0
        );
    }
}

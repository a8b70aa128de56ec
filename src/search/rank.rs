//! Pure ranking helpers of the semantic family: blending keyword and
//! vector scores (`/search/hybrid`) and packing chunks into a token budget
//! (`/search/context`).

use std::collections::HashMap;

/// Scales scores to 0..=1 by the set's minimum and maximum; when all are
/// equal (or there is one), each counts as 1.
pub fn min_max(scores: &[f32]) -> Vec<f32> {
    let lo = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    scores
        .iter()
        .map(|s| {
            if hi - lo > f32::EPSILON {
                (s - lo) / (hi - lo)
            } else {
                1.0
            }
        })
        .collect()
}

/// A blended result: the file and its parts of the score.
#[derive(Debug, Clone, PartialEq)]
pub struct Blended {
    pub file_id: String,
    pub score: f32,
    /// The raw BM25 score, if the keyword index matched the file.
    pub keyword_score: Option<f32>,
    /// The raw cosine similarity of the file's best chunk, if any.
    pub vector_score: Option<f32>,
}

/// Blends keyword (BM25) and vector (cosine) scores per file, each
/// min-max normalized over its own candidates:
/// `score = (1 - alpha) * keyword + alpha * vector`, a side that did not
/// find a file adding 0. `alpha = 0` keeps keyword matches only, `alpha =
/// 1` vector matches only. Best first; ties by file id.
pub fn blend(keyword: &[(String, f32)], vector: &[(String, f32)], alpha: f32) -> Vec<Blended> {
    let alpha = alpha.clamp(0.0, 1.0);
    let kn = min_max(&keyword.iter().map(|k| k.1).collect::<Vec<_>>());
    let vn = min_max(&vector.iter().map(|v| v.1).collect::<Vec<_>>());
    let mut by_file: HashMap<&str, Blended> = HashMap::new();
    if alpha < 1.0 {
        for ((id, raw), n) in keyword.iter().zip(kn) {
            let e = by_file.entry(id).or_insert_with(|| Blended {
                file_id: id.clone(),
                score: 0.0,
                keyword_score: None,
                vector_score: None,
            });
            if e.keyword_score.is_none() {
                e.keyword_score = Some(*raw);
                e.score += (1.0 - alpha) * n;
            }
        }
    }
    if alpha > 0.0 {
        for ((id, raw), n) in vector.iter().zip(vn) {
            let e = by_file.entry(id).or_insert_with(|| Blended {
                file_id: id.clone(),
                score: 0.0,
                keyword_score: None,
                vector_score: None,
            });
            if e.vector_score.is_none() {
                e.vector_score = Some(*raw);
                e.score += alpha * n;
            }
        }
    }
    let mut out: Vec<Blended> = by_file.into_values().collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.file_id.cmp(&b.file_id))
    });
    out
}

/// Picks items, best first, while their token counts fit in `budget`: an
/// item too large for what is left is skipped and smaller ones after it may
/// still fit. Returns the picked indexes and the tokens they use (never
/// more than `budget`).
pub fn pack(tokens: &[usize], budget: usize) -> (Vec<usize>, usize) {
    let mut used = 0usize;
    let mut picked = Vec::new();
    for (i, &n) in tokens.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if used + n <= budget {
            used += n;
            picked.push(i);
        }
    }
    (picked, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str, x: f32) -> (String, f32) {
        (id.to_owned(), x)
    }

    #[test]
    fn min_max_scales_to_unit_range() {
        assert_eq!(min_max(&[2.0, 4.0, 3.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(min_max(&[5.0]), vec![1.0]);
        assert!(min_max(&[]).is_empty());
    }

    #[test]
    fn alpha_moves_between_keyword_and_vector() {
        let kw = vec![s("a", 10.0), s("b", 5.0), s("c", 0.0)];
        let vec = vec![s("c", 0.9), s("b", 0.5), s("d", 0.1)];
        let ids = |r: &[Blended]| r.iter().map(|b| b.file_id.clone()).collect::<Vec<_>>();
        // Keyword only: d (vector only) is gone.
        let r = blend(&kw, &vec, 0.0);
        assert_eq!(ids(&r), vec!["a", "b", "c"]);
        assert_eq!(r[0].vector_score, None);
        // Vector only: a (keyword only) is gone.
        let r = blend(&kw, &vec, 1.0);
        assert_eq!(ids(&r), vec!["c", "b", "d"]);
        // Even: a = 0.5*1, b = 0.5*0.5 + 0.5*0.5 = 0.5, c = 0.5*0 + 0.5*1 = 0.5.
        let r = blend(&kw, &vec, 0.5);
        let score = |id: &str| r.iter().find(|b| b.file_id == id).unwrap().score;
        assert!((score("a") - 0.5).abs() < 1e-6);
        assert!((score("b") - 0.5).abs() < 1e-6);
        assert!((score("c") - 0.5).abs() < 1e-6);
        assert!((score("d") - 0.0).abs() < 1e-6);
        let b = r.iter().find(|b| b.file_id == "b").unwrap();
        assert_eq!(b.keyword_score, Some(5.0));
        assert_eq!(b.vector_score, Some(0.5));
    }

    #[test]
    fn packing_stays_within_the_budget() {
        assert_eq!(pack(&[5, 4, 3, 2], 9), (vec![0, 1], 9));
        // 8 does not fit after 5; 3 still does.
        assert_eq!(pack(&[5, 8, 3], 9), (vec![0, 2], 8));
        assert_eq!(pack(&[10], 9), (vec![], 0));
        assert_eq!(pack(&[], 9), (vec![], 0));
    }
}

//! What an unknown key is told: the nearest known key when it looks like
//! a typo, and the keys the mapping takes.

/// The message for an unknown key in a mapping that takes `known`.
pub fn unknown_key(unknown: &str, known: &[&str]) -> String {
    let list = if known.is_empty() {
        "this mapping takes no keys".to_owned()
    } else {
        format!("known keys: {}", known.join(", "))
    };
    match nearest(unknown, known) {
        Some(near) => format!("unknown key `{unknown}`, did you mean `{near}`? ({list})"),
        None => format!("unknown key `{unknown}` ({list})"),
    }
}

/// The known key closest to `unknown` by edit distance (a swap of two
/// neighbours counts once), if close enough to be a typo: at most one edit
/// per three characters, and never a tie.
fn nearest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).max(1);
    let lower = unknown.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    match scored.as_slice() {
        [(d, k), rest @ ..] if rest.first().is_none_or(|(d2, _)| d2 > d) => Some(k),
        _ => None,
    }
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and transpositions of adjacent characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_the_nearest_known_key() {
        let known = ["host", "port", "user", "exclude"];
        assert_eq!(nearest("prot", &known), Some("port"));
        assert_eq!(nearest("exclued", &known), Some("exclude"));
        assert_eq!(nearest("bogus", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            unknown_key("prot", &known),
            "unknown key `prot`, did you mean `port`? (known keys: host, port, user, exclude)"
        );
        assert_eq!(
            unknown_key("x", &[]),
            "unknown key `x` (this mapping takes no keys)"
        );
    }
}

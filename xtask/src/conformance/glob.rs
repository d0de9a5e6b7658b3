//! `--case` patterns: a full case ID (`ST-1`) selects exactly that case; a pattern with `*`
//! or `?` is a glob on the ID or title; anything else is a case-insensitive substring of the
//! ID or title.

/// True if `pattern` selects the case `id` with `title`.
pub fn selects(pattern: &str, id: &str, title: &str) -> bool {
    let is_full_id = pattern.split_once('-').is_some_and(|(a, n)| {
        !a.is_empty()
            && a.bytes().all(|b| b.is_ascii_alphabetic())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    });
    if is_full_id {
        return pattern.eq_ignore_ascii_case(id);
    }
    matches(pattern, id) || matches(pattern, title)
}

/// True if `pattern` (glob or substring) matches `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let t = text.to_ascii_lowercase();
    if p.contains('*') || p.contains('?') {
        glob(p.as_bytes(), t.as_bytes())
    } else {
        t.contains(&p)
    }
}

fn glob(p: &[u8], t: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::{matches, selects};

    #[test]
    fn full_ids_are_exact() {
        assert!(selects("HS-1", "HS-1", "x"));
        assert!(selects("hs-1", "HS-1", "x"));
        assert!(!selects("HS-1", "HS-10", "x"));
        assert!(selects("HS-1*", "HS-10", "x"));
        assert!(selects("HS-", "HS-10", "x"));
        assert!(selects("grease", "HS-17", "GREASE capsules"));
    }

    #[test]
    fn substring_and_glob() {
        assert!(matches("st-", "ST-1"));
        assert!(matches("ST-1", "ST-1"));
        assert!(matches("ST-?", "ST-1"));
        assert!(!matches("ST-?", "ST-10"));
        assert!(matches("*-1*", "ST-10"));
        assert!(matches("h*", "HS-3"));
        assert!(!matches("x*", "HS-3"));
        assert!(matches("echo", "bidi echo on the same stream"));
    }
}

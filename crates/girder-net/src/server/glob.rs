//! Glob-style channel patterns as `PSUBSCRIBE` takes them: `*`, `?`, `[abc]`,
//! `[^a-z]`, `\x`.
//!
//! Matched in O(pattern × channel) time at worst (one backtrack point, the last `*`),
//! so a crafted pattern cannot make a publish take exponential time.

/// Whether `channel` matches `pattern`.
pub(crate) fn matches(pattern: &[u8], channel: &[u8]) -> bool {
    let (mut p, mut c) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, channel index).
    let mut star: Option<(usize, usize)> = None;
    while c < channel.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, c));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    c += 1;
                    continue;
                }
                _ => {
                    if let Some((ok, len)) = one(&pattern[p..], channel[c]) {
                        if ok {
                            p += len;
                            c += 1;
                            continue;
                        }
                    }
                }
            }
        }
        match star {
            Some((sp, sc)) => {
                p = sp;
                c = sc + 1;
                star = Some((sp, sc + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches one pattern element (a literal, `\x` or a class) at the start of `pat`
/// against `ch`: `(matched, pattern bytes used)`.
fn one(pat: &[u8], ch: u8) -> Option<(bool, usize)> {
    match pat[0] {
        b'\\' if pat.len() >= 2 => Some((pat[1] == ch, 2)),
        b'[' => {
            let mut i = 1;
            let negate = pat.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            // An unterminated class ends with the pattern, as in Redis.
            while let Some(&b) = pat.get(i) {
                if b == b']' {
                    i += 1;
                    break;
                }
                if b == b'\\' && i + 1 < pat.len() {
                    hit |= pat[i + 1] == ch;
                    i += 2;
                } else if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
                    let (lo, hi) = (b.min(pat[i + 2]), b.max(pat[i + 2]));
                    hit |= (lo..=hi).contains(&ch);
                    i += 3;
                } else {
                    hit |= b == ch;
                    i += 1;
                }
            }
            Some((hit != negate, i))
        }
        b => Some((b == ch, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "news"),
            ("news.*", "news.sport"),
            ("h?llo", "hello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("a*b*c", "aXXbYYc"),
            ("\\*", "*"),
            ("*.*.x", "a.b.c.x"),
        ];
        for (p, c) in yes {
            assert!(matches(p.as_bytes(), c.as_bytes()), "{p} should match {c}");
        }
        let no: &[(&str, &str)] = &[
            ("news.*", "new"),
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a*b", "aXXc"),
            ("\\*", "a"),
            ("", "a"),
        ];
        for (p, c) in no {
            assert!(!matches(p.as_bytes(), c.as_bytes()), "{p} should not match {c}");
        }
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = "*a".repeat(100) + "b";
        let c = "a".repeat(256);
        let t = std::time::Instant::now();
        assert!(!matches(p.as_bytes(), c.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}

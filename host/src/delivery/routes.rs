//! Route matching: a destination subscribes with glob patterns over event route keys. `*`
//! matches any run of characters (dots included), `?` one character, `[abc]` a class.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A destination's compiled route patterns.
#[derive(Clone, Debug)]
pub struct RoutePatterns {
    set: GlobSet,
}

impl RoutePatterns {
    /// Compiles the patterns; an invalid pattern is an error that names it.
    pub fn new(patterns: &[String]) -> anyhow::Result<RoutePatterns> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|error| anyhow::anyhow!("route pattern {pattern:?}: {}", error.kind()))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|error| anyhow::anyhow!("compiling route patterns: {error}"))?;
        Ok(RoutePatterns { set })
    }

    /// Whether any of the event's route keys matches any pattern.
    pub fn matches_any(&self, route_keys: &[String]) -> bool {
        route_keys.iter().any(|key| self.set.is_match(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_route_keys() {
        let table: &[(&[&str], &[&str], bool)] = &[
            (&["github.push"], &["github.push"], true),
            (&["github.push"], &["github.pushed"], false),
            (
                &["github.pull_request.*"],
                &["github.pull_request.opened"],
                true,
            ),
            (&["github.pull_request.*"], &["github.pull_request"], false),
            (&["github.*"], &["github.pull_request.opened"], true),
            (&["*"], &["anything.at.all"], true),
            (&["netflix.content.?dded"], &["netflix.content.added"], true),
            (&["a", "b"], &["c", "b"], true),
            (&[], &["github.push"], false),
            (&["github.push"], &[], false),
            (&["github.issues.[oc]*"], &["github.issues.opened"], true),
            (&["github.issues.[oc]*"], &["github.issues.labeled"], false),
        ];
        for (patterns, keys, expected) in table {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            assert_eq!(
                RoutePatterns::new(&patterns).unwrap().matches_any(&keys),
                *expected,
                "patterns {patterns:?} keys {keys:?}"
            );
        }
    }

    #[test]
    fn an_invalid_pattern_is_named() {
        let error = RoutePatterns::new(&["github.[push".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("github.[push"), "{error}");
    }
}

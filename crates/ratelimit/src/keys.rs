//! Where one limiter's state lives in Redis: six keys under `ratelimit:{<name>}:`. The braces are
//! literal, a Redis Cluster hash tag, so the six keys share one slot as the atomic scripts require.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitKeys {
    /// Sorted set: reservation id → grant time (ms, Redis clock). At most RPM live members.
    pub requests: String,
    /// Sorted set: charge id (`<reservation id>` or `<reservation id>:x`) → charge time (ms).
    pub charges: String,
    /// Hash: charge id → tokens.
    pub tokens: String,
    /// String: the sum of `tokens` (tokens charged in the current window).
    pub used: String,
    /// String: the end of the current cooldown (ms); expires by itself when the cooldown ends.
    pub cooldown: String,
    /// String: the last reservation id handed out.
    pub seq: String,
}

impl RateLimitKeys {
    pub fn for_name(name: &str) -> RateLimitKeys {
        let prefix = format!("ratelimit:{{{name}}}");
        RateLimitKeys {
            requests: format!("{prefix}:requests"),
            charges: format!("{prefix}:charges"),
            tokens: format!("{prefix}:tokens"),
            used: format!("{prefix}:used"),
            cooldown: format!("{prefix}:cooldown"),
            seq: format!("{prefix}:seq"),
        }
    }

    /// In the order the scripts expect them as KEYS[1..6].
    pub(crate) fn as_array(&self) -> [&str; 6] {
        [&self.requests, &self.charges, &self.tokens, &self.used, &self.cooldown, &self.seq]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_name_as_a_hash_tag() {
        let k = RateLimitKeys::for_name("gemini");
        assert_eq!(
            k.as_array(),
            [
                "ratelimit:{gemini}:requests",
                "ratelimit:{gemini}:charges",
                "ratelimit:{gemini}:tokens",
                "ratelimit:{gemini}:used",
                "ratelimit:{gemini}:cooldown",
                "ratelimit:{gemini}:seq",
            ]
        );
    }
}

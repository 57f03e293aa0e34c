//! Where one limiter's state lives in Redis: five keys under `ratelimit:{<name>}:`. The braces are
//! literal, a Redis Cluster hash tag, so the five keys share one slot as the atomic scripts require.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitKeys {
    /// Sorted set: `<reservation id>:<tokens charged at the grant>` → grant time (ms, Redis clock).
    /// At most RPM live members.
    pub requests: String,
    /// Sorted set: extra charge id (`<reservation id>:x`: an under-estimate's excess or a late
    /// settle) → charge time (ms).
    pub charges: String,
    /// Hash: extra charge id → tokens.
    pub tokens: String,
    /// Hash: the counters and bounds the scripts keep (requests and tokens in the window, the last
    /// reservation id, ...), see lua/prelude.lua.
    pub state: String,
    /// String: the end of the current cooldown (ms); expires by itself when the cooldown ends.
    pub cooldown: String,
}

impl RateLimitKeys {
    pub fn for_name(name: &str) -> RateLimitKeys {
        let prefix = format!("ratelimit:{{{name}}}");
        RateLimitKeys {
            requests: format!("{prefix}:requests"),
            charges: format!("{prefix}:charges"),
            tokens: format!("{prefix}:tokens"),
            state: format!("{prefix}:state"),
            cooldown: format!("{prefix}:cooldown"),
        }
    }

    /// In the order the scripts expect them as KEYS[1..5].
    pub(crate) fn as_array(&self) -> [&str; 5] {
        [&self.requests, &self.charges, &self.tokens, &self.state, &self.cooldown]
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
                "ratelimit:{gemini}:state",
                "ratelimit:{gemini}:cooldown",
            ]
        );
    }
}

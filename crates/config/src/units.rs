//! Quantities of vCPU or GB kept as integer thousandths, so sums of 1.5 + 1 + 3 are exactly 5.5
//! and never 5.499999. Redis stores and shows the same integers formatted as decimals.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Milli(pub u64);

impl Milli {
    pub const ZERO: Milli = Milli(0);

    /// Rounds a decimal quantity to the nearest thousandth. `None` for negative or non-finite input.
    pub fn from_f64(value: f64) -> Option<Milli> {
        if !value.is_finite() || !(0.0..=1e12).contains(&value) {
            return None;
        }
        Some(Milli((value * 1000.0).round() as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// `self × factor`, rounded to the nearest thousandth (used for max × (1 − reserve)).
    pub fn scaled(self, factor: f64) -> Milli {
        Milli((self.0 as f64 * factor).round().max(0.0) as u64)
    }

    pub fn saturating_sub(self, other: Milli) -> Milli {
        Milli(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Milli {
    type Output = Milli;
    fn add(self, rhs: Milli) -> Milli {
        Milli(self.0 + rhs.0)
    }
}

impl std::ops::Mul<u64> for Milli {
    type Output = Milli;
    fn mul(self, rhs: u64) -> Milli {
        Milli(self.0 * rhs)
    }
}

impl std::iter::Sum for Milli {
    fn sum<I: Iterator<Item = Milli>>(iter: I) -> Milli {
        Milli(iter.map(|m| m.0).sum())
    }
}

/// Shortest decimal form: 5500 → "5.5", 2250 → "2.25", 3000 → "3", 0 → "0".
/// The Lua scripts of the capacity crate format exactly the same way.
impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let frac = self.0 % 1000;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl std::str::FromStr for Milli {
    type Err = ();
    /// Parses a decimal without going through floating point ("5.5" → 5500); at most 3 decimals.
    fn from_str(s: &str) -> Result<Milli, ()> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty() || frac.len() > 3 {
            return Err(());
        }
        if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| ())? };
        let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| ())?;
        whole.checked_mul(1000).and_then(|w| w.checked_add(frac)).map(Milli).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_shortest_decimal() {
        assert_eq!(Milli(5500).to_string(), "5.5");
        assert_eq!(Milli(2250).to_string(), "2.25");
        assert_eq!(Milli(3000).to_string(), "3");
        assert_eq!(Milli(0).to_string(), "0");
        assert_eq!(Milli(1).to_string(), "0.001");
        assert_eq!(Milli(6400).to_string(), "6.4");
    }

    #[test]
    fn parse_round_trips_without_floating_point() {
        for s in ["5.5", "2.25", "3", "0", "0.001", "6.4", "12.8"] {
            let m: Milli = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert!("1.2345".parse::<Milli>().is_err());
        assert!("-1".parse::<Milli>().is_err());
        assert!("abc".parse::<Milli>().is_err());
        assert!(".".parse::<Milli>().is_err());
    }

    #[test]
    fn sums_do_not_drift() {
        let parts = [Milli(3000), Milli(1500), Milli(1000)];
        assert_eq!(parts.into_iter().sum::<Milli>().to_string(), "5.5");
        let mut total = Milli::ZERO;
        for _ in 0..1000 {
            total = total + Milli::from_f64(0.1).unwrap();
        }
        assert_eq!(total, Milli(100_000));
    }
}

//! What the benchmarks (`bench/`) share besides their labs: argument
//! parsing, statistics, number formatting and the machine's load.

use std::any::Any;
use std::str::FromStr;
use std::time::Duration;

use crate::bench_lab::cpu_busy_seconds;

/// `value` of option `flag` as a number greater than zero; the error names
/// the option and `what` was expected (e.g. "a whole number of seconds").
pub fn positive<T: FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
    what: &str,
) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("{flag} {value}: expected {what} > 0"))
}

/// A benchmark's command line, read option by option (`cargo bench`'s
/// own `--bench` skipped).
#[derive(Debug)]
pub struct Args<'a> {
    it: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    /// The arguments after the program name.
    pub fn new(args: &'a [String]) -> Args<'a> {
        Args { it: args.iter() }
    }

    /// The next option.
    pub fn next_option(&mut self) -> Option<&'a str> {
        self.it
            .by_ref()
            .map(String::as_str)
            .find(|a| *a != "--bench")
    }

    /// The value that follows option `flag`.
    pub fn value(&mut self, flag: &str) -> Result<&'a str, String> {
        self.it
            .next()
            .map(String::as_str)
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value that follows option `flag`, a number greater than zero
    /// (see [`positive`]).
    pub fn positive<T: FromStr + PartialOrd + Default>(
        &mut self,
        flag: &str,
        what: &str,
    ) -> Result<T, String> {
        let v = self.value(flag)?;
        positive(flag, v, what)
    }
}

/// The median of `v` (the upper one of an even count); None if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The `p`th percentile of sorted, non-empty `v` (nearest rank).
pub fn percentile<T: Copy>(v: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A panic's message, its first line cut to 200 characters: what a row of
/// a results table says when its measurement panicked.
pub fn panic_message(e: &(dyn Any + Send)) -> String {
    let text = e
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into());
    let first = text.lines().next().unwrap_or("").trim();
    let mut short: String = first.chars().take(200).collect();
    if short.len() < first.len() {
        short.push('…');
    }
    short
}

/// A measurement with three significant digits, no exponent.
pub fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How busy the machine is (cores) over `window`, before anything runs:
/// a benchmark's figures mean little on a machine busy with other work.
pub fn machine_busy(window: Duration) -> f64 {
    let before = cpu_busy_seconds();
    std::thread::sleep(window);
    (cpu_busy_seconds() - before) / window.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_numbers_and_their_errors() {
        assert_eq!(positive::<u32>("--seconds", "10", "seconds"), Ok(10));
        assert_eq!(
            positive::<u32>("--seconds", "0", "a whole number of seconds"),
            Err("--seconds 0: expected a whole number of seconds > 0".into())
        );
        assert!(positive::<f64>("--percent", "x", "a percentage").is_err());
    }

    #[test]
    fn options_and_their_values() {
        let argv: Vec<String> = ["--bench", "--smoke", "--runs", "3", "--out"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut args = Args::new(&argv);
        assert_eq!(args.next_option(), Some("--smoke"));
        assert_eq!(args.next_option(), Some("--runs"));
        assert_eq!(args.positive::<usize>("--runs", "a count"), Ok(3));
        assert_eq!(args.next_option(), Some("--out"));
        assert_eq!(args.value("--out"), Err("--out needs a value".into()));
        assert_eq!(args.next_option(), None);
    }

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(Vec::new()), None);
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 50.0), 5);
        assert_eq!(percentile(&v, 99.0), 10);
        assert_eq!(percentile(&v, 0.0), 1);
    }
}

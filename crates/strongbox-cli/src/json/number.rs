//! Whether a JSON number literal comes back as the same decimal number once stored as serde_json
//! stores it (an `i64`, a `u64` or an `f64`).

/// `None` when the number literal is stored as the same decimal number, else what it becomes.
///
/// An integer that fits an `i64` or a `u64` is kept as such; any other number becomes the
/// nearest `f64`, which must print (shortest form) as the same decimal number.
pub(super) fn stored_number(literal: &str) -> Option<String> {
    let integer = !literal.contains(['.', 'e', 'E']);
    if integer && (literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok()) {
        return None;
    }
    let float = match literal.parse::<f64>() {
        Ok(float) => float,
        Err(_) => return Some("nothing (not a number)".to_owned()),
    };
    if float.is_finite() {
        // serde_json's own rendering is what `get` prints. It is a shortest form, but where two
        // shortest decimals name the same double (`…783.2` and `…783.3` for `…783.25`), it may
        // pick the other one than Rust's formatting: compare with what is printed.
        let printed = serde_json::Number::from_f64(float)
            .map_or_else(|| format!("{float:e}"), |number| number.to_string());
        let written = Decimal::parse(literal);
        if written.is_some() && written == Decimal::parse(&printed) {
            return None;
        }
        Some(printed)
    } else {
        Some("infinity, which JSON cannot hold".to_owned())
    }
}

/// A decimal number in normal form: `0.DIGITS × 10^exponent`, digits without leading or
/// trailing zeros (none for zero).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i128,
}

impl Decimal {
    /// Parses `-?digits(.digits)?([eE][+-]?digits)?`; `None` for anything else (or an exponent
    /// beyond `i64`).
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty()
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all: String = whole.chars().chain(fraction.chars()).collect();
        let leading = all.len() - all.trim_start_matches('0').len();
        let digits = all.trim_start_matches('0').trim_end_matches('0');
        if digits.is_empty() {
            return Some(Decimal {
                negative,
                digits: String::new(),
                exponent: 0,
            });
        }
        let written: i128 = match exponent {
            Some(exponent) => i128::from(exponent.parse::<i64>().ok()?),
            None => 0,
        };
        let point = i128::try_from(whole.len()).ok()? - i128::try_from(leading).ok()?;
        Some(Decimal {
            negative,
            digits: digits.to_owned(),
            exponent: written + point,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_double_between_two_shortest_decimals_is_accepted_as_serde_json_prints_it() {
        // The double -616498113915783.25: "…783.2" and "…783.3" both name it in 16 digits.
        let printed = serde_json::Number::from_f64(-616_498_113_915_783.3)
            .map(|number| number.to_string())
            .unwrap();
        assert_eq!(stored_number(&printed), None, "{printed}");
    }

    #[test]
    fn numbers_that_survive_are_accepted_and_others_refused() {
        let accepted = [
            "0",
            "-0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "1.0",
            "1.10",
            "1e2",
            "1E+2",
            "0.1",
            "-0.0",
            "0e999999999999999999999",
            "2.5e-3",
            "1.7976931348623157e308",
            "5e-324",
            "100000000000000000000",
            "0.30000000000000004",
            "3.141592653589793",
            "123.456000",
            "0.000001",
        ];
        for literal in accepted {
            assert_eq!(stored_number(literal), None, "{literal}");
        }
        let refused = [
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("123456789012345678901234567890", "1.2345678901234568e+29"),
            ("-9223372036854775809", "-9.223372036854776e+18"),
            ("1e-400", "0.0"),
            ("3.14159265358979323846264", "3.141592653589793"),
            ("0.1000000000000000000001", "0.1"),
            ("1e400", "infinity, which JSON cannot hold"),
            ("9007199254740993.0", "9007199254740992.0"),
        ];
        for (literal, stored_as) in refused {
            assert_eq!(
                stored_number(literal).as_deref(),
                Some(stored_as),
                "{literal}"
            );
        }
    }

    proptest! {
        /// Whatever serde_json itself writes is accepted: no ordinary value is refused.
        #[test]
        fn what_serde_json_writes_is_accepted(float in any::<f64>(), signed in any::<i64>(), unsigned in any::<u64>()) {
            if let Some(number) = serde_json::Number::from_f64(float) {
                prop_assert_eq!(stored_number(&number.to_string()), None);
            }
            prop_assert_eq!(stored_number(&signed.to_string()), None);
            prop_assert_eq!(stored_number(&unsigned.to_string()), None);
        }

        /// One digit more than an `f64` holds, appended to a double's shortest form, is refused.
        #[test]
        fn a_digit_beyond_a_double_is_refused(float in any::<f64>().prop_filter("finite", |f| f.is_finite() && *f != 0.0)) {
            let shortest = format!("{float:e}");
            let (mantissa, exponent) = shortest.split_once('e').unwrap();
            let mantissa = if mantissa.contains('.') { mantissa.to_owned() } else { format!("{mantissa}.0") };
            let longer = format!("{mantissa}0000000000000000000001e{exponent}");
            prop_assert!(stored_number(&longer).is_some(), "{}", longer);
        }
    }
}

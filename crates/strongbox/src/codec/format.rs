//! Serialization formats: how a typed value becomes bytes. JSON (serde_json, with exact float
//! round trips) is the only one today; the per-record format tag leaves room for others.
//! Every value reads back exactly as it was written: a NaN or infinite float, which JSON cannot
//! hold, is refused (`finite`) rather than written as `null`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::finite::Finite;

/// The serialization format of a record, stored with it as a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum Format {
    /// JSON, as written by serde_json (default).
    #[default]
    Json = 1,
}

impl Format {
    /// The format of a stored tag, if known.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Format::Json),
            _ => None,
        }
    }

    /// The tag stored with a record.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// Serializes a value.
    ///
    /// # Errors
    /// The serializer's error (for example a map with non-string keys), and a NaN or infinite
    /// float anywhere in the value, which the format could not read back as it was: the
    /// error's message then starts "NaN and infinite numbers cannot be stored exactly".
    pub fn serialize<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Format::Json => serde_json::to_vec(&Finite(value)),
        }
    }

    /// Deserializes a value.
    ///
    /// # Errors
    /// The deserializer's error: malformed bytes, or bytes of another type than `T`.
    pub fn deserialize<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, serde_json::Error> {
        match self {
            // One UTF-8 check over the whole value lets serde_json skip it per string, which
            // is about a tenth of deserializing a typical value; invalid UTF-8 still gets
            // serde_json's own error.
            Format::Json => match std::str::from_utf8(bytes) {
                Ok(text) => serde_json::from_str(text),
                Err(_) => serde_json::from_slice(bytes),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_exactly() -> Result<(), serde_json::Error> {
        for value in [0.1f64, 1.0 / 3.0, f64::MAX, f64::MIN_POSITIVE, -2.5e-300] {
            let bytes = Format::Json.serialize(&value)?;
            assert_eq!(
                Format::Json.deserialize::<f64>(&bytes)?.to_bits(),
                value.to_bits()
            );
        }
        Ok(())
    }

    #[test]
    fn nan_and_infinities_are_refused_not_written_as_null() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let error = Format::Json.serialize(&value).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot be stored exactly")),
                "{value}: {error:?}"
            );
        }
    }

    #[test]
    fn a_value_of_another_type_is_an_error() -> Result<(), serde_json::Error> {
        let bytes = Format::Json.serialize(&"text")?;
        assert!(Format::Json.deserialize::<u64>(&bytes).is_err());
        assert_eq!(Format::from_tag(0), None);
        Ok(())
    }
}

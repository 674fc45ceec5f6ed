//! CPython versions and how to recognise them without running anything.

use std::fmt;

/// A CPython version, e.g. 3.12.1 or 3.15.0a3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// `PY_MAJOR_VERSION` (2 or 3).
    pub major: u8,
    /// `PY_MINOR_VERSION`.
    pub minor: u8,
    /// `PY_MICRO_VERSION`.
    pub patch: u8,
    /// `PY_RELEASE_LEVEL`: 0xA alpha, 0xB beta, 0xC candidate, 0xF final.
    pub release_level: u8,
    /// `PY_RELEASE_SERIAL` (the 3 of `a3`).
    pub serial: u8,
}

impl Version {
    /// The name of `opcode` in this version's bytecode, as `dis.opname` gives it (3.11+, where
    /// [`Frame::opcode`](crate::Frame::opcode) is read; `None` before or for a byte that is no
    /// opcode).
    ///
    /// ```
    /// let v = pyspy_core::Version { major: 3, minor: 12, patch: 0, release_level: 0xf, serial: 0 };
    /// assert_eq!(v.opcode_name(171), Some("CALL"));
    /// ```
    pub fn opcode_name(&self, opcode: u8) -> Option<&'static str> {
        crate::attach::layout::opcodes::Opcodes::for_version(self.major, self.minor)?.name(opcode)
    }

    /// Decodes `PY_VERSION_HEX` (as stored in `Py_Version` and `_Py_DebugOffsets.version`).
    pub fn from_hex(hex: u64) -> Option<Version> {
        let v = Version {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            patch: (hex >> 8) as u8,
            release_level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        };
        let plausible = hex >> 32 == 0
            && (v.major == 2 || v.major == 3)
            && v.minor <= 40
            && matches!(v.release_level, 0xA..=0xC | 0xF);
        plausible.then_some(v)
    }

    /// Parses "3.12.1", "3.14.0rc2", "2.7.18+" at the start of `s`.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.splitn(3, '.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: u8 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let patch: u8 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (release_level, serial_str) = if let Some(s) = tail.strip_prefix("rc") {
            (0xC, s)
        } else if let Some(s) = tail.strip_prefix('a') {
            (0xA, s)
        } else if let Some(s) = tail.strip_prefix('b') {
            (0xB, s)
        } else {
            (0xF, "")
        };
        let sd = serial_str.bytes().take_while(u8::is_ascii_digit).count();
        let serial = serial_str[..sd].parse().unwrap_or(0);
        if !(major == 2 || major == 3) || minor > 40 {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            release_level,
            serial,
        })
    }

    /// (major, minor), the key of layout tables.
    pub fn minor_version(&self) -> (u8, u8) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match self.release_level {
            0xA => write!(f, "a{}", self.serial),
            0xB => write!(f, "b{}", self.serial),
            0xC => write!(f, "rc{}", self.serial),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_through_display() {
        assert_eq!(Version::from_hex(0x030c01f0).unwrap().to_string(), "3.12.1");
        assert_eq!(
            Version::from_hex(0x030f00a3).unwrap().to_string(),
            "3.15.0a3"
        );
        assert_eq!(Version::from_hex(0x020712f0).unwrap().to_string(), "2.7.18");
        assert!(Version::from_hex(0xdeadbeef).is_none());
        assert!(Version::from_hex(0x030c0100).is_none());
    }

    #[test]
    fn parses_version_strings() {
        assert_eq!(
            Version::parse("3.14.0rc2").unwrap().to_string(),
            "3.14.0rc2"
        );
        assert_eq!(Version::parse("2.7.18+").unwrap().to_string(), "2.7.18");
        assert_eq!(Version::parse("3.11.7 (main").unwrap().minor, 11);
        assert!(Version::parse("3.x").is_none());
        assert!(Version::parse("9.1.1").is_none());
    }
}

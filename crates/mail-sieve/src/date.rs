//! Date parts for the `date` and `currentdate` tests (RFC 5260 section 4).

/// A moment with the zone it is shown in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// Offset of the zone shown, in seconds east of UTC.
    pub offset: i32,
}

/// Parses a `:zone` argument, "+hhmm" or "-hhmm", into seconds.
pub(crate) fn parse_zone(z: &str) -> Option<i32> {
    let b = z.as_bytes();
    if b.len() != 5 || !matches!(b[0], b'+' | b'-') || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // As Pigeonhole: any two digits each ("+0160" is two hours ahead).
    let h: i32 = z[1..3].parse().ok()?;
    let m: i32 = z[3..5].parse().ok()?;
    let s = (h * 60 + m) * 60;
    Some(if b[0] == b'-' { -s } else { s })
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn zone_str(offset: i32, colon: bool) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs() / 60;
    if colon {
        format!("{sign}{:02}:{:02}", a / 60, a % 60)
    } else {
        format!("{sign}{:02}{:02}", a / 60, a % 60)
    }
}

/// The value of date part `part` of `m`, or `None` for an unknown part.
pub(crate) fn part(m: Moment, part: &str) -> Option<String> {
    let local = m.unix + i64::from(m.offset);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let wd = (days + 4).rem_euclid(7);
    Some(match part.to_ascii_lowercase().as_str() {
        "year" => format!("{y:04}"),
        "month" => format!("{mo:02}"),
        "day" => format!("{d:02}"),
        "date" => format!("{y:04}-{mo:02}-{d:02}"),
        // Modified Julian Day: days since 1858-11-17.
        "julian" => (days + 40_587).to_string(),
        "hour" => format!("{h:02}"),
        "minute" => format!("{mi:02}"),
        "second" => format!("{s:02}"),
        "time" => format!("{h:02}:{mi:02}:{s:02}"),
        "iso8601" => format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
            if m.offset == 0 {
                "Z".to_string()
            } else {
                zone_str(m.offset, true)
            }
        ),
        "std11" => {
            const DOW: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            const MON: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            format!(
                "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} {}",
                DOW[wd as usize],
                MON[(mo - 1) as usize],
                zone_str(m.offset, false)
            )
        }
        "zone" => zone_str(m.offset, false),
        "weekday" => wd.to_string(),
        _ => return None,
    })
}

/// Parses a header's date (RFC 5322; for `Received`, the part after the
/// last ";", RFC 5260 section 4).
pub(crate) fn parse_header_date(header: &str, value: &str) -> Option<Moment> {
    let v = if header.eq_ignore_ascii_case("received") {
        value.rsplit_once(';').map_or(value, |(_, d)| d)
    } else {
        value
    };
    let dt = mail_parser::DateTime::parse_rfc822(v.trim())?;
    if !(1..=12).contains(&dt.month)
        || !(1..=31).contains(&dt.day)
        || dt.hour > 23
        || dt.minute > 59
        || dt.second > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(dt.year), u32::from(dt.month), u32::from(dt.day));
    let mut offset = (i32::from(dt.tz_hour) * 60 + i32::from(dt.tz_minute)) * 60;
    if dt.tz_before_gmt {
        offset = -offset;
    }
    let local = days * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second);
    Some(Moment {
        unix: local - i64::from(offset),
        offset,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let m = parse_header_date("date", "Tue, 1 Jul 2003 10:52:37 +0200").unwrap();
        assert_eq!(part(m, "date").unwrap(), "2003-07-01");
        assert_eq!(part(m, "time").unwrap(), "10:52:37");
        assert_eq!(part(m, "zone").unwrap(), "+0200");
        assert_eq!(part(m, "weekday").unwrap(), "2");
        assert_eq!(part(m, "julian").unwrap(), "52821");
        assert_eq!(part(m, "iso8601").unwrap(), "2003-07-01T10:52:37+02:00");
        assert_eq!(part(m, "std11").unwrap(), "Tue, 01 Jul 2003 10:52:37 +0200");
        let utc = Moment {
            unix: m.unix,
            offset: 0,
        };
        assert_eq!(part(utc, "hour").unwrap(), "08");
    }
}

//! Sparklines: a series' recent values as a small inline SVG (docs/architecture.md §14). Pure: points in, markup
//! out; the markup holds numbers only, so nothing a writer sent reaches it.

use std::fmt::Write;

/// Width of a sparkline in CSS pixels.
pub const WIDTH: f64 = 120.0;
/// Height of a sparkline in CSS pixels.
pub const HEIGHT: f64 = 24.0;
/// Space kept free at each edge, so that the stroke is not cut.
const MARGIN: f64 = 2.0;

/// The SVG of `points` (timestamp in milliseconds, value), drawn left to right by time: empty when no point has a
/// finite value; one dot for a single point; otherwise a line from the oldest to the newest point, with a dot on
/// the newest. Values are scaled to the points' own range (a flat series is a line across the middle); points
/// whose value is not finite are left out.
pub fn svg(points: &[(i64, f64)]) -> String {
    let mut points: Vec<(i64, f64)> = points.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    points.sort_by_key(|(t, _)| *t);
    let Some(&(last_t, last_v)) = points.last() else {
        return String::new();
    };
    let (first_t, _) = points[0];
    let (low, high) =
        points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
    let span_t = (last_t - first_t) as f64;
    let span_v = high - low;
    let x = |t: i64| {
        if span_t > 0.0 { MARGIN + (t - first_t) as f64 / span_t * (WIDTH - 2.0 * MARGIN) } else { WIDTH - MARGIN }
    };
    let y = |v: f64| {
        if span_v > 0.0 && span_v.is_finite() {
            HEIGHT - MARGIN - (v - low) / span_v * (HEIGHT - 2.0 * MARGIN)
        } else {
            HEIGHT / 2.0
        }
    };
    let mut out = format!(
        r#"<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{} recent values">"#,
        points.len()
    );
    if points.len() > 1 {
        out.push_str(r#"<polyline fill="none" stroke="currentColor" stroke-width="1.5" points=""#);
        for (i, (t, v)) in points.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{:.1},{:.1}", x(*t), y(*v));
        }
        out.push_str(r#""/>"#);
    }
    let _ = write!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="currentColor"/></svg>"#, x(last_t), y(last_v));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (x, y) pairs of the polyline.
    fn line(svg: &str) -> Vec<(f64, f64)> {
        let start = svg.find("points=\"").expect("a polyline") + 8;
        let end = start + svg[start..].find('"').unwrap();
        svg[start..end]
            .split(' ')
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn no_point_draws_nothing_and_one_point_draws_a_dot() {
        assert_eq!(svg(&[]), "");
        assert_eq!(svg(&[(0, f64::NAN)]), "", "a value that is not a number is no point");
        let one = svg(&[(1_000, 42.0)]);
        assert!(one.starts_with("<svg") && one.ends_with("</svg>"), "{one}");
        assert!(one.contains("<circle") && !one.contains("polyline"), "{one}");
        assert!(one.contains(r#"cy="12.0""#), "a single value sits in the middle: {one}");
    }

    #[test]
    fn points_are_drawn_in_time_order_scaled_to_their_range() {
        // Given out of order; the highest value is at the top (smallest y), the lowest at the bottom.
        let drawn = line(&svg(&[(3_000, 5.0), (1_000, 0.0), (2_000, 10.0)]));
        assert_eq!(drawn.len(), 3);
        assert!(drawn.windows(2).all(|w| w[0].0 < w[1].0), "x grows with time: {drawn:?}");
        assert_eq!(drawn[0], (MARGIN, HEIGHT - MARGIN), "the oldest and lowest: bottom left");
        assert_eq!(drawn[1].1, MARGIN, "the highest: top");
        assert_eq!(drawn[2], (WIDTH - MARGIN, HEIGHT / 2.0), "the newest, halfway: right, middle");
    }

    #[test]
    fn a_flat_series_is_a_line_across_the_middle_and_extremes_stay_in_the_box() {
        let flat = line(&svg(&[(0, 7.0), (1, 7.0)]));
        assert!(flat.iter().all(|(_, y)| *y == HEIGHT / 2.0), "{flat:?}");
        let huge = svg(&[(0, f64::MAX), (1, -f64::MAX), (2, f64::INFINITY)]);
        assert!(!huge.contains("NaN") && !huge.contains("inf"), "{huge}");
        for (x, y) in line(&huge) {
            assert!((0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y), "{huge}");
        }
    }
}

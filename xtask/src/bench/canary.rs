//! The coordinated-omission canary: the server SIGSTOPped during a fixed-rate run, oha vs Faultline.

use std::path::Path;

use super::CANARY_RATE;
use super::clients::{Stall, num, oha_errors, run_faultline_http, run_oha};
use super::installs::Bins;
use super::json::J;
use super::results::{Goal, Results, row};
use super::settings::Settings;
use crate::proc::human;

pub(super) fn canary_phase(
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    let rate = match out.http_max {
        Some(max) if max.is_finite() => CANARY_RATE.min((0.5 * max).round()).max(1.0),
        _ => CANARY_RATE,
    };
    let stall = Stall {
        at: s.stall_at,
        length: s.stall_for,
    };
    println!(
        "\n== canary: {rate:.0}/s for {}s, server SIGSTOPped for {} at {}, oha vs Faultline, {} round(s)",
        s.canary_secs,
        human(stall.length),
        human(stall.at),
        s.rounds
    );
    let (mut oha_p99, mut fl_p99, mut fl_unc_p99) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let mut o = run_oha(
            bins,
            logs,
            &format!("oha-canary-r{round}"),
            rate,
            s.canary_secs,
            Some(stall),
        )?;
        let o99 = num(&o, &["latencyPercentiles", "p99"]) * 1e6;
        let mut j = run_faultline_http(
            bins,
            s,
            logs,
            &format!("faultline-canary-r{round}"),
            rate,
            s.canary_secs,
            "5s",
            Some(stall),
        )?;
        let f99 = num(&j, &["corrected_us", "p99_us"]);
        let u99 = num(&j, &["uncorrected_us", "p99_us"]);
        println!(
            "   r{round} p99 µs: oha corrected {o99:.0}, faultline corrected {f99:.0}, faultline uncorrected {u99:.0} (errors: oha {}, faultline {})",
            oha_errors(&o),
            num(&j, &["errors"])
        );
        oha_p99.push(o99);
        fl_p99.push(f99);
        fl_unc_p99.push(u99);
        o.set("round", J::Num(round as f64));
        o.set("rate", J::Num(rate));
        out.runs.push(("canary".into(), o));
        j.set("round", J::Num(round as f64));
        out.runs.push(("canary".into(), j));
    }
    out.rows.push(row(
        format!("CO canary ({rate:.0}/s, 1 s SIGSTOP), corrected p99"),
        "µs",
        "faultline",
        fl_p99.clone(),
        "oha --latency-correction",
        oha_p99,
        Goal::Within(0.10),
    ));
    out.rows.push(row(
        "CO canary, Faultline corrected p99 / its uncorrected p99",
        "µs",
        "corrected",
        fl_p99,
        "faultline uncorrected",
        fl_unc_p99,
        Goal::AtLeast(50.0),
    ));
    Ok(())
}

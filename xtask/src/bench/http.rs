//! The http phases: wrk vs Faultline at maximum rate, then oha vs Faultline at fixed rates.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::child::{pause, run_client};
use super::clients::{
    common_args, corrected, loadgen_cmd, num, oha_percentiles, run_faultline_http, run_max_round,
    run_oha,
};
use super::installs::Bins;
use super::json::J;
use super::results::{Goal, Results, median, row};
use super::servers::start_recommendations;
use super::settings::Settings;
use super::{CLIENT_SLACK, CONNECTIONS, FIXED_FRACTIONS, MAX_RATE, OVERLOAD};

pub(super) fn http_phases(
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    println!(
        "\n== http-max: wrk -t1 -c {CONNECTIONS} -d {}s vs Faultline (rate {OVERLOAD}x wrk's, max_in_flight {CONNECTIONS}), {} round(s)",
        s.http_secs, s.rounds
    );
    let (mut wrk_rps, mut fl_rps, mut wrk_cpu, mut fl_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let (mut server, url) = start_recommendations(bins, logs, &format!("recs-wrk-r{round}"))?;
        let mut c = Command::new("wrk");
        c.args(["-t1", "-c", &CONNECTIONS.to_string()])
            .args(["-d", &format!("{}s", s.http_secs)])
            .arg(&url);
        let ran = run_client(
            &mut c,
            &format!("wrk-r{round}"),
            logs,
            Duration::from_secs(s.http_secs) + CLIENT_SLACK,
        )?;
        server.stop();
        let w = parse_wrk(&ran.stdout)?;
        let rps = num(&w, &["requests_per_s"]);
        let requests = num(&w, &["requests"]);
        println!(
            "   r{round} wrk: {rps:.0} req/s, {:.2} µs CPU/req",
            ran.done.cpu_s() / requests * 1e6
        );
        wrk_rps.push(rps);
        wrk_cpu.push(ran.done.cpu_s() / requests * 1e6);
        let mut w = w;
        w.set("round", J::Num(round as f64));
        w.set("tool", J::Str("wrk".into()));
        w.set("child_cpu_user_s", J::Num(ran.done.user_s));
        w.set("child_cpu_sys_s", J::Num(ran.done.sys_s));
        out.runs.push(("http-max".into(), w));
        pause(Duration::from_millis(300))?;

        let rate = (OVERLOAD * rps).clamp(1_000.0, MAX_RATE);
        let (mut server, url) =
            start_recommendations(bins, logs, &format!("recs-fl-max-r{round}"))?;
        let mut c = loadgen_cmd(bins);
        c.args(["http", "--url", &url]);
        common_args(&mut c, rate, s.http_secs, "1s", s);
        let run = run_max_round(
            c,
            &format!("faultline-http-max-r{round}"),
            "faultline",
            "req",
            round,
            rate,
            logs,
            s.http_secs,
            &mut out.notes,
        )?;
        server.stop();
        fl_rps.push(run.tput);
        fl_cpu.push(run.cpu_us);
        let j = run.j;
        out.runs.push(("http-max".into(), j));
        pause(Duration::from_millis(300))?;
    }
    let max = median(&wrk_rps);
    out.http_max = Some(max);
    out.rows.push(row(
        format!("HTTP closed-loop max, C={CONNECTIONS}"),
        "req/s",
        "faultline",
        fl_rps,
        format!("wrk -t1 -c {CONNECTIONS}"),
        wrk_rps,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        "HTTP client CPU per request at max",
        "µs/req",
        "faultline",
        fl_cpu,
        "wrk -t1",
        wrk_cpu,
        Goal::Info,
    ));

    for fraction in FIXED_FRACTIONS {
        let rate = (fraction * max).round();
        if !rate.is_finite() || rate < 1.0 {
            return Err(format!("wrk's maximum {max} gives no usable fixed rate"));
        }
        println!(
            "\n== http-fixed {:.0}%: {rate:.0}/s for {}s, oha --latency-correction -c {CONNECTIONS} vs Faultline, {} round(s)",
            fraction * 100.0,
            s.http_secs,
            s.rounds
        );
        let mut theirs: [Vec<f64>; 3] = Default::default();
        let mut ours: [Vec<f64>; 3] = Default::default();
        for round in 1..=s.rounds {
            let tag = format!("{:.0}pct-r{round}", fraction * 100.0);
            let o = run_oha(bins, logs, &format!("oha-{tag}"), rate, s.http_secs, None)?;
            let o_p = oha_percentiles(&o);
            let mut j = run_faultline_http(
                bins,
                s,
                logs,
                &format!("faultline-{tag}"),
                rate,
                s.http_secs,
                "2s",
                None,
            )?;
            let f_p = corrected(&j);
            let (o_rate, f_rate) = (
                num(&o, &["summary", "requestsPerSec"]),
                num(&j, &["throughput_ops_per_s"]),
            );
            for (tool, achieved) in [("oha", o_rate), ("Faultline", f_rate)] {
                if achieved < 0.95 * rate {
                    out.notes.push(format!(
                        "http-fixed {tag}: {tool} achieved {achieved:.0}/s of the {rate:.0}/s intended: it could not keep up, so its corrected percentiles include its own backlog"
                    ));
                }
            }
            println!(
                "   r{round} corrected p50/p99/p99.9 µs: oha {:.0}/{:.0}/{:.0}  faultline {:.0}/{:.0}/{:.0} (uncorrected p99 {:.0})",
                o_p[0],
                o_p[1],
                o_p[2],
                f_p[0],
                f_p[1],
                f_p[2],
                num(&j, &["uncorrected_us", "p99_us"])
            );
            for k in 0..3 {
                theirs[k].push(o_p[k]);
                ours[k].push(f_p[k]);
            }
            let mut o = o;
            o.set("round", J::Num(round as f64));
            o.set("rate", J::Num(rate));
            out.runs
                .push((format!("http-fixed-{:.0}", fraction * 100.0), o));
            j.set("round", J::Num(round as f64));
            out.runs
                .push((format!("http-fixed-{:.0}", fraction * 100.0), j));
        }
        for (k, name) in ["p50", "p99", "p99.9"].iter().enumerate() {
            out.rows.push(row(
                format!(
                    "HTTP {:.0}% of max ({rate:.0}/s), corrected {name}",
                    fraction * 100.0
                ),
                "µs",
                "faultline",
                std::mem::take(&mut ours[k]),
                "oha --latency-correction",
                std::mem::take(&mut theirs[k]),
                Goal::Within(0.15),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_wrk(out: &str) -> Result<J, String> {
    let field = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no `Requests/sec:` in wrk's output:\n{out}"))?;
    // "  123456 requests in 10.00s, 12.34MB read"
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(J::obj([
        ("requests_per_s", J::Num(rps)),
        ("requests", J::Num(requests)),
        ("non_2xx", J::Num(non_2xx)),
        (
            "socket_errors",
            J::Str(field("Socket errors:").unwrap_or_default()),
        ),
    ]))
}

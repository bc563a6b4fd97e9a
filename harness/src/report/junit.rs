//! JUnit XML: one test suite per experiment, one test case per verdict.

use crate::journal::Journal;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

pub fn render_junit(journal: &Journal) -> String {
    let mut report = Report::new("faultline");
    let mut suite = TestSuite::new(journal.experiment.name.as_str());
    for verdict in &journal.verdicts {
        let status = if verdict.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(format!(
                "expected: {}; observed: {}",
                verdict.expected, verdict.observed
            ));
            status
        };
        let mut case = TestCase::new(verdict.id.as_str(), status);
        case.set_classname(journal.experiment.name.as_str());
        suite.add_test_case(case);
    }
    if let Some(error) = &journal.run.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(error.as_str());
        suite.add_test_case(TestCase::new("run", status));
    }
    report.add_test_suite(suite);
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- junit rendering failed: {e} -->\n"))
}

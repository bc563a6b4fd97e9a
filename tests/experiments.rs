//! The lab tier: one test per experiment file under `experiments/` that needs only Redis,
//! Sentinel, Toxiproxy and the reference services (files naming Kafka or Cassandra in their path
//! are the cluster tier's, `cluster_experiments.rs`).

mod experiment_runner;

datatest_stable::harness! {
    {
        test = experiment_runner::run_experiment,
        root = "../experiments",
        pattern = r"^(?!.*(kafka|cassandra)).*\.yaml$",
    },
}

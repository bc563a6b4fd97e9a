//! The cluster tier's experiments: one test per experiment file under `experiments/` whose path
//! names Kafka or Cassandra (real clusters of JVMs; serialized in the `cluster` test group).

mod experiment_runner;

datatest_stable::harness! {
    {
        test = experiment_runner::run_experiment,
        root = "../experiments",
        pattern = r"(kafka|cassandra).*\.yaml$",
    },
}

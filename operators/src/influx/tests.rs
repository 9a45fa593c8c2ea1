use std::collections::BTreeMap;

use smartgrid_runtime::spec::{Env, parse_str};

use crate::delivery::ByteSize;

const HEAD: &str = "pipeline: t
nodes:
  meters:
    type: simulate
    sensors: 2
    realtime: false
    duration: 30s
  readings:
    type: decode
    input: meters
    format: clemap
  means:
    type: window_mean
    input: readings
    size: 10s
  store:
    type: influx
    input: means
";

fn plan(settings: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let text = format!("{HEAD}{settings}");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = parse_str(&text, "p.yaml", std::path::PathBuf::new(), Env::Fixed(env))
        .map_err(|e| format!("{e:?}"))?;
    smartgrid_runtime::plan::plan(&spec, &crate::builtin_registry())
        .map(drop)
        .map_err(|d| d.to_string())
}

#[test]
fn good_v2_and_v1_settings_plan() {
    plan(
        "    url: http://127.0.0.1:8086\n    org: home\n    bucket: energy\n    token: ${INFLUX_TOKEN}\n",
        &[("INFLUX_TOKEN", "secret-token")],
    )
    .unwrap();
    plan(
        "    url: http://127.0.0.1:8086/\n    api: v1\n    db: energy\n    rp: autogen\n    username: me\n    password: ${PW}\n    precision: s\n    gzip: false\n    spool: { max_size: 64MiB, when_full: drop_oldest, fsync: false }\n    retry: { initial_delay: 50ms, max_delay: 5s, attempts_before_spool: 1 }\n",
        &[("PW", "pw")],
    )
    .unwrap();
}

#[test]
fn every_problem_is_reported_at_once() {
    // Every check made after reading the settings runs, whichever fails first; an
    // unreadable value (an unset variable) stops the reading itself.
    let err = plan("    url: ftp://db:8086\n    batch_size: 0\n", &[]).unwrap_err();
    for needle in [
        "invalid InfluxDB URL `ftp://db:8086`: the scheme `ftp` is not supported",
        "the v2 write API needs `org`",
        "the v2 write API needs `bucket`",
        "`batch_size` is 0; it must be from 1 to 100000",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let err = plan(
        "    url: http://h\n    org: o\n    bucket: b\n    token: ${INFLUX_TOKEN}\n",
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("environment variable `INFLUX_TOKEN` is not set"),
        "{err}"
    );
    let err = plan("    url: http://h\n    api: v3\n    db: x\n", &[]).unwrap_err();
    assert!(err.contains("v3"), "{err}");
    let err = plan("    url: http://h\n    api: v1\n    bucket: b\n", &[]).unwrap_err();
    assert!(err.contains("the v1 write API needs `db`"), "{err}");
    assert!(err.contains("`bucket` belongs to the v2 API"), "{err}");
}

#[test]
fn secrets_stay_out_of_errors() {
    let err = plan(
        "    url: http://h\n    api: v1\n    db: x\n    password: ${PW}\n    username: [1]\n",
        &[("PW", "hunter2-secret")],
    )
    .unwrap_err();
    assert!(!err.contains("hunter2-secret"), "{err}");
}

#[test]
fn sizes_read_with_units() {
    let cases = [
        ("1000", 1000),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("512MiB", 512 << 20),
        ("1GiB", 1 << 30),
        ("1.5GB", 1_500_000_000),
    ];
    for (text, bytes) in cases {
        assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
    }
    assert!("12 parsecs".parse::<ByteSize>().is_err());
    assert!("MB".parse::<ByteSize>().is_err());
}

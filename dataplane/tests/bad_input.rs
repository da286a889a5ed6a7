//! Bad input to the control surfaces never panics: a mangled config file is an error, and a
//! mangled table command (wrong ids, wrong kinds, out-of-range values) is refused or applied,
//! never a crash of the writer. The commands come from `examples/pe1.toml`, serialized as the
//! table socket carries them, with their numbers and strings changed at random.

use carrier_dataplane::config::Config;
use carrier_dataplane::tables::{TableCommand, Tables};
use proptest::prelude::*;

const PE1: &str = include_str!("../../examples/pe1.toml");

/// Every number and string leaf of a JSON value, as paths.
fn leaves(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(x, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn leaf_mut<'a>(v: &'a mut serde_json::Value, path: &[String]) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(v, |v, k| match v {
        serde_json::Value::Object(m) => m.get_mut(k),
        serde_json::Value::Array(a) => a.get_mut(k.parse::<usize>().ok()?),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mangled_configs_are_errors_not_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), "[ -~]{0,12}"), 1..6),
    ) {
        let mut lines: Vec<String> = PE1.lines().map(str::to_string).collect();
        for (line, at, text) in edits {
            let l = &mut lines[line.index(PE1.lines().count())];
            let mut cut = at.index(l.len() + 1);
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l.replace_range(cut.., &text);
        }
        let text = lines.join("\n");
        if let Ok(c) = Config::parse(&text) {
            let _ = c.tables();
        }
    }

    #[test]
    fn mangled_table_commands_are_refused_not_panics(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), prop_oneof![
            any::<u32>().prop_map(serde_json::Value::from),
            (0u64..40).prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(u64::MAX)),
            Just(serde_json::Value::from(-1)),
            "[a-z0-9./:-]{0,20}".prop_map(serde_json::Value::from),
        ]), 1..8),
    ) {
        let config = Config::parse(PE1).unwrap();
        let mut tables: Tables = config.tables().unwrap();
        let commands: Vec<serde_json::Value> = config.commands().unwrap().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        for (which, leaf, value) in picks {
            let mut cmd = commands[which.index(commands.len())].clone();
            let mut paths = vec![];
            leaves(&cmd, &mut vec![], &mut paths);
            if paths.is_empty() {
                continue;
            }
            if let Some(l) = leaf_mut(&mut cmd, &paths[leaf.index(paths.len())]) {
                *l = value;
            }
            if let Ok(c) = serde_json::from_value::<TableCommand>(cmd) {
                let _ = tables.apply(c);
            }
        }
        // The tables still answer lookups after whatever was accepted.
        let _ = tables.vrf_by_name("red");
    }
}

//! Every `[OUTPUT] Name fanout` section of the shipped Fluent Bit configs initialises in the
//! built plugin, through the host's property getter, as Fluent Bit would start it.

use fanout_testhost::host::{FLB_OK, logs_of};
use fanout_testhost::{HostVersion, Plugin, plugin_path, workspace_root};

fn env(name: &str) -> Option<String> {
    match name {
        "DD_API_KEY" => Some("key-from-secret".into()),
        "AWS_REGION" => Some("us-east-1".into()),
        "DD_SERVICE" => Some("checkout".into()),
        "DD_TAGS" => Some("env:prod".into()),
        _ => None,
    }
}

#[test]
fn shipped_fanout_sections_start_in_the_plugin() {
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let mut started = 0;
    for config in [
        "fluent-bit-conf/firelens/extra.conf",
        "fluent-bit-conf/eks/fluent-bit.conf",
    ] {
        let sections =
            flb_fanout_tools::classic::load(&workspace_root().join(config), &env).unwrap();
        for section in sections
            .iter()
            .filter(|s| s.name == "OUTPUT" && s.get("name") == Some("fanout"))
        {
            let props: Vec<(&str, &str)> = section
                .properties
                .iter()
                .filter(|(k, v)| !v.is_empty() && !k.eq_ignore_ascii_case("name"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let label = section.get("label").unwrap().to_owned();
            let instance = plugin
                .init(&props)
                .unwrap_or_else(|rc| panic!("{config}: Init returned {rc}: {:?}", logs_of(&label)));
            assert_eq!(instance.exit(), FLB_OK);
            started += 1;
        }
    }
    assert_eq!(started, 2);
}

//! deploy/, checked as far as this machine can without a container engine:
//! the YAML parses and holds the objects and fields it must, the configs it
//! carries are valid gateway.toml, the systemd unit verifies, the Dockerfile
//! lints, and the dashboard asks only for metrics the gateway exports.

use std::path::{Path, PathBuf};
use std::process::Command;

use embedgate::config::Settings;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn yaml(file: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// Validates a gateway.toml text as if it were at `/etc/embedgate/gateway.toml`.
fn valid_gateway_toml(text: &str, what: &str) -> Settings {
    Settings::from_toml(text, Path::new("/etc/embedgate/gateway.toml"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .settings
}

#[test]
fn the_container_configs_are_valid_and_made_for_containers() {
    for file in ["gateway.toml", "compose-gateway.toml"] {
        let settings = valid_gateway_toml(&read(file), file);
        assert!(
            settings.server.listen.ip().is_unspecified(),
            "{file}: listen on 0.0.0.0"
        );
        let admin = settings.admin.expect("admin endpoints for the probes");
        assert_eq!(admin.listen.port(), 9090);
        assert!(
            !settings.server.drain_delay.is_zero(),
            "{file}: a drain delay"
        );
        assert!(settings.session.allowlist.source.is_remote());
    }
}

#[test]
fn the_kubernetes_objects_hold_what_a_sidecar_needs() {
    let docs = yaml("kubernetes/embedgate.yaml");
    let by_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    for doc in &docs {
        assert!(doc["apiVersion"].as_str().is_some(), "{doc:?}");
        assert!(doc["metadata"]["name"].as_str().is_some(), "{doc:?}");
    }

    let config = by_kind("ConfigMap")["data"]["gateway.toml"]
        .as_str()
        .unwrap();
    assert_eq!(
        config,
        read("gateway.toml"),
        "the ConfigMap carries deploy/gateway.toml"
    );
    let secret = by_kind("Secret");
    assert!(secret["stringData"]["EMBEDGATE_KEY"].as_str().is_some());
    assert!(config.contains("key_env = \"EMBEDGATE_KEY\""));

    let deployment = by_kind("Deployment");
    let labels = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &deployment["spec"]["template"]["metadata"]["labels"],
        labels
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_vec().unwrap();
    assert_eq!(containers.len(), 2, "the CMS and embedgate in one pod");
    let gateway = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("embedgate"))
        .unwrap();
    let port = |name: &str| {
        gateway["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("port {name}"))
    };
    assert_eq!(port("http"), 8080);
    assert_eq!(port("admin"), 9090);
    assert_eq!(
        gateway["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        gateway["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        gateway["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("admin")
    );
    assert!(!gateway["lifecycle"]["preStop"].is_badvalue());
    assert_eq!(
        gateway["envFrom"][0]["secretRef"]["name"].as_str(),
        secret["metadata"]["name"].as_str()
    );
    assert_eq!(
        gateway["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    assert_eq!(
        gateway["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/embedgate")
    );
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let settings = valid_gateway_toml(config, "the ConfigMap");
    let needed = settings.server.drain_delay + settings.server.shutdown_timeout;
    assert!(
        grace as u64 > needed.as_secs(),
        "grace period covers the drain"
    );

    for kind in ["Service", "PodDisruptionBudget"] {
        let selector = match kind {
            "Service" => &by_kind(kind)["spec"]["selector"],
            _ => &by_kind(kind)["spec"]["selector"]["matchLabels"],
        };
        assert_eq!(selector, labels, "{kind} selects the pod");
    }
    assert_eq!(
        by_kind("Service")["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );
}

#[test]
fn compose_runs_the_gateway_in_front_of_wordpress_with_its_database_and_redis() {
    let compose = &yaml("compose.yaml")[0];
    let services = compose["services"].as_hash().unwrap();
    for name in ["embedgate", "wordpress", "db", "redis"] {
        assert!(services.contains_key(&Yaml::String(name.into())), "{name}");
    }
    let gateway = &compose["services"]["embedgate"];
    assert_eq!(
        gateway["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    let mounts: Vec<&str> = gateway["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(mounts.contains(&"./compose-gateway.toml:/etc/embedgate/gateway.toml:ro"));
    let plugin = &compose["services"]["wordpress"]["volumes"];
    assert!(plugin.as_vec().unwrap().iter().any(|v| v
        .as_str()
        .is_some_and(|v| v.contains("examples/wordpress/embedgate.php"))));
    let config = read("compose-gateway.toml");
    assert!(
        config.contains("http://wordpress:80"),
        "the CMS by its service name"
    );
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = read("systemd/embedgate.service");
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(setting), "{setting}");
    }
    // systemd-analyze checks that ExecStart's binary exists: point it at the built one.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("embedgate.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/embedgate", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze is installed (run scripts/test.sh)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn the_dockerfile_lints_clean() {
    let out = Command::new("hadolint")
        .arg(deploy("Dockerfile"))
        .output()
        .expect("hadolint is installed (run scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("USER 10001"), "runs as a non-root user");
    assert!(dockerfile.contains("docker build -f deploy/Dockerfile"));
}

#[tokio::test]
async fn the_dashboard_asks_only_for_metrics_the_gateway_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/embedgate.json")).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 8);

    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start_with(
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            config_text(cms.addr, "")
        ),
        &[],
    )
    .await;
    // Request series exist from the first request on.
    assert_eq!(get(&gate.url("/public/a"), None).await.status, 200);
    let scrape = get(&format!("http://{}/metrics", gate.admin.unwrap()), None)
        .await
        .text();
    let exported: Vec<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for expr in &exprs {
        for (at, _) in expr.match_indices("embedgate_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_total", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                exported.contains(&family),
                "{name} in {expr}: not in {exported:?}"
            );
        }
    }
}

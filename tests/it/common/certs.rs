//! Certificates made with openssl for the TLS tests: a CA of the test's own
//! and leaves signed by it.

use std::process::{Command, Stdio};

/// Runs openssl in `dir`; fails the test if it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (run scripts/test.sh)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA of the test's own in `dir`: `ca.pem` and `ca.key`.
pub fn make_ca(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=embedgate test CA",
        ],
    );
}

/// A certificate for 127.0.0.1 and localhost signed by the CA in `dir`:
/// `{name}.pem` and `{name}.key`. `key` is `rsa` (PKCS#8), `rsa-pkcs1` or
/// `ec` (SEC1).
pub fn make_leaf(dir: &std::path::Path, name: &str, key: &str) {
    make_leaf_for(dir, name, key, "IP:127.0.0.1,DNS:localhost");
}

/// As [`make_leaf`], for the subject alternative names `san`.
pub fn make_leaf_for(dir: &std::path::Path, name: &str, key: &str, san: &str) {
    let key_file = format!("{name}.key");
    match key {
        "ec" => openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key_file,
            ],
        ),
        "rsa-pkcs1" => openssl(dir, &["genrsa", "-traditional", "-out", &key_file, "2048"]),
        _ => openssl(dir, &["genpkey", "-algorithm", "RSA", "-out", &key_file]),
    }
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key_file,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.cnf"), format!("subjectAltName={san}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

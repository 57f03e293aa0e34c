//! A private `moto_server` (the S3 server from PyPI's `moto[server]`, installed by
//! scripts/local-services.sh) on a free port, with its IAM auth checks on: requests signed with a
//! wrong secret are refused with S3's own SignatureDoesNotMatch, so the S3 backend is tested
//! against a server that no one here wrote and that verifies signatures. Killed on drop.

use std::process::{Child, Command, Stdio};

use crate::free_port;

/// The setup calls run before auth is enforced: user, access key, user policy, bucket.
const SETUP: &str = include_str!("moto_setup.py");
const UNAUTHENTICATED_SETUP_CALLS: &str = "4";

pub struct MotoServer {
    pub port: u16,
    pub bucket: String,
    /// An IAM user's key allowed `s3:*`.
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
}

impl MotoServer {
    /// Starts moto_server, creates the user, its key and `bucket`, and returns once auth is on.
    pub fn start(bucket: &str) -> MotoServer {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", UNAUTHENTICATED_SETUP_CALLS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server (bash .ci/run installs moto[server]): {e}"));
        let mut server =
            MotoServer { port, bucket: bucket.to_string(), access_key_id: String::new(), secret_access_key: String::new(), child };
        let out = Command::new("python3")
            .arg("-c")
            .arg(SETUP)
            .args([server.endpoint(), bucket.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 for the moto setup: {e}"));
        assert!(out.status.success(), "moto setup failed: {}", String::from_utf8_lossy(&out.stdout));
        let key: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("moto setup printed no key ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        let field = |name: &str| key[name].as_str().unwrap_or_else(|| panic!("moto setup: no {name}")).to_string();
        server.access_key_id = field("access_key_id");
        server.secret_access_key = field("secret_access_key");
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

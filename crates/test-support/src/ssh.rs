//! A private OpenSSH server per test, for transport and scan tests against a real sshd.
//!
//! [`TestSshd::start`] runs `/usr/sbin/sshd -D -e` as the current user (root in CI) with a
//! config of its own in a fresh temporary directory: a fresh ed25519 host key, a fresh
//! ed25519 client key pair that is the only authorized key, public key authentication only,
//! on a free port of the given **127.0.0.x loopback** address (never any other address).
//! Give each test its own address (127.0.0.21, .22, …) so parallel tests cannot clash.
//!
//! sshd is killed and the directory removed when the handle drops (the directory is kept
//! when the test is panicking, and its path printed, so the sshd log can be read).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

const SSHD: &str = "/usr/sbin/sshd";

/// A running private sshd.
#[derive(Debug)]
pub struct TestSshd {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    username: String,
    client_key: ClientKey,
    host_key_fingerprint: String,
}

/// An ed25519 key pair made by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----…`).
    pub private_key_pem: String,
    /// The public key line (`ssh-ed25519 AAAA… comment`), as in `authorized_keys`.
    pub public_key: String,
}

impl TestSshd {
    /// Starts sshd on a free port of `listen_ip`, which must be a 127.0.0.x address.
    ///
    /// Panics when `/usr/sbin/sshd` is missing (run `scripts/test.sh`, or install
    /// openssh-server) or when sshd does not come up within 10 s (its log is in the message).
    pub async fn start(listen_ip: Ipv4Addr) -> TestSshd {
        let [a, b, c, _] = listen_ip.octets();
        assert!(
            (a, b, c) == (127, 0, 0),
            "TestSshd listens on 127.0.0.x loopback addresses only, not {listen_ip}"
        );
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run scripts/test.sh / install openssh-server (apt-get install openssh-server)"
        );
        // Privilege separation directory, needed when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");

        let dir = std::env::temp_dir().join(format!("openwatch-sshd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("create the sshd temp dir");
        let host_key = dir.join("host_ed25519");
        keygen(&host_key, "").await;
        let host_key_fingerprint = fingerprint(&host_key.with_extension("pub")).await;
        let client_key = load_key(&dir.join("client_ed25519"), None).await;
        std::fs::write(dir.join("authorized_keys"), format!("{}\n", client_key.public_key))
            .expect("write authorized_keys");

        let port = free_port(listen_ip);
        let addr = SocketAddr::V4(SocketAddrV4::new(listen_ip, port));
        let config = format!(
            "ListenAddress {addr}\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             UsePAM no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             X11Forwarding no\n\
             AllowTcpForwarding no\n\
             PrintMotd no\n\
             MaxStartups 50\n\
             LogLevel VERBOSE\n",
            host_key = host_key.display(),
            pid = dir.join("sshd.pid").display(),
            authorized = dir.join("authorized_keys").display(),
        );
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config).expect("write sshd_config");
        let log_path = dir.join("sshd.log");
        let log = std::fs::File::create(&log_path).expect("create sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the sshd.log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        let mut sshd =
            TestSshd { child, dir, addr, username: current_user().await, client_key, host_key_fingerprint };
        sshd.wait_listening().await;
        sshd
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited with {status} before listening on {}:\n{}", self.addr, self.log());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {} within 10 s:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Path of sshd's public host key (for `known_hosts` tests).
    pub fn host_public_key_path(&self) -> std::path::PathBuf {
        self.dir.join("host_ed25519.pub")
    }

    /// The address sshd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The user sshd runs as, and the only one that can log in.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The authorized client private key (OpenSSH format), to hand to a transport in memory.
    pub fn client_private_key_pem(&self) -> String {
        self.client_key.private_key_pem.clone()
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`).
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key_fingerprint.clone()
    }

    /// Adds a public key line (`ssh-ed25519 AAAA…`) to `authorized_keys`.
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(file, "{public_key}").expect("append to authorized_keys");
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("sshd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("sshd for {} kept its files (log: sshd.log) in {}", self.addr, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh ed25519 key pair, not authorized anywhere (for wrong-key tests, or to
/// [`TestSshd::authorize`]), optionally encrypted with `passphrase`.
pub async fn generate_client_key(passphrase: Option<&str>) -> ClientKey {
    let dir = std::env::temp_dir().join(format!("openwatch-sshkey-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).expect("create the key temp dir");
    let key = load_key(&dir.join("id_ed25519"), passphrase).await;
    let _ = std::fs::remove_dir_all(&dir);
    key
}

async fn load_key(path: &Path, passphrase: Option<&str>) -> ClientKey {
    keygen(path, passphrase.unwrap_or("")).await;
    ClientKey {
        private_key_pem: std::fs::read_to_string(path).expect("read the private key"),
        public_key: std::fs::read_to_string(path.with_extension("pub"))
            .expect("read the public key")
            .trim()
            .to_owned(),
    }
}

async fn keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "openwatch-test", "-N", passphrase, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ssh-keygen (install openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `SHA256:…` of a public key file, from `ssh-keygen -lf`.
async fn fingerprint(public_key: &Path) -> String {
    let out =
        Command::new("ssh-keygen").arg("-lf").arg(public_key).output().await.expect("run ssh-keygen -lf");
    assert!(out.status.success(), "ssh-keygen -lf failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("unexpected ssh-keygen -lf output: {text}"))
        .to_owned()
}

async fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().await.expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A port free on `ip` right now (sshd binds it a moment later; each test has its own
/// address, so nothing else races for it).
fn free_port(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The unprivileged account the SSH scan tests log in as: created once on this machine
/// (idempotent), with a known password, the fixtures' authorized keys (sshd reads the
/// shared `AuthorizedKeysFile`), and passwordless `sudo` — the set-up operators give a
/// scanning account.
#[derive(Debug, Clone)]
pub struct ScanUser {
    /// Login name.
    pub name: &'static str,
    /// Password (test-only, never a real secret).
    pub password: &'static str,
}

/// Creates (or refreshes) the scan user. Needs root; safe to call from parallel tests.
pub fn scan_user() -> ScanUser {
    static ONCE: std::sync::OnceLock<ScanUser> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let user = ScanUser { name: "openwatch-scan", password: "Scan-Test-Password-1" };
        let run = |program: &str, args: &[&str], stdin: Option<&str>| {
            let mut child = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                use std::io::Write as _;
                pipe.write_all(input.as_bytes()).expect("write stdin");
            }
            child.wait_with_output().expect("wait")
        };
        // Exit status 9: the user exists already (another test process created it).
        let created = run("useradd", &["--create-home", "--shell", "/bin/sh", user.name], None);
        assert!(
            created.status.success() || created.status.code() == Some(9),
            "useradd failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let password = run("chpasswd", &[], Some(&format!("{}:{}\n", user.name, user.password)));
        assert!(password.status.success(), "chpasswd failed: {}", String::from_utf8_lossy(&password.stderr));
        let sudoers = format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.name);
        let path = "/etc/sudoers.d/openwatch-scan";
        if std::fs::read_to_string(path).ok().as_deref() != Some(sudoers.as_str()) {
            std::fs::create_dir_all("/etc/sudoers.d").expect("create /etc/sudoers.d");
            std::fs::write(path, sudoers).expect("write the sudoers drop-in");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o440))
                .expect("chmod sudoers drop-in");
        }
        user
    })
    .clone()
}

//! Network namespaces for partition tests (`ip netns`, needs root / CAP_NET_ADMIN).
//!
//! A [`Lab`] is N namespaces, each joined by a veth pair to one bridge in the root
//! namespace: namespace `i` has address `10.213.S.(i+2)/24`, the bridge `10.213.S.1/24`
//! (S picked per run). Servers left in the root namespace are reachable from every
//! namespace at the addresses added with [`Lab::add_host_addr`]. A partition is made with
//! `unreachable` routes inside the namespaces ([`Lab::isolate`]), which every process in
//! the namespace obeys, and healed by deleting them ([`Lab::heal`]).
//!
//! Guarantees: names are unique per run (pid); everything created is deleted on drop, also
//! when the test panics. Caveats: the root namespace itself (the test) is never cut off.

use std::process::Command;

pub struct Lab {
    tag: String,
    subnet: String,
    bridge: String,
    namespaces: Vec<String>,
    host_addrs: Vec<String>,
    /// (namespace index, blocked address) routes in place.
    cuts: Vec<(usize, String)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

impl Lab {
    /// `Err(why)` when namespaces cannot be made here (not root, no `ip`, no CAP_NET_ADMIN).
    pub fn available() -> Result<(), String> {
        let probe = format!("lbprobe{}", std::process::id());
        ip(&["netns", "add", &probe])?;
        ip(&["netns", "del", &probe])
    }

    /// Skips (returns `None`, saying why on stderr) when namespaces are unavailable, unless
    /// `LIFEBOAT_REQUIRE_NETNS=1`, when it panics instead.
    pub fn new_or_skip(n: usize) -> Option<Lab> {
        if let Err(why) = Lab::available() {
            if std::env::var("LIFEBOAT_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("LIFEBOAT_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}");
            }
            eprintln!("SKIPPED: network namespaces are unavailable ({why}); run as root");
            return None;
        }
        Some(Lab::new(n))
    }

    pub fn new(n: usize) -> Lab {
        assert!(n <= 8);
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        let mut lab = Lab {
            subnet: format!("10.213.{}", pid % 250 + 1),
            bridge: format!("lbbr{tag}"),
            namespaces: Vec::new(),
            host_addrs: Vec::new(),
            cuts: Vec::new(),
            tag,
        };
        must(&["link", "add", &lab.bridge, "type", "bridge"]);
        must(&[
            "addr",
            "add",
            &format!("{}.1/24", lab.subnet),
            "dev",
            &lab.bridge,
        ]);
        must(&["link", "set", &lab.bridge, "up"]);
        for i in 0..n {
            let ns = format!("lbns{}x{i}", lab.tag);
            must(&["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            let host = format!("lbv{}x{i}", lab.tag);
            let peer = format!("lbp{}x{i}", lab.tag);
            must(&[
                "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", &ns,
            ]);
            must(&["link", "set", &host, "master", &lab.bridge]);
            must(&["link", "set", &host, "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.addr(i)),
                "dev",
                &peer,
            ]);
            must(&["-n", &ns, "link", "set", &peer, "up"]);
        }
        lab
    }

    /// The address of namespace `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 2)
    }

    /// The whole lab's network, for pg_hba and the like.
    pub fn cidr(&self) -> String {
        format!("{}.0/24", self.subnet)
    }

    /// Adds `10.213.S.(100+k)` to the bridge (the root namespace) and returns it: a
    /// distinct address for a server of the root namespace, so it can be cut off alone.
    pub fn add_host_addr(&mut self) -> String {
        let a = format!("{}.{}", self.subnet, 100 + self.host_addrs.len());
        must(&["addr", "add", &format!("{a}/32"), "dev", &self.bridge]);
        self.host_addrs.push(a.clone());
        a
    }

    /// `cmd` run inside namespace `i` (`ip netns exec`, which execs: the child's pid is
    /// the program's).
    pub fn exec(&self, i: usize, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespaces[i]])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Namespace `i` can no longer reach `addrs` (connects fail with "no route").
    pub fn block(&mut self, i: usize, addrs: &[String]) {
        for a in addrs {
            must(&[
                "-n",
                &self.namespaces[i],
                "route",
                "add",
                "unreachable",
                &format!("{a}/32"),
            ]);
            self.cuts.push((i, a.clone()));
        }
    }

    /// Removes every cut made by [`Lab::block`].
    pub fn heal(&mut self) {
        for (i, a) in std::mem::take(&mut self.cuts) {
            let _ = ip(&[
                "-n",
                &self.namespaces[i],
                "route",
                "del",
                "unreachable",
                &format!("{a}/32"),
            ]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The host ends first: a deleted namespace can linger in the kernel a while, and
        // its veth pair with it.
        for (i, ns) in self.namespaces.iter().enumerate() {
            let _ = ip(&["link", "del", &format!("lbv{}x{i}", self.tag)]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

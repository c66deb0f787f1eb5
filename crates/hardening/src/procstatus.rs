//! What `/proc/<pid>/status` says about a process's confinement.

/// Confinement fields of `/proc/<pid>/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// `CapInh`.
    pub cap_inh: u64,
    /// `CapPrm`.
    pub cap_prm: u64,
    /// `CapEff`.
    pub cap_eff: u64,
    /// `CapBnd`.
    pub cap_bnd: u64,
    /// `CapAmb`.
    pub cap_amb: u64,
    /// `NoNewPrivs` (1 when set).
    pub no_new_privs: u8,
    /// `Seccomp`: 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    /// `Seccomp_filters`: how many filters are stacked (kernels ≥ 5.9).
    pub seccomp_filters: Option<u32>,
}

impl Confinement {
    /// Parses the text of a status file; missing fields stay 0.
    pub fn parse(status: &str) -> Self {
        let mut c = Confinement::default();
        for line in status.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            let hex = || u64::from_str_radix(v, 16).unwrap_or(u64::MAX);
            match k {
                "CapInh" => c.cap_inh = hex(),
                "CapPrm" => c.cap_prm = hex(),
                "CapEff" => c.cap_eff = hex(),
                "CapBnd" => c.cap_bnd = hex(),
                "CapAmb" => c.cap_amb = hex(),
                "NoNewPrivs" => c.no_new_privs = v.parse().unwrap_or(0),
                "Seccomp" => c.seccomp = v.parse().unwrap_or(0),
                "Seccomp_filters" => c.seccomp_filters = v.parse().ok(),
                _ => {}
            }
        }
        c
    }

    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(format!(
            "/proc/{pid}/status"
        ))?))
    }

    /// True when no capability set holds anything.
    pub fn no_capabilities(&self) -> bool {
        self.cap_inh == 0
            && self.cap_prm == 0
            && self.cap_eff == 0
            && self.cap_bnd == 0
            && self.cap_amb == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_confinement_lines() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n";
        let c = Confinement::parse(s);
        assert_eq!(c.cap_eff, 0xa80425fb);
        assert_eq!(c.no_new_privs, 1);
        assert_eq!(c.seccomp, 2);
        assert_eq!(c.seccomp_filters, Some(3));
        assert!(!c.no_capabilities());
    }
}
